#include "volume/file_volume.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "frugalfs/hash.h"

namespace frugalfs {
namespace {

// Offsets beyond what off_t can express are beyond the end of any object.
constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<off_t>::max());

constexpr std::string_view kObjectsDir = "objects";
// A temp file name starts with '~', which no valid object name contains, so a
// temp file can never be mistaken for (or collide with) an object.
constexpr std::string_view kTempPrefix = "~tmp-";
constexpr int kFanoutDirs = 256;

int open_noeintr(FileIo& io, const char* path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = io.open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

int open_noeintr(const char* path, int flags, mode_t mode = 0) {
  return open_noeintr(FileIo::system(), path, flags, mode);
}

// Returns 0 or an errno value.
int write_all(FileIo& io, int fd, std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = io.write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // no progress and no error: do not spin
    done += static_cast<size_t>(n);
  }
  return 0;
}


uint64_t initial_temp_counter() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ (static_cast<uint64_t>(::getpid()) << 16);
}

// Shared by every FileVolume of the process: unique temp names across
// volumes, threads and (because of the random start) process restarts.
std::atomic<uint64_t> g_temp_counter{initial_temp_counter()};

std::string fanout_dir_name(int i) { return fmt::format("{:02x}", i); }

// Closes a DIR* on scope exit.
struct DirCloser {
  DIR* d;
  ~DirCloser() {
    if (d != nullptr) ::closedir(d);
  }
};

}  // namespace

int FileIo::open(const char* path, int flags, mode_t mode) { return ::open(path, flags, mode); }
ssize_t FileIo::write(int fd, const void* data, size_t size) { return ::write(fd, data, size); }
int FileIo::fsync(int fd) { return ::fsync(fd); }
int FileIo::close(int fd) { return ::close(fd); }
int FileIo::rename(const char* from, const char* to) { return ::rename(from, to); }
int FileIo::unlink(const char* path) { return ::unlink(path); }
int FileIo::mkdir(const char* path, mode_t mode) { return ::mkdir(path, mode); }
int FileIo::syncfs(int fd) { return ::syncfs(fd); }

FileIo& FileIo::system() {
  static FileIo io;
  return io;
}

FileVolume::FileVolume(std::string root, std::string uri, FileIo& io)
    : root_(std::move(root)), uri_(std::move(uri)), io_(io) {
  root_fd_ = open_noeintr(io_, root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct stat st;
  sync_domain_ = root_fd_ >= 0 && ::fstat(root_fd_, &st) == 0
                     ? fmt::format("dev:{}:{}", major(st.st_dev), minor(st.st_dev))
                     : uri_;  // its sync fails anyway
}

FileVolume::~FileVolume() {
  if (root_fd_ >= 0) io_.close(root_fd_);
}

int FileVolume::fsync_dir(const std::string& dir) {
  int fd = open_noeintr(io_, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = io_.fsync(fd) == 0 ? 0 : errno;
  io_.close(fd);
  return err;
}

std::string FileVolume::fanout_of(std::string_view name) {
  uint64_t h = xxh3_64({reinterpret_cast<const uint8_t*>(name.data()), name.size()});
  return fanout_dir_name(static_cast<int>(h >> 56));
}

bool FileVolume::is_temp_file_name(std::string_view file_name) {
  return file_name.starts_with(kTempPrefix);
}

std::string FileVolume::objects_dir() const { return fmt::format("{}/{}", root_, kObjectsDir); }

std::string FileVolume::object_dir(std::string_view name) const {
  return fmt::format("{}/{}/{}", root_, kObjectsDir, fanout_of(name));
}

std::string FileVolume::TEST_object_dir(std::string_view name) const { return object_dir(name); }

std::string FileVolume::temp_name(std::string_view name) {
  uint64_t n = g_temp_counter.fetch_add(1, std::memory_order_relaxed);
  return fmt::format("{}{:016x}-{}", kTempPrefix, n, name);
}

// All the fan-out directories at once, at the first put that misses its
// own: one burst of mkdirs and two fsyncs. One directory at a time cost two
// fsyncs (a journal commit each) at the first put into each of the 256, and
// on a new volume most of those fell on the first GiB written.
Status FileVolume::make_object_dirs(std::string_view name) {
  std::lock_guard lock(dirs_mu_);  // the puts that missed together wait for one
  // Both parents are fsynced even when another thread made the directories:
  // this put must not return before the directory it writes into is durable.
  std::string objects = objects_dir();
  if (io_.mkdir(objects.c_str(), 0755) != 0 && errno != EEXIST) {
    return Errorf(errno, "{}: put {}: create directory {}", uri_, name, objects);
  }
  if (int err = fsync_dir(root_); err != 0) {
    return Errorf(err, "{}: put {}: fsync directory {}", uri_, name, root_);
  }
  for (int i = 0; i < kFanoutDirs; ++i) {
    std::string dir = fmt::format("{}/{}", objects, fanout_dir_name(i));
    if (io_.mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Errorf(errno, "{}: put {}: create directory {}", uri_, name, dir);
    }
  }
  if (int err = fsync_dir(objects); err != 0) {
    return Errorf(err, "{}: put {}: fsync directory {}", uri_, name, objects);
  }
  return Status::Ok();
}

// A large object in an aligned buffer is written with O_DIRECT, from the
// buffer straight to the device: the copy into the page cache cost more CPU
// than any other step of a unique write (39% of the daemon's), and a
// fragment is read back rarely and soon cached as chunks. The last partial
// block goes through the page cache. Where the filesystem refuses O_DIRECT
// (or the device wants a larger alignment) the whole object is written
// through the page cache. Either way put fsyncs before it returns.
int FileVolume::write_object(int fd, std::span<const uint8_t> data) {
  size_t direct_bytes = 0;
  const bool aligned = reinterpret_cast<uintptr_t>(data.data()) % kVolumeIoAlignment == 0;
  if (aligned && data.size() >= kDirectFrom) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_DIRECT) == 0) {
      direct_bytes = data.size() / kVolumeIoAlignment * kVolumeIoAlignment;
      int err = write_all(io_, fd, data.first(direct_bytes));
      if (::fcntl(fd, F_SETFL, flags) != 0 && err == 0) err = errno;
      if (err == EINVAL || err == EOPNOTSUPP || err == ENOTSUP) {
        // Refused after all (maybe part way, after a short write): start
        // again from the beginning through the page cache.
        direct_bytes = 0;
        if (::lseek(fd, 0, SEEK_SET) != 0) return errno;
      } else if (err != 0) {
        return err;
      }
    }
  }
  return write_all(io_, fd, data.subspan(direct_bytes));
}

