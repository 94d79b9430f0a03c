#include "frugalfs/chunking.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "frugalfs/hash.h"

using namespace frugalfs;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes out(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&out[i], &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(rng());
  return out;
}

// English-like, compressible text that is not a short repetition.
Bytes text_bytes(size_t n, uint64_t seed) {
  static const char* const kWords[] = {
      "the",   "volume", "stripe", "chunk",  "pack",     "fragment", "parity", "inode",
      "write", "read",   "dedup",  "zstd",   "metadata", "repair",   "of",     "and",
      "a",     "to",     "is",     "server", "customer", "quota",    "disk",   "file"};
  std::mt19937_64 rng(seed);
  std::string s;
  s.reserve(n + 16);
  while (s.size() < n) {
    s += kWords[rng() % std::size(kWords)];
    s += (rng() % 12 == 0) ? ".\n" : " ";
  }
  return Bytes(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n));
}

// Chunks a whole stream by repeatedly cutting the remaining bytes.
std::vector<size_t> chunk_whole(const FastCdc& cdc, std::span<const uint8_t> data) {
  std::vector<size_t> lengths;
  size_t pos = 0;
  while (pos < data.size()) {
    const Cut c = cdc.cut(data.subspan(pos));
    REQUIRE(c.length > 0);
    REQUIRE(c.length <= data.size() - pos);
    lengths.push_back(c.length);
    pos += c.length;
  }
  return lengths;
}

// Chunks a stream that arrives in pieces of random size (1..max_piece):
// unconsumed bytes are carried forward, and only natural cuts are accepted
// until the stream has ended.
std::vector<size_t> chunk_streaming(const FastCdc& cdc, std::span<const uint8_t> data,
                                    size_t max_piece, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<size_t> lengths;
  Bytes pending;
  size_t fed = 0;
  while (fed < data.size()) {
    const size_t piece = std::min<size_t>(1 + rng() % max_piece, data.size() - fed);
    pending.insert(pending.end(), data.begin() + static_cast<std::ptrdiff_t>(fed),
                   data.begin() + static_cast<std::ptrdiff_t>(fed + piece));
    fed += piece;
    size_t pos = 0;
    for (;;) {
      const Cut c = cdc.cut(std::span<const uint8_t>(pending).subspan(pos));
      if (!c.natural) break;
      lengths.push_back(c.length);
      pos += c.length;
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(pos));
  }
  // End of stream: whatever remains is cut without waiting for more.
  for (const size_t len : chunk_whole(cdc, pending)) lengths.push_back(len);
  return lengths;
}

struct Piece {
  size_t offset;
  size_t length;
  Sha256 id;
};

std::vector<Piece> pieces_of(std::span<const uint8_t> data, const std::vector<size_t>& lengths) {
  std::vector<Piece> out;
  size_t pos = 0;
  for (const size_t len : lengths) {
    out.push_back({pos, len, sha256(data.subspan(pos, len))});
    pos += len;
  }
  return out;
}

