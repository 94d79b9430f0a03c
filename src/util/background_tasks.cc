#include "util/background_tasks.h"

#include <system_error>
#include <utility>

namespace frugalfs {

BackgroundTasks::BackgroundTasks(size_t threads, size_t max_queued)
    : max_threads_(threads), max_queued_(max_queued) {}

BackgroundTasks::~BackgroundTasks() {
  std::deque<std::function<void()>> dropped;  // their captures freed outside the lock
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  dropped.clear();
  work_.notify_all();
  for (std::thread& t : threads_) t.join();
}

bool BackgroundTasks::try_post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    // One more thread while some are busy and fewer than allowed run.
    if (threads_.size() < max_threads_ && running_ + queue_.size() >= threads_.size()) {
      try {
        threads_.emplace_back([this] { run(); });
      } catch (const std::system_error&) {
        if (threads_.empty()) return false;
      }
    }
    queue_.push_back(std::move(task));
  }
  work_.notify_one();
  return true;
}

void BackgroundTasks::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    task();
    task = nullptr;  // its captures are freed outside the lock, too
    lock.lock();
    --running_;
    idle_.notify_all();
  }
}

void BackgroundTasks::TEST_wait_idle() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
}

}  // namespace frugalfs
