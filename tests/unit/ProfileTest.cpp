//===- ProfileTest.cpp - Traces, profile summaries, timelines, estimates --===//
//
// runtime/engine/Profile.h and Timeline.h on hand-made manifests and traces
// whose answers are known (time per family, idle per SM, the sched and load
// roles' shares, predicted against measured, the outlier), and the host
// executor's per-task stamps on a whole model engine.
//
//===----------------------------------------------------------------------===//
#include "HostEngineBuilder.h"

#include "models/core/Config.h"
#include "models/core/Error.h"
#include "runtime/engine/Profile.h"
#include "runtime/engine/Timeline.h"
#include "runtime/host/HostExecutor.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <unistd.h>

using namespace tilec;
using namespace tilec::test;
namespace fs = std::filesystem;

namespace {

TilecTask makeTask(TilecTaskFamily family, int64_t op) {
  TilecTask t;
  for (long long &w : t.w)
    w = -1;
  t.w[TILEC_W_FAMILY] = family;
  t.w[TILEC_W_OP] = op;
  t.w[TILEC_W_INSTANCE] = 0;
  return t;
}

/// Three SMs: SM 0 runs two linear tasks of op "q" then an attention task,
/// SM 1 one linear task of "q", SM 2 nothing. Predictions: 1 us per linear
/// task, 2 us for the attention; bytes 1000 per linear task, 500 for the
/// attention.
EngineManifest smallManifest() {
  EngineManifest m;
  m.modelName = "hand";
  m.sms = 3;
  m.ops = {"q", "attn"};
  m.smTasks = {{makeTask(TILEC_TASK_LINEAR, 0), makeTask(TILEC_TASK_LINEAR, 0),
                makeTask(TILEC_TASK_ATTENTION, 1)},
               {makeTask(TILEC_TASK_LINEAR, 0)},
               {}};
  m.smEstimates = {
      {{0, 1000, 1000, 10}, {1000, 2000, 1000, 10}, {2000, 4000, 500, 20}},
      {{0, 1000, 1000, 10}},
      {}};
  m.costModel = "roofline";
  m.predictedNs = 4000;
  return m;
}

constexpr size_t W = TILEC_TRACE_WORDS;

/// Word `word` of task k of SM sm in a trace with room for 3 tasks per SM.
size_t at3(int sm, int k, int word) { return size_t(sm * 3 + k) * W + word; }

/// A trace of smallManifest: [3 SMs, 3 tasks, TILEC_TRACE_WORDS] with compute
/// stamps only; times in ns from `t0`.
std::vector<uint64_t> smallTrace(uint64_t t0, uint64_t attention) {
  std::vector<uint64_t> t(3 * 3 * W, 0);
  auto stamp = [&](int sm, int k, uint64_t b, uint64_t e) {
    t[at3(sm, k, TILEC_TRACE_COMPUTE_BEGIN)] = t0 + b;
    t[at3(sm, k, TILEC_TRACE_COMPUTE_END)] = t0 + e;
  };
  // SM 0: busy [0, 2000) and [3000, 3000 + attention); SM 1: [0, 1000).
  stamp(0, 0, 0, 1000);
  stamp(0, 1, 1000, 2000);
  stamp(0, 2, 3000, 3000 + attention);
  stamp(1, 0, 0, 1000);
  return t;
}

TEST(Profile, TaskSpansSkipUnstampedTasksAndCheckTheLayout) {
  EngineManifest m = smallManifest();
  std::vector<uint64_t> trace = smallTrace(1000, 1000);
  trace[at3(1, 0, TILEC_TRACE_COMPUTE_BEGIN)] = 0; // SM 1's task did not run
  trace[at3(0, 1, TILEC_TRACE_COMPUTE_END)] = 5;   // SM 0 task 1: cut off
  std::vector<std::pair<int, int>> seen;
  forEachTaskSpan(m, trace, [&](const TaskSpan &s) {
    seen.push_back({s.sm, s.index});
    EXPECT_EQ(s.task, &m.smTasks[size_t(s.sm)][size_t(s.index)]);
  });
  EXPECT_EQ(seen, (std::vector<std::pair<int, int>>{{0, 0}, {0, 2}}));
  int none = 0;
  forEachTaskSpan(m, {}, [&](const TaskSpan &) { ++none; });
  EXPECT_EQ(none, 0);
  trace.pop_back();
  EXPECT_THROW(forEachTaskSpan(m, trace, [](const TaskSpan &) {}), Error);
  // Room for 2 tasks per SM, but SM 0 has 3.
  EXPECT_THROW(forEachTaskSpan(m, std::vector<uint64_t>(3 * 2 * W, 1),
                               [](const TaskSpan &) {}),
               Error);
  // The old layout (two stamps per task) is refused, not misread.
  EXPECT_THROW(forEachTaskSpan(m, std::vector<uint64_t>(3 * 3 * 2, 1),
                               [](const TaskSpan &) {}),
               Error);
}

/// smallManifest with waits: SM 0's attention waits for 2 signals of event
/// 0 ("ev.q"), SM 1's linear for 1 signal of event 0 and 1 of event 1.
EngineManifest waitingManifest() {
  EngineManifest m = smallManifest();
  m.events = {{"ev.q", 3}, {"ev.other", 1}};
  TilecTask &att = m.smTasks[0][2];
  att.w[TILEC_W_WAIT0] = 0, att.w[TILEC_W_COUNT0] = 2;
  TilecTask &lin = m.smTasks[1][0];
  lin.w[TILEC_W_WAIT0] = 0, lin.w[TILEC_W_COUNT0] = 1;
  lin.w[TILEC_W_WAIT1] = 1, lin.w[TILEC_W_COUNT1] = 1;
  return m;
}

/// smallTrace(t0, 1000) (a 4 us step) with the other roles' stamps, in ns
/// from t0: SM 0's attention waits [1000, 3000) (while task 1 computes);
/// SM 1's linear waits from 500 ns before the step to 800 (only [0, 800) is
/// in the step); SM 0's first task (no waits) has sched stamps that do not
/// count. Loads on SM 0: task 1 in [100, 300), task 2 in [1100, 1300); SM
/// 1's load is cut off (end before start).
std::vector<uint64_t> rolesTrace(uint64_t t0) {
  std::vector<uint64_t> t = smallTrace(t0, 1000);
  auto pair = [&](int sm, int k, int word, uint64_t b, uint64_t e) {
    t[at3(sm, k, word)] = b;
    t[at3(sm, k, word + 1)] = e;
  };
  pair(0, 2, TILEC_TRACE_WAIT_BEGIN, t0 + 1000, t0 + 3000);
  pair(1, 0, TILEC_TRACE_WAIT_BEGIN, t0 - 500, t0 + 800);
  pair(0, 0, TILEC_TRACE_WAIT_BEGIN, t0, t0 + 50);
  pair(0, 1, TILEC_TRACE_LOAD_BEGIN, t0 + 100, t0 + 300);
  pair(0, 2, TILEC_TRACE_LOAD_BEGIN, t0 + 1100, t0 + 1300);
  pair(1, 0, TILEC_TRACE_LOAD_BEGIN, t0 + 500, t0 + 400);
  return t;
}

TEST(Profile, TaskSpansCarryTheSchedAndLoadRoles) {
  EngineManifest m = waitingManifest();
  std::map<std::pair<int, int>, TaskSpan> seen;
  forEachTaskSpan(m, rolesTrace(1000), [&](const TaskSpan &s) {
    seen[{s.sm, s.index}] = s;
  });
  ASSERT_EQ(seen.size(), 4u);
  auto at = [&](int sm, int k) { return seen[std::make_pair(sm, k)]; };
  EXPECT_FALSE(at(0, 0).waited()); // no waits: its stamps are dropped
  EXPECT_EQ(at(0, 0).waitBegin, 0u);
  EXPECT_FALSE(at(0, 0).loaded());
  EXPECT_TRUE(at(0, 2).waited());
  EXPECT_EQ(at(0, 2).waitBegin, 2000u);
  EXPECT_EQ(at(0, 2).waitEnd, 4000u);
  EXPECT_EQ(at(1, 0).waitBegin, 500u);
  EXPECT_EQ(at(0, 1).loadBegin, 1100u);
  EXPECT_EQ(at(0, 1).loadEnd, 1300u);
  EXPECT_FALSE(at(1, 0).loaded()); // cut off
  EXPECT_EQ(at(1, 0).loadEnd, 0u);
}

TEST(Profile, SummaryPerRole) {
  EngineManifest m = waitingManifest();
  ProfileSummary s = summarizeProfile(m, {rolesTrace(1000)},
                                      {"dir", "gpu", "GPU 0", "globaltimer"});
  ASSERT_EQ(s.sms.size(), 2u);
  // sched: SM 0 waits 2 of 4 us; SM 1 0.8 of 4 (the part in the step).
  EXPECT_NEAR(s.sms[0].schedWaitFraction, 0.5, 1e-12);
  EXPECT_NEAR(s.sms[1].schedWaitFraction, 0.2, 1e-12);
  EXPECT_NEAR(s.sms[0].schedWaitUs, 2.0, 1e-12);
  const ProfileRole &sched = s.roles[int(TraceRole::Sched)];
  EXPECT_TRUE(sched.recorded);
  EXPECT_EQ(sched.role, TraceRole::Sched);
  EXPECT_NEAR(sched.mean, 0.35, 1e-12);
  EXPECT_NEAR(sched.min, 0.2, 1e-12);
  EXPECT_NEAR(sched.max, 0.5, 1e-12);
  EXPECT_EQ(sched.spansPerStep, 2);
  // load: SM 0 prefetches 0.4 of 4 us, SM 1 nothing (its pair is cut off).
  EXPECT_NEAR(s.sms[0].loadFraction, 0.1, 1e-12);
  EXPECT_NEAR(s.sms[1].loadFraction, 0.0, 1e-12);
  const ProfileRole &load = s.roles[int(TraceRole::Load)];
  EXPECT_NEAR(load.mean, 0.05, 1e-12);
  EXPECT_NEAR(load.max, 0.1, 1e-12);
  EXPECT_EQ(load.spansPerStep, 2);
  // compute: idle 1 - 3/4 and 1 - 1/4, as without the other roles.
  const ProfileRole &compute = s.roles[int(TraceRole::Compute)];
  EXPECT_NEAR(compute.mean, 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(s.idleMean, compute.mean);
  EXPECT_EQ(compute.spansPerStep, 4);

  std::string text = formatProfileSummary(s);
  for (const char *want :
       {"per warp role (share of the step on an SM, mean over steps; mean, "
        "min and max over the 2 SMs with tasks):\n",
        "  sched: waiting on events 35.0% (min 20.0%, max 50.0%); 2 waits per "
        "step\n",
        "  load: prefetching 5.0% (min 0.0%, max 10.0%); 2 prefetches per "
        "step\n",
        "  compute: idle 50.0% (min 25.0%, max 75.0%); 4 tasks per step\n",
        "(sched: sched warp: from the start", "(load: load warp: issuing"})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;

  nlohmann::json j = profileSummaryJson(s);
  EXPECT_EQ(j["idle"]["recorded_roles"],
            nlohmann::json::array({"sched", "load", "compute"}));
  EXPECT_DOUBLE_EQ(j["roles"]["sched"]["mean"].get<double>(), s.roles[0].mean);
  EXPECT_EQ(j["roles"]["sched"]["measure"], "waiting on events");
  EXPECT_EQ(j["roles"]["load"]["spans_per_step"], 2);
  EXPECT_EQ(j["roles"]["compute"]["measure"], "idle");
  EXPECT_NEAR(j["idle"]["per_sm"][1]["sched_wait_fraction"].get<double>(), 0.2,
              1e-12);
  EXPECT_NEAR(j["idle"]["per_sm"][0]["load_fraction"].get<double>(), 0.1,
              1e-12);

  // An executor without a load role (the host executor's): not recorded,
  // said so, and no numbers for it.
  ProfileSource host{"dir", "host", "CPU", "steady_clock"};
  host.loadStamped = false;
  s = summarizeProfile(m, {rolesTrace(1000)}, host);
  EXPECT_FALSE(s.roles[int(TraceRole::Load)].recorded);
  EXPECT_EQ(s.roles[int(TraceRole::Load)].mean, 0);
  text = formatProfileSummary(s);
  EXPECT_NE(text.find("  load: not recorded: the host executor has no load "
                      "role\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("(sched: host executor: a task waits from becoming"),
            std::string::npos)
      << text;
  j = profileSummaryJson(s);
  EXPECT_EQ(j["roles"]["load"]["recorded"], false);
  EXPECT_FALSE(j["roles"]["load"].contains("mean"));
  EXPECT_FALSE(j["idle"]["per_sm"][0].contains("load_fraction"));
  EXPECT_EQ(j["idle"]["recorded_roles"],
            nlohmann::json::array({"sched", "compute"}));
}

TEST(Profile, SummaryPerFamilyIdleAndPredictions) {
  EngineManifest m = smallManifest();
  // Two steps, far apart in time; the attention takes 1 us then 3 us.
  std::vector<std::vector<uint64_t>> steps = {smallTrace(1000, 1000),
                                              smallTrace(1000000, 3000)};
  ProfileSource source{"dir", "gpu", "GPU 0", "GPU globaltimer"};
  ProfileSummary s = summarizeProfile(m, steps, source);
  EXPECT_EQ(s.steps, 2);
  EXPECT_EQ(s.tasksPerStep, 4);
  EXPECT_EQ(s.stampedPerStep, 4);
  // Steps span 4 us and 6 us.
  EXPECT_DOUBLE_EQ(s.stepUsMin, 4.0);
  EXPECT_DOUBLE_EQ(s.stepUsMax, 6.0);
  EXPECT_EQ(s.bytesPerStep, 3500);

  ASSERT_EQ(s.families.size(), 2u);
  const ProfileRow &lin =
      s.families[0].name == "linear" ? s.families[0] : s.families[1];
  const ProfileRow &att =
      s.families[0].name == "linear" ? s.families[1] : s.families[0];
  EXPECT_EQ(lin.tasks, 3);
  EXPECT_EQ(lin.runs, 6);
  EXPECT_DOUBLE_EQ(lin.totalUs, 6.0);
  EXPECT_DOUBLE_EQ(lin.meanUs, 1.0);
  EXPECT_DOUBLE_EQ(lin.stepUs, 3.0);
  EXPECT_EQ(lin.bytes, 3000);
  EXPECT_DOUBLE_EQ(lin.gbps, 1.0); // 1000 bytes per us
  EXPECT_DOUBLE_EQ(lin.predictedUs, 3.0);
  EXPECT_DOUBLE_EQ(lin.ratio, 1.0);
  EXPECT_EQ(att.runs, 2);
  EXPECT_DOUBLE_EQ(att.totalUs, 4.0);
  EXPECT_DOUBLE_EQ(att.stepUs, 2.0);
  EXPECT_DOUBLE_EQ(att.gbps, 0.25); // 2 x 500 bytes in 4 us
  EXPECT_DOUBLE_EQ(att.ratio, 1.0);
  // By time, largest first: the linears (6 us), then the attention (4 us).
  EXPECT_EQ(s.families[0].name, "linear");
  ASSERT_EQ(s.ops.size(), 2u);
  EXPECT_EQ(s.ops[0].name, "q");
  EXPECT_EQ(s.ops[0].family, "linear");
  EXPECT_EQ(s.ops[1].name, "attn");

  // Idle: SM 0 busy 3 of 4 us, then 5 of 6; SM 1 busy 1 of 4, then 1 of 6.
  ASSERT_EQ(s.sms.size(), 2u);
  EXPECT_EQ(s.emptySms, 1);
  EXPECT_NEAR(s.sms[0].idleFraction, (0.25 + 1.0 / 6) / 2, 1e-12);
  EXPECT_NEAR(s.sms[1].idleFraction, (0.75 + 5.0 / 6) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(s.sms[0].busyUs, 4.0);
  EXPECT_NEAR(s.idleMean, (s.sms[0].idleFraction + s.sms[1].idleFraction) / 2,
              1e-12);
  EXPECT_DOUBLE_EQ(s.idleMin, s.sms[0].idleFraction);
  EXPECT_DOUBLE_EQ(s.idleMax, s.sms[1].idleFraction);

  // Predicted 4 us, measured median of {4, 6} (the upper one): 6 us.
  ASSERT_TRUE(s.predicted);
  EXPECT_EQ(s.costModel, "roofline");
  EXPECT_DOUBLE_EQ(s.predictedStepUs, 4.0);
  EXPECT_DOUBLE_EQ(s.stepRatio, 1.5);
  // Task times summed per step: 4 us and 6 us, median 6 us.
  EXPECT_DOUBLE_EQ(s.predictedTaskUs, 5.0);
  EXPECT_DOUBLE_EQ(s.measuredTaskUs, 6.0);
  EXPECT_DOUBLE_EQ(s.taskRatio, 1.2);
  ASSERT_FALSE(s.outliers.empty());
  // Every task is on the model's mark; none is further than the others,
  // so the first is the first visited.
  EXPECT_DOUBLE_EQ(s.outliers[0].ratio, 1.0);

  std::string text = formatProfileSummary(s);
  for (const char *want :
       {"profile of dir on GPU 0", "times: GPU globaltimer\n",
        "steps: 2 traced, 4 tasks each (4 stamped)",
        "median 6.0 us, min 4.0 us, max 6.0 us", "bytes per step: 3.4 KiB",
        "per task family", "per op (2 of 2, by time)", "1 SMs have none",
        "compute warps: a task is busy",
        "predicted vs measured (tilec's roofline",
        "step: predicted 4.00 us, measured 6.0 us (median): 1.50x",
        "worst tasks"})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;

  nlohmann::json j = profileSummaryJson(s);
  EXPECT_EQ(j["executor"], "gpu");
  EXPECT_EQ(j["families"].size(), 2u);
  EXPECT_EQ(j["ops"][0]["name"], "q");
  EXPECT_EQ(j["idle"]["per_sm"].size(), 2u);
  // The GPU stamps every role; this trace has no waits or prefetches, so
  // both are recorded at 0%.
  EXPECT_EQ(j["idle"]["recorded_roles"],
            nlohmann::json::array({"sched", "load", "compute"}));
  EXPECT_EQ(j["roles"]["sched"]["mean"], 0.0);
  EXPECT_DOUBLE_EQ(j["predicted"]["step_measured_over_predicted"].get<double>(),
                   1.5);
}

TEST(Profile, OutliersAreFurthestFromTheOverallRatio) {
  EngineManifest m = smallManifest();
  // The linears twice as slow as predicted, the attention twice as fast:
  // 7 us measured for 5 predicted, and the attention furthest from 1.4x.
  std::vector<uint64_t> t(3 * 3 * W, 0);
  auto stamp = [&](int sm, int k, uint64_t b, uint64_t e) {
    t[at3(sm, k, TILEC_TRACE_COMPUTE_BEGIN)] = 100 + b;
    t[at3(sm, k, TILEC_TRACE_COMPUTE_END)] = 100 + e;
  };
  stamp(0, 0, 0, 2000);
  stamp(0, 1, 2000, 4000);
  stamp(0, 2, 4000, 5000);
  stamp(1, 0, 0, 2000);
  ProfileSummary s = summarizeProfile(m, {t}, {"dir", "gpu", "GPU", "clock"});
  ASSERT_FALSE(s.outliers.empty());
  EXPECT_EQ(s.outliers[0].op, "attn");
  EXPECT_EQ(s.outliers[0].family, "attention");
  EXPECT_EQ(s.outliers[0].sm, 0);
  EXPECT_EQ(s.outliers[0].index, 2);
  EXPECT_DOUBLE_EQ(s.outliers[0].ratio, 0.5);
  EXPECT_DOUBLE_EQ(s.taskRatio, 7.0 / 5.0);
  EXPECT_DOUBLE_EQ(s.outliers[1].ratio, 2.0);
  EXPECT_LE(s.outliers.size(), 5u);
}

TEST(Profile, WithoutEstimatesOrStampsItSaysSo) {
  EngineManifest m = smallManifest();
  m.smEstimates.clear();
  m.predictedNs = 0;
  ProfileSummary s =
      summarizeProfile(m, {smallTrace(5, 1000)}, {"d", "host", "CPU", "c"});
  EXPECT_FALSE(s.predicted);
  EXPECT_EQ(s.bytesPerStep, 0);
  EXPECT_NE(s.bytesNote.find("no tasks.estimates"), std::string::npos);
  EXPECT_NE(s.idleNote.find("not GPU idle"), std::string::npos);
  EXPECT_NE(formatProfileSummary(s).find("the manifest has no task estimates"),
            std::string::npos);
  EXPECT_TRUE(profileSummaryJson(s)["predicted"].is_null());
  try {
    summarizeProfile(m, {std::vector<uint64_t>(3 * 3 * W, 0)}, {});
    ADD_FAILURE() << "a profile without stamps was summarized";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("tracing on"), std::string::npos);
  }
  EXPECT_THROW(summarizeProfile(m, {}, {}), Error);
  // Estimates out of shape with the task lists are not read.
  m = smallManifest();
  m.smEstimates[0].pop_back();
  EXPECT_FALSE(
      summarizeProfile(m, {smallTrace(5, 1000)}, {"d", "gpu", "GPU", "c"})
          .predicted);
}

TEST(Profile, ChromeTraceHasARowPerSmAndASlicePerTask) {
  EngineManifest m = smallManifest();
  m.opPhases = {"verify", "draft"};
  fs::path path =
      fs::temp_directory_path() /
      ("tilec-profile-trace-" + std::to_string(::getpid()) + ".json");
  // Compute stamps only: no sched or load tracks.
  TraceSlices slices =
      writeChromeTrace(m, {smallTrace(1000, 1000), smallTrace(9000, 1000)},
                       path.string(), "GPU globaltimer");
  EXPECT_EQ(slices.compute, 8);
  EXPECT_EQ(slices.total(), 8);
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  int x = 0;
  std::map<int, std::string> threads;
  double lastAttention = -1;
  for (const nlohmann::json &e : j["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "thread_name")
      threads[e["tid"].get<int>()] = e["args"]["name"];
    if (e["ph"] != "X")
      continue;
    ++x;
    EXPECT_EQ(e["args"]["role"], "compute");
    if (e["name"] == "attn") {
      EXPECT_EQ(e["cat"], "attention");
      EXPECT_EQ(e["tid"], 0);
      EXPECT_EQ(e["args"]["phase"], "draft");
      EXPECT_EQ(e["args"]["predicted_ns"], 2000);
      EXPECT_EQ(e["args"]["bytes"], 500);
      lastAttention = e["ts"].get<double>();
    }
  }
  EXPECT_EQ(x, 8);
  EXPECT_EQ(threads, (std::map<int, std::string>{{0, "SM 0 compute"},
                                                 {1, "SM 1 compute"},
                                                 {2, "SM 2 compute"}}));
  // Relative to the first stamp: the second step's attention at 8 + 3 us.
  EXPECT_DOUBLE_EQ(lastAttention, 11.0);
  EXPECT_EQ(j["otherData"]["clock"], "GPU globaltimer");
  fs::remove(path);
  EXPECT_THROW(
      writeChromeTrace(m, {smallTrace(1, 1)}, "/nonexistent/t.json", "c"),
      Error);
}

TEST(Profile, ChromeTraceHasATrackPerRolePerSm) {
  EngineManifest m = waitingManifest();
  fs::path path =
      fs::temp_directory_path() /
      ("tilec-profile-roles-" + std::to_string(::getpid()) + ".json");
  TraceSlices slices =
      writeChromeTrace(m, {rolesTrace(1000)}, path.string(), "GPU globaltimer");
  EXPECT_EQ(slices.compute, 4);
  EXPECT_EQ(slices.sched, 2); // the tasks with waits
  EXPECT_EQ(slices.load, 2);  // not the cut-off one
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  // Tracks: compute tid = SM, sched 3 + SM, load 6 + SM; sorted SM by SM as
  // sched, load, compute.
  std::map<int, std::string> names;
  std::map<int, int> order;
  for (const nlohmann::json &e : j["traceEvents"]) {
    if (e["ph"] != "M")
      continue;
    if (e["name"] == "thread_name")
      names[e["tid"].get<int>()] = e["args"]["name"];
    if (e["name"] == "thread_sort_index")
      order[e["tid"].get<int>()] = e["args"]["sort_index"].get<int>();
  }
  EXPECT_EQ(names.size(), 9u);
  EXPECT_EQ(names[1], "SM 1 compute");
  EXPECT_EQ(names[4], "SM 1 sched");
  EXPECT_EQ(names[7], "SM 1 load");
  EXPECT_EQ(order[4], 3); // SM 1 sched
  EXPECT_EQ(order[7], 4); // SM 1 load
  EXPECT_EQ(order[1], 5); // SM 1 compute
  EXPECT_EQ(order[0], 2);
  // The first stamp is SM 1's wait (500 ns before the first task).
  int sched = 0, load = 0;
  for (const nlohmann::json &e : j["traceEvents"]) {
    if (e["ph"] != "X")
      continue;
    EXPECT_GE(e["ts"].get<double>(), 0.0);
    if (e["args"]["role"] == "sched") {
      ++sched;
      EXPECT_EQ(e["cat"], "sched");
      if (e["tid"] == 3) { // SM 0's attention waits [1, 3) us after t0
        EXPECT_EQ(e["name"], "attn");
        EXPECT_DOUBLE_EQ(e["ts"].get<double>(), 1.5);
        EXPECT_DOUBLE_EQ(e["dur"].get<double>(), 2.0);
        EXPECT_EQ(e["args"]["waits"], "ev.q >= 2");
        EXPECT_EQ(e["args"]["family"], "attention");
      } else {
        EXPECT_EQ(e["tid"], 4);
        EXPECT_DOUBLE_EQ(e["ts"].get<double>(), 0.0);
        EXPECT_EQ(e["args"]["waits"], "ev.q >= 1, ev.other >= 1");
      }
    }
    if (e["args"]["role"] == "load") {
      ++load;
      EXPECT_EQ(e["cat"], "load");
      EXPECT_EQ(e["tid"], 6);
      EXPECT_DOUBLE_EQ(e["dur"].get<double>(), 0.2);
      EXPECT_TRUE(e["args"].contains("bytes"));
    }
    if (e["args"]["role"] == "compute" && e["name"] == "attn") {
      EXPECT_DOUBLE_EQ(e["ts"].get<double>(), 3.5);
    }
  }
  EXPECT_EQ(sched, 2);
  EXPECT_EQ(load, 2);
  fs::remove(path);
}

TEST(Timeline, TasksInTheirFamilyColourIdleInGreyAndALegend) {
  EngineManifest m = smallManifest();
  TimelineOptions o;
  o.width = 800;
  o.title = "Test: 3 SMs";
  TimelineLayout L;
  RgbImage image = renderTimeline(m, smallTrace(1000, 1000), o, &L);
  EXPECT_EQ(image.width, 800);
  ASSERT_GT(L.plotWidth, 0);
  auto at = [&](int sm, double us) {
    double frac = us / (double(L.t1 - L.t0) / 1e3);
    return image.get(L.plotX + int(frac * L.plotWidth),
                     L.rowsY + sm * L.rowHeight + L.rowHeight / 2 - 1);
  };
  // The span is 4 us: SM 0 runs linears in [0, 2), idles in [2, 3), runs the
  // attention in [3, 4); SM 1 runs a linear in [0, 1) then idles; SM 2 idles.
  EXPECT_EQ(at(0, 0.5), familyColor(TILEC_TASK_LINEAR));
  EXPECT_EQ(at(0, 1.5), familyColor(TILEC_TASK_LINEAR));
  EXPECT_EQ(at(0, 2.5), kTimelineIdle);
  EXPECT_EQ(at(0, 3.5), familyColor(TILEC_TASK_ATTENTION));
  EXPECT_EQ(at(1, 0.5), familyColor(TILEC_TASK_LINEAR));
  EXPECT_EQ(at(1, 2.0), kTimelineIdle);
  EXPECT_EQ(at(2, 1.0), kTimelineIdle);
  // The legend: a swatch for each family present, and idle's.
  int linear = 0, attention = 0, idle = 0, router = 0;
  for (int y = L.legendY; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x) {
      uint32_t c = image.get(x, y);
      linear += c == familyColor(TILEC_TASK_LINEAR);
      attention += c == familyColor(TILEC_TASK_ATTENTION);
      router += c == familyColor(TILEC_TASK_ROUTER_TOPK);
      idle += c == kTimelineIdle;
    }
  EXPECT_EQ(linear, 80); // 10 x 8 swatches
  EXPECT_EQ(attention, 80);
  EXPECT_EQ(idle, 80);
  EXPECT_EQ(router, 0);
  // The title is drawn in black above the rows.
  int ink = 0;
  for (int y = 8; y < 15; ++y)
    for (int x = 8; x < 8 + 6 * 11; ++x)
      ink += image.get(x, y) == 0;
  EXPECT_GT(ink, 40);
  EXPECT_THROW(renderTimeline(m, std::vector<uint64_t>(3 * 3 * W, 0)), Error);
  // Every family has its own colour.
  for (int a = 0; a < TILEC_TASK_FAMILY_COUNT; ++a)
    for (int b = a + 1; b < TILEC_TASK_FAMILY_COUNT; ++b)
      EXPECT_NE(familyColor(TilecTaskFamily(a)),
                familyColor(TilecTaskFamily(b)));
}

TEST(Timeline, SchedWaitsAreABandAlongTheRowsBottom) {
  EngineManifest m = waitingManifest();
  TimelineLayout L;
  RgbImage image = renderTimeline(m, rolesTrace(1000), {}, &L);
  // The span is the compute role's 4 us; SM 0's attention waits in [1, 3).
  auto at = [&](int sm, double us, bool bottom) {
    double frac = us / (double(L.t1 - L.t0) / 1e3);
    int y = L.rowsY + sm * L.rowHeight +
            (bottom ? L.rowHeight - 2 : L.rowHeight / 2 - 1);
    return image.get(L.plotX + int(frac * L.plotWidth), y);
  };
  EXPECT_EQ(L.t1 - L.t0, 4000u);
  EXPECT_EQ(at(0, 1.5, true), kTimelineWait);
  EXPECT_EQ(at(0, 2.5, true), kTimelineWait); // over the idle gap too
  EXPECT_EQ(at(0, 1.5, false), familyColor(TILEC_TASK_LINEAR));
  EXPECT_EQ(at(0, 3.5, true), familyColor(TILEC_TASK_ATTENTION));
  EXPECT_EQ(at(0, 0.5, true), familyColor(TILEC_TASK_LINEAR)); // no waits
  // SM 1 waits until 0.8 us (clipped to the step's start).
  EXPECT_EQ(at(1, 0.5, true), kTimelineWait);
  EXPECT_EQ(at(1, 0.5, false), familyColor(TILEC_TASK_LINEAR));
  EXPECT_EQ(at(1, 2.0, true), kTimelineIdle);
  int swatch = 0;
  for (int y = L.legendY; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      swatch += image.get(x, y) == kTimelineWait;
  EXPECT_EQ(swatch, 80);
  // Without waits, no band and no legend entry.
  image = renderTimeline(m, smallTrace(1000, 1000), {}, &L);
  int band = 0;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      band += image.get(x, y) == kTimelineWait;
  EXPECT_EQ(band, 0);
}

TEST(HostTrace, EveryTaskStampedInItsListsOrderAfterWhatItWaitsFor) {
  Model model = loadModel("tiny");
  EngineManifest m = buildModelEngine(model, 1, 4);
  HostOptions options;
  options.trace = true;
  options.checkEvents = false;
  HostExecutor ex(m, WeightSourceSpec::synthetic(0), options);
  std::vector<uint64_t> before = ex.readTrace(); // no step yet: no stamps
  EXPECT_TRUE(std::all_of(before.begin(), before.end(),
                          [](uint64_t v) { return v == 0; }));
  std::vector<std::vector<uint64_t>> steps;
  generateGreedy(ex, {1, 2, 3}, 3, nullptr,
                 [&](int32_t) { steps.push_back(ex.readTrace()); });
  ASSERT_EQ(steps.size(), 3u);
  size_t room = 0;
  for (const auto &list : m.smTasks)
    room = std::max(room, list.size());
  for (const std::vector<uint64_t> &trace : steps) {
    ASSERT_EQ(trace.size(), m.smTasks.size() * room * W);
    auto word = [&](const TaskSpan &s, int k, int w) {
      return trace[(size_t(s.sm) * room + size_t(k)) * W + size_t(w)];
    };
    int64_t stamped = 0, waited = 0, withWaits = 0;
    // When each event's last signal came (its signallers' latest end).
    std::map<int64_t, uint64_t> signalled;
    forEachTaskSpan(m, trace, [&](const TaskSpan &s) {
      ++stamped;
      EXPECT_LE(s.begin, s.end);
      // The sched role: every task waits from its list's previous task's
      // end (the first from the step's start) until its waits are seen met,
      // before it starts; no load role on the host.
      EXPECT_NE(word(s, s.index, TILEC_TRACE_WAIT_BEGIN), 0u);
      EXPECT_LE(word(s, s.index, TILEC_TRACE_WAIT_BEGIN),
                word(s, s.index, TILEC_TRACE_WAIT_END));
      EXPECT_LE(word(s, s.index, TILEC_TRACE_WAIT_END), s.begin);
      EXPECT_EQ(word(s, s.index, TILEC_TRACE_LOAD_BEGIN), 0u);
      EXPECT_EQ(word(s, s.index, TILEC_TRACE_LOAD_END), 0u);
      EXPECT_FALSE(s.loaded());
      if (s.index > 0) { // after the SM's previous task
        uint64_t previous = word(s, s.index - 1, TILEC_TRACE_COMPUTE_END);
        EXPECT_GE(s.begin, previous);
        EXPECT_EQ(word(s, s.index, TILEC_TRACE_WAIT_BEGIN), previous);
      }
      bool waits =
          s.task->w[TILEC_W_WAIT0] >= 0 || s.task->w[TILEC_W_WAIT1] >= 0;
      withWaits += waits;
      waited += s.waited();
      EXPECT_EQ(s.waited(), waits);
      int64_t e = s.task->w[TILEC_W_SIGNAL];
      if (e >= 0)
        signalled[e] = std::max(signalled[e], s.end);
    });
    EXPECT_EQ(stamped, m.taskCount());
    EXPECT_GT(withWaits, 0);
    EXPECT_EQ(waited, withWaits);
    forEachTaskSpan(m, trace, [&](const TaskSpan &s) {
      for (int w : {TILEC_W_WAIT0, TILEC_W_WAIT1}) {
        if (s.task->w[w] >= 0) {
          EXPECT_GE(s.begin, signalled[s.task->w[w]])
              << "SM " << s.sm << " task " << s.index;
          // Its wait ended once the last signal it needs came, not before.
          EXPECT_GE(s.waitEnd, signalled[s.task->w[w]])
              << "SM " << s.sm << " task " << s.index;
        }
      }
    });
  }
  ProfileSource source{"d", "host", "CPU", "c"};
  source.loadStamped = false;
  ProfileSummary s = summarizeProfile(m, steps, source);
  EXPECT_EQ(s.steps, 3);
  EXPECT_EQ(s.stampedPerStep, m.taskCount());
  EXPECT_GT(s.stepUsMedian, 0);
  // One worker thread: at any time one list computes and the others wait
  // on events or for the thread, so the roles' shares are real numbers.
  const ProfileRole &sched = s.roles[int(TraceRole::Sched)];
  EXPECT_TRUE(sched.recorded);
  EXPECT_GT(sched.mean, 0);
  EXPECT_LE(sched.max, 1);
  EXPECT_GT(sched.spansPerStep, 0);
  EXPECT_FALSE(s.roles[int(TraceRole::Load)].recorded);
  EXPECT_GT(s.roles[int(TraceRole::Compute)].mean, 0);
  for (const ProfileSm &p : s.sms) // waiting and computing do not overlap
    EXPECT_LE(p.schedWaitFraction, p.idleFraction + 1e-9) << "SM " << p.sm;

  // Tracing off: no stamps.
  HostExecutor quiet(m, WeightSourceSpec::synthetic(0), HostOptions());
  quiet.generateGreedy({1, 2}, 1);
  EXPECT_TRUE(quiet.readTrace().empty());
}

} // namespace
