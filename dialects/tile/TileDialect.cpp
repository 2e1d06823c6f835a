//===- TileDialect.cpp - tile dialect registration, attributes and types --===//
#include "dialects/tile/TileDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::tile;

#include "dialects/tile/TileDialect.cpp.inc"
#include "dialects/tile/TileEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/tile/TileAttrs.cpp.inc"
#define GET_TYPEDEF_CLASSES
#include "dialects/tile/TileTypes.cpp.inc"

void TileDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/tile/TileAttrs.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/tile/TileTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/tile/TileOps.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// QuantAttr: #tile.quant<none> | #tile.quant<fp8_block [128, 128]> | <mxfp4
// [32]>
//===----------------------------------------------------------------------===//

Attribute QuantAttr::parse(AsmParser &parser, Type) {
  std::string keyword;
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess() || parser.parseKeywordOrString(&keyword))
    return {};
  std::optional<QuantKind> kind = symbolizeQuantKind(keyword);
  if (!kind) {
    parser.emitError(loc, "unknown quantization scheme '")
        << keyword << "' (expected none, fp8_block or mxfp4)";
    return {};
  }
  SmallVector<int64_t> block;
  if (succeeded(parser.parseOptionalLSquare())) {
    if (parser.parseCommaSeparatedList(
            [&]() { return parser.parseInteger(block.emplace_back()); }) ||
        parser.parseRSquare())
      return {};
  }
  if (parser.parseGreater())
    return {};
  return parser.getChecked<QuantAttr>(parser.getContext(), *kind, block);
}

void QuantAttr::print(AsmPrinter &printer) const {
  printer << "<" << stringifyQuantKind(getKind());
  if (!getBlock().empty()) {
    printer << " [";
    llvm::interleaveComma(getBlock(), printer);
    printer << "]";
  }
  printer << ">";
}

LogicalResult QuantAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                QuantKind kind, ArrayRef<int64_t> block) {
  switch (kind) {
  case QuantKind::none:
    if (!block.empty())
      return emitError() << "#tile.quant<none> takes no block sizes";
    return success();
  case QuantKind::fp8_block:
    if (block.size() != 2 || block[0] <= 0 || block[1] <= 0)
      return emitError() << "#tile.quant<fp8_block> needs two positive block "
                            "sizes, e.g. [128, 128]";
    return success();
  case QuantKind::mxfp4:
    // OCP MX v1.0 fixes the block at 32 elements for MXFP4.
    if (block.size() != 1 || block[0] != 32)
      return emitError() << "#tile.quant<mxfp4> needs block [32] (OCP MX v1.0)";
    return success();
  }
  return emitError() << "invalid quantization kind";
}

bool QuantAttr::acceptsElementType(Type type) const {
  switch (getKind()) {
  case QuantKind::none:
    return isa<BFloat16Type, Float16Type, Float32Type>(type);
  case QuantKind::fp8_block:
    return isa<Float8E4M3FNType>(type);
  case QuantKind::mxfp4:
    return isa<Float4E2M1FNType>(type);
  }
  return false;
}

//===----------------------------------------------------------------------===//
// RoutingType
//===----------------------------------------------------------------------===//

LogicalResult RoutingType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  int64_t tokens, int64_t topK,
                                  int64_t experts) {
  if (tokens <= 0)
    return emitError() << "!tile.routing needs tokens > 0, got " << tokens;
  if (experts <= 0)
    return emitError() << "!tile.routing needs experts > 0, got " << experts;
  if (topK <= 0 || topK > experts)
    return emitError()
           << "!tile.routing needs 0 < top_k <= experts, got top_k = " << topK
           << " with " << experts << " experts";
  return success();
}
