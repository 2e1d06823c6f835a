//===- Reference.cpp - The CPU reference model ----------------------------===//
//
// Clarity over speed: straightforward loops in fp32 (accumulating in fp32, as
// the GPU does), mirroring transformers' MiMoV2Flash modules op by op.
//
//===----------------------------------------------------------------------===//
#include "models/core/Reference.h"

#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "runtime/abi/ExactMath.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace tilec {
namespace ref {

const std::vector<float> &WeightCache::get(const std::string &name,
                                           const std::vector<int64_t> &shape) {
  auto it = loaded_.find(name);
  if (it == loaded_.end())
    it = loaded_.emplace(name, source_.load(name, shape)).first;
  return it->second;
}

Tensor::Tensor(std::vector<int64_t> s) : shape(std::move(s)) {
  data.assign(size_t(numel()), 0.0f);
}

Tensor::Tensor(std::vector<int64_t> s, std::vector<float> d)
    : shape(std::move(s)), data(std::move(d)) {
  if (int64_t(data.size()) != numel())
    fail("reference tensor: {} values for shape [{}]", data.size(),
         fmt::join(shape, ", "));
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

Tensor rmsNorm(const Tensor &x, const std::vector<float> &w, double eps) {
  int64_t d = x.shape.back(), rows = x.numel() / d;
  if (int64_t(w.size()) != d)
    fail("rms_norm: weight has {} values for a last dim of {}", w.size(), d);
  Tensor y(x.shape);
  for (int64_t r = 0; r < rows; ++r) {
    const float *in = x.row(r);
    float *out = y.row(r);
    float sum = 0;
    for (int64_t i = 0; i < d; ++i)
      sum += in[i] * in[i];
    float inv = 1.0f / std::sqrt(sum / float(d) + float(eps));
    for (int64_t i = 0; i < d; ++i)
      out[i] = w[size_t(i)] * (in[i] * inv);
  }
  return y;
}

Tensor linear(const Tensor &x, const std::vector<float> &w, int64_t n) {
  int64_t t = x.dim(0), k = x.dim(1);
  if (int64_t(w.size()) != n * k)
    fail("linear: weight has {} values, expected {} x {}", w.size(), n, k);
  Tensor y({t, n});
  // Rows of the weight in parallel; each output keeps one sequential sum.
  parallelFor(n, t * k, [&](int64_t j0, int64_t j1) {
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = j0; j < j1; ++j) {
        const float *a = x.row(i), *b = w.data() + j * k;
        float sum = 0;
        for (int64_t c = 0; c < k; ++c)
          sum += a[c] * b[c];
        y.row(i)[j] = sum;
      }
  });
  return y;
}

Tensor rope(const Tensor &x, const std::vector<int64_t> &positions,
            int64_t rotaryDim, double theta) {
  int64_t t = x.dim(0), heads = x.dim(1), d = x.dim(2), half = rotaryDim / 2;
  // inv_freq in f32 as transformers computes it: 1 / theta^(2i / rotaryDim).
  std::vector<float> invFreq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    invFreq[size_t(i)] =
        1.0f / std::pow(float(theta), float(2 * i) / float(rotaryDim));
  Tensor y = x;
  for (int64_t i = 0; i < t; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      const float *in = x.data.data() + (i * heads + h) * d;
      float *out = y.data.data() + (i * heads + h) * d;
      for (int64_t f = 0; f < half; ++f) {
        float angle = float(positions[size_t(i)]) * invFreq[size_t(f)];
        float c = std::cos(angle), s = std::sin(angle);
        float x1 = in[f], x2 = in[f + half];
        // [x1, x2] * cos + [-x2, x1] * sin
        out[f] = x1 * c - x2 * s;
        out[f + half] = x2 * c + x1 * s;
      }
    }
  return y;
}

Tensor siluMul(const Tensor &gate, const Tensor &up) {
  Tensor y(gate.shape);
  for (int64_t i = 0; i < gate.numel(); ++i) {
    float g = gate.data[size_t(i)];
    y.data[size_t(i)] = xm::silu(g) * up.data[size_t(i)];
  }
  return y;
}

Tensor add(const Tensor &a, const Tensor &b) {
  Tensor y = a;
  for (int64_t i = 0; i < a.numel(); ++i)
    y.data[size_t(i)] += b.data[size_t(i)];
  return y;
}

int64_t KVCache::length() const {
  return kvHeads ? int64_t(keys.size()) / (kvHeads * qkDim) : 0;
}

void KVCache::append(const Tensor &k, const Tensor &v) {
  keys.insert(keys.end(), k.data.begin(), k.data.end());
  values.insert(values.end(), v.data.begin(), v.data.end());
}

void KVCache::truncate(int64_t length) {
  keys.resize(size_t(length * kvHeads * qkDim));
  values.resize(size_t(length * kvHeads * vDim));
}

Tensor attention(const Tensor &q, const std::vector<int64_t> &positions,
                 const KVCache &cache, const AttentionParams &params) {
  int64_t t = q.dim(0), heads = q.dim(1), d = q.dim(2);
  int64_t group = heads / cache.kvHeads, dv = cache.vDim;
  Tensor out({t, heads, dv});
  std::vector<float> scores;
  for (int64_t i = 0; i < t; ++i) {
    int64_t p = positions[size_t(i)];
    if (p >= cache.length())
      fail("attention: query at position {} but the cache holds only {}", p,
           cache.length());
    int64_t first =
        params.window > 0 ? std::max<int64_t>(0, p - params.window + 1) : 0;
    for (int64_t h = 0; h < heads; ++h) {
      int64_t kvh = h / group;
      const float *qv = q.data.data() + (i * heads + h) * d;
      scores.clear();
      float maxScore = -std::numeric_limits<float>::infinity();
      for (int64_t j = first; j <= p; ++j) {
        const float *kv = cache.keys.data() + (j * cache.kvHeads + kvh) * d;
        float s = 0;
        for (int64_t c = 0; c < d; ++c)
          s += qv[c] * kv[c];
        s *= float(params.scale);
        scores.push_back(s);
        maxScore = std::max(maxScore, s);
      }
      float sink = params.sinks ? (*params.sinks)[size_t(h)] : 0.0f;
      if (params.sinks)
        maxScore = std::max(maxScore, sink);
      float denom = params.sinks ? xm::exp(sink - maxScore) : 0.0f;
      for (float &s : scores) {
        s = xm::exp(s - maxScore);
        denom += s;
      }
      float *o = out.data.data() + (i * heads + h) * dv;
      for (int64_t j = first; j <= p; ++j) {
        float w = scores[size_t(j - first)] / denom * float(params.valueScale);
        const float *vv = cache.values.data() + (j * cache.kvHeads + kvh) * dv;
        for (int64_t c = 0; c < dv; ++c)
          o[c] += w * vv[c];
      }
    }
  }
  return out;
}

bool RouterTies::flips(int64_t layer, int64_t position, bool group) const {
  for (const Tie &t : flip)
    if (t.layer == layer && t.position == position && t.group == group)
      return true;
  return false;
}

Routing router(const Tensor &x, const std::vector<float> &gate,
               const std::vector<float> &bias, const RouterParams &params,
               RouterTies *ties, int64_t layer,
               const std::vector<int64_t> *positions) {
  int64_t t = x.dim(0), experts = params.numExperts;
  Tensor logits = linear(x, gate, experts);
  Routing r;
  r.topK = params.topK;
  int64_t perGroup = experts / params.nGroup;
  for (int64_t i = 0; i < t; ++i) {
    std::vector<float> score(static_cast<size_t>(experts)),
        choice(static_cast<size_t>(experts));
    for (int64_t e = 0; e < experts; ++e) {
      score[size_t(e)] = xm::sigmoid(logits.row(i)[e]);
      choice[size_t(e)] =
          score[size_t(e)] + (bias.empty() ? 0.0f : bias[size_t(e)]);
    }
    if (params.nGroup > 1) {
      // A group scores the sum of its two best choices; keep topkGroup groups.
      std::vector<std::pair<float, int64_t>> groups;
      for (int64_t g = 0; g < params.nGroup; ++g) {
        std::vector<float> members(choice.begin() + g * perGroup,
                                   choice.begin() + (g + 1) * perGroup);
        std::partial_sort(members.begin(),
                          members.begin() + std::min<int64_t>(2, perGroup),
                          members.end(), std::greater<float>());
        float sum = members[0] + (perGroup > 1 ? members[1] : 0.0f);
        groups.push_back({sum, g});
      }
      std::stable_sort(groups.begin(), groups.end(),
                       [](auto &a, auto &b) { return a.first > b.first; });
      const size_t last = size_t(params.topkGroup - 1);
      if (ties && ties->epsilon > 0 && params.topkGroup < params.nGroup) {
        float gap = groups[last].first - groups[last + 1].first;
        if (gap < ties->epsilon) {
          const int64_t pos = positions ? (*positions)[size_t(i)] : i;
          ties->seen.push_back({layer, pos, true, gap});
          if (ties->flips(layer, pos, true))
            std::swap(groups[last], groups[last + 1]);
        }
      }
      std::vector<bool> keep(size_t(params.nGroup), false);
      for (int64_t g = 0; g < params.topkGroup; ++g)
        keep[size_t(groups[size_t(g)].second)] = true;
      for (int64_t e = 0; e < experts; ++e)
        if (!keep[size_t(e / perGroup)])
          choice[size_t(e)] = -std::numeric_limits<float>::infinity();
    }
    std::vector<int64_t> order(static_cast<size_t>(experts));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return choice[size_t(a)] > choice[size_t(b)];
    });
    if (ties && ties->epsilon > 0 && params.topK < experts) {
      const size_t k = size_t(params.topK);
      float gap = choice[size_t(order[k - 1])] - choice[size_t(order[k])];
      // Only between two candidates (a dropped group's experts are -inf).
      if (std::isfinite(gap) && gap < ties->epsilon) {
        const int64_t pos = positions ? (*positions)[size_t(i)] : i;
        ties->seen.push_back({layer, pos, false, gap});
        if (ties->flips(layer, pos, false))
          std::swap(order[k - 1], order[k]);
      }
    }
    float sum = 0;
    for (int64_t k = 0; k < params.topK; ++k)
      sum += score[size_t(order[size_t(k)])];
    for (int64_t k = 0; k < params.topK; ++k) {
      int64_t e = order[size_t(k)];
      float w = score[size_t(e)];
      if (params.renorm)
        w /= sum + 1e-20f;
      r.experts.push_back(int32_t(e));
      r.weights.push_back(w * float(params.scaling));
    }
  }
  return r;
}

