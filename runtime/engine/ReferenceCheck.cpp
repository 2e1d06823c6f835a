//===- ReferenceCheck.cpp - An executor against the CPU reference ---------===//
#include "runtime/engine/ReferenceCheck.h"

#include "models/core/Dflash.h"
#include "models/core/Error.h"
#include "models/core/Reference.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>

namespace tilec {

bool ReferenceCheck::passed(int64_t produced) const {
  if (!logitsCompared)
    return matchingPrefix == produced;
  return mismatchedRows == 0 && tokensAgree == tokensCompared &&
         tokensCompared == produced;
}

bool storesGateUp(const EngineManifest &manifest) {
  for (const InstanceInfo &i : manifest.instances)
    if (i.family == TILEC_TASK_SILU_MUL)
      return true;
  return false;
}

namespace {

/// ||a - b|| / ||b|| and max |a - b| of two rows of V values.
std::pair<double, double> rowError(const float *a, const float *b, int64_t V) {
  double diff = 0, norm = 0, maxAbs = 0;
  for (int64_t v = 0; v < V; ++v) {
    double d = double(a[v]) - double(b[v]);
    diff += d * d;
    norm += double(b[v]) * double(b[v]);
    maxAbs = std::max(maxAbs, std::fabs(d));
  }
  return {std::sqrt(diff / std::max(norm, 1e-30)), maxAbs};
}

/// The reference as the check runs it: bf16 activations at the engine's
/// points, experts cached when they fit comfortably.
ReferenceModel::Options referenceOptions(const Model &model, bool roundGateUp) {
  ReferenceModel::Options ro;
  ro.roundActivations = true;
  ro.roundGateUp = roundGateUp;
  ro.cacheExperts = model.target.numExperts * model.target.hiddenSize *
                        model.target.moeIntermediateSize <
                    (int64_t(1) << 28);
  return ro;
}

/// The engine's logits for every position of `sequence`, replayed from
/// position 0 in steps of T (a DFlash engine verifies each chunk as a forced
/// block).
std::vector<std::vector<float>>
replayLogits(Executor &executor, const std::vector<int32_t> &sequence) {
  const int64_t V = int64_t(
      executor.manifest().buffer(executor.manifest().logitsBuffer).bytes / 4 /
      executor.tokensPerStep());
  const int64_t T = executor.tokensPerStep();
  const SpecInfo &spec = executor.manifest().spec;
  std::vector<std::vector<float>> rows;
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
    for (int64_t i = 0; i < n; ++i)
      rows.emplace_back(out.logits.begin() + i * V,
                        out.logits.begin() + (i + 1) * V);
  }
  executor.reset();
  return rows;
}

/// Subsets of {0 .. n-1} with 1 .. k members, smallest total gap first.
std::vector<std::vector<size_t>>
subsets(const std::vector<ref::RouterTies::Tie> &ties, int k) {
  std::vector<std::vector<size_t>> out;
  std::vector<size_t> cur;
  std::function<void(size_t)> grow = [&](size_t from) {
    if (!cur.empty())
      out.push_back(cur);
    if (int(cur.size()) == k)
      return;
    for (size_t i = from; i < ties.size(); ++i) {
      cur.push_back(i);
      grow(i + 1);
      cur.pop_back();
    }
  };
  grow(0);
  auto gap = [&](const std::vector<size_t> &s) {
    double g = 0;
    for (size_t i : s)
      g += ties[i].gap;
    return g;
  };
  std::stable_sort(out.begin(), out.end(), [&](const auto &a, const auto &b) {
    return a.size() != b.size() ? a.size() < b.size() : gap(a) < gap(b);
  });
  return out;
}

} // namespace

