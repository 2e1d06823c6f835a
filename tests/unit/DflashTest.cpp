//===- DflashTest.cpp - The DFlash reference: drafter and speculative loop
//-===//
//
// The drafter against z-lab/dflash (tests/fixtures/dflash, made by
// tests/oracle/dflash_oracle.py): the same blocks verified step by step and the
// same draft logits. Then the loop's own properties on the presets: greedy
// DFlash equals plain greedy decoding of the target for every block size, the
// oracle-draft mode accepts whole blocks, the caches stay consistent over
// 1000+ steps past both sliding windows, and the autoregressive drafter mode
// (one slot per drafter pass) is lossless and records its passes' drafts.
//
//===----------------------------------------------------------------------===//
#include "models/core/Dflash.h"
#include "models/core/CheckpointWeights.h"
#include "models/core/Error.h"
#include "models/core/Safetensors.h"
#include "models/core/Synthetic.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace tilec;
namespace fs = std::filesystem;

namespace {

std::vector<int32_t> promptFor(const Model &model, int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i)
    p.push_back(
        int32_t((i * 53 + salt * 17 + 5) % (model.target.vocabSize - 1)));
  return p;
}

class ZlabOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(ZlabOracle, SameBlocksAndDraftLogits) {
  const char *src = std::getenv("TILEC_SOURCE_DIR");
  fs::path dir =
      fs::path(src ? src : ".") / "tests" / "fixtures" / "dflash" / GetParam();
  nlohmann::json meta =
      nlohmann::json::parse(std::ifstream(dir / "expected.json"));
  std::vector<int32_t> prompt = meta["prompt"].get<std::vector<int32_t>>();
  std::vector<int32_t> tokens = meta["tokens"].get<std::vector<int32_t>>();
  auto blocks =
      meta["verified_blocks"].get<std::vector<std::vector<int32_t>>>();
  auto accepted = meta["accepted"].get<std::vector<int64_t>>();
  int64_t B = meta["block_size"].get<int64_t>();

  Model model = loadModel(dir.string());
  ASSERT_TRUE(model.drafter);
  EXPECT_EQ(model.drafter->blockSize, B);
  CheckpointWeights weights(dir.string(), model.drafterDir);
  DflashReference dflash(model, weights);
  // The reference loop stops once it has committed `new` tokens, not counting
  // the bonus token: one more than ours.
  DflashReference::Stats stats;
  std::vector<int32_t> out =
      dflash.generate(prompt, int64_t(tokens.size()) + 1, 0, &stats);
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.end() - 1), tokens);
  EXPECT_EQ(stats.blocks, blocks);
  EXPECT_EQ(stats.accepted, accepted);

  SafetensorsFile expected =
      SafetensorsFile::open((dir / "expected.safetensors").string());
  TensorInfo logits = expected.tensor("draft_logits");
  ASSERT_EQ(int64_t(stats.draftLogits.size()), logits.shape[0]);
  const float *want = reinterpret_cast<const float *>(logits.data);
  double diff = 0, norm = 0;
  for (const ref::Tensor &step : stats.draftLogits)
    for (float got : step.data) {
      diff += double(got - *want) * double(got - *want);
      norm += double(*want) * double(*want);
      ++want;
    }
  EXPECT_LT(std::sqrt(diff / norm), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ZlabOracle,
                         ::testing::Values("block4", "block8"));

/// Greedy DFlash is lossless: the tokens of plain greedy decoding, for block
/// sizes 1 to 8 on every CPU-sized preset (its drafter accepts little, which
/// exercises rejection at every slot).
TEST(DflashReference, GreedyIsLossless) {
  for (const char *name : {"tiny", "tiny-groups", "tiny-window", "tiny-pro"}) {
    Model model = loadModel(name);
    SyntheticWeights weights(model, 3);
    std::vector<int32_t> prompt = promptFor(model, 7, 1);
    ReferenceModel target(model.target, weights);
    std::vector<int32_t> greedy = target.generateGreedy(prompt, 24);
    DflashReference dflash(model, weights);
    for (int64_t B : {1, 2, 4, 8}) {
      SCOPED_TRACE(std::string(name) + " B=" + std::to_string(B));
      DflashReference::Stats stats;
      EXPECT_EQ(dflash.generate(prompt, 24, B, &stats), greedy);
      for (int64_t a : stats.accepted) {
        EXPECT_GE(a, 1);
        EXPECT_LE(a, B);
      }
    }
  }
}

