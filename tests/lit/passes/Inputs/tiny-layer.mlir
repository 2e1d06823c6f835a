// One dense layer, one MoE layer and lm_head: the graph the pass tests cut up.
tile.weight @emb : tensor<512x64xbf16> = "model.embed_tokens.weight"
tile.weight @ln0 : tensor<64xbf16> = "ln0"
tile.weight @ln1 : tensor<64xbf16> = "ln1"
tile.weight @ln2 : tensor<64xbf16> = "ln2"
tile.weight @model.layers.0.self_attn.q_proj : tensor<192x64xf8E4M3FN> quant <fp8_block [128, 128]> = "q"
tile.weight @model.layers.0.self_attn.k_proj : tensor<96x64xf8E4M3FN> quant <fp8_block [128, 128]> = "k"
tile.weight @model.layers.0.self_attn.v_proj : tensor<64x64xf8E4M3FN> quant <fp8_block [128, 128]> = "v"
tile.weight @model.layers.0.self_attn.o_proj : tensor<64x128xbf16> = "o"
tile.weight @model.layers.0.mlp.gate : tensor<8x64xbf16> = "gate"
tile.weight @model.layers.0.mlp.gate.bias : tensor<8xf32> = "bias"
tile.weight @model.layers.0.mlp.experts.gate_up_proj : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "gu"
tile.weight @model.layers.0.mlp.experts.down_proj : tensor<8x64x64xf4E2M1FN> quant <mxfp4 [32]> = "dn"
tile.weight @model.norm : tensor<64xbf16> = "norm"
tile.weight @lm_head : tensor<512x64xbf16> = "lm_head.weight"
tile.kv_cache @kv.layer0 kv_heads(2) dims(48, 32) capacity(64) : bf16

func.func @target(%ids: tensor<2xi32>, %pos: tensor<2xi32>) -> (tensor<2x512xf32>, tensor<2xi32>) {
  %x = tile.embed %ids, @emb : tensor<2xi32> -> tensor<2x64xbf16>
  %h = tile.rms_norm %x, @ln0 eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %q = tile.linear %h, @model.layers.0.self_attn.q_proj quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x192xbf16>
  %k = tile.linear %h, @model.layers.0.self_attn.k_proj quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x96xbf16>
  %v = tile.linear %h, @model.layers.0.self_attn.v_proj quant <fp8_block [128, 128]> : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %q3 = tile.reshape %q : tensor<2x192xbf16> -> tensor<2x4x48xbf16>
  %k3 = tile.reshape %k : tensor<2x96xbf16> -> tensor<2x2x48xbf16>
  %v3 = tile.reshape %v : tensor<2x64xbf16> -> tensor<2x2x32xbf16>
  %qr = tile.rope %q3, %pos rotary_dim(16) theta(1.0e4) : tensor<2x4x48xbf16>, tensor<2xi32>
  %kr = tile.rope %k3, %pos rotary_dim(16) theta(1.0e4) : tensor<2x2x48xbf16>, tensor<2xi32>
  %t = tile.kv_append %kr, %v3, %pos into @kv.layer0 : tensor<2x2x48xbf16>, tensor<2x2x32xbf16>, tensor<2xi32>
  %a = tile.attention %qr, %pos over @kv.layer0 after %t mask(causal) scale(0.144) value_scale(0.707) : tensor<2x4x48xbf16>, tensor<2xi32> -> tensor<2x4x32xbf16>
  %a2 = tile.reshape %a : tensor<2x4x32xbf16> -> tensor<2x128xbf16>
  %o = tile.linear %a2, @model.layers.0.self_attn.o_proj : tensor<2x128xbf16> -> tensor<2x64xbf16>
  %x1 = tile.add %x, %o : tensor<2x64xbf16>
  %n = tile.rms_norm %x1, @ln1 eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %r = tile.router %n, @model.layers.0.mlp.gate bias(@model.layers.0.mlp.gate.bias) top_k(2) groups(1, 1) renorm : tensor<2x64xbf16> -> !tile.routing<tokens = 2, top_k = 2, experts = 8>
  %m = tile.moe %n, %r experts(@model.layers.0.mlp.experts.gate_up_proj, @model.layers.0.mlp.experts.down_proj) quant <mxfp4 [32]> : tensor<2x64xbf16>, !tile.routing<tokens = 2, top_k = 2, experts = 8> -> tensor<2x64xbf16>
  %x2 = tile.add %x1, %m : tensor<2x64xbf16>
  %f = tile.rms_norm %x2, @model.norm eps(1.0e-5) : tensor<2x64xbf16> -> tensor<2x64xbf16>
  %l = tile.linear %f, @lm_head : tensor<2x64xbf16> -> tensor<2x512xf32>
  %am = tile.argmax %l : tensor<2x512xf32> -> tensor<2xi32>
  return %l, %am : tensor<2x512xf32>, tensor<2xi32>
}
