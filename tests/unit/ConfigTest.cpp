//===- ConfigTest.cpp - Model configs, validation, presets and loading ----===//
#include "models/core/Config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <unistd.h>

using namespace tilec;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

/// Runs `body`, expects a tilec::Error whose message contains every needle.
void expectError(const std::function<void()> &body,
                 std::initializer_list<const char *> needles) {
  try {
    body();
  } catch (const Error &e) {
    std::string msg = e.what();
    for (const char *needle : needles)
      EXPECT_NE(msg.find(needle), std::string::npos)
          << "message lacks \"" << needle << "\": " << msg;
    return;
  }
  ADD_FAILURE() << "no tilec::Error thrown";
}

TargetConfig preset(const char *name) {
  std::optional<Model> m = findPreset(name);
  EXPECT_TRUE(m.has_value()) << name;
  return m ? m->target : TargetConfig();
}

TargetConfig parseAndValidate(const json &j) {
  TargetConfig c = parseTargetConfig(j, "config.json");
  validate(c, "config.json");
  return c;
}

/// The tiny preset as transformers writes it, for tests to break one field of.
json tinyHf() { return toHfJson(preset("tiny")); }

/// Expects parse + validate of `j` to fail naming `needles`.
void expectTargetError(const json &j,
                       std::initializer_list<const char *> needles) {
  expectError([&] { parseAndValidate(j); }, needles);
}

DrafterConfig parseDrafterAndValidate(const json &j,
                                      const TargetConfig &target) {
  DrafterConfig d = parseDrafterConfig(j, target, "drafter/config.json");
  validate(d, target, "drafter/config.json");
  return d;
}

void expectDrafterError(const json &j,
                        std::initializer_list<const char *> needles) {
  TargetConfig target = preset("tiny");
  expectError([&] { parseDrafterAndValidate(j, target); }, needles);
}

json tinyDrafterJson() {
  Model m = *findPreset("tiny");
  return toDrafterJson(*m.drafter, m.target);
}

/// A fresh empty directory under the system temp dir, removed at scope end.
class TempDir {
public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("tilec-config-test-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path &path() const { return path_; }
  void write(const fs::path &rel, const std::string &text) const {
    fs::create_directories((path_ / rel).parent_path());
    std::ofstream(path_ / rel) << text;
  }

private:
  fs::path path_;
};

} // namespace

//===--- Presets
//-----------------------------------------------------------===//

TEST(ConfigPresets, EveryPresetValidatesWithItsDrafter) {
  std::vector<std::string> names = presetNames();
  ASSERT_GE(names.size(), 6u);
  EXPECT_EQ(names.front(), defaultPresetName());
  for (const std::string &name : names) {
    SCOPED_TRACE(name);
    std::optional<Model> m = findPreset(name);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->target.name, name);
    EXPECT_EQ(m->dir, "");
    EXPECT_NO_THROW(validate(m->target, name));
    ASSERT_TRUE(m->drafter.has_value());
    EXPECT_NO_THROW(validate(*m->drafter, m->target, name));
    Model loaded = loadModel(name);
    EXPECT_EQ(loaded.target, m->target);
    EXPECT_EQ(loaded.drafter, m->drafter);
  }
  EXPECT_FALSE(findPreset("no-such-model").has_value());
}

// pro-tp8: one GPU's share of Pro under 8-way tensor parallelism; everything
// not divided stays Pro's.
TEST(ConfigPresets, ProTp8IsAnEighthOfPro) {
  Model pro = *findPreset("mimo-v2.5-pro"), tp = *findPreset("pro-tp8");
  const TargetConfig &p = pro.target, &t = tp.target;
  EXPECT_EQ(t.numLayers, 70);
  EXPECT_EQ(t.layerTypes, p.layerTypes);
  EXPECT_EQ(t.mlpTypes, p.mlpTypes);
  EXPECT_EQ(t.hiddenSize, 6144);
  EXPECT_EQ(t.vocabSize * 8, p.vocabSize);
  EXPECT_EQ(t.intermediateSize * 8, p.intermediateSize);
  EXPECT_EQ(t.moeIntermediateSize * 8, p.moeIntermediateSize);
  EXPECT_EQ(t.numExperts, 384);
  EXPECT_EQ(t.topK, 8);
  for (const auto *a : {&t.full, &t.sliding}) {
    EXPECT_EQ(a->numHeads, 16);
    EXPECT_EQ(a->numKvHeads, 1);
    EXPECT_EQ(a->headDim, 192);
    EXPECT_EQ(a->vHeadDim, 128);
  }
  ASSERT_TRUE(tp.drafter && pro.drafter);
  EXPECT_EQ(tp.drafter->numHeads * 8, pro.drafter->numHeads);
  EXPECT_EQ(tp.drafter->numKvHeads * 8, pro.drafter->numKvHeads);
  EXPECT_EQ(tp.drafter->intermediateSize * 8, pro.drafter->intermediateSize);
  EXPECT_LT(tp.drafter->maskTokenId, t.vocabSize);
}

