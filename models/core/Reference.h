//===- Reference.h - The CPU reference model ---------------------*- C++
//-*-===//
//
// Plain C++ that runs a MiMo-V2 target in fp32 on dequantized weights, with KV
// caches: the oracle every later stage (host executor, GPU megakernel) is
// compared with. It is written for clarity, not speed: one function per op of
// the tile dialect, each with the semantics the dialect documents.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Config.h"
#include "models/core/WeightSource.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tilec {
namespace ref {

/// A row-major f32 tensor: the reference's only data type.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  Tensor() = default;
  Tensor(std::vector<int64_t> shape);
  Tensor(std::vector<int64_t> shape, std::vector<float> data);
  int64_t numel() const;
  int64_t dim(int i) const { return shape[size_t(i)]; }
  float *row(int64_t r) { return data.data() + r * shape.back(); }
  const float *row(int64_t r) const { return data.data() + r * shape.back(); }
};

//===--- Ops (the tile dialect's graph ops, in fp32)
//------------------------===//

/// x [T, D] (or [T, heads, D]) * rsqrt(mean(x^2) + eps) * w[D].
Tensor rmsNorm(const Tensor &x, const std::vector<float> &w, double eps);
/// x [T, K] times w [N, K] transposed: [T, N].
Tensor linear(const Tensor &x, const std::vector<float> &w, int64_t n);
/// Partial rotate_half RoPE of x [T, heads, D] on its first rotaryDim dims.
Tensor rope(const Tensor &x, const std::vector<int64_t> &positions,
            int64_t rotaryDim, double theta);
/// silu(gate) * up.
Tensor siluMul(const Tensor &gate, const Tensor &up);
Tensor add(const Tensor &a, const Tensor &b);

/// Keys and values of one layer, for positions [0, length).
/// Tensors of a weight source, loaded (as f32) on first use and kept.
class WeightCache {
public:
  explicit WeightCache(WeightSource &source) : source_(source) {}
  const std::vector<float> &get(const std::string &name,
                                const std::vector<int64_t> &shape);

private:
  WeightSource &source_;
  std::map<std::string, std::vector<float>> loaded_;
};

struct KVCache {
  int64_t kvHeads = 0, qkDim = 0, vDim = 0;
  std::vector<float> keys, values; // [length, kvHeads, dim]
  int64_t length() const;
  /// Stores k [T, kvHeads, qkDim] / v [T, kvHeads, vDim] at positions
  /// length() .. length() + T - 1.
  void append(const Tensor &k, const Tensor &v);
  void truncate(int64_t length);
};

struct AttentionParams {
  double scale = 1.0, valueScale = 1.0;
  int64_t window = 0;                        // 0: full attention
  const std::vector<float> *sinks = nullptr; // one logit per query head
};

/// q [T, heads, qkDim] at `positions` over the cache entries at positions
/// <= p (and > p - window): softmax(q.k * scale [, sink]) . (v * valueScale).
/// Returns [T, heads, vDim].
Tensor attention(const Tensor &q, const std::vector<int64_t> &positions,
                 const KVCache &cache, const AttentionParams &params);

struct Routing {
  int64_t topK = 0;
  std::vector<int32_t> experts; // [T, topK]
  std::vector<float> weights;   // [T, topK]
};
struct RouterParams {
  int64_t numExperts = 0, topK = 0, nGroup = 1, topkGroup = 1;
  bool renorm = true;
  double scaling = 1.0;
};
/// Near-ties of routing decisions, and the other way to resolve them: the
/// top-k boundary (the k-th chosen expert against the best one left out) and,
/// with groups, the top-k-group boundary (the last kept group's score against
/// the best dropped one). A tie is a gap below `epsilon` in the choice scores
/// (sigmoid + correction bias; a group: the sum of its two best). Rounding
/// that differs between two correct implementations (another summation order
/// on a GPU) can resolve such a tie the other way; ReferenceCheck uses this to
/// follow an engine through its ties instead of calling them wrong.
struct RouterTies {
  double epsilon = 0; // 0: no ties recorded
  struct Tie {
    int64_t layer = 0, position = 0; // the token's position
    bool group = false;              // the group boundary, else the expert one
    float gap = 0;
  };
  std::vector<Tie> seen; // appended by every router call with epsilon > 0
  /// Ties to resolve the other way: (layer, position, group).
  std::vector<Tie> flip;
  bool flips(int64_t layer, int64_t position, bool group) const;
};

