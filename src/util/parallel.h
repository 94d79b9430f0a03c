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

// How many threads work of `bytes` bytes deserves, up to max_threads: a
// thread costs tens of microseconds to start, so each must get at least
// bytes_per_thread (work on a few kilobytes runs on the caller alone).
inline size_t threads_for(size_t bytes, size_t bytes_per_thread, size_t max_threads) {
  return std::max<size_t>(1, std::min(max_threads, bytes / std::max<size_t>(bytes_per_thread, 1)));
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
