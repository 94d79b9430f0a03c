// frugalfs fsck: offline check of every invariant; --repair removes orphan
// fragments. Exit status as fsck(8): 0 clean (warnings allowed), 1 errors
// corrected, 4 errors left uncorrected, 8 operational error, 16 usage error.
#include <getopt.h>

#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "check/fsck.h"
#include "cli_args.h"
#include "commands.h"

namespace frugalfs::cli {

namespace {

constexpr int kFsckClean = 0;
constexpr int kFsckCorrected = 1;
constexpr int kFsckErrorsLeft = 4;
constexpr int kFsckOperational = 8;
constexpr int kFsckUsage = 16;

constexpr const char* kFsckUsageText =
    "Usage: frugalfs fsck [OPTIONS] META_DIR\n"
    "\n"
    "Checks an unmounted filesystem: names, inodes and link counts, extents,\n"
    "chunk refcounts and garbage marks, pack records, volume labels, and that\n"
    "every fragment is on its volume with the right length. Reports each\n"
    "problem on one line; changes nothing unless --repair is given.\n"
    "\n"
    "Options:\n"
    "      --verify-data    also read every fragment and check its checksums\n"
    "      --grace SECONDS  fragments named by no pack are orphans only when older\n"
    "                       than this (default 3600)\n"
    "      --repair         delete orphan fragments (left by a crash during a pack\n"
    "                       write) older than the grace period; other problems\n"
    "                       are only reported. Not on restored metadata: see\n"
    "                       frugalfs(8)\n"
    "  -v, --verbose        print progress and timings\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 no errors (warnings, e.g. degraded packs, are printed),\n"
    "1 errors found and all repaired, 4 errors left, 8 the check could not run,\n"
    "16 usage error.\n";

int usage_error(const std::string& message) {
  fmt::print(stderr, "frugalfs fsck: {}\nTry 'frugalfs fsck --help'.\n", message);
  return kFsckUsage;
}

}  // namespace

int cmd_fsck(int argc, char** argv) {
  enum { kVerifyData = 256, kGrace, kRepair };
  static const option kLongOptions[] = {
      {"verify-data", no_argument, nullptr, kVerifyData},
      {"grace", required_argument, nullptr, kGrace},
      {"repair", no_argument, nullptr, kRepair},
      {"verbose", no_argument, nullptr, 'v'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  check::FsckOptions options;
  bool verbose = false;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":vh", kLongOptions, nullptr)) != -1) {
    switch (c) {
      case kVerifyData:
        options.verify_data = true;
        break;
      case kGrace: {
        Result<int64_t> n = parse_int(optarg, 0, int64_t{1} << 40);
        if (!n.ok()) return usage_error(n.status().WithContext("--grace").message());
        options.grace_seconds = *n;
        break;
      }
      case kRepair:
        options.repair_orphans = true;
        break;
      case 'v':
        verbose = true;
        break;
      case 'h':
        fputs(kFsckUsageText, stdout);
        return kFsckClean;
      case ':':
        return usage_error(fmt::format("option '{}' needs a value", argv[optind - 1]));
      default:
        return usage_error(fmt::format("unknown option '{}'", argv[optind - 1]));
    }
  }
  if (argc - optind != 1) return usage_error("expected exactly one META_DIR");
  const std::string meta_dir = argv[optind];
  if (verbose) {
    options.progress = [](std::string_view line) { fmt::print("frugalfs fsck: {}\n", line); };
  }

  Result<check::FsckReport> report = check::run_fsck(meta_dir, options);
  if (!report.ok()) {
    const Status& s = report.status();
    fmt::print(stderr, "frugalfs fsck: cannot check {}: {}{}\n", meta_dir, s.message(),
               s.code() == EBUSY ? " (is it mounted? unmount it first)" : "");
    return kFsckOperational;
  }
  for (const check::Problem& p : report->problems) {
    fmt::print("{}: {}: {}\n", check::severity_name(p.severity), p.kind, p.message);
  }
  const size_t errors = report->errors();
  const size_t warnings = report->warnings();
  const size_t repaired = report->repaired();
  std::string young;
  if (report->young_fragments > 0) {
    young = fmt::format(" ({} unnamed fragment{} younger than {} s not counted)", report->young_fragments,
                        report->young_fragments == 1 ? "" : "s", options.grace_seconds);
  }
  fmt::print("{}: {} inodes, {} entries, {} extents, {} chunks, {} packs{} ({} retired), {} backups, "
             "{} volumes; {} error{}{}, {} warning{}{}; {:.2f} s\n",
             meta_dir, report->inodes, report->dentries, report->extents, report->chunks,
             report->packs, options.verify_data ? " (data verified)" : "", report->retired_packs,
             report->backups, report->volumes,
             errors, errors == 1 ? "" : "s", repaired > 0 ? fmt::format(", {} repaired", repaired) : "",
             warnings, warnings == 1 ? "" : "s", young, report->seconds);
  if (errors > 0) return kFsckErrorsLeft;
  return repaired > 0 ? kFsckCorrected : kFsckClean;
}

}  // namespace frugalfs::cli
