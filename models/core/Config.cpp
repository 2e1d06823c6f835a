//===- Config.cpp - Config accessors, validation and model loading --------===//
//
// validate() holds the architecture rules every later stage relies on; its
// messages name the config.json field at fault in both spellings where they
// differ. loadModel() resolves preset names first, then directories.
//
//===----------------------------------------------------------------------===//
#include "models/core/Config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

namespace tilec {

const char *attentionKindName(AttentionKind kind) {
  return kind == AttentionKind::Full ? "full_attention" : "sliding_attention";
}

const char *mlpKindName(MlpKind kind) {
  return kind == MlpKind::Dense ? "dense" : "sparse";
}

const char *weightFormatName(WeightFormat format) {
  switch (format) {
  case WeightFormat::BF16:
    return "bf16";
  case WeightFormat::FP8Block:
    return "fp8_block";
  case WeightFormat::MXFP4:
    return "mxfp4";
  }
  return "?";
}

std::optional<WeightFormat> parseWeightFormat(const std::string &name) {
  for (WeightFormat f :
       {WeightFormat::BF16, WeightFormat::FP8Block, WeightFormat::MXFP4})
    if (name == weightFormatName(f))
      return f;
  return std::nullopt;
}

bool QuantPlan::allBF16() const { return *this == QuantPlan(); }

const AttentionSpec &TargetConfig::attention(int64_t layer) const {
  if (layer < 0 || layer >= int64_t(layerTypes.size()))
    fail("{}: layer {} is out of range (the model has {} layers)",
         name.empty() ? "config" : name, layer, layerTypes.size());
  return layerTypes[layer] == AttentionKind::Full ? full : sliding;
}

bool TargetConfig::hasLayerOfKind(AttentionKind kind) const {
  for (AttentionKind k : layerTypes)
    if (k == kind)
      return true;
  return false;
}

bool TargetConfig::hasLayerOfKind(MlpKind kind) const {
  for (MlpKind k : mlpTypes)
    if (k == kind)
      return true;
  return false;
}

bool DrafterConfig::hasLayerOfKind(AttentionKind kind) const {
  for (AttentionKind k : layerTypes)
    if (k == kind)
      return true;
  return false;
}

bool operator==(const AttentionSpec &a, const AttentionSpec &b) {
  return std::tie(a.numHeads, a.numKvHeads, a.headDim, a.vHeadDim, a.rotaryDim,
                  a.partialRotaryFactor, a.ropeTheta, a.hasSinks, a.window) ==
         std::tie(b.numHeads, b.numKvHeads, b.headDim, b.vHeadDim, b.rotaryDim,
                  b.partialRotaryFactor, b.ropeTheta, b.hasSinks, b.window);
}

bool operator==(const QuantPlan &a, const QuantPlan &b) {
  return std::tie(a.attention, a.attentionOut, a.denseMlp, a.experts,
                  a.lmHead) ==
         std::tie(b.attention, b.attentionOut, b.denseMlp, b.experts, b.lmHead);
}

// `name` is a label, not part of the architecture.
bool operator==(const TargetConfig &a, const TargetConfig &b) {
  return std::tie(a.vocabSize, a.hiddenSize, a.intermediateSize, a.numLayers,
                  a.layerTypes, a.mlpTypes, a.full, a.sliding,
                  a.attentionValueScale, a.rmsNormEps, a.numExperts, a.topK,
                  a.moeIntermediateSize, a.nGroup, a.topkGroup, a.normTopkProb,
                  a.routedScalingFactor, a.maxPositionEmbeddings, a.bosTokenId,
                  a.eosTokenIds, a.tieWordEmbeddings, a.quant) ==
         std::tie(b.vocabSize, b.hiddenSize, b.intermediateSize, b.numLayers,
                  b.layerTypes, b.mlpTypes, b.full, b.sliding,
                  b.attentionValueScale, b.rmsNormEps, b.numExperts, b.topK,
                  b.moeIntermediateSize, b.nGroup, b.topkGroup, b.normTopkProb,
                  b.routedScalingFactor, b.maxPositionEmbeddings, b.bosTokenId,
                  b.eosTokenIds, b.tieWordEmbeddings, b.quant);
}

bool operator==(const DrafterConfig &a, const DrafterConfig &b) {
  return std::tie(a.hiddenSize, a.numLayers, a.numHeads, a.numKvHeads,
                  a.headDim, a.intermediateSize, a.rmsNormEps, a.ropeTheta,
                  a.layerTypes, a.slidingWindow, a.causal, a.targetLayerIds,
                  a.blockSize, a.maskTokenId, a.inputEmbeddingScale,
                  a.outputMultiplier, a.finalLogitSoftcapping, a.rotaryDim,
                  a.partialRotaryFactor, a.attentionValueScale, a.hasSinks,
                  a.quant) ==
         std::tie(b.hiddenSize, b.numLayers, b.numHeads, b.numKvHeads,
                  b.headDim, b.intermediateSize, b.rmsNormEps, b.ropeTheta,
                  b.layerTypes, b.slidingWindow, b.causal, b.targetLayerIds,
                  b.blockSize, b.maskTokenId, b.inputEmbeddingScale,
                  b.outputMultiplier, b.finalLogitSoftcapping, b.rotaryDim,
                  b.partialRotaryFactor, b.attentionValueScale, b.hasSinks,
                  b.quant);
}

//===--- Validation
//--------------------------------------------------------===//

namespace {

/// Field names as a message shows them, with the other spelling where the two
/// differ.
struct AttentionFields {
  const char *heads, *kvHeads, *headDim, *vHeadDim, *theta, *factor, *window;
};

const AttentionFields kFullFields = {
    "\"num_attention_heads\"",
    "\"num_key_value_heads\"",
    "\"head_dim\"",
    "\"v_head_dim\"",
    "\"rope_theta\" (or \"rope_parameters.full_attention.rope_theta\")",
    "\"partial_rotary_factor\" (or "
    "\"rope_parameters.full_attention.partial_rotary_factor\")",
    "\"sliding_window\""};

const AttentionFields kSlidingFields = {
    "\"swa_num_attention_heads\" (or \"num_attention_heads\")",
    "\"swa_num_key_value_heads\" (or 2 x \"num_key_value_heads\")",
    "\"swa_head_dim\" (or \"head_dim\")",
    "\"swa_v_head_dim\" (or \"v_head_dim\")",
    "\"swa_rope_theta\" (or \"rope_parameters.sliding_attention.rope_theta\")",
    "\"partial_rotary_factor\" (or "
    "\"rope_parameters.sliding_attention.partial_rotary_factor\")",
    "\"sliding_window\" (or \"sliding_window_size\")"};

const AttentionFields kDrafterFields = {
    "\"num_attention_heads\"",
    "\"num_key_value_heads\"",
    "\"head_dim\"",
    "\"head_dim\"",
    "\"rope_parameters.rope_theta\" (or \"rope_theta\")",
    "\"rope_parameters.partial_rotary_factor\" (or \"partial_rotary_factor\")",
    "\"sliding_window\" (or \"dflash_config.swa_window_size\")"};

class Checker {
public:
  explicit Checker(const std::string &where) : where_(where) {}

