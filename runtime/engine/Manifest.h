//===- Manifest.h - The engine directory's manifest --------------*- C++
//-*-===//
//
// An engine directory is the contract between the compiler and the runtime:
//   manifest.json  this struct, as JSON (docs/engine.md)
//   tasks.bin      every SM's task records (runtime/abi/TaskAbi.h), back to
//   back kernel.cu      the megakernel source, NVRTC-compiled at load ir/ the
//   IR after each pass (for people)
// LLVM-free: the runtime reads it, codegen writes it.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/abi/TaskAbi.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tilec {

/// A region of the activation arena.
struct BufferInfo {
  std::string name;
  std::string dtype; // "bf16", "f32", "i32", "bytes"
  std::vector<int64_t> shape;
  int64_t offset = 0, bytes = 0;
};

/// One weight tensor in the weight region, in its storage format.
struct WeightInfo {
  std::string name;   // WeightList name (drafter ones prefixed "drafter/")
  std::string format; // "bf16", "f32", "fp8_block", "mxfp4"
  std::vector<int64_t> shape;    // logical, e.g. [E, 2I, H] for experts
  int64_t offset = 0, bytes = 0; // data
  int64_t scaleOffset = -1, scaleBytes = 0; // FP8: f32 scales, MXFP4: E8M0
  /// Names of the checkpoint tensors concatenated along rows to form this one
  /// (empty: `name` itself), e.g. a dense MLP's gate and up.
  std::vector<std::string> parts;
};

struct KVCacheInfo {
  std::string name;
  int64_t kvHeads = 0, qkDim = 0, vDim = 0, capacity = 0, window = 0;
  int64_t keyOffset = 0, valueOffset = 0; // bytes into the KV region (bf16)
};

/// A compiled body: a family and its compile-time parameters.
struct InstanceInfo {
  int64_t id = 0;
  TilecTaskFamily family = TILEC_TASK_LINEAR;
  std::map<std::string, int64_t> params; // see docs/engine.md, per family
  std::string symbol; // the C++ expression kernel.cu dispatches to
};

/// What the compiler predicts for one task: tile-schedule's start and end by
/// its cost model (ns from the step's start), tile-partition's estimate of
/// the bytes it moves (weights, scales included, plus the activations it
/// reads and writes) and its flops.
struct TaskEstimate {
  int64_t startNs = 0, endNs = 0, bytes = 0, flops = 0;
  int64_t ns() const { return endNs - startNs; }
};

struct EventInfo {
  std::string name; // the op that signals it
  uint32_t signalsPerStep = 0;
};

/// A DFlash engine's step state and output (all "" for a plain step): the host
/// writes the first block (and `forced`, the prompt tokens of a prefill
/// chunk), each step leaves the next block there, and `out` = [count,
/// tokens...] is what it reads back.
struct SpecInfo {
  std::string tokensBuffer, positionsBuffer, forcedBuffer, outBuffer;
  std::string samplingBuffer;    // int32 [2]: temperature (f32 bits), seed
  std::string draftLogitsBuffer; // "" unless compiled with --draft-logits
  /// How the step drafts: "block" (one drafter pass over [bonus, MASK...])
  /// or "autoregressive" (tilec --ar-drafter: B-1 passes, one token each).
  std::string drafterMode = "block";
  bool enabled() const { return !outBuffer.empty(); }
  bool autoregressive() const { return drafterMode == "autoregressive"; }
};

struct EngineManifest {
  int64_t abiVersion = TILEC_ABI_VERSION;
  std::string tilecVersion;
  std::string modelName;     // preset name or directory it was compiled from
  std::string modelConfig;   // the target's config.json text (hub spelling)
  std::string drafterConfig; // "" without a drafter
  std::string function;      // the graph function compiled ("target", ...)

  // Machine.
  std::string targetName; // "h100", "h200", "b200"
  std::string arch;       // "sm_90a"
  int64_t sms = 0, smemPerBlock = 0;
  int64_t threadsPerBlock = 0, dynamicSmem = 0;

  // One decoding step.
  int64_t tokens = 0; // T
  std::string tokensBuffer, positionsBuffer, logitsBuffer, argmaxBuffer;
  SpecInfo spec; // DFlash engines

  int64_t arenaBytes = 0, weightBytes = 0, kvBytes = 0;
  std::vector<BufferInfo> buffers;
  std::vector<WeightInfo> weights;
  std::vector<KVCacheInfo> caches;
  std::vector<InstanceInfo> instances;
  std::vector<EventInfo> events;
  std::vector<std::string> ops; // op id -> a readable name (traces, reports)
  /// DFlash engines: op id -> its part of the step ("verify", "context",
  /// "accept", "draft"); empty otherwise.
  std::vector<std::string> opPhases;

  /// Per SM, its tasks in order (tasks.bin holds them back to back).
  std::vector<std::vector<TilecTask>> smTasks;
  /// The compiler's estimates, parallel to smTasks (manifest.json's
  /// tasks.estimates); empty when the engine has none (engines built by
  /// hand).
  std::vector<std::vector<TaskEstimate>> smEstimates;
  std::string costModel;   // tile-schedule's: "roofline", "uniform"; "" if none
  int64_t predictedNs = 0; // the predicted step (last task's end)

  std::string kernelFile = "kernel.cu";
  std::string kernelSha256;

  const BufferInfo &buffer(const std::string &name) const;
  const WeightInfo &weight(const std::string &name) const;
  const InstanceInfo &instance(int64_t id) const;
  int64_t taskCount() const;
  bool hasEstimates() const { return !smEstimates.empty(); }
};

/// A task family's name in manifest.json ("embed", "linear", ...; "?" outside
/// the enum).
const char *familyName(TilecTaskFamily family);

/// The tasks of one launch of the one-kernel-per-op mode: those that signal
/// one event (one op, or the fused ops that share an event), or the tasks of
/// an op that signals none.
struct LaunchGroup {
  std::string name; // the event's name, or the op's
  std::vector<TilecTask> tasks;
};
/// Every task in launch groups, ordered so that each group comes after the
/// groups whose events its tasks wait on (ties: first appearance in the per-SM
/// lists). Running the groups one after the other in this order satisfies
/// every wait. Throws tilec::Error when a task waits on an event no task
/// signals, on its own group's event, or when the waits form a cycle.
std::vector<LaunchGroup> launchGroups(const EngineManifest &manifest);

/// Writes manifest.json, tasks.bin and kernel.cu into `dir` (created if
/// needed). Returns "" on success, else a message (callers may be built without
/// exceptions).
std::string writeEngine(const std::string &dir, const EngineManifest &manifest,
                        const std::string &kernelSource);
/// Reads an engine directory; throws tilec::Error naming the file and field.
/// Refuses another ABI version.
EngineManifest readEngine(const std::string &dir);

} // namespace tilec
