//===- TileAttrs.td - Attributes and enums of the tile dialect ------------===//
#ifndef TILE_ATTRS_TD
#define TILE_ATTRS_TD

include "TileBase.td"

def Tile_QuantKind : I32EnumAttr<"QuantKind", "how a weight is stored", [
  I32EnumAttrCase<"none", 0>,      // bf16/f16/f32, no scales
  I32EnumAttrCase<"fp8_block", 1>, // E4M3FN with one f32 scale per block (128x128)
  I32EnumAttrCase<"mxfp4", 2>      // OCP MX: E2M1 elements, one E8M0 scale per 32
]> {
  let cppNamespace = "::mlir::tile";
  let genSpecializedAttr = 0;
}

def Tile_QuantAttr : Tile_Attr<"Quant", "quant"> {
  let summary = "quantization scheme of a weight";
  let description = [{
    `#tile.quant<none>`, `#tile.quant<fp8_block [128, 128]>` (block over the two
    trailing dims, scale tensor `<source>_scale_inv`), `#tile.quant<mxfp4 [32]>`
    (block of the trailing dim, E8M0 scales `<source>_scale`).
  }];
  let parameters = (ins EnumParameter<Tile_QuantKind>:$kind,
                        ArrayRefParameter<"int64_t">:$block);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The element type a weight stored in this scheme must have.
    bool acceptsElementType(::mlir::Type type) const;
    bool isNone() const { return getKind() == QuantKind::none; }
  }];
}

def Tile_MaskKind : I32EnumAttr<"MaskKind", "attention mask inside the query block", [
  I32EnumAttrCase<"causal", 0>,
  I32EnumAttrCase<"bidirectional", 1>
]> {
  let cppNamespace = "::mlir::tile";
}

def Tile_ReduceKind : I32EnumAttr<"ReduceKind", "collective reduction", [
  I32EnumAttrCase<"sum", 0>,
  I32EnumAttrCase<"max", 1>
]> {
  let cppNamespace = "::mlir::tile";
}

def Tile_Epilogue : I32EnumAttr<"Epilogue", "what a fused linear does with its rows", [
  I32EnumAttrCase<"store", 0>,       // y
  I32EnumAttrCase<"residual", 1>,    // residual + y
  I32EnumAttrCase<"silu_pair", 2>,   // silu(y) * y2 (the second weight)
  I32EnumAttrCase<"rope", 3>,        // per-head RoPE, stored [T, heads, D]
  I32EnumAttrCase<"rope_kcache", 4>, // per-head RoPE, into the key cache
  I32EnumAttrCase<"vcache", 5>,      // into the value cache
  I32EnumAttrCase<"argmax", 6>       // logits and their argmax
]> {
  let cppNamespace = "::mlir::tile";
}

def Tile_RoleAttr : Tile_Attr<"Role", "role"> {
  let summary = "warps per role and register budgets of a task's CTA";
  let description = [{
    `#tile.role<sched = 1, load = 1, compute = 6, regs = [40, 232], smem = 49152>`:
    warp counts of the scheduler, loader and compute roles, the registers per
    thread each role may hold (loader, compute) and the shared memory the task
    needs in bytes.
  }];
  let parameters = (ins "int64_t":$sched, "int64_t":$load, "int64_t":$compute,
                        ArrayRefParameter<"int64_t">:$regs, "int64_t":$smem);
  let assemblyFormat = [{
    `<` `sched` `=` $sched `,` `load` `=` $load `,` `compute` `=` $compute `,`
    `regs` `=` `[` $regs `]` `,` `smem` `=` $smem `>`
  }];
  let extraClassDeclaration = [{
    int64_t warps() const { return getSched() + getLoad() + getCompute(); }
  }];
}

#endif // TILE_ATTRS_TD
