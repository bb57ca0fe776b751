// One persistent pool of worker threads for the driver's tile loops and the learned
// decoder's channel loops (GDAL's cpl_worker_thread_pool.h is not installed by Debian 12's
// libgdal-dev). Threads are started once, when a loop first asks for them, and reused:
// nothing creates a thread per tile or per layer.
//
// A loop's calling thread works on it too, and a loop started from inside another
// loop's body runs on whatever threads are free (at worst on its caller alone), so
// nested loops never deadlock and never use more threads than the outer loop allowed.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace nsat {

class ThreadPool {
 public:
  ThreadPool() = default;
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Runs body(i) for every i in [0, count) on at most `threads` threads (the caller
  // included) and rethrows the first exception once every started body has returned.
  void parallelFor(size_t count, int threads, const std::function<void(size_t)>& body);

  // The process-wide pool of the code that calls it. The learned-codec module has its
  // own copy of this function, so the driver hands its pool to codecs explicitly
  // (Parallelism) rather than letting each side start threads of its own.
  static ThreadPool& shared();

 private:
  struct Loop;
  void ensureWorkers(size_t count);
  void workerMain();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Loop>> tickets_;  // one entry per helper a loop asked for
  std::vector<std::thread> workers_;
  bool stopping_ = false;
};

// How many threads a piece of work may use, and the pool they come from. A codec gets
// one with each tile: serial (threads 1) when the driver decodes several tiles at once.
struct Parallelism {
  ThreadPool* pool = nullptr;
  int threads = 1;

  void forEach(size_t count, const std::function<void(size_t)>& body) const {
    if (pool && threads > 1 && count > 1) {
      pool->parallelFor(count, threads, body);
    } else {
      for (size_t i = 0; i < count; ++i) body(i);
    }
  }
};

// A thread count as users write it (NUM_THREADS, GDAL_NUM_THREADS): a number in
// 1..1024, or ALL_CPUS for the number of cores. 0 if `text` is neither.
int parseThreadCount(const char* text);

}  // namespace nsat