Status FileVolume::put(std::string_view name, std::span<const uint8_t> data) {
  return put_object(name, data, true);
}

Status FileVolume::put_deferred(std::string_view name, std::span<const uint8_t> data) {
  return put_object(name, data, false);
}

// One syncfs instead of an fsync of every file and directory: on a
// journaling filesystem the first fsync commits the journal for all of them
// and each later one still flushes the device's cache. A failed sync is
// sticky: syncfs reports a writeback error once, and the objects it concerns
// may belong to any writer of this volume, so every later sync fails too
// until the volume is opened again (the pack store then keeps it out of
// writes: see PackStore::sync).
Status FileVolume::sync() {
  std::lock_guard lock(sync_mu_);
  if (!sync_failure_.ok()) return sync_failure_;
  if (root_fd_ < 0) {
    sync_failure_ = Errorf(EIO, "{}: sync: the volume's directory {} could not be opened", uri_, root_);
  } else if (io_.syncfs(root_fd_) != 0) {
    sync_failure_ = Errorf(errno, "{}: sync (syncfs) failed; objects written since the last sync may be lost", uri_);
  }
  return sync_failure_;
}

Status FileVolume::put_object(std::string_view name, std::span<const uint8_t> data, bool durable) {
  if (!valid_object_name(name))
    return Errorf(EINVAL, "{}: put: invalid object name '{}'", uri_, name);
  const std::string dir = object_dir(name);
  std::string tmp;
  int fd = -1;
  bool made_dir = false;
  for (int collisions = 0; fd < 0;) {
    tmp = fmt::format("{}/{}", dir, temp_name(name));
    fd = open_noeintr(io_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) break;
    int err = errno;
    if (err == ENOENT && !made_dir) {
      FRUGAL_TRY(make_object_dirs(name));
      made_dir = true;
    } else if (err == EEXIST && ++collisions < 16) {
      // A stale temp file with the same name: take the next counter value.
    } else {
      return Errorf(err, "{}: put {}: create temp file {}", uri_, name, tmp);
    }
  }

  auto fail = [&](int err, std::string_view what) {
    if (fd >= 0) io_.close(fd);
    io_.unlink(tmp.c_str());
    return Errorf(err, "{}: put {}: {}", uri_, name, what);
  };
  if (int err = write_object(fd, data); err != 0) return fail(err, "write");
  if (durable && io_.fsync(fd) != 0) return fail(errno, "fsync");
  int close_rc = io_.close(fd);
  fd = -1;
  if (close_rc != 0 && errno != EINTR) return fail(errno, "close");
  const std::string path = fmt::format("{}/{}", dir, name);
  if (io_.rename(tmp.c_str(), path.c_str()) != 0) return fail(errno, "rename into place");
  forget_fd(name);  // a descriptor of the file it replaced
  if (!durable) return Status::Ok();
  // The object is in place; without this fsync the rename could be lost.
  if (int err = fsync_dir(dir); err != 0) {
    return Errorf(err, "{}: put {}: fsync directory {}", uri_, name, dir);
  }
  return Status::Ok();
}

