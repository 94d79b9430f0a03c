#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include <rocksdb/db.h>

#include "frugalfs/meta.h"
#include "meta/keys.h"
#include "meta/records.h"
#include "test_support.h"

using namespace frugalfs;
using frugalfs::test::TempDir;
namespace keys = meta_keys;
namespace rec = meta_records;

namespace {

Superblock test_superblock() {
  Superblock sb;
  sb.fs_id = "0f1e2d3c-4b5a-4697-8877-665544332211";
  sb.data_fragments = 4;
  sb.parity_fragments = 2;
  sb.chunker = ChunkerParams{8 * 1024, 32 * 1024, 128 * 1024};
  sb.compress_level = -3;
  sb.pack_size = 8 << 20;
  sb.block_size = 32 << 10;
  sb.created_ns = 1'700'000'000'123'456'789;
  return sb;
}

std::vector<VolumeRecord> test_volumes() {
  return {{1, "file:///srv/a"}, {2, "file:///srv/b"}, {7, "https://vol7.example:9000/bucket"}};
}

std::unique_ptr<MetaStore> must_create(const std::string& dir) {
  auto store = MetaStore::create(dir, test_superblock(), test_volumes());
  REQUIRE_MESSAGE(store.ok(), store.status().ToString());
  return std::move(store).value();
}

std::unique_ptr<MetaStore> must_open(const std::string& dir) {
  auto store = MetaStore::open(dir);
  REQUIRE_MESSAGE(store.ok(), store.status().ToString());
  return std::move(store).value();
}

Sha256 sha_of(uint8_t seed) {
  Sha256 id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(seed * 31 + i);
  return id;
}

InodeRecord full_inode(uint64_t ino) {
  InodeRecord in;
  in.ino = ino;
  in.mode = S_IFLNK | 0777;
  in.uid = 1001;
  in.gid = 1002;
  in.nlink = 3;
  in.rdev = 0x0102030405060708ull;
  in.size = 0xfedcba9876543210ull;
  in.atime_ns = -5;
  in.mtime_ns = 1'234'567'890'123'456'789;
  in.ctime_ns = 987'654'321;
  in.generation = 77;
  in.symlink_target = std::string("../target\0with nul", 18);
  return in;
}

ChunkRecord full_chunk(uint8_t seed) {
  ChunkRecord c;
  c.id = sha_of(seed);
  c.pack_id = 0x1122334455667788ull;
  c.offset = 4'000'000'123ull;
  c.stored_len = 65'000;
  c.raw_len = 131'072;
  c.codec = Codec::kZstd;
  c.checksum = 0xdeadbeefcafef00dull;
  c.refcount = 1ull << 40;
  return c;
}

PackRecord full_pack(uint64_t id) {
  PackRecord p;
  p.layout.pack_id = id;
  p.layout.k = 4;
  p.layout.m = 2;
  p.layout.block_size = 65536;
  p.layout.pack_len = 4'194'000;
  p.layout.fragment_len = 1'048'576;
  p.layout.volumes = {3, 1, 4, 1000000, 5, 9};
  p.layout.fragment_checksums = {1, 2, 3, 0xffffffffffffffffull, 5, 6};
  p.total_bytes = 4'000'000;
  p.live_bytes = 1'234;
  p.created_ns = -1;
  return p;
}

void check_inode(const InodeRecord& a, const InodeRecord& b) {
  CHECK(a.ino == b.ino);
  CHECK(a.mode == b.mode);
  CHECK(a.uid == b.uid);
  CHECK(a.gid == b.gid);
  CHECK(a.nlink == b.nlink);
  CHECK(a.rdev == b.rdev);
  CHECK(a.size == b.size);
  CHECK(a.atime_ns == b.atime_ns);
  CHECK(a.mtime_ns == b.mtime_ns);
  CHECK(a.ctime_ns == b.ctime_ns);
  CHECK(a.generation == b.generation);
  CHECK(a.symlink_target == b.symlink_target);
}

void check_chunk(const ChunkRecord& a, const ChunkRecord& b) {
  CHECK(a.id == b.id);
  CHECK(a.pack_id == b.pack_id);
  CHECK(a.offset == b.offset);
  CHECK(a.stored_len == b.stored_len);
  CHECK(a.raw_len == b.raw_len);
  CHECK(a.codec == b.codec);
  CHECK(a.checksum == b.checksum);
  CHECK(a.refcount == b.refcount);
}

void check_pack(const PackRecord& a, const PackRecord& b) {
  CHECK(a.layout.pack_id == b.layout.pack_id);
  CHECK(a.layout.k == b.layout.k);
  CHECK(a.layout.m == b.layout.m);
  CHECK(a.layout.block_size == b.layout.block_size);
  CHECK(a.layout.pack_len == b.layout.pack_len);
  CHECK(a.layout.fragment_len == b.layout.fragment_len);
  CHECK(a.layout.volumes == b.layout.volumes);
  CHECK(a.layout.fragment_checksums == b.layout.fragment_checksums);
  CHECK(a.total_bytes == b.total_bytes);
  CHECK(a.live_bytes == b.live_bytes);
  CHECK(a.created_ns == b.created_ns);
}

void check_extent(const Extent& a, const Extent& b) {
  CHECK(a.file_offset == b.file_offset);
  CHECK(a.length == b.length);
  CHECK(a.chunk == b.chunk);
  CHECK(a.chunk_offset == b.chunk_offset);
}

DirEntry entry(std::string name, uint64_t ino, uint64_t cookie, uint32_t type = S_IFREG) {
  DirEntry e;
  e.name = std::move(name);
  e.ino = ino;
  e.type = type;
  e.cookie = cookie;
  return e;
}

Extent extent(uint64_t offset, uint32_t length, uint8_t seed) {
  Extent e;
  e.file_offset = offset;
  e.length = length;
  e.chunk = sha_of(seed);
  e.chunk_offset = seed;
  return e;
}

std::vector<std::string> names_of(MetaReader& r, uint64_t parent, uint64_t after = 0) {
  std::vector<std::string> names;
  Status s = r.list_dir(parent, after, [&](const DirEntry& e) {
    names.push_back(e.name);
    return true;
  });
  CHECK_MESSAGE(s.ok(), s.ToString());
  return names;
}

std::vector<std::string> xattr_names(MetaReader& r, uint64_t ino) {
  std::vector<std::string> names;
  Status s = r.list_xattrs(ino, [&](std::string_view name, std::string_view value) {
    names.push_back(std::string(name) + "=" + std::string(value));
    return true;
  });
  CHECK_MESSAGE(s.ok(), s.ToString());
  return names;
}

// Writes key = value into the database of a closed store, bypassing MetaStore.
void raw_put(const std::string& dir, const std::string& key, const std::string& value) {
  rocksdb::DB* raw = nullptr;
  REQUIRE(rocksdb::DB::Open(rocksdb::Options(), dir, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  REQUIRE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  REQUIRE(db->Close().ok());
}

}  // namespace

TEST_CASE("create writes superblock, volumes and root; open reads them back") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  std::string dir = tmp.sub("meta");
  {
    auto store = must_create(dir);
    CHECK(store->superblock().fs_id == test_superblock().fs_id);
  }
  auto store = must_open(dir);
  const Superblock& sb = store->superblock();
  Superblock want = test_superblock();
  CHECK(sb.format_version == kMetaFormatVersion);
  CHECK(sb.fs_id == want.fs_id);
  CHECK(sb.data_fragments == 4);
  CHECK(sb.parity_fragments == 2);
  CHECK(sb.chunker.min_size == want.chunker.min_size);
  CHECK(sb.chunker.avg_size == want.chunker.avg_size);
  CHECK(sb.chunker.max_size == want.chunker.max_size);
  CHECK(sb.compress_level == -3);
  CHECK(sb.pack_size == want.pack_size);
  CHECK(sb.block_size == want.block_size);
  CHECK(sb.created_ns == want.created_ns);

  auto root = store->get_inode(kRootInode);
  REQUIRE(root.ok());
  CHECK(root->mode == (S_IFDIR | 0755));
  CHECK(root->nlink == 2);
  CHECK(root->uid == getuid());
  CHECK(root->gid == getgid());
  CHECK(root->mtime_ns > 0);
  CHECK(store->dir_empty(kRootInode).value());

  std::vector<VolumeRecord> volumes;
  CHECK(store->list_volumes([&](const VolumeRecord& v) {
                volumes.push_back(v);
                return true;
              }).ok());
  REQUIRE(volumes.size() == 3);
  CHECK(volumes[0].id == 1);
  CHECK(volumes[1].uri == "file:///srv/b");
  CHECK(volumes[2].id == 7);
  CHECK(volumes[2].uri == "https://vol7.example:9000/bucket");
  CHECK(store->approximate_size() > 0);
  CHECK(store->sync().ok());
}

TEST_CASE("create generates an fs id when none is given") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = MetaStore::create(tmp.path(), Superblock{}, {});
  REQUIRE(store.ok());
  CHECK((*store)->superblock().fs_id.size() == 36);
}

