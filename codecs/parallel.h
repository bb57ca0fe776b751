// A minimal parallel loop, for tiles in the driver and output channels in the learned
// decoder (GDAL's worker pool header is not installed by Debian's libgdal-dev). Runs
// body(i) for i in [0, count) on up to `threads` threads and rethrows the first
// exception after all of them stop.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nsat {

inline void parallelFor(size_t count, int threads, const std::function<void(size_t)>& body) {
  const size_t workers = std::min<size_t>(count, threads > 1 ? size_t(threads) : 1);
  if (workers <= 1) {
    for (size_t i = 0; i < count; ++i) body(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failureMutex;
  auto work = [&] {
    for (size_t i = next++; i < count; i = next++) {
      try {
        body(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failureMutex);
        if (!failure) failure = std::current_exception();
        next = count;  // stop handing out work
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t i = 0; i < workers; ++i) pool.emplace_back(work);
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace nsat
