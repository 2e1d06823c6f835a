//===- Codegen.h - A scheduled tile.program to an engine --------*- C++ -*-===//
//
// Reads a tile.program that has been partitioned, given warp roles, scheduled
// and memory-planned, and produces the engine: the manifest (buffers, weights,
// KV caches, instances, events, per-SM task records) and kernel.cu, one
// persistent kernel whose switch has one case per distinct instance (family +
// compile-time parameters). docs/engine.md is the contract.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/engine/Manifest.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mlir::tile {

struct EngineInfo {
  std::string tilecVersion, modelName, modelConfig, drafterConfig;
};

/// Fills `manifest` and `kernelSource` from program `name` of `module`. On
/// failure emits a diagnostic naming what is missing and returns failure.
LogicalResult generateEngine(ModuleOp module, StringRef name,
                             const EngineInfo &info,
                             tilec::EngineManifest &manifest,
                             std::string &kernelSource);

/// The C++ expression kernel.cu calls for an instance.
std::string instanceSymbol(const tilec::InstanceInfo &instance);

} // namespace mlir::tile
