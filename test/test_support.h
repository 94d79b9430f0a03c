// Helpers shared by the unit tests (src/*/*_test.cc): a temporary directory,
// deterministic random bytes, and what the page cache holds of a file.

#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace frugalfs::test {

// A fresh directory "<base>/<prefix>-XXXXXX", removed with everything in it
// when the TempDir goes away. The base is /tmp, or $TMPDIR (when set and not
// empty) if asked for.
class TempDir {
 public:
  enum class Base { kTmp, kTmpdirEnv };

  explicit TempDir(std::string_view prefix, Base base = Base::kTmp) {
    std::string root = "/tmp";
    if (base == Base::kTmpdirEnv) {
      const char* env = std::getenv("TMPDIR");
      if (env && *env) root = env;
    }
    std::string tmpl = root + "/" + std::string(prefix) + "-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // A path inside the directory (not created).
  std::string sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// How random_bytes turns the generator's 64-bit outputs into bytes.
enum class ByteDraw {
  kWords,  // eight bytes per draw (little-endian copy), one draw per byte of the tail
  kBytes,  // one draw per byte, low eight bits
};

// n bytes from rng; the same generator state gives the same bytes.
inline std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n,
                                         ByteDraw draw = ByteDraw::kWords) {
  std::vector<uint8_t> out(n);
  size_t i = 0;
  if (draw == ByteDraw::kWords) {
    for (; i + 8 <= n; i += 8) {
      uint64_t v = rng();
      std::memcpy(out.data() + i, &v, 8);
    }
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(rng());
  return out;
}

// How many of a file's pages are in the page cache.
inline size_t cached_pages(const std::string& path) {
  const size_t size = static_cast<size_t>(std::filesystem::file_size(path));
  if (size == 0) return 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((size + page - 1) / page);
  REQUIRE(::mincore(map, size, resident.data()) == 0);
  ::munmap(map, size);
  return static_cast<size_t>(std::count_if(resident.begin(), resident.end(),
                                            [](unsigned char r) { return r & 1; }));
}

// Drops a file's clean pages from the page cache; true if none are left
// (false on tmpfs, which keeps them).
inline bool drop_cached_pages(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return cached_pages(path) == 0;
}

}  // namespace frugalfs::test
