//===- Fuse.cpp - tile-fuse: fold ops that need no global synchronisation
//--===//
//
// Patterns, each rooted at the consumer, with the name tile-fuse{disable=...}
// takes:
//   block-attention  attention(block(k, v))     -> kv_append(k, v) + attention
//                                                  over the cache (the drafter)
//   query-rope       rope([rms_norm3](reshape(linear)))
//                                               -> fused_linear epilogue(rope)
//                                                  [head_norm]
//   kv-append        kv_append(rope(reshape(linear_k)), reshape(linear_v))
//                                               -> fused_linear rope_kcache +
//                                                  fused_linear vcache
//   silu-pair        silu_mul(linear_g(h), linear_u(h))
//                                               -> fused_linear
//                                                  epilogue(silu_pair)
//   moe              add(x, moe(n, router(n))), n = norm(x) -> fused_moe
//   residual         add(r, linear(y))          -> fused_linear
//                                                  epilogue(residual)
//   argmax           argmax([logit_cap](linear(h)))
//                                               -> fused_linear
//                                                  epilogue(argmax)
//                                                  [logit_cap]
//   concat-norm      concat(..., rms_norm(x), ...) -> concat {norms}
//   norm-linear      linear(rms_norm(x))        -> fused_linear norm(...)
//                                                  epilogue(store)
// A linear's input produced by rms_norm becomes the fused op's prologue. Every
// pattern accepts a plain linear or a fused_linear that only stores, so the
// order in which the driver visits ops does not matter. Only silu-pair is
// optional for lowering: without it gate and up stay two linears (norm-linear
// still gives each the norm prologue) and tile.silu_mul has a task family of
// its own (SILU_MUL); the ops the other patterns fold have none.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Rewrite/FrozenRewritePatternSet.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/StringExtras.h"

namespace mlir::tile {
#define GEN_PASS_DEF_TILEFUSE
#include "passes/Passes.h.inc"

namespace {

/// A linear (plain, or fused with only a norm prologue) seen as its parts.
struct LinearMatch {
  Operation *op = nullptr;
  Value input; // the prologue's input when there is a norm
  FlatSymbolRefAttr weight, norm;
  QuantAttr quant;
  FloatAttr eps;
};

/// A 2-D rms_norm feeding a linear becomes the linear's prologue.
void absorbNorm(LinearMatch &m) {
  auto norm = m.input.getDefiningOp<RmsNormOp>();
  if (!norm || cast<RankedTensorType>(norm.getType()).getRank() != 2)
    return;
  m.input = norm.getInput();
  m.norm = norm.getWeightAttr();
  m.eps = norm.getEpsAttr();
}

std::optional<LinearMatch> matchLinear(Value value, bool needSingleUse = true) {
  if (!value || (needSingleUse && !value.hasOneUse()))
    return std::nullopt;
  LinearMatch m;
  if (auto linear = value.getDefiningOp<LinearOp>()) {
    m = {linear, linear.getInput(), linear.getWeightAttr(), {}, {}, {}};
    if (linear.getQuant())
      m.quant = *linear.getQuant();
    absorbNorm(m);
    return m;
  }
  if (auto fused = value.getDefiningOp<FusedLinearOp>()) {
    if (fused.getEpilogue() != Epilogue::store || fused.getNumResults() != 1)
      return std::nullopt;
    m = {fused, fused.getInput(),  fused.getWeightAttr(), fused.getNormAttr(),
         {},    fused.getEpsAttr()};
    if (fused.getQuant())
      m.quant = *fused.getQuant();
    return m;
  }
  return std::nullopt;
}

struct FusedParts {
  Value positions, residual;
  FlatSymbolRefAttr weight2, cache, headNorm;
  IntegerAttr rotaryDim;
  FloatAttr theta, headEps, logitMultiplier, logitSoftcap;
};

FusedLinearOp createFused(PatternRewriter &rewriter, Location loc,
                          TypeRange results, const LinearMatch &m,
                          Epilogue epilogue, const FusedParts &parts = {}) {
  return FusedLinearOp::create(
      rewriter, loc, results, m.input, parts.positions, parts.residual,
      m.weight, parts.weight2, m.quant, m.norm, m.eps,
      EpilogueAttr::get(rewriter.getContext(), epilogue), parts.rotaryDim,
      parts.theta, parts.cache, parts.headNorm, parts.headEps,
      parts.logitMultiplier, parts.logitSoftcap);
}

/// The value a reshape (single use) views, or the value itself.
Value throughReshape(Value value) {
  if (auto reshape = value.getDefiningOp<ReshapeOp>())
    if (reshape->getResult(0).hasOneUse())
      return reshape.getInput();
  return {};
}

/// The linear under a RoPE's input: reshape(linear), optionally through a
/// per-head rms_norm (DFlash's q_norm / k_norm), which `parts` records.
std::optional<LinearMatch> matchHeads(Value value, FusedParts &parts) {
  if (auto norm = value.getDefiningOp<RmsNormOp>()) {
    if (!norm->hasOneUse() ||
        cast<RankedTensorType>(norm.getType()).getRank() != 3)
      return std::nullopt;
    parts.headNorm = norm.getWeightAttr();
    parts.headEps = norm.getEpsAttr();
    value = norm.getInput();
  }
  return matchLinear(throughReshape(value));
}

/// The drafter's block keys and values go into its context cache at the
/// block's positions (slots the next verify overwrites): the attention then
/// reads one cache, up to the block's last position when bidirectional.
struct BlockAttentionToCache : public OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AttentionOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getBlockKeys())
      return failure();
    Value token = KVAppendOp::create(
        rewriter, op.getLoc(), rewriter.getType<TokenType>(), op.getBlockKeys(),
        op.getBlockValues(), op.getPositions(), op.getCacheAttr());
    SmallVector<Value> after(op.getAfter().begin(), op.getAfter().end());
    after.push_back(token);
    rewriter.replaceOpWithNewOp<AttentionOp>(
        op, op.getType(), op.getQuery(), op.getPositions(), op.getCacheAttr(),
        after, Value(), Value(), op.getSinksAttr(), op.getMaskAttr(),
        op.getScaleAttr(), op.getValueScaleAttr(), op.getWindowAttr());
    return success();
  }
};

