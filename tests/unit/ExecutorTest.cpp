//===- ExecutorTest.cpp - The greedy decode loop shared by the executors --===//
#include "runtime/engine/Executor.h"
#include "models/core/Error.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

using namespace tilec;

namespace {

/// An executor whose "model" predicts token (last token + position + 1) mod
/// V and records every step it was given.
class RecordingExecutor : public Executor {
public:
  RecordingExecutor(int64_t T, int64_t capacity) {
    m_.tokens = T;
    KVCacheInfo full;
    full.name = "layer0";
    full.capacity = capacity;
    m_.caches.push_back(full);
    KVCacheInfo ring = full;
    ring.window = 4;
    ring.capacity = 5; // rings never limit the context
    m_.caches.push_back(ring);
  }
  std::string name() const override { return "recording"; }
  const EngineManifest &manifest() const override { return m_; }
  StepOutput step(const std::vector<int32_t> &tokens,
                  const std::vector<int32_t> &positions, bool) override {
    steps.push_back({tokens, positions});
    StepOutput out;
    for (size_t i = 0; i < tokens.size(); ++i)
      out.argmax.push_back((tokens[i] + positions[i] + 1) % 1000);
    return out;
  }
  void reset() override { ++resets; }
  void writeBuffer(const std::string &name, const void *, int64_t) override {
    fail("recording executor: no buffer '{}'", name);
  }
  void readBuffer(const std::string &name, void *, int64_t) override {
    fail("recording executor: no buffer '{}'", name);
  }
  void launch(const std::string &, void *, int64_t) override {
    fail("recording executor: not a DFlash engine");
  }

  struct Step {
    std::vector<int32_t> tokens, positions;
  };
  std::vector<Step> steps;
  int resets = 0;

private:
  EngineManifest m_;
};

TEST(GenerateGreedy, PrefillsInChunksAndPadsTheLast) {
  RecordingExecutor ex(4, 64);
  std::vector<int32_t> out = generateGreedy(ex, {10, 11, 12, 13, 14, 15}, 3);
  ASSERT_EQ(ex.steps.size(), 2u + 2u); // two prefill chunks, two decode steps
  EXPECT_EQ(ex.resets, 1);
  EXPECT_EQ(ex.steps[0].tokens, (std::vector<int32_t>{10, 11, 12, 13}));
  EXPECT_EQ(ex.steps[0].positions, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(ex.steps[1].tokens, (std::vector<int32_t>{14, 15, 0, 0}));
  EXPECT_EQ(ex.steps[1].positions, (std::vector<int32_t>{4, 5, 6, 7}));
  // The first new token comes from the last real prompt token (15 at 5).
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], 15 + 5 + 1);
  EXPECT_EQ(ex.steps[2].tokens, (std::vector<int32_t>{out[0], 0, 0, 0}));
  EXPECT_EQ(ex.steps[2].positions, (std::vector<int32_t>{6, 7, 8, 9}));
  EXPECT_EQ(out[1], out[0] + 6 + 1);
  EXPECT_EQ(ex.steps[3].positions[0], 7);
  EXPECT_EQ(out[2], out[1] + 7 + 1);
}

TEST(GenerateGreedy, OneTokenPerStepEngine) {
  RecordingExecutor ex(1, 64);
  GenerateStats stats;
  std::vector<int32_t> out = generateGreedy(ex, {1, 2, 3}, 4, &stats);
  EXPECT_EQ(out.size(), 4u);
  EXPECT_EQ(stats.prefillSteps, 3);
  EXPECT_EQ(stats.decodeSteps, 3);
  EXPECT_EQ(ex.steps.size(), 6u);
}

TEST(GenerateGreedy, OnTokenSeesEveryTokenInOrder) {
  RecordingExecutor ex(4, 64);
  std::vector<int32_t> seen;
  std::vector<size_t> stepsAtCall;
  std::vector<int32_t> out =
      generateGreedy(ex, {10, 11, 12, 13, 14, 15}, 3, nullptr, [&](int32_t t) {
        seen.push_back(t);
        stepsAtCall.push_back(ex.steps.size());
      });
  EXPECT_EQ(seen, out);
  // Each token is reported as soon as its step is done.
  EXPECT_EQ(stepsAtCall, (std::vector<size_t>{2, 3, 4}));
}

