#!/usr/bin/env python3
"""Train a tiny MiMo-V2 target + DFlash drafter pair on Python code and export it for tilec.

Stages (each timed; the two training stages stop on a wall-clock budget):

  1. corpus     the Python standard library's .py files (sysconfig stdlib, recursively,
                site-packages excluded), split by a hash of each file's relative path
                into train and held-out files;
  2. tokenizer  a byte-level BPE like Qwen2/MiMo's (Split with the Qwen2 regex, then
                ByteLevel; ByteLevel decoder; special tokens <|endoftext|>, <|im_start|>,
                <|im_end|>, <|mask|>), trained on the train files;
  3. target     transformers' MiMoV2FlashForCausalLM: full and sliding-window layers
                (sinks on the sliding ones), a dense layer 0 then MoE layers with
                sigmoid routing, group-limited top-k and e_score_correction_bias (updated
                aux-loss-free by expert load, as in DeepSeek-V3), partial RoPE, the value
                scale, q/k head_dim != v head_dim; AdamW, cosine schedule, bf16 autocast;
  4. drafter    a DFlash block drafter (models/core/Dflash.cpp's semantics, written here
                in plain PyTorch): target taps -> fc -> hidden_norm as extra keys/values,
                the block [last token, <|mask|> x (B-1)] with the target's embedding and
                lm_head, MiMo's extensions (partial RoPE, value scale, sinks, bidirectional
                sliding window). Distilled on the target's own greedy continuations and on
                corpus text, labels = the target's greedy tokens; the <|mask|> row of the
                target's embedding is trained with it (the target never reads that token);
                then an autoregressive baseline drafter (same class and sizes) trained
                for tilec --ar-drafter's passes: pass k drafts slot k of
                [last, d_1 .. d_(k-1), <|mask|> ...] (the <|mask|> row kept);
  5. export     transformers' MiMoV2Flash checkpoint layout with the hub FP8 spelling of
                quantization_config: q/k/v/o and the dense MLP FP8 E4M3 with 128x128 F32
                scales (`<name>_scale_inv`), experts MXFP4 per expert (U8 pairs + E8M0
                `<name>_scale`), the quantizers of models/core/Formats.cpp re-implemented
                bit for bit in numpy; drafter/ and drafter-ar/ (config.json +
                model.safetensors, BF16) and tokenizer.json;
  6. metrics    held-out loss with BF16 and with the quantized weights, quantized-vs-BF16
                argmax agreement (teacher-forced) and greedy-generation agreement, mean
                accepted length + histogram at block sizes 2, 4, 8 (quantized target) of
                DFlash, of the DFlash drafter in autoregressive mode and of the
                autoregressive drafter, timings; written to OUT/metrics.json.

With --target-from DIR, stages 2 and 3 are skipped: the tokenizer and the quantized target
of a directory this script wrote are loaded (the target dequantized), the drafters trained
on it, and the target exported with its tensors unchanged but the <|mask|> row.

Usage (GPU host, < 8 minutes in all):
    python3 tools/train/train_pair.py --out /tmp/pair --minutes-target 3 --minutes-drafter 2
Drafters only, on a committed target:
    python3 tools/train/train_pair.py --out /tmp/pair2 --target-from tests/fixtures/code-pair
Smoke test (CPU, a minute or two):
    python3 tools/train/train_pair.py --out /tmp/pair-smoke --tiny-smoke
Then tools/train/check_fixture.py checks the directory with tilec and tile-run.
"""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import struct
import sys
import sysconfig
import time

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    sys.exit(f"train_pair.py: needs torch ({e})")
try:
    import transformers
    from transformers import MiMoV2FlashConfig, MiMoV2FlashForCausalLM
except ImportError as e:  # pragma: no cover
    sys.exit(f"train_pair.py: needs transformers with MiMoV2FlashForCausalLM (>= 5.17): {e}")
try:
    import tokenizers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
except ImportError as e:  # pragma: no cover
    sys.exit(f"train_pair.py: needs tokenizers ({e})")

# Qwen2's (and MiMo's) pre-tokenizer pattern: models/core/Tokenizer.cpp matches exactly
# this string (and GPT-2's), nothing else.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
EOS, MASK = "<|endoftext|>", "<|mask|>"
SPECIALS = [EOS, "<|im_start|>", "<|im_end|>", MASK]


