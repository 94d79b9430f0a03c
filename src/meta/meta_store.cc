// MetaStore and Txn on RocksDB (one default column family). The layout of
// keys and values is in keys.h / records.h and doc/metadata-format.md.
//
// Concurrency: readers of the committed view go straight to RocksDB (an
// iterator sees one consistent snapshot). Writers are serialised by
// State::txn_mu, held by a Txn from begin() until commit() or destruction;
// State::pack_mu guards the pack-id reservation. Lock order: txn_mu before
// pack_mu (allocate_pack_id may be called inside a Txn).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <system_error>

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "frugalfs/meta.h"
#include "meta/keys.h"
#include "meta/records.h"
#include "util/directory.h"

namespace frugalfs {

namespace keys = meta_keys;
namespace rec = meta_records;

namespace {

constexpr uint64_t kFirstInode = kRootInode + 1;
constexpr uint64_t kFirstCookie = 3;  // 0..2 are reserved (".", "..")
constexpr uint64_t kFirstPackId = 1;
// Pack ids reserved durably per synced write.
constexpr uint64_t kPackIdReserve = 1024;

constexpr size_t kMemtableBytes = size_t{16} << 20;
constexpr size_t kBlockCacheBytes = 64 << 20;
constexpr int kMaxOpenFiles = 512;

rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }
std::string_view view(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

Status from_rocksdb(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNoSpace()) return Errorf(ENOSPC, "{}: {}", what, s.ToString());
  return Errorf(EIO, "{}: {}", what, s.ToString());
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_uuid() {
  std::random_device rd;
  uint8_t b[16];
  for (size_t i = 0; i < sizeof(b); i += 4) {
    uint32_t r = rd();
    for (size_t j = 0; j < 4; ++j) b[i + j] = static_cast<uint8_t>(r >> (8 * j));
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::string hex = to_hex(b);
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                     hex.substr(16, 4), hex.substr(20));
}

rocksdb::Options db_options(bool create) {
  rocksdb::Options o;
  o.create_if_missing = create;
  o.max_open_files = kMaxOpenFiles;
  o.keep_log_file_num = 4;
  o.max_log_file_size = 8 << 20;
  // Two memtables of 16 MiB (RocksDB's default is 64 MiB each): metadata is
  // about 0.1% of data, and the daemon's memory has a budget (README).
  o.write_buffer_size = kMemtableBytes;
  o.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks live in the bounded cache, so memory does not
  // grow with the number of chunks; L0's stay pinned for point lookups.
  t.cache_index_and_filter_blocks = true;
  t.pin_l0_filter_and_index_blocks_in_cache = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  auto supported = rocksdb::GetSupportedCompressions();
  auto has = [&](rocksdb::CompressionType c) {
    return std::find(supported.begin(), supported.end(), c) != supported.end();
  };
  if (has(rocksdb::kZSTD)) {
    o.compression = rocksdb::kZSTD;
  } else if (has(rocksdb::kLZ4Compression)) {
    o.compression = rocksdb::kLZ4Compression;
  } else {
    o.compression = rocksdb::kNoCompression;
  }
  return o;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

Result<std::unique_ptr<rocksdb::DB>> open_db(const std::string& dir, bool create) {
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options(create), dir, &raw);
  std::unique_ptr<rocksdb::DB> db(raw);
  if (s.ok()) return db;
  std::string msg = s.ToString();
  // flock() on LOCK fails with EAGAIN when another process holds it; RocksDB
  // reports its own process's holder as "lock hold by current process".
  if (s.IsIOError() && (contains(msg, "Resource temporarily unavailable") ||
                        contains(msg, "lock hold by current process") ||
                        (contains(msg, "LOCK") && contains(msg, "No locks available")))) {
    return Errorf(EBUSY, "metadata directory {} is in use by another process (already mounted?)",
                  dir);
  }
  if (s.IsInvalidArgument() && contains(msg, "does not exist")) {
    return Errorf(ENOENT, "no frugalfs metadata in {}", dir);
  }
  if (contains(msg, "Permission denied")) {
    return Errorf(EACCES, "cannot open metadata in {}: {}", dir, msg);
  }
  return from_rocksdb(s, fmt::format("cannot open metadata in {}", dir));
}

Result<std::optional<std::string>> db_get(rocksdb::DB& db, std::string_view key) {
  std::string value;
  rocksdb::Status s = db.Get(rocksdb::ReadOptions(), slice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return from_rocksdb(s, "metadata read");
  return std::optional<std::string>(std::move(value));
}

// An iterator over keys with prefix, positioned at start.
struct PrefixIterator {
  PrefixIterator(rocksdb::DB& db, std::string_view prefix, std::string_view start)
      : upper(keys::prefix_successor(prefix)), upper_slice(upper), prefix(prefix) {
    rocksdb::ReadOptions ro;
    if (!upper.empty()) ro.iterate_upper_bound = &upper_slice;
    it.reset(db.NewIterator(ro));
    it->Seek(slice(start));
  }
  bool valid() const { return it->Valid() && it->key().starts_with(slice(prefix)); }
  Status status() const { return from_rocksdb(it->status(), "metadata scan"); }

  std::string upper;
  rocksdb::Slice upper_slice;
  std::string prefix;
  std::unique_ptr<rocksdb::Iterator> it;
};

}  // namespace

namespace meta_detail {

// MetaStore's state (a base of the private MetaStore::State, so that helpers
// outside the class can fill it in).
struct StoreState {
  std::string dir;
  std::unique_ptr<rocksdb::DB> db;
  Superblock sb;

  std::mutex txn_mu;  // held by the open Txn
  std::atomic<uint64_t> next_inode{kFirstInode};
  std::atomic<uint64_t> next_cookie{kFirstCookie};
  // The counters' values in the database (guarded by txn_mu): a commit
  // writes a counter only when ids were handed out since.
  uint64_t stored_next_inode = 0;
  uint64_t stored_next_cookie = 0;

  std::mutex pack_mu;  // after txn_mu
  uint64_t next_pack_id = kFirstPackId;  // guarded by pack_mu
  uint64_t pack_id_limit = kFirstPackId; // durable: no id >= this was handed out
};

}  // namespace meta_detail

struct MetaStore::State : meta_detail::StoreState {};

struct MetaStore::Txn::State {
  MetaStore::State* store = nullptr;
  std::unique_lock<std::mutex> lock;
  // The Txn's writes by key; nullopt is a deletion. Reads look here first.
  std::map<std::string, std::optional<std::string>, std::less<>> overlay;
  // First error of a write that could not report it (put_dentry); commit()
  // returns it instead of committing.
  Status deferred;
  bool done = false;

  void put(std::string key, std::string value) {
    assert(!done && "write to a finished Txn");
    overlay.insert_or_assign(std::move(key), std::optional<std::string>(std::move(value)));
  }
  void del(std::string key) {
    assert(!done && "write to a finished Txn");
    overlay.insert_or_assign(std::move(key), std::nullopt);
  }
};

namespace {

// Reads the superblock and counters of an open database into state.
Status load_state(meta_detail::StoreState* state, const std::string& dir,
                  std::unique_ptr<rocksdb::DB> db) {
  state->dir = dir;
  FRUGAL_ASSIGN_OR_RETURN(auto sb_value, db_get(*db, keys::superblock()));
  if (!sb_value) {
    return Errorf(ENOENT, "no frugalfs metadata in {} (a database without a superblock)", dir);
  }
  if (!sb_value->empty() && static_cast<uint8_t>((*sb_value)[0]) != rec::kRecordVersion) {
    return Errorf(EPROTO, "metadata in {} has superblock record version {}; this frugalfs reads {}",
                  dir, static_cast<uint8_t>((*sb_value)[0]), rec::kRecordVersion);
  }
  auto sb = rec::decode_superblock(*sb_value);
  if (!sb.ok()) return sb.status().WithContext(dir);
  if (sb->format_version != kMetaFormatVersion) {
    return Errorf(EPROTO, "metadata in {} has format version {}; this frugalfs reads version {}",
                  dir, sb->format_version, kMetaFormatVersion);
  }
  state->sb = std::move(*sb);

  auto read_counter = [&](char which) -> Result<uint64_t> {
    FRUGAL_ASSIGN_OR_RETURN(auto value, db_get(*db, keys::counter(which)));
    if (!value) return Errorf(EIO, "corrupt metadata in {}: counter '{}' is missing", dir, which);
    return rec::decode_counter(*value);
  };
  FRUGAL_ASSIGN_OR_RETURN(uint64_t next_inode, read_counter(keys::kCounterInode));
  const uint64_t next_inode_stored = next_inode;
  FRUGAL_ASSIGN_OR_RETURN(uint64_t next_cookie, read_counter(keys::kCounterCookie));
  FRUGAL_ASSIGN_OR_RETURN(uint64_t pack_limit, read_counter(keys::kCounterPack));

  // Belt and braces: never hand out an inode number that is in use, even if
  // the counter were behind.
  {
    PrefixIterator last(*db, keys::inode_prefix(), keys::inode_prefix());
    last.it->SeekToLast();
    if (last.valid()) {
      if (auto ino = keys::parse_inode(view(last.it->key()))) next_inode = std::max(next_inode, *ino + 1);
    }
    FRUGAL_TRY(last.status());
  }
  state->stored_next_inode = next_inode_stored;
  state->stored_next_cookie = next_cookie;
  state->next_inode = std::max(next_inode, kFirstInode);
  state->next_cookie = std::max(next_cookie, kFirstCookie);
  // Ids below the persisted limit may have been handed out before a crash.
  state->next_pack_id = std::max(pack_limit, kFirstPackId);
  state->pack_id_limit = state->next_pack_id;
  state->db = std::move(db);
  return Status::Ok();
}

bool has_any_key(rocksdb::DB& db) {
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));
  it->SeekToFirst();
  return it->Valid() || !it->status().ok();
}

}  // namespace

