// frugalfs recover: rebuilds the metadata database from the volumes alone.
// See include/frugalfs/backup.h and doc/metadata-backup.md.
//
// 1. Open the given volumes and check their labels (one filesystem, distinct
//    volume ids).
// 2. Read the header of every fragment: each names its pack, its index and
//    the pack's coding, so the layout of every pack can be rebuilt.
// 3. Restore the newest backup that decodes; fall back to older ones.
// 4. Record the given volumes' URIs and every backup found, and adopt the
//    data packs the backup does not name (written after it): their pack
//    records and the chunks in them (as garbage, unreferenced), so that
//    nothing on the volumes is left unaccounted for and fsck is clean.
// 5. Replay, in pack-id order, the flush manifests of the packs written after
//    the backup's snapshot: each names the files a flush wrote, the ranges
//    it rewrote and the extents now holding them, so recent writes come back
//    (files created after the backup go to /lost+found, named #<inode>).

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "frugalfs/backup.h"
#include "frugalfs/chunk_store.h"
#include "frugalfs/chunking.h"
#include "frugalfs/hash.h"
#include "frugalfs/erasure.h"
#include "frugalfs/volume.h"
#include "util/directory.h"

namespace frugalfs {

namespace {

// A pack as its fragments' headers describe it.
struct FoundPack {
  FragmentInfo first;                      // the header fields all fragments agree on
  std::map<uint32_t, uint32_t> volume_of;  // fragment index -> volume id
  std::map<uint32_t, uint64_t> checksum_of;
};

// Stands for "no volume" in a rebuilt layout: VolumeSet::get returns null,
// so reads treat the fragment as missing and rebuild it from the others.
constexpr uint32_t kNoVolume = UINT32_MAX;

bool same_pack(const FragmentInfo& a, const FragmentInfo& b) {
  return a.k == b.k && a.m == b.m && a.block_size == b.block_size && a.pack_len == b.pack_len &&
         a.fragment_len == b.fragment_len;
}

// The layout of a found pack. Fragments not found are placed on member
// volumes the pack does not use yet (where they most likely were: a volume
// that is missing), else on no volume.
PackLayout layout_of(const FoundPack& found, const std::vector<uint32_t>& members) {
  PackLayout l;
  l.pack_id = found.first.pack_id;
  l.k = found.first.k;
  l.m = found.first.m;
  l.block_size = found.first.block_size;
  l.pack_len = found.first.pack_len;
  l.fragment_len = found.first.fragment_len;
  const size_t n = size_t{l.k} + l.m;
  l.volumes.assign(n, kNoVolume);
  l.fragment_checksums.assign(n, 0);
  std::set<uint32_t> used;
  for (const auto& [index, volume] : found.volume_of) {
    l.volumes[index] = volume;
    l.fragment_checksums[index] = found.checksum_of.at(index);
    used.insert(volume);
  }
  auto spare = members.begin();
  for (size_t i = 0; i < n; ++i) {
    if (l.volumes[i] != kNoVolume) continue;
    while (spare != members.end() && used.count(*spare)) ++spare;
    if (spare == members.end()) break;
    l.volumes[i] = *spare;
    used.insert(*spare);
  }
  return l;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Recovery {
  explicit Recovery(const RecoverOptions& o) : options(o) {}

  const RecoverOptions& options;
  RecoverReport report;
  VolumeSet volumes;
  std::map<uint32_t, std::string> given;  // volume id -> URI, from the labels
  std::string fs_id;
  std::map<uint64_t, FoundPack> packs;  // data packs and backups, by id
  std::map<std::pair<int, int>, std::unique_ptr<PackStore>> stores;  // by (k, m)
  uint64_t pack_id_mark = 0;  // of the restored backup
  std::map<uint64_t, uint64_t> found_files;  // inode in a manifest -> new inode in lost+found
  uint64_t lost_found = 0;
  std::set<uint64_t> replayed;  // files of the backup changed by a replayed flush

  void log(std::string_view line) const {
    if (options.log) options.log(line);
  }

  Status open_volumes();
  Status scan_fragments();
  Result<PackStore*> store_for(int k, int m, uint32_t block_size);
  Result<std::vector<uint8_t>> read_pack(const FoundPack& found, const std::vector<uint32_t>& members);
  // The pairs of the newest backup that decodes.
  Result<std::vector<std::pair<std::string, std::string>>> newest_backup();
  Status adopt(MetaStore& meta);
  Status replay(MetaStore& meta, ChunkStore& chunks, const FlushManifest::File& file);
  Status drop_dangling_chunks(MetaStore& meta, const std::set<uint64_t>& in_use);
  Result<uint64_t> lost_found_dir(MetaStore& meta, MetaStore::Txn& txn, int64_t now);
};

Status Recovery::open_volumes() {
  for (const std::string& raw : options.volume_uris) {
    FRUGAL_ASSIGN_OR_RETURN(std::string uri, normalize_volume_uri(raw));
    auto volume = open_volume(uri);
    if (!volume.ok()) {
      log(fmt::format("volume {} is unavailable, skipped: {}", uri, volume.status().message()));
      continue;
    }
    auto label = read_label(**volume);
    if (!label.ok()) {
      log(fmt::format("volume {} has no usable frugalfs label, skipped: {}", uri, label.status().message()));
      continue;
    }
    if (fs_id.empty()) fs_id = label->fs_id;
    if (label->fs_id != fs_id) {
      return Errorf(EINVAL, "volume {} belongs to filesystem {}, the volumes before it to {}", uri,
                    label->fs_id, fs_id);
    }
    if (given.count(label->volume_id)) {
      return Errorf(EINVAL, "volumes {} and {} both carry the label of volume {}", given[label->volume_id], uri,
                    label->volume_id);
    }
    given[label->volume_id] = uri;
    volumes.add(label->volume_id, uri, std::move(volume).value());
  }
  report.volumes_given = static_cast<uint32_t>(given.size());
  if (given.empty()) return Errorf(ENOENT, "none of the given volumes is a frugalfs volume");
  return Status::Ok();
}

Status Recovery::scan_fragments() {
  for (const auto& [id, uri] : given) {
    Volume* volume = volumes.get(id);
    std::vector<std::string> names;
    FRUGAL_TRY(volume->list("frag-", [&](const ObjectInfo& o) { names.push_back(o.name); })
                   .WithContext(fmt::format("listing volume {}", uri)));
    for (const std::string& name : names) {
      ++report.fragments_scanned;
      auto info = read_fragment_info(*volume, name);
      if (!info.ok()) {
        ++report.fragments_damaged;
        log(fmt::format("volume {}: {}: skipped", uri, info.status().message()));
        continue;
      }
      auto [it, inserted] = packs.try_emplace(info->pack_id, FoundPack{*info, {}, {}});
      FoundPack& found = it->second;
      if (!same_pack(found.first, *info) || info->index >= size_t{info->k} + info->m ||
          found.volume_of.count(info->index)) {
        ++report.fragments_damaged;
        log(fmt::format("volume {}: {}: disagrees with the other fragments of its pack, skipped", uri, name));
        continue;
      }
      found.volume_of[info->index] = id;
      found.checksum_of[info->index] = info->table_checksum;
    }
  }
  return Status::Ok();
}

Result<PackStore*> Recovery::store_for(int k, int m, uint32_t block_size) {
  auto key = std::make_pair(k, m);
  auto it = stores.find(key);
  if (it == stores.end()) {
    FRUGAL_ASSIGN_OR_RETURN(auto code, ErasureCode::ReedSolomon(k, m));
    it = stores.emplace(key, std::make_unique<PackStore>(volumes, std::move(code), block_size)).first;
  }
  return it->second.get();
}

Result<std::vector<uint8_t>> Recovery::read_pack(const FoundPack& found, const std::vector<uint32_t>& members) {
  if (found.volume_of.size() < found.first.k) {
    return Errorf(EIO, "{} of its {} fragments found, {} needed", found.volume_of.size(),
                  found.first.k + found.first.m, found.first.k);
  }
  FRUGAL_ASSIGN_OR_RETURN(PackStore * store, store_for(found.first.k, found.first.m, found.first.block_size));
  std::vector<uint8_t> bytes(found.first.pack_len);
  FRUGAL_TRY(store->read(layout_of(found, members), 0, bytes));
  return bytes;
}

Result<std::vector<std::pair<std::string, std::string>>> Recovery::newest_backup() {
  for (auto it = packs.rbegin(); it != packs.rend(); ++it) {
    if (!is_backup_id(it->first)) continue;
    ++report.backups_found;
  }
  for (auto it = packs.rbegin(); it != packs.rend(); ++it) {
    if (!is_backup_id(it->first)) continue;
    std::vector<std::pair<std::string, std::string>> pairs;
    auto bytes = read_pack(it->second, {});
    Status decoded = bytes.ok() ? decode_backup(
                                      *bytes,
                                      [&](std::string_view k, std::string_view v) {
                                        pairs.emplace_back(k, v);
                                        return Status::Ok();
                                      },
                                      &pack_id_mark)
                                : bytes.status();
    if (!decoded.ok()) {
      ++report.backups_unusable;
      log(fmt::format("backup {:016x} cannot be used: {}", it->first, decoded.message()));
      continue;
    }
    report.backup_id = it->first;
    report.backup_entries = pairs.size();
    return pairs;
  }
  return Errorf(ENOENT, "the volumes hold no usable metadata backup ({} found)", report.backups_found);
}

Status Recovery::adopt(MetaStore& meta) {
  if (meta.superblock().fs_id != fs_id) {
    return Errorf(EINVAL, "the backup belongs to filesystem {}, the volumes to {}", meta.superblock().fs_id, fs_id);
  }
  std::vector<uint32_t> members;
  std::map<uint32_t, std::string> recorded;
  FRUGAL_TRY(meta.list_volumes([&](const VolumeRecord& v) {
    recorded[v.id] = v.uri;
    return true;
  }));
  for (const auto& [id, uri] : given) recorded[id] = uri;  // added after the backup, or moved
  for (const auto& [id, uri] : recorded) members.push_back(id);
  for (const auto& [id, uri] : recorded) {
    if (given.count(id)) continue;
    report.volumes_missing.push_back(id);
    log(fmt::format("volume {} ({}) was not given: it stays a member, recorded as unavailable until it "
                    "is attached again", id, uri));
  }

  std::set<uint64_t> named;  // data packs the backup names, in use or retired
  std::set<uint64_t> in_use;  // packs with a P record: the backup's, then the ones taken in
  FRUGAL_TRY(meta.list_packs([&](const PackRecord& p) {
    named.insert(p.layout.pack_id);
    in_use.insert(p.layout.pack_id);
    ++report.packs_named;
    auto found = packs.find(p.layout.pack_id);
    const size_t have = found == packs.end() ? 0 : found->second.volume_of.size();
    if (have < p.layout.k) {
      ++report.packs_named_lost;
      log(fmt::format("pack {:016x}: named by the backup but only {} of its fragments were found: files "
                      "using it will read errors (fsck lists them)", p.layout.pack_id, have));
    }
    return true;
  }));
  FRUGAL_TRY(meta.list_retired([&](const PackRecord& p) {
    named.insert(p.layout.pack_id);
    return true;
  }));

  // Backup records are rebuilt from what is on the volumes: the restored
  // ones may name backups pruned since, and miss the newer ones.
  std::vector<uint64_t> stale_backups;
  FRUGAL_TRY(meta.list_backups([&](const PackRecord& b) {
    stale_backups.push_back(b.layout.pack_id);
    return true;
  }));
  {
    auto txn = meta.begin();
    for (const auto& [id, uri] : given) txn->put_volume(VolumeRecord{id, uri});
    for (uint64_t id : stale_backups) txn->delete_backup(id);
    for (const auto& [id, found] : packs) {
      if (!is_backup_id(id)) continue;
      txn->put_backup(PackRecord{layout_of(found, members), found.first.pack_len, found.first.pack_len,
                                 backup_time_us(id) * 1000});
    }
    FRUGAL_TRY(txn->commit(/*sync=*/true));
  }

  uint64_t max_pack_id = 0;
  std::vector<FlushManifest> manifests;  // in pack-id order: the order of the flushes
  for (const auto& [id, found] : packs) {
    if (is_backup_id(id)) continue;
    max_pack_id = std::max(max_pack_id, id);
    if (named.count(id)) continue;
    auto bytes = read_pack(found, members);
    if (!bytes.ok()) {
      ++report.packs_unreadable;
      log(fmt::format("pack {:016x} (written after the backup) cannot be read, left in place: {}", id,
                      bytes.status().message()));
      continue;
    }
    auto entries = parse_pack(*bytes);
    if (!entries.ok()) {
      ++report.packs_unreadable;
      log(fmt::format("pack {:016x} (written after the backup) is malformed, left in place: {}", id,
                      entries.status().message()));
      continue;
    }
    // Adopted as unreferenced: the collector deletes it after the mount,
    // unless a manifest replayed below (or a later write) names its chunks.
    auto txn = meta.begin();
    uint64_t live = 0;
    for (const PackEntry& e : *entries) {
      if (e.kind == PackEntryKind::kManifest) {
        if (id < pack_id_mark) continue;  // written before the snapshot: the backup holds it
        std::vector<uint8_t> raw(e.raw_len);
        auto stored = std::span(*bytes).subspan(e.offset, e.stored_len);
        Status unpacked = xxh3_64(stored) == e.checksum ? decompress_chunk(e.codec, stored, raw)
                                                        : Errorf(EIO, "checksum mismatch");
        auto manifest = unpacked.ok() ? decode_flush_manifest(raw) : Result<FlushManifest>(unpacked);
        if (!manifest.ok()) {
          ++report.manifests_damaged;
          log(fmt::format("pack {:016x}: a flush manifest cannot be read, its writes are not replayed: {}", id,
                          manifest.status().message()));
          continue;
        }
        manifests.push_back(std::move(*manifest));
        continue;
      }
      auto existing = txn->get_chunk(e.id);
      if (existing.ok() && in_use.count(existing->pack_id)) continue;  // the backup has it elsewhere
      if (existing.ok()) {
        // The backup's record names a pack that is gone (retired and removed
        // after the snapshot, e.g. a chunk dropped while the collector ran):
        // this copy takes its place.
        ChunkRecord moved = *existing;
        moved.pack_id = id;
        moved.offset = e.offset;
        moved.stored_len = e.stored_len;
        moved.codec = e.codec;
        moved.checksum = e.checksum;
        txn->put_chunk(moved);
        if (moved.refcount > 0) live += kPackEntryHeaderSize + uint64_t{e.stored_len};
        ++report.chunks_adopted;
        continue;
      }
      if (existing.status().code() != ENOENT) return existing.status();
      txn->put_chunk(ChunkRecord{e.id, id, e.offset, e.stored_len, e.raw_len, e.codec, e.checksum, 0});
      txn->put_garbage(e.id);
      ++report.chunks_adopted;
    }
    txn->put_pack(PackRecord{layout_of(found, members), found.first.pack_len, live, now_ns()});
    FRUGAL_TRY(txn->commit());
    in_use.insert(id);
    ++report.packs_adopted;
  }
  FRUGAL_TRY(drop_dangling_chunks(meta, in_use));
  FRUGAL_TRY(meta.reserve_pack_ids_through(max_pack_id));

  const Superblock& sb = meta.superblock();
  FRUGAL_ASSIGN_OR_RETURN(PackStore * store, store_for(static_cast<int>(sb.data_fragments),
                                                       static_cast<int>(sb.parity_fragments), sb.block_size));
  ChunkStore chunks(meta, *store, ChunkStoreOptions{});
  // Inodes created after the backup are named in manifests by numbers the
  // backup's counter had not reached: the ones recovery creates must differ.
  for (const FlushManifest& manifest : manifests) {
    for (const FlushManifest::File& file : manifest.files) meta.reserve_inodes_through(file.ino);
  }
  for (const FlushManifest& manifest : manifests) {
    ++report.manifests_replayed;
    for (const FlushManifest::File& file : manifest.files) FRUGAL_TRY(replay(meta, chunks, file));
  }
  return meta.sync();
}

// Chunk records of the backup whose pack is gone and that no later pack
// holds: unreferenced ones (with their garbage marks) are deleted, so that
// the recovered database is consistent; referenced ones are data lost, and
// reported (fsck lists the files).
Status Recovery::drop_dangling_chunks(MetaStore& meta, const std::set<uint64_t>& in_use) {
  std::vector<ChunkRecord> dangling;
  FRUGAL_TRY(meta.list_chunks([&](const ChunkRecord& c) {
    if (!in_use.count(c.pack_id)) dangling.push_back(c);
    return true;
  }));
  auto txn = meta.begin();
  for (const ChunkRecord& c : dangling) {
    if (c.refcount > 0) {
      ++report.chunks_lost;
      log(fmt::format("chunk {}: its pack {:016x} is gone and no copy was found: files using it will read "
                      "errors (fsck lists them)", to_hex(std::span(c.id).first(8)), c.pack_id));
      continue;
    }
    txn->delete_chunk(c.id);
    FRUGAL_ASSIGN_OR_RETURN(bool marked, txn->is_garbage(c.id));
    if (marked) txn->delete_garbage(c.id);
  }
  return txn->commit();
}

Result<uint64_t> Recovery::lost_found_dir(MetaStore& meta, MetaStore::Txn& txn, int64_t now) {
  if (lost_found != 0) return lost_found;
  constexpr std::string_view kName = "lost+found";
  auto entry = txn.get_dentry(kRootInode, kName);
  if (entry.ok()) {
    if (!S_ISDIR(entry->type)) return Errorf(EEXIST, "/lost+found exists and is not a directory");
    return lost_found = entry->ino;
  }
  if (entry.status().code() != ENOENT) return entry.status();
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord root, txn.get_inode(kRootInode));
  InodeRecord dir;
  dir.ino = meta.allocate_inode();
  dir.mode = S_IFDIR | 0700;
  dir.nlink = 2;
  dir.atime_ns = dir.mtime_ns = dir.ctime_ns = now;
  dir.generation = 1;
  dir.parent = kRootInode;
  txn.put_inode(dir);
  txn.put_dentry(kRootInode, DirEntry{std::string(kName), dir.ino, S_IFDIR, meta.allocate_cookie()});
  ++root.nlink;
  root.mtime_ns = root.ctime_ns = now;
  txn.put_inode(root);
  return lost_found = dir.ino;
}

// Removes the bytes [start, end) from the extents of inode.ino: extents
// inside go, extents straddling an end are cut (the kept piece names the same
// chunk at a shifted offset).
Status cut_extents(MetaStore::Txn& txn, ChunkStore& chunks, InodeRecord& inode, uint64_t start, uint64_t end) {
  std::vector<Extent> hit;
  FRUGAL_TRY(txn.list_extents(inode.ino, start, [&](const Extent& e) {
    if (e.file_offset >= end) return false;
    hit.push_back(e);
    return true;
  }));
  for (const Extent& e : hit) {
    txn.delete_extent(inode.ino, e);
    inode.data_bytes -= std::min<uint64_t>(inode.data_bytes, e.length);
    auto keep = [&](uint64_t from, uint64_t to) -> Status {
      Extent piece{from, static_cast<uint32_t>(to - from), e.chunk,
                   static_cast<uint32_t>(e.chunk_offset + (from - e.file_offset))};
      txn.put_extent(inode.ino, piece);
      inode.data_bytes += piece.length;
      return chunks.add_ref(txn, e.chunk);
    };
    if (e.file_offset < start) FRUGAL_TRY(keep(e.file_offset, start));
    if (e.end() > end) FRUGAL_TRY(keep(end, e.end()));
    FRUGAL_TRY(chunks.drop_ref(txn, e.chunk));
  }
  return Status::Ok();
}

Status Recovery::replay(MetaStore& meta, ChunkStore& chunks, const FlushManifest::File& file) {
  auto txn = meta.begin();
  for (const Extent& e : file.extents) {
    auto chunk = txn->get_chunk(e.chunk);
    if (!chunk.ok() && chunk.status().code() != ENOENT) return chunk.status();
    if (!chunk.ok() || uint64_t{e.chunk_offset} + e.length > chunk->raw_len) {
      ++report.writes_skipped;
      log(fmt::format("inode {}: a write after the backup names {} chunk; that flush of the file is not "
                      "replayed", file.ino, chunk.ok() ? "bytes beyond the end of a" : "a missing"));
      return Status::Ok();
    }
  }
  const int64_t now = file.mtime_ns;
  InodeRecord inode;
  auto mapped = found_files.find(file.ino);
  auto existing = mapped == found_files.end() ? txn->get_inode(file.ino) : txn->get_inode(mapped->second);
  if (existing.ok()) {
    if (!S_ISREG(existing->mode)) {
      ++report.writes_skipped;
      log(fmt::format("inode {} is not a regular file in the backup; its later writes are not replayed", file.ino));
      return Status::Ok();
    }
    inode = *existing;
    if (mapped == found_files.end() && replayed.insert(file.ino).second) ++report.files_replayed;
  } else if (existing.status().code() == ENOENT) {
    // Created after the backup: its name is not known.
    FRUGAL_ASSIGN_OR_RETURN(uint64_t dir, lost_found_dir(meta, *txn, now));
    inode.ino = meta.allocate_inode();
    inode.mode = S_IFREG | (file.mode & 07777);
    inode.uid = file.uid;
    inode.gid = file.gid;
    inode.nlink = 1;
    inode.atime_ns = inode.ctime_ns = now;
    inode.generation = 1;
    txn->put_dentry(dir, DirEntry{fmt::format("#{}", file.ino), inode.ino, S_IFREG, meta.allocate_cookie()});
    found_files[file.ino] = inode.ino;
    ++report.files_found;
  } else {
    return existing.status();
  }
  for (const FlushManifest::Region& r : file.regions) FRUGAL_TRY(cut_extents(*txn, chunks, inode, r.start, r.end));
  for (const Extent& e : file.extents) {
    txn->put_extent(inode.ino, e);
    inode.data_bytes += e.length;
    FRUGAL_TRY(chunks.add_ref(*txn, e.chunk));
  }
  if (file.size < inode.size) FRUGAL_TRY(cut_extents(*txn, chunks, inode, file.size, UINT64_MAX));
  inode.size = file.size;
  inode.mtime_ns = file.mtime_ns;
  inode.ctime_ns = std::max(inode.ctime_ns, file.mtime_ns);
  txn->put_inode(inode);
  return txn->commit();
}

}  // namespace

Result<RecoverReport> recover_metadata(const RecoverOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::path(options.meta_dir) / "CURRENT", ec)) {
    return Errorf(EEXIST, "{} already holds a metadata database; recover writes a new one", options.meta_dir);
  }
  Recovery r(options);
  FRUGAL_TRY(r.open_volumes());
  FRUGAL_TRY(r.scan_fragments());
  FRUGAL_ASSIGN_OR_RETURN(auto pairs, r.newest_backup());

  // Everything is built in a directory beside meta_dir and renamed into place
  // once complete and synced: an interrupted recovery leaves nothing that
  // mounts (or that fsck --repair would "clean" of the packs taken in).
  const fs::path target = normalized_dir(options.meta_dir);
  const std::string building = target.string() + ".recovering";
  fs::remove_all(building, ec);  // left by an interrupted run
  size_t next = 0;
  FRUGAL_TRY(MetaStore::import(building, [&](std::string* key, std::string* value) -> Result<bool> {
    if (next == pairs.size()) return false;
    *key = std::move(pairs[next].first);
    *value = std::move(pairs[next].second);
    ++next;
    return true;
  }));
  pairs.clear();
  Status done = [&]() -> Status {
    auto meta = MetaStore::open(building);
    if (!meta.ok()) return meta.status().WithContext(fmt::format("opening the restored database in {}", building));
    return r.adopt(**meta);  // ends with a sync; the store closes here
  }();
  if (done.ok()) done = move_into_place(building, target);
  if (!done.ok()) {
    fs::remove_all(building, ec);
    return done;
  }
  return r.report;
}

}  // namespace frugalfs
