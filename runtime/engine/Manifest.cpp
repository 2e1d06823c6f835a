//===- Manifest.cpp - Reading and writing engine directories --------------===//
#include "runtime/engine/Manifest.h"

#include "models/core/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace tilec {

using nlohmann::json;

const BufferInfo &EngineManifest::buffer(const std::string &name) const {
  for (const BufferInfo &b : buffers)
    if (b.name == name)
      return b;
  fail("engine manifest: no buffer named '{}'", name);
}

const WeightInfo &EngineManifest::weight(const std::string &name) const {
  for (const WeightInfo &w : weights)
    if (w.name == name)
      return w;
  fail("engine manifest: no weight named '{}'", name);
}

const InstanceInfo &EngineManifest::instance(int64_t id) const {
  if (id < 0 || id >= int64_t(instances.size()) ||
      instances[size_t(id)].id != id)
    fail("engine manifest: no instance {}", id);
  return instances[size_t(id)];
}

int64_t EngineManifest::taskCount() const {
  int64_t n = 0;
  for (const auto &list : smTasks)
    n += int64_t(list.size());
  return n;
}

std::vector<LaunchGroup> launchGroups(const EngineManifest &m) {
  // Group ids in order of first appearance; events first claim theirs.
  const int64_t events = int64_t(m.events.size());
  std::vector<int64_t> groupOfEvent(size_t(events), -1);
  std::map<int64_t, int64_t> groupOfOp; // tasks that signal nothing
  std::vector<LaunchGroup> groups;
  std::vector<std::vector<int64_t>> waitsOf; // group -> events waited on
  auto groupFor = [&](const TilecTask &t) -> int64_t {
    const int64_t e = t.w[TILEC_W_SIGNAL], op = t.w[TILEC_W_OP];
    if (e >= events || e < -1)
      fail("engine: a task of op {} signals event {}, outside the manifest's "
           "{} events",
           op, e, events);
    int64_t &slot = e >= 0 ? groupOfEvent[size_t(e)]
                           : groupOfOp.try_emplace(op, -1).first->second;
    if (slot < 0) {
      slot = int64_t(groups.size());
      std::string name = e >= 0 ? m.events[size_t(e)].name
                                : (op >= 0 && op < int64_t(m.ops.size())
                                       ? m.ops[size_t(op)]
                                       : "op " + std::to_string(op));
      groups.push_back({std::move(name), {}});
      waitsOf.emplace_back();
    }
    return slot;
  };
  for (const auto &list : m.smTasks)
    for (const TilecTask &t : list) {
      int64_t g = groupFor(t);
      groups[size_t(g)].tasks.push_back(t);
      for (int k = 0; k < 2; ++k) {
        const int64_t e = t.w[TILEC_W_WAIT0 + 2 * k];
        if (e < 0)
          continue;
        if (e >= events)
          fail("engine: a task of '{}' waits on event {}, outside the "
               "manifest's {} events",
               groups[size_t(g)].name, e, events);
        waitsOf[size_t(g)].push_back(e);
      }
    }
  // Kahn's algorithm, taking the lowest ready group id first.
  const size_t n = groups.size();
  std::vector<std::vector<size_t>> users(n);
  std::vector<int64_t> pending(n, 0);
  for (size_t g = 0; g < n; ++g) {
    std::vector<int64_t> &w = waitsOf[g];
    std::sort(w.begin(), w.end());
    w.erase(std::unique(w.begin(), w.end()), w.end());
    for (int64_t e : w) {
      int64_t producer = groupOfEvent[size_t(e)];
      if (producer < 0)
        fail("engine: tasks of '{}' wait on event '{}', which no task "
             "signals",
             groups[g].name, m.events[size_t(e)].name);
      if (size_t(producer) == g)
        fail("engine: tasks of '{}' wait on their own event", groups[g].name);
      users[size_t(producer)].push_back(g);
      ++pending[g];
    }
  }
  std::set<size_t> ready;
  for (size_t g = 0; g < n; ++g)
    if (pending[g] == 0)
      ready.insert(g);
  std::vector<LaunchGroup> ordered;
  ordered.reserve(n);
  while (!ready.empty()) {
    size_t g = *ready.begin();
    ready.erase(ready.begin());
    for (size_t u : users[g])
      if (--pending[u] == 0)
        ready.insert(u);
    ordered.push_back(std::move(groups[g]));
  }
  if (ordered.size() != n)
    fail("engine: the task groups' waits form a cycle ({} of {} groups "
         "ordered)",
         ordered.size(), n);
  return ordered;
}

