// Round trip of the task-level ops.
// RUN: tile-opt %s | tile-opt | FileCheck %s

// CHECK: tile.program @target tokens(1) target {name = "h100", smem = 232448 : i64, sms = 2 : i64} {
tile.program @target tokens(1) target {name = "h100", sms = 2 : i64, smem = 232448 : i64} {
  // CHECK: tile.buffer @x : tensor<1x64xbf16> "input" offset(0)
  tile.buffer @x : tensor<1x64xbf16> "input" offset(0)
  tile.buffer @y : tensor<1x64xbf16> "activation" offset(256)
  // CHECK: tile.buffer @y3 : tensor<1x4x16xbf16> "view" alias(@y)
  tile.buffer @y3 : tensor<1x4x16xbf16> "view" alias(@y)
  tile.buffer @z : tensor<1x64xbf16> "output"
  // CHECK: tile.event @ev.a signals(2)
  tile.event @ev.a signals(2)
  tile.event @ev.b signals(1)
  // CHECK: tile.task @a.t0 family("linear") op("a") params {K = 64 : i64} args {n0 = 0 : i64, x = @x} reads [@x] writes [@y] waits [] signals(@ev.a) cost {bytes = 10 : i64} roles(<sched = 1, load = 1, compute = 6, regs = [40, 160], smem = 1024>) prefetch
  tile.task @a.t0 family("linear") op("a") params {K = 64 : i64} args {x = @x, n0 = 0 : i64} reads [@x] writes [@y] waits [] signals(@ev.a) cost {bytes = 10 : i64} roles(<sched = 1, load = 1, compute = 6, regs = [40, 160], smem = 1024>) prefetch
  tile.task @a.t1 family("linear") op("a") params {K = 64 : i64} args {x = @x, n0 = 32 : i64} reads [@x] writes [@y] waits [] signals(@ev.a) cost {bytes = 10 : i64}
  // CHECK: tile.task @b.t0 family("linear") op("b") params {} args {} reads [@y3] writes [@z] waits [@ev.a] signals(@ev.b) cost {}
  tile.task @b.t0 family("linear") op("b") params {} args {} reads [@y3] writes [@z] waits [@ev.a] signals(@ev.b) cost {}
  // CHECK: tile.schedule sm(0) [@a.t0, @b.t0]
  tile.schedule sm(0) [@a.t0, @b.t0]
  tile.schedule sm(1) [@a.t1]
}