struct QueryRopeFusion : public OpRewritePattern<RopeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RopeOp rope,
                                PatternRewriter &rewriter) const override {
    for (Operation *user : rope->getUsers())
      if (isa<KVAppendOp>(user))
        return failure(); // keys go into the cache: KVAppendFusion's case
    FusedParts parts;
    std::optional<LinearMatch> m = matchHeads(rope.getInput(), parts);
    if (!m)
      return failure();
    parts.positions = rope.getPositions();
    parts.rotaryDim = rope.getRotaryDimAttr();
    parts.theta = rope.getThetaAttr();
    rewriter.replaceOp(rope,
                       createFused(rewriter, rope.getLoc(), rope.getType(), *m,
                                   Epilogue::rope, parts)
                           ->getResults());
    return success();
  }
};

struct KVAppendFusion : public OpRewritePattern<KVAppendOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(KVAppendOp append,
                                PatternRewriter &rewriter) const override {
    auto rope = append.getKeys().getDefiningOp<RopeOp>();
    if (!rope || !rope->hasOneUse() ||
        rope.getPositions() != append.getPositions())
      return failure();
    FusedParts kParts, vParts;
    std::optional<LinearMatch> k = matchHeads(rope.getInput(), kParts);
    std::optional<LinearMatch> v =
        matchLinear(throughReshape(append.getValues()));
    if (!k || !v)
      return failure();
    // Only attention consumes the token: it can wait on the two writes.
    for (Operation *user : append->getUsers())
      if (!isa<AttentionOp>(user))
        return failure();
    Type token = append.getType();
    kParts.positions = vParts.positions = append.getPositions();
    kParts.cache = vParts.cache = append.getCacheAttr();
    kParts.rotaryDim = rope.getRotaryDimAttr();
    kParts.theta = rope.getThetaAttr();
    Value kToken = createFused(rewriter, append.getLoc(), token, *k,
                               Epilogue::rope_kcache, kParts)
                       ->getResult(0);
    Value vToken = createFused(rewriter, append.getLoc(), token, *v,
                               Epilogue::vcache, vParts)
                       ->getResult(0);
    for (Operation *user : llvm::make_early_inc_range(append->getUsers())) {
      auto attention = cast<AttentionOp>(user);
      SmallVector<Value> after;
      for (Value t : attention.getAfter())
        if (t != append.getResult())
          after.push_back(t);
      after.append({kToken, vToken});
      rewriter.modifyOpInPlace(
          attention, [&] { attention.getAfterMutable().assign(after); });
    }
    rewriter.eraseOp(append);
    return success();
  }
};

