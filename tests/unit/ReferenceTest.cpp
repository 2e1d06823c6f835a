//===- ReferenceTest.cpp - The CPU reference model, op by op --------------===//
//
// Each op against a case small enough to compute by hand, then the whole
// model's self-consistency (cached decoding equals recomputing the prefix).
//
//===----------------------------------------------------------------------===//
#include "models/core/Reference.h"
#include "models/core/Synthetic.h"
#include "runtime/abi/ExactMath.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

using namespace tilec;
using ref::Tensor;

namespace {

TEST(ReferenceOps, RmsNorm) {
  Tensor x({1, 2}, {3, 4});
  Tensor y = ref::rmsNorm(x, {1, 2}, 0.0);
  float rms = std::sqrt(12.5f);
  EXPECT_FLOAT_EQ(y.data[0], 3 / rms);
  EXPECT_FLOAT_EQ(y.data[1], 2 * 4 / rms);
  // Per-head: a [1, 2, 2] input normalizes each head on its own.
  Tensor heads({1, 2, 2}, {3, 4, 6, 8});
  Tensor z = ref::rmsNorm(heads, {1, 1}, 0.0);
  EXPECT_FLOAT_EQ(z.data[0], z.data[2]);
  EXPECT_FLOAT_EQ(z.data[1], z.data[3]);
}

TEST(ReferenceOps, Linear) {
  Tensor x({2, 2}, {1, 2, 3, 4});
  Tensor y = ref::linear(x, {1, 0, 0, 1, 1, 1}, 3); // W rows: e0, e1, e0+e1
  EXPECT_EQ(y.data, (std::vector<float>{1, 2, 3, 3, 4, 7}));
}

TEST(ReferenceOps, PartialRopeRotatesFirstDimsOnly) {
  // rotary_dim 2 of a 4-dim head: inv_freq = [1]; dims 2, 3 pass through.
  Tensor x({1, 1, 4}, {1, 0, 5, 6});
  Tensor y = ref::rope(x, {1}, 2, 10000.0);
  EXPECT_FLOAT_EQ(y.data[0], std::cos(1.0f));
  EXPECT_FLOAT_EQ(y.data[1], std::sin(1.0f));
  EXPECT_EQ(y.data[2], 5);
  EXPECT_EQ(y.data[3], 6);
  // rotary_dim 4: inv_freq = [1, 10000^-0.5]; x1 = [1, 0], x2 = [0, 0].
  Tensor z = ref::rope(Tensor({1, 1, 4}, {1, 0, 0, 0}), {1}, 4, 10000.0);
  EXPECT_FLOAT_EQ(z.data[0], std::cos(1.0f));
  EXPECT_FLOAT_EQ(z.data[2], std::sin(1.0f));
  EXPECT_FLOAT_EQ(z.data[1], 0);
  // Position 0 is the identity.
  EXPECT_EQ(ref::rope(x, {0}, 2, 10000.0).data, x.data);
}

ref::KVCache twoKeys() {
  ref::KVCache cache;
  cache.kvHeads = 1;
  cache.qkDim = 2;
  cache.vDim = 2;
  cache.append(Tensor({2, 1, 2}, {1, 0, 0, 1}),
               Tensor({2, 1, 2}, {1, 0, 0, 1}));
  return cache;
}

TEST(ReferenceOps, AttentionSoftmax) {
  ref::KVCache cache = twoKeys();
  Tensor q({1, 1, 2}, {1, 0});
  Tensor o = ref::attention(q, {1}, cache, {});
  float e = std::exp(1.0f);
  EXPECT_FLOAT_EQ(o.data[0], e / (e + 1));
  EXPECT_FLOAT_EQ(o.data[1], 1 / (e + 1));
}

TEST(ReferenceOps, AttentionCausalWindowSinkValueScaleGqa) {
  ref::KVCache cache = twoKeys();
  float e = std::exp(1.0f);
  // Causal: a query at position 0 sees only key 0.
  Tensor q({1, 1, 2}, {1, 0});
  EXPECT_EQ(ref::attention(q, {0}, cache, {}).data, (std::vector<float>{1, 0}));
  // Window 1: a query at position 1 sees only key 1.
  ref::AttentionParams window;
  window.window = 1;
  EXPECT_EQ(ref::attention(q, {1}, cache, window).data,
            (std::vector<float>{0, 1}));
  // A sink logit of 0 joins the softmax and is dropped; values scaled by 0.5.
  std::vector<float> sinks{0.0f};
  ref::AttentionParams sink;
  sink.sinks = &sinks;
  sink.valueScale = 0.5;
  Tensor o = ref::attention(q, {1}, cache, sink);
  EXPECT_FLOAT_EQ(o.data[0], 0.5f * e / (e + 2));
  EXPECT_FLOAT_EQ(o.data[1], 0.5f * 1 / (e + 2));
  // GQA: two query heads share the one KV head.
  Tensor q2({1, 2, 2}, {1, 0, 0, 1});
  Tensor g = ref::attention(q2, {1}, cache, {});
  EXPECT_FLOAT_EQ(g.data[0], e / (e + 1));
  EXPECT_FLOAT_EQ(g.data[2], 1 / (e + 1));
  EXPECT_FLOAT_EQ(g.data[3], e / (e + 1));
}

TEST(ReferenceOps, RouterBiasChoosesButDoesNotWeigh) {
  // Logits of the 4 experts are the input values (identity gate).
  Tensor x({1, 4}, {2, 1, 0, -1});
  std::vector<float> gate{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  auto sig = [](float v) { return 1 / (1 + std::exp(-v)); };
  ref::RouterParams p{4, 2, 1, 1, /*renorm=*/false, /*scaling=*/1.0};
  ref::Routing r = ref::router(x, gate, {0, 0, 0, 0}, p);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1}));
  EXPECT_FLOAT_EQ(r.weights[0], sig(2));
  // A bias lifts expert 3 into the top 2; its weight stays sigmoid(-1).
  r = ref::router(x, gate, {0, 0, 0, 1}, p);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{3, 0}));
  EXPECT_FLOAT_EQ(r.weights[0], sig(-1));
  // Renormalised and scaled.
  p.renorm = true;
  p.scaling = 2.5;
  r = ref::router(x, gate, {0, 0, 0, 0}, p);
  EXPECT_FLOAT_EQ(r.weights[0], 2.5f * sig(2) / (sig(2) + sig(1) + 1e-20f));
  // Groups {0,1} and {2,3}: group scores 2 best sums; keep 1 group of 2.
  p = {4, 2, 2, 1, false, 1.0};
  r = ref::router(x, gate, {0, 0, 5, 0}, p); // group 2 wins through the bias
  EXPECT_EQ(r.experts, (std::vector<int32_t>{2, 3}));
}

