// Benchmark helper: a create/stat/unlink storm in one directory.
//   meta_storm DIR COUNT
// Creates COUNT empty files, stats each, unlinks each, and prints one line:
//   create OPS_PER_S stat OPS_PER_S unlink OPS_PER_S total OPS_PER_S
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string name_of(const std::string& dir, long i) { return dir + "/f" + std::to_string(i); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: meta_storm DIR COUNT\n");
    return 2;
  }
  const std::string dir = argv[1];
  const long count = std::strtol(argv[2], nullptr, 10);
  if (count <= 0) {
    std::fprintf(stderr, "meta_storm: COUNT must be positive\n");
    return 2;
  }
  double phase[3] = {};
  auto t0 = Clock::now();
  for (long i = 0; i < count; ++i) {
    int fd = ::open(name_of(dir, i).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || ::close(fd) != 0) {
      std::perror("meta_storm: create");
      return 1;
    }
  }
  phase[0] = seconds_since(t0);
  t0 = Clock::now();
  for (long i = 0; i < count; ++i) {
    struct stat st;
    if (::stat(name_of(dir, i).c_str(), &st) != 0 || st.st_size != 0) {
      std::perror("meta_storm: stat");
      return 1;
    }
  }
  phase[1] = seconds_since(t0);
  t0 = Clock::now();
  for (long i = 0; i < count; ++i) {
    if (::unlink(name_of(dir, i).c_str()) != 0) {
      std::perror("meta_storm: unlink");
      return 1;
    }
  }
  phase[2] = seconds_since(t0);
  const double n = static_cast<double>(count);
  std::printf("create %.0f stat %.0f unlink %.0f total %.0f\n", n / phase[0], n / phase[1], n / phase[2],
              3 * n / (phase[0] + phase[1] + phase[2]));
  return 0;
}
