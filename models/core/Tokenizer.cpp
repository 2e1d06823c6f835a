//===- Tokenizer.cpp - Byte-level BPE tokenizer from a tokenizer.json -----===//

#include "models/core/Tokenizer.h"

#include "models/core/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <optional>
#include <queue>
#include <sstream>
#include <unordered_map>

namespace tilec {
namespace {

using json = nlohmann::json;

struct CodeRange {
  uint32_t first, last;
};
#include "models/core/TokenizerUnicode.inc"

template <size_t N> bool inRanges(const CodeRange (&ranges)[N], uint32_t cp) {
  const CodeRange *end = ranges + N;
  const CodeRange *it =
      std::upper_bound(ranges, end, cp, [](uint32_t value, const CodeRange &r) {
        return value < r.first;
      });
  return it != ranges && cp <= (it - 1)->last;
}

bool isLetter(uint32_t cp) {
  if (cp < 0x80)
    return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return inRanges(kLetterRanges, cp);
}
bool isNumber(uint32_t cp) {
  if (cp < 0x80)
    return cp >= '0' && cp <= '9';
  return inRanges(kNumberRanges, cp);
}
/// \s of Oniguruma (the Unicode White_Space property).
bool isSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
bool isNewline(uint32_t cp) { return cp == '\r' || cp == '\n'; }
/// [^\s\p{L}\p{N}]
bool isOther(uint32_t cp) {
  return !isSpace(cp) && !isLetter(cp) && !isNumber(cp);
}

/// The length of a valid UTF-8 sequence starting at bytes[i] as far as the
/// bytes go (`matched`), and the length it needs (`need`, 0: invalid lead).
void utf8Prefix(std::string_view s, size_t i, size_t &matched, size_t &need) {
  auto b0 = static_cast<unsigned char>(s[i]);
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 < 0x80) {
    matched = need = 1;
    return;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF)
    need = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0)
      lo = 0xA0;
    if (b0 == 0xED)
      hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0)
      lo = 0x90;
    if (b0 == 0xF4)
      hi = 0x8F;
  } else {
    matched = 1;
    need = 0;
    return;
  }
  matched = 1;
  while (matched < need && i + matched < s.size()) {
    auto b = static_cast<unsigned char>(s[i + matched]);
    if (b < lo || b > hi)
      break;
    lo = 0x80;
    hi = 0xBF;
    ++matched;
  }
}

/// Decodes valid UTF-8 into code points and their byte offsets (offsets has
/// one more entry: the end). Throws on invalid input.
void decodeUtf8(std::string_view s, std::vector<uint32_t> &cps,
                std::vector<size_t> &offsets) {
  cps.clear();
  offsets.clear();
  for (size_t i = 0; i < s.size();) {
    size_t matched, need;
    utf8Prefix(s, i, matched, need);
    if (need == 0 || matched != need)
      fail("tokenizer: the text is not valid UTF-8 (byte {} of {})", i,
           s.size());
    auto b0 = static_cast<unsigned char>(s[i]);
    uint32_t cp = need == 1   ? b0
                  : need == 2 ? b0 & 0x1F
                  : need == 3 ? b0 & 0x0F
                              : b0 & 0x07;
    for (size_t k = 1; k < need; ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    cps.push_back(cp);
    offsets.push_back(i);
    i += need;
  }
  offsets.push_back(s.size());
}

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

//===----------------------------------------------------------------------===//
// Pre-tokenization patterns, matched by hand.
//===----------------------------------------------------------------------===//

enum class Pattern { Gpt2, Qwen2 };

// As in tokenizers' ByteLevel (and GPT-2's encoder.py).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Qwen2's (and MiMo's) Split pattern.
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// The length of the contraction at cps[i] ('s 't 're 've 'm 'll 'd), or 0.
size_t contraction(const std::vector<uint32_t> &cps, size_t i,
                   bool ignoreCase) {
  size_t n = cps.size();
  if (cps[i] != '\'' || i + 1 >= n)
    return 0;
  auto lower = [&](size_t k) -> uint32_t {
    if (k >= n)
      return 0;
    uint32_t c = cps[k];
    if (ignoreCase && c >= 'A' && c <= 'Z')
      return c | 0x20;
    if (ignoreCase && c == 0x17F) // LATIN SMALL LETTER LONG S folds to s
      return 's';
    return c;
  };
  uint32_t c1 = lower(i + 1), c2 = lower(i + 2);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
    return 2;
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') ||
      (c1 == 'l' && c2 == 'l'))
    return 3;
  return 0;
}

