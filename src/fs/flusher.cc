// The flusher: moves buffered writes into chunks, packs and extents.
//
// One flush takes the dirty ranges of a set of inodes, widens each range to
// the committed extents it touches (plus the extent just before it, so that a
// file appended in several flushes is re-chunked across the seam), cuts the
// widened regions with FastCDC, stores the chunks (data before metadata), and
// commits the new extents, chunk and pack records and inode sizes of every
// inode in one metadata transaction. A failed flush puts its data back under
// the writes that came since, to be retried.
//
// The background flusher overlaps two flushes: while one syncs its packs and
// commits (on a thread of its own), the next is cut, hashed, compressed and
// written. Commits stay in order, one at a time. The flush being stored
// beside a pending commit takes from that commit's inodes only the writes
// from the end of its regions on (appends; anything else waits for the
// commit), starts from a copy of the pending last extent's bytes (so the
// seam is still cut as one pass), and names the pending flush's chunks rather
// than storing them again; if the pending commit fails, both flushes are put
// back. Collection waits until no commit is pending.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <system_error>

#include "fs/fs_state.h"

namespace frugalfs {

namespace {

// How often the flusher collects garbage while writes keep it busy (a
// collection waits for the pending commit, so it pauses the pipeline).
constexpr int64_t kCollectEveryNs = 10'000'000'000;
// How often, at most, the flusher writes a metadata backup while short of
// space and packs were retired since the last (each lets those packs go).
constexpr int64_t kBackupWhenOutOfSpaceNs = 10'000'000'000;

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
  // Regions start at or after this: the end of the inode's pending commit.
  uint64_t min_start = 0;
  // The bytes of that commit's last extent (ending at min_start), copied
  // from its layer: re-chunked with the writes that follow, as a committed
  // last extent is.
  uint64_t seam_start = 0;
  std::vector<uint8_t> seam;
  std::vector<Region> regions;
  std::vector<Extent> extents;  // replacing the committed ones in regions
};

// Widens the dirty ranges to whole committed extents and merges them.
Status plan_regions(MetaStore& meta, Plan& plan) {
  for (const auto& [offset, bytes] : plan.state->flushing.ranges()) {
    Region r{offset, offset + bytes.size()};
    // From the extent just before the range, if any (re-chunked across the
    // seam); at the end of a pending commit from that commit's last extent
    // (the extents stored there now may be the ones it replaces).
    const uint64_t from = offset > plan.min_start ? offset - 1 : offset;
    if (offset == plan.min_start && !plan.seam.empty()) r.start = plan.seam_start;
    FRUGAL_TRY(meta.list_extents(plan.ino, from, [&](const Extent& e) {
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

struct FileSystem::State::Flush {
  uint64_t seq = 0;  // in the order flushes were stored
  std::vector<Plan> plans;
  std::unique_ptr<ChunkStore::PackWriter> writer;
  // Set just before the metadata commit: once it is tried, a failure may
  // still have made it durable (a log write that failed only to sync), so
  // the packs it names must stay.
  bool commit_tried = false;
};

// For an inode whose pending commit ends where its next writes start: copies
// the bytes of that commit's last extent (ending there) from its layer and
// its own seam, if those hold them all. Caller holds state.mu.
static void take_seam(const FileSystem::State::Flush* pending, const InodeState& state, Plan& plan) {
  if (pending == nullptr || state.dirty.ranges().begin()->first != plan.min_start) return;
  const Plan* earlier = nullptr;
  for (const Plan& p : pending->plans) {
    if (p.ino == plan.ino) earlier = &p;
  }
  if (earlier == nullptr || earlier->extents.empty()) return;
  const Extent& last = earlier->extents.back();  // in file order
  if (last.end() != plan.min_start) return;  // ends in a hole
  std::vector<uint8_t> bytes(last.length);
  uint64_t covered = 0;  // bytes from last.file_offset on, in order
  auto take = [&](uint64_t at, std::span<const uint8_t> from) {
    const uint64_t pos = last.file_offset + covered;
    if (at > pos || at + from.size() <= pos) return;
    const uint64_t n = std::min<uint64_t>(at + from.size(), last.end()) - pos;
    std::memcpy(bytes.data() + covered, from.data() + (pos - at), n);
    covered += n;
  };
  if (!earlier->seam.empty()) take(earlier->seam_start, earlier->seam);
  for (const auto& [at, range] : state.committing.ranges()) take(at, range);
  if (covered != last.length) return;  // not all in memory: cut at the seam
  plan.seam = std::move(bytes);
  plan.seam_start = last.file_offset;
}

// Takes the dirty ranges of the targets (all dirty inodes when empty), stores
// their chunks and writes out the packs, not yet synced. With `pending` (a
// flush whose commit runs meanwhile), an inode of that flush is taken only
// for writes from its committing_end on, planned without the extents that
// commit brings, and the new writer names the pending one's chunks. Null
// when there was nothing to take; on failure the data is put back.
Result<std::shared_ptr<FileSystem::State::Flush>> FileSystem::State::store_flush(
    const std::vector<std::pair<uint64_t, InodeTable::Ptr>>& requested, const Flush* pending) {
  std::vector<std::pair<uint64_t, InodeTable::Ptr>> targets =
      requested.empty() ? inodes.dirty_states() : requested;
  auto flush = std::make_shared<Flush>();
  flush->seq = ++flush_seq;
  std::vector<Plan>& plans = flush->plans;
  for (auto& [ino, state] : targets) {
    std::lock_guard lock(state->mu);
    // (flushing_active here would mean a flush that ended without putting
    // its data back: never overwrite what it holds.)
    if (state->deleted || state->dirty.empty() || state->flushing_active) continue;
    if (state->committing_active && state->dirty.ranges().begin()->first < state->committing_end) {
      continue;  // rewrites what the pending commit replaces: after it
    }
    if (state->idle_waiters > 0) continue;  // let a setattr or purge waiting for it in first
    Plan plan;
    plan.ino = ino;
    plan.state = state;
    plan.size = state->size;
    plan.mtime_ns = state->mtime_ns;
    plan.ctime_ns = state->ctime_ns;
    plan.write_seq = state->write_seq;
    plan.bytes = state->dirty.bytes();
    if (state->committing_active) {
      plan.min_start = state->committing_end;
      take_seam(pending, *state, plan);
    }
    state->flushing = std::move(state->dirty);
    state->dirty.clear();
    state->flushing_active = true;
    plans.push_back(std::move(plan));
  }
  if (plans.empty()) return std::shared_ptr<Flush>();

  // The flushing ranges are immutable while flushing_active is set, so they
  // are read here without the inode's lock.
  flush->writer = chunks->new_writer(pending != nullptr ? pending->writer.get() : nullptr);
  ChunkStore::PackWriter* writer = flush->writer.get();
  // Fills out with the region's bytes at offset: the flushing bytes, and
  // committed bytes where those leave gaps.
  auto fill = [&](const Plan& plan, uint64_t offset, std::span<uint8_t> out) -> Status {
    const auto& ranges = plan.state->flushing.ranges();
    uint64_t pos = offset;
    const uint64_t end = offset + out.size();
    if (!plan.seam.empty() && pos >= plan.seam_start && pos < plan.min_start) pos = plan.min_start;
    if (auto it = ranges.upper_bound(pos); it != ranges.begin() && pos < end) {
      --it;
      pos = std::max(pos, it->first + it->second.size());
    }
    if (pos < end) {  // not all covered: committed bytes under the rest (not the seam)
      uint64_t from = offset;
      if (!plan.seam.empty() && from >= plan.seam_start && from < plan.min_start) from = std::min(end, plan.min_start);
      FRUGAL_TRY(read_committed(plan.ino, from, out.subspan(static_cast<size_t>(from - offset))));
    }
    if (!plan.seam.empty()) {
      const uint64_t from = std::max(offset, plan.seam_start);
      const uint64_t to = std::min(end, plan.min_start);
      if (from < to) {
        std::memcpy(out.data() + (from - offset), plan.seam.data() + (from - plan.seam_start), to - from);
      }
    }
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
    result = bytes.ok() ? writer->write_out(*bytes) : writer->write_out();
    if (result.ok() && !bytes.ok()) result = bytes.status();
  }
  if (!result.ok()) {
    put_back(*flush, Layer::kFlushing, result);
    return result;
  }
  return flush;
}

// Syncs the flush's packs and commits its extents, chunk and pack records and
// inode sizes in one transaction. Touches no inode state.
Status FileSystem::State::commit_flush(Flush& flush, bool sync) {
  if (test_before_commit) FRUGAL_TRY(test_before_commit());
  ChunkStore::PackWriter& writer = *flush.writer;
  FRUGAL_TRY(writer.sync());  // data before metadata
  auto txn = meta->begin();
  FRUGAL_TRY(writer.stage(*txn));
  for (Plan& plan : flush.plans) {
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
  FRUGAL_TRY(writer.mark_unreferenced(*txn));
  flush.commit_tried = true;
  return txn->commit(sync);
}

// After a successful commit: the committing layers are dropped (the store
// now holds their bytes) and their bytes no longer count as unflushed.
void FileSystem::State::release_committed(Flush& flush) {
  uint64_t flushed = 0;
  for (Plan& plan : flush.plans) {
    {
      std::lock_guard lock(plan.state->mu);
      plan.state->committing.clear();
      plan.state->committing_active = false;
      if (plan.state->write_seq == plan.write_seq) {
        plan.state->mtime_ns.reset();
        plan.state->ctime_ns.reset();
      }
      flushed += plan.bytes;
      plan.state->idle.notify_all();
    }
    inodes.evict_if_idle(plan.ino);
  }
  std::lock_guard lock(dirty_mu);
  dirty_bytes -= std::min(dirty_bytes, flushed);
  if (last_flush_error_seq <= flush.seq) last_flush_error = Status::Ok();  // not a later one's
  dirty_cv.notify_all();
}

// After a failure: the layer's bytes go back under the writes that came
// since, to be flushed again, and the packs written for them are removed
// (unless the commit was tried). (When a commit and the flush stored after it
// both fail, the later flush's data is put back first, so the older bytes
// end up beneath the newer.)
void FileSystem::State::put_back(Flush& flush, Layer layer, const Status& why) {
  size_t removed = 0;
  if (flush.writer && !flush.commit_tried) removed = flush.writer->discard();
  if (why.code() == ENOSPC) flush_short_of_space = true;
  int64_t requeued_delta = 0;
  for (Plan& plan : flush.plans) {
    {
      std::lock_guard lock(plan.state->mu);
      DirtyRanges& taken = layer == Layer::kFlushing ? plan.state->flushing : plan.state->committing;
      uint64_t counted = plan.state->dirty.bytes() + taken.bytes();
      plan.state->dirty.merge_under(std::move(taken));
      taken.clear();
      requeued_delta += static_cast<int64_t>(plan.state->dirty.bytes()) - static_cast<int64_t>(counted);
      if (!plan.state->deleted && plan.state->dirty_since_ns == 0) plan.state->dirty_since_ns = fs_now_ns();
      (layer == Layer::kFlushing ? plan.state->flushing_active : plan.state->committing_active) = false;
      plan.state->idle.notify_all();
    }
    inodes.evict_if_idle(plan.ino);
  }
  {
    std::lock_guard lock(dirty_mu);
    dirty_bytes = requeued_delta < 0
                      ? dirty_bytes - std::min<uint64_t>(dirty_bytes, static_cast<uint64_t>(-requeued_delta))
                      : dirty_bytes + static_cast<uint64_t>(requeued_delta);
    last_flush_error = why;
    last_flush_error_seq = std::max(last_flush_error_seq, flush.seq);
    dirty_cv.notify_all();
  }
  log(fmt::format("flush failed, will retry: {}{}", why.ToString(),
                  removed > 0 ? fmt::format(" ({} packs written for it removed)", removed) : ""));
}

// A stored flush's data moves from flushing to committing, so that the next
// flush can take the writes that came since.
static void hand_to_commit(std::vector<Plan>& plans) {
  for (Plan& plan : plans) {
    std::lock_guard lock(plan.state->mu);
    uint64_t end = plan.min_start;
    for (const Region& r : plan.regions) end = std::max(end, r.end);
    plan.state->committing = std::move(plan.state->flushing);
    plan.state->flushing.clear();
    plan.state->flushing_active = false;
    plan.state->committing_active = true;
    plan.state->committing_end = end;
  }
}

// Waits for the pending commit; the flush, if it failed (to be put back).
std::shared_ptr<FileSystem::State::Flush> FileSystem::State::wait_commit_locked(Status* result) {
  *result = Status::Ok();
  if (!committing) return nullptr;
  *result = committed.get();
  std::shared_ptr<Flush> flush = std::move(committing);
  committing.reset();
  return result->ok() ? nullptr : flush;
}

Status FileSystem::State::join_commit_locked() {
  Status result;
  if (auto failed = wait_commit_locked(&result)) put_back(*failed, Layer::kCommitting, result);
  return result;
}

Status FileSystem::State::flush_locked(
    const std::vector<std::pair<uint64_t, InodeTable::Ptr>>& requested, bool sync) {
  Status pending = join_commit_locked();
  FRUGAL_ASSIGN_OR_RETURN(std::shared_ptr<Flush> flush, store_flush(requested, nullptr));
  if (!flush) return sync ? meta->sync() : pending;
  hand_to_commit(flush->plans);
  Status result = commit_flush(*flush, sync);
  if (result.ok()) {
    release_committed(*flush);
  } else {
    put_back(*flush, Layer::kCommitting, result);
  }
  return result;
}

// The flusher stores flush N+1 while flush N syncs its packs and commits:
// the volumes' sync (a cache flush of the devices, proportional to the bytes
// written) overlaps hashing, compressing and writing the next packs, instead
// of leaving the cores idle. Commits stay in order, one at a time.
Status FileSystem::State::flush_pipelined_locked() {
  auto stored = store_flush({}, committing.get());  // a failed one is put back
  if (test_after_store) test_after_store();
  Status earlier;
  std::shared_ptr<Flush> failed = wait_commit_locked(&earlier);
  const Status store_status = stored.ok() ? Status::Ok() : stored.status();
  std::shared_ptr<Flush> flush = stored.ok() ? std::move(stored).value() : nullptr;
  if (failed) {
    // This flush may name the failed one's chunks: both are done again. The
    // newer data goes back first, so that the older ends up beneath it.
    if (flush) put_back(*flush, Layer::kFlushing, earlier);
    put_back(*failed, Layer::kCommitting, earlier);
    return earlier;
  }
  if (!flush) return store_status;
  hand_to_commit(flush->plans);
  auto commit = [this, flush]() noexcept -> Status {
    Status result = commit_flush(*flush, false);
    if (result.ok()) release_committed(*flush);
    return result;
  };
  try {
    committed = std::async(std::launch::async, commit);
  } catch (const std::exception&) {  // no thread or no memory for one: commit here
    std::promise<Status> done;
    done.set_value(commit());
    committed = done.get_future();
  }
  committing = flush;  // only now: committed is valid
  return Status::Ok();
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
  {
    std::lock_guard lock(flush_mu);
    last_collect_ns = fs_now_ns();  // the first collection: at a pause, or after kCollectEvery
  }
  for (;;) {
    bool requested = false;
    bool stopping = false;
    {
      std::unique_lock lock(wake_mu);
      wake_cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop || flush_requested; });
      stopping = stop;
      requested = flush_requested;
      flush_requested = false;
    }
    if (stopping) {  // (wake_mu released: writers take it under dirty_mu)
      std::lock_guard lock(flush_mu);
      join_commit_locked().IgnoreError();  // shutdown flushes what is back
      return;
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
    if (due) flush_pipelined_locked().IgnoreError();  // logged; retried next round
    {
      // Nothing left to flush (the files whose flush failed were deleted, or
      // truncated): no failure stands any more.
      std::lock_guard dirty_lock(dirty_mu);
      if (dirty_bytes == 0 && !committing) last_flush_error = Status::Ok();
    }
    // Collection and backups run with no commit pending (a collection must
    // not remove a chunk a pending flush named): once writes pause and the
    // last commit is done, or every kCollectEvery under a steady stream.
    if (committing) {
      const bool done = committed.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
      if (due ? fs_now_ns() - last_collect_ns < kCollectEveryNs : !done) continue;
    }
    join_commit_locked().IgnoreError();  // logged; retried next round
    Status collected = chunks->collect();
    last_collect_ns = fs_now_ns();
    if (!collected.ok()) log("garbage collection: " + collected.ToString());
    const int64_t backup_every_ns = static_cast<int64_t>(options.backup_interval_seconds * 1e9);
    // Deleted data frees its packs only with a backup that no longer names
    // them (they are retired until then): short of space, back up soon.
    const ChunkStore::Counters counters = chunks->counters();
    const uint64_t retired = counters.packs_deleted + counters.packs_compacted;
    const int64_t now = fs_now_ns();
    const bool free_retired = retired != retired_at_backup && now - last_backup_try_ns >= kBackupWhenOutOfSpaceNs &&
                              (flush_short_of_space || volumes.near_full());
    if (last_backup_ns == 0 || (backup_every_ns > 0 && now - last_backup_ns >= backup_every_ns) || free_retired) {
      last_backup_try_ns = now;
      if (backup_locked().ok()) {  // (a failure is logged; retried later)
        retired_at_backup = retired;
        flush_short_of_space = false;
      }
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
