//===- tile-opt.cpp - Parse, verify, transform and print tile IR ----------===//
//
// The mlir-opt of this project: every tile pass and pipeline is a flag here, as
// are MLIR's generic transforms (canonicalize, cse, symbol-dce).
//
//===----------------------------------------------------------------------===//
#include "dialects/tile/TileDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::registerTransformsPasses();
  mlir::tile::registerTilePipelines();
  mlir::DialectRegistry registry;
  registry.insert<mlir::tile::TileDialect, mlir::func::FuncDialect>();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "tile-opt: the tile dialect's optimizer driver\n", registry));
}