/// The end of the whitespace alternatives \s+(?!\S)|\s+ at cps[i] (a space).
size_t spaceRun(const std::vector<uint32_t> &cps, size_t i) {
  size_t j = i;
  while (j < cps.size() && isSpace(cps[j]))
    ++j;
  if (j == cps.size() || j - i == 1)
    return j;
  return j - 1;
}

/// The end of the match of `pattern` starting at cps[i] (every position
/// matches one of the alternatives, so matches tile the text).
size_t matchAt(Pattern pattern, const std::vector<uint32_t> &cps, size_t i) {
  size_t n = cps.size();
  uint32_t c = cps[i];
  auto run = [&](size_t j, bool (*pred)(uint32_t)) {
    while (j < n && pred(cps[j]))
      ++j;
    return j;
  };
  if (pattern == Pattern::Gpt2) {
    if (size_t len = contraction(cps, i, /*ignoreCase=*/false))
      return i + len;
    size_t k = (c == ' ' && i + 1 < n) ? i + 1 : i;
    uint32_t d = cps[k];
    if (isLetter(d))
      return run(k, isLetter);
    if (isNumber(d))
      return run(k, isNumber);
    if (isOther(d))
      return run(k, isOther);
    return spaceRun(cps, i);
  }
  // Qwen2.
  if (size_t len = contraction(cps, i, /*ignoreCase=*/true))
    return i + len;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (i + 1 < n && !isNewline(c) && !isLetter(c) && !isNumber(c) &&
      isLetter(cps[i + 1]))
    return run(i + 1, isLetter);
  if (isLetter(c))
    return run(i, isLetter);
  // \p{N}
  if (isNumber(c))
    return i + 1;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  size_t k = (c == ' ' && i + 1 < n && isOther(cps[i + 1])) ? i + 1 : i;
  if (isOther(cps[k]))
    return run(run(k, isOther), isNewline);
  // \s*[\r\n]+ : up to the last newline of the whitespace run.
  size_t j = run(i, isSpace);
  for (size_t m = j; m > i; --m)
    if (isNewline(cps[m - 1]))
      return m;
  return spaceRun(cps, i);
}

void splitPattern(Pattern pattern, std::string_view text,
                  std::vector<std::string> &out) {
  std::vector<uint32_t> cps;
  std::vector<size_t> offsets;
  decodeUtf8(text, cps, offsets);
  for (size_t i = 0; i < cps.size();) {
    size_t end = matchAt(pattern, cps, i);
    out.emplace_back(text.substr(offsets[i], offsets[end] - offsets[i]));
    i = end;
  }
}

/// GPT-2's bytes_to_unicode: byte -> code point.
std::array<uint32_t, 256> byteToUnicode() {
  std::array<uint32_t, 256> map{};
  std::array<bool, 256> direct{};
  for (int b = 0; b < 256; ++b)
    direct[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                (b >= 0xAE && b <= 0xFF);
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b)
    map[b] = direct[b] ? b : next++;
  return map;
}

/// The bytes a ByteLevel spelling stands for (every character through the
/// inverse of byteToUnicode), or nullopt when a character is not in the map.
/// Throws tilec::Error when `spelling` is not valid UTF-8.
std::optional<std::string> byteLevelBytes(const std::string &spelling) {
  static const std::unordered_map<uint32_t, int> unicodeToByte = [] {
    std::unordered_map<uint32_t, int> inverse;
    auto map = byteToUnicode();
    for (int b = 0; b < 256; ++b)
      inverse[map[b]] = b;
    return inverse;
  }();
  std::vector<uint32_t> cps;
  std::vector<size_t> offsets;
  decodeUtf8(spelling, cps, offsets);
  std::string raw;
  for (uint32_t cp : cps) {
    auto it = unicodeToByte.find(cp);
    if (it == unicodeToByte.end())
      return std::nullopt;
    raw += static_cast<char>(it->second);
  }
  return raw;
}

