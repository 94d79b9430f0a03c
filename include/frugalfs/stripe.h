// The stripe layer: a pack (a few MiB of bytes it does not look inside) cut
// into k data + m parity fragments stored on k+m distinct volumes, with
// placement, degraded reads and checksums. See doc/fragment-format.md.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/erasure.h"
#include "frugalfs/status.h"
#include "frugalfs/volume.h"

namespace frugalfs {

// Where a pack's fragments are and how it was cut; recorded in metadata.
struct PackLayout {
  uint64_t pack_id = 0;
  uint8_t k = 0;
  uint8_t m = 0;
  uint32_t block_size = 0;     // checksum block size inside a fragment
  uint64_t pack_len = 0;       // bytes of the pack before padding
  uint64_t fragment_len = 0;   // payload bytes per fragment (padded pack_len / k)
  std::vector<uint32_t> volumes;             // k+m volume ids; fragment i is on volumes[i]
  std::vector<uint64_t> fragment_checksums;  // k+m: XXH3 of each fragment's block-checksum table
};

// "frag-<16 hex pack id>-<index>".
std::string fragment_object_name(uint64_t pack_id, int index);
// The inverse: false for any name that fragment_object_name cannot produce.
bool parse_fragment_object_name(std::string_view name, uint64_t* pack_id, uint32_t* index);

// What one fragment's header says about its pack: enough to rebuild the
// pack's layout from the volumes alone (frugalfs recover).
struct FragmentInfo {
  uint64_t pack_id = 0;
  uint32_t index = 0;
  uint8_t k = 0;
  uint8_t m = 0;
  uint32_t block_size = 0;
  uint64_t pack_len = 0;
  uint64_t fragment_len = 0;
  uint64_t table_checksum = 0;  // what PackLayout::fragment_checksums holds
};

// Reads and checks the header of fragment object `name` on volume. EINVAL
// when the header is damaged or names another fragment; the volume's error
// when it cannot be read.
Result<FragmentInfo> read_fragment_info(Volume& volume, std::string_view name);

// The volumes of one filesystem, by volume id. A member may be offline (no
// Volume object), e.g. a missing directory at mount time, or marked offline
// after errors. Thread-safe.
class VolumeSet {
 public:
  VolumeSet();
  ~VolumeSet();
  VolumeSet(const VolumeSet&) = delete;
  VolumeSet& operator=(const VolumeSet&) = delete;

  // volume may be null: the member is known but offline.
  void add(uint32_t id, std::string uri, std::unique_ptr<Volume> volume);
  // Null when the id is unknown or the volume is offline. The pointer stays
  // valid for the VolumeSet's lifetime.
  Volume* get(uint32_t id) const;
  std::string uri(uint32_t id) const;
  std::vector<uint32_t> ids() const;
  size_t online_count() const;
  void mark_offline(uint32_t id, const Status& why);
  // After a failed put: choose() skips the volume for a while (it may be
  // failing), but it stays online for reads. A put that failed with ENOSPC
  // marks the volume full instead: it is skipped until its space() reports
  // room again (asked every few seconds).
  void avoid_for_writes(uint32_t id, const Status& why);

  // Picks `count` distinct online volumes, the emptiest first (by the device's
  // free space, refreshed now and then, minus bytes put since), so volumes of
  // different sizes fill evenly. Returns fewer than `count` ids when fewer
  // volumes are online; the caller decides whether that is enough.
  // Each volume picked is counted as taking bytes_each at once (so that
  // writes in flight side by side see each other). With keep_reserve (data),
  // a volume marked full, or whose free space would fall below its reserve
  // (reserve_of), is not picked; without it (metadata backups) any online
  // volume may be, full or not. *short_of_room, if given, is set to the
  // number of online volumes left out for lack of room.
  std::vector<uint32_t> choose(size_t count, bool keep_reserve = false, uint64_t bytes_each = 0,
                               size_t* short_of_room = nullptr);
  // The free space data leaves on a volume of total_bytes, for metadata
  // backups (which let the space of deleted data go, even when the
  // filesystem is full): 1%, at least 4 MiB, at most a quarter of it.
  static uint64_t reserve_of(uint64_t total_bytes);
  // The data bytes that volumes with room[i] bytes each can take when every
  // pack puts one fragment on each of n distinct volumes: k times the
  // largest per-volume share s with sum(min(room[i], s)) >= n * s (room on a
  // volume larger than all the others together cannot be used).
  static uint64_t storable_bytes(const std::vector<uint64_t>& room, uint64_t k, uint64_t n);
  // True when an online volume is marked full or, as last known, has less
  // than twice its reserve free.
  bool near_full() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// How a read is expected to go on: a sequential reader reads the next bytes
// next (worth reading ahead of it), a random one does not.
enum class ReadPattern { kRandom, kSequential };

// Reads and writes packs as fragments. Thread-safe.
class PackStore {
 public:
  PackStore(VolumeSet& volumes, std::unique_ptr<ErasureCode> code, uint32_t block_size = 64 * 1024);
  ~PackStore();

