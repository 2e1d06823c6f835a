//===- TileOps.cpp - Verifiers of the tile dialect's graph-level ops ------===//
//
// Each verifier names the op, the operand or symbol at fault and what was
// expected. Checks that need the module (weights and KV caches are symbols)
// live in verifySymbolUses; the rest in verify.
//
//===----------------------------------------------------------------------===//
#include "dialects/tile/TileDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace mlir::tile;

#define GET_OP_CLASSES
#include "dialects/tile/TileOps.cpp.inc"

namespace {

std::string shapeString(ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(shape, os);
  os << "]";
  return text;
}

RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

/// Checks `value` has rank `rank`; names it `what` in the error.
LogicalResult expectRank(Operation *op, Value value, int64_t rank,
                         StringRef what) {
  auto type = tensorType(value);
  if (type.getRank() != rank)
    return op->emitOpError()
           << what << " must have rank " << rank << ", got " << type;
  if (!type.hasStaticShape())
    return op->emitOpError()
           << what << " must have a static shape, got " << type;
  return success();
}

template <typename SymbolOpT>
FailureOr<SymbolOpT> lookup(Operation *op, SymbolTableCollection &tables,
                            FlatSymbolRefAttr ref, StringRef role,
                            StringRef kind) {
  Operation *found = tables.lookupNearestSymbolFrom(op, ref.getAttr());
  if (!found)
    return op->emitOpError() << role << " " << ref << " does not name a "
                             << kind << " in the enclosing module";
  auto typed = dyn_cast<SymbolOpT>(found);
  if (!typed)
    return op->emitOpError() << role << " " << ref << " names a '"
                             << found->getName() << "', expected a " << kind;
  return typed;
}

FailureOr<WeightOp> lookupWeight(Operation *op, SymbolTableCollection &tables,
                                 FlatSymbolRefAttr ref, StringRef role) {
  return lookup<WeightOp>(op, tables, ref, role, "tile.weight");
}

FailureOr<KVCacheOp> lookupCache(Operation *op, SymbolTableCollection &tables,
                                 FlatSymbolRefAttr ref) {
  return lookup<KVCacheOp>(op, tables, ref, "cache", "tile.kv_cache");
}

/// A weight that must hold `expected` with no quantization (norms, sinks,
/// biases).
LogicalResult expectPlainWeight(Operation *op, WeightOp weight, StringRef role,
                                ArrayRef<int64_t> expected) {
  if (weight.getQuantKind() != QuantKind::none)
    return op->emitOpError()
           << role << " @" << weight.getSymName() << " must not be quantized";
  if (weight.getTensorType().getShape() != expected)
    return op->emitOpError()
           << role << " @" << weight.getSymName() << " has shape "
           << shapeString(weight.getTensorType().getShape()) << ", expected "
           << shapeString(expected);
  return success();
}

LogicalResult expectQuantMatches(Operation *op,
                                 std::optional<QuantAttr> opQuant,
                                 WeightOp weight) {
  QuantKind mine = opQuant ? opQuant->getKind() : QuantKind::none;
  if (mine == weight.getQuantKind() &&
      (!opQuant || !weight.getQuant() || *opQuant == *weight.getQuant()))
    return success();
  auto diag = op->emitOpError() << "quant scheme ";
  if (opQuant)
    diag << *opQuant;
  else
    diag << "(none)";
  diag << " does not match weight @" << weight.getSymName() << "'s ";
  if (weight.getQuant())
    diag << *weight.getQuant();
  else
    diag << "(none)";
  return diag;
}

} // namespace

