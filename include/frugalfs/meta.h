// The meta layer: the RocksDB schema of a filesystem (superblock, volumes,
// inodes, directory entries, extents, chunks, packs, xattrs, orphans) and
// atomic transactions over it. See doc/metadata-format.md for keys and values.
//
// Every filesystem operation is one Txn: reads see the committed state plus
// the Txn's own writes, and commit() applies all of its writes as one atomic
// RocksDB batch. Only one Txn is open at a time (begin() blocks), which makes
// read-modify-write of refcounts and link counts safe; keep them short and
// never wait for anything that itself needs a Txn while holding one.
//
// Thread-safety: MetaStore is thread-safe; a Txn belongs to one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/format.h"
#include "frugalfs/hash.h"
#include "frugalfs/status.h"
#include "frugalfs/stripe.h"

namespace frugalfs {

inline constexpr uint32_t kMetaFormatVersion = 1;
inline constexpr uint64_t kRootInode = 1;

struct Superblock {
  uint32_t format_version = kMetaFormatVersion;
  std::string fs_id;  // UUID text
  uint32_t data_fragments = 2;    // k
  uint32_t parity_fragments = 2;  // m
  ChunkerParams chunker;
  int32_t compress_level = 1;     // zstd level; compression is always zstd
  uint32_t pack_size = 4 << 20;   // packs are sealed at about this size
  uint32_t block_size = 64 << 10; // checksum block inside fragments
  int64_t created_ns = 0;
};

struct VolumeRecord {
  uint32_t id = 0;
  std::string uri;
};

struct InodeRecord {
  uint64_t ino = 0;
  uint32_t mode = 0;  // type and permission bits, as in st_mode
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t generation = 0;
  uint64_t data_bytes = 0;     // bytes covered by extents (st_blocks; holes excluded)
  uint64_t parent = 0;         // directories only: the directory holding it (root: itself)
  std::string symlink_target;  // symlinks only
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;  // S_IFMT bits of the child's mode
  // Position in readdir order: unique in the filesystem and increasing with
  // time, so a listing resumed after cookie c neither repeats nor skips
  // entries that were not changed meanwhile. Cookies 0..2 are reserved.
  uint64_t cookie = 0;
};

// Bytes [file_offset, file_offset + length) of a file are bytes
// [chunk_offset, chunk_offset + length) of chunk `chunk`. Ranges of a file
// with no extent are holes and read as zeros.
struct Extent {
  uint64_t file_offset = 0;
  uint32_t length = 0;
  Sha256 chunk{};
  uint32_t chunk_offset = 0;

  uint64_t end() const { return file_offset + length; }
};

struct ChunkRecord {
  Sha256 id{};
  uint64_t pack_id = 0;
  uint64_t offset = 0;      // of the stored bytes inside the pack
  uint32_t stored_len = 0;  // bytes in the pack
  uint32_t raw_len = 0;     // bytes after decompression
  Codec codec = Codec::kRaw;
  uint64_t checksum = 0;    // XXH3-64 of the stored bytes
  uint64_t refcount = 0;    // number of extents naming this chunk
};

struct PackRecord {
  PackLayout layout;
  uint64_t total_bytes = 0;  // stored chunk bytes written into the pack
  uint64_t live_bytes = 0;   // stored bytes of chunks still referenced
  int64_t created_ns = 0;
};

// Typed reads, shared by the committed view (MetaStore) and a Txn.
class MetaReader {
 public:
  virtual ~MetaReader() = default;

  Result<InodeRecord> get_inode(uint64_t ino);                          // ENOENT
  Result<DirEntry> get_dentry(uint64_t parent, std::string_view name);  // ENOENT
  Result<ChunkRecord> get_chunk(const Sha256& id);                      // ENOENT
  Result<PackRecord> get_pack(uint64_t pack_id);                        // ENOENT
  Result<std::string> get_xattr(uint64_t ino, std::string_view name);   // ENODATA
  Result<bool> is_garbage(const Sha256& id);  // true when the chunk carries a garbage mark

  // Entries of a directory with cookie > after_cookie, in cookie order, until
  // visit returns false.
  Status list_dir(uint64_t parent, uint64_t after_cookie,
                  const std::function<bool(const DirEntry&)>& visit);
  // True when the directory has no entries.
  Result<bool> dir_empty(uint64_t parent);
  // Extents of a file with end() > from, in offset order, until visit returns
  // false. (Extents are keyed by their end, so this finds the extent that
  // straddles `from` without a backward seek.)
  Status list_extents(uint64_t ino, uint64_t from, const std::function<bool(const Extent&)>& visit);
  Status list_xattrs(uint64_t ino,
                     const std::function<bool(std::string_view name, std::string_view value)>& visit);

  // Whole-table scans for fsck, garbage collection and statistics.
  Status list_inodes(const std::function<bool(const InodeRecord&)>& visit);
  Status list_chunks(const std::function<bool(const ChunkRecord&)>& visit);
  Status list_packs(const std::function<bool(const PackRecord&)>& visit);
  // Metadata backups stored on the volumes (layout.pack_id is the backup id).
  Status list_backups(const std::function<bool(const PackRecord&)>& visit);
  // Packs taken out of use whose fragments are kept until a metadata backup
  // that no longer names them is durable (see MetaBackup).
  Status list_retired(const std::function<bool(const PackRecord&)>& visit);
  Status list_orphans(const std::function<bool(uint64_t ino)>& visit);
  // Chunks marked as garbage (refcount zero), for the collector.
  Status list_garbage(const std::function<bool(const Sha256& id)>& visit);
  Status list_volumes(const std::function<bool(const VolumeRecord&)>& visit);

