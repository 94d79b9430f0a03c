#include "frugalfs/stripe.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <random>
#include <thread>

#include "frugalfs/erasure.h"
#include "frugalfs/volume.h"
#include "stripe/fragment_format.h"
#include "stripe/read_caches.h"
#include "test_support.h"

using namespace frugalfs;
using frugalfs::test::random_bytes;

namespace {

std::unique_ptr<ErasureCode> rs(int k, int m) {
  auto code = ErasureCode::ReedSolomon(k, m);
  REQUIRE(code.ok());
  return std::move(code).value();
}

// Every subset of {0..n-1} with at most max_size members.
std::vector<std::vector<int>> subsets_up_to(int n, int max_size) {
  std::vector<std::vector<int>> out;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    if (std::popcount(mask) > max_size) continue;
    std::vector<int> s;
    for (int i = 0; i < n; ++i) {
      if (mask & (1u << i)) s.push_back(i);
    }
    out.push_back(s);
  }
  return out;
}

struct Fragments {
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<uint8_t*> ptrs;
};

Fragments encode_random(const ErasureCode& code, std::mt19937_64& rng, size_t size) {
  const int k = code.data_fragments();
  const int n = k + code.parity_fragments();
  Fragments f;
  for (int i = 0; i < n; ++i)
    f.bufs.push_back(i < k ? random_bytes(rng, size) : std::vector<uint8_t>(size));
  for (auto& b : f.bufs) f.ptrs.push_back(b.data());
  std::vector<const uint8_t*> data(f.ptrs.begin(), f.ptrs.begin() + k);
  code.encode(data.data(), f.ptrs.data() + k, size);
  return f;
}

void check_all_erasure_patterns(int k, int m, std::mt19937_64& rng) {
  auto code = rs(k, m);
  CHECK(code->data_fragments() == k);
  CHECK(code->parity_fragments() == m);
  for (size_t size : {size_t{8}, size_t{64}, size_t{4096}, 8 * (1 + rng() % 2000)}) {
    Fragments original = encode_random(*code, rng, size);
    for (const auto& erased : subsets_up_to(k + m, m)) {
      Fragments work = original;
      work.ptrs.clear();
      for (auto& b : work.bufs) work.ptrs.push_back(b.data());
      for (int e : erased) std::fill(work.bufs[e].begin(), work.bufs[e].end(), uint8_t(0xA5 ^ e));
      Status s = code->decode(work.ptrs.data(), erased, size);
      REQUIRE_MESSAGE(s.ok(), s.ToString());
      for (int i = 0; i < k + m; ++i) {
        INFO("k=" << k << " m=" << m << " size=" << size << " fragment " << i
                  << " erased=" << erased.size());
        CHECK(work.bufs[i] == original.bufs[i]);
      }
    }
    // One erasure too many is refused, not silently garbage.
    {
      std::vector<int> too_many;
      for (int i = 0; i <= m; ++i) too_many.push_back(i);
      Fragments work = original;
      work.ptrs.clear();
      for (auto& b : work.bufs) work.ptrs.push_back(b.data());
      Status s = code->decode(work.ptrs.data(), too_many, size);
      CHECK(s.code() == EIO);
    }
  }
}

// A cluster of memory volumes with ids 100, 101, ... and a PackStore on them.
struct Cluster {
  Cluster(int volumes, int k, int m, uint32_t block_size = 4096) : block_size(block_size) {
    for (int i = 0; i < volumes; ++i) {
      const std::string uri = fmt::format("mem://vol{}", i);
      auto v = std::make_unique<MemoryVolume>(uri);
      mem[static_cast<uint32_t>(100 + i)] = v.get();
      set.add(static_cast<uint32_t>(100 + i), uri, std::move(v));
    }
    store = std::make_unique<PackStore>(set, rs(k, m), block_size);
  }
  // A second store on the same volumes, with a cold checksum-table cache.
  std::unique_ptr<PackStore> fresh_store(int k, int m) {
    return std::make_unique<PackStore>(set, rs(k, m), block_size);
  }
  MemoryVolume& volume_of(const PackLayout& layout, int index) {
    return *mem.at(layout.volumes[static_cast<size_t>(index)]);
  }

  uint32_t block_size;
  VolumeSet set;
  std::map<uint32_t, MemoryVolume*> mem;
  std::unique_ptr<PackStore> store;
};

void check_reads(PackStore& store, const PackLayout& layout, const std::vector<uint8_t>& data,
                 std::mt19937_64& rng, int random_ranges = 40) {
  std::vector<uint8_t> got(data.size());
  Status s = store.read(layout, 0, got);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  REQUIRE(got == data);
  if (data.empty()) return;
  auto check_range = [&](uint64_t off, size_t len) {
    std::vector<uint8_t> out(len, 0xEE);
    Status rs = store.read(layout, off, out);
    REQUIRE_MESSAGE(rs.ok(), rs.ToString());
    INFO("range [" << off << ", " << off + len << ") of " << data.size());
    REQUIRE(std::equal(out.begin(), out.end(), data.begin() + static_cast<std::ptrdiff_t>(off)));
  };
  // Edges: first byte, last byte, tail, across fragment boundaries.
  check_range(0, 1);
  check_range(data.size() - 1, 1);
  check_range(data.size() - std::min<size_t>(data.size(), 100), std::min<size_t>(data.size(), 100));
  for (uint64_t f = 1; f < layout.k; ++f) {
    uint64_t b = f * layout.fragment_len;
    if (b >= data.size()) break;
    uint64_t from = b >= 13 ? b - 13 : 0;
    check_range(from, static_cast<size_t>(std::min<uint64_t>(data.size() - from, 29)));
  }
  for (int i = 0; i < random_ranges; ++i) {
    uint64_t off = rng() % data.size();
    size_t len = 1 + static_cast<size_t>(rng() % (data.size() - off));
    if (rng() % 2) len = std::min<size_t>(len, 1 + rng() % 9000);
    check_range(off, len);
  }
}

}  // namespace

TEST_CASE("Reed-Solomon rebuilds every erasure pattern of up to m fragments") {
  std::mt19937_64 rng(1);
  for (auto [k, m] : {std::pair{2, 2}, {4, 2}, {3, 3}, {1, 1}, {2, 1}, {6, 3}}) {
    check_all_erasure_patterns(k, m, rng);
  }
}

TEST_CASE("Reed-Solomon is systematic and parity depends on every data byte") {
  std::mt19937_64 rng(2);
  auto code = rs(2, 2);
  Fragments f = encode_random(*code, rng, 1024);
  Fragments g = f;
  g.ptrs.clear();
  for (auto& b : g.bufs) g.ptrs.push_back(b.data());
  g.bufs[1][517] ^= 1;
  std::vector<const uint8_t*> data(g.ptrs.begin(), g.ptrs.begin() + 2);
  code->encode(data.data(), g.ptrs.data() + 2, 1024);
  CHECK(g.bufs[2][517] != f.bufs[2][517]);
  CHECK(g.bufs[3][517] != f.bufs[3][517]);
  CHECK(std::equal(g.bufs[2].begin(), g.bufs[2].begin() + 517, f.bufs[2].begin()));
}

TEST_CASE("Reed-Solomon accepts regions that are not aligned alike") {
  std::mt19937_64 rng(17);
  auto code = rs(3, 2);
  const size_t size = 4096 + 8;
  Fragments f = encode_random(*code, rng, size);
  // The same fragments at offsets 0, 8, 24, 40, 56 of 16-aligned buffers.
  std::vector<std::vector<uint8_t>> shifted(5);
  std::vector<uint8_t*> ptrs;
  for (size_t i = 0; i < 5; ++i) {
    shifted[i].resize(size + 64);
    ptrs.push_back(shifted[i].data() + (i == 0 ? 0 : 16 * i - 8));
    if (i < 3) std::copy(f.bufs[i].begin(), f.bufs[i].end(), ptrs[i]);
  }
  std::vector<const uint8_t*> data(ptrs.begin(), ptrs.begin() + 3);
  code->encode(data.data(), ptrs.data() + 3, size);
  for (size_t i = 3; i < 5; ++i) CHECK(std::equal(f.bufs[i].begin(), f.bufs[i].end(), ptrs[i]));
  std::vector<int> erased{0, 4};
  std::fill_n(ptrs[0], size, uint8_t{0});
  std::fill_n(ptrs[4], size, uint8_t{0});
  REQUIRE(code->decode(ptrs.data(), erased, size).ok());
  CHECK(std::equal(f.bufs[0].begin(), f.bufs[0].end(), ptrs[0]));
  CHECK(std::equal(f.bufs[4].begin(), f.bufs[4].end(), ptrs[4]));
}

