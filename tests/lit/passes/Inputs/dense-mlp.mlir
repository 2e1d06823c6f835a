// One dense MLP between the embedding and lm_head: the graph that
// fuse-disable.mlir compiles with and without tile-fuse's silu-pair.
tile.weight @emb : tensor<512x64xbf16> = "model.embed_tokens.weight"
tile.weight @model.layers.0.post_attention_layernorm : tensor<64xbf16> = "ln"
tile.weight @model.layers.0.mlp.gate_proj : tensor<256x64xf8E4M3FN> quant <fp8_block [128, 128]> = "g"
tile.weight @model.layers.0.mlp.up_proj : tensor<256x64xf8E4M3FN> quant <fp8_block [128, 128]> = "u"
tile.weight @model.layers.0.mlp.down_proj : tensor<64x256xf8E4M3FN> quant <fp8_block [128, 128]> = "d"
tile.weight @model.norm : tensor<64xbf16> = "norm"
tile.weight @lm_head : tensor<512x64xbf16> = "lm_head.weight"

func.func @target(%ids: tensor<2xi32>, %pos: tensor<2xi32>) -> tensor<2xi32> {
  %x = tile.embed %ids, @emb : tensor<2xi32> -> tensor<2x64xbf16>
  %h = tile.rms_norm %x, @model.layers.0.post_attention_layernorm eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %g = tile.linear %h, @model.layers.0.mlp.gate_proj quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x256xbf16>
  %u = tile.linear %h, @model.layers.0.mlp.up_proj quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x256xbf16>
  %m = tile.silu_mul %g, %u : tensor<2x256xbf16>
  %d = tile.linear %m, @model.layers.0.mlp.down_proj quant <fp8_block [128, 128]> : tensor<2x256xbf16> -> tensor<2x64xbf16>
  %y = tile.add %x, %d : tensor<2x64xbf16>
  %f = tile.rms_norm %y, @model.norm eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %l = tile.linear %f, @lm_head : tensor<2x64xbf16> -> tensor<2x512xf32>
  %am = tile.argmax %l : tensor<2x512xf32> -> tensor<2xi32>
  return %am : tensor<2xi32>
}
