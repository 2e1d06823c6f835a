//===- Codegen.cpp - A scheduled tile.program to an engine
//-----------------===//
#include "codegen/Codegen.h"

#include "dialects/tile/TileDialect.h"
#include "runtime/abi/TaskAbi.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>
#include <map>

using namespace mlir;
using namespace mlir::tile;

namespace {

/// Argument words of this many (kHigh + i) store their value in the high 32
/// bits of argument word i (two f32 in one word: TaskAbi.h).
constexpr int kHigh = 100;

struct FamilyInfo {
  const char *name, *function;
  TilecTaskFamily family;
  std::vector<const char *> params;               // template order
  std::vector<std::pair<const char *, int>> args; // arg name -> word index
};

const std::vector<FamilyInfo> &families() {
  static const std::vector<FamilyInfo> table = {
      {"embed",
       "embed_task",
       TILEC_TASK_EMBED,
       {"T", "H", "V"},
       {{"ids", TILEC_EMBED_IDS},
        {"table", TILEC_EMBED_TABLE},
        {"out", TILEC_EMBED_OUT},
        {"col0", TILEC_EMBED_COL0},
        {"col1", TILEC_EMBED_COL1},
        {"scale", TILEC_EMBED_SCALE}}},
      {"linear",
       "linear_task",
       TILEC_TASK_LINEAR,
       {"T", "K", "N", "tile", "format", "prologue", "epilogue", "heads",
        "head_dim", "rotary_dim", "capacity", "head_norm", "logit_cap"},
       {{"x", TILEC_LIN_X},
        {"w", TILEC_LIN_W},
        {"n0", TILEC_LIN_N0},
        {"n1", TILEC_LIN_N1},
        {"out", TILEC_LIN_OUT},
        {"norm_w", TILEC_LIN_NORM_W},
        {"eps", TILEC_LIN_EPS},
        {"residual", TILEC_LIN_RESIDUAL},
        {"w2", TILEC_LIN_W2},
        {"pos", TILEC_LIN_POS},
        {"theta", TILEC_LIN_THETA},
        {"partial", TILEC_LIN_PARTIAL},
        {"tile", TILEC_LIN_TILE},
        {"hnorm_w", TILEC_LIN_HNORM_W},
        {"heps", kHigh + TILEC_LIN_EPS},
        {"multiplier", TILEC_LIN_THETA},
        {"softcap", kHigh + TILEC_LIN_THETA}}},
      {"attention",
       "attention_task",
       TILEC_TASK_ATTENTION,
       {"T", "q_heads", "kv_heads", "head_dim", "v_dim", "window", "capacity",
        "sinks", "mask", "rows"},
       {{"q", TILEC_ATT_Q},
        {"kcache", TILEC_ATT_KCACHE},
        {"vcache", TILEC_ATT_VCACHE},
        {"pos", TILEC_ATT_POS},
        {"out", TILEC_ATT_OUT},
        {"kv_head", TILEC_ATT_KV_HEAD},
        {"sinks", TILEC_ATT_SINKS},
        {"scale", TILEC_ATT_SCALE},
        {"vscale", TILEC_ATT_VSCALE},
        {"row0", TILEC_ATT_ROW0},
        {"row1", TILEC_ATT_ROW1}}},
      {"router_topk",
       "router_topk_task",
       TILEC_TASK_ROUTER_TOPK,
       {"T", "E", "K", "n_group", "topk_group", "renorm"},
       {{"logits", TILEC_RT_LOGITS},
        {"bias", TILEC_RT_BIAS},
        {"ids", TILEC_RT_IDS},
        {"weights", TILEC_RT_WEIGHTS},
        {"plan", TILEC_RT_PLAN},
        {"scaling", TILEC_RT_SCALING}}},
      {"moe_gate_up",
       "moe_gate_up_task",
       TILEC_TASK_MOE_GATE_UP,
       {"T", "H", "I", "E", "K", "slots", "tile", "format"},
       {{"slot", TILEC_MOE_SLOT},
        {"n0", TILEC_MOE_N0},
        {"n1", TILEC_MOE_N1},
        {"x", TILEC_MOE_X},
        {"plan", TILEC_MOE_PLAN},
        {"w", TILEC_MOE_W},
        {"out", TILEC_MOE_OUT},
        {"norm_w", TILEC_MOE_NORM_W},
        {"eps", TILEC_MOE_EPS}}},
      {"moe_down",
       "moe_down_task",
       TILEC_TASK_MOE_DOWN,
       {"T", "H", "I", "E", "K", "slots", "tile", "format"},
       {{"slot", TILEC_MOE_SLOT},
        {"n0", TILEC_MOE_N0},
        {"n1", TILEC_MOE_N1},
        {"x", TILEC_MOE_X},
        {"plan", TILEC_MOE_PLAN},
        {"w", TILEC_MOE_W},
        {"out", TILEC_MOE_OUT},
        {"rweights", TILEC_MOE_RWEIGHTS}}},
      {"moe_combine",
       "moe_combine_task",
       TILEC_TASK_MOE_COMBINE,
       {"T", "H", "K"},
       {{"partial", TILEC_CMB_PARTIAL},
        {"residual", TILEC_CMB_RESIDUAL},
        {"out", TILEC_CMB_OUT},
        {"n0", TILEC_CMB_N0},
        {"n1", TILEC_CMB_N1}}},
      {"argmax_reduce",
       "argmax_reduce_task",
       TILEC_TASK_ARGMAX_REDUCE,
       {"T", "tiles"},
       {{"partial", TILEC_AMX_PARTIAL},
        {"tiles", TILEC_AMX_TILES},
        {"out", TILEC_AMX_OUT}}},
      {"concat",
       "concat_task",
       TILEC_TASK_CONCAT,
       {"T", "W", "OUT_W", "norm"},
       {{"x", TILEC_CAT_X},
        {"out", TILEC_CAT_OUT},
        {"offset", TILEC_CAT_OFFSET},
        {"col0", TILEC_CAT_COL0},
        {"col1", TILEC_CAT_COL1},
        {"norm_w", TILEC_CAT_NORM_W},
        {"eps", TILEC_CAT_EPS}}},
      {"spec_accept",
       "spec_accept_task",
       TILEC_TASK_SPEC_ACCEPT,
       {"T", "mask_token", "V"},
       {{"draft", TILEC_ACC_DRAFT},
        {"predicted", TILEC_ACC_PREDICTED},
        {"pos", TILEC_ACC_POS},
        {"forced", TILEC_ACC_FORCED},
        {"out", TILEC_ACC_OUT},
        {"next", TILEC_ACC_NEXT},
        {"next_pos", TILEC_ACC_NEXT_POS},
        {"logits", TILEC_ACC_LOGITS},
        {"sampling", TILEC_ACC_SAMPLING}}},
      {"spec_update",
       "spec_update_task",
       TILEC_TASK_SPEC_UPDATE,
       {"T"},
       {{"next", TILEC_UPD_NEXT},
        {"drafted", TILEC_UPD_DRAFTED},
        {"next_pos", TILEC_UPD_NEXT_POS},
        {"tokens", TILEC_UPD_TOKENS},
        {"positions", TILEC_UPD_POSITIONS}}},
      {"draft_fill",
       "draft_fill_task",
       TILEC_TASK_DRAFT_FILL,
       {"T"},
       {{"block", TILEC_FILL_BLOCK},
        {"drafted", TILEC_FILL_DRAFTED},
        {"out", TILEC_FILL_OUT},
        {"index", TILEC_FILL_INDEX}}},
      {"silu_mul",
       "silu_mul_task",
       TILEC_TASK_SILU_MUL,
       {"T", "N"},
       {{"gate", TILEC_SILU_GATE},
        {"up", TILEC_SILU_UP},
        {"out", TILEC_SILU_OUT},
        {"n0", TILEC_SILU_N0},
        {"n1", TILEC_SILU_N1}}},
  };
  return table;
}

const FamilyInfo *familyNamed(StringRef name) {
  for (const FamilyInfo &f : families())
    if (name == f.name)
      return &f;
  return nullptr;
}

/// Which scale slot each weight argument fills.
int scaleWordFor(TilecTaskFamily family, int word) {
  if (family == TILEC_TASK_LINEAR && word == TILEC_LIN_W)
    return TILEC_LIN_WSCALE;
  if (family == TILEC_TASK_LINEAR && word == TILEC_LIN_W2)
    return TILEC_LIN_W2SCALE;
  if ((family == TILEC_TASK_MOE_GATE_UP || family == TILEC_TASK_MOE_DOWN) &&
      word == TILEC_MOE_W)
    return TILEC_MOE_WSCALE;
  return -1;
}

std::string formatName(WeightOp weight) {
  switch (weight.getQuantKind()) {
  case QuantKind::mxfp4:
    return "mxfp4";
  case QuantKind::fp8_block:
    return "fp8_block";
  case QuantKind::none:
    return weight.getTensorType().getElementType().isF32() ? "f32" : "bf16";
  }
  return "bf16";
}

std::string dtypeName(Type type) {
  if (type.isBF16())
    return "bf16";
  if (type.isF32())
    return "f32";
  if (type.isInteger(32))
    return "i32";
  return "bytes";
}

long long floatBits(FloatAttr attr) {
  float f = float(attr.getValueAsDouble());
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return (long long)bits;
}

} // namespace