struct SiluPairFusion : public OpRewritePattern<SiluMulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SiluMulOp op,
                                PatternRewriter &rewriter) const override {
    std::optional<LinearMatch> g = matchLinear(op.getGate());
    std::optional<LinearMatch> u = matchLinear(op.getUp());
    if (!g || !u || g->input != u->input || g->norm != u->norm ||
        g->quant != u->quant)
      return failure();
    FusedParts parts;
    parts.weight2 = u->weight;
    rewriter.replaceOp(op, createFused(rewriter, op.getLoc(), op.getType(), *g,
                                       Epilogue::silu_pair, parts)
                               ->getResults());
    return success();
  }
};

/// add(x, moe(n, router(n))) with n = rms_norm(x): the whole MoE block.
struct MoeFusion : public OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add,
                                PatternRewriter &rewriter) const override {
    for (auto [moeValue, residual] : {std::pair{add.getRhs(), add.getLhs()},
                                      std::pair{add.getLhs(), add.getRhs()}}) {
      auto moe = moeValue.getDefiningOp<MoeOp>();
      if (!moe || !moe->hasOneUse())
        continue;
      auto router = moe.getRouting().getDefiningOp<RouterOp>();
      auto norm = moe.getInput().getDefiningOp<RmsNormOp>();
      if (!router || !router->hasOneUse() || !norm ||
          router.getInput() != moe.getInput() || norm.getInput() != residual)
        continue;
      auto fused = FusedMoeOp::create(
          rewriter, add.getLoc(), add.getType(), residual, norm.getWeightAttr(),
          norm.getEpsAttr(), router.getGateAttr(), router.getBiasAttr(),
          moe.getGateUpAttr(), moe.getDownAttr(),
          moe.getQuant() ? *moe.getQuant() : QuantAttr(),
          rewriter.getI64IntegerAttr(router.getType().getExperts()),
          router.getTopKAttr(), router.getNGroupAttr(),
          router.getTopkGroupAttr(), router.getRenormAttr(),
          router.getScalingAttr());
      rewriter.replaceOp(add, fused->getResults());
      return success();
    }
    return failure();
  }
};

struct ResidualFusion : public OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add,
                                PatternRewriter &rewriter) const override {
    for (auto [linearValue, residual] :
         {std::pair{add.getRhs(), add.getLhs()},
          std::pair{add.getLhs(), add.getRhs()}}) {
      std::optional<LinearMatch> m = matchLinear(linearValue);
      if (!m)
        continue;
      FusedParts parts;
      parts.residual = residual;
      rewriter.replaceOp(add, createFused(rewriter, add.getLoc(), add.getType(),
                                          *m, Epilogue::residual, parts)
                                  ->getResults());
      return success();
    }
    return failure();
  }
};

struct ArgmaxFusion : public OpRewritePattern<ArgmaxOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ArgmaxOp op,
                                PatternRewriter &rewriter) const override {
    Value logits = op.getInput();
    if (cast<RankedTensorType>(logits.getType()).getRank() != 2)
      return failure();
    FusedParts parts;
    Value raw = logits;
    if (auto cap = logits.getDefiningOp<LogitCapOp>()) {
      if (!cap.getInput().hasOneUse())
        return failure(); // the uncapped logits are needed elsewhere
      raw = cap.getInput();
      parts.logitMultiplier = cap.getMultiplierAttr();
      parts.logitSoftcap = cap.getSoftcapAttr();
    }
    std::optional<LinearMatch> m =
        matchLinear(raw, /*needSingleUse=*/raw != logits);
    if (!m)
      return failure();
    bool keepLogits = !logits.hasOneUse();
    SmallVector<Type> results{op.getType()};
    if (keepLogits)
      results.push_back(logits.getType());
    FusedLinearOp fused = createFused(rewriter, op.getLoc(), results, *m,
                                      Epilogue::argmax, parts);
    if (keepLogits)
      rewriter.replaceAllUsesExcept(logits, fused->getResult(1), op);
    rewriter.replaceOp(op, fused->getResult(0));
    return success();
  }
};

