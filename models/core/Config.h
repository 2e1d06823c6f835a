//===- Config.h - Target and drafter configs, presets, loading --*- C++ -*-===//
//
// The architecture of a MiMo-V2 target (model_type "mimo_v2_flash") and of its
// DFlash drafter, as every later stage (graph builder, CPU reference model,
// runtime) sees it. Configs come from a preset (Presets.cpp) or a directory
// with a Hugging Face config.json, in either of two spellings:
//
//  * transformers 5.17 (`MiMoV2FlashConfig`): layer_types, mlp_layer_types,
//    rope_parameters per layer type, rms_norm_eps; sliding layers implicitly
//    have 2 x num_key_value_heads and learned sinks.
//  * the hub checkpoint's remote code: hybrid_layer_pattern (0 full, 1
//  sliding),
//    moe_layer_freq (0 dense, 1 sparse), swa_num_attention_heads,
//    swa_num_key_value_heads, swa_head_dim, swa_v_head_dim, rope_theta,
//    swa_rope_theta, partial_rotary_factor, sliding_window_size,
//    layernorm_epsilon, add_{swa,full}_attention_sink_bias.
//
// Precedence where both spellings are present:
//  * one quantity spelt twice (layer_types / hybrid_layer_pattern,
//  mlp_layer_types
//    / moe_layer_freq, rms_norm_eps / layernorm_epsilon, sliding_window /
//    sliding_window_size): both must agree, else an error naming both fields;
//  * rope_parameters, when present, is authoritative (as in transformers); the
//    hub's rope_theta / swa_rope_theta / partial_rotary_factor are read only
//    when it is absent;
//  * explicit hub fields for the sliding layers (swa_num_key_value_heads, ...)
//    win over transformers' implicit rules (2 x kv heads, sinks on sliding
//    layers).
// Absent fields take transformers' MiMoV2FlashConfig defaults.
//
// Drafters follow the DFlash reference (z-lab/dflash) on top of transformers'
// Qwen3Config: a key in `dflash_config` wins over the same key at the top
// level; sliding layers come from layer_types (or layers >= max_window_layers)
// and get a window only with use_sliding_window; they are causal unless a
// global is_causal says otherwise. MiMo's published drafter instead says
// dflash_config.use_swa / swa_window_size without layer_types: all layers
// sliding, bidirectional (the reference reads such layers as full attention).
//
// Quantization (`quantization_config`) becomes a QuantPlan, one format per kind
// of weight:
//  * {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128],
//     "activation_scheme": "dynamic", "ignored_layers" |
//     "modules_to_not_convert":
//     [...], "store_dtype": "mxfp4"?}: the hub FP8 checkpoints. Every linear
//     weight
//    but lm_head is FP8Block unless the ignore list names it in every layer
//    where it exists (naming it in some layers only is an error);
//    "store_dtype": "mxfp4" stores the routed experts as MXFP4.
//  * {"quant_method": "mxfp4", "modules_to_not_convert": [...]}: experts MXFP4,
//    the rest BF16.
//  * tilec's own: {"quant_method": "tilec", "attention": F, "attention_out": F,
//    "dense_mlp": F, "experts": F, "lm_head": F} with F one of "bf16",
//    "fp8_block", "mxfp4" (absent keys are "bf16"). toHfJson writes this one.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Error.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tilec {

enum class AttentionKind { Full, Sliding };
enum class MlpKind { Dense, Sparse };
/// How a linear weight is stored. FP8Block: E4M3 with one f32 scale per 128x128
/// block. MXFP4: E2M1 pairs with one E8M0 scale per 32 inputs.
enum class WeightFormat { BF16, FP8Block, MXFP4 };

/// "full_attention" / "sliding_attention" (transformers' layer_types spelling).
const char *attentionKindName(AttentionKind kind);
/// "dense" / "sparse" (transformers' mlp_layer_types spelling).
const char *mlpKindName(MlpKind kind);
/// "bf16" / "fp8_block" / "mxfp4" (tilec's quantization_config spelling).
const char *weightFormatName(WeightFormat format);
std::optional<WeightFormat> parseWeightFormat(const std::string &name);

/// Sanity limits validate() enforces, so that products of sizes fit in int64_t
/// and no config asks for a giant allocation.
inline constexpr int64_t kMaxConfigLayers = 4096;
inline constexpr int64_t kMaxConfigDim = int64_t(1) << 20; // hidden, head, MLP
inline constexpr int64_t kMaxConfigHeads = int64_t(1) << 14;
inline constexpr int64_t kMaxConfigVocab = int64_t(1) << 24;
inline constexpr int64_t kMaxConfigExperts = int64_t(1) << 16;
inline constexpr int64_t kMaxConfigPositions = int64_t(1) << 32;
/// DFlash blocks: the verify step runs at most this many tokens.
inline constexpr int64_t kMaxDraftBlock = 16;

