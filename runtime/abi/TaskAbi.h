/*===- TaskAbi.h - The engine's task records, shared by every executor
 *-----===//
 *
 * The contract between codegen (which writes task tables), the runtime (which
 * uploads them), the host executor (which runs them on CPU threads) and the
 *device library (which runs them on the GPU). Plain C types only: NVRTC
 *compiles this header with no standard library. docs/engine.md describes each
 *task kind's semantics; this file fixes the layout.
 *
 *===----------------------------------------------------------------------===*/
#ifndef TILEC_RUNTIME_ABI_TASKABI_H
#define TILEC_RUNTIME_ABI_TASKABI_H

#define TILEC_ABI_VERSION 5

/* One task: 24 signed 64-bit words. */
#define TILEC_TASK_WORDS 24
#define TILEC_TASK_ARGS 16 /* words 8 .. 23 */

/* Header words. */
#define TILEC_W_INSTANCE 0 /* which compiled body (kernel.cu's switch case) */
#define TILEC_W_OP 1       /* the graph op it comes from (traces, reports) */
#define TILEC_W_WAIT0 2    /* event id or -1 */
#define TILEC_W_COUNT0 3   /* signals of that event this step to wait for */
#define TILEC_W_WAIT1 4
#define TILEC_W_COUNT1 5
#define TILEC_W_SIGNAL 6 /* event id signalled (+1) when done, or -1 */
#define TILEC_W_FAMILY 7 /* TilecTaskFamily: lets executors check instances */
#define TILEC_W_ARG0 8   /* argument i is word TILEC_W_ARG0 + i */

typedef struct TilecTask {
  long long w[TILEC_TASK_WORDS];
} TilecTask;

/* Task families. An instance is a family plus compile-time parameters. */
enum TilecTaskFamily {
  TILEC_TASK_EMBED = 0,
  TILEC_TASK_LINEAR = 1,
  TILEC_TASK_ATTENTION = 2,
  TILEC_TASK_ROUTER_TOPK = 3,
  TILEC_TASK_MOE_GATE_UP = 4,
  TILEC_TASK_MOE_DOWN = 5,
  TILEC_TASK_MOE_COMBINE = 6,
  TILEC_TASK_ARGMAX_REDUCE = 7,
  TILEC_TASK_CONCAT = 8, /* DFlash: the target's tapped hidden states     */
  TILEC_TASK_SPEC_ACCEPT = 9,  /* DFlash: verify, accept, the next block  */
  TILEC_TASK_SPEC_UPDATE = 10, /* DFlash: the next block into the step state */
  TILEC_TASK_DRAFT_FILL = 11,  /* DFlash, AR drafter: one slot drafted */
  TILEC_TASK_SILU_MUL = 12,    /* silu(gate) * up of an unfused dense MLP    */
  TILEC_TASK_FAMILY_COUNT = 13
};

/* Weight storage formats (compile-time parameter of LINEAR and MOE bodies). */
enum TilecFormat { TILEC_FMT_BF16 = 0, TILEC_FMT_FP8 = 1, TILEC_FMT_MXFP4 = 2 };

/* LINEAR prologues and epilogues. */
enum TilecPrologue { TILEC_PRO_NONE = 0, TILEC_PRO_RMSNORM = 1 };
enum TilecEpilogue {
  TILEC_EPI_STORE_BF16 = 0, /* out[t, n] = y                                  */
  TILEC_EPI_STORE_F32 = 1,  /* out[t, n] = y (f32)                            */
  TILEC_EPI_RESIDUAL = 2,   /* out[t, n] = residual[t, n] + y (bf16)          */
  TILEC_EPI_SILU_PAIR = 3,  /* out[t, n] = silu(y_gate) * y_up (bf16)         */
  TILEC_EPI_ROPE_STORE = 4, /* q: rope per head, store bf16 [T, heads, D]     */
  TILEC_EPI_ROPE_KCACHE = 5, /* k: rope per head, store into the key cache */
  TILEC_EPI_VCACHE = 6, /* v: store into the value cache                  */
  TILEC_EPI_ARGMAX = 7  /* logits f32 + per-tile (max, index) partials     */
};

/* Argument words of each family (word TILEC_W_ARG0 + index); offsets
 * are bytes from the base of the region named in the comment. */
