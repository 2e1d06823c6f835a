//===- WeightPacker.h - The bytes of an engine's weight region --*- C++ -*-===//
//
// Every executor (host, GPU) fills the weight region of an engine the same
// way: for each WeightInfo of the manifest, its data and scales in the layout
// of docs/engine.md "Memory regions" (bf16; f32 router bias; fp8_block E4M3 +
// f32 scales per 128x128 block; mxfp4 E2M1 pairs + E8M0 scales per 32; experts
// as E consecutive matrices; `parts` concatenated along rows).
//
// Two sources:
//  * synthetic: a seed; the bytes are exactly those writeSyntheticCheckpoint
//    stores for the model the manifest was compiled from;
//  * a checkpoint directory (+ the drafter's for names prefixed "drafter/"):
//    stored bytes are copied when the checkpoint's format is the engine's, and
//    converted (dequantized or widened to f32, then quantized with
//    models/core's quantizers) when it is not. Both expert layouts and the sink
//    name aliases are accepted.
// A synthetic source behaves exactly as a checkpoint written from the same
// seed: conversions apply to it the same way.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "models/core/Config.h"
#include "runtime/engine/Manifest.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace tilec {

/// Where an engine's weights come from.
struct WeightSourceSpec {
  enum class Kind { Synthetic, Checkpoint };
  Kind kind = Kind::Synthetic;
  /// Synthetic: the seed of writeSyntheticCheckpoint / SyntheticWeights.
  uint64_t seed = 0;
  /// Synthetic: the model whose tensors to synthesize; default: the one the
  /// manifest's config texts describe (engineModel).
  std::optional<Model> model;
  /// Checkpoint: the target's directory (or safetensors file / index).
  std::string dir;
  /// Checkpoint: the drafter's; "" = `dir`/drafter or `dir`/dflash when an
  /// engine weight needs it.
  std::string drafterDir;

  static WeightSourceSpec synthetic(uint64_t seed);
  static WeightSourceSpec checkpoint(std::string dir,
                                     std::string drafterDir = "");
  /// "synthetic (seed 3)" / "checkpoint DIR".
  std::string describe() const;
};

/// The weights an engine runs with when a user names none: the checkpoint
/// `dir` when given; else synthetic weights from `seed` when given or when the
/// manifest's model is not a directory (a preset); else the model directory
/// the manifest names (with its drafter/ or dflash/ folder). Throws when both
/// `dir` and `seed` are given.
WeightSourceSpec chooseWeightSource(const EngineManifest &manifest,
                                    const std::string &dir,
                                    std::optional<uint64_t> seed);

/// Called after each weight with (weights done, weights in all, its name).
using ProgressFn =
    std::function<void(size_t done, size_t total, const std::string &name)>;

/// The model an engine was compiled from: its manifest's config.json texts
/// (target, and drafter when not empty), parsed and validated.
Model engineModel(const EngineManifest &manifest);

/// How one engine weight is laid out (docs/engine.md "Memory regions"): a
/// stack of `matrices` [rows, cols] matrices (experts; 1 otherwise; 1-D
/// tensors are one row), each `matrixBytes` of data and `matrixScaleBytes`
/// of scales (0 for bf16/f32).
struct WeightLayout {
  TilecFormat format = TILEC_FMT_BF16; // bf16 also stands for f32 here
  bool f32 = false;                    // "f32" (router bias)
  int64_t matrices = 1, rows = 1, cols = 1;
  int64_t matrixBytes = 0, matrixScaleBytes = 0;
};
/// Checks `info` (format, shape, byte counts, 256-byte aligned offsets) and
/// returns its layout; throws tilec::Error naming the weight.
WeightLayout weightLayout(const WeightInfo &info);

class WeightPacker {
public:
  /// Opens the source (checkpoints are mapped, not read). Throws tilec::Error.
  WeightPacker(const EngineManifest &manifest, const WeightSourceSpec &source);
  ~WeightPacker();
  WeightPacker(const WeightPacker &) = delete;
  WeightPacker &operator=(const WeightPacker &) = delete;

  /// Weight `info`'s data (info.bytes) into `data` and its scales
  /// (info.scaleBytes) into `scales` (may be null when it has none). The
  /// pointers need no alignment (e.g. a pinned staging buffer).
  void pack(const WeightInfo &info, uint8_t *data, uint8_t *scales);
  /// Only matrix (expert) `matrix` of it: layout.matrixBytes of data and
  /// layout.matrixScaleBytes of scales, for uploads in pieces.
  void packMatrix(const WeightInfo &info, int64_t matrix, uint8_t *data,
                  uint8_t *scales);
  /// Every weight of the manifest into the region `weights`
  /// (manifest.weightBytes bytes) at its offsets; checks that weights do not
  /// overlap and fit. Bytes between weights are zeroed.
  void packAll(uint8_t *weights, const ProgressFn &progress = {});

  const WeightSourceSpec &source() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// WeightPacker(manifest, source).packAll(weights, progress).
void packWeights(const EngineManifest &manifest, const WeightSourceSpec &source,
                 uint8_t *weights, const ProgressFn &progress = {});

} // namespace tilec
