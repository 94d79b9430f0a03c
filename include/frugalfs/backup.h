// The backup layer: copies of the metadata database kept on the volumes,
// erasure-coded like data, so that the filesystem survives the loss of the
// machine that holds the database (see doc/metadata-backup.md).
//
// A backup is one consistent snapshot of every key of the database, encoded
// as a self-checking blob and written as a pack whose id has the top bit set
// (kBackupIdBit). A `B` record names each backup; the newest `keep` are kept.
//
// Backups and deleted packs: the collector never removes a pack's fragments
// itself; it moves the pack's record to the retired table. A pack named by
// the newest backup must stay readable, so the backup writer removes the
// fragments of packs that were retired before its snapshot, once its own
// backup is durable: the newest backup never names a removed pack.
//
// Thread-safety: write_metadata_backup must not run concurrently with itself
// or with ChunkStore::collect (the flusher runs both, one at a time).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/meta.h"
#include "frugalfs/status.h"
#include "frugalfs/stripe.h"

namespace frugalfs {

// Backup ids are (kBackupIdBit | microseconds since the epoch), so they never
// equal a data pack id and sort by time.
inline constexpr uint64_t kBackupIdBit = uint64_t{1} << 63;

inline bool is_backup_id(uint64_t pack_id) { return (pack_id & kBackupIdBit) != 0; }

// When the backup was taken, from its id.
inline int64_t backup_time_us(uint64_t backup_id) {
  return static_cast<int64_t>(backup_id & ~kBackupIdBit);
}

// The blob of one backup: a header (magic "FRUGMETA", format version, entry
// count, raw length, XXH3-64 of the raw bytes, pack-id mark) followed by a
// zstd frame of the raw bytes, which are the pairs as (u32 key length, key,
// u32 value length, value), little-endian, in key order.
//
// The pack-id mark is a pack id allocated just before the snapshot: every
// pack written before it has a smaller id, every pack written after it a
// larger one. Recover replays only the manifests of packs above the mark.
class BackupEncoder {
 public:
  void set_pack_id_mark(uint64_t mark) { pack_id_mark_ = mark; }
  void add(std::string_view key, std::string_view value);
  // The finished blob (zstd level `level`).
  Result<std::vector<uint8_t>> finish(int level = 3);
  uint64_t entries() const { return entries_; }
  uint64_t raw_bytes() const { return raw_.size(); }

 private:
  std::string raw_;
  uint64_t entries_ = 0;
  uint64_t pack_id_mark_ = 0;
};

// Checks and decodes a blob; visit is called for each pair in order. EINVAL
// (with the reason) for a blob that is not a backup or fails its checksum.
Status decode_backup(std::span<const uint8_t> blob,
                     const std::function<Status(std::string_view key, std::string_view value)>& visit,
                     uint64_t* pack_id_mark = nullptr);

struct BackupOptions {
  uint32_t keep = 3;  // backups kept on the volumes, newest first (>= 1)
  int compress_level = 3;
};

struct BackupResult {
  uint64_t backup_id = 0;
  uint64_t entries = 0;         // keys in the snapshot
  uint64_t raw_bytes = 0;       // before compression
  uint64_t stored_bytes = 0;    // the blob, before erasure coding
  uint64_t packs_removed = 0;   // retired packs whose fragments were removed
  uint64_t backups_pruned = 0;  // older backups removed
};

// Takes a snapshot of the metadata, writes it to the volumes (durably) and
// records it with a synced commit; then removes the fragments of the packs
// retired before the snapshot and of backups beyond options.keep. A failure
// to remove fragments is logged, not returned (fsck --repair removes them).
Result<BackupResult> write_metadata_backup(MetaStore& meta, PackStore& packs, const BackupOptions& options,
                                           const std::function<void(std::string_view)>& log);

// What one flush wrote, stored in its last pack (PackWriter::finish), so that
// recover can replay the writes made after the newest backup: per file, the
// byte ranges the flush rewrote and the extents that hold them now (the rest
// of each range is a hole), and the file's size and mode at the time.
struct FlushManifest {
  struct Region {
    uint64_t start = 0;
    uint64_t end = 0;
    bool operator==(const Region&) const = default;
  };
  struct File {
    uint64_t ino = 0;
    uint32_t mode = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    std::vector<Region> regions;  // sorted, disjoint
    std::vector<Extent> extents;  // inside the regions, sorted
  };
  std::vector<File> files;
};

std::vector<uint8_t> encode_flush_manifest(const FlushManifest& manifest);
// EINVAL when the bytes are not a manifest or are inconsistent.
Result<FlushManifest> decode_flush_manifest(std::span<const uint8_t> bytes);

// Rebuilding the metadata database from the volumes alone (frugalfs recover).
struct RecoverOptions {
  std::vector<std::string> volume_uris;  // the volumes that are reachable
  std::string meta_dir;                  // where the new database goes (must hold none)
  std::function<void(std::string_view)> log;  // one line per finding
};

struct RecoverReport {
  uint64_t backup_id = 0;         // the backup restored
  uint64_t backup_entries = 0;
  uint32_t backups_found = 0;
  uint32_t backups_unusable = 0;  // newer than the one restored, but unreadable
  uint32_t volumes_given = 0;
  std::vector<uint32_t> volumes_missing;  // members the backup names that were not given
  uint64_t fragments_scanned = 0;
  uint64_t fragments_damaged = 0;  // header unreadable: left in place
  uint64_t packs_named = 0;        // data packs the backup names
  uint64_t packs_named_lost = 0;   // ... of which fewer than k fragments were found
  uint64_t packs_adopted = 0;      // data packs written after the backup
  uint64_t chunks_adopted = 0;     // new chunks found in them (or copies of chunks whose pack is gone)
  uint64_t chunks_lost = 0;        // referenced chunks whose pack is gone, with no copy found
  uint64_t packs_unreadable = 0;   // written after the backup, fewer than k fragments
  uint64_t manifests_replayed = 0; // flushes after the backup replayed
  uint64_t manifests_damaged = 0;
  uint64_t files_replayed = 0;     // files of the backup changed by them
  uint64_t files_found = 0;        // files created after the backup: in /lost+found
  uint64_t writes_skipped = 0;     // flushes of a file that could not be replayed
};

// Lists every given volume, reads the fragment headers, restores the newest
// backup that decodes (an older one if the newest is damaged), records the
// given volumes' URIs, and adopts the packs written after the backup so that
// nothing on the volumes is left unaccounted for. ENOENT when the volumes hold
// no usable backup, EEXIST when meta_dir already holds a database, EINVAL when
// the volumes belong to different filesystems.
Result<RecoverReport> recover_metadata(const RecoverOptions& options);

}  // namespace frugalfs
