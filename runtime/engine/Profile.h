//===- Profile.h - Per-task traces: walk, Chrome trace, summary -*- C++ -*-===//
//
// An executor made with tracing on (GpuEngineOptions::trace, HostOptions::
// trace) stamps every task: Executor::readTrace() gives the last step's
// stamps as [SMs, most tasks on one SM, TILEC_TRACE_WORDS] (TaskAbi.h: a
// [begin, end] pair per warp role). This file reads them for `tile-run run
// --trace / --trace-out` and `tile-run profile`:
//  - forEachTaskSpan: the one walk over a trace (which stamps belong to which
//    task of the manifest);
//  - writeChromeTrace: a Chrome / Perfetto trace, one track per role per SM;
//  - summarizeProfile: per task family and per op, time, bytes and bandwidth;
//    busy / idle per role and SM; the compiler's predicted times against the
//    measured ones.
// What the stamps measure, on the GPU (globaltimer): compute, from the
// hand-over of a task to the compute warps (its waits satisfied) to its
// signal; sched, the sched warp's wait on the task's events (it overlaps the
// previous task's compute); load, the load warp issuing the task's L2
// prefetches (linear and MoE tasks only; asynchronous, so not the time L2
// takes). On the host executor (steady_clock, host times, not GPU times):
// compute, a task body on a CPU thread; sched, from the task becoming its
// list's next to a worker seeing its waits met; no load role. LLVM-free.
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

/// The three warp roles of the megakernel, in the order of their tracks.
enum class TraceRole { Sched = 0, Load = 1, Compute = 2 };
constexpr int kTraceRoles = 3;
const char *roleName(TraceRole role); // "sched", "load", "compute"

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

/// The slices writeChromeTrace wrote, per role.
struct TraceSlices {
  int64_t sched = 0, load = 0, compute = 0;
  int64_t total() const { return sched + load + compute; }
};

/// Writes `steps` (one trace per step, in order) as a Chrome / Perfetto trace
/// to `path`, one track (tid) per role per SM, ordered SM by SM as sched,
/// load, compute (thread_sort_index): compute, tid n, named "SM n compute":
/// one slice per task named by its op, its family as the category, and its
/// step, task index, phase and (when the manifest has them) predicted ns and
/// bytes as arguments; sched, tid SMs + n, "SM n sched": a slice per wait on
/// events named by the waiting task's op, category "sched", the events in the
/// arguments; load, tid 2 SMs + n, "SM n load": a slice per prefetch,
/// category "load". Every slice has its role and SM as the arguments "role"
/// and "sm". A role
/// with no stamp in any step gets no tracks. Times are relative to the first
/// stamp; `clock` names them in the trace's metadata (e.g. "GPU
/// globaltimer"). Throws tilec::Error naming `path` when it cannot be
/// written.
TraceSlices writeChromeTrace(const EngineManifest &m,
                             const std::vector<std::vector<uint64_t>> &steps,
                             const std::string &path, const std::string &clock);

/// Where the times of a profile come from, for its summary.
struct ProfileSource {
  std::string engine;   // the engine directory
  std::string executor; // "gpu", "host"
  std::string device;   // "GPU 0: NVIDIA H200 ...", "the host executor ..."
  std::string clock;    // "GPU globaltimer", "host steady_clock"
  /// Which roles the executor stamps (compute always): the GPU's megakernel
  /// all three, the host executor sched and compute.
  bool schedStamped = true, loadStamped = true;
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

/// One SM over the profiled steps (means per step; fractions of the step).
struct ProfileSm {
  int sm = 0;
  int64_t tasks = 0;
  double busyUs = 0, idleFraction = 0;           // compute role
  double schedWaitUs = 0, schedWaitFraction = 0; // sched: waiting on events
  double loadUs = 0, loadFraction = 0;           // load: prefetching
};

/// One warp role over the SMs with tasks: the share of the step it spends
/// in `measure` (per SM: mean over steps; then mean, min and max over SMs).
struct ProfileRole {
  TraceRole role = TraceRole::Compute;
  bool recorded = false; // the executor stamps this role
  std::string measure;   // "waiting on events", "prefetching", "idle"
  double mean = 0, min = 0, max = 0;
  int64_t spansPerStep = 0; // stamped waits / prefetches / tasks per step
  std::string note;         // what the stamps measure on this executor
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
  ProfileRole roles[kTraceRoles];                // indexed by TraceRole
  double idleMean = 0, idleMin = 0, idleMax = 0; // = roles[Compute]
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
