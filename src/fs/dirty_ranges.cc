#include "fs/dirty_ranges.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace frugalfs {

void DirtyRanges::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  const uint64_t end = offset + data.size();

  // The range the new bytes extend: one that starts before them and reaches
  // at least to their start.
  auto it = ranges_.upper_bound(offset);
  std::vector<uint8_t> merged;
  uint64_t start = offset;
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    const uint64_t prev_end = prev->first + prev->second.size();
    const bool capped_append = prev_end == offset && prev->second.size() + data.size() > kMaxRange;
    if (prev_end >= offset && !capped_append) {
      start = prev->first;
      merged = std::move(prev->second);
      bytes_ -= merged.size();
      it = ranges_.erase(prev);
    }
  }
  uint64_t merged_end = start + merged.size();
  bool placed = false;
  if (merged_end < end) {
    if (offset == merged_end) {  // an append: no zero-fill, one copy
      // The buffer at most doubles (never beyond kMaxRange), so it holds at
      // most twice the bytes it counts: the dirty limit, which counts bytes,
      // then bounds memory too. (Growing a range to kMaxRange at once from
      // 2 MiB on held up to 4x, e.g. for many files of just over 2 MiB.)
      const uint64_t needed = merged.size() + data.size();
      if (merged.capacity() < needed) {
        merged.reserve(std::max<uint64_t>(needed, std::min<uint64_t>(2 * merged.size(), kMaxRange)));
      }
      merged.insert(merged.end(), data.begin(), data.end());
      placed = true;
    } else {
      merged.resize(end - start);
    }
    merged_end = end;
  }
  // Absorb the ranges that start inside or right after the new bytes.
  while (it != ranges_.end() &&
         (it->first < end || (it->first == end && merged.size() + it->second.size() <= kMaxRange))) {
    uint64_t r_end = it->first + it->second.size();
    if (r_end > merged_end) {
      // Keep the part of the older range beyond the new bytes.
      merged.resize(r_end - start);
      uint64_t keep_from = std::max(end, it->first);
      std::memcpy(merged.data() + (keep_from - start), it->second.data() + (keep_from - it->first),
                  r_end - keep_from);
      merged_end = r_end;
    }
    bytes_ -= it->second.size();
    it = ranges_.erase(it);
  }
  if (!placed) std::memcpy(merged.data() + (offset - start), data.data(), data.size());
  bytes_ += merged.size();
  ranges_.emplace(start, std::move(merged));
}

void DirtyRanges::truncate(uint64_t size) {
  auto it = ranges_.lower_bound(size);
  while (it != ranges_.end()) {
    bytes_ -= it->second.size();
    it = ranges_.erase(it);
  }
  if (ranges_.empty()) return;
  auto last = std::prev(ranges_.end());
  uint64_t last_end = last->first + last->second.size();
  if (last_end > size) {
    bytes_ -= last_end - size;
    last->second.resize(size - last->first);
  }
}

void DirtyRanges::overlay(uint64_t offset, std::span<uint8_t> out) const {
  const uint64_t end = offset + out.size();
  auto it = ranges_.upper_bound(offset);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && it->first < end; ++it) {
    uint64_t r_end = it->first + it->second.size();
    uint64_t from = std::max(offset, it->first);
    uint64_t to = std::min(end, r_end);
    if (from >= to) continue;
    std::memcpy(out.data() + (from - offset), it->second.data() + (from - it->first), to - from);
  }
}

void DirtyRanges::merge_under(DirtyRanges&& older) {
  DirtyRanges newer = std::move(*this);
  *this = std::move(older);
  for (const auto& [offset, bytes] : newer.ranges_) write(offset, bytes);
}

}  // namespace frugalfs