void matchTeacherForced(const Model &model, WeightSource &weights,
                        const std::vector<int32_t> &sequence,
                        int64_t promptLength,
                        const std::vector<int32_t> &produced,
                        const std::vector<std::vector<float>> &engineLogits,
                        const ReferenceCheckOptions &options,
                        ReferenceCheck &check) {
  if (engineLogits.size() != sequence.size())
    fail("check: {} engine logit rows for a sequence of {}",
         engineLogits.size(), sequence.size());
  ReferenceModel reference(model.target, weights,
                           referenceOptions(model, options.roundGateUp));
  ref::RouterTies ties;
  ties.epsilon = options.tieEpsilon;
  reference.setRouterTies(&ties);
  check.resolved = ref::RouterTies();
  check.resolved.epsilon = options.tieEpsilon;
  const int64_t V = model.target.vocabSize;
  for (int64_t p = 0; p < int64_t(sequence.size()); ++p) {
    const std::vector<float> &engine = engineLogits[size_t(p)];
    if (int64_t(engine.size()) != V)
      fail("check: the engine's logit row {} has {} values, the model's "
           "vocabulary {}",
           p, engine.size(), V);
    // The reference's own routing first; where its logits miss the engine's
    // and near-ties were met, the ties resolved the other way.
    auto run = [&](const std::vector<ref::RouterTies::Tie> &flip) {
      reference.truncate(p);
      ties.seen.clear();
      ties.flip = flip;
      return reference.forward({sequence[size_t(p)]}).logits;
    };
    ref::Tensor logits = run({});
    auto [rel, abs] = rowError(engine.data(), logits.data.data(), V);
    std::vector<ref::RouterTies::Tie> chosen, seen = ties.seen;
    if (rel > options.logitTolerance && !seen.empty() &&
        options.tieEpsilon > 0) {
      double bestRel = rel;
      bool lastIsChosen = false; // the caches hold the last variant run
      for (const std::vector<size_t> &subset :
           subsets(seen, options.maxFlips)) {
        std::vector<ref::RouterTies::Tie> flip;
        for (size_t i : subset)
          flip.push_back(seen[i]);
        ref::Tensor alt = run(flip);
        double r = rowError(engine.data(), alt.data.data(), V).first;
        lastIsChosen = r < bestRel;
        if (lastIsChosen) {
          bestRel = r;
          chosen = flip;
          logits = std::move(alt);
        }
        if (r <= options.logitTolerance)
          break;
      }
      // The model's caches (and ties.seen) must be the chosen variant's.
      if (!lastIsChosen)
        logits = run(chosen);
      std::tie(rel, abs) = rowError(engine.data(), logits.data.data(), V);
    }
    check.tiesSeen += int64_t(ties.seen.size());
    for (const ref::RouterTies::Tie &t : chosen)
      check.resolved.flip.push_back(t);
    check.maxRelativeError = std::max(check.maxRelativeError, rel);
    check.maxAbsoluteError = std::max(check.maxAbsoluteError, abs);
    ++check.positions;
    if (rel > options.logitTolerance) {
      ++check.mismatchedRows;
      if (check.firstMismatchedRow < 0)
        check.firstMismatchedRow = p;
    }
    // Row p predicts generated token p - (promptLength - 1).
    const int64_t g = p - (promptLength - 1);
    if (g < 0 || g >= int64_t(produced.size()))
      continue;
    ++check.tokensCompared;
    const int32_t best = ref::argmax(logits).front(), got = produced[size_t(g)];
    bool agree = best == got;
    if (!agree && got >= 0 && got < V &&
        double(logits.data[size_t(best)]) - double(logits.data[size_t(got)]) <=
            2 * abs) {
      agree = true;
      ++check.logitNearTies;
    }
    check.tokensAgree += agree;
    if (!agree && check.firstDisagreement < 0)
      check.firstDisagreement = g;
  }
  check.logitsCompared = true;
}

