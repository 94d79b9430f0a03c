// Value types that name on-disk formats and are shared by several layers:
// the chunker's parameters (recorded in the superblock; they decide chunk
// boundaries, hence dedup) and the codec byte of a stored chunk. They sit
// below every layer so that the meta layer can record them without
// depending on the chunk layer that uses them.
#pragma once

#include <cstdint>

#include "frugalfs/status.h"

namespace frugalfs {

struct ChunkerParams {
  uint32_t min_size = 16 * 1024;
  uint32_t avg_size = 64 * 1024;   // a power of two
  uint32_t max_size = 256 * 1024;

  // EINVAL unless 64 <= min < avg < max <= 16 MiB and avg is a power of two.
  Status validate() const;
  // The usual geometry for an average: min = avg/4, max = avg*4.
  static ChunkerParams ForAverage(uint32_t avg_size);
};

enum class Codec : uint8_t { kRaw = 0, kZstd = 1 };

}  // namespace frugalfs
