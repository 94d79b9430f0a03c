// frugalfs mount: checks the inputs, then (unless -f) forks a daemon that
// opens the filesystem, mounts it and reports through a pipe; the command
// returns once the mount serves requests, or prints why it could not.
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <mutex>
#include <string>

#include <fmt/format.h>

#include "cli_args.h"
#include "commands.h"
#include "frugalfs/fs.h"
#include "fuse/fuse_adapter.h"
#include "fuse/mountinfo.h"

namespace frugalfs::cli {

namespace {

constexpr const char* kMountUsage =
    "Usage: frugalfs mount [-f] [-d] [-o OPTION[,OPTION...]] META_DIR MOUNTPOINT\n"
    "\n"
    "Mounts the filesystem whose metadata is in META_DIR. Without -f the command\n"
    "returns once the mount is ready and a daemon serves it, logging to\n"
    "META_DIR/frugalfs.log. Unmount with 'fusermount3 -u MOUNTPOINT' or 'umount';\n"
    "the daemon then writes out all buffered data and exits.\n"
    "\n"
    "Options:\n"
    "  -f, --foreground   stay in the foreground, logging to stderr\n"
    "  -d, --debug        print every FUSE request on stderr (implies -f)\n"
    "  -o OPTIONS         comma-separated mount options (below)\n"
    "  -h, --help         show this help\n"
    "\n"
    "frugalfs mount options:\n"
    "  cache_size=SIZE         decompressed chunk cache (default 64M)\n"
    "  dirty_limit=SIZE        buffered writes of all files together (default 128M)\n"
    "  flush_interval=SECONDS  buffered data older than this is written out (default 5)\n"
    "  threads=N               FUSE worker threads (default 10)\n"
    "  backup_interval=SECONDS metadata backup to the volumes this often (default\n"
    "                          3600; 0: only at unmount); also at every unmount\n"
    "  backups=N               metadata backups kept on the volumes (default 3)\n"
    "Other options (allow_other, ro, ...) go to FUSE; see mount.fuse3(8).\n";

constexpr const char* kLogName = "frugalfs.log";
constexpr const char* kPidName = "frugalfs.pid";

struct MountRequest {
  std::string meta_dir;    // absolute
  std::string mountpoint;  // canonical
  bool foreground = false;
  bool debug = false;
  MountOptionList options;
};

int fail(const std::string& message) {
  fmt::print(stderr, "frugalfs mount: {}\n", message);
  return kExitFailure;
}

int usage_error(const std::string& message) {
  fmt::print(stderr, "frugalfs mount: {}\nTry 'frugalfs mount --help'.\n", message);
  return kExitUsage;
}

// One timestamped line on stderr, written with a single write(2) so lines
// from several threads do not interleave (stderr is the log file when
// daemonized).
void log_line(std::string_view message) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm local{};
  localtime_r(&now.tv_sec, &local);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &local);
  std::string line = fmt::format("{}.{:03d} frugalfs[{}]: {}\n", stamp,
                                 static_cast<int>(now.tv_nsec / 1000000), getpid(), message);
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

// The data path allocates and frees buffers of megabytes all the time (write
// ranges, pack and fragment buffers). With glibc's defaults these come from
// fresh mmap()s or are handed back to the kernel on free, so every reuse
// costs a page fault and a page clearing per 4 KiB. Measured with
// test/bench/phases.sh (1 GiB, medians of 3): daemon CPU -12% on unique
// writes, -20% on already-stored data, peak RSS 427 -> 375 MiB. One arena:
// memory freed by one thread is reused by the next, whichever thread it is
// (the FUSE threads fill write ranges, the flusher frees them), so the heap
// stays smaller and fewer pages are touched for the first time (a page fault
// costs ~3.6 us on this VM). Against 4 arenas (phases.sh, 1 GiB, two runs of
// 5): unique writes 234 -> 242 and 225 -> 232 MB/s with daemon CPU 4.52 ->
// 3.84 and 4.45 -> 4.11 s, peak RSS 354 -> 262 and 396 -> 287 MiB; tree
// copies and deletes within noise (the malloc lock is not contended there).
void tune_memory_allocator() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // a fixed threshold: buffers below it are reused
  mallopt(M_TRIM_THRESHOLD, 64 << 20);  // free memory kept before giving it back
  mallopt(M_ARENA_MAX, 1);
}

