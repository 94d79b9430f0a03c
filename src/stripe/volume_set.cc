// VolumeSet: the volumes of one filesystem and fragment placement.
//
// Placement ranks online volumes by estimated free bytes: the device's free
// space as last reported by Volume::space() (asked again at most every
// kSpaceRefresh), minus the bytes put since. Ties are broken by a position
// that rotates with every choose(), so equal volumes take turns.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <numeric>

#include "frugalfs/stripe.h"

namespace frugalfs {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kSpaceRefresh = std::chrono::seconds(3);
constexpr auto kAvoidAfterFailedPut = std::chrono::seconds(30);
// A full volume takes fragments again once it has this much room: a few
// fragments of a default pack, so that one freed fragment does not bring it
// back only to fail the next put.
constexpr uint64_t kRoomAfterFull = 8 << 20;

}  // namespace

struct VolumeSet::State {
  struct Member {
    std::string uri;
    Volume* volume = nullptr;  // null when offline; owned by `owned`
    bool online = false;
    bool space_known = false;
    bool refreshing = false;
    uint64_t total_bytes = 0;  // as reported by space() at `refreshed`
    uint64_t free_bytes = 0;   // likewise
    uint64_t put_since = 0;   // bytes accounted since `refreshed`
    Clock::time_point refreshed{};
    Clock::time_point avoid_until{};  // no new fragments before this (failed puts)
    bool full = false;  // a put failed with ENOSPC: no new fragments until there is room

    uint64_t estimated_free() const { return free_bytes > put_since ? free_bytes - put_since : 0; }
  };

  mutable std::mutex mu;
  std::map<uint32_t, Member> members;
  // Every Volume ever added, so pointers handed out by get() stay valid for
  // the VolumeSet's lifetime even if a member is replaced.
  std::vector<std::unique_ptr<Volume>> owned;
  uint64_t rotation = 0;
};

VolumeSet::VolumeSet() : state_(std::make_unique<State>()) {}
VolumeSet::~VolumeSet() = default;

void VolumeSet::add(uint32_t id, std::string uri, std::unique_ptr<Volume> volume) {
  std::lock_guard lock(state_->mu);
  State::Member& m = state_->members[id];
  m = State::Member{};
  m.uri = std::move(uri);
  m.volume = volume.get();
  m.online = volume != nullptr;
  if (volume) state_->owned.push_back(std::move(volume));
}

Volume* VolumeSet::get(uint32_t id) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->members.find(id);
  if (it == state_->members.end() || !it->second.online) return nullptr;
  return it->second.volume;
}

std::string VolumeSet::uri(uint32_t id) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->members.find(id);
  if (it == state_->members.end()) return fmt::format("<unknown volume {}>", id);
  return it->second.uri;
}

std::vector<uint32_t> VolumeSet::ids() const {
  std::lock_guard lock(state_->mu);
  std::vector<uint32_t> out;
  out.reserve(state_->members.size());
  for (const auto& [id, m] : state_->members) out.push_back(id);
  return out;
}

size_t VolumeSet::online_count() const {
  std::lock_guard lock(state_->mu);
  return static_cast<size_t>(std::count_if(state_->members.begin(), state_->members.end(),
                                           [](const auto& e) { return e.second.online; }));
}

void VolumeSet::mark_offline(uint32_t id, const Status& why) {
  std::string uri;
  {
    std::lock_guard lock(state_->mu);
    auto it = state_->members.find(id);
    if (it == state_->members.end() || !it->second.online) return;
    it->second.online = false;
    uri = it->second.uri;
  }
  fmt::print(stderr, "frugalfs: volume {} ({}) marked offline: {}\n", id, uri, why.ToString());
}

void VolumeSet::avoid_for_writes(uint32_t id, const Status& why) {
  const bool full = why.code() == ENOSPC;
  std::string uri;
  {
    std::lock_guard lock(state_->mu);
    auto it = state_->members.find(id);
    if (it == state_->members.end()) return;
    if (full) {
      if (it->second.full) return;  // said once
      it->second.full = true;
    } else {
      it->second.avoid_until = Clock::now() + kAvoidAfterFailedPut;
    }
    it->second.space_known = false;  // ask the device again next time
    uri = it->second.uri;
  }
  if (full) {
    fmt::print(stderr, "frugalfs: volume {} ({}) is full; it takes no new fragments until it has {} MiB free: {}\n",
               id, uri, kRoomAfterFull >> 20, why.ToString());
  } else {
    fmt::print(stderr, "frugalfs: volume {} ({}) takes no new fragments for {} s: {}\n", id, uri,
               std::chrono::duration_cast<std::chrono::seconds>(kAvoidAfterFailedPut).count(),
               why.ToString());
  }
}