// Fraction (by bytes) of the original chunks starting at or after `from`
// that reappear, byte for byte, among the chunks of `edited`.
double surviving_fraction(const FastCdc& cdc, std::span<const uint8_t> original,
                          std::span<const uint8_t> edited, size_t from) {
  std::set<Sha256> edited_ids;
  for (const Piece& p : pieces_of(edited, chunk_whole(cdc, edited))) edited_ids.insert(p.id);
  size_t total = 0;
  size_t kept = 0;
  for (const Piece& p : pieces_of(original, chunk_whole(cdc, original))) {
    if (p.offset < from) continue;
    total += p.length;
    if (edited_ids.count(p.id)) kept += p.length;
  }
  REQUIRE(total > 0);
  return static_cast<double>(kept) / static_cast<double>(total);
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

TEST_CASE("ChunkerParams::validate accepts sane geometries and rejects the rest") {
  CHECK(ChunkerParams{}.validate().ok());
  for (const uint32_t avg : {256u, 4096u, 16384u, 65536u, 262144u, 1048576u, 4194304u}) {
    const ChunkerParams p = ChunkerParams::ForAverage(avg);
    CHECK(p.min_size == avg / 4);
    CHECK(p.avg_size == avg);
    CHECK(p.max_size == avg * 4);
    CHECK(p.validate().ok());
  }
  CHECK(ChunkerParams{32, 128, 512}.validate().code() == EINVAL);          // min < 64
  CHECK(ChunkerParams{64, 128, 512}.validate().ok());                      // smallest min
  CHECK(ChunkerParams{4096, 4096, 8192}.validate().code() == EINVAL);      // min == avg
  CHECK(ChunkerParams{1024, 4096, 4096}.validate().code() == EINVAL);      // avg == max
  CHECK(ChunkerParams{8192, 4096, 16384}.validate().code() == EINVAL);     // min > avg
  CHECK(ChunkerParams{1024, 5000, 16384}.validate().code() == EINVAL);     // avg not 2^n
  CHECK(ChunkerParams::ForAverage(8u << 20).validate().code() == EINVAL);  // max 32 MiB
  CHECK(ChunkerParams{1 << 20, 4 << 20, 16 << 20}.validate().ok());        // max 16 MiB
  CHECK(ChunkerParams{1 << 20, 4 << 20, (16 << 20) + 1}.validate().code() == EINVAL);
}

TEST_CASE("cut follows its contract at the edges") {
  const FastCdc cdc(ChunkerParams::ForAverage(4096));  // 1024 / 4096 / 16384
  const Bytes data = random_bytes(1 << 20, 1);
  const std::span<const uint8_t> all(data);

  SUBCASE("empty and up to min_size: all of it, not natural") {
    for (const size_t n : {size_t{0}, size_t{1}, size_t{1023}, size_t{1024}}) {
      const Cut c = cdc.cut(all.first(n));
      CHECK(c.length == n);
      CHECK_FALSE(c.natural);
    }
  }
  SUBCASE("zeros never match the masks, so they cut exactly at max_size") {
    const Bytes zeros(100000, 0);
    const Cut c = cdc.cut(zeros);
    CHECK(c.length == 16384);
    CHECK(c.natural);
    const Cut at_max = cdc.cut(std::span<const uint8_t>(zeros).first(16384));
    CHECK(at_max.length == 16384);
    CHECK(at_max.natural);
    const Cut short_of_max = cdc.cut(std::span<const uint8_t>(zeros).first(16383));
    CHECK(short_of_max.length == 16383);
    CHECK_FALSE(short_of_max.natural);
  }
  SUBCASE("a content cut does not depend on bytes after it") {
    const Cut c = cdc.cut(all);
    REQUIRE(c.natural);
    REQUIRE(c.length < 16384);
    const Cut exact = cdc.cut(all.first(c.length));
    CHECK(exact.length == c.length);
    CHECK(exact.natural);
    const Cut one_short = cdc.cut(all.first(c.length - 1));
    CHECK(one_short.length == c.length - 1);
    CHECK_FALSE(one_short.natural);
  }
}

TEST_CASE("chunk sizes stay within [min, max], except a short final piece") {
  for (const uint32_t avg : {256u, 4096u, 65536u}) {
    const FastCdc cdc(ChunkerParams::ForAverage(avg));
    const ChunkerParams& p = cdc.params();
    // Random data, compressible text, and long zero runs (forcing max cuts).
    Bytes data = random_bytes(4 << 20, avg);
    const Bytes text = text_bytes(2 << 20, avg);
    data.insert(data.end(), text.begin(), text.end());
    data.insert(data.end(), 3 * p.max_size + 17, 0);
    const Bytes tail = random_bytes(12345, avg + 1);
    data.insert(data.end(), tail.begin(), tail.end());

    const std::vector<size_t> lengths = chunk_whole(cdc, data);
    REQUIRE(lengths.size() > 1);
    size_t max_cuts = 0;
    for (size_t i = 0; i + 1 < lengths.size(); ++i) {
      CHECK(lengths[i] >= p.min_size);
      CHECK(lengths[i] <= p.max_size);
      if (lengths[i] == p.max_size) ++max_cuts;
    }
    CHECK(lengths.back() >= 1);
    CHECK(lengths.back() <= p.max_size);
    CHECK(max_cuts >= 3);  // the zero run
  }
}

TEST_CASE("average chunk size on random data is within 25% of avg_size") {
  const Bytes data = random_bytes(32 << 20, 42);
  for (const uint32_t avg : {16u << 10, 64u << 10, 256u << 10}) {
    CAPTURE(avg);
    const FastCdc cdc(ChunkerParams::ForAverage(avg));
    std::vector<size_t> lengths = chunk_whole(cdc, data);
    lengths.pop_back();  // the final piece is cut by the end of data
    REQUIRE(!lengths.empty());
    size_t sum = 0;
    for (const size_t len : lengths) sum += len;
    const double mean = static_cast<double>(sum) / static_cast<double>(lengths.size());
    MESSAGE("avg ", avg, ": ", lengths.size(), " chunks, mean ", mean, " (", mean / avg, " x avg)");
    CHECK(mean >= 0.75 * avg);
    CHECK(mean <= 1.25 * avg);
  }
}

TEST_CASE("chunking is deterministic, and pinned by a golden vector") {
  const FastCdc cdc(ChunkerParams::ForAverage(16384));
  const Bytes data = random_bytes(4 << 20, 2016);
  const std::vector<size_t> a = chunk_whole(cdc, data);
  const std::vector<size_t> b = chunk_whole(FastCdc(ChunkerParams::ForAverage(16384)), data);
  CHECK(a == b);

  // Boundaries are part of the on-disk format (they decide what dedups).
  // If this fails, the gear table, the masks or the cut rule changed: that
  // is a format change, see doc/chunking.md.
  const std::vector<size_t> first(a.begin(), a.begin() + 8);
  const std::vector<size_t> expected = {18526, 25056, 20287, 16902, 21353, 23033, 16652, 20705};
  CHECK(first == expected);
  CHECK(a.size() == 221);

  // Text with a known layout, independent of the random generator.
  std::string text;
  for (int i = 0; text.size() < (1 << 20); ++i) text += "line " + std::to_string(i * 7919) + "\n";
  const std::vector<size_t> t = chunk_whole(cdc, as_bytes(text));
  const std::vector<size_t> text_first(t.begin(), t.begin() + 4);
  const std::vector<size_t> text_expected = {16958, 22059, 18787, 20748};
  CHECK(text_first == text_expected);
}

TEST_CASE("inserting bytes shifts later boundaries instead of destroying them") {
  const Bytes original = random_bytes(8 << 20, 7);
  std::mt19937_64 rng(99);
  for (const uint32_t avg : {16u << 10, 64u << 10}) {
    const FastCdc cdc(ChunkerParams::ForAverage(avg));
    for (int trial = 0; trial < 6; ++trial) {
      const size_t insert_len = 1 + rng() % 100;
      const bool middle = trial % 2 == 1;
      const size_t at = middle ? (4 << 20) + rng() % 4096 : 100 + rng() % 4096;
      CAPTURE(avg);
      CAPTURE(insert_len);
      CAPTURE(at);
      const Bytes inserted = random_bytes(insert_len, 1000 + static_cast<uint64_t>(trial));
      Bytes edited = original;
      edited.insert(edited.begin() + static_cast<std::ptrdiff_t>(at), inserted.begin(),
                    inserted.end());
      const double kept = surviving_fraction(cdc, original, edited, at);
      CHECK(kept >= 0.90);
    }
  }
}

TEST_CASE("a fixed-size chunker would fail the same insertion test") {
  // Guards the test above: it must be able to tell content-defined chunking
  // from chunking that ignores content. Fixed 16 KiB blocks keep almost
  // nothing after an insertion.
  const Bytes original = random_bytes(8 << 20, 7);
  Bytes edited = original;
  edited.insert(edited.begin() + 1000, 37, 0xab);
  auto fixed_ids = [](std::span<const uint8_t> d, size_t from) {
    std::set<Sha256> ids;
    for (size_t pos = 0; pos + 16384 <= d.size(); pos += 16384) {
      if (pos >= from) ids.insert(sha256(d.subspan(pos, 16384)));
    }
    return ids;
  };
  const std::set<Sha256> before = fixed_ids(original, 1000);
  const std::set<Sha256> after = fixed_ids(edited, 0);
  size_t kept = 0;
  for (const Sha256& id : before) kept += after.count(id);
  CHECK(kept < before.size() / 10);
}

TEST_CASE("feeding data in pieces gives exactly the whole-buffer boundaries") {
  const Bytes data = random_bytes(6 << 20, 3);
  for (const uint32_t avg : {4u << 10, 64u << 10}) {
    const FastCdc cdc(ChunkerParams::ForAverage(avg));
    const std::vector<size_t> whole = chunk_whole(cdc, data);
    for (const size_t max_piece : {size_t{1000}, size_t{70000}, size_t{1} << 20}) {
      CAPTURE(avg);
      CAPTURE(max_piece);
      CHECK(chunk_streaming(cdc, data, max_piece, avg + max_piece) == whole);
    }
  }
}

// The lengths repeated cut() gives, natural cuts only unless final.
std::vector<size_t> chunk_serial(const FastCdc& cdc, std::span<const uint8_t> data, bool final) {
  std::vector<size_t> lengths;
  for (size_t pos = 0; pos < data.size();) {
    const Cut c = cdc.cut(data.subspan(pos));
    if (!c.natural && !final) break;
    lengths.push_back(c.length);
    pos += c.length;
  }
  return lengths;
}

TEST_CASE("cut_all on two threads gives exactly the serial cuts") {
  // Zeros cut at max_size only: the helper (starting mid-buffer) and the
  // serial run never meet unless the middle is a multiple of max_size.
  Bytes mixed = text_bytes(5 << 20, 8);
  const Bytes noise = random_bytes(1 << 20, 9);
  std::copy(noise.begin(), noise.end(), mixed.begin() + (2 << 20));
  std::fill(mixed.begin() + (4 << 20), mixed.begin() + (4 << 20) + (700 << 10), uint8_t{0});
  const std::vector<std::pair<const char*, Bytes>> inputs = {
      {"random", random_bytes(8 << 20, 7)},
      {"random, odd size", random_bytes((3 << 20) + 12345, 10)},
      {"text, noise and zeros", mixed},
      {"zeros", Bytes(4 << 20, 0)},
      {"zeros, middle not a multiple of max", Bytes((4 << 20) + 4096, 0)},
      {"zeros, middle a multiple of max", Bytes(2 << 20, 0)},
      {"small (serial path)", random_bytes(100000, 11)},
  };
  for (const uint32_t avg : {4u << 10, 64u << 10, 256u << 10}) {
    const FastCdc cdc(ChunkerParams::ForAverage(avg));
    for (const auto& [name, data] : inputs) {
      for (const bool final : {false, true}) {
        CAPTURE(avg);
        CAPTURE(name);
        CAPTURE(final);
        CHECK(cdc.cut_all(data, final) == chunk_serial(cdc, data, final));
      }
    }
  }
}

TEST_CASE("codec round trips text through zstd") {
  const Bytes text = text_bytes(200000, 5);
  for (const int level : {-3, 1, 3, 9}) {
    CAPTURE(level);
    std::vector<uint8_t> stored;
    REQUIRE(compress_chunk(text, level, stored) == Codec::kZstd);
    CHECK(stored.size() < text.size() / 2);
    Bytes back(text.size());
    REQUIRE(decompress_chunk(Codec::kZstd, stored, back).ok());
    CHECK(back == text);
  }
}

TEST_CASE("codec keeps incompressible data raw") {
  const Bytes noise = random_bytes(65536, 6);
  std::vector<uint8_t> stored = {1, 2, 3};  // must be cleared
  CHECK(compress_chunk(noise, 3, stored) == Codec::kRaw);
  CHECK(stored.empty());
  Bytes back(noise.size());
  REQUIRE(decompress_chunk(Codec::kRaw, noise, back).ok());
  CHECK(back == noise);

  // Tiny and empty inputs cannot shrink either.
  CHECK(compress_chunk(std::span<const uint8_t>(noise).first(5), 3, stored) == Codec::kRaw);
  CHECK(compress_chunk(std::span<const uint8_t>(noise).first(1), 3, stored) == Codec::kRaw);
  CHECK(stored.empty());
  CHECK(stored.empty());
  CHECK(compress_chunk({}, 3, stored) == Codec::kRaw);
  CHECK(stored.empty());
  Bytes nothing;
  CHECK(decompress_chunk(Codec::kRaw, {}, nothing).ok());
}

TEST_CASE("codec shrinks zero chunks and all_zero detects them") {
  const Bytes zeros(256 * 1024, 0);
  CHECK(all_zero(zeros));
  std::vector<uint8_t> stored;
  REQUIRE(compress_chunk(zeros, 1, stored) == Codec::kZstd);
  CHECK(stored.size() < 100);
  Bytes back(zeros.size(), 0xff);
  REQUIRE(decompress_chunk(Codec::kZstd, stored, back).ok());
  CHECK(back == zeros);
}

TEST_CASE("all_zero finds a single non-zero byte anywhere") {
  CHECK(all_zero({}));
  for (const size_t n : {size_t{1}, size_t{7}, size_t{31}, size_t{4095}, size_t{4096}, size_t{4097},
                         size_t{10000}}) {
    Bytes buf(n, 0);
    CHECK(all_zero(buf));
    for (const size_t at : {size_t{0}, n / 2, n - 1}) {
      buf[at] = 0x80;
      CHECK_FALSE(all_zero(buf));
      buf[at] = 0;
    }
  }
  Bytes buf(300, 0);
  for (size_t at = 0; at < buf.size(); ++at) {
    buf[at] = 1;
    CHECK_FALSE(all_zero(buf));
    CHECK(all_zero(std::span<const uint8_t>(buf).first(at)));
    buf[at] = 0;
  }
}

TEST_CASE("corrupt or truncated stored chunks are EIO, never a crash") {
  const Bytes text = text_bytes(100000, 8);
  std::vector<uint8_t> stored;
  REQUIRE(compress_chunk(text, 3, stored) == Codec::kZstd);
  Bytes out(text.size());

  SUBCASE("bad magic") {
    std::vector<uint8_t> bad = stored;
    bad[0] ^= 0xff;
    const Status s = decompress_chunk(Codec::kZstd, bad, out);
    CHECK(s.code() == EIO);
    CHECK(s.message().find("corrupt zstd chunk") != std::string::npos);
  }
  SUBCASE("every truncation") {
    for (size_t len = 0; len < stored.size(); len += 1 + len / 16) {
      CAPTURE(len);
      CHECK(
          decompress_chunk(Codec::kZstd, std::span<const uint8_t>(stored).first(len), out).code() ==
          EIO);
    }
  }
  SUBCASE("garbage") {
    for (uint64_t seed = 0; seed < 50; ++seed) {
      const Bytes junk = random_bytes(1 + seed * 97, seed);
      CHECK(decompress_chunk(Codec::kZstd, junk, out).code() == EIO);
    }
  }
  SUBCASE("flipped bytes decode to an error or to the right length") {
    // Without a frame checksum zstd cannot catch every flip inside literals;
    // the chunk store's XXH3 does. What must hold: no crash, and never a
    // success that leaves out partly unwritten.
    std::mt19937_64 rng(11);
    int errors = 0;
    for (int i = 0; i < 500; ++i) {
      std::vector<uint8_t> bad = stored;
      bad[rng() % bad.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      const Status s = decompress_chunk(Codec::kZstd, bad, out);
      if (!s.ok()) {
        CHECK(s.code() == EIO);
        ++errors;
      }
    }
    CHECK(errors > 0);
  }
  SUBCASE("unknown codec") {
    CHECK(decompress_chunk(static_cast<Codec>(7), stored, out).code() == EIO);
  }
}

TEST_CASE("a wrong output size is EIO") {
  const Bytes text = text_bytes(50000, 9);
  std::vector<uint8_t> stored;
  REQUIRE(compress_chunk(text, 1, stored) == Codec::kZstd);
  for (const size_t n : {size_t{0}, text.size() - 1, text.size() + 1, text.size() * 2}) {
    CAPTURE(n);
    Bytes out(n);
    const Status s = decompress_chunk(Codec::kZstd, stored, out);
    CHECK(s.code() == EIO);
  }
  Bytes raw_out(text.size() + 1);
  CHECK(decompress_chunk(Codec::kRaw, text, raw_out).code() == EIO);
  Bytes raw_short(text.size() - 1);
  CHECK(decompress_chunk(Codec::kRaw, text, raw_short).code() == EIO);
}
