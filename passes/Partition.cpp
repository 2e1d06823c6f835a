//===- Partition.cpp - tile-partition: graph function -> tasks ------------===//
//
// Every SSA tensor becomes an arena buffer (reshapes become views), every op a
// group of tasks that signal one event, and every task lists the buffers it
// reads and writes and waits on the events of their producers (reduced to the
// fewest that transitively imply the rest). Task families and their arguments
// are docs/engine.md's.
//
//===----------------------------------------------------------------------===//
#include "passes/Machine.h"
#include "passes/Passes.h"
#include "runtime/abi/TaskAbi.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MathExtras.h"

#include <array>
#include <cmath>

namespace mlir::tile {
#define GEN_PASS_DEF_TILEPARTITION
#include "passes/Passes.h.inc"

namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

int64_t formatOf(std::optional<QuantAttr> quant) {
  if (!quant || quant->getKind() == QuantKind::none)
    return TILEC_FMT_BF16;
  return quant->getKind() == QuantKind::fp8_block ? TILEC_FMT_FP8
                                                  : TILEC_FMT_MXFP4;
}

/// Bytes of `rows` rows of `cols` weights in a format, scales included.
int64_t weightBytes(int64_t format, int64_t rows, int64_t cols) {
  if (format == TILEC_FMT_MXFP4)
    return rows * cols / 2 + rows * cols / 32;
  if (format == TILEC_FMT_FP8)
    return rows * cols + ceilDiv(rows, 128) * ceilDiv(cols, 128) * 4;
  return rows * cols * 2;
}

/// Builds one tile.program from one graph function.
class Partitioner {
public:
  Partitioner(ModuleOp module, func::FuncOp fn, const Machine &machine,
              int64_t tasksPerSm, int64_t minRows, int64_t attentionSplits)
      : module(module), fn(fn), machine(machine), ctx(module.getContext()),
        b(ctx), tasksPerSm(std::max<int64_t>(1, tasksPerSm)),
        minRows(std::max<int64_t>(1, minRows)),
        attentionSplits(std::max<int64_t>(1, attentionSplits)) {}

  LogicalResult run();

private:
  using Args = SmallVector<NamedAttribute>;

  //===--- Names, buffers, events
  //------------------------------------------===//
  std::string opName(Operation *op);
  /// The op's name, computed once.
  std::string nameOf(Operation *op) {
    auto it = opNames.find(op);
    if (it == opNames.end())
      it = opNames.try_emplace(op, opName(op)).first;
    return it->second;
  }
  StringRef buffer(const std::string &name, Type type, StringRef kind,
                   StringRef alias = {});
  StringRef bufferOf(Value value);
  StringRef cacheBuffer(StringRef cache, bool values);

  FlatSymbolRefAttr sym(StringRef name) {
    return FlatSymbolRefAttr::get(ctx, name);
  }
  NamedAttribute arg(StringRef key, Attribute value) {
    return b.getNamedAttr(key, value);
  }
  NamedAttribute argSym(StringRef key, StringRef name) {
    return arg(key, sym(name));
  }
  NamedAttribute argInt(StringRef key, int64_t v) {
    return arg(key, b.getI64IntegerAttr(v));
  }
  NamedAttribute argF32(StringRef key, double v) {
    return arg(key, b.getF32FloatAttr(float(v)));
  }

  /// Starts the tasks of op `name`; they signal the event of `event` (the op's
  /// own name unless it shares one, as q/k/v of an attention do).
  void beginGroup(const std::string &name, const std::string &event = "");
  LogicalResult endGroup(Operation *op);
  /// Adds a task of the current group.
  void task(StringRef family, Operation *op, ArrayRef<NamedAttribute> params,
            ArrayRef<NamedAttribute> args, ArrayRef<StringRef> reads,
            ArrayRef<StringRef> writes, int64_t bytes, int64_t flops,
            bool prefetch);

  /// Rows per task for an op with `rows` outputs: about tasks-per-sm tasks per
  /// SM, each a multiple of `granule` rows.
  int64_t rowsPerTask(int64_t rows, int64_t granule, int64_t groups = 1);

  LogicalResult partitionEmbed(EmbedOp op);
  LogicalResult partitionLinear(Operation *op);
  LogicalResult partitionAttention(AttentionOp op);
  LogicalResult partitionMoe(FusedMoeOp op);
  LogicalResult partitionConcat(ConcatOp op);
  LogicalResult partitionSiluMul(SiluMulOp op);
  LogicalResult partitionAccept(AcceptOp op);
  LogicalResult partitionSpecUpdate(SpecUpdateOp op);
  LogicalResult partitionDraftFill(DraftFillOp op);
  StringRef stateBuffer(StringRef state);

  ModuleOp module;
  func::FuncOp fn;
  Machine machine;
  MLIRContext *ctx;
  OpBuilder b;
  int64_t tasksPerSm, minRows, attentionSplits;
  int64_t tokens = 0;
  ProgramOp program;

  DenseMap<Value, std::string> buffers;
  llvm::StringSet<> symbols;
  llvm::StringMap<std::string> writerGroup; // buffer -> group that writes it
  /// buffer -> groups that read it since its last write (a later writer
  /// waits for them: state and caches are updated in place).
  llvm::StringMap<SmallVector<std::string>> readerGroups;
  llvm::StringMap<std::string> viewOf; // view buffer -> the buffer it views
  llvm::StringMap<llvm::DenseSet<StringRef>>
      covers; // event -> events it implies
  DenseMap<Operation *, std::string> groupOverride; // q/k/v share attention's
  DenseMap<Operation *, std::string> opNames;
  llvm::StringSet<> usedNames;
  int64_t opCounter = 0;

