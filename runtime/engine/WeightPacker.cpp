//===- WeightPacker.cpp - The bytes of an engine's weight region ----------===//
#include "runtime/engine/WeightPacker.h"

#include "models/core/Checkpoint.h"
#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "models/core/Synthetic.h"
#include "models/core/WeightList.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

namespace tilec {

namespace fs = std::filesystem;

namespace {

/// One source matrix (or row block) of an engine matrix, as some checkpoint
/// (or the synthetic writer) stores it.
struct Piece {
  WeightView view;
  std::shared_ptr<SyntheticStored> owned; // synthetic bytes the view points to
};

int64_t scaleBytesOf(const WeightView &v) {
  if (v.format == StorageFormat::Fp8Block)
    return fp8ScaleDim(v.rows) * fp8ScaleDim(v.cols) * int64_t(sizeof(float));
  if (v.format == StorageFormat::Mxfp4)
    return v.rows * (v.cols / kMxfp4BlockSize);
  return 0;
}

/// Does the piece hold exactly the engine's storage format?
bool sameFormat(const WeightView &v, const WeightLayout &l) {
  if (l.f32)
    return v.format == StorageFormat::Dense && v.dtype == DType::F32;
  switch (l.format) {
  case TILEC_FMT_BF16:
    return v.format == StorageFormat::Dense && v.dtype == DType::BF16;
  case TILEC_FMT_FP8:
    return v.format == StorageFormat::Fp8Block;
  case TILEC_FMT_MXFP4:
    return v.format == StorageFormat::Mxfp4;
  }
  return false;
}

const char *formatName(const WeightView &v) {
  switch (v.format) {
  case StorageFormat::Fp8Block:
    return "fp8_block";
  case StorageFormat::Mxfp4:
    return "mxfp4";
  case StorageFormat::Dense:
    break;
  }
  return v.dtype == DType::F32 ? "f32" : v.dtype == DType::F16 ? "f16" : "bf16";
}

} // namespace

//===----------------------------------------------------------------------===//
// WeightSourceSpec, engineModel, weightLayout
//===----------------------------------------------------------------------===//

WeightSourceSpec WeightSourceSpec::synthetic(uint64_t seed) {
  WeightSourceSpec s;
  s.kind = Kind::Synthetic;
  s.seed = seed;
  return s;
}

WeightSourceSpec WeightSourceSpec::checkpoint(std::string dir,
                                              std::string drafterDir) {
  WeightSourceSpec s;
  s.kind = Kind::Checkpoint;
  s.dir = std::move(dir);
  s.drafterDir = std::move(drafterDir);
  return s;
}

std::string WeightSourceSpec::describe() const {
  if (kind == Kind::Synthetic)
    return fmt::format("synthetic weights (seed {})", seed);
  if (drafterDir.empty())
    return fmt::format("checkpoint {}", dir);
  return fmt::format("checkpoint {} (drafter {})", dir, drafterDir);
}

WeightSourceSpec chooseWeightSource(const EngineManifest &manifest,
                                    const std::string &dir,
                                    std::optional<uint64_t> seed) {
  if (!dir.empty() && seed)
    fail("weights: give a checkpoint directory or a synthetic seed, not both");
  if (!dir.empty())
    return WeightSourceSpec::checkpoint(dir);
  std::error_code ec;
  if (seed || manifest.modelName.empty() ||
      !fs::is_directory(manifest.modelName, ec))
    return WeightSourceSpec::synthetic(seed.value_or(0));
  return WeightSourceSpec::checkpoint(manifest.modelName);
}

Model engineModel(const EngineManifest &manifest) {
  const std::string where = "engine manifest model.config";
  if (manifest.modelConfig.empty())
    fail("{}: the engine's manifest holds no model config.json text", where);
  nlohmann::json target = nlohmann::json::parse(manifest.modelConfig, nullptr,
                                                /*allow_exceptions=*/false);
  if (target.is_discarded())
    fail("{}: not valid JSON", where);
  Model model;
  model.target = parseTargetConfig(target, where);
  model.target.name = manifest.modelName;
  validate(model.target, where);
  if (!manifest.drafterConfig.empty()) {
    const std::string dwhere = "engine manifest model.drafter_config";
    nlohmann::json drafter = nlohmann::json::parse(
        manifest.drafterConfig, nullptr, /*allow_exceptions=*/false);
    if (drafter.is_discarded())
      fail("{}: not valid JSON", dwhere);
    model.drafter = parseDrafterConfig(drafter, model.target, dwhere);
    validate(*model.drafter, model.target, dwhere);
  }
  std::error_code ec;
  if (!manifest.modelName.empty() && fs::is_directory(manifest.modelName, ec))
    model.dir = manifest.modelName;
  return model;
}

WeightLayout weightLayout(const WeightInfo &w) {
  WeightLayout l;
  if (w.format == "bf16")
    l.format = TILEC_FMT_BF16;
  else if (w.format == "f32")
    l.f32 = true;
  else if (w.format == "fp8_block")
    l.format = TILEC_FMT_FP8;
  else if (w.format == "mxfp4")
    l.format = TILEC_FMT_MXFP4;
  else
    fail("engine weight {}: format \"{}\", expected bf16, f32, fp8_block or "
         "mxfp4",
         w.name, w.format);
  const std::vector<int64_t> &s = w.shape;
  if (s.empty() || s.size() > 3)
    fail("engine weight {}: shape {} must have 1 to 3 dimensions", w.name,
         shapeText(s));
  for (int64_t d : s)
    if (d <= 0 || d > (int64_t(1) << 40))
      fail("engine weight {}: shape {} has a dimension out of range", w.name,
           shapeText(s));
  if (s.size() == 3) {
    l.matrices = s[0];
    l.rows = s[1];
    l.cols = s[2];
  } else if (s.size() == 2) {
    l.rows = s[0];
    l.cols = s[1];
  } else {
    l.cols = s[0];
  }
  bool quantized = !l.f32 && l.format != TILEC_FMT_BF16;
  if (quantized && s.size() < 2)
    fail("engine weight {}: a {} weight must be a matrix or a stack of them, "
         "has shape {}",
         w.name, w.format, shapeText(s));
  int64_t n = l.rows * l.cols;
  if (l.f32) {
    l.matrixBytes = 4 * n;
  } else if (l.format == TILEC_FMT_BF16) {
    l.matrixBytes = 2 * n;
  } else if (l.format == TILEC_FMT_FP8) {
    l.matrixBytes = n;
    l.matrixScaleBytes = fp8ScaleDim(l.rows) * fp8ScaleDim(l.cols) * 4;
  } else {
    if (l.cols % kMxfp4BlockSize != 0)
      fail("engine weight {}: mxfp4 rows of {} elements, expected a multiple "
           "of {}",
           w.name, l.cols, kMxfp4BlockSize);
    l.matrixBytes = n / 2;
    l.matrixScaleBytes = n / kMxfp4BlockSize;
  }
  if (w.bytes != l.matrices * l.matrixBytes)
    fail("engine weight {}: {} {} takes {} bytes, the manifest says {}", w.name,
         w.format, shapeText(s), l.matrices * l.matrixBytes, w.bytes);
  if (w.offset < 0 || w.offset % 256 != 0)
    fail("engine weight {}: offset {} is not a 256-byte aligned offset", w.name,
         w.offset);
  if (quantized) {
    if (w.scaleBytes != l.matrices * l.matrixScaleBytes)
      fail("engine weight {}: the scales of {} {} take {} bytes, the "
           "manifest says {}",
           w.name, w.format, shapeText(s), l.matrices * l.matrixScaleBytes,
           w.scaleBytes);
    if (w.scaleOffset < 0 || w.scaleOffset % 256 != 0)
      fail("engine weight {}: scale offset {} is not a 256-byte aligned "
           "offset",
           w.name, w.scaleOffset);
  } else if (w.scaleBytes != 0) {
    fail("engine weight {}: a {} weight has no scales, the manifest gives "
         "{} scale bytes",
         w.name, w.format, w.scaleBytes);
  }
  return l;
}

//===----------------------------------------------------------------------===//
// The packer
//===----------------------------------------------------------------------===//

struct WeightPacker::Impl {
  WeightSourceSpec source;
  std::vector<WeightInfo> weights;
  int64_t weightBytes = 0;

