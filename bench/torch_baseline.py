#!/usr/bin/env python3
"""PyTorch baselines for a tilec engine: the same model and the same weights.

On a GPU host with torch and transformers (MiMoV2FlashForCausalLM): builds the model of a
config.json with seeded random bf16 weights (tests/oracle's recipe: logits far from ties),
saves them with save_pretrained (so `tile-run run ENGINE --weights DIR` loads exactly
these), measures the HBM bandwidth of the card, then times batch-1 greedy decoding:

  * eager: one forward per token with transformers' dynamic cache, bf16;
  * CUDA graph: one decode step captured with a static cache and replayed, for each
    experts implementation transformers offers; where capture fails the error is
    recorded (the default MoE path syncs with the host to find the experts hit).

Prints one JSON object (also written to --json): per mode the median step time, tokens/s,
the greedy tokens, and for failed modes why. Usage:

  python3 bench/torch_baseline.py --config bench/models/flash-4l/config.json \
      --save /tmp/flash-4l --prompt-ids 3,1,4,1,5,9,2,6 -n 64 --json out.json
"""
import argparse
import json
import math
import os
import shutil
import statistics
import time
import traceback

import torch
import transformers
from transformers import MiMoV2FlashConfig, MiMoV2FlashForCausalLM

from hbm_bandwidth import measure as hbm_bandwidth  # bench/, beside this script


