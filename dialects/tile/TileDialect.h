//===- TileDialect.h - The tile dialect: dialect, attributes, types, ops --===//
#pragma once

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/tile/TileDialect.h.inc"
#include "dialects/tile/TileEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/tile/TileAttrs.h.inc"
#define GET_TYPEDEF_CLASSES
#include "dialects/tile/TileTypes.h.inc"

namespace mlir::tile {
/// The memory of all KV caches, for side-effect ordering of
/// append/commit/attention.
struct KVCacheResource : public SideEffects::Resource::Base<KVCacheResource> {
  StringRef getName() final { return "tile.kv_cache"; }
};
struct StateResource : public SideEffects::Resource::Base<StateResource> {
  StringRef getName() final { return "tile.state"; }
};
} // namespace mlir::tile

#define GET_OP_CLASSES
#include "dialects/tile/TileOps.h.inc"
