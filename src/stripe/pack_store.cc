// PackStore: packs as k data + m parity fragments on distinct volumes.
//
// Write: cut the pack into k zero-padded data fragments, encode m parity
// fragments, then checksum and put all k+m fragment objects in parallel.
// Read: map the byte range onto data fragments, read whole checksum blocks and
// verify them; a fragment range that is missing, unreadable or corrupt is
// rebuilt from the same block range of k other good fragments.

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>

#include "frugalfs/hash.h"
#include "frugalfs/stripe.h"
#include "stripe/fragment_format.h"
#include "stripe/read_caches.h"
#include "util/background_tasks.h"
#include "util/parallel.h"

namespace frugalfs {

using stripe::ChecksumTable;

std::string fragment_object_name(uint64_t pack_id, int index) {
  return fmt::format("frag-{:016x}-{}", pack_id, index);
}

bool parse_fragment_object_name(std::string_view name, uint64_t* pack_id, uint32_t* index) {
  constexpr std::string_view kPrefix = "frag-";
  if (!name.starts_with(kPrefix)) return false;
  std::string_view rest = name.substr(kPrefix.size());
  if (rest.size() < 18 || rest[16] != '-') return false;
  for (char ch : rest.substr(0, 16)) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  }
  std::string_view digits = rest.substr(17);
  if (digits.empty() || digits.size() > 3) return false;
  uint64_t id = 0;
  uint32_t i = 0;
  auto [p1, e1] = std::from_chars(rest.data(), rest.data() + 16, id, 16);
  auto [p2, e2] = std::from_chars(digits.data(), digits.data() + digits.size(), i, 10);
  if (e1 != std::errc() || e2 != std::errc() || p2 != digits.data() + digits.size()) return false;
  // Only the canonical spelling (no leading zeros in the index).
  if (fragment_object_name(id, static_cast<int>(i)) != name) return false;
  *pack_id = id;
  *index = i;
  return true;
}

Result<FragmentInfo> read_fragment_info(Volume& volume, std::string_view name) {
  uint64_t pack_id = 0;
  uint32_t index = 0;
  if (!parse_fragment_object_name(name, &pack_id, &index)) {
    return Errorf(EINVAL, "{} is not a fragment name", name);
  }
  std::array<uint8_t, stripe::kFragmentHeaderSize> bytes{};
  FRUGAL_ASSIGN_OR_RETURN(size_t n, volume.read(name, 0, bytes));
  if (n < bytes.size()) return Errorf(EINVAL, "{}: shorter than a fragment header", name);
  auto header = stripe::parse_header(bytes);
  if (!header.ok()) return header.status().WithContext(std::string(name));
  if (header->pack_id != pack_id || header->index != index) {
    return Errorf(EINVAL, "{}: the header names fragment {} of pack {:016x}", name, header->index,
                  header->pack_id);
  }
  return FragmentInfo{header->pack_id, header->index, header->k, header->m, header->block_size,
                      header->pack_len, header->fragment_len, header->table_checksum};
}

namespace {

constexpr size_t kTableCacheEntries = 4096;
// Sequential reads read and verify fragment payload in windows of this many
// bytes (rounded down to whole blocks): one read per window instead of one
// per chunk, and the chunks are used in place.
constexpr uint64_t kWindowBytes = uint64_t{1} << 20;
// Windows kept (32 MiB): the windows a few sequential readers are in.
constexpr size_t kWindowCacheEntries = 32;
// Windows are read ahead on threads of their own, a few at a time: the reads
// wait on the disk, not on a core. At most kReadAheadQueue wait their turn:
// with those being read, half the window cache, so that windows read ahead
// for one reader do not push out those read ahead for another before use.
constexpr size_t kReadAheadThreads = 8;
constexpr size_t kReadAheadQueue = kWindowCacheEntries / 2 - kReadAheadThreads;
constexpr int kMaxFragments = 32;
constexpr auto kDegradedLogInterval = std::chrono::seconds(60);

uint64_t round_up(uint64_t x, uint64_t to) { return (x + to - 1) / to * to; }

// Calls visit(index, begin, end) for each data fragment that pack bytes
// [offset, offset + len) map onto, with the payload range in that fragment,
// in order. Stops at the first error visit returns.
template <typename Visit>
Status for_each_fragment_range(const PackLayout& layout, uint64_t offset, uint64_t len,
                               Visit&& visit) {
  const uint64_t fl = layout.fragment_len;
  for (uint64_t pos = offset, stop = offset + len; pos < stop;) {
    const uint64_t index = pos / fl;
    const uint64_t begin = pos - index * fl;
    const uint64_t end = std::min(fl, begin + (stop - pos));
    FRUGAL_TRY(visit(static_cast<int>(index), begin, end));
    pos += end - begin;
  }
  return Status::Ok();
}

Status check_layout(const PackLayout& l) {
  const size_t n = size_t{l.k} + l.m;
  if (l.k < 1 || n > kMaxFragments || l.volumes.size() != n || l.fragment_checksums.size() != n ||
      l.block_size == 0 || l.block_size % ErasureCode::kAlignment != 0 ||
      l.fragment_len % ErasureCode::kAlignment != 0 || l.fragment_len * l.k < l.pack_len) {
    return Errorf(EINVAL,
                  "pack {:016x}: invalid layout (k={} m={} volumes={} checksums={} block={} "
                  "pack_len={} fragment_len={})",
                  l.pack_id, l.k, l.m, l.volumes.size(), l.fragment_checksums.size(), l.block_size,
                  l.pack_len, l.fragment_len);
  }
  return Status::Ok();
}

// Buffers of finished pack writes, lent to the next ones: fragments are
// megabytes each, and a fresh buffer costs a page fault and a page clearing
// per 4 KiB. Keeps at most kKeptBytes in buffers of at most kLargest bytes
// (enough for the data packs a writer keeps in flight); others, like a
// metadata backup's, are freed.
class BufferPool {
 public:
  struct Buffer {
    AlignedBytes bytes;  // aligned: volumes write large objects without the page cache
    size_t size = 0;
  };

