//===- Dflash.h - The DFlash drafter and speculative loop on the CPU -*- C++
//-*-===//
//
// The reference for DFlash block-diffusion drafting (MODELS.md "DFlash
// speculative decoding"): the drafter's context features (the target's hidden
// states after the tapped layers, the last layer's being the final norm's
// output as in transformers' hidden_states, through fc and hidden_norm,
// projected into every drafter layer's keys and values and cached), the draft
// of a block [t_s, MASK x (B-1)] attending to that context and to itself, and
// the greedy verify / accept / commit / crop loop, whose output equals plain
// greedy decoding of the target.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Reference.h"

#include <memory>
#include <vector>

namespace tilec {
namespace ref {

struct BlockAttentionParams {
  double scale = 1.0, valueScale = 1.0;
  int64_t window = 0; // 0: no window
  bool causal = false;
  const std::vector<float> *sinks = nullptr;
};

/// The drafter's attention: queries of the block at positions start + i attend
/// to the cached context (positions 0 .. context.length() - 1) and to the
/// block's own keys (positions start + j), where a key at position j is visible
/// from position p when (causal: j <= p) and (window W: p - j < W and, when not
/// causal, j - p < W). Returns [B, heads, vDim].
Tensor blockAttention(const Tensor &q, int64_t start, const KVCache &context,
                      const Tensor &blockKeys, const Tensor &blockValues,
                      const BlockAttentionParams &params);

} // namespace ref

/// The DFlash drafter (no embedding or lm_head of its own: the target's).
class ReferenceDrafter {
public:
  /// `roundActivations`: round what an engine stores as bf16 (the context
  /// features, q/k/v, attention outputs, the residual stream, SiLU*mul) as
  /// ReferenceModel::Options::roundActivations does, so that an engine's
  /// drafts can be compared to rounding error; `roundGateUp` (with it) also
  /// the MLPs' gate and up projections, as ReferenceModel::Options does.
  ReferenceDrafter(const DrafterConfig &drafter, const TargetConfig &target,
                   WeightSource &weights, bool roundActivations = false,
                   bool roundGateUp = false);

  /// Appends the context features of `n` committed positions starting at
  /// contextLength(): `taps` is [n, taps * hidden], the target's hidden states
  /// after each target_layer_id (in that order) at those positions.
  void appendContext(const ref::Tensor &taps);
  int64_t contextLength() const;
  void truncateContext(int64_t length);

  /// Drafts the block [lastToken, MASK x (B-1)] at positions start .. start+B-1
  /// (start == contextLength()): logits [B, vocab] (slots 1 .. B-1 are the
  /// draft).
  ref::Tensor draft(int32_t lastToken, int64_t start, int64_t blockSize);
  /// The drafter over any block of tokens at start .. start+B-1 (the
  /// autoregressive mode's passes: [lastToken, d_1 .. d_(k-1), MASK...]).
  ref::Tensor draft(const std::vector<int32_t> &block, int64_t start);
  /// The autoregressive drafter mode (tilec --ar-drafter): B-1 passes over
  /// the block, pass k filling slot k with its argmax there, every earlier
  /// slot filled already. Returns the block [lastToken, d_1 .. d_(B-1)];
  /// `lastPass` (if given) gets the last pass's logits [B, vocab].
  /// `follow` (if given, a block [lastToken, f_1 .. f_(B-1)], e.g. the one an
  /// engine drafted): pass k's earlier slots are f_1 .. f_(k-1) instead of
  /// the drafter's own tokens, so that every pass sees what the engine's
  /// pass saw; the block returned still holds each pass's argmax. `chosen`
  /// (if given) gets [B, vocab] whose row k is pass k's logits at slot k,
  /// those whose argmax is d_k (row 0: the first pass's).
  std::vector<int32_t>
  draftAutoregressive(int32_t lastToken, int64_t start, int64_t blockSize,
                      ref::Tensor *lastPass = nullptr,
                      const std::vector<int32_t> *follow = nullptr,
                      ref::Tensor *chosen = nullptr);

private:
  const std::vector<float> &weight(const std::string &name,
                                   const std::vector<int64_t> &shape);
  DrafterConfig d_;
  TargetConfig t_;
  bool round_, roundGateUp_;
  ref::WeightCache cache_;
  std::vector<ref::KVCache> context_;
};

/// Greedy speculative decoding with DFlash on the reference models.
class DflashReference {
public:
  /// `roundActivations`: both models round at an engine's bf16 points;
  /// `autoregressive`: the drafter drafts one token per pass
  /// (ReferenceDrafter::draftAutoregressive) instead of the whole block in one;
  /// `roundGateUp`: both round the MLPs' gate and up projections too (an
  /// engine with unfused MLPs, ReferenceModel::Options::roundGateUp).
  DflashReference(const Model &model, WeightSource &weights,
                  bool roundActivations = false, bool autoregressive = false,
                  bool roundGateUp = false);