void roundToBf16(Tensor &x) {
  for (float &v : x.data)
    v = bf16ToF32(f32ToBf16(v));
}

Tensor moe(const Tensor &x, const Routing &routing, ExpertWeights &experts,
           int64_t intermediate, bool roundActivation) {
  int64_t t = x.dim(0), h = x.dim(1), i2 = 2 * intermediate;
  Tensor y({t, h});
  for (int64_t i = 0; i < t; ++i) {
    Tensor token({1, h}, std::vector<float>(x.row(i), x.row(i) + h));
    for (int64_t k = 0; k < routing.topK; ++k) {
      int64_t e = routing.experts[size_t(i * routing.topK + k)];
      float w = routing.weights[size_t(i * routing.topK + k)];
      Tensor gu = linear(token, experts.gateUp(e), i2);
      Tensor gate(
          {1, intermediate},
          std::vector<float>(gu.data.begin(), gu.data.begin() + intermediate));
      Tensor up(
          {1, intermediate},
          std::vector<float>(gu.data.begin() + intermediate, gu.data.end()));
      Tensor act = siluMul(gate, up);
      if (roundActivation)
        roundToBf16(act);
      Tensor down = linear(act, experts.down(e), h);
      for (int64_t c = 0; c < h; ++c)
        y.row(i)[c] += w * down.data[size_t(c)];
    }
  }
  return y;
}

