// ChunkStore: the dedup index, packing, refcounts, the chunk cache and the
// collector. See include/frugalfs/chunk_store.h for the chunk lifecycle.

#include "frugalfs/chunk_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <future>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include "chunk/chunk_cache.h"
#include "util/little_endian.h"
#include "util/parallel.h"

namespace frugalfs {

namespace {

constexpr uint32_t kEntryMagic = 0x4b484346;  // "FCHK" little-endian
constexpr uint8_t kEntryVersion = 1;
// Garbage marks handled per collector transaction, to keep each one short.
constexpr size_t kCollectBatch = 1024;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void put_le32(uint8_t* p, uint32_t v) { store_le(p, v); }
void put_le64(uint8_t* p, uint64_t v) { store_le(p, v); }
uint32_t get_le32(const uint8_t* p) { return load_le<uint32_t>(p); }
uint64_t get_le64(const uint8_t* p) { return load_le<uint64_t>(p); }

// Bytes a chunk occupies in its pack: its entry header and stored bytes.
uint64_t footprint(uint32_t stored_len) { return kPackEntryHeaderSize + uint64_t{stored_len}; }

std::string chunk_name(const Sha256& id) { return to_hex(std::span(id).first(8)); }

}  // namespace

// Header layout (little-endian): magic u32, version u8, codec u8, kind u8,
// 1 zero byte, raw_len u32, stored_len u32, sha256 [32], xxh3 of stored u64,
// 8 bytes of XXH3 of the first 56 header bytes (the header's own checksum).
void encode_pack_entry_header(const PackEntry& e, std::span<uint8_t, kPackEntryHeaderSize> out) {
  uint8_t* p = out.data();
  std::memset(p, 0, kPackEntryHeaderSize);
  put_le32(p, kEntryMagic);
  p[4] = kEntryVersion;
  p[5] = static_cast<uint8_t>(e.codec);
  p[6] = static_cast<uint8_t>(e.kind);
  put_le32(p + 8, e.raw_len);
  put_le32(p + 12, e.stored_len);
  std::memcpy(p + 16, e.id.data(), e.id.size());
  put_le64(p + 48, e.checksum);
  put_le64(p + 56, xxh3_64(std::span<const uint8_t>(p, 56)));
}

Result<std::vector<PackEntry>> parse_pack(std::span<const uint8_t> pack) {
  std::vector<PackEntry> entries;
  uint64_t pos = 0;
  while (pos < pack.size()) {
    if (pack.size() - pos < kPackEntryHeaderSize) {
      return Errorf(EIO, "pack entry at {} is truncated", pos);
    }
    const uint8_t* p = pack.data() + pos;
    if (get_le32(p) != kEntryMagic || p[4] != kEntryVersion ||
        get_le64(p + 56) != xxh3_64(std::span<const uint8_t>(p, 56)) || p[5] > 1 || p[6] > 1) {
      return Errorf(EIO, "pack entry at {} has a bad header", pos);
    }
    PackEntry e;
    e.codec = static_cast<Codec>(p[5]);
    e.kind = static_cast<PackEntryKind>(p[6]);
    e.raw_len = get_le32(p + 8);
    e.stored_len = get_le32(p + 12);
    std::memcpy(e.id.data(), p + 16, e.id.size());
    e.checksum = get_le64(p + 48);
    e.offset = pos + kPackEntryHeaderSize;
    if (pack.size() - e.offset < e.stored_len) {
      return Errorf(EIO, "pack entry at {} overruns the pack", pos);
    }
    pos = e.offset + e.stored_len;
    entries.push_back(e);
  }
  return entries;
}

struct ChunkStore::State {
  State(MetaStore& m, PackStore& p, ChunkStoreOptions o)
      : meta(m), packs(p), options(std::move(o)), cache(options.cache_bytes) {}

  MetaStore& meta;
  PackStore& packs;
  const ChunkStoreOptions options;
  ChunkCache cache;

  std::mutex mu;  // guards the members below
  std::set<uint64_t> packs_losing_bytes;  // candidates for deletion/compaction
  Counters counters;
  // Layouts of packs read lately. A pack id is never reused and a pack's
  // layout never changes, so an entry cannot go stale; emptied when full.
  static constexpr size_t kLayoutCacheEntries = 4096;
  std::unordered_map<uint64_t, std::shared_ptr<const PackLayout>> layouts;
  // Records prefetch looked up, for the load that follows, which takes its
  // entry (one metadata lookup per chunk instead of two). One may be stale
  // by then (its chunk moved by a compaction): load then reads the record
  // again. Emptied when full.
  struct IdHash {
    size_t operator()(const Sha256& id) const { return load_le<uint64_t>(id.data()); }
  };
  static constexpr size_t kPrefetchedRecords = 4096;
  std::unordered_map<Sha256, ChunkRecord, IdHash> prefetched;