/// Sigmoid router with correction bias (choice only), group-limited top-k.
/// With `ties`: records the near-ties of layer `layer` (row i of x at position
/// positions[i], or i without positions) and swaps the two sides of those
/// listed in ties->flip.
Routing router(const Tensor &x, const std::vector<float> &gate,
               const std::vector<float> &bias, const RouterParams &params,
               RouterTies *ties = nullptr, int64_t layer = 0,
               const std::vector<int64_t> *positions = nullptr);

/// The experts a MoE layer can read: gate_up [E, 2I, H], down [E, H, I].
class ExpertWeights {
public:
  virtual ~ExpertWeights() = default;
  /// Expert e's gate_up [2I, H] and down [H, I].
  virtual const std::vector<float> &gateUp(int64_t e) = 0;
  virtual const std::vector<float> &down(int64_t e) = 0;
};
/// sum over the token's top-k of weight * down(silu(gate x) * up x). With
/// `roundActivation`, silu(gate x) * up x is rounded to bf16 before down (the
/// MoE activation the megakernel stores, docs/engine.md "Numerics").
Tensor moe(const Tensor &x, const Routing &routing, ExpertWeights &experts,
           int64_t intermediate, bool roundActivation = false);

/// Rounds every element to bf16 (nearest even) and back to f32.
void roundToBf16(Tensor &x);

/// Index of the largest element of each row (the first on ties).
std::vector<int32_t> argmax(const Tensor &logits);

} // namespace ref

/// The target model on the CPU.
class ReferenceModel {
public:
  struct Options {
    /// Keep every expert after its first use (false for full-size layers,
    /// whose experts do not fit in memory as f32).
    bool cacheExperts = true;
    /// Round activations to bf16 exactly where the engine stores them
    /// (docs/engine.md "Numerics"): the embedding output, the residual stream
    /// after every residual add, q and k after RoPE, v, the attention output
    /// and the dense and MoE activations silu(g) * u. Router logits, MoE
    /// partial sums and logits stay f32. Off: everything f32.
    bool roundActivations = false;
    /// With roundActivations: also round the dense MLPs' gate and up
    /// projections to bf16 before silu(g) * u. An engine compiled with
    /// tile-fuse{disable=silu-pair} stores them (two linears, then SILU_MUL
    /// tasks); the fused SILU_PAIR epilogue keeps them in f32.
    bool roundGateUp = false;
  };
  ReferenceModel(const TargetConfig &config, WeightSource &weights);
  ReferenceModel(const TargetConfig &config, WeightSource &weights,
                 Options options);
  ~ReferenceModel();

  struct Output {
    ref::Tensor logits;              // [T, vocab]
    std::vector<ref::Tensor> hidden; // after each layer, [T, hidden] (if asked)
    ref::Tensor normed;              // the final norm's output (if asked)
  };
  /// Runs `tokens` at positions length() .. length() + T - 1 and appends their
  /// keys and values to the caches.
  Output forward(const std::vector<int32_t> &tokens, bool keepHidden = false);
  /// Runs only layers [first, last) on hidden states (full-size layer tests).
  ref::Tensor forwardLayers(ref::Tensor x, int64_t first, int64_t last);

  int64_t length() const;
  /// Routing near-ties: recorded into, and flipped from, `ties` (null: off).
  void setRouterTies(ref::RouterTies *ties) { ties_ = ties; }
  /// Drops cached positions >= length (rejected draft tokens).
  void truncate(int64_t length);
  /// Prefill with `prompt`, then `count` greedy tokens.
  std::vector<int32_t> generateGreedy(const std::vector<int32_t> &prompt,
                                      int64_t count);

  const TargetConfig &config() const { return config_; }

private:
  const std::vector<float> &weight(const std::string &name,
                                   const std::vector<int64_t> &shape);
  ref::Tensor layer(int64_t i, const ref::Tensor &x,
                    const std::vector<int64_t> &positions);

  class LayerExperts;
  TargetConfig config_;
  WeightSource &weights_;
  Options options_;
  ref::WeightCache cache_;
  std::vector<ref::KVCache> kv_;
  std::vector<std::unique_ptr<LayerExperts>> experts_;
  ref::RouterTies *ties_ = nullptr;
};

} // namespace tilec