  // The group being built: its tasks' op name, and the event they signal.
  std::string opLabel, group;
  SmallVector<TaskOp> groupTasks;
  llvm::SetVector<StringRef> groupReads, groupWrites;
  std::string positionsBuffer, tokensBuffer;
};

/// A weight's name without the model prefix and the module names
/// ("model.layers.3.self_attn.q_proj" -> "layers.3.q_proj").
static std::string shortWeightName(StringRef weight) {
  std::string name = weight.str();
  for (StringRef prefix : {"model.", "drafter."})
    if (StringRef(name).starts_with(prefix))
      name = name.substr(prefix.size());
  for (StringRef part : {"self_attn.", "mlp."}) {
    size_t at = name.find(part.str());
    if (at != std::string::npos)
      name.erase(at, part.size());
  }
  return name;
}

std::string Partitioner::opName(Operation *op) {
  // Named after the weight it reads, which names the layer ("layers.3.q_proj").
  StringRef weight;
  std::string name;
  if (auto silu = dyn_cast<SiluMulOp>(op)) {
    // After its gate projection's layer: "layers.3.gate_proj" ->
    // "layers.3.silu_mul".
    Operation *gate = silu.getGate().getDefiningOp();
    if (auto w = gate ? gate->getAttrOfType<FlatSymbolRefAttr>("weight")
                      : FlatSymbolRefAttr())
      name = StringRef(shortWeightName(w.getValue())).rsplit('.').first.str() +
             ".silu_mul";
  } else if (auto w = op->getAttrOfType<FlatSymbolRefAttr>("weight"))
    weight = w.getValue();
  else if (auto w = op->getAttrOfType<FlatSymbolRefAttr>("gate_up"))
    weight = w.getValue();
  else if (auto w = op->getAttrOfType<FlatSymbolRefAttr>("table"))
    weight = w.getValue();
  else if (auto c = op->getAttrOfType<FlatSymbolRefAttr>("cache"))
    weight = c.getValue();
  if (!weight.empty()) {
    name = shortWeightName(weight);
    if (isa<AttentionOp>(op))
      name += ".attention";
    if (isa<FusedMoeOp>(op))
      name = name.substr(0, name.find(".experts")) + ".moe";
  } else if (name.empty()) {
    name = op->getName().stripDialect().str() + std::to_string(opCounter);
  }
  ++opCounter;
  std::string unique = name;
  for (int i = 1; usedNames.contains(unique); ++i)
    unique = name + "." + std::to_string(i);
  usedNames.insert(unique);
  return unique;
}

StringRef Partitioner::buffer(const std::string &name, Type type,
                              StringRef kind, StringRef alias) {
  std::string unique = name;
  for (int i = 1; symbols.contains(unique); ++i)
    unique = name + "." + std::to_string(i);
  symbols.insert(unique);
  if (!alias.empty())
    viewOf[unique] = alias.str();
  BufferOp::create(b, fn.getLoc(), b.getStringAttr(unique), TypeAttr::get(type),
                   b.getStringAttr(kind),
                   alias.empty() ? FlatSymbolRefAttr() : sym(alias),
                   IntegerAttr());
  return symbols.find(unique)->getKey();
}

StringRef Partitioner::bufferOf(Value value) {
  auto it = buffers.find(value);
  assert(it != buffers.end() && "value without a buffer");
  return symbols.find(it->second)->getKey();
}

StringRef Partitioner::cacheBuffer(StringRef cache, bool values) {
  std::string name = (cache + (values ? ".values" : ".keys")).str();
  if (symbols.contains(name))
    return symbols.find(name)->getKey();
  auto decl = module.lookupSymbol<KVCacheOp>(cache);
  int64_t dim = values ? decl.getVDim() : decl.getQkDim();
  auto type = RankedTensorType::get(
      {decl.getCapacity(), decl.getKvHeads(), dim}, b.getBF16Type());
  return buffer(name, type, "kv");
}

void Partitioner::beginGroup(const std::string &name,
                             const std::string &event) {
  opLabel = name;
  group = !event.empty() ? event : name;
  groupTasks.clear();
  groupReads.clear();
  groupWrites.clear();
  std::string symbol = "ev." + group;
  if (!symbols.contains(symbol)) {
    symbols.insert(symbol);
    EventOp::create(b, fn.getLoc(), b.getStringAttr(symbol),
                    b.getI64IntegerAttr(0));
  }
}

LogicalResult Partitioner::endGroup(Operation *op) {
  std::string event = "ev." + group;
  auto eventOp = cast<EventOp>(
      mlir::SymbolTable::lookupSymbolIn(program, StringAttr::get(ctx, event)));
  eventOp.setSignals(eventOp.getSignals() + int64_t(groupTasks.size()));
  for (StringRef r : groupReads) {
    SmallVector<std::string> &list = readerGroups[r];
    if (!llvm::is_contained(list, group))
      list.push_back(group);
  }
  for (StringRef w : groupWrites) {
    writerGroup[w] = group;
    readerGroups[w].clear();
  }
  llvm::DenseSet<StringRef> &mine = covers[eventOp.getSymName()];
  for (TaskOp t : groupTasks) {
    t.setSignalAttr(sym(eventOp.getSymName()));
    for (Attribute w : t.getWaits()) {
      StringRef e = cast<FlatSymbolRefAttr>(w).getValue();
      mine.insert(e);
      for (StringRef c : covers[e])
        mine.insert(c);
    }
  }
  return success();
}

void Partitioner::task(StringRef family, Operation *op,
                       ArrayRef<NamedAttribute> params,
                       ArrayRef<NamedAttribute> args, ArrayRef<StringRef> reads,
                       ArrayRef<StringRef> writes, int64_t bytes, int64_t flops,
                       bool prefetch) {
  // Waits: the groups that wrote what this task reads, minus those implied by
  // another wait.
  SmallVector<StringRef> waits;
  auto root = [&](StringRef r) {
    while (viewOf.count(r)) // a view's bytes are its root's
      r = viewOf[r];
    return r;
  };
  auto waitFor = [&](const std::string &other) {
    if (other == group)
      return;
    StringRef e = symbols.find("ev." + other)->getKey();
    if (!llvm::is_contained(waits, e))
      waits.push_back(e);
  };
  for (StringRef r : reads) {
    auto it = writerGroup.find(root(r));
    if (it != writerGroup.end())
      waitFor(it->second);
  }
  // Writes after earlier writes (caches: the drafter's block overwrites
  // context slots) and after earlier reads (state updated in place).
  for (StringRef w : writes) {
    StringRef r = root(w);
    if (auto it = writerGroup.find(r); it != writerGroup.end())
      waitFor(it->second);
    for (const std::string &reader : readerGroups.lookup(r))
      waitFor(reader);
  }
  SmallVector<Attribute> kept;
  for (StringRef e : waits) {
    bool implied = llvm::any_of(waits, [&](StringRef other) {
      return other != e && covers[other].contains(e);
    });
    if (!implied)
      kept.push_back(sym(e));
  }
  auto refs = [&](ArrayRef<StringRef> names) {
    SmallVector<Attribute> out;
    for (StringRef n : names)
      out.push_back(sym(n));
    return b.getArrayAttr(out);
  };
  std::string name = opLabel + ".t" + std::to_string(groupTasks.size());
  symbols.insert(name);
  auto t = TaskOp::create(
      b, op->getLoc(), b.getStringAttr(name), b.getStringAttr(family),
      b.getStringAttr(opLabel), b.getDictionaryAttr(params),
      b.getDictionaryAttr(args), refs(reads), refs(writes),
      b.getArrayAttr(kept), FlatSymbolRefAttr(),
      b.getDictionaryAttr(
          {b.getNamedAttr("bytes", b.getI64IntegerAttr(bytes)),
           b.getNamedAttr("flops", b.getI64IntegerAttr(flops))}),
      RoleAttr(), prefetch ? b.getUnitAttr() : UnitAttr());
  groupTasks.push_back(t);
  // What the group read and wrote takes effect when it ends, so that all its
  // tasks wait for the same earlier groups.
  for (StringRef r : reads)
    groupReads.insert(root(r));
  for (StringRef w : writes)
    groupWrites.insert(root(w));
}

/// Whether tiles of `tile` rows (boundaries at its multiples below n) keep
/// every head's rotary rows [h * headDim, h * headDim + rotary) in one tile:
/// the condition of the device's and host executor's RoPE epilogues.
static bool rotaryWhole(int64_t n, int64_t tile, int64_t headDim,
                        int64_t rotary) {
  for (int64_t b = tile; b < n; b += tile)
    if (b % headDim > 0 && b % headDim < rotary)
      return false;
  return true;
}

int64_t Partitioner::rowsPerTask(int64_t rows, int64_t granule,
                                 int64_t groups) {
  int64_t want = std::max<int64_t>(1, machine.sms * tasksPerSm / groups);
  int64_t perTask = roundUp(ceilDiv(rows, want), granule);
  return std::min(perTask, rows); // an op smaller than a granule is one task
}

LogicalResult Partitioner::partitionEmbed(EmbedOp op) {
  auto out = cast<RankedTensorType>(op.getType());
  auto table = module.lookupSymbol<WeightOp>(op.getTable());
  int64_t h = out.getDimSize(1), v = table.getTensorType().getDimSize(0);
  int64_t cols = rowsPerTask(h, 64);
  StringRef ids = bufferOf(op.getIds()), result = bufferOf(op.getResult());
  beginGroup(nameOf(op));
  for (int64_t c0 = 0; c0 < h; c0 += cols) {
    int64_t c1 = std::min(h, c0 + cols);
    task("embed", op, {argInt("T", tokens), argInt("H", h), argInt("V", v)},
         {argSym("ids", ids), argSym("table", op.getTable()),
          argSym("out", result), argInt("col0", c0), argInt("col1", c1),
          argF32("scale", op.getScale().convertToDouble())},
         {ids}, {result}, tokens * (c1 - c0) * 4, 0, /*prefetch=*/false);
  }
  return endGroup(op);
}

LogicalResult Partitioner::partitionLinear(Operation *op) {
  auto fused = dyn_cast<FusedLinearOp>(op);
  auto linear = dyn_cast<LinearOp>(op);
  Value input = fused ? fused.getInput() : linear.getInput();
  StringRef weightName = fused ? fused.getWeight() : linear.getWeight();
  auto weight = module.lookupSymbol<WeightOp>(weightName);
  std::optional<QuantAttr> quant = fused ? fused.getQuant() : linear.getQuant();
  int64_t format = formatOf(quant);
  int64_t n = weight.getTensorType().getDimSize(0);
  int64_t k = weight.getTensorType().getDimSize(1);
  Epilogue epi = fused ? fused.getEpilogue() : Epilogue::store;

  int64_t epilogue = 0, granule = minRows, heads = 0, headDim = 0, rotary = 0,
          capacity = 0;
  Args args{argSym("x", bufferOf(input)), argSym("w", weightName)};
  SmallVector<StringRef> reads{bufferOf(input)}, writes;
  std::string out;
  if (fused && fused.getNorm()) {
    args.push_back(argSym("norm_w", *fused.getNorm()));
    args.push_back(argF32("eps", fused.getEps()->convertToDouble()));
  }
  if (fused && fused.getPositions()) {
    args.push_back(argSym("pos", bufferOf(fused.getPositions())));
    reads.push_back(bufferOf(fused.getPositions()));
  }
  if (fused && fused.getTheta())
    args.push_back(argF32("theta", fused.getTheta()->convertToDouble()));
  bool headNorm = fused && fused.getHeadNorm();
  if (headNorm) {
    args.push_back(argSym("hnorm_w", *fused.getHeadNorm()));
    args.push_back(argF32("heps", fused.getHeadEps()->convertToDouble()));
  }
  bool logitCap = fused && fused.getLogitMultiplier();
  if (logitCap) {
    args.push_back(
        argF32("multiplier", fused.getLogitMultiplier()->convertToDouble()));
    args.push_back(
        argF32("softcap", fused.getLogitSoftcap()->convertToDouble()));
  }
  switch (epi) {
  case Epilogue::store: {
    bool f32 = cast<RankedTensorType>(op->getResult(0).getType())
                   .getElementType()
                   .isF32();
    epilogue = f32 ? TILEC_EPI_STORE_F32 : TILEC_EPI_STORE_BF16;
    out = bufferOf(op->getResult(0)).str();
    break;
  }
  case Epilogue::residual:
    epilogue = TILEC_EPI_RESIDUAL;
    out = bufferOf(op->getResult(0)).str();
    args.push_back(argSym("residual", bufferOf(fused.getResidual())));
    reads.push_back(bufferOf(fused.getResidual()));
    break;
  case Epilogue::silu_pair:
    epilogue = TILEC_EPI_SILU_PAIR;
    out = bufferOf(op->getResult(0)).str();
    args.push_back(argSym("w2", *fused.getWeight2()));
    break;
  case Epilogue::rope: {
    epilogue = TILEC_EPI_ROPE_STORE;
    auto type = cast<RankedTensorType>(op->getResult(0).getType());
    heads = type.getDimSize(1);
    headDim = type.getDimSize(2);
    rotary = *fused.getRotaryDim();
    granule = headNorm ? headDim : minRows; // see rotaryWhole
    out = bufferOf(op->getResult(0)).str();
    break;
  }
  case Epilogue::rope_kcache:
  case Epilogue::vcache: {
    bool values = epi == Epilogue::vcache;
    epilogue = values ? TILEC_EPI_VCACHE : TILEC_EPI_ROPE_KCACHE;
    auto cache = module.lookupSymbol<KVCacheOp>(*fused.getCache());
    heads = cache.getKvHeads();
    headDim = values ? cache.getVDim() : cache.getQkDim();
    rotary = values ? 0 : *fused.getRotaryDim();
    capacity = cache.getCapacity();
    granule = headNorm ? headDim : minRows; // see rotaryWhole
    out = cacheBuffer(*fused.getCache(), values).str();
    break;
  }
  case Epilogue::argmax:
    epilogue = TILEC_EPI_ARGMAX;
    break;
  }

  int64_t rows = rowsPerTask(n, granule);
  // RoPE rotates pairs inside a head's first rotary_dim rows: no tile boundary
  // may fall among them (a head's other rows, and the values, split anywhere).
  while (rotary > 0 && !headNorm && rows < n &&
         !rotaryWhole(n, rows, headDim, rotary))
    rows = std::min(n, rows + minRows);
  // A head norm keeps a table of T x heads inverse norms (at most 128).
  if (headNorm)
    rows = std::min(rows, std::max<int64_t>(1, 128 / tokens) * headDim);
  int64_t tiles = ceilDiv(n, rows);
  std::string name = nameOf(op);
  StringRef partial;
  if (epi == Epilogue::argmax) {
    // (f32 max, i32 index) per token and tile, then one reduction task.
    partial = buffer(name + ".partial",
                     RankedTensorType::get({tokens, tiles, 2}, b.getI32Type()),
                     "activation");
    if (op->getNumResults() == 2)
      out = bufferOf(op->getResult(1)).str();
  }
  Args params{argInt("T", tokens),
              argInt("K", k),
              argInt("N", n),
              argInt("tile", rows),
              argInt("format", format),
              argInt("prologue", fused && fused.getNorm() ? 1 : 0),
              argInt("epilogue", epilogue),
              argInt("heads", heads),
              argInt("head_dim", headDim),
              argInt("rotary_dim", rotary),
              argInt("capacity", capacity),
              argInt("head_norm", headNorm ? 1 : 0),
              argInt("logit_cap", logitCap ? 1 : 0)};
  if (!out.empty())
    writes.push_back(symbols.find(out)->getKey());
  if (!partial.empty())
    writes.push_back(partial);
  int64_t outBytes =
      epilogue == TILEC_EPI_STORE_F32 || epilogue == TILEC_EPI_ARGMAX ? 4 : 2;

  beginGroup(name, groupOverride.lookup(op));
  for (int64_t t = 0; t < tiles; ++t) {
    int64_t n0 = t * rows, n1 = std::min(n, n0 + rows);
    Args taskArgs = args;
    taskArgs.push_back(argInt("n0", n0));
    taskArgs.push_back(argInt("n1", n1));
    if (!out.empty())
      taskArgs.push_back(argSym("out", symbols.find(out)->getKey()));
    if (!partial.empty()) {
      taskArgs.push_back(argSym("partial", partial));
      taskArgs.push_back(argInt("tile", t));
    }
    int64_t r = n1 - n0;
    int64_t bytes =
        weightBytes(format, r, k) * (epi == Epilogue::silu_pair ? 2 : 1) +
        tokens * k * 2 + tokens * r * outBytes;
    task("linear", op, params, taskArgs, reads, writes, bytes,
         2 * tokens * k * r * (epi == Epilogue::silu_pair ? 2 : 1),
         /*prefetch=*/true);
  }
  if (failed(endGroup(op)))
    return failure();
  if (epi != Epilogue::argmax)
    return success();
  StringRef result = bufferOf(op->getResult(0));
  beginGroup(name + ".reduce");
  task("argmax_reduce", op, {argInt("T", tokens), argInt("tiles", tiles)},
       {argSym("partial", partial), argInt("tiles", tiles),
        argSym("out", result)},
       {partial}, {result}, tokens * tiles * 8, 0, /*prefetch=*/false);
  return endGroup(op);
}

LogicalResult Partitioner::partitionAttention(AttentionOp op) {
  if (op.getBlockKeys())
    return op.emitOpError()
           << "tile-partition: attention over the block's own keys: run "
              "tile-fuse first (it appends them to the cache)";
  auto cache = module.lookupSymbol<KVCacheOp>(op.getCache());
  auto q = cast<RankedTensorType>(op.getQuery().getType());
  int64_t qHeads = q.getDimSize(1), d = q.getDimSize(2),
          kvHeads = cache.getKvHeads();
  StringRef keys = cacheBuffer(op.getCache(), false);
  StringRef values = cacheBuffer(op.getCache(), true);
  StringRef query = bufferOf(op.getQuery()), pos = bufferOf(op.getPositions());
  StringRef out = bufferOf(op.getResult());
  Args params{argInt("T", tokens),
              argInt("q_heads", qHeads),
              argInt("kv_heads", kvHeads),
              argInt("head_dim", d),
              argInt("v_dim", cache.getVDim()),
              argInt("window", op.getWindow()),
              argInt("capacity", cache.getCapacity()),
              argInt("sinks", op.getSinks() ? 1 : 0),
              argInt("mask", op.getMask() == MaskKind::bidirectional ? 1 : 0)};
  // Each kv head's G x T query rows in up to attention-splits tasks, about
  // tasks-per-sm tasks per SM over the op; every task reads the head's keys
  // and values.
  int64_t group = qHeads / kvHeads, qRows = tokens * group;
  int64_t splits =
      std::min({attentionSplits, qRows,
                std::max<int64_t>(1, machine.sms * tasksPerSm / kvHeads)});
  int64_t rows = ceilDiv(qRows, splits);
  params.push_back(argInt("rows", rows));
  // Keys a step reads: the window, or for full layers a nominal 4096 positions.
  int64_t span = op.getWindow() > 0
                     ? op.getWindow()
                     : std::min<int64_t>(4096, cache.getCapacity());
  beginGroup(nameOf(op));
  for (int64_t g = 0; g < kvHeads; ++g)
    for (int64_t r0 = 0; r0 < qRows; r0 += rows) {
      int64_t r1 = std::min(qRows, r0 + rows);
      Args args{argSym("q", query),
                argSym("kcache", keys),
                argSym("vcache", values),
                argSym("pos", pos),
                argSym("out", out),
                argInt("kv_head", g),
                argF32("scale", op.getScale().convertToDouble()),
                argF32("vscale", op.getValueScale().convertToDouble()),
                argInt("row0", r0),
                argInt("row1", r1)};
      if (op.getSinks())
        args.push_back(argSym("sinks", *op.getSinks()));
      task("attention", op, params, args, {query, keys, values, pos}, {out},
           span * (d + cache.getVDim()) * 2 +
               (r1 - r0) * (d + cache.getVDim()) * 2,
           2 * (r1 - r0) * span * (d + cache.getVDim()), /*prefetch=*/false);
    }
  return endGroup(op);
}

LogicalResult Partitioner::partitionMoe(FusedMoeOp op) {
  auto x = cast<RankedTensorType>(op.getInput().getType());
  auto gateUp = module.lookupSymbol<WeightOp>(op.getGateUp());
  int64_t e = op.getExperts(), topK = op.getTopK(), h = x.getDimSize(1);
  int64_t inter = gateUp.getTensorType().getDimSize(1) / 2;
  int64_t format = formatOf(op.getQuant());
  int64_t slots = std::min(e, tokens * topK);
  std::string name = nameOf(op);
  StringRef input = bufferOf(op.getInput()), result = bufferOf(op.getResult());
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  StringRef logits =
      buffer(name + ".router_logits", RankedTensorType::get({tokens, e}, f32),
             "activation");
  StringRef ids = buffer(
      name + ".ids", RankedTensorType::get({tokens, topK}, i32), "activation");
  StringRef rweights =
      buffer(name + ".weights", RankedTensorType::get({tokens, topK}, f32),
             "activation");
  StringRef plan = buffer(
      name + ".plan", RankedTensorType::get({1 + slots + slots * tokens}, i32),
      "activation");
  StringRef act =
      buffer(name + ".act",
             RankedTensorType::get({slots, tokens, inter}, b.getBF16Type()),
             "activation");
  StringRef partial =
      buffer(name + ".partial", RankedTensorType::get({tokens, topK, h}, f32),
             "activation");
  double eps = op.getEps().convertToDouble();

  // 1. Router logits: a linear over the E experts with the norm prologue.
  int64_t rows = rowsPerTask(e, minRows);
  beginGroup(name + ".router");
  for (int64_t n0 = 0; n0 < e; n0 += rows) {
    int64_t n1 = std::min(e, n0 + rows);
    task("linear", op,
         {argInt("T", tokens), argInt("K", h), argInt("N", e),
          argInt("tile", rows), argInt("format", TILEC_FMT_BF16),
          argInt("prologue", TILEC_PRO_RMSNORM),
          argInt("epilogue", TILEC_EPI_STORE_F32), argInt("heads", 0),
          argInt("head_dim", 0), argInt("rotary_dim", 0), argInt("capacity", 0),
          argInt("head_norm", 0), argInt("logit_cap", 0)},
         {argSym("x", input), argSym("w", op.getGate()),
          argSym("norm_w", op.getNorm()), argF32("eps", eps), argInt("n0", n0),
          argInt("n1", n1), argSym("out", logits)},
         {input}, {logits}, (n1 - n0) * h * 2 + tokens * h * 2,
         2 * tokens * h * (n1 - n0),
         /*prefetch=*/true);
  }
  if (failed(endGroup(op)))
    return failure();

  // 2. Top-k and the plan of distinct experts.
  beginGroup(name + ".topk");
  Args topkArgs{argSym("logits", logits), argSym("ids", ids),
                argSym("weights", rweights), argSym("plan", plan),
                argF32("scaling", op.getScaling().convertToDouble())};
  if (op.getBias())
    topkArgs.push_back(argSym("bias", *op.getBias()));
  task("router_topk", op,
       {argInt("T", tokens), argInt("E", e), argInt("K", topK),
        argInt("n_group", op.getNGroup()),
        argInt("topk_group", op.getTopkGroup()),
        argInt("renorm", op.getRenorm() ? 1 : 0)},
       topkArgs, {logits}, {ids, rweights, plan}, tokens * e * 4, 0,
       /*prefetch=*/false);
  if (failed(endGroup(op)))
    return failure();

  Args moeParams{argInt("T", tokens), argInt("H", h),
                 argInt("I", inter),  argInt("E", e),
                 argInt("K", topK),   argInt("slots", slots),
                 argInt("tile", 0),   argInt("format", format)};
  auto withTile = [&](int64_t tile) {
    Args p = moeParams;
    p[6] = argInt("tile", tile);
    return p;
  };
  // 3. gate/up per (slot, rows of I): silu(g) * u for the slot's tokens.
  int64_t upRows = rowsPerTask(inter, minRows, slots);
  beginGroup(name + ".gate_up");
  for (int64_t s = 0; s < slots; ++s)
    for (int64_t n0 = 0; n0 < inter; n0 += upRows) {
      int64_t n1 = std::min(inter, n0 + upRows);
      task("moe_gate_up", op, withTile(upRows),
           {argInt("slot", s), argInt("n0", n0), argInt("n1", n1),
            argSym("x", input), argSym("plan", plan),
            argSym("w", op.getGateUp()), argSym("out", act),
            argSym("norm_w", op.getNorm()), argF32("eps", eps)},
           {input, plan}, {act}, weightBytes(format, 2 * (n1 - n0), h),
           4 * tokens * h * (n1 - n0), /*prefetch=*/false);
    }
  if (failed(endGroup(op)))
    return failure();

  // 4. down per (slot, rows of H), weighted, into per (token, k) partials.
  int64_t downRows = rowsPerTask(h, minRows, slots);
  beginGroup(name + ".down");
  for (int64_t s = 0; s < slots; ++s)
    for (int64_t n0 = 0; n0 < h; n0 += downRows) {
      int64_t n1 = std::min(h, n0 + downRows);
      task("moe_down", op, withTile(downRows),
           {argInt("slot", s), argInt("n0", n0), argInt("n1", n1),
            argSym("x", act), argSym("plan", plan), argSym("w", op.getDown()),
            argSym("out", partial), argSym("rweights", rweights)},
           {act, plan, rweights}, {partial},
           weightBytes(format, n1 - n0, inter), 2 * tokens * inter * (n1 - n0),
           /*prefetch=*/false);
    }
  if (failed(endGroup(op)))
    return failure();

  // 5. combine: residual + the K partials, in k order.
  int64_t cols = rowsPerTask(h, 64);
  beginGroup(name + ".combine");
  for (int64_t n0 = 0; n0 < h; n0 += cols) {
    int64_t n1 = std::min(h, n0 + cols);
    task("moe_combine", op,
         {argInt("T", tokens), argInt("H", h), argInt("K", topK)},
         {argSym("partial", partial), argSym("residual", input),
          argSym("out", result), argInt("n0", n0), argInt("n1", n1)},
         {partial, input}, {result}, tokens * (n1 - n0) * (topK * 4 + 4), 0,
         /*prefetch=*/false);
  }
  return endGroup(op);
}

StringRef Partitioner::stateBuffer(StringRef state) {
  if (symbols.contains(state))
    return symbols.find(state)->getKey();
  auto decl = module.lookupSymbol<StateOp>(state);
  return buffer(state.str(), decl.getType(), "state");
}

LogicalResult Partitioner::partitionConcat(ConcatOp op) {
  auto out = cast<RankedTensorType>(op.getType());
  if (out.getRank() != 2 || op.getAxis() != 1)
    return op.emitOpError()
           << "tile-partition: only [T, N] concatenations along the last "
              "axis have a task family";
  int64_t width = out.getDimSize(1), offset = 0;
  StringRef result = bufferOf(op.getResult());
  std::optional<ArrayAttr> norms = op.getNorms();
  beginGroup(nameOf(op));
  for (auto [index, input] : llvm::enumerate(op.getInputs())) {
    int64_t w = cast<RankedTensorType>(input.getType()).getDimSize(1);
    StringRef in = bufferOf(input);
    auto norm = norms ? dyn_cast<FlatSymbolRefAttr>((*norms)[index])
                      : FlatSymbolRefAttr();
    int64_t cols = rowsPerTask(w, 64, int64_t(op.getInputs().size()));
    for (int64_t c0 = 0; c0 < w; c0 += cols) {
      int64_t c1 = std::min(w, c0 + cols);
      Args args{argSym("x", in), argSym("out", result),
                argInt("offset", offset), argInt("col0", c0),
                argInt("col1", c1)};
      if (norm) {
        args.push_back(argSym("norm_w", norm.getValue()));
        args.push_back(argF32("eps", op.getEps()->convertToDouble()));
      }
      task("concat", op,
           {argInt("T", tokens), argInt("W", w), argInt("OUT_W", width),
            argInt("norm", norm ? 1 : 0)},
           args, {in}, {result}, tokens * (norm ? w : c1 - c0) * 2 * 2, 0,
           /*prefetch=*/false);
    }
    offset += w;
  }
  return endGroup(op);
}

/// silu(gate) * up of a dense MLP whose pair tile-fuse left unfused
/// (tile-fuse{disable=silu-pair}): column ranges of [T, N], each task waiting
/// on both projections.
LogicalResult Partitioner::partitionSiluMul(SiluMulOp op) {
  auto type = cast<RankedTensorType>(op.getType());
  if (type.getRank() != 2)
    return op.emitOpError()
           << "tile-partition: only [T, N] silu_mul has a task family";
  int64_t n = type.getDimSize(1);
  StringRef gate = bufferOf(op.getGate()), up = bufferOf(op.getUp()),
            result = bufferOf(op.getResult());
  int64_t cols = rowsPerTask(n, 64);
  beginGroup(nameOf(op));
  for (int64_t c0 = 0; c0 < n; c0 += cols) {
    int64_t c1 = std::min(n, c0 + cols);
    task("silu_mul", op, {argInt("T", tokens), argInt("N", n)},
         {argSym("gate", gate), argSym("up", up), argSym("out", result),
          argInt("n0", c0), argInt("n1", c1)},
         {gate, up}, {result}, tokens * (c1 - c0) * 2 * 3, 0,
         /*prefetch=*/false);
  }
  return endGroup(op);
}

LogicalResult Partitioner::partitionAccept(AcceptOp op) {
  StringRef draft = bufferOf(op.getDraft()),
            predicted = bufferOf(op.getPredicted()),
            positions = bufferOf(op.getPositions()),
            forced = bufferOf(op.getForced()),
            logits = bufferOf(op.getLogits()),
            sampling = bufferOf(op.getSampling());
  StringRef committed = bufferOf(op.getCommitted()),
            next = bufferOf(op.getNextTokens()),
            nextPositions = bufferOf(op.getNextPositions());
  program->setAttr("spec_out_buffer", b.getStringAttr(committed));
  beginGroup(nameOf(op));
  task("spec_accept", op,
       {argInt("T", tokens), argInt("mask_token", op.getMaskToken()),
        argInt("V",
               cast<RankedTensorType>(op.getLogits().getType()).getDimSize(1))},
       {argSym("draft", draft), argSym("predicted", predicted),
        argSym("pos", positions), argSym("forced", forced),
        argSym("out", committed), argSym("next", next),
        argSym("next_pos", nextPositions), argSym("logits", logits),
        argSym("sampling", sampling)},
       {draft, predicted, positions, forced, logits, sampling},
       {committed, next, nextPositions}, tokens * 16, 0, /*prefetch=*/false);
  return endGroup(op);
}

LogicalResult Partitioner::partitionSpecUpdate(SpecUpdateOp op) {
  StringRef next = bufferOf(op.getNextTokens()),
            drafted = bufferOf(op.getDrafted()),
            nextPositions = bufferOf(op.getNextPositions());
  StringRef stateTokens = stateBuffer(op.getTokens()),
            statePositions = stateBuffer(op.getPositions());
  beginGroup(nameOf(op));
  task("spec_update", op, {argInt("T", tokens)},
       {argSym("next", next), argSym("drafted", drafted),
        argSym("next_pos", nextPositions), argSym("tokens", stateTokens),
        argSym("positions", statePositions)},
       {next, drafted, nextPositions}, {stateTokens, statePositions},
       tokens * 20, 0, /*prefetch=*/false);
  return endGroup(op);
}

LogicalResult Partitioner::partitionDraftFill(DraftFillOp op) {
  StringRef block = bufferOf(op.getBlock()),
            drafted = bufferOf(op.getDrafted()),
            result = bufferOf(op.getResult());
  // The autoregressive drafter mode: the manifest says so (tile-run checks
  // the drafts against the reference drafter in the same mode).
  program->setAttr("spec_autoregressive", b.getUnitAttr());
  beginGroup(nameOf(op));
  task("draft_fill", op, {argInt("T", tokens)},
       {argSym("block", block), argSym("drafted", drafted),
        argSym("out", result), argInt("index", op.getIndex())},
       {block, drafted}, {result}, tokens * 12, 0, /*prefetch=*/false);
  return endGroup(op);
}

LogicalResult Partitioner::run() {
  // A step takes (tokens, positions), or reads them from its state (DFlash);
  // T is the block its embedding looks up.
  auto args = fn.getArguments();
  if (args.size() != 0 && args.size() != 2)
    return fn.emitOpError() << "tile-partition: @" << fn.getSymName()
                            << " must take (tokens, positions) or nothing";
  auto embeds = fn.getOps<EmbedOp>();
  if (embeds.empty())
    return fn.emitOpError()
           << "tile-partition: @" << fn.getSymName() << " embeds no tokens";
  tokens = cast<RankedTensorType>((*embeds.begin()).getIds().getType())
               .getDimSize(0);

  b.setInsertionPoint(fn);
  program = ProgramOp::create(b, fn.getLoc(), fn.getSymNameAttr(),
                              b.getI64IntegerAttr(tokens), machine.toAttr(ctx));
  program.getBody().emplaceBlock();
  b.setInsertionPointToEnd(&program.getBodyBlock());

  if (!args.empty()) {
    buffers[args[0]] = buffer("tokens", args[0].getType(), "input").str();
    buffers[args[1]] = buffer("positions", args[1].getType(), "input").str();
    program->setAttr("tokens_buffer", b.getStringAttr(buffers[args[0]]));
    program->setAttr("positions_buffer", b.getStringAttr(buffers[args[1]]));
  }

  // q, k and v of one attention share its event: the attention waits on one.
  for (auto attention : fn.getOps<AttentionOp>()) {
    // Only the block's own q/k/v (written at the attention's positions): the
    // drafter's context appends (at the verified block's) are another group,
    // which the block's overwrite of their slots waits for.
    SmallVector<Operation *> producers;
    if (Operation *q = attention.getQuery().getDefiningOp())
      producers.push_back(q);
    for (Value t : attention.getAfter())
      if (auto p = t.getDefiningOp<FusedLinearOp>();
          p && p.getPositions() == attention.getPositions())
        producers.push_back(p);
    if (producers.empty())
      continue;
    std::string name = nameOf(attention.getOperation()) + ".qkv";
    for (Operation *p : producers)
      groupOverride[p] = name;
  }

  // Outputs: what the function returns (logits f32 [T, V], argmax i32 [T]).
  // The first f32 one is the logits the runtime reads; a second one (DFlash
  // with draft logits kept) the drafter's.
  DenseSet<Value> outputs;
  Value draftLogits;
  fn.walk([&](func::ReturnOp ret) {
    int f32s = 0;
    for (Value v : ret.getOperands()) {
      outputs.insert(v);
      auto type = dyn_cast<RankedTensorType>(v.getType());
      if (type && type.getElementType().isF32() && f32s++ == 1)
        draftLogits = v;
    }
  });

  for (Operation &op : fn.getBody().front()) {
    if (auto read = dyn_cast<StateReadOp>(op)) {
      StringRef buf = stateBuffer(read.getState());
      buffers[read.getResult()] = buf.str();
      if (read.getState() == "spec.tokens")
        program->setAttr("spec_tokens_buffer", b.getStringAttr(buf));
      else if (read.getState() == "spec.positions")
        program->setAttr("spec_positions_buffer", b.getStringAttr(buf));
      else if (read.getState() == "spec.forced")
        program->setAttr("spec_forced_buffer", b.getStringAttr(buf));
      else if (read.getState() == "spec.sampling")
        program->setAttr("spec_sampling_buffer", b.getStringAttr(buf));
      continue;
    }
    for (Value result : op.getResults()) {
      if (!isa<RankedTensorType>(result.getType()))
        continue;
      std::string name = nameOf(&op);
      if (auto reshape = dyn_cast<ReshapeOp>(op)) {
        buffers[result] = buffer(name + ".view", result.getType(), "view",
                                 bufferOf(reshape.getInput()))
                              .str();
        continue;
      }
      bool out = outputs.contains(result);
      std::string suffix = ".out";
      if (op.getNumResults() == 2) // fused lm_head: the argmax, then the logits
        suffix = cast<OpResult>(result).getResultNumber() == 0 ? ".argmax"
                                                               : ".logits";
      if (isa<AcceptOp>(op))
        suffix = std::array<const char *, 3>{
            ".committed", ".next_tokens",
            ".next_positions"}[cast<OpResult>(result).getResultNumber()];
      buffers[result] =
          buffer(name + suffix, result.getType(), out ? "output" : "activation")
              .str();
      auto type = cast<RankedTensorType>(result.getType());
      if (out && isa<AcceptOp>(op))
        continue; // the committed tokens: spec_out_buffer
      if (out && type.getRank() == 1 && type.getElementType().isInteger(32))
        program->setAttr("argmax_buffer", b.getStringAttr(buffers[result]));
      else if (out && result == draftLogits)
        program->setAttr("spec_draft_logits_buffer",
                         b.getStringAttr(buffers[result]));
      else if (out && type.getElementType().isF32())
        program->setAttr("logits_buffer", b.getStringAttr(buffers[result]));
    }
    LogicalResult ok = success();
    if (auto e = dyn_cast<EmbedOp>(op))
      ok = partitionEmbed(e);
    else if (isa<FusedLinearOp, LinearOp>(op))
      ok = partitionLinear(&op);
    else if (auto a = dyn_cast<AttentionOp>(op))
      ok = partitionAttention(a);
    else if (auto m = dyn_cast<FusedMoeOp>(op))
      ok = partitionMoe(m);
    else if (auto c = dyn_cast<ConcatOp>(op))
      ok = partitionConcat(c);
    else if (auto a = dyn_cast<AcceptOp>(op))
      ok = partitionAccept(a);
    else if (auto u = dyn_cast<SpecUpdateOp>(op))
      ok = partitionSpecUpdate(u);
    else if (auto f = dyn_cast<DraftFillOp>(op))
      ok = partitionDraftFill(f);
    else if (auto s = dyn_cast<SiluMulOp>(op))
      ok = partitionSiluMul(s);
    else if (isa<ReshapeOp, func::ReturnOp>(op))
      continue;
    else
      return op.emitOpError()
             << "tile-partition: no task family for '" << op.getName()
             << "' (tile-fuse folds norms, RoPE, KV appends, residual "
                "adds, the router and argmax into the ops that have one)";
    if (failed(ok))
      return failure();
  }
  bool speculative = program->hasAttr("spec_out_buffer");
  if (speculative) {
    // Each op's part of the DFlash step, for per-phase timings from traces:
    // "accept", "draft" (what depends on the accepted tokens, the state
    // update last), "context" (the taps and the drafter's context, from the
    // concat), "verify" (the target).
    DenseMap<Operation *, StringRef> phase;
    SmallVector<NamedAttribute> phases;
    for (Operation &op : fn.getBody().front()) {
      StringRef p = "verify";
      if (isa<AcceptOp>(op)) {
        p = "accept";
      } else if (isa<ConcatOp>(op)) {
        p = "context";
      } else {
        for (Value v : op.getOperands()) {
          Operation *def = v.getDefiningOp();
          StringRef q = def ? phase.lookup(def) : StringRef();
          if (isa_and_nonnull<AcceptOp>(def) || q == "draft") {
            p = "draft";
            break;
          }
          if (q == "context")
            p = "context";
        }
      }
      phase[&op] = p;
      if (!isa<ReshapeOp, func::ReturnOp, StateReadOp>(op))
        phases.push_back(b.getNamedAttr(nameOf(&op), b.getStringAttr(p)));
    }
    program->setAttr("op_phases", b.getDictionaryAttr(phases));
  }
  if (speculative && !(program->hasAttr("spec_tokens_buffer") &&
                       program->hasAttr("spec_positions_buffer") &&
                       program->hasAttr("spec_forced_buffer") &&
                       program->hasAttr("spec_sampling_buffer")))
    return fn.emitOpError()
           << "tile-partition: @" << fn.getSymName()
           << " accepts tokens but does not read all of @spec.tokens, "
              "@spec.positions, @spec.forced and @spec.sampling";
  if (!speculative && !program->hasAttr("argmax_buffer"))
    return fn.emitOpError()
           << "tile-partition: @" << fn.getSymName()
           << " returns no argmax (i32 [T]) for the runtime to read";
  fn.erase();
  return success();
}

struct PartitionPass : public impl::TilePartitionBase<PartitionPass> {
  using TilePartitionBase::TilePartitionBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<Machine> machine = namedMachine(target);
    if (!machine) {
      module.emitError() << "tile-partition: unknown target '" << target
                         << "' (expected h100, h200 or b200)";
      return signalPassFailure();
    }
    if (sms < 0 || smem < 0 || tasksPerSm < 1 || minRows < 1 ||
        attentionSplits < 1) {
      module.emitError()
          << "tile-partition: sms and smem must be >= 0, tasks-per-sm, "
             "min-rows and attention-splits >= 1";
      return signalPassFailure();
    }
    if (sms > 0)
      machine->sms = sms;
    if (smem > 0)
      machine->smemPerBlock = smem;
    auto fn = module.lookupSymbol<func::FuncOp>(function);
    if (!fn) {
      module.emitError() << "tile-partition: no function @" << function;
      return signalPassFailure();
    }
    Partitioner partitioner(module, fn, *machine, tasksPerSm, minRows,
                            attentionSplits);
    if (failed(partitioner.run()))
      return signalPassFailure();
  }
};

} // namespace
} // namespace mlir::tile
