#!/usr/bin/env python3
"""Outside oracle for tilec's DFlash reference: z-lab/dflash's dflash_generate.

Builds a tiny MiMoV2FlashForCausalLM target and a tiny DFlashDraftModel (the public
reference implementation, loaded from a checkout of github.com/z-lab/dflash that
--dflash-repo names; nothing of it is copied here), gives both seeded random weights
rounded to bf16, saves them (target in the case folder, drafter in its drafter/
subfolder) and runs the reference's greedy speculative loop in fp32, recording every
step: the block the target verifies ([last token, drafts]), the drafter's logits for
the draft slots, and the accepted length. Plain greedy tokens are recorded as well
(the loop is lossless, so they must be equal). tests/unit/DflashTest.cpp re-checks
the fixture on every CI run.

Usage (needs torch and transformers >= 5.17; CPU is enough):
    git clone https://github.com/z-lab/dflash /tmp/dflash
    python3 tests/oracle/dflash_oracle.py --dflash-repo /tmp/dflash \
        --out tests/fixtures/dflash
"""
import argparse
import copy
import importlib.util
import json
import math
import os
import subprocess

import torch
import transformers
from safetensors.torch import save_file
from transformers import MiMoV2FlashConfig, MiMoV2FlashForCausalLM, Qwen3Config

TARGET = dict(
    vocab_size=256, hidden_size=64, intermediate_size=96, num_attention_heads=4,
    num_key_value_heads=2, head_dim=48, v_head_dim=32, moe_intermediate_size=32,
    n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1,
    norm_topk_prob=True, routed_scaling_factor=1.0, sliding_window=8,
    attention_value_scale=0.707, rms_norm_eps=1e-5, max_position_embeddings=4096,
    tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    num_hidden_layers=4,
    layer_types=["full_attention", "sliding_attention", "sliding_attention",
                 "full_attention"],
    mlp_layer_types=["dense", "sparse", "sparse", "sparse"],
    rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 1e6,
                           "partial_rotary_factor": 0.334},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4,
                              "partial_rotary_factor": 0.334}},
)

# The drafter taps layer 0, a middle layer and the last one (whose tap is the
# target's final-norm output: hidden_states[num_layers] in transformers).
DRAFTER = dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    layer_types=["full_attention", "full_attention"], max_position_embeddings=4096,
    tie_word_embeddings=False, attention_bias=False, num_target_layers=4,
)

CASES = {
    # Block 4, three taps.
    "block4": dict(block_size=4, taps=[0, 2, 3], prompt_len=6, seed=41, new=40),
    # Block 8, one tap, a longer prompt.
    "block8": dict(block_size=8, taps=[1], prompt_len=13, seed=12, new=40),
}