std::string absolute_path(const std::string& path) {
  if (!path.empty() && path.front() == '/') return path;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return std::string(cwd) + "/" + path;
}

Status check_meta_dir(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return Errorf(ENOENT, "metadata directory {} does not exist", dir);
    return Errorf(errno, "metadata directory {}: {}", dir, strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return Errorf(ENOTDIR, "metadata directory {} is not a directory", dir);
  return Status::Ok();
}

// The canonical mount point, if it is an existing directory that nothing is
// mounted on.
Result<std::string> check_mountpoint(const std::string& path) {
  char real[PATH_MAX];
  if (realpath(path.c_str(), real) == nullptr) {
    if (errno == ENOENT) return Errorf(ENOENT, "mount point {} does not exist", path);
    if (errno == ENOTCONN) {
      return Errorf(ENOTCONN,
                    "mount point {} is a dead FUSE mount (transport endpoint is not connected); "
                    "unmount it with 'fusermount3 -u {}'",
                    path, path);
    }
    return Errorf(errno, "mount point {}: {}", path, strerror(errno));
  }
  std::string canonical = real;
  struct stat st {};
  if (::stat(real, &st) != 0) return Errorf(errno, "mount point {}: {}", path, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return Errorf(ENOTDIR, "mount point {} is not a directory", path);
  bool busy = fuse::mount_device_of(canonical).has_value();
  if (!busy && canonical != "/") {
    struct stat parent {};
    busy = ::stat((canonical + "/..").c_str(), &parent) == 0 && parent.st_dev != st.st_dev;
  }
  if (busy) return Errorf(EBUSY, "{} is already a mount point", path);
  return canonical;
}

// Written once the filesystem is open (its lock held), removed at exit, so
// scripts can wait for the daemon to finish flushing.
class PidFile {
 public:
  explicit PidFile(std::string path) : path_(std::move(path)) {
    std::string text = fmt::format("{}\n", getpid());
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t ignored = ::write(fd, text.data(), text.size());
    (void)ignored;
    ::close(fd);
  }
  ~PidFile() { ::unlink(path_.c_str()); }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
};

// Tells whoever waits for the mount (the parent, or the terminal with -f)
// whether it became ready; only the first report counts.
class ReadyReport {
 public:
  explicit ReadyReport(std::function<void(const Status&)> sink) : sink_(std::move(sink)) {}
  void operator()(const Status& status) {
    std::call_once(once_, [&] { sink_(status); });
  }

 private:
  std::once_flag once_;
  std::function<void(const Status&)> sink_;
};

// Opens the filesystem, serves it until unmounted, and flushes it. Returns
// the exit status.
int serve(const MountRequest& request, ReadyReport& report) {
  FsOptions fs_options;
  fs_options.cache_bytes = request.options.cache_bytes;
  fs_options.dirty_bytes_limit = request.options.dirty_bytes_limit;
  fs_options.flush_interval_seconds = request.options.flush_interval_seconds;
  fs_options.backup_interval_seconds = request.options.backup_interval_seconds;
  fs_options.backups_kept = request.options.backups;
  fs_options.log = log_line;
  // The fs's background threads inherit a mask that blocks the stop signals,
  // so that those always reach the FUSE loop (see run_fuse).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  Result<std::unique_ptr<FileSystem>> fs = FileSystem::open(request.meta_dir, fs_options);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  if (!fs.ok()) {
    Status s = fs.status().code() == EBUSY
                   ? Errorf(EBUSY, "{} is in use by another frugalfs process", request.meta_dir)
                   : fs.status().WithContext(fmt::format("cannot open {}", request.meta_dir));
    log_line(s.ToString());
    report(s);
    return kExitFailure;
  }
  PidFile pid_file(request.meta_dir + "/" + kPidName);

  MountOptions mount;
  mount.mountpoint = request.mountpoint;
  mount.fuse_options = request.options.fuse_options;
  mount.foreground = request.foreground;
  mount.debug = request.debug;
  mount.max_threads = request.options.threads;
  mount.log = log_line;
  std::atomic<bool> ready{false};
  Status run = run_fuse(**fs, mount, [&] {
    ready = true;
    log_line(fmt::format("mounted {} on {}", request.meta_dir, request.mountpoint));
    report(Status::Ok());
  });
  // From here on a second Ctrl-C or SIGTERM must not cut the final flush
  // short (SIGKILL still does, losing at most the unflushed writes).
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

  int exit_status = kExitOk;
  if (!ready) {
    Status why = run.ok() ? Status::Error(EIO, "the mount ended before it was ready") : run;
    log_line(why.message());
    report(why);
    exit_status = kExitFailure;
  } else if (!run.ok()) {
    log_line(fmt::format("FUSE loop failed: {}", run.ToString()));
    exit_status = kExitFailure;
  } else {
    log_line("unmounted; writing out buffered data");
  }
  Status shutdown = (*fs)->shutdown();
  if (!shutdown.ok()) {
    log_line(fmt::format("shutdown failed, buffered data may be lost: {}", shutdown.ToString()));
    return kExitFailure;
  }
  if (ready) log_line("stopped cleanly");
  return exit_status;
}

int serve_in_foreground(const MountRequest& request) {
  ReadyReport report([](const Status& s) {
    if (!s.ok()) fmt::print(stderr, "frugalfs mount: {}\n", s.message());
  });
  return serve(request, report);
}

// Reads the child's report: "OK\n" or "ERR <message>\n".
std::string read_report(int fd) {
  std::string text;
  char buf[512];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

int serve_as_daemon(const MountRequest& request) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return fail(fmt::format("pipe: {}", strerror(errno)));
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return fail(fmt::format("fork: {}", strerror(errno)));

  if (pid > 0) {
    ::close(fds[1]);
    std::string text = read_report(fds[0]);
    ::close(fds[0]);
    if (text == "OK\n") return kExitOk;
    // Wait for the failed daemon to let go of the metadata directory, so a
    // retry right away does not find it busy.
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (text.starts_with("ERR ")) {
      while (!text.empty() && text.back() == '\n') text.pop_back();
      return fail(text.substr(4));
    }
    return fail(fmt::format("the daemon exited before the mount was ready; see {}/{}",
                            request.meta_dir, kLogName));
  }

  // The daemon.
  ::close(fds[0]);
  int report_fd = fds[1];
  auto send = [&report_fd](const Status& s) {
    std::string text = s.ok() ? "OK\n" : fmt::format("ERR {}\n", s.message());
    ssize_t ignored = ::write(report_fd, text.data(), text.size());
    (void)ignored;
    ::close(report_fd);
    report_fd = -1;
  };
  setsid();
  std::string log_path = request.meta_dir + "/" + kLogName;
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    send(Errorf(errno, "cannot open the log {}: {}", log_path, strerror(errno)));
    _exit(kExitFailure);
  }
  dup2(null_fd, STDIN_FILENO);
  dup2(null_fd, STDOUT_FILENO);
  dup2(log_fd, STDERR_FILENO);
  ::close(null_fd);
  ::close(log_fd);
  if (chdir("/") != 0) {
    send(Errorf(errno, "chdir /: {}", strerror(errno)));
    _exit(kExitFailure);
  }
  ReadyReport report(send);
  return serve(request, report);
}

}  // namespace

