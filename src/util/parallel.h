// Running a loop's iterations on several threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <system_error>
#include <thread>
#include <vector>

namespace frugalfs {

// The number of cores (at least 1).
inline size_t core_count() {
  static const size_t cores = std::max(1u, std::thread::hardware_concurrency());
  return cores;
}

// Runs fn(0) .. fn(n - 1) on up to max_threads threads (this one included)
// and returns when all are done; when no more threads can be started, the
// ones started and this one do the work. fn must not throw.
template <typename Fn>
void parallel_for(size_t n, size_t max_threads, const Fn& fn) {
  const size_t threads = std::min(max_threads, n);
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> helpers;
  helpers.reserve(threads - 1);
  try {
    for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  } catch (const std::system_error&) {
  }
  work();
  for (std::thread& h : helpers) h.join();
}

}  // namespace frugalfs
