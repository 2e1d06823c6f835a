//===- CheckpointWeights.h - Weights read from safetensors -------*- C++
//-*-===//
//
// A WeightSource over a model's checkpoint (and its drafter's): tensors named
// as in WeightList.h, dequantized to f32. Experts come from either layout; the
// sink tensor from either of its names.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Checkpoint.h"
#include "models/core/WeightSource.h"

#include <map>
#include <memory>
#include <optional>

namespace tilec {

class CheckpointWeights : public WeightSource {
public:
  /// `drafterDir` may be empty (no drafter tensors then).
  CheckpointWeights(const std::string &targetDir,
                    const std::string &drafterDir);

  std::vector<float> load(const std::string &name,
                          const std::vector<int64_t> &shape) override;
  std::vector<float> loadExpert(const std::string &name,
                                const std::vector<int64_t> &shape,
                                int64_t expert) override;

private:
  const Checkpoint &checkpointFor(const std::string &name, std::string &local);
  const LayerExperts &experts(const Checkpoint &ck, const std::string &local);

  Checkpoint target_;
  std::optional<Checkpoint> drafter_;
  std::map<std::string, LayerExperts> experts_;
};

} // namespace tilec
