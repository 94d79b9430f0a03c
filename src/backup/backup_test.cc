#include "frugalfs/backup.h"

#include <doctest/doctest.h>

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

std::vector<PackRecord> backups_of(MetaStore& meta) {
  std::vector<PackRecord> out;
  REQUIRE(meta.list_backups([&](const PackRecord& b) {
                out.push_back(b);
                return true;
              }).ok());
  return out;
}

std::vector<PackRecord> retired_of(MetaStore& meta) {
  std::vector<PackRecord> out;
  REQUIRE(meta.list_retired([&](const PackRecord& b) {
                out.push_back(b);
                return true;
              }).ok());
  return out;
}

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

  auto report = recover_metadata(env.recover_options(env.dir.sub("new-meta")));
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  CHECK(report->backup_id == backup.backup_id);
  CHECK(report->backups_found == 1);
  CHECK(report->backups_unusable == 0);
  CHECK(report->volumes_given == 4);
  CHECK(report->volumes_missing.empty());
  CHECK(report->packs_named == 1);
  CHECK(report->packs_named_lost == 0);
  CHECK(report->packs_adopted == 1);
  CHECK(report->chunks_adopted == 1);
  CHECK(report->fragments_damaged == 0);

  auto meta = MetaStore::open(env.dir.sub("new-meta"));
  REQUIRE(meta.ok());
  MetaStore& m = **meta;
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