  // A buffer of at least `size` bytes (the smallest kept one that fits),
  // contents unspecified.
  Buffer take(size_t size) {
    {
      std::lock_guard lock(mu_);
      auto best = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->size >= size && (best == free_.end() || it->size < best->size)) best = it;
      }
      if (best != free_.end()) {
        Buffer b = std::move(*best);
        free_.erase(best);
        kept_bytes_ -= b.size;
        return b;
      }
    }
    return {make_aligned_bytes(size), size};
  }

  void give_back(Buffer b) {
    if (b.size > kLargest) return;
    std::lock_guard lock(mu_);
    if (kept_bytes_ + b.size > kKeptBytes) return;
    kept_bytes_ += b.size;
    free_.push_back(std::move(b));
  }

 private:
  static constexpr size_t kLargest = size_t{16} << 20;
  static constexpr size_t kKeptBytes = size_t{64} << 20;
  std::mutex mu_;
  std::vector<Buffer> free_;
  size_t kept_bytes_ = 0;
};

}  // namespace

struct PackStore::State {
  State(VolumeSet& v, std::unique_ptr<ErasureCode> c, uint32_t bs)
      : volumes(v), code(std::move(c)), block_size(bs) {}

  VolumeSet& volumes;
  std::unique_ptr<ErasureCode> code;  // the geometry new packs are written with
  const uint32_t block_size;
  stripe::ChecksumTableCache tables{kTableCacheEntries};
  stripe::VerifiedWindowCache windows{kWindowCacheEntries};
  std::atomic<uint64_t> degraded_reads{0};
  std::atomic<uint64_t> windows_read_ahead{0};
  BufferPool buffers;  // fragment objects being built

  // Codes for other geometries (packs written before the stripe was widened).
  std::mutex codes_mu;
  std::map<std::pair<int, int>, std::unique_ptr<ErasureCode>> other_codes;

  // Volumes that took a fragment written kAtSync since their last sync.
  std::mutex unsynced_mu;
  std::set<uint32_t> unsynced;

  std::mutex log_mu;
  bool logged_degraded = false;
  std::chrono::steady_clock::time_point last_degraded_log{};
  uint64_t degraded_writes_unlogged = 0;

  Result<const ErasureCode*> code_for(const PackLayout& layout);
  Result<std::shared_ptr<const ChecksumTable>> load_table(const PackLayout& layout, int index,
                                                          Volume& volume, const std::string& name);
  Status read_verified(const PackLayout& layout, int index, uint64_t begin, std::span<uint8_t> out);
  Status rebuild(const PackLayout& layout, const ErasureCode& code, int target, uint64_t begin,
                 std::span<uint8_t> out, const Status& why);
  // Reads and verifies (or rebuilds) payload bytes [begin, begin +
  // out.size()) of fragment `index`: whole blocks, or the fragment's end.
  Status read_blocks(const PackLayout& layout, const ErasureCode& code, int index, uint64_t begin,
                     std::span<uint8_t> out);
  // Window `window` of fragment `index`, verified or rebuilt: from the cache,
  // or read and kept there.
  Result<stripe::VerifiedWindowCache::WindowPtr> window(const PackLayout& layout,
                                                        const ErasureCode& code, int index,
                                                        uint64_t window);
  // Whether a reader with this pattern, at payload offset `pos` of fragment
  // `index`, should read the whole window there. Only a sequential reader,
  // and only where it has come to the window from the one before (cached, or
  // being loaded by another thread of the same reader) or starts at the
  // window's first block: a file whose chunks lie scattered over many packs
  // is read forward, but each window would serve one chunk.
  bool worth_window(const PackLayout& layout, int index, uint64_t pos, ReadPattern pattern);
  // The window that holds payload offset `pos` of fragment `index` if it is
  // cached, or worth loading (worth_window) and loaded whole; otherwise
  // null (the caller reads the blocks it needs alone).
  stripe::VerifiedWindowCache::WindowPtr usable_window(const PackLayout& layout,
                                                       const ErasureCode& code, int index,
                                                       uint64_t pos, ReadPattern pattern);
  Status read_fragment_range(const PackLayout& layout, const ErasureCode& code, int index,
                             uint64_t begin, uint64_t end, std::span<uint8_t> out,
                             ReadPattern pattern);
  void note_degraded_write(uint64_t pack_id, int durable, int total,
                           const std::vector<uint32_t>& missing);
  Result<PackLayout> write(uint64_t pack_id, std::span<const uint8_t> pack, Durability durability, Room room);
  Status verify(const PackLayout& layout, std::vector<std::string>* problems);
  // Asks the volume to fetch payload bytes [begin, end) of fragment `index`
  // (whole blocks), and the header and table before them unless cached.
  void hint_blocks(const PackLayout& layout, int index, uint64_t begin, uint64_t end);

  // Last: destroyed first, so no window load runs on a State being torn down.
  BackgroundTasks read_ahead{kReadAheadThreads, kReadAheadQueue};
};

