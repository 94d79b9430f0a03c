// The file:// volume backend: one object per file in a local directory.
// The on-disk layout is described in doc/volume-format.md.
//
// Thread-safety: all methods may be called concurrently. Between calls a
// FileVolume holds at most kReadFds descriptors, of the objects read last
// (the daemon has a hard limit on open files, so never one per object).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "frugalfs/volume.h"

namespace frugalfs {

// The system calls by which a FileVolume changes what is on disk, so that a
// test can follow which changes are durable and which a power loss would
// drop (volume_test.cc). Each returns what the system call returns, with
// errno set. Thread-safe.
class FileIo {
 public:
  virtual ~FileIo() = default;
  virtual int open(const char* path, int flags, mode_t mode);
  virtual ssize_t write(int fd, const void* data, size_t size);
  virtual int fsync(int fd);
  virtual int close(int fd);
  virtual int rename(const char* from, const char* to);
  virtual int unlink(const char* path);
  virtual int mkdir(const char* path, mode_t mode);
  virtual int syncfs(int fd);
  // The real system calls.
  static FileIo& system();
};

class FileVolume : public Volume {
 public:
  // root is an absolute path to an existing directory; uri its canonical URI.
  // io must outlive the volume.
  FileVolume(std::string root, std::string uri, FileIo& io = FileIo::system());
  ~FileVolume() override;
  FileVolume(const FileVolume&) = delete;
  FileVolume& operator=(const FileVolume&) = delete;

  std::string uri() const override { return uri_; }
  Status put(std::string_view name, std::span<const uint8_t> data) override;
  // Writes and renames into place as put does, without the fsyncs.
  Status put_deferred(std::string_view name, std::span<const uint8_t> data) override;
  // syncfs(2) of the volume's filesystem: one journal commit and one cache
  // flush for everything written since (other files on that filesystem
  // included). Its errors are those of writeback since the last sync.
  Status sync() override;
  // The filesystem the volume's directory is on ("dev:MAJOR:MINOR").
  std::string sync_domain() const override { return sync_domain_; }
  Result<size_t> read(std::string_view name, uint64_t offset, std::span<uint8_t> out) override;
  // Asks the kernel to read the range into the page cache (WILLNEED).
  void prefetch(std::string_view name, uint64_t offset, uint64_t len) override;
  Status remove(std::string_view name) override;
  Result<ObjectInfo> stat(std::string_view name) override;
  Status list(std::string_view prefix,
              const std::function<void(const ObjectInfo&)>& visit) override;
  Result<SpaceInfo> space() override;

  // Removes temp files (left by a crash during put) whose mtime is older than
  // min_age. They are never listed, so this only reclaims space; it is meant
  // for fsck/scrub, not for every open. A temp file younger than min_age may
  // belong to a put in progress, so min_age should be generous (an hour).
  // Returns how many files were removed.
  Result<uint64_t> remove_stale_temp_files(std::chrono::seconds min_age);

  // The fan-out directory name ("00".."ff") of an object; fixed by the format.
  static std::string fanout_of(std::string_view name);
  // True for the name of a temp file (it cannot be a valid object name).
  static bool is_temp_file_name(std::string_view file_name);

  // The directory that holds an object's file, e.g. "/srv/vol0/objects/a7".
  std::string TEST_object_dir(std::string_view name) const;

 private:
  std::string objects_dir() const;
  std::string object_dir(std::string_view name) const;
  std::string temp_name(std::string_view name);
  // Creates objects/ and every objects/XX not there yet, and fsyncs both
  // parents; `name` (the object being put) is for error messages.
  Status make_object_dirs(std::string_view name);
  // put and put_deferred: the fsyncs only when durable.
  Status put_object(std::string_view name, std::span<const uint8_t> data, bool durable);

  // Writes data to the new file fd (see put). Returns 0 or an errno value.
  int write_object(int fd, std::span<const uint8_t> data);
  // Objects from this size on may be written with O_DIRECT.
  static constexpr size_t kDirectFrom = 256 << 10;

  // fsyncs a directory so that entries created, renamed or removed in it
  // survive a power loss. Returns 0 or an errno value.
  int fsync_dir(const std::string& dir);

  // An open descriptor of an object, closed when the last user drops it.
  struct ReadFd {
    explicit ReadFd(int f) : fd(f) {}
    ~ReadFd();
    ReadFd(const ReadFd&) = delete;
    ReadFd& operator=(const ReadFd&) = delete;
    const int fd;
  };
  // Reads of a pack's fragment come in runs of chunks: the objects read
  // last stay open, so a run opens its file once and keeps the kernel's
  // readahead going. A put or remove of a name forgets its descriptor.
  static constexpr size_t kReadFds = 8;
  // The name's descriptor, or null and the generation to pass to
  // remember_fd after opening it.
  std::shared_ptr<const ReadFd> cached_fd(std::string_view name, uint64_t* generation);
  // The name's descriptor, from the cache or opened (and kept).
  Result<std::shared_ptr<const ReadFd>> read_fd(std::string_view name);
  // Keeps fd unless a put or remove ran since `generation` (the file opened
  // may be the one replaced or removed).
  void remember_fd(std::string_view name, std::shared_ptr<const ReadFd> fd, uint64_t generation);
  void forget_fd(std::string_view name);

  const std::string root_;
  const std::string uri_;
  FileIo& io_;
  // The root, open from the start so that syncfs reports every writeback
  // error since (-1 if it could not be opened: sync then fails).
  int root_fd_ = -1;
  std::string sync_domain_;  // set with root_fd_
  std::mutex dirs_mu_;  // held while making the fan-out directories
  std::mutex sync_mu_;
  Status sync_failure_;  // sticky: objects put before a failed sync may be lost
  std::mutex fds_mu_;
  std::list<std::pair<std::string, std::shared_ptr<const ReadFd>>> fds_;  // most recent first
  uint64_t fds_generation_ = 0;  // bumped by every forget_fd
};

}  // namespace frugalfs