std::string jsonType(const json &j) { return j.type_name(); }

} // namespace

//===----------------------------------------------------------------------===//
// Tokenizer::Impl
//===----------------------------------------------------------------------===//

struct AddedToken {
  int32_t id;
  std::string content;
  bool special, lstrip, rstrip, normalized;
};

struct PreStep {
  enum Kind { Split, ByteLevel } kind;
  Pattern pattern = Pattern::Gpt2; // Split, or ByteLevel with useRegex
  bool addPrefixSpace = false, useRegex = false;
};

struct Tokenizer::Impl {
  std::string where;
  std::vector<std::string> tokens;    // id -> spelling in tokenizer.json
  std::vector<std::string> bytes;     // id -> bytes it decodes to
  std::vector<char> present, special; // id -> has a token / is special
  std::unordered_map<std::string, int32_t> idOf;       // spelling -> id
  std::unordered_map<std::string, int32_t> vocabBytes; // BPE: bytes -> id
  std::array<int32_t, 256> byteId{};                   // -1: not in vocab
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges; // rank,id
  std::vector<AddedToken> added;
  std::vector<PreStep> steps;
  int32_t unkId = -1;
  bool ignoreMerges = false;

  [[noreturn]] void error(const std::string &message) const {
    fail("{}: {}", where, message);
  }

  void setToken(int32_t id, const std::string &spelling, bool isSpecial) {
    if (id < 0 || id > (1 << 30))
      error(fmt::format("token '{}' has id {} (expected 0 <= id < 2^30)",
                        spelling, id));
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(id + 1);
      bytes.resize(id + 1);
      present.resize(id + 1, 0);
      special.resize(id + 1, 0);
    }
    tokens[id] = spelling;
    present[id] = 1;
    special[id] = isSpecial;
    idOf[spelling] = id;
  }

  void parse(const json &root);
  void parseModel(const json &model);
  void parsePreTokenizer(const json &pre);
  void parseStep(const json &step);
  std::vector<int32_t> encode(std::string_view text) const;
  void bpe(std::string_view word, std::vector<int32_t> &out) const;
};

namespace {

const json &member(const json &obj, const char *key, const std::string &where,
                   const char *context) {
  auto it = obj.find(key);
  if (it == obj.end())
    fail("{}: {} has no field \"{}\"", where, context, key);
  return *it;
}

std::string getString(const json &obj, const char *key,
                      const std::string &where, const char *context) {
  const json &v = member(obj, key, where, context);
  if (!v.is_string())
    fail("{}: {} field \"{}\" is {}, expected a string", where, context, key,
         jsonType(v));
  return v.get<std::string>();
}

bool getBool(const json &obj, const char *key, bool fallback,
             const std::string &where, const char *context) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null())
    return fallback;
  if (!it->is_boolean())
    fail("{}: {} field \"{}\" is {}, expected true or false", where, context,
         key, jsonType(*it));
  return it->get<bool>();
}

} // namespace

