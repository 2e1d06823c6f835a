//===- HostExecutorTest.cpp - The host executor and the weight packer -----===//
//
// Each task family on engines built by hand, against a direct computation of
// docs/engine.md (the reference model's ops on the same values, bit for bit);
// the event checking (missing waits, counts too low, unordered overwrites,
// deadlocks) over many interleavings; the weight packer against the synthetic
// checkpoint writer and checkpoints on disk; and whole models end to end
// against the reference model (engines laid out by buildModelEngine until the
// compiler emits them; TILEC_TEST_ENGINE_DIRS runs compiled ones).
//
//===----------------------------------------------------------------------===//
#include "HostEngineBuilder.h"

#include "models/core/Checkpoint.h"
#include "models/core/CheckpointWeights.h"
#include "models/core/Formats.h"
#include "models/core/Reference.h"
#include "models/core/Safetensors.h"
#include "models/core/Synthetic.h"
#include "models/core/WeightList.h"
#include "runtime/engine/WeightPacker.h"
#include "runtime/host/HostExecutor.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unistd.h>

using namespace tilec;
using namespace tilec::test;
namespace fs = std::filesystem;

namespace {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

fs::path tempDir(const std::string &name) {
  fs::path dir = fs::temp_directory_path() /
                 ("tilec-host-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

float roundBf16(float v) { return bf16ToF32(f32ToBf16(v)); }

std::vector<float> putBf16(HostExecutor &ex, int64_t offset,
                           const std::vector<float> &values) {
  std::vector<float> rounded;
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t bits = f32ToBf16(values[i]);
    std::memcpy(ex.arena().data() + offset + 2 * int64_t(i), &bits, 2);
    rounded.push_back(bf16ToF32(bits));
  }
  return rounded;
}
template <typename T>
void put(HostExecutor &ex, int64_t offset, const std::vector<T> &values) {
  std::memcpy(ex.arena().data() + offset, values.data(),
              values.size() * sizeof(T));
}
std::vector<float> getBf16(const std::vector<uint8_t> &region, int64_t offset,
                           int64_t n) {
  std::vector<float> out;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, region.data() + offset + 2 * i, 2);
    out.push_back(bf16ToF32(bits));
  }
  return out;
}
template <typename T>
std::vector<T> get(const std::vector<uint8_t> &region, int64_t offset,
                   int64_t n) {
  std::vector<T> out(static_cast<size_t>(n));
  std::memcpy(out.data(), region.data() + offset, size_t(n) * sizeof(T));
  return out;
}

ref::Tensor rounded(ref::Tensor t) {
  ref::roundToBf16(t);
  return t;
}

/// Expects equal floats bit for bit (NaN never appears here).
void expectSame(const std::vector<float> &actual,
                const std::vector<float> &expected, const char *what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_EQ(actual[i], expected[i]) << what << " element " << i;
}

int64_t formatCode(const std::string &format) {
  return format == "bf16"        ? TILEC_FMT_BF16
         : format == "fp8_block" ? TILEC_FMT_FP8
                                 : TILEC_FMT_MXFP4;
}

