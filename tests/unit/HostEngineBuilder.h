//===- HostEngineBuilder.h - Engines built by hand, and the oracle check --===//
//
// Test helpers for runtime/host: EngineBuilder assembles an EngineManifest
// by hand (arena buffers, weights with or without their bytes, instances,
// ops with one event each, tasks spread over SMs); buildModelEngine lays out
// a whole target model with it, the way docs/engine.md describes (a stand-in
// for `tilec MODEL -o DIR` until the compiler emits engines); and
// expectMatchesReference runs an engine (a directory or a manifest) on the
// host executor over several interleavings and compares it with the CPU
// reference model rounding activations where the engine does.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Config.h"
#include "runtime/abi/TaskAbi.h"
#include "runtime/engine/Manifest.h"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tilec {
namespace test {

/// f32 bits in an argument word.
int64_t f32Word(float value);

/// Deterministic values in (-scale, scale) (Synthetic.h's generator).
std::vector<float> randomValues(uint64_t seed, int64_t n, float scale = 1.0f);

/// Argument words of a task: (TILEC_*_ARG enum, value); unset words are -1.
using TaskArgs = std::vector<std::pair<int, int64_t>>;

struct Wait {
  int64_t event = -1, count = 0;
};

class EngineBuilder {
public:
  EngineBuilder(int sms, int64_t tokens);

  /// An arena buffer of `bytes` bytes at the next 256-byte boundary.
  int64_t buffer(const std::string &name, const std::string &dtype,
                 std::vector<int64_t> shape, int64_t bytes);
  int64_t bf16Buffer(const std::string &name, std::vector<int64_t> shape);
  int64_t f32Buffer(const std::string &name, std::vector<int64_t> shape);
  int64_t i32Buffer(const std::string &name, std::vector<int64_t> shape);

  /// Reserves a weight in the layout of docs/engine.md (bytes filled by a
  /// WeightPacker later). Returns its WeightInfo.
  WeightInfo layoutWeight(const std::string &name, const std::string &format,
                          std::vector<int64_t> shape,
                          std::vector<std::string> parts = {});
  /// A weight with these values (row-major, of `shape`), stored in `format`
  /// ("bf16", "f32", "fp8_block", "mxfp4"; experts: one matrix per leading
  /// index). Returns the values an executor sees (quantized, dequantized).
  struct Stored {
    WeightInfo info;
    std::vector<float> values;
  };
  Stored weight(const std::string &name, const std::string &format,
                std::vector<int64_t> shape, const std::vector<float> &values);

  /// A KV cache of the kv region; returns it.
  KVCacheInfo cache(const std::string &name, int64_t kvHeads, int64_t qkDim,
                    int64_t vDim, int64_t capacity, int64_t window);

  int64_t instance(TilecTaskFamily family,
                   std::map<std::string, int64_t> params);
  /// An op: its tasks (each a TaskArgs) on SMs in turn, all waiting for
  /// `waits` and signalling one new event. Returns the event.
  int64_t op(const std::string &name, int64_t instance,
             const std::vector<TaskArgs> &tasks,
             const std::vector<Wait> &waits = {});
  /// One task on a chosen SM (tests of the event checking); `signal` may be
  /// -1. Returns its index in the SM's list.
  int64_t task(int sm, const std::string &opName, int64_t instance,
               const TaskArgs &args, const std::vector<Wait> &waits,
               int64_t signal);
  /// The SM the next task of op() goes to (SMs in turn).
  int nextSm();
  /// A new event (signals counted from the tasks at finish()).
  int64_t event(const std::string &name);
  /// All of an op's signals: Wait{event, tasks that signal it}.
  Wait all(int64_t event) const;

  /// The manifest, with signals_per_step counted and the regions sized.
  EngineManifest finish();
  /// The bytes of the weights given with values (zero elsewhere).
  const std::vector<uint8_t> &weightBytes();

  EngineManifest &manifest() { return m_; }

private:
  int64_t opId(const std::string &name);
  EngineManifest m_;
  std::vector<uint8_t> weights_;
  int nextSm_ = 0;
};

/// A whole target model as one step of T tokens, laid out and scheduled the
/// way docs/engine.md describes, over `sms` SMs: embed, per layer q/k/v
/// (RMSNORM prologue; ROPE_STORE, ROPE_KCACHE, VCACHE), attention per kv
/// head, o_proj (RESIDUAL, in place), then a dense MLP (gate and up as one
/// weight of two parts when the format allows, SILU_PAIR, down RESIDUAL) or
/// the MoE (router logits STORE_F32, ROUTER_TOPK, MOE_GATE_UP, MOE_DOWN,
/// MOE_COMBINE), and lm_head (ARGMAX) with ARGMAX_REDUCE. Ring caches hold
/// window + T positions, full ones `maxContext`. The manifest carries the
/// model's config texts, so synthetic weights need no more.
EngineManifest buildModelEngine(const Model &model, int64_t tokens, int sms,
                                int64_t maxContext = 64);

struct OracleCase {
  std::vector<int32_t> prompt;
  int64_t count = 8;
  uint64_t weightSeed = 0;
  std::vector<uint64_t> interleavingSeeds = {0, 1, 2};
  int threads = 1;
  /// Largest |logit difference| allowed on the prefill's last token; a
  /// compiled engine may compute scales and RoPE angles in another order.
  double logitTolerance = 1e-3;
};

/// Runs the engine on the host executor (synthetic weights of its own model
/// config) for every interleaving seed and expects the reference model's
/// greedy tokens (ReferenceModel with roundActivations) and logits.
void expectMatchesReference(const EngineManifest &manifest,
                            const OracleCase &oracle);
/// The same for an engine directory (`tilec MODEL -o DIR`).
void expectMatchesReference(const std::string &engineDir,
                            const OracleCase &oracle);

} // namespace test
} // namespace tilec
