#include "frugalfs/backup.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "frugalfs/chunk_store.h"
#include "frugalfs/erasure.h"
#include "frugalfs/meta.h"
#include "frugalfs/stripe.h"
#include "frugalfs/volume.h"
#include "test_support.h"

using namespace frugalfs;
using frugalfs::test::random_bytes;
using frugalfs::test::TempDir;

namespace {

constexpr const char* kFsId = "11111111-2222-4333-8444-555555555555";

std::vector<std::pair<std::string, std::string>> snapshot(MetaStore& meta) {
  std::vector<std::pair<std::string, std::string>> out;
  REQUIRE(meta.export_snapshot([&](std::string_view k, std::string_view v) {
                out.emplace_back(k, v);
                return Status::Ok();
              }).ok());
  return out;
}

// The records a MetaReader list_* method visits, in order.
std::vector<PackRecord> records_of(MetaStore& meta,
                                   Status (MetaReader::*list)(const std::function<bool(const PackRecord&)>&)) {
  std::vector<PackRecord> out;
  REQUIRE((meta.*list)([&](const PackRecord& r) {
            out.push_back(r);
            return true;
          }).ok());
  return out;
}
std::vector<PackRecord> backups_of(MetaStore& meta) { return records_of(meta, &MetaReader::list_backups); }
std::vector<PackRecord> retired_of(MetaStore& meta) { return records_of(meta, &MetaReader::list_retired); }

// A filesystem's metadata and four labelled file:// volumes (2+2), with a
// chunk store, without the fs layer.
struct Env {
  Env() {
    Superblock sb;
    sb.fs_id = kFsId;
    std::vector<VolumeRecord> records;
    for (uint32_t i = 0; i < 4; ++i) {
      std::string uri = "file://" + dir.sub("vol" + std::to_string(i));
      auto v = open_volume(uri, /*create=*/true);
      REQUIRE(v.ok());
      REQUIRE(write_label(**v, VolumeLabel{kFsId, i, 1}).ok());
      uris.push_back(uri);
      volumes.add(i, uri, std::move(v).value());
      records.push_back({i, uri});
    }
    auto m = MetaStore::create(dir.sub("meta"), sb, records);
    REQUIRE_MESSAGE(m.ok(), m.status().ToString());
    meta = std::move(m).value();
    auto code = ErasureCode::ReedSolomon(2, 2);
    REQUIRE(code.ok());
    packs = std::make_unique<PackStore>(volumes, std::move(code).value(), 4096);
    ChunkStoreOptions o;
    o.pack_size = 1 << 20;
    store = std::make_unique<ChunkStore>(*meta, *packs, o);
  }

  // Stores the chunks with one reference each, in one pack per call.
  std::vector<Sha256> commit(const std::vector<std::vector<uint8_t>>& chunks) {
    auto writer = store->new_writer();
    std::vector<Sha256> ids;
    for (const auto& c : chunks) {
      auto id = writer->add(c);
      REQUIRE(id.ok());
      ids.push_back(*id);
    }
    REQUIRE(writer->finish().ok());
    auto txn = meta->begin();
    REQUIRE(writer->stage(*txn).ok());
    for (const auto& id : ids) REQUIRE(store->add_ref(*txn, id).ok());
    REQUIRE(writer->mark_unreferenced(*txn).ok());
    REQUIRE(txn->commit().ok());
    return ids;
  }

  void drop(const Sha256& id) {
    auto txn = meta->begin();
    REQUIRE(store->drop_ref(*txn, id).ok());
    REQUIRE(txn->commit().ok());
  }

  BackupResult backup(uint32_t keep = 3) {
    BackupOptions o;
    o.keep = keep;
    auto r = write_metadata_backup(*meta, *packs, o, [this](std::string_view l) { log.emplace_back(l); });
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }

  // Fragment objects on every volume, by name.
  std::set<std::string> fragments() {
    std::set<std::string> out;
    for (uint32_t i = 0; i < 4; ++i) {
      REQUIRE(volumes.get(i)->list("frag-", [&](const ObjectInfo& o) { out.insert(o.name); }).ok());
    }
    return out;
  }
  std::set<std::string> fragments_of(uint64_t pack_id) {
    std::set<std::string> out;
    for (const std::string& name : fragments()) {
      uint64_t id;
      uint32_t index;
      REQUIRE(parse_fragment_object_name(name, &id, &index));
      if (id == pack_id) out.insert(name);
    }
    return out;
  }

