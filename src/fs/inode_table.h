// The in-memory side of inodes: lookup and open counts (the FUSE protocol's
// references), the authoritative size, and the write buffer of data not yet
// flushed. A state exists while the kernel references the inode or while it
// has unflushed data; otherwise the metadata database is the whole truth.
//
// Lock order: InodeTable::mu_ before InodeState::mu before a MetaStore Txn.
// The flusher never holds an InodeState::mu while it waits for anything.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "frugalfs/meta.h"
#include "frugalfs/status.h"
#include "fs/dirty_ranges.h"

namespace frugalfs {

struct InodeState {
  std::mutex mu;                // guards everything below
  std::condition_variable idle; // notified when a flush or commit of this inode ends
  // Changed under both InodeTable::mu_ and mu, so either lock keeps them
  // still (an unlink holds mu to decide whether it may delete at once).
  uint64_t lookups = 0;
  uint32_t opens = 0;
  uint64_t size = 0;            // the file's size, including unflushed writes
  DirtyRanges dirty;            // written since the last flush began
  DirtyRanges flushing;         // being flushed now (read-only meanwhile)
  bool flushing_active = false;
  // Flushed, its commit pending (read-only meanwhile). The next flush takes
  // only writes from committing_end on (the end of its last region), so
  // that it plans against no extent the pending commit replaces.
  DirtyRanges committing;
  bool committing_active = false;
  uint64_t committing_end = 0;
  std::optional<int64_t> mtime_ns;  // set by writes not yet committed
  std::optional<int64_t> ctime_ns;
  int64_t dirty_since_ns = 0;   // when dirty became non-empty
  uint64_t write_seq = 0;       // bumped by every write and setattr
  bool deleted = false;         // purged: drop every later write
  bool detached = false;        // no longer in the table (set under both locks)
  // The record as it was deleted, when an unlink deleted the inode while the
  // kernel still held lookups: getattr answers from it until the FORGET.
  std::optional<InodeRecord> removed;

  // Waits until no flush of this inode is in progress or pending commit.
  void wait_idle(std::unique_lock<std::mutex>& lock) {
    ++idle_waiters;  // the flusher takes no new flush of the inode meanwhile
    idle.wait(lock, [&] { return !busy(); });
    --idle_waiters;
  }
  uint32_t idle_waiters = 0;
  bool busy() const { return flushing_active || committing_active; }
};

class InodeTable {
 public:
  using Ptr = std::shared_ptr<InodeState>;

  // The state of ino, created with load_size() as its size if absent.
  Result<Ptr> get(uint64_t ino, const std::function<Result<uint64_t>()>& load_size);
  Ptr find(uint64_t ino) const;

  void add_lookup(const Ptr& state, uint64_t n = 1);
  // False (and no open counted) when the inode was deleted meanwhile.
  [[nodiscard]] bool add_open(const Ptr& state);
  // Return true when the inode is left with no lookups and no opens.
  bool drop_lookups(uint64_t ino, uint64_t n);
  bool drop_open(uint64_t ino);
  bool referenced(uint64_t ino) const;

  // Forgets the state of ino if it is unreferenced and has no unflushed data.
  void evict_if_idle(uint64_t ino);
  void erase(uint64_t ino);

  // Every state with unflushed data, with its inode number.
  std::vector<std::pair<uint64_t, Ptr>> dirty_states() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Ptr> states_;
};

}  // namespace frugalfs
