#include "fs/dirty_ranges.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

using namespace frugalfs;

namespace {

std::vector<uint8_t> bytes_of(size_t n, uint8_t first) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(first + i);
  return v;
}

// A plain byte array with a "written" flag per byte: the reference model.
struct Reference {
  std::vector<uint8_t> data;
  std::vector<bool> set;

  explicit Reference(size_t n) : data(n, 0), set(n, false) {}
  void write(uint64_t offset, std::span<const uint8_t> bytes) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      data[offset + i] = bytes[i];
      set[offset + i] = true;
    }
  }
  void truncate(uint64_t size) {
    for (uint64_t i = size; i < set.size(); ++i) set[i] = false;
  }
  uint64_t count() const {
    uint64_t n = 0;
    for (bool b : set) n += b;
    return n;
  }
};

// Checks the structural invariants and that overlay() equals the reference
// over the whole space (with a sentinel under the unset bytes).
void check_against(const DirtyRanges& d, const Reference& ref) {
  uint64_t sum = 0;
  uint64_t prev_end = 0;
  uint64_t prev_size = 0;
  bool first = true;
  for (const auto& [offset, bytes] : d.ranges()) {
    REQUIRE(!bytes.empty());
    if (!first) {
      REQUIRE_MESSAGE(offset >= prev_end, "ranges overlap at " << offset);
      // Touching ranges are merged unless the result would exceed kMaxRange.
      if (offset == prev_end) {
        REQUIRE_MESSAGE(prev_size + bytes.size() > DirtyRanges::kMaxRange,
                        "touching ranges left unmerged at " << offset);
      }
    }
    first = false;
    prev_end = offset + bytes.size();
    prev_size = bytes.size();
    REQUIRE(prev_end <= ref.data.size());
    sum += bytes.size();
  }
  REQUIRE(d.bytes() == sum);
  REQUIRE(d.bytes() == ref.count());
  REQUIRE(d.empty() == (sum == 0));
  for (uint8_t sentinel : {uint8_t{0x00}, uint8_t{0xa5}}) {
    std::vector<uint8_t> out(ref.data.size(), sentinel);
    d.overlay(0, out);
    size_t bad = out.size();
    for (size_t i = 0; i < out.size(); ++i) {
      const uint8_t want = ref.set[i] ? ref.data[i] : sentinel;
      if (out[i] != want) {
        bad = i;
        break;
      }
    }
    REQUIRE_MESSAGE(bad == out.size(), "overlay differs from the model at byte " << bad);
  }
}

}  // namespace

TEST_CASE("DirtyRanges: randomized model test against a byte array") {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 8; ++round) {
    const size_t space = round < 4 ? 300 : 5000;  // small spaces make many collisions
    DirtyRanges d;
    Reference ref(space);
    for (int op = 0; op < 1500; ++op) {
      const uint64_t kind = rng() % 20;
      if (kind == 0) {
        const uint64_t size = rng() % (space + 1);
        d.truncate(size);
        ref.truncate(size);
      } else {
        const uint64_t offset = rng() % space;
        const uint64_t max_len = std::min<uint64_t>(space - offset, kind < 15 ? 40 : space / 3);
        const uint64_t len = rng() % (max_len + 1);  // includes zero-length writes
        std::vector<uint8_t> bytes(len);
        for (auto& b : bytes) b = static_cast<uint8_t>(rng());
        d.write(offset, bytes);
        ref.write(offset, bytes);
      }
      // A random window of overlay(): bytes outside the ranges stay untouched.
      const uint64_t at = rng() % space;
      const uint64_t n = rng() % (space - at + 1);
      std::vector<uint8_t> window(n, 0x5a);
      d.overlay(at, window);
      uint64_t bad = n;
      for (uint64_t i = 0; i < n && bad == n; ++i) {
        if (window[i] != (ref.set[at + i] ? ref.data[at + i] : 0x5a)) bad = i;
      }
      REQUIRE_MESSAGE(bad == n, "window at " << at << " differs at " << bad);
      if (op % 50 == 0) check_against(d, ref);
    }
    check_against(d, ref);
    d.clear();
    CHECK(d.empty());
    CHECK(d.bytes() == 0);
  }
}

