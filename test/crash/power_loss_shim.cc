// Crash-harness helper, preloaded into the daemon (LD_PRELOAD): records what
// the daemon does to one volume directory, so that after a SIGKILL the
// harness can also throw away what a power loss would (power_loss_apply).
//
//   FRUGALFS_POWER_LOSS_DIR  the volume directory to watch (absolute)
//   FRUGALFS_POWER_LOSS_LOG  the event log to append to
//
// Events, one line each, written before the call returns: M path (mkdir),
// C path (created by open), S path (fsync of a file or directory), Y path
// (syncfs through a descriptor on the watched volume's filesystem: everything
// before it is durable), R from to (rename), U path grave (unlink, done as a rename
// into DIR.grave so that a power loss can bring the file back). Other paths
// pass straight through.
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

namespace {

template <typename F>
F next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

struct Shim {
  std::string dir;
  std::string grave;
  int log_fd = -1;
  std::mutex mu;
  std::map<int, std::string> fds;
  std::atomic<uint64_t> graves{0};

  Shim() {
    const char* d = std::getenv("FRUGALFS_POWER_LOSS_DIR");
    const char* l = std::getenv("FRUGALFS_POWER_LOSS_LOG");
    if (!d || !l) return;
    dir = d;
    grave = dir + ".grave";
    auto real_open = next<int (*)(const char*, int, ...)>("open");
    log_fd = real_open(l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    auto real_mkdir = next<int (*)(const char*, mode_t)>("mkdir");
    real_mkdir(grave.c_str(), 0755);
  }
  bool watched(const char* path) const {
    return log_fd >= 0 && path && std::strncmp(path, dir.c_str(), dir.size()) == 0 &&
           (path[dir.size()] == '/' || path[dir.size()] == 0);
  }
  void event(const std::string& line) {
    std::string l = line + "\n";
    ssize_t n = ::write(log_fd, l.data(), l.size());
    (void)n;
  }
};

Shim& shim() {
  static Shim s;
  return s;
}

int do_open(const char* name, const char* path, int flags, mode_t mode) {
  auto real = next<int (*)(const char*, int, ...)>(name);
  Shim& s = shim();
  if (!s.watched(path)) return real(path, flags, mode);
  bool existed = (flags & O_CREAT) && ::access(path, F_OK) == 0;
  int fd = real(path, flags, mode);
  if (fd >= 0) {
    std::lock_guard lock(s.mu);
    s.fds[fd] = path;
    if ((flags & O_CREAT) && !existed) s.event(std::string("C ") + path);
  }
  return fd;
}

// After a sync through fd returned rc: logs `kind path` if it succeeded on a
// watched descriptor. Returns rc.
int log_sync(int rc, int fd, const char* kind) {
  Shim& s = shim();
  if (rc == 0 && s.log_fd >= 0) {
    std::lock_guard lock(s.mu);
    auto it = s.fds.find(fd);
    if (it != s.fds.end()) s.event(kind + it->second);
  }
  return rc;
}

}  // namespace

extern "C" {

// open's mode argument is there only with O_CREAT or O_TMPFILE.
#define FRUGAL_SHIM_OPEN(name)                                  \
  int name(const char* path, int flags, ...) {                  \
    mode_t mode = 0;                                            \
    if (flags & (O_CREAT | O_TMPFILE)) {                        \
      va_list ap;                                               \
      va_start(ap, flags);                                      \
      mode = va_arg(ap, mode_t);                                \
      va_end(ap);                                               \
    }                                                           \
    return do_open(#name, path, flags, mode);                   \
  }
FRUGAL_SHIM_OPEN(open)
FRUGAL_SHIM_OPEN(open64)
#undef FRUGAL_SHIM_OPEN

int fsync(int fd) {
  static auto real = next<int (*)(int)>("fsync");
  return log_sync(real(fd), fd, "S ");
}

// syncfs makes the whole filesystem durable, whichever volume's descriptor
// it goes through: the daemon syncs once per filesystem, not per volume.
int syncfs(int fd) {
  static auto real = next<int (*)(int)>("syncfs");
  int rc = real(fd);
  Shim& s = shim();
  struct stat through, watched;
  if (rc == 0 && s.log_fd >= 0 && ::fstat(fd, &through) == 0 && ::stat(s.dir.c_str(), &watched) == 0 &&
      through.st_dev == watched.st_dev) {
    std::lock_guard lock(s.mu);
    s.event("Y " + s.dir);
  }
  return rc;
}

int close(int fd) {
  static auto real = next<int (*)(int)>("close");
  Shim& s = shim();
  if (s.log_fd >= 0) {
    std::lock_guard lock(s.mu);
    s.fds.erase(fd);
  }
  return real(fd);
}

int rename(const char* from, const char* to) {
  static auto real = next<int (*)(const char*, const char*)>("rename");
  Shim& s = shim();
  if (!s.watched(from) && !s.watched(to)) return real(from, to);
  // Replacing an existing file would destroy what a power loss brings back.
  if (::access(to, F_OK) == 0) {
    std::string g = s.grave + "/" + std::to_string(s.graves.fetch_add(1));
    if (real(to, g.c_str()) != 0) return -1;
    s.event("U " + std::string(to) + " " + g);
  }
  int rc = real(from, to);
  if (rc == 0) s.event("R " + std::string(from) + " " + to);
  return rc;
}

int unlink(const char* path) {
  static auto real_unlink = next<int (*)(const char*)>("unlink");
  static auto real_rename = next<int (*)(const char*, const char*)>("rename");
  Shim& s = shim();
  if (!s.watched(path)) return real_unlink(path);
  std::string g = s.grave + "/" + std::to_string(s.graves.fetch_add(1));
  int rc = real_rename(path, g.c_str());
  if (rc == 0) s.event("U " + std::string(path) + " " + g);
  return rc;
}

int mkdir(const char* path, mode_t mode) {
  static auto real = next<int (*)(const char*, mode_t)>("mkdir");
  Shim& s = shim();
  int rc = real(path, mode);
  if (rc == 0 && s.watched(path)) s.event(std::string("M ") + path);
  return rc;
}

}  // extern "C"
