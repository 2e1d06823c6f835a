"""check_roles.py SUMMARY_JSON: the warp roles of `tile-run profile --executor
host --json`: the sched role (waits on events) and the compute role (idle) are
recorded with real values, the load role is not (the host executor has none),
and per SM waiting never exceeds idling (the host executor's lists wait only
while they do not compute)."""
import json
import sys

j = json.load(open(sys.argv[1]))
roles = j["roles"]
assert set(roles) == {"sched", "load", "compute"}, roles
assert roles["load"]["recorded"] is False and "mean" not in roles["load"], roles["load"]
assert "no load role" in roles["load"]["note"], roles["load"]
for name, measure in (("sched", "waiting on events"), ("compute", "idle")):
    r = roles[name]
    assert r["recorded"] is True and r["measure"] == measure, r
    assert 0 <= r["min"] <= r["mean"] <= r["max"] <= 1, r
    assert r["spans_per_step"] > 0, r
assert roles["sched"]["mean"] > 0, roles["sched"]
assert roles["compute"]["mean"] < 1, roles["compute"]
assert roles["compute"]["spans_per_step"] == j["tasks_per_step"]
assert roles["compute"]["mean"] == j["idle"]["mean"]
per_sm = j["idle"]["per_sm"]
means = {"sched": 0.0, "compute": 0.0}
for sm in per_sm:
    assert "load_fraction" not in sm, sm
    assert 0 <= sm["sched_wait_fraction"] <= sm["idle_fraction"] + 1e-9, sm
    assert sm["busy_us"] > 0, sm
    means["sched"] += sm["sched_wait_fraction"] / len(per_sm)
    means["compute"] += sm["idle_fraction"] / len(per_sm)
for name in means:
    assert abs(means[name] - roles[name]["mean"]) < 1e-9, (name, means, roles[name])
print(f"roles ok: sched waiting {100 * roles['sched']['mean']:.1f}%, "
      f"compute idle {100 * roles['compute']['mean']:.1f}%, load not recorded")
