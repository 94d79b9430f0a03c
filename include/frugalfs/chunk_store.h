// Chunks by SHA-256 id: the dedup index, pack filling, refcounts, the chunk
// cache, garbage collection and compaction of packs. Persists through the
// meta layer; knows nothing of files or names (extents are the caller's).
//
// Lifecycle of a chunk record: a new chunk is committed with refcount 0, and
// with a garbage mark unless the same transaction references it (marks are
// not written just to be deleted: they would leave tombstones that every
// collector scan steps over); add_ref takes it to 1 and clears any mark; drop_ref back to 0
// sets the mark again. collect() deletes marked chunks and packs left without
// live bytes, and compacts packs that are mostly garbage (copy, commit,
// retire). A pack taken out of use is not deleted from the volumes here: its
// record moves to the retired table (MetaReader::list_retired), because the
// newest metadata backup may still name it; the backup writer removes its
// fragments once a later backup is durable. A pack's live_bytes always counts the entries (header + stored
// bytes) of its chunks whose refcount is above zero.
//
// Thread-safety: read(), add_ref() and drop_ref() may be called from any
// thread (the latter two inside the caller's Txn). A PackWriter is used by
// one thread at a time; the flusher may sync and stage one writer on a
// second thread while it adds to the next. collect() runs with no writer
// between write_out and its commit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "frugalfs/chunking.h"
#include "frugalfs/hash.h"
#include "frugalfs/meta.h"
#include "frugalfs/status.h"
#include "frugalfs/stripe.h"

namespace frugalfs {

struct ChunkStoreOptions {
  uint32_t pack_size = 4 << 20;
  int compress_level = 1;
  uint64_t cache_bytes = 64ull << 20;
  double compact_below_live_ratio = 0.5;
  std::function<void(std::string_view)> log;
};

class ChunkStore {
 public:
  ChunkStore(MetaStore& meta, PackStore& packs, ChunkStoreOptions options);
  ~ChunkStore();
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  // Reads bytes [offset, offset + out.size()) of the raw chunk `id` through
  // the cache. EIO with a message naming the chunk when it cannot be read.
  Status read(const Sha256& id, uint32_t offset, std::span<uint8_t> out);
  // The whole raw chunk `id` through the cache, in place: its bytes stay
  // valid while `owner` lives. A sequential reader (the next chunk it reads
  // follows this one) takes a stored-raw chunk in place from the pack store's
  // window, which is not added to the cache.
  struct Bytes {
    std::shared_ptr<const void> owner;
    std::span<const uint8_t> bytes;
  };
  Result<Bytes> get(const Sha256& id, ReadPattern pattern = ReadPattern::kRandom);
  // A hint that chunks `ids` will be read soon, in this order: the stored
  // bytes of those not cached are asked of the pack store (PackStore::
  // prefetch), a run of chunks that lie one after another in a pack as one
  // range. Never waits for the data; a chunk it cannot find is skipped.
  void prefetch(std::span<const Sha256> ids);
  // Waits until the pack store's read-ahead is done (for tests).
  void TEST_wait_read_ahead();

  // One more / one fewer extent names chunk `id`.
  Status add_ref(MetaStore::Txn& txn, const Sha256& id);
  Status drop_ref(MetaStore::Txn& txn, const Sha256& id);