TEST(ConfigPresets, MimoV25ProNumbers) {
  Model m = *findPreset("mimo-v2.5-pro");
  const TargetConfig &t = m.target;
  EXPECT_EQ(t.numLayers, 70);
  EXPECT_EQ(t.hiddenSize, 6144);
  EXPECT_EQ(t.vocabSize, 152576);
  std::vector<int64_t> full;
  for (int64_t l = 0; l < t.numLayers; ++l)
    if (t.layerTypes[l] == AttentionKind::Full)
      full.push_back(l);
  EXPECT_EQ(full, (std::vector<int64_t>{0, 7, 15, 23, 31, 39, 47, 55, 62, 69}));
  EXPECT_EQ(t.mlpTypes[0], MlpKind::Dense);
  EXPECT_EQ(t.mlpTypes[1], MlpKind::Sparse);
  EXPECT_EQ(t.intermediateSize, 16384);
  EXPECT_EQ(t.full.numHeads, 128);
  EXPECT_EQ(t.full.numKvHeads, 8);
  EXPECT_EQ(t.full.headDim, 192);
  EXPECT_EQ(t.full.vHeadDim, 128);
  EXPECT_EQ(t.full.rotaryDim, 64);
  EXPECT_EQ(t.sliding.rotaryDim, 64);
  EXPECT_EQ(t.full.ropeTheta, 1e7);
  EXPECT_EQ(t.sliding.ropeTheta, 1e4);
  EXPECT_EQ(t.sliding.window, 128);
  EXPECT_TRUE(t.sliding.hasSinks);
  EXPECT_FALSE(t.full.hasSinks);
  EXPECT_EQ(t.attentionValueScale, 0.612);
  EXPECT_EQ(t.numExperts, 384);
  EXPECT_EQ(t.topK, 8);
  EXPECT_EQ(t.moeIntermediateSize, 2048);
  EXPECT_EQ(t.quant.experts, WeightFormat::MXFP4);
  EXPECT_EQ(t.quant.attention, WeightFormat::FP8Block);
  EXPECT_EQ(t.quant.attentionOut, WeightFormat::BF16);
  EXPECT_EQ(t.quant.denseMlp, WeightFormat::FP8Block);
  EXPECT_EQ(t.quant.lmHead, WeightFormat::BF16);
  EXPECT_EQ(&t.attention(7), &t.full);
  EXPECT_EQ(&t.attention(8), &t.sliding);
  expectError([&] { t.attention(70); }, {"layer 70"});

  const DrafterConfig &d = *m.drafter;
  EXPECT_EQ(d.numLayers, 5);
  EXPECT_EQ(d.hiddenSize, 6144);
  EXPECT_EQ(d.numHeads, 128);
  EXPECT_EQ(d.numKvHeads, 8);
  EXPECT_EQ(d.headDim, 128);
  EXPECT_EQ(d.intermediateSize, 16384);
  EXPECT_EQ(d.targetLayerIds, (std::vector<int64_t>{0, 15, 31, 47, 69}));
  EXPECT_EQ(d.blockSize, 8);
  EXPECT_EQ(d.slidingWindow, 1024);
  EXPECT_LT(d.maskTokenId, t.vocabSize);
}

TEST(ConfigPresets, MimoV2FlashNumbers) {
  TargetConfig t = preset("mimo-v2-flash");
  EXPECT_EQ(t.numLayers, 48);
  EXPECT_EQ(t.hiddenSize, 4096);
  for (int64_t l = 0; l < 48; ++l)
    EXPECT_EQ(t.layerTypes[l] == AttentionKind::Full,
              l == 0 || (l + 1) % 6 == 0);
  EXPECT_EQ(t.full.numHeads, 64);
  EXPECT_EQ(t.full.numKvHeads, 4);
  EXPECT_EQ(t.sliding.numKvHeads, 8);
  EXPECT_EQ(t.numExperts, 256);
  EXPECT_EQ(t.full.ropeTheta, 5e6);
  EXPECT_EQ(t.attentionValueScale, 0.707);
}

TEST(ConfigPresets, TinyKeepsTheFeatures) {
  TargetConfig t = preset("tiny");
  EXPECT_EQ(t.layerTypes, (std::vector<AttentionKind>{
                              AttentionKind::Full, AttentionKind::Sliding,
                              AttentionKind::Sliding, AttentionKind::Full}));
  EXPECT_EQ(t.full.rotaryDim, 16);
  EXPECT_EQ(t.full.numKvHeads, 2);
  EXPECT_EQ(t.sliding.numKvHeads, 4);
  EXPECT_EQ(t.sliding.window, 8);
  EXPECT_EQ(t.quant.experts, WeightFormat::MXFP4);
  TargetConfig g = preset("tiny-groups");
  EXPECT_EQ(g.nGroup, 4);
  EXPECT_EQ(g.topkGroup, 2);
  EXPECT_FALSE(g.normTopkProb);
  EXPECT_EQ(g.routedScalingFactor, 2.5);
  TargetConfig w = preset("tiny-window");
  EXPECT_EQ(w.sliding.window, 4);
  EXPECT_EQ(w.layerTypes[0], AttentionKind::Sliding);
}

//===--- Round trips
//-------------------------------------------------------===//

TEST(ConfigRoundTrip, TransformersSpelling) {
  for (const char *name :
       {"tiny", "tiny-groups", "tiny-window", "mimo-v2-flash"}) {
    SCOPED_TRACE(name);
    TargetConfig t = preset(name);
    json j = toHfJson(t);
    EXPECT_EQ(j["model_type"], "mimo_v2_flash");
    EXPECT_EQ(j["architectures"], json::array({"MiMoV2FlashForCausalLM"}));
    EXPECT_TRUE(j.contains("layer_types"));
    EXPECT_TRUE(j["rope_parameters"].contains("sliding_attention"));
    EXPECT_EQ(parseTargetConfig(j, name), t);
    // Through text too, as a file would carry it.
    EXPECT_EQ(parseTargetConfig(json::parse(j.dump(2)), name), t);
    // Without quantization_config only the plan differs.
    json plain = toHfJson(t, {"float32", false});
    EXPECT_FALSE(plain.contains("quantization_config"));
    EXPECT_EQ(plain["dtype"], "float32");
    EXPECT_TRUE(parseTargetConfig(plain, name).quant.allBF16());
  }
}