std::string mlir::tile::instanceSymbol(const tilec::InstanceInfo &instance) {
  const FamilyInfo *family = nullptr;
  for (const FamilyInfo &f : families())
    if (f.family == instance.family)
      family = &f;
  std::string text = std::string("tilec::") + family->function + "<";
  for (size_t i = 0; i < family->params.size(); ++i) {
    auto it = instance.params.find(family->params[i]);
    text += (i ? ", " : "") +
            std::to_string(it == instance.params.end() ? 0 : it->second);
  }
  return text + ">";
}

LogicalResult mlir::tile::generateEngine(ModuleOp module, StringRef name,
                                         const EngineInfo &info,
                                         tilec::EngineManifest &m,
                                         std::string &kernelSource) {
  auto program = module.lookupSymbol<ProgramOp>(name);
  if (!program)
    return module.emitError() << "codegen: no tile.program @" << name
                              << " (run tile-partition first)";
  for (StringRef attr : {"threads", "smem", "arena_bytes", "kv_bytes",
                         "weight_bytes", "predicted_ns"})
    if (!program->hasAttr(attr))
      return program.emitOpError()
             << "codegen: the program lacks '" << attr
             << "': run tile-assign-warp-roles, tile-schedule and "
                "tile-plan-memory first";

  auto intAttr = [&](StringRef key) {
    return cast<IntegerAttr>(program->getAttr(key)).getInt();
  };
  auto strAttr = [&](StringRef key) {
    auto s = dyn_cast_or_null<StringAttr>(program->getAttr(key));
    return s ? s.str() : std::string();
  };
  m.tilecVersion = info.tilecVersion;
  m.modelName = info.modelName;
  m.modelConfig = info.modelConfig;
  m.drafterConfig = info.drafterConfig;
  m.function = name.str();
  DictionaryAttr target = program.getTarget();
  m.targetName = cast<StringAttr>(target.get("name")).str();
  m.arch = cast<StringAttr>(target.get("arch")).str();
  m.sms = program.getTargetInt("sms", 0);
  m.smemPerBlock = program.getTargetInt("smem", 0);
  m.threadsPerBlock = intAttr("threads");
  m.dynamicSmem = intAttr("smem");
  m.tokens = program.getTokens();
  m.tokensBuffer = strAttr("tokens_buffer");
  m.positionsBuffer = strAttr("positions_buffer");
  m.logitsBuffer = strAttr("logits_buffer");
  m.argmaxBuffer = strAttr("argmax_buffer");
  m.spec.outBuffer = strAttr("spec_out_buffer");
  m.spec.draftLogitsBuffer = strAttr("spec_draft_logits_buffer");
  m.spec.tokensBuffer = strAttr("spec_tokens_buffer");
  m.spec.positionsBuffer = strAttr("spec_positions_buffer");
  m.spec.forcedBuffer = strAttr("spec_forced_buffer");
  m.spec.samplingBuffer = strAttr("spec_sampling_buffer");
  if (m.spec.enabled())
    m.spec.drafterMode =
        program->hasAttr("spec_autoregressive") ? "autoregressive" : "block";
  m.arenaBytes = intAttr("arena_bytes");
  m.kvBytes = intAttr("kv_bytes");
  m.weightBytes = intAttr("weight_bytes");

  // Buffers: arena ones by offset; kv ones become the caches' offsets.
  llvm::StringMap<int64_t> bufferOffset, kvOffset;
  for (BufferOp buf : program.getBodyBlock().getOps<BufferOp>()) {
    if (!buf.getOffset())
      return buf.emitOpError() << "codegen: @" << buf.getSymName()
                               << " has no offset (run tile-plan-memory)";
    if (buf.getKind() == "kv") {
      kvOffset[buf.getSymName()] = *buf.getOffset();
      continue;
    }
    bufferOffset[buf.getSymName()] = *buf.getOffset();
    auto type = cast<RankedTensorType>(buf.getType());
    m.buffers.push_back(
        {buf.getSymName().str(), dtypeName(type.getElementType()),
         std::vector<int64_t>(type.getShape().begin(), type.getShape().end()),
         *buf.getOffset(), buf.getBytes()});
  }
  for (KVCacheOp cache : module.getOps<KVCacheOp>()) {
    std::string keys = (cache.getSymName() + ".keys").str();
    std::string values = (cache.getSymName() + ".values").str();
    if (!kvOffset.count(keys))
      continue; // not used by this program
    m.caches.push_back({cache.getSymName().str(), cache.getKvHeads(),
                        cache.getQkDim(), cache.getVDim(), cache.getCapacity(),
                        cache.getWindow(), kvOffset[keys],
                        kvOffset.lookup(values)});
  }
  llvm::StringMap<WeightOp> weights;
  for (WeightOp w : module.getOps<WeightOp>()) {
    auto offset = w->getAttrOfType<IntegerAttr>("offset");
    if (!offset)
      continue; // not read by this program
    weights[w.getSymName()] = w;
    tilec::WeightInfo info;
    info.name = w.getSource().str();
    info.format = formatName(w);
    info.shape.assign(w.getTensorType().getShape().begin(),
                      w.getTensorType().getShape().end());
    info.offset = offset.getInt();
    info.bytes = w->getAttrOfType<IntegerAttr>("bytes").getInt();
    if (auto s = w->getAttrOfType<IntegerAttr>("scale_offset")) {
      info.scaleOffset = s.getInt();
      info.scaleBytes = w->getAttrOfType<IntegerAttr>("scale_bytes").getInt();
    }
    m.weights.push_back(info);
  }

  llvm::StringMap<int64_t> eventId;
  for (EventOp e : program.getBodyBlock().getOps<EventOp>()) {
    eventId[e.getSymName()] = int64_t(m.events.size());
    m.events.push_back({e.getSymName().str(), uint32_t(e.getSignals())});
  }

  // Tasks -> records, instances deduplicated by (family, parameters).
  std::map<std::pair<int, std::map<std::string, int64_t>>, int64_t> instanceIds;
  llvm::StringMap<int64_t> opId;
  llvm::StringMap<TilecTask> records;
  // tile-schedule's prediction per task (start_ns / end_ns) and
  // tile-partition's cost, for tile-run profile's predicted vs measured.
  llvm::StringMap<tilec::TaskEstimate> estimates;
  bool estimated = true;
  for (TaskOp task : program.getBodyBlock().getOps<TaskOp>()) {
    auto start = task->getAttrOfType<IntegerAttr>("start_ns");
    auto end = task->getAttrOfType<IntegerAttr>("end_ns");
    if (start && end)
      estimates[task.getSymName()] = {start.getInt(), end.getInt(),
                                      task.getCostInt("bytes"),
                                      task.getCostInt("flops")};
    else
      estimated = false;
  }
  for (TaskOp task : program.getBodyBlock().getOps<TaskOp>()) {
    const FamilyInfo *family = familyNamed(task.getFamily());
    if (!family)
      return task.emitOpError()
             << "codegen: unknown task family '" << task.getFamily() << "'";
    std::map<std::string, int64_t> params;
    for (NamedAttribute p : task.getParams())
      params[p.getName().str()] = cast<IntegerAttr>(p.getValue()).getInt();
    auto key = std::make_pair(int(family->family), params);
    auto [it, fresh] =
        instanceIds.try_emplace(key, int64_t(m.instances.size()));
    if (fresh) {
      tilec::InstanceInfo inst{it->second, family->family, params, ""};
      inst.symbol = instanceSymbol(inst);
      m.instances.push_back(inst);
    }
    auto [op, newOp] = opId.try_emplace(task.getOp(), int64_t(m.ops.size()));
    if (newOp)
      m.ops.push_back(task.getOp().str());

    TilecTask r;
    for (long long &w : r.w)
      w = -1;
    r.w[TILEC_W_INSTANCE] = it->second;
    r.w[TILEC_W_OP] = op->second;
    r.w[TILEC_W_FAMILY] = family->family;
    auto waits = task.getWaits();
    if (waits.size() > 2)
      return task.emitOpError()
             << "codegen: @" << task.getSymName() << " waits on "
             << waits.size() << " events; a task record holds 2";
    for (auto [i, w] : llvm::enumerate(waits)) {
      StringRef e = cast<FlatSymbolRefAttr>(w).getValue();
      r.w[i == 0 ? TILEC_W_WAIT0 : TILEC_W_WAIT1] = eventId[e];
      r.w[i == 0 ? TILEC_W_COUNT0 : TILEC_W_COUNT1] =
          m.events[size_t(eventId[e])].signalsPerStep;
    }
    if (auto signal = task.getSignalAttr())
      r.w[TILEC_W_SIGNAL] = eventId[signal.getValue()];
    for (NamedAttribute arg : task.getArgs()) {
      auto slot = llvm::find_if(family->args, [&](auto &a) {
        return arg.getName().strref() == a.first;
      });
      if (slot == family->args.end())
        return task.emitOpError()
               << "codegen: family " << family->name << " has no argument '"
               << arg.getName() << "'";
      bool high = slot->second >= kHigh;
      long long &word = r.w[TILEC_W_ARG0 + slot->second % kHigh];
      Attribute value = arg.getValue();
      if (high) {
        auto f = dyn_cast<FloatAttr>(value);
        if (!f)
          return task.emitOpError() << "codegen: argument '" << arg.getName()
                                    << "' must be an f32";
        // The low half (another argument) keeps its bits; -1 = unset.
        long long low = word == -1 ? 0 : (word & 0xffffffffLL);
        word = (floatBits(f) << 32) | low;
      } else if (auto i = dyn_cast<IntegerAttr>(value)) {
        word = i.getInt();
      } else if (auto f = dyn_cast<FloatAttr>(value)) {
        // Keep a high half already stored by another argument.
        long long high32 = word == -1 ? 0 : (word & ~0xffffffffLL);
        word = high32 | floatBits(f);
      } else if (auto ref = dyn_cast<FlatSymbolRefAttr>(value)) {
        StringRef sym = ref.getValue();
        if (bufferOffset.count(sym)) {
          word = bufferOffset[sym];
        } else if (kvOffset.count(sym)) {
          word = kvOffset[sym];
        } else if (weights.count(sym)) {
          WeightOp w = weights[sym];
          word = w->getAttrOfType<IntegerAttr>("offset").getInt();
          int scaleWord = scaleWordFor(family->family, slot->second);
          if (auto s = w->getAttrOfType<IntegerAttr>("scale_offset");
              s && scaleWord >= 0)
            r.w[TILEC_W_ARG0 + scaleWord] = s.getInt();
        } else {
          return task.emitOpError()
                 << "codegen: argument '" << arg.getName() << "' names @" << sym
                 << ", which has no offset in any region";
        }
      }
    }
    records[task.getSymName()] = r;
  }

  // Each op's phase (DFlash): its own name's, or its parent op's for the
  // tasks of a fused op's parts ("lm_head.reduce" is "lm_head"'s).
  if (auto phases = program->getAttrOfType<DictionaryAttr>("op_phases")) {
    for (const std::string &op : m.ops) {
      StringRef name = op, phase = "verify";
      while (!name.empty()) {
        if (auto p = phases.getAs<StringAttr>(name)) {
          phase = p.getValue();
          break;
        }
        size_t dot = name.rfind('.');
        name = dot == StringRef::npos ? StringRef() : name.take_front(dot);
      }
      m.opPhases.push_back(phase.str());
    }
  }

  m.smTasks.assign(size_t(m.sms), {});
  if (estimated) {
    m.smEstimates.assign(size_t(m.sms), {});
    m.predictedNs = intAttr("predicted_ns");
    m.costModel = strAttr("cost_model");
  }
  for (ScheduleOp schedule : program.getBodyBlock().getOps<ScheduleOp>()) {
    if (schedule.getSm() < 0 || schedule.getSm() >= m.sms)
      return schedule.emitOpError()
             << "codegen: sm(" << schedule.getSm()
             << ") is outside the target's " << m.sms << " SMs";
    for (Attribute ref : schedule.getTasks()) {
      StringRef task = cast<FlatSymbolRefAttr>(ref).getValue();
      m.smTasks[size_t(schedule.getSm())].push_back(records[task]);
      if (estimated)
        m.smEstimates[size_t(schedule.getSm())].push_back(
            estimates.lookup(task));
    }
  }
  if (m.taskCount() != int64_t(records.size()))
    return program.emitOpError()
           << "codegen: " << records.size() << " tasks but " << m.taskCount()
           << " scheduled (run tile-schedule)";

  // kernel.cu: every size a compile-time constant, one case per instance.
  std::string source;
  llvm::raw_string_ostream os(source);
  os << "// Generated by tilec " << info.tilecVersion << " for "
     << info.modelName << ": program @" << name << ", " << m.tokens
     << " tokens per step, target " << m.targetName << " (" << m.arch << ", "
     << m.sms << " SMs). Do not edit.\n";
  os << "// " << m.instances.size() << " task bodies, " << m.taskCount()
     << " tasks, " << m.events.size() << " events.\n";
  TaskOp first = *program.getBodyBlock().getOps<TaskOp>().begin();
  RoleAttr roles = first.getRolesAttr();
  os << "#define TILEC_THREADS " << m.threadsPerBlock << "\n";
  if (roles)
    os << "#define TILEC_LOAD_WARPS " << roles.getLoad()
       << "\n#define TILEC_COMPUTE_WARPS " << roles.getCompute() << "\n";
  os << "#define TILEC_DYNAMIC_SMEM " << m.dynamicSmem << "\n";
  os << "#include \"runtime/device/megakernel.cuh\"\n\n";
  os << "struct TilecDispatch {\n"
        "  __device__ static void run(long long instance, const TilecTask "
        "&task,\n"
        "                             const tilec::Ctx &ctx) {\n"
        "    switch (instance) {\n";
  for (const tilec::InstanceInfo &inst : m.instances)
    os << "    case " << inst.id << ":\n      " << inst.symbol
       << "(task, ctx);\n      break;\n";
  os << "    default:\n      break;\n    }\n  }\n};\n\n";
  os << "extern \"C\" __global__ void __launch_bounds__(TILEC_THREADS, 1)\n"
        "tilec_step(TilecStepParams params) {\n"
        "  tilec::run_megakernel<TilecDispatch>(params);\n}\n\n";
  // The one-kernel-per-op baseline (tile-run --launch per-op): same bodies.
  os << "extern \"C\" __global__ void __launch_bounds__(TILEC_THREADS, 1)\n"
        "tilec_task_group(TilecStepParams params, int first) {\n"
        "  tilec::run_one_task<TilecDispatch>(params, first);\n}\n";
  kernelSource = os.str();
  std::array<uint8_t, 32> hash = llvm::SHA256::hash(
      ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(kernelSource.data()),
                        kernelSource.size()));
  m.kernelSha256 = llvm::toHex(hash, /*LowerCase=*/true);
  return success();
}