TEST_CASE("Reed-Solomon: geometry checks, m == 0, bad erasure lists") {
  CHECK(ErasureCode::ReedSolomon(0, 2).status().code() == EINVAL);
  CHECK(ErasureCode::ReedSolomon(2, -1).status().code() == EINVAL);
  CHECK(ErasureCode::ReedSolomon(30, 3).status().code() == EINVAL);
  CHECK(ErasureCode::ReedSolomon(16, 16).ok());

  std::mt19937_64 rng(3);
  auto plain = rs(3, 0);
  Fragments f = encode_random(*plain, rng, 64);  // encode with no parity is a no-op
  std::vector<int> none;
  CHECK(plain->decode(f.ptrs.data(), none, 64).ok());
  std::vector<int> one{1};
  CHECK(plain->decode(f.ptrs.data(), one, 64).code() == EIO);

  auto code = rs(2, 2);
  Fragments g = encode_random(*code, rng, 64);
  Fragments h = g;
  h.ptrs.clear();
  for (auto& b : h.bufs) h.ptrs.push_back(b.data());
  std::fill(h.bufs[0].begin(), h.bufs[0].end(), uint8_t{0});
  std::vector<int> dup{0, 0};  // duplicates count once
  CHECK(code->decode(h.ptrs.data(), dup, 64).ok());
  CHECK(h.bufs[0] == g.bufs[0]);
  std::vector<int> out_of_range{4};
  CHECK(code->decode(h.ptrs.data(), out_of_range, 64).code() == EINVAL);
}

TEST_CASE("fragment header round-trips and rejects corruption") {
  PackLayout layout;
  layout.pack_id = 0x1234;
  layout.k = 2;
  layout.m = 1;
  layout.block_size = 16;
  layout.pack_len = 70;
  layout.fragment_len = 40;
  layout.volumes = {1, 2, 3};
  std::vector<uint8_t> object(stripe::fragment_object_size(layout));
  CHECK(object.size() == 64 + 3 * 8 + 40);
  for (size_t i = stripe::payload_offset(layout); i < object.size(); ++i) object[i] = uint8_t(i);
  stripe::FragmentHeader h{0x1234, 1, 2, 1, 16, 70, 40, 0};
  uint64_t sum = stripe::seal_fragment(h, object);
  layout.fragment_checksums = {0, sum, 0};

  auto parsed = stripe::parse_header(object);
  REQUIRE(parsed.ok());
  CHECK(parsed->pack_id == 0x1234);
  CHECK(parsed->fragment_len == 40);
  CHECK(parsed->table_checksum == sum);
  CHECK(stripe::check_header_matches(*parsed, layout, 1).ok());
  CHECK(!stripe::check_header_matches(*parsed, layout, 0).ok());
  auto table = stripe::parse_checksum_table(object, layout, 1);
  REQUIRE(table.ok());
  CHECK((*table)->sums.size() == 3);
  std::span<const uint8_t> payload(object.data() + stripe::payload_offset(layout), 40);
  CHECK(stripe::first_bad_block(**table, 16, 0, payload) == -1);
  CHECK(stripe::first_bad_block(**table, 16, 2, payload.subspan(32)) == -1);

  for (size_t off : {size_t{0}, size_t{20}, size_t{63}}) {
    auto bad = object;
    bad[off] ^= 0x40;
    CHECK(!stripe::parse_header(bad).ok());
  }
  auto bad_table = object;
  bad_table[70] ^= 1;
  CHECK(!stripe::parse_checksum_table(bad_table, layout, 1).ok());
  auto bad_payload = object;
  bad_payload[stripe::payload_offset(layout) + 35] ^= 1;
  CHECK(stripe::first_bad_block(**table, 16, 0,
                                {bad_payload.data() + stripe::payload_offset(layout), 40}) == 2);
  layout.fragment_checksums[1] ^= 1;  // the record disagrees with the fragment
  CHECK(!stripe::parse_checksum_table(object, layout, 1).ok());
}

TEST_CASE("checksum table cache is a bounded LRU checked against the expected checksum") {
  stripe::ChecksumTableCache cache(3);
  auto table = [](uint64_t sum) {
    auto t = std::make_shared<stripe::ChecksumTable>();
    t->table_checksum = sum;
    return t;
  };
  cache.put(1, 0, table(10));
  cache.put(1, 1, table(11));
  cache.put(2, 0, table(20));
  CHECK(cache.get(1, 0, 10) != nullptr);  // now most recent
  CHECK(cache.get(1, 0, 99) == nullptr);  // stale checksum
  cache.put(3, 0, table(30));             // evicts (1,1)
  CHECK(cache.size() == 3);
  CHECK(cache.get(1, 1, 11) == nullptr);
  CHECK(cache.get(1, 0, 10) != nullptr);
  CHECK(cache.get(2, 0, 20) != nullptr);
  cache.erase(2, 0);
  CHECK(cache.get(2, 0, 20) == nullptr);
}

TEST_CASE("VerifiedWindowCache: askers of one window share one load; a failed load is not kept") {
  using Cache = stripe::VerifiedWindowCache;
  Cache cache(4);
  std::atomic<int> loads{0};
  auto window_of = [](uint8_t fill) {
    auto w = std::make_shared<Cache::Window>();
    w->size = 16;
    w->bytes = std::make_unique<uint8_t[]>(w->size);
    std::fill_n(w->bytes.get(), w->size, fill);
    return Cache::WindowPtr(std::move(w));
  };
  auto slow_load = [&]() -> Result<Cache::WindowPtr> {
    ++loads;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return window_of(7);
  };
  std::vector<Cache::WindowPtr> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] {
      auto w = cache.get_or_load(1, 0, 42, 3, slow_load);
      if (w.ok()) got[i] = *w;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(loads == 1);
  for (const auto& w : got) {
    REQUIRE(w != nullptr);
    CHECK(w == got[0]);
  }
  CHECK(got[0]->bytes[15] == 7);
  // Another table checksum is another fragment: not answered from the cache.
  CHECK(cache.get(1, 0, 43, 3) == nullptr);
  CHECK(cache.get(1, 0, 42, 3) == got[0]);

  auto failing = [&]() -> Result<Cache::WindowPtr> {
    ++loads;
    return Errorf(EIO, "bad block");
  };
  CHECK(cache.get_or_load(1, 0, 42, 4, failing).status().code() == EIO);
  CHECK(cache.get(1, 0, 42, 4) == nullptr);
  auto again = cache.get_or_load(1, 0, 42, 4, [&]() -> Result<Cache::WindowPtr> {
    ++loads;
    return window_of(9);
  });
  REQUIRE(again.ok());
  CHECK((*again)->bytes[0] == 9);
  CHECK(loads == 3);
}

TEST_CASE("VerifiedWindowCache::cached_or_loading: while a load runs, after it, not after a "
          "failed one") {
  using Cache = stripe::VerifiedWindowCache;
  Cache cache(4);
  CHECK(!cache.cached_or_loading(1, 0, 42, 3));
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> started{false};
  std::thread loader([&] {
    auto w = cache.get_or_load(1, 0, 42, 3, [&]() -> Result<Cache::WindowPtr> {
      started = true;
      released.wait();
      auto window = std::make_shared<Cache::Window>();
      window->size = 1;
      window->bytes = std::make_unique<uint8_t[]>(1);
      return Cache::WindowPtr(std::move(window));
    });
    CHECK(w.ok());
  });
  while (!started) std::this_thread::yield();
  CHECK(cache.cached_or_loading(1, 0, 42, 3));   // being loaded
  CHECK(!cache.cached_or_loading(1, 0, 43, 3));  // another fragment's table
  CHECK(!cache.cached_or_loading(1, 0, 42, 4));  // another window
  release.set_value();
  loader.join();
  CHECK(cache.cached_or_loading(1, 0, 42, 3));  // cached
  CHECK(!cache.get_or_load(1, 0, 42, 5, [] { return Result<Cache::WindowPtr>(Errorf(EIO, "bad")); })
             .ok());
  CHECK(!cache.cached_or_loading(1, 0, 42, 5));  // a failed load leaves nothing
}

TEST_CASE("fragment object names") {
  CHECK(fragment_object_name(0xabc, 3) == "frag-0000000000000abc-3");
  CHECK(valid_object_name(fragment_object_name(~uint64_t{0}, 31)));
}

