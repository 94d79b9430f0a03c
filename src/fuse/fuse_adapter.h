// Serves a FileSystem through libfuse's low-level API until the mount ends.
//
// The caller owns the FileSystem and calls its shutdown() after run_fuse()
// returns: run_fuse only stops the request loop and unmounts; flushing is the
// fs's business.
//
// Thread-safety: one run_fuse per process at a time (libfuse's signal
// handlers and log function are process-wide).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/fs.h"
#include "frugalfs/status.h"

namespace frugalfs {

struct MountOptions {
  std::string mountpoint;
  // Options for libfuse and the kernel (allow_other, ro, ...), one per entry,
  // added after "default_permissions,fsname=frugalfs,subtype=frugalfs".
  std::vector<std::string> fuse_options;
  bool foreground = true;  // informational: run_fuse itself never forks
  bool debug = false;      // libfuse prints every request on stderr
  unsigned max_threads = 0;  // worker threads; 0 keeps libfuse's default (10)
  // Where notable events go (exceptions in handlers, libfuse messages once
  // mounted). Defaults to stderr.
  std::function<void(std::string_view)> log;
};

// Creates the session, mounts, runs the multithreaded request loop until the
// mount goes away (fusermount3 -u, umount) or SIGINT/SIGTERM/SIGHUP, then
// unmounts. on_ready is called, from another thread, once a stat of the
// mount point has gone through the mount, i.e. the mount serves requests.
// Errors before that (unknown option, mount refused) come back as a Status
// whose message is libfuse's explanation; on_ready is then never called.
//
// Threads started before run_fuse (the fs's background work) should block
// SIGINT, SIGTERM and SIGHUP: a stop signal delivered to one of them is
// noticed by the loop only at the next request.
Status run_fuse(FileSystem& fs, const MountOptions& options, std::function<void()> on_ready);

}  // namespace frugalfs
