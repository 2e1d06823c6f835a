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

  // The autoregressive drafter mode needs the drafter and blocks of 2 or more.
  GraphOptions ar;
  ar.arDrafter = true;
  ar.withDrafter = false;
  EXPECT_FALSE(buildGraph(context, *model, ar, error));
  EXPECT_EQ(error,
            "the autoregressive drafter mode needs the model's DFlash drafter");
  ar.withDrafter = true;
  ar.tokens = 1;
  EXPECT_FALSE(buildGraph(context, *model, ar, error));
  EXPECT_EQ(error, "the autoregressive drafter mode drafts blocks of at least "
                   "2 tokens, got 1");
}

/// The autoregressive step: B-1 drafter passes (one lm_head argmax each),
/// chained through draft_fill with slots 1 .. B-1, the last one stored.
TEST(GraphBuilder, AutoregressiveDrafterStep) {
  Expected<Model> model = loadModelNoThrow("tiny");
  ASSERT_TRUE(bool(model));
  mlir::MLIRContext context;
  std::string error;
  for (bool autoregressive : {false, true}) {
    GraphOptions options;
    options.functions = {"dflash_step"};
    options.arDrafter = autoregressive;
    mlir::OwningOpRef<mlir::ModuleOp> module =
        buildGraph(context, *model, options, error);
    ASSERT_TRUE(module) << error;
    const int64_t B = model->drafter->blockSize;
    std::vector<int64_t> indices;
    mlir::Value last;
    int64_t embeds = 0;
    module->walk([&](mlir::Operation *op) {
      if (auto fill = mlir::dyn_cast<mlir::tile::DraftFillOp>(op)) {
        indices.push_back(fill.getIndex());
        last = fill.getResult();
        // Each fill takes the previous one's block (the first: accept's).
        if (indices.size() > 1)
          EXPECT_TRUE(fill.getBlock().getDefiningOp<mlir::tile::DraftFillOp>());
        else
          EXPECT_TRUE(fill.getBlock().getDefiningOp<mlir::tile::AcceptOp>());
      }
      embeds += mlir::isa<mlir::tile::EmbedOp>(op);
      if (auto update = mlir::dyn_cast<mlir::tile::SpecUpdateOp>(op))
        if (autoregressive) {
          EXPECT_EQ(update.getDrafted(), last);
        }
    });
    // One target embedding, then one drafter pass per drafted slot.
    EXPECT_EQ(embeds, 1 + (autoregressive ? B - 1 : 1));
    std::vector<int64_t> expected;
    if (autoregressive)
      for (int64_t k = 1; k < B; ++k)
        expected.push_back(k);
    EXPECT_EQ(indices, expected);
  }
}

} // namespace