TEST_CASE("PackStore writes and reads packs of many sizes") {
  std::mt19937_64 rng(4);
  Cluster c(4, 2, 2);
  std::vector<size_t> sizes{0,    1,    7,    8,    9,    15,   16,       17,
                            4095, 4096, 4097, 8191, 8192, 8193, 65536 + 3};
  for (int i = 0; i < 6; ++i) sizes.push_back(1 + rng() % 300000);
  uint64_t id = 1;
  for (size_t size : sizes) {
    INFO("pack size " << size);
    auto data = random_bytes(rng, size);
    auto layout = c.store->write(id, data);
    REQUIRE_MESSAGE(layout.ok(), layout.status().ToString());
    CHECK(layout->pack_id == id);
    CHECK(layout->pack_len == size);
    CHECK(layout->fragment_len % 8 == 0);
    CHECK(layout->fragment_len == (size + 1) / 2 + 7 - ((size + 1) / 2 + 7) % 8);
    CHECK(layout->volumes.size() == 4);
    std::vector<uint32_t> distinct = layout->volumes;
    std::sort(distinct.begin(), distinct.end());
    CHECK(std::unique(distinct.begin(), distinct.end()) == distinct.end());
    // The format: data fragments hold the pack's bytes, zero padded.
    for (int i = 0; i < 2; ++i) {
      std::vector<uint8_t> raw(stripe::fragment_object_size(*layout));
      auto n = c.volume_of(*layout, i).read(fragment_object_name(id, i), 0, raw);
      REQUIRE(n.ok());
      REQUIRE(*n == raw.size());
      for (uint64_t b = 0; b < layout->fragment_len; ++b) {
        const uint64_t pos = static_cast<uint64_t>(i) * layout->fragment_len + b;
        REQUIRE(raw[stripe::payload_offset(*layout) + b] == (pos < size ? data[pos] : 0));
      }
    }
    check_reads(*c.store, *layout, data, rng);
    auto cold = c.fresh_store(2, 2);  // loads header + table from the volumes
    check_reads(*cold, *layout, data, rng, 10);
    CHECK(c.store->degraded_reads() == 0);
    CHECK(cold->degraded_reads() == 0);
    std::vector<std::string> problems;
    CHECK(c.store->verify(*layout, &problems).ok());
    CHECK(problems.empty());
    ++id;
  }
  for (auto& [vid, v] : c.mem) CHECK(v->TEST_object_count() == sizes.size());

  auto data = random_bytes(rng, 100);
  auto layout = c.store->write(99, data);
  REQUIRE(layout.ok());
  std::vector<uint8_t> out(10);
  CHECK(c.store->read(*layout, 95, out).code() == EINVAL);
  CHECK(c.store->read(*layout, 100, std::span<uint8_t>()).ok());
  CHECK(c.store->read(*layout, ~uint64_t{0}, out).code() == EINVAL);
  CHECK(c.store->remove(*layout).ok());
  CHECK(c.store->remove(*layout).ok());  // already gone is fine
  for (auto& [vid, v] : c.mem) CHECK(v->TEST_object_count() == sizes.size());
}

TEST_CASE("PackStore: a 4 MiB + 3 pack with the default block size, 4+2 and 2+2") {
  std::mt19937_64 rng(5);
  for (auto [k, m] : {std::pair{2, 2}, {4, 2}}) {
    Cluster c(6, k, m, 64 * 1024);
    auto data = random_bytes(rng, (4 << 20) + 3);
    auto layout = c.store->write(7, data);
    REQUIRE(layout.ok());
    check_reads(*c.store, *layout, data, rng);
    // Lose m volumes: reads rebuild.
    for (int i = 0; i < m; ++i) c.volume_of(*layout, i * 2 % (k + m)).TEST_set_offline(true);
    check_reads(*c.store, *layout, data, rng, 10);
    CHECK(c.store->degraded_reads() > 0);
  }
}

// A volume that counts the bytes read from it.
class CountingVolume : public Volume {
 public:
  explicit CountingVolume(std::string uri) : inner_(std::move(uri)) {}
  std::string uri() const override { return inner_.uri(); }
  Status put(std::string_view name, std::span<const uint8_t> data) override {
    return inner_.put(name, data);
  }
  Result<size_t> read(std::string_view name, uint64_t offset, std::span<uint8_t> out) override {
    while (hold) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (offline) return Errorf(EIO, "offline");
    auto n = inner_.read(name, offset, out);
    if (n.ok()) bytes_read += *n;
    return n;
  }
  void prefetch(std::string_view name, uint64_t offset, uint64_t len) override {
    inner_.prefetch(name, offset, len);
  }
  std::vector<MemoryVolume::PrefetchHint> take_prefetches() { return inner_.TEST_take_prefetches(); }
  Status remove(std::string_view name) override { return inner_.remove(name); }
  Result<ObjectInfo> stat(std::string_view name) override { return inner_.stat(name); }
  Status list(std::string_view prefix, const std::function<void(const ObjectInfo&)>& visit) override {
    return inner_.list(prefix, visit);
  }
  Result<SpaceInfo> space() override { return inner_.space(); }

  std::atomic<uint64_t> bytes_read{0};
  std::atomic<bool> offline{false};
  std::atomic<bool> hold{false};  // reads wait while set

 private:
  MemoryVolume inner_;
};

// Four counting volumes in a set, with ids 100..103.
struct CountingSet {
  CountingSet() {
    for (uint32_t i = 0; i < 4; ++i) {
      const std::string uri = fmt::format("mem://count{}", i);
      auto v = std::make_unique<CountingVolume>(uri);
      volumes.push_back(v.get());
      set.add(100 + i, uri, std::move(v));
    }
  }
  CountingVolume& of(const PackLayout& layout, int index) {
    return *volumes.at(layout.volumes[static_cast<size_t>(index)] - 100);
  }
  uint64_t bytes_read() const {
    uint64_t n = 0;
    for (CountingVolume* v : volumes) n += v->bytes_read;
    return n;
  }
  // Writes data as pack `pack_id` (2+2, 4 KiB blocks) through a store of
  // its own, so that readers start cold.
  PackLayout write_pack(uint64_t pack_id, std::span<const uint8_t> data) {
    PackStore writer(set, rs(2, 2), 4096);
    auto layout = writer.write(pack_id, data);
    REQUIRE(layout.ok());
    return *layout;
  }
  VolumeSet set;
  std::vector<CountingVolume*> volumes;
};

TEST_CASE("PackStore: a pack read in small pieces, one after another, reads each block once") {
  std::mt19937_64 rng(12);
  CountingSet counting;
  VolumeSet& set = counting.set;
  const auto data = random_bytes(rng, 300001);
  const PackLayout layout = counting.write_pack(5, data);
  // A cold store, as after a remount, reads the pack sequentially in pieces
  // of 1..5000 bytes (like chunks, most smaller than a block or across two).
  PackStore reader(set, rs(2, 2), 4096);
  for (uint64_t pos = 0; pos < data.size();) {
    const size_t len = std::min<size_t>(data.size() - pos, 1 + rng() % 5000);
    std::vector<uint8_t> out(len);
    REQUIRE(reader.read(layout, pos, out, ReadPattern::kSequential).ok());
    REQUIRE(std::equal(out.begin(), out.end(), data.begin() + static_cast<std::ptrdiff_t>(pos)));
    pos += len;
  }
  // Each data fragment's header and checksum table once, and its payload.
  CHECK(counting.bytes_read() <= 2 * stripe::fragment_object_size(layout));
  CHECK(reader.degraded_reads() == 0);
}

