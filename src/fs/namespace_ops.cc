// Names: create, link, unlink, rename and list directory entries. Each
// operation is one metadata transaction.

#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include "fs/fs_state.h"
#include "fs/posix_acl.h"

namespace frugalfs {

namespace {

Result<InodeRecord> directory(MetaStore::Txn& txn, uint64_t ino) {
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord record, txn.get_inode(ino));
  if (!S_ISDIR(record.mode)) return Errorf(ENOTDIR, "inode {} is not a directory", ino);
  return record;
}

void touch_dir(InodeRecord& dir, int64_t now) {
  dir.mtime_ns = now;
  dir.ctime_ns = now;
}

// Creates an inode named `name` in `parent`.
Result<InodeRecord> create_node(FileSystem::State& s, uint64_t parent, std::string_view name,
                                uint32_t mode, uint64_t rdev, std::string_view target,
                                const Caller& caller) {
  FRUGAL_TRY(check_name(name));
  auto txn = s.meta->begin();
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord dir, directory(*txn, parent));
  if (dir.nlink == 0) return Errorf(ENOENT, "directory {} was removed", parent);
  auto existing = txn->get_dentry(parent, name);
  if (existing.ok()) return Errorf(EEXIST, "'{}' exists", name);
  if (existing.status().code() != ENOENT) return existing.status();

  // Default ACL inheritance, or else the umask (the kernel leaves both to
  // filesystems that handle POSIX ACLs).
  std::string default_acl;
  if (!S_ISLNK(mode)) {
    auto inherited = txn->get_xattr(parent, kAclDefaultXattr);
    if (inherited.ok()) {
      default_acl = std::move(*inherited);
    } else if (inherited.status().code() != ENODATA) {
      return inherited.status();
    }
  }
  std::vector<AclEntry> access_acl;
  if (!default_acl.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(access_acl, parse_acl(default_acl));
    uint32_t perm = mode & 0777;
    acl_inherit(access_acl, &perm);
    mode = (mode & ~0777u) | perm;
  } else if (!S_ISLNK(mode)) {
    mode &= ~(caller.umask & 0777);
  }

  const int64_t now = fs_now_ns();
  InodeRecord r;
  r.ino = s.meta->allocate_inode();
  r.mode = mode;
  r.uid = caller.uid;
  r.gid = caller.gid;
  if (dir.mode & S_ISGID) {  // BSD group semantics in setgid directories
    r.gid = dir.gid;
    if (S_ISDIR(mode)) r.mode |= S_ISGID;
  }
  r.nlink = S_ISDIR(mode) ? 2 : 1;
  r.rdev = rdev;
  r.atime_ns = r.mtime_ns = r.ctime_ns = now;
  r.generation = 1;
  if (S_ISDIR(mode)) r.parent = parent;
  r.symlink_target = std::string(target);
  txn->put_inode(r);
  if (!access_acl.empty() && !acl_is_minimal(access_acl)) {
    txn->put_xattr(r.ino, kAclAccessXattr, encode_acl(access_acl));
  }
  if (!default_acl.empty() && S_ISDIR(mode)) txn->put_xattr(r.ino, kAclDefaultXattr, default_acl);
  txn->put_dentry(parent, DirEntry{std::string(name), r.ino, r.mode & S_IFMT, s.meta->allocate_cookie()});
  touch_dir(dir, now);
  if (S_ISDIR(mode)) ++dir.nlink;
  txn->put_inode(dir);
  FRUGAL_TRY(txn->commit());
  return r;
}

// Drops one link of `child` (named in a directory that is being changed in
// txn). When that was its last link, the inode is deleted in txn if
// delete_now, or else kept as an orphan that purge_if_unreferenced deletes
// once nothing references it. Returns true when the inode is left without
// links.
Result<bool> unlink_inode(FileSystem::State& s, MetaStore::Txn& txn, InodeRecord& child,
                          int64_t now, bool delete_now) {
  bool gone;
  if (S_ISDIR(child.mode)) {
    child.nlink = 0;
    gone = true;
  } else {
    child.nlink -= std::min<uint32_t>(child.nlink, 1);
    gone = child.nlink == 0;
  }
  child.ctime_ns = now;
  if (gone && delete_now) {
    FRUGAL_TRY(s.delete_inode_contents(txn, child.ino));
  } else {
    txn.put_inode(child);
    if (gone) txn.put_orphan(child.ino);
  }
  return gone;
}

}  // namespace

