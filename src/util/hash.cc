#include "frugalfs/hash.h"

#include <openssl/sha.h>
// Where libxxhash has it (x86, checked by meson), the dispatching entry point
// picks the widest vector unit of this CPU at run time (AVX2/AVX-512: about
// 3x the SSE2 code that the plain XXH3_64bits of Debian's generic x86-64
// build runs); the hash is the same.
#ifdef FRUGAL_HAVE_XXH_DISPATCH
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#define FRUGAL_XXH3_64 XXH3_64bits_dispatch
#else
#include <xxhash.h>
#define FRUGAL_XXH3_64 XXH3_64bits
#endif

namespace frugalfs {

Sha256 sha256(std::span<const uint8_t> data) {
  Sha256 out;
  SHA256(data.data(), data.size(), out.data());
  return out;
}

uint64_t xxh3_64(std::span<const uint8_t> data) {
  return FRUGAL_XXH3_64(data.data(), data.size());
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

}  // namespace frugalfs