enum TilecEmbedArgs {
  TILEC_EMBED_IDS = 0,   /* arena: int32 [T]                 */
  TILEC_EMBED_TABLE = 1, /* weights: bf16 [V, H]             */
  TILEC_EMBED_OUT = 2,   /* arena: bf16 [T, H]               */
  TILEC_EMBED_COL0 = 3,  /* columns [col0, col1) of H        */
  TILEC_EMBED_COL1 = 4,
  TILEC_EMBED_SCALE = 5 /* f32 bits: input_embedding_scale  */
};

enum TilecLinearArgs {
  TILEC_LIN_X = 0,      /* arena: bf16 [T, K]                                 */
  TILEC_LIN_W = 1,      /* weights: the weight's data ([N, K] in its format)  */
  TILEC_LIN_WSCALE = 2, /* weights: its scales (FP8: f32, MXFP4: E8M0)        */
  TILEC_LIN_N0 = 3,     /* output rows [n0, n1) of this task                  */
  TILEC_LIN_N1 = 4,
  TILEC_LIN_OUT = 5,    /* arena (or kv for the cache epilogues)              */
  TILEC_LIN_NORM_W = 6, /* weights: bf16 [K] (prologue RMSNORM)               */
  TILEC_LIN_EPS = 7,    /* f32 bits (low 32); head norm eps (high 32)         */
  TILEC_LIN_RESIDUAL = 8, /* arena: bf16 [T, N] (RESIDUAL) */
  TILEC_LIN_W2 = 9, /* weights: up_proj data (SILU_PAIR)                  */
  TILEC_LIN_W2SCALE = 10, /* weights: up_proj scales (SILU_PAIR) */
  TILEC_LIN_POS = 11,   /* arena: int32 [T] positions (ROPE_*, *CACHE)        */
  TILEC_LIN_THETA = 12, /* f32 bits: rope theta (ROPE_*); ARGMAX with         */
                        /* logit_cap: multiplier (low 32), softcap (high 32)  */
  TILEC_LIN_PARTIAL =
      13,              /* arena: (f32 max, int32 index) [T, tiles] (ARGMAX)  */
  TILEC_LIN_TILE = 14, /* this task's tile index (ARGMAX)                    */
  TILEC_LIN_HNORM_W =
      15 /* weights: bf16 [head_dim] per-head norm (head_norm) */
};

enum TilecAttentionArgs {
  TILEC_ATT_Q = 0,       /* arena: bf16 [T, Hq, D]                          */
  TILEC_ATT_KCACHE = 1,  /* kv: bf16 [capacity, Hkv, D]                     */
  TILEC_ATT_VCACHE = 2,  /* kv: bf16 [capacity, Hkv, Dv]                    */
  TILEC_ATT_POS = 3,     /* arena: int32 [T]                                */
  TILEC_ATT_OUT = 4,     /* arena: bf16 [T, Hq, Dv]                         */
  TILEC_ATT_KV_HEAD = 5, /* this task's kv head (queries of its group)      */
  TILEC_ATT_SINKS = 6,   /* weights: bf16 [Hq], or -1                       */
  TILEC_ATT_SCALE = 7,   /* f32 bits                                        */
  TILEC_ATT_VSCALE = 8,  /* f32 bits                                        */
  TILEC_ATT_ROW0 = 9,    /* query rows [ROW0, ROW1) of the kv head's G x T:  */
  TILEC_ATT_ROW1 = 10    /* row r = token r / G, query head g*G + r % G      */
};

enum TilecRouterArgs {
  TILEC_RT_LOGITS = 0,  /* arena: f32 [T, E] (a LINEAR with STORE_F32)      */
  TILEC_RT_BIAS = 1,    /* weights: f32 [E] correction bias, or -1         */
  TILEC_RT_IDS = 2,     /* arena: int32 [T, K] chosen experts              */
  TILEC_RT_WEIGHTS = 3, /* arena: f32 [T, K] their combine weights         */
  TILEC_RT_PLAN = 4,    /* arena: int32 plan (see docs/engine.md)          */
  TILEC_RT_SCALING = 5  /* f32 bits: routed_scaling_factor                 */
};

