// Parsing and checking of the frugalfs command's arguments: sizes with
// suffixes, the --compress value, the mkfs geometry and the mount -o list.
// Pure functions, so the command's input rules are unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "frugalfs/status.h"

namespace frugalfs::cli {

// "4096", "64K", "4M", "1G" (binary multiples; a trailing "iB"/"B" is
// accepted too). EINVAL on anything else, zero, or overflow.
Result<uint64_t> parse_size(std::string_view text);

// A whole decimal number within [min, max].
Result<int64_t> parse_int(std::string_view text, int64_t min, int64_t max);

// Human-readable binary size: "4 MiB", "64 KiB", "1.5 GiB", "100 B".
std::string format_size(uint64_t bytes);

// "zstd:LEVEL" (or "zstd" for level 1) -> the zstd level, within -7..19.
Result<int> parse_compress(std::string_view text);

inline constexpr int kMinZstdLevel = -7;
inline constexpr int kMaxZstdLevel = 19;
inline constexpr uint64_t kMinChunkAvg = 4 << 10;
inline constexpr uint64_t kMaxChunkAvg = 4 << 20;
inline constexpr uint64_t kMinPackSize = 64 << 10;
inline constexpr uint64_t kMaxPackSize = 1ull << 30;

// EINVAL with a message naming the rule broken: k >= 1, m >= 0, k+m <= 255
// and k+m <= volumes.
Status check_geometry(int64_t data, int64_t parity, size_t volumes);
// A power of two within [4 KiB, 4 MiB].
Status check_chunk_avg(uint64_t avg);
Status check_pack_size(uint64_t size);

// The -o list of `frugalfs mount`, with frugalfs's own options taken out.
struct MountOptionList {
  std::vector<std::string> fuse_options;  // everything else, for libfuse
  uint64_t cache_bytes = 64ull << 20;
  uint64_t dirty_bytes_limit = 128ull << 20;
  double flush_interval_seconds = 5.0;
  unsigned threads = 0;  // 0: libfuse's default
  double backup_interval_seconds = 3600;  // 0: only at unmount
  unsigned backups = 3;                   // metadata backups kept
};

// Adds the comma-separated options of one -o argument to `list`. EINVAL on
// a bad value of one of frugalfs's options (cache_size=SIZE,
// dirty_limit=SIZE, flush_interval=SECONDS, threads=N,
// backup_interval=SECONDS, backups=N) or an empty option.
Status add_mount_options(std::string_view text, MountOptionList& list);

}  // namespace frugalfs::cli
