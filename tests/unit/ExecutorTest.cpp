//===- ExecutorTest.cpp - The greedy decode loop shared by the executors --===//
#include "runtime/engine/Executor.h"
#include "models/core/Error.h"

#include <gtest/gtest.h>

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

} // namespace
