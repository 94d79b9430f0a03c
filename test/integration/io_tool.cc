// Helper for the integration tests: things the shell cannot do portably.
//
//   io_tool overwrite SEED COUNT MAX_LEN FILE...
//       applies the same COUNT pseudo-random overwrites (offset within the
//       first file's size, 1..MAX_LEN bytes of pseudo-random data) to every
//       FILE, so a reference copy and a copy in the mount must stay equal.
//   io_tool rename exchange|noreplace OLD NEW
//       renameat2(2) with RENAME_EXCHANGE or RENAME_NOREPLACE.
//   io_tool cached FILE
//       prints how many of FILE's pages are in the kernel's page cache, and
//       how many pages it has: "RESIDENT TOTAL" (mincore(2) on a fresh open).
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

namespace {

int usage() {
  fprintf(stderr,
          "usage: io_tool overwrite SEED COUNT MAX_LEN FILE...\n"
          "       io_tool rename exchange|noreplace OLD NEW\n"
          "       io_tool cached FILE\n");
  return 2;
}

int overwrite(int argc, char** argv) {
  if (argc < 6) return usage();
  const uint64_t seed = strtoull(argv[2], nullptr, 10);
  const long count = strtol(argv[3], nullptr, 10);
  const size_t max_len = strtoull(argv[4], nullptr, 10);
  std::vector<int> fds;
  for (int i = 5; i < argc; ++i) {
    int fd = open(argv[i], O_RDWR);
    if (fd < 0) {
      fprintf(stderr, "io_tool: %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  struct stat st {};
  if (fstat(fds[0], &st) != 0 || st.st_size == 0 || max_len == 0) return usage();
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> data(max_len);
  for (long i = 0; i < count; ++i) {
    const uint64_t offset = rng() % static_cast<uint64_t>(st.st_size);
    const size_t len = 1 + rng() % max_len;
    for (size_t j = 0; j < len; j += 8) {
      uint64_t r = rng();
      memcpy(&data[j], &r, std::min<size_t>(8, len - j));
    }
    for (size_t f = 0; f < fds.size(); ++f) {
      ssize_t n = pwrite(fds[f], data.data(), len, static_cast<off_t>(offset));
      if (n != static_cast<ssize_t>(len)) {
        fprintf(stderr, "io_tool: pwrite #%ld to %s at %llu (%zu bytes): %s\n", i, argv[5 + f],
                static_cast<unsigned long long>(offset), len, n < 0 ? strerror(errno) : "short");
        return 1;
      }
    }
  }
  for (size_t f = 0; f < fds.size(); ++f) {
    if (close(fds[f]) != 0) {
      fprintf(stderr, "io_tool: close %s: %s\n", argv[5 + f], strerror(errno));
      return 1;
    }
  }
  return 0;
}

int rename2(int argc, char** argv) {
  if (argc != 5) return usage();
  std::string_view mode = argv[2];
  unsigned flags = mode == "exchange" ? RENAME_EXCHANGE : mode == "noreplace" ? RENAME_NOREPLACE : 0;
  if (flags == 0) return usage();
  if (renameat2(AT_FDCWD, argv[3], AT_FDCWD, argv[4], flags) != 0) {
    fprintf(stderr, "io_tool: rename %s %s: %s\n", argv[3], argv[4], strerror(errno));
    return 1;
  }
  return 0;
}

int cached(int argc, char** argv) {
  if (argc != 3) return usage();
  const int fd = open(argv[2], O_RDONLY);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) {
    fprintf(stderr, "io_tool: %s: %s\n", argv[2], strerror(errno));
    return 1;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t pages = (static_cast<size_t>(st.st_size) + page - 1) / page;
  size_t resident = 0;
  if (pages > 0) {
    void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      fprintf(stderr, "io_tool: mmap %s: %s\n", argv[2], strerror(errno));
      return 1;
    }
    std::vector<unsigned char> vec(pages);
    if (mincore(map, static_cast<size_t>(st.st_size), vec.data()) != 0) {
      fprintf(stderr, "io_tool: mincore %s: %s\n", argv[2], strerror(errno));
      return 1;
    }
    for (unsigned char v : vec) resident += v & 1;
    munmap(map, static_cast<size_t>(st.st_size));
  }
  close(fd);
  printf("%zu %zu\n", resident, pages);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string_view command = argv[1];
  if (command == "overwrite") return overwrite(argc, argv);
  if (command == "rename") return rename2(argc, argv);
  if (command == "cached") return cached(argc, argv);
  return usage();
}
