//===- tilec.cpp - The tilec compiler driver
//-------------------------------===//
//
// tilec MODEL [options]: MODEL is a preset name or a model directory. Today it
// builds the tile graph IR of the model (--emit=graph); the pass pipeline and
// the megakernel codegen extend it.
//
//===----------------------------------------------------------------------===//
#include "dialects/tile/TileDialect.h"
#include "models/builder/GraphBuilder.h"
#include "models/core/Config.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

using namespace llvm;

namespace {
enum class Emit { Graph };

cl::OptionCategory category("tilec options");
cl::opt<std::string> modelArg(cl::Positional,
                              cl::desc("<preset name or model dir>"),
                              cl::init(""), cl::cat(category));
cl::opt<Emit> emit("emit", cl::desc("What to produce"), cl::init(Emit::Graph),
                   cl::values(clEnumValN(Emit::Graph, "graph",
                                         "the tile graph IR of the model")),
                   cl::cat(category));
cl::opt<std::string> output("o", cl::desc("Output file ('-' for stdout)"),
                            cl::value_desc("path"), cl::init("-"),
                            cl::cat(category));
cl::opt<std::string>
    drafterDir("drafter",
               cl::desc("Directory of the DFlash drafter (default: the "
                        "model's drafter/ or dflash/ subfolder)"),
               cl::value_desc("dir"), cl::init(""), cl::cat(category));
cl::opt<bool> noDrafter("no-drafter", cl::desc("Ignore the model's drafter"),
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
} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
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
  std::string name = modelArg.empty() ? tilec::defaultPresetName() : modelArg;
  tilec::Expected<tilec::Model> model =
      drafterDir.empty() ? tilec::loadModelNoThrow(name)
                         : tilec::loadModelNoThrow(name, drafterDir);
  if (!model)
    return error(model.error());
  if (noDrafter)
    model->drafter.reset();

  mlir::MLIRContext context;
  tilec::GraphOptions options;
  options.tokens = tokensPerStep;
  options.maxContext = maxContext;
  std::string message;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      tilec::buildGraph(context, *model, options, message);
  if (!module)
    return error(name + ": " + message);

  std::unique_ptr<ToolOutputFile> out = mlir::openOutputFile(output, &message);
  if (!out)
    return error(message);
  module->print(out->os());
  out->keep();
  return 0;
}
