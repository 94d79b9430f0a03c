// Content-defined chunking (FastCDC with normalized chunking) and the chunk
// codec (zstd, or raw when compression does not shrink the chunk).
//
// Thread-safety: FastCdc is immutable; compress/decompress are reentrant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "frugalfs/format.h"
#include "frugalfs/status.h"

namespace frugalfs {


struct Cut {
  size_t length = 0;
  // True when the cut was found by content (or at max_size); false when data
  // ran out first, so the caller must append more bytes before cutting unless
  // it is at the end of the stream.
  bool natural = false;
};

class FastCdc {
 public:
  explicit FastCdc(ChunkerParams params);
  const ChunkerParams& params() const { return params_; }

  // The first chunk boundary in data. Cut points depend only on the bytes
  // before them since the previous cut, so inserting bytes early in a stream
  // shifts later boundaries with the content instead of destroying them.
  Cut cut(std::span<const uint8_t> data) const;

  // The lengths of the chunks that repeated cut() calls give from the start
  // of data: every natural cut, then, when `final` (data ends the stream),
  // the piece left over. Without `final` the bytes after the last natural
  // cut are not a chunk yet and are not listed. Large inputs are cut on two
  // threads (see fastcdc.cc); the result is always exactly the serial one.
  std::vector<size_t> cut_all(std::span<const uint8_t> data, bool final) const;

 private:
  void cut_ends(std::span<const uint8_t> data, size_t from, bool final,
                std::vector<size_t>& ends) const;

  ChunkerParams params_;
  uint64_t mask_small_ = 0;  // stricter mask, used before avg_size
  uint64_t mask_large_ = 0;  // looser mask, used after avg_size
};


// Compresses `in` with zstd at `level` into `out` (resized to fit) and
// returns kZstd; when the result would not be smaller, leaves out empty and
// returns kRaw (the caller stores `in` as it is).
Codec compress_chunk(std::span<const uint8_t> in, int level, std::vector<uint8_t>& out);

// Decodes a stored chunk into out, which must be exactly the raw length. EIO
// when the stored bytes are corrupt or the length does not match.
Status decompress_chunk(Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> out);

// True when every byte is zero (such chunks are stored as holes).
bool all_zero(std::span<const uint8_t> data);

}  // namespace frugalfs
