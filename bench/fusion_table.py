#!/usr/bin/env python3
"""Engines with and without a fusion, side by side (docs/tutorial-fusion.md).

Usage: bench/fusion_table.py ENGINE_DIR[:PROFILE_JSON[:RUN_JSON]] ...

Per engine, from its manifest.json (what the compiler decided): tasks and
events per step, tile-partition's estimated bytes per step, the arena, and
tile-schedule's predicted step. From `tile-run profile ENGINE --json` (when
given): the measured median step and the us per step of the dense MLPs' gate /
up part (every op named *.gate_proj, *.up_proj or *.silu_mul; with silu-pair
fused that is the one gate_proj op). From `tile-run run ENGINE --json` on a GPU
(when given): the kernel's median ms per step. The profile's clock is printed
once per profile: host times are CPU times of the host executor, not GPU times.
"""
import json
import sys


def last_json(path):
    """The JSON object of a file, or its last line's; None if unreadable."""
    try:
        text = open(path).read().strip()
    except OSError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # tile-run run --json: one line, maybe after others
        try:
            return json.loads(text.splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return None


def main(args):
    if not args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    header = (f"{'engine':<16} {'tasks':>6} {'events':>6} {'est. bytes':>11} {'arena':>9} "
              f"{'pred us':>8} {'step us':>9} {'gate/up us':>10} {'GPU ms':>8}")
    print(header)
    clocks = []
    for arg in args:
        parts = arg.split(":")
        engine = parts[0]
        m = json.load(open(f"{engine}/manifest.json"))
        est = m["tasks"].get("estimates", {})
        tasks = sum(m["tasks"]["per_sm"])
        events = len(m["events"])
        nbytes = sum(est.get("bytes", []))
        pred = est.get("predicted_ns", 0) / 1e3
        step = mlp = gpu = None
        p = last_json(parts[1]) if len(parts) > 1 and parts[1] else None
        r = last_json(parts[2]) if len(parts) > 2 and parts[2] else None
        if p:
            step = p["step_us"]["median"]
            mlp = sum(o["us_per_step"] for o in p["ops"]
                      if {"gate_proj", "up_proj", "silu_mul"} & set(o["name"].split(".")))
            if p["clock"] not in clocks:
                clocks.append(p["clock"])
        if r:
            gpu = r.get("kernel_step_ms_median")
        fmt = lambda v, f: format(v, f) if v is not None else "-"
        name = engine.rstrip("/").rsplit("/", 1)[-1]
        print(f"{name:<16} {tasks:>6} {events:>6} {nbytes:>11} "
              f"{m['regions']['arena_bytes']:>9} {pred:>8.2f} {fmt(step, '9.1f'):>9} "
              f"{fmt(mlp, '10.1f'):>10} {fmt(gpu, '8.4f'):>8}")
    for c in clocks:
        print(f"times: {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