# ----------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Sizes:
    vocab: int = 4096
    hidden: int = 192
    layer_types: tuple = ("full_attention", "sliding_attention", "sliding_attention",
                          "sliding_attention", "full_attention")
    heads: int = 4
    kv_heads: int = 1          # full layers; sliding layers get 2x (transformers' rule)
    head_dim: int = 96         # q/k
    v_head_dim: int = 64
    partial_rotary: float = 0.334   # int(96 * 0.334) = 32 rotary dims
    full_theta: float = 5e6
    sliding_theta: float = 1e4
    window: int = 128
    value_scale: float = 0.707
    dense_intermediate: int = 512
    experts: int = 16
    top_k: int = 4
    n_group: int = 4
    topk_group: int = 2
    moe_intermediate: int = 64
    # Drafter (hidden = the target's).
    d_layers: int = 2
    d_heads: int = 4
    d_kv_heads: int = 2
    d_head_dim: int = 64
    d_intermediate: int = 384
    d_partial_rotary: float = 0.5
    d_theta: float = 1e4
    d_window: int = 128
    d_value_scale: float = 0.707
    block: int = 8
    taps: tuple = ()           # default: first, middle, last layer
    # Training.
    seq_len: int = 512
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    d_batch: int = 32
    d_anchors: int = 32        # blocks per sequence per step
    d_lr: float = 2e-3
    d_warmup: int = 50
    pool_prompt: int = 128
    pool_new: int = 384
    pool_seqs: int = 512
    # Evaluation.
    eval_windows: int = 64
    eval_prompts: int = 32
    eval_prompt_len: int = 64
    eval_new: int = 128

    @property
    def layers(self):
        return len(self.layer_types)

    def tap_ids(self):
        return list(self.taps) or sorted({0, self.layers // 2, self.layers - 1})


SMOKE = dict(vocab=1024, hidden=64, layer_types=("full_attention", "sliding_attention",
                                                 "full_attention"),
             heads=4, kv_heads=1, head_dim=48, v_head_dim=32, window=16,
             dense_intermediate=128, experts=8, top_k=2, n_group=4, topk_group=2,
             moe_intermediate=32, d_layers=2, d_heads=4, d_kv_heads=2, d_head_dim=16,
             d_intermediate=128, d_window=16, seq_len=128, batch=8, d_batch=4,
             d_anchors=8, warmup=10, d_warmup=10, pool_prompt=32, pool_new=64, pool_seqs=8,
             eval_windows=8, eval_prompts=4, eval_prompt_len=24, eval_new=24)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------
# 1. Corpus
# ----------------------------------------------------------------------------------------

def is_heldout(relpath, percent):
    """Deterministic split: the first byte of sha1(relative path) mod 100."""
    return hashlib.sha1(relpath.encode()).digest()[0] % 100 < percent


def corpus_files(root):
    """(relpath, text) of every UTF-8 .py file under root, sorted by path."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text.strip():
                out.append((os.path.relpath(path, root), text))
    out.sort()
    return out


def split_corpus(roots, heldout_percent, max_files=0, max_mb=0):
    """Train and held-out (relpath, text) lists of the .py files under the roots.
    Identical files (vendored copies) count once; with max_mb, files are taken in
    sha1(relpath) order (a fixed pseudo-random mix of the roots) until that many MB."""
    roots = [roots] if isinstance(roots, str) else roots
    files, seen = [], set()
    for root in roots:
        for rel, text in corpus_files(root):
            digest = hashlib.sha1(text.encode()).digest()
            if digest not in seen:
                seen.add(digest)
                files.append((rel, text))
    if not files:
        sys.exit(f"train_pair.py: no .py files under {roots}")
    if max_files:
        files = files[:max_files]
    if max_mb:
        chosen, total = [], 0
        for f in sorted(files, key=lambda f: hashlib.sha1(f[0].encode()).digest()):
            if total >= max_mb * 1e6:
                break
            chosen.append(f)
            total += len(f[1].encode())
        files = sorted(chosen)
    train = [(p, t) for p, t in files if not is_heldout(p, heldout_percent)]
    held = [(p, t) for p, t in files if is_heldout(p, heldout_percent)]
    if not held or not train:
        sys.exit("train_pair.py: the split left no train or no held-out files")
    return train, held


# ----------------------------------------------------------------------------------------
# 2. Tokenizer
# ----------------------------------------------------------------------------------------

def train_tokenizer(texts, vocab_size, max_bytes):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    chosen, total = [], 0
    for t in texts:
        chosen.append(t)
        total += len(t.encode())
        if total >= max_bytes:
            break
    tok.train_from_iterator(chosen, trainer=trainer)
    return tok, total


def encode_stream(tok, texts):
    """One id stream: <|endoftext|> before every file."""
    eos = tok.token_to_id(EOS)
    out = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        out.append(eos)
        out.extend(enc.ids)
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------------------------------
# 3. Target
# ----------------------------------------------------------------------------------------

def target_config(s, vocab, experts_impl):
    rope = {
        "full_attention": {"rope_type": "default", "rope_theta": s.full_theta,
                           "partial_rotary_factor": s.partial_rotary},
        "sliding_attention": {"rope_type": "default", "rope_theta": s.sliding_theta,
                              "partial_rotary_factor": s.partial_rotary},
    }
    cfg = MiMoV2FlashConfig(
        vocab_size=vocab, hidden_size=s.hidden, intermediate_size=s.dense_intermediate,
        num_hidden_layers=s.layers, num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads, head_dim=s.head_dim, v_head_dim=s.v_head_dim,
        moe_intermediate_size=s.moe_intermediate, n_routed_experts=s.experts,
        num_experts_per_tok=s.top_k, n_group=s.n_group, topk_group=s.topk_group,
        norm_topk_prob=True, routed_scaling_factor=1.0, sliding_window=s.window,
        attention_value_scale=s.value_scale, rms_norm_eps=1e-5,
        max_position_embeddings=4096, tie_word_embeddings=False, initializer_range=0.02,
        # No EOS/BOS in memory: generate() must not stop early; config.json gets EOS.
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        layer_types=list(s.layer_types),
        mlp_layer_types=["dense"] + ["sparse"] * (s.layers - 1),
        rope_parameters=rope)
    cfg._attn_implementation = "eager"  # the only one with sinks and qk != v dims
    try:
        cfg._experts_implementation = experts_impl
    except Exception:  # older transformers: one implementation only
        pass
    return cfg


def new_target(cfg, device):
    model = MiMoV2FlashForCausalLM(cfg).to(device)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    return model


def pick_experts_impl(s, vocab, impl, device, gen):
    """(config, fresh target) with the experts implementation `impl`; "auto" takes
    grouped_mm when one forward and backward of it run and match eager's logits (same
    initial weights), else eager."""
    if impl != "auto":
        cfg = target_config(s, vocab, impl)
        return cfg, new_target(cfg, device)
    cfg = target_config(s, vocab, "eager")
    eager = new_target(cfg, device)
    try:
        gcfg = target_config(s, vocab, "grouped_mm")
        grouped = new_target(gcfg, device)
        grouped.load_state_dict(eager.state_dict())
        x = torch.randint(0, vocab, (2, 64), generator=gen).to(device)
        with torch.no_grad(), autocast(device):
            want = eager(input_ids=x).logits.float()
        with autocast(device):
            got = grouped(input_ids=x).logits.float()
        got.square().mean().backward()
        grouped.zero_grad(set_to_none=True)
        err = (got.detach() - want).abs().max().item()
        if err <= 0.05 * max(want.abs().max().item(), 1e-6):
            log(f"experts: grouped_mm (max logit difference to eager {err:.2e})")
            del eager
            return gcfg, grouped
        log(f"experts: eager (grouped_mm's logits differ by {err:.2e})")
    except Exception as e:  # noqa: BLE001 - any failure means: use eager
        log(f"experts: eager (grouped_mm failed: {type(e).__name__}: {e})")
    return cfg, eager


def count_params(module):
    return sum(p.numel() for p in module.parameters())


class Taps:
    """Forward hooks that keep the hidden state after the given layers (after the final
    norm for the last layer: transformers' hidden_states[num_layers]) and the routers'
    choices."""

    def __init__(self, model, layer_ids=(), route=False):
        self.ids = list(layer_ids)
        self.last = model.config.num_hidden_layers - 1
        self.out = {}
        self.loads = []
        self.hooks = []
        layers = model.model.layers
        for i in self.ids:
            if i == self.last:
                self.hooks.append(model.model.norm.register_forward_hook(self._keep(i)))
            else:
                self.hooks.append(layers[i].register_forward_hook(self._keep(i)))
        if route:
            for layer in layers:
                if hasattr(layer.mlp, "gate"):
                    self.hooks.append(layer.mlp.gate.register_forward_hook(self._route))

    def _keep(self, i):
        def hook(_m, _inp, out):
            self.out[i] = out[0] if isinstance(out, tuple) else out
        return hook

    def _route(self, module, _inp, out):
        if not (isinstance(out, tuple) and len(out) == 3):
            raise RuntimeError("train_pair.py: this transformers' MiMoV2Flash router does "
                               "not return (logits, weights, indices); run with "
                               "--bias-update 0")
        idx = out[2]
        self.loads.append((module, torch.bincount(idx.reshape(-1),
                                                  minlength=module.num_experts)))

    def cat(self):
        return torch.cat([self.out[i] for i in self.ids], dim=-1)

    def remove(self):
        for h in self.hooks:
            h.remove()


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(params, lr):
    decay = [p for n, p in params if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in params if not (p.ndim >= 2 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8)


class Budget:
    """Steps from a wall-clock budget: the step time is measured after two warm-up steps
    and re-measured at steps 10, 30, 100, 300, 1000, 3000, and the step count (and so the
    cosine schedule) set so that training ends with the budget; --*-steps fixes it."""

    CHECKPOINTS = (10, 30, 100, 300, 1000, 3000)

    def __init__(self, seconds, fixed_steps=0):
        self.seconds, self.fixed = seconds, fixed_steps
        self.start = time.time()
        self.total = fixed_steps or 10 ** 9
        self.mark = None  # (step, time) where the measurement starts

    def tick(self, step):
        now = time.time()
        if self.fixed:
            return step < self.fixed
        if step == 2:
            self.mark = (step, now)
        elif step in self.CHECKPOINTS and self.mark:
            per = (now - self.mark[1]) / (step - self.mark[0])
            left = self.seconds - (now - self.start)
            self.total = max(step + 1, step + int(left / per))
        return step < self.total and now - self.start < self.seconds * 1.05

    def describe(self):
        return str(self.total) if self.total < 10 ** 9 else "?"


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train_target(model, stream, s, args, device, gen):
    params = [(n, p) for n, p in model.named_parameters()]
    opt = make_optimizer(params, s.lr)
    budget = Budget(args.minutes_target * 60, args.target_steps)
    taps = Taps(model, route=args.bias_update > 0)
    data = torch.from_numpy(stream).to(device)
    n = len(stream) - s.seq_len - 1
    step, losses, tokens = 0, [], 0
    model.train()
    while budget.tick(step):
        lr = lr_at(step, budget.total, s.lr, s.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, n, (s.batch,), generator=gen, device="cpu").to(device)
        idx = starts[:, None] + torch.arange(s.seq_len + 1, device=device)
        chunk = data[idx]
        x, y = chunk[:, :-1], chunk[:, 1:]
        taps.loads.clear()
        with autocast(device):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # Aux-loss-free balancing (DeepSeek-V3): raise the bias of under-loaded experts,
        # lower that of over-loaded ones; the bias only steers the choice.
        with torch.no_grad():
            for router, load in taps.loads:
                load = load.float()
                router.e_score_correction_bias += args.bias_update * torch.sign(
                    load.mean() - load)
        tokens += x.numel()
        losses.append(loss.item())
        if step % args.log_every == 0:
            log(f"target step {step}/{budget.describe()} "
                f"loss {loss.item():.4f} lr {lr:.2e}")
        step += 1
    taps.remove()
    model.eval()
    return dict(steps=step, tokens=tokens, seconds=time.time() - budget.start,
                train_loss_last=float(np.mean(losses[-20:])) if losses else None,
                train_loss_first=float(losses[0]) if losses else None,
                epochs=tokens / max(1, len(stream)),
                router_bias_rule=f"aux-loss-free: bias += {args.bias_update} * "
                                 "sign(mean load - expert load) per step")


# ----------------------------------------------------------------------------------------
# 4. DFlash drafter (models/core/Dflash.cpp in PyTorch)
# ----------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return self.weight.float() * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True)
                                                        + self.eps))


def rope(x, pos, rotary_dim, theta):
    """x [..., T, heads, D], pos [..., T]: rotate_half RoPE on the first rotary_dim dims."""
    if rotary_dim == 0:
        return x
    half = rotary_dim // 2
    inv = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, device=x.device,
                                        dtype=torch.float32) / rotary_dim))
    ang = pos.float()[..., None] * inv
    c, s_ = ang.cos()[..., None, :].to(x.dtype), ang.sin()[..., None, :].to(x.dtype)
    x1, x2, rest = x[..., :half], x[..., half:rotary_dim], x[..., rotary_dim:]
    return torch.cat([x1 * c - x2 * s_, x2 * c + x1 * s_, rest], dim=-1)


class DrafterAttention(nn.Module):
    def __init__(self, H, heads, kv_heads, D, eps):
        super().__init__()
        self.q_proj = nn.Linear(H, heads * D, bias=False)
        self.k_proj = nn.Linear(H, kv_heads * D, bias=False)
        self.v_proj = nn.Linear(H, kv_heads * D, bias=False)
        self.o_proj = nn.Linear(heads * D, H, bias=False)
        self.q_norm = RMSNorm(D, eps)
        self.k_norm = RMSNorm(D, eps)
        self.attention_sink_bias = nn.Parameter(torch.zeros(heads))


class DrafterLayer(nn.Module):
    def __init__(self, H, heads, kv_heads, D, inter, eps):
        super().__init__()
        self.input_layernorm = RMSNorm(H, eps)
        self.self_attn = DrafterAttention(H, heads, kv_heads, D, eps)
        self.post_attention_layernorm = RMSNorm(H, eps)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(H, inter, bias=False)
        self.mlp.up_proj = nn.Linear(H, inter, bias=False)
        self.mlp.down_proj = nn.Linear(inter, H, bias=False)


class Drafter(nn.Module):
    """The DFlash drafter: parameter names are the checkpoint's (drafter/*.safetensors).

    forward() drafts many blocks at once: block k of sequence b starts at anchors[b, k]
    (the position s of the last committed token) and sees the context features of the
    positions < s plus its own block, which is what Dflash.cpp computes for one block with
    a context of s positions. Embedding and lm_head are the target's."""

    def __init__(self, s, eps=1e-6):
        super().__init__()
        H = s.hidden
        self.s = s
        self.rotary_dim = int(s.d_head_dim * s.d_partial_rotary)
        self.fc = nn.Linear(len(s.tap_ids()) * H, H, bias=False)
        self.hidden_norm = RMSNorm(H, eps)
        self.layers = nn.ModuleList([DrafterLayer(H, s.d_heads, s.d_kv_heads, s.d_head_dim,
                                                  s.d_intermediate, eps)
                                     for _ in range(s.d_layers)])
        self.norm = RMSNorm(H, eps)
        self.causal = False  # MiMo's use_swa drafter: bidirectional inside the block

    def forward(self, taps, tokens, anchors, embed, lm_head, mask_row=None, mask_id=None):
        """taps [b, N, taps*H] (context features of positions 0..N-1), tokens [b, K, Bs]
        (each [t_s, MASK, ...]), anchors [b, K] -> logits [b, K, Bs, V]."""
        s = self.s
        b, N, _ = taps.shape
        K, Bs = tokens.shape[1], tokens.shape[2]
        Q = K * Bs
        dev = taps.device
        c = self.hidden_norm(self.fc(taps))
        x = F.embedding(tokens.reshape(b, Q), embed)
        if mask_row is not None:
            x = torch.where((tokens.reshape(b, Q) == mask_id)[..., None],
                            mask_row.to(x.dtype).expand_as(x), x)
        qpos = (anchors[:, :, None] + torch.arange(Bs, device=dev)).reshape(b, Q)
        cpos = torch.arange(N, device=dev)
        # Visibility (Dflash.cpp blockAttention): context j < s, block keys of the same
        # block; a window W hides keys with p - j >= W (and j - p >= W when bidirectional).
        s_of_q = anchors[:, :, None].expand(b, K, Bs).reshape(b, Q)
        ctx_vis = cpos[None, None, :] < s_of_q[..., None]
        blk = torch.arange(Q, device=dev) // Bs
        blk_vis = (blk[:, None] == blk[None, :])[None].expand(b, Q, Q)
        kpos = torch.cat([cpos[None].expand(b, N), qpos], dim=1)
        dist = qpos[..., None] - kpos[:, None, :]
        vis = torch.cat([ctx_vis, blk_vis], dim=-1)
        if self.causal:
            vis = vis & (dist >= 0)
        if s.d_window > 0:
            vis = vis & (dist < s.d_window)
            if not self.causal:
                vis = vis & (-dist < s.d_window)
        G = s.d_heads // s.d_kv_heads
        D = s.d_head_dim
        for layer in self.layers:
            a = layer.self_attn
            kc = rope(a.k_norm(a.k_proj(c).view(b, N, s.d_kv_heads, D)),
                      cpos[None].expand(b, N), self.rotary_dim, s.d_theta)
            vc = a.v_proj(c).view(b, N, s.d_kv_heads, D).float()
            h = layer.input_layernorm(x)
            q = rope(a.q_norm(a.q_proj(h).view(b, Q, s.d_heads, D)), qpos,
                     self.rotary_dim, s.d_theta)
            kb = rope(a.k_norm(a.k_proj(h).view(b, Q, s.d_kv_heads, D)), qpos,
                      self.rotary_dim, s.d_theta)
            vb = a.v_proj(h).view(b, Q, s.d_kv_heads, D).float()
            k = torch.cat([kc, kb], dim=1).repeat_interleave(G, dim=2)
            v = torch.cat([vc, vb], dim=1).repeat_interleave(G, dim=2)
            scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / math.sqrt(D)
            scores = scores.masked_fill(~vis[:, None], float("-inf"))
            sink = a.attention_sink_bias.float().view(1, -1, 1, 1).expand(b, -1, Q, 1)
            probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
            out = torch.einsum("bhqk,bkhd->bqhd", probs, v) * s.d_value_scale
            x = x + a.o_proj(out.reshape(b, Q, s.d_heads * D).to(x.dtype))
            h2 = layer.post_attention_layernorm(x)
            m = layer.mlp
            x = x + m.down_proj(F.silu(m.gate_proj(h2)) * m.up_proj(h2))
        logits = F.linear(self.norm(x).to(lm_head.dtype), lm_head)
        return logits.view(b, K, Bs, -1)


def drafter_config_json(s, vocab, mask_id, target_layers):
    """z-lab's DFlashDraftModel config (a Qwen3 config + dflash_config) with MiMo's
    extensions, as models/core/ConfigJson.cpp parseDrafterConfig reads it."""
    return {
        "architectures": ["DFlashDraftModel"],
        "model_type": "qwen3",
        "hidden_size": s.hidden,
        "intermediate_size": s.d_intermediate,
        "num_hidden_layers": s.d_layers,
        "num_attention_heads": s.d_heads,
        "num_key_value_heads": s.d_kv_heads,
        "head_dim": s.d_head_dim,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": s.d_theta,
                            "partial_rotary_factor": s.d_partial_rotary},
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "vocab_size": vocab,
        "num_target_layers": target_layers,
        "target_hidden_size": s.hidden,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "use_cache": True,
        "dtype": "bfloat16",
        "block_size": s.block,
        "dflash_config": {
            "target_layer_ids": s.tap_ids(),
            "block_size": s.block,
            "mask_token_id": mask_id,
            # MiMo's drafter: every layer a bidirectional sliding window.
            "use_swa": True,
            "swa_window_size": s.d_window,
            "attention_value_scale": s.d_value_scale,
            "attention_sink_bias": True,
        },
    }


def target_taps_and_labels(target, seqs, tap_ids, device):
    """Target taps [b, N, taps*H] and its greedy next tokens: label[p] = argmax of the
    target's logits at p - 1 (label[0] = -100)."""
    taps = Taps(target, tap_ids)
    with torch.no_grad(), autocast(device):
        logits = target(input_ids=seqs).logits
    feats = taps.cat()
    taps.remove()
    labels = torch.full_like(seqs, -100)
    labels[:, 1:] = logits[:, :-1].argmax(-1)
    return feats, labels


def greedy_generate(model, prompts, new_tokens, device, batch=64):
    """Greedy continuations with transformers' own cache (generate())."""
    out = []
    for i in range(0, len(prompts), batch):
        ids = prompts[i:i + batch].to(device)
        with torch.no_grad():
            g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                               max_new_tokens=new_tokens, min_new_tokens=0,
                               do_sample=False, eos_token_id=None, pad_token_id=0)
        out.append(g[:, ids.shape[1]:].cpu())
    return torch.cat(out)


