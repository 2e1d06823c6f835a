#!/usr/bin/env python3
"""Outside oracle for tilec's CPU reference model: transformers' MiMoV2FlashForCausalLM.

For each tiny config below: build the model with random weights (seeded, rounded to
bf16 so the saved checkpoint holds exactly what ran), save it with save_pretrained,
run greedy decoding in fp32, and record what transformers says: the greedy tokens,
the teacher-forced logits and the hidden state after every layer. The result is a
fixture folder per case that tests/unit/OracleTest.cpp re-checks on every CI run.

Usage (needs torch and transformers >= 5.17, a GPU is optional):
    python3 tests/oracle/transformers_oracle.py --out tests/fixtures/oracle
"""
import argparse
import copy
import json
import math
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import MiMoV2FlashConfig, MiMoV2FlashForCausalLM

COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=96,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=48,
    v_head_dim=32,
    moe_intermediate_size=32,
    n_routed_experts=8,
    num_experts_per_tok=2,
    n_group=1,
    topk_group=1,
    norm_topk_prob=True,
    routed_scaling_factor=1.0,
    sliding_window=8,
    attention_value_scale=0.707,
    rms_norm_eps=1e-5,
    max_position_embeddings=4096,
    tie_word_embeddings=False,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)


def rope(full_theta, sliding_theta, factor):
    return {
        "full_attention": {"rope_type": "default", "rope_theta": full_theta,
                           "partial_rotary_factor": factor},
        "sliding_attention": {"rope_type": "default", "rope_theta": sliding_theta,
                              "partial_rotary_factor": factor},
    }


# Each case covers part of the architecture; together they cover all of it.
CASES = {
    # Full and sliding layers with sinks, dense layer 0, MoE with correction bias.
    "basic": dict(
        fields=dict(num_hidden_layers=4,
                    layer_types=["full_attention", "sliding_attention",
                                 "sliding_attention", "full_attention"],
                    mlp_layer_types=["dense", "sparse", "sparse", "sparse"],
                    rope_parameters=rope(1e6, 1e4, 0.334)),
        prompt_len=6, seed=1),
    # Group-limited routing, no renormalisation, routed scaling.
    "groups": dict(
        fields=dict(num_hidden_layers=3, n_routed_experts=16, num_experts_per_tok=4,
                    n_group=4, topk_group=2, norm_topk_prob=False,
                    routed_scaling_factor=2.5,
                    layer_types=["full_attention", "sliding_attention",
                                 "full_attention"],
                    mlp_layer_types=["dense", "sparse", "sparse"],
                    rope_parameters=rope(5e6, 1e4, 0.334)),
        prompt_len=7, seed=2),
    # A prompt five times the sliding window, a custom layer pattern.
    "long-prompt": dict(
        fields=dict(num_hidden_layers=6, sliding_window=4,
                    layer_types=["sliding_attention", "full_attention",
                                 "sliding_attention", "sliding_attention",
                                 "full_attention", "sliding_attention"],
                    mlp_layer_types=["dense", "sparse", "dense", "sparse", "sparse",
                                     "sparse"],
                    rope_parameters=rope(1e7, 1e4, 0.334)),
        prompt_len=20, seed=3),
    # V2.5-Pro-like constants: value scale 0.612, theta 1e7, a larger rotary part.
    "pro-like": dict(
        fields=dict(num_hidden_layers=3, num_attention_heads=8,
                    attention_value_scale=0.612,
                    layer_types=["full_attention", "sliding_attention",
                                 "sliding_attention"],
                    mlp_layer_types=["dense", "sparse", "sparse"],
                    rope_parameters=rope(1e7, 1e4, 0.5)),
        prompt_len=9, seed=4),
}

NEW_TOKENS = 32


def init_weights(model, seed):
    """Random weights whose logits are far from ties, rounded to bf16."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("inv_freq"):
                continue
            if "norm" in name:
                value = 1 + 0.2 * (torch.rand(tensor.shape, generator=gen) - 0.5)
            elif name.endswith("e_score_correction_bias"):
                value = 0.1 * (torch.rand(tensor.shape, generator=gen) - 0.5)
            elif name.endswith("sinks"):
                value = torch.randn(tensor.shape, generator=gen)
            elif name.endswith("embed_tokens.weight"):
                value = torch.randn(tensor.shape, generator=gen)
            else:
                fan_in = tensor.shape[-1]
                value = torch.randn(tensor.shape, generator=gen) / math.sqrt(fan_in)
            tensor.copy_(value.to(torch.bfloat16).to(tensor.dtype))


def run_case(name, case, out_dir, device):
    config = MiMoV2FlashConfig(**{**COMMON, **case["fields"]})
    config._attn_implementation = "eager"
    torch.manual_seed(case["seed"])
    model = MiMoV2FlashForCausalLM(config).float().eval()
    init_weights(model, case["seed"])

    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    # Save a bf16 copy: converting the model itself would also round its RoPE
    # inv_freq buffers to bf16.
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(case_dir)
    model.to(device)

    gen = torch.Generator().manual_seed(100 + case["seed"])
    prompt = torch.randint(0, config.vocab_size, (case["prompt_len"],), generator=gen)
    ids = prompt[None].to(device)

    # Greedy decoding with transformers' own KV cache.
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        tokens = []
        nxt = out.logits[0, -1].argmax()
        for _ in range(NEW_TOKENS):
            tokens.append(int(nxt))
            out = model(input_ids=nxt.view(1, 1), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            nxt = out.logits[0, -1].argmax()
        # Teacher-forced over the whole sequence: logits and every decoder layer's
        # output (hooks: output_hidden_states ends with the final norm's output).
        layer_outputs = []
        hooks = [layer.register_forward_hook(
                     lambda _m, _i, out: layer_outputs.append(
                         (out[0] if isinstance(out, tuple) else out)[0]))
                 for layer in model.model.layers]
        full = torch.cat([prompt, torch.tensor(tokens[:-1])])[None].to(device)
        forced = model(input_ids=full)
        for hook in hooks:
            hook.remove()
    logits = forced.logits[0].float().cpu().contiguous()
    hidden = torch.stack(layer_outputs).float().cpu().contiguous()
    # Margin between the best and second logit of each greedy choice: how far the
    # fixture is from a tie that would make token equality fragile.
    top2 = logits.topk(2, dim=-1).values
    margin = float((top2[:, 0] - top2[:, 1])[case["prompt_len"] - 1:].min())

    save_file({"logits": logits, "hidden_after_layer": hidden},
              os.path.join(case_dir, "expected.safetensors"))
    meta = {
        "case": name,
        "prompt": prompt.tolist(),
        "tokens": tokens,
        "min_greedy_margin": margin,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": str(device),
        "dtype": "float32 run, bfloat16 weights",
    }
    with open(os.path.join(case_dir, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: prompt {len(meta['prompt'])} tokens, generated {tokens[:8]}..., "
          f"min greedy margin {margin:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/oracle")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True, warn_only=True)
    for name in args.cases:
        run_case(name, CASES[name], args.out, torch.device(args.device))


if __name__ == "__main__":
    main()
