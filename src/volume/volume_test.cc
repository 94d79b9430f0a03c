#include <doctest/doctest.h>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "frugalfs/volume.h"
#include "test_support.h"
#include "volume/file_volume.h"

using namespace frugalfs;
using frugalfs::test::TempDir;
using frugalfs::test::cached_pages;
using frugalfs::test::drop_cached_pages;
namespace fs = std::filesystem;

namespace {

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string read_all(Volume& v, std::string_view name) {
  Result<std::vector<uint8_t>> r = read_object(v, name);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return std::string(r->begin(), r->end());
}

std::string read_range(Volume& v, std::string_view name, uint64_t offset, size_t len) {
  std::string out(len, '\0');
  Result<size_t> n = v.read(name, offset, {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  REQUIRE_MESSAGE(n.ok(), n.status().ToString());
  out.resize(*n);
  return out;
}

std::set<std::string> list_names(Volume& v, std::string_view prefix = "") {
  std::set<std::string> names;
  Status s = v.list(prefix, [&](const ObjectInfo& info) { CHECK(names.insert(info.name).second); });
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  return names;
}

std::unique_ptr<Volume> open_file_volume(const std::string& dir) {
  Result<std::unique_ptr<Volume>> v = open_volume(dir);
  REQUIRE_MESSAGE(v.ok(), v.status().ToString());
  return std::move(v).value();
}

// Regular files anywhere under dir whose name marks a temp file.
size_t count_temp_files(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (FileVolume::is_temp_file_name(e.path().filename().string())) ++n;
  }
  return n;
}

// The contract every Volume implementation must honour.
void check_volume_contract(Volume& v) {
  REQUIRE(v.put("obj-1", bytes_of("hello, volume")).ok());
  CHECK(read_all(v, "obj-1") == "hello, volume");
  CHECK(read_range(v, "obj-1", 7, 6) == "volume");
  CHECK(read_range(v, "obj-1", 0, 5) == "hello");
  // Short only at the end; an offset past the end reads nothing.
  CHECK(read_range(v, "obj-1", 7, 100) == "volume");
  CHECK(read_range(v, "obj-1", 13, 10).empty());
  CHECK(read_range(v, "obj-1", 1000, 10).empty());
  CHECK(read_range(v, "obj-1", UINT64_MAX - 3, 10).empty());

  Result<ObjectInfo> st = v.stat("obj-1");
  REQUIRE(st.ok());
  CHECK(st->name == "obj-1");
  CHECK(st->size == 13);
  CHECK(st->mtime > 1600000000);

  // Overwrite with a shorter object: no trace of the old bytes.
  REQUIRE(v.put("obj-1", bytes_of("bye")).ok());
  CHECK(read_all(v, "obj-1") == "bye");
  CHECK(v.stat("obj-1")->size == 3);

  // Empty objects exist.
  REQUIRE(v.put("empty", {}).ok());
  CHECK(v.stat("empty")->size == 0);
  CHECK(read_all(v, "empty").empty());

  REQUIRE(v.put("pack.a", bytes_of("a")).ok());
  REQUIRE(v.put("pack.b", bytes_of("bb")).ok());
  CHECK(list_names(v) == std::set<std::string>{"obj-1", "empty", "pack.a", "pack.b"});
  CHECK(list_names(v, "pack.") == std::set<std::string>{"pack.a", "pack.b"});
  CHECK(list_names(v, "nothing").empty());
  uint64_t listed_size = 0;
  CHECK(v.list("pack.b", [&](const ObjectInfo& i) { listed_size = i.size; }).ok());
  CHECK(listed_size == 2);

  // Missing objects.
  CHECK(v.read("missing", 0, {}).status().code() == ENOENT);
  CHECK(v.stat("missing").status().code() == ENOENT);
  CHECK(v.remove("missing").code() == ENOENT);
  CHECK(read_object(v, "missing").status().code() == ENOENT);

  REQUIRE(v.remove("pack.a").ok());
  CHECK(v.stat("pack.a").status().code() == ENOENT);
  CHECK(v.remove("pack.a").code() == ENOENT);
  CHECK(list_names(v, "pack.") == std::set<std::string>{"pack.b"});

  // Invalid names are refused by every call, and the message names the volume.
  for (std::string_view bad : {"", ".", "..", "a/b", "../escape", "sp ace", "~tmp-x", "é"}) {
    CAPTURE(bad);
    Status s = v.put(bad, bytes_of("x"));
    CHECK(s.code() == EINVAL);
    CHECK(s.message().find(v.uri()) != std::string::npos);
    CHECK(v.read(bad, 0, {}).status().code() == EINVAL);
    CHECK(v.stat(bad).status().code() == EINVAL);
    CHECK(v.remove(bad).code() == EINVAL);
  }
  // Every valid name works, including ones that look like temp or dot files.
  std::string longest(200, 'z');
  for (std::string name : {std::string(".tmp-x"), std::string(".hidden"), std::string("..."),
                           std::string("-"), std::string("A_b.C-9"), longest}) {
    CAPTURE(name);
    REQUIRE(v.put(name, bytes_of(name)).ok());
    CHECK(read_all(v, name) == name);
    CHECK(list_names(v, name).count(name) == 1);
    REQUIRE(v.remove(name).ok());
  }

  Result<SpaceInfo> space = v.space();
  REQUIRE(space.ok());
  CHECK(space->total_bytes > 0);
  CHECK(space->free_bytes <= space->total_bytes);
}

// Several threads put distinct objects and race on one shared name.
void check_concurrent_puts(Volume& v) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<std::string> shared_payloads;
  for (int t = 0; t < kThreads; ++t)
    shared_payloads.push_back(std::string(1000 + t * 977, 'a' + t));
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string name = fmt::format("t{}-{}", t, i);
        if (!v.put(name, bytes_of(name)).ok()) ++failures[t];
        if (!v.put("shared", bytes_of(shared_payloads[t])).ok()) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) CHECK(f == 0);
  std::set<std::string> names = list_names(v, "t");
  CHECK(names.size() == kThreads * kPerThread);
  for (const std::string& name : names) CHECK(read_all(v, name) == name);
  std::string shared = read_all(v, "shared");
  bool whole = false;
  for (const auto& p : shared_payloads) whole = whole || shared == p;
  CHECK(whole);
}

}  // namespace

