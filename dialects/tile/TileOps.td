//===- TileOps.td - Graph-level ops of the tile dialect --------------------===//
//
// Graph ops carry model semantics, not loop nests. Weights and KV caches are
// module-level symbols (`tile.weight`, `tile.kv_cache`); ops that use them verify
// the referenced declaration's shape and dtype.
//
//===----------------------------------------------------------------------===//
#ifndef TILE_OPS_TD
#define TILE_OPS_TD

include "TileBase.td"
include "TileAttrs.td"
include "TileTypes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Tile_KVCacheResource : Resource<"::mlir::tile::KVCacheResource">;
def Tile_StateResource : Resource<"::mlir::tile::StateResource">;

class Tile_SymbolUserOp<string mnemonic, list<Trait> traits = []>
    : Tile_Op<mnemonic, !listconcat(traits,
          [DeclareOpInterfaceMethods<SymbolUserOpInterface>])>;

//===----------------------------------------------------------------------===//
// Declarations: weights and KV caches
//===----------------------------------------------------------------------===//

def Tile_WeightOp : Tile_Op<"weight", [Symbol]> {
  let summary = "a model weight bound to a checkpoint tensor";
  let description = [{
    Declares a weight of logical type `type` (a quantized weight has the element
    type of its scheme: `f8E4M3FN` for fp8_block, `f4E2M1FN` for mxfp4) stored in
    the checkpoint under `source`. Scales live beside it (see `#tile.quant`).

    ```mlir
    tile.weight @model.layers.1.mlp.experts.down : tensor<8x64x64xf4E2M1FN>
        quant <mxfp4 [32]> = "model.layers.1.mlp.experts.down_proj"
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<AnyRankedTensor>:$type,
                       OptionalAttr<Tile_QuantAttr>:$quant,
                       StrAttr:$source);
  let assemblyFormat = [{
    $sym_name `:` $type (`quant` $quant^)? `=` $source attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
    QuantKind getQuantKind() {
      return getQuant() ? getQuant()->getKind() : QuantKind::none;
    }
  }];
}

def Tile_KVCacheOp : Tile_Op<"kv_cache", [Symbol]> {
  let summary = "a per-layer KV cache (a ring buffer when it has a window)";
  let description = [{
    Holds keys `[capacity, kv_heads, qk_dim]` and values `[capacity, kv_heads,
    v_dim]`. With `window(W)` it keeps only the last `capacity >= W` positions.

    ```mlir
    tile.kv_cache @kv.layer1 kv_heads(4) dims(48, 32) capacity(64) window(8) : bf16
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       Tile_I64Attr:$kv_heads, Tile_I64Attr:$qk_dim, Tile_I64Attr:$v_dim,
                       Tile_I64Attr:$capacity,
                       DefaultValuedAttr<Tile_I64Attr, "0">:$window,
                       TypeAttrOf<Tile_ActElement>:$element_type);
  let assemblyFormat = [{
    $sym_name `kv_heads` `(` $kv_heads `)` `dims` `(` $qk_dim `,` $v_dim `)`
    `capacity` `(` $capacity `)` (`window` `(` $window^ `)`)? `:` $element_type
    attr-dict
  }];
  let hasVerifier = 1;
}

def Tile_StateOp : Tile_Op<"state", [Symbol]> {
  let summary = "a small tensor that outlives the step (speculative decoding)";
  let description = [{
    Step-persistent state: a step reads what the previous one wrote (or what
    the host wrote before it, e.g. the prompt chunks of a prefill). DFlash keeps
    the next block to verify and its positions here, so that consecutive steps
    need nothing from the host.

    ```mlir
    tile.state @spec.tokens : tensor<8xi32>
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttrOf<AnyRankedTensor>:$type);
  let assemblyFormat = "$sym_name `:` $type attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
  }];
}

def Tile_StateReadOp : Tile_SymbolUserOp<"state_read",
    [MemoryEffects<[MemRead<Tile_StateResource>]>]> {
  let summary = "the value a tile.state holds when the step starts";
  let arguments = (ins FlatSymbolRefAttr:$state);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$state attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Dense ops
//===----------------------------------------------------------------------===//

def Tile_EmbedOp : Tile_SymbolUserOp<"embed", [Pure]> {
  let summary = "token embedding lookup, optionally scaled";
  let arguments = (ins Tile_TokenIds:$ids, FlatSymbolRefAttr:$table,
                       DefaultValuedAttr<F64Attr, "1.0">:$scale);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $ids `,` $table (`scale` `(` $scale^ `)`)? attr-dict `:` type($ids) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_RmsNormOp : Tile_SymbolUserOp<"rms_norm", [Pure, SameOperandsAndResultShape]> {
  let summary = "RMSNorm over the last dim, in fp32: x * rsqrt(mean(x^2) + eps) * w";
  let description = [{
    The weight has the size of the last dim, so `[T, heads, D]` inputs get a
    per-head norm with a `[D]` weight (DFlash's q_norm / k_norm).
  }];
  let arguments = (ins Tile_Activation:$input, FlatSymbolRefAttr:$weight, F64Attr:$eps);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $input `,` $weight `eps` `(` $eps `)` attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_LinearOp : Tile_SymbolUserOp<"linear", [Pure]> {
  let summary = "y = x W^T with a bf16, fp8 block-scaled or MXFP4 weight";
  let description = [{
    `x : [T, K]`, weight `[N, K]`, `y : [T, N]`. The `quant` scheme must be the
    weight's; it is repeated here so the IR says what each linear costs.
  }];
  let arguments = (ins Tile_Activation:$input, FlatSymbolRefAttr:$weight,
                       OptionalAttr<Tile_QuantAttr>:$quant);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $input `,` $weight (`quant` $quant^)? attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_RopeOp : Tile_Op<"rope", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "partial rotary embedding (rotate_half) on the first rotary_dim dims";
  let description = [{
    `input : [T, heads, D]`, `positions : [T]`. Dims `[0, rotary_dim)` rotate with
    `inv_freq = theta^(-2i/rotary_dim)`, cos/sin laid out `[f, f]`; the rest pass.
  }];
  let arguments = (ins Tile_Activation:$input, Tile_TokenIds:$positions,
                       Tile_I64Attr:$rotary_dim, F64Attr:$theta);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $input `,` $positions `rotary_dim` `(` $rotary_dim `)` `theta` `(` $theta `)`
    attr-dict `:` type($input) `,` type($positions)
  }];
  let hasVerifier = 1;
}

def Tile_SiluMulOp : Tile_Op<"silu_mul", [Pure, SameOperandsAndResultType]> {
  let summary = "silu(gate) * up";
  let arguments = (ins Tile_Activation:$gate, Tile_Activation:$up);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = "$gate `,` $up attr-dict `:` type($result)";
}

def Tile_AddOp : Tile_Op<"add", [Pure, SameOperandsAndResultType, Commutative]> {
  let summary = "elementwise sum (the residual add)";
  let arguments = (ins Tile_Activation:$lhs, Tile_Activation:$rhs);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Tile_ReshapeOp : Tile_Op<"reshape", [Pure]> {
  let summary = "view a tensor with another shape of the same size";
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Tile_ConcatOp : Tile_SymbolUserOp<"concat", [Pure]> {
  let summary = "concatenate along one axis (DFlash's tapped hidden states)";
  let description = [{
    tile-fuse may fold an RMSNorm producing input `i` into the concat:
    `norms` then holds, per input, the norm weight `@w` (a `[D]` tile.weight)
    or `unit` (none), and `eps` the norms' epsilon.
  }];
  let arguments = (ins Variadic<Tile_Activation>:$inputs, Tile_I64Attr:$axis,
                       OptionalAttr<ArrayAttr>:$norms, OptionalAttr<F64Attr>:$eps);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $inputs `axis` `(` $axis `)` attr-dict `:` type($inputs) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_ArgmaxOp : Tile_Op<"argmax", [Pure]> {
  let summary = "index of the largest value of the last dim (first on ties)";
  let arguments = (ins Tile_Activation:$input);
  let results = (outs Tile_TokenIds:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Tile_LogitCapOp : Tile_Op<"logit_cap", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "scale logits, then soft-cap them: tanh(x * m / c) * c";
  let description = [{
    DFlash drafters may multiply their logits (`output_multiplier`) and soft-cap
    them (`final_logit_softcapping`); `softcap(0)` means no cap.
  }];
  let arguments = (ins Tile_Activation:$input, F64Attr:$multiplier,
                       DefaultValuedAttr<F64Attr, "0.0">:$softcap);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $input `multiplier` `(` $multiplier `)` (`softcap` `(` $softcap^ `)`)? attr-dict
    `:` type($input)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Attention and KV caches
//===----------------------------------------------------------------------===//

def Tile_KVAppendOp : Tile_SymbolUserOp<"kv_append",
    [MemoryEffects<[MemWrite<Tile_KVCacheResource>]>]> {
  let summary = "write a block's keys and values into a KV cache at their positions";
  let description = [{
    `keys : [T, kv_heads, qk_dim]`, `values : [T, kv_heads, v_dim]`, `positions :
    [T]`. Caches are indexed by position: entries of rejected draft tokens are
    never read (reads stop at the query's position) and the next block, which
    starts right after the accepted ones, overwrites them.
  }];
  let arguments = (ins Tile_Activation:$keys, Tile_Activation:$values,
                       Tile_TokenIds:$positions, FlatSymbolRefAttr:$cache);
  let results = (outs Tile_TokenType:$token);
  let assemblyFormat = [{
    $keys `,` $values `,` $positions `into` $cache attr-dict `:` type($keys) `,`
    type($values) `,` type($positions)
  }];
  let hasVerifier = 1;
}

def Tile_AttentionOp : Tile_SymbolUserOp<"attention", [AttrSizedOperandSegments,
    MemoryEffects<[MemRead<Tile_KVCacheResource>]>]> {
  let summary = "GQA attention of a query block over a KV cache (full or sliding)";
  let description = [{
    `query : [T, heads, qk_dim]` at `positions : [T]` attends to the entries of
    `cache` at positions `<= p` and, with `window(W)`, `> p - W`. With
    `block(%k, %v)` the block's own keys/values (not cached, DFlash drafter) are
    attended too, under `mask` (causal or bidirectional, also limited by the
    window). Without `block`, `mask(bidirectional)` means the block's keys were
    appended to the cache (its `after` token): each query then also sees the
    cache keys after its own position, up to the block's last one. `sinks(@w)` adds a learned per-head logit to the softmax whose
    probability is then dropped; `value_scale(s)` multiplies the values. Scores
    are scaled by `scale`. The result is `[T, heads, v_dim]`.
  }];
  let arguments = (ins Tile_Activation:$query, Tile_TokenIds:$positions,
                       FlatSymbolRefAttr:$cache,
                       Variadic<Tile_TokenType>:$after,
                       Optional<Tile_Activation>:$block_keys,
                       Optional<Tile_Activation>:$block_values,
                       OptionalAttr<FlatSymbolRefAttr>:$sinks,
                       DefaultValuedAttr<Tile_MaskKind, "MaskKind::causal">:$mask,
                       F64Attr:$scale,
                       DefaultValuedAttr<F64Attr, "1.0">:$value_scale,
                       DefaultValuedAttr<Tile_I64Attr, "0">:$window);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $query `,` $positions `over` $cache (`after` $after^)?
    (`block` `(` $block_keys^ `,` $block_values `)`)?
    (`sinks` `(` $sinks^ `)`)? `mask` `(` $mask `)` `scale` `(` $scale `)`
    (`value_scale` `(` $value_scale^ `)`)? (`window` `(` $window^ `)`)? attr-dict
    `:` type($query) `,` type($positions)
    (`,` type($block_keys)^ `,` type($block_values))? `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def Tile_RouterOp : Tile_SymbolUserOp<"router", [Pure]> {
  let summary = "sigmoid router with correction bias, group-limited top-k, renorm";
  let description = [{
    `s = sigmoid(x W^T)`; experts are chosen by `s + bias` (bias only for choosing):
    with `groups(G, g)`, keep the `g` best of `G` equal groups (scored by the sum
    of their two best), then take `top_k`. Weights are the chosen `s`, divided by
    their sum (+1e-20) with `renorm`, times `scaling`.
  }];
  let arguments = (ins Tile_Activation:$input, FlatSymbolRefAttr:$gate,
                       OptionalAttr<FlatSymbolRefAttr>:$bias, Tile_I64Attr:$top_k,
                       DefaultValuedAttr<Tile_I64Attr, "1">:$n_group,
                       DefaultValuedAttr<Tile_I64Attr, "1">:$topk_group,
                       UnitAttr:$renorm,
                       DefaultValuedAttr<F64Attr, "1.0">:$scaling);
  let results = (outs Tile_RoutingType:$result);
  let assemblyFormat = [{
    $input `,` $gate (`bias` `(` $bias^ `)`)? `top_k` `(` $top_k `)`
    `groups` `(` $n_group `,` $topk_group `)` (`renorm` $renorm^)?
    (`scaling` `(` $scaling^ `)`)? attr-dict `:` type($input) `->`
    qualified(type($result))
  }];
  let hasVerifier = 1;
}

def Tile_MoeOp : Tile_SymbolUserOp<"moe", [Pure]> {
  let summary = "routed experts: down(silu(gate x) * up x), weighted and summed";
  let description = [{
    `gate_up : [E, 2I, H]` (rows `[0, I)` gate, `[I, 2I)` up), `down : [E, H, I]`.
    Each token's output is the routing-weighted sum over its top-k experts.
  }];
  let arguments = (ins Tile_Activation:$input, Tile_RoutingType:$routing,
                       FlatSymbolRefAttr:$gate_up, FlatSymbolRefAttr:$down,
                       OptionalAttr<Tile_QuantAttr>:$quant);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $input `,` $routing `experts` `(` $gate_up `,` $down `)` (`quant` $quant^)?
    attr-dict `:` type($input) `,` qualified(type($routing)) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Speculative decoding
//===----------------------------------------------------------------------===//

def Tile_AcceptOp : Tile_Op<"accept", [Pure,
    AllTypesMatch<["draft", "predicted", "positions", "next_tokens",
                   "next_positions"]>]> {
  let summary = "DFlash verify: the accepted draft prefix plus the bonus token";
  let description = [{
    `draft : [B]` is the verified block `[t_s, d_1 .. d_(B-1)]` at `positions`
    `s .. s+B-1`, `predicted : [B]` the target's tokens `p_0 .. p_(B-1)` there.
    `a` is the length of the prefix where `d_j == p_(j-1)`, or `forced[0] - 1`
    when `forced[0] > 0` (a prefill chunk of that many prompt tokens). Results:
    `committed : [B+1]` = `[a + 1, d_1 .. d_a, p_a, -1 ...]`; the next block to
    draft, `next_tokens = [p_a, mask_token x (B-1)]` at `next_positions =
    s+a+1 .. s+a+B`.

    Sampling: `sampling : [2]` holds the temperature (f32 bits) and a seed.
    At temperature 0 the above (greedy). Above it, with `P_j =
    softmax(logits[j] / temperature)` and the drafts taken as certain (the
    drafter's argmax), `d_(j+1)` is accepted with probability `P_j(d_(j+1))`;
    at the first rejection the token is drawn from `P_j` without `d_(j+1)`,
    and when all are accepted the bonus from `P_(B-1)`: the output has the
    target's distribution. The uniform numbers come from a hash of the seed and
    the position decided (docs/engine.md).
  }];
  let arguments = (ins Tile_TokenIds:$draft, Tile_TokenIds:$predicted,
                       Tile_TokenIds:$positions, Tile_TokenIds:$forced,
                       RankedTensorOf<[F32]>:$logits, Tile_TokenIds:$sampling,
                       Tile_I64Attr:$mask_token);
  let results = (outs Tile_TokenIds:$committed, Tile_TokenIds:$next_tokens,
                      Tile_TokenIds:$next_positions);
  let assemblyFormat = [{
    $draft `,` $predicted `at` $positions `forced` `(` $forced `)`
    `sample` `(` $logits `,` $sampling `)` `mask_token` `(` $mask_token `)`
    attr-dict `:` type($draft) `,` type($forced) `,` type($logits) `,`
    type($sampling) `->` type($committed)
  }];
  let hasVerifier = 1;
}

def Tile_SpecUpdateOp : Tile_SymbolUserOp<"spec_update",
    [AllTypesMatch<["next_tokens", "drafted", "next_positions"]>,
     MemoryEffects<[MemWrite<Tile_StateResource>]>]> {
  let summary = "store the next block to verify into the step's state";
  let description = [{
    `tokens = [next_tokens[0], drafted[1] .. drafted[B-1]]` (the bonus token,
    then the drafter's guesses) and `positions = next_positions`, written to
    the two `tile.state`s for the next step.
  }];
  let arguments = (ins Tile_TokenIds:$next_tokens, Tile_TokenIds:$drafted,
                       Tile_TokenIds:$next_positions, FlatSymbolRefAttr:$tokens,
                       FlatSymbolRefAttr:$positions);
  let assemblyFormat = [{
    $next_tokens `,` $drafted `,` $next_positions `into` $tokens `,` $positions
    attr-dict `:` type($next_tokens)
  }];
}

def Tile_DraftFillOp : Tile_Op<"draft_fill", [Pure,
    AllTypesMatch<["block", "drafted", "result"]>]> {
  let summary = "autoregressive drafting: one drafted token into the block";
  let description = [{
    `result` = `block` with slot `index` replaced by `drafted[index]`, the
    drafter's argmax over `block`. The autoregressive drafter mode (tilec
    --ar-drafter) runs the drafter B-1 times per step: pass k over the block
    `[t, d_1 .. d_(k-1), MASK ...]` fills slot k. `index` is in [1, B-1]
    (slot 0 holds the bonus token, which is not drafted).
  }];
  let arguments = (ins Tile_TokenIds:$block, Tile_TokenIds:$drafted,
                       Tile_I64Attr:$index);
  let results = (outs Tile_TokenIds:$result);
  let assemblyFormat = [{
    $block `,` $drafted `index` `(` $index `)` attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

def Tile_AllReduceOp : Tile_Op<"all_reduce", [Pure, SameOperandsAndResultType]> {
  let summary = "reduce a tensor over all ranks";
  let arguments = (ins Tile_Activation:$input, Tile_ReduceKind:$kind, Tile_I64Attr:$ranks);
  let results = (outs Tile_Activation:$result);
  let assemblyFormat = [{
    $kind $input `ranks` `(` $ranks `)` attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_AllGatherOp : Tile_Op<"all_gather", [Pure]> {
  let summary = "concatenate every rank's tensor along `axis`";
  let arguments = (ins AnyRankedTensor:$input, Tile_I64Attr:$axis, Tile_I64Attr:$ranks);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input `axis` `(` $axis `)` `ranks` `(` $ranks `)` attr-dict `:` type($input)
    `->` type($result)
  }];
  let hasVerifier = 1;
}

def Tile_AllToAllOp : Tile_Op<"all_to_all", [Pure]> {
  let summary = "split along `split_axis`, exchange, concatenate along `concat_axis`";
  let arguments = (ins AnyRankedTensor:$input, Tile_I64Attr:$split_axis,
                       Tile_I64Attr:$concat_axis, Tile_I64Attr:$ranks);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input `split` `(` $split_axis `)` `concat` `(` $concat_axis `)`
    `ranks` `(` $ranks `)` attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

include "TileFusedOps.td"
include "TileTaskOps.td"

#endif // TILE_OPS_TD
