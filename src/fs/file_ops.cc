// File data and attributes: open, read, write, truncate, setattr, fsync.
//
// Reads see committed extents, overlaid by the bytes of a flush whose commit
// is pending, by the bytes being flushed, and by the bytes written since: the
// overlay is copied first and the committed data read after, so a flush that
// commits in between cannot make a read return stale bytes.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cstring>

#include "fs/fs_state.h"
#include "fs/posix_acl.h"

namespace frugalfs {

void FileSystem::State::account_dirty(int64_t delta) {
  std::lock_guard lock(dirty_mu);
  if (delta < 0) {
    dirty_bytes -= std::min<uint64_t>(dirty_bytes, static_cast<uint64_t>(-delta));
    dirty_cv.notify_all();
  } else {
    dirty_bytes += static_cast<uint64_t>(delta);
  }
}

Status FileSystem::State::committed_pieces(uint64_t ino, uint64_t offset, uint64_t end,
                                           ReadView& view, ReadPattern pattern) {
  // Holes point at a shared block of zeros, in pieces of at most its size.
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  uint64_t pos = offset;
  auto hole_until = [&](uint64_t to) {
    for (; pos < to; pos += std::min<uint64_t>(to - pos, zeros.size())) {
      view.pieces.emplace_back(zeros.data(), static_cast<size_t>(std::min<uint64_t>(to - pos, zeros.size())));
    }
  };
  Status err;
  FRUGAL_TRY(meta->list_extents(ino, offset, [&](const Extent& e) {
    if (e.file_offset >= end) return false;
    const uint64_t from = std::max(offset, e.file_offset), to = std::min(end, e.end());
    if (from >= to) return true;
    hole_until(from);
    auto chunk = chunks->get(e.chunk, pattern);
    if (!chunk.ok()) {
      err = chunk.status();
      return false;
    }
    const uint64_t at = e.chunk_offset + (from - e.file_offset);
    if (at + (to - from) > chunk->bytes.size()) {
      err = Errorf(EIO, "extent at {} reaches beyond its chunk's {} bytes", e.file_offset,
                   chunk->bytes.size());
      return false;
    }
    view.pieces.push_back(chunk->bytes.subspan(static_cast<size_t>(at), static_cast<size_t>(to - from)));
    view.owners.push_back(std::move(chunk->owner));
    pos = to;
    return true;
  }));
  FRUGAL_TRY(err.WithContext(fmt::format("inode {}", ino)));
  hole_until(end);
  return Status::Ok();
}

Status FileSystem::State::read_committed(uint64_t ino, uint64_t offset, std::span<uint8_t> out) {
  ReadView view;
  FRUGAL_TRY(committed_pieces(ino, offset, offset + out.size(), view));
  size_t at = 0;
  for (std::span<const uint8_t> piece : view.pieces) {
    std::memcpy(out.data() + at, piece.data(), piece.size());
    at += piece.size();
  }
  return Status::Ok();
}

Status FileSystem::State::truncate_extents(MetaStore::Txn& txn, InodeRecord& inode, uint64_t size) {
  const uint64_t ino = inode.ino;
  std::vector<Extent> beyond;
  FRUGAL_TRY(txn.list_extents(ino, size, [&](const Extent& e) {
    beyond.push_back(e);
    return true;
  }));
  for (const Extent& e : beyond) {
    txn.delete_extent(ino, e);
    if (e.file_offset >= size) {
      inode.data_bytes -= std::min<uint64_t>(inode.data_bytes, e.length);
      FRUGAL_TRY(chunks->drop_ref(txn, e.chunk));
    } else {
      Extent kept = e;  // the same chunk reference, shortened
      kept.length = static_cast<uint32_t>(size - e.file_offset);
      inode.data_bytes -= std::min<uint64_t>(inode.data_bytes, e.length - kept.length);
      txn.put_extent(ino, kept);
    }
  }
  return Status::Ok();
}

Result<Attr> FileSystem::setattr(uint64_t ino, const SetAttrRequest& req) {
  State& s = *state_;
  FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, s.state_for(ino));
  std::unique_lock lock(state->mu);
  state->wait_idle(lock);  // a flush would commit the old size and times
  auto txn = s.meta->begin();
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, txn->get_inode(ino));
  const int64_t now = fs_now_ns();
  auto to_ns = [&](const timespec& ts) {
    return ts.tv_nsec == UTIME_NOW ? now : ts.tv_sec * 1000000000LL + ts.tv_nsec;
  };
  if (req.mode) {
    r.mode = (r.mode & S_IFMT) | (*req.mode & 07777);
    auto acl_value = txn->get_xattr(ino, kAclAccessXattr);
    if (acl_value.ok()) {
      FRUGAL_ASSIGN_OR_RETURN(std::vector<AclEntry> acl, parse_acl(*acl_value));
      acl_chmod(acl, r.mode);
      txn->put_xattr(ino, kAclAccessXattr, encode_acl(acl));
    } else if (acl_value.status().code() != ENODATA) {
      return acl_value.status();
    }
  }
  if (req.uid) r.uid = *req.uid;
  if (req.gid) r.gid = *req.gid;
  int64_t dropped = 0;
  if (req.size) {
    if (S_ISDIR(r.mode)) return Errorf(EISDIR, "inode {} is a directory", ino);
    if (!S_ISREG(r.mode)) return Errorf(EINVAL, "inode {} is not a regular file", ino);
    const uint64_t size = *req.size;
    if (size > (uint64_t{1} << 62)) return Errorf(EFBIG, "size {} is too large", size);
    if (size < r.size) FRUGAL_TRY(s.truncate_extents(*txn, r, size));
    r.size = size;
    r.mtime_ns = now;
  } else if (state->mtime_ns) {
    r.mtime_ns = *state->mtime_ns;
  }
  if (req.atime) r.atime_ns = to_ns(*req.atime);
  if (req.mtime) r.mtime_ns = to_ns(*req.mtime);
  r.ctime_ns = now;
  txn->put_inode(r);
  FRUGAL_TRY(txn->commit());
  txn.reset();
  // The record now holds the latest times; later writes set new ones.
  if (req.size) {
    uint64_t before = state->dirty.bytes();
    state->dirty.truncate(*req.size);
    dropped = static_cast<int64_t>(before - state->dirty.bytes());
    state->size = *req.size;
  }
  state->mtime_ns.reset();
  state->ctime_ns.reset();
  ++state->write_seq;
  lock.unlock();
  if (dropped) s.account_dirty(-dropped);
  Attr attr = s.to_attr(r, state);
  s.inodes.evict_if_idle(ino);
  return attr;
}