TEST_CASE("valid_object_name follows the documented alphabet and length") {
  CHECK(valid_object_name("a"));
  CHECK(valid_object_name("frag-0123abcd.7"));
  CHECK(valid_object_name(std::string(200, 'x')));
  CHECK_FALSE(valid_object_name(std::string(201, 'x')));
  CHECK_FALSE(valid_object_name(""));
  CHECK_FALSE(valid_object_name("."));
  CHECK_FALSE(valid_object_name(".."));
  CHECK_FALSE(valid_object_name("a/b"));
  CHECK_FALSE(valid_object_name(std::string("a\0b", 3)));
  CHECK_FALSE(valid_object_name("a b"));
  CHECK_FALSE(valid_object_name("~tmp-1-a"));
}

TEST_CASE("MemoryVolume honours the volume contract") {
  MemoryVolume v;
  check_volume_contract(v);
}

TEST_CASE("FileVolume honours the volume contract and leaves no temp files") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  CHECK(v->uri() == "file://" + dir.path());
  check_volume_contract(*v);
  CHECK(count_temp_files(dir.path()) == 0);
  // The files are where doc/volume-format.md says they are.
  REQUIRE(v->put("where", bytes_of("here")).ok());
  std::string expected =
      fmt::format("{}/objects/{}/where", dir.path(), FileVolume::fanout_of("where"));
  CHECK(fs::is_regular_file(expected));
  CHECK(fs::file_size(expected) == 4);
}

static size_t open_descriptors() {
  return static_cast<size_t>(std::distance(fs::directory_iterator("/proc/self/fd"),
                                           fs::directory_iterator{}));
}

TEST_CASE("FileVolume: descriptors kept for reads are few, and a replaced or removed object is "
          "not read through them") {
  TempDir dir{"frugalfs-volume-test"};
  const size_t before = open_descriptors();
  auto v = open_file_volume(dir.path());  // holds its root open, for sync
  for (int i = 0; i < 100; ++i) {
    const std::string name = fmt::format("obj{}", i);
    REQUIRE(v->put(name, bytes_of(name)).ok());
    std::vector<uint8_t> out(16);
    auto n = v->read(name, 0, out);
    REQUIRE(n.ok());
    CHECK(std::string(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*n)) == name);
  }
  CHECK(open_descriptors() <= before + 1 + 8);  // the root and at most 8 kept for reads

  // The object read last is replaced by a put, then removed: each read sees
  // what the name holds now, not the file a kept descriptor still names.
  std::vector<uint8_t> out(16);
  REQUIRE(v->read("obj99", 0, out).ok());
  REQUIRE(v->put("obj99", bytes_of("replaced")).ok());
  auto n = v->read("obj99", 0, out);
  REQUIRE(n.ok());
  CHECK(std::string(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*n)) == "replaced");
  REQUIRE(v->remove("obj99").ok());
  CHECK(v->read("obj99", 0, out).status().code() == ENOENT);
  v.reset();
  CHECK(open_descriptors() == before);
}

// True when writes with O_DIRECT in dir bypass the page cache: the
// filesystem takes them and is not tmpfs (which takes them since Linux 6.6
// but keeps every page in memory anyway).
static bool bypasses_page_cache(const std::string& dir) {
  struct statfs fs_info {};
  if (::statfs(dir.c_str(), &fs_info) != 0 || fs_info.f_type == TMPFS_MAGIC) return false;
  const std::string probe = dir + "/direct-probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
  if (fd >= 0) ::close(fd);
  ::unlink(probe.c_str());
  return fd >= 0;
}

