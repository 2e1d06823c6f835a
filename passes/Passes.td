//===- Passes.td - The tile dialect's passes ------------------------------===//
//
// The default pipeline (tilec, or tile-opt --tile-pipeline):
//   tile-shard -> tile-fuse -> tile-partition -> tile-assign-warp-roles
//   -> tile-schedule -> tile-plan-memory
//
//===----------------------------------------------------------------------===//
#ifndef TILE_PASSES_TD
#define TILE_PASSES_TD

include "mlir/Pass/PassBase.td"

def TileShard : Pass<"tile-shard", "mlir::ModuleOp"> {
  let summary = "Split the graph over N ranks (N = 1: the identity)";
  let description = [{
    Splits attention by heads and experts by expert (ep) or intermediate dim
    (tp), inserting collectives. With ranks = 1 the graph is left unchanged.
  }];
  let options = [
    Option<"ranks", "ranks", "int64_t", "1", "Number of ranks (GPUs)">,
    Option<"mode", "mode", "std::string", "\"ep\"",
           "How experts are split: ep (by expert) or tp (by intermediate dim)">
  ];
}

def TileFuse : Pass<"tile-fuse", "mlir::ModuleOp"> {
  let summary = "Fold producers and consumers that need no global sync";
  let description = [{
    RMSNorm into the consuming linears' prologue; RoPE and the KV-cache append
    into the q/k/v projections' epilogue; SiLU*mul into the gate/up pair; the
    residual add into o_proj/down's epilogue; router, top-k, experts and the
    residual add into one fused_moe; argmax into lm_head. `disable` leaves
    patterns out by name (passes/Fuse.cpp's header): with `silu-pair` off the
    gate and up projections stay two linears and `tile.silu_mul` becomes
    SILU_MUL tasks; the other patterns' ops have no task family unfused.
  }];
  let dependentDialects = ["mlir::tile::TileDialect"];
  let options = [
    ListOption<"disable", "disable", "std::string",
               "Patterns to leave out, by name (comma-separated): "
               "block-attention, query-rope, kv-append, silu-pair, moe, "
               "residual, argmax, concat-norm, norm-linear">
  ];
}

def TilePartition : Pass<"tile-partition", "mlir::ModuleOp"> {
  let summary = "Cut a graph function into tasks sized for the machine";
  let description = [{
    Turns `func.func @<function>` into a `tile.program` of arena buffers, events
    and tasks. Linears are cut into row tiles (RoPE epilogues keep each head's
    rotary rows in one tile, head norms whole heads), attention into up to
    attention-splits tasks per KV head (shares of its query rows), MoE into per
    (distinct expert slot, tile) tasks: at run time the router compacts the block's choices
    into its distinct experts, so each expert's weights are read once per step.
    A silu_mul that tile-fuse left unfused becomes SILU_MUL tasks over column
    ranges, each waiting on the gate and up projections.
  }];
  let options = [
    Option<"function", "function", "std::string", "\"target\"",
           "The graph function to partition">,
    Option<"target", "target", "std::string", "\"h100\"",
           "Machine: h100, h200 or b200 (the fields below override it)">,
    Option<"sms", "sms", "int64_t", "0", "SM count (0: the target's)">,
    Option<"smem", "smem", "int64_t", "0", "Shared memory per block (0: the target's)">,
    Option<"tasksPerSm", "tasks-per-sm", "int64_t", "1",
           "Aim for this many tasks per SM in a large op">,
    Option<"minRows", "min-rows", "int64_t", "16",
           "Fewest output rows in a linear task">,
    Option<"attentionSplits", "attention-splits", "int64_t", "4",
           "Most tasks per KV head in attention (each takes a share of its "
           "query rows and reads all its keys)">
  ];
}

def TileAssignWarpRoles : Pass<"tile-assign-warp-roles", "mlir::ModuleOp"> {
  let summary = "Pick warps per role and register budgets; check they fit";
  let options = [
    Option<"loadWarps", "load-warps", "int64_t", "1", "Loader warps per CTA">,
    Option<"computeWarps", "compute-warps", "int64_t", "14",
           "Compute warps per CTA (14: 512 threads; on an H200 the GEMVs of 8 "
           "tokens ran 14% faster than with 6)">,
    Option<"loadRegs", "load-regs", "int64_t", "40", "Registers per loader thread">,
    Option<"computeRegs", "compute-regs", "int64_t", "112",
           "Registers per compute thread">
  ];
}

def TileSchedule : Pass<"tile-schedule", "mlir::ModuleOp"> {
  let summary = "List-schedule tasks onto SMs with a cost model";
  let description = [{
    Orders each SM's tasks by a global topological order (so no schedule can
    deadlock), places each task on the SM that can start it first by the cost
    model, keeps only the waits that transitive completion does not already
    imply, and marks tasks whose weights can be prefetched before their inputs
    are ready.
  }];
  let options = [
    Option<"costModel", "cost-model", "std::string", "\"roofline\"",
           "roofline (bytes / bandwidth, flops / rate) or uniform (every task 1)">,
    Option<"hbmGBps", "hbm-gbps", "double", "0",
           "HBM bandwidth in GB/s (0: the target's measured figure)">,
    Option<"tflops", "tflops", "double", "0", "bf16 rate in TFLOP/s (0: the target's)">,
    Option<"taskOverheadNs", "task-overhead-ns", "double", "400",
           "Fixed cost of a task (wait, dispatch, signal) in ns">
  ];
}

def TilePlanMemory : Pass<"tile-plan-memory", "mlir::ModuleOp"> {
  let summary = "Assign arena offsets by liveness, and weight and KV offsets";
  let options = [
    Option<"alignment", "alignment", "int64_t", "256", "Alignment of every region">,
    Option<"reuse", "reuse", "bool", "true",
           "Let buffers whose lifetimes do not overlap share bytes">
  ];
}

#endif // TILE_PASSES_TD
