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
#include <future>
#include <optional>
#include <system_error>
#include <vector>

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

// Chunk lengths from their end offsets.
std::vector<size_t> lengths_from_ends(const std::vector<size_t>& ends) {
  std::vector<size_t> lengths(ends.size());
  for (size_t i = 0; i < ends.size(); ++i) lengths[i] = ends[i] - (i == 0 ? 0 : ends[i - 1]);
  return lengths;
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

// Serial cut_all from `from`, appending chunk end offsets (relative to data)
// to ends.
void FastCdc::cut_ends(std::span<const uint8_t> data, size_t from, bool final,
                       std::vector<size_t>& ends) const {
  while (from < data.size()) {
    const Cut c = cut(data.subspan(from));
    if (!c.natural && !final) break;
    from += c.length;
    ends.push_back(from);
  }
}

// Two threads, same answer: a helper cuts the second half as if a chunk
// began at its first byte, while this thread cuts from the start. A cut
// depends only on the bytes since the previous cut, so once this thread ends
// a chunk exactly where the helper ended one (or where it started), every
// later cut is the helper's. This thread goes on past the middle until that
// happens, usually within a chunk or two; if it never does, its own cuts are
// the answer and the helper's work is wasted, never wrong.
std::vector<size_t> FastCdc::cut_all(std::span<const uint8_t> data, bool final) const {
  constexpr size_t kParallelFrom = size_t{1} << 20;
  std::vector<size_t> ends;
  const size_t half = data.size() / 2;
  std::future<std::vector<size_t>> second;
  if (data.size() >= kParallelFrom && data.size() >= 8 * size_t{params_.max_size}) {
    try {
      second = std::async(std::launch::async, [this, data, half, final] {
        std::vector<size_t> e;
        cut_ends(data, half, final, e);
        return e;
      });
    } catch (const std::system_error&) {
      // No thread: cut serially below.
    }
  }
  if (!second.valid()) {
    cut_ends(data, 0, final, ends);
    return lengths_from_ends(ends);
  }
  std::vector<size_t> helper;  // fetched when this thread reaches the middle
  // The index of the first of the helper's cuts to take when this thread has
  // cut at `at` (at or past the middle), if the two have met there.
  auto meet = [&](size_t at) -> std::optional<size_t> {
    if (at == half) return 0;
    auto it = std::lower_bound(helper.begin(), helper.end(), at);
    if (it == helper.end() || *it != at) return std::nullopt;
    return static_cast<size_t>(it - helper.begin()) + 1;
  };
  size_t from = 0;
  for (;;) {
    if (from >= half) {
      if (second.valid()) helper = second.get();
      if (const auto first = meet(from)) {
        ends.insert(ends.end(), helper.begin() + static_cast<std::ptrdiff_t>(*first), helper.end());
        break;
      }
    }
    if (from >= data.size()) break;
    const Cut c = cut(data.subspan(from));
    if (!c.natural && !final) break;
    from += c.length;
    ends.push_back(from);
  }
  return lengths_from_ends(ends);
}

}  // namespace frugalfs