  // Synthetic.
  std::map<std::string, WeightSpec> specs;
  // Checkpoint.
  std::optional<Checkpoint> target, drafter;
  std::map<std::string, LayerExperts> experts; // per-expert layouts, by mlp

  const WeightSpec &spec(const std::string &name) const {
    auto it = specs.find(name);
    if (it == specs.end())
      fail("the model has no tensor named {} (the synthetic weights follow "
           "models/core/WeightList.h)",
           name);
    return it->second;
  }

  Piece synthetic(const WeightSpec &spec, int64_t matrix) const {
    Piece p;
    p.owned = std::make_shared<SyntheticStored>(
        synthesizeStored(spec, source.seed, matrix));
    WeightView &v = p.view;
    v.name = spec.name;
    v.file = source.describe();
    const std::vector<int64_t> &s = spec.shape;
    v.rows = s.size() >= 2 ? s[s.size() - 2] : 1;
    v.cols = s.empty() ? 1 : s.back();
    switch (spec.format) {
    case WeightFormat::MXFP4:
      v.format = StorageFormat::Mxfp4;
      v.dtype = DType::U8;
      break;
    case WeightFormat::FP8Block:
      v.format = StorageFormat::Fp8Block;
      v.dtype = DType::F8_E4M3;
      break;
    case WeightFormat::BF16:
      v.format = StorageFormat::Dense;
      v.dtype = spec.role == WeightRole::RouterBias ? DType::F32 : DType::BF16;
      break;
    }
    v.data = p.owned->data.data();
    v.scales = p.owned->scales.empty() ? nullptr : p.owned->scales.data();
    return p;
  }

