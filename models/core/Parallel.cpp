//===- Parallel.cpp - A parallel loop for the CPU reference paths ---------===//
#include "models/core/Error.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace tilec {

void parallelFor(int64_t n, int64_t workPerIndex,
                 const std::function<void(int64_t, int64_t)> &body) {
  // Below a few million operations a thread costs more than it saves.
  constexpr int64_t kMinWork = int64_t(1) << 22;
  int64_t threads =
      std::min<int64_t>(std::max(1u, std::thread::hardware_concurrency()), n);
  if (threads <= 1 || n * workPerIndex < kMinWork) {
    body(0, n);
    return;
  }
  std::vector<std::thread> pool;
  int64_t chunk = (n + threads - 1) / threads;
  for (int64_t b = 0; b < n; b += chunk)
    pool.emplace_back(body, b, std::min(n, b + chunk));
  for (std::thread &t : pool)
    t.join();
}

} // namespace tilec