def greedy_pool(target, stream, s, device, gen, max_seconds):
    """The target's own greedy continuations of corpus prompts [n, pool_prompt + pool_new]
    on the device: batches of 64 up to pool_seqs, none started after max_seconds (one at
    least)."""
    t0 = time.time()
    data = torch.from_numpy(stream)
    starts = torch.randint(0, len(stream) - s.pool_prompt, (s.pool_seqs,), generator=gen)
    prompts = data[starts[:, None] + torch.arange(s.pool_prompt)]
    pool = []
    with autocast(device):
        for i in range(0, s.pool_seqs, 64):
            if pool and time.time() - t0 > max_seconds:
                break
            cont = greedy_generate(target, prompts[i:i + 64], s.pool_new, device)
            pool.append(torch.cat([prompts[i:i + 64], cont], dim=1).to(device))
    return torch.cat(pool).to(device)


def drafter_batch(target, pool, dstream, s, block_sizes, device, gen):
    """One drafter batch: half the greedy pool, half fresh corpus text, the target's taps
    and greedy labels, a block size drawn from block_sizes and sorted anchors [b, K]."""
    N = s.pool_prompt + s.pool_new
    half = s.d_batch // 2
    pi = torch.randint(0, len(pool), (s.d_batch - half,), generator=gen).to(device)
    ci = torch.randint(0, len(dstream) - N - 1, (half,), generator=gen).to(device)
    seqs = torch.cat([pool[pi], dstream[ci[:, None] + torch.arange(N, device=device)]])
    feats, labels = target_taps_and_labels(target, seqs, s.tap_ids(), device)
    Bs = block_sizes[int(torch.randint(0, len(block_sizes), (1,), generator=gen))]
    K = min(s.d_anchors, N - Bs)
    anchors = torch.stack([torch.randperm(N - Bs, generator=gen)[:K] + 1
                           for _ in range(len(seqs))]).sort(dim=1).values.to(device)
    return seqs, feats, labels, Bs, anchors