MetaStore::MetaStore(std::unique_ptr<State> state) : state_(std::move(state)) {}

MetaStore::~MetaStore() {
  if (state_ && state_->db) {
    state_->db->SyncWAL().PermitUncheckedError();
    state_->db->Close().PermitUncheckedError();
  }
}

Result<std::unique_ptr<MetaStore>> MetaStore::create(const std::string& dir, const Superblock& sb,
                                                     const std::vector<VolumeRecord>& volumes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Errorf(ec.value(), "cannot create metadata directory {}: {}", dir, ec.message());

  std::unique_ptr<rocksdb::DB> db;
  if (fs::exists(fs::path(dir) / "CURRENT", ec)) {
    // A database is there. Only an empty one (left by an interrupted mkfs)
    // may be reused.
    FRUGAL_ASSIGN_OR_RETURN(db, open_db(dir, /*create=*/false));
    if (has_any_key(*db)) return Errorf(EEXIST, "{} already holds a metadata database", dir);
  } else {
    FRUGAL_ASSIGN_OR_RETURN(db, open_db(dir, /*create=*/true));
  }

  Superblock super = sb;
  super.format_version = kMetaFormatVersion;
  if (super.fs_id.empty()) super.fs_id = random_uuid();
  int64_t now = now_ns();
  if (super.created_ns == 0) super.created_ns = now;

  InodeRecord root;
  root.ino = kRootInode;
  root.mode = S_IFDIR | 0755;
  root.uid = getuid();
  root.gid = getgid();
  root.nlink = 2;
  root.atime_ns = root.mtime_ns = root.ctime_ns = now;
  root.generation = 1;
  root.parent = kRootInode;

  rocksdb::WriteBatch batch;
  auto put = [&](const std::string& k, const std::string& v) {
    return from_rocksdb(batch.Put(slice(k), slice(v)), "metadata batch");
  };
  FRUGAL_TRY(put(keys::superblock(), rec::encode_superblock(super)));
  for (const VolumeRecord& v : volumes) FRUGAL_TRY(put(keys::volume(v.id), rec::encode_volume(v)));
  FRUGAL_TRY(put(keys::inode(kRootInode), rec::encode_inode(root)));
  FRUGAL_TRY(put(keys::counter(keys::kCounterInode), rec::encode_counter(kFirstInode)));
  FRUGAL_TRY(put(keys::counter(keys::kCounterCookie), rec::encode_counter(kFirstCookie)));
  FRUGAL_TRY(put(keys::counter(keys::kCounterPack), rec::encode_counter(kFirstPackId)));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  FRUGAL_TRY(from_rocksdb(db->Write(wo, &batch), fmt::format("cannot write metadata in {}", dir)));

  auto state = std::make_unique<State>();
  FRUGAL_TRY(load_state(state.get(), dir, std::move(db)));
  return std::unique_ptr<MetaStore>(new MetaStore(std::move(state)));
}

