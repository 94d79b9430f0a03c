// Open files: open/create hand out the fs's file handle in fi->fh; read,
// write, release and fsync pass it back.
#include <sys/uio.h>

#include <cstring>
#include <span>
#include <vector>

#include "fuse/attr_conversion.h"
#include "fuse/ops.h"

namespace frugalfs::fuse {

namespace {

// Page-cache policy for a new handle: no direct I/O, and the kernel keeps the
// file's cached pages from earlier opens (keep_cache 1), so a re-read comes
// from memory. That is safe because a file's bytes change only through this
// mount, and the kernel updates or drops its pages on each such change:
// writes go through the page cache to us (a failed write's pages are
// dropped), truncates and O_TRUNC opens cut the cached pages, and inode
// numbers are never reused while mounted, so a new file under an old name is
// a new kernel inode. test/integration/page_cache.sh checks each case. (The
// daemon never changes a file's bytes on its own, and fsck and recover run
// only while it is unmounted.)
void set_handle(struct fuse_file_info* fi, uint64_t fh) {
  fi->fh = fh;
  fi->keep_cache = 1;
  fi->direct_io = 0;
}

}  // namespace

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  guarded(req, "open", [&] {
    FileSystem& fs = fs_of(req);
    Result<uint64_t> fh = fs.open(ino, fi->flags);
    if (!fh.ok()) return reply_status(req, fh.status());
    set_handle(fi, *fh);
    // The open was interrupted: nobody will release this handle but us.
    if (fuse_reply_open(req, fi) != 0) fs.release(ino, *fh).IgnoreError();
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               struct fuse_file_info* fi) {
  guarded(req, "create", [&] {
    FileSystem& fs = fs_of(req);
    Result<FileSystem::Created> created = fs.create(parent, name, mode, fi->flags, caller_of(req));
    if (!created.ok()) return reply_status(req, created.status());
    set_handle(fi, created->fh);
    fuse_entry_param e{};
    e.ino = created->attr.ino;
    e.generation = created->attr.generation;
    e.attr = to_stat(created->attr);
    e.attr_timeout = kAttrTimeout;
    e.entry_timeout = kEntryTimeout;
    if (fuse_reply_create(req, &e, fi) != 0) {
      fs.release(e.ino, created->fh).IgnoreError();
      fs.forget(e.ino, 1);
    }
  });
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  FileSystem& fs = fs_of(req);  // req is gone once answered
  const uint64_t fh = fi->fh;
  uint64_t forward_end = 0;  // set when a forward read was answered
  guarded(req, "read", [&] {
    // One buffer per worker thread, grown to the largest request (1 MiB).
    thread_local std::vector<uint8_t> buffer;
    if (buffer.size() < size) buffer.resize(size);
    // Stored bytes go to the kernel from where they are cached, not copied
    // into the buffer first.
    Result<FileSystem::ReadView> view = fs.read_view(
        ino, fh, static_cast<uint64_t>(off), std::span<uint8_t>(buffer.data(), size));
    if (!view.ok()) return reply_status(req, view.status());
    // A writev takes at most 1024 pieces (the reply's header is one): a
    // read of many tiny extents and holes is copied into one piece instead.
    constexpr size_t kMaxPieces = 256;
    if (view->pieces.size() > kMaxPieces) {
      size_t used = 0;
      for (std::span<const uint8_t> piece : view->pieces) {
        std::memmove(buffer.data() + used, piece.data(), piece.size());  // may be buffer itself
        used += piece.size();
      }
      view->pieces.assign(1, std::span<const uint8_t>(buffer.data(), used));
    }
    thread_local std::vector<iovec> iov;
    iov.clear();
    for (std::span<const uint8_t> piece : view->pieces) {
      iov.push_back({const_cast<uint8_t*>(piece.data()), piece.size()});
    }
    if (iov.empty()) {
      fuse_reply_buf(req, nullptr, 0);
    } else {
      fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
      if (view->forward) forward_end = static_cast<uint64_t>(off) + size;
    }
  });
  // After the reply, so that the reader does not wait for it.
  if (forward_end != 0) fs.read_ahead(ino, fh, forward_end);
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              struct fuse_file_info* fi) {
  guarded(req, "write", [&] {
    std::span<const uint8_t> data(reinterpret_cast<const uint8_t*>(buf), size);
    Result<size_t> n = fs_of(req).write(ino, fi->fh, static_cast<uint64_t>(off), data);
    if (!n.ok()) return reply_status(req, n.status());
    fuse_reply_write(req, *n);
  });
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  guarded(req, "release", [&] { reply_status(req, fs_of(req).release(ino, fi->fh)); });
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* /*fi*/) {
  guarded(req, "fsync", [&] { reply_status(req, fs_of(req).fsync(ino, datasync != 0)); });
}

}  // namespace frugalfs::fuse
