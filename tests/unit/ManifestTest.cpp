//===- ManifestTest.cpp - The manifest's task estimates -------------------===//
//
// manifest.json's tasks.estimates (docs/engine.md): written and read back
// parallel to the task lists, refused when the arrays do not match them,
// absent for engines without them.
//
//===----------------------------------------------------------------------===//
#include "HostEngineBuilder.h"

#include "models/core/Config.h"
#include "models/core/Error.h"
#include "runtime/engine/Manifest.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <unistd.h>

using namespace tilec;
using namespace tilec::test;
namespace fs = std::filesystem;

namespace {

TEST(ManifestEstimates, RoundTripAndBadTablesAreNamed) {
  Model model = loadModel("tiny");
  EngineManifest m = buildModelEngine(model, 1, 4);
  EXPECT_FALSE(m.hasEstimates());
  int64_t n = 0;
  for (const auto &list : m.smTasks) {
    m.smEstimates.emplace_back();
    for (size_t k = 0; k < list.size(); ++k, ++n)
      m.smEstimates.back().push_back({n * 10, n * 10 + 7, 100 + n, 1000 + n});
  }
  m.costModel = "roofline";
  m.predictedNs = n * 10;
  fs::path dir = fs::temp_directory_path() /
                 ("tilec-estimates-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_EQ(writeEngine(dir.string(), m, "// no kernel\n"), "");
  EngineManifest back = readEngine(dir.string());
  ASSERT_TRUE(back.hasEstimates());
  EXPECT_EQ(back.costModel, "roofline");
  EXPECT_EQ(back.predictedNs, n * 10);
  ASSERT_EQ(back.smEstimates.size(), m.smEstimates.size());
  for (size_t s = 0; s < m.smEstimates.size(); ++s)
    for (size_t k = 0; k < m.smEstimates[s].size(); ++k) {
      const TaskEstimate &a = m.smEstimates[s][k], &b = back.smEstimates[s][k];
      EXPECT_EQ(a.startNs, b.startNs);
      EXPECT_EQ(a.endNs, b.endNs);
      EXPECT_EQ(a.bytes, b.bytes);
      EXPECT_EQ(a.flops, b.flops);
      EXPECT_EQ(b.ns(), 7);
    }

  // The manifest's arrays are flat and parallel to tasks.bin.
  nlohmann::json j;
  {
    std::ifstream in(dir / "manifest.json");
    j = nlohmann::json::parse(in);
  }
  EXPECT_EQ(j["tasks"]["estimates"]["end_ns"].size(), size_t(n));
  auto rewrite = [&](const std::function<void(nlohmann::json &)> &edit) {
    nlohmann::json copy = j;
    edit(copy);
    std::ofstream(dir / "manifest.json") << copy.dump();
  };
  auto expectError = [&](const std::string &want) {
    try {
      readEngine(dir.string());
      ADD_FAILURE() << "no error; expected " << want;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos)
          << e.what();
    }
  };
  rewrite([](nlohmann::json &c) { c["tasks"]["estimates"]["bytes"].erase(0); });
  expectError("tasks.estimates: bytes has " + std::to_string(n - 1) +
              " entries for " + std::to_string(n) + " tasks");
  rewrite([](nlohmann::json &c) { c["tasks"]["estimates"]["end_ns"][0] = -5; });
  expectError("ends at -5 ns, before its start");
  rewrite([](nlohmann::json &c) { c["tasks"]["estimates"].erase("flops"); });
  expectError("missing field \"flops\"");
  // Without estimates (engines built by hand, older tilecs): none.
  rewrite([](nlohmann::json &c) { c["tasks"].erase("estimates"); });
  EXPECT_FALSE(readEngine(dir.string()).hasEstimates());

  // The writer refuses estimates that are not parallel to the tasks.
  m.smEstimates[0].pop_back();
  EXPECT_NE(writeEngine(dir.string(), m, "// no kernel\n").find("parallel"),
            std::string::npos);
  fs::remove_all(dir);
}

} // namespace
