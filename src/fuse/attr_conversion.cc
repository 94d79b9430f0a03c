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

namespace frugalfs::fuse {

std::optional<uint32_t> acl_permission_bits(std::string_view value) {
  // <linux/posix_acl_xattr.h>: a little-endian u32 version (2), then entries
  // of {u16 tag, u16 perm, u32 id}.
  constexpr uint32_t kVersion = 2;
  constexpr uint16_t kUserObj = 0x01, kGroupObj = 0x04, kMask = 0x10, kOther = 0x20;
  auto le16 = [&](size_t at) {
    return static_cast<uint16_t>(static_cast<uint8_t>(value[at]) |
                                 static_cast<uint8_t>(value[at + 1]) << 8);
  };
  if (value.size() < 4 || (value.size() - 4) % 8 != 0) return std::nullopt;
  if ((le16(0) | static_cast<uint32_t>(le16(2)) << 16) != kVersion) return std::nullopt;
  std::optional<uint32_t> user, group, mask, other;
  for (size_t at = 4; at < value.size(); at += 8) {
    const uint16_t tag = le16(at);
    const uint32_t perm = le16(at + 2) & 7u;
    if (tag == kUserObj) user = perm;
    if (tag == kGroupObj) group = perm;
    if (tag == kMask) mask = perm;
    if (tag == kOther) other = perm;
  }
  if (!user || !group || !other) return std::nullopt;
  return *user << 6 | (mask ? *mask : *group) << 3 | *other;
}

}  // namespace frugalfs::fuse