TEST_CASE("PackStore: a sequential reader takes its bytes in place from verified windows; a "
          "random reader reads only the blocks it needs") {
  std::mt19937_64 rng(21);
  CountingSet counting;
  // About 1.5 MiB per data fragment: two windows each (1 MiB of 4 KiB blocks).
  const auto data = random_bytes(rng, 3000001);
  const PackLayout layout = counting.write_pack(9, data);
  auto same = [&](std::span<const uint8_t> got, uint64_t pos) {
    return std::equal(got.begin(), got.end(), data.begin() + static_cast<std::ptrdiff_t>(pos));
  };
  constexpr ReadPattern kSequential = ReadPattern::kSequential;
  // Reads [pos, pos + len) as the chunk store does for a sequential reader
  // (in place, else read()) and checks the bytes. Returns the view, if in place.
  auto read_piece = [&](PackStore& reader, uint64_t pos, size_t len) {
    auto view = reader.view(layout, pos, len, kSequential);
    REQUIRE_MESSAGE(view.ok(), view.status().ToString());
    if (*view) {
      REQUIRE((*view)->bytes.size() == len);
      REQUIRE(same((*view)->bytes, pos));
    } else {  // across a window or fragment edge
      std::vector<uint8_t> out(len);
      REQUIRE(reader.read(layout, pos, out, kSequential).ok());
      REQUIRE(same(out, pos));
    }
    return *view;
  };

  SUBCASE("sequential, in chunk-sized pieces") {
    PackStore reader(counting.set, rs(2, 2), 4096);
    std::optional<PackStore::View> first;
    size_t pieces = 0, in_place = 0;
    for (uint64_t pos = 0; pos < data.size(); ++pieces) {
      const size_t len = std::min<size_t>(data.size() - pos, 1 + rng() % 70000);
      if (auto view = read_piece(reader, pos, len)) {
        ++in_place;
        if (!first) first = view;
      }
      pos += len;
    }
    // Only pieces across an edge (4 windows) are not in place.
    CHECK(in_place + 4 >= pieces);
    CHECK(in_place > 50);
    // Each data fragment read once, as a few whole windows.
    CHECK(counting.bytes_read() <= 2 * stripe::fragment_object_size(layout));
    // A view held since the start still holds the bytes it was given.
    REQUIRE(first);
    CHECK(first->bytes.data() != nullptr);
    CHECK(same(first->bytes, 0));
  }
  SUBCASE("random") {
    PackStore reader(counting.set, rs(2, 2), 4096);
    auto view = reader.view(layout, 700000, 5000, ReadPattern::kRandom);
    REQUIRE(view.ok());
    CHECK(!*view);
    view = reader.view(layout, 0, 0, kSequential);  // nothing to view
    REQUIRE(view.ok());
    CHECK(!*view);
    std::vector<uint8_t> out(5000);
    REQUIRE(reader.read(layout, 700000, out).ok());
    CHECK(same(out, 700000));
    // The header and checksum table, and the three blocks that hold the bytes.
    CHECK(counting.bytes_read() <= stripe::payload_offset(layout) + 3 * 4096);
    // A sequential reader in the middle of a window it did not come from
    // (chunks scattered over packs) reads only its blocks too.
    view = reader.view(layout, 705000, 3000, kSequential);
    REQUIRE(view.ok());
    CHECK(!*view);
    // At a window's first block it reads the whole window; a random reader
    // then finds it, and so does the sequential one at its next chunk.
    view = reader.view(layout, 100, 3000, kSequential);
    REQUIRE(view.ok());
    REQUIRE(*view);
    CHECK(same((*view)->bytes, 100));
    const uint64_t after_window = counting.bytes_read();
    CHECK(after_window >= (1 << 20));
    view = reader.view(layout, 705000, 20000, ReadPattern::kRandom);
    REQUIRE(view.ok());
    REQUIRE(*view);
    CHECK(same((*view)->bytes, 705000));
    CHECK(counting.bytes_read() == after_window);
  }
  SUBCASE("degraded: a data fragment's volume offline, its windows are rebuilt") {
    counting.of(layout, 0).offline = true;
    PackStore reader(counting.set, rs(2, 2), 4096);
    size_t in_place = 0;
    for (uint64_t pos = 0; pos < data.size(); pos += 60000) {
      if (read_piece(reader, pos, std::min<size_t>(data.size() - pos, 60000))) ++in_place;
    }
    CHECK(in_place + 4 >= (data.size() + 59999) / 60000);
    CHECK(reader.degraded_reads() > 0);
  }
}

TEST_CASE("PackStore::prefetch reads windows it covers mostly ahead, and hints smaller pieces") {
  std::mt19937_64 rng(22);
  CountingSet counting;
  const auto data = random_bytes(rng, 200000);
  const PackLayout layout = counting.write_pack(3, data);
  const uint64_t fl = layout.fragment_len;  // less than a window: a fragment is one window
  const uint64_t payload = stripe::payload_offset(layout);
  auto hints_of = [&](int index) { return counting.of(layout, index).take_prefetches(); };
  auto in_place = [&](PackStore& store, uint64_t offset, size_t len) {
    auto view = store.view(layout, offset, len, ReadPattern::kRandom);
    REQUIRE(view.ok());
    if (!*view) return false;
    CHECK(std::equal((*view)->bytes.begin(), (*view)->bytes.end(), data.begin() + offset));
    return true;
  };
  // Fragment 0 from byte 3000 on: its window is read, verified and cached in
  // the background (header and table, then the payload), with no hint. Of
  // fragment 1 only bytes [0, 3000): its first block is hinted, with the
  // header and table before it (not cached).
  PackStore cold(counting.set, rs(2, 2), 4096);
  cold.prefetch(layout, 3000, fl);
  cold.TEST_wait_read_ahead();
  CHECK(counting.of(layout, 0).bytes_read == payload + fl);
  CHECK(hints_of(0).empty());
  auto h1 = hints_of(1);
  REQUIRE(h1.size() == 1);
  CHECK(h1[0].name == fragment_object_name(3, 1));
  CHECK(h1[0].offset == 0);
  CHECK(h1[0].len == payload + 4096);
  CHECK(hints_of(2).empty());  // parity is not read
  CHECK(hints_of(3).empty());
  CHECK(counting.of(layout, 1).bytes_read == 0);
  // A random reader now finds fragment 0's bytes in place, without a read;
  // fragment 1's are not cached.
  const uint64_t before = counting.bytes_read();
  CHECK(in_place(cold, 5000, 20000));
  CHECK(in_place(cold, 0, 100));
  CHECK_FALSE(in_place(cold, fl + 10, 100));
  CHECK(counting.bytes_read() == before);
  // Far into a fragment whose table is not cached: the header and table, and
  // the blocks, in two hints (not all the payload between them).
  PackStore cold2(counting.set, rs(2, 2), 4096);
  cold2.prefetch(layout, 50000, 1);
  auto h0 = hints_of(0);
  REQUIRE(h0.size() == 2);
  CHECK(h0[0].offset == 0);
  CHECK(h0[0].len == payload);
  CHECK(h0[1].offset == payload + 49152);  // block 12
  CHECK(h0[1].len == 4096);
  // With fragment 1's table cached, only its payload blocks.
  std::vector<uint8_t> out(10);
  REQUIRE(cold.read(layout, fl + 50000, out).ok());
  cold.prefetch(layout, fl + 10000, 1);
  h1 = hints_of(1);
  REQUIRE(h1.size() == 1);
  CHECK(h1[0].offset == payload + 8192);
  CHECK(h1[0].len == 4096);
  // Nothing for bytes beyond the pack, nor for an offline volume.
  cold.prefetch(layout, layout.pack_len, 100);
  counting.set.mark_offline(layout.volumes[0], Errorf(EIO, "test"));
  cold.prefetch(layout, 0, 100);
  CHECK(hints_of(0).empty());
  CHECK(hints_of(1).empty());
}

TEST_CASE("PackStore::prefetch rebuilds the windows of a lost fragment ahead; beyond repair it "
          "leaves the error to the reader") {
  std::mt19937_64 rng(23);
  CountingSet counting;
  const auto data = random_bytes(rng, 3 << 20);  // 1.5 MiB fragments: two windows each
  const PackLayout layout = counting.write_pack(4, data);
  const uint64_t fl = layout.fragment_len;
  counting.of(layout, 0).offline = true;
  {
    PackStore reader(counting.set, rs(2, 2), 4096);
    reader.prefetch(layout, 0, layout.pack_len);
    reader.TEST_wait_read_ahead();
    CHECK(reader.degraded_reads() > 0);
    // Every window of both data fragments is cached: read in place, no reads.
    const uint64_t before = counting.bytes_read();
    const uint64_t degraded = reader.degraded_reads();
    for (uint64_t offset : {uint64_t{0}, uint64_t{(1 << 20) + 7}, fl + 1, fl + (1 << 20)}) {
      auto view = reader.view(layout, offset, 1000, ReadPattern::kRandom);
      REQUIRE(view.ok());
      REQUIRE(*view);
      CHECK(std::equal((*view)->bytes.begin(), (*view)->bytes.end(), data.begin() + offset));
    }
    CHECK(counting.bytes_read() == before);
    CHECK(reader.degraded_reads() == degraded);
  }
  // Two more fragments lost: nothing can be rebuilt. The read-ahead fails
  // quietly and caches nothing; the reader gets the error.
  counting.of(layout, 2).offline = true;
  counting.of(layout, 3).offline = true;
  PackStore reader(counting.set, rs(2, 2), 4096);
  reader.prefetch(layout, 0, layout.pack_len);
  reader.TEST_wait_read_ahead();
  std::vector<uint8_t> out(1000);
  Status s = reader.read(layout, 10, out, ReadPattern::kSequential);
  CHECK(s.code() == EIO);
  auto view = reader.view(layout, 10, 1000, ReadPattern::kRandom);
  REQUIRE(view.ok());
  CHECK_FALSE(*view);  // nothing was cached
}

