// tile-assign-warp-roles gives every task a scheduler warp, loader and compute
// warps, register budgets and its shared memory, and rejects plans that do not
// fit the machine.
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" --tile-assign-warp-roles | FileCheck %s
// RUN: tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" --tile-assign-warp-roles="load-warps=2 compute-warps=8 compute-regs=184" | FileCheck %s --check-prefix=WIDE
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" --tile-assign-warp-roles="compute-warps=15 compute-regs=256" 2>&1 | FileCheck %s --check-prefix=REGS
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4 smem=16384" --tile-assign-warp-roles 2>&1 | FileCheck %s --check-prefix=SMEM
// RUN: not tile-opt %S/Inputs/tiny-layer.mlir --tile-fuse --tile-partition="sms=4" --tile-assign-warp-roles="compute-regs=100" 2>&1 | FileCheck %s --check-prefix=SETMAXNREG

// The kernel gets at least 64 KB of shared memory.
// CHECK: tile.program @target {{.*}}smem = 65536 : i64{{.*}}threads = 512 : i64
// A linear stages its T x K input (f32) beside the loader's two 16 KB pages.
// CHECK: tile.task @layers.0.q_proj.t0 {{.*}}roles(<sched = 1, load = 1, compute = 14, regs = [40, 112], smem = 33280>)
// CHECK: tile.task @layers.0.moe.topk.t0 {{.*}}roles(<sched = 1, load = 1, compute = 14, regs = [40, 112], smem = 128>)

// WIDE: tile.program @target {{.*}}threads = 352 : i64
// WIDE: roles(<sched = 1, load = 2, compute = 8, regs = [40, 184],

// REGS: error: 'tile.task' op @emb.t0: 17 warps x 256 registers exceed the target's 65536 registers per SM
// SMEM: error: 'tile.task' op @layers.0.q_proj.t0 needs 33280 bytes of shared memory; the target has 16384
// SETMAXNREG: error: tile-assign-warp-roles: a register budget of 100 is not one setmaxnreg accepts (a multiple of 8 in [24, 256])
