//===- ConfigJson.cpp - config.json <-> TargetConfig / DrafterConfig ------===//
//
// Reading both spellings of MiMo-V2 configs and the DFlash drafter format, and
// writing them back. Every accessor checks the JSON type first: bad input is a
// tilec::Error naming the file and the field, never a nlohmann exception.
//
//===----------------------------------------------------------------------===//
#include "models/core/Config.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <limits>
#include <set>

namespace tilec {
namespace {

using json = nlohmann::json;

// transformers 5.17 MiMoV2FlashConfig defaults, used for absent fields.
constexpr int64_t kDefaultVocab = 152576, kDefaultHidden = 4096,
                  kDefaultIntermediate = 16384, kDefaultLayers = 48,
                  kDefaultHeads = 64, kDefaultKvHeads = 4,
                  kDefaultHeadDim = 192, kDefaultVHeadDim = 128,
                  kDefaultWindow = 128, kDefaultExperts = 256, kDefaultTopK = 8,
                  kDefaultMoeIntermediate = 2048, kDefaultMaxPositions = 131072,
                  kDefaultBos = 1;
constexpr double kDefaultFullTheta = 5e6, kDefaultSlidingTheta = 1e4,
                 kDefaultPartialRotary = 0.334, kDefaultValueScale = 0.707,
                 kDefaultEps = 1e-5;

std::string describe(const json &v) {
  switch (v.type()) {
  case json::value_t::null:
    return "null";
  case json::value_t::boolean:
    return fmt::format("a boolean ({})", v.get<bool>());
  case json::value_t::number_float:
    return fmt::format("a non-integer number ({})", v.get<double>());
  case json::value_t::number_integer:
  case json::value_t::number_unsigned:
    return "an integer";
  case json::value_t::string: {
    const auto &s = v.get_ref<const std::string &>();
    return fmt::format("a string (\"{}\")",
                       s.size() > 40 ? s.substr(0, 40) + "..." : s);
  }
  case json::value_t::array:
    return "an array";
  case json::value_t::object:
    return "an object";
  default:
    return v.type_name();
  }
}

/// Typed access to the fields of one JSON object; `prefix` makes nested
/// field names read "dflash_config.block_size".
class Fields {
public:
  Fields(const json &object, const std::string &where, std::string prefix = "")
      : object_(object), where_(where), prefix_(std::move(prefix)) {}

  const std::string &where() const { return where_; }
  std::string path(const std::string &key) const { return prefix_ + key; }

  const json *find(const std::string &key) const {
    if (!object_.is_object())
      return nullptr;
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  bool has(const std::string &key) const { return find(key) != nullptr; }
  bool present(const std::string &key) const {
    const json *v = find(key);
    return v && !v->is_null();
  }

  int64_t integer(const std::string &key, int64_t fallback) const {
    const json *v = find(key);
    return v ? toInteger(*v, path(key)) : fallback;
  }
  std::optional<int64_t> nullableInteger(const std::string &key) const {
    const json *v = find(key);
    if (!v || v->is_null())
      return std::nullopt;
    return toInteger(*v, path(key));
  }
  double number(const std::string &key, double fallback) const {
    const json *v = find(key);
    return v ? toNumber(*v, path(key)) : fallback;
  }
  std::optional<double> nullableNumber(const std::string &key) const {
    const json *v = find(key);
    if (!v || v->is_null())
      return std::nullopt;
    return toNumber(*v, path(key));
  }
  bool boolean(const std::string &key, bool fallback) const {
    const json *v = find(key);
    return v ? toBool(*v, path(key)) : fallback;
  }
  std::optional<bool> nullableBoolean(const std::string &key) const {
    const json *v = find(key);
    if (!v || v->is_null())
      return std::nullopt;
    return toBool(*v, path(key));
  }
  std::optional<std::string> string(const std::string &key) const {
    const json *v = find(key);
    if (!v || v->is_null())
      return std::nullopt;
    return toString(*v, path(key));
  }

  int64_t toInteger(const json &v, const std::string &field) const {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max()))
        fail("{}: field \"{}\" ({}) is too large", where_, field, u);
      return int64_t(u);
    }
    if (v.is_number_integer())
      return v.get<int64_t>();
    fail("{}: field \"{}\" is {}, expected an integer", where_, field,
         describe(v));
  }
  double toNumber(const json &v, const std::string &field) const {
    if (!v.is_number())
      fail("{}: field \"{}\" is {}, expected a number", where_, field,
           describe(v));
    double d = v.get<double>();
    if (!std::isfinite(d))
      fail("{}: field \"{}\" is not a finite number", where_, field);
    return d;
  }
  bool toBool(const json &v, const std::string &field) const {
    if (!v.is_boolean())
      fail("{}: field \"{}\" is {}, expected true or false", where_, field,
           describe(v));
    return v.get<bool>();
  }
  std::string toString(const json &v, const std::string &field) const {
    if (!v.is_string())
      fail("{}: field \"{}\" is {}, expected a string", where_, field,
           describe(v));
    return v.get<std::string>();
  }
  /// The array at `key`, or nullptr when absent or null.
  const json *array(const std::string &key) const {
    const json *v = find(key);
    if (!v || v->is_null())
      return nullptr;
    if (!v->is_array())
      fail("{}: field \"{}\" is {}, expected an array", where_, path(key),
           describe(*v));
    return v;
  }
  /// The object at `key`, or nullptr when absent or null.
  const json *object(const std::string &key) const {
    const json *v = find(key);
    if (!v || v->is_null())
      return nullptr;
    if (!v->is_object())
      fail("{}: field \"{}\" is {}, expected an object", where_, path(key),
           describe(*v));
    return v;
  }

private:
  const json &object_;
  const std::string &where_;
  std::string prefix_;
};

