//===- Synthetic.cpp - Deterministic synthetic weights -------------------===//
#include "models/core/Synthetic.h"

#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "models/core/Safetensors.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace tilec {

std::vector<float> WeightSource::loadExpert(const std::string &name,
                                            const std::vector<int64_t> &shape,
                                            int64_t expert) {
  if (shape.size() != 3 || expert < 0 || expert >= shape[0])
    fail("{}: expert {} out of range for shape of rank {}", name, expert,
         shape.size());
  std::vector<float> all = load(name, shape);
  int64_t size = shape[1] * shape[2];
  return std::vector<float>(all.begin() + expert * size,
                            all.begin() + (expert + 1) * size);
}

SyntheticInit syntheticInit(const WeightSpec &spec) {
  auto fanIn = [&](int64_t in) {
    // Uniform(-a, a) has std a / sqrt(3): aim for std 1 / sqrt(fan_in).
    return SyntheticInit{float(std::sqrt(3.0 / double(in))), 0.0f};
  };
  switch (spec.role) {
  case WeightRole::Embedding:
    return {1.0f, 0.0f};
  case WeightRole::Norm:
    return {0.1f, 1.0f};
  case WeightRole::Linear:
  case WeightRole::RouterGate:
    return fanIn(spec.shape.back());
  case WeightRole::RouterBias:
    return {0.05f, 0.0f};
  case WeightRole::Sinks:
    return {1.0f, 0.0f};
  case WeightRole::ExpertsGateUp:
  case WeightRole::ExpertsDown:
    return fanIn(spec.shape.back());
  }
  return {};
}

void synthesizeRaw(const WeightSpec &spec, uint64_t seed, int64_t begin,
                   int64_t count, float *out) {
  SyntheticInit init = syntheticInit(spec);
  uint64_t key = syntheticKey(seed, spec.name);
  parallelFor(count, 8, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      out[i] =
          init.offset + init.scale * syntheticUniform(key, uint64_t(begin + i));
  });
}

namespace {

/// [matrices, rows, cols] of a tensor: experts are one matrix each.
struct MatrixShape {
  int64_t matrices = 1, rows = 1, cols = 1;
};

MatrixShape matrixShape(const WeightSpec &spec) {
  const std::vector<int64_t> &s = spec.shape;
  if (s.size() == 3)
    return {s[0], s[1], s[2]};
  if (s.size() == 2)
    return {1, s[0], s[1]};
  return {1, 1, s.empty() ? 1 : s[0]};
}

} // namespace

std::vector<float> synthesizeMatrix(const WeightSpec &spec, uint64_t seed,
                                    int64_t matrix) {
  MatrixShape m = matrixShape(spec);
  if (matrix < 0 || matrix >= m.matrices)
    fail("{}: matrix {} out of range (the tensor has {})", spec.name, matrix,
         m.matrices);
  std::vector<float> values(static_cast<size_t>(m.rows * m.cols));
  synthesizeRaw(spec, seed, matrix * m.rows * m.cols, m.rows * m.cols,
                values.data());
  if (spec.format == WeightFormat::MXFP4) {
    std::vector<uint8_t> packed(values.size() / 2), scales(values.size() / 32);
    quantizeMxfp4(values.data(), m.rows, m.cols, packed.data(), scales.data());
    dequantizeMxfp4(packed.data(), scales.data(), m.rows, m.cols,
                    values.data());
  } else if (spec.format == WeightFormat::FP8Block) {
    std::vector<uint8_t> q(values.size());
    std::vector<float> scales(
        static_cast<size_t>(fp8ScaleDim(m.rows) * fp8ScaleDim(m.cols)));
    quantizeFp8Block(values.data(), m.rows, m.cols, q.data(), scales.data());
    dequantizeFp8Block(q.data(), scales.data(), m.rows, m.cols, values.data());
  } else if (spec.role != WeightRole::RouterBias) {
    // BF16 storage: what a bf16 checkpoint would hold (the router bias is f32).
    for (float &v : values)
      v = bf16ToF32(f32ToBf16(v));
  }
  return values;
}

SyntheticWeights::SyntheticWeights(const Model &model, uint64_t seed)
    : specs_(modelWeights(model)), seed_(seed) {}

