// The fs layer: POSIX semantics on inodes, independent of FUSE, so it is
// testable without a mount. The fuse layer is a thin adapter over this class.
//
// Inode lifetime follows the FUSE low-level protocol: every call that returns
// an Attr for a name (lookup, create, mknod, mkdir, symlink, link, readdir
// with attributes) adds one lookup reference, forget() drops them, and an
// inode whose link count is zero is deleted once it has no lookup references
// and no open handles (until then it is kept in the orphan list, so a crash
// cannot leak it).
//
// Writes land in a per-inode write buffer and reach the volumes when the
// buffer is flushed: on fsync, when dirty data exceeds its budget, when it is
// older than the flush interval, and at shutdown. close() does not imply
// durability; fsync() and shutdown() do (see frugalfs(8)).
//
// Thread-safety: every method may be called concurrently from many threads.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/chunking.h"
#include "frugalfs/status.h"

namespace frugalfs {

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units of logical data (holes excluded)
  timespec atime{};
  timespec mtime{};
  timespec ctime{};
  uint64_t generation = 0;
};

// Who asks, for the ownership of new inodes.
struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
  // Applied to new inodes' modes unless the parent has a default ACL.
  uint32_t umask = 0;
};

// Fields of setattr; unset fields stay unchanged.
struct SetAttrRequest {
  std::optional<uint32_t> mode;  // permission bits (S_IFMT bits ignored)
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<timespec> atime;  // tv_nsec == UTIME_NOW means now
  std::optional<timespec> mtime;  // tv_nsec == UTIME_NOW means now
};

struct FsStats {
  uint64_t block_size = 4096;
  uint64_t total_blocks = 0;  // usable capacity in block_size units
  uint64_t free_blocks = 0;
  uint64_t available_blocks = 0;  // free_blocks less the volumes' reserve (VolumeSet::reserve_of)
  uint64_t total_files = 0;
  uint64_t free_files = 0;
  uint32_t name_max = 255;
};

// Space accounting, for statistics and tests.
struct FsUsage {
  uint64_t logical_bytes = 0;   // sum of file sizes
  uint64_t stored_bytes = 0;    // chunk bytes in live packs, before coding
  uint64_t physical_bytes = 0;  // fragment bytes on the volumes
  uint64_t chunks = 0;
  uint64_t packs = 0;
  uint64_t metadata_bytes = 0;
};

struct MkfsOptions {
  std::string meta_dir;
  std::vector<std::string> volume_uris;  // directory paths or file:// URIs
  uint32_t data_fragments = 2;
  uint32_t parity_fragments = 2;
  ChunkerParams chunker;
  int compress_level = 1;
  uint32_t pack_size = 4 << 20;
};

// Creates a filesystem: labels each volume (creating missing directories) and
// the metadata database. Refuses a volume that belongs to a filesystem
// (EEXIST) or is a non-empty directory (ENOTEMPTY), fewer than k+m volumes
// (EINVAL), and an existing metadata directory (EEXIST). Returns the new
// filesystem id.
Result<std::string> make_filesystem(const MkfsOptions& options);

struct FsOptions {
  uint64_t cache_bytes = 64ull << 20;        // decompressed chunk cache
  uint64_t dirty_bytes_limit = 128ull << 20; // write buffers, all files together
  double flush_interval_seconds = 5.0;       // dirty data older than this is flushed
  // A metadata backup is written to the volumes this often (0: only at
  // shutdown), at shutdown, and soon after mounting a filesystem that has
  // none. Space freed by deletes returns with the next backup.
  double backup_interval_seconds = 3600;
  uint32_t backups_kept = 3;
  // Called with one line for each notable event (degraded mount, volume
  // errors). Defaults to stderr.
  std::function<void(std::string_view)> log;
};

class FileSystem {
 public:
  // Opens the filesystem whose metadata is in meta_dir. Volumes whose
  // directory is missing or wiped, up to m of them, are taken as offline (the
  // filesystem runs degraded and says so in the log); a volume labelled for
  // another filesystem is refused (EINVAL). EBUSY when meta_dir is in use.
  static Result<std::unique_ptr<FileSystem>> open(const std::string& meta_dir,
                                                  FsOptions options = {});
  ~FileSystem();  // calls shutdown() if it was not called
  FileSystem(const FileSystem&) = delete;
  FileSystem& operator=(const FileSystem&) = delete;

  // Flushes every buffered write, makes metadata durable and stops the
  // background work. Later calls return the first result.
  Status shutdown();

