//===- TileFusedOps.td - Fused graph ops (produced by tile-fuse) ----------===//
//
// What tile-fuse folds producers and consumers into: ops that each become one
// family of tasks with no global synchronisation inside. They keep graph-level
// value semantics, so the verifiers and the reference semantics still apply.
//
//===----------------------------------------------------------------------===//
#ifndef TILE_FUSED_OPS_TD
#define TILE_FUSED_OPS_TD

def Tile_FusedLinearOp : Tile_SymbolUserOp<"fused_linear", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "a linear with its prologue (RMSNorm) and epilogue fused in";
  let description = [{
    `y = W . norm(x)` over `x : [T, K]` with `W : [N, K]`, then `epilogue`:
    `store` (`[T, N]`), `residual` (`residual + y`), `silu_pair` (`silu(y) * y2`,
    `y2` from the second weight), `rope` (`[T, heads, D]` with RoPE at
    `positions`), `rope_kcache` / `vcache` (written into `cache` at `positions`;
    the result is a token), `argmax` (`tensor<Txi32>`, and the f32 logits when a
    second result is present). With `head_norm(@w, eps)` the rope epilogues
    first RMS-normalize each head of `y` (DFlash's q_norm / k_norm, `w : [D]`);
    with `logit_cap(m, c)` argmax logits are `tanh(y * m / c) * c` (`c = 0`:
    just `y * m`).
  }];
  let arguments = (ins Tile_Activation:$input, Optional<Tile_TokenIds>:$positions,
                       Optional<Tile_Activation>:$residual,
                       FlatSymbolRefAttr:$weight,
                       OptionalAttr<FlatSymbolRefAttr>:$weight2,
                       OptionalAttr<Tile_QuantAttr>:$quant,
                       OptionalAttr<FlatSymbolRefAttr>:$norm,
                       OptionalAttr<F64Attr>:$eps,
                       Tile_Epilogue:$epilogue,
                       OptionalAttr<Tile_I64Attr>:$rotary_dim,
                       OptionalAttr<F64Attr>:$theta,
                       OptionalAttr<FlatSymbolRefAttr>:$cache,
                       OptionalAttr<FlatSymbolRefAttr>:$head_norm,
                       OptionalAttr<F64Attr>:$head_eps,
                       OptionalAttr<F64Attr>:$logit_multiplier,
                       OptionalAttr<F64Attr>:$logit_softcap);
  let results = (outs Variadic<AnyType>:$results);
  let assemblyFormat = [{
    $input `,` $weight (`,` $weight2^)? (`quant` $quant^)?
    (`norm` `(` $norm^ `,` $eps `)`)? `epilogue` `(` $epilogue `)`
    (`positions` `(` $positions^ `:` type($positions) `)`)?
    (`residual` `(` $residual^ `:` type($residual) `)`)?
    (`rope` `(` $rotary_dim^ `,` $theta `)`)? (`cache` `(` $cache^ `)`)?
    (`head_norm` `(` $head_norm^ `,` $head_eps `)`)?
    (`logit_cap` `(` $logit_multiplier^ `,` $logit_softcap `)`)? attr-dict `:` type($input) `->` type($results)
  }];
  let hasVerifier = 1;
}

def Tile_FusedMoeOp : Tile_SymbolUserOp<"fused_moe", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "x + moe(rms_norm(x)): router, experts and the residual add";
  let arguments = (ins Tile_Activation:$input, FlatSymbolRefAttr:$norm, F64Attr:$eps,
                       FlatSymbolRefAttr:$gate, OptionalAttr<FlatSymbolRefAttr>:$bias,
                       FlatSymbolRefAttr:$gate_up, FlatSymbolRefAttr:$down,
                       OptionalAttr<Tile_QuantAttr>:$quant,
                       Tile_I64Attr:$experts, Tile_I64Attr:$top_k,
                       DefaultValuedAttr<Tile_I64Attr, "1">:$n_group,
                       DefaultValuedAttr<Tile_I64Attr, "1">:$topk_group,
                       UnitAttr:$renorm,
                       DefaultValuedAttr<F64Attr, "1.0">:$scaling);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $input `norm` `(` $norm `,` $eps `)` `router` `(` $gate (`,` $bias^)? `)`
    `experts` `(` $experts `,` $gate_up `,` $down `)` (`quant` $quant^)?
    `top_k` `(` $top_k `)` `groups` `(` $n_group `,` $topk_group `)`
    (`renorm` $renorm^)? (`scaling` `(` $scaling^ `)`)? attr-dict `:` type($input)
  }];
  let hasVerifier = 1;
}

#endif // TILE_FUSED_OPS_TD