FileVolume::ReadFd::~ReadFd() { ::close(fd); }  // read-only: a close error cannot lose data

std::shared_ptr<const FileVolume::ReadFd> FileVolume::cached_fd(std::string_view name,
                                                                 uint64_t* generation) {
  std::lock_guard lock(fds_mu_);
  *generation = fds_generation_;
  for (auto it = fds_.begin(); it != fds_.end(); ++it) {
    if (it->first != name) continue;
    fds_.splice(fds_.begin(), fds_, it);
    return it->second;
  }
  return nullptr;
}

void FileVolume::remember_fd(std::string_view name, std::shared_ptr<const ReadFd> fd,
                             uint64_t generation) {
  std::shared_ptr<const ReadFd> evicted;  // closed outside the lock
  std::lock_guard lock(fds_mu_);
  if (generation != fds_generation_) return;  // opened before a put or remove: maybe stale
  for (const auto& entry : fds_) {
    if (entry.first == name) return;  // another reader opened it meanwhile
  }
  fds_.emplace_front(std::string(name), std::move(fd));
  if (fds_.size() > kReadFds) {
    evicted = std::move(fds_.back().second);
    fds_.pop_back();
  }
}

void FileVolume::forget_fd(std::string_view name) {
  std::shared_ptr<const ReadFd> dropped;
  std::lock_guard lock(fds_mu_);
  ++fds_generation_;
  for (auto it = fds_.begin(); it != fds_.end(); ++it) {
    if (it->first != name) continue;
    dropped = std::move(it->second);
    fds_.erase(it);
    return;
  }
}

Result<size_t> FileVolume::read(std::string_view name, uint64_t offset, std::span<uint8_t> out) {
  if (!valid_object_name(name))
    return Errorf(EINVAL, "{}: read: invalid object name '{}'", uri_, name);
  FRUGAL_ASSIGN_OR_RETURN(std::shared_ptr<const ReadFd> file, read_fd(name));
  const int fd = file->fd;
  size_t want = 0;
  if (offset < kMaxOffset)
    want = static_cast<size_t>(std::min<uint64_t>(out.size(), kMaxOffset - offset));
  size_t done = 0;
  while (done < want) {
    ssize_t n = ::pread(fd, out.data() + done, want - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      forget_fd(name);
      return Errorf(err, "{}: read {}: at offset {}", uri_, name, offset + done);
    }
    if (n == 0) break;  // end of the object
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<std::shared_ptr<const FileVolume::ReadFd>> FileVolume::read_fd(std::string_view name) {
  uint64_t generation = 0;
  std::shared_ptr<const ReadFd> file = cached_fd(name, &generation);
  if (file) return file;
  const std::string path = fmt::format("{}/{}", object_dir(name), name);
  int fd = open_noeintr(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return Errorf(ENOENT, "{}: read {}: no such object", uri_, name);
    return Errorf(err, "{}: read {}: open", uri_, name);
  }
  file = std::make_shared<const ReadFd>(fd);
  remember_fd(name, file, generation);
  return file;
}

void FileVolume::prefetch(std::string_view name, uint64_t offset, uint64_t len) {
  if (!valid_object_name(name) || offset >= kMaxOffset || len == 0) return;
  auto file = read_fd(name);
  if (!file.ok()) return;
  len = std::min(len, kMaxOffset - offset);
  (void)::posix_fadvise((*file)->fd, static_cast<off_t>(offset), static_cast<off_t>(len),
                        POSIX_FADV_WILLNEED);
}

Status FileVolume::remove(std::string_view name) {
  if (!valid_object_name(name))
    return Errorf(EINVAL, "{}: remove: invalid object name '{}'", uri_, name);
  const std::string dir = object_dir(name);
  const std::string path = fmt::format("{}/{}", dir, name);
  const int unlinked = io_.unlink(path.c_str());
  const int unlink_errno = errno;
  forget_fd(name);  // also when it was gone already
  if (unlinked != 0) {
    if (unlink_errno == ENOENT) return Errorf(ENOENT, "{}: remove {}: no such object", uri_, name);
    return Errorf(unlink_errno, "{}: remove {}", uri_, name);
  }
  if (int err = fsync_dir(dir); err != 0) {
    return Errorf(err, "{}: remove {}: fsync directory {}", uri_, name, dir);
  }
  return Status::Ok();
}

Result<ObjectInfo> FileVolume::stat(std::string_view name) {
  if (!valid_object_name(name))
    return Errorf(EINVAL, "{}: stat: invalid object name '{}'", uri_, name);
  const std::string path = fmt::format("{}/{}", object_dir(name), name);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT) return Errorf(ENOENT, "{}: stat {}: no such object", uri_, name);
    return Errorf(err, "{}: stat {}", uri_, name);
  }
  if (!S_ISREG(st.st_mode))
    return Errorf(EIO, "{}: stat {}: {} is not a regular file", uri_, name, path);
  return ObjectInfo{std::string(name), static_cast<uint64_t>(st.st_size),
                    static_cast<int64_t>(st.st_mtim.tv_sec)};
}