// Python's int(head_dim * factor); 0 where the inputs are out of range, which
// validate() reports in terms of the inputs.
int64_t rotaryDimOf(int64_t headDim, double factor) {
  if (headDim <= 0 || headDim > kMaxConfigDim || !std::isfinite(factor) ||
      factor <= 0 || factor > 1)
    return 0;
  return static_cast<int64_t>(static_cast<double>(headDim) * factor);
}

void requireEqual(const Fields &f, const std::string &a, const std::string &b,
                  bool equal) {
  if (!equal)
    fail("{}: fields \"{}\" and \"{}\" are both present and disagree",
         f.where(), f.path(a), f.path(b));
}

void checkRopeType(const Fields &f, const std::string &key) {
  if (auto type = f.string(key); type && *type != "default")
    fail("{}: field \"{}\" is \"{}\", only \"default\" RoPE is supported",
         f.where(), f.path(key), *type);
}

// Legacy `rope_scaling`: only null or the default type is the plain RoPE that
// tilec implements.
void checkNoRopeScaling(const Fields &f) {
  const json *scaling = f.object("rope_scaling");
  if (!scaling)
    return;
  Fields s(*scaling, f.where(), f.path("rope_scaling."));
  for (const char *key : {"rope_type", "type"})
    checkRopeType(s, key);
}

void checkActivationAndBias(const Fields &f) {
  if (auto act = f.string("hidden_act"); act && *act != "silu")
    fail("{}: field \"{}\" is \"{}\", expected \"silu\"", f.where(),
         f.path("hidden_act"), *act);
  if (f.boolean("attention_bias", false))
    fail("{}: field \"{}\" is true; attention projections with biases are not "
         "supported",
         f.where(), f.path("attention_bias"));
}

std::optional<AttentionKind> attentionKindFromName(const std::string &s) {
  if (s == "full_attention")
    return AttentionKind::Full;
  if (s == "sliding_attention")
    return AttentionKind::Sliding;
  return std::nullopt;
}

std::optional<MlpKind> mlpKindFromName(const std::string &s) {
  if (s == "dense")
    return MlpKind::Dense;
  if (s == "sparse")
    return MlpKind::Sparse;
  return std::nullopt;
}

template <typename Kind>
std::optional<std::vector<Kind>>
readKindNames(const Fields &f, const std::string &key, int64_t numLayers,
              std::optional<Kind> (*fromName)(const std::string &),
              const char *expected) {
  const json *arr = f.array(key);
  if (!arr)
    return std::nullopt;
  if (int64_t(arr->size()) != numLayers)
    fail("{}: field \"{}\" has {} entries, expected one per layer "
         "(num_hidden_layers = {})",
         f.where(), f.path(key), arr->size(), numLayers);
  std::vector<Kind> kinds;
  kinds.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string name = f.toString((*arr)[i], fmt::format("{}[{}]", key, i));
    auto kind = fromName(name);
    if (!kind)
      fail("{}: field \"{}\" entry {} is \"{}\", expected {}", f.where(),
           f.path(key), i, name, expected);
    kinds.push_back(*kind);
  }
  return kinds;
}

/// A hub 0/1 pattern: `zero` for 0, `one` for 1.
template <typename Kind>
std::optional<std::vector<Kind>>
readPattern(const Fields &f, const std::string &key, int64_t numLayers,
            Kind zero, Kind one, const char *meaning) {
  const json *arr = f.array(key);
  if (!arr)
    return std::nullopt;
  if (int64_t(arr->size()) != numLayers)
    fail("{}: field \"{}\" has {} entries, expected one per layer "
         "(num_hidden_layers = {})",
         f.where(), f.path(key), arr->size(), numLayers);
  std::vector<Kind> kinds;
  kinds.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    int64_t v = f.toInteger((*arr)[i], fmt::format("{}[{}]", key, i));
    if (v != 0 && v != 1)
      fail("{}: field \"{}\" entry {} is {}, expected 0 or 1 ({})", f.where(),
           f.path(key), i, v, meaning);
    kinds.push_back(v ? one : zero);
  }
  return kinds;
}

std::vector<int64_t> readIntegerList(const Fields &f, const json &arr,
                                     const std::string &field) {
  std::vector<int64_t> out;
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i)
    out.push_back(f.toInteger(arr[i], fmt::format("{}[{}]", field, i)));
  return out;
}

//===--- quantization_config ---------------------------------------------===//

// Which weight kinds an ignore list keeps in BF16, per layer. An entry without
// a layer index covers every layer.
struct IgnoreCoverage {
  enum Kind { Q, K, V, O, DenseMlp, Experts, NumKinds };
  std::set<int64_t> layers[NumKinds];
  bool everyLayer[NumKinds] = {};
  bool lmHead = false;

