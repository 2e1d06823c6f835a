//===- CheckpointWeights.cpp - Weights read from safetensors --------------===//
#include "models/core/CheckpointWeights.h"

#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "models/core/WeightList.h"

#include <cstring>

namespace tilec {

namespace {

std::vector<float> dequantize(const WeightView &view) {
  std::vector<float> out(static_cast<size_t>(view.rows * view.cols));
  dequantizeWeight(view, out.data());
  return out;
}

} // namespace

CheckpointWeights::CheckpointWeights(const std::string &targetDir,
                                     const std::string &drafterDir)
    : target_(Checkpoint::open(targetDir)) {
  if (!drafterDir.empty())
    drafter_.emplace(Checkpoint::open(drafterDir));
}

const Checkpoint &CheckpointWeights::checkpointFor(const std::string &name,
                                                   std::string &local) {
  const std::string prefix = kDrafterPrefix;
  if (name.rfind(prefix, 0) != 0) {
    local = name;
    return target_;
  }
  if (!drafter_)
    fail(
        "weight {} belongs to the drafter, but no drafter checkpoint was given",
        name);
  local = name.substr(prefix.size());
  return *drafter_;
}

const LayerExperts &CheckpointWeights::experts(const Checkpoint &ck,
                                               const std::string &mlp) {
  std::string key = ck.path() + "|" + mlp;
  auto it = experts_.find(key);
  if (it == experts_.end())
    it = experts_.emplace(key, loadExperts(ck, mlp)).first;
  return it->second;
}

std::vector<float>
CheckpointWeights::loadExpert(const std::string &name,
                              const std::vector<int64_t> &shape,
                              int64_t expert) {
  std::string local, mlp, which;
  const Checkpoint &ck = checkpointFor(name, local);
  if (!splitExpertName(local, mlp, which) || shape.size() != 3)
    fail("{}: not an expert tensor ([E, R, C] gate_up_proj or down_proj)",
         name);
  const LayerExperts &layer = experts(ck, mlp);
  int64_t hidden = which == "gate_up_proj" ? shape[2] : shape[1];
  int64_t inter = which == "gate_up_proj" ? shape[1] / 2 : shape[2];
  if (layer.numExperts != shape[0] || layer.hidden != hidden ||
      layer.intermediate != inter)
    fail("checkpoint {}: {} experts hold {} experts of hidden {} and "
         "intermediate "
         "{}; the config asks for {}",
         ck.path(), mlp, layer.numExperts, layer.hidden, layer.intermediate,
         shapeText(shape));
  if (expert < 0 || expert >= layer.numExperts)
    fail("{}: expert {} out of range [0, {})", name, expert, layer.numExperts);
  const ExpertWeights &w = layer.experts[size_t(expert)];
  if (which == "down_proj")
    return dequantize(w.down);
  std::vector<float> gateUp = dequantize(w.gate);
  std::vector<float> up = dequantize(w.up);
  gateUp.insert(gateUp.end(), up.begin(), up.end());
  return gateUp;
}

std::vector<float> CheckpointWeights::load(const std::string &name,
                                           const std::vector<int64_t> &shape) {
  std::string local, mlp, which;
  const Checkpoint &ck = checkpointFor(name, local);
  if (splitExpertName(local, mlp, which)) {
    std::vector<float> all;
    for (int64_t e = 0; e < shape[0]; ++e) {
      std::vector<float> one = loadExpert(name, shape, e);
      all.insert(all.end(), one.begin(), one.end());
    }
    return all;
  }
  const TensorInfo *info = nullptr;
  std::string found;
  for (const std::string &alias : weightNameAliases(local))
    if ((info = ck.find(alias))) {
      found = alias;
      break;
    }
  if (!info)
    ck.tensor(local); // throws naming the checkpoint and close names
  if (info->shape.size() == 2) {
    WeightView view = weightView(ck, found);
    if (std::vector<int64_t>{view.rows, view.cols} != shape)
      fail("{}: tensor {} has shape {}, the config asks for {}", info->file,
           found, shapeText({view.rows, view.cols}), shapeText(shape));
    return dequantize(view);
  }
  if (info->shape != shape)
    fail("{}: tensor {} has shape {}, the config asks for {}", info->file,
         found, shapeText(info->shape), shapeText(shape));
  std::vector<float> out(static_cast<size_t>(info->numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    switch (info->dtype) {
    case DType::F32:
      std::memcpy(&out[i], info->data + 4 * i, 4);
      break;
    case DType::BF16:
    case DType::F16: {
      uint16_t bits;
      std::memcpy(&bits, info->data + 2 * i, 2);
      out[i] = info->dtype == DType::BF16 ? bf16ToF32(bits) : f16ToF32(bits);
      break;
    }
    default:
      fail("{}: tensor {} has dtype {}, expected F32, BF16 or F16", info->file,
           found, dtypeName(info->dtype));
    }
  }
  return out;
}

} // namespace tilec
