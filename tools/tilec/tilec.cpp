//===- tilec.cpp - The tilec compiler driver
//-------------------------------===//
//
//   tilec MODEL -o ENGINE_DIR [--target h100] [--dump-ir DIR] [--pipeline P]
//         [--disable-fusion silu-pair]
//   tilec MODEL --emit=graph|tasks [-o FILE]
//
// A model with a DFlash drafter compiles @dflash_step (verify, accept and
// draft in one launch; --no-drafter: plain greedy @target steps;
// --ar-drafter: the drafter drafts one token per pass, the baseline for the
// gain of block drafting).
//
// MODEL is a preset name or a model directory. The engine directory is what
// tile-run loads: manifest.json, tasks.bin, kernel.cu, and ir/ with the IR
// after every pass.
//
//===----------------------------------------------------------------------===//
#include "codegen/Codegen.h"
#include "dialects/tile/TileDialect.h"
#include "models/builder/GraphBuilder.h"
#include "models/core/Config.h"
#include "passes/Machine.h"
#include "passes/Passes.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

#include <map>
#include <set>

using namespace llvm;

namespace {
enum class Emit { Graph, Tasks, Engine };

cl::OptionCategory category("tilec options");
cl::opt<std::string> modelArg(cl::Positional,
                              cl::desc("<preset name or model dir>"),
                              cl::init(""), cl::cat(category));
cl::opt<Emit>
    emit("emit", cl::desc("What to produce"), cl::init(Emit::Engine),
         cl::values(
             clEnumValN(Emit::Graph, "graph", "the tile graph IR of the model"),
             clEnumValN(Emit::Tasks, "tasks", "the IR after the pass pipeline"),
             clEnumValN(Emit::Engine, "engine",
                        "an engine directory for tile-run (default)")),
         cl::cat(category));
cl::opt<std::string> output("o",
                            cl::desc("Output: the engine directory, or a file "
                                     "('-' for stdout) for --emit=graph/tasks"),
                            cl::value_desc("path"), cl::init(""),
                            cl::cat(category));
cl::opt<std::string> target("target", cl::desc("Machine: h100, h200 or b200"),
                            cl::init("h100"), cl::cat(category));
cl::opt<std::string>
    pipeline("pipeline",
             cl::desc("A textual pass pipeline replacing the default "
                      "(see --print-pipeline)"),
             cl::init(""), cl::cat(category));
cl::list<std::string> disableFusion(
    "disable-fusion",
    cl::desc("Leave these tile-fuse patterns out of the default pipeline "
             "(comma-separated; tile-fuse{disable=...}): silu-pair keeps a "
             "dense MLP's gate and up projections apart, with SILU_MUL tasks "
             "after them (docs/tutorial-fusion.md)"),
    cl::value_desc("pattern,..."), cl::CommaSeparated, cl::cat(category));
cl::opt<bool>
    printPipeline("print-pipeline",
                  cl::desc("Print the default pass pipeline and exit"),
                  cl::init(false), cl::cat(category));
cl::opt<std::string>
    dumpIr("dump-ir",
           cl::desc("Write the IR after every pass into this directory "
                    "(engines also keep it in ENGINE_DIR/ir)"),
           cl::value_desc("dir"), cl::init(""), cl::cat(category));
cl::opt<std::string>
    drafterDir("drafter",
               cl::desc("Directory of the DFlash drafter (default: the "
                        "model's drafter/ or dflash/ subfolder)"),
               cl::value_desc("dir"), cl::init(""), cl::cat(category));
cl::opt<bool> noDrafter("no-drafter", cl::desc("Ignore the model's drafter"),
                        cl::init(false), cl::cat(category));
cl::opt<bool> keepDraftLogits(
    "draft-logits",
    cl::desc("DFlash engines: keep the drafter's logits readable (tile-run "
             "--check compares them with the reference drafter's; one more "
             "[T, V] f32 store per step)"),
    cl::init(false), cl::cat(category));
cl::opt<bool> arDrafter(
    "ar-drafter",
    cl::desc("DFlash engines: draft autoregressively, one token per drafter "
             "pass (B-1 passes per step) instead of the whole block in one; "
             "the baseline that measures the gain of block drafting"),
    cl::init(false), cl::cat(category));
cl::opt<int64_t>
    tokensPerStep("tokens",
                  cl::desc("Tokens per target step (0: the drafter's "
                           "block size, or 1 without a drafter)"),
                  cl::init(0), cl::cat(category));
cl::opt<int64_t>
    maxContext("max-context",
               cl::desc("Positions a full-attention KV cache holds"),
               cl::init(4096), cl::cat(category));
cl::opt<int64_t>
    numLayers("num-layers",
              cl::desc("Keep only the first N decoder layers (0: all), "
                       "e.g. one full-size layer of a large model"),
              cl::init(0), cl::cat(category));
cl::opt<bool> explainSchedule(
    "explain-schedule",
    cl::desc("Print the schedule the cost model predicts: the critical path, "
             "per op and per SM the tasks with their estimated start and end, "
             "and the predicted step time"),
    cl::init(false), cl::cat(category));
cl::opt<bool> listPresets("list-presets",
                          cl::desc("List the built-in models and exit"),
                          cl::init(false), cl::cat(category));
cl::opt<bool>
    printDefault("print-default-model",
                 cl::desc("Print the model used when none is named and exit"),
                 cl::init(false), cl::cat(category));

int error(const Twine &message) {
  WithColor::error(errs(), "tilec") << message << "\n";
  return 1;
}

/// Writes the module after each pass into DIR/NN-<pass>.mlir.
class DumpAfterEachPass : public mlir::PassManager::IRPrinterConfig {
public:
  explicit DumpAfterEachPass(std::string dir)
      : IRPrinterConfig(/*printModuleScope=*/true), dir(std::move(dir)) {}
  void printAfterIfEnabled(mlir::Pass *pass, mlir::Operation *op,
                           PrintCallbackFn printCallback) override {
    ++index;
    std::string name = (Twine(index < 10 ? "0" : "") + Twine(index) + "-" +
                        pass->getArgument() + ".mlir")
                           .str();
    std::error_code ec;
    raw_fd_ostream os(dir + "/" + name, ec);
    if (!ec)
      printCallback(os);
  }

private:
  std::string dir;
  int index = 0;
};

/// tilec --explain-schedule: what tile-schedule's cost model predicts (the
/// tasks' sm, start_ns and end_ns attributes).
int explain(mlir::ModuleOp module, raw_ostream &os) {
  using namespace mlir::tile;
  int programs = 0;
  for (ProgramOp program : module.getOps<ProgramOp>()) {
    ++programs;
    struct Slot {
      TaskOp task;
      int64_t sm, start, end;
    };
    std::vector<Slot> tasks;
    StringMap<std::vector<size_t>> signalledBy;
    for (TaskOp t : program.getBodyBlock().getOps<TaskOp>()) {
      auto sm = t->getAttrOfType<mlir::IntegerAttr>("sm");
      auto start = t->getAttrOfType<mlir::IntegerAttr>("start_ns");
      auto end = t->getAttrOfType<mlir::IntegerAttr>("end_ns");
      if (!sm || !start || !end) {
        errs() << "tilec: --explain-schedule: task @" << t.getSymName()
               << " has no schedule (the pipeline must run tile-schedule)\n";
        return 1;
      }
      if (auto sig = t.getSignalAttr())
        signalledBy[sig.getValue()].push_back(tasks.size());
      tasks.push_back({t, sm.getInt(), start.getInt(), end.getInt()});
    }
    Machine m = Machine::fromProgram(program);
    auto predicted = program->getAttrOfType<mlir::IntegerAttr>("predicted_ns");
    auto model = program->getAttrOfType<mlir::StringAttr>("cost_model");
    auto us = [](int64_t ns) { return format("%.1f", double(ns) / 1e3); };
    os << "schedule of @" << program.getSymName() << " on " << m.name << " ("
       << m.sms << " SMs), cost model " << (model ? model.getValue() : "?")
       << ": " << tasks.size() << " tasks, predicted step "
       << us(predicted ? predicted.getInt() : 0) << " us\n";
    if (tasks.empty())
      continue;
    // Critical path: from the last task to end, back through whatever made
    // each task start when it did (its SM's previous task or the last
    // producer of an event it waits on).
    std::vector<int64_t> previousOnSm(tasks.size(), -1);
    std::map<int64_t, int64_t> lastOnSm;
    for (size_t i = 0; i < tasks.size(); ++i) {
      auto [it, fresh] = lastOnSm.try_emplace(tasks[i].sm, int64_t(i));
      if (!fresh) {
        previousOnSm[i] = it->second;
        it->second = int64_t(i);
      }
    }
    size_t last = 0;
    for (size_t i = 0; i < tasks.size(); ++i)
      if (tasks[i].end > tasks[last].end)
        last = i;
    std::vector<size_t> path{last};
    for (size_t i = last;;) {
      int64_t best = previousOnSm[i];
      int64_t bestEnd = best >= 0 ? tasks[size_t(best)].end : -1;
      for (mlir::Attribute w : tasks[i].task.getWaits())
        for (size_t p :
             signalledBy.lookup(cast<mlir::FlatSymbolRefAttr>(w).getValue()))
          if (tasks[p].end > bestEnd) {
            best = int64_t(p);
            bestEnd = tasks[p].end;
          }
      if (best < 0 || bestEnd <= 0)
        break;
      i = size_t(best);
      path.push_back(i);
    }
    os << "critical path (" << path.size() << " tasks):";
    StringRef lastOp;
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
      Slot &t = tasks[*it];
      if (t.task.getOp() == lastOp)
        continue; // consecutive tasks of one op: named once
      lastOp = t.task.getOp();
      os << (it == path.rbegin() ? " " : " -> ") << lastOp << " ["
         << us(t.start) << ", " << us(t.end) << "]";
    }
    os << "\n";
    // Per op, in program order.
    os << "per op: tasks, SMs, bytes, predicted [first start, last end] us\n";
    StringMap<size_t> opIndex;
    struct OpRow {
      std::string name;
      int64_t tasks = 0, bytes = 0, start = INT64_MAX, end = 0;
      std::set<int64_t> sms;
    };
    std::vector<OpRow> ops;
    for (Slot &t : tasks) {
      auto [it, fresh] = opIndex.try_emplace(t.task.getOp(), ops.size());
      if (fresh)
        ops.push_back({t.task.getOp().str(), 0, 0, INT64_MAX, 0, {}});
      OpRow &r = ops[it->second];
      ++r.tasks;
      r.bytes += t.task.getCostInt("bytes");
      r.start = std::min(r.start, t.start);
      r.end = std::max(r.end, t.end);
      r.sms.insert(t.sm);
    }
    for (const OpRow &r : ops)
      os << "  " << left_justify(r.name, 34)
         << format("%6lld %4zu %12lld", (long long)r.tasks, r.sms.size(),
                   (long long)r.bytes)
         << "  [" << us(r.start) << ", " << us(r.end) << "]\n";
    // Per SM: its list in order.
    std::map<int64_t, std::vector<size_t>> perSm;
    for (size_t i = 0; i < tasks.size(); ++i)
      perSm[tasks[i].sm].push_back(i);
    int64_t span = tasks[last].end;
    for (const auto &[sm, list] : perSm) {
      int64_t busy = 0;
      for (size_t i : list)
        busy += tasks[i].end - tasks[i].start;
      os << "SM " << sm << ": " << list.size() << " tasks, busy " << us(busy)
         << " us ("
         << format("%.0f", span ? 100.0 * double(busy) / double(span) : 0.0)
         << "%):";
      for (size_t i : list)
        os << " " << tasks[i].task.getSymName() << " [" << us(tasks[i].start)
           << ", " << us(tasks[i].end) << "]";
      os << "\n";
    }
  }
  if (!programs) {
    errs() << "tilec: --explain-schedule: no tile.program (the pipeline must "
              "run tile-partition and tile-schedule)\n";
    return 1;
  }
  return 0;
}