  void add(Kind kind, std::optional<int64_t> layer) {
    if (layer)
      layers[kind].insert(*layer);
    else
      everyLayer[kind] = true;
  }
  void addEntry(const std::string &entry, const std::vector<MlpKind> &mlp) {
    auto has = [&](const char *s) {
      return entry.find(s) != std::string::npos;
    };
    // MTP modules are not part of the model tilec runs.
    if (has("mtp"))
      return;
    if (has("lm_head")) {
      lmHead = true;
      return;
    }
    std::optional<int64_t> layer;
    if (size_t at = entry.find("layers."); at != std::string::npos) {
      int64_t n = 0;
      size_t i = at + 7, digits = 0;
      for (; i < entry.size() && std::isdigit((unsigned char)entry[i]) &&
             digits < 9;
           ++i, ++digits)
        n = n * 10 + (entry[i] - '0');
      if (digits == 0)
        return;
      layer = n;
    }
    if (has("experts")) {
      add(Experts, layer);
    } else if (has("qkv_proj")) {
      add(Q, layer), add(K, layer), add(V, layer);
    } else if (has("q_proj")) {
      add(Q, layer);
    } else if (has("k_proj")) {
      add(K, layer);
    } else if (has("v_proj")) {
      add(V, layer);
    } else if (has("o_proj")) {
      add(O, layer);
    } else if (has("gate_proj") || has("up_proj") || has("down_proj")) {
      // Outside `experts` these are the dense MLP's; MiMo has no shared
      // experts, so in a sparse layer they name nothing tilec stores.
      if (!layer || (*layer >= 0 && *layer < int64_t(mlp.size()) &&
                     mlp[*layer] == MlpKind::Dense))
        add(DenseMlp, layer);
    }
  }
  /// Among `applicable` layers: true if all are kept in BF16, false if none;
  /// a partial cover is an error.
  bool covers(Kind kind, const std::vector<int64_t> &applicable,
              const std::string &where, const char *what) const {
    if (everyLayer[kind] || applicable.empty())
      return everyLayer[kind];
    size_t covered = 0;
    for (int64_t l : applicable)
      covered += layers[kind].count(l);
    if (covered != 0 && covered != applicable.size())
      fail("{}: field \"quantization_config.ignored_layers\" (or "
           "\"modules_to_not_convert\") keeps {} in BF16 in {} of its {} "
           "layers; tilec stores one format per kind of weight",
           where, what, covered, applicable.size());
    return covered != 0;
  }
};

QuantPlan parseFp8Plan(const Fields &q, const std::vector<MlpKind> &mlpTypes,
                       bool expertsMxfp4, bool restFp8) {
  const std::string &where = q.where();
  IgnoreCoverage ignore;
  for (const char *key : {"ignored_layers", "modules_to_not_convert"}) {
    if (const json *list = q.array(key))
      for (size_t i = 0; i < list->size(); ++i)
        ignore.addEntry(q.toString((*list)[i], fmt::format("{}[{}]", key, i)),
                        mlpTypes);
  }
  std::vector<int64_t> all, dense, sparse;
  for (int64_t l = 0; l < int64_t(mlpTypes.size()); ++l) {
    all.push_back(l);
    (mlpTypes[l] == MlpKind::Dense ? dense : sparse).push_back(l);
  }
  WeightFormat rest = restFp8 ? WeightFormat::FP8Block : WeightFormat::BF16;
  auto pick = [&](bool kept) { return kept ? WeightFormat::BF16 : rest; };
  bool q_ = ignore.covers(IgnoreCoverage::Q, all, where, "q_proj");
  bool k_ = ignore.covers(IgnoreCoverage::K, all, where, "k_proj");
  bool v_ = ignore.covers(IgnoreCoverage::V, all, where, "v_proj");
  if (q_ != k_ || k_ != v_)
    fail("{}: field \"quantization_config.ignored_layers\" keeps only some of "
         "q_proj, k_proj, v_proj in BF16; tilec stores them in one format",
         where);
  QuantPlan plan;
  plan.attention = pick(q_);
  plan.attentionOut =
      pick(ignore.covers(IgnoreCoverage::O, all, where, "o_proj"));
  plan.denseMlp =
      pick(ignore.covers(IgnoreCoverage::DenseMlp, dense, where, "dense MLPs"));
  bool expertsKept =
      ignore.covers(IgnoreCoverage::Experts, sparse, where, "experts");
  plan.experts = expertsKept    ? WeightFormat::BF16
                 : expertsMxfp4 ? WeightFormat::MXFP4
                                : rest;
  // Hub FP8 checkpoints never quantize lm_head.
  plan.lmHead = WeightFormat::BF16;
  return plan;
}

} // namespace

QuantPlan parseQuantization(const json &qc,
                            const std::vector<MlpKind> &mlpTypes,
                            const std::string &where) {
  if (qc.is_null())
    return {};
  if (!qc.is_object())
    fail("{}: field \"quantization_config\" is {}, expected an object", where,
         describe(qc));
  Fields q(qc, where, "quantization_config.");
  auto method = q.string("quant_method");
  if (!method)
    fail("{}: field \"quantization_config.quant_method\" is missing", where);
  if (*method == "tilec") {
    static const char *const keys[] = {"attention", "attention_out",
                                       "dense_mlp", "experts", "lm_head"};
    for (auto it = qc.begin(); it != qc.end(); ++it) {
      bool known = it.key() == "quant_method";
      for (const char *k : keys)
        known |= it.key() == k;
      if (!known)
        fail("{}: field \"quantization_config.{}\" is not part of tilec's "
             "scheme (attention, attention_out, dense_mlp, experts, lm_head)",
             where, it.key());
    }
    auto format = [&](const char *key) {
      auto name = q.string(key);
      if (!name)
        return WeightFormat::BF16;
      auto f = parseWeightFormat(*name);
      if (!f)
        fail("{}: field \"quantization_config.{}\" is \"{}\", expected "
             "\"bf16\", \"fp8_block\" or \"mxfp4\"",
             where, key, *name);
      return *f;
    };
    QuantPlan plan;
    plan.attention = format("attention");
    plan.attentionOut = format("attention_out");
    plan.denseMlp = format("dense_mlp");
    plan.experts = format("experts");
    plan.lmHead = format("lm_head");
    return plan;
  }
  if (*method == "fp8") {
    if (auto fmt_ = q.string("fmt"); fmt_ && *fmt_ != "e4m3")
      fail("{}: field \"quantization_config.fmt\" is \"{}\", expected \"e4m3\"",
           where, *fmt_);
    if (auto act = q.string("activation_scheme"); act && *act != "dynamic")
      fail("{}: field \"quantization_config.activation_scheme\" is \"{}\", "
           "expected \"dynamic\" (weights-only FP8)",
           where, *act);
    if (const json *block = q.array("weight_block_size")) {
      bool ok = block->size() == 2;
      for (size_t i = 0; ok && i < 2; ++i)
        ok = q.toInteger((*block)[i],
                         fmt::format("weight_block_size[{}]", i)) == 128;
      if (!ok)
        fail("{}: field \"quantization_config.weight_block_size\" must be "
             "[128, 128]",
             where);
    }
    bool expertsMxfp4 = false;
    if (auto store = q.string("store_dtype")) {
      if (*store != "mxfp4")
        fail("{}: field \"quantization_config.store_dtype\" is \"{}\", "
             "expected \"mxfp4\"",
             where, *store);
      expertsMxfp4 = true;
      if (int64_t b = q.integer("mxfp4_block_size", 32); b != 32)
        fail("{}: field \"quantization_config.mxfp4_block_size\" is {}, "
             "expected 32",
             where, b);
    }
    return parseFp8Plan(q, mlpTypes, expertsMxfp4, /*restFp8=*/true);
  }
  if (*method == "mxfp4")
    return parseFp8Plan(q, mlpTypes, /*expertsMxfp4=*/true, /*restFp8=*/false);
  fail("{}: field \"quantization_config.quant_method\" is \"{}\", expected "
       "\"fp8\", \"mxfp4\" or \"tilec\"",
       where, *method);
}