  const Checkpoint &checkpointFor(const std::string &name, std::string &local) {
    const std::string prefix = kDrafterPrefix;
    if (name.rfind(prefix, 0) != 0) {
      local = name;
      return *target;
    }
    local = name.substr(prefix.size());
    if (!drafter) {
      std::string dir = source.drafterDir;
      if (dir.empty()) {
        for (const char *sub : {"drafter", "dflash"})
          if (fs::exists(fs::path(source.dir) / sub))
            dir = (fs::path(source.dir) / sub).string();
        if (dir.empty())
          fail("it belongs to the drafter, but no drafter checkpoint was "
               "given and {} has no drafter/ or dflash/ folder",
               source.dir);
      }
      drafter.emplace(Checkpoint::open(dir));
    }
    return *drafter;
  }

  /// A 1-D or 2-D checkpoint tensor (sink names through their aliases).
  Piece checkpointTensor(const Checkpoint &ck, const std::string &local) {
    const TensorInfo *info = nullptr;
    std::string found;
    for (const std::string &alias : weightNameAliases(local))
      if ((info = ck.find(alias))) {
        found = alias;
        break;
      }
    if (!info) {
      ck.tensor(local); // throws naming the checkpoint and close names
      fail("checkpoint {}: no tensor '{}'", ck.path(), local);
    }
    Piece p;
    if (info->shape.size() == 2) {
      p.view = weightView(ck, found);
      return p;
    }
    if (info->shape.size() != 1)
      fail("checkpoint {}: tensor {} has shape {}, expected a vector or a "
           "matrix",
           ck.path(), found, shapeText(info->shape));
    if (info->dtype != DType::BF16 && info->dtype != DType::F16 &&
        info->dtype != DType::F32)
      fail("{}: tensor {} has dtype {}, expected F32, BF16 or F16", info->file,
           found, dtypeName(info->dtype));
    WeightView &v = p.view;
    v.name = found;
    v.file = info->file;
    v.format = StorageFormat::Dense;
    v.dtype = info->dtype;
    v.rows = 1;
    v.cols = info->shape[0];
    v.data = info->data;
    return p;
  }

