//===- Pipeline.cpp - The default pass pipeline ---------------------------===//
#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/StringExtras.h"

namespace mlir::tile {

std::string defaultPipelineElements(StringRef function, StringRef target,
                                    ArrayRef<std::string> disabledFusions) {
  std::string fuse = "tile-fuse";
  if (!disabledFusions.empty())
    fuse += "{disable=" + llvm::join(disabledFusions, ",") + "}";
  return ("tile-shard, " + fuse + ", tile-partition{function=" + function +
          " target=" + target +
          "}, tile-assign-warp-roles, tile-schedule, tile-plan-memory")
      .str();
}

std::string defaultPipeline(StringRef function, StringRef target,
                            ArrayRef<std::string> disabledFusions) {
  return "builtin.module(" +
         defaultPipelineElements(function, target, disabledFusions) + ")";
}

namespace {
struct PipelineOptions : public PassPipelineOptions<PipelineOptions> {
  Option<std::string> function{*this, "function",
                               llvm::cl::desc("The graph function to compile"),
                               llvm::cl::init("target")};
  Option<std::string> target{*this, "target",
                             llvm::cl::desc("Machine: h100, h200 or b200"),
                             llvm::cl::init("h100")};
  ListOption<std::string> disableFusion{
      *this, "disable-fusion",
      llvm::cl::desc("tile-fuse patterns to leave out (its disable= option)")};
};
} // namespace

void registerTilePipelines() {
  registerTilePasses();
  PassPipelineRegistration<PipelineOptions>(
      "tile-pipeline",
      "tilec's default pipeline, from graph IR to scheduled tasks",
      [](OpPassManager &pm, const PipelineOptions &options) {
        if (failed(parsePassPipeline(
                defaultPipelineElements(
                    options.function, options.target,
                    std::vector<std::string>(options.disableFusion.begin(),
                                             options.disableFusion.end())),
                pm)))
          llvm::report_fatal_error(
              "tile-pipeline: the default pipeline does not parse");
      });
}

} // namespace mlir::tile