/// Drafts taken from the greedy continuation are accepted whole: accepted
/// length B at every step, and still the greedy tokens.
TEST(DflashReference, OracleDraftsAreAcceptedWhole) {
  for (const char *name : {"tiny", "tiny-window"}) {
    Model model = loadModel(name);
    SyntheticWeights weights(model, 4);
    std::vector<int32_t> prompt = promptFor(model, 5, 2);
    ReferenceModel target(model.target, weights);
    std::vector<int32_t> greedy = target.generateGreedy(prompt, 48);
    DflashReference dflash(model, weights);
    for (int64_t B : {2, 5, 8}) {
      SCOPED_TRACE(std::string(name) + " B=" + std::to_string(B));
      DflashReference::Stats stats;
      EXPECT_EQ(dflash.generate(prompt, 40, B, &stats, &greedy),
                std::vector<int32_t>(greedy.begin(), greedy.begin() + 40));
      for (int64_t a : stats.accepted)
        EXPECT_EQ(a, B);
      EXPECT_DOUBLE_EQ(stats.meanAccepted(), double(B));
    }
  }
}

/// 1000+ verify steps, far past the target's window (8) and the drafter's (16):
/// still lossless, and the drafter's incrementally built context cache gives
/// the same draft as one rebuilt from the whole committed sequence at once.
TEST(DflashReference, CachesStayConsistentOverLongRuns) {
  Model model = loadModel("tiny");
  SyntheticWeights weights(model, 5);
  std::vector<int32_t> prompt = promptFor(model, 3, 3);
  const int64_t steps = 1100, B = 4;
  ReferenceModel target(model.target, weights);
  std::vector<int32_t> greedy = target.generateGreedy(prompt, steps * B + B);

  DflashReference dflash(model, weights);
  DflashReference::Stats stats;
  std::vector<int32_t> out =
      dflash.generate(prompt, steps * B, B, &stats, &greedy);
  EXPECT_EQ(out,
            std::vector<int32_t>(greedy.begin(), greedy.begin() + steps * B));
  EXPECT_EQ(int64_t(stats.accepted.size()), steps);

  // The last step's draft again, from a drafter fed the whole context at once.
  std::vector<int32_t> sequence = prompt;
  sequence.insert(sequence.end(), out.begin(), out.end() - B);
  ReferenceModel fresh(model.target, weights);
  ReferenceModel::Output all = fresh.forward(sequence, /*keepHidden=*/true);
  const DrafterConfig &d = *model.drafter;
  int64_t H = model.target.hiddenSize, n = int64_t(d.targetLayerIds.size());
  ref::Tensor taps({int64_t(sequence.size()), n * H});
  for (int64_t r = 0; r < taps.dim(0); ++r)
    for (int64_t k = 0; k < n; ++k) {
      int64_t id = d.targetLayerIds[size_t(k)];
      const ref::Tensor &h = id == model.target.numLayers - 1
                                 ? all.normed
                                 : all.hidden[size_t(id)];
      std::copy_n(h.row(r), H, taps.row(r) + k * H);
    }
  ReferenceDrafter drafter(d, model.target, weights);
  drafter.appendContext(taps);
  ref::Tensor again =
      drafter.draft(out[out.size() - size_t(B)], int64_t(sequence.size()), B);
  const ref::Tensor &last = stats.draftLogits.back();
  ASSERT_EQ(again.data.size(), last.data.size() + size_t(again.dim(1)));
  for (size_t i = 0; i < last.data.size(); ++i)
    ASSERT_NEAR(last.data[i], again.data[size_t(again.dim(1)) + i], 1e-4) << i;
}