  RecoverOptions recover_options(const std::string& meta_dir) {
    RecoverOptions o;
    o.volume_uris = uris;
    o.meta_dir = meta_dir;
    o.log = [this](std::string_view l) { log.emplace_back(l); };
    return o;
  }

  // Recovers into dir/name, which must succeed, and opens what it built.
  struct Recovered {
    RecoverReport report;
    std::unique_ptr<MetaStore> meta;
  };
  Recovered recover_into(const std::string& name) {
    auto report = recover_metadata(recover_options(dir.sub(name)));
    REQUIRE_MESSAGE(report.ok(), report.status().ToString());
    auto opened = MetaStore::open(dir.sub(name));
    REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
    return {std::move(*report), std::move(opened).value()};
  }

  TempDir dir{"frugalfs-backup"};
  std::vector<std::string> uris;
  VolumeSet volumes;
  std::unique_ptr<MetaStore> meta;
  std::unique_ptr<PackStore> packs;
  std::unique_ptr<ChunkStore> store;
  std::vector<std::string> log;
};

std::vector<uint8_t> read_chunk(ChunkStore& store, const Sha256& id, size_t len) {
  std::vector<uint8_t> out(len);
  Status s = store.read(id, 0, out);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  return out;
}

}  // namespace

TEST_CASE("a backup blob decodes to the pairs encoded, and damage is refused") {
  BackupEncoder enc;
  std::vector<std::pair<std::string, std::string>> pairs = {
      {"A", ""}, {"B\x01", std::string(1000, 'x')}, {std::string("C\0z", 3), "value"}};
  for (auto& [k, v] : pairs) enc.add(k, v);
  CHECK(enc.entries() == 3);
  auto blob = enc.finish();
  REQUIRE(blob.ok());
  std::vector<std::pair<std::string, std::string>> got;
  REQUIRE(decode_backup(*blob, [&](std::string_view k, std::string_view v) {
            got.emplace_back(k, v);
            return Status::Ok();
          }).ok());
  CHECK(got == pairs);
  auto ignore = [](std::string_view, std::string_view) { return Status::Ok(); };
  for (size_t at : {size_t{0}, size_t{20}, size_t{33}, blob->size() - 2}) {
    auto bad = *blob;
    bad[at] ^= 0x40;
    INFO("flipped byte " << at);
    CHECK(decode_backup(bad, ignore).code() == EINVAL);
  }
  CHECK(decode_backup(std::span(*blob).first(blob->size() - 1), ignore).code() == EINVAL);
  CHECK(decode_backup({}, ignore).code() == EINVAL);
  // A visitor's error stops the decoding and is returned.
  CHECK(decode_backup(*blob, [](std::string_view, std::string_view) { return Errorf(ENOSPC, "full"); }).code() ==
        ENOSPC);
}

TEST_CASE("a backup stores the snapshot on the volumes and is recorded; old ones are pruned") {
  Env env;
  std::mt19937_64 rng(1);
  env.commit({random_bytes(rng, 5000)});
  auto before = snapshot(*env.meta);
  BackupResult first = env.backup(/*keep=*/2);
  CHECK(is_backup_id(first.backup_id));
  CHECK(first.entries == before.size());
  CHECK(env.fragments_of(first.backup_id).size() == 4);
  auto backups = backups_of(*env.meta);
  REQUIRE(backups.size() == 1);
  CHECK(backups[0].layout.pack_id == first.backup_id);

  // What is on the volumes is the snapshot, key for key.
  std::vector<uint8_t> blob(backups[0].layout.pack_len);
  REQUIRE(env.packs->read(backups[0].layout, 0, blob).ok());
  std::vector<std::pair<std::string, std::string>> decoded;
  REQUIRE(decode_backup(blob, [&](std::string_view k, std::string_view v) {
            decoded.emplace_back(k, v);
            return Status::Ok();
          }).ok());
  CHECK(decoded == before);

  BackupResult second = env.backup(2);
  BackupResult third = env.backup(2);
  CHECK(second.backup_id > first.backup_id);
  CHECK(third.backup_id > second.backup_id);
  CHECK(third.backups_pruned == 1);
  backups = backups_of(*env.meta);
  REQUIRE(backups.size() == 2);
  CHECK(backups[0].layout.pack_id == second.backup_id);
  CHECK(backups[1].layout.pack_id == third.backup_id);
  CHECK(env.fragments_of(first.backup_id).empty());
  CHECK(env.fragments_of(second.backup_id).size() == 4);
  CHECK(write_metadata_backup(*env.meta, *env.packs, BackupOptions{0, 3}, {}).status().code() == EINVAL);
}

