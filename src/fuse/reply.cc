// Helpers shared by the handlers: caller identity, replies, exception logs.
#include <fmt/format.h>

#include "fuse/attr_conversion.h"
#include "fuse/ops.h"

namespace frugalfs::fuse {

Caller caller_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  // umask: with FUSE_CAP_DONT_MASK the kernel leaves it to the fs, which
  // applies it unless the parent has a default ACL.
  return Caller{static_cast<uint32_t>(ctx->uid), static_cast<uint32_t>(ctx->gid),
                static_cast<uint32_t>(ctx->umask)};
}

void reply_status(fuse_req_t req, const Status& status) {
  fuse_reply_err(req, status.ok() ? 0 : (status.code() > 0 ? status.code() : EIO));
}

void reply_entry(fuse_req_t req, const Attr& attr) {
  fuse_entry_param e{};
  e.ino = attr.ino;
  e.generation = attr.generation;
  e.attr = to_stat(attr);
  e.attr_timeout = kAttrTimeout;
  e.entry_timeout = kEntryTimeout;
  if (fuse_reply_entry(req, &e) != 0) fs_of(req).forget(attr.ino, 1);
}

void reply_attr(fuse_req_t req, const Attr& attr) {
  struct stat st = to_stat(attr);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void log_exception(fuse_req_t req, const char* op, const char* what) {
  try {
    const SessionContext& ctx = context_of(req);
    std::string line = fmt::format("fuse {}: exception: {}", op, what);
    if (ctx.log) {
      ctx.log(line);
    } else {
      fmt::print(stderr, "{}\n", line);
    }
  } catch (...) {
    // Logging is best effort; the request is still answered by the caller.
  }
}

}  // namespace frugalfs::fuse
