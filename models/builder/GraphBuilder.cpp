//===- GraphBuilder.cpp - Model configs to tile graph IR ------------------===//
//
// One function per phase of a decoding step (see GraphBuilder.h). The builder
// states the model's semantics only; fusion, partitioning and scheduling are
// the passes' business.
//
//===----------------------------------------------------------------------===//
#include "models/builder/GraphBuilder.h"

#include "dialects/tile/TileDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringSet.h"

#include <cmath>

using namespace mlir;
using namespace mlir::tile;

namespace tilec {
namespace {

class GraphBuilderImpl {
public:
  GraphBuilderImpl(MLIRContext &context, const Model &model, int64_t tokens,
                   int64_t maxContext)
      : ctx(context), b(&context), model(model), cfg(model.target),
        tokens(tokens), maxContext(maxContext) {
    module = ModuleOp::create(b.getUnknownLoc());
    declBuilder.setInsertionPointToEnd(module->getBody());
  }

  /// The module with its declarations (weights, caches) ahead of the functions.
  OwningOpRef<ModuleOp> takeModule() {
    Block *body = module->getBody();
    SmallVector<Operation *> decls;
    for (Operation &op : *body)
      if (isa<WeightOp, KVCacheOp, StateOp>(op))
        decls.push_back(&op);
    for (Operation *op : llvm::reverse(decls))
      op->moveBefore(body, body->begin());
    return std::move(module);
  }

  void buildTarget();
  void buildDrafterContext();
  void buildDraft();
  /// `draftLogits`: also return the drafter's logits.
  void buildDflashStep(bool draftLogits, bool autoregressive);

private:
  //===--- Types and declarations -----------------------------------------===//

  RankedTensorType tensor(ArrayRef<int64_t> shape, Type element) {
    return RankedTensorType::get(shape, element);
  }
  RankedTensorType act(ArrayRef<int64_t> shape) {
    return tensor(shape, b.getBF16Type());
  }
  RankedTensorType ids(int64_t n) { return tensor({n}, b.getI32Type()); }

  /// Declares (once) a weight; returns its symbol name.
  StringRef weight(const std::string &symbol, ArrayRef<int64_t> shape,
                   WeightFormat format, const std::string &source) {
    if (declared.insert(symbol).second) {
      Type element = b.getBF16Type();
      QuantAttr quant;
      if (format == WeightFormat::FP8Block) {
        element = b.getType<Float8E4M3FNType>();
        quant = QuantAttr::get(&ctx, QuantKind::fp8_block, {128, 128});
      } else if (format == WeightFormat::MXFP4) {
        element = b.getType<Float4E2M1FNType>();
        quant = QuantAttr::get(&ctx, QuantKind::mxfp4, {32});
      }
      WeightOp::create(declBuilder, loc(), b.getStringAttr(symbol),
                       TypeAttr::get(tensor(shape, element)), quant,
                       b.getStringAttr(source));
    }
    return declared.find(symbol)->getKey();
  }
  /// A plain weight of the given element type (norms, router, biases, sinks).
  StringRef plainWeight(const std::string &symbol, ArrayRef<int64_t> shape,
                        Type element, const std::string &source) {
    if (declared.insert(symbol).second)
      WeightOp::create(declBuilder, loc(), b.getStringAttr(symbol),
                       TypeAttr::get(tensor(shape, element)), QuantAttr(),
                       b.getStringAttr(source));
    return declared.find(symbol)->getKey();
  }

  StringRef kvCache(const std::string &symbol, int64_t kvHeads, int64_t qkDim,
                    int64_t vDim, int64_t window) {
    // A ring buffer keeps the window of the block's oldest query plus the
    // block.
    int64_t capacity = window > 0 ? window + tokens : maxContext;
    if (declared.insert(symbol).second)
      KVCacheOp::create(declBuilder, loc(), b.getStringAttr(symbol),
                        i64(kvHeads), i64(qkDim), i64(vDim), i64(capacity),
                        i64(window), TypeAttr::get(b.getBF16Type()));
    return declared.find(symbol)->getKey();
  }
  StringRef state(const std::string &symbol, RankedTensorType type) {
    if (declared.insert(symbol).second)
      StateOp::create(declBuilder, loc(), b.getStringAttr(symbol),
                      TypeAttr::get(type));
    return declared.find(symbol)->getKey();
  }

