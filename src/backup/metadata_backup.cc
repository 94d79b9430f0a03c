// Metadata backups: the blob format and the writer. See
// include/frugalfs/backup.h and doc/metadata-backup.md.

#include <zstd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <new>

#include "frugalfs/backup.h"
#include "frugalfs/hash.h"
#include "util/little_endian.h"

namespace frugalfs {

namespace {

constexpr char kBlobMagic[8] = {'F', 'R', 'U', 'G', 'M', 'E', 'T', 'A'};
constexpr uint32_t kBlobVersion = 1;
// magic[8], version u32, reserved u32, entries u64, raw length u64, XXH3 u64,
// pack-id mark u64.
constexpr size_t kBlobHeaderSize = 48;
// A decoded backup is held in memory whole; more than this is damage.
constexpr uint64_t kMaxRawBytes = uint64_t{64} << 30;

void append_le32(std::string& out, uint32_t v) {
  uint8_t b[4];
  store_le(b, v);
  out.append(reinterpret_cast<const char*>(b), sizeof(b));
}

// A fresh backup id: the current time, and later than any id handed out
// before in this process (two backups in one microsecond stay distinct).
uint64_t next_backup_id() {
  static std::mutex mu;
  static uint64_t last = 0;
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::lock_guard lock(mu);
  last = std::max(last + 1, static_cast<uint64_t>(now) & ~kBackupIdBit);
  return kBackupIdBit | last;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void BackupEncoder::add(std::string_view key, std::string_view value) {
  append_le32(raw_, static_cast<uint32_t>(key.size()));
  raw_.append(key);
  append_le32(raw_, static_cast<uint32_t>(value.size()));
  raw_.append(value);
  ++entries_;
}

Result<std::vector<uint8_t>> BackupEncoder::finish(int level) {
  std::vector<uint8_t> blob(kBlobHeaderSize + ZSTD_compressBound(raw_.size()));
  std::memcpy(blob.data(), kBlobMagic, sizeof(kBlobMagic));
  store_le<uint64_t>(blob.data() + 8, kBlobVersion);  // version u32 + reserved u32 (zero)
  store_le<uint64_t>(blob.data() + 16, entries_);
  store_le<uint64_t>(blob.data() + 24, raw_.size());
  const auto raw = std::span(reinterpret_cast<const uint8_t*>(raw_.data()), raw_.size());
  store_le<uint64_t>(blob.data() + 32, xxh3_64(raw));
  store_le<uint64_t>(blob.data() + 40, pack_id_mark_);
  const size_t n = ZSTD_compress(blob.data() + kBlobHeaderSize, blob.size() - kBlobHeaderSize,
                                 raw_.data(), raw_.size(), level);
  if (ZSTD_isError(n)) return Errorf(EIO, "compressing the metadata backup: {}", ZSTD_getErrorName(n));
  blob.resize(kBlobHeaderSize + n);
  return blob;
}

Status decode_backup(std::span<const uint8_t> blob,
                     const std::function<Status(std::string_view key, std::string_view value)>& visit,
                     uint64_t* pack_id_mark) {
  if (blob.size() < kBlobHeaderSize || std::memcmp(blob.data(), kBlobMagic, sizeof(kBlobMagic)) != 0) {
    return Errorf(EINVAL, "not a metadata backup (bad magic)");
  }
  const uint32_t version = load_le<uint32_t>(blob.data() + 8);
  if (version != kBlobVersion) return Errorf(EINVAL, "metadata backup format version {} is unknown", version);
  const uint64_t entries = load_le<uint64_t>(blob.data() + 16);
  const uint64_t raw_len = load_le<uint64_t>(blob.data() + 24);
  const uint64_t checksum = load_le<uint64_t>(blob.data() + 32);
  if (pack_id_mark) *pack_id_mark = load_le<uint64_t>(blob.data() + 40);
  const auto frame = blob.subspan(kBlobHeaderSize);
  const unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_UNKNOWN || content == ZSTD_CONTENTSIZE_ERROR || content != raw_len) {
    return Errorf(EINVAL, "metadata backup: compressed frame does not match its header");
  }
  if (raw_len > kMaxRawBytes) return Errorf(EINVAL, "metadata backup: {} raw bytes is implausible", raw_len);
  std::vector<uint8_t> raw;
  try {
    raw.resize(raw_len);
  } catch (const std::bad_alloc&) {
    return Errorf(ENOMEM, "metadata backup: cannot allocate {} bytes to decode it", raw_len);
  }
  const size_t n = ZSTD_decompress(raw.data(), raw.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != raw_len) {
    return Errorf(EINVAL, "metadata backup: corrupt compressed data{}",
                  ZSTD_isError(n) ? fmt::format(" ({})", ZSTD_getErrorName(n)) : "");
  }
  if (xxh3_64(raw) != checksum) return Errorf(EINVAL, "metadata backup: checksum mismatch");
  size_t pos = 0;
  uint64_t seen = 0;
  auto take = [&](std::string_view* out) {
    if (raw.size() - pos < 4) return false;
    const uint32_t len = load_le<uint32_t>(raw.data() + pos);
    pos += 4;
    if (raw.size() - pos < len) return false;
    *out = std::string_view(reinterpret_cast<const char*>(raw.data() + pos), len);
    pos += len;
    return true;
  };
  while (pos < raw.size()) {
    std::string_view key, value;
    if (!take(&key) || !take(&value)) return Errorf(EINVAL, "metadata backup: truncated entry {}", seen);
    FRUGAL_TRY(visit(key, value));
    ++seen;
  }
  if (seen != entries) return Errorf(EINVAL, "metadata backup: {} entries, header says {}", seen, entries);
  return Status::Ok();
}

Result<BackupResult> write_metadata_backup(MetaStore& meta, PackStore& packs, const BackupOptions& options,
                                           const std::function<void(std::string_view)>& log) {
  if (options.keep < 1) return Errorf(EINVAL, "backups to keep must be at least 1");
  BackupResult result;
  // Packs retired before the snapshot: the backup does not name them, so
  // once it is durable their fragments can go.
  std::vector<PackRecord> retired;
  FRUGAL_TRY(meta.list_retired([&](const PackRecord& p) {
    retired.push_back(p);
    return true;
  }));

  BackupEncoder encoder;
  FRUGAL_ASSIGN_OR_RETURN(uint64_t mark, meta.allocate_pack_id());
  encoder.set_pack_id_mark(mark);
  FRUGAL_TRY(meta.export_snapshot([&](std::string_view key, std::string_view value) {
    encoder.add(key, value);
    return Status::Ok();
  }));
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> blob, encoder.finish(options.compress_level));
  std::vector<PackRecord> backups;
  FRUGAL_TRY(meta.list_backups([&](const PackRecord& b) {
    backups.push_back(b);  // oldest first: keys are in id order
    return true;
  }));
  // Newer than every recorded backup even if the clock went back (pruning
  // and recover take the highest id as the newest).
  result.backup_id = next_backup_id();
  if (!backups.empty()) result.backup_id = std::max(result.backup_id, backups.back().layout.pack_id + 1);
  result.entries = encoder.entries();
  result.raw_bytes = encoder.raw_bytes();
  result.stored_bytes = blob.size();