static uint64_t add_handle(FileSystem::State& s, uint64_t ino, int flags) {
  std::lock_guard lock(s.handles_mu);
  uint64_t fh = s.next_fh++;
  s.handles[fh] = FileHandle{ino, flags};
  return fh;
}

Result<uint64_t> FileSystem::open(uint64_t ino, int flags) {
  State& s = *state_;
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, s.meta->get_inode(ino));
  if (S_ISDIR(r.mode) && (flags & O_ACCMODE) != O_RDONLY) return Errorf(EISDIR, "is a directory");
  FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, s.state_for(ino));
  if (!s.inodes.add_open(state)) return Errorf(ENOENT, "inode {} was deleted", ino);
  if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY && S_ISREG(r.mode)) {
    SetAttrRequest req;
    req.size = 0;
    auto truncated = setattr(ino, req);
    if (!truncated.ok()) {
      s.inodes.drop_open(ino);
      return truncated.status();
    }
  }
  return add_handle(s, ino, flags);
}

Result<FileSystem::Created> FileSystem::create(uint64_t parent, std::string_view name,
                                               uint32_t mode, int flags, const Caller& caller) {
  FRUGAL_ASSIGN_OR_RETURN(Attr attr, mknod(parent, name, S_IFREG | (mode & 07777), 0, caller));
  FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, state_->state_for(attr.ino));
  if (!state_->inodes.add_open(state)) {
    forget(attr.ino, 1);  // the entry never reaches the kernel
    return Errorf(ENOENT, "'{}' was removed meanwhile", name);
  }
  return Created{attr, add_handle(*state_, attr.ino, flags & ~O_TRUNC)};
}