def fit_drafter(name, params, batch_loss, seconds, fixed_steps, s, args):
    """The drafters' training loop (AdamW, warm-up then cosine to the budget, clipping);
    batch_loss() -> (loss, block size)."""
    opt = make_optimizer(params, s.d_lr)
    budget = Budget(seconds, fixed_steps)
    step, losses = 0, []
    while budget.tick(step):
        lr = lr_at(step, budget.total, s.d_lr, s.d_warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, Bs = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        losses.append(loss.item())
        if step % args.log_every == 0:
            log(f"{name} step {step}/{budget.describe()} "
                f"block {Bs} loss {loss.item():.4f} lr {lr:.2e}")
        step += 1
    return dict(steps=step,
                train_loss_last=float(np.mean(losses[-20:])) if losses else None,
                train_loss_first=float(losses[0]) if losses else None)


def train_drafter(drafter, target, stream, s, args, device, gen, mask_id):
    """The DFlash drafter (and the <|mask|> row, written into the target's embedding).
    Returns its stats and the greedy pool (the AR drafter's data too)."""
    t0 = time.time()
    budget_s = args.minutes_drafter * 60
    # A quarter of the stage at most for the pool.
    pool = greedy_pool(target, stream, s, device, gen, budget_s / 4)
    pool_seconds = time.time() - t0
    log(f"drafter: {len(pool)} greedy continuations of {s.pool_new} tokens in "
        f"{pool_seconds:.1f} s")

    for p in target.parameters():
        p.requires_grad_(False)
    embed = target.model.embed_tokens.weight
    lm_head = target.lm_head.weight
    mask_row = nn.Parameter(embed[mask_id].detach().clone())
    params = list(drafter.named_parameters()) + [("mask_row", mask_row)]
    block_sizes = [int(x) for x in args.drafter_block_sizes.split(",")]
    dstream = torch.from_numpy(stream).to(device)

    def batch_loss():
        seqs, feats, labels, Bs, anchors = drafter_batch(target, pool, dstream, s,
                                                         block_sizes, device, gen)
        b, K = anchors.shape
        tokens = torch.full((b, K, Bs), mask_id, device=device)
        tokens[:, :, 0] = seqs.gather(1, anchors)
        pos = anchors[:, :, None] + torch.arange(1, Bs, device=device)
        target_ids = labels.gather(1, pos.reshape(b, -1)).view(b, K, Bs - 1)
        with autocast(device):
            logits = drafter(feats, tokens, anchors, embed, lm_head, mask_row, mask_id)
        # DFlash's loss: cross entropy on the block slots, slot k weighted exp(-(k-1)/g).
        w = torch.exp(-torch.arange(Bs - 1, device=device, dtype=torch.float32)
                      / args.drafter_gamma)
        ce = F.cross_entropy(logits[:, :, 1:].float().reshape(-1, logits.shape[-1]),
                             target_ids.reshape(-1), reduction="none").view(-1, Bs - 1)
        return (ce * w).sum() / (w.sum() * ce.shape[0]), Bs

    drafter.train()
    stats = fit_drafter("drafter", params, batch_loss, budget_s - (time.time() - t0),
                        args.drafter_steps, s, args)
    drafter.eval()
    with torch.no_grad():
        embed[mask_id] = mask_row.detach()
    return dict(stats, pool_sequences=len(pool), pool_seconds=pool_seconds,
                seconds=time.time() - t0), pool


def train_ar_drafter(drafter, target, pool, stream, s, args, device, gen, mask_id):
    """The autoregressive baseline drafter, for tilec --ar-drafter: its pass k runs the
    drafter over [last, d_1 .. d_(k-1), MASK ...] (bidirectional in the block) and takes
    slot k's argmax. Per anchor a random k in 1..B-1, slots 1..k-1 hold the target's
    greedy tokens (what accepted drafts are), the loss is slot k's cross entropy. Data,
    optimizer and block sizes are the DFlash drafter's; the <|mask|> row is the target's
    embedding's (set by the DFlash drafter), kept as it is."""
    t0 = time.time()
    embed = target.model.embed_tokens.weight
    lm_head = target.lm_head.weight
    params = list(drafter.named_parameters())
    block_sizes = [int(x) for x in args.drafter_block_sizes.split(",")]
    dstream = torch.from_numpy(stream).to(device)

    def batch_loss():
        seqs, feats, labels, Bs, anchors = drafter_batch(target, pool, dstream, s,
                                                         block_sizes, device, gen)
        b, K = anchors.shape
        k = torch.randint(1, Bs, (b, K), generator=gen).to(device)
        slot = torch.arange(Bs, device=device)
        filled = labels.gather(1, (anchors[:, :, None] + slot).reshape(b, -1)).view(b, K, Bs)
        tokens = torch.where(slot < k[..., None], filled, mask_id)
        tokens[:, :, 0] = seqs.gather(1, anchors)
        with autocast(device):
            logits = drafter(feats, tokens, anchors, embed, lm_head)
        V = logits.shape[-1]
        picked = logits.gather(2, k[:, :, None, None].expand(b, K, 1, V))
        return F.cross_entropy(picked.float().reshape(-1, V),
                               labels.gather(1, anchors + k).reshape(-1)), Bs

    drafter.train()
    stats = fit_drafter("ar drafter", params, batch_loss, args.minutes_ar_drafter * 60,
                        args.ar_drafter_steps, s, args)
    drafter.eval()
    return dict(stats, seconds=time.time() - t0)


# ----------------------------------------------------------------------------------------
# 5. Formats (models/core/Formats.cpp, bit for bit) and export
# ----------------------------------------------------------------------------------------

def _ilogb(x):
    return np.frexp(x)[1].astype(np.int32) - 1


def encode_magnitude(mag, mant_bits, bias):
    """Formats.cpp encodeMagnitude: round to nearest even in a minifloat (float32 math)."""
    mag = mag.astype(np.float32)
    code = np.zeros(mag.shape, dtype=np.int32)
    min_exp = 1 - bias
    sub = mag < np.float32(2.0 ** min_exp)
    code[sub] = np.rint(np.ldexp(mag[sub], mant_bits - min_exp)).astype(np.int32)
    m = mag[~sub]
    e = _ilogb(m)
    frac = (np.ldexp(m, -e) - np.float32(1)).astype(np.float32)
    q = np.rint(np.ldexp(frac, mant_bits)).astype(np.int32)
    code[~sub] = ((e + bias) << mant_bits) + q
    return code


def f32_to_e4m3(x):
    x = x.astype(np.float32)
    sign = np.where(np.signbit(x), 0x80, 0).astype(np.uint8)
    code = np.minimum(encode_magnitude(np.abs(x), 3, 7), 0x7e).astype(np.uint8)
    return sign | code


def f32_to_e2m1(x):
    sign = np.where(np.signbit(x), 0x8, 0).astype(np.uint8)
    code = np.minimum(encode_magnitude(np.abs(x), 1, 1), 0x7).astype(np.uint8)
    return sign | code


def _e4m3_table():
    t = np.zeros(256, dtype=np.float32)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        v = (m / 8) * 2.0 ** -6 if e == 0 else (np.nan if (e == 15 and m == 7)
                                                else (1 + m / 8) * 2.0 ** (e - 7))
        t[c] = -v if s else v
    return t


E4M3 = _e4m3_table()
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6],
                dtype=np.float32)


