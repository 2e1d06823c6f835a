// Every verifier error of the fused ops (what tile-fuse produces).
// RUN: tile-opt %s --split-input-file --verify-diagnostics
// And fused IR prints in a form that parses back, also generically.
// RUN: tile-opt %S/../passes/Inputs/tiny-layer.mlir --tile-fuse | tile-opt --mlir-print-op-generic | tile-opt | FileCheck %s --check-prefix=ROUNDTRIP
// ROUNDTRIP: tile.fused_moe
// ROUNDTRIP: tile.fused_linear {{.*}} epilogue(argmax)

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op input must be [T, K], got 'tensor<2x2x64xbf16>'}}
  %0 = tile.fused_linear %x, @w epilogue(store) : tensor<2x2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op norm(@w, eps) needs both the weight and eps}}
  %0 = "tile.fused_linear"(%x) <{weight = @w, norm = @w, epilogue = 0 : i32, operandSegmentSizes = array<i32: 1, 0, 0>}> : (tensor<2x64xbf16>) -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
tile.weight @n : tensor<64xbf16> = "n"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op eps must be positive}}
  %0 = tile.fused_linear %x, @w norm(@n, 0.0) epilogue(store) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<192x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op epilogue(rope) needs positions}}
  %0 = tile.fused_linear %x, @w epilogue(rope) rope(16, 1.0e4) : tensor<2x64xbf16> -> tensor<2x4x48xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<2xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op epilogue(store) takes no positions}}
  %0 = tile.fused_linear %x, @w epilogue(store) positions(%p : tensor<2xi32>) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op residual(%x) goes with epilogue(residual) only}}
  %0 = tile.fused_linear %x, @w epilogue(residual) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op a second weight goes with epilogue(silu_pair) only}}
  %0 = tile.fused_linear %x, @w, @w epilogue(store) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<192x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<2xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op rope(rotary_dim, theta) goes with epilogue(rope) and epilogue(rope_kcache) only}}
  %0 = tile.fused_linear %x, @w epilogue(rope) positions(%p : tensor<2xi32>) : tensor<2x64xbf16> -> tensor<2x4x48xbf16>
  return
}

// -----

tile.weight @w : tensor<64x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<2xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op cache(@kv) goes with the cache epilogues only}}
  %0 = tile.fused_linear %x, @w epilogue(vcache) positions(%p : tensor<2xi32>) : tensor<2x64xbf16> -> !tile.token
  return
}

// -----

tile.weight @w : tensor<192x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<3xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op positions do not match the 2 tokens}}
  %0 = tile.fused_linear %x, @w epilogue(rope) positions(%p : tensor<3xi32>) rope(16, 1.0e4) : tensor<2x64xbf16> -> tensor<2x4x48xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op epilogue(store) has the wrong number of results}}
  %0:2 = tile.fused_linear %x, @w epilogue(store) : tensor<2x64xbf16> -> tensor<2x32xbf16>, tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<64x64xbf16> = "w"
tile.kv_cache @kv kv_heads(2) dims(32, 32) capacity(8) : bf16
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<2xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op a cache epilogue yields a !tile.token}}
  %0 = tile.fused_linear %x, @w epilogue(vcache) positions(%p : tensor<2xi32>) cache(@kv) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op result must be a tensor with 2 tokens}}
  %0 = tile.fused_linear %x, @w epilogue(store) : tensor<2x64xbf16> -> tensor<3x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op epilogue(argmax) yields tensor<2xi32> first}}
  %0 = tile.fused_linear %x, @w epilogue(argmax) : tensor<2x64xbf16> -> tensor<2xf32>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op epilogue(argmax)'s second result is the f32 logits}}
  %0:2 = tile.fused_linear %x, @w epilogue(argmax) : tensor<2x64xbf16> -> tensor<2xi32>, tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<192x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<2xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op epilogue(rope) yields [T, heads, D] with an even rotary_dim <= D}}
  %0 = tile.fused_linear %x, @w epilogue(rope) positions(%p : tensor<2xi32>) rope(15, 1.0e4) : tensor<2x64xbf16> -> tensor<2x4x48xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op result must be [T, N], got 'tensor<2x4x8xbf16>'}}
  %0 = tile.fused_linear %x, @w epilogue(store) : tensor<2x64xbf16> -> tensor<2x4x8xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>, %r: tensor<2x32xf32>) {
  // expected-error @+1 {{'tile.fused_linear' op residual 'tensor<2x32xf32>' must have the result's type 'tensor<2x32xbf16>'}}
  %0 = tile.fused_linear %x, @w epilogue(residual) residual(%r : tensor<2x32xf32>) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x48xbf16> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op weight @w is [32x48], expected [N, 64]}}
  %0 = tile.fused_linear %x, @w epilogue(store) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xf8E4M3FN> quant <fp8_block [128, 128]> = "w"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op quant scheme does not match weight @w}}
  %0 = tile.fused_linear %x, @w epilogue(store) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
