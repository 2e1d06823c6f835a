//===- SampleCheck.h - DFlash sampling against the target's distribution -===//
//
// The statistical test of speculative sampling: many two-token generations
// (different seeds) from one prompt on a DFlash engine; the first token comes
// from the prefill's draw, the second from the first speculative step (an
// accepted draft or a draw from the residual). Their joint frequencies are
// compared with the target's exact distribution p(t1) p(t2 | t1), computed by
// the CPU reference model at the engine's bf16 rounding points, by Pearson's
// chi-square over the cells expecting at least 5 samples (the rest pooled).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Config.h"
#include "models/core/WeightSource.h"
#include "runtime/engine/Executor.h"

#include <cstdint>
#include <vector>

namespace tilec {

struct SampleCheckOptions {
  float temperature = 1;
  int64_t samples = 2000;
  /// Drafts from the target's greedy continuation instead of the drafter, so
  /// that the accept path is taken often (it must keep the distribution too).
  bool oracle = false;
};

struct SampleCheckResult {
  int64_t samples = 0;
  int64_t acceptedDrafts = 0; // second tokens that were accepted drafts
  int64_t cells = 0;          // chi-square cells (pooled one included)
  double chiSquare = 0, pValue = 1;
  double firstChiSquare = 0, firstPValue = 1; // the first token alone
  int64_t firstCells = 0;
  double totalVariation = 0; // between the empirical and the exact joint
};

/// Upper tail of the chi-square distribution with `dof` degrees of freedom at
/// `x` (Wilson-Hilferty's normal approximation; good to ~1e-3 for dof >= 3).
double chiSquareUpperTail(double x, int64_t dof);

SampleCheckResult checkSampling(Executor &executor, const Model &model,
                                WeightSource &weights,
                                const std::vector<int32_t> &prompt,
                                const SampleCheckOptions &options);

} // namespace tilec