std::vector<int32_t> argmax(const Tensor &logits) {
  int64_t rows = logits.dim(0), n = logits.dim(1);
  std::vector<int32_t> out;
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = logits.row(r);
    out.push_back(int32_t(std::max_element(row, row + n) - row));
  }
  return out;
}

} // namespace ref

using ref::Tensor;

/// One MoE layer's experts, loaded on first use.
class ReferenceModel::LayerExperts : public ref::ExpertWeights {
public:
  LayerExperts(WeightSource &source, std::string prefix, int64_t experts,
               int64_t hidden, int64_t intermediate, bool cache)
      : source(source), prefix(std::move(prefix)), numExperts(experts),
        hidden(hidden), intermediate(intermediate), cache(cache),
        gateUps(size_t(experts)), downs(size_t(experts)) {}
  const std::vector<float> &gateUp(int64_t e) override {
    return get(gateUps, e, "gate_up_proj",
               {numExperts, 2 * intermediate, hidden});
  }
  const std::vector<float> &down(int64_t e) override {
    return get(downs, e, "down_proj", {numExperts, hidden, intermediate});
  }

private:
  const std::vector<float> &get(std::vector<std::vector<float>> &store,
                                int64_t e, const char *which,
                                std::vector<int64_t> shape) {
    if (e < 0 || e >= numExperts)
      fail("{}experts: expert {} out of range", prefix, e);
    std::vector<float> &slot = store[size_t(e)];
    if (slot.empty() || !cache)
      slot = source.loadExpert(prefix + "experts." + which, shape, e);
    return slot;
  }
  WeightSource &source;
  std::string prefix;
  int64_t numExperts, hidden, intermediate;
  bool cache;
  std::vector<std::vector<float>> gateUps, downs;
};

