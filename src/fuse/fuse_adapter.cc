// Session setup: the operation table, capability negotiation in init, the
// mount and the multithreaded loop.
#include "fuse/fuse_adapter.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <fuse_lowlevel.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "fuse/mountinfo.h"
#include "fuse/ops.h"

namespace frugalfs {

namespace fuse {
namespace {

constexpr unsigned kMaxWrite = 1u << 20;
constexpr unsigned kMaxIdleThreads = 10;
constexpr const char* kBaseOptions = "default_permissions,fsname=frugalfs,subtype=frugalfs";

// libfuse reports errors through its log function only. While a session is
// being set up, its messages are captured so they can be returned as the
// Status; afterwards they go to stderr as libfuse would print them.
std::mutex log_mu;
std::string* log_capture = nullptr;  // guarded by log_mu

void log_sink(enum fuse_log_level /*level*/, const char* format, va_list ap) {
  char line[2048];
  vsnprintf(line, sizeof(line), format, ap);
  std::lock_guard<std::mutex> lock(log_mu);
  if (log_capture != nullptr) {
    log_capture->append(line);
  } else {
    fputs(line, stderr);
  }
}

class LogCapture {
 public:
  LogCapture() {
    std::lock_guard<std::mutex> lock(log_mu);
    log_capture = &text_;
    fuse_set_log_func(log_sink);
  }
  ~LogCapture() { stop(); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  void stop() {
    std::lock_guard<std::mutex> lock(log_mu);
    if (log_capture == &text_) log_capture = nullptr;
  }
  // What libfuse said, on one line, without its "fuse: " prefixes.
  std::string text() const {
    std::lock_guard<std::mutex> lock(log_mu);
    std::string out;
    size_t start = 0;
    while (start < text_.size()) {
      size_t end = text_.find('\n', start);
      if (end == std::string::npos) end = text_.size();
      std::string_view line(text_.data() + start, end - start);
      start = end + 1;
      if (line.starts_with("fuse: ")) line.remove_prefix(6);
      if (line.empty()) continue;
      if (!out.empty()) out += "; ";
      out += line;
    }
    return out;
  }

 private:
  std::string text_;
};

void op_init(void* /*userdata*/, struct fuse_conn_info* conn) {
  conn->max_write = kMaxWrite;
  // fs.open honours O_TRUNC, so the kernel may pass it instead of a setattr.
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  // The fs stores ACLs, keeps the mode in sync with them and inherits default
  // ACLs, which replace the umask: so the kernel enforces ACLs and leaves the
  // umask to the fs (it passes it in each create request).
  const unsigned acl_caps = FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  if ((conn->capable & acl_caps) == acl_caps) conn->want |= acl_caps;
  // The kernel's page cache does not buffer writes for us (every write
  // reaches the fs's own write buffer); no NFS export; and the kernel, not
  // the fs, clears setuid/setgid bits on write and chown.
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_EXPORT_SUPPORT |
                                       FUSE_CAP_HANDLE_KILLPRIV);
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write = op_write;
  // No flush: close(2) implies nothing here (durability is fsync's, and no
  // lock is held by the fs), and the kernel stops sending FLUSH once it is
  // answered ENOSYS: one round trip fewer on every close.
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsyncdir;
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
  ops.statfs = op_statfs;
  return ops;
}

// The kernel reads ahead only 128 KiB on a FUSE mount by default; 1 MiB
// requests nearly double sequential read throughput. Best effort (root only);
// must run after INIT is answered, which lowers it to what INIT negotiated.
void raise_readahead(const std::string& mountpoint) {
  std::optional<std::string> device = mount_device_of(mountpoint);
  if (!device) return;
  std::string path = "/sys/class/bdi/" + *device + "/read_ahead_kb";
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  constexpr char kValue[] = "1024";
  ssize_t ignored = ::write(fd, kValue, sizeof(kValue) - 1);
  (void)ignored;
  ::close(fd);
}

// The multithreaded request loop; returns when the session ends.
int serve_requests(fuse_session* se, unsigned max_threads) {
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 0);
  unsigned idle = kMaxIdleThreads;
  if (max_threads > 0) {
    fuse_loop_cfg_set_max_threads(config, max_threads);
    idle = std::min(idle, max_threads);
  }
  fuse_loop_cfg_set_idle_threads(config, idle);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  return rc;
}

// Waits, on its own thread, until the mount serves requests: a stat of the
// mount point goes through the kernel, which holds it until INIT has been
// answered, and then through the request loop. Then tunes readahead and
// calls on_ready. When the mount goes away first, the stat fails and
// on_ready is not called.
class ReadyWatch {
 public:
  ReadyWatch(std::string mountpoint, std::function<void()> on_ready)
      : thread_([mountpoint = std::move(mountpoint), on_ready = std::move(on_ready)] {
          // Signals must reach the loop's threads, which end the loop on them.
          sigset_t stop_signals;
          sigemptyset(&stop_signals);
          for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop_signals, sig);
          pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
          struct stat st {};
          if (::stat(mountpoint.c_str(), &st) != 0) return;
          raise_readahead(mountpoint);
          try {
            if (on_ready) on_ready();
          } catch (const std::exception& e) {
            fmt::print(stderr, "frugalfs: on_ready failed: {}\n", e.what());
          } catch (...) {
            fmt::print(stderr, "frugalfs: on_ready failed\n");
          }
        }) {}
  ~ReadyWatch() { thread_.join(); }  // only after the mount is gone or ready
  ReadyWatch(const ReadyWatch&) = delete;
  ReadyWatch& operator=(const ReadyWatch&) = delete;

 private:
  std::thread thread_;
};

}  // namespace
}  // namespace fuse

Status run_fuse(FileSystem& fs, const MountOptions& options, std::function<void()> on_ready) {
  fuse::SessionContext ctx{&fs, options.log};

  std::vector<std::string> arg_strings = {"frugalfs", "-o", fuse::kBaseOptions};
  if (options.debug) arg_strings.push_back("-d");
  for (const std::string& option : options.fuse_options) {
    arg_strings.push_back("-o");
    arg_strings.push_back(option);
  }
  std::vector<char*> argv;
  for (std::string& s : arg_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(arg_strings.size()), argv.data());

  fuse::LogCapture capture;
  const fuse_lowlevel_ops ops = fuse::make_ops();
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), &ctx);
  fuse_opt_free_args(&args);
  if (se == nullptr) {
    std::string why = capture.text();
    return Errorf(EINVAL, "bad mount options: {}", why.empty() ? "rejected by libfuse" : why);
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    return Status::Error(EIO, "cannot install signal handlers");
  }
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
    std::string why = capture.text();
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Errorf(EIO, "cannot mount on {}: {}", options.mountpoint,
                  why.empty() ? "mount refused" : why);
  }
  capture.stop();

  int rc = 0;
  {
    // Joined after fuse_session_destroy, which aborts a stat still waiting.
    fuse::ReadyWatch watch(options.mountpoint, std::move(on_ready));
    rc = fuse::serve_requests(se, options.max_threads);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
  }
  // rc > 0 is the signal that ended the loop: a normal stop.
  if (rc < 0) return Errorf(-rc, "FUSE request loop failed");
  return Status::Ok();
}

}  // namespace frugalfs