TEST_CASE("DirtyRanges: randomized merge_under against the model (newer wins)") {
  std::mt19937_64 rng(777);
  for (int round = 0; round < 200; ++round) {
    const size_t space = 400;
    DirtyRanges older, newer;
    Reference ref_old(space), ref_new(space);
    for (int i = 0; i < 10; ++i) {
      const uint64_t o = rng() % space, l = rng() % std::min<uint64_t>(60, space - o + 1);
      auto b = bytes_of(l, static_cast<uint8_t>(rng()));
      older.write(o, b);
      ref_old.write(o, b);
      const uint64_t o2 = rng() % space, l2 = rng() % std::min<uint64_t>(60, space - o2 + 1);
      auto b2 = bytes_of(l2, static_cast<uint8_t>(rng()));
      newer.write(o2, b2);
      ref_new.write(o2, b2);
    }
    Reference merged = ref_old;
    for (size_t i = 0; i < space; ++i) {
      if (ref_new.set[i]) {
        merged.data[i] = ref_new.data[i];
        merged.set[i] = true;
      }
    }
    newer.merge_under(std::move(older));
    check_against(newer, merged);
  }
}

TEST_CASE("DirtyRanges: merge_under keeps the newer bytes and fills in the older") {
  DirtyRanges newer;
  newer.write(10, bytes_of(10, 100));  // [10, 20)
  DirtyRanges older;
  older.write(0, bytes_of(30, 0));  // [0, 30) covers it
  older.write(40, bytes_of(5, 200));
  newer.merge_under(std::move(older));
  REQUIRE(newer.ranges().size() == 2);
  CHECK(newer.bytes() == 35);
  std::vector<uint8_t> out(45, 0xee);
  newer.overlay(0, out);
  for (int i = 0; i < 10; ++i) CHECK(out[i] == i);
  for (int i = 10; i < 20; ++i) CHECK(out[i] == 100 + (i - 10));
  for (int i = 20; i < 30; ++i) CHECK(out[i] == i);
  for (int i = 30; i < 40; ++i) CHECK(out[i] == 0xee);
  for (int i = 40; i < 45; ++i) CHECK(out[i] == 200 + (i - 40));

  // Merging under an empty set and merging an empty set.
  DirtyRanges empty;
  DirtyRanges copy;
  copy.write(5, bytes_of(3, 1));
  copy.merge_under(std::move(empty));
  CHECK(copy.bytes() == 3);
  DirtyRanges none;
  DirtyRanges old2;
  old2.write(5, bytes_of(3, 9));
  none.merge_under(std::move(old2));
  CHECK(none.bytes() == 3);
  REQUIRE(none.ranges().count(5) == 1);
  CHECK(none.ranges().at(5) == bytes_of(3, 9));
}

TEST_CASE("DirtyRanges: adjacent writes merge into one range") {
  DirtyRanges d;
  d.write(10, bytes_of(5, 0));   // [10, 15)
  d.write(15, bytes_of(5, 5));   // touches at the end
  REQUIRE(d.ranges().size() == 1);
  d.write(5, bytes_of(5, 50));   // touches at the start
  REQUIRE(d.ranges().size() == 1);
  CHECK(d.ranges().begin()->first == 5);
  CHECK(d.ranges().begin()->second.size() == 15);
  CHECK(d.bytes() == 15);
  std::vector<uint8_t> want = bytes_of(5, 50);
  auto tail = bytes_of(10, 0);
  want.insert(want.end(), tail.begin(), tail.end());
  CHECK(d.ranges().begin()->second == want);

  // A write filling exactly the gap between two ranges joins them.
  DirtyRanges g;
  g.write(0, bytes_of(4, 0));
  g.write(8, bytes_of(4, 8));
  REQUIRE(g.ranges().size() == 2);
  g.write(4, bytes_of(4, 4));
  REQUIRE(g.ranges().size() == 1);
  CHECK(g.ranges().begin()->second == bytes_of(12, 0));
  CHECK(g.bytes() == 12);
}

