//===- WeightList.h - Every weight tensor of a model ---------------*- C++
//-*-===//
//
// The one list of a model's tensors: checkpoint name, logical shape, storage
// format and role. The synthetic checkpoint writer, the synthetic weight source
// and the runtime's weight upload walk it; the graph builder names its
// `tile.weight` sources after it (a unit test keeps the two in step).
//
// Names are the transformers layout. Drafter tensors carry the prefix
// "drafter/" (they live in the drafter's own checkpoint). Experts are listed
// packed
// (`<mlp>.experts.gate_up_proj` [E, 2I, H], gate rows first, and
// `<mlp>.experts.down_proj` [E, H, I]); checkpoints may store them per expert.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Config.h"

#include <cstdint>
#include <string>
#include <vector>

namespace tilec {

enum class WeightRole {
  Embedding,     // [V, H]
  Norm,          // [D] RMSNorm weight
  Linear,        // [out, in]
  RouterGate,    // [E, H]
  RouterBias,    // [E] f32 e_score_correction_bias
  Sinks,         // [heads] attention sink logits
  ExpertsGateUp, // [E, 2I, H]
  ExpertsDown,   // [E, H, I]
};

struct WeightSpec {
  std::string name; // checkpoint tensor name (drafter ones prefixed "drafter/")
  std::vector<int64_t> shape;
  WeightFormat format = WeightFormat::BF16;
  WeightRole role = WeightRole::Linear;

  int64_t numel() const;
  bool isDrafter() const;
};

inline constexpr const char *kDrafterPrefix = "drafter/";

/// Every tensor of the target, then of the drafter (if any), in layer order.
std::vector<WeightSpec> modelWeights(const Model &model);

/// The sink tensor of an attention layer is `attention_sink_bias` in the hub
/// checkpoints and `sinks` inside transformers: both are accepted on load.
std::vector<std::string> weightNameAliases(const std::string &name);

/// Splits "<mlp>.experts.gate_up_proj" (or "...down_proj") into "<mlp>" and
/// "gate_up_proj"; false for any other name.
bool splitExpertName(const std::string &name, std::string &mlp,
                     std::string &which);

/// "[2, 3, 4]": a shape for messages.
std::string shapeText(const std::vector<int64_t> &shape);

} // namespace tilec
