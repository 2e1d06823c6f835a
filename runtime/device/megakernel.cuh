//===- megakernel.cuh - The persistent loop: task lists, roles, events ----===//
//
// kernel.cu (generated) supplies the instances and the kernel:
//
//   #define TILEC_THREADS 384          // the launch contract (common.cuh);
//   #define TILEC_SMEM_BYTES 196608    // the runtime passes these and
//   #define TILEC_MAX_TASKS 40         // TILEC_MAX_TASKS as -D options
//   #include "runtime/device/megakernel.cuh"
//   struct Dispatch {
//     __device__ static void run(long long instance, const TilecTask &t,
//                                const tilec::Ctx &c) {
//       switch (instance) {
//       case 0: tilec::linear_task<...>(t, c); break;
//       ...
//       }
//     }
//   };
//   extern "C" __global__ void __launch_bounds__(TILEC_THREADS, 1)
//   tilec_step(TilecStepParams p) { tilec::run_megakernel<Dispatch>(p); }
//
// One CTA per SM (grid = SMs, TILEC_THREADS threads, TILEC_SMEM_BYTES of
// dynamic shared memory) walks tasks [sm_begin[b], sm_begin[b + 1]). Roles:
//  - sched (warp 0): copies the next record into shared memory and waits on
//    its events while the compute warps still run the previous task (stamps:
//    the wait's start and its end), then hands it over (named barrier kBarGo)
//    and stamps the compute start;
//  - load (warp 1): for the task after the one computing, asks L2 for its
//    weight bytes (weights never depend on activations; MoE tasks, whose
//    expert comes from the router, only once their inputs are ready), so that
//    weights stream in while the CTA waits for activations (stamps: before and
//    after it issues the prefetches; none for a task it skips);
//  - compute (warps 2..): run the body (every Dispatch call with
//    ctx.prefetch = false), then one thread signals the task's event after all
//    their stores and stamps the end.
// A watchdog in the waits turns a hang into a report and stops every CTA.
// Trace stamps (only when p.trace is not null): trace_slot() below, the words
// of a task's slot are TaskAbi.h's TILEC_TRACE_*.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/device/argmax.cuh"
#include "runtime/device/attention.cuh"
#include "runtime/device/common.cuh"
#include "runtime/device/embed.cuh"
#include "runtime/device/linear.cuh"
#include "runtime/device/moe.cuh"
#include "runtime/device/router.cuh"
#include "runtime/device/silu_mul.cuh"
#include "runtime/device/spec.cuh"