TEST_CASE("FileVolume: large objects from aligned buffers bypass the page cache and read back "
          "exactly, whatever their size and alignment") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  constexpr size_t kA = kVolumeIoAlignment;
  struct Case {
    size_t size;
    size_t misalign;  // bytes past an aligned address
  };
  const Case cases[] = {{(256 << 10) - 1, 0}, {256 << 10, 0}, {1 << 20, 0}, {(1 << 20) + 1, 0},
                        {(2 << 20) + kA - 1, 0}, {(2 << 20) + 7, 1}, {(1 << 20), 512}};
  for (const Case& c : cases) {
    CAPTURE(c.size);
    CAPTURE(c.misalign);
    AlignedBytes buffer = make_aligned_bytes(c.size + c.misalign);
    std::span<uint8_t> data(buffer.get() + c.misalign, c.size);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + c.size);
    const std::string name = fmt::format("big{}-{}", c.size, c.misalign);
    REQUIRE(v->put(name, data).ok());
    const std::string path =
        fmt::format("{}/objects/{}/{}", dir.path(), FileVolume::fanout_of(name), name);
    CHECK(fs::file_size(path) == c.size);
    // Written directly, the object leaves at most its last partial page
    // in the page cache; written through the cache, every page.
    const bool direct = c.misalign == 0 && c.size >= (256 << 10) && bypasses_page_cache(dir.path());
    if (direct) CHECK(cached_pages(path) <= 1);
    std::string back = read_all(*v, name);
    REQUIRE(back.size() == c.size);
    CHECK(std::memcmp(back.data(), data.data(), c.size) == 0);
    // Replacing it with other bytes is seen by the next read.
    for (auto& b : data) b = static_cast<uint8_t>(~b);
    REQUIRE(v->put(name, data).ok());
    back = read_all(*v, name);
    CHECK(std::memcmp(back.data(), data.data(), c.size) == 0);
  }
  CHECK(count_temp_files(dir.path()) == 0);
}

TEST_CASE("MemoryVolume keeps the prefetch hints in order, only the latest when never taken") {
  MemoryVolume v("mem://hints");
  v.prefetch("a", 1, 2);
  v.prefetch("b", 3, 4);
  auto hints = v.TEST_take_prefetches();
  REQUIRE(hints.size() == 2);
  CHECK(hints[0].name == "a");
  CHECK(hints[1].offset == 3);
  CHECK(hints[1].len == 4);
  CHECK(v.TEST_take_prefetches().empty());
  for (uint64_t i = 0; i < 100000; ++i) v.prefetch("c", i, 1);
  hints = v.TEST_take_prefetches();
  CHECK(hints.size() <= 4096);
  CHECK(hints.size() >= 2048);
  REQUIRE(!hints.empty());
  CHECK(hints.back().offset == 99999);
  CHECK(hints.front().offset == 100000 - hints.size());  // the latest, in order
}

TEST_CASE("FileVolume: prefetch brings an object into the page cache; bad hints are ignored") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  std::vector<uint8_t> data(3 << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  REQUIRE(v->put("obj", data).ok());
  const std::string path = fmt::format("{}/objects/{}/obj", dir.path(), FileVolume::fanout_of("obj"));
  if (!drop_cached_pages(path)) {
    MESSAGE("skipped: the page cache keeps this file's pages (tmpfs?)");
    return;
  }
  v->prefetch("obj", 4096, 1 << 20);  // pages 1..256
  size_t cached = 0;
  for (int i = 0; i < 200 && cached < 256; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    cached = cached_pages(path);
  }
  CHECK(cached >= 256);
  CHECK(cached < data.size() / 4096);  // not the whole object
  // Hints that cannot be followed do nothing.
  v->prefetch("missing", 0, 100);
  v->prefetch("../escape", 0, 100);
  v->prefetch("obj", ~uint64_t{0} - 10, 100);
  v->prefetch("obj", 0, 0);
  CHECK(read_all(*v, "obj") == std::string(data.begin(), data.end()));
}

TEST_CASE("MemoryVolume: concurrent puts") {
  MemoryVolume v;
  check_concurrent_puts(v);
}

TEST_CASE("FileVolume: concurrent puts leave whole objects and no temp files") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  check_concurrent_puts(*v);
  CHECK(count_temp_files(dir.path()) == 0);
}

TEST_CASE("FileVolume: a listing of 1000 objects across fan-out dirs is complete") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  std::set<std::string> want;
  std::set<std::string> fanouts;
  for (int i = 0; i < 1000; ++i) {
    std::string name = fmt::format("chunk-{:05}", i);
    REQUIRE(v->put(name, bytes_of(name)).ok());
    want.insert(name);
    fanouts.insert(FileVolume::fanout_of(name));
  }
  CHECK(fanouts.size() > 200);  // the hash spreads names over the 256 dirs
  size_t dirs = 0;
  for (const auto& e : fs::directory_iterator(dir.path() + "/objects")) dirs += e.is_directory();
  CHECK(dirs == 256);  // all made at the first put
  // A temp file is never listed.
  std::ofstream(FileVolume(dir.path(), "x").TEST_object_dir("chunk-00000") + "/~tmp-0-chunk-00000");
  std::set<std::string> got;
  uint64_t bytes = 0;
  Status s = v->list("chunk-", [&](const ObjectInfo& info) {
    got.insert(info.name);
    bytes += info.size;
  });
  REQUIRE(s.ok());
  CHECK(got == want);
  CHECK(bytes == 1000 * 11);
  CHECK(list_names(*v, "chunk-0099").size() == 10);
}

