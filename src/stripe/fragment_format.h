// The fragment object format (doc/fragment-format.md): a 64-byte header, the
// table of XXH3-64 checksums of the payload blocks, then the payload.
//
//   offset 0                 64                      64 + 8 * blocks
//          | header (64 B)   | block checksum table  | payload (fragment_len) |
//
// A range read costs one small read of header + table (cached) and one read
// of the aligned payload blocks it needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "frugalfs/status.h"
#include "frugalfs/stripe.h"

namespace frugalfs::stripe {

inline constexpr uint32_t kFragmentFormatVersion = 1;
inline constexpr size_t kFragmentHeaderSize = 64;
inline constexpr char kFragmentMagic[8] = {'F', 'R', 'U', 'G', 'F', 'R', 'A', 'G'};

struct FragmentHeader {
  uint64_t pack_id = 0;
  uint8_t index = 0;
  uint8_t k = 0;
  uint8_t m = 0;
  uint32_t block_size = 0;
  uint64_t pack_len = 0;
  uint64_t fragment_len = 0;
  uint64_t table_checksum = 0;  // XXH3-64 of the checksum table
};

// Number of payload blocks (the last one may be short).
inline uint64_t block_count(uint64_t fragment_len, uint32_t block_size) {
  return (fragment_len + block_size - 1) / block_size;
}
// Bytes of header + checksum table, i.e. where the payload starts.
inline uint64_t payload_offset(uint64_t fragment_len, uint32_t block_size) {
  return kFragmentHeaderSize + 8 * block_count(fragment_len, block_size);
}
inline uint64_t payload_offset(const PackLayout& layout) {
  return payload_offset(layout.fragment_len, layout.block_size);
}
// The whole object's size.
inline uint64_t fragment_object_size(const PackLayout& layout) {
  return payload_offset(layout) + layout.fragment_len;
}

// Fills in the checksum table and the header of a fragment object whose
// payload (at payload_offset) is already in place. `object` must be exactly
// payload_offset + fragment_len bytes. Returns the table checksum.
uint64_t seal_fragment(const FragmentHeader& fields, std::span<uint8_t> object);

// Parses and checks magic, version and header checksum. EINVAL with a reason.
Result<FragmentHeader> parse_header(std::span<const uint8_t> bytes);

// EINVAL unless the header describes fragment `index` of `layout`.
Status check_header_matches(const FragmentHeader& header, const PackLayout& layout, int index);

// The block checksums of one fragment, known good: their XXH3 matched the
// layout's fragment_checksums entry.
struct ChecksumTable {
  uint64_t table_checksum = 0;
  std::vector<uint64_t> sums;
};

// Parses header + table bytes (as read from the start of the object) and
// validates them against the layout.
Result<std::shared_ptr<const ChecksumTable>> parse_checksum_table(std::span<const uint8_t> bytes,
                                                                  const PackLayout& layout,
                                                                  int index);

// Index of the first bad block in [first_block, first_block + n) of `data`
// (which starts at block first_block and ends at the range's end), or -1.
int64_t first_bad_block(const ChecksumTable& table, uint32_t block_size, uint64_t first_block,
                        std::span<const uint8_t> data);

}  // namespace frugalfs::stripe
