// Names and inodes: lookup/forget, attributes, and the operations that add,
// remove or move directory entries.
#include "fuse/attr_conversion.h"
#include "fuse/ops.h"

namespace frugalfs::fuse {

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "lookup", [&] {
    Result<Attr> attr = fs_of(req).lookup(parent, name);
    if (attr.ok()) return reply_entry(req, *attr);
    if (attr.status().code() == ENOENT) {
      // A negative entry: the kernel caches the absence for the timeout.
      fuse_entry_param e{};
      e.entry_timeout = kEntryTimeout;
      fuse_reply_entry(req, &e);
      return;
    }
    reply_status(req, attr.status());
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  guarded(
      req, "forget",
      [&] {
        fs_of(req).forget(ino, nlookup);
        fuse_reply_none(req);
      },
      Reply::kNone);
}

void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data* forgets) {
  guarded(
      req, "forget_multi",
      [&] {
        FileSystem& fs = fs_of(req);
        for (size_t i = 0; i < count; ++i) fs.forget(forgets[i].ino, forgets[i].nlookup);
        fuse_reply_none(req);
      },
      Reply::kNone);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* /*fi*/) {
  guarded(req, "getattr", [&] {
    Result<Attr> attr = fs_of(req).getattr(ino);
    if (!attr.ok()) return reply_status(req, attr.status());
    reply_attr(req, *attr);
  });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                struct fuse_file_info* /*fi*/) {
  guarded(req, "setattr", [&] {
    Result<Attr> updated = fs_of(req).setattr(ino, to_setattr_request(*attr, to_set));
    if (!updated.ok()) return reply_status(req, updated.status());
    reply_attr(req, *updated);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guarded(req, "readlink", [&] {
    Result<std::string> target = fs_of(req).readlink(ino);
    if (!target.ok()) return reply_status(req, target.status());
    fuse_reply_readlink(req, target->c_str());
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  guarded(req, "mknod", [&] {
    Result<Attr> attr = fs_of(req).mknod(parent, name, mode, rdev, caller_of(req));
    if (!attr.ok()) return reply_status(req, attr.status());
    reply_entry(req, *attr);
  });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  guarded(req, "mkdir", [&] {
    Result<Attr> attr = fs_of(req).mkdir(parent, name, mode, caller_of(req));
    if (!attr.ok()) return reply_status(req, attr.status());
    reply_entry(req, *attr);
  });
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  guarded(req, "symlink", [&] {
    Result<Attr> attr = fs_of(req).symlink(parent, name, link, caller_of(req));
    if (!attr.ok()) return reply_status(req, attr.status());
    reply_entry(req, *attr);
  });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  guarded(req, "link", [&] {
    Result<Attr> attr = fs_of(req).link(ino, new_parent, new_name);
    if (!attr.ok()) return reply_status(req, attr.status());
    reply_entry(req, *attr);
  });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "unlink", [&] { reply_status(req, fs_of(req).unlink(parent, name)); });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "rmdir", [&] { reply_status(req, fs_of(req).rmdir(parent, name)); });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
               const char* new_name, unsigned int flags) {
  guarded(req, "rename", [&] {
    reply_status(req, fs_of(req).rename(parent, name, new_parent, new_name, flags));
  });
}

}  // namespace frugalfs::fuse
