//===- ReferenceCheck.cpp - An executor against the CPU reference ---------===//
#include "runtime/engine/ReferenceCheck.h"

#include "models/core/Dflash.h"
#include "models/core/Error.h"
#include "models/core/Reference.h"

#include <algorithm>
#include <cmath>

namespace tilec {

bool storesGateUp(const EngineManifest &manifest) {
  for (const InstanceInfo &i : manifest.instances)
    if (i.family == TILEC_TASK_SILU_MUL)
      return true;
  return false;
}

ReferenceCheck checkAgainstReference(Executor &executor, const Model &model,
                                     WeightSource &weights,
                                     const std::vector<int32_t> &prompt,
                                     const std::vector<int32_t> &produced) {
  ReferenceCheck check;
  ReferenceModel::Options options;
  options.roundActivations = true;
  options.roundGateUp = storesGateUp(executor.manifest());
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
  const SpecInfo &spec = executor.manifest().spec;
  executor.reset();
  for (int64_t begin = 0; begin < int64_t(sequence.size()); begin += T) {
    std::vector<int32_t> tokens(static_cast<size_t>(T), 0),
        positions(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) {
      if (begin + i < int64_t(sequence.size()))
        tokens[size_t(i)] = sequence[size_t(begin + i)];
      positions[size_t(i)] = int32_t(begin + i);
    }
    int64_t n = std::min(T, int64_t(sequence.size()) - begin);
    StepOutput out;
    if (spec.enabled()) {
      // A DFlash engine verifies the chunk as a forced (prompt) block.
      int32_t forced = int32_t(n);
      if (!spec.samplingBuffer.empty()) {
        const int32_t greedy[2] = {0, 0};
        executor.writeBuffer(spec.samplingBuffer, greedy, 8);
      }
      executor.writeBuffer(spec.tokensBuffer, tokens.data(), 4 * T);
      executor.writeBuffer(spec.positionsBuffer, positions.data(), 4 * T);
      executor.writeBuffer(spec.forcedBuffer, &forced, 4);
      out.logits.resize(size_t(T * V));
      executor.launch(executor.manifest().logitsBuffer, out.logits.data(),
                      4 * T * V);
    } else {
      out = executor.step(tokens, positions, /*wantLogits=*/true);
    }
    for (int64_t i = 0; i < n; ++i) {
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

DraftCheck checkDrafts(const Model &model, WeightSource &weights,
                       const std::vector<int32_t> &prompt, int64_t count,
                       const DflashStats &engine,
                       const std::vector<int32_t> *oracle, bool autoregressive,
                       bool roundGateUp) {
  const std::vector<std::vector<int32_t>> &drafts = engine.drafts;
  DraftCheck check;
  if (!model.drafter)
    fail("check: the model has no DFlash drafter");
  if (drafts.empty())
    return check;
  const int64_t B = int64_t(drafts.front().size());
  DflashReference reference(model, weights, /*roundActivations=*/true,
                            autoregressive, roundGateUp);
  DflashReference::Stats stats;
  reference.generate(prompt, count, B, &stats, oracle);
  int64_t steps =
      std::min<int64_t>(int64_t(drafts.size()), int64_t(stats.drafts.size()));
  for (int64_t s = 0; s < steps; ++s) {
    const std::vector<int32_t> &expected = stats.drafts[size_t(s)];
    const std::vector<int32_t> &got = drafts[size_t(s)];
    bool same = true;
    for (int64_t j = 1; j < B && j < int64_t(got.size()); ++j) {
      ++check.tokens;
      bool eq = got[size_t(j)] == expected[size_t(j - 1)];
      check.equal += eq;
      same &= eq;
    }
    if (!same && check.firstDifferentStep < 0)
      check.firstDifferentStep = s;
    ++check.steps;
    if (s < int64_t(engine.draftLogits.size())) {
      // Rows 1 .. B-1 of the engine's [B, V] against the reference's [B-1, V].
      const ref::Tensor &want = stats.draftLogits[size_t(s)];
      const std::vector<float> &have = engine.draftLogits[size_t(s)];
      int64_t V = want.dim(1);
      for (int64_t j = 1; j < B && (j + 1) * V <= int64_t(have.size()); ++j) {
        double diff = 0, norm = 0;
        for (int64_t v = 0; v < V; ++v) {
          double a = have[size_t(j * V + v)], b = want.row(j - 1)[v];
          diff += (a - b) * (a - b);
          norm += b * b;
        }
        check.maxRelativeError = std::max(
            check.maxRelativeError, std::sqrt(diff / std::max(norm, 1e-30)));
        ++check.logitRows;
      }
    }
  }
  return check;
}

} // namespace tilec
