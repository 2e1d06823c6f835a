"""check_profile.py OUT_DIR ENGINE_DIR STEPS: what `tile-run profile ENGINE_DIR
-n STEPS --out OUT_DIR` wrote. trace.json parses as a Chrome trace with a
named row per SM and one slice per task and step (op name, family as the
category, step and task in the arguments); timeline.png is a PNG (signature,
IHDR first, its CRC right, IEND last); summary.txt is not empty. Independent
of tilec's own readers."""
import json
import struct
import sys
import zlib

out, engine, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
manifest = json.load(open(f"{engine}/manifest.json"))
tasks = sum(manifest["tasks"]["per_sm"])
sms = manifest["target"]["sms"]

trace = json.load(open(f"{out}/trace.json"))
events = trace["traceEvents"]
slices = [e for e in events if e["ph"] == "X"]
rows = {e["tid"]: e["args"]["name"] for e in events
        if e["ph"] == "M" and e["name"] == "thread_name"}
assert len(rows) == sms and rows[0] == "SM 0", rows
assert len(slices) == tasks * steps, (len(slices), tasks, steps)
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
print(f"check_profile: {len(slices)} slices over {len(rows)} SMs, "
      f"a {width} x {height} PNG, {len(summary.splitlines())} summary lines")
