#!/usr/bin/env python3
"""Oracle fixture for models/core/Tokenizer: HuggingFace `tokenizers` as the reference.

Trains a small byte-level BPE tokenizer shaped like Qwen2's (normalizer none,
pre-tokenizer Sequence[Split(Qwen2 regex, Isolated), ByteLevel(use_regex=false)],
ByteLevel decoder, two special tokens) on the Python standard library's own .py
files (sorted, fixed order, first CORPUS_BYTES bytes), then encodes a few
thousand strings (corpus lines, random corpus slices from a fixed seed,
hand-picked Unicode cases, and short random strings of odd Unicode) and records their ids. tests/unit/TokenizerTest.cpp
(OracleFixture) requires the C++ tokenizer to give identical ids for every
string and exact round trips.

Writes (committed; 0.79 MB in all):
  tests/fixtures/tokenizer/tokenizer.json      the trained tokenizer (vocab 4000)
  tests/fixtures/tokenizer/expected.jsonl      {"text": ..., "ids": [...]} per line
  tests/fixtures/tokenizer/gpt2/tokenizer.json  GPT-2 style (ByteLevel with
      add_prefix_space and its own regex, vocab 1000) and gpt2/expected.jsonl
      for the first GPT2_CASES strings and the random Unicode ones
  tests/fixtures/tokenizer/bytes256/tokenizer.json
      the 256-token byte alphabet, no merges, no specials: every id < 256, for
      lit tests with tiny engines (vocab 256)

Regenerate (needs `pip install tokenizers`; the corpus depends on the Python
version, so a regenerated fixture differs from the committed one but is
consistent with itself):
  python3 tests/oracle/tokenizer_oracle.py [--out tests/fixtures/tokenizer]
"""
import argparse
import json
import os
import random
import sysconfig

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>"]
CORPUS_BYTES = 4_000_000
GPT2_CASES = 1000
RANDOM_CASES = 400

HAND_PICKED = [
    "", " ", "  ", "a", "Hello, world!", "hello world  ", " leading space",
    "trailing spaces   ", "\t\ttabs\tand\tmore\t", "line1\nline2\n\nline4\n",
    "crlf\r\nline\r\n\r\n", "\r\r\n\n\r", "mixed \t \n \r\n  end", " " * 40 + "x",
    " " * 100, "\n" * 20, "x" + "\t" * 9 + "y",
    "I'm you're he's we've they'll I'd don't", "I'M YOU'RE HE'S WE'VE THEY'LL I'D DON'T",
    "'s 't 're 've 'm 'll 'd ''s", "rock'n'roll o'clock",
    "12345678901234567890", "3.14159 2,718 1e-10 0x1F -42", "ver 1.2.3-rc4",
    "٣٤٥ ४५६ ⅫⅣ ½ ² ①", "你好，世界！这是一个测试。", "日本語のテキスト、カタカナ、ひらがな",
    "한국어 텍스트 입니다", "Привет, мир! Ёлка", "Γειά σου Κόσμε", "مرحبا بالعالم",
    "שלום עולם", "สวัสดีชาวโลก", "नमस्ते दुनिया",
    "e\u0301 a\u0300 n\u0303 combining: Z\u0351\u0352\u0353a\u0300\u0301lgo",
    "😀 😃 😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️", "emoji😀inside😀words", "🙂🙂🙂🙂",
    "math: ∀x∈ℝ, x²≥0 ∑ ∫ √", "arrows → ← ↔ ⇒", "quotes “double” ‘single’ «guillemets»",
    "zero\u200bwidth\u200djoiner\ufeffbom", "nbsp\u00a0here\u3000ideographic space",
    "\u2028line sep\u2029para sep\u0085nel", "ctrl\x00\x01\x1f\x7fchars",
    "<|endoftext|>", "a<|endoftext|>b", "<|im_start|>user\nhi<|endoftext|>",
    "<|im_start|><|im_start|>", "<|endoftext", "|endoftext|>",
    "def f(x):\n    return x ** 2  # square\n", "if (a && b) { c[i] = d->e; }",
    "https://example.com/path?q=1&r=2#frag", "user@example.org",
    "ALLCAPS camelCase snake_case kebab-case", "élève naïve façade coöperate",
    "ß ẞ ſ ﬁ ﬂ Å Ω K", "x'ſ 'ſa 'K 'ﬅ 'İ", "'S'T'RE'VE'M'LL'D'x", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛", "\U00010348 gothic \U0001F600",
]


