//===- GraphBuilder.h - Model configs to tile graph IR -----------*- C++
//-*-===//
//
// Turns a tilec::Model (target + optional DFlash drafter) into a module of tile
// graph IR: weight and KV-cache declarations plus one function per phase of a
// decoding step.
//
//  * @target(tokens, positions) -> (logits, argmax, taps): the target over a
//    block of T tokens at the given positions, appending their keys/values to
//    the target KV caches (@kv.layerN); `taps` concatenates the hidden states
//    after the drafter's target_layer_ids (absent without a drafter).
//  * @drafter_context(taps, positions): fc + hidden_norm of the taps, projected
//    into every drafter layer's context cache (@ctx.layerN) as keys/values.
//  * @draft(tokens, positions) -> logits: the drafter over the block
//    [t_s, MASK x (B-1)], attending to its context caches and to the block
//    itself, through the target's embedding and lm_head.
//  * @dflash_step() -> committed: one whole DFlash step (verify the block
//    held in the step state @spec.tokens / @spec.positions, append its context
//    features, accept, draft the next block and store it into the state);
//    `committed` = [count, tokens...] is all the host reads. With arDrafter
//    the next block is drafted autoregressively: B-1 drafter passes, each
//    filling one slot (tile.draft_fill).
//
// Weight symbols are named after their checkpoint tensors; `source` is the
// tensor name in the target checkpoint, or `drafter/<name>` in the drafter's.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Config.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>
#include <vector>

namespace tilec {

struct GraphOptions {
  /// Tokens per target step (the verify block); 0 = the drafter's block size,
  /// or 1 for a model without a drafter.
  int64_t tokens = 0;
  /// Positions a full-attention KV cache holds.
  int64_t maxContext = 4096;
  /// Build the drafter's functions (when the model has a drafter).
  bool withDrafter = true;
  /// The functions to build (empty: every one the model has).
  std::vector<std::string> functions;
  /// @dflash_step also returns the drafter's logits [T, V] f32 (checks only:
  /// one more store per step).
  bool draftLogits = false;
  /// @dflash_step drafts autoregressively (tilec --ar-drafter): B-1 drafter
  /// passes, pass k filling slot k (tile.draft_fill), instead of the whole
  /// block in one pass; the baseline for the gain of block drafting.
  bool arDrafter = false;
};

/// The prefix of drafter tensors in a weight's `source`.
inline constexpr const char *kDrafterSourcePrefix = "drafter/";

/// Builds the graph module; on bad options returns null and sets `error`.
mlir::OwningOpRef<mlir::ModuleOp> buildGraph(mlir::MLIRContext &context,
                                             const Model &model,
                                             const GraphOptions &options,
                                             std::string &error);

} // namespace tilec
