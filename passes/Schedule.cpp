//===- Schedule.cpp - tile-schedule: list-schedule tasks onto SMs ---------===//
//
// Tasks are visited in program order (a topological order), each placed on the
// SM where the cost model says it can start first: after that SM's previous
// task and after every task of the events it waits on. Appending in program
// order keeps every SM's list topologically sorted, which is what makes the
// persistent kernel deadlock-free. The predicted end of the last task is the
// step time.
//
//===----------------------------------------------------------------------===//
#include "passes/Machine.h"
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::tile {
#define GEN_PASS_DEF_TILESCHEDULE
#include "passes/Passes.h.inc"

namespace {

struct SchedulePass : public impl::TileScheduleBase<SchedulePass> {
  using TileScheduleBase::TileScheduleBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (costModel != "roofline" && costModel != "uniform") {
      module.emitError()
          << "tile-schedule: cost-model must be roofline or uniform, got '"
          << costModel << "'";
      return signalPassFailure();
    }
    if (hbmGBps < 0 || tflops < 0 || taskOverheadNs < 0) {
      module.emitError()
          << "tile-schedule: hbm-gbps, tflops and task-overhead-ns must "
             "be >= 0";
      return signalPassFailure();
    }
    bool ok = true;
    module.walk([&](ProgramOp program) {
      if (failed(schedule(program)))
        ok = false;
    });
    if (!ok)
      signalPassFailure();
  }

  /// Predicted duration of a task on one SM, in ns.
  double cost(TaskOp task, const Machine &m) {
    if (costModel == "uniform")
      return 1.0;
    double bw = (hbmGBps > 0 ? hbmGBps : m.hbmGBps) * 1e9 / double(m.sms);
    double rate = (tflops > 0 ? tflops : m.tflops) * 1e12 / double(m.sms);
    double bytesNs = double(task.getCostInt("bytes")) / bw * 1e9;
    double flopsNs = double(task.getCostInt("flops")) / rate * 1e9;
    return std::max(bytesNs, flopsNs) + taskOverheadNs;
  }

  LogicalResult schedule(ProgramOp program) {
    Machine m = Machine::fromProgram(program);
    if (m.sms < 1)
      return program.emitOpError()
             << "tile-schedule: the program's target has no SMs";
    for (auto old : llvm::make_early_inc_range(
             program.getBodyBlock().getOps<ScheduleOp>()))
      old.erase();
    Builder b(program.getContext());
    std::vector<double> smFree(size_t(m.sms), 0.0);
    std::vector<SmallVector<Attribute>> lists(size_t(m.sms));
    llvm::StringMap<double> eventDone;
    double makespan = 0;
    for (TaskOp task : program.getBodyBlock().getOps<TaskOp>()) {
      double ready = 0;
      for (Attribute w : task.getWaits())
        ready = std::max(
            ready, eventDone.lookup(cast<FlatSymbolRefAttr>(w).getValue()));
      size_t best = 0;
      double bestStart = 0;
      for (size_t s = 0; s < smFree.size(); ++s) {
        double start = std::max(smFree[s], ready);
        if (s == 0 || start < bestStart) {
          best = s;
          bestStart = start;
        }
      }
      double end = bestStart + cost(task, m);
      smFree[best] = end;
      makespan = std::max(makespan, end);
      if (auto signal = task.getSignalAttr()) {
        double &done = eventDone[signal.getValue()];
        done = std::max(done, end);
      }
      lists[best].push_back(FlatSymbolRefAttr::get(task.getSymNameAttr()));
      task->setAttr("sm", b.getI64IntegerAttr(int64_t(best)));
      task->setAttr("start_ns", b.getI64IntegerAttr(int64_t(bestStart)));
      task->setAttr("end_ns", b.getI64IntegerAttr(int64_t(end)));
    }
    OpBuilder ob(program.getContext());
    ob.setInsertionPointToEnd(&program.getBodyBlock());
    for (size_t s = 0; s < lists.size(); ++s)
      ScheduleOp::create(ob, program.getLoc(), ob.getI64IntegerAttr(int64_t(s)),
                         ob.getArrayAttr(lists[s]));
    program->setAttr("predicted_ns", b.getI64IntegerAttr(int64_t(makespan)));
    program->setAttr("cost_model", b.getStringAttr(costModel));
    return mlir::verify(program);
  }
};

} // namespace
} // namespace mlir::tile