TEST_CASE("create refuses a directory that already holds a filesystem") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  must_create(tmp.path());
  auto again = MetaStore::create(tmp.path(), test_superblock(), {});
  REQUIRE(!again.ok());
  CHECK(again.status().code() == EEXIST);
  // The existing filesystem is untouched.
  auto store = must_open(tmp.path());
  CHECK(store->superblock().data_fragments == 4);
}

TEST_CASE("open without a filesystem is ENOENT") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto missing = MetaStore::open(tmp.sub("nothing-here"));
  REQUIRE(!missing.ok());
  CHECK(missing.status().code() == ENOENT);
  CHECK(missing.status().message().find("no frugalfs metadata in") != std::string::npos);
  auto empty_dir = MetaStore::open(tmp.path());
  REQUIRE(!empty_dir.ok());
  CHECK(empty_dir.status().code() == ENOENT);
  // open must not have created anything.
  CHECK(!std::filesystem::exists(tmp.sub("nothing-here")));
}

TEST_CASE("open of a directory in use is EBUSY") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto first = must_create(tmp.path());
  auto second = MetaStore::open(tmp.path());
  REQUIRE(!second.ok());
  CHECK(second.status().code() == EBUSY);
  CHECK(second.status().message().find("in use") != std::string::npos);
  first.reset();
  CHECK(MetaStore::open(tmp.path()).ok());
}

