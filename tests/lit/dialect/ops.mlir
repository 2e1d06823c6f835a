// Round trip of every graph-level tile op: parse, verify, print, parse again, and the
// same through the generic form (properties survive).
// RUN: tile-opt %s | tile-opt | FileCheck %s
// RUN: tile-opt %s --mlir-print-op-generic | tile-opt | FileCheck %s

// CHECK: tile.weight @model.embed_tokens : tensor<512x64xbf16> = "model.embed_tokens.weight"
tile.weight @model.embed_tokens : tensor<512x64xbf16> = "model.embed_tokens.weight"
// CHECK: tile.weight @ln : tensor<64xbf16> = "model.layers.1.input_layernorm.weight"
tile.weight @ln : tensor<64xbf16> = "model.layers.1.input_layernorm.weight"
// CHECK: tile.weight @qn : tensor<48xbf16> = "layers.0.self_attn.q_norm.weight"
tile.weight @qn : tensor<48xbf16> = "layers.0.self_attn.q_norm.weight"
// CHECK: tile.weight @q : tensor<192x64xf8E4M3FN> quant <fp8_block [128, 128]> = "model.layers.1.self_attn.q_proj.weight"
tile.weight @q : tensor<192x64xf8E4M3FN> quant <fp8_block [128, 128]> = "model.layers.1.self_attn.q_proj.weight"
// CHECK: tile.weight @k : tensor<96x64xf8E4M3FN> quant <fp8_block [128, 128]>
tile.weight @k : tensor<96x64xf8E4M3FN> quant <fp8_block [128, 128]> = "model.layers.1.self_attn.k_proj.weight"
// CHECK: tile.weight @v : tensor<64x64xf8E4M3FN> quant <fp8_block [128, 128]>
tile.weight @v : tensor<64x64xf8E4M3FN> quant <fp8_block [128, 128]> = "model.layers.1.self_attn.v_proj.weight"
// CHECK: tile.weight @o : tensor<64x128xbf16> = "model.layers.1.self_attn.o_proj.weight"
tile.weight @o : tensor<64x128xbf16> = "model.layers.1.self_attn.o_proj.weight"
// CHECK: tile.weight @sinks : tensor<4xf32> = "model.layers.1.self_attn.attention_sink_bias"
tile.weight @sinks : tensor<4xf32> = "model.layers.1.self_attn.attention_sink_bias"
// CHECK: tile.weight @gate : tensor<8x64xf32> = "model.layers.1.mlp.gate.weight"
tile.weight @gate : tensor<8x64xf32> = "model.layers.1.mlp.gate.weight"
// CHECK: tile.weight @bias : tensor<8xf32> = "model.layers.1.mlp.gate.e_score_correction_bias"
tile.weight @bias : tensor<8xf32> = "model.layers.1.mlp.gate.e_score_correction_bias"
// CHECK: tile.weight @gate_up : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "model.layers.1.mlp.experts.gate_up_proj"
tile.weight @gate_up : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "model.layers.1.mlp.experts.gate_up_proj"
// CHECK: tile.weight @down : tensor<8x64x64xf4E2M1FN> quant <mxfp4 [32]> = "model.layers.1.mlp.experts.down_proj"
tile.weight @down : tensor<8x64x64xf4E2M1FN> quant <mxfp4 [32]> = "model.layers.1.mlp.experts.down_proj"
// CHECK: tile.state @spec.tokens : tensor<4xi32>
tile.state @spec.tokens : tensor<4xi32>
tile.state @spec.positions : tensor<4xi32>
tile.state @spec.forced : tensor<1xi32>
tile.state @spec.sampling : tensor<2xi32>
// CHECK: tile.weight @lm_head : tensor<512x64xbf16> = "lm_head.weight"
tile.weight @lm_head : tensor<512x64xbf16> = "lm_head.weight"

// CHECK: tile.kv_cache @kv.l1 kv_heads(2) dims(48, 32) capacity(16) window(8) : bf16
tile.kv_cache @kv.l1 kv_heads(2) dims(48, 32) capacity(16) window(8) : bf16
// CHECK: tile.kv_cache @kv.l0 kv_heads(2) dims(48, 32) capacity(4096) : bf16
tile.kv_cache @kv.l0 kv_heads(2) dims(48, 32) capacity(4096) : bf16

