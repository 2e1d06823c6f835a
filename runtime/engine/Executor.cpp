//===- Executor.cpp - The greedy decode loop shared by every executor
//------===//
#include "runtime/engine/Executor.h"

#include "models/core/Error.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace tilec {

int64_t maxContext(const EngineManifest &manifest) {
  int64_t context = std::numeric_limits<int64_t>::max();
  for (const KVCacheInfo &cache : manifest.caches)
    if (cache.window == 0)
      context = std::min(context, cache.capacity);
  return context;
}

std::vector<int32_t> generateGreedy(Executor &executor,
                                    const std::vector<int32_t> &prompt,
                                    int64_t count, GenerateStats *stats) {
  const int64_t T = executor.tokensPerStep();
  if (T <= 0)
    fail("{} executor: the engine runs {} tokens per step", executor.name(), T);
  if (prompt.empty())
    fail("generate: the prompt is empty");
  if (count < 0)
    fail("generate: {} tokens asked for", count);
  const int64_t P = int64_t(prompt.size());
  // The highest position any step writes, padding included: the last prefill
  // chunk ends at a multiple of T; decode step i (token at P + i, the last
  // generated token is never fed back) writes up to P + i + T - 1.
  int64_t lastPosition = (P + T - 1) / T * T - 1;
  if (count > 1)
    lastPosition = std::max(lastPosition, P + count - 2 + T - 1);
  int64_t context = maxContext(executor.manifest());
  if (lastPosition >= context)
    fail("generate: {} prompt + {} new tokens need positions up to {} (steps "
         "of {} tokens, padding included), but the engine's KV cache holds {}; "
         "recompile with a larger context",
         P, count, lastPosition, T, context);

  using Clock = std::chrono::steady_clock;
  GenerateStats local;
  std::vector<int32_t> tokens(static_cast<size_t>(T)),
      positions(static_cast<size_t>(T));
  auto fill = [&](int64_t pos0, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < T; ++i) {
      tokens[size_t(i)] = i < n ? ids[i] : 0;
      positions[size_t(i)] = int32_t(pos0 + i);
    }
  };

  executor.reset();
  std::vector<int32_t> out;
  out.reserve(size_t(count));
  if (count == 0)
    return out;
  auto start = Clock::now();
  int32_t next = 0;
  for (int64_t pos0 = 0; pos0 < P; pos0 += T) {
    int64_t n = std::min(T, P - pos0);
    fill(pos0, prompt.data() + pos0, n);
    StepOutput o = executor.step(tokens, positions);
    if (int64_t(o.argmax.size()) != T)
      fail("{} executor: step returned {} tokens for {}", executor.name(),
           o.argmax.size(), T);
    next = o.argmax[size_t(n - 1)];
    ++local.prefillSteps;
  }
  local.prefillSeconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  out.push_back(next);

  start = Clock::now();
  for (int64_t i = 1; i < count; ++i) {
    fill(P + i - 1, &next, 1);
    StepOutput o = executor.step(tokens, positions);
    if (int64_t(o.argmax.size()) != T)
      fail("{} executor: step returned {} tokens for {}", executor.name(),
           o.argmax.size(), T);
    next = o.argmax[0];
    out.push_back(next);
    ++local.decodeSteps;
  }
  local.decodeSeconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  if (stats)
    *stats = local;
  return out;
}

} // namespace tilec
