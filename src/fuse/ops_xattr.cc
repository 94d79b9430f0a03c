// Extended attributes. getxattr and listxattr follow getxattr(2): size 0 asks
// for the length, a buffer too small is ERANGE.
#include <optional>
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

// The kernel stores ACLs as plain xattrs on a FUSE mount without
// FUSE_CAP_POSIX_ACL; what it does not do is make the mode follow a new
// access ACL, as native filesystems do (getfacl, ls -l and rsync -A rely on
// it). Permission checks still use the mode bits only. Sets *changed when
// the mode changed.
Status sync_mode_with_acl(FileSystem& fs, fuse_ino_t ino, std::string_view acl, bool* changed) {
  std::optional<uint32_t> bits = acl_permission_bits(acl);
  if (!bits) return Status::Ok();
  FRUGAL_ASSIGN_OR_RETURN(Attr attr, fs.getattr(ino));
  if ((attr.mode & 0777) == *bits) return Status::Ok();
  SetAttrRequest request;
  request.mode = (attr.mode & 07000) | *bits;
  *changed = true;
  return fs.setattr(ino, request).status();
}

}  // namespace

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                 size_t size, int flags) {
  guarded(req, "setxattr", [&] {
    FileSystem& fs = fs_of(req);
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(value), size);
    Status status = fs.setxattr(ino, name, bytes, flags);
    bool mode_changed = false;
    if (status.ok() && name == kAccessAclXattr) {
      status = sync_mode_with_acl(fs, ino, {value, size}, &mode_changed);
    }
    fuse_session* session = context_of(req).session;
    reply_status(req, status);
    // The kernel still caches the old mode; drop it (attributes only).
    if (mode_changed) fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
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