  // From the volumes' reserve if need be: this backup is what lets the
  // retired packs go, so it must be written when data no longer can be.
  FRUGAL_ASSIGN_OR_RETURN(PackLayout layout, packs.write(result.backup_id, blob, PackStore::Durability::kNow,
                                                         PackStore::Room::kReserve));
  const size_t prune = backups.size() + 1 > options.keep ? backups.size() + 1 - options.keep : 0;
  {
    auto txn = meta.begin();
    txn->put_backup(PackRecord{layout, blob.size(), blob.size(), now_ns()});
    for (const PackRecord& p : retired) txn->delete_retired(p.layout.pack_id);
    for (size_t i = 0; i < prune; ++i) txn->delete_backup(backups[i].layout.pack_id);
    Status committed = txn->commit(/*sync=*/true);
    if (!committed.ok()) {
      // Not recorded: its fragments would be orphans.
      packs.remove(layout).IgnoreError();
      return committed.WithContext("recording the metadata backup");
    }
  }
  auto remove = [&](const PackLayout& l, std::string_view what) {
    Status removed = packs.remove(l);
    if (!removed.ok()) log(fmt::format("removing {} {:016x}: {}", what, l.pack_id, removed.ToString()));
    return removed.ok();
  };
  for (const PackRecord& p : retired) result.packs_removed += remove(p.layout, "retired pack");
  for (size_t i = 0; i < prune; ++i) result.backups_pruned += remove(backups[i].layout, "old backup");
  return result;
}

}  // namespace frugalfs