TEST_CASE("DirtyRanges: a write spanning several ranges replaces their middle") {
  DirtyRanges d;
  d.write(0, bytes_of(10, 0));     // [0, 10)
  d.write(20, bytes_of(10, 20));   // [20, 30)
  d.write(40, bytes_of(10, 40));   // [40, 50)
  d.write(60, bytes_of(10, 60));   // [60, 70)
  REQUIRE(d.ranges().size() == 4);
  d.write(5, std::vector<uint8_t>(40, 0xff));  // [5, 45)
  REQUIRE(d.ranges().size() == 2);
  CHECK(d.bytes() == 60);
  const auto& first = d.ranges().begin()->second;
  REQUIRE(first.size() == 50);
  for (int i = 0; i < 5; ++i) CHECK(first[i] == i);
  for (int i = 5; i < 45; ++i) CHECK(first[i] == 0xff);
  for (int i = 45; i < 50; ++i) CHECK(first[i] == i);

  // A write strictly inside one range keeps both ends of it.
  d.write(2, bytes_of(2, 0xa0));
  REQUIRE(d.ranges().size() == 2);
  CHECK(d.bytes() == 60);
  CHECK(d.ranges().begin()->second[1] == 1);
  CHECK(d.ranges().begin()->second[2] == 0xa0);
  CHECK(d.ranges().begin()->second[4] == 4);
}

TEST_CASE("DirtyRanges: truncate in the middle of a range, at its edges and beyond") {
  DirtyRanges d;
  d.write(0, bytes_of(10, 0));
  d.write(20, bytes_of(10, 20));
  d.write(40, bytes_of(10, 40));
  d.truncate(100);  // beyond everything: no change
  CHECK(d.bytes() == 30);
  d.truncate(25);   // in the middle of [20, 30), drops [40, 50)
  REQUIRE(d.ranges().size() == 2);
  CHECK(d.bytes() == 15);
  CHECK(d.ranges().at(20) == bytes_of(5, 20));
  d.truncate(20);   // exactly at a range's start: the range goes
  REQUIRE(d.ranges().size() == 1);
  CHECK(d.bytes() == 10);
  d.truncate(10);   // exactly at a range's end: no change
  CHECK(d.bytes() == 10);
  d.truncate(1);
  CHECK(d.ranges().at(0) == bytes_of(1, 0));
  CHECK(d.bytes() == 1);
  d.truncate(0);
  CHECK(d.empty());
  CHECK(d.bytes() == 0);
  // Writing after a truncate works as on a fresh set.
  d.write(3, bytes_of(2, 7));
  CHECK(d.bytes() == 2);
}

TEST_CASE("DirtyRanges: zero-length writes and overlays change nothing") {
  DirtyRanges d;
  d.write(100, {});
  CHECK(d.empty());
  CHECK(d.bytes() == 0);
  d.write(10, bytes_of(5, 0));
  d.write(15, {});  // adjacent but empty: no new range, no change
  d.write(12, {});
  REQUIRE(d.ranges().size() == 1);
  CHECK(d.bytes() == 5);
  std::vector<uint8_t> none;
  d.overlay(12, none);  // an empty output span
  std::vector<uint8_t> out(3, 0xcc);
  d.overlay(14, out);  // straddles the end
  CHECK(out == std::vector<uint8_t>{4, 0xcc, 0xcc});
  out.assign(3, 0xcc);
  d.overlay(8, out);  // straddles the start
  CHECK(out == std::vector<uint8_t>{0xcc, 0xcc, 0});
}

TEST_CASE("DirtyRanges: large offsets (beyond 4 GiB) work") {
  DirtyRanges d;
  const uint64_t big = 5ull << 30;
  d.write(big, bytes_of(10, 1));
  d.write(0, bytes_of(10, 2));
  REQUIRE(d.ranges().size() == 2);
  std::vector<uint8_t> out(20, 0);
  d.overlay(big - 5, out);
  for (int i = 0; i < 5; ++i) CHECK(out[i] == 0);
  for (int i = 5; i < 15; ++i) CHECK(out[i] == 1 + (i - 5));
  d.truncate(big + 3);
  CHECK(d.bytes() == 13);
}