def quantize_fp8_block(w, block=128):
    """Formats.cpp quantizeFp8Block: E4M3 codes [R, C] and F32 scales [ceil(R/128),
    ceil(C/128)] with value = e4m3 * scale."""
    w = w.astype(np.float32)
    R, C = w.shape
    sr, sc = -(-R // block), -(-C // block)
    q = np.zeros((R, C), dtype=np.uint8)
    scales = np.ones((sr, sc), dtype=np.float32)
    for br in range(sr):
        for bc in range(sc):
            blk = w[br * block:(br + 1) * block, bc * block:(bc + 1) * block]
            if not np.all(np.isfinite(blk)):
                raise ValueError("quantize_fp8_block: non-finite weight")
            amax = np.float32(np.abs(blk).max())
            scale = np.float32(1.0)
            if amax > 0:
                scale = max(np.float32(amax / np.float32(448.0)),
                            np.finfo(np.float32).smallest_subnormal)
            scales[br, bc] = scale
            q[br * block:(br + 1) * block, bc * block:(bc + 1) * block] = \
                f32_to_e4m3(blk / scale)
    return q, scales


def dequantize_fp8_block(q, scales, block=128):
    v = E4M3[q]
    s = np.repeat(np.repeat(scales, block, 0), block, 1)[:q.shape[0], :q.shape[1]]
    return v * s


def quantize_mxfp4(w):
    """Formats.cpp quantizeMxfp4: packed E2M1 pairs [R, C/2] (low nibble = even column)
    and E8M0 scales [R, C/32]; scale exponent floor(log2(amax)) - 2."""
    w = w.astype(np.float32)
    R, C = w.shape
    if C % 32:
        raise ValueError(f"quantize_mxfp4: {C} columns, expected a multiple of 32")
    if not np.all(np.isfinite(w)):
        raise ValueError("quantize_mxfp4: non-finite weight")
    blocks = w.reshape(R, C // 32, 32)
    amax = np.abs(blocks).max(-1)
    exp = np.where(amax == 0, 0, _ilogb(np.where(amax == 0, 1, amax)) - 2)
    exp = np.clip(exp, -127, 127)
    scale = (exp + 127).astype(np.uint8)
    scaled = np.ldexp(blocks, (-exp)[..., None].astype(np.int32)).astype(np.float32)
    codes = f32_to_e2m1(scaled).reshape(R, C)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, scale


def dequantize_mxfp4(packed, scale):
    R = packed.shape[0]
    codes = np.stack([packed & 0xf, packed >> 4], axis=-1).reshape(R, -1)
    s = np.where(scale == 255, np.nan, np.ldexp(np.float32(1), scale.astype(np.int32) - 127))
    return E2M1[codes] * np.repeat(s, 32, axis=1).astype(np.float32)


def selftest_formats():
    """The numpy encoders against independent ones: torch's float8_e4m3fn cast (round to
    nearest even; equal below the saturation point) and a brute-force E2M1 rounding."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32) * s
                        for s in (1e-4, 1e-2, 1, 30, 300)])
    x = np.concatenate([x, np.array([0, -0.0, 448, -448, 2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -10,
                                     1.0625, 1.1875, 15.5, 0.013671875], np.float32)])
    x = x[np.abs(x) <= 448]
    ours = f32_to_e4m3(x)
    ref = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    if not np.array_equal(ours, ref):
        bad = np.nonzero(ours != ref)[0][:5]
        raise AssertionError(f"E4M3 encoder differs from torch at {x[bad]}: {ours[bad]} vs "
                             f"{ref[bad]}")
    grid = E2M1[:8]
    y = np.concatenate([rng.uniform(-7, 7, 20000).astype(np.float32),
                        np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7, -0.25, 6.5],
                                 np.float32)])
    mag = np.abs(y)
    dist = np.abs(mag[:, None] - grid[None, :])
    best = dist.min(1, keepdims=True)
    cands = dist == best  # ties go to the even code (the lower of two neighbours' codes)
    code = np.where(cands & (np.arange(8) % 2 == 0)[None], np.arange(8)[None], 99).min(1)
    code = np.where(cands.sum(1) == 1, dist.argmin(1), code)
    ref = np.where(np.signbit(y), 8, 0) | code
    if not np.array_equal(f32_to_e2m1(y), ref.astype(np.uint8)):
        raise AssertionError("E2M1 encoder differs from the brute-force rounding")
    w = rng.standard_normal((64, 96)).astype(np.float32)
    p, sc = quantize_mxfp4(w)
    if np.abs(dequantize_mxfp4(p, sc) - w).max() > np.abs(w).max() / 4:
        raise AssertionError("MXFP4 round trip error too large")
    q, s = quantize_fp8_block(w * 3)
    if np.abs(dequantize_fp8_block(q, s) - w * 3).max() > np.abs(w * 3).max() / 16:
        raise AssertionError("FP8 round trip error too large")


def to_bf16_bits(t):
    return t.detach().float().cpu().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


class Tensors:
    """Named arrays in safetensors dtypes, and what the loader will read back (f32)."""

    def __init__(self):
        self.items = {}   # name -> (dtype string, np array)
        self.values = {}  # name -> float32 array: the value tilec dequantizes to
        self.unquantized = {}  # name -> float32 array: BF16 rounding of quantized weights

    def bf16(self, name, t):
        bits = to_bf16_bits(t)
        self.items[name] = ("BF16", bits)
        self.values[name] = bf16_bits_to_f32(bits)

    def bf16_row(self, name, i, row):
        """Replaces row i of the BF16 tensor `name`; its other bytes stay as they are."""
        dtype, bits = self.items[name]
        if dtype != "BF16":
            sys.exit(f"train_pair.py: {name} is {dtype}, expected BF16")
        bits = bits.copy()
        bits[i] = to_bf16_bits(row)
        self.items[name] = (dtype, bits)
        self.values[name] = bf16_bits_to_f32(bits)

    def f32(self, name, t):
        a = t.detach().float().cpu().numpy()
        self.items[name] = ("F32", a)
        self.values[name] = a

    def fp8(self, name, t):
        q, scales = quantize_fp8_block(t.detach().float().cpu().numpy())
        self.unquantized[name] = bf16_bits_to_f32(to_bf16_bits(t))
        self.items[name] = ("F8_E4M3", q)
        self.items[name + "_scale_inv"] = ("F32", scales)
        self.values[name] = dequantize_fp8_block(q, scales)

    def mxfp4(self, name, t):
        packed, scale = quantize_mxfp4(t.detach().float().cpu().numpy())
        self.unquantized[name] = bf16_bits_to_f32(to_bf16_bits(t))
        self.items[name] = ("U8", packed)
        self.items[name + "_scale"] = ("F8_E8M0", scale)
        self.values[name] = dequantize_mxfp4(packed, scale)

    def save(self, path):
        """safetensors by hand (F8_E4M3 / F8_E8M0 need no torch float8 support)."""
        header, chunks, offset = {}, [], 0
        for name in sorted(self.items):
            dtype, a = self.items[name]
            raw = np.ascontiguousarray(a).tobytes()
            header[name] = {"dtype": dtype, "shape": list(a.shape),
                            "data_offsets": [offset, offset + len(raw)]}
            chunks.append(raw)
            offset += len(raw)
        header["__metadata__"] = {"format": "pt"}
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for c in chunks:
                f.write(c)


def export_target(model, o_proj_bf16, router_f32):
    cfg = model.config
    t = Tensors()
    sd = model.state_dict()
    t.bf16("model.embed_tokens.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        t.bf16(p + "input_layernorm.weight", sd[p + "input_layernorm.weight"])
        t.bf16(p + "post_attention_layernorm.weight", sd[p + "post_attention_layernorm.weight"])
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            name = p + f"self_attn.{proj}.weight"
            (t.bf16 if proj == "o_proj" and o_proj_bf16 else t.fp8)(name, sd[name])
        if cfg.layer_types[i] == "sliding_attention":
            # The hub name; transformers calls it `sinks` (both load).
            t.bf16(p + "self_attn.attention_sink_bias", sd[p + "self_attn.sinks"])
        if cfg.mlp_layer_types[i] == "dense":
            for proj in ("gate_proj", "up_proj", "down_proj"):
                t.fp8(p + f"mlp.{proj}.weight", sd[p + f"mlp.{proj}.weight"])
        else:
            # F32 as transformers saves it; BF16 by default: tilec's engine stores the
            # router weight in bf16 and its CPU reference would then disagree.
            (t.f32 if router_f32 else t.bf16)(p + "mlp.gate.weight", sd[p + "mlp.gate.weight"])
            t.f32(p + "mlp.gate.e_score_correction_bias",
                  sd[p + "mlp.gate.e_score_correction_bias"])
            gate_up = sd[p + "mlp.experts.gate_up_proj"]
            down = sd[p + "mlp.experts.down_proj"]
            inter = gate_up.shape[1] // 2
            for e in range(gate_up.shape[0]):
                q = p + f"mlp.experts.{e}."
                t.mxfp4(q + "gate_proj.weight", gate_up[e, :inter])
                t.mxfp4(q + "up_proj.weight", gate_up[e, inter:])
                t.mxfp4(q + "down_proj.weight", down[e])
    t.bf16("model.norm.weight", sd["model.norm.weight"])
    t.bf16("lm_head.weight", sd["lm_head.weight"])
    return t


def quantization_config(cfg, o_proj_bf16):
    qc = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
          "weight_block_size": [128, 128], "store_dtype": "mxfp4", "mxfp4_block_size": 32}
    if o_proj_bf16:  # as MiMo-V2.5-Pro's FP4-DFlash checkpoint
        qc["ignored_layers"] = [f"model.layers.{i}.self_attn.o_proj"
                                for i in range(cfg.num_hidden_layers)]
    return qc


CONFIG_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "v_head_dim", "hidden_act",
    "attention_bias", "attention_dropout", "initializer_range", "max_position_embeddings",
    "attention_value_scale", "n_routed_experts", "num_experts_per_tok",
    "moe_intermediate_size", "n_group", "topk_group", "norm_topk_prob",
    "routed_scaling_factor", "tie_word_embeddings", "rms_norm_eps", "sliding_window",
    "layer_types", "mlp_layer_types", "rope_parameters")


def target_config_json(cfg, eos_id, o_proj_bf16):
    """config.json: the model's fields as transformers holds them (no generic
    PretrainedConfig noise), EOS, and the hub FP8 quantization_config."""
    d = cfg.to_dict()
    missing = [k for k in CONFIG_KEYS if k not in d]
    if missing:
        sys.exit(f"train_pair.py: this transformers' MiMoV2FlashConfig lacks {missing}")
    out = {k: d[k] for k in CONFIG_KEYS}
    out.update(architectures=["MiMoV2FlashForCausalLM"], model_type="mimo_v2_flash",
               bos_token_id=None, eos_token_id=eos_id, pad_token_id=None, use_cache=True,
               dtype="bfloat16", transformers_version=transformers.__version__,
               quantization_config=quantization_config(cfg, o_proj_bf16))
    return out


def load_values(model, t, bf16_only=False):
    """Loads what tilec reads from the export into a transformers model (f32). With
    bf16_only the quantized weights are replaced by their BF16 rounding instead."""
    cfg = model.config
    sd = {k: v.clone() for k, v in model.state_dict().items()}

    def val(name):
        table = t.unquantized if bf16_only and name in t.unquantized else t.values
        return torch.from_numpy(np.ascontiguousarray(table[name]))

    for name in t.values:
        if ".experts." in name or name.endswith("attention_sink_bias"):
            continue
        sd[name] = val(name).view(sd[name].shape)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        if cfg.layer_types[i] == "sliding_attention":
            sd[p + "self_attn.sinks"] = val(p + "self_attn.attention_sink_bias")
        if cfg.mlp_layer_types[i] == "sparse":
            gu, dn = sd[p + "mlp.experts.gate_up_proj"], sd[p + "mlp.experts.down_proj"]
            inter = gu.shape[1] // 2
            for e in range(gu.shape[0]):
                q = p + f"mlp.experts.{e}."
                gu[e, :inter] = val(q + "gate_proj.weight")
                gu[e, inter:] = val(q + "up_proj.weight")
                dn[e] = val(q + "down_proj.weight")
    model.load_state_dict(sd)
    return model


SAFETENSORS_NP = {"BF16": np.uint16, "F32": np.float32, "F8_E4M3": np.uint8,
                  "F8_E8M0": np.uint8, "U8": np.uint8}


def load_export(path):
    """The model.safetensors of a directory this script wrote, as Tensors: the items as
    stored (saved back byte for byte), the values dequantized as tilec's loader does."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    t = Tensors()
    for name, h in sorted(header.items()):
        if h["dtype"] not in SAFETENSORS_NP:
            sys.exit(f"train_pair.py: {path}: {name} is {h['dtype']}, which this script "
                     "does not write")
        lo, hi = h["data_offsets"]
        t.items[name] = (h["dtype"], np.frombuffer(data[lo:hi], SAFETENSORS_NP[h["dtype"]])
                         .reshape(h["shape"]))
    for name, (dtype, a) in t.items.items():
        if dtype == "F8_E4M3":
            t.values[name] = dequantize_fp8_block(a, t.items[name + "_scale_inv"][1])
        elif dtype == "U8":
            t.values[name] = dequantize_mxfp4(a, t.items[name + "_scale"][1])
        elif dtype == "BF16":
            t.values[name] = bf16_bits_to_f32(a)
        elif dtype == "F32" and not name.endswith("_scale_inv"):
            t.values[name] = a.copy()
    return t


def target_sizes(s, c):
    """s with the target's fields from a config.json this script wrote."""
    rope = c["rope_parameters"]
    return dataclasses.replace(
        s, vocab=c["vocab_size"], hidden=c["hidden_size"], layer_types=tuple(c["layer_types"]),
        heads=c["num_attention_heads"], kv_heads=c["num_key_value_heads"],
        head_dim=c["head_dim"], v_head_dim=c["v_head_dim"],
        partial_rotary=rope["full_attention"]["partial_rotary_factor"],
        full_theta=rope["full_attention"]["rope_theta"],
        sliding_theta=rope["sliding_attention"]["rope_theta"], window=c["sliding_window"],
        value_scale=c["attention_value_scale"], dense_intermediate=c["intermediate_size"],
        experts=c["n_routed_experts"], top_k=c["num_experts_per_tok"], n_group=c["n_group"],
        topk_group=c["topk_group"], moe_intermediate=c["moe_intermediate_size"])


def export_drafter(drafter):
    t = Tensors()
    for name, p in drafter.state_dict().items():
        t.bf16(name, p)
    return t


def load_drafter_values(drafter, t):
    sd = {k: torch.from_numpy(t.values[k]).view(v.shape) for k, v in drafter.state_dict().items()}
    drafter.load_state_dict(sd)
    return drafter


# ----------------------------------------------------------------------------------------
# 6. Evaluation
# ----------------------------------------------------------------------------------------

def heldout_windows(stream, count, length):
    n = len(stream) - length - 1
    if n <= 0:
        sys.exit("train_pair.py: the held-out stream is shorter than one window")
    starts = np.linspace(0, n, count).astype(np.int64)
    return torch.from_numpy(np.stack([stream[s:s + length + 1] for s in starts]))


def eval_loss(model, windows, device, batch=16):
    total, count, argmax = 0.0, 0, []
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            w = windows[i:i + batch].to(device)
            logits = model(input_ids=w[:, :-1]).logits.float()
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                     w[:, 1:].reshape(-1), reduction="sum").item()
            count += w[:, 1:].numel()
            argmax.append(logits.argmax(-1).cpu())
    return total / count, torch.cat(argmax)