TEST_CASE("PackStore::prefetch hints the windows that find the read-ahead queue full") {
  std::mt19937_64 rng(25);
  CountingSet counting;
  const auto data = random_bytes(rng, 40 << 20);  // 20 MiB fragments: 20 windows each
  const PackLayout layout = counting.write_pack(6, data);
  const uint64_t payload = stripe::payload_offset(layout);
  for (CountingVolume* v : counting.volumes) v->hold = true;  // loads wait in their reads
  PackStore reader(counting.set, rs(2, 2), 4096);
  reader.prefetch(layout, 0, layout.pack_len);
  const uint64_t posted = reader.windows_read_ahead();
  CHECK(posted >= 8);   // at least the queue's worth
  CHECK(posted <= 16);  // at most the queue and the threads
  // Every other window was hinted: one payload hint each (a header hint
  // has exactly the header and table's length).
  size_t window_hints = 0;
  for (int index : {0, 1}) {
    for (const auto& hint : counting.of(layout, index).take_prefetches()) {
      if (hint.len > payload) ++window_hints;
    }
  }
  CHECK(window_hints == 40 - posted);
  for (CountingVolume* v : counting.volumes) v->hold = false;
  reader.TEST_wait_read_ahead();
  std::vector<uint8_t> out(1000);
  REQUIRE(reader.read(layout, (20 << 20) + 5, out).ok());
  CHECK(std::equal(out.begin(), out.end(), data.begin() + (20 << 20) + 5));
}

TEST_CASE("PackStore: a store destroyed with windows still queued for read-ahead") {
  std::mt19937_64 rng(24);
  CountingSet counting;
  std::vector<PackLayout> layouts;
  for (uint64_t id = 1; id <= 8; ++id) layouts.push_back(counting.write_pack(id, random_bytes(rng, 4 << 20)));
  for (int round = 0; round < 5; ++round) {
    PackStore reader(counting.set, rs(2, 2), 4096);
    for (const PackLayout& layout : layouts) reader.prefetch(layout, 0, layout.pack_len);
  }  // each destructor drops the loads not started and waits for the others
  PackStore reader(counting.set, rs(2, 2), 4096);
  std::vector<uint8_t> out(4 << 20);
  REQUIRE(reader.read(layouts[7], 0, out).ok());
}

TEST_CASE("PackStore survives the loss of any two volumes (offline or wiped)") {
  std::mt19937_64 rng(6);
  for (int a = 0; a < 4; ++a) {
    for (int b = a + 1; b < 4; ++b) {
      for (bool wipe : {false, true}) {
        INFO("volumes " << a << "," << b << (wipe ? " wiped" : " offline"));
        Cluster c(4, 2, 2);
        std::vector<std::vector<uint8_t>> packs;
        std::vector<PackLayout> layouts;
        for (size_t size : {size_t{1}, size_t{4097}, size_t{50001}, size_t{200000}}) {
          packs.push_back(random_bytes(rng, size));
          auto layout = c.store->write(layouts.size() + 1, packs.back());
          REQUIRE(layout.ok());
          layouts.push_back(*layout);
        }
        for (uint32_t id : {uint32_t(100 + a), uint32_t(100 + b)}) {
          if (wipe) {
            c.mem[id]->TEST_wipe();
          } else {
            c.mem[id]->TEST_set_offline(true);
          }
        }
        auto cold = c.fresh_store(2, 2);
        for (size_t p = 0; p < packs.size(); ++p) {
          check_reads(*c.store, layouts[p], packs[p], rng, 15);
          check_reads(*cold, layouts[p], packs[p], rng, 15);
        }
        // Whether a read degrades depends on where the data fragments were.
        bool data_lost = false;
        for (const auto& l : layouts) {
          for (int i = 0; i < 2; ++i) {
            data_lost |= l.volumes[i] == uint32_t(100 + a) || l.volumes[i] == uint32_t(100 + b);
          }
        }
        CHECK(data_lost);
        CHECK(c.store->degraded_reads() > 0);
        CHECK(cold->degraded_reads() > 0);
      }
    }
  }
}

TEST_CASE("PackStore: corrupt bytes in data and parity fragments are detected and rebuilt") {
  std::mt19937_64 rng(7);
  Cluster c(4, 2, 2);
  auto data = random_bytes(rng, 100003);
  auto layout = c.store->write(42, data);
  REQUIRE(layout.ok());
  const uint64_t payload = stripe::payload_offset(*layout);
  const uint64_t object_size = stripe::fragment_object_size(*layout);

  SUBCASE("single byte in each data fragment's payload, header or table") {
    for (int i = 0; i < 2; ++i) {
      for (uint64_t off :
           {uint64_t{3}, uint64_t{64 + 8}, payload, payload + 5000, object_size - 1}) {
        Cluster fresh(4, 2, 2);
        auto l = fresh.store->write(42, data);
        REQUIRE(l.ok());
        fresh.volume_of(*l, i).TEST_corrupt(fragment_object_name(42, i), off);
        auto cold = fresh.fresh_store(2, 2);
        // The store that wrote the pack trusts the checksum tables it
        // computed, so a damaged header or table only shows to a cold store;
        // payload damage shows to both.
        std::vector<PackStore*> stores{cold.get()};
        if (off >= payload) stores.push_back(fresh.store.get());
        for (PackStore* store : stores) {
          uint64_t before = store->degraded_reads();
          check_reads(*store, *l, data, rng, 10);
          CHECK(store->degraded_reads() > before);
        }
        std::vector<std::string> problems;
        CHECK(fresh.store->verify(*l, &problems).ok());
        CHECK(problems.size() == 1);
      }
    }
  }
  SUBCASE("a data fragment offline and a parity fragment corrupt") {
    c.volume_of(*layout, 0).TEST_set_offline(true);
    for (uint64_t off = payload; off < object_size; off += 4096) {
      c.volume_of(*layout, 2).TEST_corrupt(fragment_object_name(42, 2), off);
    }
    check_reads(*c.store, *layout, data, rng);
    CHECK(c.store->degraded_reads() > 0);
  }
  SUBCASE("two fragments corrupt everywhere, different blocks") {
    for (int i : {1, 3}) {
      for (uint64_t off = payload + static_cast<uint64_t>(i) * 100; off < object_size;
           off += 4096) {
        c.volume_of(*layout, i).TEST_corrupt(fragment_object_name(42, i), off);
      }
    }
    check_reads(*c.store, *layout, data, rng);
    CHECK(c.store->degraded_reads() > 0);
  }
  SUBCASE("three fragments bad with 2+2 is EIO, naming the pack") {
    c.volume_of(*layout, 0).TEST_set_offline(true);
    c.volume_of(*layout, 1).TEST_corrupt(fragment_object_name(42, 1), payload + 10);
    c.volume_of(*layout, 2).TEST_wipe();
    std::vector<uint8_t> out(100);
    Status s = c.store->read(*layout, 0, out);
    CHECK(s.code() == EIO);
    CHECK(s.message().find("000000000000002a") != std::string::npos);
    // Bytes outside the corrupt block of fragment 1 need only fragments 1
    // and 3 when fragment 0 is not involved.
    std::vector<uint8_t> tail(1000);
    uint64_t off = layout->fragment_len + 8192;
    REQUIRE(c.store->read(*layout, off, tail).ok());
    CHECK(std::equal(tail.begin(), tail.end(), data.begin() + static_cast<std::ptrdiff_t>(off)));
  }
}

TEST_CASE("PackStore: three lost volumes with 2+2 is EIO") {
  std::mt19937_64 rng(8);
  Cluster c(4, 2, 2);
  auto data = random_bytes(rng, 30000);
  auto layout = c.store->write(5, data);
  REQUIRE(layout.ok());
  for (int i : {0, 2, 3}) c.volume_of(*layout, i).TEST_set_offline(true);
  std::vector<uint8_t> out(data.size());
  CHECK(c.store->read(*layout, 0, out).code() == EIO);
  std::vector<uint8_t> second(100);  // only fragment 1 needed, and it is there
  REQUIRE(c.store->read(*layout, layout->fragment_len, second).ok());
  CHECK(std::equal(second.begin(), second.end(),
                   data.begin() + static_cast<std::ptrdiff_t>(layout->fragment_len)));
}

