//===- HostEngineBuilder.cpp - Engines built by hand, and the oracle check ===//
#include "HostEngineBuilder.h"

#include "models/core/Formats.h"
#include "models/core/Reference.h"
#include "models/core/Synthetic.h"
#include "models/core/WeightList.h"
#include "runtime/engine/ReferenceCheck.h"
#include "runtime/engine/WeightPacker.h"
#include "runtime/host/HostExecutor.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

namespace tilec {
namespace test {

int64_t f32Word(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return int64_t(bits);
}

std::vector<float> randomValues(uint64_t seed, int64_t n, float scale) {
  std::vector<float> out(static_cast<size_t>(n));
  uint64_t key = syntheticKey(seed, "test");
  for (int64_t i = 0; i < n; ++i)
    out[size_t(i)] = scale * syntheticUniform(key, uint64_t(i));
  return out;
}

namespace {
int64_t align256(int64_t n) { return (n + 255) / 256 * 256; }
int64_t numel(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}
} // namespace

EngineBuilder::EngineBuilder(int sms, int64_t tokens) {
  m_.modelName = "hand-built";
  m_.function = "target";
  m_.targetName = "host";
  m_.arch = "none";
  m_.sms = sms;
  m_.tokens = tokens;
  m_.smTasks.resize(size_t(sms));
}

int64_t EngineBuilder::buffer(const std::string &name, const std::string &dtype,
                              std::vector<int64_t> shape, int64_t bytes) {
  int64_t offset = align256(m_.arenaBytes);
  m_.buffers.push_back({name, dtype, std::move(shape), offset, bytes});
  m_.arenaBytes = offset + bytes;
  return offset;
}
int64_t EngineBuilder::bf16Buffer(const std::string &name,
                                  std::vector<int64_t> shape) {
  int64_t n = numel(shape);
  return buffer(name, "bf16", std::move(shape), 2 * n);
}
int64_t EngineBuilder::f32Buffer(const std::string &name,
                                 std::vector<int64_t> shape) {
  int64_t n = numel(shape);
  return buffer(name, "f32", std::move(shape), 4 * n);
}
int64_t EngineBuilder::i32Buffer(const std::string &name,
                                 std::vector<int64_t> shape) {
  int64_t n = numel(shape);
  return buffer(name, "i32", std::move(shape), 4 * n);
}

WeightInfo EngineBuilder::layoutWeight(const std::string &name,
                                       const std::string &format,
                                       std::vector<int64_t> shape,
                                       std::vector<std::string> parts) {
  WeightInfo w;
  w.name = name;
  w.format = format;
  w.shape = std::move(shape);
  w.parts = std::move(parts);
  int64_t matrices = w.shape.size() == 3 ? w.shape[0] : 1;
  int64_t rows = w.shape.size() >= 2 ? w.shape[w.shape.size() - 2] : 1;
  int64_t cols = w.shape.back(), n = rows * cols;
  int64_t data = format == "bf16"        ? 2 * n
                 : format == "f32"       ? 4 * n
                 : format == "fp8_block" ? n
                                         : n / 2;
  int64_t scales = format == "fp8_block"
                       ? fp8ScaleDim(rows) * fp8ScaleDim(cols) * 4
                   : format == "mxfp4" ? n / 32
                                       : 0;
  w.offset = align256(m_.weightBytes);
  w.bytes = matrices * data;
  m_.weightBytes = w.offset + w.bytes;
  if (scales > 0) {
    w.scaleOffset = align256(m_.weightBytes);
    w.scaleBytes = matrices * scales;
    m_.weightBytes = w.scaleOffset + w.scaleBytes;
  }
  m_.weights.push_back(w);
  return w;
}

EngineBuilder::Stored EngineBuilder::weight(const std::string &name,
                                            const std::string &format,
                                            std::vector<int64_t> shape,
                                            const std::vector<float> &values) {
  Stored s;
  s.info = layoutWeight(name, format, shape);
  weights_.resize(size_t(m_.weightBytes), 0);
  const WeightInfo &w = s.info;
  int64_t matrices = shape.size() == 3 ? shape[0] : 1;
  int64_t rows = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
  int64_t cols = shape.back(), n = rows * cols;
  s.values.resize(values.size());
  for (int64_t m = 0; m < matrices; ++m) {
    const float *src = values.data() + m * n;
    float *dst = s.values.data() + m * n;
    if (format == "bf16") {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits = f32ToBf16(src[i]);
        std::memcpy(weights_.data() + w.offset + 2 * (m * n + i), &bits, 2);
        dst[i] = bf16ToF32(bits);
      }
    } else if (format == "f32") {
      std::memcpy(weights_.data() + w.offset + 4 * m * n, src, size_t(4 * n));
      std::copy(src, src + n, dst);
    } else if (format == "fp8_block") {
      std::vector<float> scales(
          static_cast<size_t>(fp8ScaleDim(rows) * fp8ScaleDim(cols)));
      uint8_t *q = weights_.data() + w.offset + m * n;
      quantizeFp8Block(src, rows, cols, q, scales.data());
      std::memcpy(weights_.data() + w.scaleOffset +
                      int64_t(m * scales.size() * 4),
                  scales.data(), scales.size() * 4);
      dequantizeFp8Block(q, scales.data(), rows, cols, dst);
    } else {
      uint8_t *q = weights_.data() + w.offset + m * n / 2;
      uint8_t *sc = weights_.data() + w.scaleOffset + m * n / 32;
      quantizeMxfp4(src, rows, cols, q, sc);
      dequantizeMxfp4(q, sc, rows, cols, dst);
    }
  }
  return s;
}

KVCacheInfo EngineBuilder::cache(const std::string &name, int64_t kvHeads,
                                 int64_t qkDim, int64_t vDim, int64_t capacity,
                                 int64_t window) {
  KVCacheInfo c;
  c.name = name;
  c.kvHeads = kvHeads;
  c.qkDim = qkDim;
  c.vDim = vDim;
  c.capacity = capacity;
  c.window = window;
  c.keyOffset = align256(m_.kvBytes);
  c.valueOffset = align256(c.keyOffset + capacity * kvHeads * qkDim * 2);
  m_.kvBytes = c.valueOffset + capacity * kvHeads * vDim * 2;
  m_.caches.push_back(c);
  return c;
}

int64_t EngineBuilder::instance(TilecTaskFamily family,
                                std::map<std::string, int64_t> params) {
  InstanceInfo i;
  i.id = int64_t(m_.instances.size());
  i.family = family;
  i.params = std::move(params);
  i.symbol = "body" + std::to_string(i.id);
  m_.instances.push_back(i);
  return i.id;
}

int64_t EngineBuilder::opId(const std::string &name) {
  for (size_t i = 0; i < m_.ops.size(); ++i)
    if (m_.ops[i] == name)
      return int64_t(i);
  m_.ops.push_back(name);
  return int64_t(m_.ops.size()) - 1;
}

int64_t EngineBuilder::event(const std::string &name) {
  m_.events.push_back({name, 0});
  return int64_t(m_.events.size()) - 1;
}

Wait EngineBuilder::all(int64_t event) const {
  int64_t n = 0;
  for (const auto &list : m_.smTasks)
    for (const TilecTask &t : list)
      n += t.w[TILEC_W_SIGNAL] == event;
  return {event, n};
}

int64_t EngineBuilder::task(int sm, const std::string &opName, int64_t instance,
                            const TaskArgs &args,
                            const std::vector<Wait> &waits, int64_t signal) {
  TilecTask t;
  for (long long &w : t.w)
    w = -1;
  t.w[TILEC_W_INSTANCE] = instance;
  t.w[TILEC_W_OP] = opId(opName);
  t.w[TILEC_W_FAMILY] = m_.instances[size_t(instance)].family;
  t.w[TILEC_W_COUNT0] = t.w[TILEC_W_COUNT1] = 0;
  if (waits.size() > 2)
    throw std::runtime_error("a task waits for at most two events");
  if (waits.size() > 0) {
    t.w[TILEC_W_WAIT0] = waits[0].event;
    t.w[TILEC_W_COUNT0] = waits[0].count;
  }
  if (waits.size() > 1) {
    t.w[TILEC_W_WAIT1] = waits[1].event;
    t.w[TILEC_W_COUNT1] = waits[1].count;
  }
  t.w[TILEC_W_SIGNAL] = signal;
  for (auto [arg, value] : args)
    t.w[TILEC_W_ARG0 + arg] = value;
  m_.smTasks[size_t(sm)].push_back(t);
  return int64_t(m_.smTasks[size_t(sm)].size()) - 1;
}

int64_t EngineBuilder::op(const std::string &name, int64_t instance,
                          const std::vector<TaskArgs> &tasks,
                          const std::vector<Wait> &waits) {
  int64_t e = event(name);
  for (const TaskArgs &args : tasks)
    task(nextSm(), name, instance, args, waits, e);
  return e;
}

const std::vector<uint8_t> &EngineBuilder::weightBytes() {
  weights_.resize(size_t(align256(m_.weightBytes)), 0);
  return weights_;
}

int EngineBuilder::nextSm() {
  int sm = nextSm_;
  nextSm_ = (nextSm_ + 1) % int(m_.smTasks.size());
  return sm;
}

EngineManifest EngineBuilder::finish() {
  for (EventInfo &e : m_.events)
    e.signalsPerStep = 0;
  for (const auto &list : m_.smTasks)
    for (const TilecTask &t : list)
      if (t.w[TILEC_W_SIGNAL] >= 0)
        ++m_.events[size_t(t.w[TILEC_W_SIGNAL])].signalsPerStep;
  m_.arenaBytes = align256(m_.arenaBytes);
  m_.weightBytes = align256(m_.weightBytes);
  m_.kvBytes = align256(m_.kvBytes);
  weights_.resize(size_t(m_.weightBytes), 0);
  return m_;
}

//===----------------------------------------------------------------------===//
// A whole model
//===----------------------------------------------------------------------===//

namespace {

std::string engineFormat(const WeightSpec &spec) {
  if (spec.role == WeightRole::RouterBias)
    return "f32";
  return weightFormatName(spec.format);
}

int64_t formatCode(WeightFormat f) {
  return f == WeightFormat::BF16       ? TILEC_FMT_BF16
         : f == WeightFormat::FP8Block ? TILEC_FMT_FP8
                                       : TILEC_FMT_MXFP4;
}

/// Row tiles [n0, n1) of `n` rows, `tile` at a time.
std::vector<std::pair<int64_t, int64_t>> tiles(int64_t n, int64_t tile) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t n0 = 0; n0 < n; n0 += tile)
    out.push_back({n0, std::min(n, n0 + tile)});
  return out;
}

} // namespace

