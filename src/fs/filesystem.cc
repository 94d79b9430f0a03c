// FileSystem: opening and closing, inode references and attributes.

#include <fmt/format.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "fs/fs_state.h"
#include "fs/volume_attach.h"

namespace frugalfs {

int64_t fs_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

static timespec to_timespec(int64_t ns) {
  timespec ts{};
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    ts.tv_sec -= 1;
  }
  return ts;
}

Status check_name(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    return Errorf(EINVAL, "invalid name '{}'", name);
  }
  if (name.size() > 255) return Errorf(ENAMETOOLONG, "name longer than 255 bytes");
  return Status::Ok();
}

Result<InodeTable::Ptr> FileSystem::State::state_for(uint64_t ino) {
  return inodes.get(ino, [&]() -> Result<uint64_t> {
    FRUGAL_ASSIGN_OR_RETURN(InodeRecord record, meta->get_inode(ino));
    return record.size;
  });
}

Attr FileSystem::State::to_attr(const InodeRecord& r, const InodeTable::Ptr& state) {
  Attr a;
  a.ino = r.ino;
  a.mode = r.mode;
  a.nlink = r.nlink;
  a.uid = r.uid;
  a.gid = r.gid;
  a.rdev = r.rdev;
  a.size = r.size;
  a.atime = to_timespec(r.atime_ns);
  a.mtime = to_timespec(r.mtime_ns);
  a.ctime = to_timespec(r.ctime_ns);
  a.generation = r.generation;
  uint64_t data = r.data_bytes;
  if (state) {
    std::lock_guard lock(state->mu);
    data += state->dirty.bytes() + state->flushing.bytes() + state->committing.bytes();
    if (S_ISREG(r.mode)) a.size = state->size;
    if (state->mtime_ns) a.mtime = to_timespec(*state->mtime_ns);
    if (state->ctime_ns) a.ctime = to_timespec(*state->ctime_ns);
  }
  if (S_ISLNK(r.mode)) a.size = r.symlink_target.size();
  // Holes take no space; unflushed bytes are counted as if stored.
  a.blocks = S_ISREG(r.mode) ? (std::min(data, a.size) + 511) / 512 : (a.size + 511) / 512;
  return a;
}

Result<Attr> FileSystem::State::attr_of(uint64_t ino) {
  InodeTable::Ptr state = inodes.find(ino);
  auto record = meta->get_inode(ino);
  if (!record.ok() && record.status().code() == ENOENT && state) {
    // Deleted by an unlink while the kernel still references it.
    std::unique_lock lock(state->mu);
    if (state->removed) {
      InodeRecord removed = *state->removed;
      lock.unlock();
      return to_attr(removed, state);
    }
  }
  if (!record.ok()) return record.status();
  return to_attr(*record, state);
}

Result<Attr> FileSystem::State::attr_with_lookup(const InodeRecord& record) {
  FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, inodes.get(record.ino, [&]() -> Result<uint64_t> {
                            return record.size;
                          }));
  inodes.add_lookup(state);
  return to_attr(record, state);
}

Status FileSystem::State::delete_inode_contents(MetaStore::Txn& txn, uint64_t ino) {
  std::vector<Extent> extents;
  FRUGAL_TRY(txn.list_extents(ino, 0, [&](const Extent& e) {
    extents.push_back(e);
    return true;
  }));
  for (const Extent& e : extents) {
    txn.delete_extent(ino, e);
    FRUGAL_TRY(chunks->drop_ref(txn, e.chunk));
  }
  std::vector<std::string> names;
  FRUGAL_TRY(txn.list_xattrs(ino, [&](std::string_view name, std::string_view) {
    names.emplace_back(name);
    return true;
  }));
  for (const std::string& name : names) txn.delete_xattr(ino, name);
  txn.delete_inode(ino);
  return Status::Ok();
}

