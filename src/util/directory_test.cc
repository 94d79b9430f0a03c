#include "util/directory.h"

#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <vector>

#include "test_support.h"
#include "util/parallel.h"

using namespace frugalfs;
namespace fs = std::filesystem;

TEST_CASE("normalized_dir drops a trailing separator") {
  CHECK(normalized_dir("a/b/") == fs::path("a/b"));
  CHECK(normalized_dir("a/./b") == fs::path("a/b"));
  CHECK(normalized_dir("/x") == fs::path("/x"));
}

TEST_CASE("move_into_place moves a built directory, over nothing or an empty one only") {
  test::TempDir tmp{"frugalfs-util"};
  const fs::path built = tmp.sub("built"), target = tmp.sub("target");
  fs::create_directory(built);
  std::ofstream(built / "f") << "x";
  REQUIRE(move_into_place(built, target).ok());
  CHECK(fs::exists(target / "f"));
  CHECK(!fs::exists(built));

  fs::create_directory(built);
  std::ofstream(built / "g") << "y";
  Status refused = move_into_place(built, target);  // target holds a file
  CHECK(!refused.ok());
  CHECK(fs::exists(built / "g"));
  CHECK(fs::exists(target / "f"));

  const fs::path empty = tmp.sub("empty");
  fs::create_directory(empty);
  REQUIRE(move_into_place(built, empty).ok());
  CHECK(fs::exists(empty / "g"));
  CHECK(!move_into_place(tmp.sub("missing"), tmp.sub("other")).ok());
}

TEST_CASE("parallel_for runs every index once, on any number of threads") {
  for (size_t n : {0u, 1u, 7u, 100u}) {
    for (size_t threads : {1u, 2u, 8u, 200u}) {
      std::vector<std::atomic<int>> runs(n);
      parallel_for(n, threads, [&](size_t i) { runs[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) CHECK(runs[i].load() == 1);
    }
  }
}

TEST_CASE("threads_for gives a thread only to work of at least bytes_per_thread") {
  CHECK(threads_for(0, 1000, 4) == 1);
  CHECK(threads_for(999, 1000, 4) == 1);
  CHECK(threads_for(2000, 1000, 4) == 2);
  CHECK(threads_for(2999, 1000, 4) == 2);
  CHECK(threads_for(1 << 30, 1000, 4) == 4);
  CHECK(threads_for(5000, 0, 3) == 3);  // no minimum: every thread allowed
}