enum TilecMoeArgs {
  TILEC_MOE_SLOT = 0, /* the plan slot this task serves */
  TILEC_MOE_N0 = 1, /* output rows [n0, n1) (of I for GATE_UP, of H for DOWN) */
  TILEC_MOE_N1 = 2,
  TILEC_MOE_X = 3, /* GATE_UP: arena bf16 [T, H]; DOWN: act bf16 [S, T, I]  */
  TILEC_MOE_PLAN = 4, /* arena: int32 plan */
  TILEC_MOE_W = 5, /* weights: experts' data, expert e at W + e * stride    */
  TILEC_MOE_WSCALE = 6, /* weights: experts' scales, likewise */
  TILEC_MOE_OUT = 7, /* GATE_UP: act bf16 [S, T, I]; DOWN: f32 [T, K, H]      */
  TILEC_MOE_NORM_W = 8, /* GATE_UP: weights bf16 [H] input norm */
  TILEC_MOE_EPS = 9, /* GATE_UP: f32 bits                                     */
  TILEC_MOE_RWEIGHTS = 10 /* DOWN: arena f32 [T, K] routing weights */
};

enum TilecCombineArgs {
  TILEC_CMB_PARTIAL = 0,  /* arena: f32 [T, K, H] */
  TILEC_CMB_RESIDUAL = 1, /* arena: bf16 [T, H]   */
  TILEC_CMB_OUT = 2,      /* arena: bf16 [T, H]   */
  TILEC_CMB_N0 = 3,
  TILEC_CMB_N1 = 4
};

enum TilecArgmaxArgs {
  TILEC_AMX_PARTIAL = 0, /* arena: [T, tiles] of (f32 max, int32 index) */
  TILEC_AMX_TILES = 1,
  TILEC_AMX_OUT = 2 /* arena: int32 [T] */
};

enum TilecConcatArgs {
  TILEC_CAT_X = 0,   /* arena: bf16 [T, W] (one input)                      */
  TILEC_CAT_OUT = 1, /* arena: bf16 [T, OUT_W]                              */
  TILEC_CAT_OFFSET = 2, /* the input's first column in out */
  TILEC_CAT_COL0 = 3, /* columns [col0, col1) of the input                   */
  TILEC_CAT_COL1 = 4,
  TILEC_CAT_NORM_W = 5, /* weights: bf16 [W] (norm = 1) */
  TILEC_CAT_EPS = 6 /* f32 bits                                            */
};

enum TilecSpecAcceptArgs {
  TILEC_ACC_DRAFT = 0, /* arena: int32 [T] the verified block              */
  TILEC_ACC_PREDICTED = 1, /* arena: int32 [T] the target's argmax */
  TILEC_ACC_POS = 2,     /* arena: int32 [T] its positions                   */
  TILEC_ACC_FORCED = 3,  /* arena: int32 [1] 0, or the prompt tokens given   */
  TILEC_ACC_OUT = 4,     /* arena: int32 [T + 1] count, then the tokens      */
  TILEC_ACC_NEXT = 5,    /* arena: int32 [T] [bonus, mask...]                */
  TILEC_ACC_NEXT_POS = 6, /* arena: int32 [T] their positions                */
  TILEC_ACC_LOGITS = 7,   /* arena: f32 [T, V] the target's logits            */
  TILEC_ACC_SAMPLING = 8  /* arena (state): int32 [2] temperature bits, seed  */
};

enum TilecSpecUpdateArgs {
  TILEC_UPD_NEXT = 0,     /* arena: int32 [T]                                 */
  TILEC_UPD_DRAFTED = 1,  /* arena: int32 [T] the drafter's argmax            */
  TILEC_UPD_NEXT_POS = 2, /* arena: int32 [T]                                 */
  TILEC_UPD_TOKENS = 3,   /* arena (state): int32 [T]                         */
  TILEC_UPD_POSITIONS = 4 /* arena (state): int32 [T]                         */
};

enum TilecDraftFillArgs {
  TILEC_FILL_BLOCK = 0,   /* arena: int32 [T] the block drafted so far        */
  TILEC_FILL_DRAFTED = 1, /* arena: int32 [T] the drafter's argmax over it    */
  TILEC_FILL_OUT = 2,     /* arena: int32 [T] the block, slot INDEX filled    */
  TILEC_FILL_INDEX = 3    /* the slot filled, 1 .. T-1                        */
};

