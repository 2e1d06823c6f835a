//===- Dflash.cpp - The DFlash drafter and speculative loop on the CPU
//-----===//
#include "models/core/Dflash.h"

#include "models/core/Error.h"
#include "runtime/abi/ExactMath.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace tilec {
namespace ref {

Tensor blockAttention(const Tensor &q, int64_t start, const KVCache &context,
                      const Tensor &blockKeys, const Tensor &blockValues,
                      const BlockAttentionParams &params) {
  int64_t b = q.dim(0), heads = q.dim(1), d = q.dim(2);
  int64_t kvHeads = blockKeys.dim(1), dv = blockValues.dim(2);
  int64_t group = heads / kvHeads, ctx = context.length();
  if (ctx != start)
    fail("drafter attention: the context holds {} positions but the block "
         "starts at {}",
         ctx, start);
  auto visible = [&](int64_t p, int64_t j) {
    if (params.causal && j > p)
      return false;
    if (params.window > 0) {
      if (p - j >= params.window)
        return false;
      if (!params.causal && j - p >= params.window)
        return false;
    }
    return true;
  };
  Tensor out({b, heads, dv});
  std::vector<float> scores;
  std::vector<const float *> keys, values;
  for (int64_t i = 0; i < b; ++i) {
    int64_t p = start + i;
    for (int64_t h = 0; h < heads; ++h) {
      int64_t g = h / group;
      const float *qv = q.data.data() + (i * heads + h) * d;
      keys.clear();
      values.clear();
      for (int64_t j = 0; j < ctx + b; ++j) {
        if (!visible(p, j))
          continue;
        if (j < ctx) {
          keys.push_back(context.keys.data() + (j * kvHeads + g) * d);
          values.push_back(context.values.data() + (j * kvHeads + g) * dv);
        } else {
          keys.push_back(blockKeys.data.data() + ((j - ctx) * kvHeads + g) * d);
          values.push_back(blockValues.data.data() +
                           ((j - ctx) * kvHeads + g) * dv);
        }
      }
      scores.assign(keys.size(), 0.0f);
      float maxScore = -std::numeric_limits<float>::infinity();
      for (size_t k = 0; k < keys.size(); ++k) {
        float s = 0;
        for (int64_t c = 0; c < d; ++c)
          s += qv[c] * keys[k][c];
        scores[k] = s * float(params.scale);
        maxScore = std::max(maxScore, scores[k]);
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
      for (size_t k = 0; k < keys.size(); ++k) {
        float w = scores[k] / denom * float(params.valueScale);
        for (int64_t c = 0; c < dv; ++c)
          o[c] += w * values[k][c];
      }
    }
  }
  return out;
}

} // namespace ref

using ref::Tensor;

namespace {
const std::string kPrefix = "drafter/";

Tensor heads(Tensor x, int64_t n, int64_t dim) {
  x.shape = {x.dim(0), n, dim};
  return x;
}
} // namespace

ReferenceDrafter::ReferenceDrafter(const DrafterConfig &drafter,
                                   const TargetConfig &target,
                                   WeightSource &weights, bool roundActivations,
                                   bool roundGateUp)
    : d_(drafter), t_(target), round_(roundActivations),
      roundGateUp_(roundActivations && roundGateUp), cache_(weights) {
  validate(d_, t_);
  context_.resize(size_t(d_.numLayers));
  for (ref::KVCache &c : context_) {
    c.kvHeads = d_.numKvHeads;
    c.qkDim = d_.headDim;
    c.vDim = d_.headDim;
  }
}

const std::vector<float> &
ReferenceDrafter::weight(const std::string &name,
                         const std::vector<int64_t> &shape) {
  return cache_.get(name, shape);
}

int64_t ReferenceDrafter::contextLength() const {
  return context_.empty() ? 0 : context_[0].length();
}

void ReferenceDrafter::truncateContext(int64_t length) {
  if (length < 0 || length > contextLength())
    fail("drafter: cannot truncate a context of {} positions to {}",
         contextLength(), length);
  for (ref::KVCache &c : context_)
    c.truncate(length);
}

void ReferenceDrafter::appendContext(const Tensor &taps) {
  int64_t n = taps.dim(0), H = d_.hiddenSize, D = d_.headDim;
  int64_t width = H * int64_t(d_.targetLayerIds.size());
  if (taps.dim(1) != width)
    fail("drafter: context taps are {} wide, expected {} ({} taps of {})",
         taps.dim(1), width, d_.targetLayerIds.size(), H);
  Tensor c = ref::linear(taps, weight(kPrefix + "fc.weight", {H, width}), H);
  auto round = [&](Tensor &t) {
    if (round_)
      ref::roundToBf16(t);
  };
  round(c);
  c = ref::rmsNorm(c, weight(kPrefix + "hidden_norm.weight", {H}),
                   d_.rmsNormEps);
  std::vector<int64_t> positions(static_cast<size_t>(n));
  std::iota(positions.begin(), positions.end(), contextLength());
  for (int64_t l = 0; l < d_.numLayers; ++l) {
    std::string a = kPrefix + "layers." + std::to_string(l) + ".self_attn.";
    Tensor k = heads(
        ref::linear(c, weight(a + "k_proj.weight", {d_.numKvHeads * D, H}),
                    d_.numKvHeads * D),
        d_.numKvHeads, D);
    k = ref::rmsNorm(k, weight(a + "k_norm.weight", {D}), d_.rmsNormEps);
    if (d_.rotaryDim > 0)
      k = ref::rope(k, positions, d_.rotaryDim, d_.ropeTheta);
    Tensor v = heads(
        ref::linear(c, weight(a + "v_proj.weight", {d_.numKvHeads * D, H}),
                    d_.numKvHeads * D),
        d_.numKvHeads, D);
    round(k);
    round(v);
    context_[size_t(l)].append(k, v);
  }
}

Tensor ReferenceDrafter::draft(int32_t lastToken, int64_t start,
                               int64_t blockSize) {
  std::vector<int32_t> block(size_t(std::max<int64_t>(blockSize, 0)),
                             int32_t(d_.maskTokenId));
  if (!block.empty())
    block[0] = lastToken;
  return draft(block, start);
}

std::vector<int32_t> ReferenceDrafter::draftAutoregressive(
    int32_t lastToken, int64_t start, int64_t blockSize, Tensor *lastPass,
    const std::vector<int32_t> *follow, Tensor *chosen) {
  if (follow && int64_t(follow->size()) != blockSize)
    fail("drafter: a block of {} tokens to follow, {} drafted", follow->size(),
         blockSize);
  std::vector<int32_t> block(size_t(std::max<int64_t>(blockSize, 1)),
                             int32_t(d_.maskTokenId));
  block[0] = lastToken;
  // What the passes see: the drafter's own tokens, or those followed.
  std::vector<int32_t> input = block;
  for (int64_t k = 1; k < blockSize; ++k) {
    Tensor logits = draft(input, start);
    block[size_t(k)] = ref::argmax(logits)[size_t(k)];
    input[size_t(k)] = follow ? (*follow)[size_t(k)] : block[size_t(k)];
    if (chosen) {
      const int64_t V = logits.dim(1);
      if (k == 1) {
        *chosen = Tensor({blockSize, V});
        std::copy_n(logits.row(0), V, chosen->row(0));
      }
      std::copy_n(logits.row(k), V, chosen->row(k));
    }
    if (lastPass && k == blockSize - 1)
      *lastPass = std::move(logits);
  }
  return block;
}

Tensor ReferenceDrafter::draft(const std::vector<int32_t> &block,
                               int64_t start) {
  int64_t B = int64_t(block.size()), H = d_.hiddenSize, D = d_.headDim,
          V = t_.vocabSize;
  if (start != contextLength())
    fail("drafter: a block at {} but the context ends at {}", start,
         contextLength());
  const std::vector<float> &embed =
      weight("model.embed_tokens.weight", {V, t_.hiddenSize});
  Tensor x({B, H});
  for (int64_t i = 0; i < B; ++i) {
    int64_t id = block[size_t(i)];
    if (id < 0 || id >= V)
      fail("drafter: token {} at slot {} is out of range [0, {})", id, i, V);
    for (int64_t c = 0; c < H; ++c)
      x.row(i)[c] = embed[size_t(id * H + c)] * float(d_.inputEmbeddingScale);
  }
  auto round = [&](Tensor &t) {
    if (round_)
      ref::roundToBf16(t);
  };
  round(x);
  std::vector<int64_t> positions(static_cast<size_t>(B));
  std::iota(positions.begin(), positions.end(), start);
  for (int64_t l = 0; l < d_.numLayers; ++l) {
    std::string p = kPrefix + "layers." + std::to_string(l) + ".";
    std::string a = p + "self_attn.";
    Tensor h = ref::rmsNorm(x, weight(p + "input_layernorm.weight", {H}),
                            d_.rmsNormEps);
    auto project = [&](const char *name, int64_t n) {
      return heads(
          ref::linear(h, weight(a + name + ".weight", {n * D, H}), n * D), n,
          D);
    };
    Tensor q = ref::rmsNorm(project("q_proj", d_.numHeads),
                            weight(a + "q_norm.weight", {D}), d_.rmsNormEps);
    Tensor k = ref::rmsNorm(project("k_proj", d_.numKvHeads),
                            weight(a + "k_norm.weight", {D}), d_.rmsNormEps);
    Tensor v = project("v_proj", d_.numKvHeads);
    if (d_.rotaryDim > 0) {
      q = ref::rope(q, positions, d_.rotaryDim, d_.ropeTheta);
      k = ref::rope(k, positions, d_.rotaryDim, d_.ropeTheta);
    }
    round(q);
    round(k);
    round(v);
    ref::BlockAttentionParams params;
    params.scale = 1.0 / std::sqrt(double(D));
    params.valueScale = d_.attentionValueScale;
    params.causal = d_.causal[size_t(l)];
    params.window = d_.layerTypes[size_t(l)] == AttentionKind::Sliding
                        ? d_.slidingWindow
                        : 0;
    if (d_.hasSinks)
      params.sinks = &weight(a + "attention_sink_bias", {d_.numHeads});
    Tensor attn =
        ref::blockAttention(q, start, context_[size_t(l)], k, v, params);
    round(attn);
    attn.shape = {B, d_.numHeads * D};
    x = ref::add(
        x, ref::linear(attn, weight(a + "o_proj.weight", {H, d_.numHeads * D}),
                       H));
    round(x);
    Tensor n2 = ref::rmsNorm(
        x, weight(p + "post_attention_layernorm.weight", {H}), d_.rmsNormEps);
    int64_t I = d_.intermediateSize;
    Tensor g = ref::linear(n2, weight(p + "mlp.gate_proj.weight", {I, H}), I);
    Tensor u = ref::linear(n2, weight(p + "mlp.up_proj.weight", {I, H}), I);
    if (roundGateUp_) {
      ref::roundToBf16(g);
      ref::roundToBf16(u);
    }
    Tensor act = ref::siluMul(g, u);
    round(act);
    x = ref::add(
        x, ref::linear(act, weight(p + "mlp.down_proj.weight", {H, I}), H));
    round(x);
  }
  x = ref::rmsNorm(x, weight(kPrefix + "norm.weight", {H}), d_.rmsNormEps);
  Tensor logits =
      ref::linear(x, weight("lm_head.weight", {V, t_.hiddenSize}), V);
  for (float &z : logits.data) {
    z *= float(d_.outputMultiplier);
    if (d_.finalLogitSoftcapping > 0)
      z = std::tanh(z / float(d_.finalLogitSoftcapping)) *
          float(d_.finalLogitSoftcapping);
  }
  return logits;
}

double DflashReference::Stats::meanAccepted() const {
  if (accepted.empty())
    return 0;
  return double(std::accumulate(accepted.begin(), accepted.end(), int64_t(0))) /
         double(accepted.size());
}

DflashReference::DflashReference(const Model &model, WeightSource &weights,
                                 bool roundActivations, bool autoregressive,
                                 bool roundGateUp)
    : model_(model), weights_(weights), round_(roundActivations),
      autoregressive_(autoregressive), roundGateUp_(roundGateUp) {
  if (!model.drafter)
    fail("{}: DFlash needs a drafter and the model has none",
         model.target.name);
}

Tensor DflashReference::taps(const ReferenceModel::Output &out,
                             int64_t rows) const {
  const std::vector<int64_t> &ids = model_.drafter->targetLayerIds;
  int64_t H = model_.target.hiddenSize, n = int64_t(ids.size());
  Tensor t({rows, n * H});
  // transformers' hidden_states[i + 1] is layer i's output, except after the
  // last layer, where it is the final norm's.
  int64_t last = model_.target.numLayers - 1;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < n; ++k) {
      int64_t id = ids[size_t(k)];
      const ref::Tensor &h = id == last ? out.normed : out.hidden[size_t(id)];
      std::copy_n(h.row(r), H, t.row(r) + k * H);
    }
  if (round_)
    ref::roundToBf16(t); // an engine's concat stores the taps as bf16
  return t;
}

