//===- TileTaskOps.cpp - Task-level ops: buffers, tasks, the program ------===//
//
// ProgramOp's verifier is the safety net of the whole back end: it rejects a
// task that reads a buffer its producers may not have finished (no covering
// event), a schedule that can deadlock (a wait on a later task, an SM list out
// of topological order) and a task whose roles do not fit the machine.
//
//===----------------------------------------------------------------------===//
#include "dialects/tile/TileDialect.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;
using namespace mlir::tile;

int64_t ProgramOp::getTargetInt(StringRef key, int64_t fallback) {
  if (auto value = dyn_cast_or_null<IntegerAttr>(getTarget().get(key)))
    return value.getInt();
  return fallback;
}

int64_t BufferOp::getBytes() {
  auto type = cast<RankedTensorType>(getType());
  return type.getNumElements() * int64_t(type.getElementTypeBitWidth()) / 8;
}

LogicalResult BufferOp::verify() {
  StringRef kind = getKind();
  if (kind != "input" && kind != "output" && kind != "activation" &&
      kind != "view" && kind != "kv" && kind != "state")
    return emitOpError() << "@" << getSymName() << ": kind '" << kind
                         << "' is not input, output, activation, view, kv or "
                            "state";
  if ((kind == "view") != bool(getAlias()))
    return emitOpError()
           << "@" << getSymName()
           << ": a view needs alias(@buffer) and only a view has one";
  auto type = cast<RankedTensorType>(getType());
  if (!type.hasStaticShape() || type.getElementTypeBitWidth() % 8 != 0)
    return emitOpError() << "@" << getSymName()
                         << " needs a static shape of whole bytes, got "
                         << type;
  if (getOffset() && *getOffset() < 0)
    return emitOpError() << "@" << getSymName() << ": negative offset";
  return success();
}

int64_t TaskOp::getParam(StringRef key, int64_t fallback) {
  if (auto value = dyn_cast_or_null<IntegerAttr>(getParams().get(key)))
    return value.getInt();
  return fallback;
}

int64_t TaskOp::getCostInt(StringRef key) {
  if (auto value = dyn_cast_or_null<IntegerAttr>(getCost().get(key)))
    return value.getInt();
  return 0;
}

namespace {

/// The buffer a symbol names, following views to the bytes they alias.
StringRef resolveBuffer(llvm::StringMap<BufferOp> &buffers, StringRef name) {
  for (int hops = 0; hops < 16; ++hops) {
    auto it = buffers.find(name);
    if (it == buffers.end() || !it->second.getAlias())
      return name;
    name = *it->second.getAlias();
  }
  return name;
}

} // namespace