  // The record prefetch kept for id, taken out; nullopt if none.
  std::optional<ChunkRecord> take_prefetched(const Sha256& id);

  // The layout of a pack, from the cache or the metadata.
  Result<std::shared_ptr<const PackLayout>> pack_layout(uint64_t pack_id);

  void log(std::string_view line) const {
    if (options.log) options.log(line);
  }

  // A chunk's bytes, and its own buffer (to keep in the cache) unless the
  // bytes are in place in a window the pack store keeps.
  struct Loaded {
    Bytes bytes;
    ChunkCache::Data own;
  };
  // Reads, verifies and decompresses a chunk, not through the cache.
  Result<Loaded> load(const Sha256& id, ReadPattern pattern);

  // Moves the live chunks of one pack into new packs; copy, commit, delete.
  Status compact(uint64_t pack_id);
  // Deletes the pack if empty, compacts it if mostly garbage.
  Status collect_pack(uint64_t pack_id);
  Status delete_empty_pack(uint64_t pack_id);
};

Result<std::shared_ptr<const PackLayout>> ChunkStore::State::pack_layout(uint64_t pack_id) {
  {
    std::lock_guard lock(mu);
    if (auto it = layouts.find(pack_id); it != layouts.end()) return it->second;
  }
  FRUGAL_ASSIGN_OR_RETURN(PackRecord pack, meta.get_pack(pack_id));
  auto layout = std::make_shared<const PackLayout>(std::move(pack.layout));
  std::lock_guard lock(mu);
  if (layouts.size() >= kLayoutCacheEntries) layouts.clear();
  layouts.emplace(pack_id, layout);
  return layout;
}

std::optional<ChunkRecord> ChunkStore::State::take_prefetched(const Sha256& id) {
  std::lock_guard lock(mu);
  auto it = prefetched.find(id);
  if (it == prefetched.end()) return std::nullopt;
  ChunkRecord record = std::move(it->second);
  prefetched.erase(it);
  return record;
}

Result<ChunkStore::State::Loaded> ChunkStore::State::load(const Sha256& id, ReadPattern pattern) {
  // A compaction may move the chunk between reading its record and reading
  // its pack (and then delete the old pack): one retry with a fresh record,
  // and one more when the first record was prefetch's (older still).
  std::optional<ChunkRecord> known = take_prefetched(id);
  const int attempts = known ? 3 : 2;
  Status last;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    auto chunk = attempt == 0 && known ? Result<ChunkRecord>(std::move(*known)) : meta.get_chunk(id);
    if (!chunk.ok()) return chunk.status().WithContext(fmt::format("chunk {}", chunk_name(id)));
    auto layout = pack_layout(chunk->pack_id);
    if (!layout.ok()) {
      last = layout.status();
      continue;
    }
    const bool is_raw = chunk->codec == Codec::kRaw && chunk->stored_len == chunk->raw_len;
    if (is_raw) {  // in place, if its window is there or the reader sequential
      auto view = packs.view(**layout, chunk->offset, chunk->stored_len, pattern);
      if (!view.ok()) {
        last = view.status();
        continue;
      }
      if (*view) {
        if (xxh3_64((*view)->bytes) != chunk->checksum) {
          last = Errorf(EIO, "stored bytes fail their checksum");
          continue;
        }
        return Loaded{Bytes{std::move((*view)->owner), (*view)->bytes}, nullptr};
      }
    }
    auto raw = std::make_shared<ChunkBytes>(chunk->raw_len);
    // A raw chunk is read straight into its result; a compressed one into a
    // buffer; neither is zero-filled first.
    std::unique_ptr<uint8_t[]> buffer;
    if (!is_raw) buffer = std::make_unique_for_overwrite<uint8_t[]>(chunk->stored_len);
    std::span<uint8_t> stored = is_raw ? std::span<uint8_t>(*raw) : std::span(buffer.get(), chunk->stored_len);
    last = packs.read(**layout, chunk->offset, stored, pattern);
    if (!last.ok()) continue;
    if (xxh3_64(stored) != chunk->checksum) {
      last = Errorf(EIO, "stored bytes fail their checksum");
      continue;
    }
    if (!is_raw) last = decompress_chunk(chunk->codec, stored, *raw);
    if (last.ok()) {
      std::span<const uint8_t> bytes(raw->data(), raw->size());
      return Loaded{Bytes{raw, bytes}, std::move(raw)};
    }
  }
  return Errorf(last.code() ? last.code() : EIO, "chunk {}: {}", chunk_name(id), last.message());
}

