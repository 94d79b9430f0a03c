#include "frugalfs/format.h"

#include <bit>

namespace frugalfs {

namespace {

constexpr uint32_t kMinChunk = 64;
constexpr uint32_t kMaxChunk = 16u * 1024 * 1024;

}  // namespace

Status ChunkerParams::validate() const {
  if (min_size < kMinChunk) {
    return Errorf(EINVAL, "chunker min_size {} is below {}", min_size, kMinChunk);
  }
  if (!(min_size < avg_size && avg_size < max_size)) {
    return Errorf(EINVAL, "chunker sizes must satisfy min < avg < max (got {} / {} / {})", min_size,
                  avg_size, max_size);
  }
  if (max_size > kMaxChunk) {
    return Errorf(EINVAL, "chunker max_size {} exceeds {}", max_size, kMaxChunk);
  }
  if (!std::has_single_bit(avg_size)) {
    return Errorf(EINVAL, "chunker avg_size {} is not a power of two", avg_size);
  }
  return Status::Ok();
}

ChunkerParams ChunkerParams::ForAverage(uint32_t avg_size) {
  ChunkerParams p;
  p.min_size = avg_size / 4;
  p.avg_size = avg_size;
  p.max_size = avg_size * 4;
  return p;
}

}  // namespace frugalfs