LogicalResult ProgramOp::verify() {
  llvm::StringMap<BufferOp> buffers;
  llvm::StringMap<EventOp> events;
  SmallVector<TaskOp> tasks;
  for (Operation &op : getBodyBlock()) {
    if (auto b = dyn_cast<BufferOp>(op))
      buffers[b.getSymName()] = b;
    else if (auto e = dyn_cast<EventOp>(op))
      events[e.getSymName()] = e;
    else if (auto t = dyn_cast<TaskOp>(op))
      tasks.push_back(t);
    else if (!isa<ScheduleOp>(op))
      return op.emitOpError() << "does not belong in a tile.program";
  }

  // Program order and who signals what.
  llvm::DenseMap<Operation *, size_t> order;
  llvm::StringMap<size_t> taskIndex;
  llvm::StringMap<SmallVector<size_t>> signallers;
  for (auto [i, task] : llvm::enumerate(tasks)) {
    order[task] = i;
    taskIndex[task.getSymName()] = i;
    if (auto signal = task.getSignalAttr()) {
      if (!events.count(signal.getValue()))
        return task.emitOpError()
               << "@" << task.getSymName() << " signals " << signal
               << ", which is not a tile.event here";
      signallers[signal.getValue()].push_back(i);
    }
  }
  for (auto &[name, event] : events) {
    int64_t have = int64_t(signallers.lookup(name).size());
    if (have != event.getSignals())
      return event.emitOpError()
             << "@" << name << " expects " << event.getSignals()
             << " signals per step but " << have << " tasks signal it";
  }

  // Events each event's completion guarantees (its signallers' waits, closed
  // transitively), computed in program order since waits point backwards.
  llvm::StringMap<llvm::DenseSet<StringRef>> covers;
  auto covered = [&](TaskOp task) {
    llvm::DenseSet<StringRef> set;
    for (Attribute wait : task.getWaits()) {
      StringRef name = cast<FlatSymbolRefAttr>(wait).getValue();
      set.insert(name);
      for (StringRef c : covers[name])
        set.insert(c);
    }
    return set;
  };

  // Which tasks (in program order) write and read each buffer.
  llvm::StringMap<SmallVector<size_t>> writers, readers;
  for (auto [i, task] : llvm::enumerate(tasks))
    for (Attribute w : task.getWrites()) {
      StringRef name = cast<FlatSymbolRefAttr>(w).getValue();
      if (!buffers.count(name))
        return task.emitOpError()
               << "@" << task.getSymName() << " writes @" << name
               << ", which is not a tile.buffer here";
      writers[resolveBuffer(buffers, name)].push_back(i);
    }
  for (auto [i, task] : llvm::enumerate(tasks))
    for (Attribute r : task.getReads()) {
      StringRef bytes =
          resolveBuffer(buffers, cast<FlatSymbolRefAttr>(r).getValue());
      SmallVector<size_t> &list = readers[bytes];
      if (list.empty() || list.back() != i)
        list.push_back(i);
    }

  // Placement, when scheduled: SM and index within its list.
  llvm::DenseMap<size_t, std::pair<int64_t, size_t>> placed;
  bool scheduled = false;
  for (auto schedule : getBodyBlock().getOps<ScheduleOp>()) {
    scheduled = true;
    size_t previous = 0;
    for (auto [index, ref] : llvm::enumerate(schedule.getTasks())) {
      auto found = taskIndex.find(cast<FlatSymbolRefAttr>(ref).getValue());
      if (found == taskIndex.end())
        return schedule.emitOpError()
               << "sm(" << schedule.getSm() << ") lists " << ref
               << ", which is not a tile.task here";
      size_t position = found->second;
      TaskOp task = tasks[position];
      if (placed.count(position))
        return schedule.emitOpError()
               << "@" << task.getSymName() << " is scheduled twice";
      if (index > 0 && position < previous)
        return schedule.emitOpError()
               << "sm(" << schedule.getSm() << ") runs @" << task.getSymName()
               << " after a task that comes later in topological order: the "
                  "schedule can deadlock";
      previous = position;
      placed[position] = {schedule.getSm(), index};
    }
  }
  if (scheduled && placed.size() != tasks.size())
    for (auto [i, task] : llvm::enumerate(tasks))
      if (!placed.count(i))
        return task.emitOpError() << "@" << task.getSymName() << " is on no SM";

  int64_t smem = getTargetInt("smem", 0),
          regsPerSm = getTargetInt("regs", 65536);
  for (auto [i, task] : llvm::enumerate(tasks)) {
    for (Attribute wait : task.getWaits()) {
      StringRef name = cast<FlatSymbolRefAttr>(wait).getValue();
      if (!events.count(name))
        return task.emitOpError() << "@" << task.getSymName() << " waits on @"
                                  << name << ", which is not a tile.event here";
      for (size_t s : signallers.lookup(name))
        if (s >= i)
          return task.emitOpError()
                 << "@" << task.getSymName() << " waits on @" << name
                 << ", which @" << tasks[s].getSymName()
                 << " signals later: a dependency cycle";
    }
    llvm::DenseSet<StringRef> mine = covered(task);
    for (Attribute r : task.getReads()) {
      StringRef name = cast<FlatSymbolRefAttr>(r).getValue();
      auto it = buffers.find(name);
      if (it == buffers.end())
        return task.emitOpError()
               << "@" << task.getSymName() << " reads @" << name
               << ", which is not a tile.buffer here";
      StringRef bytes = resolveBuffer(buffers, name);
      SmallVector<size_t> before;
      for (size_t w : writers.lookup(bytes))
        if (w < i)
          before.push_back(w);
      if (before.empty()) {
        StringRef kind = buffers[bytes].getKind();
        if (kind != "input" && kind != "kv" &&
            kind != "state") // caches and state hold earlier steps' data
          return task.emitOpError() << "@" << task.getSymName() << " reads @"
                                    << name << ", which no earlier task writes";
        continue;
      }
      for (size_t w : before) {
        TaskOp producer = tasks[w];
        auto p = placed.find(w), me = placed.find(i);
        if (p != placed.end() && me != placed.end() &&
            p->second.first == me->second.first &&
            p->second.second < me->second.second)
          continue; // same SM, earlier: the CTA finished it first
        auto signal = producer.getSignalAttr();
        if (!signal || !mine.contains(signal.getValue()))
          return task.emitOpError()
                 << "@" << task.getSymName() << " reads @" << name
                 << " written by @" << producer.getSymName()
                 << ", but no event it waits on covers "
                 << (signal ? "@" + signal.getValue().str() : "that task")
                 << ": the input has no producer event";
      }
    }
    // A write must come after the other tasks that wrote or read the same
    // bytes earlier in the step (caches and state are updated in place).
    for (Attribute w : task.getWrites()) {
      StringRef name = cast<FlatSymbolRefAttr>(w).getValue();
      StringRef bytes = resolveBuffer(buffers, name);
      SmallVector<size_t> earlierTouch;
      for (size_t o : writers.lookup(bytes))
        if (o < i)
          earlierTouch.push_back(o);
      size_t wroteCount = earlierTouch.size();
      for (size_t o : readers.lookup(bytes))
        if (o < i)
          earlierTouch.push_back(o);
      for (auto [n, other] : llvm::enumerate(earlierTouch)) {
        TaskOp earlier = tasks[other];
        if (earlier.getSignalAttr() &&
            earlier.getSignalAttr() == task.getSignalAttr())
          continue; // one group: disjoint parts
        bool wrote = n < wroteCount;
        auto p = placed.find(other), me = placed.find(i);
        if (p != placed.end() && me != placed.end() &&
            p->second.first == me->second.first &&
            p->second.second < me->second.second)
          continue;
        auto signal = earlier.getSignalAttr();
        if (!signal || !mine.contains(signal.getValue()))
          return task.emitOpError()
                 << "@" << task.getSymName() << " writes @" << name
                 << ", which @" << earlier.getSymName()
                 << (wrote ? " wrote" : " read")
                 << " earlier in the step, but no event it waits on covers "
                 << (signal ? "@" + signal.getValue().str() : "that task");
      }
    }
    if (auto signal = task.getSignalAttr()) {
      llvm::DenseSet<StringRef> &set = covers[signal.getValue()];
      for (StringRef c : mine)
        set.insert(c);
    }
    if (auto roles = task.getRolesAttr()) {
      int64_t maxRegs = 0;
      for (int64_t r : roles.getRegs())
        maxRegs = std::max(maxRegs, r);
      if (smem > 0 && roles.getSmem() > smem)
        return task.emitOpError()
               << "@" << task.getSymName() << " needs " << roles.getSmem()
               << " bytes of shared memory; the target has " << smem;
      if (roles.warps() * 32 * maxRegs > regsPerSm)
        return task.emitOpError()
               << "@" << task.getSymName() << ": " << roles.warps()
               << " warps x " << maxRegs << " registers exceed the target's "
               << regsPerSm << " registers per SM";
    }
  }
  return success();
}