Result<std::unique_ptr<MetaStore>> MetaStore::open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(fs::path(dir) / "CURRENT", ec)) {
    return Errorf(ENOENT, "no frugalfs metadata in {}", dir);
  }
  FRUGAL_ASSIGN_OR_RETURN(auto db, open_db(dir, /*create=*/false));
  auto state = std::make_unique<State>();
  FRUGAL_TRY(load_state(state.get(), dir, std::move(db)));
  return std::unique_ptr<MetaStore>(new MetaStore(std::move(state)));
}

const Superblock& MetaStore::superblock() const { return state_->sb; }

uint64_t MetaStore::allocate_inode() { return state_->next_inode.fetch_add(1); }

void MetaStore::reserve_inodes_through(uint64_t ino) {
  uint64_t next = state_->next_inode.load();
  while (next <= ino && !state_->next_inode.compare_exchange_weak(next, ino + 1)) {
  }
}

uint64_t MetaStore::allocate_cookie() { return state_->next_cookie.fetch_add(1); }

namespace {

// Writes (synced) the pack-id reservation limit; pack_mu held.
Status persist_pack_id_limit(meta_detail::StoreState& state, uint64_t limit) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::string key = keys::counter(keys::kCounterPack);
  std::string value = rec::encode_counter(limit);
  FRUGAL_TRY(from_rocksdb(state.db->Put(wo, slice(key), slice(value)), "reserving pack ids"));
  state.pack_id_limit = limit;
  return Status::Ok();
}

}  // namespace