json toQuantizationJson(const QuantPlan &plan) {
  if (plan.allBF16())
    return nullptr;
  return json{{"quant_method", "tilec"},
              {"attention", weightFormatName(plan.attention)},
              {"attention_out", weightFormatName(plan.attentionOut)},
              {"dense_mlp", weightFormatName(plan.denseMlp)},
              {"experts", weightFormatName(plan.experts)},
              {"lm_head", weightFormatName(plan.lmHead)}};
}

//===--- Target
//------------------------------------------------------------===//

namespace {

void readRope(const Fields &f, TargetConfig &c) {
  if (const json *rp = f.object("rope_parameters")) {
    // transformers keys rope_parameters by layer type; a flat dict would make
    // transformers fail with a KeyError, so say what is expected instead.
    for (auto it = rp->begin(); it != rp->end(); ++it)
      if (!attentionKindFromName(it.key()))
        fail("{}: field \"rope_parameters.{}\" is not a layer type; expected "
             "one entry per layer type (\"full_attention\", "
             "\"sliding_attention\")",
             f.where(), it.key());
    for (AttentionKind kind : {AttentionKind::Full, AttentionKind::Sliding}) {
      const char *name = attentionKindName(kind);
      AttentionSpec &spec = kind == AttentionKind::Full ? c.full : c.sliding;
      Fields rope(*rp, f.where(), "rope_parameters.");
      const json *entry = rope.object(name);
      if (!entry) {
        if (c.hasLayerOfKind(kind))
          fail("{}: field \"rope_parameters.{}\" is missing but layer_types "
               "uses it",
               f.where(), name);
        spec.ropeTheta = kind == AttentionKind::Full ? kDefaultFullTheta
                                                     : kDefaultSlidingTheta;
        spec.partialRotaryFactor = kDefaultPartialRotary;
        continue;
      }
      Fields e(*entry, f.where(), fmt::format("rope_parameters.{}.", name));
      checkRopeType(e, "rope_type");
      if (!e.present("rope_theta"))
        fail("{}: field \"rope_parameters.{}.rope_theta\" is missing",
             f.where(), name);
      spec.ropeTheta = e.number("rope_theta", 0);
      spec.partialRotaryFactor =
          e.number("partial_rotary_factor", kDefaultPartialRotary);
    }
    return;
  }
  checkNoRopeScaling(f);
  c.full.ropeTheta = f.number("rope_theta", kDefaultFullTheta);
  c.sliding.ropeTheta = f.number("swa_rope_theta", kDefaultSlidingTheta);
  double factor = f.number("partial_rotary_factor", kDefaultPartialRotary);
  c.full.partialRotaryFactor = c.sliding.partialRotaryFactor = factor;
}

} // namespace

