// tile-fuse{disable=...} leaves patterns out by name. Without silu-pair a dense
// MLP keeps gate and up as two linears (norm-linear still makes the norm each
// one's prologue) and a tile.silu_mul, which tile-partition cuts into SILU_MUL
// tasks (column ranges, each waiting on both projections); down then waits on
// them. An unknown name is an error that lists the patterns.
// RUN: tile-opt %S/Inputs/dense-mlp.mlir --tile-fuse | FileCheck %s --check-prefix=FUSED
// RUN: tile-opt %S/Inputs/dense-mlp.mlir --tile-fuse="disable=silu-pair" | FileCheck %s --check-prefix=OFF
// RUN: tile-opt %S/Inputs/dense-mlp.mlir --tile-fuse="disable=silu-pair" --tile-partition="sms=4" | FileCheck %s --check-prefix=PART
// RUN: tile-opt %S/Inputs/dense-mlp.mlir --tile-fuse="disable=silu-pair" --tile-partition="sms=4" --tile-assign-warp-roles --tile-schedule --tile-plan-memory | FileCheck %s --check-prefix=PLAN
// RUN: tile-opt %S/Inputs/dense-mlp.mlir --tile-pipeline="disable-fusion=silu-pair" | FileCheck %s --check-prefix=PLAN
// RUN: not tile-opt %S/Inputs/dense-mlp.mlir --tile-fuse="disable=silu-pair,silu-pairs" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not tile-opt %S/Inputs/dense-mlp.mlir --tile-fuse="disable=residual" --tile-partition 2>&1 | FileCheck %s --check-prefix=RESIDUAL

// FUSED: %[[X:.*]] = tile.embed
// FUSED-NEXT: %[[M:.*]] = tile.fused_linear %[[X]], @model.layers.0.mlp.gate_proj, @model.layers.0.mlp.up_proj quant <fp8_block [128, 128]> norm(@model.layers.0.post_attention_layernorm, 1.000000e-05) epilogue(silu_pair) : tensor<2x64xbf16> -> tensor<2x256xbf16>
// FUSED-NEXT: tile.fused_linear %[[M]], @model.layers.0.mlp.down_proj {{.*}}epilogue(residual)
// FUSED-NOT: tile.silu_mul

// OFF: %[[X:.*]] = tile.embed
// OFF-NEXT: %[[G:.*]] = tile.fused_linear %[[X]], @model.layers.0.mlp.gate_proj quant <fp8_block [128, 128]> norm(@model.layers.0.post_attention_layernorm, 1.000000e-05) epilogue(store) : tensor<2x64xbf16> -> tensor<2x256xbf16>
// OFF-NEXT: %[[U:.*]] = tile.fused_linear %[[X]], @model.layers.0.mlp.up_proj quant <fp8_block [128, 128]> norm(@model.layers.0.post_attention_layernorm, 1.000000e-05) epilogue(store) : tensor<2x64xbf16> -> tensor<2x256xbf16>
// OFF-NEXT: %[[M:.*]] = tile.silu_mul %[[G]], %[[U]] : tensor<2x256xbf16>
// OFF-NEXT: tile.fused_linear %[[M]], @model.layers.0.mlp.down_proj {{.*}}epilogue(residual)
// OFF-NOT: tile.rms_norm

// PART: tile.event @ev.layers.0.gate_proj signals(4)
// PART: tile.task @layers.0.gate_proj.t0 family("linear") {{.*}}epilogue = 0 {{.*}}prologue = 1 {{.*}}writes [@layers.0.gate_proj.out] waits [@ev.emb]
// PART: tile.event @ev.layers.0.up_proj signals(4)
// PART: tile.task @layers.0.up_proj.t3 family("linear") {{.*}}n0 = 192 : i64, n1 = 256 : i64{{.*}}writes [@layers.0.up_proj.out] waits [@ev.emb]
// PART: tile.event @ev.layers.0.silu_mul signals(4)
// PART: tile.task @layers.0.silu_mul.t0 family("silu_mul") op("layers.0.silu_mul") params {N = 256 : i64, T = 2 : i64} args {gate = @layers.0.gate_proj.out, n0 = 0 : i64, n1 = 64 : i64, out = @layers.0.silu_mul.out, up = @layers.0.up_proj.out} reads [@layers.0.gate_proj.out, @layers.0.up_proj.out] writes [@layers.0.silu_mul.out] waits [@ev.layers.0.gate_proj, @ev.layers.0.up_proj] signals(@ev.layers.0.silu_mul) cost {bytes = 768 : i64, flops = 0 : i64}
// PART: tile.task @layers.0.silu_mul.t3 family("silu_mul") {{.*}}n0 = 192 : i64, n1 = 256 : i64
// PART-NOT: tile.task @layers.0.silu_mul.t4
// PART: tile.task @layers.0.down_proj.t0 family("linear") {{.*}}x = @layers.0.silu_mul.out} reads [@layers.0.silu_mul.out, @emb.out] {{.*}}waits [@ev.layers.0.silu_mul]

// Scheduled and placed: gate and up each get an arena buffer live until the
// SILU_MUL tasks have read them.
// PLAN: tile.buffer @layers.0.gate_proj.out : tensor<2x256xbf16> "activation" offset(
// PLAN: tile.buffer @layers.0.up_proj.out : tensor<2x256xbf16> "activation" offset(
// PLAN: tile.buffer @layers.0.silu_mul.out : tensor<2x256xbf16> "activation" offset(
// PLAN: tile.task @layers.0.silu_mul.t0 family("silu_mul") {{.*}}roles(<sched = 1, load = 1, compute = 14
// PLAN: tile.schedule sm(

// UNKNOWN: error: tile-fuse: disable=silu-pairs: no pattern 'silu-pairs' (the patterns: block-attention, query-rope, kv-append, silu-pair, moe, residual, argmax, concat-norm, norm-linear)
// UNKNOWN-NOT: see current operation

// Other patterns can be left out too, but what they fold has no task family.
// RESIDUAL: error: 'tile.add' op tile-partition: no task family for 'tile.add'