  int k() const;
  int m() const;

  // When a written pack is durable: on return, or once sync() returns ok
  // (for a writer of many packs that commits them together: one sync of
  // each volume instead of two fsyncs per fragment).
  enum class Durability { kNow, kAtSync };

  // Encodes the pack, writes its k+m fragments in parallel to distinct
  // volumes and returns once they are durable (or, kAtSync, written). When
  // fewer than k+m volumes are online the pack is written degraded (the
  // missing fragments are placed on offline volumes and repaired later) as
  // long as at least k fragments are written; otherwise the fragments
  // written are removed and EIO returned (ENOSPC when volumes lack room).
  // Data packs leave each volume's reserve free (VolumeSet::reserve_of);
  // metadata backups may use it.
  enum class Room { kData, kReserve };
  Result<PackLayout> write(uint64_t pack_id, std::span<const uint8_t> pack,
                           Durability durability = Durability::kNow, Room room = Room::kData);

  // Makes durable the fragments of every pack written kAtSync before this
  // call: syncs, in parallel, each volume that took one since the last sync.
  // A volume whose sync fails is kept out of writes for a while and the error
  // returned: packs with fragments on it may have lost them.
  Status sync();

  // Reads out.size() bytes at offset of the pack. Fragment ranges that are
  // missing, unreadable or fail their checksum are rebuilt on the fly from the
  // same range of k other fragments. EIO (with a message naming the pack) if
  // fewer than k good fragments remain. A sequential reader's bytes come
  // through windows of verified payload (see view); a random reader's
  // straight from the blocks that hold them.
  Status read(const PackLayout& layout, uint64_t offset, std::span<uint8_t> out,
              ReadPattern pattern = ReadPattern::kRandom);

  // Bytes of a pack in place, valid while `owner` lives.
  struct View {
    std::shared_ptr<const void> owner;
    std::span<const uint8_t> bytes;
  };
  // The `len` bytes at offset of the pack in place, without a copy: when they
  // lie in one window of verified payload (1 MiB) of one data fragment, and
  // that window is cached or the reader is sequential (then the whole window
  // is read, verified or rebuilt, and kept). Otherwise nullopt: read() them.
  Result<std::optional<View>> view(const PackLayout& layout, uint64_t offset, uint64_t len,
                                   ReadPattern pattern);

  // A hint that the `len` bytes at offset of the pack will be read soon.
  // Each window of a data fragment that the range covers at least half of is
  // read, verified (or rebuilt) and cached on the store's own threads, a few
  // windows at a time, as view() would read it; the volumes are asked to
  // fetch the rest. Never waits for the data and never fails: a window that
  // cannot be loaded is left to the reader, who then sees the error.
  void prefetch(const PackLayout& layout, uint64_t offset, uint64_t len);
  // Waits until the windows being read ahead are loaded (for tests).
  void TEST_wait_read_ahead();

  // Removes every fragment of the pack; fragments already missing are fine.
  Status remove(const PackLayout& layout);

  // Reads every fragment whole and checks header, length and checksums;
  // appends one line per problem found. EIO only if a volume could not be asked.
  Status verify(const PackLayout& layout, std::vector<std::string>* problems);

  // Counters for logs and tests.
  uint64_t degraded_reads() const;
  uint64_t windows_read_ahead() const;  // posted by prefetch

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace frugalfs