TEST(ConfigRoundTrip, TransformersRefusesWhatItCannotBuild) {
  for (const char *name : {"tiny-pro", "mimo-v2.5-pro"})
    expectError([&] { toHfJson(preset(name)); }, {"kv heads"});
  TargetConfig t = preset("tiny");
  t.full.hasSinks = true;
  expectError([&] { toHfJson(t); }, {"sinks"});
  t = preset("tiny");
  t.sliding.numHeads = 8;
  expectError([&] { toHfJson(t); }, {"query heads"});
  t = preset("tiny");
  t.sliding.vHeadDim = 16;
  expectError([&] { toHfJson(t); }, {"v_head_dim"});
}

TEST(ConfigRoundTrip, HubSpelling) {
  for (const std::string &name : presetNames()) {
    SCOPED_TRACE(name);
    TargetConfig t = preset(name.c_str());
    json j = toHubJson(t);
    EXPECT_TRUE(j.contains("hybrid_layer_pattern"));
    EXPECT_FALSE(j.contains("layer_types"));
    EXPECT_EQ(parseTargetConfig(j, name), t);
    EXPECT_EQ(parseTargetConfig(json::parse(j.dump()), name), t);
  }
  TargetConfig t = preset("tiny");
  t.sliding.partialRotaryFactor = 0.5;
  t.sliding.rotaryDim = 24;
  expectError([&] { toHubJson(t); }, {"partial_rotary_factor"});
}

TEST(ConfigRoundTrip, Drafters) {
  for (const std::string &name : presetNames()) {
    SCOPED_TRACE(name);
    Model m = *findPreset(name);
    json j = toDrafterJson(*m.drafter, m.target);
    EXPECT_EQ(j["model_type"], "qwen3");
    EXPECT_TRUE(j["dflash_config"].contains("target_layer_ids"));
    EXPECT_EQ(parseDrafterConfig(j, m.target, name), *m.drafter);
    EXPECT_EQ(parseDrafterConfig(json::parse(j.dump()), m.target, name),
              *m.drafter);
  }
  // Causal per layer beyond the reference's rule has no spelling.
  Model m = *findPreset("tiny");
  m.drafter->causal = {false, true};
  expectError([&] { toDrafterJson(*m.drafter, m.target); }, {"causal"});
}

TEST(ConfigRoundTrip, QuantizationJson) {
  EXPECT_TRUE(toQuantizationJson(QuantPlan()).is_null());
  QuantPlan q;
  q.experts = WeightFormat::MXFP4;
  q.lmHead = WeightFormat::FP8Block;
  json j = toQuantizationJson(q);
  EXPECT_EQ(j["quant_method"], "tilec");
  EXPECT_EQ(j["experts"], "mxfp4");
  EXPECT_EQ(parseQuantization(j, {MlpKind::Dense}, "x"), q);
}

//===--- Parsing both spellings -------------------------------------------===//

