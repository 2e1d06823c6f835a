// Every verifier error of the router, moe, accept, draft_fill and collective ops.
// RUN: tile-opt %s --split-input-file --verify-diagnostics

tile.weight @gate : tensor<8x64xf32> = "g"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.router' op result '!tile.routing<tokens = 4, top_k = 3, experts = 8>' must have tokens = 4 and top_k = 2}}
  %r = tile.router %x, @gate top_k(2) groups(1, 1) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 3, experts = 8>
  return
}

// -----

tile.weight @gate : tensor<8x64xf32> = "g"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.router' op n_group (3) must divide the 8 experts}}
  %r = tile.router %x, @gate top_k(2) groups(3, 1) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  return
}

// -----

tile.weight @gate : tensor<8x64xf32> = "g"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.router' op topk_group (3) must be in [1, n_group = 2]}}
  %r = tile.router %x, @gate top_k(2) groups(2, 3) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  return
}

// -----

tile.weight @gate : tensor<8x64xf32> = "g"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.router' op top_k (5) exceeds the 4 experts left in the kept groups}}
  %r = tile.router %x, @gate top_k(5) groups(2, 1) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 5, experts = 8>
  return
}

// -----

tile.weight @gate : tensor<8x64xf32> = "g"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.router' op scaling must be positive, got 0.000000e+00}}
  %r = tile.router %x, @gate top_k(2) groups(1, 1) scaling(0.0) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  return
}

// -----

tile.weight @gate : tensor<16x64xf32> = "g"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.router' op gate @gate has shape [16, 64], expected [8, 64]}}
  %r = tile.router %x, @gate top_k(2) groups(1, 1) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  return
}

// -----

tile.weight @gate : tensor<8x64xf32> = "g"
tile.weight @bias : tensor<4xf32> = "b"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.router' op bias @bias has shape [4], expected [8]}}
  %r = tile.router %x, @gate bias(@bias) top_k(2) groups(1, 1) : tensor<4x64xbf16> -> !tile.routing<tokens = 4, top_k = 2, experts = 8>
  return
}

// -----

tile.weight @gu : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "gu"
tile.weight @dn : tensor<8x64x64xf4E2M1FN> quant <mxfp4 [32]> = "dn"
func.func @f(%x: tensor<4x64xbf16>, %r: !tile.routing<tokens = 4, top_k = 2, experts = 8>) {
  // expected-error @+1 {{'tile.moe' op result 'tensor<4x64xf32>' must have the input's type 'tensor<4x64xbf16>'}}
  %y = tile.moe %x, %r experts(@gu, @dn) quant <mxfp4 [32]> : tensor<4x64xbf16>, !tile.routing<tokens = 4, top_k = 2, experts = 8> -> tensor<4x64xf32>
  return
}

// -----

