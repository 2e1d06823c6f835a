//===- SampleCheck.cpp - DFlash sampling against the target's distribution ===//
#include "runtime/engine/SampleCheck.h"

#include "models/core/Error.h"
#include "models/core/Reference.h"
#include "runtime/engine/ReferenceCheck.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace tilec {

double chiSquareUpperTail(double x, int64_t dof) {
  if (dof <= 0)
    return 1;
  double k = double(dof);
  double z = (std::cbrt(x / k) - (1 - 2 / (9 * k))) / std::sqrt(2 / (9 * k));
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

namespace {

std::vector<double> softmax(const float *logits, int64_t V, float temp) {
  std::vector<double> p(static_cast<size_t>(V));
  double m = -1e300, z = 0;
  for (int64_t v = 0; v < V; ++v)
    m = std::max(m, double(logits[v]) / temp);
  for (int64_t v = 0; v < V; ++v)
    z += p[size_t(v)] = std::exp(double(logits[v]) / temp - m);
  for (double &x : p)
    x /= z;
  return p;
}

/// Pearson's statistic over cells expecting >= 5, the others pooled into one.
void chiSquare(const std::map<int64_t, double> &expected,
               const std::map<int64_t, int64_t> &observed, double &stat,
               int64_t &cells) {
  double pooledE = 0, pooledO = 0;
  stat = 0;
  cells = 0;
  for (const auto &[cell, e] : expected) {
    auto it = observed.find(cell);
    double o = it == observed.end() ? 0 : double(it->second);
    if (e >= 5) {
      stat += (o - e) * (o - e) / e;
      ++cells;
    } else {
      pooledE += e;
      pooledO += o;
    }
  }
  // Observed cells the expectation does not list (probability ~0).
  for (const auto &[cell, o] : observed)
    if (!expected.count(cell))
      pooledO += double(o);
  if (pooledE >= 5) {
    stat += (pooledO - pooledE) * (pooledO - pooledE) / pooledE;
    ++cells;
  } else if (pooledO > 0 && pooledE > 0) {
    stat += (pooledO - pooledE) * (pooledO - pooledE) / pooledE;
    ++cells;
  }
}

} // namespace

SampleCheckResult checkSampling(Executor &executor, const Model &model,
                                WeightSource &weights,
                                const std::vector<int32_t> &prompt,
                                const SampleCheckOptions &options) {
  if (!(options.temperature > 0))
    fail("sample check: the temperature must be > 0, got {}",
         options.temperature);
  if (options.samples < 10)
    fail("sample check: {} samples are too few", options.samples);
  const int64_t V = model.target.vocabSize, T = executor.tokensPerStep();
  const float temp = options.temperature;
  ReferenceModel::Options refOptions;
  refOptions.roundActivations = true;
  refOptions.roundGateUp = storesGateUp(executor.manifest());
  ReferenceModel ref(model.target, weights, refOptions);
  // The last row's distribution after appending `tokens` to the cache.
  auto forwardLast = [&](const std::vector<int32_t> &tokens) {
    ref::Tensor logits = ref.forward(tokens).logits;
    return softmax(logits.row(logits.dim(0) - 1), V, temp);
  };

  // The samples: (t1, t2) per seed.
  std::vector<int32_t> oracle;
  if (options.oracle)
    oracle = ref.generateGreedy(prompt, 2 + T);
  SampleCheckResult r;
  std::map<int64_t, int64_t> joint, first;
  for (int64_t s = 0; s < options.samples; ++s) {
    DflashOptions o;
    o.temperature = temp;
    o.seed = uint32_t(s);
    if (options.oracle)
      o.oracle = &oracle;
    DflashStats stats;
    std::vector<int32_t> t = generateDflash(executor, prompt, 2, o, &stats);
    ++joint[int64_t(t[0]) * V + t[1]];
    ++first[t[0]];
    if (!stats.accepted.empty() && stats.accepted[0] >= 2)
      ++r.acceptedDrafts;
  }
  r.samples = options.samples;

  // The exact distributions: p(t1), and p(t2 | t1) for every t1 expected at
  // least once or seen.
  const double N = double(options.samples);
  ref.truncate(0);
  std::vector<double> p1 = forwardLast(prompt);
  const int64_t P = int64_t(prompt.size());
  std::map<int64_t, double> expectedJoint, expectedFirst;
  for (int64_t t1 = 0; t1 < V; ++t1) {
    double e1 = N * p1[size_t(t1)];
    expectedFirst[t1] = e1;
    if (e1 < 1 && !first.count(t1)) {
      expectedJoint[-1 - t1] = e1; // t1 unlikely and unseen: one pooled cell
      continue;
    }
    ref.truncate(P); // the prompt stays cached
    std::vector<double> p2 = forwardLast({int32_t(t1)});
    for (int64_t t2 = 0; t2 < V; ++t2)
      expectedJoint[t1 * V + t2] = e1 * p2[size_t(t2)];
  }
  chiSquare(expectedJoint, joint, r.chiSquare, r.cells);
  r.pValue = chiSquareUpperTail(r.chiSquare, r.cells - 1);
  chiSquare(expectedFirst, first, r.firstChiSquare, r.firstCells);
  r.firstPValue = chiSquareUpperTail(r.firstChiSquare, r.firstCells - 1);
  double tv = 0;
  for (const auto &[cell, e] : expectedJoint) {
    auto it = joint.find(cell);
    tv += std::fabs((it == joint.end() ? 0 : double(it->second)) - e);
  }
  for (const auto &[cell, o] : joint)
    if (!expectedJoint.count(cell))
      tv += double(o);
  r.totalVariation = tv / (2 * N);
  return r;
}

} // namespace tilec
