// POSIX ACLs in their xattr form (system.posix_acl_access / _default), as the
// kernel passes them with FUSE_CAP_POSIX_ACL: the kernel enforces them, the
// filesystem stores them, keeps the mode bits in sync and inherits default
// ACLs on create.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/status.h"

namespace frugalfs {

inline constexpr std::string_view kAclAccessXattr = "system.posix_acl_access";
inline constexpr std::string_view kAclDefaultXattr = "system.posix_acl_default";

struct AclEntry {
  uint16_t tag = 0;   // ACL_USER_OBJ 0x01, USER 0x02, GROUP_OBJ 0x04, GROUP 0x08, MASK 0x10, OTHER 0x20
  uint16_t perm = 0;  // rwx bits
  uint32_t id = 0;
};

// EINVAL unless the value is a well-formed ACL with the three required entries.
Result<std::vector<AclEntry>> parse_acl(std::string_view value);
std::string encode_acl(const std::vector<AclEntry>& acl);

// True when the ACL says nothing beyond the mode bits (owner, group, other).
bool acl_is_minimal(const std::vector<AclEntry>& acl);
// The permission bits (rwxrwxrwx) an access ACL implies.
uint32_t acl_mode_bits(const std::vector<AclEntry>& acl);
// chmod of a file with an extended ACL: owner, mask (or group) and other
// entries take the new mode's bits.
void acl_chmod(std::vector<AclEntry>& acl, uint32_t mode);
// A new inode's access ACL from its parent's default ACL: the entries are
// limited by the requested mode, and the mode by the entries.
void acl_inherit(std::vector<AclEntry>& acl, uint32_t* mode);

}  // namespace frugalfs