//===----------------------------------------------------------------------===//
// Declarations
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  RankedTensorType type = getTensorType();
  if (getSource().empty())
    return emitOpError() << "@" << getSymName()
                         << " has an empty checkpoint source name";
  if (!type.hasStaticShape() || type.getRank() == 0 ||
      llvm::any_of(type.getShape(), [](int64_t d) { return d <= 0; }))
    return emitOpError() << "@" << getSymName()
                         << " must have a static shape of positive dims, got "
                         << type;
  QuantKind kind = getQuantKind();
  Type element = type.getElementType();
  if (getQuant() ? !getQuant()->acceptsElementType(element)
                 : !isa<BFloat16Type, Float16Type, Float32Type>(element)) {
    auto diag = emitOpError() << "@" << getSymName() << ": element type "
                              << element << " does not fit quant scheme ";
    if (getQuant())
      diag << *getQuant();
    else
      diag << "(none)";
    return diag << " (expected "
                << (kind == QuantKind::mxfp4       ? "f4E2M1FN"
                    : kind == QuantKind::fp8_block ? "f8E4M3FN"
                                                   : "bf16, f16 or f32")
                << ")";
  }
  if (kind == QuantKind::mxfp4 && type.getShape().back() % 32 != 0)
    return emitOpError() << "@" << getSymName()
                         << ": an mxfp4 weight's last dim ("
                         << type.getShape().back()
                         << ") must be a multiple of 32";
  if (kind == QuantKind::fp8_block && type.getRank() < 2)
    return emitOpError() << "@" << getSymName()
                         << ": an fp8_block weight must have rank >= 2";
  return success();
}

LogicalResult KVCacheOp::verify() {
  for (auto [name, value] :
       {std::pair<StringRef, int64_t>{"kv_heads", getKvHeads()},
        {"qk_dim", getQkDim()},
        {"v_dim", getVDim()},
        {"capacity", getCapacity()}})
    if (value <= 0)
      return emitOpError() << "@" << getSymName() << ": " << name
                           << " must be positive, got " << value;
  if (getWindow() < 0)
    return emitOpError() << "@" << getSymName() << ": window must be >= 0, got "
                         << getWindow();
  if (getWindow() > getCapacity())
    return emitOpError() << "@" << getSymName() << ": capacity ("
                         << getCapacity() << ") must hold the window ("
                         << getWindow() << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// Dense ops
//===----------------------------------------------------------------------===//

LogicalResult EmbedOp::verify() {
  if (failed(expectRank(*this, getIds(), 1, "ids")) ||
      failed(expectRank(*this, getResult(), 2, "result")))
    return failure();
  if (tensorType(getIds()).getDimSize(0) !=
      tensorType(getResult()).getDimSize(0))
    return emitOpError() << "result has "
                         << tensorType(getResult()).getDimSize(0)
                         << " rows for " << tensorType(getIds()).getDimSize(0)
                         << " token ids";
  if (!(getScale().convertToDouble() > 0))
    return emitOpError() << "scale must be positive, got "
                         << getScale().convertToDouble();
  return success();
}

LogicalResult EmbedOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<WeightOp> table =
      lookupWeight(*this, tables, getTableAttr(), "table");
  if (failed(table))
    return failure();
  ArrayRef<int64_t> shape = table->getTensorType().getShape();
  int64_t hidden = tensorType(getResult()).getDimSize(1);
  if (shape.size() != 2 || shape[1] != hidden)
    return emitOpError() << "table @" << table->getSymName() << " has shape "
                         << shapeString(shape) << ", expected [vocab, "
                         << hidden << "]";
  if (table->getQuantKind() != QuantKind::none)
    return emitOpError() << "table @" << table->getSymName()
                         << " must not be quantized";
  return success();
}

LogicalResult RmsNormOp::verify() {
  if (!(getEps().convertToDouble() > 0))
    return emitOpError() << "eps must be positive, got "
                         << getEps().convertToDouble();
  if (tensorType(getInput()).getRank() < 1 ||
      !tensorType(getInput()).hasStaticShape())
    return emitOpError() << "input must have a static shape of rank >= 1";
  return success();
}

LogicalResult RmsNormOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<WeightOp> weight =
      lookupWeight(*this, tables, getWeightAttr(), "weight");
  if (failed(weight))
    return failure();
  return expectPlainWeight(*this, *weight, "weight",
                           {tensorType(getInput()).getShape().back()});
}

LogicalResult LinearOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")) ||
      failed(expectRank(*this, getResult(), 2, "result")))
    return failure();
  if (tensorType(getInput()).getDimSize(0) !=
      tensorType(getResult()).getDimSize(0))
    return emitOpError() << "input " << getInput().getType() << " and result "
                         << getResult().getType()
                         << " have different token counts";
  return success();
}

