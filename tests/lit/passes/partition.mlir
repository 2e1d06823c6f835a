// tile-partition cuts each fused op into tasks sized to the machine: row tiles
// of linears (RoPE epilogues keep each head's rotary rows in one tile), up to
// attention-splits attention tasks per KV head (shares of its query rows), MoE
// tasks per (distinct-expert slot, tile) with S = min(E, T*K) slots.
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" | FileCheck %s --check-prefix=SMS4
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" | FileCheck %s --check-prefix=BUFS
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=2 min-rows=64" | FileCheck %s --check-prefix=SMS2
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition | FileCheck %s --check-prefix=H100
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=16 attention-splits=1 min-rows=8" | FileCheck %s --check-prefix=WHOLE
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="attention-splits=0" 2>&1 | FileCheck %s --check-prefix=BADSPLITS
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="target=a100" 2>&1 | FileCheck %s --check-prefix=BADTARGET
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-partition 2>&1 | FileCheck %s --check-prefix=UNFUSED

// SMS4: tile.program @target tokens(2) target {arch = "sm_90a", {{.*}}sms = 4
// BUFS-DAG: tile.buffer @tokens : tensor<2xi32> "input"
// BUFS-DAG: tile.buffer @positions : tensor<2xi32> "input"
// BUFS-DAG: tile.buffer @kv.layer0.keys : tensor<64x2x48xbf16> "kv"
// BUFS-DAG: tile.buffer @reshape5.view : tensor<2x128xbf16> "view" alias(@kv.layer0.attention.out)
// BUFS-DAG: tile.buffer @lm_head.argmax : tensor<2xi32> "output"
// BUFS-DAG: tile.buffer @layers.0.moe.plan : tensor<13xi32> "activation"
// BUFS-DAG: tile.buffer @layers.0.moe.act : tensor<4x2x64xbf16> "activation"
// q, k and v signal one event, which the attention waits on.
// SMS4: tile.event @ev.kv.layer0.attention.qkv signals(11)
// SMS4: tile.task @layers.0.q_proj.t0 family("linear") {{.*}}epilogue = 4 {{.*}}tile = 48{{.*}} args {{.*}}n0 = 0 : i64, n1 = 48 : i64{{.*}} waits [@ev.emb] signals(@ev.kv.layer0.attention.qkv)
// SMS4: tile.task @layers.0.q_proj.t3 {{.*}}n0 = 144 : i64, n1 = 192 : i64
// Keys (head_dim 48, rotary 16) in tiles of 32 rows: no boundary inside a
// head's first 16 rows (32 and 64 = head 1's row 16); values in any tile.
// SMS4: tile.task @layers.0.k_proj.t1 {{.*}}epilogue = 5 {{.*}}tile = 32{{.*}}n0 = 32 : i64, n1 = 64 : i64{{.*}}writes [@kv.layer0.keys]
// SMS4: tile.task @layers.0.k_proj.t2 {{.*}}n0 = 64 : i64, n1 = 96 : i64
// SMS4: tile.task @layers.0.v_proj.t3 {{.*}}epilogue = 6 {{.*}}tile = 16{{.*}}n0 = 48 : i64, n1 = 64 : i64{{.*}}writes [@kv.layer0.values]
// Attention: each kv head's G x T = 4 query rows in two tasks (4 SMs / 2 heads).
// SMS4: tile.task @kv.layer0.attention.t0 family("attention") {{.*}}rows = 2 {{.*}}kv_head = 0 {{.*}}row0 = 0 : i64, row1 = 2 : i64{{.*}}waits [@ev.kv.layer0.attention.qkv]
// SMS4: tile.task @kv.layer0.attention.t1 family("attention") {{.*}}kv_head = 0 {{.*}}row0 = 2 : i64, row1 = 4 : i64
// SMS4: tile.task @kv.layer0.attention.t3 family("attention") {{.*}}kv_head = 1 {{.*}}row0 = 2 : i64, row1 = 4 : i64
// SMS4-NOT: tile.task @kv.layer0.attention.t4
// o_proj reads the embedding as its residual, but waiting on the attention covers it.
// SMS4: tile.task @layers.0.o_proj.t0 {{.*}}reads [@reshape5.view, @emb.out] {{.*}}waits [@ev.kv.layer0.attention] signals
// SMS4: tile.task @layers.0.moe.router.t0 family("linear") {{.*}}epilogue = 1
// SMS4: tile.task @layers.0.moe.topk.t0 family("router_topk") {{.*}}plan = @layers.0.moe.plan
// SMS4-NOT: tile.task @layers.0.moe.topk.t1
// SMS4: tile.task @layers.0.moe.gate_up.t0 family("moe_gate_up") {{.*}}slots = 4
// SMS4: tile.task @layers.0.moe.gate_up.t3 family("moe_gate_up") {{.*}}slot = 3
// SMS4-NOT: tile.task @layers.0.moe.gate_up.t4
// SMS4: tile.task @layers.0.moe.down.t3 family("moe_down") {{.*}}waits [@ev.layers.0.moe.gate_up]
// SMS4: tile.task @layers.0.moe.combine.t0 family("moe_combine") {{.*}}waits [@ev.layers.0.moe.down]
// SMS4: tile.task @lm_head.t3 family("linear") {{.*}}epilogue = 7 {{.*}}n0 = 384 : i64, n1 = 512 : i64
// SMS4: tile.task @lm_head.reduce.t0 family("argmax_reduce") {{.*}}tiles = 4

// Fewer SMs and a larger minimum tile: fewer, bigger tasks.
// SMS2: tile.task @layers.0.o_proj.t0 {{.*}}tile = 64
// SMS2-NOT: tile.task @layers.0.o_proj.t1
// SMS2: tile.task @lm_head.t1 {{.*}}n0 = 256 : i64, n1 = 512 : i64
// SMS2-NOT: tile.task @lm_head.t2

// On an H100 (132 SMs) small ops get the minimum tile.
// H100: tile.program @target tokens(2) target {{.*}}name = "h100", {{.*}}sms = 132
// H100: tile.task @layers.0.o_proj.t3 {{.*}}n0 = 48 : i64, n1 = 64 : i64
// H100: tile.task @lm_head.t31 {{.*}}n0 = 496 : i64, n1 = 512 : i64

// Sixteen SMs and a minimum tile of 8 rows: keys in 16 (a tile of 8 would cut
// head 0's 16 rotary rows), values in 8; one attention task per kv head.
// WHOLE: tile.task @layers.0.k_proj.t0 {{.*}}tile = 16{{.*}}n0 = 0 : i64, n1 = 16 : i64
// WHOLE: tile.task @layers.0.k_proj.t5 {{.*}}n0 = 80 : i64, n1 = 96 : i64
// WHOLE-NOT: tile.task @layers.0.k_proj.t6
// WHOLE: tile.task @layers.0.v_proj.t7 {{.*}}tile = 8{{.*}}n0 = 56 : i64, n1 = 64 : i64
// WHOLE: tile.task @kv.layer0.attention.t1 family("attention") {{.*}}rows = 4 {{.*}}kv_head = 1 {{.*}}row0 = 0 : i64, row1 = 4 : i64
// WHOLE-NOT: tile.task @kv.layer0.attention.t2

// BADSPLITS: error: tile-partition: sms and smem must be >= 0, tasks-per-sm, min-rows and attention-splits >= 1
// BADTARGET: error: tile-partition: unknown target 'a100' (expected h100, h200 or b200)
// UNFUSED: error: 'tile.rms_norm' op tile-partition: no task family for 'tile.rms_norm'
