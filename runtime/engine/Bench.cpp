//===- Bench.cpp - `tile-run bench`: step times against HBM bandwidth -----===//
#include "runtime/engine/Bench.h"

#include "models/core/Error.h"
#include "runtime/engine/Progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tilec {

StepTimes summarizeSteps(std::vector<double> ms) {
  if (ms.empty())
    fail("bench: no steps were timed");
  for (double v : ms)
    if (!std::isfinite(v) || v < 0)
      fail("bench: a step time of {} ms is not a time", v);
  std::sort(ms.begin(), ms.end());
  StepTimes s;
  s.steps = int64_t(ms.size());
  for (double v : ms)
    s.totalMs += v;
  s.meanMs = s.totalMs / double(ms.size());
  // Nearest rank: the smallest value with at least p of the values <= it.
  auto rank = [&](double p) {
    size_t k = size_t(std::ceil(p * double(ms.size())));
    return ms[std::min(ms.size() - 1, k > 0 ? k - 1 : 0)];
  };
  s.medianMs = rank(0.5);
  s.p10Ms = rank(0.1);
  s.p90Ms = rank(0.9);
  s.minMs = ms.front();
  s.maxMs = ms.back();
  return s;
}

int64_t estimatedBytesPerStep(const EngineManifest &m) {
  int64_t bytes = 0;
  for (const std::vector<TaskEstimate> &sm : m.smEstimates)
    for (const TaskEstimate &e : sm)
      bytes += e.bytes;
  return bytes;
}

void finishRow(BenchRow &row, double hbmGbps) {
  row.tokensPerSecond = row.step.totalMs > 0
                            ? row.committedPerStep * double(row.step.steps) /
                                  (row.step.totalMs * 1e-3)
                            : 0;
  // bytes per ns = GB/s.
  row.gbps = row.step.medianMs > 0
                 ? double(row.bytesPerStep) / (row.step.medianMs * 1e6)
                 : 0;
  row.hbmFraction = hbmGbps > 0 ? row.gbps / hbmGbps : 0;
}

std::string formatBench(const std::vector<BenchRow> &rows,
                        const std::string &device, double hbmGbps,
                        const std::string &bandwidthNote) {
  std::string out = fmt::format("device: {}\n", device);
  out += fmt::format("HBM bandwidth (device-to-device copy, read + write): "
                     "{:.0f} GB/s ({})\n",
                     hbmGbps, bandwidthNote);
  out += fmt::format("{:<28} {:<10} {:>2} {:>8} {:>5} {:>9} {:>9} {:>9} "
                     "{:>7} {:>9} {:>9} {:>10} {:>7} {:>6}\n",
                     "engine", "launch", "T", "drafts", "steps", "median ms",
                     "p10 ms", "p90 ms", "tok/step", "tok/s", "wall tok/s",
                     "bytes/step", "GB/s", "HBM %");
  for (const BenchRow &r : rows) {
    std::string name = r.engine;
    if (name.size() > 28)
      name = "..." + name.substr(name.size() - 25);
    out += fmt::format(
        "{:<28} {:<10} {:>2} {:>8} {:>5} {:>9.3f} {:>9.3f} {:>9.3f} {:>7.2f} "
        "{:>9.0f} {:>9.0f} {:>10} {:>7.0f} {:>5.1f}%\n",
        name, r.launch, r.tokensPerStep, r.drafting.empty() ? "-" : r.drafting,
        r.step.steps, r.step.medianMs, r.step.p10Ms, r.step.p90Ms,
        r.committedPerStep, r.tokensPerSecond, r.wallTokensPerSecond,
        r.bytesPerStep > 0 ? formatBytes(r.bytesPerStep) : "?", r.gbps,
        100.0 * r.hbmFraction);
  }
  out += "step times: the kernel's own (CUDA events around each step's "
         "launches), decode steps after the warm-up; tok/s: tokens committed "
         "per second of those times; wall tok/s: per second of the host's "
         "decode loop (launch, read-back, drafts); bytes/step: the "
         "compiler's estimate (manifest tasks.estimates: weights and scales "
         "read, activations, the attention window's K/V, every MoE slot's "
         "expert); GB/s: bytes/step over the median step\n";
  return out;
}

nlohmann::json benchJson(const std::vector<BenchRow> &rows,
                         const std::string &device, double hbmGbps,
                         const std::vector<double> &hbmTrials) {
  nlohmann::json out = {{"device", device},
                        {"hbm_copy_gbps", hbmGbps},
                        {"hbm_copy_trials_gbps", hbmTrials}};
  nlohmann::json list = nlohmann::json::array();
  for (const BenchRow &r : rows)
    list.push_back({{"engine", r.engine},
                    {"model", r.model},
                    {"launch", r.launch},
                    {"drafting", r.drafting},
                    {"tokens_per_step", r.tokensPerStep},
                    {"launches_per_step", r.launchesPerStep},
                    {"tasks", r.tasks},
                    {"steps", r.step.steps},
                    {"step_ms_median", r.step.medianMs},
                    {"step_ms_mean", r.step.meanMs},
                    {"step_ms_p10", r.step.p10Ms},
                    {"step_ms_p90", r.step.p90Ms},
                    {"step_ms_min", r.step.minMs},
                    {"step_ms_max", r.step.maxMs},
                    {"committed_per_step", r.committedPerStep},
                    {"tokens_per_second", r.tokensPerSecond},
                    {"wall_tokens_per_second", r.wallTokensPerSecond},
                    {"bytes_per_step", r.bytesPerStep},
                    {"gbps", r.gbps},
                    {"hbm_fraction", r.hbmFraction}});
  out["runs"] = list;
  return out;
}

} // namespace tilec