LogicalResult LinearOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<WeightOp> weight =
      lookupWeight(*this, tables, getWeightAttr(), "weight");
  if (failed(weight))
    return failure();
  ArrayRef<int64_t> shape = weight->getTensorType().getShape();
  int64_t in = tensorType(getInput()).getDimSize(1);
  int64_t out = tensorType(getResult()).getDimSize(1);
  if (shape.size() != 2 || shape[0] != out || shape[1] != in)
    return emitOpError() << "weight @" << weight->getSymName() << " has shape "
                         << shapeString(shape) << ", expected [" << out << ", "
                         << in << "] (out, in)";
  return expectQuantMatches(*this, getQuant(), *weight);
}

LogicalResult RopeOp::verify() {
  if (failed(expectRank(*this, getInput(), 3, "input")) ||
      failed(expectRank(*this, getPositions(), 1, "positions")))
    return failure();
  auto input = tensorType(getInput());
  if (tensorType(getPositions()).getDimSize(0) != input.getDimSize(0))
    return emitOpError() << "positions " << getPositions().getType()
                         << " do not match the " << input.getDimSize(0)
                         << " tokens of the input";
  int64_t rd = getRotaryDim();
  if (rd <= 0 || rd % 2 != 0 || rd > input.getDimSize(2))
    return emitOpError()
           << "rotary_dim (" << rd
           << ") must be even, positive and at most the head dim ("
           << input.getDimSize(2) << ")";
  if (!(getTheta().convertToDouble() > 0))
    return emitOpError() << "theta must be positive, got "
                         << getTheta().convertToDouble();
  return success();
}

LogicalResult ReshapeOp::verify() {
  auto in = tensorType(getInput());
  auto out = tensorType(getResult());
  if (!in.hasStaticShape() || !out.hasStaticShape())
    return emitOpError() << "needs static shapes";
  if (in.getElementType() != out.getElementType())
    return emitOpError() << "cannot change the element type ("
                         << in.getElementType() << " -> "
                         << out.getElementType() << ")";
  if (in.getNumElements() != out.getNumElements())
    return emitOpError() << "cannot reshape " << in << " ("
                         << in.getNumElements() << " elements) to " << out
                         << " (" << out.getNumElements() << " elements)";
  return success();
}

LogicalResult ConcatOp::verify() {
  if (getInputs().empty())
    return emitOpError() << "needs at least one input";
  auto result = tensorType(getResult());
  int64_t rank = result.getRank();
  int64_t axis = getAxis();
  if (axis < 0 || axis >= rank)
    return emitOpError() << "axis " << axis << " is out of range for rank "
                         << rank;
  int64_t total = 0;
  for (auto [index, value] : llvm::enumerate(getInputs())) {
    auto type = tensorType(value);
    if (type.getRank() != rank ||
        type.getElementType() != result.getElementType())
      return emitOpError()
             << "input #" << index << " " << type
             << " does not match the result's rank and element type";
    for (int64_t d = 0; d < rank; ++d)
      if (d != axis && type.getDimSize(d) != result.getDimSize(d))
        return emitOpError() << "input #" << index << " " << type
                             << " differs from the result in dim " << d;
    total += type.getDimSize(axis);
  }
  if (total != result.getDimSize(axis))
    return emitOpError() << "inputs sum to " << total << " along axis " << axis
                         << " but the result has " << result.getDimSize(axis);
  if (auto norms = getNorms()) {
    if (norms->size() != getInputs().size())
      return emitOpError() << "norms has " << norms->size() << " entries for "
                           << getInputs().size() << " inputs";
    for (Attribute entry : *norms)
      if (!isa<FlatSymbolRefAttr, UnitAttr>(entry))
        return emitOpError()
               << "norms entries are @weight or unit, got " << entry;
    if (!getEps() || !(getEps()->convertToDouble() > 0))
      return emitOpError() << "norms need a positive eps";
  } else if (getEps()) {
    return emitOpError() << "eps goes with norms";
  }
  return success();
}

