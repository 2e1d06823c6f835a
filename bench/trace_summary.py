#!/usr/bin/env python3
"""Summary of one megakernel step from `tile-run run ENGINE --trace-out TRACE.json`.

Prints, for the step's span (first task start to last task end on any SM):
  * per op: tasks, SMs used, busy time summed over its tasks, its own span;
  * per task family: busy time and share of all SM time;
  * idle: the fraction of SM x span that no task ran (waits on events, hand-over,
    the tail after an SM's last task), overall and its distribution over SMs;
  * the other warp roles, when the trace has their tracks (args.role "sched":
    the sched warp waiting on a task's events; "load": the load warp issuing a
    task's L2 prefetches): their share of the span per SM (mean, min, max over
    the SMs with tasks).
With --png, draws the timeline (one row per SM, tasks coloured by family; idle gaps
show as white), which needs matplotlib.

Usage: python3 bench/trace_summary.py TRACE.json [--png OUT.png] [--title TEXT]
"""
import argparse
import collections
import json
import statistics


def load(path):
    """The compute role's slices (the tasks), and the other roles' by role."""
    events = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
    tasks = [e for e in events if e.get("args", {}).get("role", "compute") == "compute"]
    if not tasks:
        raise SystemExit(f"{path}: no task slices (was the engine run with --trace-out?)")
    roles = collections.defaultdict(list)
    for e in events:
        role = e.get("args", {}).get("role", "compute")
        if role != "compute":
            roles[role].append(e)
    return tasks, roles


def role_shares(roles, events, span, t0):
    """Per role: its time inside the step on each SM with tasks, as a share."""
    sms = sorted({e["args"].get("sm", e["tid"]) for e in events})
    t1 = t0 + span
    out = {}
    for role, slices in roles.items():
        per_sm = collections.Counter()
        for e in slices:
            b, end = max(e["ts"], t0), min(e["ts"] + e["dur"], t1)
            per_sm[e["args"]["sm"]] += max(end - b, 0.0)
        out[role] = [per_sm[s] / span for s in sms]
    return out


def summarize(events):
    t0 = min(e["ts"] for e in events)
    t1 = max(e["ts"] + e["dur"] for e in events)
    span = t1 - t0
    sms = sorted({e["tid"] for e in events})
    ops = collections.OrderedDict()
    for e in sorted(events, key=lambda e: e["ts"]):
        o = ops.setdefault(e["name"], {"family": e["cat"], "tasks": 0, "busy": 0.0,
                                        "start": e["ts"], "end": 0.0, "sms": set()})
        o["tasks"] += 1
        o["busy"] += e["dur"]
        o["end"] = max(o["end"], e["ts"] + e["dur"])
        o["sms"].add(e["tid"])
    families = collections.Counter()
    for e in events:
        families[e["cat"]] += e["dur"]
    busy_per_sm = collections.Counter()
    for e in events:
        busy_per_sm[e["tid"]] += e["dur"]
    idle = [1 - busy_per_sm[s] / span for s in sms]
    return span, sms, ops, families, idle, t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--png")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    events, roles = load(args.trace)
    span, sms, ops, families, idle, t0 = summarize(events)
    total = span * len(sms)
    print(f"step span {span:.1f} us over {len(sms)} SMs, {len(events)} tasks")
    print(f"idle (no task running) {100 * statistics.mean(idle):.1f}% of SM time; "
          f"per SM min {100 * min(idle):.1f}%, median {100 * statistics.median(idle):.1f}%, "
          f"max {100 * max(idle):.1f}%")
    shares = role_shares(roles, events, span, t0)
    for role, what in (("sched", "waiting on events"), ("load", "prefetching")):
        if role in shares:
            v = shares[role]
            print(f"{role}: {what} {100 * statistics.mean(v):.1f}% of the step per SM; "
                  f"min {100 * min(v):.1f}%, max {100 * max(v):.1f}% "
                  f"({len(roles[role])} slices)")
    print("\nby family:            busy us   share of SM time")
    for fam, busy in families.most_common():
        print(f"  {fam:18s} {busy:10.1f}   {100 * busy / total:5.1f}%")
    print("\nby op (in start order): tasks  SMs   busy us   span us  [start, end] us")
    for name, o in ops.items():
        print(f"  {name[:34]:34s} {o['tasks']:5d} {len(o['sms']):4d} {o['busy']:9.1f} "
              f"{o['end'] - o['start']:9.1f}  [{o['start'] - t0:7.1f}, {o['end'] - t0:7.1f}]")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        colours = {}
        palette = plt.get_cmap("tab10")
        fig, ax = plt.subplots(figsize=(14, 7))
        row = {s: i for i, s in enumerate(sms)}
        for e in events:
            c = colours.setdefault(e["cat"], palette(len(colours) % 10))
            ax.broken_barh([(e["ts"] - t0, e["dur"])], (row[e["tid"]] - 0.4, 0.8),
                           facecolors=c, linewidth=0)
        ax.set_xlabel("us from the step's first task")
        ax.set_ylabel("SM")
        ax.set_ylim(-1, len(sms))
        ax.set_xlim(0, span)
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()],
                  labels=list(colours), loc="upper right", fontsize=8)
        ax.set_title(args.title or args.trace)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