Result<Attr> FileSystem::mknod(uint64_t parent, std::string_view name, uint32_t mode,
                               uint64_t rdev, const Caller& caller) {
  if (S_ISDIR(mode) || S_ISLNK(mode)) return Errorf(EINVAL, "mknod of a directory or symlink");
  if ((mode & S_IFMT) == 0) mode |= S_IFREG;
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, create_node(*state_, parent, name, mode, rdev, "", caller));
  return state_->attr_with_lookup(r);
}

Result<Attr> FileSystem::mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                               const Caller& caller) {
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r, create_node(*state_, parent, name, S_IFDIR | (mode & 07777),
                                                     0, "", caller));
  return state_->attr_with_lookup(r);
}

Result<Attr> FileSystem::symlink(uint64_t parent, std::string_view name, std::string_view target,
                                 const Caller& caller) {
  if (target.empty() || target.size() > 4095) return Errorf(ENAMETOOLONG, "bad symlink target length");
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord r,
                          create_node(*state_, parent, name, S_IFLNK | 0777, 0, target, caller));
  return state_->attr_with_lookup(r);
}

Result<Attr> FileSystem::link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  FRUGAL_TRY(check_name(new_name));
  InodeRecord r;
  {
    auto txn = state_->meta->begin();
    FRUGAL_ASSIGN_OR_RETURN(r, txn->get_inode(ino));
    if (S_ISDIR(r.mode)) return Errorf(EPERM, "hard links to directories are not allowed");
    if (r.nlink == 0) return Errorf(ENOENT, "inode {} was unlinked", ino);
    if (r.nlink >= 65000) return Errorf(EMLINK, "too many links");
    FRUGAL_ASSIGN_OR_RETURN(InodeRecord dir, directory(*txn, new_parent));
    auto existing = txn->get_dentry(new_parent, new_name);
    if (existing.ok()) return Errorf(EEXIST, "'{}' exists", new_name);
    if (existing.status().code() != ENOENT) return existing.status();
    const int64_t now = fs_now_ns();
    ++r.nlink;
    r.ctime_ns = now;
    txn->put_inode(r);
    txn->put_dentry(new_parent, DirEntry{std::string(new_name), ino, r.mode & S_IFMT,
                                         state_->meta->allocate_cookie()});
    touch_dir(dir, now);
    txn->put_inode(dir);
    FRUGAL_TRY(txn->commit());
  }
  return state_->attr_with_lookup(r);
}

// An unlink deletes the inode at once when nothing but the kernel's lookups
// references it (no open handle, no flush of it in progress): one transaction
// instead of two (unlink, then delete at the FORGET). The inode's in-memory
// state is taken (made if absent: every open goes through it) and locked
// before the transaction begins (the lock order), so the child is looked up
// first and looked up again inside the transaction. While the state is
// locked and in the table, no open can start.
// Directories stay until the FORGET: a process may still stand in one.
static Status remove_entry(FileSystem::State& s, uint64_t parent, std::string_view name,
                           bool want_dir) {
  for (;;) {
    FRUGAL_ASSIGN_OR_RETURN(DirEntry seen, s.meta->get_dentry(parent, name));
    FRUGAL_ASSIGN_OR_RETURN(InodeTable::Ptr state, s.state_for(seen.ino));
    std::unique_lock state_lock(state->mu);
    if (state->detached) continue;  // evicted meanwhile: take the table's new one

    auto txn = s.meta->begin();
    FRUGAL_ASSIGN_OR_RETURN(InodeRecord dir, directory(*txn, parent));
    FRUGAL_ASSIGN_OR_RETURN(DirEntry entry, txn->get_dentry(parent, name));
    if (entry.ino != seen.ino) continue;  // replaced meanwhile: lock the new one
    FRUGAL_ASSIGN_OR_RETURN(InodeRecord child, txn->get_inode(entry.ino));
    if (want_dir && !S_ISDIR(child.mode)) return Errorf(ENOTDIR, "'{}' is not a directory", name);
    if (!want_dir && S_ISDIR(child.mode)) return Errorf(EISDIR, "'{}' is a directory", name);
    if (want_dir) {
      FRUGAL_ASSIGN_OR_RETURN(bool empty, txn->dir_empty(child.ino));
      if (!empty) return Errorf(ENOTEMPTY, "directory '{}' is not empty", name);
    }
    const bool delete_now = !S_ISDIR(child.mode) && state->opens == 0 && !state->busy();
    const int64_t now = fs_now_ns();
    txn->delete_dentry(parent, entry);
    touch_dir(dir, now);
    if (want_dir) --dir.nlink;
    txn->put_inode(dir);
    FRUGAL_ASSIGN_OR_RETURN(bool gone, unlink_inode(s, *txn, child, now, delete_now));
    FRUGAL_TRY(txn->commit());
    txn.reset();
    uint64_t dropped = 0;
    if (gone && delete_now) {
      // No open can start any more (add_open refuses), unflushed bytes are
      // dropped, and getattr answers from the last record until the FORGET.
      state->deleted = true;
      state->removed = child;
      dropped = state->dirty.bytes();
      state->dirty.clear();
    }
    state_lock.unlock();
    if (dropped) s.account_dirty(-static_cast<int64_t>(dropped));
    if (gone && !delete_now) return s.purge_if_unreferenced(child.ino);
    s.inodes.evict_if_idle(child.ino);  // a state nothing references any more
    return Status::Ok();
  }
}