EngineManifest buildModelEngine(const Model &model, int64_t T, int sms,
                                int64_t maxContext) {
  const TargetConfig &c = model.target;
  EngineBuilder b(sms, T);
  EngineManifest &m = b.manifest();
  m.modelName = c.name;
  m.modelConfig = toHubJson(c).dump();
  if (model.drafter)
    m.drafterConfig = toDrafterJson(*model.drafter, c).dump();

  // Weights, in the model's formats; a dense MLP's gate and up as one weight
  // of two parts where the scale blocks allow it.
  std::map<std::string, WeightInfo> w;
  std::vector<WeightSpec> specs = modelWeights(model);
  for (size_t i = 0; i < specs.size(); ++i) {
    const WeightSpec &s = specs[i];
    if (s.isDrafter())
      continue;
    bool gate =
        s.name.size() > 20 &&
        s.name.compare(s.name.size() - 20, 20, "mlp.gate_proj.weight") == 0;
    if (gate && (s.format != WeightFormat::FP8Block ||
                 s.shape[0] % kFp8BlockSize == 0)) {
      const WeightSpec &up = specs[i + 1];
      std::string name = s.name.substr(0, s.name.size() - 16) + "gate_up_proj";
      w[name] = b.layoutWeight(name, engineFormat(s),
                               {2 * s.shape[0], s.shape[1]}, {s.name, up.name});
      ++i;
      continue;
    }
    w[s.name] = b.layoutWeight(s.name, engineFormat(s), s.shape);
  }

  const int64_t H = c.hiddenSize, V = c.vocabSize;
  int64_t maxQ = 0, maxAttn = 0;
  for (const AttentionSpec *s : {&c.full, &c.sliding}) {
    maxQ = std::max(maxQ, s->numHeads * s->headDim);
    maxAttn = std::max(maxAttn, s->numHeads * s->vHeadDim);
  }
  int64_t tokens = b.i32Buffer("tokens", {T});
  int64_t positions = b.i32Buffer("positions", {T});
  int64_t x = b.bf16Buffer("x", {T, H});
  int64_t q = b.bf16Buffer("q", {T, maxQ});
  int64_t attn = b.bf16Buffer("attn", {T, maxAttn});
  int64_t act = b.bf16Buffer("act", {T, c.intermediateSize});
  int64_t E = c.numExperts, K = c.topK, I = c.moeIntermediateSize;
  int64_t S = std::min(E, T * K);
  int64_t rlogits = b.f32Buffer("router_logits", {T, E});
  int64_t ids = b.i32Buffer("expert_ids", {T, K});
  int64_t rw = b.f32Buffer("routing_weights", {T, K});
  int64_t plan = b.i32Buffer("plan", {1 + S + S * T});
  int64_t mact = b.bf16Buffer("moe_act", {S, T, I});
  int64_t partial = b.f32Buffer("moe_partial", {T, K, H});
  int64_t logits = b.f32Buffer("logits", {T, V});
  const int64_t lmTile = 128, lmTiles = (V + lmTile - 1) / lmTile;
  int64_t amx =
      b.buffer("argmax_partial", "bytes", {T, lmTiles, 8}, 8 * T * lmTiles);
  int64_t argmax = b.i32Buffer("argmax", {T});
  m.tokensBuffer = "tokens";
  m.positionsBuffer = "positions";
  m.logitsBuffer = "logits";
  m.argmaxBuffer = "argmax";

  auto scaleOf = [&](const WeightInfo &info) { return info.scaleOffset; };
  float eps = float(c.rmsNormEps);

  int64_t embed = b.instance(TILEC_TASK_EMBED, {{"T", T}, {"H", H}, {"V", V}});
  std::vector<TaskArgs> tasks;
  for (auto [c0, c1] : tiles(H, 32))
    tasks.push_back({{TILEC_EMBED_IDS, tokens},
                     {TILEC_EMBED_TABLE, w["model.embed_tokens.weight"].offset},
                     {TILEC_EMBED_OUT, x},
                     {TILEC_EMBED_COL0, c0},
                     {TILEC_EMBED_COL1, c1},
                     {TILEC_EMBED_SCALE, f32Word(1.0f)}});
  int64_t residual = b.op("embed", embed, tasks);

  for (int64_t l = 0; l < c.numLayers; ++l) {
    const AttentionSpec &s = c.attention(l);
    std::string p = "model.layers." + std::to_string(l) + ".";
    std::string a = p + "self_attn.";
    int64_t Hq = s.numHeads, Hkv = s.numKvHeads, D = s.headDim, Dv = s.vHeadDim;
    int64_t capacity = s.window > 0 ? s.window + T : maxContext;
    KVCacheInfo kv =
        b.cache("layer" + std::to_string(l), Hkv, D, Dv, capacity, s.window);
    int64_t fmt = formatCode(c.quant.attention);
    auto linear = [&](int64_t n, int64_t k, int64_t f, int64_t prologue,
                      int64_t epilogue, int64_t tile,
                      std::map<std::string, int64_t> more = {}) {
      std::map<std::string, int64_t> params = {{"T", T},
                                               {"K", k},
                                               {"N", n},
                                               {"tile", tile},
                                               {"format", f},
                                               {"prologue", prologue},
                                               {"epilogue", epilogue}};
      params.insert(more.begin(), more.end());
      return b.instance(TILEC_TASK_LINEAR, params);
    };
    // q, k, v: one op (one event) so that attention waits once.
    const WeightInfo &norm1 = w[p + "input_layernorm.weight"];
    const WeightInfo &wq = w[a + "q_proj.weight"], &wk = w[a + "k_proj.weight"],
                     &wv = w[a + "v_proj.weight"];
    int64_t iq =
        linear(Hq * D, H, fmt, TILEC_PRO_RMSNORM, TILEC_EPI_ROPE_STORE, 2 * D,
               {{"heads", Hq}, {"head_dim", D}, {"rotary_dim", s.rotaryDim}});
    int64_t ik =
        linear(Hkv * D, H, fmt, TILEC_PRO_RMSNORM, TILEC_EPI_ROPE_KCACHE, D,
               {{"heads", Hkv},
                {"head_dim", D},
                {"rotary_dim", s.rotaryDim},
                {"capacity", capacity}});
    int64_t iv =
        linear(Hkv * Dv, H, fmt, TILEC_PRO_RMSNORM, TILEC_EPI_VCACHE, Dv,
               {{"heads", Hkv}, {"head_dim", Dv}, {"capacity", capacity}});
    int64_t qkv = b.event(p + "qkv");
    auto emitLinear = [&](int64_t inst, const WeightInfo &weight, int64_t n,
                          int64_t tile, int64_t out) {
      for (auto [n0, n1] : tiles(n, tile)) {
        b.task(b.nextSm(), p + "qkv", inst,
               {{TILEC_LIN_X, x},
                {TILEC_LIN_W, weight.offset},
                {TILEC_LIN_WSCALE, scaleOf(weight)},
                {TILEC_LIN_N0, n0},
                {TILEC_LIN_N1, n1},
                {TILEC_LIN_OUT, out},
                {TILEC_LIN_NORM_W, norm1.offset},
                {TILEC_LIN_EPS, f32Word(eps)},
                {TILEC_LIN_POS, positions},
                {TILEC_LIN_THETA, f32Word(float(s.ropeTheta))}},
               {b.all(residual)}, qkv);
      }
    };
    emitLinear(iq, wq, Hq * D, 2 * D, q);
    emitLinear(ik, wk, Hkv * D, D, kv.keyOffset);
    emitLinear(iv, wv, Hkv * Dv, Dv, kv.valueOffset);

    int64_t iattn =
        b.instance(TILEC_TASK_ATTENTION, {{"T", T},
                                          {"q_heads", Hq},
                                          {"kv_heads", Hkv},
                                          {"head_dim", D},
                                          {"v_dim", Dv},
                                          {"window", s.window},
                                          {"capacity", capacity},
                                          {"sinks", s.hasSinks ? 1 : 0}});
    tasks.clear();
    for (int64_t g = 0; g < Hkv; ++g)
      tasks.push_back(
          {{TILEC_ATT_Q, q},
           {TILEC_ATT_KCACHE, kv.keyOffset},
           {TILEC_ATT_VCACHE, kv.valueOffset},
           {TILEC_ATT_POS, positions},
           {TILEC_ATT_OUT, attn},
           {TILEC_ATT_KV_HEAD, g},
           {TILEC_ATT_SINKS,
            s.hasSinks ? w[a + "attention_sink_bias"].offset : -1},
           {TILEC_ATT_SCALE, f32Word(float(1.0 / std::sqrt(double(D))))},
           {TILEC_ATT_VSCALE, f32Word(float(c.attentionValueScale))},
           {TILEC_ATT_ROW0, 0},
           {TILEC_ATT_ROW1, T * (Hq / Hkv)}});
    int64_t attnEvent = b.op(p + "attention", iattn, tasks, {b.all(qkv)});

    const WeightInfo &wo = w[a + "o_proj.weight"];
    int64_t io = linear(H, Hq * Dv, formatCode(c.quant.attentionOut),
                        TILEC_PRO_NONE, TILEC_EPI_RESIDUAL, 16);
    tasks.clear();
    for (auto [n0, n1] : tiles(H, 16))
      tasks.push_back({{TILEC_LIN_X, attn},
                       {TILEC_LIN_W, wo.offset},
                       {TILEC_LIN_WSCALE, scaleOf(wo)},
                       {TILEC_LIN_N0, n0},
                       {TILEC_LIN_N1, n1},
                       {TILEC_LIN_OUT, x},
                       {TILEC_LIN_RESIDUAL, x}});
    residual = b.op(p + "o_proj", io, tasks, {b.all(attnEvent)});

    const WeightInfo &norm2 = w[p + "post_attention_layernorm.weight"];
    std::string mp = p + "mlp.";
    if (c.mlpTypes[size_t(l)] == MlpKind::Dense) {
      int64_t Id = c.intermediateSize, f = formatCode(c.quant.denseMlp);
      int64_t gW, gS, uW, uS;
      if (w.count(mp + "gate_up_proj")) {
        const WeightInfo &gu = w[mp + "gate_up_proj"];
        gW = gu.offset;
        gS = gu.scaleOffset;
        int64_t half = gu.bytes / 2;
        uW = gu.offset + half;
        uS = gu.scaleBytes ? gu.scaleOffset + gu.scaleBytes / 2 : -1;
      } else {
        const WeightInfo &g = w[mp + "gate_proj.weight"],
                         &u = w[mp + "up_proj.weight"];
        gW = g.offset;
        gS = g.scaleOffset;
        uW = u.offset;
        uS = u.scaleOffset;
      }
      int64_t igu =
          linear(Id, H, f, TILEC_PRO_RMSNORM, TILEC_EPI_SILU_PAIR, 32);
      tasks.clear();
      for (auto [n0, n1] : tiles(Id, 32))
        tasks.push_back({{TILEC_LIN_X, x},
                         {TILEC_LIN_W, gW},
                         {TILEC_LIN_WSCALE, gS},
                         {TILEC_LIN_W2, uW},
                         {TILEC_LIN_W2SCALE, uS},
                         {TILEC_LIN_N0, n0},
                         {TILEC_LIN_N1, n1},
                         {TILEC_LIN_OUT, act},
                         {TILEC_LIN_NORM_W, norm2.offset},
                         {TILEC_LIN_EPS, f32Word(eps)}});
      int64_t gu = b.op(mp + "gate_up", igu, tasks, {b.all(residual)});
      const WeightInfo &wd = w[mp + "down_proj.weight"];
      int64_t id = linear(H, Id, f, TILEC_PRO_NONE, TILEC_EPI_RESIDUAL, 16);
      tasks.clear();
      for (auto [n0, n1] : tiles(H, 16))
        tasks.push_back({{TILEC_LIN_X, act},
                         {TILEC_LIN_W, wd.offset},
                         {TILEC_LIN_WSCALE, scaleOf(wd)},
                         {TILEC_LIN_N0, n0},
                         {TILEC_LIN_N1, n1},
                         {TILEC_LIN_OUT, x},
                         {TILEC_LIN_RESIDUAL, x}});
      residual = b.op(mp + "down", id, tasks, {b.all(gu)});
      continue;
    }
    // MoE.
    const WeightInfo &gate = w[mp + "gate.weight"];
    int64_t ilog =
        linear(E, H, TILEC_FMT_BF16, TILEC_PRO_RMSNORM, TILEC_EPI_STORE_F32, 8);
    tasks.clear();
    for (auto [n0, n1] : tiles(E, 8))
      tasks.push_back({{TILEC_LIN_X, x},
                       {TILEC_LIN_W, gate.offset},
                       {TILEC_LIN_N0, n0},
                       {TILEC_LIN_N1, n1},
                       {TILEC_LIN_OUT, rlogits},
                       {TILEC_LIN_NORM_W, norm2.offset},
                       {TILEC_LIN_EPS, f32Word(eps)}});
    int64_t lg = b.op(mp + "router_logits", ilog, tasks, {b.all(residual)});
    int64_t irt = b.instance(TILEC_TASK_ROUTER_TOPK,
                             {{"T", T},
                              {"E", E},
                              {"K", K},
                              {"n_group", c.nGroup},
                              {"topk_group", c.topkGroup},
                              {"renorm", c.normTopkProb ? 1 : 0}});
    int64_t rt =
        b.op(mp + "router", irt,
             {{{TILEC_RT_LOGITS, rlogits},
               {TILEC_RT_BIAS, w[mp + "gate.e_score_correction_bias"].offset},
               {TILEC_RT_IDS, ids},
               {TILEC_RT_WEIGHTS, rw},
               {TILEC_RT_PLAN, plan},
               {TILEC_RT_SCALING, f32Word(float(c.routedScalingFactor))}}},
             {b.all(lg)});
    int64_t f = formatCode(c.quant.experts);
    std::map<std::string, int64_t> moeParams = {
        {"T", T}, {"H", H},     {"I", I},     {"E", E},
        {"K", K}, {"slots", S}, {"tile", 32}, {"format", f}};
    int64_t igu = b.instance(TILEC_TASK_MOE_GATE_UP, moeParams);
    int64_t idn = b.instance(TILEC_TASK_MOE_DOWN, moeParams);
    const WeightInfo &wgu = w[mp + "experts.gate_up_proj"],
                     &wdn = w[mp + "experts.down_proj"];
    tasks.clear();
    for (int64_t slot = 0; slot < S; ++slot)
      for (auto [n0, n1] : tiles(I, 32))
        tasks.push_back({{TILEC_MOE_SLOT, slot},
                         {TILEC_MOE_N0, n0},
                         {TILEC_MOE_N1, n1},
                         {TILEC_MOE_X, x},
                         {TILEC_MOE_PLAN, plan},
                         {TILEC_MOE_W, wgu.offset},
                         {TILEC_MOE_WSCALE, wgu.scaleOffset},
                         {TILEC_MOE_OUT, mact},
                         {TILEC_MOE_NORM_W, norm2.offset},
                         {TILEC_MOE_EPS, f32Word(eps)}});
    int64_t gu = b.op(mp + "experts.gate_up", igu, tasks, {b.all(rt)});
    tasks.clear();
    for (int64_t slot = 0; slot < S; ++slot)
      for (auto [n0, n1] : tiles(H, 32))
        tasks.push_back({{TILEC_MOE_SLOT, slot},
                         {TILEC_MOE_N0, n0},
                         {TILEC_MOE_N1, n1},
                         {TILEC_MOE_X, mact},
                         {TILEC_MOE_PLAN, plan},
                         {TILEC_MOE_W, wdn.offset},
                         {TILEC_MOE_WSCALE, wdn.scaleOffset},
                         {TILEC_MOE_OUT, partial},
                         {TILEC_MOE_RWEIGHTS, rw}});
    int64_t dn = b.op(mp + "experts.down", idn, tasks, {b.all(gu)});
    int64_t icb =
        b.instance(TILEC_TASK_MOE_COMBINE, {{"T", T}, {"H", H}, {"K", K}});
    tasks.clear();
    for (auto [n0, n1] : tiles(H, 32))
      tasks.push_back({{TILEC_CMB_PARTIAL, partial},
                       {TILEC_CMB_RESIDUAL, x},
                       {TILEC_CMB_OUT, x},
                       {TILEC_CMB_N0, n0},
                       {TILEC_CMB_N1, n1}});
    residual = b.op(mp + "combine", icb, tasks, {b.all(dn)});
  }

  const WeightInfo &lm = w["lm_head.weight"], &fnorm = w["model.norm.weight"];
  int64_t ilm =
      b.instance(TILEC_TASK_LINEAR, {{"T", T},
                                     {"K", H},
                                     {"N", V},
                                     {"tile", lmTile},
                                     {"format", formatCode(c.quant.lmHead)},
                                     {"prologue", TILEC_PRO_RMSNORM},
                                     {"epilogue", TILEC_EPI_ARGMAX}});
  tasks.clear();
  int64_t index = 0;
  for (auto [n0, n1] : tiles(V, lmTile))
    tasks.push_back({{TILEC_LIN_X, x},
                     {TILEC_LIN_W, lm.offset},
                     {TILEC_LIN_WSCALE, scaleOf(lm)},
                     {TILEC_LIN_N0, n0},
                     {TILEC_LIN_N1, n1},
                     {TILEC_LIN_OUT, logits},
                     {TILEC_LIN_NORM_W, fnorm.offset},
                     {TILEC_LIN_EPS, f32Word(eps)},
                     {TILEC_LIN_PARTIAL, amx},
                     {TILEC_LIN_TILE, index++}});
  int64_t lmEvent = b.op("lm_head", ilm, tasks, {b.all(residual)});
  int64_t iamx =
      b.instance(TILEC_TASK_ARGMAX_REDUCE, {{"T", T}, {"tiles", lmTiles}});
  b.op("argmax", iamx,
       {{{TILEC_AMX_PARTIAL, amx},
         {TILEC_AMX_TILES, lmTiles},
         {TILEC_AMX_OUT, argmax}}},
       {b.all(lmEvent)});
  return b.finish();
}