  /// `field` comes quoted (see AttentionFields).
  void range(const char *field, int64_t v, int64_t lo, int64_t hi) const {
    if (v < lo || v > hi)
      fail("{}: field {} ({}) is out of range, expected {}..{}", where_, field,
           v, lo, hi);
  }
  void positive(const char *field, double v) const {
    if (!std::isfinite(v) || v <= 0)
      fail("{}: field {} ({}) must be a positive number", where_, field, v);
  }
  void finite(const char *field, double v) const {
    if (!std::isfinite(v))
      fail("{}: field {} ({}) must be a finite number", where_, field, v);
  }
  void divisible(const char *field, int64_t v, const char *byField,
                 int64_t by) const {
    if (v % by != 0)
      fail("{}: field {} ({}) is not divisible by {} ({})", where_, field, v,
           byField, by);
  }
  /// Heads, dims and RoPE of one attention kind.
  void attention(const AttentionFields &names, int64_t heads, int64_t kvHeads,
                 int64_t headDim, int64_t vHeadDim, int64_t rotaryDim,
                 double factor, double theta) const {
    range(names.heads, heads, 1, kMaxConfigHeads);
    range(names.kvHeads, kvHeads, 1, kMaxConfigHeads);
    divisible(names.heads, heads, names.kvHeads, kvHeads);
    range(names.headDim, headDim, 1, kMaxConfigDim);
    range(names.vHeadDim, vHeadDim, 1, kMaxConfigDim);
    if (!std::isfinite(factor) || factor <= 0 || factor > 1)
      fail("{}: field {} ({}) is out of range, expected a number in (0, 1]",
           where_, names.factor, factor);
    // transformers truncates like this; RoPE rotates pairs of dims.
    int64_t dims = static_cast<int64_t>(static_cast<double>(headDim) * factor);
    if (dims < 2 || dims % 2 != 0)
      fail("{}: int({} ({}) x {} ({})) = {} rotary dims; expected an even "
           "number >= 2 (RoPE rotates pairs of dims)",
           where_, names.headDim, headDim, names.factor, factor, dims);
    if (rotaryDim != dims)
      fail("{}: rotary dims ({}) differ from int({} x {}) = {}", where_,
           rotaryDim, names.headDim, names.factor, dims);
    positive(names.theta, theta);
  }
  void mxfp4Input(const char *weights, const char *field, int64_t v) const {
    if (v % 32 != 0)
      fail("{}: field \"quantization_config\" stores {} as MXFP4, which needs "
           "their input dim {} ({}) divisible by 32",
           where_, weights, field, v);
  }

private:
  const std::string &where_;
};

void checkTokenId(const std::string &where, const char *field, int64_t id,
                  int64_t vocab) {
  if (id < 0 || id >= vocab)
    fail("{}: field \"{}\" ({}) is out of range, expected 0..{} (vocab_size "
         "{})",
         where, field, id, vocab - 1, vocab);
}

} // namespace

void validate(const TargetConfig &c, const std::string &where) {
  Checker ck(where);
  ck.range("\"vocab_size\"", c.vocabSize, 1, kMaxConfigVocab);
  ck.range("\"hidden_size\"", c.hiddenSize, 1, kMaxConfigDim);
  ck.range("\"num_hidden_layers\"", c.numLayers, 1, kMaxConfigLayers);
  if (int64_t(c.layerTypes.size()) != c.numLayers)
    fail("{}: field \"layer_types\" (or \"hybrid_layer_pattern\") has {} "
         "entries, expected num_hidden_layers = {}",
         where, c.layerTypes.size(), c.numLayers);
  if (int64_t(c.mlpTypes.size()) != c.numLayers)
    fail("{}: field \"mlp_layer_types\" (or \"moe_layer_freq\") has {} "
         "entries, expected num_hidden_layers = {}",
         where, c.mlpTypes.size(), c.numLayers);

  if (c.full.window != 0)
    fail("{}: full attention layers have a window ({}); only sliding layers "
         "do",
         where, c.full.window);
  for (AttentionKind kind : {AttentionKind::Full, AttentionKind::Sliding}) {
    if (!c.hasLayerOfKind(kind))
      continue;
    bool sliding = kind == AttentionKind::Sliding;
    const AttentionSpec &s = sliding ? c.sliding : c.full;
    const AttentionFields &names = sliding ? kSlidingFields : kFullFields;
    ck.attention(names, s.numHeads, s.numKvHeads, s.headDim, s.vHeadDim,
                 s.rotaryDim, s.partialRotaryFactor, s.ropeTheta);
    if (sliding)
      ck.range(names.window, s.window, 1, kMaxConfigPositions);
  }
  ck.positive("\"rms_norm_eps\" (or \"layernorm_epsilon\")", c.rmsNormEps);
  ck.positive("\"attention_value_scale\"", c.attentionValueScale);
  ck.range("\"max_position_embeddings\"", c.maxPositionEmbeddings, 1,
           kMaxConfigPositions);

  bool dense = c.hasLayerOfKind(MlpKind::Dense);
  bool sparse = c.hasLayerOfKind(MlpKind::Sparse);
  if (dense)
    ck.range("\"intermediate_size\"", c.intermediateSize, 1, kMaxConfigDim);
  if (sparse) {
    ck.range("\"n_routed_experts\"", c.numExperts, 1, kMaxConfigExperts);
    if (c.topK > c.numExperts)
      fail(
          "{}: field \"num_experts_per_tok\" ({}) exceeds \"n_routed_experts\" "
          "({})",
          where, c.topK, c.numExperts);
    ck.range("\"num_experts_per_tok\"", c.topK, 1, c.numExperts);
    ck.range("\"moe_intermediate_size\"", c.moeIntermediateSize, 1,
             kMaxConfigDim);
    ck.range("\"n_group\"", c.nGroup, 1, c.numExperts);
    ck.divisible("\"n_routed_experts\"", c.numExperts, "\"n_group\"", c.nGroup);
    int64_t perGroup = c.numExperts / c.nGroup;
    // transformers scores a group by the sum of its two best experts.
    if (perGroup < 2)
      fail("{}: fields \"n_routed_experts\" ({}) and \"n_group\" ({}) leave {} "
           "expert per group; the router scores a group by its two best "
           "experts, so each group needs at least 2",
           where, c.numExperts, c.nGroup, perGroup);
    if (c.topkGroup > c.nGroup)
      fail("{}: field \"topk_group\" ({}) exceeds \"n_group\" ({})", where,
           c.topkGroup, c.nGroup);
    ck.range("\"topk_group\"", c.topkGroup, 1, c.nGroup);
    if (c.topK > c.topkGroup * perGroup)
      fail("{}: field \"num_experts_per_tok\" ({}) exceeds the experts of the "
           "\"topk_group\" ({}) groups kept ({} x {} = {})",
           where, c.topK, c.topkGroup, c.topkGroup, perGroup,
           c.topkGroup * perGroup);
    ck.positive("\"routed_scaling_factor\"", c.routedScalingFactor);
  }

  if (c.bosTokenId != -1)
    checkTokenId(where, "bos_token_id", c.bosTokenId, c.vocabSize);
  for (int64_t eos : c.eosTokenIds)
    checkTokenId(where, "eos_token_id", eos, c.vocabSize);

  const QuantPlan &q = c.quant;
  if (q.attention == WeightFormat::MXFP4)
    ck.mxfp4Input("q/k/v_proj", "\"hidden_size\"", c.hiddenSize);
  if (q.attentionOut == WeightFormat::MXFP4) {
    if (c.hasLayerOfKind(AttentionKind::Full))
      ck.mxfp4Input("o_proj", "num_attention_heads x v_head_dim",
                    c.full.numHeads * c.full.vHeadDim);
    if (c.hasLayerOfKind(AttentionKind::Sliding))
      ck.mxfp4Input("o_proj", "swa_num_attention_heads x swa_v_head_dim",
                    c.sliding.numHeads * c.sliding.vHeadDim);
  }
  if (q.denseMlp == WeightFormat::MXFP4 && dense) {
    ck.mxfp4Input("the dense MLP", "\"hidden_size\"", c.hiddenSize);
    ck.mxfp4Input("the dense MLP", "\"intermediate_size\"", c.intermediateSize);
  }
  if (q.experts == WeightFormat::MXFP4 && sparse) {
    ck.mxfp4Input("the experts", "\"hidden_size\"", c.hiddenSize);
    ck.mxfp4Input("the experts", "\"moe_intermediate_size\"",
                  c.moeIntermediateSize);
  }
  if (q.lmHead == WeightFormat::MXFP4)
    ck.mxfp4Input("lm_head", "\"hidden_size\"", c.hiddenSize);
  if (c.tieWordEmbeddings && q.lmHead != WeightFormat::BF16)
    fail(
        "{}: field \"tie_word_embeddings\" is true but \"quantization_config\" "
        "stores lm_head as {}; a tied lm_head is the BF16 embedding",
        where, weightFormatName(q.lmHead));
}

void validate(const DrafterConfig &d, const TargetConfig &target,
              const std::string &where) {
  Checker ck(where);
  ck.range("\"num_hidden_layers\"", d.numLayers, 1, kMaxConfigLayers);
  if (d.hiddenSize != target.hiddenSize)
    fail("{}: field \"hidden_size\" ({}) differs from the target's hidden_size "
         "({}); the drafter reads the target's embeddings and feeds its "
         "lm_head",
         where, d.hiddenSize, target.hiddenSize);
  if (int64_t(d.layerTypes.size()) != d.numLayers)
    fail("{}: field \"layer_types\" has {} entries, expected "
         "num_hidden_layers = {}",
         where, d.layerTypes.size(), d.numLayers);
  if (int64_t(d.causal.size()) != d.numLayers)
    fail("{}: {} per-layer causality flags for {} layers", where,
         d.causal.size(), d.numLayers);
  ck.attention(kDrafterFields, d.numHeads, d.numKvHeads, d.headDim, d.headDim,
               d.rotaryDim, d.partialRotaryFactor, d.ropeTheta);
  ck.range("\"intermediate_size\"", d.intermediateSize, 1, kMaxConfigDim);
  ck.positive("\"rms_norm_eps\"", d.rmsNormEps);
  if (d.hasLayerOfKind(AttentionKind::Sliding))
    ck.range(kDrafterFields.window, d.slidingWindow, 1, kMaxConfigPositions);
  else if (d.slidingWindow != 0)
    fail("{}: a sliding window ({}) but no sliding_attention layer", where,
         d.slidingWindow);

  if (d.targetLayerIds.empty())
    fail("{}: field \"dflash_config.target_layer_ids\" is empty", where);
  if (int64_t(d.targetLayerIds.size()) > kMaxConfigLayers)
    fail("{}: field \"dflash_config.target_layer_ids\" has {} entries, "
         "expected at most {}",
         where, d.targetLayerIds.size(), kMaxConfigLayers);
  for (size_t i = 0; i < d.targetLayerIds.size(); ++i)
    if (d.targetLayerIds[i] < 0 || d.targetLayerIds[i] >= target.numLayers)
      fail("{}: field \"dflash_config.target_layer_ids\" entry {} ({}) is out "
           "of range, expected 0..{} (the target has {} layers)",
           where, i, d.targetLayerIds[i], target.numLayers - 1,
           target.numLayers);
  ck.range("\"dflash_config.block_size\"", d.blockSize, 1, kMaxDraftBlock);
  if (d.maskTokenId < 0 || d.maskTokenId >= target.vocabSize)
    fail("{}: field \"dflash_config.mask_token_id\" ({}) is out of range, "
         "expected 0..{} (the target's vocab_size is {})",
         where, d.maskTokenId, target.vocabSize - 1, target.vocabSize);
  ck.finite("\"dflash_config.input_embedding_scale\"", d.inputEmbeddingScale);
  ck.finite("\"dflash_config.output_multiplier\"", d.outputMultiplier);
  if (!std::isfinite(d.finalLogitSoftcapping) || d.finalLogitSoftcapping < 0)
    fail("{}: field \"dflash_config.final_logit_softcapping\" ({}) must be a "
         "number >= 0 (0 or null: none)",
         where, d.finalLogitSoftcapping);
  ck.positive("\"dflash_config.attention_value_scale\"", d.attentionValueScale);

  if (d.quant.attention == WeightFormat::MXFP4)
    ck.mxfp4Input("q/k/v_proj", "\"hidden_size\"", d.hiddenSize);
  if (d.quant.attentionOut == WeightFormat::MXFP4)
    ck.mxfp4Input("o_proj", "num_attention_heads x head_dim",
                  d.numHeads * d.headDim);
  if (d.quant.denseMlp == WeightFormat::MXFP4) {
    ck.mxfp4Input("the MLP", "\"hidden_size\"", d.hiddenSize);
    ck.mxfp4Input("the MLP", "\"intermediate_size\"", d.intermediateSize);
  }
}

//===--- Loading
//-----------------------------------------------------------===//

nlohmann::json readJsonFile(const std::string &path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail("{}: no such file", path);
  auto size = fs::file_size(path, ec);
  // A config is a few KiB; a huge file is not one.
  constexpr uintmax_t kMaxBytes = uintmax_t(16) << 20;
  if (ec || size > kMaxBytes)
    fail("{}: {} (a config file must be at most 16 MiB)", path,
         ec ? ec.message() : fmt::format("{} bytes", size));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail("{}: cannot open for reading", path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    fail("{}: read error", path);
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception &e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

namespace {

namespace fs = std::filesystem;

void loadDrafter(Model &m, const fs::path &dir) {
  fs::path path = dir / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail("{}: missing (a drafter directory needs config.json)", path.string());
  m.drafter =
      parseDrafterConfig(readJsonFile(path.string()), m.target, path.string());
  validate(*m.drafter, m.target, path.string());
  m.drafterDir = dir.string();
}

std::string joinedPresetNames() {
  std::string out;
  for (const std::string &name : presetNames())
    out += (out.empty() ? "" : ", ") + name;
  return out;
}

Model loadModelImpl(const std::string &spec,
                    const std::optional<std::string> &drafterDir) {
  if (std::optional<Model> preset = findPreset(spec)) {
    if (drafterDir) {
      preset->drafter.reset();
      if (!drafterDir->empty())
        loadDrafter(*preset, *drafterDir);
    }
    return *preset;
  }
  std::error_code ec;
  fs::path dir(spec);
  if (spec.empty() || !fs::is_directory(dir, ec))
    fail("model \"{}\": no preset of that name ({}) and no such directory",
         spec, joinedPresetNames());
  fs::path configPath = dir / "config.json";
  if (!fs::is_regular_file(configPath, ec))
    fail("{}: missing (a model directory needs config.json)",
         configPath.string());
  Model m;
  m.dir = spec;
  m.target =
      parseTargetConfig(readJsonFile(configPath.string()), configPath.string());
  m.target.name = spec;
  validate(m.target, configPath.string());

  if (drafterDir) {
    if (!drafterDir->empty())
      loadDrafter(m, *drafterDir);
    return m;
  }
  std::vector<fs::path> found;
  for (const char *sub : {"drafter", "dflash"})
    if (fs::is_regular_file(dir / sub / "config.json", ec))
      found.push_back(dir / sub);
  if (found.size() > 1)
    fail("{}: both {} and {} hold a drafter config.json; pass the drafter "
         "directory explicitly",
         spec, found[0].string(), found[1].string());
  if (!found.empty())
    loadDrafter(m, found[0]);
  return m;
}

template <typename Load> Expected<Model> catchAll(Load load) {
  try {
    return load();
  } catch (const std::exception &e) {
    return Expected<Model>::failure(e.what());
  } catch (...) {
    return Expected<Model>::failure("loading the model failed (unknown error)");
  }
}

} // namespace

Model loadModel(const std::string &presetNameOrDir) {
  return loadModelImpl(presetNameOrDir, std::nullopt);
}

Model loadModel(const std::string &presetNameOrDir,
                const std::string &drafterDir) {
  return loadModelImpl(presetNameOrDir, drafterDir);
}

Expected<Model> loadModelNoThrow(const std::string &presetNameOrDir) {
  return catchAll([&] { return loadModel(presetNameOrDir); });
}

Expected<Model> loadModelNoThrow(const std::string &presetNameOrDir,
                                 const std::string &drafterDir) {
  return catchAll([&] { return loadModel(presetNameOrDir, drafterDir); });
}

} // namespace tilec