  // Stores chunks for one flush: chunks already stored (committed, or added
  // earlier to this writer) cost nothing; new ones are compressed and packed,
  // and full packs are written to the volumes at once (data before metadata).
  class PackWriter {
   public:
    ~PackWriter();
    // Returns the chunk's id. May block writing a full pack.
    Result<Sha256> add(std::span<const uint8_t> data);
    // add() for several chunks, in order: hashing and compressing run on
    // every core. The spans need only live until it returns.
    Result<std::vector<Sha256>> add_all(const std::vector<std::span<const uint8_t>>& chunks);
    // Writes the last, partly filled pack. A non-empty manifest (bytes the
    // caller defines, describing what this writer's chunks were written for;
    // see FlushManifest) is stored as the last entry of that pack, in a pack
    // of its own when no chunk is left to write. Returns once every pack of
    // the writer is written; they are durable after sync().
    Status write_out(std::span<const uint8_t> manifest = {});
    // After write_out: makes every pack of the writer durable (one sync of
    // the volumes for all of them). May run on another thread than the adds.
    Status sync();
    // write_out(manifest), then sync().
    Status finish(std::span<const uint8_t> manifest = {});
    // Puts the records of the new chunks and packs into txn (after sync(),
    // so that no record names a pack a power loss could take).
    Status stage(MetaStore::Txn& txn);
    // After the caller's add_ref calls in the same txn: marks the new chunks
    // that no extent names as garbage.
    Status mark_unreferenced(MetaStore::Txn& txn);
    // After a failure, when no commit of this writer was attempted: waits
    // for the pack writes in flight and removes every pack the writer wrote
    // (no record names them; a failed flush would otherwise leave them
    // behind, and a full volume could never free itself). Best effort: a
    // fragment it cannot remove is left for fsck --repair. Returns how many
    // packs it removed. The writer can be used for nothing afterwards.
    size_t discard();
    // Bytes of new chunks stored (after compression) and of chunks deduplicated.
    uint64_t stored_bytes() const;
    uint64_t deduplicated_bytes() const;

   private:
    friend class ChunkStore;
    struct State;
    explicit PackWriter(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
  };
  // A writer. With `earlier`, a writer whose chunks are not committed yet
  // (written out, its commit pending), this one stores no chunk that the
  // earlier one holds: it names the earlier one's, so its own commit must
  // come after the earlier one's, and fail if that one failed. `earlier`
  // takes no more adds and outlives this writer's adds.
  std::unique_ptr<PackWriter> new_writer(const PackWriter* earlier = nullptr);

  // Garbage collection: deletes unreferenced chunks and empty packs, then
  // compacts packs whose live ratio fell below the threshold. Fails closed:
  // any error while deciding what is live stops the sweep.
  Status collect();
  // Queues every pack that collect() should delete or compact, from a scan
  // of the pack records: at start-up, since the queue lives in memory.
  Status find_collectable_packs();

  // Counters for statistics and tests.
  struct Counters {
    uint64_t packs_written = 0;    // every pack written out,
    uint64_t packs_discarded = 0;  // of which removed again (failed flush or compaction)
    uint64_t packs_deleted = 0;
    uint64_t packs_compacted = 0;
    uint64_t chunks_deleted = 0;
    uint64_t cache_hits = 0;
    uint64_t cache_misses = 0;
  };
  Counters counters() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The pack layout (doc/pack-format.md): a sequence of entries, each a
// kPackEntryHeaderSize-byte header (magic, codec, kind, raw and stored
// lengths, SHA-256 id, XXH3 of the stored bytes) followed by the stored
// bytes. Packs describe themselves, so metadata can be rebuilt from the
// volumes: chunks by id, and manifests naming the files they were written for.
inline constexpr uint32_t kPackEntryHeaderSize = 64;

enum class PackEntryKind : uint8_t {
  kChunk = 0,     // a chunk, by content id
  kManifest = 1,  // a writer's manifest (PackWriter::finish); id is its SHA-256
};

struct PackEntry {
  PackEntryKind kind = PackEntryKind::kChunk;
  Sha256 id{};
  Codec codec = Codec::kRaw;
  uint32_t raw_len = 0;
  uint32_t stored_len = 0;
  uint64_t checksum = 0;
  uint64_t offset = 0;  // of the stored bytes inside the pack
};

void encode_pack_entry_header(const PackEntry& entry, std::span<uint8_t, kPackEntryHeaderSize> out);
// Parses every entry of a pack; EIO at the first malformed header.
Result<std::vector<PackEntry>> parse_pack(std::span<const uint8_t> pack);

}  // namespace frugalfs