TEST_CASE("FileVolume: an unreadable fan-out dir fails the listing instead of skipping it") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  REQUIRE(v->put("keep", bytes_of("k")).ok());
  REQUIRE(v->put("victim", bytes_of("v")).ok());
  std::string victim_dir = FileVolume(dir.path(), "x").TEST_object_dir("victim");
  REQUIRE(FileVolume::fanout_of("keep") != FileVolume::fanout_of("victim"));
  fs::remove_all(victim_dir);
  std::ofstream(victim_dir) << "not a directory";
  Status s = v->list("", [](const ObjectInfo&) {});
  CHECK(s.code() == ENOTDIR);
  CHECK(s.message().find(v->uri()) != std::string::npos);
}

TEST_CASE("FileVolume: listing an empty volume is ok, a vanished volume is an error") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  CHECK(list_names(*v).empty());
  fs::remove_all(dir.path());
  CHECK(v->list("", [](const ObjectInfo&) {}).code() == ENOENT);
}

TEST_CASE(
    "FileVolume: a failed put returns the errno, names the object and removes its temp file") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  REQUIRE(v->put("other", bytes_of("o")).ok());
  // A non-empty directory where the object should go makes the rename fail.
  std::string target = FileVolume(dir.path(), "x").TEST_object_dir("blocked") + "/blocked";
  fs::create_directories(target + "/inner");
  Status s = v->put("blocked", bytes_of("data"));
  CHECK(!s.ok());
  CHECK((s.code() == EISDIR || s.code() == ENOTEMPTY || s.code() == EEXIST));
  CHECK(s.message().find(v->uri()) != std::string::npos);
  CHECK(s.message().find("blocked") != std::string::npos);
  CHECK(count_temp_files(dir.path()) == 0);
}

TEST_CASE("FileVolume: stale temp files are removed, fresh ones and objects are kept") {
  TempDir dir{"frugalfs-volume-test"};
  auto v = open_file_volume(dir.path());
  FileVolume fv(dir.path(), "file://" + dir.path());
  REQUIRE(v->put("obj", bytes_of("x")).ok());
  std::string odir = fv.TEST_object_dir("obj");
  std::string stale = odir + "/~tmp-00000000000000aa-obj";
  std::string fresh = odir + "/~tmp-00000000000000bb-obj";
  std::ofstream(stale) << "partial";
  std::ofstream(fresh) << "partial";
  struct timespec old_times[2] = {{::time(nullptr) - 7200, 0}, {::time(nullptr) - 7200, 0}};
  REQUIRE(::utimensat(AT_FDCWD, stale.c_str(), old_times, 0) == 0);
  Result<uint64_t> removed = fv.remove_stale_temp_files(std::chrono::hours(1));
  REQUIRE(removed.ok());
  CHECK(*removed == 1);
  CHECK(!fs::exists(stale));
  CHECK(fs::exists(fresh));
  CHECK(read_all(*v, "obj") == "x");
}

TEST_CASE("normalize_volume_uri") {
  CHECK(*normalize_volume_uri("file:///srv/vol0") == "file:///srv/vol0");
  CHECK(*normalize_volume_uri("/srv/vol0") == "file:///srv/vol0");
  CHECK(*normalize_volume_uri("/srv//vol0/./x/../") == "file:///srv/vol0");
  CHECK(*normalize_volume_uri("/") == "file:///");
  CHECK(*normalize_volume_uri("vol0") == "file://" + fs::current_path().string() + "/vol0");
  for (std::string_view bad :
       {"", "file://host/srv", "file://rel", "s3://bucket/x", "https://host/v", "gopher://x"}) {
    CAPTURE(bad);
    CHECK(normalize_volume_uri(bad).status().code() == EINVAL);
  }
  CHECK(normalize_volume_uri("s3://bucket").status().message().find("not supported") !=
        std::string::npos);
}

TEST_CASE("open_volume: missing dir, create, and a file instead of a dir") {
  TempDir dir{"frugalfs-volume-test"};
  std::string missing = dir.path() + "/a/b/vol";
  Result<std::unique_ptr<Volume>> r = open_volume(missing);
  CHECK(r.status().code() == ENOENT);
  CHECK(r.status().message().find(missing) != std::string::npos);
  CHECK(!fs::exists(missing));

  r = open_volume("file://" + missing, /*create=*/true);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(fs::is_directory(missing));
  CHECK((*r)->uri() == "file://" + missing);
  REQUIRE((*r)->put("x", bytes_of("1")).ok());
  CHECK(read_all(*open_file_volume(missing + "/"), "x") == "1");

  std::string file = dir.path() + "/plain-file";
  std::ofstream(file) << "x";
  CHECK(open_volume(file).status().code() == ENOTDIR);
  CHECK(open_volume(file, true).status().code() == ENOTDIR);
  CHECK(open_volume("s3://bucket/vol").status().code() == EINVAL);
}

TEST_CASE("read_object reads a whole object larger than one read") {
  MemoryVolume v;
  std::string big(3 << 20, 'q');
  big[12345] = 'Z';
  REQUIRE(v.put("big", bytes_of(big)).ok());
  CHECK(read_all(v, "big") == big);
}

