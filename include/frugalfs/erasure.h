// Erasure coding behind one narrow interface, so placement, repair and I/O
// never see the coding library and every erasure pattern is testable alone.
//
//   pack bytes:   | data 0 | data 1 | ... | data k-1 |   (zero padded)
//   fragments:    d0 d1 ... d(k-1) p0 ... p(m-1)          (all `size` bytes)
//
// The code is systematic (data fragments hold the pack's bytes unchanged) and
// works byte position by byte position (Reed-Solomon over GF(2^8), w = 8), so
// any sub-range [a, b) of the fragments encodes and decodes on its own.
//
// Thread-safety: immutable after construction; encode/decode may run
// concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "frugalfs/status.h"

namespace frugalfs {

class ErasureCode {
 public:
  virtual ~ErasureCode() = default;

  // Region sizes passed to encode/decode must be multiples of this.
  static constexpr size_t kAlignment = 8;

  // Reed-Solomon (Vandermonde, Jerasure) with k data and m parity fragments;
  // EINVAL unless 1 <= k, 0 <= m and k + m <= 32.
  static Result<std::unique_ptr<ErasureCode>> ReedSolomon(int k, int m);

  virtual int data_fragments() const = 0;
  virtual int parity_fragments() const = 0;

  // data: k regions, parity: m regions, each `size` bytes.
  virtual void encode(const uint8_t* const* data, uint8_t* const* parity, size_t size) const = 0;

  // fragments: k+m regions of `size` bytes; those whose index is in erased
  // hold garbage and are rebuilt in place from the others. EIO when more than
  // m fragments are erased.
  virtual Status decode(uint8_t* const* fragments, std::span<const int> erased,
                        size_t size) const = 0;
};

}  // namespace frugalfs
