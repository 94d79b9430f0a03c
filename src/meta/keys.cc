#include "meta/keys.h"

#include <cstring>

namespace frugalfs::meta_keys {

void put_be32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_be64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

uint32_t get_be32(std::string_view s, size_t pos) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[pos + i]);
  return v;
}

uint64_t get_be64(std::string_view s, size_t pos) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(s[pos + i]);
  return v;
}

namespace {

std::string table(char t) { return std::string(1, t); }

std::string with_u32(char t, uint32_t v) {
  std::string k = table(t);
  put_be32(k, v);
  return k;
}

std::string with_u64(char t, uint64_t v) {
  std::string k;
  k.reserve(9);
  k.push_back(t);
  put_be64(k, v);
  return k;
}

std::string with_u64_u64(char t, uint64_t a, uint64_t b) {
  std::string k;
  k.reserve(17);
  k.push_back(t);
  put_be64(k, a);
  put_be64(k, b);
  return k;
}

std::string with_u64_name(char t, uint64_t a, std::string_view name) {
  std::string k;
  k.reserve(9 + name.size());
  k.push_back(t);
  put_be64(k, a);
  k.append(name);
  return k;
}

std::optional<uint64_t> parse_u64(std::string_view key, char t) {
  if (key.size() != 9 || key[0] != t) return std::nullopt;
  return get_be64(key, 1);
}

}  // namespace

std::string superblock() { return table(kSuperblock); }
std::string counter(char which) { return std::string{kCounter, which}; }
std::string volume(uint32_t id) { return with_u32(kVolume, id); }
std::string volume_prefix() { return table(kVolume); }
std::string inode(uint64_t ino) { return with_u64(kInode, ino); }
std::string inode_prefix() { return table(kInode); }
std::string dentry(uint64_t parent, std::string_view name) { return with_u64_name(kDentry, parent, name); }
std::string dentry_prefix(uint64_t parent) { return with_u64(kDentry, parent); }
std::string readdir(uint64_t parent, uint64_t cookie) { return with_u64_u64(kReaddir, parent, cookie); }
std::string readdir_prefix(uint64_t parent) { return with_u64(kReaddir, parent); }
std::string extent(uint64_t ino, uint64_t end) { return with_u64_u64(kExtent, ino, end); }
std::string extent_prefix(uint64_t ino) { return with_u64(kExtent, ino); }

std::string garbage(const Sha256& id) {
  std::string k = table(kGarbage);
  k.append(reinterpret_cast<const char*>(id.data()), id.size());
  return k;
}

std::string garbage_prefix() { return table(kGarbage); }

std::string chunk(const Sha256& id) {
  std::string k = table(kChunk);
  k.append(reinterpret_cast<const char*>(id.data()), id.size());
  return k;
}

std::string chunk_prefix() { return table(kChunk); }
std::string pack(uint64_t pack_id) { return with_u64(kPack, pack_id); }
std::string pack_prefix() { return table(kPack); }
std::string backup(uint64_t backup_id) { return with_u64(kBackup, backup_id); }
std::string backup_prefix() { return table(kBackup); }
std::string retired(uint64_t pack_id) { return with_u64(kRetired, pack_id); }
std::string retired_prefix() { return table(kRetired); }
std::string xattr(uint64_t ino, std::string_view name) { return with_u64_name(kXattr, ino, name); }
std::string xattr_prefix(uint64_t ino) { return with_u64(kXattr, ino); }
std::string orphan(uint64_t ino) { return with_u64(kOrphan, ino); }
std::string orphan_prefix() { return table(kOrphan); }

std::optional<uint32_t> parse_volume(std::string_view key) {
  if (key.size() != 5 || key[0] != kVolume) return std::nullopt;
  return get_be32(key, 1);
}

std::optional<uint64_t> parse_inode(std::string_view key) { return parse_u64(key, kInode); }
std::optional<uint64_t> parse_pack(std::string_view key) { return parse_u64(key, kPack); }
std::optional<uint64_t> parse_backup(std::string_view key) { return parse_u64(key, kBackup); }
std::optional<uint64_t> parse_retired(std::string_view key) { return parse_u64(key, kRetired); }
std::optional<uint64_t> parse_orphan(std::string_view key) { return parse_u64(key, kOrphan); }

static std::optional<Sha256> parse_sha(std::string_view key, char t) {
  Sha256 id;
  if (key.size() != 1 + id.size() || key[0] != t) return std::nullopt;
  std::memcpy(id.data(), key.data() + 1, id.size());
  return id;
}

std::optional<Sha256> parse_chunk(std::string_view key) { return parse_sha(key, kChunk); }
std::optional<Sha256> parse_garbage(std::string_view key) { return parse_sha(key, kGarbage); }

std::optional<uint64_t> parse_extent_end(std::string_view key) {
  if (key.size() != 17 || key[0] != kExtent) return std::nullopt;
  return get_be64(key, 9);
}

std::optional<std::string_view> parse_name_suffix(std::string_view key, char t) {
  if (key.size() < 9 || key[0] != t) return std::nullopt;
  return key.substr(9);
}

std::string prefix_successor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<uint8_t>(s.back()) == 0xff) s.pop_back();
  if (!s.empty()) s.back() = static_cast<char>(static_cast<uint8_t>(s.back()) + 1);
  return s;
}

}  // namespace frugalfs::meta_keys
