//===- PlanMemory.cpp - tile-plan-memory: arena, KV and weight offsets
//-----===//
//
// Arena buffers live from their first writer to their last reader (inputs from
// the step's start, outputs to its end) and are placed first-fit, largest
// first, so buffers whose lifetimes do not overlap share bytes. KV caches and
// weights are laid out back to back in their own regions. Every region starts
// aligned.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/BitVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <functional>

namespace mlir::tile {
#define GEN_PASS_DEF_TILEPLANMEMORY
#include "passes/Passes.h.inc"

namespace {

int64_t alignTo(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

/// Bytes of a weight's data and scales in its storage format.
std::pair<int64_t, int64_t> weightBytes(WeightOp w) {
  RankedTensorType type = w.getTensorType();
  int64_t n = type.getNumElements();
  ArrayRef<int64_t> s = type.getShape();
  int64_t cols = s.back(), rows = n / cols;
  int64_t matrices = s.size() == 3 ? s[0] : 1;
  switch (w.getQuantKind()) {
  case QuantKind::mxfp4:
    return {n / 2, n / 32};
  case QuantKind::fp8_block: {
    int64_t perMatrixRows = rows / matrices;
    return {n, matrices * ((perMatrixRows + 127) / 128) * ((cols + 127) / 128) *
                   4};
  }
  case QuantKind::none:
    return {n * int64_t(type.getElementTypeBitWidth()) / 8, 0};
  }
  return {0, 0};
}

struct PlanMemoryPass : public impl::TilePlanMemoryBase<PlanMemoryPass> {
  using TilePlanMemoryBase::TilePlanMemoryBase;

  void runOnOperation() override {
    if (alignment < 1 || (alignment & (alignment - 1))) {
      getOperation().emitError()
          << "tile-plan-memory: alignment must be a power of "
             "two, got "
          << int64_t(alignment);
      return signalPassFailure();
    }
    bool ok = true;
    getOperation().walk([&](ProgramOp program) {
      if (failed(plan(program)))
        ok = false;
    });
    if (!ok)
      signalPassFailure();
  }

  LogicalResult plan(ProgramOp program) {
    Builder b(program.getContext());
    ModuleOp module = getOperation();
    SmallVector<TaskOp> tasks(program.getBodyBlock().getOps<TaskOp>());
    llvm::StringMap<BufferOp> byName;
    for (BufferOp buf : program.getBodyBlock().getOps<BufferOp>())
      byName[buf.getSymName()] = buf;
    auto root = [&](StringRef name) {
      for (int i = 0; i < 16 && byName.count(name) && byName[name].getAlias();
           ++i)
        name = *byName[name].getAlias();
      return name;
    };

    // Lifetimes in task indices; the events (as indices) of the tasks
    // touching each buffer (-1: a task that signals none) and the tasks
    // writing it; each event's tasks' waits.
    int64_t end = int64_t(tasks.size());
    llvm::StringMap<std::pair<int64_t, int64_t>> life;
    llvm::StringMap<SmallVector<int>> touchedBy;
    llvm::StringMap<SmallVector<int64_t>> writtenBy;
    llvm::StringMap<int> eventIds;
    auto eventId = [&](StringRef e) {
      return eventIds.try_emplace(e, int(eventIds.size())).first->second;
    };
    SmallVector<SmallVector<int>> eventWaits;
    for (auto [i, task] : llvm::enumerate(tasks)) {
      int event =
          task.getSignalAttr() ? eventId(task.getSignalAttr().getValue()) : -1;
      auto touch = [&](ArrayAttr refs, bool write) {
        for (Attribute r : refs) {
          StringRef name = root(cast<FlatSymbolRefAttr>(r).getValue());
          auto [it, fresh] = life.try_emplace(name, int64_t(i), int64_t(i));
          it->second.first = std::min(it->second.first, int64_t(i));
          it->second.second = std::max(it->second.second, int64_t(i));
          touchedBy[name].push_back(event);
          if (write)
            writtenBy[name].push_back(int64_t(i));
        }
      };
      touch(task.getReads(), false);
      touch(task.getWrites(), true);
      for (Attribute w : task.getWaits()) {
        int waited = eventId(cast<FlatSymbolRefAttr>(w).getValue());
        if (event >= 0) {
          if (eventWaits.size() <= size_t(event))
            eventWaits.resize(size_t(event) + 1);
          eventWaits[size_t(event)].push_back(waited);
        }
      }
    }
    const int events = int(eventIds.size());
    eventWaits.resize(size_t(events));
    // What each event's completion implies: its tasks' waits, transitively
    // (memoized depth-first; the task verifier rejects cycles, and an event
    // met again while open is taken as implying nothing more).
    std::vector<llvm::BitVector> implies(static_cast<size_t>(events));
    std::vector<char> state(static_cast<size_t>(events),
                            0); // 0 new, 1 open, 2 done
    std::function<void(int)> close = [&](int e) {
      state[size_t(e)] = 1;
      llvm::BitVector set(events);
      for (int w : eventWaits[size_t(e)]) {
        if (state[size_t(w)] == 0)
          close(w);
        set.set(w);
        if (state[size_t(w)] == 2)
          set |= implies[size_t(w)];
      }
      implies[size_t(e)] = std::move(set);
      state[size_t(e)] = 2;
    };
    for (int e = 0; e < events; ++e)
      if (state[size_t(e)] == 0)
        close(e);
    // Events complete before every writer of a buffer starts: the
    // intersection over its writers of their own waits, transitively. (Not
    // their events' closures: the tasks of one event may wait on different
    // ones.)
    llvm::StringMap<llvm::BitVector> doneBeforeWrites;
    for (auto &entry : writtenBy) {
      llvm::BitVector all(events, true);
      for (int64_t i : entry.second) {
        llvm::BitVector after(events);
        for (Attribute w : tasks[size_t(i)].getWaits()) {
          int e = eventIds.lookup(cast<FlatSymbolRefAttr>(w).getValue());
          after.set(e);
          after |= implies[size_t(e)];
        }
        all &= after;
      }
      doneBeforeWrites[entry.getKey()] = std::move(all);
    }
    // Every task touching `a` completes before any task writing `b` starts.
    auto before = [&](StringRef a, StringRef b) {
      auto done = doneBeforeWrites.find(b);
      if (done == doneBeforeWrites.end())
        return true; // nothing writes b
      for (int t : touchedBy[a])
        if (t < 0 || !done->second.test(size_t(t)))
          return false;
      return true;
    };

    struct Placed {
      BufferOp buffer;
      int64_t first, last, size, offset;
    };
    SmallVector<Placed> arena;
    int64_t kvBytes = 0;
    for (BufferOp buf : program.getBodyBlock().getOps<BufferOp>()) {
      StringRef kind = buf.getKind();
      if (kind == "view")
        continue;
      if (kind == "kv") {
        buf.setOffsetAttr(b.getI64IntegerAttr(kvBytes));
        kvBytes = alignTo(kvBytes + buf.getBytes(), alignment);
        continue;
      }
      auto it = life.find(buf.getSymName());
      int64_t first = it == life.end() ? 0 : it->second.first;
      int64_t last = it == life.end() ? end : it->second.second;
      if (kind == "input")
        first = 0;
      if (kind == "output")
        last = end;
      arena.push_back(
          {buf, first, last, alignTo(buf.getBytes(), alignment), -1});
    }
    // Largest first, first fit among those whose lifetimes overlap.
    SmallVector<Placed *> order;
    for (Placed &p : arena)
      order.push_back(&p);
    llvm::stable_sort(order,
                      [](Placed *a, Placed *c) { return a->size > c->size; });
    int64_t arenaBytes = 0;
    SmallVector<Placed *> done;
    for (Placed *p : order) {
      int64_t offset = 0;
      if (!reuse) {
        offset = arenaBytes;
      } else {
        bool moved = true;
        while (moved) {
          moved = false;
          for (Placed *q : done) {
            StringRef pn = p->buffer.getSymName(), qn = q->buffer.getSymName();
            bool timeOverlap =
                (p->first <= q->last && q->first <= p->last) ||
                p->buffer.getKind() != "activation" ||
                q->buffer.getKind() != "activation" ||
                !(p->last < q->first ? before(pn, qn) : before(qn, pn));
            bool spaceOverlap =
                offset < q->offset + q->size && q->offset < offset + p->size;
            if (timeOverlap && spaceOverlap) {
              offset = q->offset + q->size;
              moved = true;
            }
          }
        }
      }
      p->offset = offset;
      arenaBytes = std::max(arenaBytes, offset + p->size);
      done.push_back(p);
      p->buffer.setOffsetAttr(b.getI64IntegerAttr(offset));
    }
    // Views take their root's offset.
    for (BufferOp buf : program.getBodyBlock().getOps<BufferOp>())
      if (buf.getKind() == "view")
        if (BufferOp target = byName.lookup(root(buf.getSymName())))
          if (target.getOffset())
            buf.setOffsetAttr(b.getI64IntegerAttr(*target.getOffset()));

    // Weights the program reads, in first-use order.
    int64_t weightBytesTotal = 0;
    llvm::StringSet<> seen;
    for (TaskOp task : tasks)
      for (NamedAttribute arg : task.getArgs()) {
        auto ref = dyn_cast<FlatSymbolRefAttr>(arg.getValue());
        if (!ref || !seen.insert(ref.getValue()).second)
          continue;
        auto weight = module.lookupSymbol<WeightOp>(ref.getAttr());
        if (!weight)
          continue;
        auto [data, scales] = weightBytes(weight);
        weight->setAttr("offset", b.getI64IntegerAttr(weightBytesTotal));
        weight->setAttr("bytes", b.getI64IntegerAttr(data));
        weightBytesTotal = alignTo(weightBytesTotal + data, alignment);
        if (scales > 0) {
          weight->setAttr("scale_offset",
                          b.getI64IntegerAttr(weightBytesTotal));
          weight->setAttr("scale_bytes", b.getI64IntegerAttr(scales));
          weightBytesTotal = alignTo(weightBytesTotal + scales, alignment);
        }
      }
    program->setAttr("arena_bytes", b.getI64IntegerAttr(arenaBytes));
    program->setAttr("kv_bytes", b.getI64IntegerAttr(kvBytes));
    program->setAttr("weight_bytes", b.getI64IntegerAttr(weightBytesTotal));
    return success();
  }
};

} // namespace
} // namespace mlir::tile