/// concat(..., rms_norm(x), ...) -> concat(..., x, ...) {norms}: DFlash's tap
/// of the last target layer is the final norm's output, which only the lm_head
/// (as its prologue) and this concat read.
struct ConcatNormFusion : public OpRewritePattern<ConcatOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ConcatOp op,
                                PatternRewriter &rewriter) const override {
    auto type = cast<RankedTensorType>(op.getType());
    if (op.getAxis() != type.getRank() - 1)
      return failure();
    SmallVector<Attribute> norms;
    if (auto existing = op.getNorms())
      norms.assign(existing->begin(), existing->end());
    else
      norms.assign(op.getInputs().size(), rewriter.getUnitAttr());
    std::optional<double> eps;
    if (op.getEps())
      eps = op.getEps()->convertToDouble();
    SmallVector<Value> inputs(op.getInputs().begin(), op.getInputs().end());
    bool changed = false;
    for (auto [i, input] : llvm::enumerate(inputs)) {
      auto norm = input.getDefiningOp<RmsNormOp>();
      if (!norm || !isa<UnitAttr>(norms[i]) ||
          cast<RankedTensorType>(norm.getType()).getRank() != 2)
        continue;
      double e = norm.getEps().convertToDouble();
      if (eps && *eps != e)
        continue; // one eps per concat
      eps = e;
      norms[i] = norm.getWeightAttr();
      input = norm.getInput();
      changed = true;
    }
    if (!changed)
      return failure();
    rewriter.replaceOpWithNewOp<ConcatOp>(
        op, op.getType(), inputs, op.getAxisAttr(),
        rewriter.getArrayAttr(norms), rewriter.getF64FloatAttr(*eps));
    return success();
  }
};

struct NormLinearFusion : public OpRewritePattern<LinearOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LinearOp op,
                                PatternRewriter &rewriter) const override {
    std::optional<LinearMatch> m =
        matchLinear(op.getResult(), /*needSingleUse=*/false);
    if (!m || !m->norm)
      return failure();
    rewriter.replaceOp(op, createFused(rewriter, op.getLoc(), op.getType(), *m,
                                       Epilogue::store)
                               ->getResults());
    return success();
  }
};

/// The names disable= takes (each pattern's debug label), in the order above.
constexpr const char *kPatternNames[] = {
    "block-attention", "query-rope", "kv-append",   "silu-pair",  "moe",
    "residual",        "argmax",     "concat-norm", "norm-linear"};

struct FusePass : public impl::TileFuseBase<FusePass> {
  using TileFuseBase::TileFuseBase;
  void runOnOperation() override {
    std::vector<std::string> disabled(disable.begin(), disable.end());
    for (const std::string &name : disabled)
      if (!llvm::is_contained(kPatternNames, StringRef(name))) {
        mlir::emitError(getOperation().getLoc())
            << "tile-fuse: disable=" << name << ": no pattern '" << name
            << "' (the patterns: "
            << llvm::join(std::begin(kPatternNames), std::end(kPatternNames),
                          ", ")
            << ")";
        return signalPassFailure();
      }
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    // Benefits: 3 rewrites the drafter's attention first, 2 builds a whole
    // epilogue, 1 the generic fusions, which must not grab a linear first.
    patterns.addWithLabel<BlockAttentionToCache>({"block-attention"}, ctx, 3);
    patterns.addWithLabel<QueryRopeFusion>({"query-rope"}, ctx, 2);
    patterns.addWithLabel<KVAppendFusion>({"kv-append"}, ctx, 2);
    patterns.addWithLabel<SiluPairFusion>({"silu-pair"}, ctx, 2);
    patterns.addWithLabel<MoeFusion>({"moe"}, ctx, 2);
    patterns.addWithLabel<ArgmaxFusion>({"argmax"}, ctx, 2);
    patterns.addWithLabel<ConcatNormFusion>({"concat-norm"}, ctx, 2);
    patterns.addWithLabel<ResidualFusion>({"residual"}, ctx, 1);
    patterns.addWithLabel<NormLinearFusion>({"norm-linear"}, ctx, 1);
    FrozenRewritePatternSet frozen(std::move(patterns), disabled);
    if (failed(applyPatternsGreedily(getOperation(), frozen)))
      return signalPassFailure();
  }
};

} // namespace
} // namespace mlir::tile
