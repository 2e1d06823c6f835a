//===- WeightSource.h - Dequantized weights by checkpoint name ---*- C++
//-*-===//
//
// What the CPU reference model and the host executor read weights through: f32
// values of a tensor named as in WeightList.h, after dequantization. Sources: a
// safetensors checkpoint (CheckpointWeights) or the synthetic generator
// (SyntheticWeights, Synthetic.h).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tilec {

class WeightSource {
public:
  virtual ~WeightSource() = default;
  /// The whole tensor `name` as f32, row-major, of exactly `shape`. Throws
  /// tilec::Error naming the tensor when it is absent or has another shape.
  virtual std::vector<float> load(const std::string &name,
                                  const std::vector<int64_t> &shape) = 0;
  /// One expert `[R, C]` of a packed expert tensor `name` of shape `[E, R, C]`.
  /// The default loads the whole tensor; large sources override it.
  virtual std::vector<float> loadExpert(const std::string &name,
                                        const std::vector<int64_t> &shape,
                                        int64_t expert);
};

} // namespace tilec
