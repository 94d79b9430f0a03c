// Key encoding of the metadata database (doc/metadata-format.md). Every key
// starts with a one-letter table prefix; integers are big-endian so that the
// byte order of keys is the numeric order, and scans come out sorted.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "frugalfs/hash.h"

namespace frugalfs::meta_keys {

// Table prefixes.
inline constexpr char kSuperblock = 'S';
inline constexpr char kCounter = 'N';
inline constexpr char kVolume = 'V';
inline constexpr char kInode = 'I';
inline constexpr char kDentry = 'D';
inline constexpr char kReaddir = 'R';
inline constexpr char kExtent = 'E';
inline constexpr char kChunk = 'C';
inline constexpr char kPack = 'P';
inline constexpr char kXattr = 'X';
inline constexpr char kOrphan = 'O';
inline constexpr char kGarbage = 'G';  // chunks whose refcount is zero
inline constexpr char kBackup = 'B';   // metadata backups on the volumes
inline constexpr char kRetired = 'Q';  // packs out of use, fragments kept until a backup

// Counters ("N" + one letter).
inline constexpr char kCounterInode = 'i';   // next inode number
inline constexpr char kCounterCookie = 'c';  // next readdir cookie
inline constexpr char kCounterPack = 'p';    // reserved pack-id limit

void put_be32(std::string& out, uint32_t v);
void put_be64(std::string& out, uint64_t v);
// Reads a big-endian integer at `pos` of s; s must hold enough bytes.
uint32_t get_be32(std::string_view s, size_t pos);
uint64_t get_be64(std::string_view s, size_t pos);

std::string superblock();
std::string counter(char which);
std::string volume(uint32_t id);
std::string volume_prefix();
std::string inode(uint64_t ino);
std::string inode_prefix();
std::string dentry(uint64_t parent, std::string_view name);
std::string dentry_prefix(uint64_t parent);
std::string readdir(uint64_t parent, uint64_t cookie);
std::string readdir_prefix(uint64_t parent);
// Extents are keyed by their end offset (exclusive).
std::string extent(uint64_t ino, uint64_t end);
std::string extent_prefix(uint64_t ino);
std::string chunk(const Sha256& id);
std::string chunk_prefix();
std::string pack(uint64_t pack_id);
std::string pack_prefix();
std::string backup(uint64_t backup_id);
std::string backup_prefix();
std::string retired(uint64_t pack_id);
std::string retired_prefix();
std::string xattr(uint64_t ino, std::string_view name);
std::string xattr_prefix(uint64_t ino);
std::string orphan(uint64_t ino);
std::string orphan_prefix();
std::string garbage(const Sha256& id);
std::string garbage_prefix();

// Decoders of the variable parts of keys; nullopt when the key is not of
// that table or has the wrong length.
std::optional<uint32_t> parse_volume(std::string_view key);
std::optional<uint64_t> parse_inode(std::string_view key);
std::optional<uint64_t> parse_pack(std::string_view key);
std::optional<uint64_t> parse_backup(std::string_view key);
std::optional<uint64_t> parse_retired(std::string_view key);
std::optional<uint64_t> parse_orphan(std::string_view key);
std::optional<Sha256> parse_chunk(std::string_view key);
std::optional<Sha256> parse_garbage(std::string_view key);
// The end offset of an extent key.
std::optional<uint64_t> parse_extent_end(std::string_view key);
// The name part of a dentry or xattr key ("D"/"X" + u64 + name).
std::optional<std::string_view> parse_name_suffix(std::string_view key, char table);

// The smallest key greater than every key starting with prefix ("" if none:
// the prefix is all 0xff bytes). Used as an iterator upper bound.
std::string prefix_successor(std::string_view prefix);

}  // namespace frugalfs::meta_keys