std::vector<float> identity(int64_t n) {
  std::vector<float> out(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    out[size_t(i * n + i)] = 1.0f;
  return out;
}

/// Runs `f` and returns the tilec::Error message it throws ("" if none).
template <typename F> std::string errorOf(F &&f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

//===----------------------------------------------------------------------===//
// EMBED
//===----------------------------------------------------------------------===//

TEST(HostEmbed, ScalesRoundsAndReportsBadIds) {
  const int64_t T = 3, H = 64, V = 10;
  EngineBuilder b(2, T);
  int64_t ids = b.i32Buffer("tokens", {T});
  int64_t pos = b.i32Buffer("positions", {T});
  int64_t out = b.bf16Buffer("out", {T, H});
  auto table = b.weight("table", "bf16", {V, H}, randomValues(1, V * H, 2.0f));
  int64_t inst = b.instance(TILEC_TASK_EMBED, {{"T", T}, {"H", H}, {"V", V}});
  std::vector<TaskArgs> tasks;
  for (int64_t c0 : {0, 24})
    tasks.push_back({{TILEC_EMBED_IDS, ids},
                     {TILEC_EMBED_TABLE, table.info.offset},
                     {TILEC_EMBED_OUT, out},
                     {TILEC_EMBED_COL0, c0},
                     {TILEC_EMBED_COL1, c0 ? H : 24},
                     {TILEC_EMBED_SCALE, f32Word(0.3f)}});
  b.op("embed", inst, tasks);
  EngineManifest m = b.finish();
  m.tokensBuffer = "tokens";
  m.positionsBuffer = "positions";
  (void)pos;
  HostExecutor ex(m, b.weightBytes());
  put(ex, ids, std::vector<int32_t>{3, 10, 7});
  ex.runStep();
  std::vector<float> got = getBf16(ex.arena(), out, T * H);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < H; ++c) {
      int64_t id = t == 0 ? 3 : 7;
      float want =
          t == 1 ? 0.0f : roundBf16(table.values[size_t(id * H + c)] * 0.3f);
      ASSERT_EQ(got[size_t(t * H + c)], want) << t << " " << c;
    }
  EXPECT_EQ(ex.report()[TILEC_REPORT_FLAG], 2);
  // Through step(), a bad id is an error naming the tokens.
  std::string message = errorOf([&] {
    ex.step({1, 2, -4}, std::vector<int32_t>{0, 1, 2});
  });
  EXPECT_NE(message.find("outside the vocabulary (tokens 1,2,-4)"),
            std::string::npos)
      << message;
  EXPECT_NO_THROW(ex.step({1, 2, 9}, std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(ex.report()[TILEC_REPORT_FLAG], 0);
}

//===----------------------------------------------------------------------===//
// LINEAR
//===----------------------------------------------------------------------===//

/// One LINEAR op over three SMs: every format, prologue and plain epilogue.
void checkLinear(const std::string &format, int64_t prologue,
                 int64_t epilogue) {
  SCOPED_TRACE(::testing::Message() << format << " prologue " << prologue
                                    << " epilogue " << epilogue);
  const int64_t T = 3, K = 160, N = 136, tile = 48;
  EngineBuilder b(3, T);
  int64_t x = b.bf16Buffer("x", {T, K});
  int64_t out = epilogue == TILEC_EPI_STORE_F32 ? b.f32Buffer("out", {T, N})
                                                : b.bf16Buffer("out", {T, N});
  float scale = std::sqrt(3.0f / K);
  auto w = b.weight("w", format, {N, K}, randomValues(2, N * K, scale));
  auto w2 = b.weight("w2", format, {N, K}, randomValues(3, N * K, scale));
  std::vector<float> normValues = randomValues(4, K, 0.1f);
  for (float &v : normValues)
    v += 1.0f;
  auto norm = b.weight("norm", "bf16", {K}, normValues);
  int64_t inst = b.instance(TILEC_TASK_LINEAR, {{"T", T},
                                                {"K", K},
                                                {"N", N},
                                                {"tile", tile},
                                                {"format", formatCode(format)},
                                                {"prologue", prologue},
                                                {"epilogue", epilogue}});
  std::vector<TaskArgs> tasks;
  for (int64_t n0 = 0; n0 < N; n0 += tile)
    tasks.push_back({{TILEC_LIN_X, x},
                     {TILEC_LIN_W, w.info.offset},
                     {TILEC_LIN_WSCALE, w.info.scaleOffset},
                     {TILEC_LIN_W2, w2.info.offset},
                     {TILEC_LIN_W2SCALE, w2.info.scaleOffset},
                     {TILEC_LIN_N0, n0},
                     {TILEC_LIN_N1, std::min(N, n0 + tile)},
                     {TILEC_LIN_OUT, out},
                     {TILEC_LIN_RESIDUAL, out}, // RESIDUAL: in place
                     {TILEC_LIN_NORM_W, norm.info.offset},
                     {TILEC_LIN_EPS, f32Word(1e-5f)}});
  b.op("linear", inst, tasks);
  HostExecutor ex(b.finish(), b.weightBytes());
  ref::Tensor xs({T, K}, putBf16(ex, x, randomValues(5, T * K, 2.0f)));
  std::vector<float> residual;
  if (epilogue == TILEC_EPI_RESIDUAL)
    residual = putBf16(ex, out, randomValues(6, T * N, 3.0f));
  ex.runStep();

  if (prologue == TILEC_PRO_RMSNORM)
    xs = ref::rmsNorm(xs, norm.values, double(1e-5f));
  ref::Tensor y = ref::linear(xs, w.values, N);
  std::vector<float> want = y.data;
  switch (epilogue) {
  case TILEC_EPI_STORE_F32:
    expectSame(get<float>(ex.arena(), out, T * N), want, "f32 output");
    return;
  case TILEC_EPI_STORE_BF16:
    break;
  case TILEC_EPI_RESIDUAL:
    for (size_t i = 0; i < want.size(); ++i)
      want[i] = residual[i] + want[i];
    break;
  case TILEC_EPI_SILU_PAIR:
    want = ref::siluMul(y, ref::linear(xs, w2.values, N)).data;
    break;
  }
  for (float &v : want)
    v = roundBf16(v);
  expectSame(getBf16(ex.arena(), out, T * N), want, "bf16 output");
}

TEST(HostLinear, EveryFormatPrologueAndEpilogue) {
  for (const char *format : {"bf16", "fp8_block", "mxfp4"})
    for (int64_t prologue : {TILEC_PRO_NONE, TILEC_PRO_RMSNORM})
      for (int64_t epilogue : {TILEC_EPI_STORE_BF16, TILEC_EPI_STORE_F32,
                               TILEC_EPI_RESIDUAL, TILEC_EPI_SILU_PAIR})
        checkLinear(format, prologue, epilogue);
}

TEST(HostLinear, ArgmaxTilesAndReduceTakeTheFirstMaximum) {
  const int64_t T = 2, K = 32, N = 100, tile = 32, tiles = 4;
  EngineBuilder b(3, T);
  int64_t x = b.bf16Buffer("x", {T, K});
  int64_t logits = b.f32Buffer("logits", {T, N});
  int64_t partial = b.buffer("partial", "bytes", {T, tiles, 8}, 8 * T * tiles);
  int64_t argmax = b.i32Buffer("argmax", {T});
  std::vector<float> wv = randomValues(7, N * K, 0.3f);
  // Rows 5, 6 and 70 are equal and large: ties inside a tile and across.
  for (int64_t k = 0; k < K; ++k)
    wv[size_t(5 * K + k)] = wv[size_t(6 * K + k)] = wv[size_t(70 * K + k)] =
        1.0f;
  auto w = b.weight("lm_head", "bf16", {N, K}, wv);
  int64_t inst =
      b.instance(TILEC_TASK_LINEAR, {{"T", T},
                                     {"K", K},
                                     {"N", N},
                                     {"tile", tile},
                                     {"format", TILEC_FMT_BF16},
                                     {"prologue", TILEC_PRO_NONE},
                                     {"epilogue", TILEC_EPI_ARGMAX}});
  std::vector<TaskArgs> tasks;
  for (int64_t i = 0; i < tiles; ++i)
    tasks.push_back({{TILEC_LIN_X, x},
                     {TILEC_LIN_W, w.info.offset},
                     {TILEC_LIN_N0, i * tile},
                     {TILEC_LIN_N1, std::min(N, (i + 1) * tile)},
                     {TILEC_LIN_OUT, logits},
                     {TILEC_LIN_PARTIAL, partial},
                     {TILEC_LIN_TILE, i}});
  int64_t lm = b.op("lm_head", inst, tasks);
  int64_t reduce =
      b.instance(TILEC_TASK_ARGMAX_REDUCE, {{"T", T}, {"tiles", tiles}});
  b.op("argmax", reduce,
       {{{TILEC_AMX_PARTIAL, partial},
         {TILEC_AMX_TILES, tiles},
         {TILEC_AMX_OUT, argmax}}},
       {b.all(lm)});
  HostExecutor ex(b.finish(), b.weightBytes());
  std::vector<float> xv = randomValues(8, T * K, 1.0f);
  for (int64_t k = 0; k < K; ++k)
    xv[size_t(k)] = std::fabs(xv[size_t(k)]); // token 0: the tie wins
  ref::Tensor xs({T, K}, putBf16(ex, x, xv));
  ex.runStep();
  ref::Tensor y = ref::linear(xs, w.values, N);
  expectSame(get<float>(ex.arena(), logits, T * N), y.data, "logits");
  std::vector<int32_t> got = get<int32_t>(ex.arena(), argmax, T);
  EXPECT_EQ(got, ref::argmax(y));
  EXPECT_EQ(got[0], 5);
}

TEST(HostLinear, RopeStoreKeyCacheAndValueCache) {
  const int64_t T = 3, K = 64, heads = 3, hd = 16, vd = 8, rot = 8, cap = 6;
  const float theta = 10000.0f;
  EngineBuilder b(2, T);
  int64_t x = b.bf16Buffer("x", {T, K});
  int64_t pos = b.i32Buffer("positions", {T});
  int64_t q = b.bf16Buffer("q", {T, heads, hd});
  KVCacheInfo cache = b.cache("layer0", heads, hd, vd, cap, 4);
  auto wq = b.weight("wq", "mxfp4", {heads * hd, K}, randomValues(9, 48 * K));
  auto wk =
      b.weight("wk", "fp8_block", {heads * hd, K}, randomValues(10, 48 * K));
  auto wv = b.weight("wv", "bf16", {heads * vd, K}, randomValues(11, 24 * K));
  auto inst = [&](int64_t N, int64_t epi, int64_t fmt, int64_t dim) {
    return b.instance(TILEC_TASK_LINEAR, {{"T", T},
                                          {"K", K},
                                          {"N", N},
                                          {"tile", 2 * dim},
                                          {"format", fmt},
                                          {"prologue", TILEC_PRO_NONE},
                                          {"epilogue", epi},
                                          {"heads", heads},
                                          {"head_dim", dim},
                                          {"rotary_dim", rot},
                                          {"capacity", cap}});
  };
  struct Proj {
    int64_t inst, offset, scales, out, N, dim;
  } projs[] = {{inst(heads * hd, TILEC_EPI_ROPE_STORE, TILEC_FMT_MXFP4, hd),
                wq.info.offset, wq.info.scaleOffset, q, heads * hd, hd},
               {inst(heads * hd, TILEC_EPI_ROPE_KCACHE, TILEC_FMT_FP8, hd),
                wk.info.offset, wk.info.scaleOffset, cache.keyOffset,
                heads * hd, hd},
               {inst(heads * vd, TILEC_EPI_VCACHE, TILEC_FMT_BF16, vd),
                wv.info.offset, -1, cache.valueOffset, heads * vd, vd}};
  for (const Proj &p : projs) {
    std::vector<TaskArgs> tasks;
    for (int64_t n0 = 0; n0 < p.N; n0 += 2 * p.dim)
      tasks.push_back({{TILEC_LIN_X, x},
                       {TILEC_LIN_W, p.offset},
                       {TILEC_LIN_WSCALE, p.scales},
                       {TILEC_LIN_N0, n0},
                       {TILEC_LIN_N1, std::min(p.N, n0 + 2 * p.dim)},
                       {TILEC_LIN_OUT, p.out},
                       {TILEC_LIN_POS, pos},
                       {TILEC_LIN_THETA, f32Word(theta)}});
    b.op("proj", p.inst, tasks);
  }
  HostExecutor ex(b.finish(), b.weightBytes());
  ref::Tensor xs({T, K}, putBf16(ex, x, randomValues(12, T * K, 1.5f)));
  std::vector<int64_t> positions{5, 6, 7}; // slots 5, 0, 1
  put(ex, pos, std::vector<int32_t>{5, 6, 7});
  ex.runStep();

  auto heads3 = [&](ref::Tensor t, int64_t dim) {
    t.shape = {T, heads, dim};
    return t;
  };
  ref::Tensor wantQ =
      rounded(ref::rope(heads3(ref::linear(xs, wq.values, heads * hd), hd),
                        positions, rot, double(theta)));
  expectSame(getBf16(ex.arena(), q, T * heads * hd), wantQ.data, "q");
  ref::Tensor wantK =
      rounded(ref::rope(heads3(ref::linear(xs, wk.values, heads * hd), hd),
                        positions, rot, double(theta)));
  ref::Tensor wantV = rounded(ref::linear(xs, wv.values, heads * vd));
  for (int64_t t = 0; t < T; ++t) {
    int64_t slot = positions[size_t(t)] % cap;
    std::vector<float> k =
        getBf16(ex.kv(), cache.keyOffset + 2 * slot * heads * hd, heads * hd);
    std::vector<float> v =
        getBf16(ex.kv(), cache.valueOffset + 2 * slot * heads * vd, heads * vd);
    expectSame(k,
               std::vector<float>(wantK.data.begin() + t * heads * hd,
                                  wantK.data.begin() + (t + 1) * heads * hd),
               "key slot");
    expectSame(v,
               std::vector<float>(wantV.data.begin() + t * heads * vd,
                                  wantV.data.begin() + (t + 1) * heads * vd),
               "value slot");
  }
}

//===----------------------------------------------------------------------===//
// ATTENTION
//===----------------------------------------------------------------------===//

struct AttentionCase {
  int64_t window, capacity;
  bool sinks;
  int64_t steps;
  // Rows per task: of the key projection (head_dim 16, rotary 8), the value
  // projection (v_dim 8) and attention (of a kv head's G x T = 4 query rows).
  int64_t kTile = 16, vTile = 8, attentionRows = 4;
};

/// K/V projections into the cache and attention over it, step after step:
/// windows, sinks, GQA, and slots reused around the ring.
void checkAttention(const AttentionCase &c) {
  SCOPED_TRACE(::testing::Message()
               << "window " << c.window << " capacity " << c.capacity
               << " sinks " << c.sinks << " tiles " << c.kTile << "/" << c.vTile
               << "/" << c.attentionRows);
  const int64_t T = 2, H = 32, Hq = 4, Hkv = 2, D = 16, Dv = 8, rot = 8;
  const float theta = 500.0f, scale = 0.25f, vscale = 0.707f;
  EngineBuilder b(4, T);
  int64_t x = b.bf16Buffer("x", {T, H});
  int64_t pos = b.i32Buffer("positions", {T});
  int64_t q = b.bf16Buffer("q", {T, Hq, D});
  int64_t out = b.bf16Buffer("out", {T, Hq, Dv});
  KVCacheInfo cache = b.cache("layer", Hkv, D, Dv, c.capacity, c.window);
  auto wk = b.weight("wk", "bf16", {Hkv * D, H}, randomValues(20, Hkv * D * H));
  auto wv =
      b.weight("wv", "bf16", {Hkv * Dv, H}, randomValues(21, Hkv * Dv * H));
  auto sinks = b.weight("sinks", "bf16", {Hq}, randomValues(22, Hq, 2.0f));
  int64_t ik =
      b.instance(TILEC_TASK_LINEAR, {{"T", T},
                                     {"K", H},
                                     {"N", Hkv * D},
                                     {"tile", c.kTile},
                                     {"format", 0},
                                     {"prologue", 0},
                                     {"epilogue", TILEC_EPI_ROPE_KCACHE},
                                     {"heads", Hkv},
                                     {"head_dim", D},
                                     {"rotary_dim", rot},
                                     {"capacity", c.capacity}});
  int64_t iv = b.instance(TILEC_TASK_LINEAR, {{"T", T},
                                              {"K", H},
                                              {"N", Hkv * Dv},
                                              {"tile", c.vTile},
                                              {"format", 0},
                                              {"prologue", 0},
                                              {"epilogue", TILEC_EPI_VCACHE},
                                              {"heads", Hkv},
                                              {"head_dim", Dv},
                                              {"capacity", c.capacity}});
  int64_t kv = b.event("kv");
  for (int64_t n0 = 0; n0 < Hkv * D; n0 += c.kTile)
    b.task(b.nextSm(), "k", ik,
           {{TILEC_LIN_X, x},
            {TILEC_LIN_W, wk.info.offset},
            {TILEC_LIN_N0, n0},
            {TILEC_LIN_N1, std::min(Hkv * D, n0 + c.kTile)},
            {TILEC_LIN_OUT, cache.keyOffset},
            {TILEC_LIN_POS, pos},
            {TILEC_LIN_THETA, f32Word(theta)}},
           {}, kv);
  for (int64_t n0 = 0; n0 < Hkv * Dv; n0 += c.vTile)
    b.task(b.nextSm(), "v", iv,
           {{TILEC_LIN_X, x},
            {TILEC_LIN_W, wv.info.offset},
            {TILEC_LIN_N0, n0},
            {TILEC_LIN_N1, std::min(Hkv * Dv, n0 + c.vTile)},
            {TILEC_LIN_OUT, cache.valueOffset},
            {TILEC_LIN_POS, pos}},
           {}, kv);
  int64_t ia = b.instance(TILEC_TASK_ATTENTION, {{"T", T},
                                                 {"q_heads", Hq},
                                                 {"kv_heads", Hkv},
                                                 {"head_dim", D},
                                                 {"v_dim", Dv},
                                                 {"window", c.window},
                                                 {"capacity", c.capacity},
                                                 {"sinks", c.sinks},
                                                 {"rows", c.attentionRows}});
  std::vector<TaskArgs> tasks;
  const int64_t qRows = T * (Hq / Hkv);
  for (int64_t g = 0; g < Hkv; ++g)
    for (int64_t r0 = 0; r0 < qRows; r0 += c.attentionRows)
      tasks.push_back(
          {{TILEC_ATT_Q, q},
           {TILEC_ATT_KCACHE, cache.keyOffset},
           {TILEC_ATT_VCACHE, cache.valueOffset},
           {TILEC_ATT_POS, pos},
           {TILEC_ATT_OUT, out},
           {TILEC_ATT_KV_HEAD, g},
           {TILEC_ATT_SINKS, c.sinks ? sinks.info.offset : -1},
           {TILEC_ATT_SCALE, f32Word(scale)},
           {TILEC_ATT_VSCALE, f32Word(vscale)},
           {TILEC_ATT_ROW0, r0},
           {TILEC_ATT_ROW1, std::min(qRows, r0 + c.attentionRows)}});
  b.op("attention", ia, tasks, {b.all(kv)});
  HostExecutor ex(b.finish(), b.weightBytes());

  ref::KVCache refCache;
  refCache.kvHeads = Hkv;
  refCache.qkDim = D;
  refCache.vDim = Dv;
  ref::AttentionParams params;
  params.scale = double(scale);
  params.valueScale = double(vscale);
  params.window = c.window;
  if (c.sinks)
    params.sinks = &sinks.values;
  for (int64_t s = 0; s < c.steps; ++s) {
    SCOPED_TRACE(::testing::Message() << "step " << s);
    std::vector<int64_t> positions{2 * s, 2 * s + 1};
    put(ex, pos, std::vector<int32_t>{int32_t(2 * s), int32_t(2 * s + 1)});
    ref::Tensor xs({T, H}, putBf16(ex, x, randomValues(30 + s, T * H, 1.5f)));
    ref::Tensor qs({T, Hq, D},
                   putBf16(ex, q, randomValues(60 + s, T * Hq * D, 1.5f)));
    ex.runStep();
    ref::Tensor k = ref::linear(xs, wk.values, Hkv * D);
    k.shape = {T, Hkv, D};
    ref::Tensor v = rounded(ref::linear(xs, wv.values, Hkv * Dv));
    v.shape = {T, Hkv, Dv};
    refCache.append(rounded(ref::rope(k, positions, rot, double(theta))), v);
    ref::Tensor want = rounded(ref::attention(qs, positions, refCache, params));
    expectSame(getBf16(ex.arena(), out, T * Hq * Dv), want.data, "attention");
  }
}

TEST(HostAttention, WindowSinksGqaAndRingWraparound) {
  checkAttention({3, 3 + 2, true, 7});  // ring of window + T, wrapping
  checkAttention({3, 3 + 1, false, 7}); // window + T - 1 is enough
  checkAttention({0, 16, true, 6});     // full attention with sinks
  checkAttention({5, 7, false, 6});     // wider window
}

// Narrow ops in more tasks: keys in tasks of a head's rotary rows or its
// other rows (or one and a half heads: 24 rows), values split anywhere,
// attention in shares of a kv head's query rows (1, 3 + 1 rows).
TEST(HostAttention, SplitProjectionsAndQueryRows) {
  checkAttention({3, 3 + 2, true, 5, 8, 4, 1});
  checkAttention({0, 16, true, 5, 24, 5, 3});
  checkAttention({5, 7, false, 5, 8, 2, 2});
}

TEST(HostAttention, SplitInsideRotaryRowsIsReported) {
  std::string message = errorOf([] {
    checkAttention({3, 5, false, 1, 4, 8, 4});
  });
  EXPECT_NE(message.find("row 4 splits head 0 (inside its rotary rows"),
            std::string::npos)
      << message;
}

TEST(HostAttention, RingTooSmallIsReported) {
  std::string message = errorOf([] { checkAttention({3, 3, false, 3}); });
  EXPECT_NE(message.find("reads the key of position 0 from slot 0"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("holds position 3"), std::string::npos) << message;
}

//===----------------------------------------------------------------------===//
// ROUTER_TOPK
//===----------------------------------------------------------------------===//

TEST(HostRouter, GroupsBiasRenormScalingAndPlan) {
  struct Case {
    int64_t T, E, K, nGroup, topkGroup;
    bool renorm, bias;
    float scaling;
  } cases[] = {{3, 16, 4, 4, 2, true, true, 2.5f},
               {3, 16, 4, 4, 2, false, false, 1.0f},
               {5, 16, 4, 1, 1, true, true, 1.0f},  // T * K > E: S = E
               {2, 16, 2, 8, 3, false, true, 0.5f}, // groups of 2
               {1, 8, 8, 2, 1, true, false, 1.0f}}; // K past the kept groups
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message() << "T " << c.T << " E " << c.E << " K "
                                      << c.K << " groups " << c.nGroup);
    int64_t S = std::min(c.E, c.T * c.K);
    EngineBuilder b(1, c.T);
    int64_t logits = b.f32Buffer("logits", {c.T, c.E});
    int64_t ids = b.i32Buffer("ids", {c.T, c.K});
    int64_t weights = b.f32Buffer("weights", {c.T, c.K});
    int64_t plan = b.i32Buffer("plan", {1 + S + S * c.T});
    auto bias = b.weight("bias", "f32", {c.E}, randomValues(40, c.E, 0.1f));
    int64_t inst =
        b.instance(TILEC_TASK_ROUTER_TOPK, {{"T", c.T},
                                            {"E", c.E},
                                            {"K", c.K},
                                            {"n_group", c.nGroup},
                                            {"topk_group", c.topkGroup},
                                            {"renorm", c.renorm}});
    b.op("router", inst,
         {{{TILEC_RT_LOGITS, logits},
           {TILEC_RT_BIAS, c.bias ? bias.info.offset : -1},
           {TILEC_RT_IDS, ids},
           {TILEC_RT_WEIGHTS, weights},
           {TILEC_RT_PLAN, plan},
           {TILEC_RT_SCALING, f32Word(c.scaling)}}});
    HostExecutor ex(b.finish(), b.weightBytes());
    std::vector<float> lv = randomValues(41 + uint64_t(c.T), c.T * c.E, 3.0f);
    put(ex, logits, lv);
    ex.runStep();
    ref::RouterParams params{c.E,         c.K,      c.nGroup,
                             c.topkGroup, c.renorm, double(c.scaling)};
    ref::Routing want =
        ref::router(ref::Tensor({c.T, c.E}, lv), identity(c.E),
                    c.bias ? bias.values : std::vector<float>(), params);
    EXPECT_EQ(get<int32_t>(ex.arena(), ids, c.T * c.K), want.experts);
    expectSame(get<float>(ex.arena(), weights, c.T * c.K), want.weights,
               "routing weights");
    // The plan, from the chosen ids.
    std::vector<int32_t> distinct = want.experts;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()),
                   distinct.end());
    std::vector<int32_t> wantPlan(size_t(1 + S + S * c.T), -1);
    wantPlan[0] = int32_t(distinct.size());
    for (size_t s = 0; s < distinct.size(); ++s) {
      wantPlan[1 + s] = distinct[s];
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t k = 0; k < c.K; ++k)
          if (want.experts[size_t(t * c.K + k)] == distinct[s])
            wantPlan[size_t(1 + S + int64_t(s) * c.T + t)] = int32_t(k);
    }
    EXPECT_EQ(get<int32_t>(ex.arena(), plan, 1 + S + S * c.T), wantPlan);
  }
}