def corpus_files():
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".py"))
    return [f for f in files if os.path.isfile(f)]


def corpus_text():
    out, total = [], 0
    for path in corpus_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        out.append(text)
        total += len(text.encode())
        if total >= CORPUS_BYTES:
            break
    return out


def train(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts + HAND_PICKED, trainer=trainer)
    return tok


def train_gpt2(texts):
    """GPT-2 style: ByteLevel(add_prefix_space=True, use_regex=True) alone."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts[:40] + HAND_PICKED, trainer=trainer)
    return tok


def bytes256():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=256, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(["a"], trainer=trainer)
    assert tok.get_vocab_size() == 256, tok.get_vocab_size()
    return tok


def random_unicode(rng, count):
    """Short strings drawn from pools of odd characters: Unicode whitespace,
    contraction letters (and the long s that folds to s), combining marks,
    CJK, emoji, digits of several scripts, random BMP and astral code
    points (unassigned ones included)."""
    pools = [
        [chr(c) for c in range(32, 127)],
        list("\t\n\r\x0b\x0c\x85\xa0\u2000\u2009\u2028\u2029\u202f\u205f\u3000\u1680"
             "\x1c\x1f\u180e\u200b\ufeff"),
        list("'sStTrReEvVmMlLdD\u017f\u212a "),
        [chr(c) for c in range(0x300, 0x370)],
        [chr(c) for c in range(0x4E00, 0x4E40)],
        list("😀👍🏽👨‍👩‍👧‍👦🇫🇷❤️"),
        [chr(rng.randrange(0x80, 0x3000)) for _ in range(400)],
        [chr(rng.randrange(0x10000, 0x30000)) for _ in range(200)],
        [chr(rng.randrange(0xA000, 0xD800)) for _ in range(300)],
        list("0123456789٠١٢٣४५६²³½ⅫⅣ①〇"),
    ]
    return ["".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 24)))
            for _ in range(count)]


def cases(texts):
    rng = random.Random(1234)
    all_text = "".join(texts)
    lines = [l for t in texts for l in t.splitlines(keepends=True) if l.strip()]
    out = list(HAND_PICKED)
    out += rng.sample(lines, 1200)
    for _ in range(1600):
        start = rng.randrange(len(all_text))
        out.append(all_text[start:start + rng.choice([1, 2, 3, 5, 8, 16, 40, 120])])
    # Random mixes of the hand-picked Unicode cases, corpus pieces and special tokens.
    for _ in range(300):
        parts = [rng.choice(HAND_PICKED + SPECIALS + lines[:500]) for _ in range(rng.randint(2, 4))]
        out.append("".join(p[: rng.randint(1, 30)] for p in parts))
    out += random_unicode(rng, RANDOM_CASES)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "tokenizer"))
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "bytes256"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "gpt2"), exist_ok=True)
    texts = corpus_text()
    tok = train(texts)
    tok.save(os.path.join(args.out, "tokenizer.json"), pretty=False)
    bytes256().save(os.path.join(args.out, "bytes256", "tokenizer.json"), pretty=False)
    gpt2 = train_gpt2(texts)
    gpt2.save(os.path.join(args.out, "gpt2", "tokenizer.json"), pretty=False)
    all_cases = cases(texts)
    with open(os.path.join(args.out, "gpt2", "expected.jsonl"), "w", encoding="utf-8") as f:
        for text in all_cases[:GPT2_CASES] + all_cases[-RANDOM_CASES:]:
            ids = gpt2.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")
    n = 0
    with open(os.path.join(args.out, "expected.jsonl"), "w", encoding="utf-8") as f:
        for text in all_cases:
            ids = tok.encode(text, add_special_tokens=False).ids
            assert tok.decode(ids, skip_special_tokens=False) == text, repr(text)
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")
            n += 1
    print(f"{n} cases, {len(corpus_files())} corpus files available")


if __name__ == "__main__":
    main()
