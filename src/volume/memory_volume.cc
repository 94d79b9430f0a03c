// MemoryVolume: objects in a map behind one mutex, for tests of the layers
// above. It honours the same contract as FileVolume (names, errors, listing)
// and has a fixed capacity so that space() and ENOSPC behave like a disk.
#include <algorithm>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "frugalfs/volume.h"

namespace frugalfs {
namespace {

constexpr uint64_t kMemoryCapacity = uint64_t{1} << 40;  // 1 TiB
// Prefetch hints kept for TEST_take_prefetches.
constexpr size_t kKeptPrefetches = 4096;

struct MemoryObject {
  std::vector<uint8_t> data;
  int64_t mtime = 0;
};

}  // namespace

struct MemoryVolume::State {
  explicit State(std::string u) : uri(std::move(u)) {}

  const std::string uri;
  mutable std::mutex mu;
  bool offline = false;                                      // guarded by mu
  std::map<std::string, MemoryObject, std::less<>> objects;  // guarded by mu
  uint64_t bytes = 0;                                        // guarded by mu
  uint64_t capacity = kMemoryCapacity;                       // guarded by mu
  std::vector<PrefetchHint> prefetches;                      // guarded by mu
  std::set<std::string, std::less<>> unsynced;               // guarded by mu
  Status sync_error;                                         // guarded by mu
  uint64_t syncs = 0;                                        // guarded by mu
  std::string sync_domain;                                   // guarded by mu; empty: the uri

  // Requires mu. Forgets an object, and that it awaited a sync.
  void erase(std::map<std::string, MemoryObject, std::less<>>::iterator it) {
    if (auto u = unsynced.find(it->first); u != unsynced.end()) unsynced.erase(u);
    bytes -= it->second.data.size();
    objects.erase(it);
  }

