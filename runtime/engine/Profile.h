//===- Profile.h - Per-task traces: walk, Chrome trace, summary -*- C++ -*-===//
//
// An executor made with tracing on (GpuEngineOptions::trace, HostOptions::
// trace) stamps every task: Executor::readTrace() gives the last step's
// stamps as [SMs, most tasks on one SM, TILEC_TRACE_WORDS] (TaskAbi.h: a
// [begin, end] pair per warp role). This file reads them for `tile-run run
// --trace / --trace-out` and `tile-run profile`:
//  - forEachTaskSpan: the one walk over a trace (which stamps belong to which
//    task of the manifest);
//  - writeChromeTrace: a Chrome / Perfetto trace, one row per SM;
//  - summarizeProfile: per task family and per op, time, bytes and bandwidth;
//    idle per SM; the compiler's predicted times against the measured ones.
// What the stamps measure: on the GPU, from the hand-over of a task to the
// compute warps (its waits satisfied) to its signal, by globaltimer; only the
// compute role is stamped. On the host executor, a task body on a CPU thread
// by steady_clock: host times, not GPU times. LLVM-free.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/engine/Manifest.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tilec {

/// One task of a step's trace that ran.
struct TaskSpan {
  int sm = 0;    // the SM (on the host executor: the SM's task list)
  int index = 0; // its position in the SM's list
  const TilecTask *task = nullptr;
  uint64_t begin = 0, end = 0; // compute role, ns of the executor's clock
  /// sched role: its wait on the task's events; both 0 when not stamped or
  /// the task waits on no event.
  uint64_t waitBegin = 0, waitEnd = 0;
  /// load role: its L2 prefetch of the task; both 0 when not stamped (the
  /// load warp skipped the task, or the executor has no load role).
  uint64_t loadBegin = 0, loadEnd = 0;
  uint64_t ns() const { return end - begin; }
  bool waited() const { return waitBegin != 0; }
  bool loaded() const { return loadBegin != 0; }
};

/// Calls `visit` for every task of `m` with compute stamps in `trace` (a
/// step's trace: [SMs, T, TILEC_TRACE_WORDS] with T = trace.size() /
/// TILEC_TRACE_WORDS / SMs). A task without a compute start stamp (0: it did
/// not run) or whose end precedes its start (cut off) is skipped; a sched or
/// load pair that is missing, cut off, or (sched) of a task without waits is
/// reported as 0, 0. Throws tilec::Error when the trace is not [SMs, T,
/// TILEC_TRACE_WORDS] for some T at least as long as every SM's list.
void forEachTaskSpan(const EngineManifest &m,
                     const std::vector<uint64_t> &trace,
                     const std::function<void(const TaskSpan &)> &visit);

/// The op name, family name and phase ("" for plain engines) of a task.
std::string taskOpName(const EngineManifest &m, const TilecTask &t);
std::string taskPhase(const EngineManifest &m, const TilecTask &t);

/// Writes `steps` (one trace per step, in order) as a Chrome / Perfetto trace
/// to `path`: one row (tid) per SM named "SM n", one slice per task named by
/// its op, its family as the category, and its step, task index, phase and
/// (when the manifest has them) predicted ns and bytes as arguments. Times
/// are relative to the first stamp; `clock` names them in the trace's
/// metadata (e.g. "GPU globaltimer"). Returns the number of slices. Throws
/// tilec::Error naming `path` when it cannot be written.
int64_t writeChromeTrace(const EngineManifest &m,
                         const std::vector<std::vector<uint64_t>> &steps,
                         const std::string &path, const std::string &clock);

/// Where the times of a profile come from, for its summary.
struct ProfileSource {
  std::string engine;   // the engine directory
  std::string executor; // "gpu", "host"
  std::string device;   // "GPU 0: NVIDIA H200 ...", "the host executor ..."
  std::string clock;    // "GPU globaltimer", "host steady_clock"
};

/// A task family or an op of the profile.
struct ProfileRow {
  std::string name;
  std::string family;     // ops: their family ("" when they mix families)
  int64_t tasks = 0;      // tasks per step
  int64_t runs = 0;       // stamped executions over all steps
  double totalUs = 0;     // time of those executions
  double meanUs = 0;      // per execution
  double stepUs = 0;      // per step (totalUs / steps)
  int64_t bytes = 0;      // per step (the compiler's estimate)
  double gbps = 0;        // bytes of the runs / their time
  double predictedUs = 0; // per step: the cost model's task times
  double ratio = 0;       // stepUs / predictedUs (0: no prediction)
};

/// One SM's compute role over the profiled steps (means per step).
struct ProfileSm {
  int sm = 0;
  int64_t tasks = 0;
  double busyUs = 0, idleFraction = 0;
};

/// A task whose measured time is furthest from the cost model's, relative to
/// the overall ratio of measured to predicted.
struct ProfileOutlier {
  int sm = 0, index = 0;
  std::string op, family;
  double predictedUs = 0, measuredUs = 0, ratio = 0;
};

struct ProfileSummary {
  ProfileSource source;
  int64_t steps = 0, tasksPerStep = 0, stampedPerStep = 0;
  double stepUsMedian = 0, stepUsMin = 0, stepUsMax = 0;
  /// The whole step's bytes (estimated) over the median step.
  int64_t bytesPerStep = 0;
  double stepGbps = 0;
  std::string bytesNote;                 // how bytes are counted
  std::vector<ProfileRow> families, ops; // by time, largest first
  std::vector<ProfileSm> sms;
  double idleMean = 0, idleMin = 0, idleMax = 0;
  int64_t emptySms = 0; // SMs without tasks (always idle)
  std::string idleNote; // what "idle" measures on this executor
  // The compiler's cost model (manifest tasks.estimates) against the run.
  bool predicted = false;
  std::string costModel;
  double predictedStepUs = 0; // the schedule's makespan
  double stepRatio = 0;       // median step / predicted step
  double predictedTaskUs = 0; // sum of the tasks' predicted times
  double measuredTaskUs = 0;  // sum of the tasks' times, median over steps
  double taskRatio = 0;       // measuredTaskUs / predictedTaskUs
  std::vector<ProfileOutlier> outliers; // worst first
};

/// The summary of `steps` (each a step's trace of `m`). Throws tilec::Error
/// when there is no step or no step has a stamped task.
ProfileSummary summarizeProfile(const EngineManifest &m,
                                const std::vector<std::vector<uint64_t>> &steps,
                                const ProfileSource &source,
                                size_t outliers = 5);

/// The summary as text (summary.txt and tile-run profile's output): at most
/// `maxOps` ops, the rest counted.
std::string formatProfileSummary(const ProfileSummary &s, size_t maxOps = 25);
/// The same as one JSON object (every op, every SM).
nlohmann::json profileSummaryJson(const ProfileSummary &s);

} // namespace tilec