  QuantAttr quantOf(WeightFormat format) {
    if (format == WeightFormat::FP8Block)
      return QuantAttr::get(&ctx, QuantKind::fp8_block, {128, 128});
    if (format == WeightFormat::MXFP4)
      return QuantAttr::get(&ctx, QuantKind::mxfp4, {32});
    return {};
  }

  Location loc() { return b.getUnknownLoc(); }
  FlatSymbolRefAttr sym(StringRef name) {
    return FlatSymbolRefAttr::get(&ctx, name);
  }
  FloatAttr f64(double value) { return b.getF64FloatAttr(value); }
  IntegerAttr i64(int64_t value) { return b.getI64IntegerAttr(value); }

  //===--- Op helpers
  //-------------------------------------------------------===//

  Value rmsNorm(Value x, StringRef w, double eps) {
    return RmsNormOp::create(b, loc(), x.getType(), x, sym(w), f64(eps));
  }
  /// x [T, in] -> [T, out] through `symbol` [out, in].
  Value linear(Value x, const std::string &symbol, const std::string &source,
               int64_t out, WeightFormat format, Type resultElement = {}) {
    auto in = cast<RankedTensorType>(x.getType());
    int64_t rows = in.getDimSize(0), inDim = in.getDimSize(1);
    StringRef w = weight(symbol, {out, inDim}, format, source);
    Type element = resultElement ? resultElement : b.getBF16Type();
    return LinearOp::create(b, loc(), tensor({rows, out}, element), x, sym(w),
                            quantOf(format));
  }
  Value reshape(Value x, ArrayRef<int64_t> shape) {
    auto type = cast<RankedTensorType>(x.getType());
    return ReshapeOp::create(b, loc(), tensor(shape, type.getElementType()), x);
  }
  Value rope(Value x, Value positions, int64_t rotaryDim, double theta) {
    if (rotaryDim == 0)
      return x;
    return RopeOp::create(b, loc(), x, positions, i64(rotaryDim), f64(theta));
  }
  Value add(Value a, Value c) { return AddOp::create(b, loc(), a, c); }

  /// The dense SiLU MLP: down(silu(gate x) * up x).
  Value denseMlp(Value x, const std::string &symbolPrefix,
                 const std::string &sourcePrefix, int64_t intermediate,
                 WeightFormat format) {
    int64_t hidden = cast<RankedTensorType>(x.getType()).getDimSize(1);
    Value g = linear(x, symbolPrefix + "gate_proj",
                     sourcePrefix + "gate_proj.weight", intermediate, format);
    Value u = linear(x, symbolPrefix + "up_proj",
                     sourcePrefix + "up_proj.weight", intermediate, format);
    Value m = SiluMulOp::create(b, loc(), g, u);
    return linear(m, symbolPrefix + "down_proj",
                  sourcePrefix + "down_proj.weight", hidden, format);
  }

  Value targetLayer(int64_t i, Value x, Value tokenIds, Value positions);
  /// The target over a block: the logits [T, V] (and the drafter's taps
  /// [T, taps x H] when it has one).
  Value targetBody(Value tokenIds, Value positions, Value *taps);
  /// The taps' context features appended to every drafter layer's cache; the
  /// append tokens.
  SmallVector<Value> drafterContextBody(Value taps, Value positions);
  /// The drafter over the block [t_s, MASK...]: its logits [T, V].
  Value draftBody(Value tokenIds, Value positions, ValueRange contextTokens);
  func::FuncOp beginFunction(StringRef name, ArrayRef<Type> inputs,
                             ArrayRef<Type> results) {
    b.setInsertionPointToEnd(module->getBody());
    auto fn = func::FuncOp::create(b, loc(), name,
                                   b.getFunctionType(inputs, results));
    b.setInsertionPointToStart(fn.addEntryBlock());
    return fn;
  }