enum TilecSiluMulArgs {
  TILEC_SILU_GATE = 0, /* arena: bf16 [T, N] the gate projection          */
  TILEC_SILU_UP = 1,   /* arena: bf16 [T, N] the up projection            */
  TILEC_SILU_OUT = 2,  /* arena: bf16 [T, N] silu(gate) * up              */
  TILEC_SILU_N0 = 3,   /* columns [n0, n1) of N                           */
  TILEC_SILU_N1 = 4
};

/* The kernel's one argument. Pointers are device addresses. */
typedef struct TilecStepParams {
  const TilecTask *tasks; /* every SM's list, back to back      */
  const int *sm_begin;    /* [sms + 1]: SM s runs tasks         */
                          /* [sm_begin[s], sm_begin[s + 1])     */
  unsigned char *arena;   /* activations, inputs, outputs       */
  const unsigned char *weights;
  unsigned char *kv;                    /* KV caches                          */
  unsigned long long *events;           /* monotonic counters                 */
  const unsigned int *signals_per_step; /* per event                          */
  unsigned long long step;              /* 0-based: targets = step * per + n  */
  unsigned long long *trace;            /* TILEC_TRACE_WORDS a task, or null  */
  int *report;                          /* host-mapped hang/fault report      */
  unsigned long long watchdog_ns;       /* 0: no watchdog                     */
} TilecStepParams;

/* The trace (TilecStepParams::trace): TILEC_TRACE_WORDS stamps per task, laid
 * out [sms, max tasks per SM, TILEC_TRACE_WORDS] (a task at its index in its
 * SM's list), in ns of the executor's clock (globaltimer on the GPU); 0 = not
 * stamped. This is the one place that fixes the layout: the device library
 * writes it, the runtime allocates and reads it, the host executor fills the
 * same layout. A role that does not stamp a task leaves its pair 0. */
#define TILEC_TRACE_WORDS 6
#define TILEC_TRACE_COMPUTE_BEGIN 0 /* compute: the task handed over     */
#define TILEC_TRACE_COMPUTE_END 1   /* compute: its event signalled      */
#define TILEC_TRACE_WAIT_BEGIN 2    /* sched: starts waiting on events   */
#define TILEC_TRACE_WAIT_END 3      /* sched: its waits satisfied        */
#define TILEC_TRACE_LOAD_BEGIN 4    /* load: starts its L2 prefetch      */
#define TILEC_TRACE_LOAD_END 5      /* load: issued (0, 0: skipped)      */

/* The hang report the watchdog writes (ints of TilecStepParams::report). */
enum TilecReport {
  TILEC_REPORT_FLAG = 0, /* 0 ok, 1 hang, 2 bad input (token id out of range) */
  TILEC_REPORT_SM = 1,
  TILEC_REPORT_TASK = 2, /* index into the SM's list */
  TILEC_REPORT_OP = 3,
  TILEC_REPORT_EVENT = 4,
  TILEC_REPORT_HAVE = 5, /* event value seen (low 32 bits) */
  TILEC_REPORT_WANT = 6, /* target (low 32 bits) */
  TILEC_REPORT_WORDS = 8
};

/* SPEC_ACCEPT's uniform numbers in [0, 1) (24 bits), the same on the host and
 * the device: SplitMix64 rounds over (seed, the position being decided, and
 * the purpose: 0 = accept test, 1 = the token drawn). */
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define TILEC_HOST_DEVICE __host__ __device__
#else
#define TILEC_HOST_DEVICE
#endif
static inline TILEC_HOST_DEVICE float tilec_spec_uniform(unsigned int seed,
                                                         int position,
                                                         int purpose) {
  unsigned long long z = ((unsigned long long)seed << 32) ^
                         (unsigned long long)(unsigned int)position ^
                         ((unsigned long long)(purpose & 3) << 62);
  int i;
  for (i = 0; i < 2; ++i) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
  }
  return (float)(z >> 40) * (1.0f / 16777216.0f);
}

#endif /* TILEC_RUNTIME_ABI_TASKABI_H */
