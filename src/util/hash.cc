#include "frugalfs/hash.h"

#include <openssl/sha.h>
#include <xxhash.h>

namespace frugalfs {

Sha256 sha256(std::span<const uint8_t> data) {
  Sha256 out;
  SHA256(data.data(), data.size(), out.data());
  return out;
}

uint64_t xxh3_64(std::span<const uint8_t> data) {
  return XXH3_64bits(data.data(), data.size());
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
