//===- Shard.cpp - tile-shard: split the graph over N ranks ---------------===//
//
// N = 1 is the identity (every op stays whole, no collective is needed).
// Splitting over several GPUs belongs to the multi-GPU work; until it lands, N
// > 1 is an error rather than a silently wrong graph.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

namespace mlir::tile {
#define GEN_PASS_DEF_TILESHARD
#include "passes/Passes.h.inc"

namespace {
struct ShardPass : public impl::TileShardBase<ShardPass> {
  using TileShardBase::TileShardBase;
  void runOnOperation() override {
    if (mode != "ep" && mode != "tp") {
      getOperation().emitError()
          << "tile-shard: mode must be ep or tp, got '" << mode << "'";
      return signalPassFailure();
    }
    if (ranks < 1) {
      getOperation().emitError()
          << "tile-shard: ranks must be >= 1, got " << int64_t(ranks);
      return signalPassFailure();
    }
    if (ranks > 1) {
      getOperation().emitError()
          << "tile-shard: splitting over " << int64_t(ranks)
          << " ranks is not implemented yet; only ranks=1 (one GPU) is "
             "supported";
      return signalPassFailure();
    }
  }
};
} // namespace
} // namespace mlir::tile
