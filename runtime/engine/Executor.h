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
#include <functional>
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
  /// The arena buffer `name` of the manifest: write `bytes` bytes from
  /// `data` into it / read them back (step state, inputs, outputs). Throws
  /// naming the buffer when it is missing or smaller.
  virtual void writeBuffer(const std::string &name, const void *data,
                           int64_t bytes) = 0;
  virtual void readBuffer(const std::string &name, void *data,
                          int64_t bytes) = 0;
  /// Runs one step on the arena as it is (a DFlash engine's state says what
  /// it verifies); then copies `bytes` bytes of buffer `readBack` (if not
  /// empty) into `dst`. Throws like step().
  virtual void launch(const std::string &readBack = "", void *dst = nullptr,
                      int64_t bytes = 0) = 0;
  /// The per-task time stamps of the last step, when the executor was made
  /// with tracing on (empty otherwise): [SMs, most tasks on one SM,
  /// TILEC_TRACE_WORDS] (TaskAbi.h: a (start, end) pair per warp role) in ns
  /// of the executor's clock (the GPU's globaltimer, the host's
  /// steady_clock); 0 where a task did not run or a role did not stamp it.
  /// Profile.h reads it.
  virtual std::vector<uint64_t> readTrace() const { return {}; }
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

struct DflashOptions {
  /// Oracle-draft mode: the drafts are replaced by this continuation of the
  /// prompt (at least count + T - 1 tokens; the block at generated token i is
  /// [token i, oracle[i + 1 .. i + T - 1]]). The target's own greedy
  /// continuation makes every step accept the whole block; one with wrong
  /// tokens here and there, partial blocks (a test of accept / commit / crop,
  /// not of the drafter).
  const std::vector<int32_t> *oracle = nullptr;
  /// Read each decode step's block back before launching it (DflashStats::
  /// drafts): one more copy per step, for checks.
  bool recordDrafts = false;
  /// Sampling temperature (0: greedy, lossless token for token) and seed; above
  /// 0 the output has the target's sampling distribution (docs/engine.md).
  float temperature = 0;
  uint32_t seed = 0;
  /// Called after every decode step's launch (e.g. to read a trace).
  std::function<void()> afterStep;
  /// Called with each new token as it is committed, in order, the returned
  /// `count` tokens only (e.g. to stream text).
  std::function<void(int32_t)> onToken;
};

struct DflashStats {
  int64_t prefillSteps = 0, decodeSteps = 0;
  double prefillSeconds = 0, decodeSeconds = 0;
  /// Tokens committed by each decode step (1 .. T).
  std::vector<int64_t> accepted;
  /// The prefill's token (the first generated one), and per decode step the
  /// tokens it committed (accepted[i] of them: the accepted drafts, then the
  /// target's bonus token; the last step's in full, past `count`). Together
  /// the sequence the engine decoded, step by step: what checkDrafts replays
  /// the reference drafter on.
  int32_t first = -1;
  std::vector<std::vector<int32_t>> committed;
  double meanAccepted() const;
  /// histogram[k] = steps that committed k tokens (k = 0 .. T).
  std::vector<int64_t> histogram(int64_t blockSize) const;
  /// With recordDrafts: per decode step, the block the device drafted
  /// ([last token, drafts...], before an oracle replaced the drafts).
  std::vector<std::vector<int32_t>> drafts;
  /// With recordDrafts and an engine that keeps them: the logits [T, V] of
  /// each of those drafts.
  std::vector<std::vector<float>> draftLogits;
};

/// Greedy DFlash decoding over a DFlash engine (manifest.spec): the prompt in
/// chunks of T through the step with `forced` = the chunk's length (each
/// chunk is committed whole and its context features cached; the last one
/// also yields the first token and the first draft), then one launch per
/// step, reading back only [count, tokens...]. Returns `count` new tokens,
/// equal to plain greedy decoding of the target. Throws naming the problem
/// when the engine is not a DFlash one or the sequence does not fit.
std::vector<int32_t> generateDflash(Executor &executor,
                                    const std::vector<int32_t> &prompt,
                                    int64_t count,
                                    const DflashOptions &options = {},
                                    DflashStats *stats = nullptr);

/// Greedy decoding over any executor: feeds `prompt` in chunks of T tokens
/// (the last chunk padded with token 0 at the following positions, which
/// later steps overwrite), then one step per new token (at index 0, the rest
/// padding). Returns `count` new tokens, like ReferenceModel::generateGreedy
/// (no stop at EOS). Throws tilec::Error when the sequence would not fit
/// maxContext() or the prompt is empty. `onToken` (if set) is called with
/// each new token as soon as it is known.
std::vector<int32_t>
generateGreedy(Executor &executor, const std::vector<int32_t> &prompt,
               int64_t count, GenerateStats *stats = nullptr,
               const std::function<void(int32_t)> &onToken = {});

} // namespace tilec