Status FileSystem::State::purge_if_unreferenced(uint64_t ino) {
  if (inodes.referenced(ino)) return Status::Ok();
  if (InodeTable::Ptr state = inodes.find(ino)) {
    std::unique_lock lock(state->mu);
    if (state->deleted) {  // by the unlink (or by another purge)
      lock.unlock();
      inodes.evict_if_idle(ino);
      return Status::Ok();
    }
    state->wait_idle(lock);
    auto record = meta->get_inode(ino);
    if (record.ok() && record->nlink > 0) {
      lock.unlock();
      inodes.evict_if_idle(ino);
      return Status::Ok();
    }
    state->deleted = true;
    account_dirty(-static_cast<int64_t>(state->dirty.bytes()));
    state->dirty.clear();
  }
  inodes.erase(ino);
  auto txn = meta->begin();
  auto record = txn->get_inode(ino);
  if (!record.ok()) return record.status().code() == ENOENT ? Status::Ok() : record.status();
  if (record->nlink > 0) return Status::Ok();
  FRUGAL_TRY(delete_inode_contents(*txn, ino));
  txn->delete_orphan(ino);
  return txn->commit();
}

// ---------------------------------------------------------------------------

FileSystem::FileSystem(std::unique_ptr<State> state) : state_(std::move(state)) {}

Result<std::unique_ptr<FileSystem>> FileSystem::open(const std::string& meta_dir,
                                                     FsOptions options) {
  auto state = std::make_unique<State>();
  if (!options.log) {
    options.log = [](std::string_view line) { fmt::print(stderr, "frugalfs: {}\n", line); };
  }
  state->options = std::move(options);
  FRUGAL_ASSIGN_OR_RETURN(state->meta, MetaStore::open(meta_dir));
  state->sb = state->meta->superblock();
  FRUGAL_TRY(attach_volumes(*state->meta, state->volumes, state->options.log));

  FRUGAL_ASSIGN_OR_RETURN(auto code, ErasureCode::ReedSolomon(static_cast<int>(state->sb.data_fragments),
                                                              static_cast<int>(state->sb.parity_fragments)));
  state->packs = std::make_unique<PackStore>(state->volumes, std::move(code), state->sb.block_size);
  ChunkStoreOptions chunk_options;
  chunk_options.pack_size = state->sb.pack_size;
  chunk_options.compress_level = state->sb.compress_level;
  chunk_options.cache_bytes = state->options.cache_bytes;
  chunk_options.log = state->options.log;
  state->chunks = std::make_unique<ChunkStore>(*state->meta, *state->packs, chunk_options);
  FRUGAL_TRY(state->sb.chunker.validate());
  state->cdc = std::make_unique<FastCdc>(state->sb.chunker);
  FRUGAL_TRY(state->chunks->find_collectable_packs());
  // The first backup of a filesystem is taken soon after its first mount;
  // otherwise the interval counts from this mount.
  bool has_backup = false;
  FRUGAL_TRY(state->meta->list_backups([&](const PackRecord&) {
    has_backup = true;
    return false;
  }));
  state->last_backup_ns = has_backup ? fs_now_ns() : 0;

  // Inodes unlinked while open when the last session ended.
  std::vector<uint64_t> orphans;
  FRUGAL_TRY(state->meta->list_orphans([&](uint64_t ino) {
    orphans.push_back(ino);
    return true;
  }));
  for (uint64_t ino : orphans) FRUGAL_TRY(state->purge_if_unreferenced(ino));
  if (!orphans.empty()) state->log(fmt::format("deleted {} files unlinked while open", orphans.size()));

  State* raw = state.get();
  state->flusher = std::thread([raw] { raw->flusher_loop(); });
  return std::unique_ptr<FileSystem>(new FileSystem(std::move(state)));
}

FileSystem::~FileSystem() { shutdown().IgnoreError(); }

Status FileSystem::shutdown() {
  State& s = *state_;
  std::call_once(s.shutdown_once, [&] {
    {
      std::lock_guard lock(s.wake_mu);
      s.stop = true;
    }
    s.wake_cv.notify_all();
    if (s.flusher.joinable()) s.flusher.join();
    std::lock_guard lock(s.flush_mu);
    Status flushed = s.flush_locked({}, /*sync=*/true);
    Status collected = flushed.ok() ? s.chunks->collect() : Status::Ok();
    // The last backup: the database as it is left. A failure is logged but
    // loses nothing (the database itself is complete and synced).
    if (flushed.ok()) s.backup_locked().IgnoreError();
    Status synced = s.meta->sync();
    s.shutdown_status = !flushed.ok() ? flushed : !collected.ok() ? collected : synced;
    if (!s.shutdown_status.ok()) s.log("shutdown: " + s.shutdown_status.ToString());
  });
  return s.shutdown_status;
}