Result<const ErasureCode*> PackStore::State::code_for(const PackLayout& layout) {
  if (layout.k == code->data_fragments() && layout.m == code->parity_fragments()) return code.get();
  std::lock_guard lock(codes_mu);
  auto& slot = other_codes[{layout.k, layout.m}];
  if (!slot) {
    FRUGAL_ASSIGN_OR_RETURN(slot, ErasureCode::ReedSolomon(layout.k, layout.m));
  }
  return static_cast<const ErasureCode*>(slot.get());
}

Result<std::shared_ptr<const ChecksumTable>> PackStore::State::load_table(const PackLayout& layout,
                                                                          int index, Volume& volume,
                                                                          const std::string& name) {
  const uint64_t expected = layout.fragment_checksums[static_cast<size_t>(index)];
  if (auto table = tables.get(layout.pack_id, index, expected)) return table;
  std::vector<uint8_t> head(stripe::payload_offset(layout));
  FRUGAL_ASSIGN_OR_RETURN(size_t n, volume.read(name, 0, head));
  if (n != head.size()) {
    return Errorf(EIO, "fragment too short ({} bytes, header and checksum table need {})", n,
                  head.size());
  }
  auto parsed = stripe::parse_checksum_table(head, layout, index);
  if (!parsed.ok()) return Status::Error(EIO, parsed.status().message());
  tables.put(layout.pack_id, index, *parsed);
  return parsed;
}

// Reads payload bytes [begin, begin + out.size()) of fragment `index`, which
// must start on a block boundary and end on one or at the fragment's end, and
// verifies every block. Any failure is an error naming the fragment.
Status PackStore::State::read_verified(const PackLayout& layout, int index, uint64_t begin,
                                       std::span<uint8_t> out) {
  const uint32_t id = layout.volumes[static_cast<size_t>(index)];
  Volume* volume = volumes.get(id);
  if (volume == nullptr)
    return Errorf(EIO, "fragment {} on {}: volume offline", index, volumes.uri(id));
  const std::string name = fragment_object_name(layout.pack_id, index);
  auto table = load_table(layout, index, *volume, name);
  if (!table.ok())
    return table.status().WithContext(fmt::format("fragment {} on {}", index, volume->uri()));
  auto n = volume->read(name, stripe::payload_offset(layout) + begin, out);
  if (!n.ok())
    return n.status().WithContext(fmt::format("fragment {} on {}", index, volume->uri()));
  if (*n != out.size()) {
    return Errorf(EIO, "fragment {} on {}: short read ({} of {} bytes at {})", index, volume->uri(),
                  *n, out.size(), begin);
  }
  int64_t bad = stripe::first_bad_block(**table, layout.block_size, begin / layout.block_size, out);
  if (bad >= 0) {
    return Errorf(EIO, "fragment {} on {}: block {} fails its checksum", index, volume->uri(), bad);
  }
  return Status::Ok();
}

