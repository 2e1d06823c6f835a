//===- TileFusedOps.cpp - Verifiers of the fused graph ops
//-----------------===//
#include "dialects/tile/TileDialect.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::tile;

namespace {

RankedTensorType tensorOf(Value v) {
  return cast<RankedTensorType>(v.getType());
}

std::string dims(ArrayRef<int64_t> shape) {
  std::string text;
  for (int64_t d : shape)
    text += (text.empty() ? "" : "x") + std::to_string(d);
  return "[" + text + "]";
}

} // namespace

void FusedLinearOp::getEffects(
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>
        &effects) {
  if (getEpilogue() == Epilogue::rope_kcache ||
      getEpilogue() == Epilogue::vcache)
    effects.emplace_back(MemoryEffects::Write::get(), KVCacheResource::get());
}

LogicalResult FusedLinearOp::verify() {
  auto in = tensorOf(getInput());
  if (in.getRank() != 2)
    return emitOpError() << "input must be [T, K], got " << in;
  int64_t tokens = in.getDimSize(0);
  if (bool(getNorm()) != bool(getEps()))
    return emitOpError() << "norm(@w, eps) needs both the weight and eps";
  if (getEps() && !(getEps()->convertToDouble() > 0))
    return emitOpError() << "eps must be positive";
  Epilogue epi = getEpilogue();
  bool needsPositions = epi == Epilogue::rope || epi == Epilogue::rope_kcache ||
                        epi == Epilogue::vcache;
  if (needsPositions != bool(getPositions()))
    return emitOpError() << "epilogue(" << stringifyEpilogue(epi) << ") "
                         << (needsPositions ? "needs" : "takes no")
                         << " positions";
  if ((epi == Epilogue::residual) != bool(getResidual()))
    return emitOpError() << "residual(%x) goes with epilogue(residual) only";
  if ((epi == Epilogue::silu_pair) != bool(getWeight2()))
    return emitOpError()
           << "a second weight goes with epilogue(silu_pair) only";
  bool rope = epi == Epilogue::rope || epi == Epilogue::rope_kcache;
  if (getHeadNorm() && !rope)
    return emitOpError() << "head_norm(@w, eps) goes with epilogue(rope) and "
                            "epilogue(rope_kcache) only";
  if (bool(getHeadNorm()) != bool(getHeadEps()) ||
      (getHeadEps() && !(getHeadEps()->convertToDouble() > 0)))
    return emitOpError() << "head_norm(@w, eps) needs the weight and eps > 0";
  if (bool(getLogitMultiplier()) != bool(getLogitSoftcap()) ||
      (getLogitMultiplier() && epi != Epilogue::argmax))
    return emitOpError()
           << "logit_cap(multiplier, softcap) goes with epilogue(argmax) only";
  if (getLogitSoftcap() && getLogitSoftcap()->convertToDouble() < 0)
    return emitOpError() << "logit_cap's softcap must be >= 0";
  if (rope != bool(getRotaryDim()) || rope != bool(getTheta()))
    return emitOpError()
           << "rope(rotary_dim, theta) goes with epilogue(rope) and "
              "epilogue(rope_kcache) only";
  bool cache = epi == Epilogue::rope_kcache || epi == Epilogue::vcache;
  if (cache != bool(getCache()))
    return emitOpError() << "cache(@kv) goes with the cache epilogues only";
  if (getPositions() && tensorOf(getPositions()).getDimSize(0) != tokens)
    return emitOpError() << "positions do not match the " << tokens
                         << " tokens";

  unsigned expectedResults = epi == Epilogue::argmax ? getNumResults() : 1;
  if (getNumResults() != expectedResults || getNumResults() == 0 ||
      getNumResults() > 2)
    return emitOpError() << "epilogue(" << stringifyEpilogue(epi)
                         << ") has the wrong number of results";
  if (cache) {
    if (!isa<TokenType>(getResult(0).getType()))
      return emitOpError() << "a cache epilogue yields a !tile.token";
    return success();
  }
  auto out = dyn_cast<RankedTensorType>(getResult(0).getType());
  if (!out || out.getDimSize(0) != tokens)
    return emitOpError() << "result must be a tensor with " << tokens
                         << " tokens";
  if (epi == Epilogue::argmax) {
    if (out.getRank() != 1 || !out.getElementType().isInteger(32))
      return emitOpError() << "epilogue(argmax) yields tensor<" << tokens
                           << "xi32> first";
    if (getNumResults() == 2) {
      auto logits = dyn_cast<RankedTensorType>(getResult(1).getType());
      if (!logits || logits.getRank() != 2 || !logits.getElementType().isF32())
        return emitOpError()
               << "epilogue(argmax)'s second result is the f32 logits";
    }
    return success();
  }
  if (epi == Epilogue::rope) {
    int64_t rotary = *getRotaryDim();
    if (out.getRank() != 3 || rotary <= 0 || rotary % 2 ||
        rotary > out.getDimSize(2))
      return emitOpError()
             << "epilogue(rope) yields [T, heads, D] with an even "
                "rotary_dim <= D";
    return success();
  }
  if (out.getRank() != 2)
    return emitOpError() << "result must be [T, N], got " << out;
  if (getResidual() && getResidual().getType() != out)
    return emitOpError() << "residual " << getResidual().getType()
                         << " must have the result's type " << out;
  return success();
}

