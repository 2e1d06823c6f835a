// tile-fuse folds norms, RoPE, KV appends, SiLU*mul, residual adds, the router
// and argmax into the ops that consume or produce them: the op count drops and
// what remains is what tile-partition has task families for.
// RUN: tile-opt %s --split-input-file --tile-fuse | FileCheck %s

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @q : tensor<192x64xf8E4M3FN> quant <fp8_block [128, 128]> = "q"
tile.weight @k : tensor<96x64xf8E4M3FN> quant <fp8_block [128, 128]> = "k"
tile.weight @v : tensor<64x64xf8E4M3FN> quant <fp8_block [128, 128]> = "v"
tile.weight @o : tensor<64x128xbf16> = "o"
tile.weight @sinks : tensor<4xbf16> = "s"
tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(10) window(8) : bf16

// CHECK-LABEL: func.func @attention_block
func.func @attention_block(%x: tensor<2x64xbf16>, %pos: tensor<2xi32>) -> tensor<2x64xbf16> {
  %h = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %q = tile.linear %h, @q quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x192xbf16>
  %k = tile.linear %h, @k quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x96xbf16>
  %v = tile.linear %h, @v quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %q3 = tile.reshape %q : tensor<2x192xbf16> -> tensor<2x4x48xbf16>
  %k3 = tile.reshape %k : tensor<2x96xbf16> -> tensor<2x2x48xbf16>
  %v3 = tile.reshape %v : tensor<2x64xbf16> -> tensor<2x2x32xbf16>
  %qr = tile.rope %q3, %pos rotary_dim(16) theta(1.0e4) : tensor<2x4x48xbf16>, tensor<2xi32>
  %kr = tile.rope %k3, %pos rotary_dim(16) theta(1.0e4) : tensor<2x2x48xbf16>, tensor<2xi32>
  %t = tile.kv_append %kr, %v3, %pos into @kv : tensor<2x2x48xbf16>, tensor<2x2x32xbf16>, tensor<2xi32>
  %a = tile.attention %qr, %pos over @kv after %t sinks(@sinks) mask(causal) scale(0.144) value_scale(0.707) window(8) : tensor<2x4x48xbf16>, tensor<2xi32> -> tensor<2x4x32xbf16>
  %a2 = tile.reshape %a : tensor<2x4x32xbf16> -> tensor<2x128xbf16>
  %o = tile.linear %a2, @o : tensor<2x128xbf16> -> tensor<2x64xbf16>
  %y = tile.add %x, %o : tensor<2x64xbf16>
  return %y : tensor<2x64xbf16>
}
// The norm is gone (each linear normalizes its own input), RoPE and the cache
// writes sit in the projections, the attention waits on both cache writes, and
// the residual add is o_proj's epilogue.
// CHECK-NOT: tile.rms_norm
// CHECK: %[[Q:.*]] = tile.fused_linear %arg0, @q quant <fp8_block [128, 128]> norm(@ln, 1.000000e-05) epilogue(rope) positions(%arg1 : tensor<2xi32>) rope(16, 1.000000e+04) : tensor<2x64xbf16> -> tensor<2x4x48xbf16>
// CHECK: %[[K:.*]] = tile.fused_linear %arg0, @k {{.*}} norm(@ln, 1.000000e-05) epilogue(rope_kcache) positions(%arg1 : tensor<2xi32>) rope(16, 1.000000e+04) cache(@kv) : {{.*}} -> !tile.token
// CHECK: %[[V:.*]] = tile.fused_linear %arg0, @v {{.*}} norm(@ln, 1.000000e-05) epilogue(vcache) positions(%arg1 : tensor<2xi32>) cache(@kv) : {{.*}} -> !tile.token
// CHECK: %[[A:.*]] = tile.attention %[[Q]], %arg1 over @kv after %[[K]], %[[V]] sinks(@sinks)
// CHECK: %[[A2:.*]] = tile.reshape %[[A]]
// CHECK: %[[Y:.*]] = tile.fused_linear %[[A2]], @o epilogue(residual) residual(%arg0 : tensor<2x64xbf16>)
// CHECK-NOT: tile.add
// CHECK: return %[[Y]]

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @g : tensor<128x64xbf16> = "g"
tile.weight @u : tensor<128x64xbf16> = "u"
tile.weight @d : tensor<64x128xbf16> = "d"

