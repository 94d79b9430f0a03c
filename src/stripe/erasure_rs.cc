// ErasureCode::ReedSolomon: Vandermonde Reed-Solomon over GF(2^8) from
// Jerasure (matrix coding, so it works byte position by byte position).

// gf-complete's header declares C functions without extern "C".
extern "C" {
#include <gf_complete.h>
}
#include <galois.h>
#include <jerasure.h>
#include <reed_sol.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "frugalfs/erasure.h"

namespace frugalfs {
namespace {

constexpr int kW = 8;
constexpr int kMaxFragments = 32;
// Jerasure takes region sizes as int; larger regions are coded in slices of
// this many bytes (a multiple of kAlignment).
constexpr size_t kMaxSlice = size_t{1} << 30;

// gf-complete fields are built lazily on first use, and Jerasure publishes a
// field's pointer before filling it in: a thread that codes while another
// builds a field calls through garbage. Jerasure uses GF(2^8) for the
// multiplications and GF(2^32) for every region XOR (galois_region_xor), so
// both are built up front, once, under this mutex, before any code exists.
// Matrix construction is serialized for the same reason.
std::mutex& galois_mutex() {
  static std::mutex mu;
  return mu;
}

constexpr int kXorFieldW = 32;

// gf-complete's SIMD region multiply requires every source and destination
// region to share the same address modulo 16.
constexpr uintptr_t kRegionAlign = 16;

bool same_alignment(const uint8_t* const* regions, int n) {
  for (int i = 1; i < n; ++i) {
    if ((reinterpret_cast<uintptr_t>(regions[i]) ^ reinterpret_cast<uintptr_t>(regions[0])) %
            kRegionAlign !=
        0) {
      return false;
    }
  }
  return true;
}

// Aligned copies of k+m regions, for callers whose regions are not aligned
// alike (the slow path: one copy in and one out).
class AlignedCopies {
 public:
  AlignedCopies(const uint8_t* const* regions, int n, size_t size)
      : stride_((size + kRegionAlign - 1) / kRegionAlign * kRegionAlign),
        buf_(new uint8_t[stride_ * static_cast<size_t>(n) + kRegionAlign]) {
    uint8_t* base = buf_.get();
    base += (kRegionAlign - reinterpret_cast<uintptr_t>(base) % kRegionAlign) % kRegionAlign;
    for (int i = 0; i < n; ++i) {
      ptrs_[static_cast<size_t>(i)] = base + stride_ * static_cast<size_t>(i);
      std::copy_n(regions[i], size, ptrs_[static_cast<size_t>(i)]);
    }
  }
  uint8_t* const* ptrs() { return ptrs_.data(); }

 private:
  size_t stride_;
  std::unique_ptr<uint8_t[]> buf_;
  std::array<uint8_t*, kMaxFragments> ptrs_{};
};

class ReedSolomonCode final : public ErasureCode {
 public:
  ReedSolomonCode(int k, int m, int* matrix) : k_(k), m_(m), matrix_(matrix) {}
  ~ReedSolomonCode() override { std::free(matrix_); }
  ReedSolomonCode(const ReedSolomonCode&) = delete;
  ReedSolomonCode& operator=(const ReedSolomonCode&) = delete;

  int data_fragments() const override { return k_; }
  int parity_fragments() const override { return m_; }

  void encode(const uint8_t* const* data, uint8_t* const* parity, size_t size) const override {
    assert(size % kAlignment == 0);
    if (m_ == 0 || size == 0) return;
    std::array<const uint8_t*, kMaxFragments> all{};
    std::copy_n(data, k_, all.begin());
    std::copy_n(parity, m_, all.begin() + k_);
    if (!same_alignment(all.data(), k_ + m_)) {
      AlignedCopies copies(all.data(), k_ + m_, size);
      encode(copies.ptrs(), copies.ptrs() + k_, size);
      for (int i = 0; i < m_; ++i) std::copy_n(copies.ptrs()[k_ + i], size, parity[i]);
      return;
    }
    std::array<char*, kMaxFragments> d{};
    std::array<char*, kMaxFragments> p{};
    for (size_t done = 0; done < size;) {
      size_t n = std::min(kMaxSlice, size - done);
      // Jerasure only reads the data regions; its API is not const-correct.
      for (int i = 0; i < k_; ++i)
        d[i] = reinterpret_cast<char*>(const_cast<uint8_t*>(data[i] + done));
      for (int i = 0; i < m_; ++i) p[i] = reinterpret_cast<char*>(parity[i] + done);
      jerasure_matrix_encode(k_, m_, kW, matrix_, d.data(), p.data(), static_cast<int>(n));
      done += n;
    }
  }