  /// Matrix `matrix` of a packed [E, R, C] expert tensor.
  Piece packedExpert(const Checkpoint &ck, const std::string &local,
                     const WeightLayout &l, int64_t matrix) {
    const TensorInfo &w = ck.tensor(local);
    if (w.shape.size() != 3)
      fail("{}: packed experts '{}' must be 3-D, have shape {}", w.file, local,
           shapeText(w.shape));
    Piece p;
    WeightView &v = p.view;
    v.name = fmt::format("{}[{}]", local, matrix);
    v.file = w.file;
    v.dtype = w.dtype;
    v.rows = w.shape[1];
    v.cols = w.shape[2];
    std::string scaleName;
    std::vector<int64_t> scaleShape;
    std::vector<DType> scaleDTypes;
    switch (w.dtype) {
    case DType::BF16:
    case DType::F16:
    case DType::F32:
      v.format = StorageFormat::Dense;
      break;
    case DType::F8_E4M3:
      v.format = StorageFormat::Fp8Block;
      scaleName = local + "_scale_inv";
      scaleShape = {w.shape[0], fp8ScaleDim(v.rows), fp8ScaleDim(v.cols)};
      scaleDTypes = {DType::F32};
      break;
    case DType::U8:
      v.format = StorageFormat::Mxfp4;
      v.cols *= 2;
      scaleName =
          ck.contains(local + "_scale") || !ck.contains(local + "_scale_inv")
              ? local + "_scale"
              : local + "_scale_inv";
      scaleShape = {w.shape[0], v.rows, v.cols / kMxfp4BlockSize};
      scaleDTypes = {DType::F8_E8M0, DType::U8};
      break;
    default:
      fail("{}: experts '{}' have dtype {}; expected BF16, F16, F32, F8_E4M3 "
           "(with '_scale_inv') or U8 MXFP4 (with '_scale')",
           w.file, local, dtypeName(w.dtype));
    }
    std::vector<int64_t> logical{w.shape[0], v.rows, v.cols};
    if (logical != std::vector<int64_t>{l.matrices, l.rows, l.cols})
      fail("checkpoint {}: experts '{}' are {} (as {}), the engine expects "
           "{}",
           ck.path(), local, shapeText(logical), formatName(v),
           shapeText({l.matrices, l.rows, l.cols}));
    v.data = w.data + matrix * v.rows * v.rowBytes();
    if (!scaleName.empty()) {
      const TensorInfo *s = ck.find(scaleName);
      if (!s)
        fail("checkpoint {}: {} experts '{}' need their scale tensor '{}'",
             ck.path(), dtypeName(w.dtype), local, scaleName);
      if (std::find(scaleDTypes.begin(), scaleDTypes.end(), s->dtype) ==
          scaleDTypes.end())
        fail("{}: scale '{}' has dtype {}, expected {}", s->file, scaleName,
             dtypeName(s->dtype), dtypeName(scaleDTypes[0]));
      if (s->shape != scaleShape)
        fail("{}: scale '{}' has shape {}, expected {}", s->file, scaleName,
             shapeText(s->shape), shapeText(scaleShape));
      v.scales = s->data + matrix * scaleBytesOf(v);
    }
    return p;
  }