ReferenceCheck checkAgainstReference(Executor &executor, const Model &model,
                                     WeightSource &weights,
                                     const std::vector<int32_t> &prompt,
                                     const std::vector<int32_t> &produced,
                                     const ReferenceCheckOptions &given) {
  ReferenceCheckOptions options = given;
  options.roundGateUp =
      options.roundGateUp || storesGateUp(executor.manifest());
  ReferenceCheck check;
  ReferenceModel greedy(model.target, weights,
                        referenceOptions(model, options.roundGateUp));
  check.expected = greedy.generateGreedy(prompt, int64_t(produced.size()));
  while (check.matchingPrefix < int64_t(produced.size()) &&
         produced[size_t(check.matchingPrefix)] ==
             check.expected[size_t(check.matchingPrefix)])
    ++check.matchingPrefix;
  if (executor.manifest().logitsBuffer.empty() || produced.empty())
    return check;
  std::vector<int32_t> sequence = prompt;
  sequence.insert(sequence.end(), produced.begin(), produced.end() - 1);
  matchTeacherForced(model, weights, sequence, int64_t(prompt.size()), produced,
                     replayLogits(executor, sequence), options, check);
  return check;
}

bool DraftCheck::passed(double logitTolerance) const {
  return agree == tokens && maxRelativeError <= logitTolerance;
}

DraftCheck checkDrafts(const Model &model, WeightSource &weights,
                       const std::vector<int32_t> &prompt,
                       const DflashStats &engine, bool autoregressive,
                       bool roundGateUp, const ref::RouterTies *ties) {
  const std::vector<std::vector<int32_t>> &drafts = engine.drafts;
  DraftCheck check;
  if (!model.drafter)
    fail("check: the model has no DFlash drafter");
  if (drafts.empty())
    return check;
  if (engine.committed.size() < drafts.size())
    fail("check: {} drafts recorded but the tokens of only {} decode steps",
         drafts.size(), engine.committed.size());
  const int64_t B = int64_t(drafts.front().size());
  DflashReference reference(model, weights, /*roundActivations=*/true,
                            autoregressive, roundGateUp);
  ref::RouterTies followed;
  if (ties) {
    followed = *ties;
    reference.setRouterTies(&followed);
  }
  // The engine's decode, as far as it drafted.
  DflashReference::Followed path;
  path.first = engine.first;
  path.committed.assign(engine.committed.begin(),
                        engine.committed.begin() + int64_t(drafts.size()));
  path.blocks = drafts;
  DflashReference::Stats stats;
  reference.replay(prompt, path, B, stats);
  const int64_t steps =
      std::min<int64_t>(int64_t(drafts.size()), int64_t(stats.drafts.size()));
  for (int64_t s = 0; s < steps; ++s) {
    const std::vector<int32_t> &expected = stats.drafts[size_t(s)];
    const std::vector<int32_t> &got = drafts[size_t(s)];
    // The engine's draft logits [B, V] (rows 1 .. B-1 the draft's) against
    // the reference's [B-1, V]: each row's error bounds how far a near-tie
    // may have gone the other way.
    const ref::Tensor &want = stats.draftLogits[size_t(s)];
    const ref::Tensor &choice = autoregressive ? stats.choiceLogits[size_t(s)]
                                               : stats.draftLogits[size_t(s)];
    const int64_t V = want.dim(1);
    const std::vector<float> *have = s < int64_t(engine.draftLogits.size())
                                         ? &engine.draftLogits[size_t(s)]
                                         : nullptr;
    bool agreeing = true;
    for (int64_t j = 1; j < B && j < int64_t(got.size()); ++j) {
      ++check.tokens;
      bool eq = got[size_t(j)] == expected[size_t(j - 1)], tie = false;
      if (have && (j + 1) * V <= int64_t(have->size())) {
        auto [rel, abs] = rowError(have->data() + j * V, want.row(j - 1), V);
        check.maxRelativeError = std::max(check.maxRelativeError, rel);
        ++check.logitRows;
        const int32_t best = expected[size_t(j - 1)], t = got[size_t(j)];
        const float *c = choice.row(j - 1);
        tie =
            !eq && t >= 0 && t < V && double(c[best]) - double(c[t]) <= 2 * abs;
      }
      check.equal += eq;
      check.logitNearTies += tie;
      agreeing &= eq || tie;
    }
    if (!agreeing && check.firstDifferentStep < 0)
      check.firstDifferentStep = s;
    ++check.steps;
  }
  check.agree = check.equal + check.logitNearTies;
  return check;
}

} // namespace tilec
