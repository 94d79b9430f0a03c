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

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "frugalfs/backup.h"
#include "frugalfs/chunk_store.h"
#include "frugalfs/erasure.h"
#include "frugalfs/volume.h"

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
  const RecoverOptions& options;
  RecoverReport report;
  VolumeSet volumes;
  std::map<uint32_t, std::string> given;  // volume id -> URI, from the labels
  std::string fs_id;
  std::map<uint64_t, FoundPack> packs;  // data packs and backups, by id
  std::map<std::pair<int, int>, std::unique_ptr<PackStore>> stores;  // by (k, m)

  void log(std::string_view line) const {
    if (options.log) options.log(line);
  }

  Status open_volumes();
  Status scan_fragments();
  Result<PackStore*> store_for(const FoundPack& found);
  Result<std::vector<uint8_t>> read_pack(const FoundPack& found, const std::vector<uint32_t>& members);
  // The pairs of the newest backup that decodes.
  Result<std::vector<std::pair<std::string, std::string>>> newest_backup();
  Status adopt(MetaStore& meta);
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

Result<PackStore*> Recovery::store_for(const FoundPack& found) {
  auto key = std::make_pair(int{found.first.k}, int{found.first.m});
  auto it = stores.find(key);
  if (it == stores.end()) {
    FRUGAL_ASSIGN_OR_RETURN(auto code, ErasureCode::ReedSolomon(key.first, key.second));
    it = stores.emplace(key, std::make_unique<PackStore>(volumes, std::move(code), found.first.block_size)).first;
  }
  return it->second.get();
}

Result<std::vector<uint8_t>> Recovery::read_pack(const FoundPack& found, const std::vector<uint32_t>& members) {
  if (found.volume_of.size() < found.first.k) {
    return Errorf(EIO, "{} of its {} fragments found, {} needed", found.volume_of.size(),
                  found.first.k + found.first.m, found.first.k);
  }
  FRUGAL_ASSIGN_OR_RETURN(PackStore * store, store_for(found));
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
    Status decoded = bytes.ok() ? decode_backup(*bytes, [&](std::string_view k, std::string_view v) {
      pairs.emplace_back(k, v);
      return Status::Ok();
    })
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
  FRUGAL_TRY(meta.list_packs([&](const PackRecord& p) {
    named.insert(p.layout.pack_id);
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
    // unless a write stores the same chunks again first.
    auto txn = meta.begin();
    for (const PackEntry& e : *entries) {
      auto existing = txn->get_chunk(e.id);
      if (existing.ok()) continue;  // the backup has this chunk elsewhere
      if (existing.status().code() != ENOENT) return existing.status();
      txn->put_chunk(ChunkRecord{e.id, id, e.offset, e.stored_len, e.raw_len, e.codec, e.checksum, 0});
      txn->put_garbage(e.id);
      ++report.chunks_adopted;
    }
    txn->put_pack(PackRecord{layout_of(found, members), found.first.pack_len, 0, now_ns()});
    FRUGAL_TRY(txn->commit());
    ++report.packs_adopted;
  }
  FRUGAL_TRY(meta.reserve_pack_ids_through(max_pack_id));
  return meta.sync();
}

}  // namespace

Result<RecoverReport> recover_metadata(const RecoverOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::path(options.meta_dir) / "CURRENT", ec)) {
    return Errorf(EEXIST, "{} already holds a metadata database; recover writes a new one", options.meta_dir);
  }
  Recovery r{options, {}, {}, {}, {}, {}, {}};
  FRUGAL_TRY(r.open_volumes());
  FRUGAL_TRY(r.scan_fragments());
  FRUGAL_ASSIGN_OR_RETURN(auto pairs, r.newest_backup());

  size_t next = 0;
  FRUGAL_TRY(MetaStore::import(options.meta_dir, [&](std::string* key, std::string* value) -> Result<bool> {
    if (next == pairs.size()) return false;
    *key = std::move(pairs[next].first);
    *value = std::move(pairs[next].second);
    ++next;
    return true;
  }));
  pairs.clear();
  auto meta = MetaStore::open(options.meta_dir);
  if (!meta.ok()) return meta.status().WithContext(fmt::format("opening the restored database in {}", options.meta_dir));
  Status adopted = r.adopt(**meta);
  if (!adopted.ok()) {
    meta->reset();
    fs::remove_all(options.meta_dir, ec);  // an incomplete recovery must not be mounted
    return adopted;
  }
  return r.report;
}

}  // namespace frugalfs
