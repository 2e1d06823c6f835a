//===- ReferenceCheck.cpp - An executor against the CPU reference ---------===//
#include "runtime/engine/ReferenceCheck.h"

#include "models/core/Reference.h"

#include <algorithm>
#include <cmath>

namespace tilec {

ReferenceCheck checkAgainstReference(Executor &executor, const Model &model,
                                     WeightSource &weights,
                                     const std::vector<int32_t> &prompt,
                                     const std::vector<int32_t> &produced) {
  ReferenceCheck check;
  ReferenceModel::Options options;
  options.roundActivations = true;
  options.cacheExperts = model.target.numExperts * model.target.hiddenSize *
                             model.target.moeIntermediateSize <
                         (int64_t(1) << 28);
  ReferenceModel greedy(model.target, weights, options);
  check.expected = greedy.generateGreedy(prompt, int64_t(produced.size()));
  while (check.matchingPrefix < int64_t(produced.size()) &&
         produced[size_t(check.matchingPrefix)] ==
             check.expected[size_t(check.matchingPrefix)])
    ++check.matchingPrefix;

  if (executor.manifest().logitsBuffer.empty())
    return check;
  // Teacher-forced: the sequence the reference produced, position by position.
  std::vector<int32_t> sequence = prompt;
  sequence.insert(sequence.end(), check.expected.begin(),
                  check.expected.end() - 1);
  ReferenceModel forced(model.target, weights, options);
  ref::Tensor expectedLogits = forced.forward(sequence).logits;
  int64_t V = model.target.vocabSize, T = executor.tokensPerStep();
  executor.reset();
  for (int64_t begin = 0; begin < int64_t(sequence.size()); begin += T) {
    std::vector<int32_t> tokens(static_cast<size_t>(T), 0),
        positions(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) {
      if (begin + i < int64_t(sequence.size()))
        tokens[size_t(i)] = sequence[size_t(begin + i)];
      positions[size_t(i)] = int32_t(begin + i);
    }
    StepOutput out = executor.step(tokens, positions, /*wantLogits=*/true);
    for (int64_t i = 0; i < T && begin + i < int64_t(sequence.size()); ++i) {
      const float *a = out.logits.data() + i * V;
      const float *b = expectedLogits.data.data() + (begin + i) * V;
      double diff = 0, norm = 0;
      for (int64_t v = 0; v < V; ++v) {
        double d = double(a[v]) - double(b[v]);
        diff += d * d;
        norm += double(b[v]) * double(b[v]);
        check.maxAbsoluteError = std::max(check.maxAbsoluteError, std::fabs(d));
      }
      check.maxRelativeError = std::max(
          check.maxRelativeError, std::sqrt(diff / std::max(norm, 1e-30)));
      ++check.positions;
    }
  }
  check.logitsCompared = true;
  executor.reset();
  return check;
}

} // namespace tilec
