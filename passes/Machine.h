//===- Machine.h - Machine targets the cost model and tiling use -*- C++
//-*-===//
#pragma once

#include "dialects/tile/TileDialect.h"

#include <optional>
#include <string>

namespace mlir::tile {

/// What the passes know about a GPU. HBM figures are measured copy bandwidth
/// (read + write), not datasheet numbers; correct them from bench/ results.
struct Machine {
  std::string name, arch;
  int64_t sms = 0, smemPerBlock = 0, regsPerSm = 65536, l2Bytes = 0;
  double hbmGBps = 0, tflops = 0;

  DictionaryAttr toAttr(MLIRContext *context) const;
  static Machine fromProgram(ProgramOp program);
};

/// h100, h200 or b200.
std::optional<Machine> namedMachine(StringRef name);

} // namespace mlir::tile
