//===- Bench.h - `tile-run bench`: step times against HBM bandwidth -*- C++
//-*-===//
//
// The benchmark's arithmetic, apart from the GPU so that it is tested in CI:
// per-step statistics of the kernel times, the bytes a step moves (the
// compiler's per-task estimates in the manifest), and what fraction of a
// measured HBM bandwidth that is. tools/tile-run/Bench.cpp runs the engines.
// LLVM-free.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/engine/Manifest.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tilec {

/// Statistics of per-step times (ms). Percentiles by nearest rank.
struct StepTimes {
  int64_t steps = 0;
  double meanMs = 0, medianMs = 0, p10Ms = 0, p90Ms = 0, minMs = 0, maxMs = 0;
  double totalMs = 0;
};
/// Throws tilec::Error when `ms` is empty or holds a negative or non-finite
/// time.
StepTimes summarizeSteps(std::vector<double> ms);

/// The bytes one step reads and writes by the compiler's estimate (the sum of
/// tasks.estimates.bytes: weights and scales, activations, the attention
/// window's K/V, every MoE slot's expert); 0 when the manifest has none.
int64_t estimatedBytesPerStep(const EngineManifest &m);

/// One engine in one launch mode.
struct BenchRow {
  std::string engine;        // directory
  std::string model;         // manifest's model
  std::string launch;        // "megakernel" or "per-op"
  std::string drafting;      // "" (plain), "drafter", "oracle"
  int64_t tokensPerStep = 1; // T
  int64_t launchesPerStep = 1;
  int64_t tasks = 0;
  StepTimes step;                 // decode steps after the warm-up
  double committedPerStep = 1;    // mean tokens a measured step commits
  double wallTokensPerSecond = 0; // committed tokens / host wall time
  int64_t bytesPerStep = 0;
  /// Derived (finishRow): committed tokens per second of kernel time, the
  /// step's bytes over its median time, and that over the HBM bandwidth.
  double tokensPerSecond = 0, gbps = 0, hbmFraction = 0;
};
/// Fills the derived fields from the measured ones and `hbmGbps`.
void finishRow(BenchRow &row, double hbmGbps);

/// The table `tile-run bench` prints, with a header naming the device and the
/// bandwidth it measured.
std::string formatBench(const std::vector<BenchRow> &rows,
                        const std::string &device, double hbmGbps,
                        const std::string &bandwidthNote);
nlohmann::json benchJson(const std::vector<BenchRow> &rows,
                         const std::string &device, double hbmGbps,
                         const std::vector<double> &hbmTrials);

} // namespace tilec
