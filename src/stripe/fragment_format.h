// The fragment object format (doc/fragment-format.md): a 64-byte header, the
// table of XXH3-64 checksums of the payload blocks, then the payload.
//
//   offset 0                 64                      64 + 8 * blocks
//          | header (64 B)   | block checksum table  | payload (fragment_len) |
//
// A range read costs one small read of header + table (cached) and one read
// of the aligned payload blocks it needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "frugalfs/status.h"
#include "frugalfs/stripe.h"

namespace frugalfs::stripe {

inline constexpr uint32_t kFragmentFormatVersion = 1;
inline constexpr size_t kFragmentHeaderSize = 64;
inline constexpr char kFragmentMagic[8] = {'F', 'R', 'U', 'G', 'F', 'R', 'A', 'G'};

struct FragmentHeader {
  uint64_t pack_id = 0;
  uint8_t index = 0;
  uint8_t k = 0;
  uint8_t m = 0;
  uint32_t block_size = 0;
  uint64_t pack_len = 0;
  uint64_t fragment_len = 0;
  uint64_t table_checksum = 0;  // XXH3-64 of the checksum table
};

// Number of payload blocks (the last one may be short).
inline uint64_t block_count(uint64_t fragment_len, uint32_t block_size) {
  return (fragment_len + block_size - 1) / block_size;
}
// Bytes of header + checksum table, i.e. where the payload starts.
inline uint64_t payload_offset(uint64_t fragment_len, uint32_t block_size) {
  return kFragmentHeaderSize + 8 * block_count(fragment_len, block_size);
}
inline uint64_t payload_offset(const PackLayout& layout) {
  return payload_offset(layout.fragment_len, layout.block_size);
}
// The whole object's size.
inline uint64_t fragment_object_size(const PackLayout& layout) {
  return payload_offset(layout) + layout.fragment_len;
}

// Fills in the checksum table and the header of a fragment object whose
// payload (at payload_offset) is already in place. `object` must be exactly
// payload_offset + fragment_len bytes. Returns the table checksum.
uint64_t seal_fragment(const FragmentHeader& fields, std::span<uint8_t> object);

// Parses and checks magic, version and header checksum. EINVAL with a reason.
Result<FragmentHeader> parse_header(std::span<const uint8_t> bytes);

// EINVAL unless the header describes fragment `index` of `layout`.
Status check_header_matches(const FragmentHeader& header, const PackLayout& layout, int index);

// The block checksums of one fragment, known good: their XXH3 matched the
// layout's fragment_checksums entry.
struct ChecksumTable {
  uint64_t table_checksum = 0;
  std::vector<uint64_t> sums;
};

// Parses header + table bytes (as read from the start of the object) and
// validates them against the layout.
Result<std::shared_ptr<const ChecksumTable>> parse_checksum_table(std::span<const uint8_t> bytes,
                                                                  const PackLayout& layout,
                                                                  int index);

// Index of the first bad block in [first_block, first_block + n) of `data`
// (which starts at block first_block and ends at the range's end), or -1.
int64_t first_bad_block(const ChecksumTable& table, uint32_t block_size, uint64_t first_block,
                        std::span<const uint8_t> data);

// A bounded LRU map from keys to shared, immutable values. Thread-safe.
template <typename Key, typename Value, typename Hash>
class SharedLru {
 public:
  explicit SharedLru(size_t capacity) : capacity_(capacity) {}

  std::shared_ptr<const Value> get(const Key& key) {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  void put(const Key& key, std::shared_ptr<const Value> value) {
    if (capacity_ == 0) return;
    std::shared_ptr<const Value> evicted;  // freed outside the lock
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      evicted = std::exchange(it->second->second, std::move(value));
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    lru_.emplace_front(key, std::move(value));
    map_.emplace(key, lru_.begin());
    if (lru_.size() > capacity_) {
      evicted = std::move(lru_.back().second);
      map_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  void erase(const Key& key) {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return;
    lru_.erase(it->second);
    map_.erase(it);
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return map_.size();
  }

 private:
  using Entry = std::pair<Key, std::shared_ptr<const Value>>;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<Key, typename std::list<Entry>::iterator, Hash> map_;
};

// A bounded LRU of checksum tables keyed by (pack id, fragment index).
// Thread-safe.
class ChecksumTableCache {
 public:
  explicit ChecksumTableCache(size_t capacity) : lru_(capacity) {}

  // The cached table, if its checksum still equals `expected_checksum`.
  std::shared_ptr<const ChecksumTable> get(uint64_t pack_id, int index, uint64_t expected_checksum);
  void put(uint64_t pack_id, int index, std::shared_ptr<const ChecksumTable> table);
  void erase(uint64_t pack_id, int index);
  size_t size() const { return lru_.size(); }

 private:
  struct Key {
    uint64_t pack_id;
    int index;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const {
      return std::hash<uint64_t>()(key.pack_id * 0x9E3779B97F4A7C15ULL +
                                   static_cast<uint64_t>(key.index));
    }
  };
  SharedLru<Key, ChecksumTable, KeyHash> lru_;
};

// Payload blocks that passed their checksum, keyed by pack id, fragment index,
// the fragment's table checksum (so that bytes of another fragment can never
// answer) and block number. Reads of neighbouring chunks share the blocks at
// their edges: each is read and verified once instead of once per chunk.
// Thread-safe.
class VerifiedBlockCache {
 public:
  struct Block {
    std::unique_ptr<uint8_t[]> bytes;
    size_t size = 0;
  };
  explicit VerifiedBlockCache(size_t capacity) : lru_(capacity) {}

  std::shared_ptr<const Block> get(uint64_t pack_id, int index, uint64_t table_checksum,
                                   uint64_t block) {
    return lru_.get(Key{pack_id, index, table_checksum, block});
  }
  void put(uint64_t pack_id, int index, uint64_t table_checksum, uint64_t block,
           std::shared_ptr<const Block> bytes) {
    lru_.put(Key{pack_id, index, table_checksum, block}, std::move(bytes));
  }

 private:
  struct Key {
    uint64_t pack_id;
    int index;
    uint64_t table_checksum;
    uint64_t block;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const {
      return std::hash<uint64_t>()((key.pack_id * 0x9E3779B97F4A7C15ULL + key.block) * 31 +
                                   static_cast<uint64_t>(key.index));
    }
  };
  SharedLru<Key, Block, KeyHash> lru_;
};

}  // namespace frugalfs::stripe