TEST_CASE("a deleted pack keeps its fragments until a backup no longer names it") {
  Env env;
  std::mt19937_64 rng(2);
  auto ids = env.commit({random_bytes(rng, 3000)});
  auto pack_id = env.meta->get_chunk(ids[0])->pack_id;
  env.backup();  // names the pack
  env.drop(ids[0]);
  REQUIRE(env.store->collect().ok());
  CHECK(env.meta->get_pack(pack_id).status().code() == ENOENT);
  auto retired = retired_of(*env.meta);
  REQUIRE(retired.size() == 1);
  CHECK(retired[0].layout.pack_id == pack_id);
  CHECK(env.fragments_of(pack_id).size() == 4);  // the newest backup still names it

  BackupResult next = env.backup();
  CHECK(next.packs_removed == 1);
  CHECK(retired_of(*env.meta).empty());
  CHECK(env.fragments_of(pack_id).empty());
}

TEST_CASE("recover rebuilds the metadata from the newest backup and adopts later packs") {
  Env env;
  std::mt19937_64 rng(3);
  auto a = random_bytes(rng, 7000), b = random_bytes(rng, 9000), c = random_bytes(rng, 4000);
  auto ids = env.commit({a, b});
  BackupResult backup = env.backup();
  auto later = env.commit({c});  // after the backup: not in it
  const uint64_t later_pack = env.meta->get_chunk(later[0])->pack_id;
  const uint64_t old_pack = env.meta->get_chunk(ids[0])->pack_id;
  env.meta.reset();  // the gateway's disk is gone

  auto [report, meta] = env.recover_into("new-meta");
  CHECK(report.backup_id == backup.backup_id);
  CHECK(report.backups_found == 1);
  CHECK(report.backups_unusable == 0);
  CHECK(report.volumes_given == 4);
  CHECK(report.volumes_missing.empty());
  CHECK(report.packs_named == 1);
  CHECK(report.packs_named_lost == 0);
  CHECK(report.packs_adopted == 1);
  CHECK(report.chunks_adopted == 1);
  CHECK(report.fragments_damaged == 0);

  MetaStore& m = *meta;
  CHECK(m.superblock().fs_id == kFsId);
  CHECK(m.get_chunk(ids[0])->refcount == 1);
  CHECK(m.get_chunk(ids[0])->pack_id == old_pack);
  auto adopted = m.get_chunk(later[0]);
  REQUIRE(adopted.ok());
  CHECK(adopted->refcount == 0);
  CHECK(adopted->pack_id == later_pack);
  CHECK(*m.is_garbage(later[0]));
  CHECK(m.get_pack(later_pack)->live_bytes == 0);
  CHECK(backups_of(m).size() == 1);
  // New packs never reuse an id found on the volumes.
  auto next = m.allocate_pack_id();
  REQUIRE(next.ok());
  CHECK(*next > later_pack);
  // The data reads back through the recovered metadata.
  ChunkStoreOptions o;
  ChunkStore store(m, *env.packs, o);
  CHECK(read_chunk(store, ids[0], a.size()) == a);
  CHECK(read_chunk(store, ids[1], b.size()) == b);
  CHECK(read_chunk(store, later[0], c.size()) == c);

  // Recover refuses to overwrite a database.
  CHECK(recover_metadata(env.recover_options(env.dir.sub("new-meta"))).status().code() == EEXIST);
}

