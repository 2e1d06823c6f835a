//===- Executor.cpp - The greedy decode loop shared by every executor
//------===//
#include "runtime/engine/Executor.h"

#include "models/core/Error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace tilec {

int64_t maxContext(const EngineManifest &manifest) {
  int64_t context = std::numeric_limits<int64_t>::max();
  for (const KVCacheInfo &cache : manifest.caches)
    if (cache.window == 0)
      context = std::min(context, cache.capacity);
  return context;
}

namespace {

/// A generation's request: a prompt and a count of new tokens.
void checkRequest(const std::vector<int32_t> &prompt, int64_t count) {
  if (prompt.empty())
    fail("generate: the prompt is empty");
  if (count < 0)
    fail("generate: {} tokens asked for", count);
}

/// The highest position the generation writes (`how`: why) fits the KV cache.
void checkFits(const EngineManifest &m, int64_t P, int64_t count,
               int64_t lastPosition, const std::string &how) {
  int64_t context = maxContext(m);
  if (lastPosition >= context)
    fail("generate: {} prompt + {} new tokens need positions up to {} ({}), "
         "but the engine's KV cache holds {}; recompile with a larger context",
         P, count, lastPosition, how, context);
}

} // namespace

std::vector<int32_t>
generateGreedy(Executor &executor, const std::vector<int32_t> &prompt,
               int64_t count, GenerateStats *stats,
               const std::function<void(int32_t)> &onToken) {
  const int64_t T = executor.tokensPerStep();
  if (T <= 0)
    fail("{} executor: the engine runs {} tokens per step", executor.name(), T);
  checkRequest(prompt, count);
  const int64_t P = int64_t(prompt.size());
  // The highest position any step writes, padding included: the last prefill
  // chunk ends at a multiple of T; decode step i (token at P + i, the last
  // generated token is never fed back) writes up to P + i + T - 1.
  int64_t lastPosition = (P + T - 1) / T * T - 1;
  if (count > 1)
    lastPosition = std::max(lastPosition, P + count - 2 + T - 1);
  checkFits(executor.manifest(), P, count, lastPosition,
            fmt::format("steps of {} tokens, padding included", T));

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
  if (onToken)
    onToken(next);

  start = Clock::now();
  for (int64_t i = 1; i < count; ++i) {
    fill(P + i - 1, &next, 1);
    StepOutput o = executor.step(tokens, positions);
    if (int64_t(o.argmax.size()) != T)
      fail("{} executor: step returned {} tokens for {}", executor.name(),
           o.argmax.size(), T);
    next = o.argmax[0];
    out.push_back(next);
    if (onToken)
      onToken(next);
    ++local.decodeSteps;
  }
  local.decodeSeconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  if (stats)
    *stats = local;
  return out;
}

double DflashStats::meanAccepted() const {
  if (accepted.empty())
    return 0;
  return double(std::accumulate(accepted.begin(), accepted.end(), int64_t(0))) /
         double(accepted.size());
}

std::vector<int64_t> DflashStats::histogram(int64_t blockSize) const {
  std::vector<int64_t> h(size_t(std::max<int64_t>(blockSize, 0) + 1), 0);
  for (int64_t a : accepted)
    if (a >= 0 && a <= blockSize)
      ++h[size_t(a)];
  return h;
}

