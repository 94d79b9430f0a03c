// Offline consistency check of a filesystem (frugalfs fsck): verifies every
// invariant of DESIGN.md ("Invariants") on the metadata and the volumes of an
// unmounted filesystem and reports each problem found. The only repair so far
// is the removal of orphan fragments (FsckOptions::repair_orphans); every
// other problem is reported and left alone. Each check lives beside the data it walks
// (namespace_check.cc: names, inodes, extents; data_check.cc: chunks, packs,
// fragments, volumes), so a repair can later be added next to it.
//
// Memory: the checker keeps compact in-memory maps keyed by ids (inodes,
// chunks, packs, fragment objects), a few dozen bytes per entry. That is fine
// for a few million entries; tens of millions will need a streaming pass
// (merge of sorted scans) instead.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/status.h"

namespace frugalfs::check {

enum class Severity {
  kWarning,  // legal or self-healing state (degraded pack, stale temp object)
  kError,    // a broken invariant
  kRepaired, // a broken invariant that this run fixed
};

std::string_view severity_name(Severity severity);

struct Problem {
  Severity severity = Severity::kError;
  std::string kind;     // short stable tag, e.g. "nlink", "refcount", "degraded-pack"
  std::string message;  // one line naming the object(s) concerned
};

struct FsckOptions {
  // Also read every fragment whole and check its checksums (slow: reads all data).
  bool verify_data = false;
  // Fragment objects no pack names are orphans only when older than this
  // (younger ones may belong to a pack whose metadata is about to commit).
  int64_t grace_seconds = 3600;
  // Delete orphan fragments (older than the grace period). They are what a
  // crash leaves of pack writes whose metadata never committed. Never use
  // this on metadata restored from an old copy: fragments written after that
  // copy look like orphans but are data that recovery needs.
  bool repair_orphans = false;
  // Progress lines (-v); none when empty.
  std::function<void(std::string_view)> progress;
};

struct FsckReport {
  std::vector<Problem> problems;
  // What was examined.
  uint64_t inodes = 0;
  uint64_t dentries = 0;
  uint64_t extents = 0;
  uint64_t chunks = 0;
  uint64_t packs = 0;
  uint64_t retired_packs = 0;  // kept until the next metadata backup
  uint64_t backups = 0;        // metadata backups on the volumes
  uint64_t volumes = 0;
  uint64_t fragments = 0;          // fragment objects found on the volumes
  uint64_t young_fragments = 0;    // unnamed fragments skipped within the grace period
  uint64_t degraded_packs = 0;
  uint64_t packs_verified = 0;     // with verify_data
  double seconds = 0;

  size_t errors() const;
  size_t warnings() const;
  size_t repaired() const;
  // Problems of one kind (for tests and repair).
  size_t count(std::string_view kind) const;
};

// Checks the filesystem whose metadata is in meta_dir. Problems found are in
// the report; an error Status means the check could not run (EBUSY: the
// metadata is in use, e.g. mounted; ENOENT: no filesystem there; EIO: a
// metadata scan failed).
Result<FsckReport> run_fsck(const std::string& meta_dir, const FsckOptions& options);

}  // namespace frugalfs::check
