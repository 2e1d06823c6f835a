//===- Tokenizer.h - Byte-level BPE tokenizer from a tokenizer.json -------===//
//
// Loads a HuggingFace `tokenizer.json` whose model is a byte-level BPE (GPT-2,
// Qwen2, MiMo) and encodes text to ids and ids back to text, with the ids the
// Python `tokenizers` library gives (tests/oracle/tokenizer_oracle.py checks
// several thousand strings). Supported components, anything else is an error
// naming the file and the component:
//
//  - model: "BPE", vocab, merges as "a b" strings or [a, b] pairs, optional
//    unk_token and ignore_merges (no dropout, no subword prefix/suffix, no
//    byte fallback);
//  - pre_tokenizer: ByteLevel (add_prefix_space, use_regex with the GPT-2
//    pattern), or a Sequence of Split(Regex, Isolated) with the GPT-2 or the
//    Qwen2 pattern followed by ByteLevel. The two patterns are matched by hand
//    (Tokenizer.cpp), with \p{L} and \p{N} from TokenizerUnicode.inc;
//  - added_tokens: matched whole (leftmost longest) before pre-tokenization,
//    lstrip/rstrip honoured (ASCII whitespace), single_word unsupported;
//  - normalizer: none, or NFC, which is treated as the identity (the input is
//    assumed to be NFC already, as nearly all text is);
//  - decoder: ByteLevel. The post_processor is ignored: encode() gives what
//    `tokenizers` gives with add_special_tokens=False.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tilec {

class Tokenizer {
public:
  /// Reads `path`: a tokenizer.json, or a directory holding one. Throws
  /// tilec::Error naming the file on any problem.
  static Tokenizer load(const std::string &path);
  /// Parses tokenizer.json text; `where` names it in errors.
  static Tokenizer fromJson(std::string_view text, const std::string &where);

  Tokenizer(Tokenizer &&) noexcept;
  Tokenizer &operator=(Tokenizer &&) noexcept;
  ~Tokenizer();

  /// Ids of `text` (which must be valid UTF-8).
  std::vector<int32_t> encode(std::string_view text) const;
  /// Text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD as
  /// in `tokenizers` (String::from_utf8_lossy). Ids outside the vocabulary
  /// are an error.
  std::string decode(const std::vector<int32_t> &ids,
                     bool skipSpecialTokens = false) const;
  /// The bytes one id stands for.
  const std::string &tokenBytes(int32_t id) const;
  /// The spelling of one id in tokenizer.json ("Ġworld" for " world").
  const std::string &tokenSpelling(int32_t id) const;
  /// One more than the largest id (vocab and added tokens).
  int32_t vocabSize() const;
  /// The id of a vocabulary or added token spelled as in tokenizer.json, or -1.
  int32_t tokenId(std::string_view token) const;
  bool isSpecial(int32_t id) const;
  /// What errors name (the file).
  const std::string &where() const;

  /// Decodes ids one at a time for streaming: push() returns the text that is
  /// complete so far (never a partial UTF-8 sequence), finish() the rest. The
  /// concatenation of everything returned equals decode() of all ids.
  class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer &tokenizer,
                           bool skipSpecialTokens = false);
    std::string push(int32_t id);
    std::string finish();

  private:
    const Tokenizer *tokenizer_;
    bool skipSpecial_;
    std::string pending_;
  };

  struct Impl;

private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Converts bytes to text as Rust's String::from_utf8_lossy does: each
/// maximal invalid subpart becomes U+FFFD. With `partialTail`, an incomplete
/// but so-far-valid sequence at the end is left out and its length stored
/// there (for streaming); without, it becomes U+FFFD.
std::string utf8Lossy(std::string_view bytes, size_t *partialTail = nullptr);

} // namespace tilec
