//===- TokenizerTest.cpp - Byte-level BPE tokenizer
//------------------------===//
//
// Hand-written tokenizer.json fixtures (built below) for the pre-tokenizer
// patterns, merges, added tokens, streaming decode and every error path; and
// tests/fixtures/tokenizer/ (tests/oracle/tokenizer_oracle.py): the ids that
// the Python tokenizers library gives for ~3000 strings.
//
//===----------------------------------------------------------------------===//

#include "models/core/Tokenizer.h"
#include "models/core/Error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace tilec;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char *kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// GPT-2's byte -> unicode map, spelled as UTF-8.
std::string byteChar(int b) {
  bool direct =
      (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
  int cp = b;
  if (!direct) {
    int n = 0;
    for (int k = 0; k < b; ++k)
      if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE)))
        ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80)
    s += static_cast<char>(cp);
  else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

/// A byte-level tokenizer: ids 0..255 are the bytes, then the merges' results
/// in order, then two special tokens. `pre` is the pre_tokenizer.
json makeTokenizer(
    const std::vector<std::pair<std::string, std::string>> &merges, json pre,
    bool pairForm = true) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b)
    vocab[byteChar(b)] = b;
  json mergeList = json::array();
  int next = 256;
  for (auto &[a, b] : merges) {
    if (!vocab.contains(a + b))
      vocab[a + b] = next++;
    if (pairForm)
      mergeList.push_back({a, b});
    else
      mergeList.push_back(a + " " + b);
  }
  json added = json::array();
  added.push_back({{"id", 1000},
                   {"content", "<|endoftext|>"},
                   {"special", true},
                   {"lstrip", false},
                   {"rstrip", false},
                   {"normalized", false},
                   {"single_word", false}});
  added.push_back({{"id", 1001},
                   {"content", "<|end|>"},
                   {"special", true},
                   {"normalized", false}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"vocab", vocab},
            {"merges", mergeList}}}};
}

json qwen2Pre() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", kQwen2}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"use_regex", false}}}}};
}
json gpt2Pre(bool prefixSpace = false) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", prefixSpace},
          {"use_regex", true}};
}

Tokenizer make(const json &j) {
  return Tokenizer::fromJson(j.dump(), "t.json");
}

const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"h", "e"}, {"l", "l"},   {"he", "ll"},  {"hell", "o"},  {"Ġ", "w"},
    {"o", "r"}, {"Ġw", "or"}, {"Ġwor", "l"}, {"Ġworl", "d"}, {"Ġ", "Ġ"},
    {"1", "2"}, {"'", "M"},   {"'", "s"},    {"Ġ", "b"},     {"l", "d"}};

std::vector<int32_t> ids(const Tokenizer &t,
                         std::initializer_list<const char *> tokens) {
  std::vector<int32_t> out;
  for (const char *s : tokens) {
    int32_t id = t.tokenId(s);
    EXPECT_GE(id, 0) << s;
    out.push_back(id);
  }
  return out;
}

const std::vector<std::string> kRoundTrip = {
    "",
    "hello world",
    "Hello, World! 12345 3.14",
    "I'm you're he's we've they'll I'd DON'T",
    "naïve café façade — “quotes”",
    "你好，世界！日本語 한국어 Привет",
    "😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷",
    "e\u0301 combining a\u0300\u0301",
    "   leading and trailing   ",
    "tabs\t\there\tand\nnewlines\n\n\r\nwindows\r\n",
    std::string(300, ' ') + "x" + std::string(50, '\n'),
    "0123456789 ٣٤٥ ½",
    "hello<|endoftext|>world<|end|> <|endoftext|>",
};

} // namespace

