//===- Pipeline.cpp - The default pass pipeline ---------------------------===//
#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"

namespace mlir::tile {

std::string defaultPipelineElements(StringRef function, StringRef target) {
  return ("tile-shard, tile-fuse, tile-partition{function=" + function +
          " target=" + target +
          "}, tile-assign-warp-roles, tile-schedule, tile-plan-memory")
      .str();
}

std::string defaultPipeline(StringRef function, StringRef target) {
  return "builtin.module(" + defaultPipelineElements(function, target) + ")";
}

namespace {
struct PipelineOptions : public PassPipelineOptions<PipelineOptions> {
  Option<std::string> function{*this, "function",
                               llvm::cl::desc("The graph function to compile"),
                               llvm::cl::init("target")};
  Option<std::string> target{*this, "target",
                             llvm::cl::desc("Machine: h100, h200 or b200"),
                             llvm::cl::init("h100")};
};
} // namespace

void registerTilePipelines() {
  registerTilePasses();
  PassPipelineRegistration<PipelineOptions>(
      "tile-pipeline",
      "tilec's default pipeline, from graph IR to scheduled tasks",
      [](OpPassManager &pm, const PipelineOptions &options) {
        if (failed(parsePassPipeline(
                defaultPipelineElements(options.function, options.target), pm)))
          llvm::report_fatal_error(
              "tile-pipeline: the default pipeline does not parse");
      });
}

} // namespace mlir::tile