namespace {
void check_label_round_trip(Volume& v) {
  CHECK(read_label(v).status().code() == ENOENT);
  VolumeLabel label{"0b1e5a52-7d0c-4c1b-9a57-3f1d1e2a9c11", 3, 1};
  REQUIRE(write_label(v, label).ok());
  Result<VolumeLabel> got = read_label(v);
  REQUIRE_MESSAGE(got.ok(), got.status().ToString());
  CHECK(got->fs_id == label.fs_id);
  CHECK(got->volume_id == 3);
  CHECK(got->format_version == 1);
  // Rewriting replaces it.
  label.volume_id = 4000000000u;
  label.format_version = 7;
  REQUIRE(write_label(v, label).ok());
  CHECK(read_label(v)->volume_id == 4000000000u);
  CHECK(read_label(v)->format_version == 7);
  // The label is an ordinary object.
  CHECK(list_names(v).count(std::string(kVolumeLabelObject)) == 1);
}

Status label_error(Volume& v, std::string_view text) {
  REQUIRE(v.put(kVolumeLabelObject, bytes_of(text)).ok());
  return read_label(v).status();
}
}  // namespace

TEST_CASE("volume labels round-trip on both backends") {
  MemoryVolume mem;
  check_label_round_trip(mem);
  TempDir dir{"frugalfs-volume-test"};
  auto fv = open_file_volume(dir.path());
  check_label_round_trip(*fv);
}

TEST_CASE("a garbage or damaged label is EINVAL and names the volume") {
  MemoryVolume v("mem://label-test");
  for (std::string_view garbage : {"", "hello", "frugalfs-volume-label v1\n",
                                   "frugalfs-volume-label v1\nfs_id=x\nchecksum=zz\n"}) {
    CAPTURE(garbage);
    Status s = label_error(v, garbage);
    CHECK(s.code() == EINVAL);
    CHECK(s.message().find("mem://label-test") != std::string::npos);
  }
  CHECK(label_error(v, "frugalfs-volume-label v9\nfs_id=x\n").message().find("v9") !=
        std::string::npos);
  CHECK(label_error(v, std::string(5000, 'x')).code() == EINVAL);

  // One flipped byte anywhere is caught by the checksum or the parser.
  REQUIRE(write_label(v, VolumeLabel{"fs-1", 2, 1}).ok());
  uint64_t size = v.stat(kVolumeLabelObject)->size;
  std::string good = read_all(v, kVolumeLabelObject);
  for (uint64_t i = 0; i < size; ++i) {
    CAPTURE(i);
    v.TEST_corrupt(kVolumeLabelObject, i);
    CHECK(read_label(v).status().code() == EINVAL);
    REQUIRE(v.put(kVolumeLabelObject, bytes_of(good)).ok());
  }
  CHECK(read_label(v).ok());
  // A plausible but altered value is caught by the checksum alone.
  std::string altered = good;
  size_t pos = altered.find("volume_id=2");
  REQUIRE(pos != std::string::npos);
  altered[pos + 10] = '3';
  CHECK(label_error(v, altered).message().find("checksum") != std::string::npos);

  CHECK(write_label(v, VolumeLabel{"", 1, 1}).code() == EINVAL);
  CHECK(write_label(v, VolumeLabel{"a\nvolume_id=9", 1, 1}).code() == EINVAL);
}

TEST_CASE("MemoryVolume test hooks") {
  MemoryVolume v;
  REQUIRE(v.put("a", bytes_of("abc")).ok());
  REQUIRE(v.put("b", bytes_of("de")).ok());
  CHECK(v.TEST_object_count() == 2);
  CHECK(v.TEST_total_bytes() == 5);
  REQUIRE(v.put("a", bytes_of("x")).ok());
  CHECK(v.TEST_total_bytes() == 3);
  CHECK(v.space()->free_bytes == v.space()->total_bytes - 3);

  v.TEST_corrupt("b", 1);
  CHECK(read_all(v, "b") == std::string("d") + static_cast<char>('e' ^ 0xff));
  v.TEST_corrupt("b", 99);  // out of range: no-op
  v.TEST_corrupt("nope", 0);

  v.TEST_set_offline(true);
  CHECK(v.put("c", bytes_of("c")).code() == EIO);
  CHECK(v.read("a", 0, {}).status().code() == EIO);
  CHECK(v.stat("a").status().code() == EIO);
  CHECK(v.remove("a").code() == EIO);
  CHECK(v.list("", [](const ObjectInfo&) {}).code() == EIO);
  CHECK(v.space().status().code() == EIO);
  v.TEST_set_offline(false);
  CHECK(read_all(v, "a") == "x");

  v.TEST_wipe();
  CHECK(v.TEST_object_count() == 0);
  CHECK(v.TEST_total_bytes() == 0);
  CHECK(v.stat("a").status().code() == ENOENT);
}

TEST_CASE("MemoryVolume: list callbacks may call back into the volume") {
  MemoryVolume v;
  for (int i = 0; i < 10; ++i) REQUIRE(v.put(fmt::format("o{}", i), bytes_of("x")).ok());
  Status s = v.list("o", [&](const ObjectInfo& info) { CHECK(v.remove(info.name).ok()); });
  CHECK(s.ok());
  CHECK(v.TEST_object_count() == 0);
}

