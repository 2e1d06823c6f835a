//===- SelectExecutor.h - Picking an engine's executor ----------*- C++ -*-===//
//
// `tile-run run --executor gpu|host|auto` and any other front end pick an
// executor here: gpu (GpuEngine), host (HostExecutor), or auto, which takes
// the GPU when CudaDriver::available() and the host executor otherwise, and
// says which one and why.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cuda/GpuEngine.h"
#include "runtime/engine/Executor.h"
#include "runtime/engine/WeightPacker.h"
#include "runtime/host/HostExecutor.h"

#include <memory>
#include <string>

namespace tilec {

enum class ExecutorKind { Auto, Gpu, Host };

/// "auto", "gpu", "host"; throws tilec::Error for anything else.
ExecutorKind parseExecutorKind(const std::string &name);
const char *executorKindName(ExecutorKind kind);

struct ExecutorChoice {
  ExecutorKind kind = ExecutorKind::Auto;
  HostOptions host;
  /// Its `weights` field is replaced by the source given to makeExecutor.
  GpuEngineOptions gpu;
};

struct SelectedExecutor {
  std::unique_ptr<Executor> executor;
  ExecutorKind kind = ExecutorKind::Host; // what was chosen (never Auto)
  /// One line for the user: what runs the engine and, for auto, why
  /// ("--executor auto: no GPU here (...); running on the host executor").
  std::string notice;
  /// A line about loading (GPU: device, NVRTC time or cache hit, weights).
  std::string loadSummary;
};

/// Loads engine `dir` (already read into `manifest`) on the chosen executor
/// with weights from `weights`.
SelectedExecutor makeExecutor(const std::string &dir,
                              const EngineManifest &manifest,
                              const WeightSourceSpec &weights,
                              const ExecutorChoice &choice);

} // namespace tilec
