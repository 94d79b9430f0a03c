// A bounded LRU cache of decompressed chunks, keyed by chunk id. Chunk ids
// name content, so a cached chunk never goes stale. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "frugalfs/hash.h"

namespace frugalfs {

// An allocator whose default-constructed elements are left uninitialised: a
// chunk's buffer is read or decompressed over in full right after it is
// made, so zero-filling it first would only cost a pass over the bytes.
template <class T>
struct UninitializedAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <class U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// A chunk's bytes.
using ChunkBytes = std::vector<uint8_t, UninitializedAllocator<uint8_t>>;

class ChunkCache {
 public:
  using Data = std::shared_ptr<const ChunkBytes>;

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