LogicalResult ArgmaxOp::verify() {
  auto in = tensorType(getInput());
  auto out = tensorType(getResult());
  if (in.getRank() < 1 || in.getShape().drop_back() != out.getShape())
    return emitOpError() << "result " << out << " must be the input " << in
                         << " without its last dim";
  return success();
}

LogicalResult LogitCapOp::verify() {
  if (getMultiplier().convertToDouble() == 0)
    return emitOpError() << "multiplier must be non-zero";
  if (!(getSoftcap().convertToDouble() >= 0))
    return emitOpError() << "softcap must be >= 0 (0 = none), got "
                         << getSoftcap().convertToDouble();
  return success();
}

//===----------------------------------------------------------------------===//
// Attention and KV caches
//===----------------------------------------------------------------------===//

LogicalResult KVAppendOp::verify() {
  if (failed(expectRank(*this, getKeys(), 3, "keys")) ||
      failed(expectRank(*this, getValues(), 3, "values")) ||
      failed(expectRank(*this, getPositions(), 1, "positions")))
    return failure();
  auto keys = tensorType(getKeys()), values = tensorType(getValues());
  int64_t tokens = tensorType(getPositions()).getDimSize(0);
  if (keys.getDimSize(0) != tokens || values.getDimSize(0) != tokens)
    return emitOpError() << "keys " << keys << ", values " << values << " and "
                         << tokens << " positions disagree on the token count";
  if (keys.getDimSize(1) != values.getDimSize(1))
    return emitOpError() << "keys have " << keys.getDimSize(1)
                         << " heads but values " << values.getDimSize(1);
  return success();
}

LogicalResult KVAppendOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<KVCacheOp> cache = lookupCache(*this, tables, getCacheAttr());
  if (failed(cache))
    return failure();
  auto keys = tensorType(getKeys()), values = tensorType(getValues());
  if (keys.getDimSize(1) != cache->getKvHeads() ||
      keys.getDimSize(2) != cache->getQkDim() ||
      values.getDimSize(2) != cache->getVDim())
    return emitOpError() << "keys " << keys << " / values " << values
                         << " do not fit cache @" << cache->getSymName() << " ("
                         << cache->getKvHeads() << " heads, dims "
                         << cache->getQkDim() << "/" << cache->getVDim() << ")";
  return success();
}

LogicalResult AttentionOp::verify() {
  if (failed(expectRank(*this, getQuery(), 3, "query")) ||
      failed(expectRank(*this, getPositions(), 1, "positions")) ||
      failed(expectRank(*this, getResult(), 3, "result")))
    return failure();
  auto query = tensorType(getQuery()), result = tensorType(getResult());
  int64_t tokens = query.getDimSize(0);
  if (tensorType(getPositions()).getDimSize(0) != tokens)
    return emitOpError() << "positions " << getPositions().getType()
                         << " do not match the " << tokens << " query tokens";
  if (result.getDimSize(0) != tokens ||
      result.getDimSize(1) != query.getDimSize(1))
    return emitOpError() << "result " << result << " must be [" << tokens
                         << ", " << query.getDimSize(1) << ", v_dim]";
  if (!(getScale().convertToDouble() > 0))
    return emitOpError() << "scale must be positive, got "
                         << getScale().convertToDouble();
  if (getValueScale().convertToDouble() == 0)
    return emitOpError() << "value_scale must be non-zero";
  if (getWindow() < 0)
    return emitOpError() << "window must be >= 0, got " << getWindow();
  if (!getBlockKeys()) {
    if (getMask() != MaskKind::causal && getAfter().empty())
      return emitOpError() << "mask(" << stringifyMaskKind(getMask())
                           << ") needs the block's own keys: block(%k, %v), or "
                              "their append to the cache (after %token)";
    return success();
  }
  if (failed(expectRank(*this, getBlockKeys(), 3, "block keys")) ||
      failed(expectRank(*this, getBlockValues(), 3, "block values")))
    return failure();
  auto bk = tensorType(getBlockKeys()), bv = tensorType(getBlockValues());
  if (bk.getDimSize(0) != tokens || bv.getDimSize(0) != tokens ||
      bk.getDimSize(1) != bv.getDimSize(1) ||
      bk.getDimSize(2) != query.getDimSize(2) ||
      bv.getDimSize(2) != result.getDimSize(2))
    return emitOpError() << "block keys " << bk << " / values " << bv
                         << " must be [" << tokens << ", kv_heads, "
                         << query.getDimSize(2) << "] / [" << tokens
                         << ", kv_heads, " << result.getDimSize(2) << "]";
  return success();
}