void Tokenizer::Impl::parse(const json &root) {
  if (!root.is_object())
    error(fmt::format("expected a JSON object, got {}", jsonType(root)));
  parseModel(member(root, "model", where, "the tokenizer"));

  // Added tokens.
  if (auto it = root.find("added_tokens"); it != root.end() && !it->is_null()) {
    if (!it->is_array())
      error("\"added_tokens\" is not an array");
    for (const json &t : *it) {
      if (!t.is_object())
        error("an entry of \"added_tokens\" is not an object");
      const json &idJson = member(t, "id", where, "an added token");
      if (!idJson.is_number_integer())
        error("an added token's \"id\" is not an integer");
      AddedToken a;
      a.id = static_cast<int32_t>(idJson.get<int64_t>());
      a.content = getString(t, "content", where, "an added token");
      if (a.content.empty())
        error(fmt::format("added token {} is empty", a.id));
      a.special = getBool(t, "special", false, where, "an added token");
      a.lstrip = getBool(t, "lstrip", false, where, "an added token");
      a.rstrip = getBool(t, "rstrip", false, where, "an added token");
      a.normalized = getBool(t, "normalized", false, where, "an added token");
      if (getBool(t, "single_word", false, where, "an added token"))
        error(fmt::format("added token '{}' has single_word: true, which is "
                          "not supported",
                          a.content));
      setToken(a.id, a.content, a.special);
      added.push_back(std::move(a));
    }
  }

  // Normalizer: none, or NFC taken as the identity (see Tokenizer.h).
  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    std::string type =
        it->is_object() && it->contains("type") && (*it)["type"].is_string()
            ? (*it)["type"].get<std::string>()
            : "?";
    if (type != "NFC")
      error(fmt::format("normalizer \"{}\" is not supported (only none or "
                        "NFC)",
                        type));
  }

  parsePreTokenizer(member(root, "pre_tokenizer", where, "the tokenizer"));

  const json &decoder = member(root, "decoder", where, "the tokenizer");
  std::string decoderType = decoder.is_object() && decoder.contains("type") &&
                                    decoder["type"].is_string()
                                ? decoder["type"].get<std::string>()
                            : decoder.is_null() ? "null"
                                                : "?";
  if (decoderType != "ByteLevel")
    error(fmt::format("decoder \"{}\" is not supported (expected ByteLevel)",
                      decoderType));

  // What each id decodes to: as tokenizers' ByteLevel decoder, the mapped
  // bytes when every character is in the byte map, else the UTF-8 itself.
  for (size_t id = 0; id < tokens.size(); ++id)
    if (present[id])
      bytes[id] = byteLevelBytes(tokens[id]).value_or(tokens[id]);
}

void Tokenizer::Impl::parseModel(const json &model) {
  if (!model.is_object())
    error("\"model\" is not an object");
  std::string type = model.contains("type")
                         ? getString(model, "type", where, "the model")
                         : "(none)";
  if (type != "BPE")
    error(
        fmt::format("model type \"{}\" is not supported (expected BPE)", type));
  auto requireNull = [&](const char *key) {
    auto it = model.find(key);
    if (it == model.end() || it->is_null() ||
        (it->is_string() && it->get<std::string>().empty()))
      return;
    error(fmt::format("BPE field \"{}\" is {}; only null is supported", key,
                      it->dump()));
  };
  requireNull("dropout");
  requireNull("continuing_subword_prefix");
  requireNull("end_of_word_suffix");
  if (getBool(model, "byte_fallback", false, where, "the model"))
    error("BPE byte_fallback is not supported");
  ignoreMerges = getBool(model, "ignore_merges", false, where, "the model");

  const json &vocab = member(model, "vocab", where, "the BPE model");
  if (!vocab.is_object())
    error(fmt::format("BPE \"vocab\" is {}, expected an object",
                      jsonType(vocab)));
  for (auto &[spelling, idJson] : vocab.items()) {
    if (!idJson.is_number_integer())
      error(fmt::format("vocab entry '{}' is {}, expected an integer id",
                        spelling, jsonType(idJson)));
    setToken(static_cast<int32_t>(idJson.get<int64_t>()), spelling, false);
  }
  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string())
      error("BPE \"unk_token\" is not a string");
    auto found = idOf.find(it->get<std::string>());
    if (found == idOf.end())
      error(fmt::format("BPE unk_token '{}' is not in the vocabulary",
                        it->get<std::string>()));
    unkId = found->second;
  }

  // The byte form of every vocabulary entry.
  for (auto &[spelling, idJson] : vocab.items()) {
    std::optional<std::string> raw;
    try {
      raw = byteLevelBytes(spelling);
    } catch (const Error &) {
      error(fmt::format("vocab entry {} is not valid UTF-8",
                        idJson.get<int64_t>()));
    }
    if (raw)
      vocabBytes[*raw] = static_cast<int32_t>(idJson.get<int64_t>());
  }
  byteId.fill(-1);
  for (int b = 0; b < 256; ++b)
    if (auto it = vocabBytes.find(std::string(1, static_cast<char>(b)));
        it != vocabBytes.end())
      byteId[b] = it->second;

  const json &mergeList = member(model, "merges", where, "the BPE model");
  if (!mergeList.is_array())
    error(fmt::format("BPE \"merges\" is {}, expected an array",
                      jsonType(mergeList)));
  int32_t rank = 0;
  for (const json &m : mergeList) {
    std::string a, b;
    if (m.is_string()) {
      std::string s = m.get<std::string>();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != s.npos)
        error(fmt::format("merge {} '{}' is not two tokens separated by one "
                          "space",
                          rank, s));
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
               m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      error(fmt::format("merge {} is {}, expected \"a b\" or [\"a\", \"b\"]",
                        rank, m.dump()));
    }
    auto lookup = [&](const std::string &t) {
      auto it = idOf.find(t);
      if (it == idOf.end())
        error(fmt::format("merge {} ('{}' '{}') names '{}', which is not in "
                          "the vocabulary",
                          rank, a, b, t));
      return it->second;
    };
    int32_t ia = lookup(a), ib = lookup(b), merged = lookup(a + b);
    uint64_t key =
        (static_cast<uint64_t>(ia) << 32) | static_cast<uint32_t>(ib);
    merges.emplace(key, std::make_pair(rank, merged)); // first rank wins
    ++rank;
  }
}

