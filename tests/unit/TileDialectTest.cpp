//===- TileDialectTest.cpp - The tile dialect through its C++ API ---------===//
//
// Builds tile IR with OpBuilder (as the graph builders do) and checks what the
// verifiers and attribute helpers say about it.
//
//===----------------------------------------------------------------------===//
#include "dialects/tile/TileDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::tile;

namespace {

class TileDialectTest : public ::testing::Test {
protected:
  TileDialectTest() {
    context.loadDialect<TileDialect, func::FuncDialect>();
    module = ModuleOp::create(UnknownLoc::get(&context));
  }
  /// Verifies the module, returning the first diagnostic (empty when it
  /// verifies).
  std::string verifyMessage() {
    std::string message;
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
      if (message.empty())
        message = diag.str();
      return success();
    });
    if (succeeded(verify(*module)))
      return "";
    return message;
  }
  WeightOp addWeight(StringRef name, ArrayRef<int64_t> shape, Type element,
                     QuantAttr quant = {}) {
    OpBuilder b = OpBuilder::atBlockEnd(module->getBody());
    auto op = WeightOp::create(
        b, b.getUnknownLoc(), name, RankedTensorType::get(shape, element),
        quant ? quant : QuantAttr(), (name + ".weight").str());
    return op;
  }

  MLIRContext context;
  OwningOpRef<ModuleOp> module;
};

TEST_F(TileDialectTest, QuantAttrAcceptsItsElementTypes) {
  Builder b(&context);
  auto mx = QuantAttr::get(&context, QuantKind::mxfp4, {32});
  auto fp8 = QuantAttr::get(&context, QuantKind::fp8_block, {128, 128});
  EXPECT_TRUE(mx.acceptsElementType(b.getType<Float4E2M1FNType>()));
  EXPECT_FALSE(mx.acceptsElementType(b.getBF16Type()));
  EXPECT_TRUE(fp8.acceptsElementType(b.getType<Float8E4M3FNType>()));
  EXPECT_FALSE(fp8.acceptsElementType(b.getType<Float4E2M1FNType>()));
}

TEST_F(TileDialectTest, BuiltLinearVerifiesAndWrongWeightIsNamed) {
  Builder b(&context);
  auto fp8 = QuantAttr::get(&context, QuantKind::fp8_block, {128, 128});
  addWeight("q", {192, 64}, b.getType<Float8E4M3FNType>(), fp8);
  OpBuilder ob = OpBuilder::atBlockEnd(module->getBody());
  auto in = RankedTensorType::get({4, 64}, ob.getBF16Type());
  auto fn = func::FuncOp::create(ob, ob.getUnknownLoc(), "f",
                                 ob.getFunctionType({in}, {}));
  ob.setInsertionPointToStart(fn.addEntryBlock());
  auto linear = LinearOp::create(
      ob, ob.getUnknownLoc(), RankedTensorType::get({4, 192}, ob.getBF16Type()),
      fn.getArgument(0), "q", fp8);
  func::ReturnOp::create(ob, ob.getUnknownLoc());
  EXPECT_EQ(verifyMessage(), "");

  // Point the linear at a weight of the wrong shape: the message names it.
  addWeight("k", {96, 64}, b.getType<Float8E4M3FNType>(), fp8);
  linear.setWeight("k");
  EXPECT_EQ(verifyMessage(), "'tile.linear' op weight @k has shape [96, 64], "
                             "expected [192, 64] (out, in)");
}

TEST_F(TileDialectTest, RoutingTypeRejectsTopKAboveExperts) {
  std::string message;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    message = diag.str();
    return success();
  });
  auto type = RoutingType::getChecked(
      [&] { return emitError(UnknownLoc::get(&context)); }, &context,
      int64_t(4), int64_t(9), int64_t(8));
  EXPECT_FALSE(type);
  EXPECT_EQ(message, "!tile.routing needs 0 < top_k <= experts, got top_k = 9 "
                     "with 8 experts");
}

} // namespace