LogicalResult AttentionOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<KVCacheOp> cache = lookupCache(*this, tables, getCacheAttr());
  if (failed(cache))
    return failure();
  auto query = tensorType(getQuery()), result = tensorType(getResult());
  int64_t heads = query.getDimSize(1);
  if (heads % cache->getKvHeads() != 0)
    return emitOpError() << "query heads (" << heads
                         << ") are not a multiple of cache @"
                         << cache->getSymName() << "'s kv_heads ("
                         << cache->getKvHeads() << ")";
  if (query.getDimSize(2) != cache->getQkDim() ||
      result.getDimSize(2) != cache->getVDim())
    return emitOpError() << "query/result head dims (" << query.getDimSize(2)
                         << "/" << result.getDimSize(2)
                         << ") do not match cache @" << cache->getSymName()
                         << " (" << cache->getQkDim() << "/" << cache->getVDim()
                         << ")";
  if (getBlockKeys() &&
      tensorType(getBlockKeys()).getDimSize(1) != cache->getKvHeads())
    return emitOpError() << "block keys have "
                         << tensorType(getBlockKeys()).getDimSize(1)
                         << " heads but cache @" << cache->getSymName()
                         << " has " << cache->getKvHeads();
  // A ring buffer only keeps `capacity` positions: the attention must not look
  // further.
  if (cache->getWindow() > 0 &&
      (getWindow() == 0 || getWindow() > cache->getCapacity()))
    return emitOpError()
           << "cache @" << cache->getSymName() << " keeps only "
           << cache->getCapacity()
           << " positions, so the attention needs a window of at most "
              "that, got "
           << getWindow();
  if (auto sinks = getSinksAttr()) {
    FailureOr<WeightOp> weight = lookupWeight(*this, tables, sinks, "sinks");
    if (failed(weight) ||
        failed(expectPlainWeight(*this, *weight, "sinks", {heads})))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

LogicalResult RouterOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")))
    return failure();
  RoutingType routing = getResult().getType();
  int64_t tokens = tensorType(getInput()).getDimSize(0);
  if (routing.getTokens() != tokens || routing.getTopK() != getTopK())
    return emitOpError() << "result " << routing
                         << " must have tokens = " << tokens
                         << " and top_k = " << getTopK();
  int64_t experts = routing.getExperts(), groups = getNGroup();
  if (groups < 1 || experts % groups != 0)
    return emitOpError() << "n_group (" << groups << ") must divide the "
                         << experts << " experts";
  if (getTopkGroup() < 1 || getTopkGroup() > groups)
    return emitOpError() << "topk_group (" << getTopkGroup()
                         << ") must be in [1, n_group = " << groups << "]";
  if (getTopK() > getTopkGroup() * (experts / groups))
    return emitOpError() << "top_k (" << getTopK() << ") exceeds the "
                         << getTopkGroup() * (experts / groups)
                         << " experts left in the kept groups";
  if (!(getScaling().convertToDouble() > 0))
    return emitOpError() << "scaling must be positive, got "
                         << getScaling().convertToDouble();
  return success();
}

LogicalResult RouterOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<WeightOp> gate = lookupWeight(*this, tables, getGateAttr(), "gate");
  if (failed(gate))
    return failure();
  int64_t experts = getResult().getType().getExperts();
  if (failed(
          expectPlainWeight(*this, *gate, "gate",
                            {experts, tensorType(getInput()).getDimSize(1)})))
    return failure();
  if (auto biasRef = getBiasAttr()) {
    FailureOr<WeightOp> bias = lookupWeight(*this, tables, biasRef, "bias");
    if (failed(bias) ||
        failed(expectPlainWeight(*this, *bias, "bias", {experts})))
      return failure();
  }
  return success();
}

