// Pure conversions between frugalfs's fs types and what libfuse speaks
// (struct stat, FUSE_SET_ATTR_* bits, directory entry types, xattr name
// lists). Kept apart from the callbacks so they are unit-testable without a
// mount.
//
// Thread-safety: free functions without state.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "frugalfs/fs.h"

namespace frugalfs::fuse {

// Attribute and entry timeouts given to the kernel, in seconds.
inline constexpr double kAttrTimeout = 1.0;
inline constexpr double kEntryTimeout = 1.0;
// st_blksize reported for every inode: the preferred I/O size.
inline constexpr blksize_t kPreferredBlockSize = 4096;

struct stat to_stat(const Attr& attr);

// The fields of a FUSE setattr request: `to_set` holds FUSE_SET_ATTR_* bits,
// `attr` the new values. ATIME_NOW/MTIME_NOW become tv_nsec = UTIME_NOW;
// FUSE_SET_ATTR_CTIME is ignored (the fs sets ctime itself).
SetAttrRequest to_setattr_request(const struct stat& attr, int to_set);

// The st_mode to give fuse_add_direntry for an entry of the given type, which
// the fs reports either as a DT_* value or as S_IFMT mode bits.
uint32_t dirent_mode(uint32_t type);

// "name1\0name2\0...", the listxattr(2) wire format.
std::string join_xattr_names(const std::vector<std::string>& names);

// How to answer getxattr/listxattr for a value of `length` bytes when the
// caller's buffer holds `size` bytes: size 0 asks for the length only.
enum class XattrReply { kLength, kValue, kTooSmall };
XattrReply xattr_reply_kind(size_t size, size_t length);

}  // namespace frugalfs::fuse
