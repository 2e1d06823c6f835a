//===- BenchTest.cpp - `tile-run bench`'s arithmetic ----------------------===//
//
// runtime/engine/Bench.h on values whose answers are known: percentiles by
// nearest rank, bad times refused, bytes per step from the manifest's
// estimates, tokens/s and the HBM fraction, the table and the JSON.
//
//===----------------------------------------------------------------------===//
#include "models/core/Error.h"
#include "runtime/engine/Bench.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace tilec;

TEST(Bench, StepStatistics) {
  // 1..10 ms in a shuffled order.
  StepTimes s = summarizeSteps({7, 3, 10, 1, 5, 9, 2, 8, 4, 6});
  EXPECT_EQ(s.steps, 10);
  EXPECT_DOUBLE_EQ(s.totalMs, 55);
  EXPECT_DOUBLE_EQ(s.meanMs, 5.5);
  EXPECT_DOUBLE_EQ(s.medianMs, 5); // nearest rank: ceil(0.5 * 10) = 5th
  EXPECT_DOUBLE_EQ(s.p10Ms, 1);
  EXPECT_DOUBLE_EQ(s.p90Ms, 9);
  EXPECT_DOUBLE_EQ(s.minMs, 1);
  EXPECT_DOUBLE_EQ(s.maxMs, 10);
  StepTimes one = summarizeSteps({2.5});
  EXPECT_DOUBLE_EQ(one.medianMs, 2.5);
  EXPECT_DOUBLE_EQ(one.p10Ms, 2.5);
  EXPECT_DOUBLE_EQ(one.p90Ms, 2.5);
}

TEST(Bench, RefusesWhatIsNotATime) {
  EXPECT_THROW(summarizeSteps({}), Error);
  EXPECT_THROW(summarizeSteps({1.0, -0.5}), Error);
  EXPECT_THROW(summarizeSteps({std::numeric_limits<double>::quiet_NaN()}),
               Error);
  EXPECT_THROW(summarizeSteps({std::numeric_limits<double>::infinity()}),
               Error);
}

TEST(Bench, BytesFromEstimates) {
  EngineManifest m;
  EXPECT_EQ(estimatedBytesPerStep(m), 0);
  TaskEstimate a, b, c;
  a.bytes = 1000;
  b.bytes = 24;
  c.bytes = 1 << 20;
  m.smEstimates = {{a, b}, {}, {c}};
  EXPECT_EQ(estimatedBytesPerStep(m), 1000 + 24 + (1 << 20));
}

TEST(Bench, DerivedFigures) {
  BenchRow r;
  r.step = summarizeSteps({2, 2, 2, 2}); // 4 steps of 2 ms
  r.committedPerStep = 6;                // DFlash: 6 tokens per step
  r.bytesPerStep = 4'000'000;            // 4 MB in 2 ms: 2000 GB/s
  finishRow(r, 4000);
  EXPECT_DOUBLE_EQ(r.tokensPerSecond, 3000); // 24 tokens in 8 ms
  EXPECT_DOUBLE_EQ(r.gbps, 2);               // bytes per ns
  EXPECT_DOUBLE_EQ(r.hbmFraction, 0.0005);
  r.bytesPerStep = 4'000'000'000;
  finishRow(r, 4000);
  EXPECT_DOUBLE_EQ(r.gbps, 2000);
  EXPECT_DOUBLE_EQ(r.hbmFraction, 0.5);
  // No bandwidth: no fraction, never a division by zero.
  finishRow(r, 0);
  EXPECT_EQ(r.hbmFraction, 0);
}

TEST(Bench, TableAndJson) {
  BenchRow r;
  r.engine = "engines/ps";
  r.model = "mimo-v2.5-pro";
  r.launch = "megakernel";
  r.drafting = "oracle";
  r.tokensPerStep = 8;
  r.step = summarizeSteps({2, 3});
  r.committedPerStep = 8;
  r.bytesPerStep = 5'000'000'000;
  finishRow(r, 4000);
  std::string table = formatBench({r}, "GPU 0: test", 4000, "a note");
  EXPECT_NE(table.find("device: GPU 0: test"), std::string::npos);
  EXPECT_NE(table.find("4000 GB/s (a note)"), std::string::npos);
  EXPECT_NE(table.find("engines/ps"), std::string::npos);
  EXPECT_NE(table.find("oracle"), std::string::npos);
  EXPECT_NE(table.find("62.5%"), std::string::npos); // 5 GB / 2 ms / 4 TB/s
  nlohmann::json j = benchJson({r}, "GPU 0: test", 4000, {3900, 4000});
  ASSERT_EQ(j["runs"].size(), 1u);
  EXPECT_EQ(j["runs"][0]["launch"], "megakernel");
  EXPECT_DOUBLE_EQ(j["runs"][0]["hbm_fraction"].get<double>(), 0.625);
  EXPECT_DOUBLE_EQ(j["runs"][0]["tokens_per_second"].get<double>(), 3200);
  EXPECT_EQ(j["hbm_copy_trials_gbps"].size(), 2u);
}
