#include "fuse/attr_conversion.h"

#include <dirent.h>
#include <fcntl.h>

#include <doctest/doctest.h>
#include <fuse_lowlevel.h>

using namespace frugalfs;
using namespace frugalfs::fuse;

TEST_CASE("to_stat copies every field and reports 4 KiB blocks") {
  Attr a;
  a.ino = 42;
  a.mode = S_IFREG | 0640;
  a.nlink = 3;
  a.uid = 1000;
  a.gid = 100;
  a.size = 5ull << 30;
  a.blocks = 24;
  a.atime = {1, 2};
  a.mtime = {3, 4};
  a.ctime = {5, 6};
  struct stat st = to_stat(a);
  CHECK(st.st_ino == 42);
  CHECK(st.st_mode == (S_IFREG | 0640));
  CHECK(st.st_nlink == 3);
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 100);
  CHECK(st.st_size == static_cast<off_t>(5ull << 30));
  CHECK(st.st_blocks == 24);
  CHECK(st.st_blksize == 4096);
  CHECK(st.st_atim.tv_sec == 1);
  CHECK(st.st_atim.tv_nsec == 2);
  CHECK(st.st_mtim.tv_nsec == 4);
  CHECK(st.st_ctim.tv_sec == 5);
}

TEST_CASE("setattr bits select the fields, NOW bits win and ctime is ignored") {
  struct stat st {};
  st.st_mode = S_IFREG | 04755;
  st.st_uid = 7;
  st.st_gid = 8;
  st.st_size = 123;
  st.st_atim = {10, 11};
  st.st_mtim = {12, 13};

  SetAttrRequest none = to_setattr_request(st, FUSE_SET_ATTR_CTIME);
  CHECK_FALSE(none.mode);
  CHECK_FALSE(none.uid);
  CHECK_FALSE(none.gid);
  CHECK_FALSE(none.size);
  CHECK_FALSE(none.atime);
  CHECK_FALSE(none.mtime);

  SetAttrRequest all = to_setattr_request(
      st, FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE |
              FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME);
  REQUIRE(all.mode);
  CHECK(*all.mode == 04755);  // no S_IFMT bits
  CHECK(*all.uid == 7);
  CHECK(*all.gid == 8);
  CHECK(*all.size == 123);
  CHECK(all.atime->tv_sec == 10);
  CHECK(all.atime->tv_nsec == 11);
  CHECK(all.mtime->tv_nsec == 13);

  SetAttrRequest now = to_setattr_request(st, FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW |
                                                  FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW);
  CHECK(now.atime->tv_nsec == UTIME_NOW);
  CHECK(now.mtime->tv_nsec == UTIME_NOW);
  CHECK_FALSE(now.size);
}

TEST_CASE("dirent_mode accepts DT_* values and mode bits") {
  CHECK(dirent_mode(DT_DIR) == S_IFDIR);
  CHECK(dirent_mode(DT_REG) == S_IFREG);
  CHECK(dirent_mode(DT_LNK) == S_IFLNK);
  CHECK(dirent_mode(S_IFDIR | 0755) == S_IFDIR);
  CHECK(dirent_mode(S_IFSOCK) == S_IFSOCK);
}

TEST_CASE("xattr names are NUL-terminated and sizes follow getxattr(2)") {
  CHECK(join_xattr_names({}).empty());
  CHECK(join_xattr_names({"user.a", "user.bc"}) == std::string("user.a\0user.bc\0", 15));
  CHECK(xattr_reply_kind(0, 10) == XattrReply::kLength);
  CHECK(xattr_reply_kind(0, 0) == XattrReply::kLength);
  CHECK(xattr_reply_kind(9, 10) == XattrReply::kTooSmall);
  CHECK(xattr_reply_kind(10, 10) == XattrReply::kValue);
  CHECK(xattr_reply_kind(64, 0) == XattrReply::kValue);
}
