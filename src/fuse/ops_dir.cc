// Directory handles and listings. The fs keeps no state per open directory:
// a listing resumes from the cookie of the last entry the kernel received,
// which is what the kernel passes back as `off`.
#include <cstring>
#include <string>
#include <vector>

#include "fuse/attr_conversion.h"
#include "fuse/ops.h"

namespace frugalfs::fuse {

namespace {

bool is_dot_or_dotdot(std::string_view name) { return name == "." || name == ".."; }

// Fills one reply buffer of at most `size` bytes from the fs's listing.
void list_directory(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  FileSystem& fs = fs_of(req);
  thread_local std::vector<char> buffer;
  thread_local std::string name_z;  // fuse_add_direntry* want a C string
  // With `plus`, the inodes whose lookup the fs counted for this reply: those
  // the kernel takes, and "." and ".." which it does not.
  thread_local std::vector<uint64_t> counted;
  thread_local std::vector<uint64_t> not_taken;
  if (buffer.size() < size) buffer.resize(size);
  counted.clear();
  not_taken.clear();
  size_t used = 0;

  Status status = fs.readdir(
      ino, static_cast<uint64_t>(off), plus,
      [&](std::string_view name, uint64_t child_ino, uint32_t type, uint64_t entry_cookie,
          const Attr* attr) {
        name_z.assign(name);
        char* at = buffer.data() + used;
        size_t room = size - used;
        size_t need;
        if (plus) {
          fuse_entry_param e{};
          if (attr != nullptr) {
            e.attr = to_stat(*attr);
            e.generation = attr->generation;
          } else {
            e.attr.st_mode = dirent_mode(type);
          }
          e.attr.st_ino = child_ino;
          // Without attributes the fs counted no lookup, so the kernel must not
          // take a reference either: ino 0 makes it a plain entry.
          e.ino = attr != nullptr ? child_ino : 0;
          e.attr_timeout = kAttrTimeout;
          e.entry_timeout = kEntryTimeout;
          need = fuse_add_direntry_plus(req, at, room, name_z.c_str(), &e,
                                        static_cast<off_t>(entry_cookie));
        } else {
          struct stat st {};
          st.st_ino = child_ino;
          st.st_mode = dirent_mode(type);
          need = fuse_add_direntry(req, at, room, name_z.c_str(), &st,
                                   static_cast<off_t>(entry_cookie));
        }
        if (need > room) return false;  // full: this entry is not sent, nor counted
        used += need;
        // No call back into the fs from here: it may hold locks while visiting.
        if (plus && attr != nullptr) {
          (is_dot_or_dotdot(name) ? not_taken : counted).push_back(child_ino);
        }
        return true;
      });
  // The kernel never takes a reference for "." and "..", so it will not forget
  // them either: give back the ones the fs counted.
  for (uint64_t child : not_taken) fs.forget(child, 1);
  if (!status.ok() && used == 0) return reply_status(req, status);
  // On an error after some entries, send those; the next call reports it.
  if (fuse_reply_buf(req, buffer.data(), used) != 0) {
    for (uint64_t child : counted) fs.forget(child, 1);
  }
}

}  // namespace

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  guarded(req, "opendir", [&] {
    // Fail early on a missing inode or a non-directory, as opendir(3) would.
    Result<Attr> attr = fs_of(req).getattr(ino);
    if (!attr.ok()) return reply_status(req, attr.status());
    if (!S_ISDIR(attr->mode)) return reply_status(req, Status::Error(ENOTDIR, "not a directory"));
    fi->fh = 0;
    fi->cache_readdir = 0;
    fi->keep_cache = 0;
    fuse_reply_open(req, fi);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info* /*fi*/) {
  guarded(req, "readdir", [&] { list_directory(req, ino, size, off, /*plus=*/false); });
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info* /*fi*/) {
  guarded(req, "readdirplus", [&] { list_directory(req, ino, size, off, /*plus=*/true); });
}

void op_releasedir(fuse_req_t req, fuse_ino_t /*ino*/, struct fuse_file_info* /*fi*/) {
  fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, struct fuse_file_info* /*fi*/) {
  guarded(req, "fsyncdir", [&] { reply_status(req, fs_of(req).fsyncdir(ino)); });
}

}  // namespace frugalfs::fuse
