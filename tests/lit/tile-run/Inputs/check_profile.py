"""check_profile.py OUT_DIR ENGINE_DIR STEPS: what `tile-run profile ENGINE_DIR
--executor host -n STEPS --out OUT_DIR` wrote. trace.json parses as a Chrome
trace with a compute track per SM (tid = SM, "SM n compute") holding one slice
per task and step (op name, family as the category, step and task in the
arguments) and a sched track per SM ("SM n sched") holding one slice per task
with waits (tasks.bin's wait words) and step, each ending before its task's
compute slice starts; no load tracks (the host executor has no load role);
timeline.png is a PNG (signature, IHDR first, its CRC right, IEND last);
summary.txt is not empty. Independent of tilec's own readers."""
import json
import struct
import sys
import zlib

out, engine, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
manifest = json.load(open(f"{engine}/manifest.json"))
per_sm = manifest["tasks"]["per_sm"]
tasks = sum(per_sm)
sms = manifest["target"]["sms"]

# tasks.bin: 24 int64 words per task, SM 0's first; words 2 and 4 are the
# events waited on (-1: none).
raw = open(f"{engine}/tasks.bin", "rb").read()
assert len(raw) == tasks * 24 * 8, (len(raw), tasks)
words = struct.unpack(f"<{tasks * 24}q", raw)
waiting = set()  # (sm, task index) of the tasks with waits
k = 0
for sm, n in enumerate(per_sm):
    for i in range(n):
        if words[k * 24 + 2] >= 0 or words[k * 24 + 4] >= 0:
            waiting.add((sm, i))
        k += 1

trace = json.load(open(f"{out}/trace.json"))
events = trace["traceEvents"]
every = [e for e in events if e["ph"] == "X"]
rows = {e["tid"]: e["args"]["name"] for e in events
        if e["ph"] == "M" and e["name"] == "thread_name"}
assert len(rows) == 2 * sms, len(rows)
assert rows[0] == "SM 0 compute" and rows[sms] == "SM 0 sched", rows
assert all(rows[sm] == f"SM {sm} compute" and rows[sms + sm] == f"SM {sm} sched"
           for sm in range(sms))
assert {e["args"]["role"] for e in every} == {"compute", "sched"}
slices = [e for e in every if e["args"]["role"] == "compute"]
waits = [e for e in every if e["args"]["role"] == "sched"]
assert len(slices) == tasks * steps, (len(slices), tasks, steps)
assert all(e["tid"] == e["args"]["sm"] for e in slices)
assert len(waits) == len(waiting) * steps, (len(waits), len(waiting), steps)
starts = {(e["args"]["step"], e["args"]["sm"], e["args"]["task"]): e["ts"]
          for e in slices}
for e in waits:
    sm, task = e["args"]["sm"], e["args"]["task"]
    assert (sm, task) in waiting and e["tid"] == sms + sm and e["cat"] == "sched"
    assert e["ts"] + e["dur"] <= starts[(e["args"]["step"], sm, task)] + 1e-3, e
    assert e["args"]["waits"], e
assert {e["args"]["step"] for e in slices} == set(range(steps))
assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in slices)
assert set(e["name"] for e in slices) <= set(manifest["ops"])
families = {i["family"] for i in manifest["instances"]}
assert {e["cat"] for e in slices} == families, ({e["cat"] for e in slices}, families)
assert "predicted_ns" in slices[0]["args"] and "bytes" in slices[0]["args"]
assert "host" in trace["otherData"]["clock"], trace["otherData"]

png = open(f"{out}/timeline.png", "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
length, kind = struct.unpack(">I4s", png[8:16])
assert kind == b"IHDR" and length == 13
width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
assert depth == 8 and colour == 2 and width >= 400 and height > sms, (width, height)
assert struct.unpack(">I", png[29:33])[0] == zlib.crc32(png[12:29])
assert png[-8:-4] == b"IEND"

summary = open(f"{out}/summary.txt").read()
assert summary.startswith("profile of "), summary[:80]
print(f"check_profile: {len(slices)} slices over {sms} SMs, "
      f"{len(waits)} sched waits, "
      f"a {width} x {height} PNG, {len(summary.splitlines())} summary lines")