Status FileSystem::unlink(uint64_t parent, std::string_view name) {
  return remove_entry(*state_, parent, name, /*want_dir=*/false);
}

Status FileSystem::rmdir(uint64_t parent, std::string_view name) {
  return remove_entry(*state_, parent, name, /*want_dir=*/true);
}

Status FileSystem::rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                          std::string_view new_name, unsigned flags) {
  State& s = *state_;
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Errorf(EINVAL, "unsupported rename flags");
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) {
    return Errorf(EINVAL, "RENAME_NOREPLACE with RENAME_EXCHANGE");
  }
  FRUGAL_TRY(check_name(new_name));
  uint64_t replaced_ino = 0;
  bool replaced_gone = false;
  {
    auto txn = s.meta->begin();
    FRUGAL_ASSIGN_OR_RETURN(InodeRecord from_dir, directory(*txn, parent));
    FRUGAL_ASSIGN_OR_RETURN(DirEntry entry, txn->get_dentry(parent, name));
    FRUGAL_ASSIGN_OR_RETURN(InodeRecord child, txn->get_inode(entry.ino));
    const bool same_dir = parent == new_parent;
    InodeRecord to_dir_record;
    if (!same_dir) {
      FRUGAL_ASSIGN_OR_RETURN(to_dir_record, directory(*txn, new_parent));
    }
    InodeRecord& to_dir = same_dir ? from_dir : to_dir_record;
    // A directory must not move below itself (the kernel checks this too).
    if (!same_dir) {
      for (uint64_t at = new_parent; at != kRootInode;) {
        if (at == child.ino) return Errorf(EINVAL, "cannot move a directory below itself");
        FRUGAL_ASSIGN_OR_RETURN(InodeRecord up, txn->get_inode(at));
        if (up.parent == 0 || up.parent == at) break;
        at = up.parent;
      }
    }
    auto target = txn->get_dentry(new_parent, new_name);
    if (!target.ok() && target.status().code() != ENOENT) return target.status();
    const int64_t now = fs_now_ns();

    if (flags & RENAME_EXCHANGE) {
      if (!target.ok()) return Errorf(ENOENT, "'{}' does not exist", new_name);
      FRUGAL_ASSIGN_OR_RETURN(InodeRecord other, txn->get_inode(target->ino));
      txn->put_dentry(parent, DirEntry{std::string(name), other.ino, other.mode & S_IFMT,
                                       s.meta->allocate_cookie()});
      txn->put_dentry(new_parent, DirEntry{std::string(new_name), child.ino, child.mode & S_IFMT,
                                           s.meta->allocate_cookie()});
      if (S_ISDIR(child.mode)) child.parent = new_parent;
      if (S_ISDIR(other.mode)) other.parent = parent;
      if (!same_dir && S_ISDIR(child.mode) != S_ISDIR(other.mode)) {
        if (S_ISDIR(child.mode)) {
          --from_dir.nlink;
          ++to_dir.nlink;
        } else {
          ++from_dir.nlink;
          --to_dir.nlink;
        }
      }
      child.ctime_ns = other.ctime_ns = now;
      txn->put_inode(child);
      txn->put_inode(other);
    } else {
      if (target.ok()) {
        if (flags & RENAME_NOREPLACE) return Errorf(EEXIST, "'{}' exists", new_name);
        if (target->ino == child.ino) return Status::Ok();  // two links of one inode
        FRUGAL_ASSIGN_OR_RETURN(InodeRecord victim, txn->get_inode(target->ino));
        if (S_ISDIR(child.mode) && !S_ISDIR(victim.mode)) {
          return Errorf(ENOTDIR, "'{}' is not a directory", new_name);
        }
        if (!S_ISDIR(child.mode) && S_ISDIR(victim.mode)) {
          return Errorf(EISDIR, "'{}' is a directory", new_name);
        }
        if (S_ISDIR(victim.mode)) {
          FRUGAL_ASSIGN_OR_RETURN(bool empty, txn->dir_empty(victim.ino));
          if (!empty) return Errorf(ENOTEMPTY, "directory '{}' is not empty", new_name);
          --to_dir.nlink;
        }
        txn->delete_dentry(new_parent, *target);
        // Kept as an orphan, deleted below if nothing references it (its
        // state could not be locked before the transaction).
        FRUGAL_ASSIGN_OR_RETURN(replaced_gone,
                                unlink_inode(s, *txn, victim, now, /*delete_now=*/false));
        replaced_ino = victim.ino;
      }
      txn->delete_dentry(parent, entry);
      txn->put_dentry(new_parent, DirEntry{std::string(new_name), child.ino, child.mode & S_IFMT,
                                           s.meta->allocate_cookie()});
      if (S_ISDIR(child.mode) && !same_dir) {
        --from_dir.nlink;
        ++to_dir.nlink;
      }
      if (S_ISDIR(child.mode)) child.parent = new_parent;
      child.ctime_ns = now;
      txn->put_inode(child);
    }
    touch_dir(from_dir, now);
    txn->put_inode(from_dir);
    if (!same_dir) {
      touch_dir(to_dir, now);
      txn->put_inode(to_dir);
    }
    FRUGAL_TRY(txn->commit());
  }
  if (replaced_gone) FRUGAL_TRY(s.purge_if_unreferenced(replaced_ino));
  return Status::Ok();
}