namespace {

// A FileIo that does the real system calls and keeps a model of what a power
// loss would keep, the way a journaling filesystem may behave at worst: a
// file's data is durable only once the file is fsynced after its last write,
// and a change to a directory's entries (create, rename, unlink, mkdir) only
// once that directory is fsynced. `drop_*` turn off one kind of fsync (the
// call succeeds but makes nothing durable), to show the model catches it.
class PowerLossModel : public FileIo {
 public:
  explicit PowerLossModel(std::string root) : root_(std::move(root)) {}

  bool drop_file_fsync = false;
  bool drop_dir_fsync = false;
  int fsyncs = 0;  // calls, of files and directories

  int open(const char* path, int flags, mode_t mode) override {
    int fd = FileIo::open(path, flags, mode);
    if (fd < 0) return fd;
    std::lock_guard lock(mu_);
    fds_[fd] = path;
    if (flags & O_CREAT) {
      unsynced_entries_.insert(path);
      unsynced_data_.insert(path);
    }
    return fd;
  }
  ssize_t write(int fd, const void* data, size_t size) override {
    std::lock_guard lock(mu_);
    unsynced_data_.insert(fds_.at(fd));
    return FileIo::write(fd, data, size);
  }
  int fsync(int fd) override {
    int rc = FileIo::fsync(fd);
    std::lock_guard lock(mu_);
    ++fsyncs;
    const std::string path = fds_.at(fd);
    const bool dir = fs::is_directory(path);
    if (rc == 0 && !(dir ? drop_dir_fsync : drop_file_fsync)) {
      if (dir) {
        // Every entry change directly in this directory is now durable.
        for (auto it = unsynced_entries_.begin(); it != unsynced_entries_.end();) {
          it = fs::path(*it).parent_path() == fs::path(path) ? unsynced_entries_.erase(it) : std::next(it);
        }
      } else {
        unsynced_data_.erase(path);
      }
    }
    return rc;
  }
  int close(int fd) override {
    std::lock_guard lock(mu_);
    fds_.erase(fd);
    return FileIo::close(fd);
  }
  int rename(const char* from, const char* to) override {
    int rc = FileIo::rename(from, to);
    if (rc != 0) return rc;
    std::lock_guard lock(mu_);
    unsynced_entries_.insert(from);
    unsynced_entries_.insert(to);
    // The file keeps its (un)synced data under the new name.
    if (unsynced_data_.erase(from)) unsynced_data_.insert(to);
    else unsynced_data_.erase(to);
    return rc;
  }
  int unlink(const char* path) override {
    int rc = FileIo::unlink(path);
    if (rc != 0) return rc;
    std::lock_guard lock(mu_);
    unsynced_entries_.insert(path);
    unsynced_data_.erase(path);
    return rc;
  }
  int mkdir(const char* path, mode_t mode) override {
    int rc = FileIo::mkdir(path, mode);
    if (rc != 0) return rc;
    std::lock_guard lock(mu_);
    unsynced_entries_.insert(path);
    return rc;
  }
  // Everything under the root is on one filesystem: syncfs makes it all
  // durable. With drop_syncfs it succeeds and makes nothing durable.
  bool drop_syncfs = false;
  int syncfs(int fd) override {
    int rc = FileIo::syncfs(fd);
    std::lock_guard lock(mu_);
    if (rc == 0 && !drop_syncfs) {
      unsynced_entries_.clear();
      unsynced_data_.clear();
    }
    return rc;
  }

  // Would the file at path, with its data, survive a power loss now? Every
  // directory entry on the way from the root must be durable, and the data.
  bool survives(const std::string& path) {
    std::lock_guard lock(mu_);
    if (unsynced_data_.count(path)) return false;
    for (fs::path p = path; p.string().size() > root_.size(); p = p.parent_path()) {
      if (unsynced_entries_.count(p.string())) return false;
    }
    return true;
  }
  // Would the removal of path survive a power loss now?
  bool removal_survives(const std::string& path) {
    std::lock_guard lock(mu_);
    return unsynced_entries_.count(path) == 0;
  }

 private:
  const std::string root_;
  std::mutex mu_;
  std::map<int, std::string> fds_;
  std::set<std::string> unsynced_entries_;  // paths whose entry in their parent may be lost
  std::set<std::string> unsynced_data_;     // files whose data may be lost
};

}  // namespace

