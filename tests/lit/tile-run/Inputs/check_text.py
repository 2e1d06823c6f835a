"""check_text.py RUN.json TOKENIZER.json [STREAM.txt]: the run's "text" is the
byte-level decode of its "tokens" (ids the tokenizer lacks left out, invalid
UTF-8 replaced as tokenizers does), and STREAM.txt, tile-run's streamed
stdout, is that text and a newline. Independent of tilec's Tokenizer."""
import json
import sys


def byte_map():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


run = json.load(open(sys.argv[1], encoding="utf-8"))
vocab = json.load(open(sys.argv[2], encoding="utf-8"))["model"]["vocab"]
spelling = {i: s for s, i in vocab.items()}
chars = byte_map()
raw = bytes(chars[c] for t in run["tokens"] if t in spelling for c in spelling[t])
text = raw.decode("utf-8", errors="replace")
assert run["text"] == text, (run["text"], text)
if len(sys.argv) > 3:
    stream = open(sys.argv[3], encoding="utf-8", newline="").read()
    assert stream == text + "\n", (stream, text)
print(f"check_text: {len(run['tokens'])} tokens, {len(text)} characters agree")
