#include "codecs/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <strings.h>
#include <exception>

namespace nsat {

// One parallelFor call. Helpers hold it by shared_ptr, so a ticket picked up after the
// loop has finished finds no work and lets go.
struct ThreadPool::Loop {
  size_t count = 0;
  const std::function<void(size_t)>* body = nullptr;
  std::atomic<size_t> next{0};
  std::mutex mutex;
  std::condition_variable finished;
  size_t running = 0;  // threads inside run(), under `mutex`
  std::exception_ptr failure;

  // Claims indices until none are left (returns at once if the loop is over).
  void run() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (next.load() >= count) return;
      ++running;
    }
    for (size_t i = next++; i < count; i = next++) {
      try {
        (*body)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!failure) failure = std::current_exception();
        next = count;  // hand out no more work
      }
    }
    std::lock_guard<std::mutex> lock(mutex);
    if (--running == 0) finished.notify_all();
  }
};

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

ThreadPool& ThreadPool::shared() {
  // Never destroyed: worker threads must not be joined from a static destructor while
  // GDAL may still be closing datasets.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

void ThreadPool::ensureWorkers(size_t count) {
  // Under mutex_.
  while (workers_.size() < count) workers_.emplace_back([this] { workerMain(); });
}

void ThreadPool::workerMain() {
  for (;;) {
    std::shared_ptr<Loop> loop;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !tickets_.empty(); });
      if (stopping_) return;
      loop = std::move(tickets_.front());
      tickets_.pop_front();
    }
    loop->run();
  }
}

void ThreadPool::parallelFor(size_t count, int threads, const std::function<void(size_t)>& body) {
  const size_t helpers = std::min(count, size_t(std::max(threads, 1))) - (count > 0 ? 1 : 0);
  if (helpers == 0) {
    for (size_t i = 0; i < count; ++i) body(i);
    return;
  }
  auto loop = std::make_shared<Loop>();
  loop->count = count;
  loop->body = &body;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ensureWorkers(helpers);
    for (size_t i = 0; i < helpers; ++i) tickets_.push_back(loop);
  }
  wake_.notify_all();
  loop->run();
  // Every index is claimed now; wait for the helpers still inside a body.
  std::unique_lock<std::mutex> lock(loop->mutex);
  loop->finished.wait(lock, [&] { return loop->running == 0; });
  if (loop->failure) std::rethrow_exception(loop->failure);
}

int parseThreadCount(const char* text) {
  if (!text) return 0;
  if (strcasecmp(text, "ALL_CPUS") == 0) {
    return int(std::max(1u, std::thread::hardware_concurrency()));
  }
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 1 || value > 1024) return 0;
  return int(value);
}

}  // namespace nsat