TargetConfig parseTargetConfig(const json &j, const std::string &where) {
  if (!j.is_object())
    fail("{}: expected a JSON object, got {}", where, describe(j));
  Fields f(j, where);
  if (auto type = f.string("model_type");
      type && *type != "mimo_v2_flash" && *type != "mimo_v2")
    fail("{}: field \"model_type\" is \"{}\", expected \"mimo_v2_flash\" (or "
         "the hub's \"mimo_v2\")",
         where, *type);
  checkActivationAndBias(f);

  TargetConfig c;
  c.vocabSize = f.integer("vocab_size", kDefaultVocab);
  c.hiddenSize = f.integer("hidden_size", kDefaultHidden);
  c.intermediateSize = f.integer("intermediate_size", kDefaultIntermediate);
  c.numLayers = f.integer("num_hidden_layers", kDefaultLayers);
  // Checked here, not only in validate(): the default layer patterns below
  // allocate one entry per layer.
  if (c.numLayers < 1 || c.numLayers > kMaxConfigLayers)
    fail("{}: field \"num_hidden_layers\" ({}) is out of range, expected "
         "1..{}",
         where, c.numLayers, kMaxConfigLayers);

  // Layer kinds: transformers' names or the hub's 0/1 patterns.
  auto types = readKindNames<AttentionKind>(
      f, "layer_types", c.numLayers, attentionKindFromName,
      "\"full_attention\" or \"sliding_attention\"");
  auto pattern =
      readPattern(f, "hybrid_layer_pattern", c.numLayers, AttentionKind::Full,
                  AttentionKind::Sliding, "0 full attention, 1 sliding window");
  if (types && pattern)
    requireEqual(f, "layer_types", "hybrid_layer_pattern", *types == *pattern);
  if (types || pattern) {
    c.layerTypes = types ? *types : *pattern;
  } else {
    for (int64_t i = 0; i < c.numLayers; ++i)
      c.layerTypes.push_back(i == 0 || (i + 1) % 6 == 0
                                 ? AttentionKind::Full
                                 : AttentionKind::Sliding);
  }
  auto mlps =
      readKindNames<MlpKind>(f, "mlp_layer_types", c.numLayers, mlpKindFromName,
                             "\"dense\" or \"sparse\"");
  auto freq = readPattern(f, "moe_layer_freq", c.numLayers, MlpKind::Dense,
                          MlpKind::Sparse, "0 dense MLP, 1 MoE");
  if (mlps && freq)
    requireEqual(f, "mlp_layer_types", "moe_layer_freq", *mlps == *freq);
  if (mlps || freq) {
    c.mlpTypes = mlps ? *mlps : *freq;
  } else {
    c.mlpTypes.assign(c.numLayers, MlpKind::Sparse);
    c.mlpTypes[0] = MlpKind::Dense;
  }

  // Attention per layer type. Explicit swa_* fields win over transformers'
  // rules (sliding layers: same q heads and dims, 2 x kv heads).
  c.full.numHeads = f.integer("num_attention_heads", kDefaultHeads);
  c.full.numKvHeads = f.integer("num_key_value_heads", kDefaultKvHeads);
  c.full.headDim = f.integer("head_dim", kDefaultHeadDim);
  c.full.vHeadDim = f.integer("v_head_dim", kDefaultVHeadDim);
  c.sliding.numHeads = f.integer("swa_num_attention_heads", c.full.numHeads);
  int64_t derivedKv =
      c.full.numKvHeads > 0 && c.full.numKvHeads <= kMaxConfigHeads
          ? 2 * c.full.numKvHeads
          : c.full.numKvHeads;
  c.sliding.numKvHeads = f.integer("swa_num_key_value_heads", derivedKv);
  c.sliding.headDim = f.integer("swa_head_dim", c.full.headDim);
  c.sliding.vHeadDim = f.integer("swa_v_head_dim", c.full.vHeadDim);
  readRope(f, c);
  for (AttentionSpec *spec : {&c.full, &c.sliding})
    spec->rotaryDim = rotaryDimOf(spec->headDim, spec->partialRotaryFactor);

  c.full.window = 0;
  int64_t window = f.integer("sliding_window", kDefaultWindow);
  if (f.has("sliding_window") && f.has("sliding_window_size"))
    requireEqual(f, "sliding_window", "sliding_window_size",
                 window == f.integer("sliding_window_size", 0));
  c.sliding.window = f.integer("sliding_window_size", window);
  c.full.hasSinks = f.boolean("add_full_attention_sink_bias", false);
  c.sliding.hasSinks = f.boolean("add_swa_attention_sink_bias", true);

  // transformers: None means "do not scale".
  if (f.has("attention_value_scale"))
    c.attentionValueScale =
        f.nullableNumber("attention_value_scale").value_or(1.0);
  else
    c.attentionValueScale = kDefaultValueScale;

  c.rmsNormEps = f.number("rms_norm_eps", kDefaultEps);
  if (f.has("rms_norm_eps") && f.has("layernorm_epsilon"))
    requireEqual(f, "rms_norm_eps", "layernorm_epsilon",
                 c.rmsNormEps == f.number("layernorm_epsilon", 0));
  c.rmsNormEps = f.number("layernorm_epsilon", c.rmsNormEps);

  // MoE.
  c.numExperts = f.integer("n_routed_experts", kDefaultExperts);
  if (f.has("n_routed_experts") && f.has("num_local_experts"))
    requireEqual(f, "n_routed_experts", "num_local_experts",
                 c.numExperts == f.integer("num_local_experts", 0));
  c.numExperts = f.integer("num_local_experts", c.numExperts);
  c.topK = f.integer("num_experts_per_tok", kDefaultTopK);
  c.moeIntermediateSize =
      f.integer("moe_intermediate_size", kDefaultMoeIntermediate);
  c.nGroup = f.integer("n_group", 1);
  c.topkGroup = f.integer("topk_group", 1);
  c.normTopkProb = f.boolean("norm_topk_prob", true);
  // The hub stores routed_scaling_factor as null, meaning 1.
  c.routedScalingFactor =
      f.nullableNumber("routed_scaling_factor").value_or(1.0);
  if (auto scoring = f.string("scoring_func"); scoring && *scoring != "sigmoid")
    fail("{}: field \"scoring_func\" is \"{}\", expected \"sigmoid\"", where,
         *scoring);
  if (auto method = f.string("topk_method"); method && *method != "noaux_tc")
    fail("{}: field \"topk_method\" is \"{}\", expected \"noaux_tc\" (sigmoid "
         "scores with e_score_correction_bias)",
         where, *method);
  if (auto shared = f.nullableInteger("n_shared_experts"); shared && *shared)
    fail("{}: field \"n_shared_experts\" is {}; shared experts are not "
         "supported",
         where, *shared);

  c.maxPositionEmbeddings =
      f.integer("max_position_embeddings", kDefaultMaxPositions);
  c.bosTokenId = f.has("bos_token_id")
                     ? f.nullableInteger("bos_token_id").value_or(-1)
                     : kDefaultBos;
  if (const json *eos = f.find("eos_token_id"); eos && !eos->is_null()) {
    if (eos->is_array())
      c.eosTokenIds = readIntegerList(f, *eos, "eos_token_id");
    else
      c.eosTokenIds = {f.toInteger(*eos, "eos_token_id")};
  }
  c.tieWordEmbeddings = f.boolean("tie_word_embeddings", false);
  if (const json *qc = f.find("quantization_config"))
    c.quant = parseQuantization(*qc, c.mlpTypes, where);
  return c;
}