ChunkStore::ChunkStore(MetaStore& meta, PackStore& packs, ChunkStoreOptions options)
    : state_(std::make_unique<State>(meta, packs, std::move(options))) {}

ChunkStore::~ChunkStore() = default;

Result<ChunkStore::Bytes> ChunkStore::get(const Sha256& id, ReadPattern pattern) {
  auto data = state_->cache.get(id);
  {
    std::lock_guard lock(state_->mu);
    ++(data ? state_->counters.cache_hits : state_->counters.cache_misses);
  }
  if (!data) {
    FRUGAL_ASSIGN_OR_RETURN(State::Loaded loaded, state_->load(id, pattern));
    if (loaded.own) state_->cache.put(id, std::move(loaded.own));
    return std::move(loaded.bytes);
  }
  std::span<const uint8_t> bytes(data->data(), data->size());
  return Bytes{std::move(data), bytes};
}

void ChunkStore::TEST_wait_read_ahead() { state_->packs.TEST_wait_read_ahead(); }

void ChunkStore::prefetch(std::span<const Sha256> ids) {
  // Runs of chunks stored one after another in one pack (each after its
  // entry header) become one hint.
  std::shared_ptr<const PackLayout> layout;
  uint64_t begin = 0, end = 0;
  auto hint = [&] {
    if (layout && end > begin) state_->packs.prefetch(*layout, begin, end - begin);
  };
  for (const Sha256& id : ids) {
    if (state_->cache.get(id)) continue;
    auto chunk = state_->meta.get_chunk(id);
    if (!chunk.ok()) continue;
    {
      std::lock_guard lock(state_->mu);
      if (state_->prefetched.size() >= State::kPrefetchedRecords) state_->prefetched.clear();
      state_->prefetched.insert_or_assign(id, *chunk);
    }
    if (!layout || layout->pack_id != chunk->pack_id || chunk->offset < end ||
        chunk->offset > end + kPackEntryHeaderSize) {
      hint();
      auto l = state_->pack_layout(chunk->pack_id);
      if (!l.ok()) {
        layout = nullptr;
        continue;
      }
      layout = *l;
      begin = chunk->offset;
    }
    end = chunk->offset + chunk->stored_len;
  }
  hint();
}

Status ChunkStore::read(const Sha256& id, uint32_t offset, std::span<uint8_t> out) {
  FRUGAL_ASSIGN_OR_RETURN(Bytes chunk, get(id));
  if (uint64_t{offset} + out.size() > chunk.bytes.size()) {
    return Errorf(EIO, "chunk {}: read [{}, +{}) beyond its {} bytes", chunk_name(id), offset,
                  out.size(), chunk.bytes.size());
  }
  std::memcpy(out.data(), chunk.bytes.data() + offset, out.size());
  return Status::Ok();
}

Status ChunkStore::add_ref(MetaStore::Txn& txn, const Sha256& id) {
  FRUGAL_ASSIGN_OR_RETURN(ChunkRecord chunk, txn.get_chunk(id));
  if (chunk.refcount++ == 0) {
    FRUGAL_ASSIGN_OR_RETURN(PackRecord pack, txn.get_pack(chunk.pack_id));
    pack.live_bytes += footprint(chunk.stored_len);
    txn.put_pack(pack);
    FRUGAL_ASSIGN_OR_RETURN(bool marked, txn.is_garbage(id));
    if (marked) txn.delete_garbage(id);
  }
  txn.put_chunk(chunk);
  return Status::Ok();
}

