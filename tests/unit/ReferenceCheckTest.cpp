//===- ReferenceCheckTest.cpp - The check against the CPU reference -------===//
//
// runtime/engine/ReferenceCheck.h's teacher-forced match, with "engines" made
// of the reference itself: one that resolves a routing near-tie the other way
// (as another summation order on a GPU can) is followed through it and passes,
// the same engine fails when the search is off, and a logit that no tie
// explains fails at its row. The default logit tolerance is assert_close's
// bf16 bound.
//
//===----------------------------------------------------------------------===//
#include "models/core/Config.h"
#include "models/core/Reference.h"
#include "models/core/Synthetic.h"
#include "runtime/engine/ReferenceCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

using namespace tilec;

namespace {

struct EngineRun {
  std::vector<int32_t> produced;
  std::vector<std::vector<float>> logits; // per position of prompt + produced
  ref::RouterTies ties;                   // what it met
};

/// Greedy decoding by the reference (bf16 activations) whose router flips
/// `flip` (epsilon `eps`): the produced tokens and every position's logits.
EngineRun runEngine(const Model &model, WeightSource &weights,
                    const std::vector<int32_t> &prompt, int64_t n, double eps,
                    std::vector<ref::RouterTies::Tie> flip) {
  ReferenceModel::Options ro;
  ro.roundActivations = true;
  ReferenceModel m(model.target, weights, ro);
  EngineRun r;
  r.ties.epsilon = eps;
  r.ties.flip = std::move(flip);
  m.setRouterTies(&r.ties);
  std::vector<int32_t> next = prompt;
  const int64_t V = model.target.vocabSize;
  for (int64_t k = 0; k < n; ++k) {
    ref::Tensor out = m.forward(next).logits;
    for (int64_t row = 0; row < out.dim(0); ++row)
      r.logits.emplace_back(out.data.begin() + row * V,
                            out.data.begin() + (row + 1) * V);
    r.produced.push_back(ref::argmax(out).back());
    next = {r.produced.back()};
  }
  return r;
}

ReferenceCheck check(const Model &model, WeightSource &weights,
                     const std::vector<int32_t> &prompt, const EngineRun &e,
                     double eps) {
  std::vector<int32_t> sequence = prompt;
  sequence.insert(sequence.end(), e.produced.begin(), e.produced.end() - 1);
  ReferenceCheckOptions options;
  options.tieEpsilon = eps;
  ReferenceCheck c;
  matchTeacherForced(model, weights, sequence, int64_t(prompt.size()),
                     e.produced, e.logits, options, c);
  return c;
}

} // namespace

TEST(ReferenceCheck, FollowsAnEngineThroughRoutingNearTies) {
  Model model = loadModel("tiny-groups");
  SyntheticWeights weights(model, 0);
  const std::vector<int32_t> prompt{3, 1, 4, 1, 5, 9, 2, 6};
  const int64_t n = 24;
  const double eps = 0.02;

  // The reference itself passes, with nothing to resolve.
  EngineRun same = runEngine(model, weights, prompt, n, eps, {});
  ReferenceCheck c0 = check(model, weights, prompt, same, eps);
  EXPECT_TRUE(c0.passed(n));
  EXPECT_TRUE(c0.resolved.flip.empty());
  EXPECT_EQ(c0.tokensAgree, n);
  ASSERT_FALSE(same.ties.seen.empty()) << "no near-tie to flip in this run";

  // An engine that resolves one near-tie the other way, one whose effect is
  // visible in the logits (the check fails without the search).
  std::vector<ref::RouterTies::Tie> candidates = same.ties.seen;
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](auto &a, auto &b) { return a.gap < b.gap; });
  bool found = false;
  for (const ref::RouterTies::Tie &tie : candidates) {
    EngineRun flipped = runEngine(model, weights, prompt, n, eps, {tie});
    if (check(model, weights, prompt, flipped, 0).passed(n))
      continue; // invisible: a too small effect
    found = true;
    SCOPED_TRACE(testing::Message() << "tie at layer " << tie.layer
                                    << ", position " << tie.position);
    ReferenceCheck c = check(model, weights, prompt, flipped, eps);
    EXPECT_TRUE(c.passed(n)) << c.mismatchedRows << " rows over, first "
                             << c.firstMismatchedRow;
    EXPECT_EQ(c.mismatchedRows, 0);
    EXPECT_LE(c.maxRelativeError, 1e-2);
    bool listed = false;
    for (const ref::RouterTies::Tie &t : c.resolved.flip)
      listed |= t.layer == tie.layer && t.position == tie.position &&
                t.group == tie.group;
    EXPECT_TRUE(listed) << "the flipped tie is not among the resolved ones";

    // A logit no tie explains: the check fails at that row.
    EngineRun wrong = flipped;
    const size_t row = prompt.size() + 5;
    wrong.logits[row][7] += 2.0f;
    ReferenceCheck cw = check(model, weights, prompt, wrong, eps);
    EXPECT_FALSE(cw.passed(n));
    EXPECT_EQ(cw.firstMismatchedRow, int64_t(row));
    break;
  }
  EXPECT_TRUE(found) << "no near-tie whose flip shows in the logits";
}

