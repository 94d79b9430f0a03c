// Value encoding of the metadata database (doc/metadata-format.md): compact
// little-endian binary, each value led by a one-byte record version. Fields
// that are part of the key (inode number, chunk id, pack id, ...) are not
// repeated in the value; decoders take them as arguments.
//
// Decoders validate lengths, versions and enums and return EIO "corrupt
// metadata record <kind>: <why>" instead of reading out of bounds.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "frugalfs/meta.h"
#include "frugalfs/status.h"

namespace frugalfs::meta_records {

// The version byte every record currently starts with.
inline constexpr uint8_t kRecordVersion = 1;

std::string encode_superblock(const Superblock& sb);
Result<Superblock> decode_superblock(std::string_view value);

std::string encode_counter(uint64_t value);
Result<uint64_t> decode_counter(std::string_view value);

std::string encode_volume(const VolumeRecord& volume);
Result<VolumeRecord> decode_volume(uint32_t id, std::string_view value);

std::string encode_inode(const InodeRecord& inode);
Result<InodeRecord> decode_inode(uint64_t ino, std::string_view value);

// "D" value: where a name points (ino, type, cookie).
std::string encode_dentry(const DirEntry& entry);
Result<DirEntry> decode_dentry(std::string_view name, std::string_view value);

// "R" value: the entry at a readdir position (ino, type, name), so a listing
// is one scan with no lookup per entry.
std::string encode_readdir(const DirEntry& entry);
Result<DirEntry> decode_readdir(uint64_t cookie, std::string_view value);

// "E" value; the key holds the end offset.
std::string encode_extent(const Extent& extent);
Result<Extent> decode_extent(uint64_t end, std::string_view value);

std::string encode_chunk(const ChunkRecord& chunk);
Result<ChunkRecord> decode_chunk(const Sha256& id, std::string_view value);

std::string encode_pack(const PackRecord& pack);
Result<PackRecord> decode_pack(uint64_t pack_id, std::string_view value);

std::string encode_xattr(std::string_view value);
Result<std::string> decode_xattr(std::string_view value);

std::string encode_orphan();
Status decode_orphan(std::string_view value);

}  // namespace frugalfs::meta_records