@torch.no_grad()
def init_weights(model, seed):
    """tests/oracle/transformers_oracle.py's recipe, generated on the model's device."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if name.endswith("inv_freq"):
            continue
        shape, dev = tensor.shape, tensor.device
        if "norm" in name:
            value = 1 + 0.2 * (torch.rand(shape, generator=gen, device=dev) - 0.5)
        elif name.endswith("e_score_correction_bias"):
            value = 0.1 * (torch.rand(shape, generator=gen, device=dev) - 0.5)
        elif name.endswith("sinks") or name.endswith("embed_tokens.weight"):
            value = torch.randn(shape, generator=gen, device=dev)
        else:
            value = torch.randn(shape, generator=gen, device=dev) / math.sqrt(shape[-1])
        tensor.copy_(value.to(torch.bfloat16).to(tensor.dtype))


def build(config_path, experts_impl, device, seed):
    config = MiMoV2FlashConfig.from_json_file(config_path)
    config._attn_implementation = "eager"
    if experts_impl:
        config._experts_implementation = experts_impl
    with torch.device(device):
        model = MiMoV2FlashForCausalLM(config).eval()
    # bf16 weights, but RoPE's inv_freq stays f32 (tilec computes it in f32).
    inv_freq = {n: b.clone() for n, b in model.named_buffers() if n.endswith("inv_freq")}
    model.to(torch.bfloat16)
    for n, b in inv_freq.items():
        path, _, attr = n.rpartition(".")
        setattr(model.get_submodule(path), attr, b)
    init_weights(model, seed)
    if experts_impl and hasattr(model, "set_experts_implementation"):
        model.set_experts_implementation(experts_impl)
    return model


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t


@torch.no_grad()
def eager_decode(model, prompt, count):
    ids = torch.tensor([prompt], device="cuda")
    out = model(input_ids=ids, use_cache=True)
    cache, nxt = out.past_key_values, out.logits[0, -1].argmax()
    tokens, steps = [], []
    for _ in range(count):
        tokens.append(int(nxt))
        out, dt = timed(lambda: model(input_ids=nxt.view(1, 1), past_key_values=cache,
                                      use_cache=True))
        cache, nxt = out.past_key_values, out.logits[0, -1].argmax()
        steps.append(dt)
    return tokens, steps


class NoHostCopies:
    """torch.tensor(python scalar, device=cuda) copies from the host, which CUDA graph
    capture refuses (transformers' eager attention mask does it on every call): make
    such scalars with torch.full on the device instead, only inside this context."""

    def __enter__(self):
        self.real = torch.tensor

        def tensor(data, *args, device=None, dtype=None, **kwargs):
            if (isinstance(data, (bool, int, float)) and not args and not kwargs
                    and device is not None and torch.device(device).type == "cuda"):
                return torch.full((), data, device=device, dtype=dtype)
            return self.real(data, *args, device=device, dtype=dtype, **kwargs)
        torch.tensor = tensor

    def __exit__(self, *exc):
        torch.tensor = self.real


@torch.no_grad()
def graph_decode(model, prompt, count):
    """Prefill eagerly into a static cache, capture one decode step, replay it."""
    from transformers import StaticCache
    max_len = len(prompt) + count + 8
    cache = StaticCache(config=model.config, max_cache_len=max_len)
    ids = torch.tensor([prompt], device="cuda")
    pos = torch.arange(len(prompt), device="cuda")
    out = model(input_ids=ids, cache_position=pos, position_ids=pos[None],
                past_key_values=cache, use_cache=True)
    tok = out.logits[0, -1].argmax().view(1, 1).clone()
    cpos = torch.tensor([len(prompt)], device="cuda")
    static = dict(input_ids=tok, cache_position=cpos, position_ids=cpos[None],
                  past_key_values=cache, use_cache=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), NoHostCopies():  # warm-up (writes position len(prompt))
        model(**static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with NoHostCopies(), torch.cuda.graph(graph):
        logits = model(**static).logits
    tokens, steps = [], []
    for i in range(count):
        tokens.append(int(tok))
        cpos.fill_(len(prompt) + i)
        _, dt = timed(graph.replay)
        tok.copy_(logits[0, -1].argmax().view(1, 1))
        steps.append(dt)
    return tokens, steps


def summarize(tokens, steps, bytes_per_step, bandwidth):
    decode = steps[1:] if len(steps) > 1 else steps  # the first step warms up
    ms = 1e3 * statistics.median(decode)
    out = {"tokens": tokens, "step_ms_median": ms, "tokens_per_second": 1e3 / ms}
    if bytes_per_step:
        out["bytes_per_step"] = bytes_per_step
        out["fraction_of_hbm"] = bytes_per_step / (ms / 1e3) / bandwidth
    return out


def bytes_per_token(model):
    """Weights one decode step reads at least once (routed experts: top-k of them)."""
    cfg = model.config
    total = 0
    for name, p in model.named_parameters():
        if "embed_tokens" in name:
            total += p.shape[-1] * p.element_size()  # one row
        elif ".experts." in name:
            experts = cfg.n_routed_experts
            total += p.numel() * p.element_size() * cfg.num_experts_per_tok // experts
        else:
            total += p.numel() * p.element_size()
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--save", help="save_pretrained the weights here (for tile-run --weights)")
    ap.add_argument("--prompt-ids", default="3,1,4,1,5,9,2,6")
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    prompt = [int(x) for x in args.prompt_ids.split(",")]
    result = {"config": args.config, "torch": torch.__version__,
              "transformers": transformers.__version__,
              "device": torch.cuda.get_device_name(0), "prompt": prompt, "modes": {}}
    bandwidth = hbm_bandwidth()
    result["hbm_bytes_per_second"] = bandwidth

    model = build(args.config, None, "cuda", args.seed)
    step_bytes = bytes_per_token(model)
    result["bytes_per_step"] = step_bytes
    if args.save:
        shutil.rmtree(args.save, ignore_errors=True)
        t = time.perf_counter()
        model.save_pretrained(args.save)
        result["save_seconds"] = time.perf_counter() - t
    tokens, steps = eager_decode(model, prompt, args.n)
    result["modes"]["eager"] = summarize(tokens, steps, step_bytes, bandwidth)
    try:
        tokens, steps = graph_decode(model, prompt, args.n)
        result["modes"]["cuda-graph"] = summarize(tokens, steps, step_bytes, bandwidth)
    except Exception as e:  # noqa: BLE001 - recorded, not hidden
        result["modes"]["cuda-graph"] = {"error": f"{type(e).__name__}: {e}"[:400]}
    del model
    torch.cuda.empty_cache()
    # Experts implementations that avoid the host sync (transformers >= 5).
    for impl in ("grouped_mm", "batched_mm"):
        name = f"cuda-graph-{impl}"
        try:
            model = build(args.config, impl, "cuda", args.seed)
            tokens, steps = eager_decode(model, prompt, min(args.n, 16))
            result["modes"][f"eager-{impl}"] = summarize(tokens, steps, step_bytes, bandwidth)
            tokens, steps = graph_decode(model, prompt, args.n)
            result["modes"][name] = summarize(tokens, steps, step_bytes, bandwidth)
        except Exception as e:  # noqa: BLE001
            result["modes"][name] = {"error": f"{type(e).__name__}: {e}"[:400],
                                     "where": traceback.format_exc().splitlines()[-3:]}
        finally:
            model = None
            torch.cuda.empty_cache()
    eager = result["modes"]["eager"]["tokens"]
    for r in result["modes"].values():
        if "tokens" in r:
            t = r["tokens"]
            r["equal_to_eager"] = next((i for i, (a, b) in enumerate(zip(t, eager)) if a != b),
                                       min(len(t), len(eager)))
    text = json.dumps(result)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    for mode, r in result["modes"].items():
        if "error" in r:
            print(f"# {mode}: failed: {r['error'][:160]}")
        else:
            print(f"# {mode}: {r['step_ms_median']:.3f} ms/step, {r['tokens_per_second']:.1f} "
                  f"tok/s, {100 * r.get('fraction_of_hbm', 0):.1f}% of "
                  f"{bandwidth / 1e9:.0f} GB/s, first {r['equal_to_eager']} tokens = eager")


if __name__ == "__main__":
    main()