Status ChunkStore::drop_ref(MetaStore::Txn& txn, const Sha256& id) {
  FRUGAL_ASSIGN_OR_RETURN(ChunkRecord chunk, txn.get_chunk(id));
  if (chunk.refcount == 0) {
    return Errorf(EIO, "chunk {}: refcount would drop below zero", chunk_name(id));
  }
  if (--chunk.refcount == 0) {
    FRUGAL_ASSIGN_OR_RETURN(PackRecord pack, txn.get_pack(chunk.pack_id));
    pack.live_bytes -= std::min(pack.live_bytes, footprint(chunk.stored_len));
    txn.put_pack(pack);
    txn.put_garbage(id);
    std::lock_guard lock(state_->mu);
    state_->packs_losing_bytes.insert(chunk.pack_id);
  }
  txn.put_chunk(chunk);
  return Status::Ok();
}

ChunkStore::Counters ChunkStore::counters() const {
  std::lock_guard lock(state_->mu);
  return state_->counters;
}

// ---------------------------------------------------------------------------
// PackWriter

struct ChunkStore::PackWriter::State {
  explicit State(ChunkStore::State& s) : store(s) {}

  ChunkStore::State& store;
  std::vector<uint8_t> open_pack;      // entries of the pack being filled
  std::vector<PackEntry> open_entries;
  std::vector<PackRecord> sealed;      // written, not yet staged
  std::vector<ChunkRecord> new_chunks; // in sealed packs
  // Chunks added to this writer, by id, so a repeat is deduplicated.
  std::unordered_map<std::string, bool> seen;
  std::vector<uint8_t> compressed;
  uint64_t stored = 0;
  uint64_t deduplicated = 0;
  const State* earlier = nullptr;  // see new_writer
  bool written_out = false;
  bool synced = false;
  bool discarded = false;

  Status append(const PackEntry& entry, std::span<const uint8_t> stored_bytes);
  Result<bool> is_new(const Sha256& id, size_t size);
  Status append_chunk(const Sha256& id, std::span<const uint8_t> data, Codec codec,
                      std::span<const uint8_t> compressed_bytes);
  Status seal();
  // Waits for the oldest pack write and records its chunks and layout.
  Status complete_oldest();
  // Waits for every pack write; the first error, if any.
  Status drain();
  // Seals the open pack and waits for every pack write.
  Status write_all();
  // write_all, then makes the packs durable.
  Status make_durable();
  // After a failure, before any commit naming them: waits for the writes in
  // flight and removes the packs written. Returns how many it removed.
  size_t remove_written();

  struct InFlight {
    uint64_t pack_id = 0;
    std::vector<uint8_t> bytes;
    std::vector<PackEntry> entries;
    std::future<Result<PackLayout>> done;
  };
  static constexpr size_t kPacksInFlight = 2;
  std::deque<InFlight> in_flight;
  std::vector<uint8_t> spare;  // a pack buffer to fill next
};

Status ChunkStore::PackWriter::State::append(const PackEntry& entry,
                                             std::span<const uint8_t> stored_bytes) {
  uint64_t size = footprint(entry.stored_len);
  if (!open_pack.empty() && open_pack.size() + size > store.options.pack_size) FRUGAL_TRY(seal());
  if (open_pack.capacity() < store.options.pack_size) open_pack.reserve(store.options.pack_size);
  PackEntry placed = entry;
  placed.offset = open_pack.size() + kPackEntryHeaderSize;
  std::array<uint8_t, kPackEntryHeaderSize> header;
  encode_pack_entry_header(placed, header);
  // Appended, not resized and overwritten: the buffer is never zero-filled.
  open_pack.insert(open_pack.end(), header.begin(), header.end());
  open_pack.insert(open_pack.end(), stored_bytes.begin(), stored_bytes.end());
  open_entries.push_back(placed);
  stored += entry.stored_len;
  return Status::Ok();
}

// Sealing hands the pack to a background write, so that chunking, hashing
// and compressing the next pack overlap the volumes' I/O; at most
// kPacksInFlight packs are being written at once. The packs become durable
// together, at the end (make_durable), before any record names them.
Status ChunkStore::PackWriter::State::seal() {
  if (open_pack.empty()) return Status::Ok();
  FRUGAL_ASSIGN_OR_RETURN(uint64_t pack_id, store.meta.allocate_pack_id());
  InFlight pack;
  pack.pack_id = pack_id;
  pack.bytes = std::move(open_pack);
  pack.entries = std::move(open_entries);
  open_pack = std::move(spare);  // a buffer a finished write gave back, or empty
  open_pack.clear();
  spare = {};
  open_entries.clear();
  PackStore* packs = &store.packs;
  std::span<const uint8_t> bytes = pack.bytes;  // the heap buffer moves with the vector
  pack.done = std::async(std::launch::async, [packs, pack_id, bytes] {
    return packs->write(pack_id, bytes, PackStore::Durability::kAtSync);
  });
  in_flight.push_back(std::move(pack));
  if (in_flight.size() > kPacksInFlight) return complete_oldest();
  return Status::Ok();
}

