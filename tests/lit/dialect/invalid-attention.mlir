// Every verifier error of the KV cache and attention ops.
// RUN: tile-opt %s --split-input-file --verify-diagnostics

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%k: tensor<4x2x48xbf16>, %v: tensor<3x2x32xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.kv_append' op keys 'tensor<4x2x48xbf16>', values 'tensor<3x2x32xbf16>' and 4 positions disagree on the token count}}
  %t = tile.kv_append %k, %v, %p into @kv : tensor<4x2x48xbf16>, tensor<3x2x32xbf16>, tensor<4xi32>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%k: tensor<4x2x48xbf16>, %v: tensor<4x1x32xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.kv_append' op keys have 2 heads but values 1}}
  %t = tile.kv_append %k, %v, %p into @kv : tensor<4x2x48xbf16>, tensor<4x1x32xbf16>, tensor<4xi32>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%k: tensor<4x2x64xbf16>, %v: tensor<4x2x32xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.kv_append' op keys 'tensor<4x2x64xbf16>' / values 'tensor<4x2x32xbf16>' do not fit cache @kv (2 heads, dims 48/32)}}
  %t = tile.kv_append %k, %v, %p into @kv : tensor<4x2x64xbf16>, tensor<4x2x32xbf16>, tensor<4xi32>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<3xi32>) {
  // expected-error @+1 {{'tile.attention' op positions 'tensor<3xi32>' do not match the 4 query tokens}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(0.1) : tensor<4x4x48xbf16>, tensor<3xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op result 'tensor<4x2x32xbf16>' must be [4, 4, v_dim]}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x2x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op scale must be positive, got -1.000000e-01}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(-0.1) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op value_scale must be non-zero}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(0.1) value_scale(0.0) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op window must be >= 0, got -4}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(0.1) window(-4) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op mask(bidirectional) needs the block's own keys: block(%k, %v), or their append to the cache (after %token)}}
  %a = tile.attention %q, %p over @kv mask(bidirectional) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>, %k: tensor<4x2x48xbf16>, %v: tensor<4x2x16xbf16>) {
  // expected-error @+1 {{'tile.attention' op block keys 'tensor<4x2x48xbf16>' / values 'tensor<4x2x16xbf16>' must be [4, kv_heads, 48] / [4, kv_heads, 32]}}
  %a = tile.attention %q, %p over @kv block(%k, %v) mask(bidirectional) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32>, tensor<4x2x48xbf16>, tensor<4x2x16xbf16> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(3) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op query heads (4) are not a multiple of cache @kv's kv_heads (3)}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(64, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op query/result head dims (48/32) do not match cache @kv (64/32)}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>, %k: tensor<4x1x48xbf16>, %v: tensor<4x1x32xbf16>) {
  // expected-error @+1 {{'tile.attention' op block keys have 1 heads but cache @kv has 2}}
  %a = tile.attention %q, %p over @kv block(%k, %v) mask(bidirectional) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32>, tensor<4x1x48xbf16>, tensor<4x1x32xbf16> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) window(8) : bf16
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op cache @kv keeps only 16 positions, so the attention needs a window of at most that, got 0}}
  %a = tile.attention %q, %p over @kv mask(causal) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}

// -----

tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) : bf16
tile.weight @sinks : tensor<2xf32> = "sinks"
func.func @f(%q: tensor<4x4x48xbf16>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'tile.attention' op sinks @sinks has shape [2], expected [4]}}
  %a = tile.attention %q, %p over @kv sinks(@sinks) mask(causal) scale(0.1) : tensor<4x4x48xbf16>, tensor<4xi32> -> tensor<4x4x32xbf16>
  return
}