const char *familyName(TilecTaskFamily f) {
  static const char *names[] = {"embed",       "linear",        "attention",
                                "router_topk", "moe_gate_up",   "moe_down",
                                "moe_combine", "argmax_reduce", "concat",
                                "spec_accept", "spec_update",   "draft_fill",
                                "silu_mul"};
  static_assert(sizeof(names) / sizeof(names[0]) == TILEC_TASK_FAMILY_COUNT,
                "a name for every task family");
  return unsigned(f) < TILEC_TASK_FAMILY_COUNT ? names[f] : "?";
}

namespace {

TilecTaskFamily parseFamily(const std::string &name, const std::string &where) {
  for (int f = 0; f < TILEC_TASK_FAMILY_COUNT; ++f)
    if (name == familyName(TilecTaskFamily(f)))
      return TilecTaskFamily(f);
  fail("{}: unknown task family '{}'", where, name);
}

json toJson(const EngineManifest &m) {
  json j;
  j["format"] = "tilec-engine";
  j["abi_version"] = m.abiVersion;
  j["tilec_version"] = m.tilecVersion;
  j["model"] = {{"name", m.modelName},
                {"config", m.modelConfig},
                {"drafter_config", m.drafterConfig},
                {"function", m.function}};
  j["target"] = {{"name", m.targetName},
                 {"arch", m.arch},
                 {"sms", m.sms},
                 {"smem_per_block", m.smemPerBlock}};
  j["launch"] = {{"grid", m.sms},
                 {"threads", m.threadsPerBlock},
                 {"dynamic_smem", m.dynamicSmem}};
  j["step"] = {{"tokens", m.tokens},
               {"tokens_buffer", m.tokensBuffer},
               {"positions_buffer", m.positionsBuffer},
               {"logits_buffer", m.logitsBuffer},
               {"argmax_buffer", m.argmaxBuffer}};
  if (m.spec.enabled())
    j["step"]["dflash"] = {{"tokens_buffer", m.spec.tokensBuffer},
                           {"positions_buffer", m.spec.positionsBuffer},
                           {"forced_buffer", m.spec.forcedBuffer},
                           {"sampling_buffer", m.spec.samplingBuffer},
                           {"out_buffer", m.spec.outBuffer},
                           {"drafter_mode", m.spec.drafterMode}};
  if (!m.spec.draftLogitsBuffer.empty())
    j["step"]["dflash"]["draft_logits_buffer"] = m.spec.draftLogitsBuffer;
  j["regions"] = {{"arena_bytes", m.arenaBytes},
                  {"weight_bytes", m.weightBytes},
                  {"kv_bytes", m.kvBytes}};
  for (const BufferInfo &b : m.buffers)
    j["buffers"].push_back({{"name", b.name},
                            {"dtype", b.dtype},
                            {"shape", b.shape},
                            {"offset", b.offset},
                            {"bytes", b.bytes}});
  for (const WeightInfo &w : m.weights) {
    json e = {{"name", w.name},
              {"format", w.format},
              {"shape", w.shape},
              {"offset", w.offset},
              {"bytes", w.bytes},
              {"scale_offset", w.scaleOffset},
              {"scale_bytes", w.scaleBytes}};
    if (!w.parts.empty())
      e["parts"] = w.parts;
    j["weights"].push_back(e);
  }
  for (const KVCacheInfo &c : m.caches)
    j["kv_caches"].push_back({{"name", c.name},
                              {"kv_heads", c.kvHeads},
                              {"qk_dim", c.qkDim},
                              {"v_dim", c.vDim},
                              {"capacity", c.capacity},
                              {"window", c.window},
                              {"key_offset", c.keyOffset},
                              {"value_offset", c.valueOffset}});
  for (const InstanceInfo &i : m.instances)
    j["instances"].push_back({{"id", i.id},
                              {"family", familyName(i.family)},
                              {"params", i.params},
                              {"symbol", i.symbol}});
  for (const EventInfo &e : m.events)
    j["events"].push_back(
        {{"name", e.name}, {"signals_per_step", e.signalsPerStep}});
  j["ops"] = m.ops;
  if (!m.opPhases.empty())
    j["op_phases"] = m.opPhases;
  json counts = json::array();
  for (const auto &list : m.smTasks)
    counts.push_back(list.size());
  j["tasks"] = {{"file", "tasks.bin"},
                {"words_per_task", TILEC_TASK_WORDS},
                {"per_sm", counts}};
  if (m.hasEstimates()) {
    // Flat arrays in tasks.bin's order (SM 0's tasks first).
    json start = json::array(), end = json::array(), bytes = json::array(),
         flops = json::array();
    for (const auto &list : m.smEstimates)
      for (const TaskEstimate &e : list) {
        start.push_back(e.startNs);
        end.push_back(e.endNs);
        bytes.push_back(e.bytes);
        flops.push_back(e.flops);
      }
    j["tasks"]["estimates"] = {{"cost_model", m.costModel},
                               {"predicted_ns", m.predictedNs},
                               {"start_ns", start},
                               {"end_ns", end},
                               {"bytes", bytes},
                               {"flops", flops}};
  }
  j["kernel"] = {{"file", m.kernelFile}, {"sha256", m.kernelSha256}};
  return j;
}

template <typename T>
T get(const json &j, const char *key, const std::string &where) {
  auto it = j.find(key);
  if (it == j.end())
    fail("{}: missing field \"{}\"", where, key);
  try {
    return it->get<T>();
  } catch (const json::exception &) {
    fail("{}: field \"{}\" has the wrong type", where, key);
  }
}

EngineManifest fromJson(const json &j, const std::string &where) {
  if (!j.is_object() || j.value("format", "") != "tilec-engine")
    fail("{}: not a tilec engine manifest (\"format\" is not \"tilec-engine\")",
         where);
  EngineManifest m;
  m.abiVersion = get<int64_t>(j, "abi_version", where);
  if (m.abiVersion != TILEC_ABI_VERSION)
    fail("{}: engine ABI version {} but this runtime speaks {}; recompile the "
         "engine "
         "with this tilec",
         where, m.abiVersion, TILEC_ABI_VERSION);
  m.tilecVersion = get<std::string>(j, "tilec_version", where);
  const json &model = get<json>(j, "model", where);
  m.modelName = get<std::string>(model, "name", where + " model");
  m.modelConfig = get<std::string>(model, "config", where + " model");
  m.drafterConfig = get<std::string>(model, "drafter_config", where + " model");
  m.function = get<std::string>(model, "function", where + " model");
  const json &target = get<json>(j, "target", where);
  m.targetName = get<std::string>(target, "name", where + " target");
  m.arch = get<std::string>(target, "arch", where + " target");
  m.sms = get<int64_t>(target, "sms", where + " target");
  m.smemPerBlock = get<int64_t>(target, "smem_per_block", where + " target");
  const json &launch = get<json>(j, "launch", where);
  m.threadsPerBlock = get<int64_t>(launch, "threads", where + " launch");
  m.dynamicSmem = get<int64_t>(launch, "dynamic_smem", where + " launch");
  const json &step = get<json>(j, "step", where);
  m.tokens = get<int64_t>(step, "tokens", where + " step");
  m.tokensBuffer = get<std::string>(step, "tokens_buffer", where + " step");
  m.positionsBuffer =
      get<std::string>(step, "positions_buffer", where + " step");
  m.logitsBuffer = get<std::string>(step, "logits_buffer", where + " step");
  m.argmaxBuffer = get<std::string>(step, "argmax_buffer", where + " step");
  if (step.contains("dflash")) {
    const json &spec = get<json>(step, "dflash", where + " step");
    const std::string w = where + " step.dflash";
    m.spec.tokensBuffer = get<std::string>(spec, "tokens_buffer", w);
    m.spec.positionsBuffer = get<std::string>(spec, "positions_buffer", w);
    m.spec.forcedBuffer = get<std::string>(spec, "forced_buffer", w);
    m.spec.samplingBuffer = get<std::string>(spec, "sampling_buffer", w);
    m.spec.outBuffer = get<std::string>(spec, "out_buffer", w);
    m.spec.drafterMode = get<std::string>(spec, "drafter_mode", w);
    if (m.spec.drafterMode != "block" && m.spec.drafterMode != "autoregressive")
      fail("{}: drafter_mode is \"{}\", expected \"block\" or "
           "\"autoregressive\"",
           w, m.spec.drafterMode);
    if (spec.contains("draft_logits_buffer"))
      m.spec.draftLogitsBuffer =
          get<std::string>(spec, "draft_logits_buffer", w);
    if (m.spec.outBuffer.empty())
      fail("{}: out_buffer is empty", w);
  }
  const json &regions = get<json>(j, "regions", where);
  m.arenaBytes = get<int64_t>(regions, "arena_bytes", where + " regions");
  m.weightBytes = get<int64_t>(regions, "weight_bytes", where + " regions");
  m.kvBytes = get<int64_t>(regions, "kv_bytes", where + " regions");
  for (const json &b : j.value("buffers", json::array()))
    m.buffers.push_back(
        {get<std::string>(b, "name", where + " buffer"),
         get<std::string>(b, "dtype", where + " buffer"),
         get<std::vector<int64_t>>(b, "shape", where + " buffer"),
         get<int64_t>(b, "offset", where + " buffer"),
         get<int64_t>(b, "bytes", where + " buffer")});
  for (const json &w : j.value("weights", json::array())) {
    WeightInfo info;
    info.name = get<std::string>(w, "name", where + " weight");
    info.format = get<std::string>(w, "format", where + " weight " + info.name);
    info.shape =
        get<std::vector<int64_t>>(w, "shape", where + " weight " + info.name);
    info.offset = get<int64_t>(w, "offset", where + " weight " + info.name);
    info.bytes = get<int64_t>(w, "bytes", where + " weight " + info.name);
    info.scaleOffset =
        get<int64_t>(w, "scale_offset", where + " weight " + info.name);
    info.scaleBytes =
        get<int64_t>(w, "scale_bytes", where + " weight " + info.name);
    info.parts = w.value("parts", std::vector<std::string>());
    m.weights.push_back(info);
  }
  for (const json &c : j.value("kv_caches", json::array()))
    m.caches.push_back({get<std::string>(c, "name", where + " kv cache"),
                        get<int64_t>(c, "kv_heads", where + " kv cache"),
                        get<int64_t>(c, "qk_dim", where + " kv cache"),
                        get<int64_t>(c, "v_dim", where + " kv cache"),
                        get<int64_t>(c, "capacity", where + " kv cache"),
                        get<int64_t>(c, "window", where + " kv cache"),
                        get<int64_t>(c, "key_offset", where + " kv cache"),
                        get<int64_t>(c, "value_offset", where + " kv cache")});
  for (const json &i : j.value("instances", json::array())) {
    InstanceInfo info;
    info.id = get<int64_t>(i, "id", where + " instance");
    info.family =
        parseFamily(get<std::string>(i, "family", where + " instance"), where);
    info.params =
        get<std::map<std::string, int64_t>>(i, "params", where + " instance");
    info.symbol = get<std::string>(i, "symbol", where + " instance");
    if (info.id != int64_t(m.instances.size()))
      fail("{}: instance ids must be 0, 1, 2, ... in order (got {} at {})",
           where, info.id, m.instances.size());
    m.instances.push_back(info);
  }
  for (const json &e : j.value("events", json::array()))
    m.events.push_back(
        {get<std::string>(e, "name", where + " event"),
         get<uint32_t>(e, "signals_per_step", where + " event")});
  m.ops = j.value("ops", std::vector<std::string>());
  m.opPhases = j.value("op_phases", std::vector<std::string>());
  if (!m.opPhases.empty() && m.opPhases.size() != m.ops.size())
    fail("{}: op_phases has {} entries for {} ops", where, m.opPhases.size(),
         m.ops.size());
  const json &tasks = get<json>(j, "tasks", where);
  if (get<int64_t>(tasks, "words_per_task", where + " tasks") !=
      TILEC_TASK_WORDS)
    fail("{}: tasks.words_per_task is not {}", where, TILEC_TASK_WORDS);
  std::vector<int64_t> perSm =
      get<std::vector<int64_t>>(tasks, "per_sm", where + " tasks");
  if (int64_t(perSm.size()) != m.sms)
    fail("{}: tasks.per_sm has {} entries for {} SMs", where, perSm.size(),
         m.sms);
  m.smTasks.resize(perSm.size());
  for (size_t s = 0; s < perSm.size(); ++s) {
    if (perSm[s] < 0)
      fail("{}: tasks.per_sm[{}] is negative", where, s);
    m.smTasks[s].resize(size_t(perSm[s]));
  }
  if (tasks.contains("estimates")) {
    const std::string w = where + " tasks.estimates";
    const json &est = get<json>(tasks, "estimates", where + " tasks");
    m.costModel = get<std::string>(est, "cost_model", w);
    m.predictedNs = get<int64_t>(est, "predicted_ns", w);
    const size_t n = size_t(m.taskCount());
    auto column = [&](const char *key) {
      std::vector<int64_t> v = get<std::vector<int64_t>>(est, key, w);
      if (v.size() != n)
        fail("{}: {} has {} entries for {} tasks", w, key, v.size(), n);
      return v;
    };
    std::vector<int64_t> start = column("start_ns"), end = column("end_ns"),
                         bytes = column("bytes"), flops = column("flops");
    m.smEstimates.resize(m.smTasks.size());
    size_t i = 0;
    for (size_t s = 0; s < m.smTasks.size(); ++s)
      for (size_t k = 0; k < m.smTasks[s].size(); ++k, ++i) {
        if (end[i] < start[i])
          fail("{}: task {} (SM {} task {}) ends at {} ns, before its start "
               "at {} ns",
               w, i, s, k, end[i], start[i]);
        m.smEstimates[s].push_back({start[i], end[i], bytes[i], flops[i]});
      }
  }
  const json &kernel = get<json>(j, "kernel", where);
  m.kernelFile = get<std::string>(kernel, "file", where + " kernel");
  m.kernelSha256 = get<std::string>(kernel, "sha256", where + " kernel");
  return m;
}

} // namespace