//===----------------------------------------------------------------------===//
// MoE: MOE_GATE_UP, MOE_DOWN, MOE_COMBINE
//===----------------------------------------------------------------------===//

class DequantizedExperts : public ref::ExpertWeights {
public:
  DequantizedExperts(const std::vector<float> &gateUp,
                     const std::vector<float> &down, int64_t E)
      : E(E) {
    int64_t gu = int64_t(gateUp.size()) / E, dn = int64_t(down.size()) / E;
    for (int64_t e = 0; e < E; ++e) {
      gateUps.emplace_back(gateUp.begin() + e * gu,
                           gateUp.begin() + (e + 1) * gu);
      downs.emplace_back(down.begin() + e * dn, down.begin() + (e + 1) * dn);
    }
  }
  const std::vector<float> &gateUp(int64_t e) override {
    return gateUps[size_t(e)];
  }
  const std::vector<float> &down(int64_t e) override {
    return downs[size_t(e)];
  }
  int64_t E;
  std::vector<std::vector<float>> gateUps, downs;
};

/// The MoE block of one layer: router, gate/up per (slot, tile), down per
/// (slot, tile), combine in place into the residual.
struct MoeEngine {
  EngineManifest manifest;
  std::vector<uint8_t> weights;
  int64_t x, logits, plan;
  std::vector<float> gateUp, down, norm, bias;
};