Result<uint64_t> MetaStore::allocate_pack_id() {
  std::lock_guard<std::mutex> guard(state_->pack_mu);
  if (state_->next_pack_id >= state_->pack_id_limit) {
    FRUGAL_TRY(persist_pack_id_limit(*state_, state_->next_pack_id + kPackIdReserve));
  }
  return state_->next_pack_id++;
}

std::unique_ptr<MetaStore::Txn> MetaStore::begin() {
  auto ts = std::make_unique<Txn::State>();
  ts->store = state_.get();
  ts->lock = std::unique_lock<std::mutex>(state_->txn_mu);
  return std::unique_ptr<Txn>(new Txn(std::move(ts)));
}

Status MetaStore::sync() { return from_rocksdb(state_->db->SyncWAL(), "syncing the metadata log"); }

uint64_t MetaStore::approximate_size() {
  uint64_t total = 0;
  for (const char* property : {"rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"}) {
    uint64_t v = 0;
    if (state_->db->GetIntProperty(property, &v)) total += v;
  }
  return total;
}

Result<std::optional<std::string>> MetaStore::get_raw(std::string_view key) {
  return db_get(*state_->db, key);
}

Status MetaStore::export_snapshot(
    const std::function<Status(std::string_view key, std::string_view value)>& visit) {
  rocksdb::ReadOptions ro;
  ro.snapshot = state_->db->GetSnapshot();
  ro.fill_cache = false;
  Status result;
  {
    std::unique_ptr<rocksdb::Iterator> it(state_->db->NewIterator(ro));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      result = visit(view(it->key()), view(it->value()));
      if (!result.ok()) break;
    }
    if (result.ok()) result = from_rocksdb(it->status(), "metadata snapshot scan");
  }
  state_->db->ReleaseSnapshot(ro.snapshot);
  return result;
}

Status MetaStore::import(const std::string& dir,
                         const std::function<Result<bool>(std::string* key, std::string* value)>& next) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "CURRENT", ec)) return Errorf(EEXIST, "{} already holds a metadata database", dir);
  // Built beside dir and renamed into place once complete and synced, so a
  // failed import never leaves a partial database that would open.
  const fs::path target = normalized_dir(dir);
  const std::string partial = target.string() + ".import";
  fs::remove_all(partial, ec);
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) return Errorf(ec.value(), "cannot create {}: {}", target.parent_path().string(), ec.message());
  }
  auto build = [&]() -> Status {
    FRUGAL_ASSIGN_OR_RETURN(auto db, open_db(partial, /*create=*/true));
    rocksdb::WriteBatch batch;
    std::string key, value;
    rocksdb::WriteOptions wo;
    bool has_superblock = false;
    while (true) {
      FRUGAL_ASSIGN_OR_RETURN(bool more, next(&key, &value));
      if (!more) break;
      if (key == keys::superblock()) has_superblock = true;
      FRUGAL_TRY(from_rocksdb(batch.Put(slice(key), slice(value)), "metadata batch"));
      if (batch.GetDataSize() >= (4u << 20)) {
        FRUGAL_TRY(from_rocksdb(db->Write(wo, &batch), fmt::format("cannot write metadata in {}", partial)));
        batch.Clear();
      }
    }
    if (!has_superblock) return Errorf(EINVAL, "the imported metadata has no superblock");
    wo.sync = true;  // syncs the log of every earlier batch too
    FRUGAL_TRY(from_rocksdb(db->Write(wo, &batch), fmt::format("cannot write metadata in {}", partial)));
    return from_rocksdb(db->Close(), "closing the metadata database");
  };
  Status built = build();
  if (built.ok()) built = move_into_place(partial, target);
  if (!built.ok()) fs::remove_all(partial, ec);
  return built;
}

