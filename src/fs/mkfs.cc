// make_filesystem: label the volumes and create the metadata database.

#include <fmt/format.h>
#include <openssl/rand.h>

#include <filesystem>
#include <set>

#include "frugalfs/fs.h"
#include "frugalfs/meta.h"
#include "frugalfs/volume.h"
#include "fs/fs_state.h"

namespace frugalfs {

namespace {

Result<std::string> new_uuid() {
  uint8_t b[16];
  if (RAND_bytes(b, sizeof b) != 1) return Errorf(EIO, "cannot draw random bytes for the filesystem id");
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string hex = to_hex(b);
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                     hex.substr(16, 4), hex.substr(20));
}

Status check_options(const MkfsOptions& o) {
  if (o.data_fragments < 1) return Errorf(EINVAL, "--data must be at least 1");
  if (o.data_fragments + o.parity_fragments > 32) {
    return Errorf(EINVAL, "data + parity fragments must be at most 32");
  }
  const size_t needed = o.data_fragments + o.parity_fragments;
  if (o.volume_uris.size() < needed) {
    return Errorf(EINVAL, "{}+{} coding needs at least {} volumes, {} given", o.data_fragments,
                  o.parity_fragments, needed, o.volume_uris.size());
  }
  FRUGAL_TRY(o.chunker.validate());
  if (o.compress_level < -7 || o.compress_level > 19) {
    return Errorf(EINVAL, "zstd level {} is out of range -7..19", o.compress_level);
  }
  if (o.pack_size < 64 * 1024 || o.pack_size > (256u << 20) ||
      o.pack_size < o.chunker.max_size + 4096) {
    return Errorf(EINVAL, "pack size must be between 64 KiB and 256 MiB and exceed the largest chunk");
  }
  return Status::Ok();
}

// Refuses a volume that belongs to a filesystem or holds anything.
Status check_volume_unused(Volume& volume, const std::string& uri) {
  auto label = read_label(volume);
  if (label.ok()) {
    return Errorf(EEXIST, "volume {} already belongs to filesystem {}", uri, label->fs_id);
  }
  if (label.status().code() != ENOENT) return label.status();
  bool has_objects = false;
  FRUGAL_TRY(volume.list("", [&](const ObjectInfo&) { has_objects = true; }));
  if (has_objects) return Errorf(ENOTEMPTY, "volume {} holds objects", uri);
  // Anything but the volume's own (empty) object folders is someone's data.
  const std::string prefix = "file://";
  if (uri.rfind(prefix, 0) == 0) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(uri.substr(prefix.size()), ec), end;
         !ec && it != end; it.increment(ec)) {
      if (it->path().filename() != "objects") {
        return Errorf(ENOTEMPTY, "volume directory {} is not empty", uri);
      }
    }
    if (ec) return Errorf(EIO, "cannot list {}: {}", uri, ec.message());
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> make_filesystem(const MkfsOptions& options) {
  FRUGAL_TRY(check_options(options));
  {
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(options.meta_dir) / "CURRENT", ec)) {
      return Errorf(EEXIST, "{} already holds a frugalfs metadata database", options.meta_dir);
    }
  }
  std::vector<std::string> uris;
  std::set<std::string> seen;
  std::vector<std::unique_ptr<Volume>> volumes;
  for (const std::string& given : options.volume_uris) {
    FRUGAL_ASSIGN_OR_RETURN(std::string uri, normalize_volume_uri(given));
    if (!seen.insert(uri).second) return Errorf(EINVAL, "volume {} is given twice", uri);
    FRUGAL_ASSIGN_OR_RETURN(auto volume, open_volume(uri, /*create=*/true));
    FRUGAL_TRY(check_volume_unused(*volume, uri));
    uris.push_back(uri);
    volumes.push_back(std::move(volume));
  }

  Superblock sb;
  FRUGAL_ASSIGN_OR_RETURN(sb.fs_id, new_uuid());
  sb.data_fragments = options.data_fragments;
  sb.parity_fragments = options.parity_fragments;
  sb.chunker = options.chunker;
  sb.compress_level = options.compress_level;
  sb.pack_size = options.pack_size;
  sb.created_ns = fs_now_ns();

  std::vector<VolumeRecord> records;
  for (size_t i = 0; i < volumes.size(); ++i) {
    VolumeRecord r{static_cast<uint32_t>(i), uris[i]};
    FRUGAL_TRY(write_label(*volumes[i], VolumeLabel{sb.fs_id, r.id, 1}));
    records.push_back(r);
  }
  auto meta = MetaStore::create(options.meta_dir, sb, records);
  if (!meta.ok()) {
    // Leave the volumes as they were, so that mkfs can be run again.
    for (auto& volume : volumes) volume->remove(kVolumeLabelObject).IgnoreError();
    return meta.status();
  }
  return sb.fs_id;
}

}  // namespace frugalfs