LogicalResult MoeOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")))
    return failure();
  if (getInput().getType() != getResult().getType())
    return emitOpError() << "result " << getResult().getType()
                         << " must have the input's type "
                         << getInput().getType();
  if (getRouting().getType().getTokens() !=
      tensorType(getInput()).getDimSize(0))
    return emitOpError() << "routing " << getRouting().getType()
                         << " is for a different "
                         << "token count than input " << getInput().getType();
  return success();
}

LogicalResult MoeOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<WeightOp> gateUp =
      lookupWeight(*this, tables, getGateUpAttr(), "gate_up");
  FailureOr<WeightOp> down = lookupWeight(*this, tables, getDownAttr(), "down");
  if (failed(gateUp) || failed(down))
    return failure();
  int64_t experts = getRouting().getType().getExperts();
  int64_t hidden = tensorType(getInput()).getDimSize(1);
  ArrayRef<int64_t> gu = gateUp->getTensorType().getShape();
  if (gu.size() != 3 || gu[0] != experts || gu[1] % 2 != 0 || gu[2] != hidden)
    return emitOpError() << "gate_up @" << gateUp->getSymName() << " has shape "
                         << shapeString(gu) << ", expected [" << experts
                         << ", 2 * intermediate, " << hidden << "]";
  ArrayRef<int64_t> dn = down->getTensorType().getShape();
  if (dn.size() != 3 || dn[0] != experts || dn[1] != hidden ||
      dn[2] != gu[1] / 2)
    return emitOpError() << "down @" << down->getSymName() << " has shape "
                         << shapeString(dn) << ", expected [" << experts << ", "
                         << hidden << ", " << gu[1] / 2 << "]";
  if (failed(expectQuantMatches(*this, getQuant(), *gateUp)))
    return failure();
  return expectQuantMatches(*this, getQuant(), *down);
}

//===----------------------------------------------------------------------===//
// Speculative decoding and collectives
//===----------------------------------------------------------------------===//

LogicalResult AcceptOp::verify() {
  if (failed(expectRank(*this, getDraft(), 1, "draft")) ||
      failed(expectRank(*this, getForced(), 1, "forced")) ||
      failed(expectRank(*this, getCommitted(), 1, "committed")))
    return failure();
  int64_t b = tensorType(getDraft()).getDimSize(0);
  if (b < 1 || b > 16)
    return emitOpError() << "blocks of 1 to 16 tokens, got " << b;
  if (tensorType(getForced()).getDimSize(0) != 1)
    return emitOpError() << "forced must be tensor<1xi32>, got "
                         << getForced().getType();
  if (tensorType(getCommitted()).getDimSize(0) != b + 1)
    return emitOpError() << "committed holds the count and up to " << b
                         << " tokens: tensor<" << b + 1 << "xi32>, got "
                         << getCommitted().getType();
  if (getMaskToken() < 0)
    return emitOpError() << "mask_token must be a token id, got "
                         << getMaskToken();
  auto logits = tensorType(getLogits());
  if (logits.getRank() != 2 || logits.getDimSize(0) != b)
    return emitOpError() << "logits must be [" << b << ", vocab] f32, got "
                         << getLogits().getType();
  auto sampling = tensorType(getSampling());
  if (sampling.getRank() != 1 || sampling.getDimSize(0) != 2)
    return emitOpError() << "sampling must be tensor<2xi32> (temperature "
                            "bits, seed), got "
                         << getSampling().getType();
  return success();
}

LogicalResult DraftFillOp::verify() {
  if (failed(expectRank(*this, getBlock(), 1, "block")))
    return failure();
  int64_t b = tensorType(getBlock()).getDimSize(0);
  if (b < 2 || b > 16)
    return emitOpError() << "blocks of 2 to 16 tokens, got " << b;
  if (getIndex() < 1 || getIndex() >= b)
    return emitOpError() << "index " << getIndex()
                         << " is not a drafted slot of a block of " << b
                         << " (1 to " << b - 1 << ")";
  return success();
}

