//===- SyntheticExpected.cpp - models/core's synthetic weight bytes -------===//
#include "tests/gpu/SyntheticExpected.h"

#include "models/core/Config.h"
#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "models/core/Safetensors.h"
#include "models/core/Synthetic.h"
#include "models/core/WeightList.h"

#include <cstring>

namespace tilec::gputest {
namespace {

int formatCode(const WeightSpec &spec) {
  if (spec.format == WeightFormat::FP8Block)
    return 1;
  if (spec.format == WeightFormat::MXFP4)
    return 2;
  return spec.role == WeightRole::RouterBias ? 3 : 0;
}

SynthTensor describe(const WeightSpec &spec, uint64_t seed) {
  SynthTensor t;
  t.name = spec.name;
  t.format = formatCode(spec);
  t.key = syntheticKey(seed, spec.name);
  SyntheticInit init = syntheticInit(spec);
  t.scale = init.scale;
  t.offset = init.offset;
  const std::vector<int64_t> &s = spec.shape;
  if (s.size() == 3)
    t.matrices = s[0], t.rows = s[1], t.cols = s[2];
  else if (s.size() == 2)
    t.rows = s[0], t.cols = s[1];
  else
    t.cols = s.empty() ? 1 : s[0];
  return t;
}

std::vector<uint8_t> bytesOf(const TensorInfo &info) {
  return std::vector<uint8_t>(info.data, info.data + info.nbytes);
}

} // namespace

std::vector<SynthTensor> checkpointTensors(const std::string &preset,
                                           uint64_t seed,
                                           const std::string &dir) {
  Model model = loadModel(preset);
  SyntheticCheckpointOptions options;
  options.packedExperts = true;
  writeSyntheticCheckpoint(model, seed, dir, options);
  SafetensorsFile target = SafetensorsFile::open(dir + "/model.safetensors");
  std::optional<SafetensorsFile> drafter;
  if (model.drafter)
    drafter = SafetensorsFile::open(dir + "/drafter/model.safetensors");
  std::vector<SynthTensor> out;
  const std::string prefix = kDrafterPrefix;
  for (const WeightSpec &spec : modelWeights(model)) {
    SynthTensor t = describe(spec, seed);
    const SafetensorsFile &file = spec.isDrafter() ? *drafter : target;
    const std::string stored =
        spec.isDrafter() ? spec.name.substr(prefix.size()) : spec.name;
    t.data = bytesOf(file.tensor(stored));
    if (t.format == 1)
      t.scales = bytesOf(file.tensor(stored + "_scale_inv"));
    else if (t.format == 2)
      t.scales = bytesOf(file.tensor(stored + "_scale"));
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<SynthTensor> largeTensors(uint64_t seed) {
  const std::vector<WeightSpec> specs = {
      {"model.layers.3.mlp.experts.gate_up_proj",
       {2, 512, 6144},
       WeightFormat::MXFP4,
       WeightRole::ExpertsGateUp},
      {"model.layers.3.self_attn.q_proj.weight",
       {1100, 6200},
       WeightFormat::FP8Block,
       WeightRole::Linear},
      {"model.layers.3.self_attn.o_proj.weight",
       {256, 6144},
       WeightFormat::BF16,
       WeightRole::Linear},
      {"model.layers.3.mlp.gate.e_score_correction_bias",
       {384},
       WeightFormat::BF16,
       WeightRole::RouterBias},
  };
  std::vector<SynthTensor> out;
  for (const WeightSpec &spec : specs) {
    SynthTensor t = describe(spec, seed);
    const int64_t size = t.rows * t.cols;
    std::vector<float> raw(static_cast<size_t>(size));
    for (int64_t m = 0; m < t.matrices; ++m) {
      synthesizeRaw(spec, seed, m * size, size, raw.data());
      auto append = [](std::vector<uint8_t> &to, const void *from, size_t n) {
        const uint8_t *b = static_cast<const uint8_t *>(from);
        to.insert(to.end(), b, b + n);
      };
      if (t.format == 2) {
        std::vector<uint8_t> packed(size_t(size / 2)),
            scales(size_t(size / 32));
        quantizeMxfp4(raw.data(), t.rows, t.cols, packed.data(), scales.data());
        append(t.data, packed.data(), packed.size());
        append(t.scales, scales.data(), scales.size());
      } else if (t.format == 1) {
        std::vector<uint8_t> q(static_cast<size_t>(size));
        std::vector<float> scales(
            static_cast<size_t>(fp8ScaleDim(t.rows) * fp8ScaleDim(t.cols)));
        quantizeFp8Block(raw.data(), t.rows, t.cols, q.data(), scales.data());
        append(t.data, q.data(), q.size());
        append(t.scales, scales.data(), scales.size() * sizeof(float));
      } else if (t.format == 3) {
        append(t.data, raw.data(), raw.size() * sizeof(float));
      } else {
        std::vector<uint16_t> bf(raw.size());
        for (size_t i = 0; i < raw.size(); ++i)
          bf[i] = f32ToBf16(raw[i]);
        append(t.data, bf.data(), bf.size() * 2);
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

} // namespace tilec::gputest