// Rebuilds payload bytes [begin, begin + out.size()) of fragment `target`
// into out from the same range of k other fragments that verify.
Status PackStore::State::rebuild(const PackLayout& layout, const ErasureCode& code, int target,
                                 uint64_t begin, std::span<uint8_t> out, const Status& why) {
  const int k = layout.k;
  const int n = layout.k + layout.m;
  const size_t len = out.size();
  // The coding library wants every region at the same address modulo 16, so
  // the scratch regions are laid out to match the caller's buffer.
  constexpr size_t kAlign = 16;
  const size_t stride = round_up(len, kAlign);
  std::vector<uint8_t> scratch(stride * static_cast<size_t>(n - 1) + kAlign);
  const size_t shift =
      (reinterpret_cast<uintptr_t>(out.data()) - reinterpret_cast<uintptr_t>(scratch.data())) %
      kAlign;
  std::array<uint8_t*, kMaxFragments> regions{};
  for (int j = 0, s = 0; j < n; ++j) {
    regions[static_cast<size_t>(j)] =
        j == target ? out.data() : scratch.data() + shift + stride * static_cast<size_t>(s++);
  }
  std::array<bool, kMaxFragments> good{};
  int good_count = 0;
  std::string failures = why.message();
  // Data fragments first: they are what healthy reads touch, so they are the
  // most likely to be warm in the checksum cache.
  for (int j = 0; j < n && good_count < k; ++j) {
    if (j == target) continue;
    Status s = read_verified(layout, j, begin, {regions[static_cast<size_t>(j)], len});
    if (s.ok()) {
      good[static_cast<size_t>(j)] = true;
      ++good_count;
    } else {
      failures += "; " + s.message();
    }
  }
  if (good_count < k) {
    return Errorf(EIO,
                  "pack {:016x}: bytes [{}, {}) of fragment {} unrecoverable, only {} of {} "
                  "needed fragments readable: {}",
                  layout.pack_id, begin, begin + len, target, good_count, k, failures);
  }
  std::array<int, kMaxFragments> erased{};
  size_t erased_count = 0;
  for (int j = 0; j < n; ++j) {
    if (!good[static_cast<size_t>(j)]) erased[erased_count++] = j;
  }
  FRUGAL_TRY(code.decode(regions.data(), {erased.data(), erased_count}, len)
                 .WithContext(fmt::format("pack {:016x}", layout.pack_id)));
  degraded_reads.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status PackStore::State::read_blocks(const PackLayout& layout, const ErasureCode& code, int index,
                                     uint64_t begin, std::span<uint8_t> out) {
  Status s = read_verified(layout, index, begin, out);
  if (!s.ok()) FRUGAL_TRY(rebuild(layout, code, index, begin, out, s));
  return Status::Ok();
}

uint64_t window_bytes(const PackLayout& layout) {
  return std::max<uint64_t>(layout.block_size, kWindowBytes / layout.block_size * layout.block_size);
}

Result<stripe::VerifiedWindowCache::WindowPtr> PackStore::State::window(const PackLayout& layout,
                                                                       const ErasureCode& code,
                                                                       int index, uint64_t window) {
  const uint64_t table_checksum = layout.fragment_checksums[static_cast<size_t>(index)];
  return windows.get_or_load(
      layout.pack_id, index, table_checksum, window,
      [&]() -> Result<stripe::VerifiedWindowCache::WindowPtr> {
        const uint64_t begin = window * window_bytes(layout);
        auto w = std::make_shared<stripe::VerifiedWindowCache::Window>();
        w->size = static_cast<size_t>(std::min(window_bytes(layout), layout.fragment_len - begin));
        w->bytes = std::make_unique_for_overwrite<uint8_t[]>(w->size);  // overwritten by the read
        FRUGAL_TRY(read_blocks(layout, code, index, begin, {w->bytes.get(), w->size}));
        return stripe::VerifiedWindowCache::WindowPtr(std::move(w));
      });
}

bool PackStore::State::worth_window(const PackLayout& layout, int index, uint64_t pos,
                                   ReadPattern pattern) {
  if (pattern != ReadPattern::kSequential) return false;
  const uint64_t ws = window_bytes(layout);
  const uint64_t w = pos / ws;
  if (pos - w * ws < layout.block_size) return true;
  return w > 0 && windows.cached_or_loading(layout.pack_id, index,
                                            layout.fragment_checksums[static_cast<size_t>(index)],
                                            w - 1);
}

stripe::VerifiedWindowCache::WindowPtr PackStore::State::usable_window(const PackLayout& layout,
                                                                      const ErasureCode& code,
                                                                      int index, uint64_t pos,
                                                                      ReadPattern pattern) {
  const uint64_t w = pos / window_bytes(layout);
  auto cached =
      windows.get(layout.pack_id, index, layout.fragment_checksums[static_cast<size_t>(index)], w);
  if (cached != nullptr || !worth_window(layout, index, pos, pattern)) return cached;
  // A window that cannot be read or rebuilt whole may still hold the blocks
  // wanted intact: the caller reads those alone.
  auto loaded = window(layout, code, index, w);
  return loaded.ok() ? std::move(loaded).value() : nullptr;
}

// Copies payload bytes [begin, end) of data fragment `index` into out. Whole
// windows are read straight into out. The part of a window a range covers in
// part comes from the window cache when the window is there or the reader is
// sequential (the window is read then); otherwise (a random reader) only the
// blocks that hold it are read.
Status PackStore::State::read_fragment_range(const PackLayout& layout, const ErasureCode& code,
                                             int index, uint64_t begin, uint64_t end,
                                             std::span<uint8_t> out, ReadPattern pattern) {
  const uint64_t bs = layout.block_size;
  const uint64_t ws = window_bytes(layout);
  for (uint64_t pos = begin; pos < end;) {
    const uint64_t window_begin = pos / ws * ws;
    const uint64_t window_end = std::min(window_begin + ws, layout.fragment_len);
    const std::span<uint8_t> dest = out.subspan(static_cast<size_t>(pos - begin));
    if (pos == window_begin && end >= window_end) {
      const uint64_t run_end = end == layout.fragment_len ? end : end / ws * ws;
      FRUGAL_TRY(read_blocks(layout, code, index, pos, dest.first(static_cast<size_t>(run_end - pos))));
      pos = run_end;
      continue;
    }
    const uint64_t to = std::min(end, window_end);
    if (auto cached = usable_window(layout, code, index, pos, pattern)) {
      std::copy_n(cached->bytes.get() + (pos - window_begin), to - pos, dest.begin());
    } else {
      const uint64_t blocks_begin = pos / bs * bs;
      const uint64_t blocks_end = std::min(round_up(to, bs), layout.fragment_len);
      auto blocks = std::make_unique_for_overwrite<uint8_t[]>(blocks_end - blocks_begin);
      FRUGAL_TRY(read_blocks(layout, code, index, blocks_begin,
                             {blocks.get(), static_cast<size_t>(blocks_end - blocks_begin)}));
      std::copy_n(blocks.get() + (pos - blocks_begin), to - pos, dest.begin());
    }
    pos = to;
  }
  return Status::Ok();
}

void PackStore::State::note_degraded_write(uint64_t pack_id, int durable, int total,
                                           const std::vector<uint32_t>& missing) {
  std::lock_guard lock(log_mu);
  ++degraded_writes_unlogged;
  const auto now = std::chrono::steady_clock::now();
  if (logged_degraded && now - last_degraded_log < kDegradedLogInterval) return;
  std::string where;
  for (uint32_t id : missing) where += fmt::format(" {}", volumes.uri(id));
  fmt::print(stderr,
             "frugalfs: {} pack(s) written degraded since last report (e.g. pack {:016x}: {} of {} "
             "fragments durable; missing on{}); they need repair. Add a volume to write with full "
             "redundancy while one is down.\n",
             degraded_writes_unlogged, pack_id, durable, total, where);
  logged_degraded = true;
  last_degraded_log = now;
  degraded_writes_unlogged = 0;
}

Result<PackLayout> PackStore::State::write(uint64_t pack_id, std::span<const uint8_t> pack,
                                           Durability durability, Room room) {
  const bool keep_reserve = room == Room::kData;
  const int k = code->data_fragments();
  const int m = code->parity_fragments();
  const size_t n = static_cast<size_t>(k + m);

  PackLayout layout;
  layout.pack_id = pack_id;
  layout.k = static_cast<uint8_t>(k);
  layout.m = static_cast<uint8_t>(m);
  layout.block_size = block_size;
  layout.pack_len = pack.size();
  layout.fragment_len =
      round_up((pack.size() + static_cast<uint64_t>(k) - 1) / static_cast<uint64_t>(k),
               ErasureCode::kAlignment);

  // Placement: the emptiest online volumes; fragments that find no online
  // volume go to distinct offline ones and are left for repair.
  size_t short_of_room = 0;
  const uint64_t fragment_bytes = stripe::fragment_object_size(layout);
  layout.volumes = volumes.choose(n, keep_reserve, fragment_bytes, &short_of_room);
  const size_t online = layout.volumes.size();
  // Volumes that are otherwise fine but full: the filesystem is out of space.
  // A data pack is not written degraded for that (only for volumes that are
  // down): it would quietly survive fewer losses than promised.
  const size_t needed_with_room = keep_reserve ? n : static_cast<size_t>(k);
  if (short_of_room > 0 && online < needed_with_room) {
    return Errorf(ENOSPC, "pack {:016x}: {} volume(s) full{}, only {} with room; RS({},{}) needs {}", pack_id,
                  short_of_room, keep_reserve ? " (or down to the reserve kept for metadata)" : "", online, k, m,
                  needed_with_room);
  }
  if (online < static_cast<size_t>(k)) {
    return Errorf(EIO, "pack {:016x}: only {} volume(s) online, RS({},{}) needs at least {}",
                  pack_id, online, k, m, k);
  }
  if (online < n) {
    for (uint32_t id : volumes.ids()) {
      if (layout.volumes.size() == n) break;
      if (std::find(layout.volumes.begin(), layout.volumes.end(), id) == layout.volumes.end()) {
        layout.volumes.push_back(id);
      }
    }
    if (layout.volumes.size() < n) {
      return Errorf(EIO, "pack {:016x}: {} volume(s) known, RS({},{}) needs {} distinct ones",
                    pack_id, layout.volumes.size(), k, m, n);
    }
  }

  // Build the fragment objects: header + checksum table + payload, the data
  // payloads copied from the pack and the parity payloads encoded in place.
  const uint64_t fl = layout.fragment_len;
  const uint64_t payload = stripe::payload_offset(layout);
  const size_t object_size = static_cast<size_t>(payload + fl);
  std::vector<BufferPool::Buffer> objects(n);
  std::array<uint8_t*, kMaxFragments> payloads{};
  for (size_t i = 0; i < n; ++i) {
    objects[i] = buffers.take(object_size);
    payloads[i] = objects[i].bytes.get() + payload;
  }
  struct GiveBack {
    BufferPool& pool;
    std::vector<BufferPool::Buffer>& objects;
    ~GiveBack() {
      for (auto& b : objects) pool.give_back(std::move(b));
    }
  } give_back{buffers, objects};
  for (size_t i = 0; i < static_cast<size_t>(k); ++i) {
    const uint64_t begin = std::min<uint64_t>(i * fl, pack.size());
    const uint64_t end = std::min<uint64_t>(begin + fl, pack.size());
    std::copy(pack.begin() + static_cast<std::ptrdiff_t>(begin),
              pack.begin() + static_cast<std::ptrdiff_t>(end), payloads[i]);
    std::fill(payloads[i] + (end - begin), payloads[i] + fl, uint8_t{0});
  }
  code->encode(payloads.data(), payloads.data() + k, fl);

  // Checksum and put every fragment in parallel; a failed put takes its
  // volume out of placement and is retried once on a spare volume, if any.
  std::vector<Status> put_status(n);
  std::vector<uint8_t> written(n, 0);  // not vector<bool>: set from several threads
  layout.fragment_checksums.resize(n);
  auto put_fragment = [&](size_t i) {
    Volume* volume = volumes.get(layout.volumes[i]);
    const std::string name = fragment_object_name(pack_id, static_cast<int>(i));
    const std::span<const uint8_t> bytes(objects[i].bytes.get(), object_size);
    if (volume == nullptr) {
      put_status[i] = Errorf(EIO, "volume {} offline", volumes.uri(layout.volumes[i]));
    } else if (durability == Durability::kNow) {
      put_status[i] = volume->put(name, bytes);
    } else {
      put_status[i] = volume->put_deferred(name, bytes);
      if (put_status[i].ok()) {
        std::lock_guard lock(unsynced_mu);
        unsynced.insert(layout.volumes[i]);
      }
    }
    written[i] = put_status[i].ok();
  };
  parallel_for(n, n, [&](size_t i) {  // a thread per fragment: puts wait on I/O
    stripe::FragmentHeader h;
    h.pack_id = pack_id;
    h.index = static_cast<uint8_t>(i);
    h.k = layout.k;
    h.m = layout.m;
    h.block_size = block_size;
    h.pack_len = layout.pack_len;
    h.fragment_len = fl;
    layout.fragment_checksums[i] = stripe::seal_fragment(h, {objects[i].bytes.get(), object_size});
    if (i < online) put_fragment(i);
  });

  std::vector<size_t> failed;
  for (size_t i = 0; i < online; ++i) {
    if (!written[i]) {
      volumes.avoid_for_writes(layout.volumes[i], put_status[i]);
      failed.push_back(i);
    }
  }
  if (!failed.empty()) {
    std::vector<size_t> retry;
    for (uint32_t id : volumes.choose(volumes.ids().size(), keep_reserve, fragment_bytes)) {
      if (retry.size() == failed.size()) break;
      if (std::find(layout.volumes.begin(), layout.volumes.end(), id) == layout.volumes.end()) {
        layout.volumes[failed[retry.size()]] = id;
        retry.push_back(failed[retry.size()]);
      }
    }
    parallel_for(retry.size(), retry.size(), [&](size_t r) { put_fragment(retry[r]); });
    for (size_t i : retry) {
      if (!written[i]) volumes.avoid_for_writes(layout.volumes[i], put_status[i]);
    }
  }

  int durable = 0;
  std::vector<uint32_t> missing;
  for (size_t i = 0; i < n; ++i) {
    if (written[i]) {
      ++durable;
    } else {
      missing.push_back(layout.volumes[i]);
    }
  }
  // A full disk is reported as such, so the writer sees ENOSPC; and a
  // fragment refused for lack of room fails a data pack (see above).
  const bool full = std::any_of(put_status.begin(), put_status.end(),
                                [](const Status& s) { return s.code() == ENOSPC; });
  const bool refused_for_room = keep_reserve && full && durable < static_cast<int>(n);
  if (durable < k || refused_for_room) {
    std::string why;
    for (size_t i = 0; i < n; ++i) {
      if (written[i]) {
        if (Volume* v = volumes.get(layout.volumes[i])) {
          v->remove(fragment_object_name(pack_id, static_cast<int>(i))).IgnoreError();
        }
      } else if (!put_status[i].ok()) {
        why += fmt::format("; fragment {}: {}", i, put_status[i].message());
      }
    }
    return Errorf(full ? ENOSPC : EIO, "pack {:016x}: only {} of {} fragments written, {} needed{}",
                  pack_id, durable, n, refused_for_room ? n : static_cast<size_t>(k), why);
  }
  if (static_cast<size_t>(durable) < n) {
    note_degraded_write(pack_id, durable, static_cast<int>(n), missing);
  }

  // The tables just computed are what the next reads of this pack will need.
  for (size_t i = 0; i < n; ++i) {
    auto table = std::make_shared<ChecksumTable>();
    table->table_checksum = layout.fragment_checksums[i];
    const uint64_t blocks = stripe::block_count(fl, block_size);
    table->sums.resize(blocks);
    const uint8_t* raw = objects[i].bytes.get() + stripe::kFragmentHeaderSize;
    for (uint64_t b = 0; b < blocks; ++b) {
      uint64_t v = 0;
      for (int byte = 0; byte < 8; ++byte)
        v |= uint64_t{raw[8 * b + static_cast<uint64_t>(byte)]} << (8 * byte);
      table->sums[b] = v;
    }
    tables.put(pack_id, static_cast<int>(i), std::move(table));
  }
  return layout;
}

Status PackStore::State::verify(const PackLayout& layout, std::vector<std::string>* problems) {
  const std::string pack = fmt::format("pack {:016x}", layout.pack_id);
  if (Status s = check_layout(layout); !s.ok()) {
    problems->push_back(s.message());
    return Status::Ok();
  }
  const size_t n = layout.volumes.size();
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      if (layout.volumes[i] == layout.volumes[j]) {
        problems->push_back(fmt::format("{}: fragments {} and {} are both on {}", pack, i, j,
                                        volumes.uri(layout.volumes[i])));
      }
    }
  }
  const uint64_t expected_size = stripe::fragment_object_size(layout);
  const uint64_t payload = stripe::payload_offset(layout);
  std::vector<uint8_t> buf;
  std::string unreachable;
  for (size_t i = 0; i < n; ++i) {
    const int index = static_cast<int>(i);
    const uint32_t id = layout.volumes[i];
    const std::string where = fmt::format("{} fragment {} on {}", pack, i, volumes.uri(id));
    Volume* volume = volumes.get(id);
    if (volume == nullptr) {
      unreachable += fmt::format("; {}: volume offline", where);
      continue;
    }
    const std::string name = fragment_object_name(layout.pack_id, index);
    auto info = volume->stat(name);
    if (!info.ok()) {
      if (info.status().code() == ENOENT) {
        problems->push_back(fmt::format("{}: missing", where));
      } else {
        unreachable += fmt::format("; {}: {}", where, info.status().message());
      }
      continue;
    }
    if (info->size != expected_size) {
      problems->push_back(
          fmt::format("{}: wrong length {} bytes, expected {}", where, info->size, expected_size));
      continue;
    }
    buf.resize(static_cast<size_t>(expected_size));
    auto got = volume->read(name, 0, buf);
    if (!got.ok()) {
      if (got.status().code() == ENOENT) {
        problems->push_back(fmt::format("{}: missing", where));
      } else {
        unreachable += fmt::format("; {}: {}", where, got.status().message());
      }
      continue;
    }
    if (*got != buf.size()) {
      problems->push_back(
          fmt::format("{}: wrong length {} bytes, expected {}", where, *got, expected_size));
      continue;
    }
    auto header = stripe::parse_header(buf);
    if (!header.ok()) {
      problems->push_back(fmt::format("{}: bad header: {}", where, header.status().message()));
      continue;
    }
    if (Status s = stripe::check_header_matches(*header, layout, index); !s.ok()) {
      problems->push_back(fmt::format("{}: bad header: {}", where, s.message()));
      continue;
    }
    auto table =
        stripe::parse_checksum_table({buf.data(), static_cast<size_t>(payload)}, layout, index);
    if (!table.ok()) {
      problems->push_back(
          fmt::format("{}: bad checksum table: {}", where, table.status().message()));
      continue;
    }
    const std::span<const uint8_t> data(buf.data() + payload,
                                        static_cast<size_t>(layout.fragment_len));
    const uint64_t blocks = stripe::block_count(layout.fragment_len, layout.block_size);
    for (uint64_t b = 0; b < blocks; ++b) {
      const uint64_t begin = b * layout.block_size;
      const uint64_t len = std::min<uint64_t>(layout.block_size, layout.fragment_len - begin);
      if (stripe::first_bad_block(
              **table, layout.block_size, b,
              data.subspan(static_cast<size_t>(begin), static_cast<size_t>(len))) >= 0) {
        problems->push_back(
            fmt::format("{}: bad block checksum in block {} (payload bytes [{}, {}))", where, b,
                        begin, begin + len));
      }
    }
  }
  if (!unreachable.empty()) {
    return Errorf(EIO, "{}: could not check every fragment{}", pack, unreachable);
  }
  return Status::Ok();
}

