//===- Checkpoint.cpp - Safetensors checkpoints, weight views and experts -===//
#include "models/core/Checkpoint.h"

#include "models/core/Error.h"
#include "models/core/Formats.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

using namespace tilec;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

/// Levenshtein distance, or limit + 1 once it must exceed `limit`.
size_t editDistance(std::string_view a, std::string_view b, size_t limit) {
  if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > limit)
    return limit + 1;
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0], best = row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] =
          std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
      best = std::min(best, row[j]);
    }
    if (best > limit)
      return limit + 1;
  }
  return row[b.size()];
}

std::string readTextFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}
} // namespace

//===----------------------------------------------------------------------===//
// Checkpoint
//===----------------------------------------------------------------------===//

Checkpoint Checkpoint::open(const std::string &path) {
  Checkpoint ck;
  ck.path_ = path;
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    fail("checkpoint {}: no such file or directory", path);

  std::string indexPath;
  if (fs::is_directory(status)) {
    fs::path dir(path);
    if (fs::exists(dir / "model.safetensors.index.json")) {
      indexPath = (dir / "model.safetensors.index.json").string();
    } else if (fs::exists(dir / "model.safetensors")) {
      ck.files_.push_back(
          SafetensorsFile::open((dir / "model.safetensors").string()));
    } else {
      std::vector<std::string> shards;
      for (const fs::directory_entry &entry : fs::directory_iterator(dir, ec))
        if (entry.is_regular_file() &&
            endsWith(entry.path().string(), ".safetensors"))
          shards.push_back(entry.path().string());
      if (ec)
        fail("checkpoint {}: cannot list directory: {}", path, ec.message());
      if (shards.empty())
        fail("checkpoint {}: no model.safetensors.index.json, "
             "model.safetensors or "
             "*.safetensors file in the directory",
             path);
      std::sort(shards.begin(), shards.end());
      for (const std::string &shard : shards)
        ck.files_.push_back(SafetensorsFile::open(shard));
    }
  } else if (endsWith(path, ".index.json")) {
    indexPath = path;
  } else {
    ck.files_.push_back(SafetensorsFile::open(path));
  }

  if (indexPath.empty()) {
    for (const SafetensorsFile &file : ck.files_)
      for (const TensorInfo &t : file.tensors()) {
        auto [it, inserted] = ck.index_.emplace(t.name, &t);
        if (!inserted)
          fail("checkpoint {}: tensor '{}' is in both {} and {}", path, t.name,
               it->second->file, t.file);
      }
    return ck;
  }

  // Sharded: weight_map {tensor: file}. Open every listed file first, then
  // index (files_ must not grow while we hold pointers into it).
  json index;
  try {
    index = json::parse(readTextFile(indexPath));
  } catch (const json::exception &e) {
    fail("{}: not valid JSON: {}", indexPath, e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object())
    fail("{}: expected an object with a \"weight_map\" object", indexPath);
  const json &weightMap = index["weight_map"];
  fs::path dir = fs::path(indexPath).parent_path();
  std::map<std::string, size_t> fileIndex;
  for (auto it = weightMap.begin(); it != weightMap.end(); ++it) {
    if (!it.value().is_string())
      fail("{}: weight_map entry '{}' must be a file name string", indexPath,
           it.key());
    std::string fileName = it.value().get<std::string>();
    if (fileIndex.count(fileName))
      continue;
    fs::path rel(fileName);
    if (fileName.empty() || rel.is_absolute() ||
        std::find(rel.begin(), rel.end(), "..") != rel.end())
      fail("{}: weight_map entry '{}' names '{}': expected a file inside {}",
           indexPath, it.key(), fileName, dir.string());
    fs::path full = dir / rel;
    if (!fs::exists(full))
      fail("{}: weight_map puts tensor '{}' in {}, which does not exist",
           indexPath, it.key(), full.string());
    fileIndex[fileName] = ck.files_.size();
    ck.files_.push_back(SafetensorsFile::open(full.string()));
  }
  for (auto it = weightMap.begin(); it != weightMap.end(); ++it) {
    const SafetensorsFile &file =
        ck.files_[fileIndex.at(it.value().get<std::string>())];
    const TensorInfo *t = file.find(it.key());
    if (!t)
      fail("{}: weight_map puts tensor '{}' in {}, which does not hold it",
           indexPath, it.key(), file.path());
    ck.index_.emplace(it.key(), t);
  }
  return ck;
}

const TensorInfo *Checkpoint::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorInfo &Checkpoint::tensor(std::string_view name) const {
  if (const TensorInfo *t = find(name))
    return *t;
  size_t limit = std::max<size_t>(3, name.size() / 4);
  std::vector<std::pair<size_t, const std::string *>> close;
  for (const auto &[candidate, info] : index_) {
    size_t d = editDistance(name, candidate, limit);
    if (d <= limit)
      close.emplace_back(d, &candidate);
  }
  std::stable_sort(
      close.begin(), close.end(),
      [](const auto &a, const auto &b) { return a.first < b.first; });
  std::string hint;
  for (size_t i = 0; i < close.size() && i < 3; ++i)
    hint +=
        fmt::format("{}'{}'", i ? ", " : "; did you mean ", *close[i].second);
  fail("checkpoint {}: no tensor '{}'{}", path_, name, hint);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto &entry : index_)
    out.push_back(entry.first);
  return out;
}

