//===- WeightList.cpp - Every weight tensor of a model -------------------===//
#include "models/core/WeightList.h"

namespace tilec {

int64_t WeightSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

bool WeightSpec::isDrafter() const {
  return name.rfind(kDrafterPrefix, 0) == 0;
}

namespace {

class Lister {
public:
  explicit Lister(std::vector<WeightSpec> &out) : out(out) {}
  void add(std::string name, std::vector<int64_t> shape, WeightRole role,
           WeightFormat format = WeightFormat::BF16) {
    out.push_back({std::move(name), std::move(shape), format, role});
  }
  void linear(const std::string &name, int64_t outDim, int64_t inDim,
              WeightFormat format) {
    add(name + ".weight", {outDim, inDim}, WeightRole::Linear, format);
  }
  void norm(const std::string &name, int64_t dim) {
    add(name + ".weight", {dim}, WeightRole::Norm);
  }

private:
  std::vector<WeightSpec> &out;
};

void listTarget(const TargetConfig &c, Lister &l) {
  int64_t H = c.hiddenSize;
  l.add("model.embed_tokens.weight", {c.vocabSize, H}, WeightRole::Embedding);
  for (int64_t i = 0; i < c.numLayers; ++i) {
    const AttentionSpec &s = c.attention(i);
    std::string p = "model.layers." + std::to_string(i) + ".";
    std::string a = p + "self_attn.";
    l.norm(p + "input_layernorm", H);
    l.linear(a + "q_proj", s.numHeads * s.headDim, H, c.quant.attention);
    l.linear(a + "k_proj", s.numKvHeads * s.headDim, H, c.quant.attention);
    l.linear(a + "v_proj", s.numKvHeads * s.vHeadDim, H, c.quant.attention);
    if (s.hasSinks)
      l.add(a + "attention_sink_bias", {s.numHeads}, WeightRole::Sinks);
    l.linear(a + "o_proj", H, s.numHeads * s.vHeadDim, c.quant.attentionOut);
    l.norm(p + "post_attention_layernorm", H);
    std::string m = p + "mlp.";
    if (c.mlpTypes[i] == MlpKind::Dense) {
      l.linear(m + "gate_proj", c.intermediateSize, H, c.quant.denseMlp);
      l.linear(m + "up_proj", c.intermediateSize, H, c.quant.denseMlp);
      l.linear(m + "down_proj", H, c.intermediateSize, c.quant.denseMlp);
    } else {
      int64_t E = c.numExperts, I = c.moeIntermediateSize;
      l.add(m + "gate.weight", {E, H}, WeightRole::RouterGate);
      l.add(m + "gate.e_score_correction_bias", {E}, WeightRole::RouterBias);
      l.add(m + "experts.gate_up_proj", {E, 2 * I, H},
            WeightRole::ExpertsGateUp, c.quant.experts);
      l.add(m + "experts.down_proj", {E, H, I}, WeightRole::ExpertsDown,
            c.quant.experts);
    }
  }
  l.norm("model.norm", H);
  l.linear("lm_head", c.vocabSize, H, c.quant.lmHead);
}

void listDrafter(const DrafterConfig &d, Lister &l) {
  const std::string P = kDrafterPrefix;
  int64_t H = d.hiddenSize, taps = int64_t(d.targetLayerIds.size());
  l.linear(P + "fc", H, taps * H, d.quant.denseMlp);
  l.norm(P + "hidden_norm", H);
  for (int64_t i = 0; i < d.numLayers; ++i) {
    std::string p = P + "layers." + std::to_string(i) + ".";
    std::string a = p + "self_attn.";
    l.norm(p + "input_layernorm", H);
    l.linear(a + "q_proj", d.numHeads * d.headDim, H, d.quant.attention);
    l.linear(a + "k_proj", d.numKvHeads * d.headDim, H, d.quant.attention);
    l.linear(a + "v_proj", d.numKvHeads * d.headDim, H, d.quant.attention);
    l.norm(a + "q_norm", d.headDim);
    l.norm(a + "k_norm", d.headDim);
    if (d.hasSinks)
      l.add(a + "attention_sink_bias", {d.numHeads}, WeightRole::Sinks);
    l.linear(a + "o_proj", H, d.numHeads * d.headDim, d.quant.attentionOut);
    l.norm(p + "post_attention_layernorm", H);
    l.linear(p + "mlp.gate_proj", d.intermediateSize, H, d.quant.denseMlp);
    l.linear(p + "mlp.up_proj", d.intermediateSize, H, d.quant.denseMlp);
    l.linear(p + "mlp.down_proj", H, d.intermediateSize, d.quant.denseMlp);
  }
  l.norm(P + "norm", H);
}

} // namespace

std::vector<WeightSpec> modelWeights(const Model &model) {
  std::vector<WeightSpec> out;
  Lister lister(out);
  listTarget(model.target, lister);
  if (model.drafter)
    listDrafter(*model.drafter, lister);
  return out;
}

std::vector<std::string> weightNameAliases(const std::string &name) {
  static const std::string kHub = "attention_sink_bias";
  std::vector<std::string> names{name};
  size_t at = name.rfind(kHub);
  if (at != std::string::npos && at + kHub.size() == name.size())
    names.push_back(name.substr(0, at) + "sinks");
  return names;
}

bool splitExpertName(const std::string &name, std::string &mlp,
                     std::string &which) {
  size_t at = name.rfind(".experts.");
  if (at == std::string::npos)
    return false;
  mlp = name.substr(0, at);
  which = name.substr(at + 9);
  return which == "gate_up_proj" || which == "down_proj";
}

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

} // namespace tilec