// What transformers 5.17 writes for a small MiMoV2FlashConfig.
TEST(ConfigParse, TransformersStyle) {
  json j = json::parse(R"({
    "architectures": ["MiMoV2FlashForCausalLM"], "model_type": "mimo_v2_flash",
    "vocab_size": 320, "hidden_size": 96, "intermediate_size": 160,
    "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 1,
    "head_dim": 24, "v_head_dim": 16, "hidden_act": "silu",
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-06,
    "tie_word_embeddings": false, "attention_bias": false,
    "layer_types": ["full_attention", "sliding_attention", "sliding_attention"],
    "mlp_layer_types": ["dense", "sparse", "dense"],
    "rope_parameters": {
      "full_attention": {"rope_type": "default", "rope_theta": 5000000.0,
                         "partial_rotary_factor": 0.334},
      "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0,
                            "partial_rotary_factor": 0.5}},
    "sliding_window": 5, "attention_value_scale": null,
    "n_routed_experts": 12, "num_experts_per_tok": 3,
    "moe_intermediate_size": 32, "n_group": 3, "topk_group": 2,
    "norm_topk_prob": false, "routed_scaling_factor": 1.5,
    "bos_token_id": null, "eos_token_id": [2, 3], "pad_token_id": null,
    "dtype": "float32", "transformers_version": "5.17.0"})");
  TargetConfig c = parseAndValidate(j);
  EXPECT_EQ(c.vocabSize, 320);
  EXPECT_EQ(c.hiddenSize, 96);
  EXPECT_EQ(c.numLayers, 3);
  EXPECT_EQ(c.mlpTypes, (std::vector<MlpKind>{MlpKind::Dense, MlpKind::Sparse,
                                              MlpKind::Dense}));
  EXPECT_EQ(c.full.numHeads, 6);
  EXPECT_EQ(c.full.numKvHeads, 1);
  EXPECT_EQ(c.sliding.numHeads, 6);
  EXPECT_EQ(c.sliding.numKvHeads, 2); // transformers: 2 x num_key_value_heads
  EXPECT_EQ(c.full.headDim, 24);
  EXPECT_EQ(c.sliding.vHeadDim, 16);
  EXPECT_EQ(c.full.rotaryDim, 8); // int(24 * 0.334)
  EXPECT_EQ(c.sliding.rotaryDim, 12);
  EXPECT_EQ(c.full.ropeTheta, 5e6);
  EXPECT_FALSE(c.full.hasSinks);
  EXPECT_TRUE(c.sliding.hasSinks);
  EXPECT_EQ(c.full.window, 0);
  EXPECT_EQ(c.sliding.window, 5);
  EXPECT_EQ(c.attentionValueScale, 1.0); // null: no scaling
  EXPECT_EQ(c.rmsNormEps, 1e-6);
  EXPECT_EQ(c.nGroup, 3);
  EXPECT_EQ(c.topkGroup, 2);
  EXPECT_FALSE(c.normTopkProb);
  EXPECT_EQ(c.routedScalingFactor, 1.5);
  EXPECT_EQ(c.bosTokenId, -1);
  EXPECT_EQ(c.eosTokenIds, (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(c.quant.allBF16());
}

// Absent fields take MiMoV2FlashConfig's defaults, which are V2-Flash.
TEST(ConfigParse, TransformersDefaults) {
  TargetConfig c = parseAndValidate(json::object());
  TargetConfig flash = preset("mimo-v2-flash");
  EXPECT_EQ(c.layerTypes, flash.layerTypes);
  EXPECT_EQ(c.mlpTypes, flash.mlpTypes);
  EXPECT_EQ(c.full, flash.full);
  EXPECT_EQ(c.sliding, flash.sliding);
  EXPECT_EQ(c.hiddenSize, 4096);
  EXPECT_EQ(c.numExperts, 256);
  EXPECT_EQ(c.attentionValueScale, 0.707);
  EXPECT_EQ(c.maxPositionEmbeddings, 131072);
  EXPECT_EQ(c.bosTokenId, 1);
  EXPECT_TRUE(c.eosTokenIds.empty());
}

// The hub checkpoint's spelling, with its FP8 quantization_config.
TEST(ConfigParse, HubStyle) {
  json j = json::parse(R"({
    "architectures": ["MiMoV2FlashForCausalLM"], "model_type": "mimo_v2_flash",
    "vocab_size": 1000, "hidden_size": 128, "intermediate_size": 256,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
    "head_dim": 48, "v_head_dim": 32, "swa_num_attention_heads": 8,
    "swa_num_key_value_heads": 2, "swa_head_dim": 48, "swa_v_head_dim": 32,
    "hybrid_layer_pattern": [0, 1, 1, 0], "moe_layer_freq": [0, 1, 1, 1],
    "rope_theta": 10000000, "swa_rope_theta": 10000,
    "partial_rotary_factor": 0.334, "sliding_window": 16,
    "sliding_window_size": 16, "add_swa_attention_sink_bias": true,
    "add_full_attention_sink_bias": false, "attention_value_scale": 0.612,
    "layernorm_epsilon": 1e-05, "n_routed_experts": 16,
    "num_experts_per_tok": 4, "moe_intermediate_size": 64, "n_group": 1,
    "norm_topk_prob": true, "routed_scaling_factor": null,
    "scoring_func": "sigmoid", "topk_method": "noaux_tc",
    "n_shared_experts": null, "max_position_embeddings": 1048576,
    "quantization_config": {
      "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
      "weight_block_size": [128, 128], "store_dtype": "mxfp4",
      "mxfp4_block_size": 32,
      "ignored_layers": ["model.layers.0.self_attn.o_proj",
                         "model.layers.1.self_attn.o_proj",
                         "model.layers.2.self_attn.o_proj",
                         "model.layers.3.self_attn.o_proj",
                         "model.mtp.layers.0.self_attn.q_proj"]}})");
  TargetConfig c = parseAndValidate(j);
  EXPECT_EQ(c.layerTypes, (std::vector<AttentionKind>{
                              AttentionKind::Full, AttentionKind::Sliding,
                              AttentionKind::Sliding, AttentionKind::Full}));
  EXPECT_EQ(c.sliding.numKvHeads, 2); // explicit: no 2x rule
  EXPECT_EQ(c.full.ropeTheta, 1e7);
  EXPECT_EQ(c.sliding.ropeTheta, 1e4);
  EXPECT_EQ(c.full.rotaryDim, 16);
  EXPECT_EQ(c.sliding.window, 16);
  EXPECT_EQ(c.attentionValueScale, 0.612);
  EXPECT_EQ(c.rmsNormEps, 1e-5);
  EXPECT_EQ(c.routedScalingFactor, 1.0);
  EXPECT_EQ(c.quant.attention, WeightFormat::FP8Block);
  EXPECT_EQ(c.quant.attentionOut, WeightFormat::BF16);
  EXPECT_EQ(c.quant.denseMlp, WeightFormat::FP8Block);
  EXPECT_EQ(c.quant.experts, WeightFormat::MXFP4);
  EXPECT_EQ(c.quant.lmHead, WeightFormat::BF16);
  // The hub spelling of the V2.5-Pro preset reads back as the preset.
  TargetConfig pro = preset("mimo-v2.5-pro");
  EXPECT_EQ(parseAndValidate(toHubJson(pro)), pro);
}