// CHECK-LABEL: func.func @dense_mlp
func.func @dense_mlp(%x: tensor<2x64xbf16>) -> tensor<2x64xbf16> {
  %h = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %g = tile.linear %h, @g : tensor<2x64xbf16> -> tensor<2x128xbf16>
  %u = tile.linear %h, @u : tensor<2x64xbf16> -> tensor<2x128xbf16>
  %m = tile.silu_mul %g, %u : tensor<2x128xbf16>
  %d = tile.linear %m, @d : tensor<2x128xbf16> -> tensor<2x64xbf16>
  %y = tile.add %x, %d : tensor<2x64xbf16>
  return %y : tensor<2x64xbf16>
}
// Five ops become two: gate/up with SiLU*mul, down with the residual add.
// CHECK: %[[M:.*]] = tile.fused_linear %arg0, @g, @u norm(@ln, 1.000000e-05) epilogue(silu_pair) : tensor<2x64xbf16> -> tensor<2x128xbf16>
// CHECK-NEXT: %[[Y:.*]] = tile.fused_linear %[[M]], @d epilogue(residual) residual(%arg0 : tensor<2x64xbf16>)
// CHECK-NEXT: return %[[Y]]

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @g : tensor<128x64xbf16> = "g"
tile.weight @u : tensor<128x64xbf16> = "u"

// SiLU*mul fuses only a gate/up pair that reads the same normalized input:
// here the up projection reads the residual itself, so the pair stays apart
// (the gate still takes the norm as its prologue).
// CHECK-LABEL: func.func @silu_mixed_inputs
func.func @silu_mixed_inputs(%x: tensor<2x64xbf16>) -> tensor<2x128xbf16> {
  %h = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %g = tile.linear %h, @g : tensor<2x64xbf16> -> tensor<2x128xbf16>
  %u = tile.linear %x, @u : tensor<2x64xbf16> -> tensor<2x128xbf16>
  %m = tile.silu_mul %g, %u : tensor<2x128xbf16>
  return %m : tensor<2x128xbf16>
}
// CHECK: %[[G:.*]] = tile.fused_linear %arg0, @g norm(@ln, 1.000000e-05) epilogue(store)
// CHECK-NEXT: %[[U:.*]] = tile.linear %arg0, @u
// CHECK-NEXT: %[[M:.*]] = tile.silu_mul %[[G]], %[[U]]
// CHECK-NEXT: return %[[M]]

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @gate : tensor<8x64xbf16> = "gate"
tile.weight @bias : tensor<8xf32> = "bias"
tile.weight @gu : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "gu"
tile.weight @dn : tensor<8x64x64xf4E2M1FN> quant <mxfp4 [32]> = "dn"

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<2x64xbf16>) -> tensor<2x64xbf16> {
  %h = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %r = tile.router %h, @gate bias(@bias) top_k(2) groups(2, 1) renorm scaling(2.5) : tensor<2x64xbf16> -> !tile.routing<tokens = 2, top_k = 2, experts = 8>
  %m = tile.moe %h, %r experts(@gu, @dn) quant <mxfp4 [32]> : tensor<2x64xbf16>, !tile.routing<tokens = 2, top_k = 2, experts = 8> -> tensor<2x64xbf16>
  %y = tile.add %x, %m : tensor<2x64xbf16>
  return %y : tensor<2x64xbf16>
}
// Norm, router, experts and the residual add are one fused_moe.
// CHECK: %[[Y:.*]] = tile.fused_moe %arg0 norm(@ln, 1.000000e-05) router(@gate, @bias) experts(8, @gu, @dn) quant <mxfp4 [32]> top_k(2) groups(2, 1) renorm scaling(2.500000e+00) : tensor<2x64xbf16>
// CHECK-NEXT: return %[[Y]]

// -----

tile.weight @n : tensor<64xbf16> = "n"
tile.weight @head : tensor<512x64xbf16> = "head"

// CHECK-LABEL: func.func @lm_head
func.func @lm_head(%x: tensor<2x64xbf16>) -> (tensor<2x512xf32>, tensor<2xi32>) {
  %h = tile.rms_norm %x, @n eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %l = tile.linear %h, @head : tensor<2x64xbf16> -> tensor<2x512xf32>
  %a = tile.argmax %l : tensor<2x512xf32> -> tensor<2xi32>
  return %l, %a : tensor<2x512xf32>, tensor<2xi32>
}
// The argmax and the logits both come out of the one fused lm_head.
// CHECK: %[[F:.*]]:2 = tile.fused_linear %arg0, @head norm(@n, 1.000000e-05) epilogue(argmax) : tensor<2x64xbf16> -> tensor<2xi32>, tensor<2x512xf32>
// CHECK-NEXT: return %[[F]]#1, %[[F]]#0

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @w : tensor<32x64xbf16> = "w"

// A norm with a non-linear user stays; the linear still gets the prologue.
// CHECK-LABEL: func.func @shared_norm
func.func @shared_norm(%x: tensor<2x64xbf16>) -> (tensor<2x32xbf16>, tensor<2x64xbf16>) {
  %h = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %y = tile.linear %h, @w : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return %y, %h : tensor<2x32xbf16>, tensor<2x64xbf16>
}
// CHECK: %[[H:.*]] = tile.rms_norm %arg0
// CHECK: %[[Y:.*]] = tile.fused_linear %arg0, @w norm(@ln, 1.000000e-05) epilogue(store)
// CHECK: return %[[Y]], %[[H]]
