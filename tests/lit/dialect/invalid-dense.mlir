// Every verifier error of the dense graph ops: symbol lookup, embed, rms_norm,
// linear, rope, reshape, concat, argmax.
// RUN: tile-opt %s --split-input-file --verify-diagnostics

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.linear' op weight @missing does not name a tile.weight in the enclosing module}}
  %0 = tile.linear %x, @missing : tensor<4x64xbf16> -> tensor<4x8xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.linear' op weight @kv names a 'tile.kv_cache', expected a tile.weight}}
  %0 = tile.linear %x, @kv : tensor<4x64xbf16> -> tensor<4x8xbf16>
  return
}

// -----

tile.weight @emb : tensor<512x64xbf16> = "e"
func.func @f(%ids: tensor<2x4xi32>) {
  // expected-error @+1 {{'tile.embed' op ids must have rank 1, got 'tensor<2x4xi32>'}}
  %0 = tile.embed %ids, @emb : tensor<2x4xi32> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @emb : tensor<512x64xbf16> = "e"
func.func @f(%ids: tensor<?xi32>) {
  // expected-error @+1 {{'tile.embed' op ids must have a static shape, got 'tensor<?xi32>'}}
  %0 = tile.embed %ids, @emb : tensor<?xi32> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @emb : tensor<512x64xbf16> = "e"
func.func @f(%ids: tensor<4xi32>) {
  // expected-error @+1 {{'tile.embed' op result has 5 rows for 4 token ids}}
  %0 = tile.embed %ids, @emb : tensor<4xi32> -> tensor<5x64xbf16>
  return
}

// -----

tile.weight @emb : tensor<512x64xbf16> = "e"
func.func @f(%ids: tensor<4xi32>) {
  // expected-error @+1 {{'tile.embed' op scale must be positive, got -1.000000e+00}}
  %0 = tile.embed %ids, @emb scale(-1.0) : tensor<4xi32> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @emb : tensor<512x32xbf16> = "e"
func.func @f(%ids: tensor<4xi32>) {
  // expected-error @+1 {{'tile.embed' op table @emb has shape [512, 32], expected [vocab, 64]}}
  %0 = tile.embed %ids, @emb : tensor<4xi32> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @emb : tensor<512x64xf8E4M3FN> quant <fp8_block [128, 128]> = "e"
func.func @f(%ids: tensor<4xi32>) {
  // expected-error @+1 {{'tile.embed' op table @emb must not be quantized}}
  %0 = tile.embed %ids, @emb : tensor<4xi32> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.rms_norm' op eps must be positive, got 0.000000e+00}}
  %0 = tile.rms_norm %x, @ln eps(0.0) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @ln : tensor<64xbf16> = "ln"
func.func @f(%x: tensor<bf16>) {
  // expected-error @+1 {{'tile.rms_norm' op input must have a static shape of rank >= 1}}
  %0 = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<bf16> -> tensor<bf16>
  return
}

// -----

tile.weight @ln : tensor<32xbf16> = "ln"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.rms_norm' op weight @ln has shape [32], expected [64]}}
  %0 = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @ln : tensor<64x32xf8E4M3FN> quant <fp8_block [128, 128]> = "ln"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.rms_norm' op weight @ln must not be quantized}}
  %0 = tile.rms_norm %x, @ln eps(1.0e-5) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @w : tensor<8x64xbf16> = "w"
func.func @f(%x: tensor<64xbf16>) {
  // expected-error @+1 {{'tile.linear' op input must have rank 2, got 'tensor<64xbf16>'}}
  %0 = tile.linear %x, @w : tensor<64xbf16> -> tensor<4x8xbf16>
  return
}

// -----

tile.weight @w : tensor<8x64xbf16> = "w"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.linear' op input 'tensor<4x64xbf16>' and result 'tensor<3x8xbf16>' have different token counts}}
  %0 = tile.linear %x, @w : tensor<4x64xbf16> -> tensor<3x8xbf16>
  return
}

// -----

tile.weight @w : tensor<64x8xbf16> = "w"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.linear' op weight @w has shape [64, 8], expected [8, 64] (out, in)}}
  %0 = tile.linear %x, @w : tensor<4x64xbf16> -> tensor<4x8xbf16>
  return
}

// -----

tile.weight @w : tensor<8x64xf8E4M3FN> quant <fp8_block [128, 128]> = "w"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.linear' op quant scheme (none) does not match weight @w's #tile.quant<fp8_block [128, 128]>}}
  %0 = tile.linear %x, @w : tensor<4x64xbf16> -> tensor<4x8xbf16>
  return
}

// -----

tile.weight @w : tensor<8x64xf8E4M3FN> quant <fp8_block [128, 128]> = "w"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.linear' op quant scheme #tile.quant<fp8_block [64, 64]> does not match weight @w's #tile.quant<fp8_block [128, 128]>}}
  %0 = tile.linear %x, @w quant <fp8_block [64, 64]> : tensor<4x64xbf16> -> tensor<4x8xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x2x48xbf16>, %p: tensor<3xi32>) {
  // expected-error @+1 {{'tile.rope' op positions 'tensor<3xi32>' do not match the 4 tokens of the input}}
  %0 = tile.rope %x, %p rotary_dim(16) theta(1.0e4) : tensor<4x2x48xbf16>, tensor<3xi32>
  return
}

// -----

func.func @f(%x: tensor<4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.rope' op input must have rank 3, got 'tensor<4x48xbf16>'}}
  %0 = tile.rope %x, %p rotary_dim(16) theta(1.0e4) : tensor<4x48xbf16>, tensor<4xi32>
  return
}

// -----

func.func @f(%x: tensor<4x2x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.rope' op rotary_dim (15) must be even, positive and at most the head dim (48)}}
  %0 = tile.rope %x, %p rotary_dim(15) theta(1.0e4) : tensor<4x2x48xbf16>, tensor<4xi32>
  return
}

// -----

func.func @f(%x: tensor<4x2x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.rope' op rotary_dim (64) must be even, positive and at most the head dim (48)}}
  %0 = tile.rope %x, %p rotary_dim(64) theta(1.0e4) : tensor<4x2x48xbf16>, tensor<4xi32>
  return
}

// -----

func.func @f(%x: tensor<4x2x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.rope' op theta must be positive, got 0.000000e+00}}
  %0 = tile.rope %x, %p rotary_dim(16) theta(0.0) : tensor<4x2x48xbf16>, tensor<4xi32>
  return
}

// -----

func.func @f(%x: tensor<?x64xbf16>) {
  // expected-error @+1 {{'tile.reshape' op needs static shapes}}
  %0 = tile.reshape %x : tensor<?x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.reshape' op cannot change the element type ('bf16' -> 'f32')}}
  %0 = tile.reshape %x : tensor<4x64xbf16> -> tensor<4x64xf32>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.reshape' op cannot reshape 'tensor<4x64xbf16>' (256 elements) to 'tensor<4x2x48xbf16>' (384 elements)}}
  %0 = tile.reshape %x : tensor<4x64xbf16> -> tensor<4x2x48xbf16>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{'tile.concat' op needs at least one input}}
  %0 = "tile.concat"() <{axis = 0 : i64}> : () -> tensor<4xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.concat' op axis 2 is out of range for rank 2}}
  %0 = tile.concat %x, %x axis(2) : tensor<4x64xbf16>, tensor<4x64xbf16> -> tensor<4x128xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>, %y: tensor<4x64xf32>) {
  // expected-error @+1 {{'tile.concat' op input #1 'tensor<4x64xf32>' does not match the result's rank and element type}}
  %0 = tile.concat %x, %y axis(1) : tensor<4x64xbf16>, tensor<4x64xf32> -> tensor<4x128xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>, %y: tensor<3x64xbf16>) {
  // expected-error @+1 {{'tile.concat' op input #1 'tensor<3x64xbf16>' differs from the result in dim 0}}
  %0 = tile.concat %x, %y axis(1) : tensor<4x64xbf16>, tensor<3x64xbf16> -> tensor<4x128xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.concat' op inputs sum to 128 along axis 1 but the result has 100}}
  %0 = tile.concat %x, %x axis(1) : tensor<4x64xbf16>, tensor<4x64xbf16> -> tensor<4x100xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x512xf32>) {
  // expected-error @+1 {{'tile.argmax' op result 'tensor<512xi32>' must be the input 'tensor<4x512xf32>' without its last dim}}
  %0 = tile.argmax %x : tensor<4x512xf32> -> tensor<512xi32>
  return
}

// -----

func.func @f(%x: tensor<4x512xf32>) {
  // expected-error @+1 {{'tile.logit_cap' op multiplier must be non-zero}}
  %0 = tile.logit_cap %x multiplier(0.0) : tensor<4x512xf32>
  return
}

// -----

func.func @f(%x: tensor<4x512xf32>) {
  // expected-error @+1 {{'tile.logit_cap' op softcap must be >= 0 (0 = none), got -1.000000e+00}}
  %0 = tile.logit_cap %x multiplier(1.0) softcap(-1.0) : tensor<4x512xf32>
  return
}