tile.weight @u : tensor<16x64xbf16> = "u"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op second weight @u must be a tile.weight like @w}}
  %0 = tile.fused_linear %x, @w, @u epilogue(silu_pair) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<32x64xbf16> = "w"
tile.weight @n : tensor<32xbf16> = "n"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_linear' op norm @n must be a [64] tile.weight}}
  %0 = tile.fused_linear %x, @w norm(@n, 1.0e-5) epilogue(store) : tensor<2x64xbf16> -> tensor<2x32xbf16>
  return
}

// -----

tile.weight @w : tensor<96x64xbf16> = "w"
tile.weight @kv : tensor<4xbf16> = "kv"
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<2xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op cache @kv is not a tile.kv_cache}}
  %0 = tile.fused_linear %x, @w epilogue(vcache) positions(%p : tensor<2xi32>) cache(@kv) : tensor<2x64xbf16> -> !tile.token
  return
}

// -----

tile.weight @w : tensor<96x64xbf16> = "w"
tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(8) : bf16
func.func @f(%x: tensor<2x64xbf16>, %p: tensor<2xi32>) {
  // expected-error @+1 {{'tile.fused_linear' op weight rows (96) must be the cache's 2 heads x 32}}
  %0 = tile.fused_linear %x, @w epilogue(vcache) positions(%p : tensor<2xi32>) cache(@kv) : tensor<2x64xbf16> -> !tile.token
  return
}

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @gate : tensor<8x64xbf16> = "gate"
tile.weight @gu : tensor<8x128x64xbf16> = "gu"
tile.weight @dn : tensor<8x64x64xbf16> = "dn"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_moe' op router parameters out of range}}
  %0 = tile.fused_moe %x norm(@ln, 1.0e-5) router(@gate) experts(8, @gu, @dn) top_k(9) groups(1, 1) : tensor<2x64xbf16>
  return
}

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @gate : tensor<8x64xbf16> = "gate"
tile.weight @gu : tensor<8x128x64xbf16> = "gu"
tile.weight @dn : tensor<8x64x32xbf16> = "dn"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_moe' op experts [8x128x64] / [8x64x32] do not fit 8 experts of hidden 64}}
  %0 = tile.fused_moe %x norm(@ln, 1.0e-5) router(@gate) experts(8, @gu, @dn) top_k(2) groups(1, 1) : tensor<2x64xbf16>
  return
}

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
tile.weight @gate : tensor<4x64xbf16> = "gate"
tile.weight @gu : tensor<8x128x64xbf16> = "gu"
tile.weight @dn : tensor<8x64x64xbf16> = "dn"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_moe' op router gate must be [8, 64]}}
  %0 = tile.fused_moe %x norm(@ln, 1.0e-5) router(@gate) experts(8, @gu, @dn) top_k(2) groups(1, 1) : tensor<2x64xbf16>
  return
}

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
func.func @f(%x: tensor<2x64xbf16>) {
  // expected-error @+1 {{'tile.fused_moe' op gate, gate_up and down must be tile.weight symbols}}
  %0 = tile.fused_moe %x norm(@ln, 1.0e-5) router(@nope) experts(8, @nope, @nope) top_k(2) groups(1, 1) : tensor<2x64xbf16>
  return
}

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
func.func @f(%x: tensor<64xbf16>) {
  // expected-error @+1 {{'tile.fused_moe' op input must be [T, H]}}
  %0 = tile.fused_moe %x norm(@ln, 1.0e-5) router(@nope) experts(8, @nope, @nope) top_k(2) groups(1, 1) : tensor<64xbf16>
  return
}
