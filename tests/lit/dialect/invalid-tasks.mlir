// Every verifier error of the task-level IR: a read with no producer event, a
// dependency cycle, a schedule that can deadlock, budgets over the machine, and
// malformed buffers, events and schedules.
// RUN: tile-opt %s --split-input-file --verify-diagnostics

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @y : tensor<1x64xbf16> "activation"
  tile.buffer @z : tensor<1x64xbf16> "activation"
  tile.event @ev.a signals(1)
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [@y] waits [] signals(@ev.a) cost {}
  // expected-error @+1 {{'tile.task' op @b reads @y written by @a, but no event it waits on covers @ev.a: the input has no producer event}}
  tile.task @b family("linear") op("b") params {} args {} reads [@y] writes [@z] waits [] cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @y : tensor<1x64xbf16> "activation"
  tile.buffer @z : tensor<1x64xbf16> "activation"
  // expected-error @+1 {{'tile.task' op @b reads @y, which no earlier task writes}}
  tile.task @b family("linear") op("b") params {} args {} reads [@y] writes [@z] waits [] cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @y : tensor<1x64xbf16> "activation"
  tile.event @ev.a signals(1)
  tile.event @ev.b signals(1)
  // expected-error @+1 {{'tile.task' op @a waits on @ev.b, which @b signals later: a dependency cycle}}
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [@y] waits [@ev.b] signals(@ev.a) cost {}
  tile.task @b family("linear") op("b") params {} args {} reads [@y] writes [] waits [@ev.a] signals(@ev.b) cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @y : tensor<1x64xbf16> "activation"
  tile.event @ev.a signals(1)
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [@y] waits [] signals(@ev.a) cost {}
  tile.task @b family("linear") op("b") params {} args {} reads [@y] writes [] waits [@ev.a] cost {}
  // expected-error @+1 {{'tile.schedule' op sm(0) runs @a after a task that comes later in topological order: the schedule can deadlock}}
  tile.schedule sm(0) [@b, @a]
}

// -----

tile.program @p tokens(1) target {sms = 2 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @y : tensor<1x64xbf16> "activation"
  tile.event @ev.a signals(1)
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [@y] waits [] signals(@ev.a) cost {}
  // expected-error @+1 {{'tile.task' op @b is on no SM}}
  tile.task @b family("linear") op("b") params {} args {} reads [@y] writes [] waits [@ev.a] cost {}
  tile.schedule sm(0) [@a]
}

// -----

tile.program @p tokens(1) target {sms = 2 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [] waits [] cost {}
  tile.schedule sm(0) [@a]
  // expected-error @+1 {{'tile.schedule' op @a is scheduled twice}}
  tile.schedule sm(1) [@a]
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.schedule' op sm(0) lists @nope, which is not a tile.task here}}
  tile.schedule sm(0) [@nope]
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  tile.buffer @y : tensor<1x64xbf16> "activation"
  // Same SM, earlier in its list: no event is needed.
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [@y] waits [] cost {}
  tile.task @b family("linear") op("b") params {} args {} reads [@y] writes [] waits [] cost {}
  tile.schedule sm(0) [@a, @b]
}
tile.program @q tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.event' op @ev.a expects 2 signals per step but 1 tasks signal it}}
  tile.event @ev.a signals(2)
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [] waits [] signals(@ev.a) cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.task' op @a signals @ev.none, which is not a tile.event here}}
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [] waits [] signals(@ev.none) cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.task' op @a waits on @ev.none, which is not a tile.event here}}
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [] waits [@ev.none] cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.task' op @a reads @nope, which is not a tile.buffer here}}
  tile.task @a family("linear") op("a") params {} args {} reads [@nope] writes [] waits [] cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.task' op @a writes @nope, which is not a tile.buffer here}}
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [@nope] waits [] cost {}
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64, smem = 1000 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.task' op @a needs 4096 bytes of shared memory; the target has 1000}}
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [] waits [] cost {} roles(<sched = 1, load = 1, compute = 6, regs = [40, 160], smem = 4096>)
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64, regs = 65536 : i64} {
  tile.buffer @x : tensor<1x64xbf16> "input"
  // expected-error @+1 {{'tile.task' op @a: 18 warps x 128 registers exceed the target's 65536 registers per SM}}
  tile.task @a family("linear") op("a") params {} args {} reads [@x] writes [] waits [] cost {} roles(<sched = 1, load = 1, compute = 16, regs = [40, 128], smem = 0>)
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  // expected-error @+1 {{'tile.buffer' op @x: kind 'scratch' is not input, output, activation, view, kv or state}}
  tile.buffer @x : tensor<1x64xbf16> "scratch"
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  // expected-error @+1 {{'tile.buffer' op @x: a view needs alias(@buffer) and only a view has one}}
  tile.buffer @x : tensor<1x64xbf16> "view"
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  // expected-error @+1 {{'tile.buffer' op @x needs a static shape of whole bytes, got 'tensor<?x64xbf16>'}}
  tile.buffer @x : tensor<?x64xbf16> "input"
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  // expected-error @+1 {{'tile.buffer' op @x: negative offset}}
  tile.buffer @x : tensor<1x64xbf16> "input" offset(-256)
}

// -----

tile.program @p tokens(1) target {sms = 1 : i64} {
  // expected-error @+1 {{'func.func' op does not belong in a tile.program}}
  func.func private @f()
}