MoeEngine moeEngine(const std::string &format, int sms) {
  const int64_t T = 4, H = 64, I = 64, E = 8, K = 2, S = 8;
  EngineBuilder b(sms, T);
  MoeEngine m;
  m.x = b.bf16Buffer("x", {T, H});
  m.logits = b.f32Buffer("logits", {T, E});
  int64_t ids = b.i32Buffer("ids", {T, K});
  int64_t rw = b.f32Buffer("weights", {T, K});
  m.plan = b.i32Buffer("plan", {1 + S + S * T});
  int64_t act = b.bf16Buffer("act", {S, T, I});
  int64_t partial = b.f32Buffer("partial", {T, K, H});
  auto gu = b.weight("gate_up", format, {E, 2 * I, H},
                     randomValues(50, E * 2 * I * H, std::sqrt(3.0f / H)));
  auto dn = b.weight("down", format, {E, H, I},
                     randomValues(51, E * H * I, std::sqrt(3.0f / I)));
  std::vector<float> nv = randomValues(52, H, 0.1f);
  for (float &v : nv)
    v += 1.0f;
  auto norm = b.weight("norm", "bf16", {H}, nv);
  auto bias = b.weight("bias", "f32", {E}, randomValues(53, E, 0.05f));
  m.gateUp = gu.values;
  m.down = dn.values;
  m.norm = norm.values;
  m.bias = bias.values;
  int64_t rt = b.op("router",
                    b.instance(TILEC_TASK_ROUTER_TOPK, {{"T", T},
                                                        {"E", E},
                                                        {"K", K},
                                                        {"n_group", 1},
                                                        {"topk_group", 1},
                                                        {"renorm", 1}}),
                    {{{TILEC_RT_LOGITS, m.logits},
                      {TILEC_RT_BIAS, bias.info.offset},
                      {TILEC_RT_IDS, ids},
                      {TILEC_RT_WEIGHTS, rw},
                      {TILEC_RT_PLAN, m.plan},
                      {TILEC_RT_SCALING, f32Word(1.5f)}}});
  std::map<std::string, int64_t> params = {
      {"T", T}, {"H", H},     {"I", I},     {"E", E},
      {"K", K}, {"slots", S}, {"tile", 32}, {"format", formatCode(format)}};
  std::vector<TaskArgs> tasks;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t n0 : {0, 32})
      tasks.push_back({{TILEC_MOE_SLOT, s},
                       {TILEC_MOE_N0, n0},
                       {TILEC_MOE_N1, n0 + 32},
                       {TILEC_MOE_X, m.x},
                       {TILEC_MOE_PLAN, m.plan},
                       {TILEC_MOE_W, gu.info.offset},
                       {TILEC_MOE_WSCALE, gu.info.scaleOffset},
                       {TILEC_MOE_OUT, act},
                       {TILEC_MOE_NORM_W, norm.info.offset},
                       {TILEC_MOE_EPS, f32Word(1e-6f)}});
  int64_t up = b.op("gate_up", b.instance(TILEC_TASK_MOE_GATE_UP, params),
                    tasks, {b.all(rt)});
  tasks.clear();
  for (int64_t s = 0; s < S; ++s)
    for (int64_t n0 : {0, 32})
      tasks.push_back({{TILEC_MOE_SLOT, s},
                       {TILEC_MOE_N0, n0},
                       {TILEC_MOE_N1, n0 + 32},
                       {TILEC_MOE_X, act},
                       {TILEC_MOE_PLAN, m.plan},
                       {TILEC_MOE_W, dn.info.offset},
                       {TILEC_MOE_WSCALE, dn.info.scaleOffset},
                       {TILEC_MOE_OUT, partial},
                       {TILEC_MOE_RWEIGHTS, rw}});
  int64_t down =
      b.op("down", b.instance(TILEC_TASK_MOE_DOWN, params), tasks, {b.all(up)});
  tasks.clear();
  for (int64_t n0 : {0, 32})
    tasks.push_back({{TILEC_CMB_PARTIAL, partial},
                     {TILEC_CMB_RESIDUAL, m.x},
                     {TILEC_CMB_OUT, m.x},
                     {TILEC_CMB_N0, n0},
                     {TILEC_CMB_N1, n0 + 32}});
  b.op("combine",
       b.instance(TILEC_TASK_MOE_COMBINE, {{"T", T}, {"H", H}, {"K", K}}),
       tasks, {b.all(down)});
  m.manifest = b.finish();
  m.weights = b.weightBytes();
  return m;
}

/// Runs the MoE engine once and checks it against ref::moe.
void checkMoe(const std::string &format, const HostOptions &options) {
  SCOPED_TRACE(format);
  const int64_t T = 4, H = 64, I = 64, E = 8, K = 2;
  MoeEngine m = moeEngine(format, 5);
  HostExecutor ex(m.manifest, m.weights, options);
  ref::Tensor x({T, H}, putBf16(ex, m.x, randomValues(54, T * H, 2.0f)));
  std::vector<float> lv = randomValues(55, T * E, 2.0f);
  put(ex, m.logits, lv);
  ex.runStep();
  ref::Routing routing = ref::router(ref::Tensor({T, E}, lv), identity(E),
                                     m.bias, {E, K, 1, 1, true, double(1.5f)});
  DequantizedExperts experts(m.gateUp, m.down, E);
  ref::Tensor y = ref::moe(ref::rmsNorm(x, m.norm, double(1e-6f)), routing,
                           experts, I, /*roundActivation=*/true);
  ref::Tensor want = rounded(ref::add(x, y));
  expectSame(getBf16(ex.arena(), m.x, T * H), want.data, "combined output");
  // Some slots stay unused (tokens share experts): their tasks do nothing.
  EXPECT_LT(get<int32_t>(ex.arena(), m.plan, 1)[0], 8);
}

TEST(HostMoe, GateUpDownCombineEveryFormat) {
  for (const char *format : {"bf16", "fp8_block", "mxfp4"})
    checkMoe(format, {});
}

//===----------------------------------------------------------------------===//
// SILU_MUL: the dense MLP with tile-fuse{disable=silu-pair}
//===----------------------------------------------------------------------===//

/// gate and up as two LINEARs (RMSNORM prologue, STORE_BF16), SILU_MUL after
/// both (two waits; column ranges [0, 64) and [64, 100)), and beside them the
/// fused SILU_PAIR over the same input: the unfused output is silu(g) * u of
/// the bf16-rounded projections, the fused one of their f32 sums.
TEST(HostSiluMul, UnfusedPairRoundsGateAndUpOnly) {
  const int64_t T = 3, K = 96, N = 100, tile = 48;
  for (uint64_t seed : {0, 1, 2, 3, 4, 5}) {
    SCOPED_TRACE(seed);
    EngineBuilder b(4, T);
    int64_t x = b.bf16Buffer("x", {T, K});
    int64_t g = b.bf16Buffer("gate", {T, N});
    int64_t u = b.bf16Buffer("up", {T, N});
    int64_t act = b.bf16Buffer("act", {T, N});
    int64_t fused = b.bf16Buffer("fused", {T, N});
    float scale = std::sqrt(3.0f / K);
    auto wg =
        b.weight("wg", "fp8_block", {N, K}, randomValues(80, N * K, scale));
    auto wu =
        b.weight("wu", "fp8_block", {N, K}, randomValues(81, N * K, scale));
    std::vector<float> nv = randomValues(82, K, 0.1f);
    for (float &v : nv)
      v += 1.0f;
    auto norm = b.weight("norm", "bf16", {K}, nv);
    auto linear = [&](int64_t epilogue) {
      return b.instance(TILEC_TASK_LINEAR, {{"T", T},
                                            {"K", K},
                                            {"N", N},
                                            {"tile", tile},
                                            {"format", TILEC_FMT_FP8},
                                            {"prologue", TILEC_PRO_RMSNORM},
                                            {"epilogue", epilogue}});
    };
    auto tasks = [&](const WeightInfo &w, int64_t out) {
      std::vector<TaskArgs> list;
      for (int64_t n0 = 0; n0 < N; n0 += tile)
        list.push_back({{TILEC_LIN_X, x},
                        {TILEC_LIN_W, w.offset},
                        {TILEC_LIN_WSCALE, w.scaleOffset},
                        {TILEC_LIN_W2, wu.info.offset},
                        {TILEC_LIN_W2SCALE, wu.info.scaleOffset},
                        {TILEC_LIN_N0, n0},
                        {TILEC_LIN_N1, std::min(N, n0 + tile)},
                        {TILEC_LIN_OUT, out},
                        {TILEC_LIN_NORM_W, norm.info.offset},
                        {TILEC_LIN_EPS, f32Word(1e-5f)}});
      return list;
    };
    int64_t store = linear(TILEC_EPI_STORE_BF16);
    int64_t ge = b.op("gate_proj", store, tasks(wg.info, g));
    int64_t ue = b.op("up_proj", store, tasks(wu.info, u));
    std::vector<TaskArgs> silu;
    for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, 64}, {64, N}})
      silu.push_back({{TILEC_SILU_GATE, g},
                      {TILEC_SILU_UP, u},
                      {TILEC_SILU_OUT, act},
                      {TILEC_SILU_N0, n0},
                      {TILEC_SILU_N1, n1}});
    b.op("silu_mul", b.instance(TILEC_TASK_SILU_MUL, {{"T", T}, {"N", N}}),
         silu, {b.all(ge), b.all(ue)});
    b.op("gate_up", linear(TILEC_EPI_SILU_PAIR), tasks(wg.info, fused));
    HostOptions options;
    options.interleavingSeed = seed;
    options.threads = seed % 2 ? 2 : 1;
    HostExecutor ex(b.finish(), b.weightBytes(), options);
    ref::Tensor xs({T, K}, putBf16(ex, x, randomValues(83, T * K, 2.0f)));
    ex.runStep();

    ref::Tensor n = ref::rmsNorm(xs, norm.values, double(1e-5f));
    ref::Tensor gf = ref::linear(n, wg.values, N),
                uf = ref::linear(n, wu.values, N);
    expectSame(getBf16(ex.arena(), fused, T * N),
               rounded(ref::siluMul(gf, uf)).data, "fused SILU_PAIR");
    expectSame(getBf16(ex.arena(), g, T * N), rounded(gf).data, "gate");
    expectSame(getBf16(ex.arena(), u, T * N), rounded(uf).data, "up");
    ref::Tensor unfused = rounded(ref::siluMul(rounded(gf), rounded(uf)));
    expectSame(getBf16(ex.arena(), act, T * N), unfused.data, "SILU_MUL");
    // The two differ by the gate/up rounding alone: a few bf16 ulps at most.
    std::vector<float> a = getBf16(ex.arena(), act, T * N),
                       f = getBf16(ex.arena(), fused, T * N);
    int64_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      differ += a[i] != f[i];
      EXPECT_LE(std::fabs(a[i] - f[i]), 0.04f * std::fabs(f[i]) + 1e-6f) << i;
    }
    EXPECT_GT(differ, 0);
  }
}

