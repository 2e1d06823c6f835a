// The DFlash step with the autoregressive drafter (tilec --ar-drafter) of the
// tiny preset (blocks of 4) through tile-fuse, tile-partition and the rest of
// the pipeline: three drafter passes, each filling one slot.
// RUN: tilec tiny --ar-drafter --emit=graph | tile-opt --tile-fuse | FileCheck %s --check-prefix=FUSE
// RUN: tilec tiny --ar-drafter --emit=graph | tile-opt --tile-fuse --tile-partition="function=dflash_step sms=8" | FileCheck %s --check-prefix=PART
// RUN: tilec tiny --ar-drafter --emit=graph | tile-opt --tile-fuse --tile-partition="function=dflash_step sms=8" --tile-assign-warp-roles --tile-schedule --tile-plan-memory | FileCheck %s --check-prefix=PLAN

// tile-fuse: every pass's lm_head keeps only its fused argmax; pass k embeds
// the block the previous fill left and fills slot k; the update stores the
// last fill.
// FUSE-LABEL: func.func @dflash_step()
// FUSE: %{{.*}}, %[[NT:.*]], %[[NP:.*]] = tile.accept
// FUSE: tile.embed %[[NT]], @model.embed_tokens
// FUSE: %[[A1:.*]] = tile.fused_linear %{{.*}}, @lm_head norm(@drafter.norm, {{.*}}) epilogue(argmax) : tensor<4x64xbf16> -> tensor<4xi32>
// FUSE-NEXT: %[[F1:.*]] = tile.draft_fill %[[NT]], %[[A1]] index(1) : tensor<4xi32>
// FUSE-NEXT: tile.embed %[[F1]], @model.embed_tokens
// FUSE: tile.attention %{{.*}}, %[[NP]] over @ctx.layer0 after
// FUSE: %[[A2:.*]] = tile.fused_linear %{{.*}}, @lm_head norm(@drafter.norm, {{.*}}) epilogue(argmax) : tensor<4x64xbf16> -> tensor<4xi32>
// FUSE-NEXT: %[[F2:.*]] = tile.draft_fill %[[F1]], %[[A2]] index(2) : tensor<4xi32>
// FUSE-NEXT: tile.embed %[[F2]], @model.embed_tokens
// FUSE: %[[A3:.*]] = tile.fused_linear %{{.*}}, @lm_head norm(@drafter.norm, {{.*}}) epilogue(argmax) : tensor<4x64xbf16> -> tensor<4xi32>
// FUSE-NEXT: %[[F3:.*]] = tile.draft_fill %[[F2]], %[[A3]] index(3) : tensor<4xi32>
// FUSE-NEXT: tile.spec_update %[[NT]], %[[F3]], %[[NP]] into @spec.tokens, @spec.positions
// FUSE-NOT: tile.draft_fill

// tile-partition: the program says it drafts autoregressively; one DRAFT_FILL
// task per pass, after that pass's argmax; the next pass's embedding waits on
// the fill, and its writes of the block's keys into the context cache wait on
// that embedding alone, which implies the earlier pass's attention read them
// (write-after-read) and its own writes (write-after-write).
// PART: tile.program @dflash_step tokens(4) {{.*}}op_phases = {{{.*}}draft_fill{{[0-9]+}} = "draft"{{.*}}}, spec_autoregressive, spec_forced_buffer
// PART: tile.task @[[FILL1:draft_fill[0-9]+]].t0 family("draft_fill") op("[[FILL1]]") params {T = 4 : i64} args {block = @[[ACC:accept[0-9]+]].next_tokens, drafted = @lm_head.1.out, index = 1 : i64, out = @[[FILL1]].out} reads [@[[ACC]].next_tokens, @lm_head.1.out] writes [@[[FILL1]].out] waits [@ev.lm_head.1.reduce]
// PART-NOT: tile.task @[[FILL1]].t1
// PART: tile.task @embed_tokens.2.t0 family("embed") {{.*}}reads [@[[FILL1]].out] writes [@embed_tokens.2.out] waits [@ev.[[FILL1]]]
// PART: tile.task @layers.0.k_proj.3.t0 {{.*}}writes [@ctx.layer0.keys] waits [@ev.embed_tokens.2] signals(@ev.ctx.layer0.attention.1.qkv)
// PART: tile.task @ctx.layer0.attention.1.t0 family("attention") {{.*}}reads [{{.*}}@ctx.layer0.keys, @ctx.layer0.values{{.*}}] {{.*}}waits [@ev.ctx.layer0.attention.1.qkv]
// PART: tile.task @[[FILL2:draft_fill[0-9]+]].t0 family("draft_fill") {{.*}}args {block = @[[FILL1]].out, drafted = @lm_head.2.out, index = 2 : i64, out = @[[FILL2]].out}
// PART: tile.task @[[FILL3:draft_fill[0-9]+]].t0 family("draft_fill") {{.*}}args {block = @[[FILL2]].out, drafted = @lm_head.3.out, index = 3 : i64, out = @[[FILL3]].out}
// PART: tile.task @spec_update{{[0-9]+}}.t0 family("spec_update") {{.*}}args {drafted = @[[FILL3]].out, next = @[[ACC]].next_tokens{{.*}}waits [@ev.[[FILL3]]]
// PART-NOT: family("draft_fill")

// The rest of the pipeline accepts it; the state keeps its own bytes.
// PLAN: tile.program @dflash_step {{.*}}spec_autoregressive
// PLAN: tile.buffer @spec.tokens : tensor<4xi32> "state" offset([[T:[0-9]+]])
// PLAN-NOT: offset([[T]])
