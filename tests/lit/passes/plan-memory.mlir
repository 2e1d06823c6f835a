// tile-plan-memory places arena buffers by liveness (buffers whose lifetimes do
// not overlap share bytes), lays out the KV caches and the weights the program
// reads, and views take their root's offset.
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-pipeline="target=h100" | FileCheck %s
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-pipeline="target=h100" | FileCheck %s --check-prefix=WEIGHTS
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition --tile-assign-warp-roles --tile-schedule --tile-plan-memory="reuse=false" | FileCheck %s --check-prefix=NOREUSE
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition --tile-assign-warp-roles --tile-schedule --tile-plan-memory="alignment=100" 2>&1 | FileCheck %s --check-prefix=ALIGN

// With reuse the arena is smaller than the sum of the buffers.
// CHECK: tile.program @target {{.*}}arena_bytes = [[ARENA:[0-9]+]] : i64{{.*}}kv_bytes = 20480 : i64{{.*}}weight_bytes = [[W:[0-9]+]] : i64
// CHECK-DAG: tile.buffer @tokens : tensor<2xi32> "input" offset({{[0-9]+}})
// CHECK-DAG: tile.buffer @kv.layer0.keys : tensor<64x2x48xbf16> "kv" offset(0)
// CHECK-DAG: tile.buffer @kv.layer0.values : tensor<64x2x32xbf16> "kv" offset(12288)
// The view of the attention output shares its bytes.
// CHECK-DAG: tile.buffer @kv.layer0.attention.out : tensor<2x4x32xbf16> "activation" offset([[ATT:[0-9]+]])
// CHECK-DAG: tile.buffer @reshape5.view : tensor<2x128xbf16> "view" alias(@kv.layer0.attention.out) offset([[ATT]])
// Weights in first-use order, each 256-byte aligned, scales after their data.
// WEIGHTS-DAG: tile.weight @emb : tensor<512x64xbf16> = "model.embed_tokens.weight" {bytes = 65536 : i64, offset = 0 : i64}
// WEIGHTS-DAG: tile.weight @model.layers.0.self_attn.q_proj : tensor<192x64xf8E4M3FN> quant <fp8_block [128, 128]> = "q" {bytes = 12288 : i64, offset = 65792 : i64, scale_bytes = 8 : i64, scale_offset = 78080 : i64}
// WEIGHTS-DAG: tile.weight @model.layers.0.mlp.experts.gate_up_proj : tensor<8x128x64xf4E2M1FN> quant <mxfp4 [32]> = "gu" {bytes = 32768 : i64, offset = {{[0-9]+}} : i64, scale_bytes = 2048 : i64

// NOREUSE: arena_bytes = 10496 : i64
// ALIGN: error: tile-plan-memory: alignment must be a power of two, got 100