TEST(ReferenceOps, RouterRecordsAndFlipsNearTies) {
  // Expert 1 (logit 1.0) and expert 2 (0.999) sit at the top-2 boundary.
  Tensor x({2, 4}, {2, 1, 0.999f, -1, /* token 1: no tie */ 2, 1, 0, -1});
  std::vector<float> gate{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  ref::RouterParams p{4, 2, 1, 1, false, 1.0};
  ref::RouterTies ties;
  ties.epsilon = 1e-3;
  std::vector<int64_t> positions{40, 41};
  ref::Routing r = ref::router(x, gate, {0, 0, 0, 0}, p, &ties, 3, &positions);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1, 0, 1}));
  ASSERT_EQ(ties.seen.size(), 1u); // only token 0's boundary is that close
  EXPECT_EQ(ties.seen[0].layer, 3);
  EXPECT_EQ(ties.seen[0].position, 40);
  EXPECT_FALSE(ties.seen[0].group);
  EXPECT_GT(ties.seen[0].gap, 0);
  EXPECT_LT(ties.seen[0].gap, 1e-3);
  // Flipped: expert 2 instead of 1, weighted by its own score.
  ties.flip = ties.seen;
  ties.seen.clear();
  r = ref::router(x, gate, {0, 0, 0, 0}, p, &ties, 3, &positions);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 2, 0, 1}));
  EXPECT_FLOAT_EQ(r.weights[1], 1 / (1 + std::exp(-0.999f)));
  // A flip of another layer or position does nothing; epsilon 0 records none.
  ties.flip[0].layer = 4;
  r = ref::router(x, gate, {0, 0, 0, 0}, p, &ties, 3, &positions);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1, 0, 1}));
  ref::RouterTies off;
  ref::router(x, gate, {0, 0, 0, 0}, p, &off, 3, &positions);
  EXPECT_TRUE(off.seen.empty());
  // Groups {0,1} and {2,3} scoring sig(1.5) + sig(0.4) against sig(0.4001) +
  // sig(1.5) (near-tied), keep 1.
  Tensor g({1, 4}, {1.5f, 0.4f, 0.4001f, 1.5f});
  ref::RouterTies gt;
  gt.epsilon = 1e-3;
  ref::RouterParams pg{4, 1, 2, 1, false, 1.0};
  auto sig = [](float v) { return 1 / (1 + std::exp(-v)); };
  ASSERT_LT(std::fabs((sig(1.5f) + sig(0.4f)) - (sig(0.4001f) + sig(1.5f))),
            1e-3);
  r = ref::router(g, gate, {0, 0, 0, 0}, pg, &gt, 0);
  ASSERT_EQ(gt.seen.size(), 1u);
  EXPECT_TRUE(gt.seen[0].group);
  int32_t before = r.experts[0];
  gt.flip = gt.seen;
  r = ref::router(g, gate, {0, 0, 0, 0}, pg, &gt, 0);
  EXPECT_NE(r.experts[0] / 2, before / 2); // the other group's best
}

class TwoExperts : public ref::ExpertWeights {
public:
  // H = 2, I = 1: gate picks x0, up picks x1; down writes to dim e.
  const std::vector<float> &gateUp(int64_t) override { return gu; }
  const std::vector<float> &down(int64_t e) override { return e ? d1 : d0; }
  std::vector<float> gu{1, 0, 0, 1}, d0{1, 0}, d1{0, 1};
};