const WeightSpec &
SyntheticWeights::spec(const std::string &name,
                       const std::vector<int64_t> &shape) const {
  for (const WeightSpec &s : specs_) {
    if (s.name != name)
      continue;
    if (s.shape != shape)
      fail("synthetic weights: tensor {} has shape [{}], asked for [{}]", name,
           fmt::join(s.shape, ", "), fmt::join(shape, ", "));
    return s;
  }
  fail("synthetic weights: the model has no tensor named {}", name);
}

std::vector<float> SyntheticWeights::load(const std::string &name,
                                          const std::vector<int64_t> &shape) {
  const WeightSpec &s = spec(name, shape);
  MatrixShape m = matrixShape(s);
  std::vector<float> out;
  out.reserve(size_t(s.numel()));
  for (int64_t i = 0; i < m.matrices; ++i) {
    std::vector<float> part = synthesizeMatrix(s, seed_, i);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::vector<float>
SyntheticWeights::loadExpert(const std::string &name,
                             const std::vector<int64_t> &shape,
                             int64_t expert) {
  return synthesizeMatrix(spec(name, shape), seed_, expert);
}

namespace {

/// `matrices` consecutive [rows, cols] matrices of a tensor, starting at
/// element `begin`, encoded in the tensor's storage format.
struct Encoded {
  DType dtype = DType::BF16;
  std::vector<uint8_t> data;
  std::vector<uint8_t> scales; // empty for bf16/f32
  DType scaleDtype = DType::F32;
  std::string scaleSuffix;
  std::vector<int64_t> scaleShape; // per matrix
};

Encoded encode(const WeightSpec &spec, uint64_t seed, int64_t begin,
               int64_t matrices, int64_t rows, int64_t cols) {
  Encoded e;
  int64_t size = rows * cols;
  std::vector<float> raw(static_cast<size_t>(size));
  for (int64_t m = 0; m < matrices; ++m) {
    synthesizeRaw(spec, seed, begin + m * size, size, raw.data());
    auto append = [](std::vector<uint8_t> &to, const void *from, size_t n) {
      const uint8_t *bytes = static_cast<const uint8_t *>(from);
      to.insert(to.end(), bytes, bytes + n);
    };
    if (spec.format == WeightFormat::MXFP4) {
      std::vector<uint8_t> packed(static_cast<size_t>(size / 2)),
          scales(static_cast<size_t>(size / 32));
      quantizeMxfp4(raw.data(), rows, cols, packed.data(), scales.data());
      append(e.data, packed.data(), packed.size());
      append(e.scales, scales.data(), scales.size());
      e.dtype = DType::U8;
      e.scaleDtype = DType::F8_E8M0;
      e.scaleSuffix = "_scale";
      e.scaleShape = {rows, cols / 32};
    } else if (spec.format == WeightFormat::FP8Block) {
      std::vector<uint8_t> q(static_cast<size_t>(size));
      std::vector<float> scales(
          static_cast<size_t>(fp8ScaleDim(rows) * fp8ScaleDim(cols)));
      quantizeFp8Block(raw.data(), rows, cols, q.data(), scales.data());
      append(e.data, q.data(), q.size());
      append(e.scales, scales.data(), scales.size() * sizeof(float));
      e.dtype = DType::F8_E4M3;
      e.scaleDtype = DType::F32;
      e.scaleSuffix = "_scale_inv";
      e.scaleShape = {fp8ScaleDim(rows), fp8ScaleDim(cols)};
    } else if (spec.role == WeightRole::RouterBias) {
      append(e.data, raw.data(), raw.size() * sizeof(float));
      e.dtype = DType::F32;
    } else {
      std::vector<uint16_t> bf(raw.size());
      for (size_t i = 0; i < raw.size(); ++i)
        bf[i] = f32ToBf16(raw[i]);
      append(e.data, bf.data(), bf.size() * 2);
      e.dtype = DType::BF16;
    }
  }
  return e;
}

} // namespace

SyntheticStored synthesizeStored(const WeightSpec &spec, uint64_t seed,
                                 int64_t matrix) {
  MatrixShape m = matrixShape(spec);
  if (matrix < 0 || matrix >= m.matrices)
    fail("{}: matrix {} out of range (the tensor has {})", spec.name, matrix,
         m.matrices);
  Encoded e = encode(spec, seed, matrix * m.rows * m.cols, 1, m.rows, m.cols);
  return {std::move(e.data), std::move(e.scales)};
}

namespace {

/// Adds an encoded tensor of logical shape `shape` (leading dims = matrices).
void add(SafetensorsWriter &writer, const std::string &name, Encoded e,
         std::vector<int64_t> shape) {
  std::vector<int64_t> stored = shape;
  if (e.dtype == DType::U8)
    stored.back() /= 2; // two E2M1 per byte
  writer.add(name, e.dtype, stored, e.data.data(), e.data.size());
  if (e.scales.empty())
    return;
  // Quantized tensors are matrices or stacks of them: [..., scale rows, cols].
  std::vector<int64_t> scaleShape(shape.begin(), shape.end() - 2);
  scaleShape.insert(scaleShape.end(), e.scaleShape.begin(), e.scaleShape.end());
  writer.add(name + e.scaleSuffix, e.scaleDtype, scaleShape, e.scales.data(),
             e.scales.size());
}

void writeJson(const std::string &path, const nlohmann::json &json) {
  std::ofstream out(path);
  out << json.dump(2) << "\n";
  if (!out)
    fail("cannot write {}", path);
}

void writeTensors(const SafetensorsWriter &writer, const std::string &dir,
                  const SyntheticCheckpointOptions &options) {
  if (options.maxShardBytes > 0)
    writer.writeSharded(dir, options.maxShardBytes);
  else
    writer.write(dir + "/model.safetensors");
}

void addTensor(SafetensorsWriter &writer, const std::string &name,
               const WeightSpec &spec, uint64_t seed,
               const SyntheticCheckpointOptions &options) {
  MatrixShape m = matrixShape(spec);
  bool experts = spec.role == WeightRole::ExpertsGateUp ||
                 spec.role == WeightRole::ExpertsDown;
  if (!experts || options.packedExperts) {
    add(writer, name, encode(spec, seed, 0, m.matrices, m.rows, m.cols),
        spec.shape);
    return;
  }
  // Per expert, as transformers writes them: gate_up [E, 2I, H] splits into
  // gate_proj and up_proj. The halves quantize alone exactly as the whole
  // matrix (MXFP4 blocks never cross rows; FP8 blocks need I % 128 == 0).
  std::string base = name.substr(0, name.rfind("experts.") + 8);
  for (int64_t e = 0; e < m.matrices; ++e) {
    std::string prefix = base + std::to_string(e) + ".";
    int64_t begin = e * m.rows * m.cols;
    if (spec.role == WeightRole::ExpertsDown) {
      add(writer, prefix + "down_proj.weight",
          encode(spec, seed, begin, 1, m.rows, m.cols), {m.rows, m.cols});
      continue;
    }
    int64_t I = m.rows / 2;
    if (spec.format == WeightFormat::FP8Block && I % kFp8BlockSize != 0)
      fail("{}: per-expert FP8 gate/up need moe_intermediate_size % 128 == 0",
           spec.name);
    add(writer, prefix + "gate_proj.weight",
        encode(spec, seed, begin, 1, I, m.cols), {I, m.cols});
    add(writer, prefix + "up_proj.weight",
        encode(spec, seed, begin + I * m.cols, 1, I, m.cols), {I, m.cols});
  }
}

} // namespace

void writeSyntheticCheckpoint(const Model &model, uint64_t seed,
                              const std::string &dir,
                              const SyntheticCheckpointOptions &options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    fail("cannot create checkpoint directory {}: {}", dir, ec.message());
  if (options.forTransformers && !model.target.quant.allBF16())
    fail(
        "{}: transformers loads only bf16 MiMo checkpoints; this model's quant "
        "plan stores some weights quantized",
        model.target.name);

  HfJsonOptions json;
  json.withQuantization = !options.forTransformers;
  writeJson(dir + "/config.json", toHfJson(model.target, json));

  SafetensorsWriter target, drafter;
  const std::string prefix = kDrafterPrefix;
  for (const WeightSpec &spec : modelWeights(model)) {
    if (spec.isDrafter())
      addTensor(drafter, spec.name.substr(prefix.size()), spec, seed, options);
    else
      addTensor(target, spec.name, spec, seed, options);
  }
  target.setMetadata("format", "pt");
  writeTensors(target, dir, options);
  if (model.drafter) {
    std::string drafterDir = dir + "/drafter";
    fs::create_directories(drafterDir, ec);
    if (ec)
      fail("cannot create {}: {}", drafterDir, ec.message());
    writeJson(drafterDir + "/config.json",
              toDrafterJson(*model.drafter, model.target, json));
    drafter.setMetadata("format", "pt");
    writeTensors(drafter, drafterDir, options);
  }
}

} // namespace tilec