  MLIRContext &ctx;
  OpBuilder b;
  OpBuilder declBuilder{&ctx};
  const Model &model;
  const TargetConfig &cfg;
  int64_t tokens, maxContext;
  OwningOpRef<ModuleOp> module;
  llvm::StringSet<> declared;
};

std::string layerName(int64_t i) {
  return "model.layers." + std::to_string(i) + ".";
}

Value GraphBuilderImpl::targetLayer(int64_t i, Value x, Value tokenIds,
                                    Value positions) {
  const AttentionSpec &spec = cfg.attention(i);
  std::string p = layerName(i);
  int64_t hidden = cfg.hiddenSize, T = tokens;

  // Attention: x += o_proj(attn(rms_norm(x))).
  Value h = rmsNorm(x,
                    plainWeight(p + "input_layernorm", {hidden},
                                b.getBF16Type(), p + "input_layernorm.weight"),
                    cfg.rmsNormEps);
  std::string a = p + "self_attn.";
  Value q = reshape(linear(h, a + "q_proj", a + "q_proj.weight",
                           spec.numHeads * spec.headDim, cfg.quant.attention),
                    {T, spec.numHeads, spec.headDim});
  Value k = reshape(linear(h, a + "k_proj", a + "k_proj.weight",
                           spec.numKvHeads * spec.headDim, cfg.quant.attention),
                    {T, spec.numKvHeads, spec.headDim});
  Value v =
      reshape(linear(h, a + "v_proj", a + "v_proj.weight",
                     spec.numKvHeads * spec.vHeadDim, cfg.quant.attention),
              {T, spec.numKvHeads, spec.vHeadDim});
  q = rope(q, positions, spec.rotaryDim, spec.ropeTheta);
  k = rope(k, positions, spec.rotaryDim, spec.ropeTheta);
  StringRef cache = kvCache("kv.layer" + std::to_string(i), spec.numKvHeads,
                            spec.headDim, spec.vHeadDim, spec.window);
  Value written = KVAppendOp::create(b, loc(), b.getType<TokenType>(), k, v,
                                     positions, sym(cache));
  FlatSymbolRefAttr sinks;
  if (spec.hasSinks)
    sinks = sym(plainWeight(a + "attention_sink_bias", {spec.numHeads},
                            b.getBF16Type(), a + "attention_sink_bias"));
  Value attn =
      AttentionOp::create(b, loc(), act({T, spec.numHeads, spec.vHeadDim}), q,
                          positions, sym(cache), written, Value(), Value(),
                          sinks, MaskKindAttr::get(&ctx, MaskKind::causal),
                          f64(1.0 / std::sqrt(double(spec.headDim))),
                          f64(cfg.attentionValueScale), i64(spec.window));
  Value o =
      linear(reshape(attn, {T, spec.numHeads * spec.vHeadDim}), a + "o_proj",
             a + "o_proj.weight", hidden, cfg.quant.attentionOut);
  x = add(x, o);

  // MLP: x += mlp(rms_norm(x)).
  Value h2 = rmsNorm(x,
                     plainWeight(p + "post_attention_layernorm", {hidden},
                                 b.getBF16Type(),
                                 p + "post_attention_layernorm.weight"),
                     cfg.rmsNormEps);
  Value y;
  if (cfg.mlpTypes[i] == MlpKind::Dense) {
    y = denseMlp(h2, p + "mlp.", p + "mlp.", cfg.intermediateSize,
                 cfg.quant.denseMlp);
  } else {
    std::string m = p + "mlp.";
    int64_t E = cfg.numExperts, I = cfg.moeIntermediateSize;
    StringRef gate = plainWeight(m + "gate", {E, hidden}, b.getBF16Type(),
                                 m + "gate.weight");
    StringRef bias =
        plainWeight(m + "gate.e_score_correction_bias", {E}, b.getF32Type(),
                    m + "gate.e_score_correction_bias");
    auto routingType = RoutingType::get(&ctx, T, cfg.topK, E);
    Value routing =
        RouterOp::create(b, loc(), routingType, h2, sym(gate), sym(bias),
                         i64(cfg.topK), i64(cfg.nGroup), i64(cfg.topkGroup),
                         cfg.normTopkProb ? b.getUnitAttr() : UnitAttr(),
                         f64(cfg.routedScalingFactor));
    StringRef gateUp = weight(m + "experts.gate_up_proj", {E, 2 * I, hidden},
                              cfg.quant.experts, m + "experts.gate_up_proj");
    StringRef down = weight(m + "experts.down_proj", {E, hidden, I},
                            cfg.quant.experts, m + "experts.down_proj");
    y = MoeOp::create(b, loc(), h2.getType(), h2, routing, sym(gateUp),
                      sym(down), quantOf(cfg.quant.experts));
  }
  return add(x, y);
}

Value GraphBuilderImpl::targetBody(Value tokenIds, Value positions,
                                   Value *taps) {
  int64_t T = tokens, H = cfg.hiddenSize, V = cfg.vocabSize;
  StringRef embed = plainWeight("model.embed_tokens", {V, H}, b.getBF16Type(),
                                "model.embed_tokens.weight");
  Value x =
      EmbedOp::create(b, loc(), act({T, H}), tokenIds, sym(embed), f64(1.0));
  llvm::DenseMap<int64_t, Value> hiddenAfter;
  for (int64_t i = 0; i < cfg.numLayers; ++i) {
    x = targetLayer(i, x, tokenIds, positions);
    hiddenAfter[i] = x;
  }
  Value normed = rmsNorm(
      x, plainWeight("model.norm", {H}, b.getBF16Type(), "model.norm.weight"),
      cfg.rmsNormEps);
  // transformers' hidden_states[num_layers] (the tap "after" the last layer)
  // is the final norm's output.
  hiddenAfter[cfg.numLayers - 1] = normed;
  if (taps && model.drafter) {
    const DrafterConfig &d = *model.drafter;
    // Taps in target_layer_ids order: the layout of the drafter's fc input.
    SmallVector<Value> parts;
    for (int64_t id : d.targetLayerIds)
      parts.push_back(hiddenAfter.lookup(id));
    *taps = ConcatOp::create(b, loc(),
                             act({T, H * int64_t(d.targetLayerIds.size())}),
                             parts, i64(1), ArrayAttr(), FloatAttr());
  }
  return linear(normed, "lm_head", "lm_head.weight", V, cfg.quant.lmHead,
                b.getF32Type());
}

void GraphBuilderImpl::buildTarget() {
  int64_t T = tokens, H = cfg.hiddenSize, V = cfg.vocabSize;
  const DrafterConfig *drafter = model.drafter ? &*model.drafter : nullptr;
  SmallVector<Type> results{tensor({T, V}, b.getF32Type()), ids(T)};
  if (drafter)
    results.push_back(act({T, H * int64_t(drafter->targetLayerIds.size())}));
  auto fn = beginFunction("target", {ids(T), ids(T)}, results);
  Value taps;
  Value logits = targetBody(fn.getArgument(0), fn.getArgument(1),
                            drafter ? &taps : nullptr);
  SmallVector<Value> outs{logits, ArgmaxOp::create(b, loc(), ids(T), logits)};
  if (drafter)
    outs.push_back(taps);
  func::ReturnOp::create(b, loc(), outs);
}

std::string drafterLayer(int64_t l) {
  return "layers." + std::to_string(l) + ".";
}

SmallVector<Value> GraphBuilderImpl::drafterContextBody(Value taps,
                                                        Value positions) {
  const DrafterConfig &d = *model.drafter;
  int64_t T = tokens;
  const std::string S = kDrafterSourcePrefix;
  Value c = linear(taps, "drafter.fc", S + "fc.weight", d.hiddenSize,
                   d.quant.denseMlp);
  c = rmsNorm(c,
              plainWeight("drafter.hidden_norm", {d.hiddenSize},
                          b.getBF16Type(), S + "hidden_norm.weight"),
              d.rmsNormEps);
  // Every layer sees the context through its own k_proj/k_norm/v_proj, cached.
  SmallVector<Value> written;
  for (int64_t l = 0; l < d.numLayers; ++l) {
    std::string a = drafterLayer(l) + "self_attn.";
    Value k =
        reshape(linear(c, "drafter." + a + "k_proj", S + a + "k_proj.weight",
                       d.numKvHeads * d.headDim, d.quant.attention),
                {T, d.numKvHeads, d.headDim});
    k = rmsNorm(k,
                plainWeight("drafter." + a + "k_norm", {d.headDim},
                            b.getBF16Type(), S + a + "k_norm.weight"),
                d.rmsNormEps);
    k = rope(k, positions, d.rotaryDim, d.ropeTheta);
    Value v =
        reshape(linear(c, "drafter." + a + "v_proj", S + a + "v_proj.weight",
                       d.numKvHeads * d.headDim, d.quant.attention),
                {T, d.numKvHeads, d.headDim});
    int64_t window =
        d.layerTypes[l] == AttentionKind::Sliding ? d.slidingWindow : 0;
    StringRef cache = kvCache("ctx.layer" + std::to_string(l), d.numKvHeads,
                              d.headDim, d.headDim, window);
    written.push_back(KVAppendOp::create(b, loc(), b.getType<TokenType>(), k, v,
                                         positions, sym(cache)));
  }
  return written;
}

void GraphBuilderImpl::buildDrafterContext() {
  const DrafterConfig &d = *model.drafter;
  int64_t T = tokens, taps = int64_t(d.targetLayerIds.size());
  auto fn = beginFunction("drafter_context",
                          {act({T, cfg.hiddenSize * taps}), ids(T)}, {});
  drafterContextBody(fn.getArgument(0), fn.getArgument(1));
  func::ReturnOp::create(b, loc());
}

Value GraphBuilderImpl::draftBody(Value tokenIds, Value positions,
                                  ValueRange contextTokens) {
  const DrafterConfig &d = *model.drafter;
  int64_t T = tokens, H = d.hiddenSize, V = cfg.vocabSize;
  const std::string S = kDrafterSourcePrefix;

  // The block [t_s, MASK x (B-1)] through the target's embedding.
  StringRef embed = plainWeight("model.embed_tokens", {V, cfg.hiddenSize},
                                b.getBF16Type(), "model.embed_tokens.weight");
  Value x = EmbedOp::create(b, loc(), act({T, H}), tokenIds, sym(embed),
                            f64(d.inputEmbeddingScale));
  for (int64_t l = 0; l < d.numLayers; ++l) {
    std::string p = drafterLayer(l), a = p + "self_attn.";
    Value h =
        rmsNorm(x,
                plainWeight("drafter." + p + "input_layernorm", {H},
                            b.getBF16Type(), S + p + "input_layernorm.weight"),
                d.rmsNormEps);
    auto headNorm = [&](Value t, const char *name) {
      return rmsNorm(t,
                     plainWeight("drafter." + a + name, {d.headDim},
                                 b.getBF16Type(), S + a + name + ".weight"),
                     d.rmsNormEps);
    };
    Value q =
        reshape(linear(h, "drafter." + a + "q_proj", S + a + "q_proj.weight",
                       d.numHeads * d.headDim, d.quant.attention),
                {T, d.numHeads, d.headDim});
    q = rope(headNorm(q, "q_norm"), positions, d.rotaryDim, d.ropeTheta);
    Value k =
        reshape(linear(h, "drafter." + a + "k_proj", S + a + "k_proj.weight",
                       d.numKvHeads * d.headDim, d.quant.attention),
                {T, d.numKvHeads, d.headDim});
    k = rope(headNorm(k, "k_norm"), positions, d.rotaryDim, d.ropeTheta);
    Value v =
        reshape(linear(h, "drafter." + a + "v_proj", S + a + "v_proj.weight",
                       d.numKvHeads * d.headDim, d.quant.attention),
                {T, d.numKvHeads, d.headDim});
    bool sliding = d.layerTypes[l] == AttentionKind::Sliding;
    FlatSymbolRefAttr sinks;
    if (d.hasSinks)
      sinks =
          sym(plainWeight("drafter." + a + "attention_sink_bias", {d.numHeads},
                          b.getBF16Type(), S + a + "attention_sink_bias"));
    ValueRange after = contextTokens.empty()
                           ? ValueRange()
                           : contextTokens.slice(size_t(l), 1);
    Value attn = AttentionOp::create(
        b, loc(), act({T, d.numHeads, d.headDim}), q, positions,
        sym("ctx.layer" + std::to_string(l)), after, k, v, sinks,
        MaskKindAttr::get(&ctx, d.causal[l] ? MaskKind::causal
                                            : MaskKind::bidirectional),
        f64(1.0 / std::sqrt(double(d.headDim))), f64(d.attentionValueScale),
        i64(sliding ? d.slidingWindow : 0));
    Value o = linear(reshape(attn, {T, d.numHeads * d.headDim}),
                     "drafter." + a + "o_proj", S + a + "o_proj.weight", H,
                     d.quant.attentionOut);
    x = add(x, o);
    Value h2 = rmsNorm(x,
                       plainWeight("drafter." + p + "post_attention_layernorm",
                                   {H}, b.getBF16Type(),
                                   S + p + "post_attention_layernorm.weight"),
                       d.rmsNormEps);
    x = add(x, denseMlp(h2, "drafter." + p + "mlp.", S + p + "mlp.",
                        d.intermediateSize, d.quant.denseMlp));
  }
  x = rmsNorm(
      x, plainWeight("drafter.norm", {H}, b.getBF16Type(), S + "norm.weight"),
      d.rmsNormEps);
  Value logits = linear(x, "lm_head", "lm_head.weight", V, cfg.quant.lmHead,
                        b.getF32Type());
  if (d.outputMultiplier != 1.0 || d.finalLogitSoftcapping > 0)
    logits = LogitCapOp::create(b, loc(), logits, f64(d.outputMultiplier),
                                f64(d.finalLogitSoftcapping));
  return logits;
}

void GraphBuilderImpl::buildDraft() {
  int64_t T = tokens, V = cfg.vocabSize;
  auto fn = beginFunction("draft", {ids(T), ids(T)},
                          {tensor({T, V}, b.getF32Type())});
  Value logits = draftBody(fn.getArgument(0), fn.getArgument(1), {});
  func::ReturnOp::create(b, loc(), logits);
}

void GraphBuilderImpl::buildDflashStep(bool draftLogitsOut,
                                       bool autoregressive) {
  const DrafterConfig &d = *model.drafter;
  int64_t B = tokens;
  int64_t V = model.target.vocabSize;
  SmallVector<Type> results{ids(B + 1), tensor({B, V}, b.getF32Type())};
  if (draftLogitsOut)
    results.push_back(tensor({B, V}, b.getF32Type()));
  auto fn = beginFunction("dflash_step", {}, results);
  (void)fn;
  // The block to verify and its positions: what the previous step drafted (or
  // the host's prompt chunk, with `forced` = its length).
  Value block =
      StateReadOp::create(b, loc(), ids(B), sym(state("spec.tokens", ids(B))));
  Value positions = StateReadOp::create(b, loc(), ids(B),
                                        sym(state("spec.positions", ids(B))));
  Value forced =
      StateReadOp::create(b, loc(), ids(1), sym(state("spec.forced", ids(1))));
  // Verify: the target over the block; its taps become context features of
  // the block's positions (those past the accepted ones are overwritten by the
  // next block, which starts right after them).
  Value taps;
  Value logits = targetBody(block, positions, &taps);
  Value predicted = ArgmaxOp::create(b, loc(), ids(B), logits);
  SmallVector<Value> context = drafterContextBody(taps, positions);
  // Temperature and seed (the host writes them once per sequence).
  Value sampling = StateReadOp::create(b, loc(), ids(2),
                                       sym(state("spec.sampling", ids(2))));
  auto accept =
      AcceptOp::create(b, loc(), ids(B + 1), ids(B), ids(B), block, predicted,
                       positions, forced, logits, sampling,
                       i64(d.maskTokenId));
  // Draft the next block [bonus, MASK...] right after the accepted tokens.
  // Block mode: one drafter pass drafts every slot. Autoregressive mode (the
  // baseline that measures what block drafting gains): B-1 passes, pass k
  // over [bonus, d_1 .. d_(k-1), MASK...] filling slot k; each pass rewrites
  // the block's keys and values in the context caches at the same positions.
  Value draftLogits, drafted;
  if (!autoregressive) {
    draftLogits =
        draftBody(accept.getNextTokens(), accept.getNextPositions(), context);
    drafted = ArgmaxOp::create(b, loc(), ids(B), draftLogits);
  } else {
    drafted = accept.getNextTokens();
    for (int64_t k = 1; k < B; ++k) {
      draftLogits = draftBody(drafted, accept.getNextPositions(), context);
      Value argmax = ArgmaxOp::create(b, loc(), ids(B), draftLogits);
      drafted = DraftFillOp::create(b, loc(), ids(B), drafted, argmax, i64(k));
    }
  }
  SpecUpdateOp::create(b, loc(), accept.getNextTokens(), drafted,
                       accept.getNextPositions(), sym("spec.tokens"),
                       sym("spec.positions"));
  // The verify logits stay readable after the step (tile-run --check), the
  // draft logits (autoregressive: the last pass's) when asked for.
  SmallVector<Value> outs{accept.getCommitted(), logits};
  if (draftLogitsOut)
    outs.push_back(draftLogits);
  func::ReturnOp::create(b, loc(), outs);
}

} // namespace

OwningOpRef<ModuleOp> buildGraph(MLIRContext &context, const Model &model,
                                 const GraphOptions &options,
                                 std::string &error) {
  context.loadDialect<TileDialect, func::FuncDialect>();
  int64_t tokens = options.tokens;
  if (tokens == 0)
    tokens = model.drafter ? model.drafter->blockSize : 1;
  if (tokens < 1 || tokens > 4096) {
    error =
        "tokens per step must be in [1, 4096], got " + std::to_string(tokens);
    return {};
  }
  if (options.maxContext < tokens) {
    error = "max context (" + std::to_string(options.maxContext) +
            ") must be at least the tokens per step (" +
            std::to_string(tokens) + ")";
    return {};
  }
  if (options.arDrafter && !(model.drafter && options.withDrafter)) {
    error = "the autoregressive drafter mode needs the model's DFlash drafter";
    return {};
  }
  if (options.arDrafter && tokens < 2) {
    error = "the autoregressive drafter mode drafts blocks of at least 2 "
            "tokens, got " +
            std::to_string(tokens);
    return {};
  }
  if (model.drafter && options.withDrafter && tokens > 16) {
    error = "a DFlash step verifies at most 16 tokens, got " +
            std::to_string(tokens);
    return {};
  }
  GraphBuilderImpl builder(context, model, tokens, options.maxContext);
  auto wanted = [&](StringRef name) {
    return options.functions.empty() ||
           llvm::is_contained(options.functions, name.str());
  };
  for (const std::string &name : options.functions)
    if (name != "target" && !(model.drafter && options.withDrafter &&
                              (name == "drafter_context" || name == "draft" ||
                               name == "dflash_step"))) {
      error = "no graph function '" + name + "' for " +
              (model.target.name.empty() ? "this model" : model.target.name) +
              (model.drafter && options.withDrafter
                   ? " (target, drafter_context, draft, dflash_step)"
                   : " (target; the DFlash functions need a drafter)");
      return {};
    }
  if (wanted("target"))
    builder.buildTarget();
  if (model.drafter && options.withDrafter) {
    if (wanted("drafter_context"))
      builder.buildDrafterContext();
    if (wanted("draft"))
      builder.buildDraft();
    if (wanted("dflash_step"))
      builder.buildDflashStep(options.draftLogits, options.arDrafter);
  }
  OwningOpRef<ModuleOp> module = builder.takeModule();
  if (failed(verify(*module))) {
    error = "the built graph does not verify (a builder bug)";
    return {};
  }
  return module;
}

} // namespace tilec
