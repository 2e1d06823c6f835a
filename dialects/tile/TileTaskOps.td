//===- TileTaskOps.td - Task-level ops of the tile dialect ----------------===//
//
// After tile-partition a graph function becomes a tile.program: arena buffers,
// events and tasks (a family, compile-time parameters, arguments bound to
// buffers, weights and caches, the events it waits on and signals, a cost), and
// after tile-schedule one ordered task list per SM.
//
//===----------------------------------------------------------------------===//
#ifndef TILE_TASK_OPS_TD
#define TILE_TASK_OPS_TD

def Tile_ProgramOp : Tile_Op<"program", [Symbol, SymbolTable, NoTerminator,
    SingleBlock, IsolatedFromAbove]> {
  let summary = "the tasks of one decoding-step function";
  let description = [{
    Holds `tile.buffer`, `tile.event`, `tile.task` (in a topological order) and,
    once scheduled, `tile.schedule` ops. `tokens` is the block size T; `target`
    the machine it was cut for.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, Tile_I64Attr:$tokens,
                       DictionaryAttr:$target);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name `tokens` `(` $tokens `)` `target` $target attr-dict-with-keyword $body";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::Block &getBodyBlock() { return getBody().front(); }
    int64_t getTargetInt(::llvm::StringRef key, int64_t fallback);
  }];
}

def Tile_BufferOp : Tile_Op<"buffer", [Symbol, HasParent<"ProgramOp">]> {
  let summary = "a region of the activation arena";
  let description = [{
    `kind` is `input` (written by the host before a step), `output` (read by the
    host after it), `activation` (produced and consumed inside the step) or
    `view` (another buffer's bytes, `alias`) or `kv` (a KV cache's keys or values,
    in the KV region: entries of earlier steps are legitimately there).
    tile-plan-memory sets `offset`.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttrOf<AnyRankedTensor>:$type,
                       StrAttr:$kind, OptionalAttr<FlatSymbolRefAttr>:$alias,
                       OptionalAttr<Tile_I64Attr>:$offset);
  let assemblyFormat = [{
    $sym_name `:` $type $kind (`alias` `(` $alias^ `)`)? (`offset` `(` $offset^ `)`)?
    attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getBytes();
  }];
}

def Tile_EventOp : Tile_Op<"event", [Symbol, HasParent<"ProgramOp">]> {
  let summary = "a monotonic counter some tasks signal once per step";
  let arguments = (ins SymbolNameAttr:$sym_name, Tile_I64Attr:$signals);
  let assemblyFormat = "$sym_name `signals` `(` $signals `)` attr-dict";
}

def Tile_TaskOp : Tile_Op<"task", [Symbol, HasParent<"ProgramOp">]> {
  let summary = "one unit of work for one SM";
  let description = [{
    `family` names the device body (docs/engine.md), `params` its compile-time
    parameters, `args` binds its arguments to buffers (`@buffer`), weights
    (`@weight`), KV caches and constants. `reads`/`writes` list the buffers it
    touches (what the event checks and tile-plan-memory use). It waits until
    each event of `waits` has all its signals for this step, and signals
    `signal` when done.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, StrAttr:$family, StrAttr:$op,
                       DictionaryAttr:$params, DictionaryAttr:$args,
                       SymbolRefArrayAttr:$reads, SymbolRefArrayAttr:$writes,
                       SymbolRefArrayAttr:$waits,
                       OptionalAttr<FlatSymbolRefAttr>:$signal,
                       DictionaryAttr:$cost,
                       OptionalAttr<Tile_RoleAttr>:$roles,
                       UnitAttr:$prefetch);
  let assemblyFormat = [{
    $sym_name `family` `(` $family `)` `op` `(` $op `)` `params` $params
    `args` $args `reads` $reads `writes` $writes `waits` $waits
    (`signals` `(` $signal^ `)`)? `cost` $cost (`roles` `(` $roles^ `)`)?
    (`prefetch` $prefetch^)? attr-dict
  }];
  let extraClassDeclaration = [{
    int64_t getParam(::llvm::StringRef key, int64_t fallback = 0);
    int64_t getCostInt(::llvm::StringRef key);
  }];
}

def Tile_ScheduleOp : Tile_Op<"schedule", [HasParent<"ProgramOp">]> {
  let summary = "the ordered task list of one SM";
  let arguments = (ins Tile_I64Attr:$sm, SymbolRefArrayAttr:$tasks);
  let assemblyFormat = "`sm` `(` $sm `)` $tasks attr-dict";
}

#endif // TILE_TASK_OPS_TD