TEST_CASE("an unknown format version is EPROTO") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  must_create(tmp.path());
  Superblock sb = test_superblock();
  sb.format_version = kMetaFormatVersion + 1;
  raw_put(tmp.path(), keys::superblock(), rec::encode_superblock(sb));
  auto store = MetaStore::open(tmp.path());
  REQUIRE(!store.ok());
  CHECK(store.status().code() == EPROTO);
  CHECK(store.status().message().find("format version") != std::string::npos);
}

TEST_CASE("every record type round-trips through commit and reopen") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  {
    auto store = must_create(tmp.path());
    auto txn = store->begin();
    txn->put_inode(full_inode(42));
    txn->put_dentry(kRootInode, entry("a file", 42, 1000, S_IFLNK));
    txn->put_extent(42, extent(0xffffffff00ull, 0xfffffff0u, 9));
    txn->put_chunk(full_chunk(5));
    txn->put_pack(full_pack(0xabcdef));
    txn->put_xattr(42, "user.bin", std::string("\0\x01\xff", 3));
    txn->put_xattr(42, "user.empty", "");
    txn->put_orphan(42);
    txn->put_volume({0xfffffff0u, "http://new-volume"});
    REQUIRE(txn->commit(true).ok());
  }
  auto store = must_open(tmp.path());
  auto inode = store->get_inode(42);
  REQUIRE(inode.ok());
  check_inode(*inode, full_inode(42));

  auto dentry = store->get_dentry(kRootInode, "a file");
  REQUIRE(dentry.ok());
  CHECK(dentry->name == "a file");
  CHECK(dentry->ino == 42);
  CHECK(dentry->type == S_IFLNK);
  CHECK(dentry->cookie == 1000);
  std::vector<DirEntry> listed;
  CHECK(store->list_dir(kRootInode, 0, [&](const DirEntry& e) {
                listed.push_back(e);
                return true;
              }).ok());
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].name == "a file");
  CHECK(listed[0].ino == 42);
  CHECK(listed[0].type == S_IFLNK);
  CHECK(listed[0].cookie == 1000);

  std::vector<Extent> extents;
  CHECK(store->list_extents(42, 0, [&](const Extent& e) {
                extents.push_back(e);
                return true;
              }).ok());
  REQUIRE(extents.size() == 1);
  check_extent(extents[0], extent(0xffffffff00ull, 0xfffffff0u, 9));

  auto chunk = store->get_chunk(sha_of(5));
  REQUIRE(chunk.ok());
  check_chunk(*chunk, full_chunk(5));
  auto pack = store->get_pack(0xabcdef);
  REQUIRE(pack.ok());
  check_pack(*pack, full_pack(0xabcdef));

  auto bin = store->get_xattr(42, "user.bin");
  REQUIRE(bin.ok());
  CHECK(*bin == std::string("\0\x01\xff", 3));
  CHECK(store->get_xattr(42, "user.empty").value().empty());
  CHECK(store->get_xattr(42, "user.none").status().code() == ENODATA);
  CHECK(xattr_names(*store, 42) == std::vector<std::string>{std::string("user.bin=\0\x01\xff", 12), "user.empty="});

  std::vector<uint64_t> orphans;
  CHECK(store->list_orphans([&](uint64_t ino) {
                orphans.push_back(ino);
                return true;
              }).ok());
  CHECK(orphans == std::vector<uint64_t>{42});

  std::vector<uint32_t> volume_ids;
  CHECK(store->list_volumes([&](const VolumeRecord& v) {
                volume_ids.push_back(v.id);
                return true;
              }).ok());
  CHECK(volume_ids == std::vector<uint32_t>{1, 2, 7, 0xfffffff0u});

  size_t inodes = 0, chunks = 0, packs = 0;
  CHECK(store->list_inodes([&](const InodeRecord&) { return ++inodes, true; }).ok());
  CHECK(store->list_chunks([&](const ChunkRecord&) { return ++chunks, true; }).ok());
  CHECK(store->list_packs([&](const PackRecord&) { return ++packs, true; }).ok());
  CHECK(inodes == 2);
  CHECK(chunks == 1);
  CHECK(packs == 1);
}

