#!/usr/bin/env python3
"""Writes a trivial engine directory for run_gpu_tests.sh: one SM, an empty task list, a
kernel.cu that does nothing, and a model config (so that tile-run's weight and vocabulary
logic runs). Both executors must give the same (zero) tokens on it: it checks tile-run's
executor choice and the GPU load path without the compiler.

Usage: make_trivial_engine.py OUT_DIR CONFIG_JSON ARCH
"""
import json
import os
import sys

out, config_path, arch = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
buffers = [{"name": name, "dtype": "i32", "shape": [1], "offset": offset, "bytes": 4}
           for name, offset in (("tokens", 0), ("positions", 256), ("argmax", 512))]
manifest = {
    "format": "tilec-engine", "abi_version": 5, "tilec_version": "gpu-test",
    "model": {"name": "tiny", "config": open(config_path).read(), "drafter_config": "",
              "function": "target"},
    "target": {"name": "gpu-test", "arch": arch, "sms": 1, "smem_per_block": 0},
    "launch": {"grid": 1, "threads": 128, "dynamic_smem": 0},
    "step": {"tokens": 1, "tokens_buffer": "tokens", "positions_buffer": "positions",
             "logits_buffer": "", "argmax_buffer": "argmax"},
    "regions": {"arena_bytes": 1024, "weight_bytes": 0, "kv_bytes": 0},
    "buffers": buffers, "instances": [], "events": [], "ops": [],
    "tasks": {"file": "tasks.bin", "words_per_task": 24, "per_sm": [0]},
    "kernel": {"file": "kernel.cu", "sha256": ""},
}
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
open(os.path.join(out, "tasks.bin"), "wb").close()
with open(os.path.join(out, "kernel.cu"), "w") as f:
    f.write('#include "runtime/abi/TaskAbi.h"\n'
            'extern "C" __global__ void tilec_step(TilecStepParams p) {}\n')