void Tokenizer::Impl::parseStep(const json &step) {
  std::string type =
      step.is_object() && step.contains("type") && step["type"].is_string()
          ? step["type"].get<std::string>()
          : "?";
  if (type == "ByteLevel") {
    PreStep s{PreStep::ByteLevel};
    s.addPrefixSpace =
        getBool(step, "add_prefix_space", true, where, "the ByteLevel step");
    s.useRegex = getBool(step, "use_regex", true, where, "the ByteLevel step");
    steps.push_back(s);
    return;
  }
  if (type == "Split") {
    const json &pattern = member(step, "pattern", where, "the Split step");
    std::string regex;
    if (pattern.is_object() && pattern.contains("Regex") &&
        pattern["Regex"].is_string())
      regex = pattern["Regex"].get<std::string>();
    else
      error(fmt::format("Split pattern {} is not supported (only the Regex "
                        "patterns of GPT-2 and Qwen2)",
                        pattern.dump()));
    PreStep s{PreStep::Split};
    if (regex == kGpt2Pattern)
      s.pattern = Pattern::Gpt2;
    else if (regex == kQwen2Pattern)
      s.pattern = Pattern::Qwen2;
    else
      error(fmt::format("Split pattern '{}' is not supported (only the "
                        "patterns of GPT-2 and Qwen2)",
                        regex));
    std::string behavior =
        step.contains("behavior") && step["behavior"].is_string()
            ? step["behavior"].get<std::string>()
            : "?";
    if (behavior != "Isolated")
      error(fmt::format("Split behavior \"{}\" is not supported (only "
                        "Isolated)",
                        behavior));
    if (getBool(step, "invert", false, where, "the Split step"))
      error("Split with invert: true is not supported");
    if (!steps.empty() && steps.back().kind == PreStep::ByteLevel)
      error("a Split after the ByteLevel pre-tokenizer is not supported");
    steps.push_back(s);
    return;
  }
  error(fmt::format("pre-tokenizer \"{}\" is not supported (only ByteLevel "
                    "and Split)",
                    type));
}

void Tokenizer::Impl::parsePreTokenizer(const json &pre) {
  if (pre.is_object() && pre.contains("type") && pre["type"] == "Sequence") {
    const json &list = member(pre, "pretokenizers", where, "the Sequence");
    if (!list.is_array())
      error("pre_tokenizer Sequence \"pretokenizers\" is not an array");
    for (const json &step : list)
      parseStep(step);
  } else if (pre.is_null()) {
    error("pre_tokenizer is null; only byte-level BPE tokenizers are "
          "supported");
  } else {
    parseStep(pre);
  }
  if (steps.empty() || steps.back().kind != PreStep::ByteLevel)
    error("the pre-tokenizer does not end with ByteLevel; only byte-level "
          "BPE tokenizers are supported");
}