  Result<Attr> lookup(uint64_t parent, std::string_view name);
  void forget(uint64_t ino, uint64_t nlookup);
  Result<Attr> getattr(uint64_t ino);
  Result<Attr> setattr(uint64_t ino, const SetAttrRequest& request);
  Result<std::string> readlink(uint64_t ino);

  Result<Attr> mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                     const Caller& caller);
  Result<Attr> mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& caller);
  Result<Attr> symlink(uint64_t parent, std::string_view name, std::string_view target,
                       const Caller& caller);
  Result<Attr> link(uint64_t ino, uint64_t new_parent, std::string_view new_name);
  Status unlink(uint64_t parent, std::string_view name);
  Status rmdir(uint64_t parent, std::string_view name);
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE (from <linux/fs.h>).
  Status rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags);

  // Returns a file handle. flags are open(2) flags (O_TRUNC truncates,
  // O_APPEND makes every write append).
  Result<uint64_t> open(uint64_t ino, int flags);
  struct Created {
    Attr attr;
    uint64_t fh = 0;
  };
  Result<Created> create(uint64_t parent, std::string_view name, uint32_t mode, int flags,
                         const Caller& caller);
  // Reads up to out.size() bytes at offset; fewer only at end of file.
  Result<size_t> read(uint64_t ino, uint64_t fh, uint64_t offset, std::span<uint8_t> out);
  // The same bytes as read() into buffer, handed out in place where they are
  // stored: pieces in file order, pointing into cached chunks, a shared page
  // of zeros (holes) or buffer (unflushed bytes); valid while `owners` and
  // buffer live. Saves a copy of every byte read.
  struct ReadView {
    std::vector<std::span<const uint8_t>> pieces;
    std::vector<std::shared_ptr<const void>> owners;
    // The read began near where the last read through the same handle
    // ended: the reader goes forward (its stored bytes were read
    // sequentially; see read_ahead).
    bool forward = false;
  };
  Result<ReadView> read_view(uint64_t ino, uint64_t fh, uint64_t offset, std::span<uint8_t> buffer);
  // After a read through handle fh that read_view found going forward
  // (ending at `end`):
  // asks for the file's stored data up to kReadAheadBytes past it (in steps
  // of half that; ChunkStore::prefetch), so that it is in memory when the
  // next reads come. Never waits for the data; best effort.
  static constexpr uint64_t kReadAheadBytes = 8 << 20;
  void read_ahead(uint64_t ino, uint64_t fh, uint64_t end) noexcept;
  // Waits until what read_ahead asked to be read is loaded (for tests).
  void TEST_wait_read_ahead();
  // Writes all of data at offset (at the end of file for O_APPEND handles).
  Result<size_t> write(uint64_t ino, uint64_t fh, uint64_t offset, std::span<const uint8_t> data);
  Status release(uint64_t ino, uint64_t fh);
  // Returns once the file's data and metadata are durable.
  Status fsync(uint64_t ino, bool datasync);

  // Visits entries after `cookie` ("." is cookie 1, ".." cookie 2) until
  // visit returns false. With `plus`, each entry comes with its attributes
  // and, when visit returns true, counts as a lookup of that entry.
  Status readdir(uint64_t ino, uint64_t cookie, bool plus,
                 const std::function<bool(std::string_view name, uint64_t child_ino,
                                          uint32_t type, uint64_t entry_cookie,
                                          const Attr* attr)>& visit);
  Status fsyncdir(uint64_t ino);

  // flags: 0, XATTR_CREATE or XATTR_REPLACE.
  Status setxattr(uint64_t ino, std::string_view name, std::span<const uint8_t> value, int flags);
  Result<std::string> getxattr(uint64_t ino, std::string_view name);  // ENODATA
  Result<std::vector<std::string>> listxattr(uint64_t ino);
  Status removexattr(uint64_t ino, std::string_view name);

  Result<FsStats> statfs();
  Result<FsUsage> usage();

  // Flushes every buffered write and runs garbage collection now (tests and
  // admin tools; the background thread does this on its own schedule).
  Status TEST_flush_and_collect();
  // Unflushed bytes counted against the write budget.
  uint64_t TEST_dirty_bytes();
  // One round of the background flusher: stores a flush of the dirty files
  // while the previous round's commit runs, and leaves its own pending.
  Status TEST_flush_pipelined();
  // Hooks for tests of that pipeline: before_commit runs on a commit's thread
  // before it syncs (it may block, or fail the commit); after_store runs when
  // a round has stored its flush, before it waits for the previous commit.
  void TEST_set_flush_hooks(std::function<Status()> before_commit, std::function<void()> after_store);

  struct State;  // the implementation's (src/fs/fs_state.h)

 private:
  explicit FileSystem(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace frugalfs