int64_t DflashReference::blockSizeOf(int64_t blockSize) const {
  int64_t B = blockSize > 0 ? blockSize : model_.drafter->blockSize;
  if (B < 1 || B > kMaxDraftBlock)
    fail("DFlash: block size {} is out of range [1, {}]", B, kMaxDraftBlock);
  return B;
}

std::vector<int32_t> DflashReference::draftStep(
    ReferenceDrafter &drafter, int32_t last, int64_t start, int64_t B,
    const std::vector<int32_t> *follow, Stats *stats) const {
  // Block mode: one pass over [last, MASK...]; autoregressive: B-1 passes
  // (the logits kept are the last one's).
  Tensor logits, chosen;
  std::vector<int32_t> draft;
  if (autoregressive_) {
    draft = drafter.draftAutoregressive(last, start, B, &logits, follow,
                                        stats ? &chosen : nullptr);
  } else {
    logits = drafter.draft(last, start, B);
    draft = ref::argmax(logits);
  }
  draft.erase(draft.begin());
  if (stats) {
    // Rows 1 .. B-1: the draft's slots.
    auto slots = [](Tensor t) {
      t.data.erase(t.data.begin(), t.data.begin() + t.dim(1));
      t.shape[0] -= 1;
      return t;
    };
    stats->drafts.push_back(draft);
    stats->draftLogits.push_back(slots(std::move(logits)));
    if (autoregressive_)
      stats->choiceLogits.push_back(slots(std::move(chosen)));
  }
  return draft;
}

