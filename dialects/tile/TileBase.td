//===- TileBase.td - The tile dialect: definition and shared constraints -===//
//
// The tile dialect describes one decoding step of a MoE model at two levels: graph ops
// with model semantics (embed, linear, attention, moe, ...) over value-semantic tensors,
// and, after partitioning, tasks scheduled onto SMs.
//
//===----------------------------------------------------------------------===//
#ifndef TILE_BASE_TD
#define TILE_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Tile_Dialect : Dialect {
  let name = "tile";
  let cppNamespace = "::mlir::tile";
  let summary = "Graph and task IR for persistent-megakernel MoE decoding";
  let description = [{
    Graph-level ops carry the semantics of a MiMo/DFlash decoding step over
    `tensor<...>` values; weights and KV caches are module-level symbols bound to
    checkpoint tensors and runtime buffers. Task-level ops (after tile-partition)
    describe per-SM work lists, events and warp roles.
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

class Tile_Op<string mnemonic, list<Trait> traits = []>
    : Op<Tile_Dialect, mnemonic, traits>;

class Tile_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Tile_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

class Tile_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Tile_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

// An i64 attribute read back as a signed int64_t (I64Attr yields uint64_t), so that
// verifiers can reject negative sizes instead of seeing huge ones.
def Tile_I64Attr : TypedSignlessIntegerAttrBase<I64, "int64_t",
    "64-bit signless integer attribute"> {
  let convertFromStorage = "$_self.getValue().getSExtValue()";
}

// Activations travel in bf16 (the model's dtype) or f32 (logits, accumulators).
def Tile_ActElement : AnyTypeOf<[BF16, F32]>;
def Tile_Activation : RankedTensorOf<[BF16, F32]>;
def Tile_TokenIds : RankedTensorOf<[I32]>;

#endif // TILE_BASE_TD