/// One per layer type.
struct AttentionSpec {
  int64_t numHeads = 0, numKvHeads = 0, headDim = 0, vHeadDim = 0;
  /// rotaryDim = int(headDim * partialRotaryFactor), as transformers computes
  /// it; the factor is kept so that configs round-trip exactly.
  int64_t rotaryDim = 0;
  double partialRotaryFactor = 1.0;
  double ropeTheta = 10000.0;
  /// Learned per-query-head sink logit (sliding layers in MiMo).
  bool hasSinks = false;
  /// 0 for full attention; sliding window W: a query at p sees keys in (p-W,
  /// p].
  int64_t window = 0;
};

struct QuantPlan {
  WeightFormat attention = WeightFormat::BF16;    // q_proj, k_proj, v_proj
  WeightFormat attentionOut = WeightFormat::BF16; // o_proj
  WeightFormat denseMlp = WeightFormat::BF16;     // gate/up/down of dense MLPs
  WeightFormat experts = WeightFormat::BF16;      // routed experts
  WeightFormat lmHead = WeightFormat::BF16;
  bool allBF16() const;
};

struct TargetConfig {
  std::string name; // preset name or directory; not part of operator==
  int64_t vocabSize = 0, hiddenSize = 0, intermediateSize = 0 /*dense MLP*/,
          numLayers = 0;
  std::vector<AttentionKind> layerTypes; // size numLayers
  std::vector<MlpKind> mlpTypes;         // size numLayers
  AttentionSpec full, sliding;
  double attentionValueScale = 1.0; // multiplies V right after v_proj
  double rmsNormEps = 1e-5;
  // MoE: DeepSeek-V3 style sigmoid router with e_score_correction_bias, no
  // shared experts.
  int64_t numExperts = 0, topK = 0, moeIntermediateSize = 0, nGroup = 1,
          topkGroup = 1;
  bool normTopkProb = true;
  double routedScalingFactor = 1.0;
  int64_t maxPositionEmbeddings = 0;
  int64_t bosTokenId = -1; // -1: none
  std::vector<int64_t> eosTokenIds;
  bool tieWordEmbeddings = false;
  QuantPlan quant;

  const AttentionSpec &attention(int64_t layer) const;
  bool hasLayerOfKind(AttentionKind kind) const;
  bool hasLayerOfKind(MlpKind kind) const;
};

/// A DFlash drafter: Qwen3-style layers (q_norm/k_norm, SiLU MLP) with no
/// embedding or lm_head of its own (it uses the target's).
struct DrafterConfig {
  int64_t hiddenSize = 0, numLayers = 0, numHeads = 0, numKvHeads = 0,
          headDim = 0, intermediateSize = 0;
  double rmsNormEps = 1e-6, ropeTheta = 10000.0;
  /// Sliding layers use `slidingWindow` in both directions.
  std::vector<AttentionKind> layerTypes;
  int64_t slidingWindow = 0; // MiMo's drafter: 1024; 0 when no sliding layer
  /// Per layer: causal inside the draft block. The reference makes sliding
  /// layers causal by default and honours a global `is_causal`.
  std::vector<bool> causal;
  /// Taps: the target's hidden state after each of these layers.
  std::vector<int64_t> targetLayerIds;
  int64_t blockSize = 0, maskTokenId = 0;
  double inputEmbeddingScale = 1.0, outputMultiplier = 1.0,
         finalLogitSoftcapping = 0.0; // 0: none
  // MiMo's drafter extensions (the Qwen3 reference has none of them): partial
  // RoPE, V scaled after v_proj, per-head sink logits.
  int64_t rotaryDim = 0; // int(headDim * partialRotaryFactor)
  double partialRotaryFactor = 1.0;
  double attentionValueScale = 1.0;
  bool hasSinks = false;
  QuantPlan quant; // experts and lmHead do not apply

  bool hasLayerOfKind(AttentionKind kind) const;
};

struct Model {
  TargetConfig target;
  std::optional<DrafterConfig> drafter;
  std::string dir;        // "" for presets
  std::string drafterDir; // "" for presets and models without a drafter
};