TEST(Tokenizer, MergesApplyWithinPieces) {
  Tokenizer t = make(makeTokenizer(kMerges, qwen2Pre()));
  EXPECT_EQ(t.encode("hello world"), ids(t, {"hello", "Ġworld"}));
  EXPECT_EQ(t.decode(t.encode("hello world")), "hello world");
  EXPECT_EQ(t.tokenSpelling(t.tokenId("Ġworld")), "Ġworld");
  EXPECT_EQ(t.tokenBytes(t.tokenId("Ġworld")), " world");
  // \s+(?!\S): the last space of a run goes with the next word.
  EXPECT_EQ(t.encode("a  b"), ids(t, {"a", "Ġ", "Ġb"}));
  // Qwen2 splits digits one by one; GPT-2 keeps runs of them.
  EXPECT_EQ(t.encode("12"), ids(t, {"1", "2"}));
  Tokenizer g = make(makeTokenizer(kMerges, gpt2Pre()));
  EXPECT_EQ(g.encode("12"), ids(g, {"12"}));
  // Contractions: case-insensitive in Qwen2 only.
  EXPECT_EQ(t.encode("I'M"), ids(t, {"I", "'M"}));
  EXPECT_EQ(g.encode("I'M"), ids(g, {"I", "'", "M"}));
  EXPECT_EQ(g.encode("it's"), ids(g, {"i", "t", "'s"}));
  // add_prefix_space.
  Tokenizer p = make(makeTokenizer(kMerges, gpt2Pre(true)));
  EXPECT_EQ(p.encode("world"), ids(p, {"Ġworld"}));
  EXPECT_EQ(p.decode(p.encode("world")), " world");
}

// Qwen2's tokenizer.json also has an NFC normalizer (taken as the identity)
// and a ByteLevel post-processor (ignored: encode() is add_special_tokens=
// False); Llama-3-style ignore_merges takes whole words from the vocabulary.
TEST(Tokenizer, Qwen2ExtrasAndIgnoreMerges) {
  json j = makeTokenizer(kMerges, qwen2Pre(), /*pairForm=*/false);
  j["normalizer"] = {{"type", "NFC"}};
  j["post_processor"] = {{"type", "ByteLevel"}, {"trim_offsets", false}};
  j["model"]["vocab"]["xyz"] = 2000;
  Tokenizer t = make(j);
  EXPECT_EQ(t.encode("hello world"), ids(t, {"hello", "Ġworld"}));
  EXPECT_EQ(t.encode("xyz"), ids(t, {"x", "y", "z"}));
  j["model"]["ignore_merges"] = true;
  Tokenizer ignore = make(j);
  EXPECT_EQ(ignore.encode("xyz"), (std::vector<int32_t>{2000}));
  EXPECT_EQ(ignore.encode("hello world"), ids(t, {"hello", "Ġworld"}));
}

TEST(Tokenizer, StringAndPairMergesAgree) {
  Tokenizer a = make(makeTokenizer(kMerges, qwen2Pre(), true));
  Tokenizer b = make(makeTokenizer(kMerges, qwen2Pre(), false));
  for (const std::string &s : kRoundTrip)
    EXPECT_EQ(a.encode(s), b.encode(s)) << s;
}

TEST(Tokenizer, RoundTrips) {
  for (json pre : {qwen2Pre(), gpt2Pre()}) {
    Tokenizer t = make(makeTokenizer(kMerges, pre));
    for (const std::string &s : kRoundTrip)
      EXPECT_EQ(t.decode(t.encode(s)), s) << pre.dump() << " " << s;
  }
}

TEST(Tokenizer, SpecialTokens) {
  Tokenizer t = make(makeTokenizer(kMerges, qwen2Pre()));
  std::vector<int32_t> expected = ids(t, {"hello", "<|endoftext|>", "Ġworld"});
  EXPECT_EQ(t.encode("hello<|endoftext|> world"), expected);
  EXPECT_TRUE(t.isSpecial(1000));
  EXPECT_FALSE(t.isSpecial(t.tokenId("hello")));
  EXPECT_EQ(t.decode(expected), "hello<|endoftext|> world");
  EXPECT_EQ(t.decode(expected, /*skipSpecialTokens=*/true), "hello world");
  EXPECT_EQ(t.encode("<|end|><|endoftext|>"),
            (std::vector<int32_t>{1001, 1000}));
  // A partial special token is ordinary text.
  EXPECT_EQ(t.decode(t.encode("<|endoftext")), "<|endoftext");
  EXPECT_EQ(t.vocabSize(), 1002);

  // Leftmost longest, and lstrip / rstrip take the spaces around.
  json j = makeTokenizer(kMerges, qwen2Pre());
  j["added_tokens"].push_back({{"id", 1002},
                               {"content", "<|end|>x"},
                               {"lstrip", true},
                               {"rstrip", true}});
  Tokenizer s = make(j);
  EXPECT_EQ(s.encode("a  <|end|>x  b"),
            (std::vector<int32_t>{s.tokenId("a"), 1002, s.tokenId("b")}));
}