  /// The row blocks that make up matrix `matrix` of engine weight `info`.
  std::vector<Piece> pieces(const WeightInfo &info, const WeightLayout &l,
                            int64_t matrix) {
    std::string mlp, which;
    bool synth = source.kind == WeightSourceSpec::Kind::Synthetic;
    bool expert = info.shape.size() == 3 && info.parts.empty() &&
                  splitExpertName(info.name, mlp, which);
    std::vector<Piece> out;
    if (expert && synth) {
      const WeightSpec &s = spec(info.name);
      if (s.shape != info.shape)
        fail("the model's tensor {} is {}, the engine expects {}", s.name,
             shapeText(s.shape), shapeText(info.shape));
      out.push_back(synthetic(s, matrix));
      return out;
    }
    if (expert) {
      std::string local;
      const Checkpoint &ck = checkpointFor(info.name, local);
      splitExpertName(local, mlp, which);
      std::optional<ExpertLayout> layout = detectExpertLayout(ck, mlp);
      if (!layout)
        fail("checkpoint {}: no experts for {} (neither '{}.experts.{}' nor "
             "'{}.experts.{{e}}.*_proj.weight')",
             ck.path(), mlp, mlp, which, mlp);
      if (*layout == ExpertLayout::Packed) {
        out.push_back(packedExpert(ck, local, l, matrix));
        return out;
      }
      std::string key = ck.path() + "|" + mlp;
      auto it = experts.find(key);
      if (it == experts.end())
        it = experts.emplace(key, loadExperts(ck, mlp)).first;
      const LayerExperts &layer = it->second;
      bool gateUp = which == "gate_up_proj";
      int64_t hidden = gateUp ? l.cols : l.rows;
      int64_t inter = gateUp ? l.rows / 2 : l.cols;
      if (layer.numExperts != l.matrices || layer.hidden != hidden ||
          layer.intermediate != inter || (gateUp && l.rows % 2 != 0))
        fail("checkpoint {}: {} holds {} experts of hidden {} and "
             "intermediate {}; the engine expects {}",
             ck.path(), mlp, layer.numExperts, layer.hidden, layer.intermediate,
             shapeText(info.shape));
      const ExpertWeights &e = layer.experts[size_t(matrix)];
      if (gateUp) {
        out.push_back({e.gate, nullptr});
        out.push_back({e.up, nullptr});
      } else {
        out.push_back({e.down, nullptr});
      }
      return out;
    }
    if (info.shape.size() == 3)
      fail("a 3-D weight must be the experts' gate_up_proj or down_proj "
           "(without parts)");
    std::vector<std::string> names =
        info.parts.empty() ? std::vector<std::string>{info.name} : info.parts;
    for (const std::string &name : names) {
      if (synth) {
        const WeightSpec &s = spec(name);
        if (s.shape.size() > 2)
          fail("part {} is a stack of matrices {}, expected a matrix", name,
               shapeText(s.shape));
        out.push_back(synthetic(s, 0));
      } else {
        std::string local;
        const Checkpoint &ck = checkpointFor(name, local);
        out.push_back(checkpointTensor(ck, local));
      }
    }
    int64_t rows = 0;
    for (const Piece &p : out) {
      if (p.view.cols != l.cols)
        fail("{} ({}) has rows of {} elements, the engine expects {}",
             p.view.name, p.view.file, p.view.cols, l.cols);
      rows += p.view.rows;
    }
    if (rows != l.rows) {
      std::string list;
      for (const Piece &p : out)
        list += fmt::format("{}{} ({} rows)", list.empty() ? "" : " + ",
                            p.view.name, p.view.rows);
      fail("{} makes {} rows, the engine expects {}", list, rows, l.rows);
    }
    return out;
  }