Status FileVolume::list(std::string_view prefix,
                        const std::function<void(const ObjectInfo&)>& visit) {
  const std::string objects = objects_dir();
  struct stat st;
  if (::stat(objects.c_str(), &st) != 0) {
    // No objects/ yet: nothing was ever put. Anything else is an error,
    // including a volume directory that has gone away.
    int err = errno;
    if (err != ENOENT) return Errorf(err, "{}: list: stat {}", uri_, objects);
    if (::stat(root_.c_str(), &st) != 0) return Errorf(errno, "{}: list: stat {}", uri_, root_);
    return Status::Ok();
  }
  for (int i = 0; i < kFanoutDirs; ++i) {
    const std::string fanout = fanout_dir_name(i);
    const std::string dir = fmt::format("{}/{}", objects, fanout);
    DirCloser d{::opendir(dir.c_str())};
    if (d.d == nullptr) {
      if (errno == ENOENT) continue;  // created lazily by the first put into it
      return Errorf(errno, "{}: list: open directory {}", uri_, dir);
    }
    const int dfd = ::dirfd(d.d);
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(d.d);
      if (e == nullptr) {
        if (errno != 0) return Errorf(errno, "{}: list: read directory {}", uri_, dir);
        break;
      }
      std::string_view file(e->d_name);
      // Skips ".", "..", temp files and anything that is not an object here.
      if (!valid_object_name(file) || !file.starts_with(prefix)) continue;
      if (fanout_of(file) != fanout) continue;  // read/stat would not find it
      if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // removed while we listed
        return Errorf(errno, "{}: list: stat {}/{}", uri_, dir, file);
      }
      if (!S_ISREG(st.st_mode)) continue;
      visit(ObjectInfo{std::string(file), static_cast<uint64_t>(st.st_size),
                       static_cast<int64_t>(st.st_mtim.tv_sec)});
    }
  }
  return Status::Ok();
}

Result<SpaceInfo> FileVolume::space() {
  struct statvfs sv;
  if (::statvfs(root_.c_str(), &sv) != 0) return Errorf(errno, "{}: statvfs {}", uri_, root_);
  return SpaceInfo{static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize,
                   static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize};
}

Result<uint64_t> FileVolume::remove_stale_temp_files(std::chrono::seconds min_age) {
  const std::string objects = objects_dir();
  const int64_t cutoff = static_cast<int64_t>(::time(nullptr)) - min_age.count();
  uint64_t removed = 0;
  for (int i = 0; i < kFanoutDirs; ++i) {
    const std::string dir = fmt::format("{}/{}", objects, fanout_dir_name(i));
    DirCloser d{::opendir(dir.c_str())};
    if (d.d == nullptr) {
      if (errno == ENOENT) continue;
      return Errorf(errno, "{}: remove temp files: open directory {}", uri_, dir);
    }
    const int dfd = ::dirfd(d.d);
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(d.d);
      if (e == nullptr) {
        if (errno != 0) return Errorf(errno, "{}: remove temp files: read directory {}", uri_, dir);
        break;
      }
      if (!is_temp_file_name(e->d_name)) continue;
      struct stat st;
      if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        return Errorf(errno, "{}: remove temp files: stat {}/{}", uri_, dir, e->d_name);
      }
      if (st.st_mtim.tv_sec > cutoff) continue;
      if (::unlinkat(dfd, e->d_name, 0) != 0) {
        if (errno == ENOENT) continue;
        return Errorf(errno, "{}: remove temp files: unlink {}/{}", uri_, dir, e->d_name);
      }
      ++removed;
    }
  }
  return removed;
}

}  // namespace frugalfs