TEST(HostSiluMul, RangesOutsideTheRowAreReported) {
  const int64_t T = 1, N = 64;
  EngineBuilder b(1, T);
  int64_t g = b.bf16Buffer("gate", {T, N});
  int64_t out = b.bf16Buffer("out", {T, N});
  b.op("layers.0.silu_mul",
       b.instance(TILEC_TASK_SILU_MUL, {{"T", T}, {"N", N}}),
       {{{TILEC_SILU_GATE, g},
         {TILEC_SILU_UP, g},
         {TILEC_SILU_OUT, out},
         {TILEC_SILU_N0, 32},
         {TILEC_SILU_N1, 80}}});
  HostExecutor ex(b.finish(), b.weightBytes());
  std::string message = errorOf([&] { ex.runStep(); });
  EXPECT_NE(message.find("(op layers.0.silu_mul) (SILU_MUL instance 0): rows "
                         "[32, 80) are not a non-empty range of [0, 64)"),
            std::string::npos)
      << message;
}

//===----------------------------------------------------------------------===//
// DRAFT_FILL
//===----------------------------------------------------------------------===//

/// The autoregressive drafter's fill: two chained DRAFT_FILLs on two SMs put
/// slots 1 and 3 of the drafter's argmax into the block, nothing else; a slot
/// outside [1, T-1] is reported.
TEST(HostDraftFill, FillsOneSlotAndRejectsOthers) {
  const int64_t T = 4;
  auto build = [&](int64_t firstIndex, int64_t &block, int64_t &drafted,
                   int64_t &out) {
    EngineBuilder b(2, T);
    block = b.i32Buffer("block", {T});
    drafted = b.i32Buffer("drafted", {T});
    int64_t mid = b.i32Buffer("mid", {T});
    out = b.i32Buffer("out", {T});
    int64_t inst = b.instance(TILEC_TASK_DRAFT_FILL, {{"T", T}});
    int64_t first = b.op("fill1", inst,
                         {{{TILEC_FILL_BLOCK, block},
                           {TILEC_FILL_DRAFTED, drafted},
                           {TILEC_FILL_OUT, mid},
                           {TILEC_FILL_INDEX, firstIndex}}});
    b.op("fill3", inst,
         {{{TILEC_FILL_BLOCK, mid},
           {TILEC_FILL_DRAFTED, drafted},
           {TILEC_FILL_OUT, out},
           {TILEC_FILL_INDEX, 3}}},
         {b.all(first)});
    return std::make_pair(b.finish(), b.weightBytes());
  };
  int64_t block, drafted, out;
  for (uint64_t seed : {0, 1, 2, 3}) {
    auto [m, bytes] = build(1, block, drafted, out);
    HostOptions o;
    o.interleavingSeed = seed;
    HostExecutor ex(m, bytes, o);
    put(ex, block, std::vector<int32_t>{7, 511, 511, 511});
    put(ex, drafted, std::vector<int32_t>{40, 41, 42, 43});
    ex.runStep();
    EXPECT_EQ(get<int32_t>(ex.arena(), out, T),
              (std::vector<int32_t>{7, 41, 511, 43}));
    // The input block is left as it was.
    EXPECT_EQ(get<int32_t>(ex.arena(), block, T),
              (std::vector<int32_t>{7, 511, 511, 511}));
  }
  for (int64_t bad : {0, 4, -1}) {
    auto [m, bytes] = build(bad, block, drafted, out);
    HostExecutor ex(m, bytes);
    std::string message = errorOf([&] { ex.runStep(); });
    EXPECT_NE(message.find("(op fill1) (DRAFT_FILL instance 0): slot " +
                           std::to_string(bad) + " is outside [1, 3]"),
              std::string::npos)
        << message;
  }
}

//===----------------------------------------------------------------------===//
// Event checking and scheduling
//===----------------------------------------------------------------------===//

/// A producer LINEAR writing `y` and consumers reading it, on chosen SMs.
struct Pair {
  EngineBuilder b{3, 1};
  int64_t x, y, z, inst;
  WeightInfo w;
  Pair() {
    x = b.bf16Buffer("x", {1, 32});
    y = b.bf16Buffer("y", {1, 32});
    z = b.bf16Buffer("z", {1, 32});
    w = b.weight("w", "bf16", {32, 32}, randomValues(70, 32 * 32, 0.3f)).info;
    inst = b.instance(TILEC_TASK_LINEAR, {{"T", 1},
                                          {"K", 32},
                                          {"N", 32},
                                          {"tile", 32},
                                          {"format", 0},
                                          {"prologue", 0},
                                          {"epilogue", 0}});
  }
  TaskArgs args(int64_t in, int64_t out, int64_t n0 = 0, int64_t n1 = 32) {
    return {{TILEC_LIN_X, in},
            {TILEC_LIN_W, w.offset},
            {TILEC_LIN_N0, n0},
            {TILEC_LIN_N1, n1},
            {TILEC_LIN_OUT, out}};
  }
  void run(uint64_t seed, int threads = 1) {
    HostOptions o;
    o.interleavingSeed = seed;
    o.threads = threads;
    HostExecutor ex(b.finish(), b.weightBytes(), o);
    putBf16(ex, x, randomValues(71, 32, 1.0f));
    ex.runStep();
    ex.runStep();
  }
};

TEST(HostEvents, CorrectEnginePassesEveryInterleaving) {
  Pair p;
  int64_t e = p.b.event("produced");
  p.b.task(0, "producer", p.inst, p.args(p.x, p.y), {}, e);
  p.b.task(1, "consumer", p.inst, p.args(p.y, p.z), {p.b.all(e)}, -1);
  for (uint64_t seed = 0; seed < 50; ++seed)
    EXPECT_NO_THROW(p.run(seed)) << seed;
  for (uint64_t seed = 0; seed < 10; ++seed)
    EXPECT_NO_THROW(p.run(seed, 3)) << seed;
  // Every interleaving computes the same thing.
  for (const char *format : {"bf16", "mxfp4"})
    for (uint64_t seed : {3, 17, 99}) {
      HostOptions o;
      o.interleavingSeed = seed;
      checkMoe(format, o);
      o.threads = 3;
      checkMoe(format, o);
    }
}

TEST(HostEvents, MissingWaitIsReported) {
  Pair p;
  int64_t e = p.b.event("produced");
  p.b.task(0, "producer", p.inst, p.args(p.x, p.y), {}, e);
  p.b.task(1, "consumer", p.inst, p.args(p.y, p.z), {}, -1);
  // Whichever runs first, the read is not ordered after the write.
  int before = 0, after = 0;
  for (uint64_t seed = 0; seed < 16; ++seed) {
    std::string message = errorOf([&] { p.run(seed); });
    EXPECT_NE(message.find("host executor: step 0: SM 1 task 0 (op consumer) "
                           "reads buffer 'y' bytes [0, 64) before its "
                           "producer (op producer, SM 0 task 0) signalled: "),
              std::string::npos)
        << "seed " << seed << ": " << message;
    before += message.find("it read them before that task wrote them") !=
              std::string::npos;
    after += message.find("no wait of this task covers its signal") !=
             std::string::npos;
  }
  EXPECT_GT(before, 0);
  EXPECT_GT(after, 0);
  for (uint64_t seed = 0; seed < 4; ++seed) {
    std::string message = errorOf([&] { p.run(seed, 2); });
    EXPECT_NE(message.find("before its producer (op producer, SM 0 task 0) "
                           "signalled"),
              std::string::npos)
        << message;
  }
}

TEST(HostEvents, OrderedReadOfOlderDataIsAnInPlaceUpdate) {
  // The reader comes first in SM 0's list: it reads the previous step's y
  // (state carried across steps), and the write is ordered after it.
  Pair p;
  int64_t e = p.b.event("produced");
  p.b.task(0, "reader", p.inst, p.args(p.y, p.z), {}, -1);
  p.b.task(0, "producer", p.inst, p.args(p.x, p.y), {}, e);
  // On another SM, a read of the old y must wait for nothing but must be
  // ordered before the write: without that, it is reported.
  Pair q;
  int64_t f = q.b.event("produced");
  q.b.task(0, "producer", q.inst, q.args(q.x, q.y), {}, f);
  q.b.task(1, "reader", q.inst, q.args(q.y, q.z), {}, -1);
  for (uint64_t seed = 0; seed < 8; ++seed) {
    HostOptions o;
    o.interleavingSeed = seed;
    HostExecutor ex(p.b.finish(), p.b.weightBytes(), o);
    putBf16(ex, p.x, randomValues(71, 32, 1.0f));
    ex.runStep();
    std::vector<float> y = getBf16(ex.arena(), p.y, 32);
    EXPECT_EQ(getBf16(ex.arena(), p.z, 32), std::vector<float>(32, 0.0f));
    ex.runStep();
    // z now holds W . y of the first step.
    EXPECT_NE(getBf16(ex.arena(), p.z, 32), std::vector<float>(32, 0.0f));
    EXPECT_FALSE(errorOf([&] { q.run(seed); }).empty());
  }
}