TEST_CASE("PackStore: degraded writes") {
  std::mt19937_64 rng(9);
  Cluster c(4, 2, 2);
  c.mem[101]->TEST_set_offline(true);  // fails puts; the set does not know yet
  std::vector<std::vector<uint8_t>> packs;
  std::vector<PackLayout> layouts;
  for (int p = 0; p < 5; ++p) {
    packs.push_back(random_bytes(rng, 10000 + static_cast<size_t>(p)));
    auto layout = c.store->write(static_cast<uint64_t>(p + 1), packs.back());
    REQUIRE_MESSAGE(layout.ok(), layout.status().ToString());
    layouts.push_back(*layout);
    std::vector<uint32_t> v = layout->volumes;
    std::sort(v.begin(), v.end());
    CHECK(v == std::vector<uint32_t>{100, 101, 102, 103});
  }
  // A failed put keeps the volume readable but out of placement for a while.
  CHECK(c.set.online_count() == 4);
  CHECK(c.set.get(101) != nullptr);
  {
    auto chosen = c.set.choose(4);
    CHECK(chosen.size() == 3);
    CHECK(std::find(chosen.begin(), chosen.end(), 101u) == chosen.end());
  }
  CHECK(c.mem[101]->TEST_object_count() == 0);
  c.mem[101]->TEST_set_offline(false);  // back, but empty: reads must not trust it
  for (size_t p = 0; p < packs.size(); ++p) check_reads(*c.store, layouts[p], packs[p], rng, 10);

  // verify reports the fragment that was never written.
  std::vector<std::string> problems;
  CHECK(c.store->verify(layouts[0], &problems).ok());
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("missing") != std::string::npos);

  // Two volumes down with 2+2: still k fragments, still ok.
  c.mem[102]->TEST_set_offline(true);
  auto two_down = c.store->write(50, packs[0]);
  REQUIRE(two_down.ok());
  check_reads(*c.store, *two_down, packs[0], rng, 5);

  // Three down: EIO and nothing is left behind.
  c.mem[103]->TEST_set_offline(true);
  size_t before = c.mem[100]->TEST_object_count();
  auto three_down = c.store->write(51, packs[0]);
  CHECK(three_down.status().code() == EIO);
  CHECK(c.mem[100]->TEST_object_count() == before);
}

TEST_CASE("PackStore: a failed put leaves no partial pack when fewer than k land") {
  std::mt19937_64 rng(10);
  Cluster c(3, 2, 1);
  c.mem[100]->TEST_set_offline(true);
  c.mem[101]->TEST_set_offline(true);
  auto data = random_bytes(rng, 5000);
  auto layout = c.store->write(1, data);
  CHECK(layout.status().code() == EIO);
  CHECK(c.mem[102]->TEST_object_count() == 0);
}

TEST_CASE("PackStore: failed puts move to a spare volume when there is one") {
  std::mt19937_64 rng(11);
  Cluster c(5, 2, 2);
  auto data = random_bytes(rng, 20000);
  // The first pack fills 100..103, so 104 is the emptiest for the second;
  // its puts then fail and the fragment moves to a spare.
  auto first = c.store->write(1, data);
  REQUIRE(first.ok());
  c.mem[104]->TEST_set_offline(true);
  auto layout = c.store->write(2, data);
  REQUIRE(layout.ok());
  CHECK(c.set.get(104) != nullptr);  // still readable, just not chosen
  CHECK(std::find(layout->volumes.begin(), layout->volumes.end(), 104u) == layout->volumes.end());
  {
    auto chosen = c.set.choose(5);
    CHECK(std::find(chosen.begin(), chosen.end(), 104u) == chosen.end());
  }
  size_t durable = 0;
  for (int i = 0; i < 4; ++i) durable += c.volume_of(*layout, i).TEST_object_count();
  CHECK(durable == 4 + 4);  // both packs' fragments, one per volume each
  std::vector<std::string> problems;
  CHECK(c.store->verify(*layout, &problems).ok());
  CHECK(problems.empty());
  check_reads(*c.store, *layout, data, rng, 5);
}

TEST_CASE("PackStore: packs written kAtSync are durable once sync returns, and only then") {
  std::mt19937_64 rng(13);
  Cluster c(5, 2, 2);
  const auto a = random_bytes(rng, 30000);
  const auto b = random_bytes(rng, 20000);
  auto deferred = c.store->write(1, a, PackStore::Durability::kAtSync);
  REQUIRE(deferred.ok());
  check_reads(*c.store, *deferred, a, rng, 3);  // readable before the sync
  auto now = c.store->write(2, b);
  REQUIRE(now.ok());
  // sync syncs the volumes that took a deferred fragment, each once.
  REQUIRE(c.store->sync().ok());
  for (uint32_t id = 100; id < 105; ++id) {
    const bool took = std::find(deferred->volumes.begin(), deferred->volumes.end(), id) !=
                      deferred->volumes.end();
    CHECK_MESSAGE(c.mem[id]->TEST_sync_count() == (took ? 1u : 0u), id);
  }
  REQUIRE(c.store->sync().ok());  // nothing left to sync
  uint64_t syncs = 0;
  for (uint32_t id = 100; id < 105; ++id) syncs += c.mem[id]->TEST_sync_count();
  CHECK(syncs == 4);

  // A power loss now keeps both packs; one after a deferred write without
  // its sync loses that pack's fragments, and only them.
  auto lost = c.store->write(3, a, PackStore::Durability::kAtSync);
  REQUIRE(lost.ok());
  size_t dropped = 0;
  for (uint32_t id = 100; id < 105; ++id) dropped += c.mem[id]->TEST_power_loss();
  CHECK(dropped == 4);
  auto cold = c.fresh_store(2, 2);
  check_reads(*cold, *deferred, a, rng, 3);
  check_reads(*cold, *now, b, rng, 3);
  std::vector<uint8_t> out(100);
  CHECK(cold->read(*lost, 0, out).code() == EIO);
}

TEST_CASE("PackStore: a volume whose sync fails is reported and kept out of writes") {
  std::mt19937_64 rng(14);
  Cluster c(5, 2, 2);
  const auto a = random_bytes(rng, 30000);
  auto layout = c.store->write(1, a, PackStore::Durability::kAtSync);
  REQUIRE(layout.ok());
  const uint32_t failing = layout->volumes[1];
  c.mem[failing]->TEST_set_sync_error(Errorf(EIO, "mem://{}: sync: injected", failing));
  Status synced = c.store->sync();
  CHECK(synced.code() == EIO);
  CHECK(synced.message().find("injected") != std::string::npos);
  auto chosen = c.set.choose(5);
  CHECK(chosen.size() == 4);
  CHECK(std::find(chosen.begin(), chosen.end(), failing) == chosen.end());
  // The failure is reported once: the next pack goes to the other four,
  // and its sync succeeds although the failing volume still fails (one bad
  // disk must not stop every later write).
  auto next = c.store->write(2, a, PackStore::Durability::kAtSync);
  REQUIRE(next.ok());
  CHECK(std::find(next->volumes.begin(), next->volumes.end(), failing) == next->volumes.end());
  CHECK(c.store->sync().ok());
  CHECK(c.store->sync().ok());
}

TEST_CASE("PackStore: volumes that share a sync domain are synced once; a failed sync fails them "
          "all") {
  std::mt19937_64 rng(15);
  Cluster c(4, 2, 2);
  c.mem[100]->TEST_set_sync_domain("dev:8:1");
  c.mem[101]->TEST_set_sync_domain("dev:8:1");
  c.mem[102]->TEST_set_sync_domain("dev:8:1");  // 103 is on a filesystem of its own
  const auto a = random_bytes(rng, 30000);
  REQUIRE(c.store->write(1, a, PackStore::Durability::kAtSync).ok());
  REQUIRE(c.store->sync().ok());
  uint64_t shared = 0;
  for (uint32_t id = 100; id < 103; ++id) shared += c.mem[id]->TEST_sync_count();
  CHECK(shared == 1);
  CHECK(c.mem[103]->TEST_sync_count() == 1);

  // The domain's sync fails (whichever member runs it): all three are out.
  for (uint32_t id = 100; id < 103; ++id) {
    c.mem[id]->TEST_set_sync_error(Errorf(EIO, "mem://vol{}: sync: injected", id));
  }
  REQUIRE(c.store->write(2, a, PackStore::Durability::kAtSync).ok());
  CHECK(c.store->sync().code() == EIO);
  CHECK(c.set.choose(4) == std::vector<uint32_t>{103});
}