TEST(ConfigParse, SpellingPrecedence) {
  // One quantity spelt twice must agree.
  json j = tinyHf();
  j["hybrid_layer_pattern"] = {0, 1, 1, 0};
  EXPECT_NO_THROW(parseAndValidate(j));
  j["hybrid_layer_pattern"] = {0, 1, 1, 1};
  expectTargetError(
      j, {"\"layer_types\"", "\"hybrid_layer_pattern\"", "disagree"});
  j = tinyHf();
  j["moe_layer_freq"] = {1, 1, 1, 1};
  expectTargetError(j, {"\"mlp_layer_types\"", "\"moe_layer_freq\""});
  j = tinyHf();
  j["layernorm_epsilon"] = 1e-6;
  expectTargetError(j, {"\"rms_norm_eps\"", "\"layernorm_epsilon\""});
  j = tinyHf();
  j["sliding_window_size"] = 9;
  expectTargetError(j, {"\"sliding_window\"", "\"sliding_window_size\""});
  // rope_parameters wins over the hub's flat rope fields.
  j = tinyHf();
  j["rope_theta"] = 123.0;
  j["partial_rotary_factor"] = 0.5;
  EXPECT_EQ(parseAndValidate(j), preset("tiny"));
  // Explicit swa_* fields win over transformers' rules.
  j = tinyHf();
  j["swa_num_key_value_heads"] = 2;
  j["add_swa_attention_sink_bias"] = false;
  TargetConfig c = parseAndValidate(j);
  EXPECT_EQ(c.sliding.numKvHeads, 2);
  EXPECT_FALSE(c.sliding.hasSinks);
}

//===--- One test per validation error
//-------------------------------------===//

TEST(ConfigValidate, HeadsNotDivisible) {
  json j = tinyHf();
  j["num_attention_heads"] = 64;
  j["num_key_value_heads"] = 5;
  expectTargetError(j, {"config.json: field \"num_attention_heads\" (64) is "
                        "not divisible by \"num_key_value_heads\" (5)"});
}

TEST(ConfigValidate, SlidingHeadsNotDivisible) {
  json j = tinyHf();
  j["num_attention_heads"] = 6; // full: 6 % 2, sliding: 6 % 4
  j["num_key_value_heads"] = 2;
  expectTargetError(j, {"swa_num_attention_heads", "swa_num_key_value_heads",
                        "2 x \"num_key_value_heads\"", "not divisible"});
}

TEST(ConfigValidate, LayerTypesSize) {
  json j = tinyHf();
  j["layer_types"].erase(0);
  expectTargetError(j, {"\"layer_types\"", "3 entries"});
  TargetConfig c = preset("tiny");
  c.mlpTypes.pop_back();
  expectError([&] { validate(c); }, {"mlp_layer_types", "3 entries"});
}

TEST(ConfigValidate, UnknownLayerType) {
  json j = tinyHf();
  j["layer_types"][1] = "linear_attention";
  expectTargetError(j, {"\"layer_types\"", "\"linear_attention\""});
  j = tinyHf();
  j["mlp_layer_types"][2] = "moe";
  expectTargetError(j, {"\"mlp_layer_types\"", "\"moe\""});
  j = toHubJson(preset("tiny"));
  j["hybrid_layer_pattern"][1] = 2;
  expectTargetError(j, {"\"hybrid_layer_pattern\"", "expected 0 or 1"});
}

TEST(ConfigValidate, TopKExceedsExperts) {
  json j = tinyHf();
  j["num_experts_per_tok"] = 9;
  expectTargetError(j, {"\"num_experts_per_tok\" (9)", "\"n_routed_experts\""});
}

TEST(ConfigValidate, ExpertsNotDivisibleByGroups) {
  json j = tinyHf();
  j["n_group"] = 3;
  expectTargetError(j, {"\"n_routed_experts\" (8)", "\"n_group\" (3)"});
}

TEST(ConfigValidate, TopkGroupExceedsGroups) {
  json j = toHfJson(preset("tiny-groups"));
  j["topk_group"] = 5;
  expectTargetError(j, {"\"topk_group\" (5)", "\"n_group\" (4)"});
}

TEST(ConfigValidate, TopKExceedsKeptGroups) {
  json j = toHfJson(preset("tiny-groups"));
  j["topk_group"] = 1;
  j["num_experts_per_tok"] = 5;
  expectTargetError(j, {"\"num_experts_per_tok\" (5)", "\"topk_group\" (1)"});
}

TEST(ConfigValidate, GroupsOfOneExpert) {
  json j = tinyHf();
  j["n_group"] = 8;
  j["topk_group"] = 2;
  expectTargetError(j, {"\"n_group\" (8)", "at least 2"});
}

TEST(ConfigValidate, RotaryDims) {
  json j = tinyHf();
  j["rope_parameters"]["full_attention"]["partial_rotary_factor"] = 0.32;
  expectTargetError(j, {"partial_rotary_factor", "= 15 rotary dims", "even"});
  j["rope_parameters"]["full_attention"]["partial_rotary_factor"] = 1.5;
  expectTargetError(j, {"partial_rotary_factor", "(0, 1]"});
  j["rope_parameters"]["full_attention"]["partial_rotary_factor"] = 0.01;
  expectTargetError(j, {"partial_rotary_factor", "= 0 rotary dims"});
  TargetConfig c = preset("tiny");
  c.full.rotaryDim = 8;
  expectError([&] { validate(c); }, {"rotary dims (8)"});
}

TEST(ConfigValidate, PositiveSizes) {
  for (const char *field : {"hidden_size", "vocab_size", "intermediate_size",
                            "moe_intermediate_size", "head_dim", "v_head_dim",
                            "n_routed_experts", "max_position_embeddings"}) {
    SCOPED_TRACE(field);
    json j = tinyHf();
    j[field] = -3;
    expectTargetError(
        j, {(std::string("\"") + field + "\" (-3)").c_str(), "out of range"});
  }
  json j = tinyHf();
  j["num_hidden_layers"] = 0;
  expectTargetError(j, {"\"num_hidden_layers\" (0)"});
  j["num_hidden_layers"] = 1000000;
  expectTargetError(j, {"\"num_hidden_layers\" (1000000)", "out of range"});
  j = tinyHf();
  j["sliding_window"] = 0;
  expectTargetError(j, {"\"sliding_window\"", "(0)"});
}

