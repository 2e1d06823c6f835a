//===- ReferenceCheck.h - An executor against the CPU reference --*- C++
//-*-===//
//
// The correctness ladder's test, runnable from tile-run on any executor: greedy
// tokens of the engine against ReferenceModel (rounding activations to bf16 at
// the engine's points), and the logits of every position of the sequence,
// teacher- forced, against the reference's.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Config.h"
#include "models/core/Reference.h"
#include "models/core/WeightSource.h"
#include "runtime/engine/Executor.h"

#include <cstdint>
#include <vector>

namespace tilec {

struct ReferenceCheckOptions {
  /// A logit row matches when ||engine - reference|| / ||reference|| is at
  /// most this (both round activations to bf16 at the same points; only the
  /// summation order differs, which can move a bf16 rounding point by an ulp
  /// and the logits with it: 1.1-1.2e-2 seen on an H200 with the same
  /// tokens). 1.6e-2 is torch.testing.assert_close's default rtol for
  /// bfloat16 (atol 1e-5): a row every element of which passes assert_close,
  /// |a - b| <= 1.6e-2 |b| + 1e-5, has a relative error of at most 1.6e-2 +
  /// 1e-5 sqrt(V) / ||b|| here, so this is the same bf16 bound, taken over the
  /// row instead of element by element (which near-zero logits, whose error
  /// is the row's rounding error and not their own, would fail).
  double logitTolerance = 1.6e-2;
  /// Routing near-ties (ref::RouterTies): a gap below this in the choice
  /// scores may be resolved the other way where that explains the engine's
  /// logits; 0 turns the search off.
  double tieEpsilon = 2e-3;
  /// Ties resolved together at one position (subsets of the position's ties up
  /// to this size are tried, smallest gaps first).
  int maxFlips = 2;
  /// The reference rounds gate and up to bf16 (an unfused engine's SILU_MUL
  /// input; checkAgainstReference sets it from the manifest).
  bool roundGateUp = false;
};

/// Whether the engine computes its dense MLPs unfused (SILU_MUL tasks, from
/// tile-fuse{disable=silu-pair}): gate and up are then stored as bf16 before
/// silu(g) * u, which the reference must round too to give the same bits
/// (ReferenceModel::Options::roundGateUp).
bool storesGateUp(const EngineManifest &manifest);

struct ReferenceCheck {
  /// Free-running: the reference's own greedy tokens after the prompt, and
  /// how many leading ones equal the engine's.
  std::vector<int32_t> expected;
  int64_t matchingPrefix = 0;
  /// Teacher-forced on the engine's sequence (prompt + its tokens): at each
  /// position the engine's logits against the reference's (after resolving
  /// routing near-ties as the engine's logits show), and each generated token
  /// against the reference's argmax.
  bool logitsCompared = false; // false when the engine stores no logits
  int64_t positions = 0;       // logit rows compared
  double maxRelativeError = 0; // max over rows of ||a - b|| / ||b||
  double maxAbsoluteError = 0;
  int64_t mismatchedRows = 0, firstMismatchedRow = -1; // over the tolerance
  int64_t tokensCompared = 0;
  int64_t tokensAgree = 0;   // the reference's argmax, or a logit near-tie:
  int64_t logitNearTies = 0; // the engine's token within 2x the row's largest
                             // logit difference of the reference's best
  int64_t firstDisagreement = -1; // generated token index
  int64_t tiesSeen = 0;           // routing near-ties met at the chosen rows
  ref::RouterTies resolved;       // epsilon and the ties resolved (flip)
  /// Whether the engine matches: with logits, every row within the tolerance
  /// and every token agreeing; without, the free-running tokens equal.
  bool passed(int64_t produced) const;
};

/// Compares `produced` (the executor's greedy tokens after `prompt`) with the
/// reference on `weights`: the reference's free-running greedy tokens, then,
/// when the engine stores logits, prompt + produced replayed through the
/// executor and the reference position by position (ReferenceCheck). Resets
/// the executor.
ReferenceCheck checkAgainstReference(Executor &executor, const Model &model,
                                     WeightSource &weights,
                                     const std::vector<int32_t> &prompt,
                                     const std::vector<int32_t> &produced,
                                     const ReferenceCheckOptions &options = {});

/// The teacher-forced part on logits already read: engineLogits[p] is the
/// engine's row [V] for position p of `sequence` (prompt + produced minus the
/// last token); `produced` the engine's greedy tokens. Fills the
/// teacher-forced fields of `check`.
void matchTeacherForced(const Model &model, WeightSource &weights,
                        const std::vector<int32_t> &sequence,
                        int64_t promptLength,
                        const std::vector<int32_t> &produced,
                        const std::vector<std::vector<float>> &engineLogits,
                        const ReferenceCheckOptions &options,
                        ReferenceCheck &check);

/// The drafts of a DFlash engine against the reference drafter's
/// (models/core/Dflash.h), the reference following the engine's decode step
/// by step (DflashReference::replay on engine.first and engine.committed):
/// at step i the reference drafter drafts from the context of the tokens the
/// engine committed before it, at the engine's positions, whatever the
/// reference's own greedy loop would have committed there (a token at a logit
/// near-tie, which the target check accepts, would otherwise send the two
/// apart and make every later draft differ). engine.drafts[i] is the block
/// the engine drafted before decode step i ([last token, drafts...]).
/// `autoregressive`: the engine's drafter mode (EngineManifest's SpecInfo),
/// which the reference drafter then runs in too, each pass over the engine's
/// earlier slots (its draft logits being the last pass's); `roundGateUp`: the
/// engine's MLPs are unfused (storesGateUp).
struct DraftCheck {
  int64_t steps = 0;  // decode steps compared
  int64_t tokens = 0; // draft tokens compared (B - 1 per step)
  int64_t equal = 0;  // of which the engine's equal the reference's
  /// Of the others, those at a logit near-tie (as ReferenceCheck's tokens):
  /// with the engine's draft logits, the engine's token is within 2x the
  /// row's largest |engine - reference| logit difference of the reference's
  /// best (autoregressive: the error of the last pass's row, against the
  /// logits of the pass that chose the slot).
  int64_t logitNearTies = 0;
  int64_t agree = 0;               // equal + logitNearTies
  int64_t firstDifferentStep = -1; // the first step with a token that differs
                                   // and is no near-tie
  /// With the engine's draft logits: draft rows compared, and the largest
  /// ||engine - reference|| / ||reference|| over them.
  int64_t logitRows = 0;
  double maxRelativeError = 0;
  /// Every draft token agrees and every draft logit row is within
  /// `logitTolerance` (ReferenceCheckOptions::logitTolerance).
  bool passed(double logitTolerance) const;
};
/// `ties`: the target's routing near-ties resolved as ReferenceCheck found
/// them for the engine (null: the reference's own resolutions).
DraftCheck checkDrafts(const Model &model, WeightSource &weights,
                       const std::vector<int32_t> &prompt,
                       const DflashStats &engine, bool autoregressive = false,
                       bool roundGateUp = false,
                       const ref::RouterTies *ties = nullptr);

} // namespace tilec
