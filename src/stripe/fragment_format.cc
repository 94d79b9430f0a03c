#include "stripe/fragment_format.h"

#include <algorithm>
#include <cstring>

#include "frugalfs/hash.h"

namespace frugalfs::stripe {
namespace {

// Header field offsets; all integers are little-endian.
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 8;
constexpr size_t kOffHeaderSize = 12;
constexpr size_t kOffPackId = 16;
constexpr size_t kOffIndex = 24;
constexpr size_t kOffK = 25;
constexpr size_t kOffM = 26;
constexpr size_t kOffReserved = 27;
constexpr size_t kOffBlockSize = 28;
constexpr size_t kOffPackLen = 32;
constexpr size_t kOffFragmentLen = 40;
constexpr size_t kOffTableChecksum = 48;
constexpr size_t kOffHeaderChecksum = 56;

void put_le(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

uint64_t block_checksum(const uint8_t* p, size_t n) { return xxh3_64({p, n}); }

}  // namespace

uint64_t seal_fragment(const FragmentHeader& fields, std::span<uint8_t> object) {
  const uint64_t blocks = block_count(fields.fragment_len, fields.block_size);
  const uint64_t payload = kFragmentHeaderSize + 8 * blocks;
  assert(object.size() == payload + fields.fragment_len);
  uint8_t* table = object.data() + kFragmentHeaderSize;
  const uint8_t* data = object.data() + payload;
  for (uint64_t b = 0; b < blocks; ++b) {
    uint64_t start = b * fields.block_size;
    uint64_t n = std::min<uint64_t>(fields.block_size, fields.fragment_len - start);
    put_le(table + 8 * b, block_checksum(data + start, n), 8);
  }
  const uint64_t table_checksum = xxh3_64({table, 8 * blocks});

  uint8_t* h = object.data();
  std::memset(h, 0, kFragmentHeaderSize);
  std::memcpy(h + kOffMagic, kFragmentMagic, sizeof kFragmentMagic);
  put_le(h + kOffVersion, kFragmentFormatVersion, 4);
  put_le(h + kOffHeaderSize, kFragmentHeaderSize, 4);
  put_le(h + kOffPackId, fields.pack_id, 8);
  h[kOffIndex] = fields.index;
  h[kOffK] = fields.k;
  h[kOffM] = fields.m;
  h[kOffReserved] = 0;
  put_le(h + kOffBlockSize, fields.block_size, 4);
  put_le(h + kOffPackLen, fields.pack_len, 8);
  put_le(h + kOffFragmentLen, fields.fragment_len, 8);
  put_le(h + kOffTableChecksum, table_checksum, 8);
  put_le(h + kOffHeaderChecksum, xxh3_64({h, kOffHeaderChecksum}), 8);
  return table_checksum;
}

Result<FragmentHeader> parse_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < kFragmentHeaderSize) {
    return Errorf(EINVAL, "fragment header truncated ({} of {} bytes)", bytes.size(),
                  kFragmentHeaderSize);
  }
  const uint8_t* h = bytes.data();
  if (std::memcmp(h + kOffMagic, kFragmentMagic, sizeof kFragmentMagic) != 0) {
    return Status::Error(EINVAL, "not a frugalfs fragment (bad magic)");
  }
  if (get_le(h + kOffHeaderChecksum, 8) != xxh3_64({h, kOffHeaderChecksum})) {
    return Status::Error(EINVAL, "fragment header checksum mismatch");
  }
  uint64_t version = get_le(h + kOffVersion, 4);
  if (version != kFragmentFormatVersion) {
    return Errorf(EINVAL, "unsupported fragment format version {}", version);
  }
  if (get_le(h + kOffHeaderSize, 4) != kFragmentHeaderSize) {
    return Errorf(EINVAL, "unexpected fragment header size {}", get_le(h + kOffHeaderSize, 4));
  }
  FragmentHeader out;
  out.pack_id = get_le(h + kOffPackId, 8);
  out.index = h[kOffIndex];
  out.k = h[kOffK];
  out.m = h[kOffM];
  out.block_size = static_cast<uint32_t>(get_le(h + kOffBlockSize, 4));
  out.pack_len = get_le(h + kOffPackLen, 8);
  out.fragment_len = get_le(h + kOffFragmentLen, 8);
  out.table_checksum = get_le(h + kOffTableChecksum, 8);
  if (out.block_size == 0) return Status::Error(EINVAL, "fragment header has block size 0");
  return out;
}

Status check_header_matches(const FragmentHeader& h, const PackLayout& layout, int index) {
  if (h.pack_id != layout.pack_id || h.index != index || h.k != layout.k || h.m != layout.m ||
      h.block_size != layout.block_size || h.pack_len != layout.pack_len ||
      h.fragment_len != layout.fragment_len) {
    return Errorf(EINVAL,
                  "fragment header describes pack {:016x} fragment {} (k={} m={} block={} "
                  "pack_len={} fragment_len={}), expected pack {:016x} fragment {} (k={} m={} "
                  "block={} pack_len={} fragment_len={})",
                  h.pack_id, h.index, h.k, h.m, h.block_size, h.pack_len, h.fragment_len,
                  layout.pack_id, index, layout.k, layout.m, layout.block_size, layout.pack_len,
                  layout.fragment_len);
  }
  return Status::Ok();
}

Result<std::shared_ptr<const ChecksumTable>> parse_checksum_table(std::span<const uint8_t> bytes,
                                                                  const PackLayout& layout,
                                                                  int index) {
  FRUGAL_ASSIGN_OR_RETURN(FragmentHeader header, parse_header(bytes));
  FRUGAL_TRY(check_header_matches(header, layout, index));
  const uint64_t blocks = block_count(layout.fragment_len, layout.block_size);
  if (bytes.size() < kFragmentHeaderSize + 8 * blocks) {
    return Errorf(EINVAL, "fragment checksum table truncated ({} of {} bytes)",
                  bytes.size() - kFragmentHeaderSize, 8 * blocks);
  }
  const uint8_t* table = bytes.data() + kFragmentHeaderSize;
  const uint64_t sum = xxh3_64({table, 8 * blocks});
  if (sum != header.table_checksum) {
    return Status::Error(EINVAL, "fragment checksum table does not match its header");
  }
  if (sum != layout.fragment_checksums[static_cast<size_t>(index)]) {
    return Status::Error(EINVAL, "fragment checksum table does not match the pack record");
  }
  auto out = std::make_shared<ChecksumTable>();
  out->table_checksum = sum;
  out->sums.resize(blocks);
  for (uint64_t b = 0; b < blocks; ++b) out->sums[b] = get_le(table + 8 * b, 8);
  return std::shared_ptr<const ChecksumTable>(std::move(out));
}

int64_t first_bad_block(const ChecksumTable& table, uint32_t block_size, uint64_t first_block,
                        std::span<const uint8_t> data) {
  uint64_t b = first_block;
  for (size_t off = 0; off < data.size(); off += block_size, ++b) {
    size_t n = std::min<size_t>(block_size, data.size() - off);
    if (b >= table.sums.size() || block_checksum(data.data() + off, n) != table.sums[b]) {
      return static_cast<int64_t>(b);
    }
  }
  return -1;
}

}  // namespace frugalfs::stripe