TEST_CASE("recover works with a volume missing, and falls back to an older backup") {
  Env env;
  std::mt19937_64 rng(4);
  auto a = random_bytes(rng, 20000);
  auto ids = env.commit({a});
  BackupResult older = env.backup();
  env.commit({random_bytes(rng, 3000)});
  BackupResult newer = env.backup();
  env.meta.reset();

  SUBCASE("one volume missing") {
    auto o = env.recover_options(env.dir.sub("m1"));
    o.volume_uris.pop_back();
    auto report = recover_metadata(o);
    REQUIRE_MESSAGE(report.ok(), report.status().ToString());
    CHECK(report->backup_id == newer.backup_id);
    CHECK(report->volumes_missing == std::vector<uint32_t>{3});
    CHECK(report->packs_named_lost == 0);
    auto meta = MetaStore::open(env.dir.sub("m1"));
    REQUIRE(meta.ok());
    VolumeSet three;
    for (uint32_t i = 0; i < 3; ++i) three.add(i, env.uris[i], open_volume(env.uris[i]).value());
    three.add(3, env.uris[3], nullptr);
    PackStore packs(three, ErasureCode::ReedSolomon(2, 2).value(), 4096);
    ChunkStore store(**meta, packs, ChunkStoreOptions{});
    CHECK(read_chunk(store, ids[0], a.size()) == a);
  }
  SUBCASE("the newest backup damaged beyond its parity") {
    for (const std::string& name : env.fragments_of(newer.backup_id)) {
      uint64_t id;
      uint32_t index;
      REQUIRE(parse_fragment_object_name(name, &id, &index));
      if (index == 0) continue;  // one fragment left: not enough for 2+2
      for (uint32_t v = 0; v < 4; ++v) env.volumes.get(v)->remove(name).IgnoreError();
    }
    auto report = recover_metadata(env.recover_options(env.dir.sub("m2")));
    REQUIRE_MESSAGE(report.ok(), report.status().ToString());
    CHECK(report->backup_id == older.backup_id);
    CHECK(report->backups_unusable == 1);
    CHECK(report->packs_adopted == 1);  // the pack written between the two backups
  }
}

TEST_CASE("recover refuses what it cannot use, with a clear error") {
  Env env;
  env.commit({std::vector<uint8_t>(100, 7)});
  SUBCASE("no backup on the volumes") {
    auto r = recover_metadata(env.recover_options(env.dir.sub("m")));
    CHECK(r.status().code() == ENOENT);
    CHECK(r.status().message().find("no usable metadata backup") != std::string::npos);
    CHECK(!std::filesystem::exists(env.dir.sub("m") + "/CURRENT"));
  }
  SUBCASE("no volume at all") {
    RecoverOptions o = env.recover_options(env.dir.sub("m"));
    o.volume_uris = {env.dir.sub("nowhere")};
    CHECK(recover_metadata(o).status().code() == ENOENT);
  }
  SUBCASE("volumes of two filesystems") {
    env.backup();
    auto other = open_volume("file://" + env.dir.sub("other"), true);
    REQUIRE(other.ok());
    REQUIRE(write_label(**other, VolumeLabel{"99999999-2222-4333-8444-555555555555", 5, 1}).ok());
    RecoverOptions o = env.recover_options(env.dir.sub("m"));
    o.volume_uris.push_back("file://" + env.dir.sub("other"));
    auto r = recover_metadata(o);
    CHECK(r.status().code() == EINVAL);
    CHECK(r.status().message().find("belongs to filesystem") != std::string::npos);
  }
}

TEST_CASE("a flush manifest decodes to what was encoded; damage is refused") {
  FlushManifest m;
  FlushManifest::File f;
  f.ino = 42;
  f.mode = 0100640;
  f.uid = 7;
  f.gid = 8;
  f.size = 123456;
  f.mtime_ns = -5;
  f.regions = {{0, 1000}, {4096, 9000}};
  Sha256 a{}, b{};
  a[0] = 1;
  b[31] = 2;
  f.extents = {Extent{0, 500, a, 3}, Extent{4096, 4000, b, 0}};
  m.files = {f, FlushManifest::File{}};
  auto bytes = encode_flush_manifest(m);
  auto back = decode_flush_manifest(bytes);
  REQUIRE_MESSAGE(back.ok(), back.status().ToString());
  REQUIRE(back->files.size() == 2);
  const auto& g = back->files[0];
  CHECK(g.ino == 42);
  CHECK(g.mode == 0100640);
  CHECK(g.uid == 7);
  CHECK(g.gid == 8);
  CHECK(g.size == 123456);
  CHECK(g.mtime_ns == -5);
  CHECK(g.regions == f.regions);
  REQUIRE(g.extents.size() == 2);
  CHECK(g.extents[1].file_offset == 4096);
  CHECK(g.extents[1].length == 4000);
  CHECK(g.extents[1].chunk == b);
  CHECK(g.extents[0].chunk_offset == 3);

  CHECK(decode_flush_manifest(std::span(bytes).first(bytes.size() - 1)).status().code() == EINVAL);
  auto bad_magic = bytes;
  bad_magic[0] ^= 1;
  CHECK(decode_flush_manifest(bad_magic).status().code() == EINVAL);
  // An extent outside its regions is refused.
  FlushManifest wrong = m;
  wrong.files[0].extents[1].file_offset = 8000;
  CHECK(decode_flush_manifest(encode_flush_manifest(wrong)).status().code() == EINVAL);
}