TEST(ConfigValidate, Epsilon) {
  json j = tinyHf();
  j["rms_norm_eps"] = 0.0;
  expectTargetError(j, {"\"rms_norm_eps\"", "positive"});
  j = tinyHf();
  j["rope_parameters"]["sliding_attention"]["rope_theta"] = -1.0;
  expectTargetError(j, {"swa_rope_theta", "positive"});
}

TEST(ConfigValidate, TokenIds) {
  json j = tinyHf();
  j["eos_token_id"] = 512;
  expectTargetError(j, {"\"eos_token_id\" (512)"});
  j = tinyHf();
  j["bos_token_id"] = -5;
  expectTargetError(j, {"\"bos_token_id\" (-5)"});
}

TEST(ConfigValidate, Mxfp4NeedsDivisibleInputs) {
  json j = tinyHf(); // experts MXFP4
  j["moe_intermediate_size"] = 48;
  expectTargetError(j, {"MXFP4", "\"moe_intermediate_size\" (48)", "32"});
  j = tinyHf();
  j["hidden_size"] = 80;
  expectTargetError(j, {"MXFP4", "\"hidden_size\" (80)"});
}

TEST(ConfigValidate, UnsupportedRouting) {
  json j = tinyHf();
  j["scoring_func"] = "softmax";
  expectTargetError(j, {"\"scoring_func\"", "\"softmax\"", "sigmoid"});
  j = tinyHf();
  j["topk_method"] = "greedy";
  expectTargetError(j, {"\"topk_method\"", "noaux_tc"});
  j = tinyHf();
  j["n_shared_experts"] = 1;
  expectTargetError(j, {"\"n_shared_experts\""});
  j = tinyHf();
  j["model_type"] = "qwen3_moe";
  expectTargetError(j, {"\"model_type\"", "mimo_v2_flash"});
  j = tinyHf();
  j["hidden_act"] = "gelu";
  expectTargetError(j, {"\"hidden_act\""});
  j = tinyHf();
  j["rope_parameters"]["full_attention"]["rope_type"] = "yarn";
  expectTargetError(j, {"rope_type", "\"yarn\""});
  j = tinyHf();
  j["rope_parameters"] = {{"rope_theta", 10000.0}};
  expectTargetError(j, {"rope_parameters.rope_theta", "layer type"});
}

TEST(ConfigValidate, WrongJsonTypes) {
  json j = tinyHf();
  j["hidden_size"] = "64";
  expectTargetError(j, {"\"hidden_size\"", "a string", "expected an integer"});
  j = tinyHf();
  j["hidden_size"] = nullptr;
  expectTargetError(j, {"\"hidden_size\" is null"});
  j = tinyHf();
  j["hidden_size"] = 64.5;
  expectTargetError(j, {"\"hidden_size\"", "non-integer"});
  j = tinyHf();
  j["vocab_size"] = json::parse("18446744073709551615");
  expectTargetError(j, {"\"vocab_size\"", "too large"});
  j = tinyHf();
  j["vocab_size"] = json::parse("1e300");
  expectTargetError(j, {"\"vocab_size\"", "expected an integer"});
  j = tinyHf();
  j["norm_topk_prob"] = 1;
  expectTargetError(j, {"\"norm_topk_prob\"", "true or false"});
  j = tinyHf();
  j["layer_types"] = "full_attention";
  expectTargetError(j, {"\"layer_types\"", "expected an array"});
  j = tinyHf();
  j["layer_types"][0] = 7;
  expectTargetError(j, {"\"layer_types[0]\"", "expected a string"});
  expectTargetError(json::array(), {"config.json", "expected a JSON object"});
}

TEST(ConfigValidate, Quantization) {
  json j = tinyHf();
  j["quantization_config"] = {{"quant_method", "awq"}};
  expectTargetError(j, {"\"quantization_config.quant_method\"", "\"awq\""});
  j["quantization_config"] = {{"quant_method", "fp8"},
                              {"weight_block_size", {64, 64}}};
  expectTargetError(j, {"weight_block_size", "[128, 128]"});
  j["quantization_config"] = {{"quant_method", "fp8"},
                              {"activation_scheme", "static"}};
  expectTargetError(j, {"activation_scheme", "dynamic"});
  // o_proj kept in BF16 in some layers only.
  j["quantization_config"] = {
      {"quant_method", "fp8"},
      {"ignored_layers",
       {"model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj"}}};
  expectTargetError(j, {"ignored_layers", "o_proj", "2 of its 4 layers"});
  j["quantization_config"] = {{"quant_method", "tilec"}, {"experts", "int4"}};
  expectTargetError(j, {"quantization_config.experts", "\"int4\""});
  j["quantization_config"] = {{"quant_method", "tilec"}, {"exprts", "mxfp4"}};
  expectTargetError(j, {"quantization_config.exprts"});
  // Without a layer index an entry covers every layer; gpt-oss style mxfp4.
  j["quantization_config"] = {{"quant_method", "mxfp4"},
                              {"modules_to_not_convert", {"lm_head"}}};
  QuantPlan q = parseAndValidate(j).quant;
  EXPECT_EQ(q.experts, WeightFormat::MXFP4);
  EXPECT_EQ(q.attention, WeightFormat::BF16);
  j["quantization_config"] = {{"quant_method", "fp8"},
                              {"ignored_layers", {"o_proj", "experts"}}};
  q = parseAndValidate(j).quant;
  EXPECT_EQ(q.attentionOut, WeightFormat::BF16);
  EXPECT_EQ(q.experts, WeightFormat::BF16);
  EXPECT_EQ(q.attention, WeightFormat::FP8Block);
  // A tied lm_head is the BF16 embedding.
  TargetConfig c = preset("tiny");
  c.tieWordEmbeddings = true;
  c.quant.lmHead = WeightFormat::FP8Block;
  expectError([&] { validate(c); }, {"tie_word_embeddings"});
}

