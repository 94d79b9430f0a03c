#include "check/fsck.h"

#include <algorithm>
#include <chrono>

#include "check/fsck_internal.h"

namespace frugalfs::check {

std::string_view severity_name(Severity severity) {
  switch (severity) {
    case Severity::kError:
      return "error";
    case Severity::kRepaired:
      return "repaired";
    case Severity::kWarning:
      break;
  }
  return "warning";
}

namespace {

size_t count_severity(const std::vector<Problem>& problems, Severity severity) {
  return static_cast<size_t>(std::count_if(problems.begin(), problems.end(),
                                           [&](const Problem& p) { return p.severity == severity; }));
}

}  // namespace

size_t FsckReport::errors() const { return count_severity(problems, Severity::kError); }
size_t FsckReport::warnings() const { return count_severity(problems, Severity::kWarning); }
size_t FsckReport::repaired() const { return count_severity(problems, Severity::kRepaired); }

size_t FsckReport::count(std::string_view kind) const {
  return static_cast<size_t>(std::count_if(problems.begin(), problems.end(),
                                           [&](const Problem& p) { return p.kind == kind; }));
}

std::string short_id(const Sha256& id) { return to_hex(id); }

Result<FsckReport> run_fsck(const std::string& meta_dir, const FsckOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<MetaStore> meta, MetaStore::open(meta_dir));
  FsckReport report;
  Checker c(options, report, *meta);
  auto lap = [&, t = start](std::string_view what) mutable {
    auto now = std::chrono::steady_clock::now();
    c.progress(fmt::format("{} ({:.2f} s)", what, std::chrono::duration<double>(now - t).count()));
    t = now;
  };
  FRUGAL_TRY(load_chunks(c));
  lap(fmt::format("loaded {} chunk records", report.chunks));
  FRUGAL_TRY(check_namespace(c));
  lap(fmt::format("checked {} inodes, {} entries, {} extents", report.inodes, report.dentries,
                  report.extents));
  FRUGAL_TRY(check_volumes(c));
  lap(fmt::format("listed {} volumes, {} fragment objects", report.volumes, report.fragments));
  FRUGAL_TRY(check_chunks_and_packs(c));
  lap(fmt::format("checked {} chunks and {} packs{}", report.chunks, report.packs,
                  options.verify_data ? " (data verified)" : ""));
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace frugalfs::check
