//===- AssignWarpRoles.cpp - tile-assign-warp-roles
//------------------------===//
//
// Every CTA of the megakernel has one scheduler warp, loader warps that
// prefetch the next tasks' weights, and compute warps. This pass gives each
// task its roles, register budgets and the shared memory its body needs, and
// rejects a plan that does not fit the machine (registers per SM, shared memory
// per block, setmaxnreg's rules on sm_90).
//
//===----------------------------------------------------------------------===//
#include "passes/Machine.h"
#include "passes/Passes.h"
#include "runtime/abi/TaskAbi.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

namespace mlir::tile {
#define GEN_PASS_DEF_TILEASSIGNWARPROLES
#include "passes/Passes.h.inc"

namespace {

/// Tokens from which the device library's GEMVs run on the tensor cores
/// (runtime/device/linear.cuh, TILEC_GEMV_MMA_MIN_T's default).
constexpr int64_t kGemvMmaMinTokens = 8;

/// Shared memory a task's body uses: its staged activations (f32, streamed in
/// chunks of at most 64 KB when the whole input does not fit) plus the loader's
/// ring of weight pages (two 16 KB pages). From kGemvMmaMinTokens tokens a
/// GEMV's tensor-core path stages x whole, as bf16 fragments of 8 tokens (16
/// bytes per column), twice with the RMSNORM prologue (x times the norm weight
/// as hi + lo), next to its partial sums (one K slice; the body splits K
/// further only into what is left): asked for where the block has it
/// (`machineSmem`; else the body falls back to its FMA path, which needs less).
int64_t smemFor(TaskOp task, int64_t machineSmem) {
  constexpr int64_t kRing = 2 * 16384, kMaxStage = 65536, kTables = 4096;
  int64_t t = task.getParam("T");
  StringRef family = task.getFamily();
  auto staged = [&](int64_t k) {
    return kRing + std::min(t * k * 4, kMaxStage);
  };
  auto gemv = [&](int64_t k, int64_t mats, bool rms) {
    int64_t need = staged(k);
    if (t < kGemvMmaMinTokens)
      return need;
    int64_t mma = (t + 7) / 8 * k * 16 * (rms ? 2 : 1) +
                  mats * task.getParam("tile") * t * 4 + kTables;
    return mma <= machineSmem ? std::max(need, mma) : need;
  };
  if (family == "linear")
    return gemv(task.getParam("K"),
                task.getParam("epilogue") == TILEC_EPI_SILU_PAIR ? 2 : 1,
                task.getParam("prologue") == TILEC_PRO_RMSNORM);
  if (family == "moe_gate_up")
    return gemv(task.getParam("H"), 2, true);
  if (family == "moe_down")
    return gemv(task.getParam("I"), 1, false);
  if (family == "attention") {
    int64_t group = task.getParam("q_heads") /
                    std::max<int64_t>(1, task.getParam("kv_heads"));
    return kRing +
           t * group * (task.getParam("head_dim") + task.getParam("v_dim")) * 4;
  }
  if (family == "router_topk")
    return t * task.getParam("E") * 8;
  return 1024;
}

struct AssignWarpRolesPass
    : public impl::TileAssignWarpRolesBase<AssignWarpRolesPass> {
  using TileAssignWarpRolesBase::TileAssignWarpRolesBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (int64_t regs : {int64_t(loadRegs), int64_t(computeRegs)})
      if (regs < 24 || regs > 256 || regs % 8 != 0) {
        module.emitError()
            << "tile-assign-warp-roles: a register budget of " << regs
            << " is not one setmaxnreg accepts (a multiple of 8 in "
               "[24, 256])";
        return signalPassFailure();
      }
    if (loadWarps < 0 || computeWarps < 1) {
      module.emitError() << "tile-assign-warp-roles: needs load-warps >= 0 and "
                            "compute-warps >= 1";
      return signalPassFailure();
    }
    Builder b(&getContext());
    bool ok = true;
    module.walk([&](ProgramOp program) {
      Machine machine = Machine::fromProgram(program);
      int64_t warps = 1 + loadWarps + computeWarps;
      if (warps * 32 > 1024) {
        program.emitOpError() << "tile-assign-warp-roles: " << warps
                              << " warps exceed 1024 threads per block";
        ok = false;
        return;
      }
      int64_t maxSmem = 0;
      for (TaskOp task : program.getBodyBlock().getOps<TaskOp>()) {
        int64_t smem = smemFor(task, machine.smemPerBlock);
        maxSmem = std::max(maxSmem, smem);
        task.setRolesAttr(
            RoleAttr::get(&getContext(), 1, loadWarps, computeWarps,
                          {int64_t(loadRegs), int64_t(computeRegs)}, smem));
      }
      program->setAttr("threads", b.getI64IntegerAttr(warps * 32));
      // The kernel gets the largest task's need, and at least 64 KB: the device
      // library stages what fits in what it is given, and one CTA per SM leaves
      // the rest of the SM's shared memory unused anyway.
      constexpr int64_t kFloor = 65536;
      int64_t kernelSmem = std::max(maxSmem, kFloor);
      if (machine.smemPerBlock > 0)
        kernelSmem =
            std::min(kernelSmem, std::max(maxSmem, machine.smemPerBlock));
      program->setAttr("smem", b.getI64IntegerAttr(kernelSmem));
      // The program verifier checks each task's budget against the machine.
      if (failed(mlir::verify(program)))
        ok = false;
    });
    if (!ok)
      signalPassFailure();
  }
};

} // namespace
} // namespace mlir::tile