//===--- Drafters
//----------------------------------------------------------===//

// MiMo's published DFlash spelling: use_swa instead of layer_types, MiMo's
// extensions in dflash_config.
TEST(ConfigDrafter, MimoSpelling) {
  json j = json::parse(R"({
    "architectures": ["DFlashDraftModel"], "model_type": "qwen3",
    "hidden_size": 6144, "intermediate_size": 16384, "num_hidden_layers": 5,
    "num_attention_heads": 128, "num_key_value_heads": 8, "head_dim": 128,
    "v_head_dim": 128, "partial_rotary_factor": 0.5, "block_size": 8,
    "dflash_config": {"target_layer_ids": [0, 15, 31, 47, 69],
                      "mask_token_id": 151669, "block_size": 8,
                      "use_swa": true, "swa_window_size": 1024,
                      "attention_value_scale": 0.612,
                      "attention_sink_bias": true},
    "num_target_layers": 70, "vocab_size": 152064, "rope_theta": 10000,
    "sliding_window": 1024, "rms_norm_eps": 1e-05, "hidden_act": "silu",
    "attention_bias": false, "tie_word_embeddings": false})");
  Model pro = *findPreset("mimo-v2.5-pro");
  DrafterConfig d = parseDrafterAndValidate(j, pro.target);
  EXPECT_EQ(d, *pro.drafter);
  EXPECT_EQ(d.rotaryDim, 64);
  EXPECT_EQ(d.causal, std::vector<bool>(5, false));
  j["num_target_layers"] = 48;
  expectError([&] { parseDrafterConfig(j, pro.target, "d.json"); },
              {"\"num_target_layers\" (48)", "70"});
}

// The reference's own spelling: layer_types, use_sliding_window, is_causal.
TEST(ConfigDrafter, ReferenceSpelling) {
  json j = json::parse(R"({
    "architectures": ["DFlashDraftModel"], "model_type": "qwen3",
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
    "is_causal": false, "use_sliding_window": true, "sliding_window": 32,
    "max_window_layers": 3,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
    "rms_norm_eps": 1e-05,
    "dflash_config": {"block_size": 16, "mask_token_id": 7,
                      "target_layer_ids": [0, 2, 3],
                      "final_logit_softcapping": 20.0,
                      "output_multiplier": 0.25}})");
  TargetConfig target = preset("tiny");
  DrafterConfig d = parseDrafterAndValidate(j, target);
  EXPECT_EQ(d.numKvHeads, 1);
  EXPECT_EQ(d.ropeTheta, 5e5);
  EXPECT_EQ(d.rotaryDim, 16);
  EXPECT_EQ(d.slidingWindow, 32);
  EXPECT_EQ(d.causal, std::vector<bool>(3, false));
  EXPECT_EQ(d.blockSize, 16);
  EXPECT_EQ(d.finalLogitSoftcapping, 20.0);
  EXPECT_EQ(d.outputMultiplier, 0.25);
  EXPECT_EQ(d.inputEmbeddingScale, 1.0);
  EXPECT_EQ(d.targetLayerIds, (std::vector<int64_t>{0, 2, 3}));
  // Default causality: sliding layers only.
  j.erase("is_causal");
  d = parseDrafterAndValidate(j, target);
  EXPECT_EQ(d.causal, (std::vector<bool>{true, false, true}));
  // Without layer_types, Qwen3Config makes layers >= max_window_layers
  // sliding.
  j.erase("layer_types");
  j["max_window_layers"] = 1;
  d = parseDrafterAndValidate(j, target);
  EXPECT_EQ(d.layerTypes, (std::vector<AttentionKind>{AttentionKind::Full,
                                                      AttentionKind::Sliding,
                                                      AttentionKind::Sliding}));
  // ... and no sliding layer at all without use_sliding_window.
  j["use_sliding_window"] = false;
  d = parseDrafterAndValidate(j, target);
  EXPECT_EQ(d.layerTypes, std::vector<AttentionKind>(3, AttentionKind::Full));
  EXPECT_EQ(d.slidingWindow, 0);
}