TEST_CASE("DirtyRanges: a long sequential write is kept in pieces of at most kMaxRange") {
  const uint64_t max = DirtyRanges::kMaxRange;
  DirtyRanges d;
  const size_t piece = 1 << 20;
  const size_t total = 20 << 20;
  std::vector<uint8_t> ref(total);
  for (size_t off = 0; off < total; off += piece) {
    auto b = bytes_of(piece, static_cast<uint8_t>(off >> 20));
    b[0] = 0xaa;  // distinct bytes at each piece's start
    d.write(off, b);
    std::copy(b.begin(), b.end(), ref.begin() + static_cast<std::ptrdiff_t>(off));
  }
  CHECK(d.bytes() == total);
  for (const auto& [offset, bytes] : d.ranges()) CHECK(bytes.size() <= max);
  CHECK(d.ranges().size() == (total + max - 1) / max);
  std::vector<uint8_t> out(total, 0);
  d.overlay(0, out);
  CHECK(out == ref);
  // A write across the seam of two full pieces replaces bytes in both and
  // leaves no overlap.
  d.write(max - 10, bytes_of(20, 0x33));
  std::copy_n(bytes_of(20, 0x33).begin(), 20, ref.begin() + static_cast<std::ptrdiff_t>(max - 10));
  out.assign(total, 0);
  d.overlay(0, out);
  CHECK(out == ref);
  CHECK(d.bytes() == total);
  uint64_t end = 0;
  for (const auto& [offset, bytes] : d.ranges()) {
    CHECK(offset >= end);
    end = offset + bytes.size();
  }
  // Truncate in the middle of the second piece.
  d.truncate(max + 5);
  CHECK(d.bytes() == max + 5);
  // A single write larger than kMaxRange is one range.
  DirtyRanges big;
  big.write(0, std::vector<uint8_t>(max + 100, 1));
  CHECK(big.ranges().size() == 1);
  CHECK(big.bytes() == max + 100);
}

TEST_CASE("DirtyRanges: randomized model test with ranges beyond kMaxRange") {
  std::mt19937_64 rng(99);
  const size_t space = 20 << 20;
  DirtyRanges d;
  Reference ref(space);
  uint64_t append_at = 0;
  for (int op = 0; op < 250; ++op) {
    const uint64_t kind = rng() % 10;
    if (kind == 0) {
      const uint64_t size = rng() % (space + 1);
      d.truncate(size);
      ref.truncate(size);
      continue;
    }
    uint64_t offset, len;
    if (kind < 6) {  // sequential appends, as a copy would write
      len = 1 + rng() % (1 << 20);
      if (append_at + len > space) append_at = rng() % (space / 2);
      offset = append_at;
      append_at += len;
    } else {
      offset = rng() % space;
      len = rng() % std::min<uint64_t>(space - offset + 1, 3 << 20);
    }
    auto bytes = bytes_of(len, static_cast<uint8_t>(rng()));
    d.write(offset, bytes);
    ref.write(offset, bytes);
    if (op == 125) check_against(d, ref);
  }
  check_against(d, ref);
}

TEST_CASE("DirtyRanges: a range's buffer holds at most twice its bytes, in pieces of kMaxRange") {
  // Files written sequentially in 128 KiB and 1 MiB pieces, of sizes around
  // the points where a buffer grows: the memory held stays within 2x the
  // bytes counted (the dirty limit counts bytes).
  for (const uint64_t piece : {uint64_t{128} << 10, uint64_t{1} << 20}) {
    for (const uint64_t size : {uint64_t{2200} << 10, uint64_t{3} << 20, uint64_t{5} << 20, uint64_t{20} << 20}) {
      DirtyRanges d;
      const std::vector<uint8_t> chunk = bytes_of(static_cast<size_t>(piece), 7);
      for (uint64_t off = 0; off < size; off += piece) {
        d.write(off, std::span<const uint8_t>(chunk).first(static_cast<size_t>(std::min(piece, size - off))));
      }
      CHECK(d.bytes() == size);
      uint64_t held = 0;
      for (const auto& [offset, bytes] : d.ranges()) {
        CHECK(bytes.size() <= DirtyRanges::kMaxRange);
        held += bytes.capacity();
      }
      CHECK_MESSAGE(held <= 2 * size, "piece ", piece, " size ", size, " held ", held);
      CHECK(d.ranges().size() == (size + DirtyRanges::kMaxRange - 1) / DirtyRanges::kMaxRange);
    }
  }
}