ReferenceModel::Options DflashReference::targetOptions() const {
  ReferenceModel::Options options;
  options.roundActivations = round_;
  options.roundGateUp = roundGateUp_;
  return options;
}

std::vector<int32_t>
DflashReference::generate(const std::vector<int32_t> &prompt, int64_t count,
                          int64_t blockSize, Stats *stats,
                          const std::vector<int32_t> *oracle) {
  const DrafterConfig &d = *model_.drafter;
  const int64_t B = blockSizeOf(blockSize);
  if (oracle && int64_t(oracle->size()) < count + B)
    fail("DFlash: the oracle continuation has {} tokens, {} needed",
         oracle->size(), count + B);
  ReferenceModel target(model_.target, weights_, targetOptions());
  target.setRouterTies(ties_);
  ReferenceDrafter drafter(d, model_.target, weights_, round_, roundGateUp_);

  // Prefill: the first token, and every prompt position's context features.
  ReferenceModel::Output out = target.forward(prompt, /*keepHidden=*/true);
  std::vector<int32_t> produced{ref::argmax(out.logits).back()};
  Tensor pending = taps(out, int64_t(prompt.size()));
  int64_t start = int64_t(prompt.size());
  while (int64_t(produced.size()) < count) {
    int32_t last = produced.back();
    std::vector<int32_t> block{last};
    if (B > 1) {
      // The drafter runs in oracle mode too, so that its context cache goes
      // through the same commits; only the block's tokens come from the oracle.
      drafter.appendContext(pending);
      std::vector<int32_t> draft =
          draftStep(drafter, last, start, B, nullptr, stats);
      for (int64_t j = 1; j < B; ++j)
        block.push_back(oracle ? (*oracle)[produced.size() - 1 + size_t(j)]
                               : draft[size_t(j - 1)]);
    }
    // Verify: the target over the block; accept the matching prefix + the
    // bonus.
    ReferenceModel::Output verify = target.forward(block, /*keepHidden=*/true);
    std::vector<int32_t> posterior = ref::argmax(verify.logits);
    int64_t a = 0;
    while (a + 1 < B && block[size_t(a + 1)] == posterior[size_t(a)])
      ++a;
    for (int64_t j = 1; j <= a; ++j)
      produced.push_back(block[size_t(j)]);
    produced.push_back(posterior[size_t(a)]);
    if (stats) {
      stats->accepted.push_back(a + 1);
      stats->blocks.push_back(block);
    }
    // Keep the target's cache up to the accepted tokens (the bonus is not in
    // it).
    start += a + 1;
    target.truncate(start);
    pending = taps(verify, a + 1);
  }
  produced.resize(size_t(count));
  return produced;
}

