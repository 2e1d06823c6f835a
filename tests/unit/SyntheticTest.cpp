//===- SyntheticTest.cpp - Synthetic weights and checkpoints --------------===//
#include "models/core/Synthetic.h"
#include "models/core/CheckpointWeights.h"
#include "models/core/Reference.h"

#include <gtest/gtest.h>

#include <filesystem>

using namespace tilec;
namespace fs = std::filesystem;

namespace {

fs::path tempDir(const std::string &name) {
  fs::path dir = fs::temp_directory_path() /
                 ("tilec-synthetic-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

TEST(Synthetic, GeneratorIsFixed) {
  // The GPU generator reimplements these bits: pin a few values.
  uint64_t key = syntheticKey(42, "model.embed_tokens.weight");
  EXPECT_EQ(fnv1a64("a"), 0xAF63DC4C8601EC8Cull);
  EXPECT_EQ(mix64(0), 0u);
  float u0 = syntheticUniform(key, 0);
  EXPECT_GT(u0, -1.0f);
  EXPECT_LT(u0, 1.0f);
  EXPECT_EQ(u0, syntheticUniform(key, 0));
  EXPECT_NE(u0, syntheticUniform(key, 1));
  EXPECT_NE(u0,
            syntheticUniform(syntheticKey(43, "model.embed_tokens.weight"), 0));
  // Mean ~ 0 and range of a uniform over many draws.
  double sum = 0, lo = 1, hi = -1;
  for (uint64_t i = 0; i < 100000; ++i) {
    float u = syntheticUniform(key, i);
    sum += u;
    lo = std::min<double>(lo, u);
    hi = std::max<double>(hi, u);
  }
  EXPECT_NEAR(sum / 100000, 0.0, 0.01);
  EXPECT_LT(lo, -0.999);
  EXPECT_GT(hi, 0.999);
}

TEST(Synthetic, QuantizedFormatsAreExactlyRepresentable) {
  Model model = loadModel("tiny");
  for (const WeightSpec &spec : modelWeights(model)) {
    if (spec.format != WeightFormat::MXFP4)
      continue;
    std::vector<float> m = synthesizeMatrix(spec, 3, 0);
    // Each block of 32 is scale * E2M1 values: at most 16 distinct magnitudes.
    for (size_t b = 0; b < m.size(); b += 32) {
      std::set<float> mags;
      for (size_t i = b; i < b + 32; ++i)
        mags.insert(std::fabs(m[i]));
      EXPECT_LE(mags.size(), 8u) << spec.name;
    }
    return;
  }
  FAIL() << "tiny has no MXFP4 tensor";
}

/// A checkpoint written from a seed holds exactly the synthetic values, in
/// every layout, and the reference model gives the same logits from either
/// source.
TEST(Synthetic, CheckpointRoundTrip) {
  Model model = loadModel("tiny");
  SyntheticWeights synthetic(model, 5);
  struct Layout {
    const char *name;
    SyntheticCheckpointOptions options;
  } layouts[] = {{"per-expert", {}},
                 {"packed", {true, 0, false}},
                 {"sharded", {false, 64 * 1024, false}}};
  for (const Layout &layout : layouts) {
    SCOPED_TRACE(layout.name);
    fs::path dir = tempDir(layout.name);
    writeSyntheticCheckpoint(model, 5, dir.string(), layout.options);
    Model loaded = loadModel(dir.string());
    EXPECT_EQ(loaded.target, model.target);
    ASSERT_TRUE(loaded.drafter.has_value());
    EXPECT_EQ(*loaded.drafter, *model.drafter);
    CheckpointWeights fromFile(dir.string(), (dir / "drafter").string());
    for (const WeightSpec &spec : modelWeights(model))
      ASSERT_EQ(fromFile.load(spec.name, spec.shape),
                synthetic.load(spec.name, spec.shape))
          << spec.name;
    ReferenceModel a(model.target, synthetic), b(loaded.target, fromFile);
    std::vector<int32_t> prompt{1, 2, 3, 4, 5};
    EXPECT_EQ(a.forward(prompt).logits.data, b.forward(prompt).logits.data);
    fs::remove_all(dir);
  }
}

TEST(Synthetic, MissingTensorIsNamed) {
  Model model = loadModel("tiny");
  fs::path dir = tempDir("missing");
  writeSyntheticCheckpoint(model, 5, dir.string());
  CheckpointWeights weights(dir.string(), "");
  try {
    weights.load("model.layers.0.self_attn.q_proj.weightx", {192, 64});
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("q_proj.weightx"), std::string::npos)
        << e.what();
  }
  try {
    weights.load("model.layers.0.self_attn.q_proj.weight", {64, 64});
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("the config asks for [64, 64]"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

} // namespace
