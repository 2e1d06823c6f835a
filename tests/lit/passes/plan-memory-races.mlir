// Regression: tile-plan-memory once shared bytes between buffers whose lifetimes
// were disjoint in program order only. @v writes @b without waiting for @r, the
// last reader of @a, so an SM may run @v while @r still reads: @b must not take
// @a's bytes. When the writer waits on the reader's event, sharing is safe.
// RUN: tile-opt %s --split-input-file --tile-plan-memory | FileCheck %s

// CHECK-LABEL: tile.program @unordered
// CHECK: tile.buffer @a : tensor<1x64xbf16> "activation" offset(256)
// CHECK-NEXT: tile.buffer @b : tensor<1x64xbf16> "activation" offset(512)
tile.program @unordered tokens(1) target {sms = 2 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @a : tensor<1x64xbf16> "activation"
  tile.buffer @b : tensor<1x64xbf16> "activation"
  tile.buffer @c : tensor<1x64xbf16> "output"
  tile.event @ev.w signals(1)
  tile.event @ev.r signals(1)
  tile.event @ev.v signals(1)
  tile.task @w family("linear") op("w") params {} args {} reads [@x] writes [@a] waits [] signals(@ev.w) cost {}
  tile.task @r family("linear") op("r") params {} args {} reads [@a] writes [] waits [@ev.w] signals(@ev.r) cost {}
  tile.task @v family("linear") op("v") params {} args {} reads [@x] writes [@b] waits [] signals(@ev.v) cost {}
  tile.task @u family("linear") op("u") params {} args {} reads [@b] writes [@c] waits [@ev.v, @ev.r] cost {}
}

// -----

// CHECK-LABEL: tile.program @ordered
// CHECK: tile.buffer @a : tensor<1x64xbf16> "activation" offset(256)
// CHECK-NEXT: tile.buffer @b : tensor<1x64xbf16> "activation" offset(256)
tile.program @ordered tokens(1) target {sms = 2 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @a : tensor<1x64xbf16> "activation"
  tile.buffer @b : tensor<1x64xbf16> "activation"
  tile.buffer @c : tensor<1x64xbf16> "output"
  tile.event @ev.w signals(1)
  tile.event @ev.r signals(1)
  tile.event @ev.v signals(1)
  tile.task @w family("linear") op("w") params {} args {} reads [@x] writes [@a] waits [] signals(@ev.w) cost {}
  tile.task @r family("linear") op("r") params {} args {} reads [@a] writes [] waits [@ev.w] signals(@ev.r) cost {}
  tile.task @v family("linear") op("v") params {} args {} reads [@x] writes [@b] waits [@ev.r] signals(@ev.v) cost {}
  tile.task @u family("linear") op("u") params {} args {} reads [@b] writes [@c] waits [@ev.v] cost {}
}

// -----

// Regression: the tasks of one event may wait on different events (DFlash's
// concat of early and late taps). @v1 and @v2 both write @b under @ev.v; only
// @v2 waits for @r, the last reader of @a. @v1 may run while @r reads, so @b
// must not take @a's bytes (tile-plan-memory once used the event's union of
// waits for each of its tasks).
// CHECK-LABEL: tile.program @group_waits_differ
// CHECK: tile.buffer @a : tensor<1x64xbf16> "activation" offset(256)
// CHECK-NEXT: tile.buffer @b : tensor<1x64xbf16> "activation" offset(512)
tile.program @group_waits_differ tokens(1) target {sms = 2 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @a : tensor<1x64xbf16> "activation"
  tile.buffer @b : tensor<1x64xbf16> "activation"
  tile.buffer @c : tensor<1x64xbf16> "output"
  tile.event @ev.w signals(1)
  tile.event @ev.r signals(1)
  tile.event @ev.v signals(2)
  tile.task @w family("linear") op("w") params {} args {} reads [@x] writes [@a] waits [] signals(@ev.w) cost {}
  tile.task @r family("linear") op("r") params {} args {} reads [@a] writes [] waits [@ev.w] signals(@ev.r) cost {}
  tile.task @v1 family("linear") op("v") params {} args {} reads [@x] writes [@b] waits [] signals(@ev.v) cost {}
  tile.task @v2 family("linear") op("v") params {} args {} reads [@x] writes [@b] waits [@ev.r] signals(@ev.v) cost {}
  tile.task @u family("linear") op("u") params {} args {} reads [@b] writes [@c] waits [@ev.v] cost {}
}