namespace {

// Puts a regular file with the given extents (each naming a committed chunk,
// whose refcount is raised) into the metadata.
void put_file(Env& env, uint64_t ino, uint64_t size, const std::vector<Extent>& extents) {
  auto txn = env.meta->begin();
  InodeRecord r;
  r.ino = ino;
  r.mode = S_IFREG | 0644;
  r.nlink = 1;
  r.size = size;
  r.generation = 1;
  for (const Extent& e : extents) {
    txn->put_extent(ino, e);
    r.data_bytes += e.length;
    REQUIRE(env.store->add_ref(*txn, e.chunk).ok());
  }
  txn->put_inode(r);
  txn->put_dentry(kRootInode, DirEntry{"f" + std::to_string(ino), ino, S_IFREG, env.meta->allocate_cookie()});
  REQUIRE(txn->commit().ok());
}

// What a flush does: stores the chunks and a manifest in packs; commits
// nothing when `commit` is false (a crash before the metadata commit).
std::vector<Sha256> flush(Env& env, const std::vector<std::vector<uint8_t>>& chunks, const FlushManifest& manifest) {
  auto writer = env.store->new_writer();
  std::vector<Sha256> ids;
  for (const auto& c : chunks) ids.push_back(writer->add(c).value());
  REQUIRE(writer->finish(encode_flush_manifest(manifest)).ok());
  return ids;
}

std::vector<Extent> extents_of(MetaStore& meta, uint64_t ino) {
  std::vector<Extent> out;
  REQUIRE(meta.list_extents(ino, 0, [&](const Extent& e) {
                out.push_back(e);
                return true;
              }).ok());
  return out;
}

}  // namespace