Status MetaStore::reserve_pack_ids_through(uint64_t pack_id) {
  std::lock_guard<std::mutex> guard(state_->pack_mu);
  if (state_->next_pack_id > pack_id) return Status::Ok();
  FRUGAL_TRY(persist_pack_id_limit(*state_, pack_id + 1 + kPackIdReserve));
  state_->next_pack_id = pack_id + 1;
  return Status::Ok();
}

Status MetaStore::scan_raw(std::string_view prefix, std::string_view start,
                           const std::function<bool(std::string_view, std::string_view)>& visit) {
  PrefixIterator it(*state_->db, prefix, start);
  for (; it.valid(); it.it->Next()) {
    if (!visit(view(it.it->key()), view(it.it->value()))) break;
  }
  return it.status();
}

// ---- Txn ----

MetaStore::Txn::Txn(std::unique_ptr<State> state) : state_(std::move(state)) {}

MetaStore::Txn::~Txn() = default;

void MetaStore::Txn::put_inode(const InodeRecord& inode) {
  state_->put(keys::inode(inode.ino), rec::encode_inode(inode));
}

void MetaStore::Txn::delete_inode(uint64_t ino) { state_->del(keys::inode(ino)); }

void MetaStore::Txn::put_dentry(uint64_t parent, const DirEntry& entry) {
  // Replacing a name that has another cookie must drop its old readdir key,
  // or the old position would list the name twice.
  auto old = get_dentry(parent, entry.name);
  if (old.ok()) {
    if (old->cookie != entry.cookie) state_->del(keys::readdir(parent, old->cookie));
  } else if (old.status().code() != ENOENT && state_->deferred.ok()) {
    state_->deferred = old.status().WithContext("put_dentry");
  }
  state_->put(keys::dentry(parent, entry.name), rec::encode_dentry(entry));
  state_->put(keys::readdir(parent, entry.cookie), rec::encode_readdir(entry));
}

Status MetaStore::Txn::delete_dentry(uint64_t parent, std::string_view name) {
  FRUGAL_ASSIGN_OR_RETURN(DirEntry old, get_dentry(parent, name));
  delete_dentry(parent, old);
  return Status::Ok();
}

void MetaStore::Txn::delete_dentry(uint64_t parent, const DirEntry& entry) {
  state_->del(keys::dentry(parent, entry.name));
  state_->del(keys::readdir(parent, entry.cookie));
}

void MetaStore::Txn::put_extent(uint64_t ino, const Extent& extent) {
  state_->put(keys::extent(ino, extent.end()), rec::encode_extent(extent));
}

void MetaStore::Txn::delete_extent(uint64_t ino, const Extent& extent) {
  state_->del(keys::extent(ino, extent.end()));
}

void MetaStore::Txn::put_chunk(const ChunkRecord& chunk) {
  state_->put(keys::chunk(chunk.id), rec::encode_chunk(chunk));
}

void MetaStore::Txn::delete_chunk(const Sha256& id) { state_->del(keys::chunk(id)); }

void MetaStore::Txn::put_pack(const PackRecord& pack) {
  state_->put(keys::pack(pack.layout.pack_id), rec::encode_pack(pack));
}

void MetaStore::Txn::delete_pack(uint64_t pack_id) { state_->del(keys::pack(pack_id)); }

void MetaStore::Txn::put_backup(const PackRecord& backup) {
  state_->put(keys::backup(backup.layout.pack_id), rec::encode_pack(backup));
}

void MetaStore::Txn::delete_backup(uint64_t backup_id) { state_->del(keys::backup(backup_id)); }

