//===- GpuEngine.h - Running an engine's megakernel on one GPU --*- C++ -*-===//
//
// Loads an engine directory onto a GPU: checks that the device can run it
// (architecture, SM count, shared memory, co-residency of one CTA per SM,
// free memory), NVRTC-compiles kernel.cu (cached), allocates the regions of
// TilecStepParams, fills the weights (synthesized on the GPU, or packed on
// the host by WeightPacker and uploaded through pinned double buffers), and
// runs one `tilec_step` launch per decoding step. A step that hangs comes
// back as an error naming the SM, task, op and event (the kernel's watchdog
// report), or, failing that, the host's wall-clock timeout.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cuda/Nvrtc.h"

#include "runtime/engine/Executor.h"
#include "runtime/engine/Manifest.h"
#include "runtime/engine/Progress.h" // formatBytes
#include "runtime/engine/WeightPacker.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tilec {

/// What the runtime needs to know of a GPU.
struct GpuDeviceInfo {
  int ordinal = 0;
  std::string name; // "NVIDIA H100 80GB HBM3"
  int major = 0, minor = 0;
  std::string arch; // archForCapability(major, minor)
  int sms = 0;
  int64_t smemPerBlockOptin = 0, smemPerSm = 0;
  int64_t totalMemory = 0, freeMemory = 0;
  int64_t l2Bytes = 0;
  int maxThreadsPerBlock = 0;
  int driverVersion = 0;
  std::string describe() const; // one line
};

/// Every GPU the driver sees (throws tilec::Error when there is no driver).
std::vector<GpuDeviceInfo> listGpus();

/// The HBM bandwidth a device-to-device copy reaches on GPU `device`: `bytes`
/// copied between two buffers `reps` times per trial (CUDA events around the
/// copies), best of `trials` after one warm-up; the bytes moved count the read
/// and the write (2 x bytes per copy), as bandwidth figures of HBM do. Throws
/// tilec::Error when there is no GPU or the buffers do not fit.
struct CopyBandwidth {
  GpuDeviceInfo device;
  int64_t bytes = 0; // per copy
  int reps = 0, trials = 0;
  double gbps = 0;                // the best trial
  std::vector<double> trialsGbps; // every trial
};
CopyBandwidth measureCopyBandwidth(int device, int64_t bytes, int reps = 10,
                                   int trials = 5);

struct GpuEngineOptions {
  int device = 0;
  WeightSourceSpec weights = WeightSourceSpec::synthetic(0);
  /// Synthetic weights: generate them on the GPU (runtime/device/
  /// synthetic.cuh) rather than packing them on the host and uploading.
  bool synthesizeOnDevice = true;
  /// Leave the weight region zeroed (tests of the runtime itself).
  bool zeroWeights = false;
  /// The kernel's watchdog: a wait longer than this becomes a hang report
  /// (0: none).
  uint64_t watchdogMs = 10000;
  /// How long the host waits for a step; 0: 2 x watchdogMs + 5 s, or 60 s
  /// without a watchdog. Past it the host sets the report flag to 1 (the
  /// device library's stop request, polled by waits while a watchdog is on)
  /// and gives the kernel 2 s to return; if it does not, the engine is
  /// unusable.
  uint64_t timeoutMs = 0;
  bool useCache = true;
  /// Progress on stderr (NVRTC, weight upload) when it is a terminal.
  bool progress = true;
  /// Per-task globaltimer stamps of the three roles (TilecStepParams::trace;
  /// not in the per-op launch mode).
  bool trace = false;
  /// The one-kernel-per-op baseline: each step is one launch per task group
  /// (launchGroups: the tasks of one op or fused op), one CTA per task, with
  /// the same task bodies but no persistence, no sched/load warp roles and no
  /// prefetch across ops. Only for measuring what the megakernel gains.
  bool perOpLaunch = false;
  /// Extra NVRTC options (e.g. "-DTILEC_DEBUG").
  std::vector<std::string> nvrtcOptions;
  /// Size of each of the two pinned staging buffers of the weight upload.
  int64_t stagingBytes = int64_t(64) << 20;
};

/// What loading did, for statistics and --json.
struct GpuLoadInfo {
  double compileSeconds = 0; // 0 on a cache hit
  bool cacheHit = false;
  std::string cubinPath;
  int registers = 0;        // per thread, of tilec_step
  int64_t staticSmem = 0;   // bytes
  int64_t localBytes = 0;   // per thread (spills)
  int blocksPerSm = 0;      // occupancy at the engine's launch
  double weightSeconds = 0; // filling the weight region
  std::string weightMethod; // "synthesized on the GPU", ...
  int64_t deviceBytes = 0;  // everything allocated
};

class GpuEngine : public Executor {
public:
  /// Loads the engine directory `dir` (readEngine) onto GPU options.device.
  explicit GpuEngine(const std::string &dir,
                     const GpuEngineOptions &options = {});
  /// An engine given in memory (tests, tools that build one on the fly).
  GpuEngine(EngineManifest manifest, std::string kernelSource,
            const GpuEngineOptions &options = {});
  ~GpuEngine() override;
  GpuEngine(const GpuEngine &) = delete;
  GpuEngine &operator=(const GpuEngine &) = delete;

  std::string name() const override { return "gpu"; }
  const EngineManifest &manifest() const override;
  StepOutput step(const std::vector<int32_t> &tokens,
                  const std::vector<int32_t> &positions,
                  bool wantLogits = false) override;
  void reset() override;
  void writeBuffer(const std::string &name, const void *data,
                   int64_t bytes) override;
  void readBuffer(const std::string &name, void *data, int64_t bytes) override;
  void launch(const std::string &readBack = "", void *dst = nullptr,
              int64_t bytes = 0) override;

  const GpuDeviceInfo &device() const;
  const GpuLoadInfo &loadInfo() const;
  /// Launches per step: 1, or the number of task groups with perOpLaunch.
  int64_t launchesPerStep() const;
  /// Kernel time of every step so far (CUDA events), in milliseconds.
  const std::vector<float> &stepMillis() const;
  /// Steps launched since load (the event epoch of the next one).
  uint64_t stepsRun() const;

  /// The trace buffer: [sms, max tasks per SM, TILEC_TRACE_WORDS]
  /// globaltimer stamps of the last step (TaskAbi.h: the compute role's
  /// start and end, the sched warp's wait on the task's events, the load
  /// warp's prefetch; 0 where a role did not stamp it); empty unless
  /// options.trace. The per-op launch mode stamps nothing (all 0).
  std::vector<uint64_t> readTrace() const override;
  /// `bytes` of the weight region from `offset` (tests compare it with the
  /// host's WeightPacker).
  std::vector<uint8_t> readWeights(int64_t offset, int64_t bytes) const;
  /// The arena buffer `name` as bytes (debugging, tests).
  std::vector<uint8_t> readBuffer(const std::string &name) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// How the runtime NVRTC-compiles an engine's kernel for `arch`: its source and
/// the defines the device library reads (threads, SMs, shared memory, tasks).
NvrtcSource engineKernelSource(const EngineManifest &manifest,
                               const std::string &text,
                               const std::string &arch);

} // namespace tilec
