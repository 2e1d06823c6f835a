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
#include "models/core/WeightSource.h"
#include "runtime/engine/Executor.h"

#include <cstdint>
#include <vector>

namespace tilec {

/// Whether the engine computes its dense MLPs unfused (SILU_MUL tasks, from
/// tile-fuse{disable=silu-pair}): gate and up are then stored as bf16 before
/// silu(g) * u, which the reference must round too to give the same bits
/// (ReferenceModel::Options::roundGateUp).
bool storesGateUp(const EngineManifest &manifest);

struct ReferenceCheck {
  std::vector<int32_t> expected; // the reference's greedy tokens
  int64_t matchingPrefix = 0;    // leading tokens equal to the engine's
  int64_t positions = 0;         // logit rows compared
  double maxRelativeError = 0;   // max over rows of ||a - b|| / ||b||
  double maxAbsoluteError = 0;
  bool logitsCompared = false; // false when the engine stores no logits
};

/// Compares `produced` (the executor's greedy tokens after `prompt`) with the
/// reference on `weights`, then replays prompt + expected through the executor
/// with logits and compares them row by row. Resets the executor.
ReferenceCheck checkAgainstReference(Executor &executor, const Model &model,
                                     WeightSource &weights,
                                     const std::vector<int32_t> &prompt,
                                     const std::vector<int32_t> &produced);

/// The drafts of a DFlash engine against the reference drafter's
/// (models/core/Dflash.h) on the same sequence: drafts[i] is the block the
/// engine drafted before decode step i ([last token, drafts...]); `oracle` as
/// in DflashOptions (the reference takes the same blocks from it);
/// `autoregressive`: the engine's drafter mode (EngineManifest's SpecInfo),
/// which the reference drafter then runs in too (its draft logits being the
/// last pass's); `roundGateUp`: the engine's MLPs are unfused (storesGateUp).
struct DraftCheck {
  int64_t steps = 0;  // decode steps compared
  int64_t tokens = 0; // draft tokens compared (B - 1 per step)
  int64_t equal = 0;  // of which the engine's equal the reference's
  int64_t firstDifferentStep = -1;
  /// With the engine's draft logits: draft rows compared, and the largest
  /// ||engine - reference|| / ||reference|| over them.
  int64_t logitRows = 0;
  double maxRelativeError = 0;
};
DraftCheck checkDrafts(const Model &model, WeightSource &weights,
                       const std::vector<int32_t> &prompt, int64_t count,
                       const DflashStats &engine,
                       const std::vector<int32_t> *oracle = nullptr,
                       bool autoregressive = false, bool roundGateUp = false);

} // namespace tilec
