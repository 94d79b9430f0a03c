// fsck: the namespace (inodes, directory entries, the orphan list) and the
// extents of each file.
//
// Entries are found by listing every directory inode; an entry stored under
// a parent that is not a directory inode is not seen (the meta layer has no
// scan of all entries yet).

#include <sys/stat.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "check/fsck_internal.h"

namespace frugalfs::check {

namespace {

struct InodeInfo {
  uint64_t size = 0;
  uint64_t data_bytes = 0;
  uint64_t parent = 0;  // directories: the directory holding it
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t names = 0;    // entries naming it
  uint32_t subdirs = 0;  // entries in it naming a directory
  bool orphan = false;   // in the orphan list
};

std::string_view type_name(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "unknown type";
  }
}

}  // namespace

Status check_namespace(Checker& c) {
  std::unordered_map<uint64_t, InodeInfo> inodes;
  std::vector<uint64_t> order;  // key order, for a stable report
  FRUGAL_TRY(c.meta.list_inodes([&](const InodeRecord& r) {
    inodes[r.ino] = InodeInfo{r.size, r.data_bytes, r.parent, r.mode, r.nlink, 0, 0, false};
    order.push_back(r.ino);
    return true;
  }));
  c.report.inodes = order.size();

  FRUGAL_TRY(c.meta.list_orphans([&](uint64_t ino) {
    auto it = inodes.find(ino);
    if (it == inodes.end()) {
      c.error("dangling-orphan", "orphan list names inode {}, which does not exist", ino);
    } else {
      it->second.orphan = true;
    }
    return true;
  }));

  auto root = inodes.find(kRootInode);
  if (root == inodes.end()) {
    c.error("root", "root inode {} does not exist", kRootInode);
  } else if (!S_ISDIR(root->second.mode)) {
    c.error("root", "root inode {} is a {}, not a directory", kRootInode,
            type_name(root->second.mode));
  }
  if (root != inodes.end() && root->second.parent != kRootInode) {
    c.error("dir-parent", "root directory records parent {}, not itself", root->second.parent);
  }

  // Directory entries.
  std::unordered_set<uint64_t> cookies;
  for (uint64_t dir : order) {
    if (!S_ISDIR(inodes[dir].mode)) continue;
    uint32_t subdirs = 0;
    FRUGAL_TRY(c.meta.list_dir(dir, 0, [&](const DirEntry& e) {
      ++c.report.dentries;
      if (e.name.empty() || e.name == "." || e.name == ".." ||
          e.name.find('/') != std::string::npos || e.name.find('\0') != std::string::npos ||
          e.name.size() > 255) {
        c.error("dentry-name", "directory {}: invalid entry name '{}'", dir, e.name);
      }
      if (e.cookie <= 2 || !cookies.insert(e.cookie).second) {
        c.error("dentry-cookie", "directory {}: entry '{}' has a {} readdir cookie {}", dir,
                e.name, e.cookie <= 2 ? "reserved" : "duplicate", e.cookie);
      }
      auto child = inodes.find(e.ino);
      if (child == inodes.end()) {
        c.error("dangling-dentry", "directory {}: entry '{}' names inode {}, which does not exist",
                dir, e.name, e.ino);
        return true;
      }
      InodeInfo& ci = child->second;
      if (e.type != (ci.mode & S_IFMT)) {
        c.error("dentry-type", "directory {}: entry '{}' says {} but inode {} is a {}", dir,
                e.name, type_name(e.type), e.ino, type_name(ci.mode));
      }
      if (e.ino == kRootInode) {
        c.error("dentry-root", "directory {}: entry '{}' names the root directory", dir, e.name);
      }
      ++ci.names;
      if (S_ISDIR(ci.mode)) {
        ++subdirs;
        if (ci.parent != dir) {
          c.error("dir-parent", "directory {} is entry '{}' of directory {} but records parent {}",
                  e.ino, e.name, dir, ci.parent);
        }
      }
      return true;
    }));
    inodes[dir].subdirs = subdirs;
  }

  // Link counts, reachability and extents.
  for (uint64_t ino : order) {
    const InodeInfo& r = inodes[ino];
    const bool dir = S_ISDIR(r.mode);
    const bool unlinked_open = r.orphan && r.nlink == 0 && r.names == 0;
    if (ino != kRootInode && r.names == 0 && !r.orphan) {
      c.error("orphan-inode", "inode {} ({}, nlink {}) is named by no entry and not in the orphan list",
              ino, type_name(r.mode), r.nlink);
    } else if (dir && !unlinked_open && r.nlink != 2 + r.subdirs) {
      c.error("nlink", "directory {}: nlink {}, expected {} (2 + {} subdirectories)", ino, r.nlink,
              2 + r.subdirs, r.subdirs);
    } else if (!dir && !unlinked_open && r.nlink != r.names) {
      c.error("nlink", "inode {} ({}): nlink {}, but {} entries name it", ino, type_name(r.mode),
              r.nlink, r.names);
    }
    if (dir && r.names > 1) {
      c.error("dir-hardlink", "directory {} is named by {} entries", ino, r.names);
    }
    if (r.orphan && r.nlink > 0) {
      c.warn("orphan-linked", "inode {} is in the orphan list but has nlink {}", ino, r.nlink);
    }

    uint64_t prev_end = 0;
    uint64_t data_bytes = 0;
    uint64_t count = 0;
    FRUGAL_TRY(c.meta.list_extents(ino, 0, [&](const Extent& e) {
      ++count;
      data_bytes += e.length;
      if (e.length == 0) {
        c.error("extent-length", "inode {}: empty extent at offset {}", ino, e.file_offset);
      }
      if (e.file_offset < prev_end) {
        c.error("extent-overlap", "inode {}: extent [{}, {}) overlaps or precedes the previous one "
                "(ending at {})", ino, e.file_offset, e.end(), prev_end);
      }
      prev_end = std::max(prev_end, e.end());
      if (e.end() > r.size) {
        c.error("extent-beyond-size", "inode {}: extent [{}, {}) goes beyond the file size {}", ino,
                e.file_offset, e.end(), r.size);
      }
      auto chunk = c.chunks.find(e.chunk);
      if (chunk == c.chunks.end()) {
        c.error("missing-chunk", "inode {}: extent [{}, {}) names chunk {}, which does not exist",
                ino, e.file_offset, e.end(), short_id(e.chunk));
        return true;
      }
      ++chunk->second.refs;
      if (uint64_t{e.chunk_offset} + e.length > chunk->second.raw_len) {
        c.error("extent-chunk-range", "inode {}: extent [{}, {}) reads bytes [{}, {}) of chunk {} "
                "of {} bytes", ino, e.file_offset, e.end(), e.chunk_offset,
                uint64_t{e.chunk_offset} + e.length, short_id(e.chunk), chunk->second.raw_len);
      }
      return true;
    }));
    c.report.extents += count;
    if (count > 0 && !S_ISREG(r.mode)) {
      c.error("extent-not-file", "inode {} is a {} but has {} extents", ino, type_name(r.mode),
              count);
    }
    if (data_bytes != r.data_bytes) {
      c.error("data-bytes", "inode {}: data_bytes {}, but its extents cover {} bytes", ino,
              r.data_bytes, data_bytes);
    }
  }
  return Status::Ok();
}

}  // namespace frugalfs::check