TEST_CASE("recover replays the flushes written after the backup") {
  Env env;
  std::mt19937_64 rng(5);
  auto a = random_bytes(rng, 30000), b = random_bytes(rng, 10000), c = random_bytes(rng, 7000),
       stale = random_bytes(rng, 5000);
  const Sha256 ida = env.commit({a})[0];
  env.drop(ida);  // commit() gave it one reference; the file below takes it
  put_file(env, 2, 30000, {Extent{0, 30000, ida, 0}});
  // A flush that never committed (a crash) before the backup: not replayed.
  FlushManifest lost;
  lost.files.push_back({2, S_IFREG | 0644, 0, 0, 5000, 1, {{0, 30000}}, {}});
  const Sha256 id_stale = sha256(stale);
  lost.files[0].extents = {Extent{0, 5000, id_stale, 0}};
  flush(env, {stale}, lost);
  BackupResult backup = env.backup();

  // After the backup: inode 2 gets [10000, 20000) rewritten, inode 77 is new.
  FlushManifest later;
  const Sha256 idb = sha256(b), idc = sha256(c);
  later.files.push_back({2, S_IFREG | 0644, 0, 0, 30000, 1000, {{10000, 20000}}, {Extent{10000, 10000, idb, 0}}});
  later.files.push_back({77, S_IFREG | 0600, 5, 6, 9000, 2000, {{0, 9000}}, {Extent{2000, 7000, idc, 0}}});
  flush(env, {b, c}, later);
  // And a flush naming a chunk that is nowhere: skipped, with a log line.
  Sha256 nowhere{};
  nowhere[5] = 9;
  FlushManifest broken;
  broken.files.push_back({2, S_IFREG | 0644, 0, 0, 1, 3000, {{0, 1}}, {Extent{0, 1, nowhere, 0}}});
  flush(env, {}, broken);
  env.meta.reset();

  auto [report, meta] = env.recover_into("m");
  CHECK(report.backup_id == backup.backup_id);
  CHECK(report.manifests_replayed == 2);  // later and broken; not lost
  CHECK(report.files_replayed == 1);
  CHECK(report.files_found == 1);
  CHECK(report.writes_skipped == 1);

  MetaStore& m = *meta;
  auto two = m.get_inode(2);
  REQUIRE(two.ok());
  CHECK(two->size == 30000);
  CHECK(two->data_bytes == 30000);
  auto ext = extents_of(m, 2);
  REQUIRE(ext.size() == 3);
  CHECK((ext[0].file_offset == 0 && ext[0].length == 10000 && ext[0].chunk == ida && ext[0].chunk_offset == 0));
  CHECK((ext[1].file_offset == 10000 && ext[1].length == 10000 && ext[1].chunk == idb));
  CHECK((ext[2].file_offset == 20000 && ext[2].length == 10000 && ext[2].chunk == ida &&
         ext[2].chunk_offset == 20000));
  CHECK(m.get_chunk(ida)->refcount == 2);
  CHECK(m.get_chunk(idb)->refcount == 1);
  CHECK(!*m.is_garbage(idb));
  CHECK(m.get_chunk(id_stale)->refcount == 0);  // taken in, as garbage
  CHECK(*m.is_garbage(id_stale));

  auto lf = m.get_dentry(kRootInode, "lost+found");
  REQUIRE(lf.ok());
  CHECK(m.get_inode(kRootInode)->nlink == 3);
  auto found = m.get_dentry(lf->ino, "#77");
  REQUIRE(found.ok());
  auto f = m.get_inode(found->ino);
  REQUIRE(f.ok());
  CHECK(f->mode == (S_IFREG | 0600));
  CHECK(f->uid == 5);
  CHECK(f->gid == 6);
  CHECK(f->size == 9000);
  CHECK(f->mtime_ns == 2000);
  auto fext = extents_of(m, found->ino);
  REQUIRE(fext.size() == 1);
  CHECK((fext[0].file_offset == 2000 && fext[0].chunk == idc));
  // Live bytes follow the replayed references.
  auto pack_b = m.get_pack(m.get_chunk(idb)->pack_id);
  REQUIRE(pack_b.ok());
  CHECK(pack_b->live_bytes == 2 * (kPackEntryHeaderSize + 0) + m.get_chunk(idb)->stored_len +
                                  m.get_chunk(idc)->stored_len);
}

TEST_CASE("recover never gives a replayed new file a number that a later manifest names") {
  Env env;
  std::mt19937_64 rng(6);
  auto c = random_bytes(rng, 3000), d = random_bytes(rng, 4000);
  env.backup();
  // Two files created after the backup: the numbers a restored counter would
  // hand out next (lost+found, then the first file found) are 2, 3, 4...
  FlushManifest first, second;
  first.files.push_back({90, S_IFREG | 0644, 0, 0, 3000, 1, {{0, 3000}}, {Extent{0, 3000, sha256(c), 0}}});
  second.files.push_back({3, S_IFREG | 0644, 0, 0, 4000, 2, {{0, 4000}}, {Extent{0, 4000, sha256(d), 0}}});
  flush(env, {c}, first);
  flush(env, {d}, second);
  env.meta.reset();
  auto [report, meta] = env.recover_into("m");
  CHECK(report.files_found == 2);
  CHECK(report.files_replayed == 0);
  auto lf = meta->get_dentry(kRootInode, "lost+found");
  REQUIRE(lf.ok());
  auto a = meta->get_dentry(lf->ino, "#90"), b = meta->get_dentry(lf->ino, "#3");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->ino != b->ino);
  CHECK(meta->get_inode(a->ino)->size == 3000);
  CHECK(meta->get_inode(b->ino)->size == 4000);
  CHECK(extents_of(*meta, a->ino).at(0).chunk == sha256(c));
}

