// Shared state of the fsck passes (private to src/check).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "check/fsck.h"
#include "frugalfs/hash.h"
#include "frugalfs/meta.h"
#include "frugalfs/stripe.h"

namespace frugalfs::check {

struct Sha256Hash {
  size_t operator()(const Sha256& id) const {
    size_t h;
    std::memcpy(&h, id.data(), sizeof h);  // ids are uniformly distributed
    return h;
  }
};

struct ChunkInfo {
  uint64_t pack_id = 0;
  uint64_t offset = 0;
  uint64_t refcount = 0;  // as recorded
  uint64_t refs = 0;      // extents found naming it
  uint32_t stored_len = 0;
  uint32_t raw_len = 0;
  bool garbage = false;
};

struct FragmentKey {
  uint64_t pack_id = 0;
  uint32_t index = 0;
  bool operator==(const FragmentKey&) const = default;
};
struct FragmentKeyHash {
  size_t operator()(const FragmentKey& key) const {
    return std::hash<uint64_t>()(key.pack_id * 0x9E3779B97F4A7C15ULL + key.index);
  }
};
struct FragmentObject {
  uint64_t size = 0;
  int64_t mtime = 0;
  bool claimed = false;  // named by a pack record
};

// One volume of the volume table, as found.
struct VolumeInfo {
  uint32_t id = 0;
  std::string uri;
  bool online = false;  // opened, correctly labelled and listed
  std::unordered_map<FragmentKey, FragmentObject, FragmentKeyHash> fragments;
};

struct Checker {
  Checker(const FsckOptions& o, FsckReport& r, MetaStore& m)
      : options(o), report(r), meta(m), sb(m.superblock()) {}

  const FsckOptions& options;
  FsckReport& report;
  MetaStore& meta;
  Superblock sb;

  std::unordered_map<Sha256, ChunkInfo, Sha256Hash> chunks;
  std::unordered_map<uint32_t, VolumeInfo> volumes;
  VolumeSet volume_set;  // online volumes, for PackStore::verify

  template <typename... Args>
  void problem(Severity severity, std::string kind, fmt::format_string<Args...> format,
               Args&&... args) {
    report.problems.push_back(
        Problem{severity, std::move(kind), fmt::format(format, std::forward<Args>(args)...)});
  }
  template <typename... Args>
  void error(std::string kind, fmt::format_string<Args...> format, Args&&... args) {
    problem(Severity::kError, std::move(kind), format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void warn(std::string kind, fmt::format_string<Args...> format, Args&&... args) {
    problem(Severity::kWarning, std::move(kind), format, std::forward<Args>(args)...);
  }
  void progress(std::string_view line) const {
    if (options.progress) options.progress(line);
  }
};

// The passes, in the order run_fsck calls them.
Status load_chunks(Checker& c);     // data_check.cc: chunk records and garbage marks
Status check_namespace(Checker& c); // namespace_check.cc: inodes, entries, extents (counts refs)
Status check_volumes(Checker& c);   // data_check.cc: labels, fragment listings
Status check_chunks_and_packs(Checker& c);  // data_check.cc: refcounts, packs, fragments, orphans

std::string short_id(const Sha256& id);

}  // namespace frugalfs::check