def walk_chains(hits, P, count, B):
    """Accepted lengths per row, walking the chain of starts as DflashReference::generate
    does from the first start P: hits [b, count, B-1] (CPU) says, per start s and slot j,
    whether the draft of slot j is z_(s+j) when slots 1..j-1 were."""
    chains = []
    for r in range(hits.shape[0]):
        s, produced, acc = P, 1, []
        while produced < count:
            a = 0
            while a + 1 < B and bool(hits[r, s - P, a]):
                a += 1
            acc.append(a + 1)
            produced += a + 1
            s += a + 1
        chains.append(acc)
    return chains


def start_blocks(z, P, count, B):
    """Anchors [b, count] (every start s = P .. P+count-1) and z_s .. z_(s+B-1) at each."""
    b = z.shape[0]
    anchors = torch.arange(P, P + count, device=z.device)[None].expand(b, count)
    return anchors, z[:, anchors[0, :, None] + torch.arange(B, device=z.device)]


def dflash_simulated(drafter, target_embed, lm_head, z, feats, P, count, B, mask_id):
    """Greedy DFlash is lossless, so the committed tokens are the target's greedy tokens z
    and every possible block start s can be drafted at once (context = taps[:s]); then walk
    the chain of starts as DflashReference::generate does. Returns accepted lengths."""
    anchors, block = start_blocks(z, P, count, B)
    tokens = torch.full_like(block, mask_id)
    tokens[:, :, 0] = block[:, :, 0]
    with torch.no_grad():
        logits = drafter(feats, tokens, anchors, target_embed, lm_head)
    hits = logits[:, :, 1:].argmax(-1) == block[:, :, 1:]
    return walk_chains(hits.cpu(), P, count, B)


def ar_simulated(drafter, target_embed, lm_head, z, feats, P, count, B, mask_id):
    """The autoregressive mode (tilec --ar-drafter) likewise: slot j's draft counts only
    when slots 1..j-1 were accepted, i.e. were z_(s+1) .. z_(s+j-1), so pass j runs over
    [z_s .. z_(s+j-1), MASK ...] at every start at once (B-1 passes)."""
    anchors, block = start_blocks(z, P, count, B)
    slot = torch.arange(B, device=z.device)
    hits = []
    with torch.no_grad():
        for j in range(1, B):
            tokens = torch.where(slot < j, block, mask_id)
            logits = drafter(feats, tokens, anchors, target_embed, lm_head)
            hits.append(logits[:, :, j].argmax(-1) == block[:, :, j])
    return walk_chains(torch.stack(hits, dim=-1).cpu(), P, count, B)


def dflash_literal(target, drafter, prompt, count, B, tap_ids, mask_id, device,
                   autoregressive=False):
    """DflashReference::generate step by step (target recomputed over the whole sequence
    each step; autoregressive: B-1 drafter passes per step, pass k filling slot k): the
    check that dflash_simulated / ar_simulated are the real loop."""
    embed, lm_head = target.model.embed_tokens.weight, target.lm_head.weight

    def run(seq):
        taps = Taps(target, tap_ids)
        with torch.no_grad():
            logits = target(input_ids=torch.tensor([seq], device=device)).logits[0]
        f = taps.cat()[0]
        taps.remove()
        return logits.argmax(-1).tolist(), f

    def draft(tokens, ctx, start):
        with torch.no_grad():
            logits = drafter(ctx[None], tokens, torch.tensor([[start]], device=device),
                             embed, lm_head)
        return logits[0, 0].argmax(-1)

    P = len(prompt)
    post, feats = run(prompt)
    produced, ctx, start, acc = [post[-1]], feats[:P], P, []
    while len(produced) < count:
        tokens = torch.full((1, 1, B), mask_id, device=device)
        tokens[0, 0, 0] = produced[-1]
        if autoregressive:
            for k in range(1, B):
                tokens[0, 0, k] = draft(tokens, ctx, start)[k]
        else:
            tokens[0, 0, 1:] = draft(tokens, ctx, start)[1:]
        block = tokens[0, 0].tolist()
        post, feats = run(list(prompt) + produced[:-1] + block)
        posterior = post[start:start + B]
        a = 0
        while a + 1 < B and block[a + 1] == posterior[a]:
            a += 1
        produced += block[1:a + 1] + [posterior[a]]
        acc.append(a + 1)
        ctx = torch.cat([ctx, feats[start:start + a + 1]])
        start += a + 1
    return produced[:count], acc


def acceptance(chains, B):
    flat = [a for c in chains for a in c]
    return {"mean_accepted": float(np.mean(flat)),
            "histogram": [flat.count(k) for k in range(1, B + 1)], "steps": len(flat)}