Status FileSystem::readdir(uint64_t ino, uint64_t cookie, bool plus,
                           const std::function<bool(std::string_view, uint64_t, uint32_t, uint64_t,
                                                    const Attr*)>& visit) {
  State& s = *state_;
  FRUGAL_ASSIGN_OR_RETURN(InodeRecord dir, s.meta->get_inode(ino));
  if (!S_ISDIR(dir.mode)) return Errorf(ENOTDIR, "inode {} is not a directory", ino);
  // "." and ".." carry no attributes and never count as lookups.
  if (cookie < 1 && !visit(".", ino, S_IFDIR, 1, nullptr)) return Status::Ok();
  const uint64_t dotdot = dir.parent != 0 ? dir.parent : ino;
  if (cookie < 2 && !visit("..", dotdot, S_IFDIR, 2, nullptr)) return Status::Ok();
  Status err;
  FRUGAL_TRY(s.meta->list_dir(ino, std::max<uint64_t>(cookie, 2), [&](const DirEntry& e) {
    if (!plus) return visit(e.name, e.ino, e.type, e.cookie, nullptr);
    auto record = s.meta->get_inode(e.ino);
    if (!record.ok()) {
      if (record.status().code() == ENOENT) return true;  // removed meanwhile
      err = record.status();
      return false;
    }
    auto state = s.inodes.find(e.ino);
    Attr attr = s.to_attr(*record, state);
    if (!visit(e.name, e.ino, e.type, e.cookie, &attr)) return false;
    auto counted = s.attr_with_lookup(*record);
    if (!counted.ok()) err = counted.status();
    return counted.ok();
  }));
  return err;
}

Status FileSystem::fsyncdir(uint64_t ino) {
  (void)ino;
  return state_->meta->sync();
}

}  // namespace frugalfs
