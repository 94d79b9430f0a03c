// The bytes written to one file that have not reached the volumes yet: a set
// of non-overlapping byte ranges, newest bytes winning. Touching ranges are
// merged up to kMaxRange bytes, so a long sequential write is kept in pieces
// of that size instead of one ever-growing (and ever re-allocated) buffer.
//
// Thread-safety: none; the owning InodeState's mutex guards it.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace frugalfs {

class DirtyRanges {
 public:
  static constexpr uint64_t kMaxRange = 8 << 20;
  using Map = std::map<uint64_t, std::vector<uint8_t>>;  // offset -> bytes

  // Records data at offset, replacing older bytes there; ranges that touch
  // are merged into one.
  void write(uint64_t offset, std::span<const uint8_t> data);
  // Drops every byte at or beyond size.
  void truncate(uint64_t size);
  // Copies the recorded bytes that fall in [offset, offset + out.size())
  // into out, leaving the other bytes of out alone.
  void overlay(uint64_t offset, std::span<uint8_t> out) const;
  // Adds the bytes of `older` wherever this holds none (used to put back
  // data whose flush failed, under writes that came since).
  void merge_under(DirtyRanges&& older);

  uint64_t bytes() const { return bytes_; }
  bool empty() const { return ranges_.empty(); }
  const Map& ranges() const { return ranges_; }
  void clear() {
    ranges_.clear();
    bytes_ = 0;
  }

 private:
  Map ranges_;
  uint64_t bytes_ = 0;
};

}  // namespace frugalfs
