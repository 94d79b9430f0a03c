// MetaReader's typed reads, built on the raw get/scan of the committed view
// or of a Txn.
#include <limits>

#include "frugalfs/meta.h"
#include "meta/keys.h"
#include "meta/records.h"

namespace frugalfs {

namespace keys = meta_keys;
namespace rec = meta_records;

namespace {

Status malformed_key(const char* table, std::string_view key) {
  return Errorf(EIO, "corrupt metadata key in table {}: {}", table,
                to_hex({reinterpret_cast<const uint8_t*>(key.data()), key.size()}));
}

// Scans the table under `prefix` whose keys parse to an id (`parse`) and
// whose values decode to a record (`decode`), visiting each record in key
// order. A malformed key or value stops the scan with EIO.
template <typename Scan, typename Parse, typename Decode, typename Visit>
Status scan_records(Scan scan, const std::string& prefix, const char* table, Parse parse,
                    Decode decode, const Visit& visit) {
  Status err;
  FRUGAL_TRY(scan(prefix, prefix, [&](std::string_view key, std::string_view value) {
    auto id = parse(key);
    if (!id) {
      err = malformed_key(table, key);
      return false;
    }
    auto record = decode(*id, value);
    if (!record.ok()) {
      err = record.status();
      return false;
    }
    return visit(*record);
  }));
  return err;
}

}  // namespace

Result<InodeRecord> MetaReader::get_inode(uint64_t ino) {
  FRUGAL_ASSIGN_OR_RETURN(auto value, get_raw(keys::inode(ino)));
  if (!value) return Errorf(ENOENT, "no inode {}", ino);
  return rec::decode_inode(ino, *value);
}

Result<DirEntry> MetaReader::get_dentry(uint64_t parent, std::string_view name) {
  FRUGAL_ASSIGN_OR_RETURN(auto value, get_raw(keys::dentry(parent, name)));
  if (!value) return Errorf(ENOENT, "no entry '{}' in directory {}", name, parent);
  return rec::decode_dentry(name, *value);
}

Result<ChunkRecord> MetaReader::get_chunk(const Sha256& id) {
  FRUGAL_ASSIGN_OR_RETURN(auto value, get_raw(keys::chunk(id)));
  if (!value) return Errorf(ENOENT, "no chunk {}", to_hex(id));
  return rec::decode_chunk(id, *value);
}

Result<PackRecord> MetaReader::get_pack(uint64_t pack_id) {
  FRUGAL_ASSIGN_OR_RETURN(auto value, get_raw(keys::pack(pack_id)));
  if (!value) return Errorf(ENOENT, "no pack {}", pack_id);
  return rec::decode_pack(pack_id, *value);
}

Result<std::string> MetaReader::get_xattr(uint64_t ino, std::string_view name) {
  FRUGAL_ASSIGN_OR_RETURN(auto value, get_raw(keys::xattr(ino, name)));
  if (!value) return Errorf(ENODATA, "no attribute '{}' on inode {}", name, ino);
  return rec::decode_xattr(*value);
}

Result<bool> MetaReader::is_garbage(const Sha256& id) {
  FRUGAL_ASSIGN_OR_RETURN(auto value, get_raw(keys::garbage(id)));
  return value.has_value();
}

Status MetaReader::list_dir(uint64_t parent, uint64_t after_cookie,
                            const std::function<bool(const DirEntry&)>& visit) {
  if (after_cookie == std::numeric_limits<uint64_t>::max()) return Status::Ok();
  Status err;
  FRUGAL_TRY(scan_raw(keys::readdir_prefix(parent), keys::readdir(parent, after_cookie + 1),
                      [&](std::string_view key, std::string_view value) {
                        if (key.size() != 17) {
                          err = malformed_key("R", key);
                          return false;
                        }
                        auto entry = rec::decode_readdir(keys::get_be64(key, 9), value);
                        if (!entry.ok()) {
                          err = entry.status();
                          return false;
                        }
                        return visit(*entry);
                      }));
  return err;
}

Result<bool> MetaReader::dir_empty(uint64_t parent) {
  bool empty = true;
  std::string prefix = keys::readdir_prefix(parent);
  FRUGAL_TRY(scan_raw(prefix, prefix, [&](std::string_view, std::string_view) {
    empty = false;
    return false;
  }));
  return empty;
}

Status MetaReader::list_extents(uint64_t ino, uint64_t from,
                                const std::function<bool(const Extent&)>& visit) {
  // Keyed by end: the first key with end > from is the extent straddling
  // `from`, if any, and every later one follows in order.
  if (from == std::numeric_limits<uint64_t>::max()) return Status::Ok();
  Status err;
  FRUGAL_TRY(scan_raw(keys::extent_prefix(ino), keys::extent(ino, from + 1),
                      [&](std::string_view key, std::string_view value) {
                        auto end = keys::parse_extent_end(key);
                        if (!end) {
                          err = malformed_key("E", key);
                          return false;
                        }
                        auto extent = rec::decode_extent(*end, value);
                        if (!extent.ok()) {
                          err = extent.status();
                          return false;
                        }
                        return visit(*extent);
                      }));
  return err;
}

Status MetaReader::list_xattrs(
    uint64_t ino, const std::function<bool(std::string_view name, std::string_view value)>& visit) {
  Status err;
  std::string prefix = keys::xattr_prefix(ino);
  FRUGAL_TRY(scan_raw(prefix, prefix, [&](std::string_view key, std::string_view value) {
    auto decoded = rec::decode_xattr(value);
    if (!decoded.ok()) {
      err = decoded.status();
      return false;
    }
    return visit(key.substr(prefix.size()), *decoded);
  }));
  return err;
}

Status MetaReader::list_inodes(const std::function<bool(const InodeRecord&)>& visit) {
  return scan_records([this](auto&&... a) { return scan_raw(a...); }, keys::inode_prefix(), "I",
                      keys::parse_inode, [](auto id, std::string_view v) { return rec::decode_inode(id, v); }, visit);
}

Status MetaReader::list_chunks(const std::function<bool(const ChunkRecord&)>& visit) {
  return scan_records([this](auto&&... a) { return scan_raw(a...); }, keys::chunk_prefix(), "C",
                      keys::parse_chunk, [](auto id, std::string_view v) { return rec::decode_chunk(id, v); }, visit);
}

Status MetaReader::list_packs(const std::function<bool(const PackRecord&)>& visit) {
  return scan_records([this](auto&&... a) { return scan_raw(a...); }, keys::pack_prefix(), "P",
                      keys::parse_pack, [](auto id, std::string_view v) { return rec::decode_pack(id, v); }, visit);
}

Status MetaReader::list_backups(const std::function<bool(const PackRecord&)>& visit) {
  return scan_records([this](auto&&... a) { return scan_raw(a...); }, keys::backup_prefix(), "B",
                      keys::parse_backup, [](auto id, std::string_view v) { return rec::decode_pack(id, v); }, visit);
}

Status MetaReader::list_retired(const std::function<bool(const PackRecord&)>& visit) {
  return scan_records([this](auto&&... a) { return scan_raw(a...); }, keys::retired_prefix(), "Q",
                      keys::parse_retired, [](auto id, std::string_view v) { return rec::decode_pack(id, v); }, visit);
}

Status MetaReader::list_orphans(const std::function<bool(uint64_t ino)>& visit) {
  Status err;
  std::string prefix = keys::orphan_prefix();
  FRUGAL_TRY(scan_raw(prefix, prefix, [&](std::string_view key, std::string_view value) {
    auto ino = keys::parse_orphan(key);
    if (!ino) {
      err = malformed_key("O", key);
      return false;
    }
    if (Status s = rec::decode_orphan(value); !s.ok()) {
      err = s;
      return false;
    }
    return visit(*ino);
  }));
  return err;
}

Status MetaReader::list_garbage(const std::function<bool(const Sha256& id)>& visit) {
  Status err;
  std::string prefix = keys::garbage_prefix();
  FRUGAL_TRY(scan_raw(prefix, prefix, [&](std::string_view key, std::string_view) {
    auto id = keys::parse_garbage(key);
    if (!id) {
      err = malformed_key("G", key);
      return false;
    }
    return visit(*id);
  }));
  return err;
}

Status MetaReader::list_volumes(const std::function<bool(const VolumeRecord&)>& visit) {
  Status err;
  std::string prefix = keys::volume_prefix();
  FRUGAL_TRY(scan_raw(prefix, prefix, [&](std::string_view key, std::string_view value) {
    auto id = keys::parse_volume(key);
    if (!id) {
      err = malformed_key("V", key);
      return false;
    }
    auto volume = rec::decode_volume(*id, value);
    if (!volume.ok()) {
      err = volume.status();
      return false;
    }
    return visit(*volume);
  }));
  return err;
}

}  // namespace frugalfs
