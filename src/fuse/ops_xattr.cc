// Extended attributes. getxattr and listxattr follow getxattr(2): size 0 asks
// for the length, a buffer too small is ERANGE.
#include <span>
#include <string>

#include "fuse/attr_conversion.h"
#include "fuse/ops.h"

namespace frugalfs::fuse {

namespace {

void reply_sized(fuse_req_t req, size_t size, const std::string& value) {
  switch (xattr_reply_kind(size, value.size())) {
    case XattrReply::kLength:
      fuse_reply_xattr(req, value.size());
      return;
    case XattrReply::kTooSmall:
      fuse_reply_err(req, ERANGE);
      return;
    case XattrReply::kValue:
      fuse_reply_buf(req, value.data(), value.size());
      return;
  }
}

}  // namespace

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                 size_t size, int flags) {
  guarded(req, "setxattr", [&] {
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(value), size);
    reply_status(req, fs_of(req).setxattr(ino, name, bytes, flags));
  });
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, "getxattr", [&] {
    Result<std::string> value = fs_of(req).getxattr(ino, name);
    if (!value.ok()) return reply_status(req, value.status());
    reply_sized(req, size, *value);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, "listxattr", [&] {
    Result<std::vector<std::string>> names = fs_of(req).listxattr(ino);
    if (!names.ok()) return reply_status(req, names.status());
    reply_sized(req, size, join_xattr_names(*names));
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  guarded(req, "removexattr", [&] { reply_status(req, fs_of(req).removexattr(ino, name)); });
}

}  // namespace frugalfs::fuse