TEST_CASE("deletes of every record type") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  {
    auto txn = store->begin();
    txn->put_inode(full_inode(42));
    txn->put_dentry(kRootInode, entry("f", 42, 10));
    txn->put_extent(42, extent(0, 100, 1));
    txn->put_chunk(full_chunk(1));
    txn->put_pack(full_pack(3));
    txn->put_xattr(42, "user.a", "1");
    txn->put_orphan(42);
    REQUIRE(txn->commit().ok());
  }
  {
    auto txn = store->begin();
    txn->delete_inode(42);
    REQUIRE(txn->delete_dentry(kRootInode, "f").ok());
    CHECK(txn->delete_dentry(kRootInode, "f").code() == ENOENT);
    txn->delete_extent(42, extent(0, 100, 1));
    txn->delete_chunk(sha_of(1));
    txn->delete_pack(3);
    txn->delete_xattr(42, "user.a");
    txn->delete_orphan(42);
    REQUIRE(txn->commit().ok());
  }
  CHECK(store->get_inode(42).status().code() == ENOENT);
  CHECK(store->get_dentry(kRootInode, "f").status().code() == ENOENT);
  CHECK(store->dir_empty(kRootInode).value());
  CHECK(store->get_chunk(sha_of(1)).status().code() == ENOENT);
  CHECK(store->get_pack(3).status().code() == ENOENT);
  CHECK(store->get_xattr(42, "user.a").status().code() == ENODATA);
  size_t n = 0;
  CHECK(store->list_extents(42, 0, [&](const Extent&) { return ++n, true; }).ok());
  CHECK(store->list_orphans([&](uint64_t) { return ++n, true; }).ok());
  CHECK(n == 0);
}

TEST_CASE("a Txn reads its own writes") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  {
    auto txn = store->begin();
    txn->put_inode(full_inode(5));
    REQUIRE(txn->commit().ok());
  }
  auto txn = store->begin();
  InodeRecord changed = full_inode(5);
  changed.size = 1;
  txn->put_inode(changed);
  txn->put_inode(full_inode(6));
  CHECK(txn->get_inode(5).value().size == 1);
  CHECK(txn->get_inode(6).ok());
  // The committed view does not see them yet.
  CHECK(store->get_inode(5).value().size == full_inode(5).size);
  CHECK(store->get_inode(6).status().code() == ENOENT);

  txn->delete_inode(5);
  CHECK(txn->get_inode(5).status().code() == ENOENT);
  txn->put_dentry(kRootInode, entry("x", 6, 50));
  CHECK(txn->get_dentry(kRootInode, "x").value().ino == 6);
  CHECK(!txn->dir_empty(kRootInode).value());
  REQUIRE(txn->delete_dentry(kRootInode, "x").ok());
  CHECK(txn->get_dentry(kRootInode, "x").status().code() == ENOENT);
  CHECK(txn->dir_empty(kRootInode).value());
  REQUIRE(txn->commit().ok());
  CHECK(store->get_inode(5).status().code() == ENOENT);
  CHECK(store->get_inode(6).ok());
}

TEST_CASE("Txn scans merge committed entries with the Txn's writes in key order") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  {
    auto txn = store->begin();
    for (const char* name : {"b", "d", "f", "h"}) txn->put_xattr(9, name, "committed");
    txn->put_xattr(8, "other-inode", "x");
    txn->put_xattr(10, "other-inode", "x");
    REQUIRE(txn->commit().ok());
  }
  auto txn = store->begin();
  txn->put_xattr(9, "a", "new");        // before everything
  txn->put_xattr(9, "d", "overridden");  // replaces a committed one
  txn->delete_xattr(9, "f");             // hides a committed one
  txn->put_xattr(9, "g", "new");        // between committed ones
  txn->put_xattr(9, "z", "new");        // after everything
  txn->put_xattr(9, "q", "new");
  txn->delete_xattr(9, "q");  // added, then deleted in the same Txn
  txn->delete_xattr(9, "never-existed");
  std::vector<std::string> want = {"a=new",       "b=committed", "d=overridden",
                                   "g=new",       "h=committed", "z=new"};
  CHECK(xattr_names(*txn, 9) == want);
  // A visit returning false stops the scan.
  size_t seen = 0;
  CHECK(txn->list_xattrs(9, [&](std::string_view, std::string_view) { return ++seen < 3; }).ok());
  CHECK(seen == 3);
  REQUIRE(txn->commit().ok());
  CHECK(xattr_names(*store, 9) == want);
  CHECK(xattr_names(*store, 8).size() == 1);
  CHECK(xattr_names(*store, 10).size() == 1);
}