bool writeFile(const std::string &path,
               function_ref<void(raw_ostream &)> write) {
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  if (ec)
    return false;
  write(os);
  return !os.has_error();
}
} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  mlir::tile::registerTilePipelines();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "tilec: compile a MoE model to a megakernel\n");

  if (listPresets) {
    for (const std::string &name : tilec::presetNames())
      outs() << name << "\n";
    return 0;
  }
  if (printDefault) {
    outs() << tilec::defaultPresetName() << "\n";
    return 0;
  }
  if (!mlir::tile::namedMachine(target))
    return error("--target: unknown machine '" + target +
                 "' (expected h100, h200 or b200)");

  std::string name = modelArg.empty() ? tilec::defaultPresetName() : modelArg;
  tilec::Expected<tilec::Model> model =
      drafterDir.empty() ? tilec::loadModelNoThrow(name)
                         : tilec::loadModelNoThrow(name, drafterDir);
  if (!model)
    return error(model.error());
  if (arDrafter && noDrafter)
    return error("--ar-drafter drafts with the DFlash drafter, which "
                 "--no-drafter drops");
  if (arDrafter && !model->drafter)
    return error("--ar-drafter: " + name +
                 " has no DFlash drafter (give one with --drafter DIR)");
  if (noDrafter)
    model->drafter.reset();
  if (numLayers < 0 || numLayers > model->target.numLayers)
    return error("--num-layers " + std::to_string(numLayers) + ": " + name +
                 " has " + std::to_string(model->target.numLayers) + " layers");
  if (numLayers > 0 && numLayers < model->target.numLayers) {
    tilec::TargetConfig &t = model->target;
    t.numLayers = numLayers;
    t.layerTypes.resize(size_t(numLayers));
    t.mlpTypes.resize(size_t(numLayers));
    if (model->drafter)
      for (int64_t id : model->drafter->targetLayerIds)
        if (id >= numLayers) {
          if (arDrafter)
            return error("--ar-drafter: --num-layers " +
                         std::to_string(numLayers) + " drops layer " +
                         std::to_string(id) +
                         ", which the DFlash drafter taps");
          errs() << "tilec: note: --num-layers " << numLayers << " drops layer "
                 << id << ", which the DFlash drafter taps; building a plain "
                 << "greedy-decoding step\n";
          model->drafter.reset();
          break;
        }
  }
  // With a drafter the engine runs DFlash: one launch verifies a block,
  // accepts, and drafts the next.
  const char *function = model->drafter ? "dflash_step" : "target";
  if (!pipeline.empty() && !disableFusion.empty())
    return error("--disable-fusion edits the default pipeline; with "
                 "--pipeline, write tile-fuse{disable=...} into it");
  std::vector<std::string> disabled(disableFusion.begin(), disableFusion.end());
  std::string passes =
      pipeline.empty() ? mlir::tile::defaultPipeline(function, target, disabled)
                       : pipeline;
  if (printPipeline) {
    outs() << passes << "\n";
    return 0;
  }

  mlir::MLIRContext context;
  tilec::GraphOptions options;
  options.tokens = tokensPerStep;
  options.maxContext = maxContext;
  options.draftLogits = keepDraftLogits;
  options.arDrafter = arDrafter;
  if (emit != Emit::Graph)
    options.functions = {function};
  std::string message;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      tilec::buildGraph(context, *model, options, message);
  if (!module)
    return error(name + ": " + message);

  auto writeOut = [&](mlir::ModuleOp m) {
    std::string path = output.empty() ? "-" : output.getValue();
    std::unique_ptr<ToolOutputFile> out = mlir::openOutputFile(path, &message);
    if (!out)
      return error(message);
    m.print(out->os());
    out->keep();
    return 0;
  };
  if (emit == Emit::Graph) {
    if (explainSchedule)
      return error("--explain-schedule needs the pass pipeline (not "
                   "--emit=graph)");
    return writeOut(*module);
  }
  // --explain-schedule alone: run the pipeline, explain, write nothing.
  const bool explainOnly =
      explainSchedule && emit == Emit::Engine && output.empty();
  if (emit == Emit::Engine && output.empty() && !explainOnly)
    return error(
        "-o ENGINE_DIR is required to write an engine (or use --emit=graph)");

  // The IR after every pass: into --dump-ir and, for engines, ENGINE_DIR/ir.
  std::string irDir = !dumpIr.empty()        ? dumpIr.getValue()
                      : emit == Emit::Engine ? output + "/ir"
                                             : std::string();
  mlir::PassManager pm(&context);
  // The pass manager is anchored on builtin.module already: parse what is
  // inside.
  StringRef elements = StringRef(passes).trim();
  if (elements.consume_front("builtin.module(") && elements.consume_back(")"))
    elements = elements.trim();
  if (failed(mlir::parsePassPipeline(elements, pm, errs())))
    return error("--pipeline: cannot parse '" + passes + "'");
  if (!irDir.empty()) {
    if (std::error_code ec = sys::fs::create_directories(irDir))
      return error("cannot create " + irDir + ": " + ec.message());
    writeFile(irDir + "/00-graph.mlir",
              [&](raw_ostream &os) { module->print(os); });
    context.disableMultithreading(); // IR printing needs a single-threaded run
    pm.enableIRPrinting(std::make_unique<DumpAfterEachPass>(irDir));
  }
  if (failed(pm.run(*module)))
    return error(name +
                 ": the pass pipeline failed (see the diagnostics above)");
  if (explainSchedule && explain(*module, outs()))
    return 1;
  if (explainOnly)
    return 0;
  if (emit == Emit::Tasks)
    return writeOut(*module);

  mlir::tile::EngineInfo info;
  info.tilecVersion = TILEC_VERSION;
  info.modelName = name;
  info.modelConfig = tilec::configTextNoThrow(model->target);
  if (model->drafter)
    info.drafterConfig =
        tilec::drafterConfigTextNoThrow(*model->drafter, model->target);
  tilec::EngineManifest manifest;
  std::string kernel;
  if (failed(mlir::tile::generateEngine(*module, function, info, manifest,
                                        kernel)))
    return error(name + ": code generation failed");
  std::string written = tilec::writeEngine(output, manifest, kernel);
  if (!written.empty())
    return error(written);
  errs() << "tilec: wrote " << output << ": " << manifest.taskCount()
         << " tasks on " << manifest.sms << " SMs, "
         << manifest.instances.size() << " task bodies, "
         << manifest.weightBytes << " bytes of weights";
  if (manifest.spec.enabled())
    errs() << ", " << manifest.spec.drafterMode << " drafter";
  errs() << "\n";
  return 0;
}