TEST(GenerateGreedy, ChecksTheContextIncludingPadding) {
  // Prompt 6 + 3 new with T = 4: the last decode step writes up to 7 + 3 = 10.
  RecordingExecutor fits(4, 11);
  EXPECT_NO_THROW(generateGreedy(fits, {1, 2, 3, 4, 5, 6}, 3));
  RecordingExecutor tooSmall(4, 10);
  try {
    generateGreedy(tooSmall, {1, 2, 3, 4, 5, 6}, 3);
    FAIL() << "expected an error";
  } catch (const Error &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("holds 10"), std::string::npos) << m;
    EXPECT_NE(m.find("up to 10"), std::string::npos) << m;
  }
  EXPECT_TRUE(tooSmall.steps.empty()) << "checked before any step";
}

TEST(GenerateGreedy, RejectsAnEmptyPrompt) {
  RecordingExecutor ex(4, 64);
  EXPECT_THROW(generateGreedy(ex, {}, 3), Error);
  EXPECT_TRUE(generateGreedy(ex, {1}, 0).empty());
}

TEST(GenerateGreedy, MaxContextIgnoresRings) {
  RecordingExecutor ex(4, 64);
  EXPECT_EQ(maxContext(ex.manifest()), 64);
}

/// A DFlash engine in miniature, with docs/engine.md's SPEC_ACCEPT and
/// SPEC_UPDATE semantics: the "target" predicts (token + position + 1) mod
/// 1000 (RecordingExecutor's rule, so plain greedy is known), the "drafter"
/// guesses the first `correct` tokens of a block right and the rest wrong.
class ToyDflash : public Executor {
public:
  ToyDflash(int64_t T, int correct) : correct(correct) {
    m_.tokens = T;
    m_.function = "dflash_step";
    m_.spec = {"spec.tokens", "spec.positions", "spec.forced", "out", "", ""};
    KVCacheInfo full;
    full.capacity = 4096;
    m_.caches.push_back(full);
    state["spec.tokens"].assign(size_t(T), 0);
    state["spec.positions"].assign(size_t(T), 0);
    state["spec.forced"].assign(1, 0);
    state["out"].assign(size_t(T + 1), 0);
  }
  std::string name() const override { return "toy"; }
  const EngineManifest &manifest() const override { return m_; }
  StepOutput step(const std::vector<int32_t> &, const std::vector<int32_t> &,
                  bool) override {
    fail("toy: a DFlash engine has no plain step");
  }
  void writeBuffer(const std::string &name, const void *data,
                   int64_t bytes) override {
    std::vector<int32_t> &b = state.at(name);
    ASSERT_LE(bytes, int64_t(4 * b.size()));
    std::memcpy(b.data(), data, size_t(bytes));
    ++writes[name];
  }
  void readBuffer(const std::string &name, void *data, int64_t bytes) override {
    std::memcpy(data, state.at(name).data(), size_t(bytes));
  }
  static int32_t rule(int32_t t, int32_t p) { return (t + p + 1) % 1000; }
  void launch(const std::string &readBack, void *dst, int64_t bytes) override {
    int64_t T = m_.tokens;
    std::vector<int32_t> &block = state["spec.tokens"],
                         &pos = state["spec.positions"];
    int32_t forced = state["spec.forced"][0];
    blocks.push_back(block);
    std::vector<int32_t> pred(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i)
      pred[size_t(i)] = rule(block[size_t(i)], pos[size_t(i)]);
    int64_t a = 0;
    if (forced > 0)
      a = forced - 1;
    else
      while (a + 1 < T && block[size_t(a + 1)] == pred[size_t(a)])
        ++a;
    std::vector<int32_t> &out = state["out"];
    std::fill(out.begin(), out.end(), -1);
    out[0] = int32_t(a + 1);
    for (int64_t j = 1; j <= a; ++j)
      out[size_t(j)] = block[size_t(j)];
    out[size_t(a + 1)] = pred[size_t(a)];
    // The next block: the bonus, then the drafter's guesses.
    int32_t p0 = pos[0] + int32_t(a) + 1, t = pred[size_t(a)];
    block[0] = t;
    for (int64_t i = 0; i < T; ++i) {
      pos[size_t(i)] = p0 + int32_t(i);
      if (i > 0) {
        t = rule(t, p0 + int32_t(i) - 1);
        block[size_t(i)] = i <= correct ? t : t + 7;
      }
    }
    if (!readBack.empty())
      readBuffer(readBack, dst, bytes);
  }

  int correct;
  std::map<std::string, std::vector<int32_t>> state;
  std::map<std::string, int> writes;
  std::vector<std::vector<int32_t>> blocks;

private:
  EngineManifest m_;
};

