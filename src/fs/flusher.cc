// The flusher: moves buffered writes into chunks, packs and extents.
//
// One flush takes the dirty ranges of a set of inodes, widens each range to
// the committed extents it touches (plus the extent just before it, so that a
// file appended in several flushes is re-chunked across the seam), cuts the
// widened regions with FastCDC, stores the chunks (data before metadata), and
// commits the new extents, chunk and pack records and inode sizes of every
// inode in one metadata transaction. A failed flush puts its data back under
// the writes that came since, to be retried.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <system_error>

#include "fs/fs_state.h"

namespace frugalfs {

namespace {

struct Region {
  uint64_t start = 0;
  uint64_t end = 0;
};

struct Plan {
  uint64_t ino = 0;
  InodeTable::Ptr state;
  uint64_t size = 0;
  std::optional<int64_t> mtime_ns, ctime_ns;
  uint64_t write_seq = 0;
  uint64_t bytes = 0;  // dirty bytes taken
  std::vector<Region> regions;
  std::vector<Extent> extents;  // replacing the committed ones in regions
};

// Widens the dirty ranges to whole committed extents and merges them.
Status plan_regions(MetaStore& meta, Plan& plan) {
  for (const auto& [offset, bytes] : plan.state->flushing.ranges()) {
    Region r{offset, offset + bytes.size()};
    FRUGAL_TRY(meta.list_extents(plan.ino, offset > 0 ? offset - 1 : 0, [&](const Extent& e) {
      if (e.file_offset >= r.end) return false;
      r.start = std::min(r.start, e.file_offset);
      r.end = std::max(r.end, e.end());
      return true;
    }));
    if (!plan.regions.empty() && plan.regions.back().end >= r.start) {
      plan.regions.back().end = std::max(plan.regions.back().end, r.end);
    } else {
      plan.regions.push_back(r);
    }
  }
  return Status::Ok();
}

// Stores one window's chunks after another on a second thread while the
// flusher fills and cuts the next window: cutting is serial, hashing and
// compressing run on every core, and the two overlap. One window is stored at
// a time, so the chunks reach the pack writer in the order a single thread
// would give them (dedup and pack layout do not change).
class WindowPipeline {
 public:
  WindowPipeline(ChunkStore::PackWriter& writer, std::array<std::vector<uint8_t>, 2>& windows)
      : writer_(writer), windows_(windows) {}
  ~WindowPipeline() { wait().IgnoreError(); }  // no store may outlive the windows
  WindowPipeline(const WindowPipeline&) = delete;
  WindowPipeline& operator=(const WindowPipeline&) = delete;

  // The window to fill next: not the one being stored.
  std::vector<uint8_t>& next_window() { return windows_[next_]; }

  // Starts storing pieces (of next_window() or of flushing ranges, which
  // stay put during the flush); once stored, their extents (at the file
  // offsets) are appended to *extents. Waits for the window stored before,
  // and returns its status. Without a thread to spare, or for less than
  // kAsyncFrom bytes (a small file: starting a thread would cost more than
  // the overlap gains), it stores them here.
  Status submit(std::vector<std::span<const uint8_t>> pieces, std::vector<uint64_t> offsets,
                std::vector<Extent>* extents) {
    FRUGAL_TRY(wait());
    size_t bytes = 0;
    for (const auto& piece : pieces) bytes += piece.size();
    next_ = 1 - next_;
    auto store = [this, pieces = std::move(pieces), offsets = std::move(offsets),
                  extents]() noexcept -> Status {
      try {
        FRUGAL_ASSIGN_OR_RETURN(std::vector<Sha256> ids, writer_.add_all(pieces));
        for (size_t i = 0; i < pieces.size(); ++i) {
          extents->push_back(Extent{offsets[i], static_cast<uint32_t>(pieces[i].size()), ids[i], 0});
        }
        return Status::Ok();
      } catch (const std::exception& e) {  // e.g. no memory, or no thread for a pack write
        return Errorf(ENOMEM, "storing chunks: {}", e.what());
      }
    };
    if (bytes < kAsyncFrom) return store();
    try {
      pending_ = std::async(std::launch::async, store);
    } catch (const std::system_error&) {
      return store();
    }
    return Status::Ok();
  }