namespace {

json eosJson(const std::vector<int64_t> &eos) {
  if (eos.empty())
    return nullptr;
  if (eos.size() == 1)
    return eos[0];
  return eos;
}

json commonTargetJson(const TargetConfig &c, const HfJsonOptions &options) {
  json j;
  j["architectures"] = {"MiMoV2FlashForCausalLM"};
  j["model_type"] = "mimo_v2_flash";
  j["vocab_size"] = c.vocabSize;
  j["hidden_size"] = c.hiddenSize;
  j["intermediate_size"] = c.intermediateSize;
  j["num_hidden_layers"] = c.numLayers;
  j["num_attention_heads"] = c.full.numHeads;
  j["num_key_value_heads"] = c.full.numKvHeads;
  j["head_dim"] = c.full.headDim;
  j["v_head_dim"] = c.full.vHeadDim;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["max_position_embeddings"] = c.maxPositionEmbeddings;
  j["attention_value_scale"] = c.attentionValueScale;
  j["n_routed_experts"] = c.numExperts;
  j["num_experts_per_tok"] = c.topK;
  j["moe_intermediate_size"] = c.moeIntermediateSize;
  j["n_group"] = c.nGroup;
  j["topk_group"] = c.topkGroup;
  j["norm_topk_prob"] = c.normTopkProb;
  j["routed_scaling_factor"] = c.routedScalingFactor;
  j["bos_token_id"] = c.bosTokenId < 0 ? json(nullptr) : json(c.bosTokenId);
  j["eos_token_id"] = eosJson(c.eosTokenIds);
  j["pad_token_id"] = nullptr;
  j["tie_word_embeddings"] = c.tieWordEmbeddings;
  j["dtype"] = options.dtype;
  if (options.withQuantization && !c.quant.allBF16())
    j["quantization_config"] = toQuantizationJson(c.quant);
  return j;
}

[[noreturn]] void cannotExpress(const TargetConfig &c, const char *format,
                                const std::string &why) {
  fail("{}: {} cannot express this config: {}",
       c.name.empty() ? "config" : c.name, format, why);
}

} // namespace

json toHfJson(const TargetConfig &c, const HfJsonOptions &options) {
  const char *tf = "transformers' MiMoV2FlashConfig";
  if (c.sliding.numHeads != c.full.numHeads)
    cannotExpress(
        c, tf,
        fmt::format("sliding layers have {} query heads, full "
                    "layers {} (it uses num_attention_heads for both)",
                    c.sliding.numHeads, c.full.numHeads));
  if (c.full.numKvHeads > kMaxConfigHeads ||
      c.sliding.numKvHeads != 2 * c.full.numKvHeads)
    cannotExpress(c, tf,
                  fmt::format("sliding layers have {} kv heads; it derives 2 x "
                              "num_key_value_heads (2 x {})",
                              c.sliding.numKvHeads, c.full.numKvHeads));
  if (c.sliding.headDim != c.full.headDim ||
      c.sliding.vHeadDim != c.full.vHeadDim)
    cannotExpress(c, tf, "head_dim / v_head_dim differ between layer types");
  if (c.full.hasSinks || !c.sliding.hasSinks)
    cannotExpress(c, tf,
                  "it puts attention sinks on every sliding layer and on no "
                  "full layer");
  json j = commonTargetJson(c, options);
  j["rms_norm_eps"] = c.rmsNormEps;
  j["sliding_window"] = c.sliding.window;
  json types = json::array(), mlps = json::array();
  for (AttentionKind k : c.layerTypes)
    types.push_back(attentionKindName(k));
  for (MlpKind k : c.mlpTypes)
    mlps.push_back(mlpKindName(k));
  j["layer_types"] = types;
  j["mlp_layer_types"] = mlps;
  json rope;
  for (const auto &[kind, spec] :
       {std::pair{AttentionKind::Full, &c.full},
        std::pair{AttentionKind::Sliding, &c.sliding}})
    rope[attentionKindName(kind)] = {
        {"rope_type", "default"},
        {"rope_theta", spec->ropeTheta},
        {"partial_rotary_factor", spec->partialRotaryFactor}};
  j["rope_parameters"] = rope;
  return j;
}

json toHubJson(const TargetConfig &c, const HfJsonOptions &options) {
  if (c.full.partialRotaryFactor != c.sliding.partialRotaryFactor)
    cannotExpress(c, "the hub spelling",
                  "its one partial_rotary_factor serves both layer types");
  json j = commonTargetJson(c, options);
  j["swa_num_attention_heads"] = c.sliding.numHeads;
  j["swa_num_key_value_heads"] = c.sliding.numKvHeads;
  j["swa_head_dim"] = c.sliding.headDim;
  j["swa_v_head_dim"] = c.sliding.vHeadDim;
  j["rope_theta"] = c.full.ropeTheta;
  j["swa_rope_theta"] = c.sliding.ropeTheta;
  j["partial_rotary_factor"] = c.full.partialRotaryFactor;
  j["sliding_window"] = c.sliding.window;
  j["sliding_window_size"] = c.sliding.window;
  j["add_full_attention_sink_bias"] = c.full.hasSinks;
  j["add_swa_attention_sink_bias"] = c.sliding.hasSinks;
  j["layernorm_epsilon"] = c.rmsNormEps;
  j["scoring_func"] = "sigmoid";
  j["topk_method"] = "noaux_tc";
  json pattern = json::array(), freq = json::array();
  for (AttentionKind k : c.layerTypes)
    pattern.push_back(k == AttentionKind::Sliding ? 1 : 0);
  for (MlpKind k : c.mlpTypes)
    freq.push_back(k == MlpKind::Sparse ? 1 : 0);
  j["hybrid_layer_pattern"] = pattern;
  j["moe_layer_freq"] = freq;
  return j;
}

