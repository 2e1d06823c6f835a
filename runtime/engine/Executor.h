//===- Executor.h - An engine step, and the greedy loop ---------*- C++ -*-===//
//
// What every executor of an engine directory implements (the host executor on
// CPU threads, GpuEngine on a GPU): run one step of the engine's T tokens and
// return the argmax of each. The decode loop (prefill in chunks of T, padding
// the last one, then one step per new token) is written once, over this
// interface, so that the host and GPU executors cannot drift apart.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/engine/Manifest.h"

#include <cstdint>
#include <string>
#include <vector>

namespace tilec {

struct StepOutput {
  std::vector<int32_t> argmax; // [T]
  std::vector<float> logits; // [T, V] when asked for and the engine stores them
};

class Executor {
public:
  virtual ~Executor() = default;
  /// "gpu", "host", ...: for messages and --json output.
  virtual std::string name() const = 0;
  virtual const EngineManifest &manifest() const = 0;
  /// Runs one step over exactly T = manifest().tokens tokens at consecutive
  /// positions (positions[i] = positions[0] + i). Throws tilec::Error naming
  /// the step, SM, task and event when the step fails or hangs.
  virtual StepOutput step(const std::vector<int32_t> &tokens,
                          const std::vector<int32_t> &positions,
                          bool wantLogits = false) = 0;
  /// Forgets the sequence (the next step may start at position 0 again).
  /// Executors whose KV cache needs no reset (positions overwrite their
  /// slots) may leave it empty.
  virtual void reset() {}

  int64_t tokensPerStep() const { return manifest().tokens; }
};

struct GenerateStats {
  int64_t prefillSteps = 0, decodeSteps = 0;
  double prefillSeconds = 0, decodeSeconds = 0;
};

/// The longest sequence (prompt + generated + step padding) the engine's KV
/// caches hold: the smallest capacity among full-attention caches (sliding
/// layers are rings), or INT64_MAX without any.
int64_t maxContext(const EngineManifest &manifest);

/// Greedy decoding over any executor: feeds `prompt` in chunks of T tokens
/// (the last chunk padded with token 0 at the following positions, which
/// later steps overwrite), then one step per new token (at index 0, the rest
/// padding). Returns `count` new tokens, like ReferenceModel::generateGreedy
/// (no stop at EOS). Throws tilec::Error when the sequence would not fit
/// maxContext() or the prompt is empty.
std::vector<int32_t> generateGreedy(Executor &executor,
                                    const std::vector<int32_t> &prompt,
                                    int64_t count,
                                    GenerateStats *stats = nullptr);

} // namespace tilec
