// frugalfs recover: rebuilds a lost metadata directory from the volumes.
#include <getopt.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli_args.h"
#include "commands.h"
#include "frugalfs/backup.h"

namespace frugalfs::cli {

namespace {

constexpr const char* kRecoverUsageText =
    "Usage: frugalfs recover --meta NEW_META_DIR VOLUME...\n"
    "       frugalfs recover --meta NEW_META_DIR --volumes VOLUME[,VOLUME...]\n"
    "\n"
    "Rebuilds the metadata directory of a filesystem from its volumes alone,\n"
    "e.g. after the loss of the disk that held it. Restores the newest metadata\n"
    "backup found on the volumes (an older one if the newest cannot be read),\n"
    "records the volumes at the paths given, and takes in the packs written\n"
    "after that backup, replaying the writes they record: files of the backup\n"
    "get their later contents, files created since appear in /lost+found as\n"
    "#INODE. Give every volume that is reachable; up to m may be missing (the\n"
    "filesystem then mounts degraded). Changes nothing on the volumes. Run\n"
    "'frugalfs fsck NEW_META_DIR' afterwards, then mount.\n"
    "\n"
    "Name changes made after the backup (create, rename, unlink, truncate\n"
    "without a later write, chmod) are not on the volumes and are lost; see\n"
    "BACKUP AND RECOVERY in frugalfs(8).\n"
    "\n"
    "Options:\n"
    "      --meta DIR        where to create the new metadata directory (must not\n"
    "                        hold one)\n"
    "      --volumes LIST    volumes as comma-separated paths or file:// URIs (or\n"
    "                        give them as arguments)\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit status: 0 recovered, 1 failed (nothing is left in NEW_META_DIR),\n"
    "2 usage error.\n";

int usage_error(const std::string& message) {
  fmt::print(stderr, "frugalfs recover: {}\nTry 'frugalfs recover --help'.\n", message);
  return kExitUsage;
}

std::string local_time(int64_t us) {
  const time_t seconds = static_cast<time_t>(us / 1000000);
  tm t{};
  localtime_r(&seconds, &t);
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &t);
  return buf;
}

}  // namespace

int cmd_recover(int argc, char** argv) {
  enum { kMeta = 256, kVolumes };
  static const option kLongOptions[] = {
      {"meta", required_argument, nullptr, kMeta},
      {"volumes", required_argument, nullptr, kVolumes},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  RecoverOptions options;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", kLongOptions, nullptr)) != -1) {
    switch (c) {
      case kMeta:
        options.meta_dir = optarg;
        break;
      case kVolumes: {
        std::string_view list = optarg;
        while (!list.empty()) {
          const size_t comma = list.find(',');
          std::string_view item = list.substr(0, comma);
          if (item.empty()) return usage_error("--volumes: empty volume in the list");
          options.volume_uris.emplace_back(item);
          list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        }
        break;
      }
      case 'h':
        fputs(kRecoverUsageText, stdout);
        return kExitOk;
      case ':':
        return usage_error(fmt::format("option '{}' needs a value", argv[optind - 1]));
      default:
        return usage_error(fmt::format("unknown option '{}'", argv[optind - 1]));
    }
  }
  for (int i = optind; i < argc; ++i) options.volume_uris.emplace_back(argv[i]);
  if (options.meta_dir.empty()) return usage_error("--meta NEW_META_DIR is required");
  if (options.volume_uris.empty()) return usage_error("no volumes given");
  options.log = [](std::string_view line) { fmt::print(stderr, "frugalfs recover: {}\n", line); };

  const auto start = std::chrono::steady_clock::now();
  Result<RecoverReport> report = recover_metadata(options);
  if (!report.ok()) {
    fmt::print(stderr, "frugalfs recover: {}\n", report.status().message());
    return kExitFailure;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const RecoverReport& r = *report;
  fmt::print("restored backup {:016x} of {} ({} keys); {} backup{} found{}\n", r.backup_id,
             local_time(backup_time_us(r.backup_id)), r.backup_entries, r.backups_found,
             r.backups_found == 1 ? "" : "s",
             r.backups_unusable > 0 ? fmt::format(", {} newer unusable", r.backups_unusable) : "");
  fmt::print("volumes: {} given{}; {} fragments read{}\n", r.volumes_given,
             r.volumes_missing.empty() ? "" : fmt::format(", missing {}", fmt::join(r.volumes_missing, " ")),
             r.fragments_scanned,
             r.fragments_damaged > 0 ? fmt::format(" ({} damaged, left in place)", r.fragments_damaged) : "");
  fmt::print("packs: {} named by the backup{}; {} written after it taken in ({} new chunks){}\n", r.packs_named,
             r.packs_named_lost > 0 ? fmt::format(" ({} with too few fragments)", r.packs_named_lost) : "",
             r.packs_adopted, r.chunks_adopted,
             r.packs_unreadable > 0 ? fmt::format(", {} unreadable", r.packs_unreadable) : "");
  fmt::print("replayed {} flush{} written after the backup: {} file{} changed, {} new file{} in /lost+found{}{}\n",
             r.manifests_replayed, r.manifests_replayed == 1 ? "" : "es", r.files_replayed,
             r.files_replayed == 1 ? "" : "s", r.files_found, r.files_found == 1 ? "" : "s",
             r.writes_skipped > 0 ? fmt::format(", {} skipped", r.writes_skipped) : "",
             r.manifests_damaged > 0 ? fmt::format(", {} manifests unreadable", r.manifests_damaged) : "");
  fmt::print("{}: recovered in {:.2f} s; check it with 'frugalfs fsck {}'\n", options.meta_dir, seconds,
             options.meta_dir);
  return kExitOk;
}

}  // namespace frugalfs::cli
