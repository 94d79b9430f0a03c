// Its own executable: what it checks only shows in a process that has not
// coded anything yet.
//
// Jerasure XORs regions through gf-complete's GF(2^32) field, which it builds
// lazily on the first XOR: it publishes the field pointer before filling it,
// so a second thread coding at that moment calls through garbage (a general
// protection fault in libJerasure, seen in CI during a degraded read while the
// flusher encoded). Constructing a code must build every field in advance.

#include <galois.h>

#include <doctest/doctest.h>

#include <barrier>
#include <random>
#include <thread>
#include <vector>

#include "frugalfs/erasure.h"
#include "test_support.h"

using namespace frugalfs;

TEST_CASE("constructing a Reed-Solomon code builds every Galois field Jerasure uses") {
  REQUIRE(galois_get_field_ptr(32) == nullptr);  // nothing has coded in this process yet
  auto code = ErasureCode::ReedSolomon(2, 2);
  REQUIRE(code.ok());
  CHECK(galois_get_field_ptr(8) != nullptr);
  CHECK(galois_get_field_ptr(32) != nullptr);  // the region XOR's field

  // And many threads coding at once from the start agree with one thread.
  constexpr size_t kSize = 64 * 1024;
  constexpr int kThreads = 8;
  std::mt19937_64 rng(1);
  const std::vector<uint8_t> d0 = test::random_bytes(rng, kSize);
  const std::vector<uint8_t> d1 = test::random_bytes(rng, kSize);
  std::vector<std::vector<uint8_t>> parity(kThreads * 2, std::vector<uint8_t>(kSize));
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const uint8_t* data[] = {d0.data(), d1.data()};
      uint8_t* out[] = {parity[2 * t].data(), parity[2 * t + 1].data()};
      start.arrive_and_wait();
      code.value()->encode(data, out, kSize);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 1; t < kThreads; ++t) {
    CHECK(parity[2 * t] == parity[0]);
    CHECK(parity[2 * t + 1] == parity[1]);
  }
}
