#include "fs/inode_table.h"

namespace frugalfs {

Result<InodeTable::Ptr> InodeTable::get(uint64_t ino,
                                        const std::function<Result<uint64_t>()>& load_size) {
  std::lock_guard lock(mu_);
  if (auto it = states_.find(ino); it != states_.end()) return it->second;
  FRUGAL_ASSIGN_OR_RETURN(uint64_t size, load_size());
  auto state = std::make_shared<InodeState>();
  state->size = size;
  states_.emplace(ino, state);
  return state;
}

InodeTable::Ptr InodeTable::find(uint64_t ino) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(ino);
  return it == states_.end() ? nullptr : it->second;
}

void InodeTable::add_lookup(const Ptr& state, uint64_t n) {
  std::lock_guard lock(mu_);
  std::lock_guard state_lock(state->mu);
  state->lookups += n;
}

bool InodeTable::add_open(const Ptr& state) {
  std::lock_guard lock(mu_);
  std::lock_guard state_lock(state->mu);
  if (state->deleted) return false;
  ++state->opens;
  return true;
}

bool InodeTable::drop_lookups(uint64_t ino, uint64_t n) {
  std::lock_guard lock(mu_);
  auto it = states_.find(ino);
  if (it == states_.end()) return true;
  InodeState& s = *it->second;
  std::lock_guard state_lock(s.mu);
  s.lookups -= std::min(s.lookups, n);
  return s.lookups == 0 && s.opens == 0;
}

bool InodeTable::drop_open(uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = states_.find(ino);
  if (it == states_.end()) return true;
  InodeState& s = *it->second;
  std::lock_guard state_lock(s.mu);
  if (s.opens > 0) --s.opens;
  return s.lookups == 0 && s.opens == 0;
}

bool InodeTable::referenced(uint64_t ino) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(ino);
  return it != states_.end() && (it->second->lookups > 0 || it->second->opens > 0);
}

void InodeTable::evict_if_idle(uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = states_.find(ino);
  if (it == states_.end()) return;
  InodeState& s = *it->second;
  if (s.lookups > 0 || s.opens > 0) return;
  std::lock_guard state_lock(s.mu);
  if (!s.dirty.empty() || s.busy()) return;
  s.detached = true;
  states_.erase(it);
}

void InodeTable::erase(uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = states_.find(ino);
  if (it == states_.end()) return;
  std::lock_guard state_lock(it->second->mu);
  it->second->detached = true;
  states_.erase(it);
}

std::vector<std::pair<uint64_t, InodeTable::Ptr>> InodeTable::dirty_states() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<uint64_t, Ptr>> out;
  for (const auto& [ino, state] : states_) {
    std::lock_guard state_lock(state->mu);
    if (!state->dirty.empty()) out.emplace_back(ino, state);
  }
  return out;
}

}  // namespace frugalfs