Status ChunkStore::PackWriter::State::complete_oldest() {
  InFlight pack = std::move(in_flight.front());
  in_flight.pop_front();
  Result<PackLayout> layout = pack.done.get();
  if (!layout.ok()) return layout.status();
  PackRecord record;
  record.layout = std::move(*layout);
  record.total_bytes = pack.bytes.size();
  record.live_bytes = 0;  // raised by add_ref as extents come to name its chunks
  record.created_ns = now_ns();
  sealed.push_back(std::move(record));
  for (const PackEntry& e : pack.entries) {
    if (e.kind != PackEntryKind::kChunk) continue;
    ChunkRecord c;
    c.id = e.id;
    c.pack_id = pack.pack_id;
    c.offset = e.offset;
    c.stored_len = e.stored_len;
    c.raw_len = e.raw_len;
    c.codec = e.codec;
    c.checksum = e.checksum;
    c.refcount = 0;
    new_chunks.push_back(c);
  }
  spare = std::move(pack.bytes);
  std::lock_guard lock(store.mu);
  ++store.counters.packs_written;
  return Status::Ok();
}

Status ChunkStore::PackWriter::State::drain() {
  Status first;
  while (!in_flight.empty()) {
    Status s = complete_oldest();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

Status ChunkStore::PackWriter::State::write_all() {
  Status sealed = seal();
  Status drained = drain();  // always: no write may outlive the writer
  FRUGAL_TRY(sealed);
  return drained;
}

Status ChunkStore::PackWriter::State::make_durable() {
  FRUGAL_TRY(write_all());
  return store.packs.sync();
}

ChunkStore::PackWriter::PackWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}
ChunkStore::PackWriter::~PackWriter() = default;

std::unique_ptr<ChunkStore::PackWriter> ChunkStore::new_writer(const PackWriter* earlier) {
  auto state = std::make_unique<PackWriter::State>(*state_);
  if (earlier != nullptr) state->earlier = earlier->state_.get();
  return std::unique_ptr<PackWriter>(new PackWriter(std::move(state)));
}

// True when chunk `id` must be stored: neither added to this writer before
// nor committed (a committed record, even one marked garbage, means the bytes
// are stored already: the collector does not run while a writer is open).
// Remembers the answer, so a repeat within the writer is deduplicated.
Result<bool> ChunkStore::PackWriter::State::is_new(const Sha256& id, size_t size) {
  std::string key(reinterpret_cast<const char*>(id.data()), id.size());
  if (seen.count(key) || (earlier != nullptr && earlier->seen.count(key))) {
    deduplicated += size;
    return false;
  }
  auto existing = store.meta.get_chunk(id);
  if (existing.ok()) {
    auto pack = store.meta.get_pack(existing->pack_id);
    if (!pack.ok() && pack.status().code() != ENOENT) return pack.status();
    existing = pack.ok() ? existing : Result<ChunkRecord>(Errorf(ENOENT, "pack deleted"));
  }
  if (existing.ok()) {
    seen.emplace(key, false);
    deduplicated += size;
    return false;
  }
  if (existing.status().code() != ENOENT) return existing.status();
  seen.emplace(key, true);
  return true;
}

Status ChunkStore::PackWriter::State::append_chunk(const Sha256& id, std::span<const uint8_t> data,
                                                   Codec codec, std::span<const uint8_t> compressed_bytes) {
  PackEntry entry;
  entry.id = id;
  entry.raw_len = static_cast<uint32_t>(data.size());
  entry.codec = codec;
  std::span<const uint8_t> stored = codec == Codec::kRaw ? data : compressed_bytes;
  entry.stored_len = static_cast<uint32_t>(stored.size());
  entry.checksum = xxh3_64(stored);
  return append(entry, stored);
}

Result<Sha256> ChunkStore::PackWriter::add(std::span<const uint8_t> data) {
  State& s = *state_;
  if (s.written_out) return Errorf(EINVAL, "PackWriter::add after write_out");
  Sha256 id = sha256(data);
  FRUGAL_ASSIGN_OR_RETURN(bool fresh, s.is_new(id, data.size()));
  if (!fresh) return id;
  Codec codec = compress_chunk(data, s.store.options.compress_level, s.compressed);
  FRUGAL_TRY(s.append_chunk(id, data, codec, s.compressed));
  return id;
}

Result<std::vector<Sha256>> ChunkStore::PackWriter::add_all(
    const std::vector<std::span<const uint8_t>>& chunks) {
  State& s = *state_;
  if (s.written_out) return Errorf(EINVAL, "PackWriter::add_all after write_out");
  // 1. Hash every chunk (in parallel), 2. decide which are new (in order:
  // dedup within the writer depends on it), 3. compress the new ones (in
  // parallel), 4. append them to packs in order.
  // A thread is started only for at least 256 KiB of chunks (a flush of
  // many small files would otherwise start threads per file).
  constexpr size_t kBytesPerThread = 256 << 10;
  size_t total = 0;
  for (const auto& chunk : chunks) total += chunk.size();
  std::vector<Sha256> ids(chunks.size());
  parallel_for(chunks.size(), threads_for(total, kBytesPerThread, core_count()),
               [&](size_t i) { ids[i] = sha256(chunks[i]); });
  std::vector<size_t> fresh;
  for (size_t i = 0; i < chunks.size(); ++i) {
    FRUGAL_ASSIGN_OR_RETURN(bool is_new, s.is_new(ids[i], chunks[i].size()));
    if (is_new) fresh.push_back(i);
  }
  size_t fresh_bytes = 0;
  for (size_t i : fresh) fresh_bytes += chunks[i].size();
  std::vector<std::vector<uint8_t>> compressed(fresh.size());
  std::vector<Codec> codecs(fresh.size());
  parallel_for(fresh.size(), threads_for(fresh_bytes, kBytesPerThread, core_count()), [&](size_t j) {
    codecs[j] = compress_chunk(chunks[fresh[j]], s.store.options.compress_level, compressed[j]);
  });
  for (size_t j = 0; j < fresh.size(); ++j) {
    FRUGAL_TRY(s.append_chunk(ids[fresh[j]], chunks[fresh[j]], codecs[j], compressed[j]));
  }
  return ids;
}

Status ChunkStore::PackWriter::write_out(std::span<const uint8_t> manifest) {
  State& s = *state_;
  if (s.written_out) return Errorf(EINVAL, "PackWriter::write_out called twice");
  if (!manifest.empty()) {
    PackEntry entry;
    entry.kind = PackEntryKind::kManifest;
    entry.id = sha256(manifest);
    entry.raw_len = static_cast<uint32_t>(manifest.size());
    entry.codec = compress_chunk(manifest, s.store.options.compress_level, s.compressed);
    std::span<const uint8_t> stored = entry.codec == Codec::kRaw ? manifest : std::span(s.compressed);
    entry.stored_len = static_cast<uint32_t>(stored.size());
    entry.checksum = xxh3_64(stored);
    Status appended = s.append(entry, stored);
    s.stored -= entry.stored_len;  // not chunk data
    if (!appended.ok()) {
      s.drain().IgnoreError();  // no write may outlive the writer
      return appended;
    }
  }
  FRUGAL_TRY(s.write_all());
  s.written_out = true;
  s.earlier = nullptr;  // no more adds: it may go
  return Status::Ok();
}

Status ChunkStore::PackWriter::sync() {
  State& s = *state_;
  if (!s.written_out) return Errorf(EINVAL, "PackWriter::sync before write_out");
  FRUGAL_TRY(s.store.packs.sync());
  s.synced = true;
  return Status::Ok();
}

Status ChunkStore::PackWriter::finish(std::span<const uint8_t> manifest) {
  FRUGAL_TRY(write_out(manifest));
  return sync();
}

Status ChunkStore::PackWriter::stage(MetaStore::Txn& txn) {
  State& s = *state_;
  if (s.discarded) return Errorf(EINVAL, "PackWriter::stage after discard");
  if (!s.synced) return Errorf(EINVAL, "PackWriter::stage before sync");
  for (const PackRecord& pack : s.sealed) txn.put_pack(pack);
  for (const ChunkRecord& chunk : s.new_chunks) txn.put_chunk(chunk);
  return Status::Ok();
}

Status ChunkStore::PackWriter::mark_unreferenced(MetaStore::Txn& txn) {
  State& s = *state_;
  for (const ChunkRecord& staged : s.new_chunks) {
    FRUGAL_ASSIGN_OR_RETURN(ChunkRecord chunk, txn.get_chunk(staged.id));
    if (chunk.refcount == 0) txn.put_garbage(chunk.id);
  }
  // A new pack that is mostly unreferenced from the start (e.g. one holding
  // only a manifest) is a candidate for the collector at once.
  for (const PackRecord& sealed : s.sealed) {
    FRUGAL_ASSIGN_OR_RETURN(PackRecord pack, txn.get_pack(sealed.layout.pack_id));
    if (static_cast<double>(pack.live_bytes) <
        s.store.options.compact_below_live_ratio * static_cast<double>(pack.total_bytes)) {
      std::lock_guard lock(s.store.mu);
      s.store.packs_losing_bytes.insert(pack.layout.pack_id);
    }
  }
  return Status::Ok();
}

size_t ChunkStore::PackWriter::State::remove_written() {
  drain().IgnoreError();  // a failed write removed its own fragments
  size_t removed = 0;
  for (const PackRecord& pack : sealed) {
    if (store.packs.remove(pack.layout).ok()) ++removed;
  }
  sealed.clear();
  new_chunks.clear();
  std::lock_guard lock(store.mu);
  store.counters.packs_discarded += removed;
  return removed;
}

size_t ChunkStore::PackWriter::discard() {
  State& s = *state_;
  s.discarded = true;
  s.written_out = true;  // no more adds
  s.earlier = nullptr;
  return s.remove_written();
}

uint64_t ChunkStore::PackWriter::stored_bytes() const { return state_->stored; }
uint64_t ChunkStore::PackWriter::deduplicated_bytes() const { return state_->deduplicated; }

// ---------------------------------------------------------------------------
// Collector

Status ChunkStore::State::delete_empty_pack(uint64_t pack_id) {
  {
    auto txn = meta.begin();
    auto pack = txn->get_pack(pack_id);
    if (!pack.ok()) return pack.status().code() == ENOENT ? Status::Ok() : pack.status();
    if (pack->live_bytes != 0) return Status::Ok();
    // live_bytes == 0: every chunk of the pack has refcount zero. Their
    // records are deleted by the garbage sweep; one left behind meanwhile is
    // harmless, because dedup checks that a chunk's pack exists.
    txn->delete_pack(pack_id);
    txn->put_retired(*pack);  // fragments kept until a backup no longer names the pack
    FRUGAL_TRY(txn->commit());
  }
  std::lock_guard lock(mu);
  ++counters.packs_deleted;
  return Status::Ok();
}

Status ChunkStore::State::compact(uint64_t pack_id) {
  auto pack = meta.get_pack(pack_id);
  if (!pack.ok()) return pack.status().code() == ENOENT ? Status::Ok() : pack.status();
  std::vector<uint8_t> bytes(pack->layout.pack_len);
  FRUGAL_TRY(packs.read(pack->layout, 0, bytes).WithContext(fmt::format("compacting pack {:016x}", pack_id)));
  FRUGAL_ASSIGN_OR_RETURN(std::vector<PackEntry> entries, parse_pack(bytes));

  ChunkStore::PackWriter::State writer(*this);
  // Copies the live chunks into new packs and makes them durable; on any
  // failure the packs written so far are removed (no record names them, and
  // a full disk would otherwise keep them at every try).
  auto copy_live = [&]() -> Status {
    for (const PackEntry& e : entries) {
      // Manifests are not carried over: the old pack stays (retired) until a
      // backup taken after this compaction, which holds what they describe,
      // is durable.
      if (e.kind != PackEntryKind::kChunk) continue;
      auto chunk = meta.get_chunk(e.id);
      if (!chunk.ok()) {
        if (chunk.status().code() == ENOENT) continue;  // collected already
        return chunk.status();
      }
      if (chunk->pack_id != pack_id || chunk->offset != e.offset) continue;  // a copy elsewhere
      std::span<const uint8_t> stored(bytes.data() + e.offset, e.stored_len);
      if (xxh3_64(stored) != e.checksum) {
        return Errorf(EIO, "compacting pack {:016x}: chunk {} fails its checksum", pack_id,
                      chunk_name(e.id));
      }
      FRUGAL_TRY(writer.append(e, stored));
    }
    return writer.make_durable();
  };
  if (Status copied = copy_live(); !copied.ok()) {
    writer.remove_written();
    return copied;
  }

  {
    auto txn = meta.begin();
    std::map<uint64_t, PackRecord> new_packs;
    for (PackRecord& p : writer.sealed) new_packs[p.layout.pack_id] = p;
    for (const ChunkRecord& moved : writer.new_chunks) {
      auto chunk = txn->get_chunk(moved.id);
      if (!chunk.ok()) {
        if (chunk.status().code() == ENOENT) continue;
        return chunk.status();
      }
      ChunkRecord updated = *chunk;
      updated.pack_id = moved.pack_id;
      updated.offset = moved.offset;
      if (updated.refcount > 0) new_packs[moved.pack_id].live_bytes += footprint(moved.stored_len);
      txn->put_chunk(updated);
    }
    for (auto& [id, p] : new_packs) txn->put_pack(p);
    txn->delete_pack(pack_id);
    txn->put_retired(*pack);  // fragments kept until a backup no longer names the pack
    FRUGAL_TRY(txn->commit());
  }
  std::lock_guard lock(mu);
  ++counters.packs_compacted;
  return Status::Ok();
}

Status ChunkStore::collect() {
  State& s = *state_;
  // 1. Delete chunk records whose refcount is zero.
  std::vector<Sha256> marked;
  FRUGAL_TRY(s.meta.list_garbage([&](const Sha256& id) {
    marked.push_back(id);
    return true;
  }));
  for (size_t begin = 0; begin < marked.size(); begin += kCollectBatch) {
    auto txn = s.meta.begin();
    uint64_t deleted = 0;
    for (size_t i = begin; i < std::min(marked.size(), begin + kCollectBatch); ++i) {
      auto chunk = txn->get_chunk(marked[i]);
      txn->delete_garbage(marked[i]);
      if (!chunk.ok()) {
        if (chunk.status().code() == ENOENT) continue;
        return chunk.status();
      }
      if (chunk->refcount != 0) continue;  // a stale mark
      txn->delete_chunk(marked[i]);
      ++deleted;
      std::lock_guard lock(s.mu);
      s.packs_losing_bytes.insert(chunk->pack_id);
    }
    FRUGAL_TRY(txn->commit());
    std::lock_guard lock(s.mu);
    s.counters.chunks_deleted += deleted;
  }

  // 2. Delete packs left empty and compact packs that are mostly garbage.
  std::set<uint64_t> candidates;
  {
    std::lock_guard lock(s.mu);
    candidates.swap(s.packs_losing_bytes);
  }
  Status out_of_space;
  for (auto it = candidates.begin(); it != candidates.end(); it = candidates.erase(it)) {
    Status done = s.collect_pack(*it);
    if (done.code() == ENOSPC) {
      // A compaction that found no room: the packs left empty (which free
      // space without writing any) must not wait behind it.
      if (out_of_space.ok()) out_of_space = done;
      std::lock_guard lock(s.mu);
      s.packs_losing_bytes.insert(*it);
      continue;
    }
    if (!done.ok()) {
      // Keep this candidate and the ones not reached for the next round.
      std::lock_guard lock(s.mu);
      s.packs_losing_bytes.insert(candidates.begin(), candidates.end());
      return done;
    }
  }
  return out_of_space;
}

Status ChunkStore::State::collect_pack(uint64_t pack_id) {
  auto pack = meta.get_pack(pack_id);
  if (!pack.ok()) return pack.status().code() == ENOENT ? Status::Ok() : pack.status();
  if (pack->live_bytes == 0) return delete_empty_pack(pack_id);
  if (static_cast<double>(pack->live_bytes) <
      options.compact_below_live_ratio * static_cast<double>(pack->total_bytes)) {
    return compact(pack_id);
  }
  return Status::Ok();
}

Status ChunkStore::find_collectable_packs() {
  State& s = *state_;
  std::set<uint64_t> found;
  FRUGAL_TRY(s.meta.list_packs([&](const PackRecord& p) {
    if (static_cast<double>(p.live_bytes) <
        s.options.compact_below_live_ratio * static_cast<double>(p.total_bytes)) {
      found.insert(p.layout.pack_id);
    }
    return true;
  }));
  std::lock_guard lock(s.mu);
  s.packs_losing_bytes.insert(found.begin(), found.end());
  return Status::Ok();
}

}  // namespace frugalfs