TEST_CASE("PackStore::verify reports each problem with pack, fragment and volume") {
  std::mt19937_64 rng(12);
  Cluster c(4, 2, 2);
  auto data = random_bytes(rng, 40000);
  auto layout = c.store->write(0xfeed, data);
  REQUIRE(layout.ok());
  std::vector<std::string> problems;
  REQUIRE(c.store->verify(*layout, &problems).ok());
  CHECK(problems.empty());

  const uint64_t payload = stripe::payload_offset(*layout);
  c.volume_of(*layout, 1).TEST_corrupt(fragment_object_name(0xfeed, 1), payload + 4096 * 2 + 5);
  c.volume_of(*layout, 3).TEST_wipe();
  c.volume_of(*layout, 2).TEST_corrupt(fragment_object_name(0xfeed, 2), 17);
  REQUIRE(c.store->verify(*layout, &problems).ok());
  REQUIRE(problems.size() == 3);
  auto has = [&](int index, const std::string& what) {
    std::string needle = fmt::format("pack 000000000000feed fragment {} on {}: {}", index,
                                     c.volume_of(*layout, index).uri(), what);
    return std::any_of(problems.begin(), problems.end(),
                       [&](const std::string& p) { return p.find(needle) != std::string::npos; });
  };
  CHECK(has(1, "bad block checksum in block 2"));
  CHECK(has(2, "bad header"));
  CHECK(has(3, "missing"));
  for (auto& p : problems) MESSAGE(p);

  // A fragment replaced by an object of the wrong length.
  problems.clear();
  std::vector<uint8_t> junk(100, 0x5a);
  REQUIRE(c.volume_of(*layout, 0).put(fragment_object_name(0xfeed, 0), junk).ok());
  REQUIRE(c.store->verify(*layout, &problems).ok());
  CHECK(has(0, "wrong length 100 bytes"));
  // Fragment 0 is now beyond repair (1, 2 and 3 are all damaged near the
  // start), but fragment 1's healthy blocks still read directly.
  std::vector<uint8_t> out(5000);
  auto cold = c.fresh_store(2, 2);
  // Not in place: fragment 1's first window cannot be read or rebuilt whole.
  auto view = cold->view(*layout, layout->fragment_len, out.size(), ReadPattern::kSequential);
  REQUIRE(view.ok());
  CHECK(!*view);
  REQUIRE(cold->read(*layout, 0, out).code() == EIO);  // needs 2 of {1, 2, 3}: only 1 good
  REQUIRE(cold->read(*layout, layout->fragment_len, out).ok());
  CHECK(std::equal(out.begin(), out.end(),
                   data.begin() + static_cast<std::ptrdiff_t>(layout->fragment_len)));

  problems.clear();
  c.volume_of(*layout, 0).TEST_set_offline(true);
  CHECK(c.store->verify(*layout, &problems).code() == EIO);
}

// A memory volume of `total` bytes, of which `taken` are used by others: its
// puts fail with ENOSPC beyond that, as a small disk's would.
struct SmallVolume : MemoryVolume {
  SmallVolume(std::string uri, uint64_t total) : MemoryVolume(std::move(uri)), total(total) {}
  uint64_t total;
  std::atomic<uint64_t> taken{0};
  Status put(std::string_view name, std::span<const uint8_t> data) override {
    if (taken + TEST_total_bytes() + data.size() > total) return Errorf(ENOSPC, "put {}: small volume full", name);
    return MemoryVolume::put(name, data);
  }
  Status put_deferred(std::string_view name, std::span<const uint8_t> data) override {
    if (taken + TEST_total_bytes() + data.size() > total) return Errorf(ENOSPC, "put {}: small volume full", name);
    return MemoryVolume::put_deferred(name, data);
  }
  Result<SpaceInfo> space() override {
    const uint64_t used = std::min(total, taken + TEST_total_bytes());
    return SpaceInfo{total, total - used};
  }
};

TEST_CASE("VolumeSet: the reserve is data's limit but not a backup's; a full volume waits for room") {
  std::mt19937_64 rng(23);
  constexpr uint64_t kTotal = 100 << 20;
  CHECK(VolumeSet::reserve_of(kTotal) == 4 << 20);               // at least 4 MiB
  CHECK(VolumeSet::reserve_of(uint64_t{1} << 40) == (uint64_t{1} << 40) / 100);  // 1%
  CHECK(VolumeSet::reserve_of(8 << 20) == 2 << 20);              // at most a quarter
  // What df reports: packs need k+m distinct volumes with room.
  CHECK(VolumeSet::storable_bytes({100, 100, 100, 100}, 2, 4) == 200);
  CHECK(VolumeSet::storable_bytes({100, 100, 100, 400}, 2, 4) == 200);  // the big one's extra is unusable
  CHECK(VolumeSet::storable_bytes({100, 100, 100, 100, 100}, 2, 4) == 250);
  CHECK(VolumeSet::storable_bytes({0, 100, 100, 100}, 2, 4) == 0);  // one full of four: nothing
  CHECK(VolumeSet::storable_bytes({0, 100, 100, 100, 100}, 2, 4) == 200);
  CHECK(VolumeSet::storable_bytes({}, 2, 4) == 0);
  VolumeSet set;
  std::vector<SmallVolume*> small;
  for (uint32_t i = 0; i < 4; ++i) {
    auto v = std::make_unique<SmallVolume>(fmt::format("mem://small{}", i), kTotal);
    small.push_back(v.get());
    set.add(i, fmt::format("mem://small{}", i), std::move(v));
  }
  PackStore store(set, rs(2, 2));
  const auto data = random_bytes(rng, 100000);

  SUBCASE("down to the reserve: data gets ENOSPC, a backup still fits") {
    for (SmallVolume* v : small) v->taken = kTotal - (3 << 20);  // 3 MiB free, under the 4 MiB reserve
    auto refused = store.write(1, data);
    CHECK(refused.status().code() == ENOSPC);
    CHECK(refused.status().message().find("4 volume(s) full") != std::string::npos);
    size_t objects = 0;
    for (SmallVolume* v : small) objects += v->TEST_object_count();
    CHECK(objects == 0);
    auto backup = store.write(2, data, PackStore::Durability::kNow, PackStore::Room::kReserve);
    REQUIRE(backup.ok());
    check_reads(store, *backup, data, rng, 2);
    size_t short_of_room = 0;
    CHECK(set.choose(4, true, 0, &short_of_room).empty());
    CHECK(short_of_room == 4);
    CHECK(set.choose(4).size() == 4);
  }
  SUBCASE("a put that fails with ENOSPC marks the volume full until it has room again") {
    REQUIRE(store.write(1, data).ok());  // every volume's space is known: roomy
    small[0]->taken = kTotal;            // volume 0 fills up behind the set's back
    // Not written degraded (it would survive one loss, not two): ENOSPC, and
    // the three fragments that were written are gone again.
    auto refused_data = store.write(2, data);
    CHECK(refused_data.status().code() == ENOSPC);
    size_t objects = 0;
    for (SmallVolume* v : small) objects += v->TEST_object_count();
    CHECK(objects == 4);  // pack 1's
    size_t short_of_room = 0;
    auto chosen = set.choose(4, true, 0, &short_of_room);
    CHECK(chosen.size() == 3);
    CHECK(std::find(chosen.begin(), chosen.end(), 0u) == chosen.end());
    CHECK(short_of_room == 1);
    CHECK(store.write(3, data).status().code() == ENOSPC);  // refused before any put
    // A few MiB free again, not yet enough for data: a backup still uses the
    // volume marked full (the backup is what frees deleted data's space).
    small[0]->taken = kTotal - (3 << 20);
    CHECK(set.choose(4).size() == 4);
    auto backup = store.write(5, data, PackStore::Durability::kNow, PackStore::Room::kReserve);
    REQUIRE(backup.ok());
    CHECK(small[0]->TEST_object_count() == 2);  // pack 1's fragment and the backup's
    check_reads(store, *backup, data, rng, 2);
    CHECK(store.write(6, data).status().code() == ENOSPC);  // still full for data
    // Room again: chosen once the space is asked again (every few seconds).
    for (SmallVolume* v : small) v->taken = 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(3100));
    CHECK(set.choose(4, true).size() == 4);
    REQUIRE(store.write(4, data).ok());
  }
}

