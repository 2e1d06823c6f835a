// tile-schedule places each task on the SM where it can start first, keeps every
// SM's list in topological order and predicts the step time.
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" --tile-assign-warp-roles --tile-schedule | FileCheck %s
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" --tile-assign-warp-roles --tile-schedule="cost-model=uniform" | FileCheck %s --check-prefix=UNIFORM
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=1" --tile-assign-warp-roles --tile-schedule | FileCheck %s --check-prefix=ONE
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" --tile-assign-warp-roles --tile-schedule="cost-model=magic" 2>&1 | FileCheck %s --check-prefix=BAD

// CHECK: tile.program @target {{.*}}cost_model = "roofline"{{.*}}predicted_ns = [[NS:[0-9]+]]
// The four q tiles start together on the four SMs.
// CHECK: tile.task @layers.0.q_proj.t0 {{.*}}{end_ns = {{[0-9]+}} : i64, sm = {{[0-3]}} : i64, start_ns = [[Q:[0-9]+]] : i64}
// CHECK: tile.task @layers.0.q_proj.t1 {{.*}}start_ns = [[Q]] : i64}
// CHECK: tile.task @layers.0.q_proj.t2 {{.*}}start_ns = [[Q]] : i64}
// CHECK: tile.task @layers.0.q_proj.t3 {{.*}}start_ns = [[Q]] : i64}
// CHECK: tile.schedule sm(0) [@emb.t0,
// CHECK: tile.schedule sm(1) [
// CHECK: tile.schedule sm(2) [
// CHECK: tile.schedule sm(3) [
// CHECK-NOT: tile.schedule sm(4)

// Every task costs 1: the critical path crosses 12 groups, and q/k/v's 11
// tasks take three rounds of the 4 SMs.
// UNIFORM: cost_model = "uniform"{{.*}}predicted_ns = 13 : i64

// One SM runs every task in program order (and the partition made one tile per
// linear).
// ONE: tile.schedule sm(0) [@emb.t0, @layers.0.q_proj.t0, @layers.0.k_proj.t0, @layers.0.v_proj.t0, @kv.layer0.attention.t0, @kv.layer0.attention.t1, @layers.0.o_proj.t0, @layers.0.moe.router.t0, @layers.0.moe.topk.t0, @layers.0.moe.gate_up.t0

// BAD: error: tile-schedule: cost-model must be roofline or uniform, got 'magic'