TEST(ReferenceOps, MoeWeightsAndSumsExperts) {
  TwoExperts experts;
  Tensor x({1, 2}, {1, 3});
  ref::Routing routing{2, {0, 1}, {0.25f, 0.5f}};
  Tensor y = ref::moe(x, routing, experts, 1);
  float a = 1 / (1 + std::exp(-1.0f)) * 3; // silu(1) * 3
  EXPECT_FLOAT_EQ(y.data[0], 0.25f * a);
  EXPECT_FLOAT_EQ(y.data[1], 0.5f * a);
}

TEST(ReferenceOps, ArgmaxTakesFirstOnTies) {
  EXPECT_EQ(ref::argmax(Tensor({2, 3}, {1, 5, 5, 9, 0, 9})),
            (std::vector<int32_t>{1, 0}));
}

/// Cached decoding must equal recomputing the whole sequence, for every preset
/// that runs on a CPU (full and sliding layers, past the window).
TEST(ReferenceModel, CachedDecodingEqualsRecompute) {
  for (const char *name : {"tiny", "tiny-groups", "tiny-window"}) {
    SCOPED_TRACE(name);
    Model model = loadModel(name);
    SyntheticWeights weights(model, 7);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 14; ++i)
      tokens.push_back((i * 37 + 11) % int32_t(model.target.vocabSize));

    ReferenceModel whole(model.target, weights);
    ref::Tensor all = whole.forward(tokens).logits;

    ReferenceModel stepwise(model.target, weights);
    stepwise.forward(std::vector<int32_t>(tokens.begin(), tokens.begin() + 5));
    for (size_t i = 5; i < tokens.size(); ++i) {
      ref::Tensor one = stepwise.forward({tokens[i]}).logits;
      int64_t v = model.target.vocabSize;
      for (int64_t j = 0; j < v; ++j)
        ASSERT_NEAR(one.data[size_t(j)], all.data[size_t(int64_t(i) * v + j)],
                    1e-4)
            << "token " << i << " logit " << j;
    }
    // Truncating drops positions: re-running the last token reproduces it.
    stepwise.truncate(int64_t(tokens.size()) - 1);
    ref::Tensor again = stepwise.forward({tokens.back()}).logits;
    EXPECT_EQ(again.data,
              std::vector<float>(all.data.end() - model.target.vocabSize,
                                 all.data.end()));
  }
}

TEST(ReferenceModel, BadTokenIsNamed) {
  Model model = loadModel("tiny");
  SyntheticWeights weights(model, 1);
  ReferenceModel m(model.target, weights);
  try {
    m.forward({int32_t(model.target.vocabSize)});
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary"),
              std::string::npos);
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// ExactMath.h: the exp every executor shares
//===----------------------------------------------------------------------===//

namespace {
int64_t orderedBits(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i < 0 ? int64_t(INT32_MIN) - i : i; // monotone in f
}
} // namespace

TEST(ExactMath, ExpWithinTwoUlpOfTheCorrectlyRoundedValue) {
  int64_t worst = 0;
  float at = 0;
  // Every 97th float bit pattern of [-87.3, 88.7] (about 20 million).
  for (float x = -87.33f; x < 88.72f;) {
    float want = float(std::exp(double(x)));
    int64_t ulps = std::llabs(orderedBits(xm::exp(x)) - orderedBits(want));
    if (ulps > worst)
      worst = ulps, at = x;
    int32_t bits;
    std::memcpy(&bits, &x, 4);
    bits += x < 0 ? -97 : 97;
    if (x < 0 && bits < int32_t(0x80000000u) + 97)
      bits = 0; // past -0: continue from +0
    std::memcpy(&x, &bits, 4);
  }
  EXPECT_LE(worst, 2) << "at x = " << at;
}

TEST(ExactMath, ExpSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(xm::exp(0.0f), 1.0f); // online softmax: exp(m - m) must be 1
  EXPECT_EQ(xm::exp(-0.0f), 1.0f);
  EXPECT_EQ(xm::exp(-inf), 0.0f);
  EXPECT_EQ(xm::exp(-100.0f), 0.0f);
  EXPECT_EQ(xm::exp(inf), inf);
  EXPECT_EQ(xm::exp(89.0f), inf);
  EXPECT_TRUE(std::isnan(xm::exp(std::nanf(""))));
  EXPECT_NEAR(xm::exp(88.7f) / std::exp(double(88.7f)), 1.0, 3e-7); // n = 128
  EXPECT_EQ(xm::sigmoid(0.0f), 0.5f);
  EXPECT_EQ(xm::sigmoid(-inf), 0.0f);
  EXPECT_EQ(xm::silu(0.0f), 0.0f);
  EXPECT_NEAR(xm::silu(2.0f), 2.0 / (1.0 + std::exp(-2.0)), 1e-6);
}