TEST(HostEvents, WaitCountTooLowIsReported) {
  // Two producers signal the event; waiting for one covers only the first.
  Pair p;
  int64_t e = p.b.event("produced");
  p.b.task(0, "producer", p.inst, p.args(p.x, p.y, 0, 16), {}, e);
  p.b.task(2, "producer", p.inst, p.args(p.x, p.y, 16, 32), {}, e);
  p.b.task(1, "consumer", p.inst, p.args(p.y, p.z), {{e, 1}}, -1);
  for (uint64_t seed = 0; seed < 12; ++seed) {
    std::string message = errorOf([&] { p.run(seed); });
    EXPECT_NE(message.find("SM 1 task 0 (op consumer) reads buffer 'y' bytes"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("before its producer (op producer, SM "),
              std::string::npos)
        << message;
  }
}

TEST(HostEvents, UnorderedOverwriteIsReported) {
  // The overwriter waits for the first producer but not for the reader.
  Pair p;
  int64_t e = p.b.event("produced");
  p.b.task(0, "producer", p.inst, p.args(p.x, p.y), {}, e);
  p.b.task(1, "reader", p.inst, p.args(p.y, p.z), {p.b.all(e)}, -1);
  p.b.task(2, "overwriter", p.inst, p.args(p.x, p.y), {p.b.all(e)}, -1);
  for (uint64_t seed = 0; seed < 12; ++seed) {
    std::string message = errorOf([&] { p.run(seed); });
    bool war = message.find("SM 2 task 0 (op overwriter) writes buffer 'y' "
                            "bytes [0, 64) that SM 1 task 0 (op reader) "
                            "reads in this step") != std::string::npos;
    bool raw = message.find("SM 1 task 0 (op reader) reads buffer 'y' bytes "
                            "[0, 64) before its producer (op overwriter") !=
               std::string::npos;
    EXPECT_TRUE(war || raw) << message;
  }
}

TEST(HostEvents, DeadlockIsReportedNotHung) {
  {
    Pair p;
    int64_t e = p.b.event("late");
    p.b.task(0, "waiter", p.inst, p.args(p.x, p.y), {{e, 1}}, -1);
    p.b.task(0, "signaller", p.inst, p.args(p.x, p.z), {}, e);
    HostExecutor ex(p.b.finish(), p.b.weightBytes());
    std::string message = errorOf([&] { ex.runStep(); });
    EXPECT_NE(message.find("deadlock in step 0: no SM can proceed; SM 0 task 0 "
                           "(op waiter) waits for event 0 ('late') to reach 1 "
                           "(1 signals of this step), it is at 0"),
              std::string::npos)
        << message;
    EXPECT_EQ(ex.report()[TILEC_REPORT_FLAG], 1);
    EXPECT_EQ(ex.report()[TILEC_REPORT_EVENT], 0);
    // The engine's state is undefined after a failed step.
    message = errorOf([&] { ex.runStep(); });
    EXPECT_NE(message.find("an earlier step failed"), std::string::npos);
  }
  {
    Pair p;
    int64_t a = p.b.event("a"), c = p.b.event("c");
    p.b.task(0, "first", p.inst, p.args(p.x, p.y), {{c, 1}}, a);
    p.b.task(1, "second", p.inst, p.args(p.x, p.z), {{a, 1}}, c);
    for (int threads : {1, 2}) {
      HostOptions o;
      o.threads = threads;
      HostExecutor ex(p.b.finish(), p.b.weightBytes(), o);
      std::string message = errorOf([&] { ex.runStep(); });
      EXPECT_NE(message.find("SM 0 task 0 (op first) waits for event 1 ('c')"),
                std::string::npos)
          << message;
      EXPECT_NE(message.find("SM 1 task 0 (op second) waits for event 0 ('a')"),
                std::string::npos)
          << message;
    }
  }
}

TEST(HostEvents, EveryDroppedWaitOfAModelIsCaught) {
  // Drop the waits of one op of a whole model at a time: every interleaving
  // must report a read before its producer (or an unordered overwrite).
  Model model = loadModel("tiny");
  EngineManifest good = buildModelEngine(model, 2, 6);
  std::vector<uint8_t> weights(size_t(good.weightBytes));
  packWeights(good, WeightSourceSpec::synthetic(1), weights.data());
  for (size_t op = 1; op < good.ops.size(); ++op) {
    SCOPED_TRACE(good.ops[op]);
    EngineManifest bad = good;
    for (auto &list : bad.smTasks)
      for (TilecTask &t : list)
        if (t.w[TILEC_W_OP] == int64_t(op))
          t.w[TILEC_W_WAIT0] = t.w[TILEC_W_WAIT1] = -1;
    for (uint64_t seed : {0, 1, 2}) {
      HostOptions o;
      o.interleavingSeed = seed;
      HostExecutor ex(bad, weights, o);
      std::string message = errorOf([&] {
        ex.step({1, 2}, std::vector<int32_t>{0, 1});
      });
      bool caught = message.find("before its producer") != std::string::npos ||
                    message.find("and no event orders") != std::string::npos;
      EXPECT_TRUE(caught) << "seed " << seed << ": " << message;
    }
  }
}

TEST(HostEvents, BadEventTablesAreRefused) {
  Pair p;
  int64_t e = p.b.event("produced");
  p.b.task(0, "producer", p.inst, p.args(p.x, p.y), {}, e);
  p.b.task(1, "consumer", p.inst, p.args(p.y, p.z), {{e, 1}}, -1);
  EngineManifest m = p.b.finish();
  m.events[0].signalsPerStep = 2;
  EXPECT_NE(errorOf([&] { HostExecutor ex(m, p.b.weightBytes()); })
                .find("event 0 ('produced') is signalled by 1 tasks per step, "
                      "the manifest says 2"),
            std::string::npos);
  m = p.b.finish();
  m.smTasks[1][0].w[TILEC_W_COUNT0] = 2;
  EXPECT_NE(errorOf([&] { HostExecutor ex(m, p.b.weightBytes()); })
                .find("SM 1 task 0 (op consumer): waits for 2 signals of "
                      "event 0 ('produced'), which gets 1 per step"),
            std::string::npos);
  m = p.b.finish();
  m.instances[0].params.erase("tile");
  EXPECT_NE(errorOf([&] {
              HostExecutor ex(m, p.b.weightBytes());
            }).find("lacks parameter 'tile'"),
            std::string::npos);
  m = p.b.finish();
  m.smTasks[0][0].w[TILEC_W_ARG0 + TILEC_LIN_OUT] = m.arenaBytes - 2;
  HostExecutor ex(m, p.b.weightBytes());
  EXPECT_NE(errorOf([&] { ex.runStep(); }).find("the output at arena bytes"),
            std::string::npos);
}

//===----------------------------------------------------------------------===//
// WeightPacker
//===----------------------------------------------------------------------===//

/// Every weight of a model in its own format (experts packed), with the
/// model's config texts: what a compiler would lay out.
EngineManifest
allWeights(const Model &model,
           const std::map<std::string, std::string> &formats = {}) {
  EngineBuilder b(1, 1);
  b.manifest().modelName = model.target.name;
  b.manifest().modelConfig = toHubJson(model.target).dump();
  if (model.drafter)
    b.manifest().drafterConfig =
        toDrafterJson(*model.drafter, model.target).dump();
  for (const WeightSpec &s : modelWeights(model)) {
    std::string format =
        s.role == WeightRole::RouterBias ? "f32" : weightFormatName(s.format);
    auto it = formats.find(s.name);
    b.layoutWeight(s.name, it == formats.end() ? format : it->second, s.shape);
  }
  return b.finish();
}

std::vector<uint8_t> packAll(const EngineManifest &m,
                             const WeightSourceSpec &source) {
  std::vector<uint8_t> out(size_t(m.weightBytes));
  packWeights(m, source, out.data());
  return out;
}

std::vector<uint8_t> bytesOf(const std::vector<uint8_t> &region, int64_t offset,
                             int64_t n) {
  return std::vector<uint8_t>(region.begin() + offset,
                              region.begin() + offset + n);
}

TEST(WeightPacker, SyntheticBytesAreTheCheckpointWritersBytes) {
  for (const char *preset : {"tiny", "tiny-groups"}) {
    SCOPED_TRACE(preset);
    Model model = loadModel(preset);
    EngineManifest m = allWeights(model);
    EXPECT_EQ(engineModel(m).target, model.target);
    std::vector<uint8_t> packed = packAll(m, WeightSourceSpec::synthetic(9));
    fs::path dir = tempDir(std::string("writer-") + preset);
    SyntheticCheckpointOptions options;
    options.packedExperts = true;
    writeSyntheticCheckpoint(model, 9, dir.string(), options);
    Checkpoint target = Checkpoint::open(dir.string());
    Checkpoint drafter = Checkpoint::open((dir / "drafter").string());
    for (const WeightInfo &w : m.weights) {
      SCOPED_TRACE(w.name);
      bool isDrafter = w.name.rfind("drafter/", 0) == 0;
      const Checkpoint &ck = isDrafter ? drafter : target;
      std::string local = isDrafter ? w.name.substr(8) : w.name;
      const TensorInfo &t = ck.tensor(local);
      ASSERT_EQ(int64_t(t.nbytes), w.bytes);
      EXPECT_EQ(bytesOf(packed, w.offset, w.bytes),
                std::vector<uint8_t>(t.data, t.data + t.nbytes));
      if (w.scaleBytes == 0)
        continue;
      const TensorInfo &s = ck.tensor(
          local + (w.format == "fp8_block" ? "_scale_inv" : "_scale"));
      ASSERT_EQ(int64_t(s.nbytes), w.scaleBytes);
      EXPECT_EQ(bytesOf(packed, w.scaleOffset, w.scaleBytes),
                std::vector<uint8_t>(s.data, s.data + s.nbytes));
    }
    fs::remove_all(dir);
  }
}

TEST(WeightPacker, CheckpointsOnDiskPackAsTheSyntheticSource) {
  Model model = loadModel("tiny");
  EngineManifest m = allWeights(model);
  std::vector<uint8_t> synthetic = packAll(m, WeightSourceSpec::synthetic(4));
  struct Layout {
    const char *name;
    SyntheticCheckpointOptions options;
  } layouts[] = {{"per-expert", {}},
                 {"packed", {true, 0, false}},
                 {"sharded", {false, 64 * 1024, false}}};
  for (const Layout &layout : layouts) {
    SCOPED_TRACE(layout.name);
    fs::path dir = tempDir(std::string("disk-") + layout.name);
    writeSyntheticCheckpoint(model, 4, dir.string(), layout.options);
    // The drafter is found in dir/drafter.
    EXPECT_EQ(packAll(m, WeightSourceSpec::checkpoint(dir.string())),
              synthetic);
    // Weight by weight and matrix by matrix, as a GPU upload would.
    WeightPacker packer(m, WeightSourceSpec::checkpoint(
                               dir.string(), (dir / "drafter").string()));
    const WeightInfo &experts =
        m.weight("model.layers.1.mlp.experts.gate_up_proj");
    WeightLayout l = weightLayout(experts);
    std::vector<uint8_t> data(size_t(l.matrixBytes)),
        scales(size_t(l.matrixScaleBytes));
    packer.packMatrix(experts, 5, data.data(), scales.data());
    EXPECT_EQ(data, bytesOf(synthetic, experts.offset + 5 * l.matrixBytes,
                            l.matrixBytes));
    EXPECT_EQ(scales,
              bytesOf(synthetic, experts.scaleOffset + 5 * l.matrixScaleBytes,
                      l.matrixScaleBytes));
    fs::remove_all(dir);
  }
}

TEST(WeightPacker, PartsConcatenateRowsCopiedOrRequantized) {
  Model model = loadModel("tiny"); // attention and dense MLP are FP8
  EngineManifest base = allWeights(model);
  EngineBuilder b(1, 1);
  b.manifest().modelConfig = base.modelConfig;
  b.manifest().drafterConfig = base.drafterConfig;
  std::string a = "model.layers.0.self_attn.", mlp = "model.layers.0.mlp.";
  // gate + up: 128 rows each, whole scale blocks: the bytes are copied.
  WeightInfo gu =
      b.layoutWeight(mlp + "gate_up_proj", "fp8_block", {256, 64},
                     {mlp + "gate_proj.weight", mlp + "up_proj.weight"});
  // q + k + v: 192 + 96 + 64 rows: the scale blocks straddle the seams, so
  // the values are dequantized, concatenated and quantized again.
  WeightInfo qkv = b.layoutWeight(
      a + "qkv_proj", "fp8_block", {352, 64},
      {a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"});
  EngineManifest m = b.finish();
  std::vector<uint8_t> packed = packAll(m, WeightSourceSpec::synthetic(2));

  EngineManifest single = allWeights(model);
  std::vector<uint8_t> alone = packAll(single, WeightSourceSpec::synthetic(2));
  const WeightInfo &gate = single.weight(mlp + "gate_proj.weight"),
                   &up = single.weight(mlp + "up_proj.weight");
  std::vector<uint8_t> want = bytesOf(alone, gate.offset, gate.bytes);
  std::vector<uint8_t> more = bytesOf(alone, up.offset, up.bytes);
  want.insert(want.end(), more.begin(), more.end());
  EXPECT_EQ(bytesOf(packed, gu.offset, gu.bytes), want);
  want = bytesOf(alone, gate.scaleOffset, gate.scaleBytes);
  more = bytesOf(alone, up.scaleOffset, up.scaleBytes);
  want.insert(want.end(), more.begin(), more.end());
  EXPECT_EQ(bytesOf(packed, gu.scaleOffset, gu.scaleBytes), want);

  SyntheticWeights weights(model, 2);
  std::vector<float> values;
  for (auto [name, rows] :
       {std::pair(a + "q_proj.weight", 192), std::pair(a + "k_proj.weight", 96),
        std::pair(a + "v_proj.weight", 64)}) {
    std::vector<float> v = weights.load(name, {rows, 64});
    values.insert(values.end(), v.begin(), v.end());
  }
  std::vector<uint8_t> q(352 * 64);
  std::vector<float> s(static_cast<size_t>(fp8ScaleDim(352) * fp8ScaleDim(64)));
  quantizeFp8Block(values.data(), 352, 64, q.data(), s.data());
  EXPECT_EQ(bytesOf(packed, qkv.offset, qkv.bytes), q);
  std::vector<uint8_t> sb(s.size() * 4);
  std::memcpy(sb.data(), s.data(), sb.size());
  EXPECT_EQ(bytesOf(packed, qkv.scaleOffset, qkv.scaleBytes), sb);

  // The same from a checkpoint on disk.
  fs::path dir = tempDir("parts");
  writeSyntheticCheckpoint(model, 2, dir.string());
  EXPECT_EQ(packAll(m, WeightSourceSpec::checkpoint(dir.string())), packed);
  fs::remove_all(dir);
}

TEST(WeightPacker, ConvertsBf16CheckpointsToMxfp4AndFp8) {
  Model model = loadModel("tiny-window"); // every weight bf16
  std::string a = "model.layers.1.self_attn.", e = "model.layers.1.mlp.";
  EngineManifest m =
      allWeights(model, {{a + "o_proj.weight", "mxfp4"},
                         {a + "q_proj.weight", "fp8_block"},
                         {e + "experts.gate_up_proj", "mxfp4"},
                         {e + "experts.down_proj", "fp8_block"}});
  fs::path dir = tempDir("convert");
  writeSyntheticCheckpoint(model, 6, dir.string());
  std::vector<uint8_t> packed =
      packAll(m, WeightSourceSpec::checkpoint(dir.string()));
  // The synthetic source converts the same way.
  EXPECT_EQ(packAll(m, WeightSourceSpec::synthetic(6)), packed);
  CheckpointWeights values(dir.string(), (dir / "drafter").string());
  auto expectMxfp4 = [&](const WeightInfo &w, const std::vector<float> &v,
                         int64_t matrix) {
    WeightLayout l = weightLayout(w);
    std::vector<uint8_t> q(size_t(l.matrixBytes)),
        s(size_t(l.matrixScaleBytes));
    quantizeMxfp4(v.data(), l.rows, l.cols, q.data(), s.data());
    EXPECT_EQ(bytesOf(packed, w.offset + matrix * l.matrixBytes, l.matrixBytes),
              q)
        << w.name;
    EXPECT_EQ(bytesOf(packed, w.scaleOffset + matrix * l.matrixScaleBytes,
                      l.matrixScaleBytes),
              s)
        << w.name;
  };
  auto expectFp8 = [&](const WeightInfo &w, const std::vector<float> &v,
                       int64_t matrix) {
    WeightLayout l = weightLayout(w);
    std::vector<uint8_t> q(size_t(l.matrixBytes)),
        s(size_t(l.matrixScaleBytes));
    std::vector<float> sf(size_t(l.matrixScaleBytes / 4));
    quantizeFp8Block(v.data(), l.rows, l.cols, q.data(), sf.data());
    std::memcpy(s.data(), sf.data(), s.size());
    EXPECT_EQ(bytesOf(packed, w.offset + matrix * l.matrixBytes, l.matrixBytes),
              q)
        << w.name;
    EXPECT_EQ(bytesOf(packed, w.scaleOffset + matrix * l.matrixScaleBytes,
                      l.matrixScaleBytes),
              s)
        << w.name;
  };
  const WeightInfo &o = m.weight(a + "o_proj.weight");
  expectMxfp4(o, values.load(o.name, o.shape), 0);
  const WeightInfo &q = m.weight(a + "q_proj.weight");
  expectFp8(q, values.load(q.name, q.shape), 0);
  const WeightInfo &gu = m.weight(e + "experts.gate_up_proj");
  const WeightInfo &dn = m.weight(e + "experts.down_proj");
  for (int64_t x = 0; x < gu.shape[0]; ++x) {
    expectMxfp4(gu, values.loadExpert(gu.name, gu.shape, x), x);
    expectFp8(dn, values.loadExpert(dn.name, dn.shape, x), x);
  }
  // Unconverted weights are the stored bf16 bytes.
  Checkpoint ck = Checkpoint::open(dir.string());
  const WeightInfo &k = m.weight(a + "k_proj.weight");
  const TensorInfo &t = ck.tensor(k.name);
  EXPECT_EQ(bytesOf(packed, k.offset, k.bytes),
            std::vector<uint8_t>(t.data, t.data + t.nbytes));
  fs::remove_all(dir);
}

TEST(WeightPacker, AcceptsTheSinkAlias) {
  EngineBuilder b(1, 1);
  std::string name = "model.layers.1.self_attn.attention_sink_bias";
  WeightInfo w = b.layoutWeight(name, "bf16", {4});
  EngineManifest m = b.finish();
  std::vector<uint16_t> sinks{0x3f80, 0x4000, 0xbf80, 0x0000};
  SafetensorsWriter writer;
  writer.add("model.layers.1.self_attn.sinks", DType::BF16, {4}, sinks.data(),
             8);
  fs::path dir = tempDir("alias");
  fs::create_directories(dir);
  writer.write((dir / "model.safetensors").string());
  std::vector<uint8_t> packed =
      packAll(m, WeightSourceSpec::checkpoint(dir.string()));
  EXPECT_EQ(std::memcmp(packed.data() + w.offset, sinks.data(), 8), 0);
  fs::remove_all(dir);
}

TEST(WeightPacker, ErrorsNameTheWeightTheTensorAndTheCheckpoint) {
  Model model = loadModel("tiny");
  fs::path dir = tempDir("errors");
  writeSyntheticCheckpoint(model, 1, dir.string());
  auto packOne = [&](const std::string &name, std::vector<int64_t> shape,
                     const std::string &format = "bf16") {
    EngineBuilder b(1, 1);
    b.layoutWeight(name, format, std::move(shape));
    EngineManifest m = b.finish();
    return errorOf(
        [&] { packAll(m, WeightSourceSpec::checkpoint(dir.string())); });
  };
  std::string message = packOne("model.layers.0.input_layernorm.weightx", {64});
  EXPECT_NE(message.find("engine weight model.layers.0.input_layernorm.weightx "
                         "(bf16 [64]) from checkpoint " +
                         dir.string()),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("no tensor 'model.layers.0.input_layernorm.weightx'"),
            std::string::npos)
      << message;
  message = packOne("model.layers.0.self_attn.q_proj.weight", {100, 64});
  EXPECT_NE(message.find("makes 192 rows, the engine expects 100"),
            std::string::npos)
      << message;
  message =
      packOne("model.layers.1.mlp.experts.down_proj", {8, 64, 32}, "mxfp4");
  EXPECT_NE(message.find("the engine expects [8, 64, 32]"), std::string::npos)
      << message;
  EngineBuilder b(1, 1);
  b.layoutWeight("model.norm.weight", "bf16", {64});
  EngineManifest m = b.finish();
  m.weights[0].bytes = 64;
  message =
      errorOf([&] { packAll(m, WeightSourceSpec::checkpoint(dir.string())); });
  EXPECT_NE(message.find("engine weight model.norm.weight: bf16 [64] takes 128 "
                         "bytes, the manifest says 64"),
            std::string::npos)
      << message;
  fs::remove_all(dir);
}

//===----------------------------------------------------------------------===//
// Whole models
//===----------------------------------------------------------------------===//

TEST(ReferenceRounding, HiddenStatesAreBf16OnlyWhenAsked) {
  Model model = loadModel("tiny");
  SyntheticWeights weights(model, 8);
  std::vector<int32_t> tokens{3, 1, 4, 1, 5};
  ReferenceModel::Options options;
  options.roundActivations = true;
  ReferenceModel rounding(model.target, weights, options);
  ReferenceModel::Output a = rounding.forward(tokens, /*keepHidden=*/true);
  ReferenceModel plain(model.target, weights);
  ReferenceModel::Output b = plain.forward(tokens, /*keepHidden=*/true);
  bool differs = false;
  for (size_t l = 0; l < a.hidden.size(); ++l)
    for (size_t i = 0; i < a.hidden[l].data.size(); ++i) {
      ASSERT_EQ(a.hidden[l].data[i], roundBf16(a.hidden[l].data[i])) << l;
      differs |= b.hidden[l].data[i] != roundBf16(b.hidden[l].data[i]);
    }
  EXPECT_TRUE(differs); // the default keeps f32 residuals
  EXPECT_NE(a.logits.data, b.logits.data);
  // The default options are the old behaviour.
  ReferenceModel defaults(model.target, weights, ReferenceModel::Options());
  EXPECT_EQ(defaults.forward(tokens).logits.data, b.logits.data);
}

/// roundGateUp (the numerics of tile-fuse{disable=silu-pair}) rounds only the
/// dense MLPs' gate and up projections: the logits move by bf16 rounding
/// (printed: docs/tutorial-fusion.md quotes it), the greedy tokens stay.
TEST(ReferenceRounding, GateUpRoundingOnlyMovesTheLogitsALittle) {
  Model model = loadModel("tiny");
  SyntheticWeights weights(model, 0);
  std::vector<int32_t> tokens{3, 1, 4, 1, 5, 9, 2, 6};
  ReferenceModel::Options fusedOptions, unfusedOptions;
  fusedOptions.roundActivations = unfusedOptions.roundActivations = true;
  unfusedOptions.roundGateUp = true;
  ReferenceModel fused(model.target, weights, fusedOptions);
  ReferenceModel unfused(model.target, weights, unfusedOptions);
  std::vector<int32_t> a = fused.generateGreedy(tokens, 24);
  EXPECT_EQ(unfused.generateGreedy(tokens, 24), a);
  std::vector<int32_t> sequence = tokens;
  sequence.insert(sequence.end(), a.begin(), a.end() - 1);
  ReferenceModel f(model.target, weights, fusedOptions);
  ReferenceModel u(model.target, weights, unfusedOptions);
  ref::Tensor lf = f.forward(sequence).logits, lu = u.forward(sequence).logits;
  int64_t V = model.target.vocabSize;
  double worst = 0, worstAbs = 0;
  for (int64_t r = 0; r < lf.dim(0); ++r) {
    double diff = 0, norm = 0;
    for (int64_t v = 0; v < V; ++v) {
      double d = double(lu.row(r)[v]) - double(lf.row(r)[v]);
      diff += d * d;
      norm += double(lf.row(r)[v]) * double(lf.row(r)[v]);
      worstAbs = std::max(worstAbs, std::fabs(d));
    }
    worst = std::max(worst, std::sqrt(diff / norm));
  }
  std::printf("tiny, %d positions: unfused vs fused logits: max relative error "
              "%.2e, max absolute %.2e\n",
              int(lf.dim(0)), worst, worstAbs);
  // About 1.2e-2 on tiny (seed 0): most of tile-run --check's tolerance
  // (1.6e-2, left for the GPU's summation order), which is why the check
  // rounds gate and up for unfused engines.
  EXPECT_GT(worst, 0.0);
  EXPECT_LT(worst, 5e-2);
  // Off without roundActivations: gate and up are only rounded with it.
  ReferenceModel::Options plain;
  plain.roundGateUp = true;
  ReferenceModel p1(model.target, weights, plain),
      p2(model.target, weights, ReferenceModel::Options());
  EXPECT_EQ(p1.forward(tokens).logits.data, p2.forward(tokens).logits.data);
}

std::vector<int32_t> prompt(int64_t n, int64_t vocab) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back(int32_t((i * 37 + 11) % vocab));
  return out;
}

TEST(HostModel, HandBuiltEnginesMatchTheReferenceBitForBit) {
  struct Case {
    const char *preset;
    int64_t T;
    int sms;
  } cases[] = {{"tiny", 1, 5},
               {"tiny", 4, 7},
               {"tiny-groups", 3, 6},
               {"tiny-window", 2, 4},
               {"tiny-pro", 1, 9}};
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message() << c.preset << " T = " << c.T);
    Model model = loadModel(c.preset);
    EngineManifest m = buildModelEngine(model, c.T, c.sms);
    OracleCase o;
    // Past the sliding windows (8, 4) and around the rings (window + T).
    o.prompt = prompt(11, model.target.vocabSize);
    o.count = 6;
    o.weightSeed = 3;
    o.logitTolerance = 0.0; // same operations in the same order
    expectMatchesReference(m, o);
  }
}