LogicalResult StateOp::verify() {
  auto type = getTensorType();
  if (!type.hasStaticShape() || type.getElementTypeBitWidth() % 8 != 0)
    return emitOpError() << "@" << getSymName()
                         << " needs a static shape of whole bytes, got "
                         << type;
  return success();
}

namespace {
FailureOr<StateOp> lookupState(Operation *op, SymbolTableCollection &tables,
                               FlatSymbolRefAttr ref, Type expected) {
  FailureOr<StateOp> state =
      lookup<StateOp>(op, tables, ref, "state", "tile.state");
  if (succeeded(state) && state->getType() != expected)
    return op->emitOpError() << "state " << ref << " holds " << state->getType()
                             << ", expected " << expected;
  return state;
}
} // namespace

LogicalResult StateReadOp::verifySymbolUses(SymbolTableCollection &tables) {
  return lookupState(*this, tables, getStateAttr(), getType());
}

LogicalResult SpecUpdateOp::verifySymbolUses(SymbolTableCollection &tables) {
  if (failed(expectRank(*this, getNextTokens(), 1, "next tokens")))
    return failure();
  if (failed(lookupState(*this, tables, getTokensAttr(),
                         getNextTokens().getType())) ||
      failed(lookupState(*this, tables, getPositionsAttr(),
                         getNextPositions().getType())))
    return failure();
  return success();
}

LogicalResult ConcatOp::verifySymbolUses(SymbolTableCollection &tables) {
  auto norms = getNorms();
  if (!norms)
    return success();
  int64_t axis = getAxis();
  for (auto [index, entry] : llvm::enumerate(*norms)) {
    auto ref = dyn_cast<FlatSymbolRefAttr>(entry);
    if (!ref)
      continue;
    auto type = tensorType(getInputs()[index]);
    FailureOr<WeightOp> weight = lookupWeight(*this, tables, ref, "norm");
    if (failed(weight) ||
        failed(expectPlainWeight(*this, *weight, "norm",
                                 {type.getDimSize(type.getRank() - 1)})))
      return failure();
    if (axis != type.getRank() - 1)
      return emitOpError() << "norms need the concat along the last axis";
  }
  return success();
}

LogicalResult AllReduceOp::verify() {
  if (getRanks() < 1)
    return emitOpError() << "ranks must be >= 1, got " << getRanks();
  return success();
}

LogicalResult AllGatherOp::verify() {
  auto in = tensorType(getInput()), out = tensorType(getResult());
  if (getRanks() < 1)
    return emitOpError() << "ranks must be >= 1, got " << getRanks();
  if (getAxis() < 0 || getAxis() >= in.getRank())
    return emitOpError() << "axis " << getAxis() << " is out of range for "
                         << in;
  SmallVector<int64_t> expected(in.getShape());
  expected[getAxis()] *= getRanks();
  if (out.getShape() != ArrayRef<int64_t>(expected) ||
      out.getElementType() != in.getElementType())
    return emitOpError() << "result " << out << " must be "
                         << shapeString(expected) << " of "
                         << in.getElementType();
  return success();
}

LogicalResult AllToAllOp::verify() {
  auto in = tensorType(getInput()), out = tensorType(getResult());
  int64_t ranks = getRanks(), split = getSplitAxis(), concat = getConcatAxis();
  if (ranks < 1)
    return emitOpError() << "ranks must be >= 1, got " << ranks;
  if (split < 0 || split >= in.getRank() || concat < 0 ||
      concat >= in.getRank())
    return emitOpError() << "split/concat axes (" << split << ", " << concat
                         << ") are out of range for " << in;
  if (in.getDimSize(split) % ranks != 0)
    return emitOpError() << "split dim " << split << " ("
                         << in.getDimSize(split) << ") is not divisible by "
                         << ranks << " ranks";
  SmallVector<int64_t> expected(in.getShape());
  expected[split] /= ranks;
  expected[concat] *= ranks;
  if (out.getShape() != ArrayRef<int64_t>(expected) ||
      out.getElementType() != in.getElementType())
    return emitOpError() << "result " << out << " must be "
                         << shapeString(expected) << " of "
                         << in.getElementType();
  return success();
}
