#include "fs/volume_attach.h"

#include <fmt/format.h>

namespace frugalfs {

namespace {

// True when the volume holds any object (its label aside).
Result<bool> holds_objects(Volume& volume) {
  bool any = false;
  FRUGAL_TRY(volume.list("", [&](const ObjectInfo& info) {
    if (info.name != kVolumeLabelObject) any = true;
  }));
  return any;
}

}  // namespace

Status attach_volumes(MetaStore& meta, VolumeSet& volumes,
                      const std::function<void(std::string_view)>& log) {
  const Superblock& sb = meta.superblock();
  std::vector<VolumeRecord> records;
  FRUGAL_TRY(meta.list_volumes([&](const VolumeRecord& r) {
    records.push_back(r);
    return true;
  }));
  size_t offline = 0;
  std::vector<std::pair<Volume*, VolumeRecord>> relabel;  // wiped volumes
  for (const VolumeRecord& r : records) {
    auto volume = open_volume(r.uri);
    if (!volume.ok()) {
      log(fmt::format("volume {} ({}) is unavailable, running degraded: {}", r.id, r.uri,
                      volume.status().ToString()));
      volumes.add(r.id, r.uri, nullptr);
      ++offline;
      continue;
    }
    auto label = read_label(**volume);
    if (label.ok()) {
      if (label->fs_id != sb.fs_id || label->volume_id != r.id) {
        return Errorf(EINVAL,
                      "volume {} belongs to filesystem {} as volume {}, not to this filesystem "
                      "({}) as volume {}",
                      r.uri, label->fs_id, label->volume_id, sb.fs_id, r.id);
      }
    } else if (label.status().code() == ENOENT) {
      FRUGAL_ASSIGN_OR_RETURN(bool has_objects, holds_objects(**volume));
      if (has_objects) {
        return Errorf(EINVAL, "volume {} holds objects but no frugalfs label; refusing to use it",
                      r.uri);
      }
      relabel.push_back({volume->get(), r});
      ++offline;  // its data is missing: it counts against the m losses
    } else {
      log(fmt::format("volume {} ({}) is unreadable, running degraded: {}", r.id, r.uri,
                      label.status().ToString()));
      volumes.add(r.id, r.uri, nullptr);
      ++offline;
      continue;
    }
    volumes.add(r.id, r.uri, std::move(*volume));
  }
  if (offline > sb.parity_fragments) {
    return Errorf(EIO,
                  "{} of {} volumes are missing or wiped; with {} parity fragments at most {} may "
                  "be (see the log for which)",
                  offline, records.size(), sb.parity_fragments, sb.parity_fragments);
  }
  for (auto& [volume, r] : relabel) {
    FRUGAL_TRY(write_label(*volume, VolumeLabel{sb.fs_id, r.id, 1}));
    log(fmt::format("volume {} ({}) was empty (wiped or replaced): labelled it again; its "
                    "fragments are rebuilt from the other volumes on read",
                    r.id, r.uri));
  }
  if (offline > 0) {
    log(fmt::format("running degraded: {} of {} volumes missing or wiped", offline, records.size()));
  }
  return Status::Ok();
}

}  // namespace frugalfs