std::vector<std::string>
Checkpoint::namesWithPrefix(std::string_view prefix) const {
  std::vector<std::string> out;
  for (auto it = index_.lower_bound(prefix);
       it != index_.end() &&
       std::string_view(it->first).substr(0, prefix.size()) == prefix;
       ++it)
    out.push_back(it->first);
  return out;
}

//===----------------------------------------------------------------------===//
// Weight views
//===----------------------------------------------------------------------===//

int64_t WeightView::rowBytes() const {
  return format == StorageFormat::Mxfp4 ? cols / 2
                                        : cols * int64_t(dtypeSize(dtype));
}

namespace {
/// A 2-D weight or a stack of them ([E, rows, ...]) with its format and scales.
struct ResolvedWeight {
  const TensorInfo *weight = nullptr;
  const TensorInfo *scale = nullptr;
  StorageFormat format = StorageFormat::Dense;
  int64_t stack = 1, rows = 0, cols = 0;
};

ResolvedWeight resolveWeight(const Checkpoint &ck, const std::string &name,
                             size_t rank) {
  ResolvedWeight r;
  r.weight = &ck.tensor(name);
  const TensorInfo &w = *r.weight;
  if (w.shape.size() != rank)
    fail("{}: weight '{}' must be {}-D, has shape {}", w.file, name, rank,
         shapeString(w.shape));
  if (rank == 3)
    r.stack = w.shape[0];
  r.rows = w.shape[rank - 2];
  r.cols = w.shape[rank - 1];

  std::vector<int64_t> scaleShape;
  std::string scaleName;
  std::vector<DType> scaleDTypes;
  switch (w.dtype) {
  case DType::BF16:
  case DType::F16:
  case DType::F32:
    return r;
  case DType::F8_E4M3:
    r.format = StorageFormat::Fp8Block;
    scaleName = name + "_scale_inv";
    scaleShape = {fp8ScaleDim(r.rows), fp8ScaleDim(r.cols)};
    scaleDTypes = {DType::F32};
    break;
  case DType::U8:
    r.format = StorageFormat::Mxfp4;
    r.cols *= 2;
    if (r.cols == 0 || r.cols % kMxfp4BlockSize != 0)
      fail("{}: MXFP4 weight '{}' has {} elements per row, expected a positive "
           "multiple of {}",
           w.file, name, r.cols, kMxfp4BlockSize);
    scaleName =
        ck.contains(name + "_scale") || !ck.contains(name + "_scale_inv")
            ? name + "_scale"
            : name + "_scale_inv";
    scaleShape = {r.rows, r.cols / kMxfp4BlockSize};
    scaleDTypes = {DType::F8_E8M0, DType::U8};
    break;
  default:
    fail("{}: weight '{}' has dtype {}; expected BF16, F16, F32, F8_E4M3 (with "
         "'_scale_inv') or U8 MXFP4 (with '_scale')",
         w.file, name, dtypeName(w.dtype));
  }
  if (rank == 3)
    scaleShape.insert(scaleShape.begin(), r.stack);
  const TensorInfo *s = ck.find(scaleName);
  if (!s)
    fail("checkpoint {}: {} weight '{}' needs its scale tensor '{}'", ck.path(),
         dtypeName(w.dtype), name, scaleName);
  if (std::find(scaleDTypes.begin(), scaleDTypes.end(), s->dtype) ==
      scaleDTypes.end())
    fail("{}: scale '{}' has dtype {}, expected {}", s->file, scaleName,
         dtypeName(s->dtype), dtypeName(scaleDTypes[0]));
  if (s->shape != scaleShape)
    fail("{}: scale '{}' has shape {}, expected {} for weight shape {}",
         s->file, scaleName, shapeString(s->shape), shapeString(scaleShape),
         shapeString(w.shape));
  r.scale = s;
  return r;
}

/// Rows [rowBegin, rowBegin + rowCount) of matrix `index` of a resolved weight.
WeightView sliceView(const ResolvedWeight &r, int64_t index, int64_t rowBegin,
                     int64_t rowCount) {
  const TensorInfo &w = *r.weight;
  WeightView v;
  v.file = w.file;
  v.format = r.format;
  v.dtype = w.dtype;
  v.rows = rowCount;
  v.cols = r.cols;
  v.name = w.shape.size() == 2
               ? w.name
               : fmt::format("{}[{}] rows {}..{}", w.name, index, rowBegin,
                             rowBegin + rowCount);
  v.data = w.data + (index * r.rows + rowBegin) * v.rowBytes();
  if (r.format == StorageFormat::Fp8Block) {
    if (rowBegin % kFp8BlockSize != 0)
      fail("{}: cannot view rows from {} of FP8 weight '{}' without copying: "
           "its "
           "128-row scale blocks do not start there",
           w.file, rowBegin, w.name);
    int64_t scaleRowBytes = fp8ScaleDim(r.cols) * int64_t(sizeof(float));
    v.scales = r.scale->data +
               (index * fp8ScaleDim(r.rows) + rowBegin / kFp8BlockSize) *
                   scaleRowBytes;
  } else if (r.format == StorageFormat::Mxfp4) {
    v.scales = r.scale->data +
               (index * r.rows + rowBegin) * (r.cols / kMxfp4BlockSize);
  }
  return v;
}
} // namespace