PackStore::PackStore(VolumeSet& volumes, std::unique_ptr<ErasureCode> code, uint32_t block_size)
    // A block size must be a positive multiple of the coding alignment.
    : state_(
          std::make_unique<State>(volumes, std::move(code),
                                  static_cast<uint32_t>(round_up(std::max<uint32_t>(block_size, 1),
                                                                 ErasureCode::kAlignment)))) {
  assert(state_->code != nullptr);
}

PackStore::~PackStore() = default;

int PackStore::k() const { return state_->code->data_fragments(); }
int PackStore::m() const { return state_->code->parity_fragments(); }

Result<PackLayout> PackStore::write(uint64_t pack_id, std::span<const uint8_t> pack,
                                    Durability durability, Room room) {
  try {
    return state_->write(pack_id, pack, durability, room);
  } catch (const std::bad_alloc&) {
    return Errorf(ENOMEM, "pack {:016x}: out of memory writing {} bytes", pack_id, pack.size());
  } catch (const std::exception& e) {
    return Errorf(EIO, "pack {:016x}: write failed: {}", pack_id, e.what());
  }
}

Status PackStore::sync() {
  State& s = *state_;
  std::vector<uint32_t> ids;
  {
    std::lock_guard lock(s.unsynced_mu);
    ids.assign(s.unsynced.begin(), s.unsynced.end());
    s.unsynced.clear();
  }
  // One sync per domain (volumes on one filesystem share a syncfs), by the
  // first of its volumes that took fragments.
  std::map<std::string, std::vector<uint32_t>> domains;
  for (uint32_t id : ids) {
    Volume* volume = s.volumes.get(id);
    domains[volume != nullptr ? volume->sync_domain() : s.volumes.uri(id)].push_back(id);
  }
  std::vector<std::vector<uint32_t>> groups;
  for (auto& [domain, members] : domains) groups.push_back(std::move(members));
  std::vector<Status> synced(groups.size());
  try {
    parallel_for(groups.size(), groups.size(), [&](size_t i) {  // a thread per domain: syncs wait on I/O
      const uint32_t id = groups[i].front();
      Volume* volume = s.volumes.get(id);
      synced[i] = volume == nullptr ? Errorf(EIO, "volume {} went offline before its fragments were "
                                                  "synced", s.volumes.uri(id))
                                    : volume->sync();
    });
  } catch (const std::exception& e) {
    return Errorf(ENOMEM, "syncing volumes: {}", e.what());
  }
  // A failed volume is not listed again: the writer's flush fails and is
  // retried on the other volumes, and the next sync must not fail for it
  // (FileVolume's failure is sticky), or one bad disk would stop all writes.
  // A failed sync fails every volume of its domain.
  // (The file system's flusher may write the next flush's fragments while
  // one syncs; a fragment put on the failed volume after the snapshot above
  // lists it again, and the next sync fails for it once more. That next
  // flush is put back anyway when this one fails: its commit may name this
  // one's chunks. So a failing disk costs one more failed round, not data.)
  Status first;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (synced[i].ok()) continue;
    for (uint32_t id : groups[i]) s.volumes.avoid_for_writes(id, synced[i]);
    if (first.ok()) first = synced[i];
  }
  return first;
}

