//===- Checkpoint.h - Safetensors checkpoints, weight views and experts ---===//
//
// A Checkpoint is a set of safetensors files opened together: one file, a
// directory with `model.safetensors`, a directory of `*.safetensors`, or shards
// listed by `model.safetensors.index.json`. Tensors are looked up by name
// without copying.
//
// Quantized weights are found by their companion scale tensors:
//  - FP8: `<name>` is F8_E4M3 [out, in] with F32 scales `<name>_scale_inv`
//    [ceil(out/128), ceil(in/128)] (DeepSeek/MiMo; value = fp8 x scale);
//  - MXFP4: `<name>` is U8 [out, in/2] (two E2M1 per byte, low nibble = even
//    element) with E8M0 scales `<name>_scale` [out, in/32] (dtype F8_E8M0 or
//    U8);
//    `<name>_scale_inv` is accepted as an alias when `<name>_scale` is absent.
//
// MoE experts come per expert (`<mlp>.experts.{e}.{gate,up,down}_proj.weight`,
// what transformers' save_pretrained writes) or packed
// (`<mlp>.experts.gate_up_proj` [E, 2I, H], gate rows first, and
// `<mlp>.experts.down_proj` [E, H, I]).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Safetensors.h"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tilec {

class Checkpoint {
public:
  /// `path` is a .safetensors file, a `*.safetensors.index.json` or a directory
  /// (index json first, then `model.safetensors`, then every `*.safetensors`).
  /// Tensors of shard files that the index does not list are ignored, as
  /// transformers does. Throws tilec::Error.
  static Checkpoint open(const std::string &path);

  Checkpoint(Checkpoint &&) = default;
  Checkpoint &operator=(Checkpoint &&) = default;
  // The name index points into files_: copies would dangle.
  Checkpoint(const Checkpoint &) = delete;
  Checkpoint &operator=(const Checkpoint &) = delete;

  const std::string &path() const { return path_; }
  const TensorInfo *find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  /// Throws naming the checkpoint and up to three similar names.
  const TensorInfo &tensor(std::string_view name) const;
  /// All names, sorted.
  std::vector<std::string> names() const;
  /// Names starting with `prefix`, sorted.
  std::vector<std::string> namesWithPrefix(std::string_view prefix) const;
  size_t size() const { return index_.size(); }
  const std::vector<SafetensorsFile> &files() const { return files_; }

private:
  Checkpoint() = default;
  std::string path_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, const TensorInfo *, std::less<>> index_;
};

/// How a 2-D weight is stored.
enum class StorageFormat { Dense, Fp8Block, Mxfp4 };

/// A [rows, cols] weight (or a row range of one) inside a checkpoint, not
/// copied.
struct WeightView {
  /// The checkpoint tensor (with the expert and rows for slices of packed
  /// tensors).
  std::string name;
  std::string file;
  StorageFormat format = StorageFormat::Dense;
  /// Storage dtype: BF16, F16 or F32 (Dense), F8_E4M3 (Fp8Block), U8 (Mxfp4).
  DType dtype = DType::BF16;
  /// Logical shape in elements (an MXFP4 row holds cols/2 bytes).
  int64_t rows = 0, cols = 0;
  /// rows x rowBytes() bytes, row-major; may be unaligned.
  const uint8_t *data = nullptr;
  /// Fp8Block: F32 [ceil(rows/128), ceil(cols/128)]; Mxfp4: E8M0 [rows,
  /// cols/32]; null for Dense.
  const uint8_t *scales = nullptr;

  int64_t rowBytes() const;
};

/// The weight `name` with its scale tensor, if its dtype asks for one. Throws
/// if the tensor is not 2-D, its dtype is not a weight dtype or a scale is
/// missing or mis-shaped.
WeightView weightView(const Checkpoint &checkpoint, const std::string &name);
/// Dequantizes (or widens) a view into rows * cols floats.
void dequantizeWeight(const WeightView &view, float *dst);

enum class ExpertLayout { PerExpert, Packed };

struct ExpertWeights {
  WeightView gate, up, down; // [I, H], [I, H], [H, I]
};

struct LayerExperts {
  ExpertLayout layout = ExpertLayout::PerExpert;
  int64_t numExperts = 0, hidden = 0, intermediate = 0;
  std::vector<ExpertWeights> experts;
};

/// Which expert layout `<mlpPrefix>.experts.*` uses (mlpPrefix like
/// "model.layers.3.mlp"); nullopt if neither. Throws if both are present.
std::optional<ExpertLayout> detectExpertLayout(const Checkpoint &checkpoint,
                                               const std::string &mlpPrefix);
/// Views of every expert of a layer. Throws if there are none, if expert
/// indices are not 0..E-1 with all three projections, or if shapes or formats
/// disagree.
LayerExperts loadExperts(const Checkpoint &checkpoint,
                         const std::string &mlpPrefix);

} // namespace tilec