TEST(ConfigDrafter, Errors) {
  json j = tinyDrafterJson();
  j["dflash_config"]["target_layer_ids"] = {1, 4};
  expectDrafterError(
      j, {"drafter/config.json", "target_layer_ids", "(4)", "0..3"});
  j = tinyDrafterJson();
  j["dflash_config"]["block_size"] = 17;
  expectDrafterError(j, {"\"dflash_config.block_size\" (17)", "1..16"});
  j = tinyDrafterJson();
  j["dflash_config"]["mask_token_id"] = 512;
  expectDrafterError(j, {"\"dflash_config.mask_token_id\" (512)", "vocab"});
  j = tinyDrafterJson();
  j["hidden_size"] = 128;
  expectDrafterError(j, {"\"hidden_size\" (128)", "target"});
  j = tinyDrafterJson();
  j["num_key_value_heads"] = 3;
  expectDrafterError(
      j, {"\"num_attention_heads\" (4)", "\"num_key_value_heads\" (3)"});
  j = tinyDrafterJson();
  j["dflash_config"].erase("target_layer_ids");
  expectDrafterError(j, {"target_layer_ids", "missing"});
  j = tinyDrafterJson();
  j["dflash_config"]["target_layer_ids"] = json::array();
  expectDrafterError(j, {"target_layer_ids", "empty"});
  j = tinyDrafterJson();
  j["dflash_config"].erase("mask_token_id");
  expectDrafterError(j, {"mask_token_id", "missing"});
  j = tinyDrafterJson();
  j["use_sliding_window"] = false;
  expectDrafterError(j, {"use_sliding_window"});
  j = tinyDrafterJson();
  j["dflash_config"]["final_logit_softcapping"] = -1.0;
  expectDrafterError(j, {"final_logit_softcapping"});
  j = tinyDrafterJson();
  j["v_head_dim"] = 8;
  expectDrafterError(j, {"\"v_head_dim\""});
  j = tinyDrafterJson();
  j["model_type"] = "llama";
  expectDrafterError(j, {"\"model_type\"", "qwen3"});
  j = tinyDrafterJson();
  j["dflash_config"] = 3;
  expectDrafterError(j, {"\"dflash_config\"", "expected an object"});
  // A key in dflash_config wins over the top level.
  j = tinyDrafterJson();
  j["block_size"] = 99;
  EXPECT_EQ(parseDrafterAndValidate(j, preset("tiny")).blockSize, 4);
}

//===--- Loading
//-----------------------------------------------------------===//

TEST(ConfigLoad, DirectoryWithDrafterSubfolder) {
  Model tiny = *findPreset("tiny");
  for (const char *sub : {"drafter", "dflash"}) {
    SCOPED_TRACE(sub);
    TempDir dir;
    dir.write("config.json", toHfJson(tiny.target).dump(2));
    dir.write(fs::path(sub) / "config.json",
              toDrafterJson(*tiny.drafter, tiny.target).dump(2));
    Model m = loadModel(dir.path().string());
    EXPECT_EQ(m.target, tiny.target);
    EXPECT_EQ(m.target.name, dir.path().string());
    EXPECT_EQ(m.dir, dir.path().string());
    ASSERT_TRUE(m.drafter.has_value());
    EXPECT_EQ(*m.drafter, *tiny.drafter);
    EXPECT_EQ(m.drafterDir, (dir.path() / sub).string());
    // An explicit "" means no drafter.
    EXPECT_FALSE(loadModel(dir.path().string(), "").drafter.has_value());
  }
}

TEST(ConfigLoad, ExplicitDrafterDirectory) {
  Model pro = *findPreset("tiny-pro");
  TempDir model, drafter;
  model.write("config.json", toHubJson(pro.target).dump());
  drafter.write("config.json", toDrafterJson(*pro.drafter, pro.target).dump());
  Model m = loadModel(model.path().string(), drafter.path().string());
  EXPECT_EQ(m.target, pro.target);
  EXPECT_EQ(*m.drafter, *pro.drafter);
  EXPECT_EQ(m.drafterDir, drafter.path().string());
  EXPECT_FALSE(loadModel(model.path().string()).drafter.has_value());
  // A preset's target with a drafter from a directory.
  m = loadModel("tiny-pro", drafter.path().string());
  EXPECT_EQ(m.dir, "");
  EXPECT_EQ(*m.drafter, *pro.drafter);
}

TEST(ConfigLoad, MissingAndBrokenFiles) {
  expectError([] { loadModel("/no/such/dir-or-preset"); },
              {"\"/no/such/dir-or-preset\"", "no preset", "tiny"});
  TempDir dir;
  std::string configPath = (dir.path() / "config.json").string();
  expectError([&] { loadModel(dir.path().string()); },
              {configPath.c_str(), "missing"});
  dir.write("config.json", "{\"hidden_size\": 64,");
  expectError([&] { loadModel(dir.path().string()); },
              {configPath.c_str(), "not valid JSON"});
  dir.write("config.json", toHfJson(preset("tiny")).dump());
  std::string drafterPath = (dir.path() / "nowhere" / "config.json").string();
  expectError(
      [&] {
        loadModel(dir.path().string(), (dir.path() / "nowhere").string());
      },
      {drafterPath.c_str(), "missing"});
  dir.write("drafter/config.json", tinyDrafterJson().dump());
  dir.write("dflash/config.json", tinyDrafterJson().dump());
  expectError([&] { loadModel(dir.path().string()); }, {"both"});
  // Bad content names the file it came from.
  fs::remove_all(dir.path() / "dflash");
  json bad = tinyDrafterJson();
  bad["dflash_config"]["block_size"] = 0;
  dir.write("drafter/config.json", bad.dump());
  std::string badPath = (dir.path() / "drafter" / "config.json").string();
  expectError([&] { loadModel(dir.path().string()); },
              {badPath.c_str(), "block_size"});
  expectError([] { readJsonFile("/no/such/file.json"); },
              {"/no/such/file.json"});
}

TEST(ConfigLoad, NoThrow) {
  Expected<Model> ok = loadModelNoThrow("tiny-window");
  ASSERT_TRUE(bool(ok));
  EXPECT_EQ(ok->target.name, "tiny-window");
  Expected<Model> bad = loadModelNoThrow("/no/such/model");
  EXPECT_FALSE(bool(bad));
  EXPECT_NE(bad.error().find("/no/such/model"), std::string::npos);
  EXPECT_FALSE(bool(loadModelNoThrow("tiny", "/no/such/drafter")));
}
