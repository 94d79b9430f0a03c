// A few threads that run tasks nobody waits for, such as read-ahead.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace frugalfs {

// Runs posted tasks on up to `threads` threads of its own, started with the
// first task. The queue is bounded: a task that finds it full is refused, so
// posting never waits and work that is only worth doing soon is dropped,
// not delayed. The destructor drops the tasks not started yet and waits for
// the running ones. Tasks must not throw. Thread-safe.
class BackgroundTasks {
 public:
  BackgroundTasks(size_t threads, size_t max_queued);
  ~BackgroundTasks();
  BackgroundTasks(const BackgroundTasks&) = delete;
  BackgroundTasks& operator=(const BackgroundTasks&) = delete;

  // Queues the task; false (and the task is dropped) when the queue is full
  // or no thread could be started.
  bool try_post(std::function<void()> task);

  // Waits until every task posted so far has run (for tests).
  void TEST_wait_idle();

 private:
  void run();

  const size_t max_threads_;
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable work_;  // a task was posted, or stopping
  std::condition_variable idle_;  // a task finished
  std::deque<std::function<void()>> queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace frugalfs
