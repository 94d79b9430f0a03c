// A bounded LRU cache of decompressed chunks, keyed by chunk id. Chunk ids
// name content, so a cached chunk never goes stale. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "frugalfs/hash.h"

namespace frugalfs {

class ChunkCache {
 public:
  using Data = std::shared_ptr<const std::vector<uint8_t>>;

  explicit ChunkCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Null when absent.
  Data get(const Sha256& id) {
    std::lock_guard lock(mu_);
    auto it = index_.find(key(id));
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->data;
  }

  void put(const Sha256& id, Data data) {
    if (!data || data->size() > capacity_) return;
    std::lock_guard lock(mu_);
    std::string k = key(id);
    if (auto it = index_.find(k); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    bytes_ += data->size();
    lru_.push_front(Entry{k, std::move(data)});
    index_.emplace(std::move(k), lru_.begin());
    while (bytes_ > capacity_) {
      bytes_ -= lru_.back().data->size();
      index_.erase(lru_.back().key);
      lru_.pop_back();
    }
  }

  uint64_t bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
  }

 private:
  struct Entry {
    std::string key;
    Data data;
  };
  static std::string key(const Sha256& id) {
    return std::string(reinterpret_cast<const char*>(id.data()), id.size());
  }

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  uint64_t bytes_ = 0;
};

}  // namespace frugalfs