// CHECK-LABEL: func.func @layer
func.func @layer(%ids: tensor<4xi32>, %pos: tensor<4xi32>, %count: i32)
    -> (tensor<5xi32>, !tile.token) {
  // CHECK: tile.embed %{{.*}}, @model.embed_tokens : tensor<4xi32> -> tensor<4x64xbf16>
  %x = tile.embed %ids, @model.embed_tokens : tensor<4xi32> -> tensor<4x64xbf16>
  // CHECK: tile.embed %{{.*}}, @model.embed_tokens scale(2.000000e+00) : tensor<4xi32> -> tensor<4x64xf32>
  %xs = tile.embed %ids, @model.embed_tokens scale(2.0) : tensor<4xi32> -> tensor<4x64xf32>
  // CHECK: tile.rms_norm %{{.*}}, @ln eps(1.000000e-05) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  %h = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  // CHECK: tile.linear %{{.*}}, @q quant <fp8_block [128, 128]> : tensor<4x64xbf16> -> tensor<4x192xbf16>
  %q = tile.linear %h, @q quant <fp8_block [128, 128]> : tensor<4x64xbf16> -> tensor<4x192xbf16>
  %k = tile.linear %h, @k quant <fp8_block [128, 128]> : tensor<4x64xbf16> -> tensor<4x96xbf16>
  %v = tile.linear %h, @v quant <fp8_block [128, 128]> : tensor<4x64xbf16> -> tensor<4x64xbf16>
  // CHECK: tile.reshape %{{.*}} : tensor<4x192xbf16> -> tensor<4x4x48xbf16>
  %q3 = tile.reshape %q : tensor<4x192xbf16> -> tensor<4x4x48xbf16>
  %k3 = tile.reshape %k : tensor<4x96xbf16> -> tensor<4x2x48xbf16>
  %v3 = tile.reshape %v : tensor<4x64xbf16> -> tensor<4x2x32xbf16>
  // CHECK: tile.rms_norm %{{.*}}, @qn eps(9.9999999999999995E-7) : tensor<4x4x48xbf16> -> tensor<4x4x48xbf16>
  %qn = tile.rms_norm %q3, @qn eps(1.0e-6) : tensor<4x4x48xbf16> -> tensor<4x4x48xbf16>
  // CHECK: tile.rope %{{.*}}, %{{.*}} rotary_dim(16) theta(1.000000e+04) : tensor<4x4x48xbf16>, tensor<4xi32>
  %qr = tile.rope %qn, %pos rotary_dim(16) theta(1.0e4) : tensor<4x4x48xbf16>, tensor<4xi32>
  %kr = tile.rope %k3, %pos rotary_dim(16) theta(1.0e4) : tensor<4x2x48xbf16>, tensor<4xi32>
  // CHECK: %[[T:.*]] = tile.kv_append %{{.*}}, %{{.*}}, %{{.*}} into @kv.l1 : tensor<4x2x48xbf16>, tensor<4x2x32xbf16>, tensor<4xi32>
  %t = tile.kv_append %kr, %v3, %pos into @kv.l1 : tensor<4x2x48xbf16>, tensor<4x2x32xbf16>, tensor<4xi32>
  // CHECK: tile.attention %{{.*}}, %{{.*}} over @kv.l1 after %[[T]] sinks(@sinks) mask(causal) scale(1.443000e-01) value_scale(7.070000e-01) window(8) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  %a = tile.attention %qr, %pos over @kv.l1 after %t sinks(@sinks) mask(causal) scale(0.1443) value_scale(0.707) window(8) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  // CHECK: tile.attention %{{.*}}, %{{.*}} over @kv.l0 block(%{{.*}}, %{{.*}}) mask(bidirectional) scale(1.443000e-01) : tensor<4x4x48xbf16>, tensor<4xi32>, tensor<4x2x48xbf16>, tensor<4x2x32xbf16> -> tensor<4x4x32xbf16>
  %ab = tile.attention %qr, %pos over @kv.l0 block(%kr, %v3) mask(bidirectional) scale(0.1443) : tensor<4x4x48xbf16>, tensor<4xi32>, tensor<4x2x48xbf16>, tensor<4x2x32xbf16> -> tensor<4x4x32xbf16>
  %a2 = tile.reshape %a : tensor<4x4x32xbf16> -> tensor<4x128xbf16>
  %o = tile.linear %a2, @o : tensor<4x128xbf16> -> tensor<4x64xbf16>
  // CHECK: tile.add %{{.*}}, %{{.*}} : tensor<4x64xbf16>
  %x1 = tile.add %x, %o : tensor<4x64xbf16>
  // CHECK: tile.router %{{.*}}, @gate bias(@bias) top_k(2) groups(2, 1) renorm scaling(2.500000e+00) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  %r = tile.router %x1, @gate bias(@bias) top_k(2) groups(2, 1) renorm scaling(2.5) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  // CHECK: tile.router %{{.*}}, @gate top_k(2) groups(1, 1) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  %r2 = tile.router %x1, @gate top_k(2) groups(1, 1) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  // CHECK: tile.moe %{{.*}}, %{{.*}} experts(@gate_up, @down) quant <mxfp4 [32]> : tensor<4x64xbf16>, !tile.routing<tokens = 4, top_k = 2, experts = 8> -> tensor<4x64xbf16>
  %m = tile.moe %x1, %r experts(@gate_up, @down) quant <mxfp4 [32]> : tensor<4x64xbf16>, !tile.routing<tokens = 4, top_k = 2, experts = 8> -> tensor<4x64xbf16>
  // CHECK: tile.silu_mul %{{.*}}, %{{.*}} : tensor<4x64xbf16>
  %sm = tile.silu_mul %m, %x1 : tensor<4x64xbf16>
  // CHECK: tile.concat %{{.*}}, %{{.*}} axis(1) : tensor<4x64xbf16>, tensor<4x64xbf16> -> tensor<4x128xbf16>
  %taps = tile.concat %x1, %sm axis(1) : tensor<4x64xbf16>, tensor<4x64xbf16> -> tensor<4x128xbf16>
  // CHECK: tile.all_reduce sum %{{.*}} ranks(8) : tensor<4x64xbf16>
  %ar = tile.all_reduce sum %sm ranks(8) : tensor<4x64xbf16>
  // CHECK: tile.all_gather %{{.*}} axis(1) ranks(2) : tensor<4x64xbf16> -> tensor<4x128xbf16>
  %ag = tile.all_gather %ar axis(1) ranks(2) : tensor<4x64xbf16> -> tensor<4x128xbf16>
  // CHECK: tile.all_to_all %{{.*}} split(0) concat(1) ranks(2) : tensor<4x128xbf16> -> tensor<2x256xbf16>
  %aa = tile.all_to_all %ag split(0) concat(1) ranks(2) : tensor<4x128xbf16> -> tensor<2x256xbf16>
  %logits = tile.linear %ar, @lm_head : tensor<4x64xbf16> -> tensor<4x512xf32>
  // CHECK: tile.logit_cap %{{.*}} multiplier(2.000000e+00) softcap(3.000000e+01) : tensor<4x512xf32>
  %capped = tile.logit_cap %logits multiplier(2.0) softcap(30.0) : tensor<4x512xf32>
  // CHECK: tile.logit_cap %{{.*}} multiplier(5.000000e-01) : tensor<4x512xf32>
  %scaled = tile.logit_cap %logits multiplier(0.5) : tensor<4x512xf32>
  // CHECK: tile.argmax %{{.*}} : tensor<4x512xf32> -> tensor<4xi32>
  %p = tile.argmax %logits : tensor<4x512xf32> -> tensor<4xi32>
  // CHECK: %[[B:.*]] = tile.state_read @spec.tokens : tensor<4xi32>
  %blk = tile.state_read @spec.tokens : tensor<4xi32>
  // CHECK: %[[SP:.*]] = tile.state_read @spec.positions : tensor<4xi32>
  %spos = tile.state_read @spec.positions : tensor<4xi32>
  %forced = tile.state_read @spec.forced : tensor<1xi32>
  %sampling = tile.state_read @spec.sampling : tensor<2xi32>
  // CHECK: %[[C:.*]], %[[NT:.*]], %[[NP:.*]] = tile.accept %[[B]], %{{.*}} at %[[SP]] forced(%{{.*}}) sample(%{{.*}}, %{{.*}}) mask_token(511) : tensor<4xi32>, tensor<1xi32>, tensor<4x512xf32>, tensor<2xi32> -> tensor<5xi32>
  %c, %nt, %np = tile.accept %blk, %p at %spos forced(%forced) sample(%logits, %sampling) mask_token(511) : tensor<4xi32>, tensor<1xi32>, tensor<4x512xf32>, tensor<2xi32> -> tensor<5xi32>
  // CHECK: tile.spec_update %[[NT]], %{{.*}}, %[[NP]] into @spec.tokens, @spec.positions : tensor<4xi32>
  tile.spec_update %nt, %p, %np into @spec.tokens, @spec.positions : tensor<4xi32>
  // The autoregressive drafter mode: one drafted slot at a time.
  // CHECK: %[[F1:.*]] = tile.draft_fill %[[NT]], %{{.*}} index(1) : tensor<4xi32>
  %f1 = tile.draft_fill %nt, %p index(1) : tensor<4xi32>
  // CHECK: %[[F3:.*]] = tile.draft_fill %[[F1]], %{{.*}} index(3) : tensor<4xi32>
  %f3 = tile.draft_fill %f1, %p index(3) : tensor<4xi32>
  // CHECK: tile.spec_update %[[NT]], %[[F3]], %[[NP]] into @spec.tokens, @spec.positions : tensor<4xi32>
  tile.spec_update %nt, %f3, %np into @spec.tokens, @spec.positions : tensor<4xi32>
  // CHECK: tile.concat %{{.*}}, %{{.*}} axis(1) {eps = 1.000000e-05 : f64, norms = [unit, @ln]}
  %normed = tile.concat %x1, %sm axis(1) {norms = [unit, @ln], eps = 1.0e-5 : f64} : tensor<4x64xbf16>, tensor<4x64xbf16> -> tensor<4x128xbf16>
  return %c, %t : tensor<5xi32>, !tile.token
}