  // Waits for the window being stored, if any.
  Status wait() {
    if (!pending_.valid()) return Status::Ok();
    return pending_.get();
  }

  static constexpr size_t kAsyncFrom = 256 << 10;

 private:
  ChunkStore::PackWriter& writer_;
  std::array<std::vector<uint8_t>, 2>& windows_;
  size_t next_ = 0;
  std::future<Status> pending_;
};

}  // namespace

Status FileSystem::State::flush_locked(
    const std::vector<std::pair<uint64_t, InodeTable::Ptr>>& requested, bool sync) {
  std::vector<std::pair<uint64_t, InodeTable::Ptr>> targets =
      requested.empty() ? inodes.dirty_states() : requested;
  std::vector<Plan> plans;
  for (auto& [ino, state] : targets) {
    std::lock_guard lock(state->mu);
    // (flushing_active here would mean a flush that ended without putting
    // its data back: never overwrite what it holds.)
    if (state->deleted || state->dirty.empty() || state->flushing_active) continue;
    Plan plan;
    plan.ino = ino;
    plan.state = state;
    plan.size = state->size;
    plan.mtime_ns = state->mtime_ns;
    plan.ctime_ns = state->ctime_ns;
    plan.write_seq = state->write_seq;
    plan.bytes = state->dirty.bytes();
    state->flushing = std::move(state->dirty);
    state->dirty.clear();
    state->flushing_active = true;
    plans.push_back(std::move(plan));
  }
  if (plans.empty()) return sync ? meta->sync() : Status::Ok();

  // The flushing ranges are immutable while flushing_active is set, so they
  // are read here without the inode's lock.
  auto writer = chunks->new_writer();
  // Fills out with the region's bytes at offset: the flushing bytes, and
  // committed bytes where those leave gaps.
  auto fill = [&](const Plan& plan, uint64_t offset, std::span<uint8_t> out) -> Status {
    const auto& ranges = plan.state->flushing.ranges();
    auto it = ranges.upper_bound(offset);
    bool covered = false;
    if (it != ranges.begin()) {
      --it;
      covered = it->first + it->second.size() >= offset + out.size();
    }
    if (!covered) FRUGAL_TRY(read_committed(plan.ino, offset, out));
    plan.state->flushing.overlay(offset, out);
    return Status::Ok();
  };
  // Windows: every one that does not end its region must hold more than a
  // chunk's maximum, so that it yields at least one cut.
  const uint64_t max_chunk = cdc->params().max_size;
  const uint64_t seam_bytes = std::max<uint64_t>(kSeamBytes, 2 * max_chunk);
  const uint64_t window_bytes = std::max<uint64_t>(kFlushWindow, 2 * seam_bytes);
  WindowPipeline pipeline(*writer, flush_windows);
  // The bytes of a region from pos on, to cut next: read in place from the
  // flushing range that holds them when it holds at least seam_bytes of them
  // (no copy), else copied into a window, with committed bytes where no
  // range has any. A window copied because a range ends there reaches only
  // seam_bytes past that end, so cutting returns to the next range in place.
  auto window_at = [&](const Plan& plan, const Region& region,
                       uint64_t pos) -> Result<std::span<const uint8_t>> {
    uint64_t end = std::min(region.end, pos + window_bytes);
    const auto& ranges = plan.state->flushing.ranges();
    if (auto it = ranges.upper_bound(pos); it != ranges.begin()) {
      --it;
      const uint64_t range_end = it->first + it->second.size();
      if (range_end >= pos + seam_bytes || range_end >= region.end) {
        return std::span<const uint8_t>(it->second)
            .subspan(static_cast<size_t>(pos - it->first), static_cast<size_t>(std::min(end, range_end) - pos));
      }
      // Across the range's end: a short window when the next range goes on
      // from there long enough to be read in place again.
      const auto next = std::next(it);
      if (range_end > pos && next != ranges.end() && next->first == range_end &&
          next->second.size() >= seam_bytes) {
        end = std::min(end, range_end + seam_bytes);
      }
    }
    std::vector<uint8_t>& window = pipeline.next_window();
    const size_t size = static_cast<size_t>(end - pos);
    if (window.size() < size) window.resize(size);
    std::span<uint8_t> bytes(window.data(), size);
    FRUGAL_TRY(fill(plan, pos, bytes));
    return std::span<const uint8_t>(bytes);
  };
  // Cuts a region window by window; the uncut tail of a window (no natural
  // cut in it yet) starts the next one.
  auto store_region = [&](Plan& plan, const Region& region) -> Status {
    for (uint64_t pos = region.start; pos < region.end;) {
      FRUGAL_ASSIGN_OR_RETURN(std::span<const uint8_t> bytes, window_at(plan, region, pos));
      const bool last = pos + bytes.size() == region.end;
      size_t off = 0;
      std::vector<std::span<const uint8_t>> pieces;
      std::vector<uint64_t> offsets;
      for (const size_t length : cdc->cut_all(bytes, last)) {
        auto piece = bytes.subspan(off, length);
        if (!all_zero(piece)) {  // zero chunks are holes
          pieces.push_back(piece);
          offsets.push_back(pos + off);
        }
        off += length;
      }
      FRUGAL_TRY(pipeline.submit(std::move(pieces), std::move(offsets), &plan.extents));
      pos += off;
    }
    return Status::Ok();
  };

  Status result;
  for (Plan& plan : plans) {
    result = plan_regions(*meta, plan);
    for (size_t i = 0; result.ok() && i < plan.regions.size(); ++i) {
      result = store_region(plan, plan.regions[i]);
    }
    if (!result.ok()) break;
  }
  Status stored = pipeline.wait();
  if (result.ok()) result = stored;
  // The manifest goes into the flush's last pack: if the metadata database
  // is lost, recover replays the writes made after the newest backup.
  auto manifest = [&]() -> Result<std::vector<uint8_t>> {
    FlushManifest m;
    for (const Plan& plan : plans) {
      auto record = meta->get_inode(plan.ino);
      if (!record.ok()) {
        if (record.status().code() == ENOENT) continue;  // deleted meanwhile
        return record.status();
      }
      FlushManifest::File f;
      f.ino = plan.ino;
      f.mode = record->mode;
      f.uid = record->uid;
      f.gid = record->gid;
      f.size = plan.size;
      f.mtime_ns = plan.mtime_ns.value_or(record->mtime_ns);
      for (const Region& r : plan.regions) f.regions.push_back({r.start, r.end});
      f.extents = plan.extents;
      m.files.push_back(std::move(f));
    }
    return encode_flush_manifest(m);
  };
  if (result.ok()) {
    auto bytes = manifest();
    result = bytes.ok() ? writer->finish(*bytes) : writer->finish();
    if (result.ok() && !bytes.ok()) result = bytes.status();
  }
  if (result.ok()) {
    auto txn = meta->begin();
    auto apply = [&]() -> Status {
      FRUGAL_TRY(writer->stage(*txn));
      for (Plan& plan : plans) {
        auto record = txn->get_inode(plan.ino);
        if (!record.ok()) {
          if (record.status().code() == ENOENT) continue;  // deleted meanwhile
          return record.status();
        }
        for (const Region& region : plan.regions) {
          std::vector<Extent> old;
          FRUGAL_TRY(txn->list_extents(plan.ino, region.start, [&](const Extent& e) {
            if (e.file_offset >= region.end) return false;
            old.push_back(e);
            return true;
          }));
          for (const Extent& e : old) {
            record->data_bytes -= std::min<uint64_t>(record->data_bytes, e.length);
            txn->delete_extent(plan.ino, e);
            FRUGAL_TRY(chunks->drop_ref(*txn, e.chunk));
          }
        }
        for (const Extent& e : plan.extents) {
          record->data_bytes += e.length;
          txn->put_extent(plan.ino, e);
          FRUGAL_TRY(chunks->add_ref(*txn, e.chunk));
        }
        record->size = plan.size;
        if (plan.mtime_ns) record->mtime_ns = *plan.mtime_ns;
        if (plan.ctime_ns) record->ctime_ns = *plan.ctime_ns;
        txn->put_inode(*record);
      }
      FRUGAL_TRY(writer->mark_unreferenced(*txn));
      return txn->commit(sync);
    };
    result = apply();
  }

  uint64_t flushed = 0;
  int64_t requeued_delta = 0;
  for (Plan& plan : plans) {
    {
      std::lock_guard lock(plan.state->mu);
      if (result.ok()) {
        plan.state->flushing.clear();
        if (plan.state->write_seq == plan.write_seq) {
          plan.state->mtime_ns.reset();
          plan.state->ctime_ns.reset();
        }
        flushed += plan.bytes;
      } else {
        uint64_t counted = plan.state->dirty.bytes() + plan.state->flushing.bytes();
        plan.state->dirty.merge_under(std::move(plan.state->flushing));
        plan.state->flushing.clear();
        requeued_delta += static_cast<int64_t>(plan.state->dirty.bytes()) - static_cast<int64_t>(counted);
        if (!plan.state->deleted && plan.state->dirty_since_ns == 0) plan.state->dirty_since_ns = fs_now_ns();
      }
      plan.state->flushing_active = false;
      plan.state->idle.notify_all();
    }
    inodes.evict_if_idle(plan.ino);
  }
  {
    std::lock_guard lock(dirty_mu);
    int64_t delta = requeued_delta - static_cast<int64_t>(flushed);
    dirty_bytes = delta < 0 ? dirty_bytes - std::min<uint64_t>(dirty_bytes, static_cast<uint64_t>(-delta))
                            : dirty_bytes + static_cast<uint64_t>(delta);
    last_flush_error = result;
    dirty_cv.notify_all();
  }
  if (!result.ok()) log("flush failed, will retry: " + result.ToString());
  return result;
}

void FileSystem::State::request_flush() {
  {
    std::lock_guard lock(wake_mu);
    flush_requested = true;
  }
  wake_cv.notify_all();
}

void FileSystem::State::flusher_loop() {
  const auto interval_ns = static_cast<int64_t>(options.flush_interval_seconds * 1e9);
  for (;;) {
    bool requested;
    {
      std::unique_lock lock(wake_mu);
      wake_cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop || flush_requested; });
      if (stop) return;
      requested = flush_requested;
      flush_requested = false;
    }
    bool due = requested;
    if (!due) {
      const int64_t now = fs_now_ns();
      for (auto& [ino, state] : inodes.dirty_states()) {
        std::lock_guard lock(state->mu);
        if (now - state->dirty_since_ns >= interval_ns) due = true;
      }
    }
    std::lock_guard lock(flush_mu);
    if (due) flush_locked({}, false).IgnoreError();  // logged; retried next round
    Status collected = chunks->collect();
    if (!collected.ok()) log("garbage collection: " + collected.ToString());
    const int64_t backup_every_ns = static_cast<int64_t>(options.backup_interval_seconds * 1e9);
    if (last_backup_ns == 0 || (backup_every_ns > 0 && fs_now_ns() - last_backup_ns >= backup_every_ns)) {
      backup_locked().IgnoreError();  // logged; retried next round
    }
  }
}

Status FileSystem::State::backup_locked() {
  BackupOptions backup_options;
  backup_options.keep = options.backups_kept;
  const int64_t start = fs_now_ns();
  auto result = write_metadata_backup(*meta, *packs, backup_options, options.log);
  last_backup_ns = fs_now_ns();
  if (!result.ok()) {
    // Retried after a minute, not at every round of the flusher.
    const double wait = std::min(options.backup_interval_seconds, 60.0);
    last_backup_ns -= static_cast<int64_t>((options.backup_interval_seconds - wait) * 1e9);
    log("metadata backup failed, will retry: " + result.status().ToString());
    return result.status();
  }
  log(fmt::format("metadata backup {:016x}: {} keys, {} KiB compressed to {} KiB, {:.2f} s; {} retired "
                  "packs and {} old backups removed",
                  result->backup_id, result->entries, result->raw_bytes >> 10, result->stored_bytes >> 10,
                  static_cast<double>(last_backup_ns - start) / 1e9, result->packs_removed,
                  result->backups_pruned));
  return Status::Ok();
}

}  // namespace frugalfs