Result<size_t> FileSystem::read(uint64_t ino, uint64_t fh, uint64_t offset, std::span<uint8_t> out) {
  (void)fh;
  State& s = *state_;
  FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, s.state_for(ino));
  uint64_t size;
  DirtyRanges overlay;
  {
    std::lock_guard lock(state->mu);
    size = state->size;
    if (offset >= size) return size_t{0};
    out = out.first(std::min<uint64_t>(out.size(), size - offset));
    for (const DirtyRanges* layer : {&state->committing, &state->flushing, &state->dirty}) {
      for (const auto& [at, bytes] : layer->ranges()) {
        uint64_t from = std::max(offset, at), to = std::min(offset + out.size(), at + bytes.size());
        if (from < to) overlay.write(from, std::span(bytes).subspan(from - at, to - from));
      }
    }
  }
  // Only bytes the overlay does not cover come from the volumes.
  uint64_t pos = offset;
  const uint64_t end = offset + out.size();
  for (auto it = overlay.ranges().begin();; ++it) {
    uint64_t gap_end = it == overlay.ranges().end() ? end : it->first;
    if (gap_end > pos) FRUGAL_TRY(s.read_committed(ino, pos, out.subspan(pos - offset, gap_end - pos)));
    if (it == overlay.ranges().end()) break;
    std::memcpy(out.data() + (it->first - offset), it->second.data(), it->second.size());
    pos = it->first + it->second.size();
  }
  return out.size();
}

Result<FileSystem::ReadView> FileSystem::read_view(uint64_t ino, uint64_t fh, uint64_t offset,
                                                   std::span<uint8_t> buffer) {
  State& s = *state_;
  FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, s.state_for(ino));
  uint64_t end;
  bool unflushed = false;
  ReadView view;
  {
    std::lock_guard lock(state->mu);
    if (offset >= state->size) return ReadView{};
    end = offset + std::min<uint64_t>(buffer.size(), state->size - offset);
    for (const DirtyRanges* layer : {&state->committing, &state->flushing, &state->dirty}) {
      for (const auto& [at, bytes] : layer->ranges()) {
        if (at < end && at + bytes.size() > offset) unflushed = true;
      }
    }
  }
  {
    // The kernel's own read-ahead keeps a few requests in flight, answered
    // in any order: "forward" is anywhere near where the last one through
    // the same handle ended.
    std::lock_guard lock(s.handles_mu);
    if (auto it = s.handles.find(fh); it != s.handles.end()) {
      FileHandle& h = it->second;
      const uint64_t last = std::exchange(h.read_end, end);
      view.forward = (offset >= last ? offset - last : last - offset) <= kReadAheadBytes / 4;
      if (!view.forward) h.read_ahead_until = 0;
    }
  }
  if (unflushed) {  // assembled in buffer, as read() does
    FRUGAL_ASSIGN_OR_RETURN(size_t n, read(ino, fh, offset, buffer));
    view.pieces.push_back(buffer.first(n));
    return view;
  }
  FRUGAL_TRY(s.committed_pieces(ino, offset, end, view,
                                view.forward ? ReadPattern::kSequential : ReadPattern::kRandom));
  return view;
}

void FileSystem::TEST_wait_read_ahead() { state_->chunks->TEST_wait_read_ahead(); }

