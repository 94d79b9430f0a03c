// The volume layer: immutable named objects on one volume (a local directory
// today, a remote server later). It knows nothing of chunks, files or coding.
//
// Object names are 1..200 characters of [A-Za-z0-9._-]; any other name is
// EINVAL. Every Volume implementation is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/status.h"

namespace frugalfs {

// Buffers for large puts should start at a multiple of this many bytes.
inline constexpr size_t kVolumeIoAlignment = 4096;

// Bytes at an address aligned to kVolumeIoAlignment, not initialized.
struct AlignedDelete {
  void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t{kVolumeIoAlignment}); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], AlignedDelete>;
inline AlignedBytes make_aligned_bytes(size_t size) {
  return AlignedBytes(new (std::align_val_t{kVolumeIoAlignment}) uint8_t[size]);
}

struct ObjectInfo {
  std::string name;
  uint64_t size = 0;
  int64_t mtime = 0;  // seconds since the epoch
};

struct SpaceInfo {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
};

class Volume {
 public:
  virtual ~Volume() = default;

  // The canonical URI, e.g. "file:///srv/vol0".
  virtual std::string uri() const = 0;

  // Stores an object atomically and durably: when put returns ok, the object
  // survives a power loss with exactly these bytes; a crash before that leaves
  // either the old object or none, never a torn one. Replaces an existing
  // object of the same name. ENOSPC when the volume is full.
  // Data at an address aligned to kVolumeIoAlignment may be stored without a
  // copy through the page cache (see FileVolume).
  virtual Status put(std::string_view name, std::span<const uint8_t> data) = 0;

  // Like put, except that the object is durable only once a sync() that
  // started after this put returned has returned ok; a crash before that may
  // lose the object or leave it torn (never under another name). It can be
  // read, listed and removed at once. For a writer that puts many objects and
  // then commits them together: one sync instead of an fsync or two per
  // object.
  virtual Status put_deferred(std::string_view name, std::span<const uint8_t> data) {
    return put(name, data);
  }

  // Makes durable every object that put_deferred stored before this call.
  // An error means some of them may be lost.
  virtual Status sync() { return Status::Ok(); }
  // Volumes with the same sync domain are made durable by each other's
  // sync() (local directories on one filesystem: syncfs covers all of it),
  // so a writer syncs one of them. Distinct volumes have distinct domains
  // unless they say otherwise.
  virtual std::string sync_domain() const { return uri(); }

  // Reads up to out.size() bytes at offset into out and returns how many were
  // read (fewer only at the end of the object). ENOENT if there is no object.
  virtual Result<size_t> read(std::string_view name, uint64_t offset,
                              std::span<uint8_t> out) = 0;

  // A hint that bytes [offset, offset + len) of an object will be read soon.
  // A backend that can fetch them in the background starts to; nothing
  // waits for it and nothing fails (a wrong name or range is ignored).
  virtual void prefetch(std::string_view name, uint64_t offset, uint64_t len) {
    (void)name;
    (void)offset;
    (void)len;
  }

  // Removes an object durably. ENOENT if there is no such object.
  virtual Status remove(std::string_view name) = 0;

  virtual Result<ObjectInfo> stat(std::string_view name) = 0;

  // Calls visit for each object whose name starts with prefix, in no
  // particular order. Any error while listing is returned: a listing that
  // returns ok is complete (garbage collection depends on this).
  virtual Status list(std::string_view prefix,
                      const std::function<void(const ObjectInfo&)>& visit) = 0;

  // Capacity of the device that holds the volume.
  virtual Result<SpaceInfo> space() = 0;
};

// Reads a whole object.
Result<std::vector<uint8_t>> read_object(Volume& volume, std::string_view name);

// True when name is a valid object name.
bool valid_object_name(std::string_view name);

// "file:///abs/dir" for "file:///abs/dir", "/abs/dir" or a relative path
// (made absolute against the current directory). EINVAL for an unknown scheme.
Result<std::string> normalize_volume_uri(std::string_view uri);

// Opens a volume by URI (see normalize_volume_uri). For file:// volumes the
// directory must exist (ENOENT otherwise) unless create is set, in which case
// it is created.
Result<std::unique_ptr<Volume>> open_volume(std::string_view uri, bool create = false);

// An in-memory volume for tests, with fault injection.
class MemoryVolume : public Volume {
 public:
  explicit MemoryVolume(std::string uri = "mem://test");
  ~MemoryVolume() override;

  std::string uri() const override;
  Status put(std::string_view name, std::span<const uint8_t> data) override;
  // Remembers the object as not yet durable, until the next sync.
  Status put_deferred(std::string_view name, std::span<const uint8_t> data) override;
  Status sync() override;
  Result<size_t> read(std::string_view name, uint64_t offset, std::span<uint8_t> out) override;
  Status remove(std::string_view name) override;
  Result<ObjectInfo> stat(std::string_view name) override;
  Status list(std::string_view prefix,
              const std::function<void(const ObjectInfo&)>& visit) override;
  Result<SpaceInfo> space() override;
  // Only recorded, for TEST_take_prefetches.
  void prefetch(std::string_view name, uint64_t offset, uint64_t len) override;

  struct PrefetchHint {
    std::string name;
    uint64_t offset = 0, len = 0;
  };
  // The prefetch calls since the last take, in order (at most the latest
  // 4096).
  std::vector<PrefetchHint> TEST_take_prefetches();
  // Every later call fails with EIO while offline is set.
  void TEST_set_offline(bool offline);
  // The volume's size (default 1 TiB): puts beyond it fail with ENOSPC.
  void TEST_set_capacity(uint64_t bytes);
  // Flips the bits of one byte of an object (no-op if out of range).
  void TEST_corrupt(std::string_view name, uint64_t offset);
  // Removes every object, as if the disk were replaced.
  void TEST_wipe();
  // Removes the objects put_deferred stored since the last sync, as a power
  // loss may; returns how many.
  size_t TEST_power_loss();
  // Every later sync fails with this status (ok again: they succeed).
  void TEST_set_sync_error(Status error);
  // Syncs that returned ok.
  uint64_t TEST_sync_count() const;
  // Puts the volume in a sync domain shared with others (only the name: a
  // sync makes only this volume's objects durable).
  void TEST_set_sync_domain(std::string domain);
  std::string sync_domain() const override;
  size_t TEST_object_count() const;
  uint64_t TEST_total_bytes() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The label every volume of a filesystem carries, so that a volume of another
// filesystem, or a wrong directory, is refused with a clear message.
struct VolumeLabel {
  std::string fs_id;  // the filesystem's UUID, as text
  uint32_t volume_id = 0;
  uint32_t format_version = 1;
};

inline constexpr std::string_view kVolumeLabelObject = "frugalfs-volume-label";

Status write_label(Volume& volume, const VolumeLabel& label);
// ENOENT when the volume has no label; EINVAL (with a message naming the
// volume) when the label is unreadable.
Result<VolumeLabel> read_label(Volume& volume);

}  // namespace frugalfs