TEST_CASE("recover: a chunk whose pack the backup names no more is taken from a later copy") {
  Env env;
  std::mt19937_64 rng(7);
  auto c = random_bytes(rng, 6000), d = random_bytes(rng, 5000);
  auto ids = env.commit({c, d});
  const uint64_t old_pack = env.meta->get_chunk(ids[0])->pack_id;
  env.drop(ids[0]);
  env.drop(ids[1]);
  // The collector's race: the pack is retired while the chunk records, now
  // unreferenced, are still there (the next sweep would delete them).
  {
    auto txn = env.meta->begin();
    auto pack = txn->get_pack(old_pack);
    REQUIRE(pack.ok());
    txn->delete_pack(old_pack);
    txn->put_retired(*pack);
    REQUIRE(txn->commit().ok());
  }
  BackupResult backup = env.backup();  // names c and d in a pack it then removes
  CHECK(backup.packs_removed == 1);
  CHECK(env.fragments_of(old_pack).empty());
  // c is written again after the backup, into a new file.
  FlushManifest later;
  later.files.push_back({50, S_IFREG | 0644, 0, 0, 6000, 1, {{0, 6000}}, {Extent{0, 6000, ids[0], 0}}});
  flush(env, {c}, later);
  env.meta.reset();

  auto [report, meta] = env.recover_into("m");
  CHECK(report.files_found == 1);
  CHECK(report.chunks_lost == 0);
  CHECK(!std::filesystem::exists(env.dir.sub("m.recovering")));
  auto chunk = meta->get_chunk(ids[0]);
  REQUIRE(chunk.ok());
  CHECK(chunk->pack_id != old_pack);
  CHECK(chunk->refcount == 1);
  auto pack = meta->get_pack(chunk->pack_id);
  REQUIRE(pack.ok());
  CHECK(pack->live_bytes == kPackEntryHeaderSize + chunk->stored_len);
  // d has no copy anywhere and nothing names it: its record is gone.
  CHECK(meta->get_chunk(ids[1]).status().code() == ENOENT);
  CHECK(!*meta->is_garbage(ids[1]));
  ChunkStore store(*meta, *env.packs, ChunkStoreOptions{});
  CHECK(read_chunk(store, ids[0], c.size()) == c);
}

TEST_CASE("a backup is newer than every recorded one even if the clock went back") {
  Env env;
  const uint64_t future = kBackupIdBit | (uint64_t{1} << 62);
  {
    auto txn = env.meta->begin();
    PackRecord fake;
    fake.layout.pack_id = future;
    txn->put_backup(fake);
    REQUIRE(txn->commit().ok());
  }
  BackupResult b = env.backup();
  CHECK(b.backup_id > future);
  auto ids = backups_of(*env.meta);
  REQUIRE(ids.size() == 2);
  CHECK(ids.back().layout.pack_id == b.backup_id);
}

TEST_CASE("a backup blob with an impossible length is refused, not allocated") {
  BackupEncoder enc;
  enc.add("S", "x");
  auto blob = enc.finish();
  REQUIRE(blob.ok());
  auto ignore = [](std::string_view, std::string_view) { return Status::Ok(); };
  for (uint64_t len : {~uint64_t{0}, ~uint64_t{0} - 1, uint64_t{1} << 50}) {
    auto bad = *blob;
    for (int i = 0; i < 8; ++i) bad[24 + i] = static_cast<uint8_t>(len >> (8 * i));
    CHECK(decode_backup(bad, ignore).code() == EINVAL);
  }
}

TEST_CASE("recover leaves a later pack it cannot read in place, and still restores the backup") {
  Env env;
  std::mt19937_64 rng(8);
  auto a = random_bytes(rng, 9000);
  auto ids = env.commit({a});
  env.backup();
  auto later = env.commit({random_bytes(rng, 4000)});
  const uint64_t lost_pack = env.meta->get_chunk(later[0])->pack_id;
  for (const std::string& name : env.fragments_of(lost_pack)) {
    uint64_t id;
    uint32_t index;
    REQUIRE(parse_fragment_object_name(name, &id, &index));
    if (index == 0) continue;  // one of four left: fewer than k = 2
    for (uint32_t v = 0; v < 4; ++v) env.volumes.get(v)->remove(name).IgnoreError();
  }
  env.meta.reset();
  auto [report, meta] = env.recover_into("m");
  CHECK(report.packs_unreadable == 1);
  CHECK(report.packs_adopted == 0);
  CHECK(env.fragments_of(lost_pack).size() == 1);  // recover changes nothing on the volumes
  CHECK(meta->get_pack(lost_pack).status().code() == ENOENT);
  ChunkStore store(*meta, *env.packs, ChunkStoreOptions{});
  CHECK(read_chunk(store, ids[0], a.size()) == a);
}