TEST(ReferenceCheck, LogitRowsMustMatchTheSequence) {
  Model model = loadModel("tiny");
  SyntheticWeights weights(model, 0);
  ReferenceCheck c;
  EXPECT_THROW(matchTeacherForced(model, weights, {1, 2, 3}, 2, {4, 5},
                                  {{0.0f}}, {}, c),
               Error);
}

/// assert_close's bf16 bound (rtol 1.6e-2, atol 1e-5) element by element
/// keeps a row within the default tolerance; the 1.1-1.2e-2 an H200 gave
/// (the same tokens) passes, twice the old 1e-2 does not.
TEST(ReferenceCheck, LogitToleranceIsTheBf16AssertCloseBound) {
  EXPECT_DOUBLE_EQ(ReferenceCheckOptions().logitTolerance, 1.6e-2);
  Model model = loadModel("tiny");
  SyntheticWeights weights(model, 0);
  const std::vector<int32_t> prompt{3, 1, 4, 1, 5, 9, 2, 6};
  const int64_t n = 8;
  EngineRun engine = runEngine(model, weights, prompt, n, 0, {});
  auto perturbed = [&](const std::function<float(float, size_t)> &f) {
    EngineRun e = engine;
    for (std::vector<float> &row : e.logits)
      for (size_t v = 0; v < row.size(); ++v)
        row[v] = f(row[v], v);
    return check(model, weights, prompt, e, 0);
  };
  std::mt19937 rng(1);
  std::vector<float> sign(size_t(model.target.vocabSize));
  for (float &x : sign)
    x = rng() % 2 ? 1.0f : -1.0f;
  const double rtol = 1.6e-2, atol = 1e-5;
  ReferenceCheck inside = perturbed([&](float b, size_t v) {
    return float(b + sign[v] * 0.99 * (rtol * std::fabs(b) + atol));
  });
  EXPECT_EQ(inside.mismatchedRows, 0) << inside.maxRelativeError;
  EXPECT_GT(inside.maxRelativeError, 1.2e-2);
  EXPECT_TRUE(inside.passed(n));
  ReferenceCheck seen =
      perturbed([](float b, size_t) { return float(b * (1 + 1.2e-2)); });
  EXPECT_NEAR(seen.maxRelativeError, 1.2e-2, 1e-4);
  EXPECT_TRUE(seen.passed(n));
  ReferenceCheck over =
      perturbed([](float b, size_t) { return float(b * (1 + 2e-2)); });
  EXPECT_FALSE(over.passed(n));
  EXPECT_EQ(over.firstMismatchedRow, 0);
}
