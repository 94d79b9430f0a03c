// FileSystem::State: what the operation files of the fs layer share. Each
// operation group lives in its own file (namespace_ops.cc, file_ops.cc,
// xattr_ops.cc, flusher.cc); helpers used by several are declared here.
#pragma once

#include <atomic>
#include <array>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "frugalfs/backup.h"
#include "frugalfs/chunk_store.h"
#include "frugalfs/chunking.h"
#include "frugalfs/fs.h"
#include "frugalfs/meta.h"
#include "frugalfs/stripe.h"
#include "fs/inode_table.h"

namespace frugalfs {

int64_t fs_now_ns();

struct FileHandle {
  uint64_t ino = 0;
  int flags = 0;
  // Sequential reading through this handle (read_view, read_ahead): where
  // the last read ended, and how far the stored data is already asked for.
  uint64_t read_end = 0;
  uint64_t read_ahead_until = 0;
};

struct FileSystem::State {
  FsOptions options;
  std::unique_ptr<MetaStore> meta;
  Superblock sb;
  VolumeSet volumes;
  std::unique_ptr<PackStore> packs;
  std::unique_ptr<ChunkStore> chunks;
  std::unique_ptr<FastCdc> cdc;
  InodeTable inodes;

  std::mutex handles_mu;
  std::unordered_map<uint64_t, FileHandle> handles;
  uint64_t next_fh = 1;

  // Unflushed bytes of all files; writers wait while it is over the limit.
  std::mutex dirty_mu;
  std::condition_variable dirty_cv;
  uint64_t dirty_bytes = 0;
  Status last_flush_error;  // guarded by dirty_mu; reported to waiting writers
  uint64_t last_flush_error_seq = 0;  // the flush it came from (Flush::seq)

  // One flush or collection at a time.
  std::mutex flush_mu;
  // The flusher's two chunking windows (one cut while the other's chunks are
  // stored), kept between flushes (guarded by flush_mu).
  static constexpr size_t kFlushWindow = 8 << 20;
  // How far a window copied across the end of a flushing range reaches past
  // it (at least: both grow with the chunker's maximum chunk).
  static constexpr size_t kSeamBytes = 1 << 20;
  std::array<std::vector<uint8_t>, 2> flush_windows;
  // The background flusher.
  std::mutex wake_mu;
  std::condition_variable wake_cv;
  bool stop = false;
  bool flush_requested = false;
  std::thread flusher;

  // When the last metadata backup was written (guarded by flush_mu); 0
  // makes the flusher write one at its next round.
  int64_t last_backup_ns = 0;
  // When chunks were last collected (guarded by flush_mu).
  int64_t last_collect_ns = 0;
  // A flush failed with ENOSPC since the last backup (guarded by flush_mu).
  // Then, or while a volume is near full, packs retired since the last
  // backup (deleted data) are freed by a backup soon, not at the next
  // backup_interval.
  bool flush_short_of_space = false;
  uint64_t retired_at_backup = 0;  // ChunkStore packs_deleted + packs_compacted then
  int64_t last_backup_try_ns = 0;

  // A flush whose packs are written, being synced and committed on a thread
  // of its own while the flusher stores the next (flusher.cc). Guarded by
  // flush_mu; null when none is pending.
  struct Flush;
  std::shared_ptr<Flush> committing;
  uint64_t flush_seq = 0;  // numbers the flushes (guarded by flush_mu)
  std::future<Status> committed;
  // See FileSystem::TEST_set_flush_hooks (set under flush_mu).
  std::function<Status()> test_before_commit;
  std::function<void()> test_after_store;

  std::once_flag shutdown_once;
  Status shutdown_status;

  void log(std::string_view line) const { options.log(line); }

  // --- inodes (filesystem.cc) ---
  Result<InodeTable::Ptr> state_for(uint64_t ino);
  // Attributes from the committed record, with unflushed size and times.
  Attr to_attr(const InodeRecord& record, const InodeTable::Ptr& state);
  Result<Attr> attr_of(uint64_t ino);
  // attr_of, counting one lookup reference.
  Result<Attr> attr_with_lookup(const InodeRecord& record);
  // Deletes the inode's extents (dropping chunk references), xattrs and
  // record in txn.
  Status delete_inode_contents(MetaStore::Txn& txn, uint64_t ino);
  // Deletes an unlinked inode once nothing references it any more.
  Status purge_if_unreferenced(uint64_t ino);

  // --- data (file_ops.cc) ---
  // The committed bytes [offset, end) as pieces in file order: cached chunks
  // (kept alive by view.owners) and a shared block of zeros for holes.
  Status committed_pieces(uint64_t ino, uint64_t offset, uint64_t end, ReadView& view,
                          ReadPattern pattern = ReadPattern::kRandom);
  // Copies committed bytes [offset, offset + out.size()) (holes as zeros).
  Status read_committed(uint64_t ino, uint64_t offset, std::span<uint8_t> out);
  // Shortens the committed extents of ino to `size` within txn.
  Status truncate_extents(MetaStore::Txn& txn, InodeRecord& inode, uint64_t size);
  void account_dirty(int64_t delta);

  // --- flushing (flusher.cc) ---
  // Flushes the given inodes (all dirty ones when empty) and waits for its
  // commit, and for any pending one first; sync makes the commit durable.
  // Caller holds flush_mu.
  Status flush_locked(const std::vector<std::pair<uint64_t, InodeTable::Ptr>>& targets, bool sync);
  // The flusher's round: stores a flush of every dirty inode while the
  // previous flush commits, then leaves this one's commit pending. Caller
  // holds flush_mu.
  Status flush_pipelined_locked();
  // Waits for the pending commit, if any; a failed one puts its data back.
  // Caller holds flush_mu.
  Status join_commit_locked();
  std::shared_ptr<Flush> wait_commit_locked(Status* result);
  // Parts of a flush (flusher.cc).
  Result<std::shared_ptr<Flush>> store_flush(
      const std::vector<std::pair<uint64_t, InodeTable::Ptr>>& targets, const Flush* pending);
  Status commit_flush(Flush& flush, bool sync);
  void release_committed(Flush& flush);
  enum class Layer { kFlushing, kCommitting };
  void put_back(Flush& flush, Layer layer, const Status& why);
  void request_flush();
  void flusher_loop();
  // Writes a metadata backup (logged, not fatal, on failure). Caller holds
  // flush_mu.
  Status backup_locked();
};

// Validates a name for a new directory entry.
Status check_name(std::string_view name);

}  // namespace frugalfs