def evaluate(s, args, tmodel_q, tmodel_b, drafter, ar_drafter, held_stream, tap_ids,
             mask_id, device):
    """Metrics of the quantized target (against its BF16 rounding unless tmodel_b is
    None) and the acceptance of the DFlash drafter, of it in autoregressive mode and of
    the autoregressive drafter (unless None)."""
    res = {}
    windows = heldout_windows(held_stream, s.eval_windows, s.seq_len)
    loss_q, arg_q = eval_loss(tmodel_q, windows, device)
    if tmodel_b is not None:
        loss_b, arg_b = eval_loss(tmodel_b, windows, device)
        res["heldout_loss_bf16"] = loss_b
        res["argmax_agreement_teacher_forced"] = float((arg_b == arg_q).float().mean())
    res["heldout_loss_quantized"] = loss_q
    res["heldout_tokens"] = int(windows[:, 1:].numel())

    prompts = heldout_windows(held_stream, s.eval_prompts, s.eval_prompt_len)[:, :-1]
    G, Bmax = s.eval_new, 8
    gq = greedy_generate(tmodel_q, prompts, G + Bmax, device)
    if tmodel_b is not None:
        gb = greedy_generate(tmodel_b, prompts, G, device)
        same = (gq[:, :G] == gb)
        prefix = [int(r.tolist().index(False)) if not bool(r.all()) else G for r in same]
        res["greedy_token_match"] = float(same.float().mean())
        res["greedy_common_prefix_mean"] = float(np.mean(prefix))
    res["greedy_new_tokens"] = G

    z = torch.cat([prompts, gq], dim=1).to(device)
    taps = Taps(tmodel_q, tap_ids)
    with torch.no_grad():
        tmodel_q(input_ids=z)
    feats = taps.cat()
    taps.remove()
    P = prompts.shape[1]
    embed, lm_head = tmodel_q.model.embed_tokens.weight, tmodel_q.lm_head.weight
    # name -> (drafter, autoregressive); ar_same_drafter is tilec --ar-drafter's engine of
    # drafter/, ar_drafter the same mode with drafter-ar/.
    modes = {"dflash": (drafter, False), "ar_same_drafter": (drafter, True)}
    if ar_drafter is not None:
        modes["ar_drafter"] = (ar_drafter, True)

    def simulated(name, rows, B):
        d, ar = modes[name]
        return (ar_simulated if ar else dflash_simulated)(
            d, embed, lm_head, z[rows], feats[rows], P, G, B, mask_id)

    res["crosscheck"] = {"prompt_ids": prompts[0].tolist(),
                         "greedy_quantized": gq[0, :G].tolist()}
    for name in modes:
        res[name] = {}
        for B in (2, 4, 8):
            chains = []
            for i in range(0, len(z), 8):
                chains += simulated(name, slice(i, i + 8), B)
            res[name][str(B)] = acceptance(chains, B)
            if B == 8:
                res["crosscheck"][f"{name}_b8_accepted"] = chains[0]
    res["dflash_new_tokens"] = G
    # The simulations against the literal loop on the first prompts.
    checks = []
    for r in range(min(args.literal_checks, len(prompts))):
        for B in (4, 8):
            for name, (d, ar) in modes.items():
                toks, acc = dflash_literal(tmodel_q, d, prompts[r].tolist(), G, B, tap_ids,
                                           mask_id, device, autoregressive=ar)
                checks.append({"prompt": r, "block": B, "mode": name,
                               "tokens_equal_greedy": toks == gq[r, :G].tolist(),
                               "accepted_equal": acc == simulated(name, slice(r, r + 1),
                                                                  B)[0]})
    res["literal_loop_checks"] = checks
    return res


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------