//===----------------------------------------------------------------------===//
// The oracle check
//===----------------------------------------------------------------------===//

void expectMatchesReference(const EngineManifest &manifest,
                            const OracleCase &oracle) {
  Model model = engineModel(manifest);
  SyntheticWeights weights(model, oracle.weightSeed);
  ReferenceModel::Options options;
  options.roundActivations = true;
  options.roundGateUp = storesGateUp(manifest); // unfused dense MLPs
  ReferenceModel reference(model.target, weights, options);
  std::vector<int32_t> expected =
      reference.generateGreedy(oracle.prompt, oracle.count);
  // The reference's logits for the prompt's last token.
  ReferenceModel again(model.target, weights, options);
  ref::Tensor all = again.forward(oracle.prompt).logits;
  int64_t V = model.target.vocabSize;
  std::vector<float> last(all.data.end() - V, all.data.end());

  std::vector<uint8_t> packed(size_t(manifest.weightBytes));
  packWeights(manifest, WeightSourceSpec::synthetic(oracle.weightSeed),
              packed.data());
  for (uint64_t seed : oracle.interleavingSeeds) {
    SCOPED_TRACE(::testing::Message() << "interleaving seed " << seed);
    HostOptions host;
    host.interleavingSeed = seed;
    host.threads = oracle.threads;
    HostExecutor executor(manifest, packed, host);
    EXPECT_EQ(executor.generateGreedy(oracle.prompt, oracle.count), expected);
    if (manifest.logitsBuffer.empty())
      continue;
    // Prefill again and compare the logits of the prompt's last token.
    const int64_t T = manifest.tokens;
    int64_t P = int64_t(oracle.prompt.size()), pos0 = (P - 1) / T * T;
    executor.reset();
    StepOutput out;
    for (int64_t begin = 0; begin < P; begin += T) {
      std::vector<int32_t> tokens(static_cast<size_t>(T), 0),
          positions(static_cast<size_t>(T));
      for (int64_t i = 0; i < T; ++i) {
        if (begin + i < P)
          tokens[size_t(i)] = oracle.prompt[size_t(begin + i)];
        positions[size_t(i)] = int32_t(begin + i);
      }
      out = executor.step(tokens, positions, /*wantLogits=*/true);
    }
    ASSERT_GE(int64_t(out.logits.size()), T * V);
    double worst = 0;
    for (int64_t v = 0; v < V; ++v)
      worst = std::max(
          worst, double(std::fabs(out.logits[size_t((P - 1 - pos0) * V + v)] -
                                  last[size_t(v)])));
    EXPECT_LE(worst, oracle.logitTolerance);
  }
}

void expectMatchesReference(const std::string &engineDir,
                            const OracleCase &oracle) {
  SCOPED_TRACE(engineDir);
  EngineManifest manifest;
  try {
    manifest = readEngine(engineDir);
  } catch (const Error &e) {
    FAIL() << e.what();
  }
  expectMatchesReference(manifest, oracle);
}

} // namespace test
} // namespace tilec