std::string writeEngine(const std::string &dir, const EngineManifest &manifest,
                        const std::string &kernelSource) {
  if (manifest.hasEstimates()) {
    bool parallel = manifest.smEstimates.size() == manifest.smTasks.size();
    for (size_t s = 0; parallel && s < manifest.smTasks.size(); ++s)
      parallel = manifest.smEstimates[s].size() == manifest.smTasks[s].size();
    if (!parallel)
      return "writing engine " + dir +
             ": the task estimates are not parallel to the task lists";
  }
  try {
    std::filesystem::create_directories(dir);
    {
      std::ofstream out(dir + "/manifest.json");
      out << toJson(manifest).dump(1) << "\n";
      if (!out)
        return "cannot write " + dir + "/manifest.json";
    }
    {
      std::ofstream out(dir + "/tasks.bin", std::ios::binary);
      for (const auto &list : manifest.smTasks)
        out.write(reinterpret_cast<const char *>(list.data()),
                  std::streamsize(list.size() * sizeof(TilecTask)));
      if (!out)
        return "cannot write " + dir + "/tasks.bin";
    }
    std::ofstream out(dir + "/" + manifest.kernelFile);
    out << kernelSource;
    if (!out)
      return "cannot write " + dir + "/" + manifest.kernelFile;
  } catch (const std::exception &e) {
    return std::string("writing engine ") + dir + ": " + e.what();
  }
  return "";
}