TEST(HostModel, ThreadsGiveTheSameTokens) {
  Model model = loadModel("tiny");
  OracleCase o;
  o.prompt = prompt(6, model.target.vocabSize);
  o.count = 4;
  o.threads = 3;
  o.interleavingSeeds = {5, 6};
  o.logitTolerance = 0.0;
  expectMatchesReference(buildModelEngine(model, 2, 6), o);
}

/// Runs a command, returns its stdout.
std::string capture(const std::string &command) {
  std::string out;
  FILE *pipe = ::popen(command.c_str(), "r");
  if (!pipe)
    return out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0)
    out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

TEST(HostModel, EngineDirectoryAndTileRun) {
  Model model = loadModel("tiny-groups");
  EngineManifest m = buildModelEngine(model, 2, 4);
  fs::path dir = tempDir("engine");
  ASSERT_EQ(writeEngine(dir.string(), m, "// hand-built: no kernel\n"), "");
  OracleCase o;
  o.prompt = {5, 6, 7, 8, 9};
  o.count = 5;
  o.weightSeed = 0; // tile-run's default for presets
  o.interleavingSeeds = {11};
  o.logitTolerance = 0.0;
  expectMatchesReference(dir.string(), o);

  const char *binary = std::getenv("TILEC_BINARY_DIR");
  fs::path tileRun = binary ? fs::path(binary) / "bin" / "tile-run" : "";
  if (!binary || !fs::exists(tileRun)) {
    fs::remove_all(dir);
    GTEST_SKIP() << "tile-run not built (TILEC_BINARY_DIR unset)";
  }
  SyntheticWeights weights(model, 0);
  ReferenceModel::Options options;
  options.roundActivations = true;
  ReferenceModel reference(model.target, weights, options);
  std::vector<int32_t> want = reference.generateGreedy(o.prompt, 5);
  std::string out = capture(tileRun.string() + " run " + dir.string() +
                            " --executor host --prompt-ids 5,6,7,8,9 -n 5 "
                            "--interleavings-seed 7 --json 2>/dev/null");
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), want);
  EXPECT_EQ(j["executor"], "host");
  EXPECT_EQ(j["weights"], "synthetic weights (seed 0)");
  fs::remove_all(dir);
}

