//===- Synthetic.h - Deterministic synthetic weights ---------------*- C++
//-*-===//
//
// Synthetic weights are a pure function of (seed, tensor name, element index),
// so the same values come out of a checkpoint written here, of SyntheticWeights
// on the CPU, and of the runtime's generator on a GPU (which fills a
// 1T-parameter model without touching disk). The generator uses integer
// arithmetic and one exact float conversion, so every implementation agrees bit
// for bit:
//
//   key   = mix64(seed ^ fnv1a64(name))
//   bits  = mix64(key + (index + 1) * 0x9E3779B97F4A7C15)
//   u     = ((bits >> 40) + 0.5) * 2^-24 * 2 - 1           in (-1, 1)
//   value = offset + scale * u                               (f32)
//
// mix64 is SplitMix64's finalizer. Values are then quantized with the tensor's
// format (MXFP4 per row block of 32, FP8 per 128x128 block of each 2-D matrix;
// experts are one matrix each), and every consumer sees the dequantized values.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/WeightList.h"
#include "models/core/WeightSource.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tilec {

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t fnv1a64(std::string_view text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

inline uint64_t syntheticKey(uint64_t seed, std::string_view name) {
  return mix64(seed ^ fnv1a64(name));
}

/// Uniform in (-1, 1), exactly representable in f32.
inline float syntheticUniform(uint64_t key, uint64_t index) {
  uint64_t bits = mix64(key + (index + 1) * 0x9E3779B97F4A7C15ull);
  return float((double((bits >> 40)) + 0.5) * (1.0 / 8388608.0) - 1.0);
}

/// The distribution of a tensor: value = offset + scale * u. Chosen so random
/// models keep activations of order one (linears: std 1/sqrt(fan_in)).
struct SyntheticInit {
  float scale = 1.0f, offset = 0.0f;
};
SyntheticInit syntheticInit(const WeightSpec &spec);

/// Values before quantization of elements [begin, begin + count).
void synthesizeRaw(const WeightSpec &spec, uint64_t seed, int64_t begin,
                   int64_t count, float *out);

/// The 2-D matrix `matrix` of a tensor (0 for a plain tensor, the expert index
/// for a packed expert tensor), quantized with the tensor's format and
/// dequantized: exactly what a checkpoint written here holds. 1-D tensors are
/// one row.
std::vector<float> synthesizeMatrix(const WeightSpec &spec, uint64_t seed,
                                    int64_t matrix);

/// One matrix of a tensor exactly as writeSyntheticCheckpoint stores it, in
/// the tensor's format: `data` holds bf16 (f32 for the router bias), E4M3
/// bytes or packed E2M1 pairs (low nibble = even element); `scales` holds FP8
/// f32 scales [ceil(rows/128), ceil(cols/128)] or MXFP4 E8M0 codes [rows,
/// cols/32], and is empty for bf16/f32. `matrix` is as for synthesizeMatrix.
struct SyntheticStored {
  std::vector<uint8_t> data, scales;
};
SyntheticStored synthesizeStored(const WeightSpec &spec, uint64_t seed,
                                 int64_t matrix);

/// A WeightSource generating a model's tensors on demand.
class SyntheticWeights : public WeightSource {
public:
  SyntheticWeights(const Model &model, uint64_t seed);
  std::vector<float> load(const std::string &name,
                          const std::vector<int64_t> &shape) override;
  std::vector<float> loadExpert(const std::string &name,
                                const std::vector<int64_t> &shape,
                                int64_t expert) override;

private:
  const WeightSpec &spec(const std::string &name,
                         const std::vector<int64_t> &shape) const;
  std::vector<WeightSpec> specs_;
  uint64_t seed_;
};

struct SyntheticCheckpointOptions {
  /// Experts as `experts.{e}.{gate,up,down}_proj.weight` (what transformers
  /// writes) or packed `experts.{gate_up,down}_proj`.
  bool packedExperts = false;
  /// Shard the weights when they exceed this many bytes (0: one file).
  uint64_t maxShardBytes = 0;
  /// Write config.json loadable by transformers' MiMoV2FlashConfig (no
  /// quantization_config); requires an all-BF16 quant plan.
  bool forTransformers = false;
};

/// Writes config.json + safetensors for the target into `dir` and, when the
/// model has a drafter, `dir/drafter/`. Quantized tensors are stored as real
/// checkpoints store them (FP8: F8_E4M3 + `_scale_inv`; MXFP4: U8 pairs +
/// F8_E8M0 `_scale`). Throws tilec::Error.
void writeSyntheticCheckpoint(const Model &model, uint64_t seed,
                              const std::string &dir,
                              const SyntheticCheckpointOptions &options = {});

} // namespace tilec