bool VolumeSet::near_full() const {
  std::lock_guard lock(state_->mu);
  return std::any_of(state_->members.begin(), state_->members.end(), [](const auto& e) {
    const State::Member& m = e.second;
    return m.online && (m.full || (m.space_known && m.estimated_free() < 2 * reserve_of(m.total_bytes)));
  });
}

uint64_t VolumeSet::storable_bytes(const std::vector<uint64_t>& room, uint64_t k, uint64_t n) {
  if (n == 0) return 0;
  uint64_t sum = 0;
  for (uint64_t r : room) sum += r;
  uint64_t lo = 0, hi = sum / n;  // the answer s lies in [lo, hi]
  while (lo < hi) {
    const uint64_t s = hi - (hi - lo) / 2;
    uint64_t fits = 0;
    for (uint64_t r : room) fits += std::min(r, s);
    if (fits >= n * s) {
      lo = s;
    } else {
      hi = s - 1;
    }
  }
  return lo * k;
}

uint64_t VolumeSet::reserve_of(uint64_t total_bytes) {
  return std::min(std::max<uint64_t>(total_bytes / 100, 4 << 20), total_bytes / 4);
}

std::vector<uint32_t> VolumeSet::choose(size_t count, bool keep_reserve, uint64_t bytes_each,
                                        size_t* short_of_room) {
  State& s = *state_;
  // Refresh stale free-space figures outside the lock: space() may be a
  // network round trip. Volume objects outlive the set, so the pointers stay
  // valid; `refreshing` keeps concurrent callers from asking twice.
  std::vector<std::pair<uint32_t, Volume*>> stale;
  {
    std::lock_guard lock(s.mu);
    const auto now = Clock::now();
    for (auto& [id, m] : s.members) {
      if (m.online && !m.refreshing && (!m.space_known || now - m.refreshed >= kSpaceRefresh)) {
        m.refreshing = true;
        stale.emplace_back(id, m.volume);
      }
    }
  }
  for (auto& [id, volume] : stale) {
    Result<SpaceInfo> space = volume->space();
    std::lock_guard lock(s.mu);
    State::Member& m = s.members[id];
    m.refreshing = false;
    if (m.volume != volume) continue;  // replaced meanwhile
    m.refreshed = Clock::now();
    if (space.ok()) {
      m.total_bytes = space->total_bytes;
      m.free_bytes = space->free_bytes;
      m.put_since = 0;
      m.space_known = true;
      if (m.full && m.free_bytes >= kRoomAfterFull) {
        m.full = false;
        fmt::print(stderr, "frugalfs: volume {} ({}) has room again ({} MiB free)\n", id, m.uri,
                   m.free_bytes >> 20);
      }
    }
  }

  std::lock_guard lock(s.mu);
  struct Candidate {
    uint32_t id;
    uint64_t free;
    size_t turn;  // position after rotation, for ties
  };
  std::vector<Candidate> candidates;
  const size_t n = s.members.size();
  const size_t start = n == 0 ? 0 : static_cast<size_t>(s.rotation % n);
  size_t position = 0;
  const auto now = Clock::now();
  size_t no_room = 0;
  for (const auto& [id, m] : s.members) {
    const bool no_room_here =
        keep_reserve && (m.full || (m.space_known && m.estimated_free() < reserve_of(m.total_bytes) + bytes_each));
    if (m.online && no_room_here) ++no_room;
    if (m.online && !no_room_here && m.avoid_until <= now) {
      candidates.push_back({id, m.estimated_free(), (position + n - start) % n});
    }
    ++position;
  }
  if (short_of_room != nullptr) *short_of_room = no_room;
  ++s.rotation;
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.free != b.free) return a.free > b.free;
    return a.turn < b.turn;
  });
  std::vector<uint32_t> out;
  for (size_t i = 0; i < candidates.size() && i < count; ++i) {
    out.push_back(candidates[i].id);
    s.members[candidates[i].id].put_since += bytes_each;
  }
  return out;
}

}  // namespace frugalfs
