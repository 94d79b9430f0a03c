// FastCDC with normalized chunking (Xia et al., "FastCDC: a Fast and
// Efficient Content-Defined Chunking Approach for Data Deduplication",
// USENIX ATC 2016), normalization level 2. The gear table and the masks are
// part of the on-disk format: they decide where chunks end and so what
// dedups. See doc/chunking.md before changing anything here.

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "frugalfs/chunking.h"

namespace frugalfs {
namespace {

// splitmix64 (Steele, Lea, Flood 2014), the reference constants. The gear
// table is its first 256 outputs from kGearSeed; the seed is "frugalfs" in
// ASCII, read big-endian. Changing either changes every chunk boundary.
constexpr uint64_t kGearSeed = 0x66727567616c6673ULL;

constexpr uint64_t splitmix64_next(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr std::array<uint64_t, 256> make_gear_table() {
  std::array<uint64_t, 256> table{};
  uint64_t state = kGearSeed;
  for (uint64_t& entry : table) entry = splitmix64_next(state);
  return table;
}

constexpr std::array<uint64_t, 256> kGear = make_gear_table();

// Pins the table (and so the format) at compile time: a change to the
// generator or the seed fails the build instead of silently re-chunking.
static_assert(kGear[0] == 0xee4732df5eadab97ULL, "gear table changed: on-disk format");
static_assert(kGear[255] == 0xc719d1559f67a57cULL, "gear table changed: on-disk format");

// A mask of the `bits` most significant bits. The gear hash shifts left, so
// its high bits depend on the last 64 bytes while its low bits only see the
// last few; testing high bits gives every cut decision a 64-byte window.
constexpr uint64_t high_bits_mask(int bits) {
  bits = std::clamp(bits, 1, 63);
  return ~uint64_t{0} << (64 - bits);
}

}  // namespace

// params must be valid (asserted); invalid ones still chunk within
// [min, max] without undefined behaviour, just not with the intended average.
FastCdc::FastCdc(ChunkerParams params) : params_(params) {
  assert(params_.validate().ok());
  // Normalization level 2: 2 bits stricter than log2(avg) before avg_size,
  // 2 bits looser after it, which concentrates chunk sizes around avg_size.
  const int avg_bits = std::bit_width(params_.avg_size) - 1;
  mask_small_ = high_bits_mask(avg_bits + 2);
  mask_large_ = high_bits_mask(avg_bits - 2);
}

Cut FastCdc::cut(std::span<const uint8_t> data) const {
  const size_t n = data.size();
  const size_t min = params_.min_size;
  if (n <= min) return {n, false};
  const size_t max = params_.max_size;
  const size_t end = std::min(n, max);
  const size_t normal = std::min(end, size_t{params_.avg_size});
  const uint8_t* p = data.data();
  const uint64_t mask_small = mask_small_;
  const uint64_t mask_large = mask_large_;

  // Cut-point skipping: the hash starts fresh at min_size, so a boundary
  // depends only on the bytes since the previous one. The byte that makes
  // the hash match ends the chunk.
  uint64_t fp = 0;
  size_t i = min;
  for (; i < normal; ++i) {
    fp = (fp << 1) + kGear[p[i]];
    if ((fp & mask_small) == 0) return {i + 1, true};
  }
  for (; i < end; ++i) {
    fp = (fp << 1) + kGear[p[i]];
    if ((fp & mask_large) == 0) return {i + 1, true};
  }
  if (n >= max) return {max, true};
  return {n, false};
}

}  // namespace frugalfs