 protected:
  // nullopt when the key is absent.
  virtual Result<std::optional<std::string>> get_raw(std::string_view key) = 0;
  // Keys with `prefix`, >= start (start begins with prefix), in key order,
  // until visit returns false.
  virtual Status scan_raw(std::string_view prefix, std::string_view start,
                          const std::function<bool(std::string_view key, std::string_view value)>& visit) = 0;
};

class MetaStore : public MetaReader {
 public:
  class Txn;

  // mkfs: creates the database in dir (created if missing) with this
  // superblock, the given volumes and a root directory (mode 0755, owned by
  // the caller's uid/gid). EEXIST if dir already holds a filesystem.
  static Result<std::unique_ptr<MetaStore>> create(const std::string& dir, const Superblock& sb,
                                                   const std::vector<VolumeRecord>& volumes);
  // ENOENT when dir holds no filesystem, EBUSY when another process has it
  // open, EPROTO/EINVAL on an unknown format version or damage.
  static Result<std::unique_ptr<MetaStore>> open(const std::string& dir);
  ~MetaStore() override;

  const Superblock& superblock() const;

  // Fresh ids. Inode numbers and cookies are persisted by the next commit;
  // pack ids are reserved durably in ranges before they are handed out, so a
  // pack id is never reused after a crash even if its pack never committed.
  uint64_t allocate_inode();
  // Makes every inode number up to `ino` unavailable to allocate_inode
  // (persisted by the next commit): after a restore, numbers that later
  // writes named must not be handed out again.
  void reserve_inodes_through(uint64_t ino);
  uint64_t allocate_cookie();
  Result<uint64_t> allocate_pack_id();

  // Opens the transaction; blocks while another one is open.
  std::unique_ptr<Txn> begin();

  // Makes every committed Txn durable (syncs the write-ahead log).
  Status sync();

  // Approximate on-disk size of the database, for statistics.
  uint64_t approximate_size();

  // Every key and value of one consistent snapshot, in key order: what a
  // metadata backup stores. Stops at the first error visit returns.
  Status export_snapshot(const std::function<Status(std::string_view key, std::string_view value)>& visit);

  // Creates the database in dir (which must hold none) from the pairs that
  // `next` yields (it returns false at the end), e.g. a backup; synced.
  static Status import(const std::string& dir,
                       const std::function<Result<bool>(std::string* key, std::string* value)>& next);

  // Makes every pack id up to `pack_id` unavailable to allocate_pack_id
  // (after a restore, packs written after the backup must keep their ids).
  Status reserve_pack_ids_through(uint64_t pack_id);

 protected:
  Result<std::optional<std::string>> get_raw(std::string_view key) override;
  Status scan_raw(std::string_view prefix, std::string_view start,
                  const std::function<bool(std::string_view, std::string_view)>& visit) override;

 private:
  struct State;
  explicit MetaStore(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
  friend class Txn;
};

class MetaStore::Txn : public MetaReader {
 public:
  ~Txn() override;  // an uncommitted Txn is abandoned: nothing is written

  void put_inode(const InodeRecord& inode);
  void delete_inode(uint64_t ino);
  void put_dentry(uint64_t parent, const DirEntry& entry);
  // Removes the entry (and its readdir-order key). ENOENT if absent.
  Status delete_dentry(uint64_t parent, std::string_view name);
  // The same for an entry just read in this Txn (no second read).
  void delete_dentry(uint64_t parent, const DirEntry& entry);
  void put_extent(uint64_t ino, const Extent& extent);
  void delete_extent(uint64_t ino, const Extent& extent);
  void put_chunk(const ChunkRecord& chunk);
  void delete_chunk(const Sha256& id);
  void put_pack(const PackRecord& pack);
  void delete_pack(uint64_t pack_id);
  void put_backup(const PackRecord& backup);
  void delete_backup(uint64_t backup_id);
  void put_retired(const PackRecord& pack);
  void delete_retired(uint64_t pack_id);
  void put_xattr(uint64_t ino, std::string_view name, std::string_view value);
  void delete_xattr(uint64_t ino, std::string_view name);
  void put_orphan(uint64_t ino);
  void delete_orphan(uint64_t ino);
  void put_garbage(const Sha256& id);
  void delete_garbage(const Sha256& id);
  void put_volume(const VolumeRecord& volume);

  // Applies every write as one atomic batch (with the id counters); sync makes
  // it durable before returning. A Txn can be committed once.
  Status commit(bool sync = false);

 protected:
  Result<std::optional<std::string>> get_raw(std::string_view key) override;
  Status scan_raw(std::string_view prefix, std::string_view start,
                  const std::function<bool(std::string_view, std::string_view)>& visit) override;

 private:
  friend class MetaStore;
  struct State;
  explicit Txn(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace frugalfs
