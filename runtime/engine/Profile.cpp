//===- Profile.cpp - Per-task traces: walk, Chrome trace, summary ---------===//
#include "runtime/engine/Profile.h"

#include "models/core/Error.h"
#include "runtime/engine/Progress.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

namespace tilec {

const char *roleName(TraceRole role) {
  switch (role) {
  case TraceRole::Sched:
    return "sched";
  case TraceRole::Load:
    return "load";
  case TraceRole::Compute:
    break;
  }
  return "compute";
}

void forEachTaskSpan(const EngineManifest &m,
                     const std::vector<uint64_t> &trace,
                     const std::function<void(const TaskSpan &)> &visit) {
  if (trace.empty())
    return;
  const size_t sms = m.smTasks.size(), words = TILEC_TRACE_WORDS;
  if (sms == 0 || trace.size() % (words * sms) != 0)
    fail("trace: {} stamps do not make [{} SMs, tasks, {}]", trace.size(), sms,
         words);
  const size_t room = trace.size() / words / sms;
  // A [begin, end] pair of a role, or 0, 0 when missing or cut off.
  auto pair = [](const uint64_t *w, int b, uint64_t &begin, uint64_t &end) {
    begin = w[b], end = w[b + 1];
    if (begin == 0 || end < begin)
      begin = end = 0;
  };
  for (size_t sm = 0; sm < sms; ++sm) {
    if (m.smTasks[sm].size() > room)
      fail("trace: SM {} has {} tasks but the trace room for {}", sm,
           m.smTasks[sm].size(), room);
    for (size_t k = 0; k < m.smTasks[sm].size(); ++k) {
      const uint64_t *w = &trace[(sm * room + k) * words];
      TaskSpan s;
      s.sm = int(sm), s.index = int(k), s.task = &m.smTasks[sm][k];
      pair(w, TILEC_TRACE_COMPUTE_BEGIN, s.begin, s.end);
      if (s.begin == 0)
        continue;
      if (s.task->w[TILEC_W_WAIT0] >= 0 || s.task->w[TILEC_W_WAIT1] >= 0)
        pair(w, TILEC_TRACE_WAIT_BEGIN, s.waitBegin, s.waitEnd);
      pair(w, TILEC_TRACE_LOAD_BEGIN, s.loadBegin, s.loadEnd);
      visit(s);
    }
  }
}

std::string taskOpName(const EngineManifest &m, const TilecTask &t) {
  int64_t op = t.w[TILEC_W_OP];
  return op >= 0 && size_t(op) < m.ops.size() ? m.ops[size_t(op)]
                                              : fmt::format("op {}", op);
}

std::string taskPhase(const EngineManifest &m, const TilecTask &t) {
  int64_t op = t.w[TILEC_W_OP];
  return op >= 0 && size_t(op) < m.opPhases.size() ? m.opPhases[size_t(op)]
                                                   : std::string();
}

namespace {

/// Whether the manifest's estimates can be read beside its task lists (a
/// manifest made in memory may have them out of shape; readEngine refuses
/// that).
bool usableEstimates(const EngineManifest &m) {
  if (!m.hasEstimates() || m.smEstimates.size() != m.smTasks.size())
    return false;
  for (size_t s = 0; s < m.smTasks.size(); ++s)
    if (m.smEstimates[s].size() != m.smTasks[s].size())
      return false;
  return true;
}

const char *familyOf(const TilecTask &t) {
  return familyName(TilecTaskFamily(t.w[TILEC_W_FAMILY]));
}

/// The first stamp of any role in any step (times in traces are relative to
/// it).
uint64_t firstStamp(const EngineManifest &m,
                    const std::vector<std::vector<uint64_t>> &steps) {
  uint64_t t0 = UINT64_MAX;
  for (const std::vector<uint64_t> &trace : steps)
    forEachTaskSpan(m, trace, [&](const TaskSpan &s) {
      t0 = std::min(t0, s.begin);
      if (s.waited())
        t0 = std::min(t0, s.waitBegin);
      if (s.loaded())
        t0 = std::min(t0, s.loadBegin);
    });
  return t0;
}

/// The events a task waits on, as "name >= count" (trace arguments).
std::string waitsText(const EngineManifest &m, const TilecTask &t) {
  std::vector<std::string> parts;
  for (auto [w, c] : {std::pair(TILEC_W_WAIT0, TILEC_W_COUNT0),
                      std::pair(TILEC_W_WAIT1, TILEC_W_COUNT1)}) {
    int64_t e = t.w[w];
    if (e < 0)
      continue;
    std::string name = size_t(e) < m.events.size() ? m.events[size_t(e)].name
                                                   : fmt::format("event {}", e);
    parts.push_back(fmt::format("{} >= {}", name, t.w[c]));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

/// The length of [b, e] inside [lo, hi], in ns.
double overlapNs(uint64_t b, uint64_t e, uint64_t lo, uint64_t hi) {
  b = std::max(b, lo), e = std::min(e, hi);
  return e > b ? double(e - b) : 0.0;
}

} // namespace

TraceSlices writeChromeTrace(const EngineManifest &m,
                             const std::vector<std::vector<uint64_t>> &steps,
                             const std::string &path,
                             const std::string &clock) {
  using nlohmann::json;
  json events = json::array();
  const uint64_t t0 = firstStamp(m, steps);
  const size_t sms = m.smTasks.size();
  // Which roles have stamps: the others get no tracks.
  bool present[kTraceRoles] = {false, false, true};
  for (const std::vector<uint64_t> &trace : steps)
    forEachTaskSpan(m, trace, [&](const TaskSpan &s) {
      present[int(TraceRole::Sched)] |= s.waited();
      present[int(TraceRole::Load)] |= s.loaded();
    });
  // The track of (SM, role): compute keeps tid = SM (one row per SM, as
  // before roles had tracks); the sort index puts an SM's roles together.
  auto tid = [&](size_t sm, TraceRole role) {
    return role == TraceRole::Compute
               ? sm
               : (role == TraceRole::Sched ? 1 : 2) * sms + sm;
  };
  events.push_back(
      {{"name", "process_name"},
       {"ph", "M"},
       {"pid", 0},
       {"args", {{"name", fmt::format("tilec {} ({})", m.modelName, clock)}}}});
  for (size_t sm = 0; sm < sms; ++sm)
    for (int r = 0; r < kTraceRoles; ++r) {
      if (!present[r])
        continue;
      const TraceRole role = TraceRole(r);
      events.push_back(
          {{"name", "thread_name"},
           {"ph", "M"},
           {"pid", 0},
           {"tid", tid(sm, role)},
           {"args", {{"name", fmt::format("SM {} {}", sm, roleName(role))}}}});
      events.push_back(
          {{"name", "thread_sort_index"},
           {"ph", "M"},
           {"pid", 0},
           {"tid", tid(sm, role)},
           {"args", {{"sort_index", sm * kTraceRoles + size_t(r)}}}});
    }
  TraceSlices slices;
  const bool estimates = usableEstimates(m);
  auto slice = [&](const TaskSpan &s, TraceRole role, const char *cat,
                   uint64_t b, uint64_t e, json args) {
    events.push_back({{"name", taskOpName(m, *s.task)},
                      {"cat", cat},
                      {"ph", "X"},
                      {"ts", double(b - t0) / 1e3},
                      {"dur", double(e - b) / 1e3},
                      {"pid", 0},
                      {"tid", tid(size_t(s.sm), role)},
                      {"args", std::move(args)}});
  };
  for (size_t step = 0; step < steps.size(); ++step)
    forEachTaskSpan(m, steps[step], [&](const TaskSpan &s) {
      json args = {
          {"step", step}, {"task", s.index}, {"sm", s.sm}, {"role", "compute"}};
      std::string phase = taskPhase(m, *s.task);
      if (!phase.empty())
        args["phase"] = phase;
      if (estimates) {
        const TaskEstimate &e = m.smEstimates[size_t(s.sm)][size_t(s.index)];
        args["predicted_ns"] = e.ns();
        args["bytes"] = e.bytes;
      }
      slice(s, TraceRole::Compute, familyOf(*s.task), s.begin, s.end, args);
      ++slices.compute;
      if (s.waited()) {
        slice(s, TraceRole::Sched, "sched", s.waitBegin, s.waitEnd,
              {{"step", step},
               {"task", s.index},
               {"sm", s.sm},
               {"role", "sched"},
               {"family", familyOf(*s.task)},
               {"waits", waitsText(m, *s.task)}});
        ++slices.sched;
      }
      if (s.loaded()) {
        json load = {{"step", step},
                     {"task", s.index},
                     {"sm", s.sm},
                     {"role", "load"},
                     {"family", familyOf(*s.task)}};
        if (estimates)
          load["bytes"] = m.smEstimates[size_t(s.sm)][size_t(s.index)].bytes;
        slice(s, TraceRole::Load, "load", s.loadBegin, s.loadEnd, load);
        ++slices.load;
      }
    });
  std::ofstream out(path);
  out << json{{"traceEvents", events},
              {"displayTimeUnit", "ns"},
              {"otherData", {{"clock", clock}, {"engine", m.modelName}}}}
             .dump();
  if (!out)
    fail("cannot write the trace '{}'", path);
  return slices;
}

namespace {

struct RowAcc {
  std::string family;
  bool mixed = false;
  int64_t tasks = 0, runs = 0, bytes = 0;
  double ns = 0, predictedNs = 0, runBytes = 0;
};

ProfileRow finishRow(const std::string &name, const RowAcc &a, int64_t steps) {
  ProfileRow r;
  r.name = name;
  r.family = a.mixed ? "" : a.family;
  r.tasks = a.tasks;
  r.runs = a.runs;
  r.totalUs = a.ns / 1e3;
  r.meanUs = a.runs ? r.totalUs / double(a.runs) : 0;
  r.stepUs = r.totalUs / double(steps);
  r.bytes = a.bytes;
  r.gbps = a.ns > 0 ? a.runBytes / a.ns : 0; // bytes per ns = GB/s
  r.predictedUs = a.predictedNs / 1e3;
  r.ratio = r.predictedUs > 0 ? r.stepUs / r.predictedUs : 0;
  return r;
}

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::nth_element(v.begin(), v.begin() + ptrdiff_t(v.size() / 2), v.end());
  return v[v.size() / 2];
}

} // namespace

ProfileSummary summarizeProfile(const EngineManifest &m,
                                const std::vector<std::vector<uint64_t>> &steps,
                                const ProfileSource &source, size_t outliers) {
  if (steps.empty())
    fail("profile: no steps were traced");
  ProfileSummary s;
  s.source = source;
  s.steps = int64_t(steps.size());
  s.tasksPerStep = m.taskCount();
  const bool est = usableEstimates(m);
  const size_t sms = m.smTasks.size();

  // Per task over all steps: time and runs.
  std::vector<std::vector<double>> taskNs(sms);
  std::vector<std::vector<int64_t>> taskRuns(sms);
  for (size_t sm = 0; sm < sms; ++sm) {
    taskNs[sm].assign(m.smTasks[sm].size(), 0);
    taskRuns[sm].assign(m.smTasks[sm].size(), 0);
  }
  std::vector<double> stepUs, stepTaskUs, busySum(sms, 0), idleSum(sms, 0),
      waitSum(sms, 0), waitFracSum(sms, 0), loadSum(sms, 0),
      loadFracSum(sms, 0);
  int64_t stamped = 0, waits = 0, loads = 0;
  for (const std::vector<uint64_t> &trace : steps) {
    // The step is the compute role's: first task start to last task end.
    uint64_t b = UINT64_MAX, e = 0;
    forEachTaskSpan(m, trace, [&](const TaskSpan &t) {
      b = std::min(b, t.begin);
      e = std::max(e, t.end);
    });
    if (e <= b)
      continue; // nothing stamped in this step
    std::vector<double> busy(sms, 0), wait(sms, 0), load(sms, 0);
    forEachTaskSpan(m, trace, [&](const TaskSpan &t) {
      busy[size_t(t.sm)] += double(t.ns());
      taskNs[size_t(t.sm)][size_t(t.index)] += double(t.ns());
      ++taskRuns[size_t(t.sm)][size_t(t.index)];
      ++stamped;
      // The other roles within the step (a first wait may start before it).
      if (t.waited()) {
        wait[size_t(t.sm)] += overlapNs(t.waitBegin, t.waitEnd, b, e);
        ++waits;
      }
      if (t.loaded()) {
        load[size_t(t.sm)] += overlapNs(t.loadBegin, t.loadEnd, b, e);
        ++loads;
      }
    });
    double span = double(e - b);
    stepUs.push_back(span / 1e3);
    double busyNs = 0;
    for (double ns : busy)
      busyNs += ns;
    stepTaskUs.push_back(busyNs / 1e3);
    for (size_t sm = 0; sm < sms; ++sm) {
      busySum[sm] += busy[sm];
      idleSum[sm] += 1.0 - busy[sm] / span;
      waitSum[sm] += wait[sm];
      waitFracSum[sm] += wait[sm] / span;
      loadSum[sm] += load[sm];
      loadFracSum[sm] += load[sm] / span;
    }
  }
  if (stepUs.empty())
    fail("profile: none of the {} steps has a task with time stamps (was the "
         "executor made with tracing on?)",
         steps.size());
  const double timed = double(stepUs.size());
  s.stampedPerStep = stamped / int64_t(steps.size());
  s.stepUsMedian = median(stepUs);
  s.stepUsMin = *std::min_element(stepUs.begin(), stepUs.end());
  s.stepUsMax = *std::max_element(stepUs.begin(), stepUs.end());

  // Families and ops.
  std::map<std::string, RowAcc> families, ops;
  double predictedTaskNs = 0;
  for (size_t sm = 0; sm < sms; ++sm)
    for (size_t k = 0; k < m.smTasks[sm].size(); ++k) {
      const TilecTask &t = m.smTasks[sm][k];
      const std::string family = familyOf(t);
      TaskEstimate e = est ? m.smEstimates[sm][k] : TaskEstimate();
      for (RowAcc *a : {&families[family], &ops[taskOpName(m, t)]}) {
        if (a->tasks > 0 && a->family != family)
          a->mixed = true;
        a->family = family;
        ++a->tasks;
        a->runs += taskRuns[sm][k];
        a->ns += taskNs[sm][k];
        a->bytes += e.bytes;
        a->runBytes += double(e.bytes) * double(taskRuns[sm][k]);
        a->predictedNs += double(e.ns());
      }
      s.bytesPerStep += e.bytes;
      predictedTaskNs += double(e.ns());
    }
  auto rows = [&](const std::map<std::string, RowAcc> &acc) {
    std::vector<ProfileRow> out;
    for (const auto &[name, a] : acc)
      out.push_back(finishRow(name, a, s.steps));
    std::stable_sort(out.begin(), out.end(),
                     [](const ProfileRow &a, const ProfileRow &b) {
                       return a.totalUs > b.totalUs;
                     });
    return out;
  };
  s.families = rows(families);
  s.ops = rows(ops);
  s.stepGbps =
      s.stepUsMedian > 0 ? double(s.bytesPerStep) / (s.stepUsMedian * 1e3) : 0;
  s.bytesNote =
      est ? "bytes per task are tile-partition's estimate (manifest "
            "tasks.estimates.bytes): the weights it reads, scales included, "
            "plus the activations it reads and writes; attention counts its "
            "window (full layers: 4096 keys) of K/V, MoE expert tasks their "
            "slot's expert weights even when the slot is unused this step; "
            "GB/s = bytes of the measured runs / their time (per task, not "
            "summed over SMs)"
          : "bytes unknown: the manifest has no tasks.estimates (an engine "
            "built by hand or by an older tilec)";

  // Per SM and role: the compute role's idle, the sched role's waits, the
  // load role's prefetches, each a share of the step (mean over steps).
  for (size_t sm = 0; sm < sms; ++sm) {
    if (m.smTasks[sm].empty()) {
      ++s.emptySms;
      continue;
    }
    ProfileSm p;
    p.sm = int(sm);
    p.tasks = int64_t(m.smTasks[sm].size());
    p.busyUs = busySum[sm] / timed / 1e3;
    p.idleFraction = std::clamp(idleSum[sm] / timed, 0.0, 1.0);
    p.schedWaitUs = waitSum[sm] / timed / 1e3;
    p.schedWaitFraction = std::clamp(waitFracSum[sm] / timed, 0.0, 1.0);
    p.loadUs = loadSum[sm] / timed / 1e3;
    p.loadFraction = std::clamp(loadFracSum[sm] / timed, 0.0, 1.0);
    s.sms.push_back(p);
  }
  const bool host = source.executor == "host";
  s.idleNote =
      host ? "host executor: an SM row is one task list, run with the others "
             "by the executor's CPU threads in a random legal interleaving, "
             "so a row is idle while other rows' tasks run: not GPU idle"
           : "compute warps: a task is busy from its hand-over to the compute "
             "warps (its waits met) to its signal; waiting on events and the "
             "hand-over count as idle";
  auto role = [&](TraceRole r, bool recorded, const char *measure,
                  double ProfileSm::*fraction, int64_t spans,
                  std::string note) {
    ProfileRole &out = s.roles[int(r)];
    out.role = r;
    out.recorded = recorded;
    out.measure = measure;
    out.note = std::move(note);
    out.spansPerStep = recorded ? spans / int64_t(steps.size()) : 0;
    if (!recorded || s.sms.empty())
      return;
    out.min = 1, out.max = 0;
    for (const ProfileSm &p : s.sms) {
      out.mean += p.*fraction;
      out.min = std::min(out.min, p.*fraction);
      out.max = std::max(out.max, p.*fraction);
    }
    out.mean /= double(s.sms.size());
  };
  role(TraceRole::Sched, source.schedStamped, "waiting on events",
       &ProfileSm::schedWaitFraction, waits,
       host ? "host executor: a task waits from becoming its list's next (the "
              "previous task's end, or the step's start) until a worker's scan "
              "sees its events at their targets; no look-ahead, so it never "
              "overlaps the previous task"
            : "sched warp: from the start of a task's event waits to their "
              "end (tasks without waits have none); it waits while the "
              "compute warps run the previous task, so a wait idles the "
              "compute warps only where it outlasts that task");
  role(TraceRole::Load, source.loadStamped, "prefetching",
       &ProfileSm::loadFraction, loads,
       host ? "not recorded: the host executor has no load role"
            : "load warp: issuing a linear or MoE task's L2 prefetches (other "
              "tasks are skipped); the prefetches are asynchronous, so this "
              "is the time to issue them, not the time L2 takes to fill, and "
              "a MoE task's wait for its plan is not included");
  role(TraceRole::Compute, true, "idle", &ProfileSm::idleFraction, stamped,
       s.idleNote);
  s.idleMean = s.roles[int(TraceRole::Compute)].mean;
  s.idleMin = s.roles[int(TraceRole::Compute)].min;
  s.idleMax = s.roles[int(TraceRole::Compute)].max;

  // The cost model against the run.
  s.predicted = est && m.predictedNs > 0;
  s.costModel = m.costModel;
  if (s.predicted) {
    s.predictedStepUs = double(m.predictedNs) / 1e3;
    s.stepRatio = s.stepUsMedian / s.predictedStepUs;
    s.predictedTaskUs = predictedTaskNs / 1e3;
    s.measuredTaskUs = median(stepTaskUs);
    s.taskRatio =
        s.predictedTaskUs > 0 ? s.measuredTaskUs / s.predictedTaskUs : 0;
    std::vector<std::pair<double, ProfileOutlier>> scored;
    for (size_t sm = 0; sm < sms; ++sm)
      for (size_t k = 0; k < m.smTasks[sm].size(); ++k) {
        const TaskEstimate &e = m.smEstimates[sm][k];
        if (taskRuns[sm][k] == 0 || e.ns() <= 0 || s.taskRatio <= 0)
          continue;
        ProfileOutlier o;
        o.sm = int(sm), o.index = int(k);
        o.op = taskOpName(m, m.smTasks[sm][k]);
        o.family = familyOf(m.smTasks[sm][k]);
        o.predictedUs = double(e.ns()) / 1e3;
        o.measuredUs = taskNs[sm][k] / double(taskRuns[sm][k]) / 1e3;
        o.ratio = o.measuredUs / o.predictedUs;
        if (o.ratio > 0)
          scored.push_back({std::fabs(std::log(o.ratio / s.taskRatio)), o});
      }
    std::stable_sort(
        scored.begin(), scored.end(),
        [](const auto &a, const auto &b) { return a.first > b.first; });
    for (size_t i = 0; i < scored.size() && i < outliers; ++i)
      s.outliers.push_back(scored[i].second);
  }
  return s;
}

namespace {

std::string ratioText(double r) {
  return r > 0 ? fmt::format("{:.2f}x", r) : std::string("-");
}

std::string rowText(const ProfileRow &r, bool predicted, bool withFamily) {
  std::string name = r.name;
  if (withFamily && !r.family.empty())
    name += " (" + r.family + ")";
  std::string line = fmt::format(
      "  {:<34} {:>6} {:>7} {:>11.1f} {:>9.2f} {:>10.1f} {:>11} {:>8.2f}", name,
      r.tasks, r.runs, r.totalUs, r.meanUs, r.stepUs, formatBytes(r.bytes),
      r.gbps);
  if (predicted)
    line += fmt::format(" {:>10.2f} {:>9}", r.predictedUs, ratioText(r.ratio));
  return line + "\n";
}

std::string tableHeader(const char *first, bool predicted) {
  std::string h = fmt::format(
      "  {:<34} {:>6} {:>7} {:>11} {:>9} {:>10} {:>11} {:>8}", first, "tasks",
      "runs", "total us", "mean us", "us/step", "bytes/step", "GB/s");
  if (predicted)
    h += fmt::format(" {:>10} {:>9}", "pred us", "meas/pred");
  return h + "\n";
}

} // namespace

std::string formatProfileSummary(const ProfileSummary &s, size_t maxOps) {
  std::string out;
  out += fmt::format("profile of {} on {}\n", s.source.engine, s.source.device);
  out += fmt::format("times: {}\n", s.source.clock);
  out += fmt::format(
      "steps: {} traced, {} tasks each ({} stamped); step (first task start "
      "to last task end): median {:.1f} us, min {:.1f} us, max {:.1f} us\n",
      s.steps, s.tasksPerStep, s.stampedPerStep, s.stepUsMedian, s.stepUsMin,
      s.stepUsMax);
  out += fmt::format("bytes per step: {} ({:.2f} GB/s over the median step)\n",
                     formatBytes(s.bytesPerStep), s.stepGbps);
  out += fmt::format("  ({})\n", s.bytesNote);

  out += "\nper task family (time: sum of the tasks' stamped spans):\n";
  out += tableHeader("family", s.predicted);
  for (const ProfileRow &r : s.families)
    out += rowText(r, s.predicted, false);
  out += fmt::format("\nper op ({} of {}, by time):\n",
                     std::min(maxOps, s.ops.size()), s.ops.size());
  out += tableHeader("op (family)", s.predicted);
  for (size_t i = 0; i < s.ops.size() && i < maxOps; ++i)
    out += rowText(s.ops[i], s.predicted, true);
  if (s.ops.size() > maxOps)
    out += fmt::format("  ... {} more ops (--json lists every one)\n",
                       s.ops.size() - maxOps);

  out += fmt::format("\nper warp role (share of the step on an SM, mean over "
                     "steps; mean, min and max over the {} SMs with tasks):\n",
                     s.sms.size());
  const char *spansWord[kTraceRoles] = {"waits", "prefetches", "tasks"};
  for (int r = 0; r < kTraceRoles; ++r) {
    const ProfileRole &role = s.roles[r];
    if (!role.recorded) {
      out += fmt::format("  {}: {}\n", roleName(role.role), role.note);
      continue;
    }
    out += fmt::format("  {}: {} {:.1f}% (min {:.1f}%, max {:.1f}%); {} {} "
                       "per step\n",
                       roleName(role.role), role.measure, 100 * role.mean,
                       100 * role.min, 100 * role.max, role.spansPerStep,
                       spansWord[r]);
  }
  for (int r = 0; r < kTraceRoles; ++r)
    if (s.roles[r].recorded && TraceRole(r) != TraceRole::Compute)
      out +=
          fmt::format("  ({}: {})\n", roleName(TraceRole(r)), s.roles[r].note);

  out += fmt::format("\nidle per SM (mean over steps of 1 - busy / step): "
                     "mean {:.1f}%, min {:.1f}%, max {:.1f}% over {} SMs "
                     "with tasks; {} SMs have none\n",
                     100 * s.idleMean, 100 * s.idleMin, 100 * s.idleMax,
                     s.sms.size(), s.emptySms);
  out += fmt::format("  ({})\n", s.idleNote);
  std::vector<ProfileSm> idlest = s.sms;
  std::stable_sort(idlest.begin(), idlest.end(),
                   [](const ProfileSm &a, const ProfileSm &b) {
                     return a.idleFraction > b.idleFraction;
                   });
  std::vector<std::string> parts;
  for (size_t i = 0; i < idlest.size() && i < 6; ++i)
    parts.push_back(fmt::format("SM {} {:.1f}% ({} tasks)", idlest[i].sm,
                                100 * idlest[i].idleFraction, idlest[i].tasks));
  if (!parts.empty())
    out += fmt::format("  idlest: {}\n", fmt::join(parts, ", "));
  parts.clear();
  for (size_t i = idlest.size(); i-- > 0 && idlest.size() - i <= 6;)
    parts.push_back(fmt::format("SM {} {:.1f}% ({} tasks)", idlest[i].sm,
                                100 * idlest[i].idleFraction, idlest[i].tasks));
  if (!parts.empty())
    out += fmt::format("  busiest: {}\n", fmt::join(parts, ", "));

  if (!s.predicted) {
    out += "\npredicted vs measured: the manifest has no task estimates "
           "(recompile the engine with this tilec)\n";
    return out;
  }
  out += fmt::format("\npredicted vs measured (tilec's {} cost model, manifest "
                     "tasks.estimates):\n",
                     s.costModel);
  out += fmt::format("  step: predicted {:.2f} us, measured {:.1f} us "
                     "(median): {}\n",
                     s.predictedStepUs, s.stepUsMedian, ratioText(s.stepRatio));
  out +=
      fmt::format("  sum of task times: predicted {:.2f} us, measured "
                  "{:.1f} us (median over steps): {} overall\n",
                  s.predictedTaskUs, s.measuredTaskUs, ratioText(s.taskRatio));
  out += "  worst tasks (measured / predicted, furthest from the overall "
         "ratio):\n";
  for (const ProfileOutlier &o : s.outliers)
    out += fmt::format("    SM {} task {}: {} ({}): predicted {:.3f} us, "
                       "measured {:.3f} us: {} ({:.2f}x the overall)\n",
                       o.sm, o.index, o.op, o.family, o.predictedUs,
                       o.measuredUs, ratioText(o.ratio), o.ratio / s.taskRatio);
  return out;
}

nlohmann::json profileSummaryJson(const ProfileSummary &s) {
  using nlohmann::json;
  auto rowJson = [&](const ProfileRow &r) {
    json j = {{"name", r.name},
              {"tasks", r.tasks},
              {"runs", r.runs},
              {"total_us", r.totalUs},
              {"mean_us", r.meanUs},
              {"us_per_step", r.stepUs},
              {"bytes_per_step", r.bytes},
              {"gbps", r.gbps}};
    if (!r.family.empty())
      j["family"] = r.family;
    if (s.predicted) {
      j["predicted_us_per_step"] = r.predictedUs;
      j["measured_over_predicted"] = r.ratio;
    }
    return j;
  };
  json families = json::array(), ops = json::array(), sms = json::array(),
       outliers = json::array();
  for (const ProfileRow &r : s.families)
    families.push_back(rowJson(r));
  for (const ProfileRow &r : s.ops)
    ops.push_back(rowJson(r));
  const ProfileRole &sched = s.roles[int(TraceRole::Sched)],
                    &load = s.roles[int(TraceRole::Load)];
  for (const ProfileSm &p : s.sms) {
    json sm = {{"sm", p.sm},
               {"tasks", p.tasks},
               {"busy_us", p.busyUs},
               {"idle_fraction", p.idleFraction}};
    if (sched.recorded) {
      sm["sched_wait_us"] = p.schedWaitUs;
      sm["sched_wait_fraction"] = p.schedWaitFraction;
    }
    if (load.recorded) {
      sm["load_us"] = p.loadUs;
      sm["load_fraction"] = p.loadFraction;
    }
    sms.push_back(sm);
  }
  json roles = json::object(), recorded = json::array();
  for (const ProfileRole &r : s.roles) {
    json j = {{"recorded", r.recorded}, {"note", r.note}};
    if (r.recorded) {
      recorded.push_back(roleName(r.role));
      j["measure"] = r.measure;
      j["mean"] = r.mean;
      j["min"] = r.min;
      j["max"] = r.max;
      j["spans_per_step"] = r.spansPerStep;
    }
    roles[roleName(r.role)] = j;
  }
  for (const ProfileOutlier &o : s.outliers)
    outliers.push_back({{"sm", o.sm},
                        {"task", o.index},
                        {"op", o.op},
                        {"family", o.family},
                        {"predicted_us", o.predictedUs},
                        {"measured_us", o.measuredUs},
                        {"measured_over_predicted", o.ratio}});
  json j = {{"engine", s.source.engine},
            {"executor", s.source.executor},
            {"device", s.source.device},
            {"clock", s.source.clock},
            {"steps", s.steps},
            {"tasks_per_step", s.tasksPerStep},
            {"stamped_per_step", s.stampedPerStep},
            {"step_us",
             {{"median", s.stepUsMedian},
              {"min", s.stepUsMin},
              {"max", s.stepUsMax}}},
            {"bytes_per_step", s.bytesPerStep},
            {"step_gbps", s.stepGbps},
            {"bytes_note", s.bytesNote},
            {"families", families},
            {"ops", ops},
            {"roles", roles},
            {"idle",
             {{"role", "compute"},
              {"recorded_roles", recorded},
              {"mean", s.idleMean},
              {"min", s.idleMin},
              {"max", s.idleMax},
              {"sms_without_tasks", s.emptySms},
              {"note", s.idleNote},
              {"per_sm", sms}}}};
  if (s.predicted)
    j["predicted"] = {{"cost_model", s.costModel},
                      {"step_us", s.predictedStepUs},
                      {"step_measured_over_predicted", s.stepRatio},
                      {"task_us", s.predictedTaskUs},
                      {"measured_task_us", s.measuredTaskUs},
                      {"task_measured_over_predicted", s.taskRatio},
                      {"outliers", outliers}};
  else
    j["predicted"] = nullptr;
  return j;
}

} // namespace tilec