void FileSystem::read_ahead(uint64_t ino, uint64_t fh, uint64_t end) noexcept try {
  State& s = *state_;
  InodeTable::Ptr state = s.inodes.find(ino);
  if (!state) return;
  uint64_t size;
  {
    std::lock_guard lock(state->mu);
    size = state->size;
  }
  uint64_t from, to;
  {
    std::lock_guard lock(s.handles_mu);
    auto it = s.handles.find(fh);
    if (it == s.handles.end()) return;
    // Asked for in steps of half the distance, not after every read.
    from = std::max(end, it->second.read_ahead_until);
    to = std::min(end + kReadAheadBytes, size);
    if (from >= to || from - end > kReadAheadBytes / 2) return;
    it->second.read_ahead_until = to;
  }
  std::vector<Sha256> ids;
  Status listed = s.meta->list_extents(ino, from, [&](const Extent& e) {
    if (e.file_offset >= to) return false;
    if (ids.empty() || ids.back() != e.chunk) ids.push_back(e.chunk);
    return true;
  });
  if (listed.ok()) s.chunks->prefetch(ids);
} catch (...) {
  // Only a hint: a failure (out of memory) costs the read-ahead, nothing else.
}

Result<size_t> FileSystem::write(uint64_t ino, uint64_t fh, uint64_t offset,
                                 std::span<const uint8_t> data) {
  State& s = *state_;
  int flags = 0;
  {
    std::lock_guard lock(s.handles_mu);
    if (auto it = s.handles.find(fh); it != s.handles.end()) flags = it->second.flags;
  }
  {
    // Out of space: new data is refused at once (as a full disk refuses a
    // write), rather than buffered where a crash or an unmount would lose it
    // after the write was acknowledged. What is buffered already stays and
    // is retried; the error stands until a flush succeeds or nothing is left
    // to flush (see flusher_loop).
    std::lock_guard lock(s.dirty_mu);
    if (s.last_flush_error.code() == ENOSPC) return s.last_flush_error;
  }
  FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, s.state_for(ino));
  {
    std::lock_guard lock(state->mu);
    if (state->deleted) return Errorf(ESTALE, "inode {} was deleted", ino);
    if (flags & O_APPEND) offset = state->size;
    if (offset + data.size() > (uint64_t{1} << 62)) return Errorf(EFBIG, "file too large");
    uint64_t before = state->dirty.bytes();
    if (state->dirty.empty()) state->dirty_since_ns = fs_now_ns();
    state->dirty.write(offset, data);
    state->size = std::max(state->size, offset + data.size());
    const int64_t now = fs_now_ns();
    state->mtime_ns = now;
    state->ctime_ns = now;
    ++state->write_seq;
    s.account_dirty(static_cast<int64_t>(state->dirty.bytes() - before));
  }
  // Back-pressure: wait while unflushed data is over its budget.
  std::unique_lock lock(s.dirty_mu);
  if (s.dirty_bytes > s.options.dirty_bytes_limit / 4) s.request_flush();
  while (s.dirty_bytes > s.options.dirty_bytes_limit) {
    s.request_flush();
    s.dirty_cv.wait_for(lock, std::chrono::milliseconds(100));
    if (!s.last_flush_error.ok()) return s.last_flush_error;
  }
  return data.size();
}

Status FileSystem::release(uint64_t ino, uint64_t fh) {
  State& s = *state_;
  {
    std::lock_guard lock(s.handles_mu);
    s.handles.erase(fh);
  }
  if (s.inodes.drop_open(ino)) return s.purge_if_unreferenced(ino);
  return Status::Ok();
}

Status FileSystem::fsync(uint64_t ino, bool datasync) {
  (void)datasync;  // a flush commits data and the inode record together
  State& s = *state_;
  std::lock_guard lock(s.flush_mu);
  if (InodeTable::Ptr state = s.inodes.find(ino)) {
    FRUGAL_TRY(s.flush_locked({{ino, state}}, /*sync=*/true));
  }
  return s.meta->sync();
}

}  // namespace frugalfs