/// Compiled engines: TILEC_TEST_ENGINE_DIRS=dir1:dir2 (from `tilec MODEL -o
/// DIR` of presets, run with synthetic weights of seed 0).
TEST(HostModel, CompiledEnginesMatchTheReference) {
  const char *dirs = std::getenv("TILEC_TEST_ENGINE_DIRS");
  if (!dirs || !*dirs)
    GTEST_SKIP() << "set TILEC_TEST_ENGINE_DIRS to engine directories";
  std::string list = dirs;
  for (size_t begin = 0; begin <= list.size();) {
    size_t end = list.find(':', begin);
    if (end == std::string::npos)
      end = list.size();
    std::string dir = list.substr(begin, end - begin);
    begin = end + 1;
    if (dir.empty())
      continue;
    OracleCase o;
    o.prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    o.count = 8;
    o.logitTolerance = 1e-2;
    expectMatchesReference(dir, o);
  }
}

} // namespace

TEST(LaunchGroups, OrderFollowsTheWaitsNotTheSmLists) {
  Pair p;
  int64_t ea = p.b.event("a"), eb = p.b.event("b"), ed = p.b.event("d");
  // SM lists in an order unlike the launch order: b and c come first on SM 0.
  p.b.task(0, "b", p.inst, p.args(p.y, p.z), {p.b.all(ea)}, eb);
  p.b.task(0, "c", p.inst, p.args(p.z, p.x), {Wait{eb, 1}, Wait{ea, 2}}, -1);
  p.b.task(1, "a", p.inst, p.args(p.x, p.y, 0, 16), {}, ea);
  p.b.task(2, "d", p.inst, p.args(p.x, p.x), {}, ed);
  p.b.task(2, "a", p.inst, p.args(p.x, p.y, 16, 32), {}, ea);
  EngineManifest m = p.b.finish();
  std::vector<LaunchGroup> groups = launchGroups(m);
  std::vector<std::string> names;
  size_t tasks = 0;
  for (const LaunchGroup &g : groups) {
    names.push_back(g.name);
    tasks += g.tasks.size();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(tasks, size_t(m.taskCount()));
  ASSERT_EQ(groups[0].tasks.size(), 2u); // both of a's tasks in one launch
  EXPECT_EQ(groups[0].tasks[0].w[TILEC_W_ARG0 + TILEC_LIN_N0], 0);
  EXPECT_EQ(groups[0].tasks[1].w[TILEC_W_ARG0 + TILEC_LIN_N0], 16);
  // Every wait is met by the groups launched before.
  std::map<int64_t, int64_t> signalled;
  for (const LaunchGroup &g : groups) {
    for (const TilecTask &t : g.tasks)
      for (int k = 0; k < 2; ++k) {
        int64_t e = t.w[TILEC_W_WAIT0 + 2 * k];
        if (e >= 0) {
          EXPECT_GE(signalled[e], t.w[TILEC_W_COUNT0 + 2 * k]) << g.name;
        }
      }
    for (const TilecTask &t : g.tasks)
      if (t.w[TILEC_W_SIGNAL] >= 0)
        ++signalled[t.w[TILEC_W_SIGNAL]];
  }
}

TEST(LaunchGroups, CyclesAndUnsignalledEventsAreNamed) {
  {
    Pair p;
    int64_t ex = p.b.event("x"), ey = p.b.event("y");
    p.b.task(0, "x", p.inst, p.args(p.x, p.y), {Wait{ey, 1}}, ex);
    p.b.task(1, "y", p.inst, p.args(p.y, p.z), {Wait{ex, 1}}, ey);
    EngineManifest m = p.b.finish();
    EXPECT_NE(errorOf([&] { launchGroups(m); })
                  .find("the task groups' waits form a cycle (0 of 2 groups "
                        "ordered)"),
              std::string::npos);
  }
  {
    Pair p;
    int64_t lonely = p.b.event("lonely");
    p.b.task(0, "reader", p.inst, p.args(p.x, p.y), {Wait{lonely, 1}}, -1);
    EngineManifest m = p.b.finish();
    EXPECT_NE(errorOf([&] { launchGroups(m); })
                  .find("tasks of 'reader' wait on event 'lonely', which no "
                        "task signals"),
              std::string::npos);
  }
}
