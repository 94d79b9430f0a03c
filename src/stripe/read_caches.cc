#include "stripe/read_caches.h"

namespace frugalfs::stripe {

std::shared_ptr<const ChecksumTable> ChecksumTableCache::get(uint64_t pack_id, int index,
                                                             uint64_t expected_checksum) {
  auto table = lru_.get(Key{pack_id, index});
  if (table == nullptr || table->table_checksum != expected_checksum) return nullptr;
  return table;
}

void ChecksumTableCache::put(uint64_t pack_id, int index,
                             std::shared_ptr<const ChecksumTable> table) {
  lru_.put(Key{pack_id, index}, std::move(table));
}

void ChecksumTableCache::erase(uint64_t pack_id, int index) { lru_.erase(Key{pack_id, index}); }

bool VerifiedWindowCache::cached_or_loading(uint64_t pack_id, int index, uint64_t table_checksum,
                                            uint64_t window) {
  const Key key{pack_id, index, table_checksum, window};
  if (lru_.get(key)) return true;
  std::lock_guard lock(loading_mu_);
  return loading_.contains(key);
}

Result<VerifiedWindowCache::WindowPtr> VerifiedWindowCache::get_or_load(
    uint64_t pack_id, int index, uint64_t table_checksum, uint64_t window,
    const std::function<Result<WindowPtr>()>& load) {
  const Key key{pack_id, index, table_checksum, window};
  if (WindowPtr cached = lru_.get(key)) return cached;
  {
    std::unique_lock lock(loading_mu_);
    loaded_.wait(lock, [&] { return !loading_.contains(key); });
    if (WindowPtr cached = lru_.get(key)) return cached;  // loaded while we waited
    loading_.insert(key);
  }
  struct Done {  // lets the waiters go however the load ends
    VerifiedWindowCache& cache;
    const Key& key;
    ~Done() {
      {
        std::lock_guard lock(cache.loading_mu_);
        cache.loading_.erase(key);
      }
      cache.loaded_.notify_all();
    }
  } done{*this, key};
  Result<WindowPtr> loaded = load();
  if (loaded.ok()) lru_.put(key, *loaded);
  return loaded;
}

}  // namespace frugalfs::stripe
