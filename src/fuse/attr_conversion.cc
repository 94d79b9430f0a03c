#include "fuse/attr_conversion.h"

#include <dirent.h>
#include <fcntl.h>

#include <fuse_lowlevel.h>

namespace frugalfs::fuse {

struct stat to_stat(const Attr& attr) {
  struct stat st {};
  st.st_ino = attr.ino;
  st.st_mode = attr.mode;
  st.st_nlink = attr.nlink;
  st.st_uid = attr.uid;
  st.st_gid = attr.gid;
  st.st_rdev = attr.rdev;
  st.st_size = static_cast<off_t>(attr.size);
  st.st_blksize = kPreferredBlockSize;
  st.st_blocks = static_cast<blkcnt_t>(attr.blocks);
  st.st_atim = attr.atime;
  st.st_mtim = attr.mtime;
  st.st_ctim = attr.ctime;
  return st;
}

SetAttrRequest to_setattr_request(const struct stat& attr, int to_set) {
  SetAttrRequest request;
  if (to_set & FUSE_SET_ATTR_MODE) request.mode = attr.st_mode & 07777;
  if (to_set & FUSE_SET_ATTR_UID) request.uid = attr.st_uid;
  if (to_set & FUSE_SET_ATTR_GID) request.gid = attr.st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) request.size = static_cast<uint64_t>(attr.st_size);
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    request.atime = timespec{0, UTIME_NOW};
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    request.atime = attr.st_atim;
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    request.mtime = timespec{0, UTIME_NOW};
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    request.mtime = attr.st_mtim;
  }
  return request;
}

uint32_t dirent_mode(uint32_t type) {
  // DT_* values are S_IFMT >> 12, and never exceed 15.
  if (type <= 15) return type << 12;
  return type & S_IFMT;
}

std::string join_xattr_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    out += name;
    out.push_back('\0');
  }
  return out;
}

XattrReply xattr_reply_kind(size_t size, size_t length) {
  if (size == 0) return XattrReply::kLength;
  return size < length ? XattrReply::kTooSmall : XattrReply::kValue;
}

}  // namespace frugalfs::fuse