ReferenceModel::ReferenceModel(const TargetConfig &config,
                               WeightSource &weights)
    : ReferenceModel(config, weights, Options()) {}

ReferenceModel::ReferenceModel(const TargetConfig &config,
                               WeightSource &weights, Options options)
    : config_(config), weights_(weights), options_(options), cache_(weights) {
  validate(config_);
  for (int64_t i = 0; i < config_.numLayers; ++i) {
    const AttentionSpec &s = config_.attention(i);
    ref::KVCache cache;
    cache.kvHeads = s.numKvHeads;
    cache.qkDim = s.headDim;
    cache.vDim = s.vHeadDim;
    kv_.push_back(std::move(cache));
    experts_.push_back(
        config_.mlpTypes[size_t(i)] == MlpKind::Sparse
            ? std::make_unique<LayerExperts>(
                  weights_, "model.layers." + std::to_string(i) + ".mlp.",
                  config_.numExperts, config_.hiddenSize,
                  config_.moeIntermediateSize, options_.cacheExperts)
            : nullptr);
  }
}

ReferenceModel::~ReferenceModel() = default;

const std::vector<float> &
ReferenceModel::weight(const std::string &name,
                       const std::vector<int64_t> &shape) {
  return cache_.get(name, shape);
}

int64_t ReferenceModel::length() const {
  return kv_.empty() ? 0 : kv_[0].length();
}

void ReferenceModel::truncate(int64_t length) {
  if (length < 0 || length > this->length())
    fail("reference model: cannot truncate {} cached positions to {}",
         this->length(), length);
  for (ref::KVCache &cache : kv_)
    cache.truncate(length);
}