  struct Stats {
    std::vector<int64_t> accepted; // tokens committed per verify step (1 .. B)
    std::vector<std::vector<int32_t>>
        blocks; // what the target verified per step
    /// [B-1, vocab] per step (drafter in use): the logits of slots 1 .. B-1
    /// (autoregressive: of its last pass, whose argmax gave the last slot).
    std::vector<ref::Tensor> draftLogits;
    /// The drafter's tokens d_1 .. d_(B-1) per step (drafter in use; before an
    /// oracle replaced them).
    std::vector<std::vector<int32_t>> drafts;
    /// Autoregressive drafter only, [B-1, vocab] per step: row k-1 holds pass
    /// k's logits at slot k, those whose argmax is d_k (the block drafter's
    /// are draftLogits).
    std::vector<ref::Tensor> choiceLogits;
    double meanAccepted() const;
  };
  /// Prefill with `prompt`, then decode `count` tokens with blocks of
  /// `blockSize` (0: the drafter's). With `oracle` (a greedy continuation of
  /// the prompt, at least `count` long) the drafts are taken from it instead of
  /// the drafter: every block is accepted whole, which exercises commit and
  /// crop.
  std::vector<int32_t> generate(const std::vector<int32_t> &prompt,
                                int64_t count, int64_t blockSize = 0,
                                Stats *stats = nullptr,
                                const std::vector<int32_t> *oracle = nullptr);

  /// An engine's decode, step by step, for replay(): the prefill's token,
  /// and per decode step the tokens it committed (the accepted drafts, then
  /// the target's bonus token: 1 .. B of them) and, optionally, the block it
  /// drafted ([last token, d_1 .. d_(B-1)]: the autoregressive drafter's
  /// passes take their earlier slots from it).
  struct Followed {
    int32_t first = -1;
    std::vector<std::vector<int32_t>> committed;
    std::vector<std::vector<int32_t>> blocks;
  };
  /// The forced mode: after a prefill with `prompt`, one step per
  /// engine.committed entry, the drafter drafting from the context of the
  /// engine's committed tokens (those of the earlier steps' accepted drafts
  /// and bonuses, whatever the reference's target or drafter would have
  /// chosen) at the engine's positions, with blocks of `blockSize` (0: the
  /// drafter's). Fills stats' drafts, draftLogits (and choiceLogits),
  /// accepted (the engine's) and blocks (the tokens each step commits to the
  /// caches: [last token, accepted drafts]). An engine whose tokens sit at a
  /// logit near-tie where the reference's own greedy loop goes the other way
  /// stays comparable step for step (tile-run --check's draft check).
  void replay(const std::vector<int32_t> &prompt, const Followed &engine,
              int64_t blockSize, Stats &stats);

  /// The target's routing near-ties (ReferenceModel::setRouterTies), e.g. the
  /// resolutions ReferenceCheck found for an engine's sequence.
  void setRouterTies(ref::RouterTies *ties) { ties_ = ties; }

private:
  ref::Tensor taps(const ReferenceModel::Output &out, int64_t rows) const;
  /// One step's draft (B > 1) after `last` at `start`: d_1 .. d_(B-1), the
  /// autoregressive passes following `follow` (draftAutoregressive); recorded
  /// in `stats` if given.
  std::vector<int32_t> draftStep(ReferenceDrafter &drafter, int32_t last,
                                 int64_t start, int64_t B,
                                 const std::vector<int32_t> *follow,
                                 Stats *stats) const;
  int64_t blockSizeOf(int64_t blockSize) const;
  /// The target reference's options: this reference's rounding.
  ReferenceModel::Options targetOptions() const;
  const Model &model_;
  WeightSource &weights_;
  bool round_, autoregressive_, roundGateUp_;
  ref::RouterTies *ties_ = nullptr;
};

} // namespace tilec