TEST(Tokenizer, StreamingDecodeEmitsWholeCharacters) {
  Tokenizer t = make(makeTokenizer({}, qwen2Pre())); // ids are bytes
  std::string text = "héllo 😀 你好<|endoftext|>!";
  std::vector<int32_t> encoded = t.encode(text);
  Tokenizer::StreamDecoder stream(t);
  std::string joined;
  for (int32_t id : encoded) {
    std::string piece = stream.push(id);
    EXPECT_EQ(t.decode(t.encode(piece)), piece); // valid UTF-8 on its own
    joined += piece;
  }
  joined += stream.finish();
  EXPECT_EQ(joined, text);

  // The emoji appears only with its fourth byte.
  Tokenizer::StreamDecoder emoji(t);
  const std::string smile = "😀";
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(emoji.push(static_cast<unsigned char>(smile[i])), "");
  EXPECT_EQ(emoji.push(static_cast<unsigned char>(smile[3])), smile);

  // Invalid bytes become U+FFFD as in decode(); an unfinished tail at the end
  // becomes one U+FFFD.
  std::vector<int32_t> bad = {0xFF, 'a', 0xE4, 0xBD};
  EXPECT_EQ(t.decode(bad), "\uFFFDa\uFFFD");
  Tokenizer::StreamDecoder s(t);
  std::string out;
  for (int32_t id : bad)
    out += s.push(id);
  EXPECT_EQ(out, "\uFFFDa");
  EXPECT_EQ(s.finish(), "\uFFFD");

  // Skipping special tokens.
  Tokenizer::StreamDecoder skip(t, /*skipSpecialTokens=*/true);
  EXPECT_EQ(skip.push(1000), "");
  EXPECT_EQ(skip.push('x'), "x");
}

