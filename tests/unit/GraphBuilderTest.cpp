//===- GraphBuilderTest.cpp - Graph builder against the weight list -------===//
//
// The graph's weight declarations and models/core's WeightList must name the
// same tensors with the same shapes and formats: the runtime uploads by the
// list, the kernels read by the graph.
//
//===----------------------------------------------------------------------===//
#include "models/builder/GraphBuilder.h"
#include "dialects/tile/TileDialect.h"
#include "models/core/WeightList.h"

#include "mlir/IR/BuiltinOps.h"

#include <gtest/gtest.h>

#include <map>

using namespace tilec;

namespace {

TEST(GraphBuilder, WeightsMatchTheWeightList) {
  for (const std::string &name : presetNames()) {
    SCOPED_TRACE(name);
    Expected<Model> model = loadModelNoThrow(name);
    ASSERT_TRUE(bool(model)) << model.error();
    mlir::MLIRContext context;
    std::string error;
    mlir::OwningOpRef<mlir::ModuleOp> module =
        buildGraph(context, *model, GraphOptions(), error);
    ASSERT_TRUE(module) << error;

    std::map<std::string, WeightSpec> listed;
    for (const WeightSpec &spec : modelWeights(*model))
      listed.emplace(spec.name, spec);
    size_t declared = 0;
    for (auto weight : module->getOps<mlir::tile::WeightOp>()) {
      ++declared;
      std::string source = weight.getSource().str();
      auto it = listed.find(source);
      ASSERT_NE(it, listed.end())
          << "graph weight " << source << " is not listed";
      std::vector<int64_t> shape(weight.getTensorType().getShape().begin(),
                                 weight.getTensorType().getShape().end());
      EXPECT_EQ(shape, it->second.shape) << source;
      mlir::tile::QuantKind expected =
          it->second.format == WeightFormat::MXFP4
              ? mlir::tile::QuantKind::mxfp4
          : it->second.format == WeightFormat::FP8Block
              ? mlir::tile::QuantKind::fp8_block
              : mlir::tile::QuantKind::none;
      EXPECT_EQ(weight.getQuantKind(), expected) << source;
    }
    EXPECT_EQ(declared, listed.size());
  }
}

TEST(GraphBuilder, RejectsBadOptions) {
  Expected<Model> model = loadModelNoThrow("tiny");
  ASSERT_TRUE(bool(model));
  mlir::MLIRContext context;
  std::string error;
  GraphOptions options;
  options.tokens = 8;
  options.maxContext = 4;
  EXPECT_FALSE(buildGraph(context, *model, options, error));
  EXPECT_EQ(error, "max context (4) must be at least the tokens per step (8)");
}

} // namespace