def init_weights(model, seed):
    """Random weights far from ties, rounded to bf16 (as transformers_oracle.py)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("inv_freq"):
                continue
            if "norm" in name:
                value = 1 + 0.2 * (torch.rand(tensor.shape, generator=gen) - 0.5)
            elif name.endswith("e_score_correction_bias"):
                value = 0.1 * (torch.rand(tensor.shape, generator=gen) - 0.5)
            elif name.endswith("sinks") or name.endswith("embed_tokens.weight"):
                value = torch.randn(tensor.shape, generator=gen)
            else:
                value = torch.randn(tensor.shape, generator=gen) / math.sqrt(tensor.shape[-1])
            tensor.copy_(value.to(torch.bfloat16).to(tensor.dtype))


def load_reference(repo):
    spec = importlib.util.spec_from_file_location(
        "dflash_model", os.path.join(repo, "dflash", "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_case(name, case, reference, out_dir, commit):
    target_config = MiMoV2FlashConfig(**TARGET)
    target_config._attn_implementation = "eager"
    torch.manual_seed(case["seed"])
    target = MiMoV2FlashForCausalLM(target_config).float().eval()
    init_weights(target, case["seed"])

    mask_token = TARGET["vocab_size"] - 1
    drafter_config = Qwen3Config(
        **DRAFTER, block_size=case["block_size"],
        dflash_config={"target_layer_ids": case["taps"], "mask_token_id": mask_token})
    drafter_config._attn_implementation = "eager"
    drafter_config.architectures = ["DFlashDraftModel"]
    drafter = reference.DFlashDraftModel(drafter_config).float().eval()
    init_weights(drafter, 1000 + case["seed"])

    case_dir = os.path.join(out_dir, name)
    os.makedirs(os.path.join(case_dir, "drafter"), exist_ok=True)
    copy.deepcopy(target).to(torch.bfloat16).save_pretrained(case_dir)
    copy.deepcopy(drafter).to(torch.bfloat16).save_pretrained(os.path.join(case_dir, "drafter"))

    gen = torch.Generator().manual_seed(100 + case["seed"])
    prompt = torch.randint(0, TARGET["vocab_size"] - 1, (case["prompt_len"],), generator=gen)
    B = case["block_size"]

    # Record the loop: the drafter's normed outputs (through the target's lm_head
    # they are the draft logits) and every block the target verifies.
    draft_logits, blocks, starts = [], [], []
    hooks = [drafter.register_forward_hook(
        lambda _m, _i, out: draft_logits.append(target.lm_head(out)[0, 1 - B:].clone()))]

    def record(_m, args, kwargs):
        blocks.append((args[0] if args else kwargs["input_ids"])[0].tolist())
        starts.append(int(kwargs["position_ids"][0, 0]))
    hooks.append(target.register_forward_pre_hook(record, with_kwargs=True))
    result = reference.dflash_generate(
        drafter, target, prompt[None], max_new_tokens=case["new"], stop_token_ids=None,
        temperature=0.0, block_size=B, return_stats=False)
    for hook in hooks:
        hook.remove()
    tokens = result[0, case["prompt_len"]:].tolist()
    verified, starts = blocks[1:], starts[1:]  # the first call is the prefill

    # Plain greedy decoding of the target alone (transformers' own cache), B
    # tokens further than needed so that the last step's acceptance is known.
    with torch.no_grad():
        out = target(input_ids=prompt[None], use_cache=True)
        cache, greedy = out.past_key_values, []
        nxt = out.logits[0, -1].argmax()
        for _ in range(case["new"] + B):
            greedy.append(int(nxt))
            out = target(input_ids=nxt.view(1, 1), past_key_values=cache, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[0, -1].argmax()
    if greedy[:len(tokens)] != tokens:
        raise SystemExit(f"{name}: the reference loop is not lossless here")
    tokens = tokens[:case["new"]]
    # Accepted lengths: the distance between the starts of consecutive blocks;
    # the last step's from the greedy continuation.
    accepted = [b - a for a, b in zip(starts, starts[1:])]
    s = starts[-1] - case["prompt_len"]
    a = 0
    while a + 1 < B and verified[-1][a + 1] == greedy[s + a + 1]:
        a += 1
    accepted.append(a + 1)

    logits = torch.stack(draft_logits).float().contiguous()
    top2 = logits.topk(2, dim=-1).values
    margin = float((top2[..., 0] - top2[..., 1]).min())
    save_file({"draft_logits": logits}, os.path.join(case_dir, "expected.safetensors"))
    meta = {
        "case": name, "prompt": prompt.tolist(), "block_size": B, "tokens": tokens,
        "verified_blocks": verified, "accepted": accepted, "min_draft_margin": margin,
        "dflash_commit": commit, "transformers": transformers.__version__,
        "torch": torch.__version__, "dtype": "float32 run, bfloat16 weights",
    }
    with open(os.path.join(case_dir, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: {len(verified)} verify steps for {len(tokens)} tokens, "
          f"min draft margin {margin:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dflash-repo", required=True)
    parser.add_argument("--commit", default=None,
                        help="the checkout's commit (default: git rev-parse HEAD)")
    parser.add_argument("--out", default="tests/fixtures/dflash")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    commit = args.commit or subprocess.run(
        ["git", "-C", args.dflash_repo, "rev-parse", "HEAD"], capture_output=True,
        text=True).stdout.strip()
    torch.use_deterministic_algorithms(True, warn_only=True)
    reference = load_reference(args.dflash_repo)
    for name in args.cases:
        run_case(name, CASES[name], reference, args.out, commit)


if __name__ == "__main__":
    main()
