#!/usr/bin/env python3
"""Fits tile-schedule's roofline cost model to a measured profile.

tile-schedule predicts a task's time as max(bytes / (hbm-gbps / SMs), flops / rate)
+ task-overhead-ns (passes/Schedule.cpp). `tile-run profile` writes every task's
measured duration beside the compiler's bytes and prediction (trace.json, slices of
the compute role). At batch 1 to 8 the tasks are bound by bytes, so the model is a
line per task, ns = overhead + bytes / bandwidth per SM; this script fits it by
least squares, over all tasks and per task family, and says how far the compiler's
predictions were from the measured times before and after.

Usage: bench/fit_cost_model.py TRACE.json [TRACE.json...] [--sms N] [--json]
Prints the fitted options as tilec takes them:
  tilec MODEL --pipeline "$(tilec MODEL --print-pipeline | sed 's/tile-schedule/tile-schedule{...}/')"
Pure Python (no numpy), so it runs wherever a profile is.
"""
import argparse
import json
import math
import re
import statistics
import sys

ROLE_CATEGORIES = ("sched", "load", "role")  # slices of the other warp roles


def tasks_of(path):
    """(family, bytes, measured ns, predicted ns) of every compute-role slice, and
    the SM rows named in the trace."""
    with open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    sms, out = set(), []
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            m = re.fullmatch(r"SM (\d+)( \w+)?", e.get("args", {}).get("name", ""))
            if m:
                sms.add(int(m.group(1)))
        if e.get("ph") != "X":
            continue
        a, cat = e.get("args", {}), str(e.get("cat", ""))
        if "bytes" not in a or "predicted_ns" not in a:
            continue
        if any(cat.startswith(r) for r in ROLE_CATEGORIES):
            continue
        out.append((cat, float(a["bytes"]), float(e["dur"]) * 1e3, float(a["predicted_ns"])))
    return out, len(sms)


def fit_line(points):
    """Least squares ns = c + s * bytes over (bytes, ns); (c, s, r2). A fit with a
    negative slope or intercept is redone with that term clamped at 0."""
    n = len(points)
    if n == 0:
        return 0.0, 0.0, 0.0
    mx = sum(b for b, _ in points) / n
    my = sum(t for _, t in points) / n
    sxx = sum((b - mx) ** 2 for b, _ in points)
    sxy = sum((b - mx) * (t - my) for b, t in points)
    s = sxy / sxx if sxx > 0 else 0.0
    c = my - s * mx
    if s < 0:
        s, c = 0.0, my
    if c < 0:  # through the origin
        sbb = sum(b * b for b, _ in points)
        s, c = (sum(b * t for b, t in points) / sbb if sbb else 0.0), 0.0
    syy = sum((t - my) ** 2 for _, t in points)
    sse = sum((t - (c + s * b)) ** 2 for b, t in points)
    return c, s, (1 - sse / syy) if syy > 0 else 0.0


def log_error(pairs):
    """Median |ln(predicted / measured)| over (predicted, measured) pairs; e.g.
    0.69 means a factor of 2 off for the median task."""
    errs = [abs(math.log(p / m)) for p, m in pairs if p > 0 and m > 0]
    return statistics.median(errs) if errs else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+", help="trace.json files of tile-run profile")
    ap.add_argument("--sms", type=int, default=0,
                    help="SMs of the GPU (default: the SM rows of the trace)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    tasks, sms = [], 0
    for path in args.traces:
        try:
            t, n = tasks_of(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.exit(f"fit_cost_model.py: {path}: not a tile-run profile trace ({e})")
        tasks += t
        sms = max(sms, n)
    sms = args.sms or sms
    if not tasks:
        sys.exit("fit_cost_model.py: no task slices with bytes and predicted_ns in "
                 f"{', '.join(args.traces)} (a trace of tile-run profile is needed)")
    if sms <= 0:
        sys.exit("fit_cost_model.py: the trace names no SM rows: give --sms")

    c, s, r2 = fit_line([(b, t) for _, b, t, _ in tasks])
    # bytes per ns per SM = GB/s per SM; tile-schedule takes the whole GPU's.
    hbm_gbps = sms / s if s > 0 else 0.0
    before = log_error([(p, t) for _, _, t, p in tasks])
    after = log_error([(c + s * b, t) for _, b, t, _ in tasks])
    families = {}
    for fam in sorted({f for f, *_ in tasks}):
        pts = [(b, t) for f, b, t, _ in tasks if f == fam]
        fc, fs, fr2 = fit_line(pts)
        families[fam] = {
            "runs": len(pts), "overhead_ns": fc,
            "gbps_per_sm": (1 / fs) if fs > 0 else None,
            "gbps_all_sms": (sms / fs) if fs > 0 else None, "r2": fr2,
            "mean_measured_ns": statistics.mean(t for _, t in pts),
            "log_error_before": log_error([(p, t) for f, _, t, p in tasks if f == fam]),
            "log_error_after": log_error([(c + s * b, t) for b, t in pts])}
    # A slope of 0: bytes do not explain the times (e.g. the host executor's);
    # then only the overhead is fitted (hbm-gbps=0 would mean the target's).
    option = (f"tile-schedule{{hbm-gbps={hbm_gbps:.0f} task-overhead-ns={c:.0f}}}"
              if s > 0 else f"tile-schedule{{task-overhead-ns={c:.0f}}}")
    result = {"traces": args.traces, "tasks": len(tasks), "sms": sms,
              "overhead_ns": c, "gbps_per_sm": (1 / s) if s > 0 else None,
              "hbm_gbps": hbm_gbps, "r2": r2, "median_log_error_before": before,
              "median_log_error_after": after, "families": families,
              "pipeline_option": option}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    if s > 0:
        print(f"{len(tasks)} task runs on {sms} SMs: ns = {c:.0f} + bytes / "
              f"{1 / s:.2f} GB/s per SM ({hbm_gbps:.0f} GB/s over all SMs), "
              f"R^2 {r2:.3f}")
    else:
        print(f"{len(tasks)} task runs on {sms} SMs: ns = {c:.0f} (the bytes do "
              "not explain the times: no bandwidth fitted)")
    print(f"median |ln(predicted / measured)|: {before:.3f} with the engine's "
          f"model, {after:.3f} fitted")
    print(f"{'family':<16} {'runs':>6} {'overhead ns':>12} {'GB/s/SM':>9} "
          f"{'R^2':>6} {'mean ns':>9} {'err before':>10} {'err after':>10}")
    for fam, f in families.items():
        g = f"{f['gbps_per_sm']:.2f}" if f["gbps_per_sm"] else "-"
        print(f"{fam:<16} {f['runs']:>6} {f['overhead_ns']:>12.0f} {g:>9} "
              f"{f['r2']:>6.3f} {f['mean_measured_ns']:>9.0f} "
              f"{f['log_error_before']:>10.3f} {f['log_error_after']:>10.3f}")
    print(f"tilec option: {option}")


if __name__ == "__main__":
    main()
