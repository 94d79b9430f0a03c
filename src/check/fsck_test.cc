// fsck on a real filesystem (file:// volumes in a temporary directory): clean
// after normal use, then one corruption at a time, each found with its kind.

#include "check/fsck.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "frugalfs/fs.h"
#include "frugalfs/meta.h"
#include "frugalfs/stripe.h"
#include "frugalfs/volume.h"
#include "stripe/fragment_format.h"
#include "test_support.h"

using namespace frugalfs;
using namespace frugalfs::check;
namespace stdfs = std::filesystem;

namespace {

const Caller kUser{1000, 1000};

std::string describe(const FsckReport& r) {
  std::string out;
  for (const Problem& p : r.problems) {
    out += std::string(severity_name(p.severity)) + " " + p.kind + ": " + p.message + "\n";
  }
  return out;
}

// n bytes from a generator seeded with seed, one draw per byte.
std::vector<uint8_t> random_bytes(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  return test::random_bytes(rng, n, test::ByteDraw::kBytes);
}

// A filesystem with a tree, hard links, a symlink, a sparse file and
// duplicated data, written and shut down cleanly.
struct Fx {
  test::TempDir tmp{"frugalfs-fsck"};
  std::string root, meta;
  std::vector<std::string> vols;
  uint64_t linked = 0;  // a file with two names
  uint64_t big = 0;     // a file with several extents
  uint64_t b = 0;       // the directory a/b

  Fx() {
    root = tmp.path();
    meta = root + "/meta";
    for (int i = 0; i < 4; ++i) vols.push_back(root + "/vol" + std::to_string(i));
    MkfsOptions o;
    o.meta_dir = meta;
    o.volume_uris = vols;
    o.chunker = ChunkerParams::ForAverage(16 << 10);
    o.pack_size = 128 << 10;  // several packs
    auto id = make_filesystem(o);
    REQUIRE_MESSAGE(id.ok(), id.status().ToString());

    FsOptions fo;
    fo.flush_interval_seconds = 3600;
    fo.log = [](std::string_view) {};
    auto opened = FileSystem::open(meta, fo);
    REQUIRE_MESSAGE(opened.ok(), opened.status().ToString());
    FileSystem& fs = **opened;
    auto mkdir = [&](uint64_t parent, const char* name) {
      auto a = fs.mkdir(parent, name, 0755, kUser);
      REQUIRE_MESSAGE(a.ok(), a.status().ToString());
      return a->ino;
    };
    auto put = [&](uint64_t parent, const char* name, uint64_t offset,
                   const std::vector<uint8_t>& data) {
      auto c = fs.create(parent, name, 0644, O_WRONLY, kUser);
      REQUIRE_MESSAGE(c.ok(), c.status().ToString());
      auto w = fs.write(c->attr.ino, c->fh, offset, data);
      REQUIRE_MESSAGE(w.ok(), w.status().ToString());
      REQUIRE(fs.release(c->attr.ino, c->fh).ok());
      return c->attr.ino;
    };
    const uint64_t a = mkdir(kRootInode, "a");
    b = mkdir(a, "b");
    const uint64_t cdir = mkdir(b, "c");
    mkdir(kRootInode, "empty");
    big = put(a, "big", 0, random_bytes(1, 300000));
    put(b, "copy", 0, random_bytes(1, 300000));  // deduplicated
    linked = put(cdir, "small", 0, random_bytes(2, 5000));
    REQUIRE(fs.link(linked, kRootInode, "small-link").ok());
    put(kRootInode, "sparse", 5 << 20, random_bytes(3, 20000));
    put(kRootInode, "empty-file", 0, {});
    REQUIRE(fs.symlink(b, "up", "../..", kUser).ok());
    Status s = fs.shutdown();
    REQUIRE_MESSAGE(s.ok(), s.ToString());
  }

  FsckReport fsck(FsckOptions options = {}) {
    auto r = run_fsck(meta, options);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return std::move(r).value();
  }