Result<Attr> FileSystem::lookup(uint64_t parent, std::string_view name) {
  if (name.size() > 255) return Errorf(ENAMETOOLONG, "name longer than 255 bytes");
  FRUGAL_ASSIGN_OR_RETURN(DirEntry entry, state_->meta->get_dentry(parent, name));
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord record, state_->meta->get_inode(entry.ino));
  return state_->attr_with_lookup(record);
}

void FileSystem::forget(uint64_t ino, uint64_t nlookup) {
  if (ino == kRootInode) return;
  if (state_->inodes.drop_lookups(ino, nlookup)) {
    Status s = state_->purge_if_unreferenced(ino);
    if (!s.ok()) state_->log(fmt::format("forget of inode {}: {}", ino, s.ToString()));
  }
}

Result<Attr> FileSystem::getattr(uint64_t ino) { return state_->attr_of(ino); }

Result<std::string> FileSystem::readlink(uint64_t ino) {
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord record, state_->meta->get_inode(ino));
  if (!S_ISLNK(record.mode)) return Errorf(EINVAL, "inode {} is not a symlink", ino);
  return record.symlink_target;
}

Result<FsStats> FileSystem::statfs() {
  State& s = *state_;
  FsStats st;
  std::vector<uint64_t> total, free, available;
  for (uint32_t id : s.volumes.ids()) {
    Volume* v = s.volumes.get(id);
    if (!v) continue;
    auto space = v->space();
    if (!space.ok()) continue;
    total.push_back(space->total_bytes);
    free.push_back(space->free_bytes);
    const uint64_t reserve = VolumeSet::reserve_of(space->total_bytes);
    available.push_back(space->free_bytes > reserve ? space->free_bytes - reserve : 0);
  }
  // Every byte stored costs (k+m)/k bytes of raw capacity, on k+m volumes.
  const uint64_t k = s.sb.data_fragments, n = s.sb.data_fragments + s.sb.parity_fragments;
  st.total_blocks = VolumeSet::storable_bytes(total, k, n) / st.block_size;
  st.free_blocks = VolumeSet::storable_bytes(free, k, n) / st.block_size;
  st.available_blocks = VolumeSet::storable_bytes(available, k, n) / st.block_size;
  st.total_files = uint64_t{1} << 32;
  st.free_files = st.total_files / 2;
  return st;
}

Result<FsUsage> FileSystem::usage() {
  State& s = *state_;
  FsUsage u;
  FRUGAL_TRY(s.meta->list_inodes([&](const InodeRecord& r) {
    if (S_ISREG(r.mode)) u.logical_bytes += r.size;
    return true;
  }));
  FRUGAL_TRY(s.meta->list_packs([&](const PackRecord& p) {
    ++u.packs;
    u.stored_bytes += p.total_bytes;
    u.physical_bytes += p.layout.fragment_len * (p.layout.k + p.layout.m);
    return true;
  }));
  FRUGAL_TRY(s.meta->list_chunks([&](const ChunkRecord&) {
    ++u.chunks;
    return true;
  }));
  u.metadata_bytes = s.meta->approximate_size();
  return u;
}

Status FileSystem::TEST_flush_and_collect() {
  std::lock_guard lock(state_->flush_mu);
  FRUGAL_TRY(state_->flush_locked({}, false));
  return state_->chunks->collect();
}

Status FileSystem::TEST_flush_pipelined() {
  std::lock_guard lock(state_->flush_mu);
  return state_->flush_pipelined_locked();
}

void FileSystem::TEST_set_flush_hooks(std::function<Status()> before_commit,
                                      std::function<void()> after_store) {
  std::lock_guard lock(state_->flush_mu);
  state_->join_commit_locked().IgnoreError();  // none may run while they change
  state_->test_before_commit = std::move(before_commit);
  state_->test_after_store = std::move(after_store);
}

uint64_t FileSystem::TEST_dirty_bytes() {
  std::lock_guard lock(state_->dirty_mu);
  return state_->dirty_bytes;
}

}  // namespace frugalfs