tile.weight @gu : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "gu"
tile.weight @dn : tensor<8x64x64xf4E2M1FN> quant <mxfp4 [32]> = "dn"
func.func @f(%x: tensor<4x64xbf16>, %r: !tile.routing<tokens = 2, top_k = 2, experts = 8>) {
  // expected-error @+1 {{'tile.moe' op routing '!tile.routing<tokens = 2, top_k = 2, experts = 8>' is for a different token count than input 'tensor<4x64xbf16>'}}
  %y = tile.moe %x, %r experts(@gu, @dn) quant <mxfp4 [32]> : tensor<4x64xbf16>, !tile.routing<tokens = 2, top_k = 2, experts = 8> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @gu : tensor<8x128x32xf4E2M1FN> quant <mxfp4 [32]> = "gu"
tile.weight @dn : tensor<8x64x64xf4E2M1FN> quant <mxfp4 [32]> = "dn"
func.func @f(%x: tensor<4x64xbf16>, %r: !tile.routing<tokens = 4, top_k = 2, experts = 8>) {
  // expected-error @+1 {{'tile.moe' op gate_up @gu has shape [8, 128, 32], expected [8, 2 * intermediate, 64]}}
  %y = tile.moe %x, %r experts(@gu, @dn) quant <mxfp4 [32]> : tensor<4x64xbf16>, !tile.routing<tokens = 4, top_k = 2, experts = 8> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @gu : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "gu"
tile.weight @dn : tensor<8x64x32xf4E2M1FN> quant <mxfp4 [32]> = "dn"
func.func @f(%x: tensor<4x64xbf16>, %r: !tile.routing<tokens = 4, top_k = 2, experts = 8>) {
  // expected-error @+1 {{'tile.moe' op down @dn has shape [8, 64, 32], expected [8, 64, 64]}}
  %y = tile.moe %x, %r experts(@gu, @dn) quant <mxfp4 [32]> : tensor<4x64xbf16>, !tile.routing<tokens = 4, top_k = 2, experts = 8> -> tensor<4x64xbf16>
  return
}

// -----

tile.weight @gu : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "gu"
tile.weight @dn : tensor<8x64x64xbf16> = "dn"
func.func @f(%x: tensor<4x64xbf16>, %r: !tile.routing<tokens = 4, top_k = 2, experts = 8>) {
  // expected-error @+1 {{'tile.moe' op quant scheme #tile.quant<mxfp4 [32]> does not match weight @dn's (none)}}
  %y = tile.moe %x, %r experts(@gu, @dn) quant <mxfp4 [32]> : tensor<4x64xbf16>, !tile.routing<tokens = 4, top_k = 2, experts = 8> -> tensor<4x64xbf16>
  return
}

// -----

func.func @f(%d: tensor<2x4xi32>, %f: tensor<1xi32>, %l: tensor<4x8xf32>, %s: tensor<2xi32>) {
  // expected-error @+1 {{'tile.accept' op draft must have rank 1, got 'tensor<2x4xi32>'}}
  %c, %t, %n = tile.accept %d, %d at %d forced(%f) sample(%l, %s) mask_token(3) : tensor<2x4xi32>, tensor<1xi32>, tensor<4x8xf32>, tensor<2xi32> -> tensor<5xi32>
  return
}

// -----

func.func @f(%d: tensor<4xi32>, %f: tensor<1xi32>, %l: tensor<4x8xf32>, %s: tensor<2xi32>) {
  // expected-error @+1 {{'tile.accept' op committed holds the count and up to 4 tokens: tensor<5xi32>, got 'tensor<4xi32>'}}
  %c, %t, %n = tile.accept %d, %d at %d forced(%f) sample(%l, %s) mask_token(3) : tensor<4xi32>, tensor<1xi32>, tensor<4x8xf32>, tensor<2xi32> -> tensor<4xi32>
  return
}

// -----

func.func @f(%d: tensor<4xi32>, %f: tensor<2xi32>, %l: tensor<4x8xf32>, %s: tensor<2xi32>) {
  // expected-error @+1 {{'tile.accept' op forced must be tensor<1xi32>, got 'tensor<2xi32>'}}
  %c, %t, %n = tile.accept %d, %d at %d forced(%f) sample(%l, %s) mask_token(3) : tensor<4xi32>, tensor<2xi32>, tensor<4x8xf32>, tensor<2xi32> -> tensor<5xi32>
  return
}

// -----

func.func @f(%d: tensor<4xi32>, %f: tensor<1xi32>, %l: tensor<3x8xf32>, %s: tensor<2xi32>) {
  // expected-error @+1 {{'tile.accept' op logits must be [4, vocab] f32, got 'tensor<3x8xf32>'}}
  %c, %t, %n = tile.accept %d, %d at %d forced(%f) sample(%l, %s) mask_token(3) : tensor<4xi32>, tensor<1xi32>, tensor<3x8xf32>, tensor<2xi32> -> tensor<5xi32>
  return
}

// -----

func.func @f(%d: tensor<4xi32>, %f: tensor<1xi32>, %l: tensor<4x8xf32>, %s: tensor<3xi32>) {
  // expected-error @+1 {{'tile.accept' op sampling must be tensor<2xi32> (temperature bits, seed), got 'tensor<3xi32>'}}
  %c, %t, %n = tile.accept %d, %d at %d forced(%f) sample(%l, %s) mask_token(3) : tensor<4xi32>, tensor<1xi32>, tensor<4x8xf32>, tensor<3xi32> -> tensor<5xi32>
  return
}

// -----

tile.state @spec.tokens : tensor<4xi32>
tile.state @spec.positions : tensor<8xi32>
func.func @f(%d: tensor<4xi32>) {
  // expected-error @+1 {{'tile.spec_update' op state @spec.positions holds 'tensor<8xi32>', expected 'tensor<4xi32>'}}
  tile.spec_update %d, %d, %d into @spec.tokens, @spec.positions : tensor<4xi32>
  return
}

// -----

func.func @f(%d: tensor<4xi32>) {
  // expected-error @+1 {{'tile.draft_fill' op index 0 is not a drafted slot of a block of 4 (1 to 3)}}
  %r = tile.draft_fill %d, %d index(0) : tensor<4xi32>
  return
}

// -----

func.func @f(%d: tensor<4xi32>) {
  // expected-error @+1 {{'tile.draft_fill' op index 4 is not a drafted slot of a block of 4 (1 to 3)}}
  %r = tile.draft_fill %d, %d index(4) : tensor<4xi32>
  return
}

// -----

func.func @f(%d: tensor<1xi32>) {
  // expected-error @+1 {{'tile.draft_fill' op blocks of 2 to 16 tokens, got 1}}
  %r = tile.draft_fill %d, %d index(1) : tensor<1xi32>
  return
}

// -----

func.func @f(%d: tensor<17xi32>) {
  // expected-error @+1 {{'tile.draft_fill' op blocks of 2 to 16 tokens, got 17}}
  %r = tile.draft_fill %d, %d index(1) : tensor<17xi32>
  return
}

// -----

func.func @f(%d: tensor<2x4xi32>) {
  // expected-error @+1 {{'tile.draft_fill' op block must have rank 1, got 'tensor<2x4xi32>'}}
  %r = tile.draft_fill %d, %d index(1) : tensor<2x4xi32>
  return
}

// -----

func.func @f(%a: tensor<4xi32>, %b: tensor<8xi32>) {
  // expected-error @+1 {{'tile.draft_fill' op failed to verify that all of {block, drafted, result} have same type}}
  %r = "tile.draft_fill"(%a, %b) {index = 1 : i64} : (tensor<4xi32>, tensor<8xi32>) -> tensor<4xi32>
  return
}

// -----

tile.weight @w : tensor<4xf32> = "w"
func.func @f() {
  // expected-error @+1 {{'tile.state_read' op state @w names a 'tile.weight', expected a tile.state}}
  %s = tile.state_read @w : tensor<4xi32>
  return
}

// -----

tile.weight @n : tensor<32xbf16> = "n"
func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.concat' op norm @n has shape [32], expected [64]}}
  %c = tile.concat %x, %x axis(1) {norms = [@n, unit], eps = 1.0e-5 : f64} : tensor<4x64xbf16>, tensor<4x64xbf16> -> tensor<4x128xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.concat' op norms has 1 entries for 2 inputs}}
  %c = tile.concat %x, %x axis(1) {norms = [unit], eps = 1.0e-5 : f64} : tensor<4x64xbf16>, tensor<4x64xbf16> -> tensor<4x128xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.all_reduce' op ranks must be >= 1, got 0}}
  %y = tile.all_reduce sum %x ranks(0) : tensor<4x64xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.all_gather' op ranks must be >= 1, got -2}}
  %y = tile.all_gather %x axis(1) ranks(-2) : tensor<4x64xbf16> -> tensor<4x128xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.all_gather' op axis 2 is out of range for 'tensor<4x64xbf16>'}}
  %y = tile.all_gather %x axis(2) ranks(2) : tensor<4x64xbf16> -> tensor<4x128xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.all_gather' op result 'tensor<4x64xbf16>' must be [4, 128] of 'bf16'}}
  %y = tile.all_gather %x axis(1) ranks(2) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.all_to_all' op ranks must be >= 1, got 0}}
  %y = tile.all_to_all %x split(0) concat(1) ranks(0) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.all_to_all' op split/concat axes (0, 3) are out of range for 'tensor<4x64xbf16>'}}
  %y = tile.all_to_all %x split(0) concat(3) ranks(2) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

func.func @f(%x: tensor<3x64xbf16>) {
  // expected-error @+1 {{'tile.all_to_all' op split dim 0 (3) is not divisible by 2 ranks}}
  %y = tile.all_to_all %x split(0) concat(1) ranks(2) : tensor<3x64xbf16> -> tensor<3x64xbf16>
  return
}

// -----

func.func @f(%x: tensor<4x64xbf16>) {
  // expected-error @+1 {{'tile.all_to_all' op result 'tensor<4x64xbf16>' must be [2, 128] of 'bf16'}}
  %y = tile.all_to_all %x split(0) concat(1) ranks(2) : tensor<4x64xbf16> -> tensor<4x64xbf16>
  return
}
