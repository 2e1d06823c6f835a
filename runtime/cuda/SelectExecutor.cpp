//===- SelectExecutor.cpp - Choosing the executor that runs an engine -----===//
#include "runtime/cuda/SelectExecutor.h"

#include "models/core/Error.h"
#include "runtime/cuda/CudaDriver.h"

namespace tilec {

ExecutorKind parseExecutorKind(const std::string &name) {
  if (name == "auto")
    return ExecutorKind::Auto;
  if (name == "gpu")
    return ExecutorKind::Gpu;
  if (name == "host")
    return ExecutorKind::Host;
  fail("--executor {}: expected gpu, host or auto", name);
}

const char *executorKindName(ExecutorKind kind) {
  switch (kind) {
  case ExecutorKind::Auto:
    return "auto";
  case ExecutorKind::Gpu:
    return "gpu";
  case ExecutorKind::Host:
    return "host";
  }
  return "?";
}

SelectedExecutor makeExecutor(const std::string &dir,
                              const EngineManifest &manifest,
                              const WeightSourceSpec &weights,
                              const ExecutorChoice &choice) {
  SelectedExecutor out;
  out.kind = choice.kind;
  if (choice.kind == ExecutorKind::Auto) {
    std::string reason;
    if (CudaDriver::available(&reason)) {
      out.kind = ExecutorKind::Gpu;
      out.notice = fmt::format("--executor auto: a GPU is here; running on "
                               "GPU {}",
                               choice.gpu.device);
    } else {
      out.kind = ExecutorKind::Host;
      out.notice = fmt::format("--executor auto: no GPU here ({}); running on "
                               "the host executor (CPU)",
                               reason);
    }
  }
  if (out.kind == ExecutorKind::Gpu) {
    GpuEngineOptions options = choice.gpu;
    options.weights = weights;
    auto engine = std::make_unique<GpuEngine>(dir, options);
    const GpuLoadInfo &info = engine->loadInfo();
    if (out.notice.empty())
      out.notice = fmt::format("running on GPU {}", choice.gpu.device);
    out.loadSummary = fmt::format(
        "{}; NVRTC {}; tilec_step: {} registers/thread, {} B spilled, {} "
        "CTA(s)/SM possible; {} on the GPU; weights: {} in {:.2f} s",
        engine->device().describe(),
        info.cacheHit
            ? "cache hit (" + info.cubinPath + ")"
            : fmt::format("compiled in {:.1f} s", info.compileSeconds),
        info.registers, info.localBytes, info.blocksPerSm,
        formatBytes(info.deviceBytes), info.weightMethod, info.weightSeconds);
    out.executor = std::move(engine);
    return out;
  }
  if (out.notice.empty())
    out.notice = "running on the host executor (CPU)";
  out.executor = std::make_unique<HostExecutor>(manifest, weights, choice.host);
  return out;
}

} // namespace tilec