  // Runs edit in one committed metadata transaction.
  template <typename F>
  void corrupt(F edit) {
    auto m = MetaStore::open(meta);
    REQUIRE_MESSAGE(m.ok(), m.status().ToString());
    auto txn = (*m)->begin();
    edit(**m, *txn);
    REQUIRE(txn->commit(true).ok());
  }

  PackRecord first_pack() {
    auto m = MetaStore::open(meta);
    REQUIRE(m.ok());
    PackRecord pack;
    REQUIRE((*m)->list_packs([&](const PackRecord& p) {
      pack = p;
      return false;
    }).ok());
    REQUIRE(pack.layout.volumes.size() == 4);
    return pack;
  }

  std::unique_ptr<Volume> volume(uint32_t id) {
    auto m = MetaStore::open(meta);
    REQUIRE(m.ok());
    std::string uri;
    REQUIRE((*m)->list_volumes([&](const VolumeRecord& r) {
      if (r.id == id) uri = r.uri;
      return true;
    }).ok());
    auto v = open_volume(uri);
    REQUIRE(v.ok());
    return std::move(v).value();
  }
};

}  // namespace

TEST_CASE("fsck: clean filesystem, then one corruption at a time") {
  Fx fx;
  FsckReport clean = fx.fsck();
  INFO(describe(clean));
  REQUIRE(clean.problems.empty());
  CHECK(clean.inodes == 11);  // root, a, b, c, empty, big, copy, small, sparse, empty-file, up
  CHECK(clean.chunks > 0);
  CHECK(clean.packs > 1);
  CHECK(clean.volumes == 4);
  CHECK(clean.backups == 1);  // written at the unmount
  CHECK(clean.fragments == 4 * (clean.packs + clean.retired_packs + clean.backups));

  FsckOptions verify;
  verify.verify_data = true;
  FsckReport verified = fx.fsck(verify);
  CHECK_MESSAGE(verified.problems.empty(), describe(verified));
  CHECK(verified.packs_verified == verified.packs);

  SUBCASE("wrong nlink") {
    fx.corrupt([&](MetaStore&, MetaStore::Txn& t) {
      auto r = t.get_inode(fx.linked);
      REQUIRE(r.ok());
      CHECK(r->nlink == 2);
      r->nlink = 3;
      t.put_inode(*r);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("nlink") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("directory nlink") {
    fx.corrupt([&](MetaStore&, MetaStore::Txn& t) {
      auto r = t.get_inode(kRootInode);
      REQUIRE(r.ok());
      r->nlink += 1;
      t.put_inode(*r);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("nlink") == 1);
  }
  SUBCASE("directory records the wrong parent") {
    fx.corrupt([&](MetaStore&, MetaStore::Txn& t) {
      auto r = t.get_inode(fx.b);
      REQUIRE(r.ok());
      r->parent = kRootInode;
      t.put_inode(*r);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("dir-parent") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("dentry to a missing inode") {
    fx.corrupt([&](MetaStore& m, MetaStore::Txn& t) {
      t.put_dentry(kRootInode, DirEntry{"ghost", 999999, S_IFREG, m.allocate_cookie()});
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("dangling-dentry") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("inode named by no entry") {
    fx.corrupt([&](MetaStore&, MetaStore::Txn& t) {
      REQUIRE(t.delete_dentry(kRootInode, "empty-file").ok());
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("orphan-inode") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("refcount off by one") {
    fx.corrupt([&](MetaStore& m, MetaStore::Txn& t) {
      ChunkRecord chunk;
      REQUIRE(m.list_chunks([&](const ChunkRecord& c) {
        chunk = c;
        return c.refcount == 0;
      }).ok());
      REQUIRE(chunk.refcount > 0);
      chunk.refcount += 1;
      t.put_chunk(chunk);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("refcount") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("extent beyond the file size") {
    fx.corrupt([&](MetaStore&, MetaStore::Txn& t) {
      auto r = t.get_inode(fx.big);
      REQUIRE(r.ok());
      r->size = 1000;
      t.put_inode(*r);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("extent-beyond-size") >= 1);
    CHECK(r.errors() == r.count("extent-beyond-size"));
  }
  SUBCASE("data_bytes wrong") {
    fx.corrupt([&](MetaStore&, MetaStore::Txn& t) {
      auto r = t.get_inode(fx.big);
      REQUIRE(r.ok());
      r->data_bytes -= 1;
      t.put_inode(*r);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("data-bytes") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("live_bytes wrong") {
    fx.corrupt([&](MetaStore& m, MetaStore::Txn& t) {
      PackRecord pack;
      REQUIRE(m.list_packs([&](const PackRecord& p) {
        pack = p;
        return false;
      }).ok());
      pack.live_bytes -= 1;
      t.put_pack(pack);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("live-bytes") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("refcount-0 chunk without its garbage mark") {
    fx.corrupt([&](MetaStore& m, MetaStore::Txn& t) {
      ChunkRecord chunk;
      REQUIRE(m.list_chunks([&](const ChunkRecord& c) {
        chunk = c;
        return false;
      }).ok());
      chunk.id.fill(0xab);
      chunk.refcount = 0;
      t.put_chunk(chunk);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("garbage-mark") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("garbage mark on a referenced chunk") {
    fx.corrupt([&](MetaStore& m, MetaStore::Txn& t) {
      ChunkRecord chunk;
      REQUIRE(m.list_chunks([&](const ChunkRecord& c) {
        chunk = c;
        return false;
      }).ok());
      t.put_garbage(chunk.id);
    });
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("garbage-mark") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("one fragment missing: degraded pack, a warning") {
    PackRecord pack = fx.first_pack();
    REQUIRE(fx.volume(pack.layout.volumes[1])
                ->remove(fragment_object_name(pack.layout.pack_id, 1))
                .ok());
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("degraded-pack") == 1);
    CHECK(r.errors() == 0);
    CHECK(r.degraded_packs == 1);
  }
  SUBCASE("three fragments missing with 2+2: pack unrecoverable") {
    PackRecord pack = fx.first_pack();
    for (int i = 0; i < 3; ++i) {
      REQUIRE(fx.volume(pack.layout.volumes[i])
                  ->remove(fragment_object_name(pack.layout.pack_id, i))
                  .ok());
    }
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("pack-unrecoverable") == 1);
    CHECK(r.count("degraded-pack") == 0);
    CHECK(r.errors() == 1);
  }
  SUBCASE("a volume gone: warnings only") {
    stdfs::remove_all(fx.vols[2]);
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("missing-volume") == 1);
    CHECK(r.count("degraded-pack") == r.packs);
    CHECK(r.errors() == 0);
  }
  SUBCASE("orphan fragment: reported only after the grace period") {
    const std::vector<uint8_t> junk(100, 7);
    REQUIRE(fx.volume(0)->put("frag-00000000deadbeef-0", junk).ok());
    FsckReport young = fx.fsck();
    INFO(describe(young));
    CHECK(young.problems.empty());
    CHECK(young.young_fragments == 1);
    FsckOptions no_grace;
    no_grace.grace_seconds = 0;
    FsckReport r = fx.fsck(no_grace);
    INFO(describe(r));
    CHECK(r.count("orphan-fragment") == 1);
    CHECK(r.errors() == 1);

    // Repair deletes the orphan and nothing else: the filesystem reads back.
    no_grace.repair_orphans = true;
    FsckReport repaired = fx.fsck(no_grace);
    INFO(describe(repaired));
    CHECK(repaired.errors() == 0);
    CHECK(repaired.repaired() == 1);
    CHECK(fx.volume(0)->stat("frag-00000000deadbeef-0").status().code() == ENOENT);
    FsckReport after = fx.fsck(no_grace);
    INFO(describe(after));
    CHECK(after.problems.empty());
    CHECK(after.fragments == repaired.fragments - 1);
  }
  SUBCASE("fragments of a metadata backup record are not orphans") {
    PackRecord pack = fx.first_pack();
    PackRecord backup = pack;
    backup.layout.pack_id = (uint64_t{1} << 63) | 77;
    const std::string name = fragment_object_name(backup.layout.pack_id, 0);
    REQUIRE(fx.volume(backup.layout.volumes[0])->put(name, std::vector<uint8_t>(100, 1)).ok());
    FsckOptions no_grace;
    no_grace.grace_seconds = 0;
    no_grace.repair_orphans = true;
    fx.corrupt([&](MetaStore&, MetaStore::Txn& txn) { txn.put_backup(backup); });
    FsckReport r = fx.fsck(no_grace);
    INFO(describe(r));
    CHECK(r.problems.empty());
    CHECK(fx.volume(backup.layout.volumes[0])->stat(name).ok());
    // Without its record, the same fragment is an orphan.
    fx.corrupt([&](MetaStore&, MetaStore::Txn& txn) { txn.delete_backup(backup.layout.pack_id); });
    no_grace.repair_orphans = false;
    FsckReport orphan = fx.fsck(no_grace);
    INFO(describe(orphan));
    CHECK(orphan.count("orphan-fragment") == 1);
  }
  SUBCASE("repair leaves young orphans alone") {
    const std::vector<uint8_t> junk(100, 7);
    REQUIRE(fx.volume(1)->put("frag-00000000deadbeef-1", junk).ok());
    FsckOptions repair;
    repair.repair_orphans = true;
    FsckReport r = fx.fsck(repair);
    INFO(describe(r));
    CHECK(r.problems.empty());
    CHECK(fx.volume(1)->stat("frag-00000000deadbeef-1").ok());
  }
  SUBCASE("a flipped byte in a fragment payload: found only with verify_data") {
    PackRecord pack = fx.first_pack();
    auto vol = fx.volume(pack.layout.volumes[0]);
    const std::string name = fragment_object_name(pack.layout.pack_id, 0);
    auto bytes = read_object(*vol, name);
    REQUIRE(bytes.ok());
    (*bytes)[stripe::payload_offset(pack.layout) + 10] ^= 0x40;
    REQUIRE(vol->put(name, *bytes).ok());
    FsckReport quick = fx.fsck();
    INFO(describe(quick));
    CHECK(quick.problems.empty());
    FsckReport r = fx.fsck(verify);
    INFO(describe(r));
    CHECK(r.count("corrupt-fragment") == 1);
    CHECK(r.errors() == 1);
  }
  SUBCASE("fragment of the wrong length") {
    PackRecord pack = fx.first_pack();
    auto vol = fx.volume(pack.layout.volumes[3]);
    const std::string name = fragment_object_name(pack.layout.pack_id, 3);
    auto bytes = read_object(*vol, name);
    REQUIRE(bytes.ok());
    bytes->resize(bytes->size() - 1);
    REQUIRE(vol->put(name, *bytes).ok());
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("fragment-length") == 1);
    CHECK(r.count("degraded-pack") == 1);
  }
  SUBCASE("volume labelled for another filesystem") {
    REQUIRE(write_label(*fx.volume(1), VolumeLabel{"00000000-0000-0000-0000-000000000000", 1, 1})
                .ok());
    FsckReport r = fx.fsck();
    INFO(describe(r));
    CHECK(r.count("volume-label") == 1);
    CHECK(r.errors() == 1);
  }
}

TEST_CASE("fsck: refused while the metadata is in use, or absent") {
  Fx fx;
  {
    auto m = MetaStore::open(fx.meta);
    REQUIRE(m.ok());
    auto r = run_fsck(fx.meta, {});
    REQUIRE(!r.ok());
    CHECK(r.status().code() == EBUSY);
  }
  CHECK(!run_fsck(fx.root + "/nothing-here", {}).ok());
}