void Tokenizer::Impl::bpe(std::string_view word,
                          std::vector<int32_t> &out) const {
  if (ignoreMerges) {
    if (auto it = vocabBytes.find(std::string(word)); it != vocabBytes.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Sym {
    int32_t id;
    int prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (unsigned char b : word) {
    int32_t id = byteId[b] >= 0 ? byteId[b] : unkId;
    if (id < 0)
      continue; // as tokenizers: a byte without a token and no unk is dropped
    int index = static_cast<int>(syms.size());
    syms.push_back({id, index - 1, index + 1});
  }
  if (syms.empty())
    return;
  syms.back().next = -1;
  struct Cand {
    int32_t rank;
    int pos;
    int32_t left, right;
    bool operator>(const Cand &o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto consider = [&](int left) {
    if (left < 0 || syms[left].next < 0)
      return;
    int32_t a = syms[left].id, b = syms[syms[left].next].id;
    auto it = merges.find((static_cast<uint64_t>(a) << 32) |
                          static_cast<uint32_t>(b));
    if (it != merges.end())
      queue.push({it->second.first, left, a, b});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i)
    consider(i);
  std::vector<char> dead(syms.size(), 0);
  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    if (dead[c.pos] || syms[c.pos].next < 0 || syms[c.pos].id != c.left ||
        syms[syms[c.pos].next].id != c.right)
      continue;
    int right = syms[c.pos].next;
    auto it = merges.find((static_cast<uint64_t>(c.left) << 32) |
                          static_cast<uint32_t>(c.right));
    syms[c.pos].id = it->second.second;
    syms[c.pos].next = syms[right].next;
    if (syms[right].next >= 0)
      syms[syms[right].next].prev = c.pos;
    dead[right] = 1;
    consider(syms[c.pos].prev);
    consider(c.pos);
  }
  for (int i = 0; i >= 0; i = syms[i].next)
    out.push_back(syms[i].id);
}

std::vector<int32_t> Tokenizer::Impl::encode(std::string_view text) const {
  {
    std::vector<uint32_t> cps;
    std::vector<size_t> offsets;
    decodeUtf8(text, cps, offsets); // validates
  }
  // Split off the added tokens (leftmost longest), first those matched on the
  // raw text, then those matched on the normalized text (the same here).
  struct Segment {
    std::string_view text;
    int32_t id; // -1: ordinary text
  };
  std::vector<Segment> segments{{text, -1}};
  for (bool normalizedPass : {false, true}) {
    std::vector<Segment> next;
    for (const Segment &seg : segments) {
      if (seg.id >= 0) {
        next.push_back(seg);
        continue;
      }
      std::string_view s = seg.text;
      size_t start = 0, i = 0;
      while (i < s.size()) {
        const AddedToken *best = nullptr;
        for (const AddedToken &a : added)
          if (a.normalized == normalizedPass &&
              s.compare(i, a.content.size(), a.content) == 0 &&
              (!best || a.content.size() > best->content.size()))
            best = &a;
        if (!best) {
          ++i;
          continue;
        }
        size_t begin = i, end = i + best->content.size();
        auto spaceAt = [&](size_t k) {
          return s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r';
        };
        if (best->lstrip)
          while (begin > start && spaceAt(begin - 1))
            --begin;
        if (best->rstrip)
          while (end < s.size() && spaceAt(end))
            ++end;
        if (begin > start)
          next.push_back({s.substr(start, begin - start), -1});
        next.push_back({s.substr(begin, end - begin), best->id});
        start = i = end;
      }
      if (start < s.size())
        next.push_back({s.substr(start), -1});
    }
    segments = std::move(next);
  }

  std::vector<int32_t> ids;
  std::vector<std::string> pieces, split;
  for (const Segment &seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    pieces.assign(1, std::string(seg.text));
    for (const PreStep &step : steps) {
      split.clear();
      for (std::string &piece : pieces) {
        if (piece.empty())
          continue;
        if (step.kind == PreStep::ByteLevel && step.addPrefixSpace &&
            (piece.empty() || piece[0] != ' '))
          piece.insert(piece.begin(), ' ');
        if (step.kind == PreStep::Split ||
            (step.kind == PreStep::ByteLevel && step.useRegex))
          splitPattern(step.pattern, piece, split);
        else
          split.push_back(std::move(piece));
      }
      pieces.swap(split);
    }
    for (const std::string &piece : pieces)
      bpe(piece, ids);
  }
  return ids;
}

//===----------------------------------------------------------------------===//
// Tokenizer
//===----------------------------------------------------------------------===//

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer &&) noexcept = default;
Tokenizer &Tokenizer::operator=(Tokenizer &&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string &path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    file /= "tokenizer.json";
  if (!std::filesystem::is_regular_file(file, ec))
    fail("{}: no such file (expected a tokenizer.json)", file.string());
  std::ifstream in(file, std::ios::binary);
  if (!in)
    fail("{}: cannot open", file.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return fromJson(buffer.str(), file.string());
}

Tokenizer Tokenizer::fromJson(std::string_view text, const std::string &where) {
  auto impl = std::make_unique<Impl>();
  impl->where = where;
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded())
    fail("{}: not valid JSON", where);
  try {
    impl->parse(root);
  } catch (const json::exception &e) {
    fail("{}: {}", where, e.what());
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  return impl_->encode(text);
}

const std::string &Tokenizer::tokenBytes(int32_t id) const {
  if (id < 0 || id >= vocabSize() || !impl_->present[id])
    fail("{}: token id {} is not in the vocabulary (size {})", impl_->where, id,
         vocabSize());
  return impl_->bytes[id];
}

const std::string &Tokenizer::tokenSpelling(int32_t id) const {
  tokenBytes(id); // checks the id
  return impl_->tokens[id];
}

std::string Tokenizer::decode(const std::vector<int32_t> &ids,
                              bool skipSpecialTokens) const {
  std::string raw;
  for (int32_t id : ids) {
    const std::string &b = tokenBytes(id);
    if (!(skipSpecialTokens && impl_->special[id]))
      raw += b;
  }
  return utf8Lossy(raw);
}

int32_t Tokenizer::vocabSize() const {
  return static_cast<int32_t>(impl_->tokens.size());
}

int32_t Tokenizer::tokenId(std::string_view token) const {
  auto it = impl_->idOf.find(std::string(token));
  return it == impl_->idOf.end() ? -1 : it->second;
}

bool Tokenizer::isSpecial(int32_t id) const {
  return id >= 0 && id < vocabSize() && impl_->special[id];
}

const std::string &Tokenizer::where() const { return impl_->where; }

Tokenizer::StreamDecoder::StreamDecoder(const Tokenizer &tokenizer,
                                        bool skipSpecialTokens)
    : tokenizer_(&tokenizer), skipSpecial_(skipSpecialTokens) {}

std::string Tokenizer::StreamDecoder::push(int32_t id) {
  const std::string &b = tokenizer_->tokenBytes(id);
  if (skipSpecial_ && tokenizer_->isSpecial(id))
    return {};
  pending_ += b;
  size_t tail = 0;
  std::string out = utf8Lossy(pending_, &tail);
  pending_.erase(0, pending_.size() - tail);
  return out;
}

std::string Tokenizer::StreamDecoder::finish() {
  std::string out = utf8Lossy(pending_);
  pending_.clear();
  return out;
}

std::string utf8Lossy(std::string_view bytes, size_t *partialTail) {
  std::string out;
  out.reserve(bytes.size());
  if (partialTail)
    *partialTail = 0;
  for (size_t i = 0; i < bytes.size();) {
    size_t matched, need;
    utf8Prefix(bytes, i, matched, need);
    if (need != 0 && matched == need) {
      out.append(bytes.substr(i, need));
    } else if (partialTail && need != 0 && i + matched == bytes.size()) {
      *partialTail = matched;
      break;
    } else {
      appendUtf8(out, 0xFFFD);
    }
    i += matched;
  }
  return out;
}

} // namespace tilec