WeightView tilec::weightView(const Checkpoint &checkpoint,
                             const std::string &name) {
  ResolvedWeight r = resolveWeight(checkpoint, name, 2);
  return sliceView(r, 0, 0, r.rows);
}

void tilec::dequantizeWeight(const WeightView &v, float *dst) {
  int64_t n = v.rows * v.cols;
  switch (v.format) {
  case StorageFormat::Dense:
    for (int64_t i = 0; i < n; ++i) {
      if (v.dtype == DType::F32) {
        std::memcpy(&dst[i], v.data + 4 * i, 4);
        continue;
      }
      uint16_t bits;
      std::memcpy(&bits, v.data + 2 * i, 2);
      dst[i] = v.dtype == DType::BF16 ? bf16ToF32(bits) : f16ToF32(bits);
    }
    return;
  case StorageFormat::Fp8Block: {
    // The scales may be unaligned inside the file: copy them out first.
    std::vector<float> scales(
        size_t(fp8ScaleDim(v.rows) * fp8ScaleDim(v.cols)));
    std::memcpy(scales.data(), v.scales, scales.size() * sizeof(float));
    dequantizeFp8Block(v.data, scales.data(), v.rows, v.cols, dst);
    return;
  }
  case StorageFormat::Mxfp4:
    dequantizeMxfp4(v.data, v.scales, v.rows, v.cols, dst);
    return;
  }
}

//===----------------------------------------------------------------------===//
// Experts
//===----------------------------------------------------------------------===//

namespace {
const char *const kProjections[] = {"gate_proj", "up_proj", "down_proj"};

/// Expert indices of `<mlpPrefix>.experts.{e}.{gate,up,down}_proj.weight`
/// names.
std::set<int64_t> perExpertIndices(const Checkpoint &ck,
                                   const std::string &prefix) {
  std::set<int64_t> indices;
  for (const std::string &name : ck.namesWithPrefix(prefix)) {
    std::string_view rest = std::string_view(name).substr(prefix.size());
    int64_t e = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), e);
    if (ec != std::errc() || end == rest.data() || e < 0)
      continue;
    std::string_view tail(end, size_t(rest.data() + rest.size() - end));
    for (const char *proj : kProjections)
      if (tail == fmt::format(".{}.weight", proj))
        indices.insert(e);
  }
  return indices;
}

