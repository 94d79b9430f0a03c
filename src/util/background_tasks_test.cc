#include "util/background_tasks.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

using namespace frugalfs;

namespace {

// A gate the tasks wait at until the test opens it.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
    --waiting_;
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    changed_.notify_all();
  }
  // Waits until n tasks wait at the gate.
  void await_waiters(int n) {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return waiting_ >= n; });
  }
  int waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int waiting_ = 0;
  bool open_ = false;
};

}  // namespace

TEST_CASE("background tasks all run, on other threads") {
  BackgroundTasks tasks(2, 100);
  std::atomic<int> ran{0};
  std::atomic<int> on_caller{0};
  const auto caller = std::this_thread::get_id();
  for (int i = 0; i < 50; ++i) {
    REQUIRE(tasks.try_post([&] {
      if (std::this_thread::get_id() == caller) ++on_caller;
      ++ran;
    }));
  }
  tasks.TEST_wait_idle();
  CHECK(ran == 50);
  CHECK(on_caller == 0);
}

TEST_CASE("background tasks run on at most the threads allowed, and a full queue refuses") {
  BackgroundTasks tasks(2, 3);
  Gate gate;
  std::atomic<int> ran{0};
  auto task = [&] {
    gate.wait();
    ++ran;
  };
  REQUIRE(tasks.try_post(task));
  REQUIRE(tasks.try_post(task));
  gate.await_waiters(2);  // both threads busy
  for (int i = 0; i < 3; ++i) CHECK(tasks.try_post(task));
  CHECK_FALSE(tasks.try_post(task));  // 3 queued: full
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(gate.waiting() == 2);  // no third thread took a queued task
  gate.open();
  tasks.TEST_wait_idle();
  CHECK(ran == 5);
  CHECK(tasks.try_post(task));  // room again
  tasks.TEST_wait_idle();
  CHECK(ran == 6);
}

TEST_CASE("destroying background tasks drops the queued ones and waits for the running one") {
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  // Every task holds a copy of token: once the queued ones are dropped, only
  // the running one's and this one are left. Then the running task may end.
  auto token = std::make_shared<int>(0);
  std::thread opener;
  {
    BackgroundTasks tasks(1, 10);
    for (int i = 0; i < 4; ++i) {
      REQUIRE(tasks.try_post([&, token] {
        ++started;
        gate.wait();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ++finished;
      }));
    }
    gate.await_waiters(1);
    CHECK(token.use_count() == 5);
    opener = std::thread([&] {
      while (token.use_count() > 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      gate.open();
    });
  }  // returns only after the running task finished
  CHECK(started == 1);
  CHECK(finished == 1);
  opener.join();
}