TEST_CASE("file volume: an object is durable when put returns, a removal when remove returns") {
  TempDir dir{"frugalfs-vol"};
  PowerLossModel io(dir.path());
  FileVolume volume(dir.path(), "file://" + dir.path(), io);
  // The first put creates objects/ and every fan-out directory (fsyncing
  // the root and objects/); later ones only fsync their file and directory.
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back(fmt::format("frag-{:016x}-{}", 1000 + i, i % 4));
  for (const std::string& name : names) {
    REQUIRE(volume.put(name, bytes_of("payload of " + name)).ok());
    const std::string path = volume.TEST_object_dir(name) + "/" + name;
    CHECK_MESSAGE(io.survives(path), path);
    if (name == names[0]) {
      CHECK(io.fsyncs == 4);
      size_t dirs = 0;
      for (const auto& e : fs::directory_iterator(dir.path() + "/objects")) {
        dirs += e.is_directory();
        CHECK_MESSAGE(io.survives(e.path().string()), e.path());
      }
      CHECK(dirs == 256);
    }
  }
  CHECK(io.fsyncs == 4 + 2 * 39);
  // A large object from an aligned buffer (written with O_DIRECT where the
  // filesystem takes it) is as durable.
  {
    const size_t size = (1 << 20) + 100;
    AlignedBytes big = make_aligned_bytes(size);
    std::fill_n(big.get(), size, uint8_t{0x5a});
    const std::string name = "frag-00000000000007ff-0";
    REQUIRE(volume.put(name, {big.get(), size}).ok());
    CHECK(io.survives(volume.TEST_object_dir(name) + "/" + name));
    CHECK(read_all(volume, name) == std::string(size, '\x5a'));
  }
  // Replacing an object keeps it durable, with the new bytes.
  REQUIRE(volume.put(names[0], bytes_of("new payload")).ok());
  CHECK(io.survives(volume.TEST_object_dir(names[0]) + "/" + names[0]));
  for (size_t i = 0; i < names.size(); i += 3) {
    REQUIRE(volume.remove(names[i]).ok());
    CHECK(io.removal_survives(volume.TEST_object_dir(names[i]) + "/" + names[i]));
  }
}

TEST_CASE("file volumes on one filesystem share a sync domain: one's sync makes the other's "
          "objects durable") {
  TempDir dir{"frugalfs-vol"};
  fs::create_directories(dir.path() + "/a");
  fs::create_directories(dir.path() + "/b");
  PowerLossModel io(dir.path());
  FileVolume a(dir.path() + "/a", "file://a", io), b(dir.path() + "/b", "file://b", io);
  CHECK(a.sync_domain() == b.sync_domain());
  CHECK(a.sync_domain().starts_with("dev:"));
  REQUIRE(b.put("frag-0000000000000001-0", bytes_of("durable")).ok());  // makes b's directories
  REQUIRE(b.put_deferred("frag-0000000000000002-0", bytes_of("deferred")).ok());
  const std::string path = b.TEST_object_dir("frag-0000000000000002-0") + "/frag-0000000000000002-0";
  CHECK_FALSE(io.survives(path));
  REQUIRE(a.sync().ok());
  CHECK(io.survives(path));
  if (fs::is_directory("/dev/shm")) {  // another filesystem, where there is one
    struct stat here, shm;
    REQUIRE(::stat(dir.path().c_str(), &here) == 0);
    REQUIRE(::stat("/dev/shm", &shm) == 0);
    if (here.st_dev != shm.st_dev) CHECK(FileVolume("/dev/shm", "file:///dev/shm").sync_domain() != a.sync_domain());
  }
  // A volume whose directory cannot be opened is a domain of its own.
  CHECK(FileVolume(dir.path() + "/missing", "file://missing").sync_domain() == "file://missing");
}

TEST_CASE("file volume: an object put deferred is readable at once and durable once sync returns") {
  TempDir dir{"frugalfs-vol"};
  PowerLossModel io(dir.path());
  FileVolume volume(dir.path(), "file://" + dir.path(), io);
  // The first put makes the directories (durably); the deferred puts after it
  // neither fsync their files nor the directories they are renamed into.
  REQUIRE(volume.put("frag-0000000000000001-0", bytes_of("durable")).ok());
  std::vector<std::string> names;
  for (int i = 0; i < 20; ++i) names.push_back(fmt::format("frag-{:016x}-{}", 2000 + i, i % 4));
  const size_t big_size = (1 << 20) + 100;  // O_DIRECT where the filesystem takes it
  AlignedBytes big = make_aligned_bytes(big_size);
  std::fill_n(big.get(), big_size, uint8_t{0xa5});
  for (size_t i = 0; i < names.size(); ++i) {
    if (i == 7) {
      REQUIRE(volume.put_deferred(names[i], {big.get(), big_size}).ok());
    } else {
      REQUIRE(volume.put_deferred(names[i], bytes_of("deferred " + names[i])).ok());
    }
  }
  auto path_of = [&](const std::string& name) { return volume.TEST_object_dir(name) + "/" + name; };
  size_t survivors = 0;
  for (const std::string& name : names) survivors += io.survives(path_of(name)) ? 1 : 0;
  CHECK(survivors == 0);  // nothing was made durable one object at a time
  CHECK(read_all(volume, names[3]) == "deferred " + names[3]);
  CHECK(read_all(volume, names[7]) == std::string(big_size, '\xa5'));

  // A sync whose syncfs makes nothing durable is caught by the model...
  io.drop_syncfs = true;
  REQUIRE(volume.sync().ok());
  CHECK_FALSE(io.survives(path_of(names[0])));
  // ...and a real one makes every object durable, with its bytes.
  io.drop_syncfs = false;
  REQUIRE(volume.sync().ok());
  for (const std::string& name : names) CHECK_MESSAGE(io.survives(path_of(name)), name);
  for (const std::string& name : names) {
    if (name != names[7]) CHECK(read_all(volume, name) == "deferred " + name);
  }
  // The objects list like any other.
  std::set<std::string> listed;
  REQUIRE(volume.list("frag-", [&](const ObjectInfo& o) { listed.insert(o.name); }).ok());
  CHECK(listed.size() == names.size() + 1);
}