std::vector<int32_t> greedyOfRule(const std::vector<int32_t> &prompt,
                                  int64_t count) {
  std::vector<int32_t> out;
  int32_t t = ToyDflash::rule(prompt.back(), int32_t(prompt.size()) - 1);
  for (int64_t i = 0; i < count; ++i) {
    out.push_back(t);
    t = ToyDflash::rule(t, int32_t(prompt.size() + size_t(i)));
  }
  return out;
}

TEST(GenerateDflash, LosslessAndAcceptsWhatTheDrafterGotRight) {
  std::vector<int32_t> prompt{10, 11, 12, 13, 14, 15};
  for (int correct : {0, 2, 3}) {
    SCOPED_TRACE(correct);
    ToyDflash ex(4, correct);
    DflashStats stats;
    std::vector<int32_t> out = generateDflash(ex, prompt, 20, {}, &stats);
    EXPECT_EQ(out, greedyOfRule(prompt, 20));
    EXPECT_EQ(stats.prefillSteps, 2);
    // Every full step commits the right guesses and the bonus.
    for (size_t i = 0; i + 1 < stats.accepted.size(); ++i)
      EXPECT_EQ(stats.accepted[i], correct + 1) << i;
    // The first token and each step's commits, in full: the whole sequence
    // (what checkDrafts replays).
    EXPECT_EQ(stats.first, out[0]);
    ASSERT_EQ(stats.committed.size(), stats.accepted.size());
    std::vector<int32_t> all{stats.first};
    for (size_t i = 0; i < stats.committed.size(); ++i) {
      EXPECT_EQ(int64_t(stats.committed[i].size()), stats.accepted[i]) << i;
      all.insert(all.end(), stats.committed[i].begin(),
                 stats.committed[i].end());
    }
    ASSERT_GE(all.size(), out.size());
    EXPECT_EQ(std::vector<int32_t>(all.begin(), all.begin() + 20), out);
    EXPECT_EQ(all, greedyOfRule(prompt, int64_t(all.size())));
    // The prefill chunks: [10..13] at 0, [14, 15, pad, pad] at 4.
    EXPECT_EQ(ex.blocks[0], (std::vector<int32_t>{10, 11, 12, 13}));
    EXPECT_EQ(ex.blocks[1], (std::vector<int32_t>{14, 15, 0, 0}));
    EXPECT_EQ(ex.state["spec.forced"][0], 0);
    // Decode steps write nothing: the device keeps the block.
    EXPECT_EQ(ex.writes["spec.tokens"], 2);
  }
}

TEST(GenerateDflash, OracleDraftsAreAcceptedWhole) {
  std::vector<int32_t> prompt{3, 1, 4};
  ToyDflash ex(5, 0); // a drafter that is always wrong
  std::vector<int32_t> oracle = greedyOfRule(prompt, 40);
  DflashOptions options;
  options.oracle = &oracle;
  DflashStats stats;
  std::vector<int32_t> out = generateDflash(ex, prompt, 31, options, &stats);
  EXPECT_EQ(out, std::vector<int32_t>(oracle.begin(), oracle.begin() + 31));
  EXPECT_EQ(stats.accepted, std::vector<int64_t>(6, 5));
  EXPECT_DOUBLE_EQ(stats.meanAccepted(), 5.0);
  EXPECT_EQ(stats.histogram(5), (std::vector<int64_t>{0, 0, 0, 0, 0, 6}));
}

TEST(GenerateDflash, OnTokenSeesTheCommittedTokensUpToCount) {
  std::vector<int32_t> prompt{3, 1, 4};
  ToyDflash ex(5, 0);
  std::vector<int32_t> oracle = greedyOfRule(prompt, 40);
  DflashOptions options;
  options.oracle = &oracle; // whole blocks of 5: 1 + 5 + 5 + 5 > 13
  std::vector<int32_t> seen;
  options.onToken = [&](int32_t t) { seen.push_back(t); };
  std::vector<int32_t> out = generateDflash(ex, prompt, 13, options);
  EXPECT_EQ(out.size(), 13u);
  EXPECT_EQ(seen, out);
}

TEST(GenerateDflash, RefusesPlainEnginesAndShortOracles) {
  RecordingExecutor plain(4, 64);
  EXPECT_THROW(generateDflash(plain, {1, 2}, 3), Error);
  ToyDflash ex(4, 0);
  std::vector<int32_t> oracle(5, 0);
  DflashOptions options;
  options.oracle = &oracle;
  try {
    generateDflash(ex, {1, 2}, 8, options);
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("oracle continuation has 5 tokens"),
              std::string::npos)
        << e.what();
  }
}

} // namespace