int cmd_mount(int argc, char** argv) {
  static const option kLongOptions[] = {
      {"foreground", no_argument, nullptr, 'f'},
      {"debug", no_argument, nullptr, 'd'},
      {"options", required_argument, nullptr, 'o'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  MountRequest request;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":fdo:h", kLongOptions, nullptr)) != -1) {
    switch (c) {
      case 'f':
        request.foreground = true;
        break;
      case 'd':
        request.debug = true;
        request.foreground = true;
        break;
      case 'o':
        if (Status s = add_mount_options(optarg, request.options); !s.ok()) {
          return fail(s.message());
        }
        break;
      case 'h':
        fputs(kMountUsage, stdout);
        return kExitOk;
      case ':':
        return usage_error(fmt::format("option '{}' needs a value", argv[optind - 1]));
      default:
        return usage_error(fmt::format("unknown option '{}'", argv[optind - 1]));
    }
  }
  if (argc - optind != 2) return usage_error("expected META_DIR and MOUNTPOINT");

  request.meta_dir = absolute_path(argv[optind]);
  if (Status s = check_meta_dir(request.meta_dir); !s.ok()) return fail(s.message());
  Result<std::string> mountpoint = check_mountpoint(argv[optind + 1]);
  if (!mountpoint.ok()) return fail(mountpoint.status().message());
  request.mountpoint = *mountpoint;

  tune_memory_allocator();
  return request.foreground ? serve_in_foreground(request) : serve_as_daemon(request);
}

}  // namespace frugalfs::cli