LogicalResult FusedLinearOp::verifySymbolUses(SymbolTableCollection &tables) {
  auto weight =
      tables.lookupNearestSymbolFrom<WeightOp>(*this, getWeightAttr());
  if (!weight)
    return emitOpError() << "weight " << getWeightAttr()
                         << " is not a tile.weight";
  ArrayRef<int64_t> w = weight.getTensorType().getShape();
  int64_t k = tensorOf(getInput()).getDimSize(1);
  if (w.size() != 2 || w[1] != k)
    return emitOpError() << "weight @" << weight.getSymName() << " is "
                         << dims(w) << ", expected [N, " << k << "]";
  if (weight.getQuantKind() !=
      (getQuant() ? getQuant()->getKind() : QuantKind::none))
    return emitOpError() << "quant scheme does not match weight @"
                         << weight.getSymName();
  if (auto w2Ref = getWeight2Attr()) {
    auto w2 = tables.lookupNearestSymbolFrom<WeightOp>(*this, w2Ref);
    if (!w2 || w2.getTensorType() != weight.getTensorType() ||
        w2.getQuant() != weight.getQuant())
      return emitOpError() << "second weight " << w2Ref
                           << " must be a tile.weight like @"
                           << weight.getSymName();
  }
  if (auto normRef = getNormAttr()) {
    auto norm = tables.lookupNearestSymbolFrom<WeightOp>(*this, normRef);
    if (!norm || norm.getTensorType().getShape() != ArrayRef<int64_t>{k})
      return emitOpError() << "norm " << normRef << " must be a [" << k
                           << "] tile.weight";
  }
  if (auto headRef = getHeadNormAttr()) {
    auto norm = tables.lookupNearestSymbolFrom<WeightOp>(*this, headRef);
    int64_t d = 0;
    if (auto cacheRef = getCacheAttr()) {
      if (auto cache =
              tables.lookupNearestSymbolFrom<KVCacheOp>(*this, cacheRef))
        d = cache.getQkDim();
    } else if (auto out = dyn_cast<RankedTensorType>(getResult(0).getType());
               out && out.getRank() == 3) {
      d = out.getDimSize(2);
    }
    if (!norm || norm.getTensorType().getShape() != ArrayRef<int64_t>{d})
      return emitOpError() << "head_norm " << headRef << " must be a [" << d
                           << "] tile.weight";
  }
  if (auto cacheRef = getCacheAttr()) {
    auto cache = tables.lookupNearestSymbolFrom<KVCacheOp>(*this, cacheRef);
    if (!cache)
      return emitOpError() << "cache " << cacheRef << " is not a tile.kv_cache";
    int64_t dim =
        getEpilogue() == Epilogue::vcache ? cache.getVDim() : cache.getQkDim();
    if (w[0] != cache.getKvHeads() * dim)
      return emitOpError() << "weight rows (" << w[0]
                           << ") must be the cache's " << cache.getKvHeads()
                           << " heads x " << dim;
  }
  return success();
}

LogicalResult FusedMoeOp::verify() {
  if (tensorOf(getInput()).getRank() != 2)
    return emitOpError() << "input must be [T, H]";
  if (getTopK() < 1 || getTopK() > getExperts() || getNGroup() < 1 ||
      getExperts() % getNGroup() != 0 || getTopkGroup() < 1 ||
      getTopkGroup() > getNGroup())
    return emitOpError() << "router parameters out of range";
  return success();
}

LogicalResult FusedMoeOp::verifySymbolUses(SymbolTableCollection &tables) {
  int64_t h = tensorOf(getInput()).getDimSize(1), e = getExperts();
  auto gu = tables.lookupNearestSymbolFrom<WeightOp>(*this, getGateUpAttr());
  auto dn = tables.lookupNearestSymbolFrom<WeightOp>(*this, getDownAttr());
  auto gate = tables.lookupNearestSymbolFrom<WeightOp>(*this, getGateAttr());
  if (!gu || !dn || !gate)
    return emitOpError()
           << "gate, gate_up and down must be tile.weight symbols";
  ArrayRef<int64_t> g = gu.getTensorType().getShape(),
                    d = dn.getTensorType().getShape();
  if (g.size() != 3 || g[0] != e || g[2] != h || d.size() != 3 || d[0] != e ||
      d[1] != h || d[2] * 2 != g[1])
    return emitOpError() << "experts " << dims(g) << " / " << dims(d)
                         << " do not fit " << e << " experts of hidden " << h;
  if (gate.getTensorType().getShape() != ArrayRef<int64_t>{e, h})
    return emitOpError() << "router gate must be [" << e << ", " << h << "]";
  return success();
}