std::vector<int32_t> generateDflash(Executor &executor,
                                    const std::vector<int32_t> &prompt,
                                    int64_t count, const DflashOptions &options,
                                    DflashStats *stats) {
  const EngineManifest &m = executor.manifest();
  if (!m.spec.enabled())
    fail("{} executor: engine function '{}' is not a DFlash step (compile the "
         "model with its drafter)",
         executor.name(), m.function);
  const int64_t T = m.tokens;
  if (!(options.temperature >= 0) || std::isinf(options.temperature))
    fail("generate: temperature {} is not a finite number >= 0",
         options.temperature);
  if (options.temperature > 0 && m.spec.samplingBuffer.empty())
    fail("{} executor: engine '{}' has no sampling state (recompile it)",
         executor.name(), m.function);
  checkRequest(prompt, count);
  const int64_t P = int64_t(prompt.size());
  if (options.oracle && int64_t(options.oracle->size()) < count + T - 1)
    fail("generate: the oracle continuation has {} tokens, {} needed",
         options.oracle->size(), count + T - 1);
  // Every step writes positions up to its block's start + T - 1, and the
  // drafter its next block's; the last verify starts at most at P + count - 1.
  int64_t lastPosition = std::max((P + T - 1) / T * T - 1,
                                  P + std::max<int64_t>(count, 1) + 2 * T);
  checkFits(m, P, count, lastPosition,
            fmt::format("DFlash blocks of {}, the next draft included", T));

  using Clock = std::chrono::steady_clock;
  DflashStats local;
  std::vector<int32_t> block(static_cast<size_t>(T)),
      positions(static_cast<size_t>(T)), out(size_t(T + 1));
  auto writeState = [&](int32_t forced) {
    executor.writeBuffer(m.spec.tokensBuffer, block.data(), 4 * T);
    executor.writeBuffer(m.spec.positionsBuffer, positions.data(), 4 * T);
    executor.writeBuffer(m.spec.forcedBuffer, &forced, 4);
  };
  auto step = [&]() {
    executor.launch(m.spec.outBuffer, out.data(), 4 * (T + 1));
    if (out[0] < 1 || out[0] > T)
      fail("{} executor: a DFlash step committed {} tokens (1 .. {} expected)",
           executor.name(), out[0], T);
    return int64_t(out[0]);
  };

  executor.reset();
  if (!m.spec.samplingBuffer.empty()) {
    int32_t sampling[2];
    std::memcpy(&sampling[0], &options.temperature, 4);
    sampling[1] = int32_t(options.seed);
    executor.writeBuffer(m.spec.samplingBuffer, sampling, 8);
  }
  std::vector<int32_t> generated;
  generated.reserve(size_t(count + T));
  if (count == 0)
    return generated;
  // Prefill: each chunk committed whole (forced = its length); the last
  // chunk's bonus token is the first new one, and its draft the first block.
  auto start = Clock::now();
  for (int64_t pos0 = 0; pos0 < P; pos0 += T) {
    int64_t n = std::min(T, P - pos0);
    for (int64_t i = 0; i < T; ++i) {
      block[size_t(i)] = i < n ? prompt[size_t(pos0 + i)] : 0;
      positions[size_t(i)] = int32_t(pos0 + i);
    }
    writeState(int32_t(n));
    if (step() != n)
      fail("{} executor: a prefill chunk of {} tokens committed {}",
           executor.name(), n, out[0]);
    ++local.prefillSteps;
  }
  generated.push_back(out[size_t(P - (P - 1) / T * T)]);
  local.first = generated.back();
  if (options.onToken)
    options.onToken(generated.back());
  local.prefillSeconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  int32_t zero = 0;
  executor.writeBuffer(m.spec.forcedBuffer, &zero, 4);

  // Decode: the device keeps the next block; the host reads what it commits.
  start = Clock::now();
  while (int64_t(generated.size()) < count) {
    if (options.recordDrafts) {
      executor.readBuffer(m.spec.tokensBuffer, block.data(), 4 * T);
      local.drafts.push_back(block);
      if (!m.spec.draftLogitsBuffer.empty()) {
        const BufferInfo &b = m.buffer(m.spec.draftLogitsBuffer);
        std::vector<float> logits(size_t(b.bytes / 4));
        executor.readBuffer(b.name, logits.data(), b.bytes);
        local.draftLogits.push_back(std::move(logits));
      }
    }
    if (options.oracle) {
      // The block starts with the last committed token; the drafts follow.
      int64_t at = int64_t(generated.size()) - 1;
      block[0] = generated.back();
      for (int64_t i = 1; i < T; ++i)
        block[size_t(i)] = (*options.oracle)[size_t(at + i)];
      executor.writeBuffer(m.spec.tokensBuffer, block.data(), 4 * T);
    }
    int64_t a = step();
    if (options.afterStep)
      options.afterStep();
    for (int64_t i = 0; i < a && options.onToken; ++i)
      if (int64_t(generated.size()) + i < count)
        options.onToken(out[size_t(1 + i)]);
    generated.insert(generated.end(), out.begin() + 1, out.begin() + 1 + a);
    local.accepted.push_back(a);
    local.committed.emplace_back(out.begin() + 1, out.begin() + 1 + a);
    ++local.decodeSteps;
  }
  local.decodeSeconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  generated.resize(size_t(count));
  if (stats)
    *stats = local;
  return generated;
}

} // namespace tilec