//===--- Drafter
//-----------------------------------------------------------===//

DrafterConfig parseDrafterConfig(const json &j, const TargetConfig &target,
                                 const std::string &where) {
  if (!j.is_object())
    fail("{}: expected a JSON object, got {}", where, describe(j));
  Fields top(j, where);
  static const json kEmpty = json::object();
  const json *dflashJson = top.object("dflash_config");
  Fields dflash(dflashJson ? *dflashJson : kEmpty, where, "dflash_config.");
  // The reference's _draft_value: a key in dflash_config wins over the same
  // key at the top level (even when its value is null).
  auto draft = [&](const std::string &key) -> const Fields & {
    return dflash.has(key) ? dflash : top;
  };

  if (auto type = top.string("model_type"); type && *type != "qwen3")
    fail("{}: field \"model_type\" is \"{}\", expected \"qwen3\" (DFlash "
         "drafters are Qwen3 configs)",
         where, *type);
  checkActivationAndBias(top);

  // Qwen3Config defaults for absent fields.
  DrafterConfig d;
  d.hiddenSize = top.integer("hidden_size", 4096);
  d.numLayers = top.integer("num_hidden_layers", 32);
  if (d.numLayers < 1 || d.numLayers > kMaxConfigLayers)
    fail("{}: field \"num_hidden_layers\" ({}) is out of range, expected "
         "1..{}",
         where, d.numLayers, kMaxConfigLayers);
  d.numHeads = top.integer("num_attention_heads", 32);
  d.numKvHeads =
      top.has("num_key_value_heads")
          ? top.nullableInteger("num_key_value_heads").value_or(d.numHeads)
          : 32;
  d.headDim = top.integer("head_dim", 128);
  if (top.present("v_head_dim") && top.integer("v_head_dim", 0) != d.headDim)
    fail("{}: field \"v_head_dim\" ({}) differs from \"head_dim\" ({}); the "
         "drafter's values use head_dim",
         where, top.integer("v_head_dim", 0), d.headDim);
  d.intermediateSize = top.integer("intermediate_size", 22016);
  d.rmsNormEps = top.number("rms_norm_eps", 1e-6);

  // RoPE: transformers 5 rope_parameters, else the legacy flat fields.
  std::optional<double> ropeFactor;
  if (const json *rp = top.object("rope_parameters")) {
    Fields rope(*rp, where, "rope_parameters.");
    checkRopeType(rope, "rope_type");
    d.ropeTheta = rope.number("rope_theta", 10000.0);
    ropeFactor = rope.nullableNumber("partial_rotary_factor");
  } else {
    checkNoRopeScaling(top);
    d.ropeTheta = top.number("rope_theta", 10000.0);
  }
  if (!ropeFactor)
    ropeFactor = top.nullableNumber("partial_rotary_factor");
  d.partialRotaryFactor = ropeFactor.value_or(1.0);
  d.rotaryDim = rotaryDimOf(d.headDim, d.partialRotaryFactor);

  // Layer kinds and the window. Qwen3Config drops sliding_window unless
  // use_sliding_window; MiMo's drafter instead says dflash_config.use_swa.
  bool useSlidingWindow = top.boolean("use_sliding_window", false);
  std::optional<int64_t> slidingWindow =
      top.has("sliding_window") ? top.nullableInteger("sliding_window")
                                : std::optional<int64_t>(4096);
  std::optional<int64_t> swaWindow = dflash.nullableInteger("swa_window_size");
  bool useSwa = dflash.boolean("use_swa", false);
  if (useSwa && swaWindow && top.present("sliding_window"))
    requireEqual(top, "dflash_config.swa_window_size", "sliding_window",
                 *swaWindow == *slidingWindow);
  std::optional<int64_t> window;
  if (useSlidingWindow)
    window = slidingWindow;
  else if (useSwa)
    window = swaWindow ? swaWindow : top.nullableInteger("sliding_window");
  // Layers typed by use_swa are full attention to the reference, which makes
  // them bidirectional; keep that default.
  bool kindsFromUseSwa = false;
  if (auto types = readKindNames<AttentionKind>(
          top, "layer_types", d.numLayers, attentionKindFromName,
          "\"full_attention\" or \"sliding_attention\"")) {
    d.layerTypes = *types;
  } else if (useSwa) {
    d.layerTypes.assign(d.numLayers, AttentionKind::Sliding);
    kindsFromUseSwa = true;
  } else {
    int64_t firstSliding = top.integer("max_window_layers", 28);
    for (int64_t i = 0; i < d.numLayers; ++i)
      d.layerTypes.push_back(useSlidingWindow && window && i >= firstSliding
                                 ? AttentionKind::Sliding
                                 : AttentionKind::Full);
  }
  if (d.hasLayerOfKind(AttentionKind::Sliding)) {
    if (!window)
      fail("{}: field \"layer_types\" has sliding_attention layers but no "
           "window applies: set \"use_sliding_window\": true and "
           "\"sliding_window\" (Qwen3Config ignores sliding_window otherwise)",
           where);
    d.slidingWindow = *window;
  }
  std::optional<bool> isCausal = top.nullableBoolean("is_causal");
  for (AttentionKind kind : d.layerTypes)
    d.causal.push_back(isCausal ? *isCausal
                                : !kindsFromUseSwa &&
                                      kind == AttentionKind::Sliding);

  // dflash_config (or the top level).
  const json *taps = draft("target_layer_ids").array("target_layer_ids");
  if (!taps)
    fail("{}: field \"dflash_config.target_layer_ids\" is missing", where);
  d.targetLayerIds =
      readIntegerList(draft("target_layer_ids"), *taps,
                      draft("target_layer_ids").path("target_layer_ids"));
  d.blockSize = draft("block_size").integer("block_size", 16);
  auto mask = draft("mask_token_id").nullableInteger("mask_token_id");
  if (!mask)
    fail("{}: field \"dflash_config.mask_token_id\" is missing", where);
  d.maskTokenId = *mask;
  d.inputEmbeddingScale = draft("input_embedding_scale")
                              .nullableNumber("input_embedding_scale")
                              .value_or(1.0);
  d.outputMultiplier = draft("output_multiplier")
                           .nullableNumber("output_multiplier")
                           .value_or(1.0);
  d.finalLogitSoftcapping = draft("final_logit_softcapping")
                                .nullableNumber("final_logit_softcapping")
                                .value_or(0.0);
  d.attentionValueScale = draft("attention_value_scale")
                              .nullableNumber("attention_value_scale")
                              .value_or(1.0);
  d.hasSinks = draft("attention_sink_bias")
                   .nullableBoolean("attention_sink_bias")
                   .value_or(false);

  // Fields that describe the target must describe this one.
  const Fields &layersField = draft("num_target_layers");
  if (auto n = layersField.nullableInteger("num_target_layers");
      n && *n != target.numLayers)
    fail("{}: field \"{}\" ({}) differs from the target's num_hidden_layers "
         "({})",
         where, layersField.path("num_target_layers"), *n, target.numLayers);
  const Fields &hiddenField = draft("target_hidden_size");
  if (auto h = hiddenField.nullableInteger("target_hidden_size");
      h && *h != target.hiddenSize)
    fail("{}: field \"{}\" ({}) differs from the target's hidden_size ({})",
         where, hiddenField.path("target_hidden_size"), *h, target.hiddenSize);

  if (const json *qc = top.find("quantization_config"))
    d.quant = parseQuantization(
        *qc, std::vector<MlpKind>(d.numLayers, MlpKind::Dense), where);
  return d;
}

