// The chunk codec: one zstd frame per chunk, or the raw bytes when zstd does
// not shrink them. Frames carry no zstd checksum: stored chunks are covered
// by the chunk store's XXH3, checked on every read (DESIGN.md), so a second
// checksum would only cost space and time.

#include <zstd.h>

#include <cstring>
#include <memory>

#include "frugalfs/chunking.h"

namespace frugalfs {
namespace {

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One context per thread, reused across chunks: creating a context costs
// far more than compressing a small chunk.
ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx(ZSTD_createCCtx());
  return cctx.get();
}

ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  return dctx.get();
}

}  // namespace

Codec compress_chunk(std::span<const uint8_t> in, int level, std::vector<uint8_t>& out) {
  out.clear();
  ZSTD_CCtx* cctx = thread_cctx();
  if (cctx == nullptr || in.empty()) return Codec::kRaw;
  // zstd writes into a per-thread buffer that is never zero-filled; only a
  // frame that is smaller than the input is copied out. The capacity is one
  // byte short of the input, so incompressible data fails early.
  thread_local std::unique_ptr<uint8_t[]> scratch;
  thread_local size_t scratch_size = 0;
  const size_t capacity = in.size() - 1;
  if (scratch_size < capacity) {
    scratch = std::make_unique_for_overwrite<uint8_t[]>(capacity);
    scratch_size = capacity;
  }
  const size_t n = ZSTD_compressCCtx(cctx, scratch.get(), capacity, in.data(), in.size(), level);
  // Not smaller (zstd reports the buffer too small) or refused: store raw.
  // An error here is not a failure of the write, only of the optimisation.
  if (ZSTD_isError(n)) return Codec::kRaw;
  out.assign(scratch.get(), scratch.get() + n);
  return Codec::kZstd;
}

Status decompress_chunk(Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> out) {
  switch (codec) {
    case Codec::kRaw:
      if (stored.size() != out.size()) {
        return Errorf(EIO, "raw chunk is {} bytes, expected {}", stored.size(), out.size());
      }
      if (!stored.empty()) std::memcpy(out.data(), stored.data(), stored.size());
      return Status::Ok();
    case Codec::kZstd: {
      ZSTD_DCtx* dctx = thread_dctx();
      if (dctx == nullptr) return Errorf(ENOMEM, "cannot allocate a zstd decompression context");
      const size_t n =
          ZSTD_decompressDCtx(dctx, out.data(), out.size(), stored.data(), stored.size());
      if (ZSTD_isError(n)) {
        return Errorf(EIO, "corrupt zstd chunk ({} stored bytes, {} expected raw): {}",
                      stored.size(), out.size(), ZSTD_getErrorName(n));
      }
      if (n != out.size()) {
        return Errorf(EIO, "zstd chunk decoded to {} bytes, expected {}", n, out.size());
      }
      return Status::Ok();
    }
  }
  return Errorf(EIO, "unknown chunk codec {}", static_cast<int>(codec));
}

bool all_zero(std::span<const uint8_t> data) {
  // memcmp against a zero block runs at vector speed (glibc uses AVX2) and
  // stops at the first non-zero block.
  alignas(64) static constexpr uint8_t kZeros[4096] = {};
  const uint8_t* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    const size_t n = left < sizeof(kZeros) ? left : sizeof(kZeros);
    if (std::memcmp(p, kZeros, n) != 0) return false;
    p += n;
    left -= n;
  }
  return true;
}

}  // namespace frugalfs