/// The context features of `sequence` (what DflashReference appends after a
/// prefill of it): the target's hidden states after the tapped layers.
ref::Tensor tapsOf(const Model &model, WeightSource &weights,
                   const std::vector<int32_t> &sequence) {
  ReferenceModel target(model.target, weights);
  ReferenceModel::Output all = target.forward(sequence, /*keepHidden=*/true);
  const DrafterConfig &d = *model.drafter;
  int64_t H = model.target.hiddenSize, n = int64_t(d.targetLayerIds.size());
  ref::Tensor taps({int64_t(sequence.size()), n * H});
  for (int64_t r = 0; r < taps.dim(0); ++r)
    for (int64_t k = 0; k < n; ++k) {
      int64_t id = d.targetLayerIds[size_t(k)];
      const ref::Tensor &h = id == model.target.numLayers - 1
                                 ? all.normed
                                 : all.hidden[size_t(id)];
      std::copy_n(h.row(r), H, taps.row(r) + k * H);
    }
  return taps;
}

/// The autoregressive drafter (tilec --ar-drafter's reference): pass k runs
/// the drafter over [t, d_1 .. d_(k-1), MASK...] and takes its argmax at slot
/// k. Its first pass is the block drafter's pass (same slot 1); the last
/// pass's logits are what it returns; the context is left as it was.
TEST(DflashReference, AutoregressiveDraftFillsOneSlotPerPass) {
  for (const char *name : {"tiny", "tiny-window", "tiny-pro"}) {
    SCOPED_TRACE(name);
    Model model = loadModel(name);
    SyntheticWeights weights(model, 6);
    std::vector<int32_t> prompt = promptFor(model, 9, 5);
    ReferenceDrafter drafter(*model.drafter, model.target, weights);
    drafter.appendContext(tapsOf(model, weights, prompt));
    const int64_t start = int64_t(prompt.size());
    const int32_t last = 17, mask = int32_t(model.drafter->maskTokenId);
    for (int64_t B : {2, 4, 8}) {
      SCOPED_TRACE(B);
      ref::Tensor lastPass;
      std::vector<int32_t> block =
          drafter.draftAutoregressive(last, start, B, &lastPass);
      ASSERT_EQ(int64_t(block.size()), B);
      EXPECT_EQ(block[0], last);
      EXPECT_EQ(block[1], ref::argmax(drafter.draft(last, start, B))[1]);
      for (int64_t k = 1; k < B; ++k) {
        std::vector<int32_t> input(block.begin(), block.begin() + k);
        input.resize(size_t(B), mask);
        ref::Tensor logits = drafter.draft(input, start);
        EXPECT_EQ(ref::argmax(logits)[size_t(k)], block[size_t(k)]) << k;
        if (k == B - 1) {
          EXPECT_EQ(logits.data, lastPass.data);
        }
      }
      EXPECT_EQ(drafter.contextLength(), start);
    }
  }
}

/// DFlash with the autoregressive drafter is lossless too (block sizes 2 to
/// 8), oracle drafts are still accepted whole, and the drafts and draft
/// logits it records are its passes' (the first step's block: the context of
/// the prompt).
TEST(DflashReference, AutoregressiveIsLosslessAndRecordsItsDrafts) {
  for (const char *name : {"tiny", "tiny-groups", "tiny-window", "tiny-pro"}) {
    Model model = loadModel(name);
    SyntheticWeights weights(model, 7);
    std::vector<int32_t> prompt = promptFor(model, 6, 6);
    ReferenceModel target(model.target, weights);
    std::vector<int32_t> greedy = target.generateGreedy(prompt, 48);
    DflashReference ar(model, weights, /*roundActivations=*/false,
                       /*autoregressive=*/true);
    ReferenceDrafter drafter(*model.drafter, model.target, weights);
    drafter.appendContext(tapsOf(model, weights, prompt));
    for (int64_t B : {2, 4, 8}) {
      SCOPED_TRACE(std::string(name) + " B=" + std::to_string(B));
      DflashReference::Stats stats;
      EXPECT_EQ(ar.generate(prompt, 24, B, &stats),
                std::vector<int32_t>(greedy.begin(), greedy.begin() + 24));
      ASSERT_FALSE(stats.drafts.empty());
      ASSERT_EQ(stats.drafts.size(), stats.draftLogits.size());
      for (int64_t a : stats.accepted) {
        EXPECT_GE(a, 1);
        EXPECT_LE(a, B);
      }
      ref::Tensor lastPass;
      std::vector<int32_t> first = drafter.draftAutoregressive(
          greedy[0], int64_t(prompt.size()), B, &lastPass);
      EXPECT_EQ(stats.drafts[0],
                std::vector<int32_t>(first.begin() + 1, first.end()));
      const ref::Tensor &kept = stats.draftLogits[0];
      ASSERT_EQ(kept.dim(0), B - 1);
      EXPECT_EQ(std::vector<float>(lastPass.data.begin() + kept.dim(1),
                                   lastPass.data.end()),
                kept.data);

      DflashReference::Stats oracle;
      EXPECT_EQ(ar.generate(prompt, 40, B, &oracle, &greedy),
                std::vector<int32_t>(greedy.begin(), greedy.begin() + 40));
      for (int64_t a : oracle.accepted)
        EXPECT_EQ(a, B);
    }
  }
}

