#include "fs/posix_acl.h"

namespace frugalfs {

namespace {

constexpr uint32_t kVersion = 2;
constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08, kMask = 0x10,
                   kOther = 0x20;

uint32_t le32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return u[0] | (u[1] << 8) | (u[2] << 16) | (uint32_t{u[3]} << 24);
}
uint16_t le16(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return static_cast<uint16_t>(u[0] | (u[1] << 8));
}
void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void put16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v));
  s.push_back(static_cast<char>(v >> 8));
}

AclEntry* find(std::vector<AclEntry>& acl, uint16_t tag) {
  for (AclEntry& e : acl) {
    if (e.tag == tag) return &e;
  }
  return nullptr;
}

}  // namespace

Result<std::vector<AclEntry>> parse_acl(std::string_view value) {
  if (value.size() < 4 || (value.size() - 4) % 8 != 0 || le32(value.data()) != kVersion) {
    return Errorf(EINVAL, "malformed POSIX ACL");
  }
  std::vector<AclEntry> acl;
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  for (size_t pos = 4; pos < value.size(); pos += 8) {
    AclEntry e{le16(value.data() + pos), le16(value.data() + pos + 2), le32(value.data() + pos + 4)};
    if (e.perm & ~7u) return Errorf(EINVAL, "malformed POSIX ACL permission");
    switch (e.tag) {
      case kUserObj: ++user_obj; break;
      case kGroupObj: ++group_obj; break;
      case kOther: ++other; break;
      case kMask: ++mask; break;
      case kUser:
      case kGroup: ++named; break;
      default: return Errorf(EINVAL, "malformed POSIX ACL tag {}", e.tag);
    }
    acl.push_back(e);
  }
  if (user_obj != 1 || group_obj != 1 || other != 1 || mask > 1 || (named > 0 && mask == 0)) {
    return Errorf(EINVAL, "POSIX ACL lacks required entries");
  }
  return acl;
}

std::string encode_acl(const std::vector<AclEntry>& acl) {
  std::string out;
  put32(out, kVersion);
  for (const AclEntry& e : acl) {
    put16(out, e.tag);
    put16(out, e.perm);
    put32(out, e.id);
  }
  return out;
}

bool acl_is_minimal(const std::vector<AclEntry>& acl) {
  for (const AclEntry& e : acl) {
    if (e.tag == kUser || e.tag == kGroup || e.tag == kMask) return false;
  }
  return true;
}

uint32_t acl_mode_bits(const std::vector<AclEntry>& acl) {
  uint32_t owner = 0, group = 0, other = 0, mask = 0;
  bool has_mask = false;
  for (const AclEntry& e : acl) {
    if (e.tag == kUserObj) owner = e.perm;
    if (e.tag == kGroupObj) group = e.perm;
    if (e.tag == kOther) other = e.perm;
    if (e.tag == kMask) {
      mask = e.perm;
      has_mask = true;
    }
  }
  return (owner << 6) | ((has_mask ? mask : group) << 3) | other;
}

void acl_chmod(std::vector<AclEntry>& acl, uint32_t mode) {
  if (AclEntry* e = find(acl, kUserObj)) e->perm = (mode >> 6) & 7;
  AclEntry* mask = find(acl, kMask);
  AclEntry* group = mask ? mask : find(acl, kGroupObj);
  if (group) group->perm = (mode >> 3) & 7;
  if (AclEntry* e = find(acl, kOther)) e->perm = mode & 7;
}

void acl_inherit(std::vector<AclEntry>& acl, uint32_t* mode) {
  uint32_t m = *mode;
  AclEntry* mask = find(acl, kMask);
  for (AclEntry& e : acl) {
    if (e.tag == kUserObj) {
      e.perm &= (m >> 6) & 7;
      m &= ~(7u << 6) | (uint32_t{e.perm} << 6);
    } else if (e.tag == kOther) {
      e.perm &= m & 7;
      m &= ~7u | e.perm;
    } else if (e.tag == (mask ? kMask : kGroupObj)) {
      e.perm &= (m >> 3) & 7;
      m &= ~(7u << 3) | (uint32_t{e.perm} << 3);
    }
  }
  *mode = m;
}

}  // namespace frugalfs
