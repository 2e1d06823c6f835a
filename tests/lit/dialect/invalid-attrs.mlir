// Every verifier error of the tile dialect's attributes, types and declarations.
// RUN: tile-opt %s --split-input-file --verify-diagnostics

// expected-error @+1 {{unknown quantization scheme 'int4' (expected none, fp8_block or mxfp4)}}
tile.weight @w : tensor<4x4xbf16> quant <int4> = "w"

// -----

// expected-error @+1 {{#tile.quant<none> takes no block sizes}}
tile.weight @w : tensor<4x4xbf16> quant <none [4]> = "w"

// -----

// expected-error @+1 {{#tile.quant<fp8_block> needs two positive block sizes, e.g. [128, 128]}}
tile.weight @w : tensor<4x4xf8E4M3FN> quant <fp8_block [128]> = "w"

// -----

// expected-error @+1 {{#tile.quant<mxfp4> needs block [32] (OCP MX v1.0)}}
tile.weight @w : tensor<4x64xf4E2M1FN> quant <mxfp4 [16]> = "w"

// -----

// expected-error @+1 {{!tile.routing needs tokens > 0, got 0}}
func.func private @f() -> !tile.routing<tokens = 0, top_k = 2, experts = 8>

// -----

// expected-error @+1 {{!tile.routing needs experts > 0, got 0}}
func.func private @f() -> !tile.routing<tokens = 1, top_k = 2, experts = 0>

// -----

// expected-error @+1 {{!tile.routing needs 0 < top_k <= experts, got top_k = 9 with 8 experts}}
func.func private @f() -> !tile.routing<tokens = 1, top_k = 9, experts = 8>

// -----

// expected-error @+1 {{'tile.weight' op @w has an empty checkpoint source name}}
tile.weight @w : tensor<4x4xbf16> = ""

// -----

// expected-error @+1 {{'tile.weight' op @w must have a static shape of positive dims, got 'tensor<?x4xbf16>'}}
tile.weight @w : tensor<?x4xbf16> = "w"

// -----

// expected-error @+1 {{'tile.weight' op @w must have a static shape of positive dims, got 'tensor<0x4xbf16>'}}
tile.weight @w : tensor<0x4xbf16> = "w"

// -----

// expected-error @+1 {{'tile.weight' op @w: element type 'f8E4M3FN' does not fit quant scheme (none) (expected bf16, f16 or f32)}}
tile.weight @w : tensor<4x4xf8E4M3FN> = "w"

// -----

// expected-error @+1 {{'tile.weight' op @w: element type 'bf16' does not fit quant scheme #tile.quant<mxfp4 [32]> (expected f4E2M1FN)}}
tile.weight @w : tensor<4x64xbf16> quant <mxfp4 [32]> = "w"

// -----

// expected-error @+1 {{'tile.weight' op @w: element type 'bf16' does not fit quant scheme #tile.quant<fp8_block [128, 128]> (expected f8E4M3FN)}}
tile.weight @w : tensor<4x64xbf16> quant <fp8_block [128, 128]> = "w"

// -----

// expected-error @+1 {{'tile.weight' op @w: an mxfp4 weight's last dim (48) must be a multiple of 32}}
tile.weight @w : tensor<4x48xf4E2M1FN> quant <mxfp4 [32]> = "w"

// -----

// expected-error @+1 {{'tile.weight' op @w: an fp8_block weight must have rank >= 2}}
tile.weight @w : tensor<64xf8E4M3FN> quant <fp8_block [128, 128]> = "w"

// -----

// expected-error @+1 {{'tile.kv_cache' op @kv: kv_heads must be positive, got 0}}
tile.kv_cache @kv kv_heads(0) dims(48, 32) capacity(16) : bf16

// -----

// expected-error @+1 {{'tile.kv_cache' op @kv: v_dim must be positive, got -32}}
tile.kv_cache @kv kv_heads(2) dims(48, -32) capacity(16) : bf16

// -----

// expected-error @+1 {{'tile.kv_cache' op @kv: capacity must be positive, got 0}}
tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(0) : bf16

// -----

// expected-error @+1 {{'tile.kv_cache' op @kv: window must be >= 0, got -1}}
tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) window(-1) : bf16

// -----

// expected-error @+1 {{'tile.kv_cache' op @kv: capacity (16) must hold the window (32)}}
tile.kv_cache @kv kv_heads(2) dims(48, 32) capacity(16) window(32) : bf16
