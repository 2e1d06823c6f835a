// The DFlash step of the tiny preset (tilec's graph builder) through tile-fuse
// and tile-partition: what the passes do with the speculative ops.
// RUN: tilec tiny --emit=graph | tile-opt --tile-fuse | FileCheck %s --check-prefix=FUSE
// RUN: tilec tiny --emit=graph | tile-opt --tile-fuse --tile-partition="function=dflash_step sms=8" | FileCheck %s --check-prefix=PART
// RUN: tilec tiny --emit=graph | tile-opt --tile-fuse --tile-partition="function=dflash_step sms=8" --tile-assign-warp-roles --tile-schedule --tile-plan-memory | FileCheck %s --check-prefix=PLAN

// tile-fuse: the last tap's final norm moves into the concat, the lm_head keeps
// its logits (returned) beside the fused argmax, the drafter's q_norm/k_norm
// become head norms of the RoPE epilogues, and the draft block's K/V go into
// the context cache (no block operands left; the attention waits on the
// block's and the context's cache writes).
// FUSE-LABEL: func.func @dflash_step()
// FUSE: tile.concat %{{.*}}, %{{.*}} axis(1) {eps = 1.000000e-05 : f64, norms = [unit, @model.norm]}
// FUSE: %[[LM:.*]]:2 = tile.fused_linear %{{.*}}, @lm_head norm(@model.norm, 1.000000e-05) epilogue(argmax) : tensor<4x64xbf16> -> tensor<4xi32>, tensor<4x512xf32>
// FUSE: %[[CK:.*]] = tile.fused_linear %{{.*}}, @drafter.layers.0.self_attn.k_proj norm(@drafter.hidden_norm, {{.*}}) epilogue(rope_kcache) positions(%{{.*}} : tensor<4xi32>) rope(16, 1.000000e+04) cache(@ctx.layer0) head_norm(@drafter.layers.0.self_attn.k_norm, {{.*}})
// FUSE: %[[CV:.*]] = tile.fused_linear %{{.*}}, @drafter.layers.0.self_attn.v_proj {{.*}} epilogue(vcache) {{.*}} cache(@ctx.layer0)
// FUSE: %[[C:.*]], %[[NT:.*]], %[[NP:.*]] = tile.accept %{{.*}}, %[[LM]]#0 at
// FUSE: tile.fused_linear %{{.*}}, @drafter.layers.0.self_attn.q_proj {{.*}} epilogue(rope) positions(%[[NP]] : tensor<4xi32>) {{.*}} head_norm(@drafter.layers.0.self_attn.q_norm
// FUSE: %[[BK:.*]] = tile.fused_linear %{{.*}}, @drafter.layers.0.self_attn.k_proj {{.*}} positions(%[[NP]] : tensor<4xi32>) {{.*}} cache(@ctx.layer0)
// FUSE: %[[BV:.*]] = tile.fused_linear %{{.*}}, @drafter.layers.0.self_attn.v_proj {{.*}} positions(%[[NP]] : tensor<4xi32>) cache(@ctx.layer0)
// FUSE: tile.attention %{{.*}}, %[[NP]] over @ctx.layer0 after %[[BK]], %[[BV]], %[[CK]], %[[CV]] mask(causal) scale(2.500000e-01) window(16)
// FUSE: tile.attention %{{.*}}, %[[NP]] over @ctx.layer1 after {{.*}} mask(bidirectional)
// FUSE: %[[D:.*]] = tile.fused_linear %{{.*}}, @lm_head norm(@drafter.norm, {{.*}}) epilogue(argmax) : tensor<4x64xbf16> -> tensor<4xi32>
// FUSE: tile.spec_update %[[NT]], %[[D]], %[[NP]] into @spec.tokens, @spec.positions
// FUSE: return %[[C]], %[[LM]]#1
// FUSE-NOT: tile.rms_norm
// FUSE-NOT: tile.kv_append

// tile-partition: state buffers, one concat task per input (the second one
// normalizes), one accept and one update task, and the program names the
// buffers the runtime needs and each op's phase (verify, context, accept, draft).
// PART: tile.program @dflash_step tokens(4) {{.*}}logits_buffer = "lm_head.logits", op_phases = {[[ACC:accept[0-9]+]] = "accept"{{.*}}spec_update{{[0-9]+}} = "draft"{{.*}}}, spec_forced_buffer = "spec.forced", spec_out_buffer = "[[ACC]].committed", spec_positions_buffer = "spec.positions", spec_sampling_buffer = "spec.sampling", spec_tokens_buffer = "spec.tokens"
// PART-DAG: tile.buffer @spec.tokens : tensor<4xi32> "state"
// PART-DAG: tile.buffer @spec.positions : tensor<4xi32> "state"
// PART-DAG: tile.buffer @spec.forced : tensor<1xi32> "state"
// PART: tile.task @[[CAT:concat[0-9]+]].t0 family("concat") {{.*}}norm = 0 {{.*}}offset = 0
// PART: tile.task @[[CAT]].t1 family("concat") {{.*}}norm = 1 {{.*}}norm_w = @model.norm, offset = 64
// PART: tile.task @[[ACC]].t0 family("spec_accept") {{.*}}mask_token = 511 {{.*}}reads [@spec.tokens, @lm_head.argmax, @spec.positions, @spec.forced, @lm_head.logits, @spec.sampling]
// PART-NOT: tile.task @[[ACC]].t1
// PART: tile.task @lm_head.1.t0 family("linear") {{.*}}epilogue = 7
// PART: tile.task @spec_update{{[0-9]+}}.t0 family("spec_update") {{.*}}writes [@spec.tokens, @spec.positions] waits [@ev.lm_head.1.reduce]

// tile-plan-memory: state buffers keep their own bytes.
// PLAN: tile.buffer @spec.tokens : tensor<4xi32> "state" offset([[T:[0-9]+]])
// PLAN: tile.buffer @spec.positions : tensor<4xi32> "state" offset([[P:[0-9]+]])
// PLAN-NOT: offset([[T]])
// PLAN-NOT: offset([[P]])