TEST_CASE("an abandoned Txn writes nothing") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  {
    auto txn = store->begin();
    txn->put_inode(full_inode(3));
    txn->put_dentry(kRootInode, entry("gone", 3, 4));
    txn->delete_inode(kRootInode);
  }
  CHECK(store->get_inode(3).status().code() == ENOENT);
  CHECK(store->get_inode(kRootInode).ok());
  CHECK(store->dir_empty(kRootInode).value());
  // The lock was released: another Txn can begin and commit.
  auto txn = store->begin();
  REQUIRE(txn->commit().ok());
}

TEST_CASE("a Txn commits once") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  auto txn = store->begin();
  txn->put_inode(full_inode(3));
  REQUIRE(txn->commit().ok());
  CHECK(txn->commit().code() == EINVAL);
  // The lock is released by commit, not only by destruction.
  auto next = store->begin();
  CHECK(next->get_inode(3).ok());
  REQUIRE(next->commit().ok());
}

TEST_CASE("commit is atomic for concurrent readers") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  constexpr int kBatches = 30, kPerBatch = 50;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, scans{0};
  std::thread reader([&] {
    while (!done) {
      size_t inodes = 0;
      if (!store->list_inodes([&](const InodeRecord&) { return ++inodes, true; }).ok()) ++torn;
      if ((inodes - 1) % kPerBatch != 0) ++torn;  // the root plus whole batches
      ++scans;
    }
  });
  while (scans == 0) std::this_thread::yield();
  // Keep committing until the reader has scanned many times meanwhile.
  int batches = 0;
  // (Scans slow down as the table grows, so until the reader has scanned 100
  // times each commit waits for one more scan to finish.)
  for (; batches < kBatches || scans < 100; ++batches) {
    const int before = scans;
    auto txn = store->begin();
    for (int i = 0; i < kPerBatch; ++i) txn->put_inode(full_inode(store->allocate_inode()));
    REQUIRE(txn->commit().ok());
    while (scans < 100 && scans == before) std::this_thread::yield();
  }
  done = true;
  reader.join();
  CHECK(torn == 0);
  CHECK(scans >= 100);
  size_t inodes = 0;
  CHECK(store->list_inodes([&](const InodeRecord&) { return ++inodes, true; }).ok());
  CHECK(inodes == 1 + static_cast<size_t>(batches) * kPerBatch);
}

TEST_CASE("list_dir returns entries in cookie order and resumes after a cookie") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  {
    auto txn = store->begin();
    // Name order differs from cookie order on purpose.
    txn->put_dentry(kRootInode, entry("zeta", 10, 3));
    txn->put_dentry(kRootInode, entry("alpha", 11, 4));
    txn->put_dentry(kRootInode, entry("mu", 12, 300));
    txn->put_dentry(kRootInode, entry("beta", 13, 256));
    txn->put_dentry(2, entry("elsewhere", 14, 5));
    REQUIRE(txn->commit().ok());
  }
  CHECK(names_of(*store, kRootInode) == std::vector<std::string>{"zeta", "alpha", "beta", "mu"});
  CHECK(names_of(*store, kRootInode, 4) == std::vector<std::string>{"beta", "mu"});
  CHECK(names_of(*store, kRootInode, 5) == std::vector<std::string>{"beta", "mu"});
  CHECK(names_of(*store, kRootInode, 300).empty());
  CHECK(names_of(*store, kRootInode, UINT64_MAX).empty());
  CHECK(names_of(*store, 2) == std::vector<std::string>{"elsewhere"});

  // Re-pointing a name under a new cookie moves it in readdir order (and it
  // is listed once).
  {
    auto txn = store->begin();
    txn->put_dentry(kRootInode, entry("zeta", 20, 1000));
    CHECK(names_of(*txn, kRootInode) == std::vector<std::string>{"alpha", "beta", "mu", "zeta"});
    REQUIRE(txn->commit().ok());
  }
  CHECK(names_of(*store, kRootInode) == std::vector<std::string>{"alpha", "beta", "mu", "zeta"});
  CHECK(store->get_dentry(kRootInode, "zeta").value().ino == 20);
  {
    auto txn = store->begin();
    REQUIRE(txn->delete_dentry(kRootInode, "zeta").ok());
    REQUIRE(txn->commit().ok());
  }
  CHECK(names_of(*store, kRootInode) == std::vector<std::string>{"alpha", "beta", "mu"});
}