  void packMatrix(const WeightInfo &info, const WeightLayout &l, int64_t matrix,
                  uint8_t *data, uint8_t *scales) {
    std::vector<Piece> ps = pieces(info, l, matrix);
    bool copy = true;
    for (size_t i = 0; i < ps.size(); ++i) {
      const WeightView &v = ps[i].view;
      copy &= sameFormat(v, l);
      // FP8 scale blocks concatenate only at 128-row seams.
      if (i + 1 < ps.size() && v.format == StorageFormat::Fp8Block &&
          v.rows % kFp8BlockSize != 0)
        copy = false;
    }
    if (copy) {
      for (const Piece &p : ps) {
        int64_t n = p.view.rows * p.view.rowBytes();
        std::memcpy(data, p.view.data, size_t(n));
        data += n;
        int64_t sn = scaleBytesOf(p.view);
        if (sn > 0) {
          std::memcpy(scales, p.view.scales, size_t(sn));
          scales += sn;
        }
      }
      return;
    }
    // Convert: dequantize (or widen) every piece to f32, then store in the
    // engine's format with models/core's quantizers.
    std::vector<float> values(size_t(l.rows * l.cols));
    int64_t row = 0;
    for (const Piece &p : ps) {
      dequantizeWeight(p.view, values.data() + row * l.cols);
      row += p.view.rows;
    }
    int64_t n = l.rows * l.cols;
    if (l.f32) {
      std::memcpy(data, values.data(), size_t(4 * n));
    } else if (l.format == TILEC_FMT_BF16) {
      std::vector<uint16_t> bf(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        bf[size_t(i)] = f32ToBf16(values[size_t(i)]);
      std::memcpy(data, bf.data(), size_t(2 * n));
    } else if (l.format == TILEC_FMT_FP8) {
      std::vector<float> s(size_t(fp8ScaleDim(l.rows) * fp8ScaleDim(l.cols)));
      quantizeFp8Block(values.data(), l.rows, l.cols, data, s.data());
      std::memcpy(scales, s.data(), s.size() * sizeof(float));
    } else {
      quantizeMxfp4(values.data(), l.rows, l.cols, data, scales);
    }
  }
};

WeightPacker::WeightPacker(const EngineManifest &manifest,
                           const WeightSourceSpec &source)
    : impl_(std::make_unique<Impl>()) {
  impl_->source = source;
  impl_->weights = manifest.weights;
  impl_->weightBytes = manifest.weightBytes;
  if (source.kind == WeightSourceSpec::Kind::Synthetic) {
    Model model = source.model ? *source.model : engineModel(manifest);
    for (WeightSpec &s : modelWeights(model))
      impl_->specs.emplace(s.name, s);
  } else {
    if (source.dir.empty())
      fail("engine weights: no checkpoint directory given");
    impl_->target.emplace(Checkpoint::open(source.dir));
    if (!source.drafterDir.empty())
      impl_->drafter.emplace(Checkpoint::open(source.drafterDir));
  }
}

WeightPacker::~WeightPacker() = default;

const WeightSourceSpec &WeightPacker::source() const { return impl_->source; }

void WeightPacker::packMatrix(const WeightInfo &info, int64_t matrix,
                              uint8_t *data, uint8_t *scales) {
  WeightLayout l = weightLayout(info);
  if (matrix < 0 || matrix >= l.matrices)
    fail("engine weight {}: matrix {} out of range (it has {})", info.name,
         matrix, l.matrices);
  if (l.matrixScaleBytes > 0 && !scales)
    fail("engine weight {}: its scales need a destination", info.name);
  try {
    impl_->packMatrix(info, l, matrix, data, scales);
  } catch (const Error &e) {
    fail("engine weight {} ({} {}) from {}: {}", info.name, info.format,
         shapeText(info.shape), impl_->source.describe(), e.what());
  }
}

void WeightPacker::pack(const WeightInfo &info, uint8_t *data,
                        uint8_t *scales) {
  WeightLayout l = weightLayout(info);
  for (int64_t m = 0; m < l.matrices; ++m)
    packMatrix(info, m, data + m * l.matrixBytes,
               scales ? scales + m * l.matrixScaleBytes : nullptr);
}

void WeightPacker::packAll(uint8_t *weights, const ProgressFn &progress) {
  // Check every layout and that the tensors fit and do not overlap.
  struct Range {
    int64_t begin, end;
    std::string what;
  };
  std::vector<Range> ranges;
  for (const WeightInfo &w : impl_->weights) {
    WeightLayout l = weightLayout(w);
    ranges.push_back({w.offset, w.offset + w.bytes, w.name});
    if (l.matrixScaleBytes > 0)
      ranges.push_back(
          {w.scaleOffset, w.scaleOffset + w.scaleBytes, w.name + " (scales)"});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range &a, const Range &b) { return a.begin < b.begin; });
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].end > impl_->weightBytes)
      fail("engine weight {}: bytes [{}, {}) pass the end of the weight "
           "region ({} bytes)",
           ranges[i].what, ranges[i].begin, ranges[i].end, impl_->weightBytes);
    if (i > 0 && ranges[i].begin < ranges[i - 1].end)
      fail("engine weights {} and {} overlap at byte {}", ranges[i - 1].what,
           ranges[i].what, ranges[i].begin);
  }
  std::memset(weights, 0, size_t(impl_->weightBytes));
  size_t done = 0;
  for (const WeightInfo &w : impl_->weights) {
    pack(w, weights + w.offset,
         w.scaleBytes > 0 ? weights + w.scaleOffset : nullptr);
    if (progress)
      progress(++done, impl_->weights.size(), w.name);
  }
}

void packWeights(const EngineManifest &manifest, const WeightSourceSpec &source,
                 uint8_t *weights, const ProgressFn &progress) {
  WeightPacker(manifest, source).packAll(weights, progress);
}

} // namespace tilec