def dir_bytes(path):
    return {os.path.relpath(os.path.join(d, f), path): os.path.getsize(os.path.join(d, f))
            for d, _, fs in os.walk(path) for f in fs}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Train a tiny MiMo-V2 target + DFlash drafter on Python code and "
                    "export it (MXFP4 experts, FP8 attention) for tilec.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", required=True, help="output model directory (created)")
    ap.add_argument("--minutes-target", type=float, default=None,
                    help="wall-clock budget of the target's training (default 3, smoke 0.3)")
    ap.add_argument("--minutes-drafter", type=float, default=None,
                    help="wall-clock budget of the drafter's stage, greedy pool included "
                         "(default 2, smoke 0.3)")
    ap.add_argument("--minutes-ar-drafter", type=float, default=None,
                    help="wall-clock budget of the autoregressive baseline drafter, trained "
                         "after the DFlash drafter on its greedy pool; 0: none (default "
                         "1.5, smoke 0.3)")
    ap.add_argument("--target-steps", type=int, default=0,
                    help="train the target exactly this many steps (ignores the budget)")
    ap.add_argument("--drafter-steps", type=int, default=0,
                    help="train the drafter exactly this many steps (ignores the budget)")
    ap.add_argument("--ar-drafter-steps", type=int, default=0,
                    help="train the AR drafter exactly this many steps (ignores the budget)")
    ap.add_argument("--target-from", default=None, metavar="DIR",
                    help="no tokenizer and target training: load DIR's tokenizer.json, "
                         "config.json and model.safetensors (a directory this script wrote; "
                         "the quantized weights dequantized), train the drafters on that "
                         "target and export it unchanged but its <|mask|> embedding row")
    ap.add_argument("--tiny-smoke", action="store_true",
                    help="CPU smoke test: 120 files, tiny shapes, ~20 s per training stage")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus", nargs="+", default=[sysconfig.get_paths()["stdlib"]],
                    help="directories of .py files (default: this Python's standard library, "
                         "site-packages excluded)")
    ap.add_argument("--heldout-percent", type=int, default=5,
                    help="files whose sha1(relative path)[0] %% 100 is below this are held out")
    ap.add_argument("--max-files", type=int, default=0, help="use only the first N files")
    ap.add_argument("--corpus-mb", type=float, default=0,
                    help="use at most this many MB of files (a fixed mix of the roots)")
    ap.add_argument("--moe-intermediate", type=int, default=None,
                    help="expert intermediate size (multiple of 32)")
    ap.add_argument("--vocab", type=int, default=None, help="tokenizer vocabulary size")
    ap.add_argument("--tokenizer-bytes", type=int, default=12_000_000,
                    help="train the tokenizer on at most this many bytes of train files")
    ap.add_argument("--hidden", type=int, default=None, help="hidden size (multiple of 32)")
    ap.add_argument("--batch", type=int, default=None, help="target sequences per step")
    ap.add_argument("--drafter-batch", type=int, default=None,
                    help="drafter sequences per step")
    ap.add_argument("--pool-seqs", type=int, default=None,
                    help="greedy continuations generated for the drafter")
    ap.add_argument("--eval-prompts", type=int, default=None,
                    help="held-out prompts for greedy agreement and DFlash acceptance")
    ap.add_argument("--deterministic", action="store_true",
                    help="torch deterministic algorithms (bitwise repeatable; slower on GPU)")
    ap.add_argument("--o-proj-bf16", action="store_true",
                    help="keep o_proj in BF16 (ignored_layers), as MiMo-V2.5-Pro's checkpoint")
    ap.add_argument("--router-f32", action="store_true",
                    help="store the router weight in F32 as transformers does (tilec's engine "
                         "rounds it to bf16, so tile-run --check then reports differences)")
    ap.add_argument("--bias-update", type=float, default=1e-3,
                    help="aux-loss-free router bias step per training step (0: keep zero)")
    ap.add_argument("--drafter-block-sizes", default="8,8,8,4,2",
                    help="block size of each drafter step, drawn uniformly from this list")
    ap.add_argument("--drafter-gamma", type=float, default=4.0,
                    help="DFlash loss decay: slot k weighs exp(-(k-1)/gamma)")
    ap.add_argument("--experts-impl", default="eager",
                    help="transformers experts implementation (eager, grouped_mm, ...; "
                         "auto: grouped_mm if it works and matches eager)")
    ap.add_argument("--literal-checks", type=int, default=2,
                    help="prompts on which the simulations (DFlash, AR) are checked "
                         "against the step-by-step loop")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--save-bf16", default=None,
                    help="also save the unquantized target with save_pretrained here")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    timing = {}
    s = Sizes(**SMOKE) if args.tiny_smoke else Sizes()
    source_cfg = None
    if args.target_from:
        given = [f"--{k.replace('_', '-')}" for k in
                 ("minutes_target", "target_steps", "vocab", "hidden", "moe_intermediate",
                  "o_proj_bf16", "router_f32", "save_bf16") if getattr(args, k)]
        if given:
            sys.exit(f"train_pair.py: --target-from loads the tokenizer and the target; "
                     f"{' '.join(given)} would not apply")
        with open(os.path.join(args.target_from, "config.json")) as f:
            source_cfg = json.load(f)
        s = target_sizes(s, source_cfg)
        made = json.loads(json.dumps(target_config_json(
            target_config(s, s.vocab, "eager"), source_cfg["eos_token_id"],
            "ignored_layers" in source_cfg["quantization_config"])))
        differ = [k for k in CONFIG_KEYS if made[k] != source_cfg.get(k)]
        if differ:
            sys.exit(f"train_pair.py: {args.target_from}/config.json is not a target this "
                     f"script makes (it differs in {differ})")
    if args.tiny_smoke:
        args.max_files = args.max_files or 120
        args.literal_checks = min(args.literal_checks, 1)
        args.tokenizer_bytes = min(args.tokenizer_bytes, 2_000_000)
        args.log_every = min(args.log_every, 10)
    if args.minutes_target is None and not args.target_from:
        args.minutes_target = 0.3 if args.tiny_smoke else 3.0
    if args.minutes_drafter is None:
        args.minutes_drafter = 0.3 if args.tiny_smoke else 2.0
    if args.minutes_ar_drafter is None:
        args.minutes_ar_drafter = 0.3 if args.tiny_smoke else 1.5
    train_ar = args.minutes_ar_drafter > 0 or args.ar_drafter_steps > 0
    if args.vocab:
        s.vocab = args.vocab
    if args.hidden:
        s.hidden = args.hidden
    if args.moe_intermediate:
        s.moe_intermediate = args.moe_intermediate
    for name, field in (("batch", "batch"), ("drafter_batch", "d_batch"),
                        ("pool_seqs", "pool_seqs"), ("eval_prompts", "eval_prompts")):
        if getattr(args, name):
            setattr(s, field, getattr(args, name))
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if s.hidden % 32 or s.moe_intermediate % 32:
        sys.exit("train_pair.py: hidden and moe_intermediate must be multiples of 32 (MXFP4)")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    selftest_formats()
    drafter_dirs = ["drafter"] + (["drafter-ar"] if train_ar else [])
    for d in drafter_dirs:
        os.makedirs(os.path.join(args.out, d), exist_ok=True)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}, device {device}")

    # 1-2. Corpus and tokenizer (--target-from: the target's tokenizer).
    t = time.time()
    train_files, held_files = split_corpus(args.corpus, args.heldout_percent, args.max_files,
                                          args.corpus_mb)
    if args.target_from:
        tok = Tokenizer.from_file(os.path.join(args.target_from, "tokenizer.json"))
        tok_bytes = None
        shutil.copyfile(os.path.join(args.target_from, "tokenizer.json"),
                        os.path.join(args.out, "tokenizer.json"))
    else:
        tok, tok_bytes = train_tokenizer([x for _, x in train_files], s.vocab,
                                         args.tokenizer_bytes)
        tok.save(os.path.join(args.out, "tokenizer.json"), pretty=False)
    vocab = tok.get_vocab_size()
    mask_id, eos_id = tok.token_to_id(MASK), tok.token_to_id(EOS)
    if args.target_from and vocab != s.vocab:
        sys.exit(f"train_pair.py: {args.target_from}: tokenizer.json has {vocab} tokens, "
                 f"config.json {s.vocab}")
    timing["tokenizer_s"] = time.time() - t
    t = time.time()
    train_stream = encode_stream(tok, [x for _, x in train_files])
    held_stream = encode_stream(tok, [x for _, x in held_files])
    timing["encode_s"] = time.time() - t
    train_bytes = sum(len(x.encode()) for _, x in train_files)
    held_bytes = sum(len(x.encode()) for _, x in held_files)
    log(f"corpus: {len(train_files)} train files ({train_bytes / 1e6:.1f} MB, "
        f"{len(train_stream)} tokens), {len(held_files)} held out ({len(held_stream)} "
        f"tokens); vocab {vocab}, mask id {mask_id}")

    # 3. Target (--target-from: loaded; it is never trained further).
    cfg, target = pick_experts_impl(s, vocab, args.experts_impl, device, gen)
    target_params = count_params(target)
    log(f"target: {target_params / 1e6:.2f} M parameters, layers {list(s.layer_types)}")
    if args.target_from:
        tq = load_export(os.path.join(args.target_from, "model.safetensors"))
        load_values(target, tq).eval()
        target_stats = {"from": os.path.abspath(args.target_from)}
        source_metrics = os.path.join(args.target_from, "metrics.json")
        if os.path.exists(source_metrics):
            with open(source_metrics) as f:
                m = json.load(f)
            target_stats["source_metrics"] = {"target": m.get("target"), "eval": {
                k: m.get("eval", {}).get(k) for k in
                ("heldout_loss_bf16", "heldout_loss_quantized",
                 "argmax_agreement_teacher_forced", "greedy_token_match")}}
        log(f"target: {args.target_from}'s, dequantized")
    else:
        target_stats = train_target(target, train_stream, s, args, device, gen)
        timing["target_train_s"] = target_stats["seconds"]

    # 4. Drafters: DFlash, then the autoregressive baseline on the same greedy pool.
    drafter = Drafter(s).to(device)
    drafter_params = count_params(drafter)
    log(f"drafter: {drafter_params / 1e6:.2f} M parameters, taps {s.tap_ids()}, "
        f"block {s.block}")
    drafter_stats, pool = train_drafter(drafter, target, train_stream, s, args, device, gen,
                                        mask_id)
    timing["drafter_s"] = drafter_stats["seconds"]
    drafters = {"drafter": drafter}
    if train_ar:
        drafters["drafter-ar"] = Drafter(s).to(device)
        log(f"ar drafter: the drafter's sizes, on its {len(pool)} greedy continuations")
        ar_stats = train_ar_drafter(drafters["drafter-ar"], target, pool, train_stream, s,
                                    args, device, gen, mask_id)
        timing["ar_drafter_s"] = ar_stats["seconds"]
    del pool

    # 5. Export (--target-from: the loaded tensors, only the <|mask|> row replaced).
    t = time.time()
    target = target.float().cpu()
    if args.target_from:
        tq.bf16_row("model.embed_tokens.weight", mask_id,
                    target.model.embed_tokens.weight[mask_id])
        shutil.copyfile(os.path.join(args.target_from, "config.json"),
                        os.path.join(args.out, "config.json"))
    else:
        tq = export_target(target, args.o_proj_bf16, args.router_f32)
        with open(os.path.join(args.out, "config.json"), "w") as f:
            json.dump(target_config_json(target.config, eos_id, args.o_proj_bf16), f,
                      indent=1, sort_keys=True)
    tq.save(os.path.join(args.out, "model.safetensors"))
    exported = {}
    for d in drafter_dirs:
        exported[d] = export_drafter(drafters[d].float().cpu())
        exported[d].save(os.path.join(args.out, d, "model.safetensors"))
        with open(os.path.join(args.out, d, "config.json"), "w") as f:
            json.dump(drafter_config_json(s, vocab, mask_id, s.layers), f, indent=1)
    if args.save_bf16:
        target.save_pretrained(args.save_bf16)
        tok.save(os.path.join(args.save_bf16, "tokenizer.json"))
    timing["export_s"] = time.time() - t
    files = dir_bytes(args.out)
    log(f"exported {args.out}: {sum(files.values()) / 1e6:.2f} MB")

    # 6. Metrics, on what tilec reads back (no BF16 target with --target-from).
    t = time.time()
    tmodel_q = load_values(new_target(cfg, torch.device("cpu")).float(), tq).to(device).eval()
    tmodel_b = None if args.target_from else load_values(
        new_target(cfg, torch.device("cpu")).float(), tq, bf16_only=True).to(device).eval()
    d_eval = {d: load_drafter_values(Drafter(s), td).to(device).eval()
              for d, td in exported.items()}
    results = evaluate(s, args, tmodel_q, tmodel_b, d_eval["drafter"],
                       d_eval.get("drafter-ar"), held_stream, s.tap_ids(), mask_id, device)
    timing["eval_s"] = time.time() - t
    timing["total_s"] = time.time() - t_start

    loads = {}
    for i, layer in enumerate(target.model.layers):
        if hasattr(layer.mlp, "gate"):
            bias = layer.mlp.gate.e_score_correction_bias
            loads[str(i)] = {"bias_min": float(bias.min()), "bias_max": float(bias.max())}
    metrics = {
        "args": vars(args),
        "sizes": dataclasses.asdict(s),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "device": str(device),
                     "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "corpus": {"root": args.corpus, "train_files": len(train_files),
                   "heldout_files": len(held_files), "train_bytes": train_bytes,
                   "heldout_bytes": held_bytes, "train_tokens": int(len(train_stream)),
                   "heldout_tokens": int(len(held_stream)),
                   "heldout_bytes_per_token": held_bytes / max(1, len(held_stream))},
        "tokenizer": {"vocab_size": vocab, "trained_on_bytes": tok_bytes,
                      "from": args.target_from, "mask_token_id": mask_id,
                      "eos_token_id": eos_id},
        "target": {"parameters": target_params, **target_stats, "router_bias": loads},
        "drafter": {"parameters": drafter_params, "taps": s.tap_ids(), "block_size": s.block,
                    **drafter_stats},
        "drafter_ar": {"parameters": drafter_params, **ar_stats} if train_ar else None,
        "fixture": {"bytes": sum(files.values()), "files": files},
        "eval": results,
        "timing": timing,
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    if tmodel_b is None:
        log(f"held-out loss quantized {results['heldout_loss_quantized']:.4f} (the target "
            f"of {args.target_from})")
    else:
        log(f"held-out loss bf16 {results['heldout_loss_bf16']:.4f}, quantized "
            f"{results['heldout_loss_quantized']:.4f}; argmax agreement "
            f"{results['argmax_agreement_teacher_forced']:.4f}; greedy match "
            f"{results['greedy_token_match']:.4f}")
    for mode in ("dflash", "ar_same_drafter", "ar_drafter"):
        if mode in results:
            r = results[mode]
            log(f"{mode}: mean accepted " + ", ".join(
                f"block {B} {r[B]['mean_accepted']:.2f}" for B in r)
                + f"; block 8 histogram {r['8']['histogram']}")
    log(f"total {timing['total_s']:.0f} s")
    bad = [c for c in results["literal_loop_checks"]
           if not (c["tokens_equal_greedy"] and c["accepted_equal"])]
    if bad:
        log(f"warning: a simulation differs from the literal loop: {bad}")


if __name__ == "__main__":
    main()
