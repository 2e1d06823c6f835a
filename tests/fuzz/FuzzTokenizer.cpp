//===- FuzzTokenizer.cpp - libFuzzer entry for the tokenizer --------------===//
//
// Input without a NUL byte: text for a built-in Qwen2-style byte-level
// tokenizer (a few merges, two special tokens); valid UTF-8 must encode,
// decode back exactly, and stream-decode to the same text; invalid UTF-8 must
// be a tilec::Error. Input with a NUL: tokenizer.json before it, text after;
// a bad tokenizer.json must end in tilec::Error, a good one must encode and
// decode without any other exception or crash. Anything else aborts.
//
//===----------------------------------------------------------------------===//
#include "models/core/Error.h"
#include "models/core/Tokenizer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

using namespace tilec;

namespace {

[[noreturn]] void bug(const char *what, const std::string &detail) {
  std::fprintf(stderr, "FuzzTokenizer: %s: %s\n", what, detail.c_str());
  std::abort();
}

std::string byteChar(int b) {
  auto direct = [](int k) {
    return (k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE;
  };
  int cp = b;
  if (!direct(b)) {
    cp = 256;
    for (int k = 0; k < b; ++k)
      cp += !direct(k);
  }
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string jsonString(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

const Tokenizer &builtIn() {
  static const Tokenizer t = [] {
    std::string vocab;
    for (int b = 0; b < 256; ++b)
      vocab +=
          (b ? "," : "") + jsonString(byteChar(b)) + ":" + std::to_string(b);
    vocab += ",\"he\":256,\"ll\":257,\"hell\":258,\"hello\":259,"
             "\"\xC4\xA0\xC4\xA0\":260,\"\xC4\xA0w\":261";
    std::string text =
        R"({"added_tokens":[{"id":300,"content":"<|endoftext|>","special":true},)"
        R"({"id":301,"content":"<|x|>","special":false}],)"
        R"("normalizer":null,"pre_tokenizer":{"type":"Sequence","pretokenizers":[)"
        R"({"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},)"
        R"("behavior":"Isolated","invert":false},)"
        R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},)"
        R"("decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{)" +
        vocab +
        R"(},"merges":["h e","l l",["he","ll"],"hell o","\u0120 \u0120","\u0120 w"]}})";
    return Tokenizer::fromJson(text, "built-in");
  }();
  return t;
}

void roundTrip(const Tokenizer &t, const std::string &text, bool exact) {
  std::vector<int32_t> ids;
  try {
    ids = t.encode(text);
  } catch (const Error &) {
    return; // invalid UTF-8
  }
  std::string decoded = t.decode(ids);
  if (exact && decoded != text)
    bug("round trip differs", text);
  Tokenizer::StreamDecoder stream(t);
  std::string streamed;
  for (int32_t id : ids)
    streamed += stream.push(id);
  streamed += stream.finish();
  if (streamed != decoded)
    bug("streamed text differs from decode", text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string input(reinterpret_cast<const char *>(data), size);
  size_t nul = input.find('\0');
  try {
    if (nul == std::string::npos) {
      roundTrip(builtIn(), input, /*exact=*/true);
      return 0;
    }
    std::optional<Tokenizer> t;
    try {
      t.emplace(Tokenizer::fromJson(input.substr(0, nul), "fuzz.json"));
    } catch (const Error &) {
      return 0;
    }
    roundTrip(*t, input.substr(nul + 1), /*exact=*/false);
  } catch (const Error &e) {
    bug("unexpected tilec::Error", e.what());
  } catch (const std::exception &e) {
    bug("exception other than tilec::Error", e.what());
  }
  return 0;
}
