#!/usr/bin/env python3
"""Check a directory written by train_pair.py with tilec's own binaries.

  1. tilec compiles it: the DFlash engine (drafter/ picked up), --no-drafter, the
     autoregressive mode of drafter/ (--ar-drafter) and, when OUT has drafter-ar/, that
     drafter's (--drafter OUT/drafter-ar --ar-drafter);
  2. tile-run run --executor host --check on each (the engine against the CPU reference);
     the speculative engines' tokens must equal the greedy engine's;
  3. tile-run reference on the held-out prompt of metrics.json "crosscheck": its greedy
     tokens must equal the PyTorch model's with the dequantized weights (the export's
     round trip through the C++ loader), and each speculative engine's per-step accepted
     lengths are compared with train_pair.py's PyTorch drafters (the engine rounds
     activations to bf16, so a few steps may differ);
  4. the C++ tokenizer (tile-run tokenize) against the tokenizers library on held-out
     strings of the same corpus split.

Usage:
    python3 tools/train/check_fixture.py OUTDIR [--bin build/bin] [--strings 300]
Exits 1 when a check fails.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_pair  # noqa: E402  (the corpus split)


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p


def heldout_strings(corpus, percent, max_files, count, seed=1):
    """Lines, slices of 1..400 characters and a few whole-ish chunks of held-out files."""
    _, held = train_pair.split_corpus(corpus, percent, max_files)
    rng = random.Random(seed)
    texts = [t for _, t in held]
    lines = [l for t in texts for l in t.splitlines(keepends=True) if l.strip()]
    out = []
    while len(out) < count:
        kind = rng.random()
        if kind < 0.4 and lines:
            s = rng.choice(lines)
        else:
            t = rng.choice(texts)
            n = rng.choice([1, 2, 5, 20, 80, 400]) if kind < 0.9 else 2000
            a = rng.randrange(max(1, len(t) - 1))
            s = t[a:a + n]
        if s and "\x00" not in s:
            out.append(s)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the directory train_pair.py wrote")
    ap.add_argument("--bin", default="build/bin", help="directory of tilec and tile-run")
    ap.add_argument("--work", default=None, help="where to put the engines (default: a temp dir)")
    ap.add_argument("--strings", type=int, default=300, help="held-out strings to tokenize")
    ap.add_argument("--prompt", default="def foo(")
    args = ap.parse_args()
    tilec = os.path.join(args.bin, "tilec")
    tile_run = os.path.join(args.bin, "tile-run")
    work = args.work or tempfile.mkdtemp(prefix="check-fixture-")
    metrics = json.load(open(os.path.join(args.model, "metrics.json")))
    failures, report = [], {}

    # 1-2. Compile, run, --check. The names are metrics.json's eval modes.
    flags = {"dflash": [], "greedy": ["--no-drafter"], "ar_same_drafter": ["--ar-drafter"]}
    if os.path.isdir(os.path.join(args.model, "drafter-ar")):
        flags["ar_drafter"] = ["--drafter", os.path.join(args.model, "drafter-ar"),
                               "--ar-drafter"]
    engines = {name: os.path.join(work, name) for name in flags}
    for name, f in flags.items():
        run([tilec, args.model, *f, "-o", engines[name]])
    outputs = {}
    for name, eng in engines.items():
        p = run([tile_run, "run", eng, "--executor", "host", "--check", "--prompt",
                 args.prompt, "-n", "16", "--json"], check=False)
        ok = p.returncode == 0
        report[f"check_{name}"] = "pass" if ok else p.stderr.strip().splitlines()[-1]
        if ok:
            outputs[name] = json.loads(p.stdout)["tokens"]
        else:
            # Without --check: at least the engine runs, and DFlash is lossless.
            p2 = run([tile_run, "run", eng, "--executor", "host", "--prompt", args.prompt,
                      "-n", "16", "--json"])
            outputs[name] = json.loads(p2.stdout)["tokens"]
            failures.append(f"tile-run run --check on the {name} engine: "
                            f"{report[f'check_{name}']}")
    for name in engines:
        if name != "greedy":
            report[f"{name}_tokens_equal_greedy"] = outputs[name] == outputs["greedy"]
            if not report[f"{name}_tokens_equal_greedy"]:
                failures.append(f"the {name} engine's tokens differ from the greedy engine's")

    # 3. The export's round trip and the drafter against the PyTorch one.
    cc = metrics["eval"]["crosscheck"]
    ids = ",".join(map(str, cc["prompt_ids"]))
    n = len(cc["greedy_quantized"])
    ref = json.loads(run([tile_run, "reference", args.model, "--prompt-ids", ids, "-n", str(n),
                          "--json"]).stdout)["tokens"]
    report["reference_equals_pytorch_greedy"] = ref == cc["greedy_quantized"]
    if ref != cc["greedy_quantized"]:
        failures.append("tile-run reference's greedy tokens differ from the PyTorch model's "
                        "with the dequantized weights")
    for name in engines:
        if f"{name}_b8_accepted" not in cc:  # greedy; modes older metrics lack
            continue
        d = json.loads(run([tile_run, "run", engines[name], "--executor", "host",
                            "--prompt-ids", ids, "-n", str(n), "--json"]).stdout)
        ours = cc[f"{name}_b8_accepted"]
        theirs = d["accepted_per_step"]
        same = sum(a == b for a, b in zip(ours, theirs))
        report[f"{name}_accepted"] = {"engine": " ".join(map(str, theirs)),
                                      "pytorch": " ".join(map(str, ours)),
                                      "equal_steps": f"{same}/{max(len(ours), len(theirs))}",
                                      "engine_mean": d["mean_accepted"]}
        # The engine rounds activations to bf16 (PyTorch: f32): a near-tie may differ.
        report[f"{name}_engine_tokens_equal_pytorch"] = d["tokens"] == cc["greedy_quantized"]

    # 4. Tokenizer.
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    a = metrics["args"]
    strings = heldout_strings(a["corpus"], a["heldout_percent"], a["max_files"], args.strings)
    equal, round_trip, bad = 0, 0, []
    for s in strings:
        out = json.loads(run([tile_run, "tokenize", args.model, f"--text={s}", "--json"]).stdout)
        want = tok.encode(s, add_special_tokens=False).ids
        if out["ids"] == want:
            equal += 1
        elif len(bad) < 3:
            bad.append({"text": s[:80], "cpp": out["ids"][:12], "tokenizers": want[:12]})
        round_trip += bool(out["round_trip"])
    report["tokenizer"] = {"strings": len(strings), "ids_equal": equal,
                           "round_trip_exact": round_trip, "first_differences": bad}
    if equal != len(strings):
        failures.append(f"tokenizer: {len(strings) - equal} of {len(strings)} strings differ")

    report["failures"] = failures
    print(json.dumps(report, indent=1))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