TEST_CASE("list_extents starts at the extent straddling `from`, for one inode only") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  {
    auto txn = store->begin();
    txn->put_extent(7, extent(0, 100, 1));     // [0,100)
    txn->put_extent(7, extent(100, 50, 2));    // [100,150)
    txn->put_extent(7, extent(200, 100, 3));   // [200,300) after a hole
    txn->put_extent(6, extent(0, 1000, 4));    // other inodes on both sides
    txn->put_extent(8, extent(0, 1000, 5));
    REQUIRE(txn->commit().ok());
  }
  auto offsets = [&](uint64_t from) {
    std::vector<uint64_t> out;
    CHECK(store->list_extents(7, from, [&](const Extent& e) {
                  out.push_back(e.file_offset);
                  return true;
                }).ok());
    return out;
  };
  CHECK(offsets(0) == std::vector<uint64_t>{0, 100, 200});
  CHECK(offsets(99) == std::vector<uint64_t>{0, 100, 200});
  CHECK(offsets(100) == std::vector<uint64_t>{100, 200});
  CHECK(offsets(149) == std::vector<uint64_t>{100, 200});
  CHECK(offsets(150) == std::vector<uint64_t>{200});  // in the hole
  CHECK(offsets(299) == std::vector<uint64_t>{200});
  CHECK(offsets(300).empty());
  CHECK(offsets(UINT64_MAX).empty());
  std::vector<uint64_t> seen;
  CHECK(store->list_extents(7, 0, [&](const Extent& e) {
                seen.push_back(e.end());
                return false;
              }).ok());
  CHECK(seen == std::vector<uint64_t>{100});
}

TEST_CASE("a commit writes the id counters only when they moved, and they still survive reopen") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  uint64_t ino = 0, cookie = 0;
  {
    auto store = must_create(tmp.path());
    ino = store->allocate_inode();
    REQUIRE(store->begin()->commit().ok());  // writes the inode counter
    for (int i = 0; i < 3; ++i) REQUIRE(store->begin()->commit().ok());  // nothing moved
    cookie = store->allocate_cookie();
    REQUIRE(store->begin()->commit().ok());  // the cookie counter only
    ino = store->allocate_inode();
    ino = store->allocate_inode();
    REQUIRE(store->begin()->commit().ok());
  }
  auto store = must_open(tmp.path());
  CHECK(store->allocate_inode() > ino);
  CHECK(store->allocate_cookie() > cookie);
}

TEST_CASE("id counters survive reopen") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  uint64_t last_pack = 0;
  {
    auto store = must_create(tmp.path());
    uint64_t ino = 0;
    for (int i = 0; i < 9; ++i) ino = store->allocate_inode();
    CHECK(ino == 10);
    uint64_t cookie = 0;
    for (int i = 0; i < 5; ++i) cookie = store->allocate_cookie();
    CHECK(cookie == 7);
    REQUIRE(store->begin()->commit().ok());
  }
  {
    auto store = must_open(tmp.path());
    CHECK(store->allocate_inode() > 10);
    CHECK(store->allocate_cookie() > 7);
    // Pack ids are reserved durably: no commit after handing them out.
    for (int i = 0; i < 1500; ++i) {
      auto id = store->allocate_pack_id();
      REQUIRE(id.ok());
      CHECK(*id > last_pack);
      last_pack = *id;
    }
  }
  {
    auto store = must_open(tmp.path());
    auto id = store->allocate_pack_id();
    REQUIRE(id.ok());
    CHECK(*id > last_pack);
  }
}

TEST_CASE("begin() from two threads serialises the Txns") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  auto store = must_create(tmp.path());
  auto first = store->begin();
  first->put_inode(full_inode(2));
  std::atomic<bool> second_began{false};
  bool second_saw_first = false;
  std::thread other([&] {
    auto second = store->begin();
    second_began = true;
    second_saw_first = second->get_inode(2).ok();
    second->put_inode(full_inode(3));
    CHECK(second->commit().ok());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(!second_began);
  REQUIRE(first->commit().ok());
  other.join();
  CHECK(second_began);
  CHECK(second_saw_first);
  CHECK(store->get_inode(3).ok());
}

TEST_CASE("a corrupt value is EIO, not a crash") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  {
    auto store = must_create(tmp.path());
    auto txn = store->begin();
    txn->put_inode(full_inode(2));
    REQUIRE(txn->commit().ok());
  }
  raw_put(tmp.path(), keys::inode(5), "garbage");
  raw_put(tmp.path(), keys::chunk(sha_of(1)), std::string(1, '\x01'));
  auto store = must_open(tmp.path());
  auto inode = store->get_inode(5);
  REQUIRE(!inode.ok());
  CHECK(inode.status().code() == EIO);
  CHECK(inode.status().message().find("corrupt metadata record inode") != std::string::npos);
  CHECK(store->get_chunk(sha_of(1)).status().code() == EIO);
  // A scan stops at the damage with EIO.
  Status s = store->list_inodes([](const InodeRecord&) { return true; });
  CHECK(s.code() == EIO);
  CHECK(store->get_inode(2).ok());
}

