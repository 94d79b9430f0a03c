// Extended attributes, stored whole in the metadata database.

#include <sys/stat.h>
#include <sys/xattr.h>

#include "fs/fs_state.h"
#include "fs/posix_acl.h"

namespace frugalfs {

namespace {

constexpr size_t kMaxValue = 64 * 1024;

Status check_xattr_name(std::string_view name) {
  if (name.empty()) return Errorf(EINVAL, "empty xattr name");
  if (name.size() > 255) return Errorf(ERANGE, "xattr name longer than 255 bytes");
  for (std::string_view ns : {"user.", "security.", "trusted.", "system.posix_acl_access", "system.posix_acl_default"}) {
    if (name.substr(0, ns.size()) == ns) return Status::Ok();
  }
  return Errorf(EOPNOTSUPP, "xattr namespace of '{}' is not supported", name);
}

}  // namespace

Status FileSystem::setxattr(uint64_t ino, std::string_view name, std::span<const uint8_t> value,
                            int flags) {
  FRUGAL_TRY(check_xattr_name(name));
  if (value.size() > kMaxValue) return Errorf(E2BIG, "xattr value larger than 64 KiB");
  auto txn = state_->meta->begin();
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, txn->get_inode(ino));
  auto existing = txn->get_xattr(ino, name);
  if (!existing.ok() && existing.status().code() != ENODATA) return existing.status();
  if ((flags & XATTR_CREATE) && existing.ok()) return Errorf(EEXIST, "xattr '{}' exists", name);
  if ((flags & XATTR_REPLACE) && !existing.ok()) return Errorf(ENODATA, "no xattr '{}'", name);
  std::string_view bytes(reinterpret_cast<const char*>(value.data()), value.size());
  if (name == kAclAccessXattr) {
    // The mode bits follow the ACL; an ACL that says no more than the mode
    // is not stored (as on ext4).
    FRUGAL_ASSIGN_OR_RETURN(std::vector<AclEntry> acl, parse_acl(bytes));
    r.mode = (r.mode & ~0777u) | acl_mode_bits(acl);
    if (acl_is_minimal(acl)) {
      txn->delete_xattr(ino, name);
    } else {
      txn->put_xattr(ino, name, bytes);
    }
  } else if (name == kAclDefaultXattr) {
    if (!S_ISDIR(r.mode)) return Errorf(EACCES, "default ACLs are for directories only");
    FRUGAL_ASSIGN_OR_RETURN(std::vector<AclEntry> acl, parse_acl(bytes));
    (void)acl;
    txn->put_xattr(ino, name, bytes);
  } else {
    txn->put_xattr(ino, name, bytes);
  }
  r.ctime_ns = fs_now_ns();
  txn->put_inode(r);
  return txn->commit();
}

Result<std::string> FileSystem::getxattr(uint64_t ino, std::string_view name) {
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, state_->meta->get_inode(ino));
  (void)r;
  return state_->meta->get_xattr(ino, name);
}

Result<std::vector<std::string>> FileSystem::listxattr(uint64_t ino) {
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, state_->meta->get_inode(ino));
  (void)r;
  std::vector<std::string> names;
  FRUGAL_TRY(state_->meta->list_xattrs(ino, [&](std::string_view name, std::string_view) {
    names.emplace_back(name);
    return true;
  }));
  return names;
}

Status FileSystem::removexattr(uint64_t ino, std::string_view name) {
  auto txn = state_->meta->begin();
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, txn->get_inode(ino));
  auto existing = txn->get_xattr(ino, name);
  if (!existing.ok()) return existing.status();
  txn->delete_xattr(ino, name);
  r.ctime_ns = fs_now_ns();
  txn->put_inode(r);
  return txn->commit();
}

}  // namespace frugalfs
