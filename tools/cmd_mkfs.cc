// frugalfs mkfs: checks every input, then make_filesystem().
#include <getopt.h>

#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli_args.h"
#include "commands.h"
#include "frugalfs/fs.h"

namespace frugalfs::cli {

namespace {

constexpr const char* kMkfsUsage =
    "Usage: frugalfs mkfs [OPTIONS] META_DIR VOLUME...\n"
    "\n"
    "Creates a filesystem: its metadata database in META_DIR (which must not\n"
    "exist yet) and a label on each VOLUME (an empty or missing directory, or a\n"
    "file:// URI). Packs of data are cut into K data and M parity fragments on\n"
    "K+M distinct volumes, so any M volumes may be lost.\n"
    "\n"
    "Options:\n"
    "  -k, --data K              data fragments per pack (default 2)\n"
    "  -m, --parity M            parity fragments per pack (default 2)\n"
    "      --chunk-avg SIZE      average dedup chunk size, a power of two from\n"
    "                            4K to 4M (default 64K)\n"
    "      --compress zstd:LEVEL zstd level from -7 (fastest) to 19 (default zstd:1)\n"
    "      --pack-size SIZE      bytes of chunks per pack, 64K to 1G (default 4M)\n"
    "  -h, --help                show this help\n"
    "\n"
    "SIZE is a number of bytes with an optional K, M or G suffix (powers of 1024).\n";

int fail(const Status& status) {
  fmt::print(stderr, "frugalfs mkfs: {}\n", status.message());
  return kExitFailure;
}

int usage_error(const std::string& message) {
  fmt::print(stderr, "frugalfs mkfs: {}\nTry 'frugalfs mkfs --help'.\n", message);
  return kExitUsage;
}

}  // namespace

int cmd_mkfs(int argc, char** argv) {
  enum { kChunkAvg = 256, kCompress, kPackSize };
  static const option kLongOptions[] = {
      {"data", required_argument, nullptr, 'k'},
      {"parity", required_argument, nullptr, 'm'},
      {"chunk-avg", required_argument, nullptr, kChunkAvg},
      {"compress", required_argument, nullptr, kCompress},
      {"pack-size", required_argument, nullptr, kPackSize},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };

  MkfsOptions options;
  int64_t data = options.data_fragments;
  int64_t parity = options.parity_fragments;
  uint64_t chunk_avg = options.chunker.avg_size;
  uint64_t pack_size = options.pack_size;

  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":k:m:h", kLongOptions, nullptr)) != -1) {
    switch (c) {
      case 'k':
      case 'm': {
        Result<int64_t> n = parse_int(optarg, c == 'k' ? 1 : 0, 255);
        if (!n.ok()) {
          return fail(n.status().WithContext(c == 'k' ? "--data" : "--parity"));
        }
        (c == 'k' ? data : parity) = *n;
        break;
      }
      case kChunkAvg: {
        Result<uint64_t> size = parse_size(optarg);
        if (!size.ok()) return fail(size.status().WithContext("--chunk-avg"));
        chunk_avg = *size;
        break;
      }
      case kCompress: {
        Result<int> level = parse_compress(optarg);
        if (!level.ok()) return fail(level.status());
        options.compress_level = *level;
        break;
      }
      case kPackSize: {
        Result<uint64_t> size = parse_size(optarg);
        if (!size.ok()) return fail(size.status().WithContext("--pack-size"));
        pack_size = *size;
        break;
      }
      case 'h':
        fputs(kMkfsUsage, stdout);
        return kExitOk;
      case ':':
        return usage_error(fmt::format("option '{}' needs a value", argv[optind - 1]));
      default:
        return usage_error(fmt::format("unknown option '{}'", argv[optind - 1]));
    }
  }
  if (argc - optind < 2) return usage_error("expected META_DIR and at least one VOLUME");

  options.meta_dir = argv[optind];
  for (int i = optind + 1; i < argc; ++i) options.volume_uris.emplace_back(argv[i]);

  if (Status s = check_geometry(data, parity, options.volume_uris.size()); !s.ok()) return fail(s);
  if (Status s = check_chunk_avg(chunk_avg); !s.ok()) return fail(s);
  if (Status s = check_pack_size(pack_size); !s.ok()) return fail(s);
  options.data_fragments = static_cast<uint32_t>(data);
  options.parity_fragments = static_cast<uint32_t>(parity);
  options.chunker = ChunkerParams::ForAverage(static_cast<uint32_t>(chunk_avg));
  options.pack_size = static_cast<uint32_t>(pack_size);
  if (Status s = options.chunker.validate(); !s.ok()) return fail(s.WithContext("--chunk-avg"));

  Result<std::string> id = make_filesystem(options);
  if (!id.ok()) {
    fmt::print(stderr, "frugalfs mkfs: {}\n", id.status().ToString());
    return kExitFailure;
  }

  fmt::print("created frugalfs filesystem {}\n", *id);
  fmt::print("  metadata  {}\n", options.meta_dir);
  fmt::print("  volumes   {}:", options.volume_uris.size());
  for (const std::string& v : options.volume_uris) fmt::print(" {}", v);
  fmt::print("\n");
  fmt::print("  coding    {} data + {} parity fragments per pack; survives the loss of any {} "
             "volume{}\n",
             data, parity, parity, parity == 1 ? "" : "s");
  fmt::print("  chunks    average {} ({} .. {}), zstd level {}\n", format_size(chunk_avg),
             format_size(options.chunker.min_size), format_size(options.chunker.max_size),
             options.compress_level);
  fmt::print("  packs     {}\n", format_size(pack_size));
  return kExitOk;
}

}  // namespace frugalfs::cli