  Status decode(uint8_t* const* fragments, std::span<const int> erased,
                size_t size) const override {
    assert(size % kAlignment == 0);
    const int n = k_ + m_;
    std::array<bool, kMaxFragments> is_erased{};
    int count = 0;
    for (int e : erased) {
      if (e < 0 || e >= n) return Errorf(EINVAL, "erasure index {} outside 0..{}", e, n - 1);
      if (!is_erased[e]) {
        is_erased[e] = true;
        ++count;
      }
    }
    if (count == 0) return Status::Ok();
    if (count > m_) {
      return Errorf(EIO, "{} of {} fragments lost; RS({},{}) rebuilds at most {}", count, n, k_, m_,
                    m_);
    }
    if (size == 0) return Status::Ok();
    if (!same_alignment(fragments, n)) {
      AlignedCopies copies(fragments, n, size);
      FRUGAL_TRY(decode(copies.ptrs(), erased, size));
      for (int i = 0; i < n; ++i) {
        if (is_erased[static_cast<size_t>(i)]) std::copy_n(copies.ptrs()[i], size, fragments[i]);
      }
      return Status::Ok();
    }
    std::array<int, kMaxFragments + 1> erasures{};
    int e = 0;
    for (int i = 0; i < n; ++i) {
      if (is_erased[i]) erasures[e++] = i;
    }
    erasures[e] = -1;
    std::array<char*, kMaxFragments> d{};
    std::array<char*, kMaxFragments> p{};
    for (size_t done = 0; done < size;) {
      size_t len = std::min(kMaxSlice, size - done);
      for (int i = 0; i < k_; ++i) d[i] = reinterpret_cast<char*>(fragments[i] + done);
      for (int i = 0; i < m_; ++i) p[i] = reinterpret_cast<char*>(fragments[k_ + i] + done);
      if (jerasure_matrix_decode(k_, m_, kW, matrix_, /*row_k_ones=*/1, erasures.data(), d.data(),
                                 p.data(), static_cast<int>(len)) != 0) {
        return Errorf(EIO, "Reed-Solomon decode failed ({} erasures, RS({},{}))", count, k_, m_);
      }
      done += len;
    }
    return Status::Ok();
  }

 private:
  const int k_;
  const int m_;
  int* const matrix_;  // m x k, malloc'ed by Jerasure; null when m == 0
};

}  // namespace

Result<std::unique_ptr<ErasureCode>> ErasureCode::ReedSolomon(int k, int m) {
  if (k < 1 || m < 0 || k + m > kMaxFragments) {
    return Errorf(EINVAL,
                  "invalid Reed-Solomon geometry k={} m={} (need 1 <= k, 0 <= m, k+m <= {})", k, m,
                  kMaxFragments);
  }
  int* matrix = nullptr;
  {
    std::lock_guard lock(galois_mutex());
    for (int w : {kW, kXorFieldW}) {
      if (galois_get_field_ptr(w) != nullptr) continue;
      // Built aside and published only when complete (galois_init_default_field
      // would publish a field that failed to build, and the next code would
      // use it). Jerasure owns it from then on, for the life of the process.
      auto* field = static_cast<gf_t*>(std::malloc(sizeof(gf_t)));
      if (field == nullptr || gf_init_easy(field, w) == 0) {
        std::free(field);
        return Errorf(ENOMEM, "cannot initialize GF(2^{}) tables", w);
      }
      galois_change_technique(field, w);
    }
    if (m > 0) {
      matrix = reed_sol_vandermonde_coding_matrix(k, m, kW);
      if (matrix == nullptr) return Errorf(ENOMEM, "cannot build RS({},{}) coding matrix", k, m);
    }
  }
  return std::unique_ptr<ErasureCode>(new ReedSolomonCode(k, m, matrix));
}

}  // namespace frugalfs