void MetaStore::Txn::put_retired(const PackRecord& pack) {
  state_->put(keys::retired(pack.layout.pack_id), rec::encode_pack(pack));
}

void MetaStore::Txn::delete_retired(uint64_t pack_id) { state_->del(keys::retired(pack_id)); }

void MetaStore::Txn::put_xattr(uint64_t ino, std::string_view name, std::string_view value) {
  state_->put(keys::xattr(ino, name), rec::encode_xattr(value));
}

void MetaStore::Txn::delete_xattr(uint64_t ino, std::string_view name) {
  state_->del(keys::xattr(ino, name));
}

void MetaStore::Txn::put_orphan(uint64_t ino) { state_->put(keys::orphan(ino), rec::encode_orphan()); }

void MetaStore::Txn::delete_orphan(uint64_t ino) { state_->del(keys::orphan(ino)); }

void MetaStore::Txn::put_garbage(const Sha256& id) { state_->put(keys::garbage(id), std::string()); }

void MetaStore::Txn::delete_garbage(const Sha256& id) { state_->del(keys::garbage(id)); }

void MetaStore::Txn::put_volume(const VolumeRecord& volume) {
  state_->put(keys::volume(volume.id), rec::encode_volume(volume));
}

Status MetaStore::Txn::commit(bool sync) {
  if (state_->done) return Status::Error(EINVAL, "metadata transaction already committed");
  state_->done = true;
  // Whatever happens below, the Txn is over and the next one may begin.
  std::unique_lock<std::mutex> lock = std::move(state_->lock);
  auto overlay = std::move(state_->overlay);
  FRUGAL_TRY(state_->deferred);

  MetaStore::State& store = *state_->store;
  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  for (const auto& [key, value] : overlay) {
    s = value ? batch.Put(slice(key), slice(*value)) : batch.Delete(slice(key));
    if (!s.ok()) return from_rocksdb(s, "metadata batch");
  }
  // Read under the lock at commit time, so each counter is past every id
  // handed out before this point (and so before any id this Txn used);
  // written only when it moved since it was last written.
  struct Counter {
    char which;
    const std::atomic<uint64_t>* next;
    uint64_t* stored;
    uint64_t value = 0;
  };
  std::array<Counter, 2> counters = {
      Counter{keys::kCounterInode, &store.next_inode, &store.stored_next_inode},
      Counter{keys::kCounterCookie, &store.next_cookie, &store.stored_next_cookie}};
  for (Counter& c : counters) {
    c.value = c.next->load();
    if (c.value == *c.stored) continue;
    s = batch.Put(slice(keys::counter(c.which)), slice(rec::encode_counter(c.value)));
    if (!s.ok()) return from_rocksdb(s, "metadata batch");
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  FRUGAL_TRY(from_rocksdb(store.db->Write(wo, &batch), "metadata commit"));
  for (const Counter& c : counters) *c.stored = c.value;
  return Status::Ok();
}

Result<std::optional<std::string>> MetaStore::Txn::get_raw(std::string_view key) {
  if (auto it = state_->overlay.find(key); it != state_->overlay.end()) return it->second;
  return db_get(*state_->store->db, key);
}

Status MetaStore::Txn::scan_raw(std::string_view prefix, std::string_view start,
                                const std::function<bool(std::string_view, std::string_view)>& visit) {
  // Merge the committed keys with the overlay: an overlay entry replaces (or,
  // when a deletion, hides) a committed entry with the same key.
  PrefixIterator db(*state_->store->db, prefix, start);
  auto& overlay = state_->overlay;
  auto ov = overlay.lower_bound(start);
  auto ov_valid = [&] { return ov != overlay.end() && std::string_view(ov->first).starts_with(prefix); };
  std::string key, value;  // copies, in case visit writes to the overlay
  while (true) {
    bool have_db = db.valid();
    bool have_ov = ov_valid();
    if (!have_db && !have_ov) break;
    int cmp = !have_ov ? 1 : !have_db ? -1 : std::string_view(ov->first).compare(view(db.it->key()));
    if (cmp > 0) {
      if (!visit(view(db.it->key()), view(db.it->value()))) break;
      db.it->Next();
      continue;
    }
    if (cmp == 0) db.it->Next();
    if (ov->second) {
      key = ov->first;
      value = *ov->second;
      ++ov;
      if (!visit(key, value)) break;
    } else {
      ++ov;
    }
  }
  return db.status();
}

}  // namespace frugalfs