TEST_CASE("VolumeSet: placement rotates across equal volumes and favours free space") {
  std::mt19937_64 rng(13);
  SUBCASE("4 equal volumes, 2+1, 100 packs") {
    Cluster c(4, 2, 1);
    std::map<uint32_t, int> count;
    for (uint64_t p = 0; p < 100; ++p) {
      auto layout = c.store->write(p, random_bytes(rng, 3000));
      REQUIRE(layout.ok());
      for (uint32_t v : layout->volumes) ++count[v];
    }
    for (auto& [id, n] : count) CHECK(n == 75);
  }
  SUBCASE("choose alone rotates when nothing is accounted") {
    Cluster c(4, 1, 0);
    std::map<uint32_t, int> count;
    for (int i = 0; i < 100; ++i) {
      auto chosen = c.set.choose(1);
      REQUIRE(chosen.size() == 1);
      ++count[chosen[0]];
    }
    for (auto& [id, n] : count) CHECK(n == 25);
  }
  SUBCASE("a volume with far more free space gets more fragments") {
    // A memory volume that reports an extra 100 MB of free space.
    struct RoomyVolume : MemoryVolume {
      using MemoryVolume::MemoryVolume;
      Result<SpaceInfo> space() override {
        auto s = MemoryVolume::space();
        if (s.ok()) s->free_bytes += 100'000'000;
        return s;
      }
    };
    VolumeSet set;
    for (uint32_t i = 0; i < 3; ++i) {
      set.add(i, fmt::format("mem://v{}", i),
              std::make_unique<MemoryVolume>(fmt::format("mem://v{}", i)));
    }
    set.add(3, "mem://roomy", std::make_unique<RoomyVolume>("mem://roomy"));
    PackStore store(set, rs(2, 0));
    std::map<uint32_t, int> count;
    for (uint64_t p = 0; p < 100; ++p) {
      auto layout = store.write(p, random_bytes(rng, 3000));
      REQUIRE(layout.ok());
      for (uint32_t v : layout->volumes) ++count[v];
    }
    CHECK(count[3] == 100);
    CHECK(count[0] + count[1] + count[2] == 100);
    for (uint32_t i = 0; i < 3; ++i) CHECK(count[i] >= 33);
  }
  SUBCASE("offline members are not chosen; add() brings one back") {
    VolumeSet set;
    set.add(1, "mem://a", std::make_unique<MemoryVolume>("mem://a"));
    set.add(2, "mem://b", nullptr);
    CHECK(set.online_count() == 1);
    CHECK(set.choose(2) == std::vector<uint32_t>{1});
    CHECK(set.uri(2) == "mem://b");
    set.mark_offline(1, Status::Error(EIO, "test"));
    CHECK(set.choose(2).empty());
    CHECK(set.get(1) == nullptr);
    set.add(2, "mem://b", std::make_unique<MemoryVolume>("mem://b"));
    CHECK(set.choose(2) == std::vector<uint32_t>{2});
    CHECK(set.ids() == std::vector<uint32_t>{1, 2});
  }
}

TEST_CASE("PackStore reads packs written with another geometry") {
  std::mt19937_64 rng(14);
  Cluster c(6, 2, 2);
  PackStore wide(c.set, rs(4, 2), 4096);
  auto data = random_bytes(rng, 123457);
  auto layout = wide.write(77, data);
  REQUIRE(layout.ok());
  CHECK(layout->k == 4);
  c.volume_of(*layout, 1).TEST_set_offline(true);
  c.volume_of(*layout, 3).TEST_set_offline(true);
  check_reads(*c.store, *layout, data, rng, 10);
}

TEST_CASE("PackStore is safe to use from several threads") {
  Cluster c(5, 2, 2);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + static_cast<uint64_t>(t));
      for (int p = 0; p < 10; ++p) {
        auto data = random_bytes(rng, 1 + rng() % 100000);
        auto layout = c.store->write(static_cast<uint64_t>(t * 1000 + p), data);
        if (!layout.ok()) {
          ++failures;
          continue;
        }
        std::vector<uint8_t> out(data.size());
        if (!c.store->read(*layout, 0, out).ok() || out != data) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
}

TEST_CASE("PackStore: concurrent degraded reads with a cold cache") {
  std::mt19937_64 rng(16);
  Cluster c(4, 2, 2);
  std::vector<std::vector<uint8_t>> packs;
  std::vector<PackLayout> layouts;
  for (uint64_t p = 0; p < 8; ++p) {
    packs.push_back(random_bytes(rng, 1 + rng() % 60000));
    auto layout = c.store->write(p, packs.back());
    REQUIRE(layout.ok());
    layouts.push_back(*layout);
  }
  c.mem[100]->TEST_set_offline(true);
  c.mem[102]->TEST_wipe();
  auto cold = c.fresh_store(2, 2);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 local(200 + static_cast<uint64_t>(t));
      for (int r = 0; r < 50; ++r) {
        size_t p = local() % packs.size();
        uint64_t off = local() % packs[p].size();
        std::vector<uint8_t> out(1 + local() % (packs[p].size() - off));
        if (!cold->read(layouts[p], off, out).ok() ||
            !std::equal(out.begin(), out.end(),
                        packs[p].begin() + static_cast<std::ptrdiff_t>(off))) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(cold->degraded_reads() > 0);
}

TEST_CASE("encode and PackStore throughput (informational)") {
  std::mt19937_64 rng(15);
  auto code = rs(2, 2);
  const size_t size = 16 << 20;  // per fragment
  Fragments f = encode_random(*code, rng, size);
  std::vector<const uint8_t*> data(f.ptrs.begin(), f.ptrs.begin() + 2);
  const int rounds = 8;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < rounds; ++i) code->encode(data.data(), f.ptrs.data() + 2, size);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("RS(2,2) encode: " << (2.0 * size * rounds / secs / 1e6) << " MB/s of data");

  auto pack = random_bytes(rng, 4 << 20);
  {
    // Volumes that drop every put: the stripe layer's own cost.
    struct NullVolume : Volume {
      std::string uri() const override { return "null://"; }
      Status put(std::string_view, std::span<const uint8_t>) override { return Status::Ok(); }
      Result<size_t> read(std::string_view, uint64_t, std::span<uint8_t>) override {
        return Status::Error(ENOENT, "null");
      }
      Status remove(std::string_view) override { return Status::Ok(); }
      Result<ObjectInfo> stat(std::string_view) override { return Status::Error(ENOENT, "null"); }
      Status list(std::string_view, const std::function<void(const ObjectInfo&)>&) override {
        return Status::Ok();
      }
      Result<SpaceInfo> space() override { return SpaceInfo{1 << 30, 1 << 30}; }
    };
    VolumeSet set;
    for (uint32_t i = 0; i < 4; ++i) set.add(i, "null://", std::make_unique<NullVolume>());
    PackStore store(set, rs(2, 2));
    start = std::chrono::steady_clock::now();
    for (int i = 0; i < 32; ++i) REQUIRE(store.write(static_cast<uint64_t>(i), pack).ok());
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MESSAGE("PackStore::write 2+2, volumes that drop puts: " << (32.0 * pack.size() / secs / 1e6)
                                                             << " MB/s");
  }
  Cluster c(4, 2, 2, 64 * 1024);
  start = std::chrono::steady_clock::now();
  std::vector<PackLayout> layouts;
  for (int i = 0; i < 16; ++i) {
    auto layout = c.store->write(static_cast<uint64_t>(i), pack);
    REQUIRE(layout.ok());
    layouts.push_back(*layout);
  }
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("PackStore::write 2+2 to memory volumes: " << (16.0 * pack.size() / secs / 1e6)
                                                     << " MB/s");
  std::vector<uint8_t> out(128 * 1024);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < 16; ++i) {
    for (size_t off = 0; off + out.size() <= pack.size(); off += out.size()) {
      REQUIRE(c.store->read(layouts[static_cast<size_t>(i)], off, out).ok());
    }
  }
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("PackStore::read 128 KiB healthy: " << (16.0 * pack.size() / secs / 1e6) << " MB/s");
  for (int i : {0, 1}) c.volume_of(layouts[0], i).TEST_set_offline(true);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < 16; ++i) {
    for (size_t off = 0; off + out.size() <= pack.size(); off += out.size()) {
      REQUIRE(c.store->read(layouts[static_cast<size_t>(i)], off, out).ok());
    }
  }
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("PackStore::read 128 KiB, both data fragments lost: " << (16.0 * pack.size() / secs / 1e6)
                                                                << " MB/s");
}