bool operator==(const AttentionSpec &a, const AttentionSpec &b);
bool operator==(const QuantPlan &a, const QuantPlan &b);
bool operator==(const TargetConfig &a, const TargetConfig &b);
bool operator==(const DrafterConfig &a, const DrafterConfig &b);
inline bool operator!=(const AttentionSpec &a, const AttentionSpec &b) {
  return !(a == b);
}
inline bool operator!=(const QuantPlan &a, const QuantPlan &b) {
  return !(a == b);
}
inline bool operator!=(const TargetConfig &a, const TargetConfig &b) {
  return !(a == b);
}
inline bool operator!=(const DrafterConfig &a, const DrafterConfig &b) {
  return !(a == b);
}

//===--- Parsing and validation (throw tilec::Error) ----------------------===//

/// Reads a MiMo-V2 config.json (either spelling); `where` names the file in
/// messages. Checks types and what building the struct needs; the architecture
/// rules are validate()'s.
TargetConfig parseTargetConfig(const nlohmann::json &json,
                               const std::string &where);
/// Reads a DFlash drafter config.json (Qwen3 config + `dflash_config`, also
/// MiMo's use_swa / swa_window_size / attention_value_scale /
/// attention_sink_bias), with the reference's rule that a key in
/// `dflash_config` wins over the same key at the top level.
DrafterConfig parseDrafterConfig(const nlohmann::json &json,
                                 const TargetConfig &target,
                                 const std::string &where);
/// Reads a `quantization_config` object (see the file comment) for a model
/// whose layers have these MLP kinds (drafters: all Dense).
QuantPlan parseQuantization(const nlohmann::json &quantizationConfig,
                            const std::vector<MlpKind> &mlpTypes,
                            const std::string &where);

void validate(const TargetConfig &config,
              const std::string &where = "config.json");
void validate(const DrafterConfig &drafter, const TargetConfig &target,
              const std::string &where = "drafter config.json");

//===--- Writing
//------------------------------------------------------------===//

struct HfJsonOptions {
  std::string dtype = "bfloat16"; // written as "dtype"
  /// Write `quantization_config` (tilec's scheme) when the plan is not all
  /// BF16. Off for checkpoints that transformers itself must load.
  bool withQuantization = true;
};

/// config.json as transformers 5.17's MiMoV2FlashConfig expects it. Throws for
/// a config transformers cannot express (sliding layers with other than 2 x the
/// full layers' kv heads, different q heads or head dims per type, sinks on
/// full layers or none on sliding ones).
nlohmann::json toHfJson(const TargetConfig &config,
                        const HfJsonOptions &options = {});
/// config.json in the hub checkpoint's spelling (swa_* fields), which expresses
/// every TargetConfig with one partial_rotary_factor for both layer types.
nlohmann::json toHubJson(const TargetConfig &config,
                         const HfJsonOptions &options = {});
/// The drafter's config.json in the DFlash reference format (Qwen3 config with
/// `dflash_config`). Throws for per-layer causality the reference cannot
/// express (anything but its default or one global is_causal).
nlohmann::json toDrafterJson(const DrafterConfig &drafter,
                             const TargetConfig &target,
                             const HfJsonOptions &options = {});
/// toHubJson's text, or "" if the config cannot be written (for callers built
/// without exceptions).
std::string configTextNoThrow(const TargetConfig &config);
/// The drafter's config.json text (toDrafterJson), or "" if it cannot be
/// written.
std::string drafterConfigTextNoThrow(const DrafterConfig &drafter,
                                     const TargetConfig &target);
/// tilec's `quantization_config`; null for an all-BF16 plan.
nlohmann::json toQuantizationJson(const QuantPlan &plan);

//===--- Presets and loading ----------------------------------------------===//

/// Every preset, tiny (CPU-sized) ones first.
std::vector<std::string> presetNames();
/// The model tools use when none is named: "tiny".
std::string defaultPresetName();
std::optional<Model> findPreset(const std::string &name);

/// A preset name, or a directory holding config.json and optionally a drafter
/// in `drafter/config.json` or `dflash/config.json` (both present is an error).
/// Parses and validates both.
Model loadModel(const std::string &presetNameOrDir);
/// As above with the drafter read from `drafterDir`/config.json ("" = none,
/// even if the model directory has a drafter subfolder).
Model loadModel(const std::string &presetNameOrDir,
                const std::string &drafterDir);
/// For callers built without exceptions: every error becomes a message.
Expected<Model> loadModelNoThrow(const std::string &presetNameOrDir);
Expected<Model> loadModelNoThrow(const std::string &presetNameOrDir,
                                 const std::string &drafterDir);

/// Reads and parses a JSON file (at most 16 MiB), errors naming the path.
nlohmann::json readJsonFile(const std::string &path);

} // namespace tilec
