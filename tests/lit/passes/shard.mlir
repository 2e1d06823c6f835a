// tile-shard with one rank is the identity; other rank counts are refused until
// the multi-GPU split lands, and bad options are named.
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-shard | FileCheck %s
// RUN: tile-opt %S/Inputs/tiny-layer.mlir | FileCheck %s
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-shard="ranks=8" 2>&1 | FileCheck %s --check-prefix=RANKS
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-shard="ranks=0" 2>&1 | FileCheck %s --check-prefix=ZERO
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-shard="mode=dp" 2>&1 | FileCheck %s --check-prefix=MODE

// CHECK: func.func @target
// CHECK: tile.embed
// CHECK: tile.moe
// CHECK: tile.argmax

// RANKS: error: tile-shard: splitting over 8 ranks is not implemented yet; only ranks=1 (one GPU) is supported
// ZERO: error: tile-shard: ranks must be >= 1, got 0
// MODE: error: tile-shard: mode must be ep or tp, got 'dp'