/// draftAutoregressive following a given block (an engine's): pass k sees
/// [t, f_1 .. f_(k-1), MASK...] whatever its own earlier slots were, and
/// `chosen` keeps each pass's logits at its slot.
TEST(DflashReference, AutoregressiveDraftFollowsAGivenBlock) {
  for (const char *name : {"tiny", "tiny-pro"}) {
    SCOPED_TRACE(name);
    Model model = loadModel(name);
    SyntheticWeights weights(model, 6);
    std::vector<int32_t> prompt = promptFor(model, 9, 5);
    ReferenceDrafter drafter(*model.drafter, model.target, weights);
    drafter.appendContext(tapsOf(model, weights, prompt));
    const int64_t start = int64_t(prompt.size()), B = 5;
    const int32_t last = 17, mask = int32_t(model.drafter->maskTokenId);
    std::vector<int32_t> follow{last, 3, 1, 4, 1};
    ref::Tensor lastPass, chosen;
    std::vector<int32_t> block = drafter.draftAutoregressive(
        last, start, B, &lastPass, &follow, &chosen);
    ASSERT_EQ(chosen.dim(0), B);
    for (int64_t k = 1; k < B; ++k) {
      std::vector<int32_t> input(follow.begin(), follow.begin() + k);
      input.resize(size_t(B), mask);
      ref::Tensor logits = drafter.draft(input, start);
      EXPECT_EQ(ref::argmax(logits)[size_t(k)], block[size_t(k)]) << k;
      const int64_t V = logits.dim(1);
      EXPECT_EQ(std::vector<float>(logits.row(k), logits.row(k) + V),
                std::vector<float>(chosen.row(k), chosen.row(k) + V))
          << k;
      if (k == B - 1) {
        EXPECT_EQ(logits.data, lastPass.data);
      }
    }
    std::vector<int32_t> wrongSize(3, 0);
    EXPECT_THROW(
        drafter.draftAutoregressive(last, start, B, nullptr, &wrongSize),
        Error);
  }
}

/// The engine's decode of a DflashReference::generate run, as tile-run
/// records it: the first token and each step's commits.
DflashReference::Followed followedOf(const std::vector<int32_t> &produced,
                                     const DflashReference::Stats &stats) {
  DflashReference::Followed f;
  f.first = produced[0];
  size_t at = 1;
  for (int64_t a : stats.accepted) {
    if (at + size_t(a) > produced.size())
      break; // the last step's tail is cut at `count`
    f.committed.emplace_back(produced.begin() + int64_t(at),
                             produced.begin() + int64_t(at) + a);
    at += size_t(a);
  }
  return f;
}

/// replay() on the reference's own decode gives its drafts and draft logits
/// bit for bit (block and autoregressive drafters, rounding as for an
/// engine): the forced mode is the same loop, told what to commit.
TEST(DflashReference, ReplayOfItsOwnDecodeGivesTheSameDrafts) {
  for (const char *name : {"tiny", "tiny-pro"}) {
    Model model = loadModel(name);
    SyntheticWeights weights(model, 8);
    std::vector<int32_t> prompt = promptFor(model, 7, 2);
    for (bool ar : {false, true}) {
      SCOPED_TRACE(std::string(name) + (ar ? " autoregressive" : " block"));
      DflashReference dflash(model, weights, /*roundActivations=*/true, ar);
      const int64_t B = 4;
      DflashReference::Stats own;
      std::vector<int32_t> produced = dflash.generate(prompt, 40, B, &own);
      DflashReference::Followed f = followedOf(produced, own);
      ASSERT_GE(f.committed.size(), 8u);
      for (size_t s = 0; s < f.committed.size(); ++s) {
        std::vector<int32_t> block{s ? f.committed[s - 1].back() : f.first};
        block.insert(block.end(), own.drafts[s].begin(), own.drafts[s].end());
        f.blocks.push_back(block);
      }
      DflashReference::Stats replayed;
      dflash.replay(prompt, f, B, replayed);
      const size_t n = f.committed.size();
      ASSERT_EQ(replayed.drafts.size(), n);
      EXPECT_EQ(replayed.drafts,
                std::vector<std::vector<int32_t>>(own.drafts.begin(),
                                                  own.drafts.begin() + n));
      EXPECT_EQ(replayed.accepted,
                std::vector<int64_t>(own.accepted.begin(),
                                     own.accepted.begin() + int64_t(n)));
      for (size_t s = 0; s < n; ++s)
        EXPECT_EQ(replayed.draftLogits[s].data, own.draftLogits[s].data) << s;
      EXPECT_EQ(replayed.choiceLogits.size(), ar ? n : 0u);
    }
  }
}