TEST_CASE("decoders reject every truncation and extension of a valid record") {
  Sha256 id = sha_of(3);
  Superblock sb = test_superblock();
  std::vector<std::pair<std::string, std::function<Status(std::string_view)>>> records = {
      {rec::encode_superblock(sb), [](std::string_view v) { return rec::decode_superblock(v).status(); }},
      {rec::encode_counter(99), [](std::string_view v) { return rec::decode_counter(v).status(); }},
      {rec::encode_volume({3, "file:///x"}),
       [](std::string_view v) { return rec::decode_volume(3, v).status(); }},
      {rec::encode_inode(full_inode(4)), [](std::string_view v) { return rec::decode_inode(4, v).status(); }},
      {rec::encode_dentry(entry("n", 4, 5)),
       [](std::string_view v) { return rec::decode_dentry("n", v).status(); }},
      {rec::encode_extent(extent(0, 10, 1)),
       [](std::string_view v) { return rec::decode_extent(10, v).status(); }},
      {rec::encode_chunk(full_chunk(3)), [&](std::string_view v) { return rec::decode_chunk(id, v).status(); }},
      {rec::encode_pack(full_pack(8)), [](std::string_view v) { return rec::decode_pack(8, v).status(); }},
      {rec::encode_orphan(), [](std::string_view v) { return rec::decode_orphan(v); }},
  };
  for (auto& [value, decode] : records) {
    CAPTURE(value.size());
    CHECK(decode(value).ok());
    for (size_t n = 0; n < value.size(); ++n) {
      Status s = decode(std::string_view(value).substr(0, n));
      CHECK(s.code() == EIO);
      CHECK(s.message().find("corrupt metadata record") == 0);
    }
    CHECK(decode(value + "x").code() == EIO);
    std::string bad_version = value;
    bad_version[0] = 9;
    CHECK(decode(bad_version).code() == EIO);
  }
  // Values that end in a free-form tail reject only a bad version or header.
  CHECK(rec::decode_xattr("").status().code() == EIO);
  CHECK(rec::decode_readdir(1, rec::encode_readdir(entry("name", 2, 1)).substr(0, 5)).status().code() == EIO);
  CHECK(rec::decode_readdir(1, rec::encode_readdir(entry("name", 2, 1))).value().name == "name");
  // An extent longer than its end offset, an unknown codec, absurd counts.
  CHECK(rec::decode_extent(5, rec::encode_extent(extent(0, 10, 1))).status().code() == EIO);
  std::string chunk = rec::encode_chunk(full_chunk(1));
  chunk[1 + 8 + 8 + 4 + 4] = 7;
  CHECK(rec::decode_chunk(id, chunk).status().code() == EIO);
  std::string pack = rec::encode_pack(full_pack(1));
  pack[1 + 1 + 1 + 4 + 8 + 8] = '\xff';
  pack[1 + 1 + 1 + 4 + 8 + 8 + 1] = '\xff';
  CHECK(rec::decode_pack(1, pack).status().code() == EIO);
}

TEST_CASE("keys sort numerically and keep tables apart") {
  CHECK(keys::inode(255) < keys::inode(256));
  CHECK(keys::extent(1, UINT64_MAX) < keys::extent(2, 0));
  CHECK(keys::readdir(1, 0xff) < keys::readdir(1, 0x100));
  CHECK(keys::parse_extent_end(keys::extent(3, 12345)) == 12345u);
  CHECK(keys::parse_inode(keys::pack(3)) == std::nullopt);
  CHECK(keys::parse_chunk(keys::chunk(sha_of(2))) == sha_of(2));
  CHECK(keys::prefix_successor("E\x01\xff\xff") == "E\x02");
  CHECK(keys::prefix_successor("\xff").empty());
}