void checkShape(const WeightView &v, int64_t rows, int64_t cols) {
  if (v.rows != rows || v.cols != cols)
    fail("{}: expert weight '{}' is [{}, {}], expected [{}, {}]", v.file,
         v.name, v.rows, v.cols, rows, cols);
}
} // namespace

std::optional<ExpertLayout>
tilec::detectExpertLayout(const Checkpoint &ck, const std::string &mlpPrefix) {
  std::string prefix = mlpPrefix + ".experts.";
  bool packed =
      ck.contains(prefix + "gate_up_proj") || ck.contains(prefix + "down_proj");
  bool perExpert = !perExpertIndices(ck, prefix).empty();
  if (packed && perExpert)
    fail("checkpoint {}: '{}' holds both packed ('{}gate_up_proj') and "
         "per-expert "
         "('{}{{e}}.gate_proj.weight') experts",
         ck.path(), mlpPrefix, prefix, prefix);
  if (packed)
    return ExpertLayout::Packed;
  if (perExpert)
    return ExpertLayout::PerExpert;
  return std::nullopt;
}

LayerExperts tilec::loadExperts(const Checkpoint &ck,
                                const std::string &mlpPrefix) {
  std::optional<ExpertLayout> layout = detectExpertLayout(ck, mlpPrefix);
  if (!layout)
    fail("checkpoint {}: no experts under '{}.experts.'", ck.path(), mlpPrefix);
  std::string prefix = mlpPrefix + ".experts.";
  LayerExperts out;
  out.layout = *layout;

  if (*layout == ExpertLayout::Packed) {
    std::string gateUpName = prefix + "gate_up_proj",
                downName = prefix + "down_proj";
    ResolvedWeight gateUp = resolveWeight(ck, gateUpName, 3);
    ResolvedWeight down = resolveWeight(ck, downName, 3);
    out.numExperts = gateUp.stack;
    out.hidden = gateUp.cols;
    out.intermediate = gateUp.rows / 2;
    if (gateUp.rows % 2 != 0)
      fail("{}: '{}' has {} rows per expert, expected gate and up halves",
           gateUp.weight->file, gateUpName, gateUp.rows);
    if (down.stack != out.numExperts || down.rows != out.hidden ||
        down.cols != out.intermediate)
      fail("{}: '{}' has shape {}, expected [{}, {}, {}] to match '{}'",
           down.weight->file, downName, shapeString(down.weight->shape),
           out.numExperts, out.hidden, out.intermediate, gateUpName);
    for (int64_t e = 0; e < out.numExperts; ++e)
      out.experts.push_back(
          {sliceView(gateUp, e, 0, out.intermediate),
           sliceView(gateUp, e, out.intermediate, out.intermediate),
           sliceView(down, e, 0, down.rows)});
    return out;
  }

  std::set<int64_t> indices = perExpertIndices(ck, prefix);
  out.numExperts = *indices.rbegin() + 1;
  for (int64_t e = 0; e < out.numExperts; ++e)
    for (const char *proj : kProjections) {
      std::string name = fmt::format("{}{}.{}.weight", prefix, e, proj);
      if (!ck.contains(name))
        fail("checkpoint {}: experts of '{}' go up to {}, but '{}' is missing",
             ck.path(), mlpPrefix, out.numExperts - 1, name);
    }
  for (int64_t e = 0; e < out.numExperts; ++e) {
    ExpertWeights w{
        weightView(ck, fmt::format("{}{}.gate_proj.weight", prefix, e)),
        weightView(ck, fmt::format("{}{}.up_proj.weight", prefix, e)),
        weightView(ck, fmt::format("{}{}.down_proj.weight", prefix, e))};
    if (e == 0) {
      out.intermediate = w.gate.rows;
      out.hidden = w.gate.cols;
    }
    checkShape(w.gate, out.intermediate, out.hidden);
    checkShape(w.up, out.intermediate, out.hidden);
    checkShape(w.down, out.hidden, out.intermediate);
    if (e > 0) {
      const ExpertWeights &first = out.experts.front();
      for (auto [a, b] :
           {std::pair(&w.gate, &first.gate), std::pair(&w.up, &first.up),
            std::pair(&w.down, &first.down)})
        if (a->format != b->format || a->dtype != b->dtype)
          fail("checkpoint {}: '{}' is {} but '{}' is {}", ck.path(), a->name,
               dtypeName(a->dtype), b->name, dtypeName(b->dtype));
    }
    out.experts.push_back(std::move(w));
  }
  return out;
}