namespace tilec {
namespace detail {

/// Task i's (the SM's n-th) TILEC_TRACE_WORDS stamps (TaskAbi.h's
/// TILEC_TRACE_* index them). With TILEC_MAX_TASKS (the runtime defines it)
/// TaskAbi.h's [sms, max tasks, TILEC_TRACE_WORDS]; without, the task's index
/// in the whole table.
__device__ __forceinline__ u64 *trace_slot(const TilecStepParams &p, int i,
                                           int begin) {
#ifdef TILEC_MAX_TASKS
  return p.trace +
         (i64(blockIdx.x) * TILEC_MAX_TASKS + (i - begin)) * TILEC_TRACE_WORDS;
#else
  (void)begin;
  return p.trace + i64(i) * TILEC_TRACE_WORDS;
#endif
}

/// The flags the roles poll (s_ready, s_started, s_abort): one writer, any
/// readers, no barrier between them. Shared-memory atomics, so that each read
/// sees a recent write and compute-sanitizer's racecheck sees them ordered.
__device__ __forceinline__ int ld_flag(const int *p) {
  return atomicAdd(const_cast<int *>(p), 0);
}
__device__ __forceinline__ void st_flag(int *p, int v) { atomicExch(p, v); }

/// The role-independent part of a Ctx.
__device__ __forceinline__ Ctx make_ctx(const TilecStepParams &p,
                                        unsigned char *smem, bool prefetch) {
  Ctx c;
  c.arena = p.arena;
  c.weights = p.weights;
  c.kv = p.kv;
  c.events = p.events;
  c.signals_per_step = p.signals_per_step;
  c.step = p.step;
  c.report = p.report;
  c.watchdog_ns = p.watchdog_ns;
  c.smem = smem;
  c.sm = int(blockIdx.x);
  c.task = 0;
  c.op = -1;
  c.prefetch = prefetch;
  return c;
}

} // namespace detail

template <typename Dispatch>
__device__ __forceinline__ void run_megakernel(const TilecStepParams &p) {
  extern __shared__ __align__(128) unsigned char tilec_dynamic_smem[];
  __shared__ TilecTask s_task[2]; // double-buffered: sched fills, compute reads
  __shared__ int s_abort;         // set by sched: the kernel is stopping
  __shared__ int s_ready;         // last task whose waits are satisfied
  __shared__ int s_started;       // last task handed to the compute warps

  const int begin = p.sm_begin[blockIdx.x], end = p.sm_begin[blockIdx.x + 1];
  if (threadIdx.x == 0) {
    s_abort = 0;
    s_ready = begin - 1;
    s_started = begin - 1;
  }
  __syncthreads();
  const int warp = int(threadIdx.x) >> 5, lane = lane_id();

  if (warp == kSchedWarp) {
    Ctx ctx = detail::make_ctx(p, tilec_dynamic_smem, false);
    for (int i = begin; i < end; ++i) {
      // The slot was last read by task i - 2, finished before the compute
      // warps met task i - 1's barrier.
      TilecTask &slot = s_task[(i - begin) & 1];
      if (lane < TILEC_TASK_WORDS)
        slot.w[lane] = __ldg(&p.tasks[i].w[lane]);
      __syncwarp();
      int ok = 1;
      if (lane == 0) {
        ctx.task = i - begin;
        ctx.op = slot.w[TILEC_W_OP];
        u64 *stamps = p.trace ? detail::trace_slot(p, i, begin) : nullptr;
        if (stamps)
          stamps[TILEC_TRACE_WAIT_BEGIN] = globaltimer();
#pragma unroll
        for (int k = 0; k < 2; ++k) {
          const i64 e = slot.w[TILEC_W_WAIT0 + 2 * k];
          if (ok && e >= 0)
            ok = wait_event(ctx, int(e),
                            p.step * u64(p.signals_per_step[e]) +
                                u64(slot.w[TILEC_W_COUNT0 + 2 * k]));
        }
        if (stamps && ok)
          stamps[TILEC_TRACE_WAIT_END] = globaltimer();
        if (ok)
          detail::st_flag(&s_ready, i);
        else
          detail::st_flag(&s_abort, 1);
      }
      ok = __shfl_sync(0xffffffffu, ok, 0);
      named_barrier(kBarGo, 32 + kComputeThreads);
      if (!ok)
        return;
      if (lane == 0) {
        detail::st_flag(&s_started, i);
        if (p.trace)
          detail::trace_slot(p, i, begin)[TILEC_TRACE_COMPUTE_BEGIN] =
              globaltimer();
      }
    }
  } else if (warp == kLoadWarp) {
    const Ctx ctx0 = detail::make_ctx(p, tilec_dynamic_smem, true);
    for (int i = begin; i < end; ++i) {
      while (detail::ld_flag(&s_started) < i - TILEC_PREFETCH_TASKS) {
        if (detail::ld_flag(&s_abort))
          return;
        __nanosleep(200);
      }
      const TilecTask &t = p.tasks[i];
      const i64 family = __ldg(&t.w[TILEC_W_FAMILY]);
      if (family == TILEC_TASK_MOE_GATE_UP || family == TILEC_TASK_MOE_DOWN) {
        // The expert comes from the plan: wait until the task's inputs are.
        while (detail::ld_flag(&s_ready) < i) {
          if (detail::ld_flag(&s_abort))
            return;
          __nanosleep(100);
        }
        asm volatile("fence.acq_rel.cta;" ::: "memory");
      } else if (family != TILEC_TASK_LINEAR) {
        continue; // nothing worth prefetching
      }
      Ctx ctx = ctx0;
      ctx.task = i - begin;
      u64 *stamps = p.trace ? detail::trace_slot(p, i, begin) : nullptr;
      if (stamps && lane == 0)
        stamps[TILEC_TRACE_LOAD_BEGIN] = globaltimer();
      Dispatch::run(__ldg(&t.w[TILEC_W_INSTANCE]), t, ctx);
      if (stamps) {
        __syncwarp(); // every lane has issued its share
        if (lane == 0)
          stamps[TILEC_TRACE_LOAD_END] = globaltimer();
      }
    }
  } else {
    Ctx ctx = detail::make_ctx(p, tilec_dynamic_smem, false);
    for (int i = begin; i < end; ++i) {
      named_barrier(kBarGo, 32 + kComputeThreads);
      if (detail::ld_flag(&s_abort))
        return;
      const TilecTask &t = s_task[(i - begin) & 1];
      ctx.task = i - begin;
      ctx.op = t.w[TILEC_W_OP];
      // Read before the body: after it, the slot only waits for the next
      // hand-over barrier before the sched warp refills it.
      const i64 e = t.w[TILEC_W_SIGNAL];
      Dispatch::run(t.w[TILEC_W_INSTANCE], t, ctx);
      compute_sync();
      if (compute_tid() == 0) {
        if (e >= 0)
          signal_event(ctx, int(e));
        if (p.trace)
          detail::trace_slot(p, i, begin)[TILEC_TRACE_COMPUTE_END] =
              globaltimer();
      }
    }
  }
}

/// The one-kernel-per-op baseline (tile-run --launch per-op): one launch per
/// group of tasks that signal one event, in a topological order of the
/// groups, so the launch order replaces the waits. Block b runs task
/// p.tasks[first + b] with the compute warps only: no sched or load role, no
/// persistence across tasks, no prefetch of the next task's weights. The task's
/// event is still signalled so that the counters stay those of the persistent
/// kernel (an engine can switch modes between steps). Nothing is stamped: the
/// runtime launches this mode with p.trace null (there are no sched or load
/// roles to stamp, and the launches' order, not waits, orders the tasks).
template <typename Dispatch>
__device__ __forceinline__ void run_one_task(const TilecStepParams &p,
                                             int first) {
  extern __shared__ __align__(128) unsigned char tilec_dynamic_smem[];
  __shared__ TilecTask s_one;
  if (int(threadIdx.x) < 32 * kComputeWarp0)
    return;
  const int i = first + int(blockIdx.x);
  if (compute_tid() < TILEC_TASK_WORDS)
    s_one.w[compute_tid()] = __ldg(&p.tasks[i].w[compute_tid()]);
  compute_sync();
  Ctx ctx = detail::make_ctx(p, tilec_dynamic_smem, false);
  ctx.op = s_one.w[TILEC_W_OP];
  Dispatch::run(s_one.w[TILEC_W_INSTANCE], s_one, ctx);
  compute_sync();
  if (compute_tid() == 0 && s_one.w[TILEC_W_SIGNAL] >= 0)
    signal_event(ctx, int(s_one.w[TILEC_W_SIGNAL]));
}

} // namespace tilec