void DflashReference::replay(const std::vector<int32_t> &prompt,
                             const Followed &engine, int64_t blockSize,
                             Stats &stats) {
  const DrafterConfig &d = *model_.drafter;
  const int64_t B = blockSizeOf(blockSize);
  const int64_t V = model_.target.vocabSize;
  if (prompt.empty())
    fail("DFlash replay: the prompt is empty");
  if (engine.first < 0 || engine.first >= V)
    fail("DFlash replay: the first token {} is out of range [0, {})",
         engine.first, V);
  ReferenceModel target(model_.target, weights_, targetOptions());
  target.setRouterTies(ties_);
  ReferenceDrafter drafter(d, model_.target, weights_, round_, roundGateUp_);

  // Prefill: every prompt position's context features (the engine's chunks
  // of B commit the same positions).
  Tensor pending =
      taps(target.forward(prompt, /*keepHidden=*/true), int64_t(prompt.size()));
  int64_t start = int64_t(prompt.size());
  int32_t last = engine.first;
  const int64_t steps = int64_t(engine.committed.size());
  for (int64_t s = 0; s < steps; ++s) {
    const std::vector<int32_t> &committed = engine.committed[size_t(s)];
    if (committed.empty() || int64_t(committed.size()) > B)
      fail("DFlash replay: step {} committed {} tokens (1 .. {} expected)", s,
           committed.size(), B);
    for (int32_t t : committed)
      if (t < 0 || t >= V)
        fail("DFlash replay: step {} committed token {}, out of range [0, {})",
             s, t, V);
    if (B > 1) {
      drafter.appendContext(pending);
      const std::vector<int32_t> *follow = nullptr;
      std::vector<int32_t> block;
      if (autoregressive_ && s < int64_t(engine.blocks.size())) {
        block = engine.blocks[size_t(s)];
        if (int64_t(block.size()) != B)
          fail("DFlash replay: step {}'s block has {} tokens, {} expected", s,
               block.size(), B);
        block[0] = last;
        follow = &block;
      }
      draftStep(drafter, last, start, B, follow, &stats);
    }
    // What the step commits to the caches: the last token and the accepted
    // drafts (the bonus is the next step's last token). Their context
    // features, as the verify pass over the engine's block gives them (each
    // row sees only the positions before it).
    const int64_t a = int64_t(committed.size()) - 1;
    std::vector<int32_t> kept{last};
    kept.insert(kept.end(), committed.begin(), committed.end() - 1);
    stats.accepted.push_back(a + 1);
    stats.blocks.push_back(kept);
    last = committed.back();
    start += a + 1;
    if (s + 1 < steps) // the last step's features are never drafted from
      pending = taps(target.forward(kept, /*keepHidden=*/true), a + 1);
  }
}

} // namespace tilec