Tensor ReferenceModel::layer(int64_t i, const Tensor &x,
                             const std::vector<int64_t> &positions) {
  const TargetConfig &c = config_;
  const AttentionSpec &s = c.attention(i);
  std::string p = "model.layers." + std::to_string(i) + ".";
  std::string a = p + "self_attn.";
  int64_t t = x.dim(0), h = c.hiddenSize;

  Tensor normed =
      ref::rmsNorm(x, weight(p + "input_layernorm.weight", {h}), c.rmsNormEps);
  auto project = [&](const char *name, int64_t heads, int64_t dim) {
    Tensor y = ref::linear(
        normed, weight(a + name + ".weight", {heads * dim, h}), heads * dim);
    y.shape = {t, heads, dim};
    return y;
  };
  Tensor q = project("q_proj", s.numHeads, s.headDim);
  Tensor k = project("k_proj", s.numKvHeads, s.headDim);
  Tensor v = project("v_proj", s.numKvHeads, s.vHeadDim);
  if (s.rotaryDim > 0) {
    q = ref::rope(q, positions, s.rotaryDim, s.ropeTheta);
    k = ref::rope(k, positions, s.rotaryDim, s.ropeTheta);
  }
  bool round = options_.roundActivations;
  if (round) {
    ref::roundToBf16(q);
    ref::roundToBf16(k);
    ref::roundToBf16(v);
  }
  kv_[size_t(i)].append(k, v);
  ref::AttentionParams params;
  params.scale = 1.0 / std::sqrt(double(s.headDim));
  params.valueScale = c.attentionValueScale;
  params.window = s.window;
  if (s.hasSinks)
    params.sinks = &weight(a + "attention_sink_bias", {s.numHeads});
  Tensor attn = ref::attention(q, positions, kv_[size_t(i)], params);
  if (round)
    ref::roundToBf16(attn);
  attn.shape = {t, s.numHeads * s.vHeadDim};
  Tensor o = ref::linear(
      attn, weight(a + "o_proj.weight", {h, s.numHeads * s.vHeadDim}), h);
  Tensor x1 = ref::add(x, o);
  if (round)
    ref::roundToBf16(x1);

  Tensor n2 = ref::rmsNorm(
      x1, weight(p + "post_attention_layernorm.weight", {h}), c.rmsNormEps);
  std::string m = p + "mlp.";
  Tensor y;
  if (c.mlpTypes[size_t(i)] == MlpKind::Dense) {
    int64_t inter = c.intermediateSize;
    Tensor g =
        ref::linear(n2, weight(m + "gate_proj.weight", {inter, h}), inter);
    Tensor u = ref::linear(n2, weight(m + "up_proj.weight", {inter, h}), inter);
    if (round && options_.roundGateUp) {
      ref::roundToBf16(g);
      ref::roundToBf16(u);
    }
    Tensor act = ref::siluMul(g, u);
    if (round)
      ref::roundToBf16(act);
    y = ref::linear(act, weight(m + "down_proj.weight", {h, inter}), h);
  } else {
    ref::RouterParams rp{c.numExperts, c.topK,         c.nGroup,
                         c.topkGroup,  c.normTopkProb, c.routedScalingFactor};
    ref::Routing routing =
        ref::router(n2, weight(m + "gate.weight", {c.numExperts, h}),
                    weight(m + "gate.e_score_correction_bias", {c.numExperts}),
                    rp, ties_, i, &positions);
    y = ref::moe(n2, routing, *experts_[size_t(i)], c.moeIntermediateSize,
                 round);
  }
  Tensor out = ref::add(x1, y);
  if (round)
    ref::roundToBf16(out);
  return out;
}

Tensor ReferenceModel::forwardLayers(Tensor x, int64_t first, int64_t last) {
  std::vector<int64_t> positions(static_cast<size_t>(x.dim(0)));
  std::iota(positions.begin(), positions.end(), kv_[size_t(first)].length());
  for (int64_t i = first; i < last; ++i)
    x = layer(i, x, positions);
  return x;
}

ReferenceModel::Output
ReferenceModel::forward(const std::vector<int32_t> &tokens, bool keepHidden) {
  const TargetConfig &c = config_;
  int64_t t = int64_t(tokens.size()), h = c.hiddenSize;
  if (t == 0)
    fail("reference model: forward needs at least one token");
  const std::vector<float> &embed =
      weight("model.embed_tokens.weight", {c.vocabSize, h});
  Tensor x({t, h});
  for (int64_t i = 0; i < t; ++i) {
    int32_t id = tokens[size_t(i)];
    if (id < 0 || id >= c.vocabSize)
      fail("reference model: token id {} is outside the vocabulary [0, {})", id,
           c.vocabSize);
    std::copy_n(embed.data() + int64_t(id) * h, h, x.row(i));
  }
  // The embedding output is stored bf16: a no-op for a bf16 table (scale 1).
  if (options_.roundActivations)
    ref::roundToBf16(x);
  std::vector<int64_t> positions(static_cast<size_t>(t));
  std::iota(positions.begin(), positions.end(), length());
  Output out;
  for (int64_t i = 0; i < c.numLayers; ++i) {
    x = layer(i, x, positions);
    if (keepHidden)
      out.hidden.push_back(x);
  }
  Tensor normed =
      ref::rmsNorm(x, weight("model.norm.weight", {h}), c.rmsNormEps);
  if (keepHidden)
    out.normed = normed;
  out.logits = ref::linear(normed, weight("lm_head.weight", {c.vocabSize, h}),
                           c.vocabSize);
  return out;
}

std::vector<int32_t>
ReferenceModel::generateGreedy(const std::vector<int32_t> &prompt,
                               int64_t count) {
  std::vector<int32_t> out;
  std::vector<int32_t> next = prompt;
  for (int64_t n = 0; n < count; ++n) {
    Output o = forward(next);
    int32_t token = ref::argmax(o.logits).back();
    out.push_back(token);
    next = {token};
  }
  return out;
}

} // namespace tilec