EngineManifest readEngine(const std::string &dir) {
  std::string path = dir + "/manifest.json";
  std::ifstream in(path);
  if (!in)
    fail("{}: no engine here (cannot open manifest.json)", dir);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    fail("{}: not valid JSON", path);
  EngineManifest m = fromJson(j, path);
  std::string tasksPath = dir + "/tasks.bin";
  std::ifstream tasks(tasksPath, std::ios::binary | std::ios::ate);
  if (!tasks)
    fail("{}: cannot open", tasksPath);
  int64_t expected = m.taskCount() * int64_t(sizeof(TilecTask));
  if (int64_t(tasks.tellg()) != expected)
    fail("{}: {} bytes, expected {} ({} tasks of {} bytes)", tasksPath,
         int64_t(tasks.tellg()), expected, m.taskCount(), sizeof(TilecTask));
  tasks.seekg(0);
  for (auto &list : m.smTasks)
    tasks.read(reinterpret_cast<char *>(list.data()),
               std::streamsize(list.size() * sizeof(TilecTask)));
  // Every task must name a known instance of its family and known events.
  for (size_t s = 0; s < m.smTasks.size(); ++s)
    for (size_t i = 0; i < m.smTasks[s].size(); ++i) {
      const TilecTask &t = m.smTasks[s][i];
      int64_t inst = t.w[TILEC_W_INSTANCE];
      if (inst < 0 || inst >= int64_t(m.instances.size()) ||
          m.instances[size_t(inst)].family != t.w[TILEC_W_FAMILY])
        fail("{}: SM {} task {} names instance {} of family {}, which the "
             "manifest "
             "does not have",
             tasksPath, s, i, inst, t.w[TILEC_W_FAMILY]);
      for (int w : {TILEC_W_WAIT0, TILEC_W_WAIT1, TILEC_W_SIGNAL})
        if (t.w[w] < -1 || t.w[w] >= int64_t(m.events.size()))
          fail("{}: SM {} task {} uses event {} of {}", tasksPath, s, i, t.w[w],
               m.events.size());
    }
  std::ifstream kernel(dir + "/" + m.kernelFile);
  if (!kernel)
    fail("{}/{}: the engine's kernel source is missing", dir, m.kernelFile);
  return m;
}

} // namespace tilec