TEST_CASE("export_snapshot and import: a copy with every record, usable as a filesystem") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  const std::string dir = tmp.sub("meta");
  std::vector<std::pair<std::string, std::string>> pairs;
  PackRecord backup;
  backup.layout.pack_id = (uint64_t{1} << 63) | 12345;
  backup.layout.k = 2;
  backup.layout.m = 2;
  backup.layout.block_size = 65536;
  backup.layout.pack_len = 1000;
  backup.layout.fragment_len = 504;
  backup.layout.volumes = {1, 2, 3, 7};
  backup.layout.fragment_checksums = {11, 12, 13, 14};
  backup.total_bytes = backup.live_bytes = 1000;
  {
    auto store = must_create(dir);
    auto txn = store->begin();
    InodeRecord file;
    file.ino = store->allocate_inode();
    file.mode = S_IFREG | 0644;
    file.nlink = 1;
    file.size = 42;
    txn->put_inode(file);
    txn->put_dentry(kRootInode, DirEntry{"f", file.ino, S_IFREG, store->allocate_cookie()});
    txn->put_xattr(file.ino, "user.k", "v");
    txn->put_backup(backup);
    REQUIRE(txn->commit().ok());

    // A write after the snapshot began is not in it.
    bool wrote_during = false;
    REQUIRE(store->export_snapshot([&](std::string_view k, std::string_view v) {
                   if (!wrote_during) {
                     auto t = store->begin();
                     t->put_xattr(file.ino, "user.late", "x");
                     REQUIRE(t->commit().ok());
                     wrote_during = true;
                   }
                   pairs.emplace_back(k, v);
                   return Status::Ok();
                 }).ok());
    CHECK(store->get_xattr(file.ino, "user.late").ok());
    // A visitor's error stops the export and is returned.
    int visited = 0;
    Status stopped = store->export_snapshot([&](std::string_view, std::string_view) {
      ++visited;
      return Errorf(ENOSPC, "full");
    });
    CHECK(stopped.code() == ENOSPC);
    CHECK(visited == 1);
  }
  CHECK(std::is_sorted(pairs.begin(), pairs.end()));
  CHECK(std::none_of(pairs.begin(), pairs.end(), [](const auto& p) { return p.first.find("user.late") != std::string::npos; }));

  const std::string copy = tmp.sub("copy");
  size_t i = 0;
  auto next = [&](std::string* k, std::string* v) -> Result<bool> {
    if (i == pairs.size()) return false;
    *k = pairs[i].first;
    *v = pairs[i].second;
    ++i;
    return true;
  };
  REQUIRE(MetaStore::import(copy, next).ok());
  auto store = must_open(copy);
  CHECK(store->superblock().fs_id == test_superblock().fs_id);
  auto entry = store->get_dentry(kRootInode, "f");
  REQUIRE(entry.ok());
  auto inode = store->get_inode(entry->ino);
  REQUIRE(inode.ok());
  CHECK(inode->size == 42);
  CHECK(store->get_xattr(entry->ino, "user.k").value() == "v");
  CHECK(store->get_xattr(entry->ino, "user.late").status().code() == ENODATA);
  std::vector<PackRecord> backups;
  REQUIRE(store->list_backups([&](const PackRecord& r) {
                  backups.push_back(r);
                  return true;
                }).ok());
  REQUIRE(backups.size() == 1);
  CHECK(backups[0].layout.pack_id == backup.layout.pack_id);
  CHECK(backups[0].layout.volumes == backup.layout.volumes);
  CHECK(backups[0].layout.fragment_checksums == backup.layout.fragment_checksums);
  // Backups are not packs: GC and fsck never see them as such.
  bool any_pack = false;
  REQUIRE(store->list_packs([&](const PackRecord&) { return !(any_pack = true); }).ok());
  CHECK_FALSE(any_pack);

  SUBCASE("import refuses a directory holding a database") {
    i = 0;
    CHECK(MetaStore::import(copy, next).code() == EEXIST);
  }
}

TEST_CASE("import without a superblock is refused") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  bool given = false;
  Status s = MetaStore::import(tmp.sub("meta"), [&](std::string* k, std::string* v) -> Result<bool> {
    if (given) return false;
    given = true;
    *k = "Xjunk";
    *v = "v";
    return true;
  });
  CHECK(s.code() == EINVAL);
}

TEST_CASE("reserve_pack_ids_through: later allocations are above it, also after reopen") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  const std::string dir = tmp.sub("meta");
  {
    auto store = must_create(dir);
    const uint64_t first = store->allocate_pack_id().value();
    REQUIRE(store->reserve_pack_ids_through(first + 100000).ok());
    CHECK(store->allocate_pack_id().value() == first + 100001);
    // Reserving below what is handed out already changes nothing.
    REQUIRE(store->reserve_pack_ids_through(first).ok());
    CHECK(store->allocate_pack_id().value() == first + 100002);
  }
  auto store = must_open(dir);
  CHECK(store->allocate_pack_id().value() > 100002);
}

TEST_CASE("a failed import leaves no database behind") {
  TempDir tmp{"frugalfs-meta", TempDir::Base::kTmpdirEnv};
  const std::string dir = tmp.sub("meta");
  std::vector<std::pair<std::string, std::string>> pairs;
  {
    auto store = must_create(tmp.sub("source"));
    REQUIRE(store->export_snapshot([&](std::string_view k, std::string_view v) {
                   pairs.emplace_back(k, v);
                   return Status::Ok();
                 }).ok());
  }
  REQUIRE(pairs.size() > 2);
  size_t i = 0;
  // The source of the pairs fails half-way (an unreadable backup, say).
  Status s = MetaStore::import(dir, [&](std::string* k, std::string* v) -> Result<bool> {
    if (i == pairs.size() / 2) return Errorf(EIO, "backup unreadable");
    *k = pairs[i].first;
    *v = pairs[i].second;
    ++i;
    return true;
  });
  CHECK(s.code() == EIO);
  CHECK(MetaStore::open(dir).status().code() == ENOENT);
  CHECK_FALSE(std::filesystem::exists(dir + ".import"));

  // The same pairs in full import fine into the same place, given as "dir/".
  i = 0;
  REQUIRE(MetaStore::import(dir + "/", [&](std::string* k, std::string* v) -> Result<bool> {
            if (i == pairs.size()) return false;
            *k = pairs[i].first;
            *v = pairs[i].second;
            ++i;
            return true;
          }).ok());
  CHECK(must_open(dir)->get_inode(kRootInode).ok());
}