Status PackStore::read(const PackLayout& layout, uint64_t offset, std::span<uint8_t> out,
                       ReadPattern pattern) {
  try {
    FRUGAL_TRY(check_layout(layout));
    if (offset > layout.pack_len || out.size() > layout.pack_len - offset) {
      return Errorf(EINVAL, "pack {:016x}: read of {} bytes at {} beyond its {} bytes",
                    layout.pack_id, out.size(), offset, layout.pack_len);
    }
    if (out.empty()) return Status::Ok();
    FRUGAL_ASSIGN_OR_RETURN(const ErasureCode* code, state_->code_for(layout));
    size_t done = 0;
    return for_each_fragment_range(layout, offset, out.size(), [&](int index, uint64_t begin,
                                                                   uint64_t end) {
      const size_t len = static_cast<size_t>(end - begin);
      FRUGAL_TRY(state_->read_fragment_range(layout, *code, index, begin, end,
                                             out.subspan(done, len), pattern));
      done += len;
      return Status::Ok();
    });
  } catch (const std::bad_alloc&) {
    return Errorf(ENOMEM, "pack {:016x}: out of memory reading", layout.pack_id);
  } catch (const std::exception& e) {
    return Errorf(EIO, "pack {:016x}: read failed: {}", layout.pack_id, e.what());
  }
}

