//===- HostExecutor.h - Runs an engine's task lists on the CPU --*- C++ -*-===//
//
// The host executor runs a compiled engine without a GPU: the three regions
// (arena, weights, KV) are byte vectors, one C++ body per task family
// implements docs/engine.md (weights read in their storage formats, element by
// element; f32 arithmetic; bf16 rounding exactly at the spec's points), and the
// events are std::atomic<uint64_t> counters with the spec's epoch targets.
//
// A step runs every SM's list in order, in a random legal interleaving chosen
// by a seeded generator: repeatedly, a random SM whose next task's waits are
// satisfied runs that task (optionally on several threads, each owning a share
// of the SMs). No SM able to proceed is a deadlock, reported naming SM, task,
// op and event.
//
// Event checking: the executor keeps vector clocks of the happens-before order
// the events establish (a wait for count c of an event orders the task after
// the first c signals of this step, and transitively after what those tasks
// were ordered after; tasks of one SM are ordered by the list) and, per 2
// bytes of the arena and the KV region, the last write of this step and the
// reads since it. Then, each an error naming both tasks rather than a wrong
// number:
//  * a read of bytes written in this step by a task it is not ordered after
//    ("reads ... before its producer ... signalled");
//  * a write of bytes that a task of this step read before without being
//    ordered before this write: older data (an earlier step's or the host's)
//    read before its producer wrote it, or an overwrite racing a reader;
//    reading older data and then overwriting it in order is allowed (state
//    updated in place);
//  * two unordered writes of the same bytes.
// KV slots are also tracked by position: reading key position j from a slot
// that holds another position (a ring too small) is an error.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/engine/Executor.h"
#include "runtime/engine/Manifest.h"
#include "runtime/engine/WeightPacker.h"

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace tilec {

struct HostOptions {
  /// Seeds the choice of interleaving (with threads > 1 the OS adds its own).
  uint64_t interleavingSeed = 0;
  /// Worker threads; 1 runs everything on the calling thread, reproducibly.
  int threads = 1;
  /// Shadow state and vector clocks (see the file comment). Off: only the
  /// events' waits order the tasks, as on the GPU.
  bool checkEvents = true;
  /// Per-task stamps (steady_clock ns) of every step, laid out as the GPU's
  /// trace (TaskAbi.h's TILEC_TRACE_*, one row per SM's task list):
  /// readTrace(). These are CPU times of the host executor, not GPU times:
  ///  - compute: the task body's start and end;
  ///  - sched: the task's wait on its events, from the moment it became its
  ///    list's next task (the previous task's end, or the step's start) to
  ///    the first scan of a worker that found its waits met (no look-ahead:
  ///    unlike the GPU's sched warp, it never overlaps the previous task);
  ///  - load: none (the host executor has no load role or prefetch): 0.
  bool trace = false;
};

struct HostStats {
  int64_t steps = 0, tasks = 0;
  double seconds = 0; // in runStep, all steps
  double lastStepSeconds = 0;
};

class HostExecutor : public Executor {
public:
  /// Packs the weight region from `weights` (WeightPacker). Checks the task
  /// lists (instances, parameters, events, signal counts) and throws
  /// tilec::Error naming the task, instance or event at fault.
  HostExecutor(EngineManifest manifest, const WeightSourceSpec &weights,
               HostOptions options = {});
  /// With an already packed weight region of manifest.weightBytes bytes.
  HostExecutor(EngineManifest manifest, std::vector<uint8_t> weights,
               HostOptions options = {});
  ~HostExecutor() override;
  HostExecutor(const HostExecutor &) = delete;
  HostExecutor &operator=(const HostExecutor &) = delete;

  /// "host".
  std::string name() const override;
  const EngineManifest &manifest() const override;
  const HostOptions &options() const;
  /// Takes effect from the next step.
  void setInterleavingSeed(uint64_t seed);

  /// The regions, for inputs a test writes itself and outputs it reads.
  std::vector<uint8_t> &arena();
  std::vector<uint8_t> &kv();
  const std::vector<uint8_t> &weights() const;

  /// Writes `tokens` (manifest.tokens of them) and `positions` (consecutive)
  /// into the manifest's tokens and positions buffers, runs one step and
  /// returns the argmax buffer (and the logits when asked and stored). Throws
  /// if a full-attention cache cannot hold the positions.
  StepOutput step(const std::vector<int32_t> &tokens,
                  const std::vector<int32_t> &positions,
                  bool wantLogits = false) override;
  void writeBuffer(const std::string &name, const void *data,
                   int64_t bytes) override;
  void readBuffer(const std::string &name, void *data, int64_t bytes) override;
  void launch(const std::string &readBack = "", void *dst = nullptr,
              int64_t bytes = 0) override;
  /// Runs every task list once on the arena as it is (one decoding step).
  void runStep();
  /// The argmax buffer: int32 [T] (empty when the engine names none).
  std::vector<int32_t> argmax() const;
  /// The logits buffer: f32 [T, V]; empty when the engine stores none.
  std::vector<float> logits() const;

  /// A new sequence through the decode loop every executor shares
  /// (runtime/engine/Executor.h): prefill `prompt` in steps of T tokens (the
  /// last padded), then `count` greedy tokens, one step each (T > 1 engines
  /// pad every step). Positions are 0, 1, 2, ... Returns the new tokens.
  std::vector<int32_t> generateGreedy(const std::vector<int32_t> &prompt,
                                      int64_t count,
                                      GenerateStats *stats = nullptr);
  /// With options.trace: the last step's stamps ([SMs, most tasks on one SM,
  /// TILEC_TRACE_WORDS], steady_clock ns, 0 for a task that did not run and
  /// for the load role); else empty.
  std::vector<uint64_t> readTrace() const override;
  /// Forgets the KV positions a sequence wrote (generateGreedy calls it).
  void reset() override;

  /// Steps run so far (the events' epoch).
  uint64_t stepIndex() const;
  /// The TilecReport words: flag 2 = a token id outside the vocabulary.
  const std::array<int, TILEC_REPORT_WORDS> &report() const;
  const HostStats &stats() const;

  /// The executor's state (opaque; public so that the task bodies in
  /// HostExecutor.cpp can reach it).
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace tilec