json toDrafterJson(const DrafterConfig &d, const TargetConfig &target,
                   const HfJsonOptions &options) {
  // The reference derives causality from the layer type unless one global
  // is_causal overrides it.
  bool isDefault = true, allSame = true;
  for (size_t i = 0; i < d.causal.size(); ++i) {
    isDefault &= i < d.layerTypes.size() &&
                 d.causal[i] == (d.layerTypes[i] == AttentionKind::Sliding);
    allSame &= d.causal[i] == d.causal[0];
  }
  if (!isDefault && !allSame)
    fail("{}: the DFlash reference format cannot express this drafter's "
         "per-layer causality (only sliding layers causal, or one is_causal "
         "for all layers)",
         target.name.empty() ? "drafter" : target.name + " drafter");

  json j;
  j["architectures"] = {"DFlashDraftModel"};
  j["model_type"] = "qwen3";
  j["hidden_size"] = d.hiddenSize;
  j["intermediate_size"] = d.intermediateSize;
  j["num_hidden_layers"] = d.numLayers;
  j["num_attention_heads"] = d.numHeads;
  j["num_key_value_heads"] = d.numKvHeads;
  j["head_dim"] = d.headDim;
  j["rms_norm_eps"] = d.rmsNormEps;
  json rope = {{"rope_type", "default"}, {"rope_theta", d.ropeTheta}};
  if (d.partialRotaryFactor != 1.0)
    rope["partial_rotary_factor"] = d.partialRotaryFactor;
  j["rope_parameters"] = rope;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  json types = json::array();
  for (AttentionKind k : d.layerTypes)
    types.push_back(attentionKindName(k));
  j["layer_types"] = types;
  bool sliding = d.hasLayerOfKind(AttentionKind::Sliding);
  j["use_sliding_window"] = sliding;
  j["sliding_window"] = sliding ? json(d.slidingWindow) : json(nullptr);
  if (!isDefault)
    j["is_causal"] = d.causal.empty() ? false : bool(d.causal[0]);
  j["vocab_size"] = target.vocabSize;
  j["num_target_layers"] = target.numLayers;
  j["max_position_embeddings"] = target.maxPositionEmbeddings;
  j["tie_word_embeddings"] = false;
  j["use_cache"] = true;
  j["dtype"] = options.dtype;
  json dflash = {{"target_layer_ids", d.targetLayerIds},
                 {"block_size", d.blockSize},
                 {"mask_token_id", d.maskTokenId},
                 {"input_embedding_scale", d.inputEmbeddingScale},
                 {"output_multiplier", d.outputMultiplier},
                 {"final_logit_softcapping", d.finalLogitSoftcapping > 0
                                                 ? json(d.finalLogitSoftcapping)
                                                 : json(nullptr)}};
  // MiMo's extensions, written only when used so that reference drafters keep
  // the reference's keys.
  if (d.attentionValueScale != 1.0)
    dflash["attention_value_scale"] = d.attentionValueScale;
  if (d.hasSinks)
    dflash["attention_sink_bias"] = true;
  j["dflash_config"] = dflash;
  if (options.withQuantization && !d.quant.allBF16())
    j["quantization_config"] = toQuantizationJson(d.quant);
  return j;
}

std::string drafterConfigTextNoThrow(const DrafterConfig &drafter,
                                     const TargetConfig &target) {
  try {
    return toDrafterJson(drafter, target, HfJsonOptions()).dump(1);
  } catch (const std::exception &) {
    return "";
  }
}

std::string configTextNoThrow(const TargetConfig &config) {
  try {
    return toHubJson(config).dump(1);
  } catch (const std::exception &) {
    return "";
  }
}

} // namespace tilec
