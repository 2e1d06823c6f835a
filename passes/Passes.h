//===- Passes.h - The tile dialect's passes and pipelines -------*- C++ -*-===//
#pragma once

#include "dialects/tile/TileDialect.h"

#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

#include <memory>
#include <string>

namespace mlir::tile {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// The default pipeline as text (what tilec runs; printable, editable), and the
/// same without its builtin.module(...) anchor. `disabledFusions`: tile-fuse
/// patterns to leave out (its disable= option).
std::string defaultPipeline(StringRef function = "target",
                            StringRef target = "h100",
                            ArrayRef<std::string> disabledFusions = {});
std::string defaultPipelineElements(StringRef function = "target",
                                    StringRef target = "h100",
                                    ArrayRef<std::string> disabledFusions = {});
/// Registers the passes and the `tile-pipeline` pipeline with MLIR's registry.
void registerTilePipelines();

} // namespace mlir::tile
