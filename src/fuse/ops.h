// Internal to the fuse layer: the low-level operation handlers (one group per
// ops_*.cc file) and the helpers they share.
//
// Every handler converts its arguments, makes one call on the FileSystem and
// ends in exactly one fuse_reply_* (fuse_reply_none for forget). Errors are
// replied as their errno. No exception leaves a handler: `guarded` turns one
// into EIO.
//
// Thread-safety: handlers run concurrently on libfuse's worker threads; they
// share nothing but the FileSystem, which is thread-safe.
#pragma once

#include <fuse_lowlevel.h>

#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "frugalfs/fs.h"
#include "frugalfs/status.h"

namespace frugalfs::fuse {

// The userdata of a session.
struct SessionContext {
  FileSystem* fs = nullptr;
  std::function<void(std::string_view)> log;
};

inline SessionContext& context_of(fuse_req_t req) {
  return *static_cast<SessionContext*>(fuse_req_userdata(req));
}
inline FileSystem& fs_of(fuse_req_t req) { return *context_of(req).fs; }

Caller caller_of(fuse_req_t req);

// Replies with the status's errno (EIO if it has none).
void reply_status(fuse_req_t req, const Status& status);
// Replies with a new entry; if the kernel does not take it (the request was
// interrupted), gives back the lookup reference the fs counted for it.
void reply_entry(fuse_req_t req, const Attr& attr);
void reply_attr(fuse_req_t req, const Attr& attr);

void log_exception(fuse_req_t req, const char* op, const char* what);

// Runs body; an escaping exception is logged and replied as EIO, or, with
// Reply::kNone, answered by fuse_reply_none (forget).
enum class Reply { kErrno, kNone };
template <typename Body>
void guarded(fuse_req_t req, const char* op, Body&& body, Reply reply = Reply::kErrno) noexcept {
  try {
    std::forward<Body>(body)();
    return;
  } catch (const std::exception& e) {
    log_exception(req, op, e.what());
  } catch (...) {
    log_exception(req, op, "unknown exception");
  }
  if (reply == Reply::kNone) {
    fuse_reply_none(req);
  } else {
    fuse_reply_err(req, EIO);
  }
}

// ops_namespace.cc
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data* forgets);
void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                struct fuse_file_info* fi);
void op_readlink(fuse_req_t req, fuse_ino_t ino);
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
               const char* new_name, unsigned int flags);

// ops_file.cc
void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               struct fuse_file_info* fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              struct fuse_file_info* fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi);

// ops_dir.cc
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info* fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info* fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi);

// ops_xattr.cc
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                 size_t size, int flags);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

// ops_statfs.cc
void op_statfs(fuse_req_t req, fuse_ino_t ino);

}  // namespace frugalfs::fuse
