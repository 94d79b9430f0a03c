// The pack store's read-side caches, both bounded and thread-safe: checksum
// tables, and windows of fragment payload already verified.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "frugalfs/status.h"
#include "stripe/fragment_format.h"

namespace frugalfs::stripe {

// One fragment of one pack.
struct FragmentKey {
  uint64_t pack_id;
  int index;
  bool operator==(const FragmentKey&) const = default;
};
struct FragmentKeyHash {
  size_t operator()(const FragmentKey& key) const {
    return std::hash<uint64_t>()(key.pack_id * 0x9E3779B97F4A7C15ULL +
                                 static_cast<uint64_t>(key.index));
  }
};

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
  using Key = FragmentKey;
  using KeyHash = FragmentKeyHash;
  SharedLru<Key, ChecksumTable, KeyHash> lru_;
};

// Windows of fragment payload (a run of whole checksum blocks) that passed
// their checksums, keyed by pack id, fragment index, the fragment's table
// checksum (so that bytes of another fragment can never answer) and window
// number. A sequential reader reads and verifies each window once, in one
// read, and takes the chunks in it in place.
class VerifiedWindowCache {
 public:
  struct Window {
    std::unique_ptr<uint8_t[]> bytes;
    size_t size = 0;
  };
  using WindowPtr = std::shared_ptr<const Window>;

  explicit VerifiedWindowCache(size_t capacity) : lru_(capacity) {}

  // Null when absent.
  WindowPtr get(uint64_t pack_id, int index, uint64_t table_checksum, uint64_t window) {
    return lru_.get(Key{pack_id, index, table_checksum, window});
  }
  // Whether the window is cached or being loaded.
  bool cached_or_loading(uint64_t pack_id, int index, uint64_t table_checksum, uint64_t window);
  // The window from the cache, or from `load` and then kept. A caller that
  // asks for a window another caller is loading waits for that load instead
  // of reading the same bytes again. A failed load is not kept.
  Result<WindowPtr> get_or_load(uint64_t pack_id, int index, uint64_t table_checksum,
                                uint64_t window, const std::function<Result<WindowPtr>()>& load);

 private:
  struct Key {
    uint64_t pack_id;
    int index;
    uint64_t table_checksum;
    uint64_t window;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const {
      return std::hash<uint64_t>()((key.pack_id * 0x9E3779B97F4A7C15ULL + key.window) * 31 +
                                   static_cast<uint64_t>(key.index));
    }
  };
  SharedLru<Key, Window, KeyHash> lru_;
  std::mutex loading_mu_;
  std::condition_variable loaded_;
  std::unordered_set<Key, KeyHash> loading_;  // windows being loaded now
};

}  // namespace frugalfs::stripe