TEST(Tokenizer, Utf8LossyMatchesRust) {
  EXPECT_EQ(utf8Lossy("\xF0\x9F\x98"), "\uFFFD");
  EXPECT_EQ(utf8Lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD"); // surrogate
  EXPECT_EQ(utf8Lossy("\xC0\xAF"), "\uFFFD\uFFFD");           // overlong
  EXPECT_EQ(utf8Lossy("a\xF0\x9F\x98z"), "a\uFFFDz");
  size_t tail = 0;
  EXPECT_EQ(utf8Lossy("ab\xE4\xBD", &tail), "ab");
  EXPECT_EQ(tail, 2u);
}

namespace {
void expectError(const std::function<void()> &body,
                 std::initializer_list<const char *> parts) {
  try {
    body();
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    for (const char *p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "'" << e.what() << "' lacks '" << p << "'";
  }
}
void expectLoadError(const json &j, std::initializer_list<const char *> parts) {
  expectError([&] { make(j); }, parts);
}
} // namespace

TEST(Tokenizer, Errors) {
  fs::path dir = fs::temp_directory_path() / "tilec-tokenizer-test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  expectError([&] { Tokenizer::load((dir / "missing.json").string()); },
              {"missing.json", "no such file"});
  expectError([&] { Tokenizer::load(dir.string()); },
              {"tokenizer.json", "no such file"});
  std::ofstream(dir / "tokenizer.json") << "{\"model\": [1, 2";
  expectError([&] { Tokenizer::load(dir.string()); },
              {"tokenizer.json", "not valid JSON"});
  std::ofstream(dir / "tokenizer.json") << makeTokenizer(kMerges, qwen2Pre());
  EXPECT_EQ(Tokenizer::load(dir.string()).encode("hello").size(), 1u);
  fs::remove_all(dir);

  json good = makeTokenizer(kMerges, qwen2Pre());
  expectLoadError(json::array(), {"t.json", "expected a JSON object"});
  json j = good;
  j.erase("model");
  expectLoadError(j, {"t.json", "no field \"model\""});
  j = good;
  j["model"]["type"] = "WordPiece";
  expectLoadError(j, {"t.json", "model type \"WordPiece\""});
  j = good;
  j["model"]["vocab"] = json::array();
  expectLoadError(j, {"\"vocab\" is array"});
  j = good;
  j["model"]["vocab"]["zz"] = "x";
  expectLoadError(j, {"vocab entry 'zz'"});
  j = good;
  j["model"]["merges"].push_back({"h", "nosuchtoken"});
  expectLoadError(j,
                  {"t.json", "'nosuchtoken', which is not in the vocabulary"});
  j = good;
  j["model"]["merges"].push_back({"q", "q"}); // "qq" is not in the vocab
  expectLoadError(j, {"'qq', which is not in the vocabulary"});
  j = good;
  j["model"]["merges"].push_back("nospace");
  expectLoadError(j, {"'nospace' is not two tokens"});
  j = good;
  j["model"]["merges"].push_back(42);
  expectLoadError(j, {"expected \"a b\""});
  j = good;
  j["model"]["dropout"] = 0.1;
  expectLoadError(j, {"\"dropout\""});
  j = good;
  j["model"]["byte_fallback"] = true;
  expectLoadError(j, {"byte_fallback"});
  j = good;
  j["model"]["unk_token"] = "<unk>";
  expectLoadError(j, {"unk_token '<unk>'"});
  j = good;
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  expectLoadError(j, {"t.json", "Split pattern '\\w+' is not supported"});
  j = good;
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", " "}};
  expectLoadError(j, {"Split pattern {\"String\":\" \"}"});
  j = good;
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  expectLoadError(j, {"behavior \"Removed\""});
  j = good;
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expectLoadError(j, {"pre-tokenizer \"Whitespace\""});
  j = good;
  j["pre_tokenizer"] = nullptr;
  expectLoadError(j, {"pre_tokenizer is null"});
  j = good;
  j["pre_tokenizer"]["pretokenizers"].erase(1);
  expectLoadError(j, {"does not end with ByteLevel"});
  j = good;
  j["normalizer"] = {{"type", "Lowercase"}};
  expectLoadError(j, {"normalizer \"Lowercase\""});
  j = good;
  j["decoder"] = {{"type", "WordPiece"}};
  expectLoadError(j, {"decoder \"WordPiece\""});
  j = good;
  j["added_tokens"][0]["single_word"] = true;
  expectLoadError(j, {"single_word"});
  j = good;
  j["added_tokens"][0]["id"] = -3;
  expectLoadError(j, {"id -3"});

  Tokenizer t = make(good);
  expectError([&] { t.decode({5000}); }, {"t.json", "token id 5000"});
  expectError([&] { t.decode({-1}); }, {"token id -1"});
  expectError([&] { t.encode("bad \xFF utf8"); }, {"not valid UTF-8"});
}

namespace {
fs::path fixtureDir() {
  const char *src = std::getenv("TILEC_SOURCE_DIR");
  return fs::path(src ? src : "../..") / "tests" / "fixtures" / "tokenizer";
}
} // namespace

namespace {
/// Requires the ids of every string of DIR/expected.jsonl, and with
/// `roundTrip` decode(ids) == text.
void checkOracle(const fs::path &dir, bool roundTrip, int minCases) {
  Tokenizer t = Tokenizer::load((dir / "tokenizer.json").string());
  std::ifstream in(dir / "expected.jsonl");
  ASSERT_TRUE(in) << dir;
  std::string line;
  int cases = 0, mismatches = 0;
  while (std::getline(in, line)) {
    json c = json::parse(line);
    std::string text = c["text"];
    std::vector<int32_t> expected = c["ids"];
    std::vector<int32_t> got = t.encode(text);
    ++cases;
    if (got != expected && ++mismatches <= 10)
      ADD_FAILURE() << "ids differ for " << json(text).dump() << ": got "
                    << json(got).dump() << ", expected "
                    << json(expected).dump();
    if (roundTrip) {
      EXPECT_EQ(t.decode(expected), text) << json(text).dump();
    }
  }
  EXPECT_GE(cases, minCases);
  EXPECT_EQ(mismatches, 0) << "of " << cases;
}
} // namespace

// tests/oracle/tokenizer_oracle.py: identical ids to the Python tokenizers
// library for every string, and exact round trips. Qwen2 style (Split with
// the Qwen2 regex, then ByteLevel).
TEST(Tokenizer, OracleFixture) { checkOracle(fixtureDir(), true, 3000); }

// GPT-2 style (ByteLevel with its own regex and add_prefix_space, so decode
// gives a leading space and only the ids are compared).
TEST(Tokenizer, OracleFixtureGpt2) {
  checkOracle(fixtureDir() / "gpt2", false, 1000);
}

TEST(Tokenizer, Bytes256Fixture) {
  Tokenizer t = Tokenizer::load((fixtureDir() / "bytes256").string());
  EXPECT_EQ(t.vocabSize(), 256);
  for (const std::string &s : kRoundTrip) {
    std::vector<int32_t> encoded = t.encode(s);
    EXPECT_EQ(t.decode(encoded), s);
  }
}