Result<std::optional<PackStore::View>> PackStore::view(const PackLayout& layout, uint64_t offset,
                                                       uint64_t len, ReadPattern pattern) {
  try {
    FRUGAL_TRY(check_layout(layout));
    if (offset > layout.pack_len || len > layout.pack_len - offset) {
      return Errorf(EINVAL, "pack {:016x}: view of {} bytes at {} beyond its {} bytes",
                    layout.pack_id, len, offset, layout.pack_len);
    }
    if (len == 0) return std::optional<View>();
    const uint64_t fl = layout.fragment_len;
    const uint64_t ws = window_bytes(layout);
    const uint64_t index = offset / fl;
    const uint64_t begin = offset - index * fl;
    if (begin + len > fl || begin / ws != (begin + len - 1) / ws) return std::optional<View>();
    FRUGAL_ASSIGN_OR_RETURN(const ErasureCode* code, state_->code_for(layout));
    // Without a window, left to read(), which reads the blocks alone.
    auto cached = state_->usable_window(layout, *code, static_cast<int>(index), begin, pattern);
    if (cached == nullptr) return std::optional<View>();
    const uint8_t* at = cached->bytes.get() + (begin % ws);
    return std::optional<View>(View{std::move(cached), std::span<const uint8_t>(at, static_cast<size_t>(len))});
  } catch (const std::bad_alloc&) {
    return Errorf(ENOMEM, "pack {:016x}: out of memory reading", layout.pack_id);
  } catch (const std::exception& e) {
    return Errorf(EIO, "pack {:016x}: read failed: {}", layout.pack_id, e.what());
  }
}