/// replay() follows commits the reference itself would not make: step s's
/// draft is the drafter's over the context of exactly the tokens committed
/// before it, at their positions.
TEST(DflashReference, ReplayDraftsFromTheCommittedTokens) {
  Model model = loadModel("tiny-window");
  SyntheticWeights weights(model, 9);
  std::vector<int32_t> prompt = promptFor(model, 6, 3);
  const int64_t B = 4;
  DflashReference::Followed f;
  f.first = 7;
  f.committed = {{5}, {9, 2, 11}, {4, 4}, {1, 2, 3, 8}, {6}};
  DflashReference dflash(model, weights);
  DflashReference::Stats stats;
  dflash.replay(prompt, f, B, stats);
  ASSERT_EQ(stats.drafts.size(), f.committed.size());
  EXPECT_EQ(stats.accepted, (std::vector<int64_t>{1, 3, 2, 4, 1}));
  std::vector<int32_t> sequence = prompt;
  int32_t last = f.first;
  for (size_t s = 0; s < f.committed.size(); ++s) {
    SCOPED_TRACE(s);
    ReferenceDrafter drafter(*model.drafter, model.target, weights);
    drafter.appendContext(tapsOf(model, weights, sequence));
    ref::Tensor logits = drafter.draft(last, int64_t(sequence.size()), B);
    std::vector<int32_t> want = ref::argmax(logits);
    EXPECT_EQ(stats.drafts[s],
              std::vector<int32_t>(want.begin() + 1, want.end()));
    const int64_t V = logits.dim(1);
    const ref::Tensor &got = stats.draftLogits[s];
    ASSERT_EQ(got.data.size(), size_t((B - 1) * V));
    for (int64_t i = 0; i < (B - 1) * V; ++i)
      ASSERT_NEAR(got.data[size_t(i)], logits.data[size_t(V + i)], 1e-4) << i;
    sequence.push_back(last);
    sequence.insert(sequence.end(), f.committed[s].begin(),
                    f.committed[s].end() - 1);
    last = f.committed[s].back();
  }
  // Commits that cannot be an engine's are named.
  DflashReference::Followed bad = f;
  bad.committed[2] = {1, 2, 3, 4, 5};
  EXPECT_THROW(dflash.replay(prompt, bad, B, stats), Error);
  bad = f;
  bad.first = int32_t(model.target.vocabSize);
  EXPECT_THROW(dflash.replay(prompt, bad, B, stats), Error);
}

TEST(DflashReference, BadArgumentsAreNamed) {
  Model model = loadModel("tiny");
  SyntheticWeights weights(model, 1);
  DflashReference dflash(model, weights);
  std::vector<int32_t> prompt = promptFor(model, 3, 0);
  auto message = [&](int64_t B, const std::vector<int32_t> *oracle) {
    try {
      dflash.generate(prompt, 8, B, nullptr, oracle);
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(17, nullptr).find("block size 17 is out of range"),
            std::string::npos);
  std::vector<int32_t> shortOracle(4, 0);
  EXPECT_NE(message(4, &shortOracle).find("oracle continuation has 4 tokens"),
            std::string::npos);
  Model plain = model;
  plain.drafter.reset();
  EXPECT_THROW(DflashReference(plain, weights), Error);
}

} // namespace