  // Requires mu. The error every call returns while the volume is offline.
  Status check(std::string_view op, std::string_view name) const {
    if (offline) return Errorf(EIO, "{}: {} {}: volume is offline", uri, op, name);
    if (!valid_object_name(name))
      return Errorf(EINVAL, "{}: {}: invalid object name '{}'", uri, op, name);
    return Status::Ok();
  }
};

MemoryVolume::MemoryVolume(std::string uri) : state_(std::make_unique<State>(std::move(uri))) {}
MemoryVolume::~MemoryVolume() = default;

std::string MemoryVolume::uri() const { return state_->uri; }

void MemoryVolume::TEST_set_capacity(uint64_t bytes) {
  std::lock_guard lock(state_->mu);
  state_->capacity = bytes;
}

void MemoryVolume::TEST_set_sync_domain(std::string domain) {
  std::lock_guard lock(state_->mu);
  state_->sync_domain = std::move(domain);
}

std::string MemoryVolume::sync_domain() const {
  std::lock_guard lock(state_->mu);
  return state_->sync_domain.empty() ? state_->uri : state_->sync_domain;
}

Status MemoryVolume::put(std::string_view name, std::span<const uint8_t> data) {
  std::lock_guard lock(state_->mu);
  FRUGAL_TRY(state_->check("put", name));
  auto it = state_->objects.find(name);
  uint64_t old_size = it == state_->objects.end() ? 0 : it->second.data.size();
  if (state_->bytes - old_size + data.size() > state_->capacity) {
    return Errorf(ENOSPC, "{}: put {}: volume full", state_->uri, name);
  }
  MemoryObject obj{std::vector<uint8_t>(data.begin(), data.end()),
                   static_cast<int64_t>(::time(nullptr))};
  if (it == state_->objects.end()) {
    state_->objects.emplace(std::string(name), std::move(obj));
  } else {
    it->second = std::move(obj);
  }
  state_->bytes = state_->bytes - old_size + data.size();
  if (auto u = state_->unsynced.find(name); u != state_->unsynced.end()) state_->unsynced.erase(u);
  return Status::Ok();
}

Status MemoryVolume::put_deferred(std::string_view name, std::span<const uint8_t> data) {
  FRUGAL_TRY(put(name, data));
  std::lock_guard lock(state_->mu);
  state_->unsynced.emplace(name);
  return Status::Ok();
}

Status MemoryVolume::sync() {
  std::lock_guard lock(state_->mu);
  if (state_->offline) return Errorf(EIO, "{}: sync: volume is offline", state_->uri);
  if (!state_->sync_error.ok()) return state_->sync_error;
  state_->unsynced.clear();
  ++state_->syncs;
  return Status::Ok();
}

size_t MemoryVolume::TEST_power_loss() {
  std::lock_guard lock(state_->mu);
  size_t lost = 0;
  while (!state_->unsynced.empty()) {
    auto it = state_->objects.find(*state_->unsynced.begin());
    if (it == state_->objects.end()) {  // removed by a racing call: nothing to lose
      state_->unsynced.erase(state_->unsynced.begin());
      continue;
    }
    state_->erase(it);
    ++lost;
  }
  return lost;
}

void MemoryVolume::TEST_set_sync_error(Status error) {
  std::lock_guard lock(state_->mu);
  state_->sync_error = std::move(error);
}

uint64_t MemoryVolume::TEST_sync_count() const {
  std::lock_guard lock(state_->mu);
  return state_->syncs;
}

Result<size_t> MemoryVolume::read(std::string_view name, uint64_t offset, std::span<uint8_t> out) {
  std::lock_guard lock(state_->mu);
  FRUGAL_TRY(state_->check("read", name));
  auto it = state_->objects.find(name);
  if (it == state_->objects.end()) {
    return Errorf(ENOENT, "{}: read {}: no such object", state_->uri, name);
  }
  const std::vector<uint8_t>& data = it->second.data;
  if (offset >= data.size()) return size_t{0};
  size_t n = std::min<size_t>(out.size(), data.size() - static_cast<size_t>(offset));
  std::copy_n(data.begin() + static_cast<ptrdiff_t>(offset), n, out.begin());
  return n;
}

Status MemoryVolume::remove(std::string_view name) {
  std::lock_guard lock(state_->mu);
  FRUGAL_TRY(state_->check("remove", name));
  auto it = state_->objects.find(name);
  if (it == state_->objects.end()) {
    return Errorf(ENOENT, "{}: remove {}: no such object", state_->uri, name);
  }
  state_->erase(it);
  return Status::Ok();
}

Result<ObjectInfo> MemoryVolume::stat(std::string_view name) {
  std::lock_guard lock(state_->mu);
  FRUGAL_TRY(state_->check("stat", name));
  auto it = state_->objects.find(name);
  if (it == state_->objects.end()) {
    return Errorf(ENOENT, "{}: stat {}: no such object", state_->uri, name);
  }
  return ObjectInfo{it->first, it->second.data.size(), it->second.mtime};
}

Status MemoryVolume::list(std::string_view prefix,
                          const std::function<void(const ObjectInfo&)>& visit) {
  std::vector<ObjectInfo> found;
  {
    std::lock_guard lock(state_->mu);
    if (state_->offline) return Errorf(EIO, "{}: list: volume is offline", state_->uri);
    for (auto it = state_->objects.lower_bound(prefix);
         it != state_->objects.end() && it->first.starts_with(prefix); ++it) {
      found.push_back(ObjectInfo{it->first, it->second.data.size(), it->second.mtime});
    }
  }
  // Outside the lock, so that visit may call back into the volume.
  for (const ObjectInfo& info : found) visit(info);
  return Status::Ok();
}

Result<SpaceInfo> MemoryVolume::space() {
  std::lock_guard lock(state_->mu);
  if (state_->offline) return Errorf(EIO, "{}: space: volume is offline", state_->uri);
  return SpaceInfo{state_->capacity, state_->capacity - std::min(state_->capacity, state_->bytes)};
}

void MemoryVolume::prefetch(std::string_view name, uint64_t offset, uint64_t len) {
  std::lock_guard lock(state_->mu);
  // A long-lived volume (a filesystem test that reads ahead and never takes
  // them) keeps only the latest.
  if (state_->prefetches.size() >= kKeptPrefetches) {
    state_->prefetches.erase(state_->prefetches.begin(),
                             state_->prefetches.begin() + kKeptPrefetches / 2);
  }
  state_->prefetches.push_back({std::string(name), offset, len});
}

std::vector<MemoryVolume::PrefetchHint> MemoryVolume::TEST_take_prefetches() {
  std::lock_guard lock(state_->mu);
  return std::exchange(state_->prefetches, {});
}

void MemoryVolume::TEST_set_offline(bool offline) {
  std::lock_guard lock(state_->mu);
  state_->offline = offline;
}

void MemoryVolume::TEST_corrupt(std::string_view name, uint64_t offset) {
  std::lock_guard lock(state_->mu);
  auto it = state_->objects.find(name);
  if (it == state_->objects.end() || offset >= it->second.data.size()) return;
  it->second.data[static_cast<size_t>(offset)] ^= 0xff;
}

void MemoryVolume::TEST_wipe() {
  std::lock_guard lock(state_->mu);
  state_->objects.clear();
  state_->unsynced.clear();
  state_->bytes = 0;
}

size_t MemoryVolume::TEST_object_count() const {
  std::lock_guard lock(state_->mu);
  return state_->objects.size();
}

uint64_t MemoryVolume::TEST_total_bytes() const {
  std::lock_guard lock(state_->mu);
  return state_->bytes;
}

}  // namespace frugalfs