void PackStore::State::hint_blocks(const PackLayout& layout, int index, uint64_t begin,
                                   uint64_t end) {
  const size_t i = static_cast<size_t>(index);
  Volume* volume = volumes.get(layout.volumes[i]);
  if (volume == nullptr) return;
  const std::string name = fragment_object_name(layout.pack_id, index);
  const uint64_t bs = layout.block_size;
  const uint64_t payload = stripe::payload_offset(layout);
  uint64_t from = payload + begin / bs * bs;
  const uint64_t blocks_end = payload + std::min(round_up(end, bs), layout.fragment_len);
  // The header and checksum table too, unless they are cached: in the same
  // hint when the blocks start right after them.
  if (!tables.get(layout.pack_id, index, layout.fragment_checksums[i])) {
    if (begin < bs) {
      from = 0;
    } else {
      volume->prefetch(name, 0, payload);
    }
  }
  volume->prefetch(name, from, blocks_end - from);
}

void PackStore::prefetch(const PackLayout& layout, uint64_t offset, uint64_t len) {
  if (!check_layout(layout).ok() || offset >= layout.pack_len) return;
  auto code = state_->code_for(layout);
  if (!code.ok()) return;
  const uint64_t ws = window_bytes(layout);
  std::shared_ptr<const PackLayout> shared;  // one copy for all the loads posted
  State* state = state_.get();
  (void)for_each_fragment_range(layout, offset, std::min(len, layout.pack_len - offset),
                                [&](int index, uint64_t begin, uint64_t end) {
    const uint64_t checksum = layout.fragment_checksums[static_cast<size_t>(index)];
    for (uint64_t w = begin / ws; w * ws < end; ++w) {
      const uint64_t from = std::max(begin, w * ws);
      const uint64_t to = std::min(end, w * ws + ws);  // end <= fragment_len
      const uint64_t window_len = std::min(ws, layout.fragment_len - w * ws);
      // A window the range covers less than half of is not worth reading
      // whole (chunks scattered over packs): only its blocks are hinted.
      if (2 * (to - from) < window_len) {
        state->hint_blocks(layout, index, from, to);
        continue;
      }
      if (state->windows.cached_or_loading(layout.pack_id, index, checksum, w)) continue;
      if (!shared) shared = std::make_shared<const PackLayout>(layout);
      const bool posted = state->read_ahead.try_post([state, code = *code, shared, index, w] {
        try {
          (void)state->window(*shared, *code, index, w);  // a failure is the reader's to see
        } catch (...) {
        }
      });
      if (posted) {
        state->windows_read_ahead.fetch_add(1, std::memory_order_relaxed);
      } else {
        state->hint_blocks(layout, index, from, to);
      }
    }
    return Status::Ok();
  });
}

void PackStore::TEST_wait_read_ahead() { state_->read_ahead.TEST_wait_idle(); }

Status PackStore::remove(const PackLayout& layout) {
  try {
    Status first_error;
    for (size_t i = 0; i < layout.volumes.size(); ++i) {
      const int index = static_cast<int>(i);
      state_->tables.erase(layout.pack_id, index);
      const uint32_t id = layout.volumes[i];
      Volume* volume = state_->volumes.get(id);
      Status s = volume == nullptr ? Errorf(EIO, "volume offline")
                                   : volume->remove(fragment_object_name(layout.pack_id, index));
      if (!s.ok() && s.code() != ENOENT && first_error.ok()) {
        first_error = s.WithContext(fmt::format("pack {:016x}: removing fragment {} from {}",
                                                layout.pack_id, i, state_->volumes.uri(id)));
      }
    }
    return first_error;
  } catch (const std::exception& e) {
    return Errorf(EIO, "pack {:016x}: remove failed: {}", layout.pack_id, e.what());
  }
}

Status PackStore::verify(const PackLayout& layout, std::vector<std::string>* problems) {
  try {
    return state_->verify(layout, problems);
  } catch (const std::bad_alloc&) {
    return Errorf(ENOMEM, "pack {:016x}: out of memory verifying", layout.pack_id);
  } catch (const std::exception& e) {
    return Errorf(EIO, "pack {:016x}: verify failed: {}", layout.pack_id, e.what());
  }
}

uint64_t PackStore::degraded_reads() const {
  return state_->degraded_reads.load(std::memory_order_relaxed);
}

uint64_t PackStore::windows_read_ahead() const {
  return state_->windows_read_ahead.load(std::memory_order_relaxed);
}

}  // namespace frugalfs
