// Content hashes: SHA-256 names chunks (collision-resistant, so one customer
// cannot craft data that dedups onto another's); XXH3-64 is the fast
// integrity checksum on fragments and stored chunks.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace frugalfs {

using Sha256 = std::array<uint8_t, 32>;

Sha256 sha256(std::span<const uint8_t> data);
uint64_t xxh3_64(std::span<const uint8_t> data);

// Lower-case hex of any byte string, e.g. a Sha256.
std::string to_hex(std::span<const uint8_t> bytes);

}  // namespace frugalfs