// A FileIo whose syncfs fails with EIO `failures` times.
class FailingSyncfs : public FileIo {
 public:
  int syncfs(int fd) override {
    if (failures > 0) {
      --failures;
      errno = EIO;
      return -1;
    }
    return FileIo::syncfs(fd);
  }
  int failures = 1;
};

TEST_CASE("file volume: a failed sync is reported, and so is every sync after it") {
  TempDir dir{"frugalfs-vol"};
  FailingSyncfs io;
  FileVolume volume(dir.path(), "file://" + dir.path(), io);
  REQUIRE(volume.put_deferred("frag-0000000000000001-0", bytes_of("a")).ok());
  Status first = volume.sync();
  CHECK(first.code() == EIO);
  CHECK(first.message().find("may be lost") != std::string::npos);
  CHECK(first.message().find(dir.path()) != std::string::npos);
  // syncfs itself would succeed now, but the object put before the failure
  // may be gone: the failure stays.
  REQUIRE(io.failures == 0);
  REQUIRE(volume.put_deferred("frag-0000000000000002-0", bytes_of("b")).ok());
  CHECK(volume.sync().code() == EIO);
  // A volume opened again (a restart) syncs.
  FileVolume reopened(dir.path(), "file://" + dir.path(), io);
  CHECK(reopened.sync().ok());
}

TEST_CASE("file volume: a volume whose directory could not be opened fails every sync") {
  TempDir dir{"frugalfs-vol"};
  FileVolume volume(dir.path() + "/missing", "file://" + dir.path() + "/missing");
  Status s = volume.sync();
  CHECK(s.code() == EIO);
  CHECK(s.message().find("could not be opened") != std::string::npos);
  CHECK(volume.sync().code() == EIO);
}

TEST_CASE("memory volume: a power loss drops what was put deferred since the last sync") {
  MemoryVolume volume;
  REQUIRE(volume.put("a", bytes_of("a")).ok());
  REQUIRE(volume.put_deferred("b", bytes_of("b")).ok());
  REQUIRE(volume.sync().ok());
  REQUIRE(volume.put_deferred("c", bytes_of("c")).ok());
  REQUIRE(volume.put_deferred("d", bytes_of("d")).ok());
  REQUIRE(volume.put("d", bytes_of("D")).ok());  // durable now
  REQUIRE(volume.put_deferred("e", bytes_of("e")).ok());
  REQUIRE(volume.remove("e").ok());
  CHECK(volume.TEST_sync_count() == 1);
  CHECK(volume.TEST_power_loss() == 1);  // c
  CHECK(read_all(volume, "a") == "a");
  CHECK(read_all(volume, "b") == "b");
  CHECK(read_all(volume, "d") == "D");
  CHECK(volume.stat("c").status().code() == ENOENT);
  CHECK(volume.TEST_total_bytes() == 3);
  volume.TEST_set_sync_error(Errorf(EIO, "injected"));
  CHECK(volume.sync().code() == EIO);
  volume.TEST_set_sync_error(Status::Ok());
  CHECK(volume.sync().ok());
  CHECK(volume.TEST_sync_count() == 2);
}

// A FileIo whose O_DIRECT writes stop part way: the first writes half of
// what it is given, the second fails with EINVAL, as a device that wants
// another alignment would.
class DirectWritesRefused : public FileIo {
 public:
  ssize_t write(int fd, const void* data, size_t size) override {
    if ((::fcntl(fd, F_GETFL) & O_DIRECT) != 0) {
      if (++direct_writes == 1) return FileIo::write(fd, data, size / 2 / kVolumeIoAlignment * kVolumeIoAlignment);
      errno = EINVAL;
      return -1;
    }
    return FileIo::write(fd, data, size);
  }
  int direct_writes = 0;
};

TEST_CASE("file volume: a direct write refused part way is done again, whole, through the page "
          "cache") {
  TempDir dir{"frugalfs-vol"};
  if (!bypasses_page_cache(dir.path())) return;  // no direct writes here to refuse
  DirectWritesRefused io;
  FileVolume volume(dir.path(), "file://" + dir.path(), io);
  const size_t size = (1 << 20) + 4096 + 17;
  AlignedBytes data = make_aligned_bytes(size);
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  const std::string name = "frag-0000000000000abc-1";
  REQUIRE(volume.put(name, {data.get(), size}).ok());
  CHECK(io.direct_writes == 2);
  const std::string back = read_all(volume, name);
  REQUIRE(back.size() == size);
  CHECK(std::memcmp(back.data(), data.get(), size) == 0);
  CHECK(count_temp_files(dir.path()) == 0);
}

TEST_CASE("file volume: the power-loss model catches a missing fsync") {
  for (bool drop_dir : {false, true}) {
    CAPTURE(drop_dir);
    TempDir dir{"frugalfs-vol"};
    PowerLossModel io(dir.path());
    (drop_dir ? io.drop_dir_fsync : io.drop_file_fsync) = true;
    FileVolume volume(dir.path(), "file://" + dir.path(), io);
    REQUIRE(volume.put("frag-0000000000000001-0", bytes_of("x")).ok());
    CHECK_FALSE(io.survives(volume.TEST_object_dir("frag-0000000000000001-0") + "/frag-0000000000000001-0"));
  }
}
