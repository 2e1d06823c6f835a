//===- tile-run.cpp - Run tilec models and engines
//-------------------------===//
//
// The runtime's command line (no LLVM in it):
//   tile-run presets                         list the built-in models
//   tile-run synth MODEL -o DIR              write a synthetic checkpoint
//   tile-run reference MODEL --prompt-ids .. greedy tokens from the CPU
//   reference
//   tile-run run ENGINE_DIR --prompt-ids ..  greedy tokens from a compiled
//                                            engine (--executor gpu: the
//                                            megakernel on a GPU; host: the
//                                            host executor on the CPU; auto:
//                                            the GPU when there is one)
//   tile-run run ENGINE_DIR --prompt TEXT    the same from text (the model
//                                            directory's tokenizer.json),
//                                            streaming the decoded text
//   tile-run tokenize PATH --text TEXT       ids of a text and its round trip
//   tile-run profile ENGINE_DIR [-n STEPS]   per-task times of STEPS steps:
//                                            trace.json, timeline.png and
//                                            summary.txt (runtime/engine/
//                                            Profile.h)
//
//===----------------------------------------------------------------------===//
#include "models/core/CheckpointWeights.h"
#include "models/core/Config.h"
#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "models/core/Reference.h"
#include "models/core/Synthetic.h"
#include "models/core/Tokenizer.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/GpuEngine.h"
#include "runtime/cuda/SelectExecutor.h"
#include "runtime/engine/Bench.h"
#include "runtime/engine/Executor.h"
#include "runtime/engine/Manifest.h"
#include "runtime/engine/Profile.h"
#include "runtime/engine/Progress.h"
#include "runtime/engine/ReferenceCheck.h"
#include "runtime/engine/SampleCheck.h"
#include "runtime/engine/Timeline.h"
#include "runtime/engine/WeightPacker.h"
#include "runtime/host/HostExecutor.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

using namespace tilec;

namespace {

/// Where a model's weights come from: its checkpoint, or the synthetic
/// generator when the model is a preset (or --synthetic is given).
std::unique_ptr<WeightSource> openWeights(const Model &model, bool synthetic,
                                          uint64_t seed) {
  if (synthetic || model.dir.empty())
    return std::make_unique<SyntheticWeights>(model, seed);
  return std::make_unique<CheckpointWeights>(model.dir, model.drafterDir);
}

std::vector<int32_t> parseIds(const std::string &text, int64_t vocabSize) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    std::string item = text.substr(
        pos, end == std::string::npos ? std::string::npos : end - pos);
    char *rest = nullptr;
    long value = std::strtol(item.c_str(), &rest, 10);
    if (item.empty() || *rest != '\0')
      fail("--prompt-ids: '{}' is not an integer (expected ids like 1,2,3)",
           item);
    if (value < 0 || value >= vocabSize)
      fail("--prompt-ids: token id {} is outside the vocabulary [0, {})", value,
           vocabSize);
    ids.push_back(int32_t(value));
    if (end == std::string::npos)
      break;
    pos = end + 1;
  }
  if (ids.empty())
    fail("--prompt-ids: no token ids given");
  return ids;
}

int runReference(const std::string &name, const std::string &prompt,
                 int64_t count, bool synthetic, uint64_t seed, bool json) {
  // An engine directory: the model it was compiled from (--num-layers too).
  std::error_code ec;
  const bool engine =
      std::filesystem::is_regular_file(name + "/manifest.json", ec);
  Model model = engine ? engineModel(readEngine(name)) : loadModel(name);
  synthetic = synthetic || (engine && model.dir.empty());
  std::unique_ptr<WeightSource> weights = openWeights(model, synthetic, seed);
  std::vector<int32_t> ids = parseIds(prompt, model.target.vocabSize);
  ReferenceModel reference(model.target, *weights);
  auto start = std::chrono::steady_clock::now();
  std::vector<int32_t> tokens = reference.generateGreedy(ids, count);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (json) {
    nlohmann::json out = {{"model", name},
                          {"executor", "cpu-reference"},
                          {"prompt", ids},
                          {"tokens", tokens},
                          {"seconds", seconds}};
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::cout << fmt::format("{}\n", fmt::join(tokens, " "));
  std::cerr << fmt::format(
      "tile-run: {} tokens in {:.3f} s on the CPU reference "
      "model ({} weights)\n",
      tokens.size(), seconds,
      synthetic || model.dir.empty() ? "synthetic" : "checkpoint");
  return 0;
}

/// The tokenizer.json for an engine: `override` (--tokenizer) if given, else
/// the one in the model directory the engine was compiled from, else the one
/// in `weightsDir`. Fails naming where it looked.
Tokenizer engineTokenizer(const EngineManifest &manifest,
                          const std::string &override,
                          const std::string &weightsDir,
                          const std::string &engineDir) {
  if (!override.empty())
    return Tokenizer::load(override);
  std::error_code ec;
  std::vector<std::string> looked;
  for (const std::string &dir : {manifest.modelName, weightsDir}) {
    if (dir.empty() || !std::filesystem::is_directory(dir, ec))
      continue;
    std::string file = (std::filesystem::path(dir) / "tokenizer.json").string();
    if (std::filesystem::is_regular_file(file, ec))
      return Tokenizer::load(file);
    looked.push_back(file);
  }
  fail("--prompt: engine '{}' has no tokenizer: {}; give one with --tokenizer "
       "PATH (a tokenizer.json or a directory holding one)",
       engineDir,
       looked.empty()
           ? fmt::format("it was compiled from '{}', which is not a model "
                         "directory",
                         manifest.modelName)
           : fmt::format("there is no {}", fmt::join(looked, " nor ")));
}

/// The text of the generated ids, as a streaming decoder gives it; ids the
/// tokenizer does not have (models pad their vocabulary) give no text.
struct TextStream {
  const Tokenizer &tokenizer;
  Tokenizer::StreamDecoder decoder;
  std::string text;
  explicit TextStream(const Tokenizer &t) : tokenizer(t), decoder(t) {}
  std::string push(int32_t id) {
    if (id < 0 || id >= tokenizer.vocabSize())
      return {};
    std::string piece;
    try {
      piece = decoder.push(id);
    } catch (const Error &) {
    }
    text += piece;
    return piece;
  }
  std::string finish() {
    std::string piece = decoder.finish();
    text += piece;
    return piece;
  }
};

/// `--define NAME=VALUE` (repeatable) as NVRTC options: device-library
/// switches such as TILEC_GEMV_MMA_MIN_T, for measuring one choice against
/// another without recompiling the engine.
std::vector<std::string> defineOptions(const std::vector<std::string> &defs) {
  std::vector<std::string> out;
  for (const std::string &d : defs) {
    const size_t eq = d.find('=');
    const std::string name = d.substr(0, eq);
    bool ok = eq != std::string::npos && eq > 0 && eq + 1 < d.size() &&
              !std::isdigit(static_cast<unsigned char>(name[0]));
    for (char ch : d)
      ok &= std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
            ch == '=' || ch == '-' || ch == '.' || ch == '(' || ch == ')' ||
            ch == '*' || ch == '+';
    for (char ch : name)
      ok &= std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
    if (!ok)
      fail("--define '{}': expected NAME=VALUE (a C identifier, then a value "
           "of letters, digits and _-.()*+)",
           d);
    out.push_back("-D" + d);
  }
  return out;
}

struct RunOptions {
  std::string engineDir, executor = "auto", prompt = "1,2,3,4", weightsDir;
  std::optional<std::string> promptText; // --prompt
  std::string tokenizerPath;             // --tokenizer
  int64_t count = 16;
  std::optional<uint64_t> seed;
  uint64_t interleavingsSeed = 0;
  int threads = 1;
  bool noEventChecks = false, json = false, check = false;
  bool oracleDraft = false, trace = false;
  std::string launch = "megakernel";
  std::string traceOut; // Chrome trace of the last step (GPU)
  int64_t corruptEvery = 0;
  float temperature = 0;
  uint32_t sampleSeed = 0;
  // --check: routing near-ties, and the logit rows' tolerance.
  double tieEpsilon = ReferenceCheckOptions().tieEpsilon;
  double logitTolerance = ReferenceCheckOptions().logitTolerance;

  // GPU executor.
  int device = 0;
  uint64_t watchdogMs = 10000;
  bool noCache = false;
  std::vector<std::string> defines; // --define NAME=VALUE
};

/// `tile-run run`'s options as the runtime's executor choice
/// (runtime/cuda/SelectExecutor.h picks and loads it).
ExecutorChoice executorChoice(const RunOptions &o) {
  ExecutorChoice choice;
  choice.kind = parseExecutorKind(o.executor);
  choice.host.interleavingSeed = o.interleavingsSeed;
  choice.host.threads = o.threads;
  choice.host.checkEvents = !o.noEventChecks;
  choice.gpu.device = o.device;
  choice.gpu.watchdogMs = o.watchdogMs;
  choice.gpu.useCache = !o.noCache;
  choice.gpu.trace = o.trace || !o.traceOut.empty();
  choice.gpu.perOpLaunch = o.launch == "per-op";
  choice.gpu.nvrtcOptions = defineOptions(o.defines);
  return choice;
}

/// The vocabulary of an engine: its embedding's V, else its model config's.
int64_t engineVocab(const EngineManifest &m) {
  for (const InstanceInfo &i : m.instances)
    if (i.family == TILEC_TASK_EMBED && i.params.count("V"))
      return i.params.at("V");
  return engineModel(m).target.vocabSize;
}

/// The engine's weights for the CPU reference model.
std::unique_ptr<WeightSource> cpuWeights(const WeightSourceSpec &weights,
                                         const Model &model) {
  if (weights.kind == WeightSourceSpec::Kind::Synthetic)
    return std::make_unique<SyntheticWeights>(
        weights.model ? *weights.model : model, weights.seed);
  // As the engine's weight packer: without a drafter directory, the drafter of
  // a checkpoint is its drafter/ or dflash/ folder.
  std::string drafterDir = weights.drafterDir;
  std::error_code ec;
  if (drafterDir.empty() && model.drafter)
    for (const char *sub : {"drafter", "dflash"})
      if (std::filesystem::is_directory(
              std::filesystem::path(weights.dir) / sub, ec))
        drafterDir = (std::filesystem::path(weights.dir) / sub).string();
  return std::make_unique<CheckpointWeights>(weights.dir, drafterDir);
}

/// Per decode step, the time each part of a DFlash step spans on the GPU
/// (first task start to last task end, from the per-task trace stamps), and
/// the whole step's.
struct PhaseTimes {
  std::map<std::string, std::vector<double>> us;
  void add(const EngineManifest &m, const std::vector<uint64_t> &trace) {
    std::map<std::string, std::pair<uint64_t, uint64_t>> span;
    auto widen = [&](const std::string &phase, uint64_t b, uint64_t e) {
      auto [it, fresh] = span.try_emplace(phase, b, e);
      it->second.first = std::min(it->second.first, b);
      it->second.second = std::max(it->second.second, e);
    };
    forEachTaskSpan(m, trace, [&](const TaskSpan &t) {
      std::string phase = taskPhase(m, *t.task);
      if (phase.empty())
        return;
      widen(phase, t.begin, t.end);
      widen("step", t.begin, t.end);
    });
    for (auto &[phase, be] : span)
      us[phase].push_back(double(be.second - be.first) / 1e3);
  }
  /// "phase median µs" for each phase, the step first.
  std::string describe() const {
    std::vector<std::string> parts;
    for (const char *phase : {"step", "verify", "context", "accept", "draft"}) {
      auto it = us.find(phase);
      if (it == us.end() || it->second.empty())
        continue;
      std::vector<double> v = it->second;
      std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
      parts.push_back(fmt::format("{} {:.1f} us", phase, v[v.size() / 2]));
    }
    return fmt::format("{}", fmt::join(parts, ", "));
  }
};

int runEngine(const RunOptions &o) {
  EngineManifest manifest = readEngine(o.engineDir);
  WeightSourceSpec weights = chooseWeightSource(manifest, o.weightsDir, o.seed);
  std::optional<Tokenizer> tokenizer;
  std::vector<int32_t> ids;
  if (o.promptText) {
    tokenizer =
        engineTokenizer(manifest, o.tokenizerPath, o.weightsDir, o.engineDir);
    ids = tokenizer->encode(*o.promptText);
    if (ids.empty())
      fail("--prompt: the text encodes to no tokens");
    int64_t vocab = engineVocab(manifest);
    for (int32_t id : ids)
      if (id >= vocab)
        fail("--prompt: {} gives token id {}, outside the engine's vocabulary "
             "[0, {}): the tokenizer is not this model's",
             tokenizer->where(), id, vocab);
  } else {
    ids = parseIds(o.prompt, engineVocab(manifest));
  }
  std::optional<TextStream> textOut;
  if (tokenizer)
    textOut.emplace(*tokenizer);
  // Without --json the text goes to stdout as tokens are committed.
  std::function<void(int32_t)> onToken;
  if (textOut)
    onToken = [&](int32_t id) {
      std::string piece = textOut->push(id);
      if (!o.json && !piece.empty())
        std::cout << piece << std::flush;
    };
  auto loadStart = std::chrono::steady_clock::now();
  SelectedExecutor selected =
      makeExecutor(o.engineDir, manifest, weights, executorChoice(o));
  std::cerr << "tile-run: " << selected.notice << "\n";
  if (!selected.loadSummary.empty())
    std::cerr << "tile-run: " << selected.loadSummary << "\n";
  Executor *executor = selected.executor.get();
  const bool onHost = selected.kind == ExecutorKind::Host;
  if (!o.traceOut.empty() && (onHost || o.launch == "per-op"))
    fail("--trace-out: the per-task stamps come from the megakernel on the "
         "GPU executor");
  if (onHost && o.launch != "megakernel")
    fail("--launch {}: runs on the GPU executor, not on the host executor",
         o.launch);
  double loadSeconds = std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - loadStart)
                           .count();
  // DFlash engines decode block by block (speculatively, lossless); plain
  // engines one token per step.
  const bool dflash = manifest.spec.enabled();
  if (o.temperature > 0 && !dflash)
    fail("--temperature: engine '{}' decodes greedily (sampling is part of "
         "the DFlash step: compile the model with its drafter)",
         o.engineDir);
  if (o.temperature > 0 && (o.check || o.oracleDraft))
    fail("--temperature: --check and --oracle-draft compare with greedy "
         "decoding; leave them out when sampling");
  if (o.corruptEvery > 0 && !o.oracleDraft)
    fail("--corrupt-drafts needs --oracle-draft");
  if (o.oracleDraft && !dflash)
    fail("--oracle-draft: engine '{}' has no DFlash step (compile the model "
         "with its drafter)",
         o.engineDir);
  GenerateStats stats;
  DflashStats spec;
  PhaseTimes phases;
  std::vector<int32_t> tokens, oracle;
  // A progress line on a terminal while decoding (not while text streams to
  // it, and never in logs or pipes).
  Progress decoding("decoding", o.count, ProgressUnit::Items, "tokens",
                    !textOut);
  int64_t made = 0;
  std::function<void(int32_t)> onNewToken = [&](int32_t id) {
    if (onToken)
      onToken(id);
    decoding.update(++made);
  };
  if (dflash) {
    DflashOptions options;
    if (o.oracleDraft) {
      // The continuation the target itself gives (DFlash is lossless), then
      // the measured pass with it as the drafts: every block accepted whole.
      oracle = generateDflash(*executor, ids, o.count + manifest.tokens);
      // --corrupt-drafts K: every K-th oracle token made wrong, so that steps
      // accept partial blocks.
      int64_t vocab = engineVocab(manifest);
      for (int64_t i = o.corruptEvery - 1;
           o.corruptEvery > 0 && i < int64_t(oracle.size());
           i += o.corruptEvery)
        oracle[size_t(i)] = int32_t((oracle[size_t(i)] + 1) % vocab);
      options.oracle = &oracle;
    }
    options.recordDrafts = o.check;
    options.temperature = o.temperature;
    options.seed = o.sampleSeed;
    options.onToken = onNewToken;
    auto *gpu = dynamic_cast<GpuEngine *>(executor);
    if (o.trace && gpu && !manifest.opPhases.empty())
      options.afterStep = [&] { phases.add(manifest, gpu->readTrace()); };
    tokens = generateDflash(*executor, ids, o.count, options, &spec);
    stats.prefillSteps = spec.prefillSteps;
    stats.prefillSeconds = spec.prefillSeconds;
    stats.decodeSteps = spec.decodeSteps;
    stats.decodeSeconds = spec.decodeSeconds;
  } else {
    tokens = generateGreedy(*executor, ids, o.count, &stats, onNewToken);
  }
  decoding.finish();
  if (textOut) {
    std::string rest = textOut->finish();
    if (!o.json)
      std::cout << rest << "\n" << std::flush;
  }
  if (!o.traceOut.empty()) {
    auto *gpu = static_cast<GpuEngine *>(executor);
    TraceSlices stamped = writeChromeTrace(manifest, {gpu->readTrace()},
                                           o.traceOut, "GPU globaltimer");
    std::cerr << fmt::format(
        "tile-run: wrote {} (the last step: {} of {} tasks stamped, {} sched "
        "waits, {} load prefetches; open in chrome://tracing or "
        "ui.perfetto.dev)\n",
        o.traceOut, stamped.compute, manifest.taskCount(), stamped.sched,
        stamped.load);
  }
  double seconds = stats.prefillSeconds + stats.decodeSeconds;
  int64_t steps = stats.prefillSteps + stats.decodeSteps;
  double stepMs = steps ? 1e3 * seconds / double(steps) : 0.0;
  // Tokens per second of decoding: the first token comes from the prefill.
  int64_t decodeTokens = dflash
                             ? std::max<int64_t>(int64_t(tokens.size()) - 1, 0)
                             : stats.decodeSteps;
  double decodeRate = stats.decodeSeconds > 0
                          ? double(decodeTokens) / stats.decodeSeconds
                          : 0.0;
  std::string executorText =
      onHost
          ? fmt::format("the host executor on the CPU (interleavings seed {}, "
                        "{} thread{}, event checks {})",
                        o.interleavingsSeed, o.threads,
                        o.threads == 1 ? "" : "s",
                        o.noEventChecks ? "off" : "on")
          : fmt::format("GPU {}", o.device);
  // GPU: the kernel's own time per step (CUDA events), decode steps only.
  double kernelMs = 0;
  int64_t launches = 1;
  if (auto *gpu = dynamic_cast<GpuEngine *>(executor)) {
    launches = gpu->launchesPerStep();
    std::vector<float> ms = gpu->stepMillis();
    ms.erase(ms.begin(),
             ms.begin() +
                 std::min<size_t>(ms.size(), size_t(stats.prefillSteps)));
    if (!ms.empty()) {
      std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
      kernelMs = ms[ms.size() / 2];
    }
    executorText = gpu->device().describe();
  }
  // --check: the same tokens and logits as the CPU reference model?
  std::optional<ReferenceCheck> check;
  std::optional<DraftCheck> drafts;
  if (o.check) {
    Model model = engineModel(manifest);
    std::unique_ptr<WeightSource> source = cpuWeights(weights, model);
    ReferenceCheckOptions checkOptions;
    checkOptions.tieEpsilon = o.tieEpsilon;
    checkOptions.logitTolerance = o.logitTolerance;
    check = checkAgainstReference(*executor, model, *source, ids, tokens,
                                  checkOptions);
    // The reference drafter follows the engine's committed tokens step by
    // step (oracle drafts or not: the drafter drafts from what was committed).
    if (dflash)
      drafts =
          checkDrafts(model, *source, ids, spec, manifest.spec.autoregressive(),
                      storesGateUp(manifest), &check->resolved);
  }
  if (o.json) {
    nlohmann::json out = {{"engine", o.engineDir},
                          {"model", manifest.modelName},
                          {"executor", executor->name()},
                          {"weights", weights.describe()},
                          {"prompt", ids},
                          {"tokens", tokens},
                          {"load_seconds", loadSeconds},
                          {"seconds", seconds},
                          {"prefill_steps", stats.prefillSteps},
                          {"prefill_seconds", stats.prefillSeconds},
                          {"decode_steps", stats.decodeSteps},
                          {"decode_seconds", stats.decodeSeconds},
                          {"step_ms", stepMs},
                          {"tokens_per_second", decodeRate}};
    if (dflash) {
      out["mode"] = o.oracleDraft ? "dflash-oracle-draft" : "dflash";
      out["drafter_mode"] = manifest.spec.drafterMode;
      out["temperature"] = o.temperature;
      out["sample_seed"] = o.sampleSeed;
      out["corrupt_drafts"] = o.corruptEvery;
      out["block_size"] = manifest.tokens;
      out["accepted_per_step"] = spec.accepted;
      out["mean_accepted"] = spec.meanAccepted();
      out["accepted_histogram"] = spec.histogram(manifest.tokens);
    } else {
      out["mode"] = "greedy";
    }
    if (textOut) {
      out["prompt_text"] = *o.promptText;
      out["tokenizer"] = tokenizer->where();
      out["text"] = textOut->text;
    }
    if (!phases.us.empty())
      out["phase_us"] = phases.us;
    if (!onHost) {
      out["device"] = o.device;
      out["kernel_step_ms_median"] = kernelMs;
      out["launch"] = o.launch;
      out["launches_per_step"] = launches;
    }
    if (onHost) {
      out["interleavings_seed"] = o.interleavingsSeed;
      out["threads"] = o.threads;
      out["event_checks"] = !o.noEventChecks;
    }
    if (check) {
      nlohmann::json ties = nlohmann::json::array();
      for (const ref::RouterTies::Tie &t : check->resolved.flip)
        ties.push_back({{"position", t.position},
                        {"layer", t.layer},
                        {"boundary", t.group ? "group" : "expert"},
                        {"gap", t.gap}});
      out["check"] = {{"passed", check->passed(int64_t(tokens.size()))},
                      {"reference_tokens", check->expected},
                      {"matching_prefix", check->matchingPrefix},
                      {"logit_positions", check->positions},
                      {"max_relative_logit_error", check->maxRelativeError},
                      {"max_absolute_logit_error", check->maxAbsoluteError},
                      {"mismatched_rows", check->mismatchedRows},
                      {"tokens_compared", check->tokensCompared},
                      {"tokens_agree", check->tokensAgree},
                      {"logit_near_ties", check->logitNearTies},
                      {"routing_ties_seen", check->tiesSeen},
                      {"routing_ties_resolved", ties},
                      {"tie_epsilon", check->resolved.epsilon},
                      {"logit_tolerance", o.logitTolerance}};
    }
    if (drafts)
      out["check"]["drafts"] = {
          {"steps", drafts->steps},
          {"tokens", drafts->tokens},
          {"equal", drafts->equal},
          {"logit_near_ties", drafts->logitNearTies},
          {"agree", drafts->agree},
          {"first_different_step", drafts->firstDifferentStep},
          {"logit_rows", drafts->logitRows},
          {"max_relative_logit_error", drafts->maxRelativeError}};
    std::cout << out.dump() << "\n";
  } else if (textOut) {
    std::cerr << fmt::format("tile-run: prompt ids {}; generated ids {}\n",
                             fmt::join(ids, " "), fmt::join(tokens, " "));
  } else {
    std::cout << fmt::format("{}\n", fmt::join(tokens, " "));
  }
  std::cerr << fmt::format(
      "tile-run: ran {} ({} tokens per step) on {}; weights: {}\n"
      "tile-run: {} tokens: prefill {} steps in {:.3f} s, decode {} steps in "
      "{:.3f} s ({:.2f} tokens/s), {:.2f} ms per step; load {:.3f} s\n",
      o.engineDir, manifest.tokens, executorText, weights.describe(),
      tokens.size(), stats.prefillSteps, stats.prefillSeconds,
      stats.decodeSteps, stats.decodeSeconds, decodeRate, stepMs, loadSeconds);
  if (dflash) {
    std::vector<int64_t> histogram = spec.histogram(manifest.tokens);
    std::cerr << fmt::format(
        "tile-run: DFlash{} ({} drafter, blocks of {}): {:.2f} tokens "
        "accepted per step on average; steps by tokens accepted (1..{}): {}\n",
        o.oracleDraft ? " with oracle drafts" : "", manifest.spec.drafterMode,
        manifest.tokens, spec.meanAccepted(), manifest.tokens,
        fmt::join(histogram.begin() + 1, histogram.end(), " "));
  }
  if (!onHost)
    std::cerr << fmt::format(
        "tile-run: {} time, median over decode steps: {:.3f} ms\n",
        o.launch == "per-op"
            ? fmt::format("one-kernel-per-op ({} launches per step)", launches)
            : std::string("tilec_step kernel"),
        kernelMs);
  if (!phases.us.empty())
    std::cerr << fmt::format(
        "tile-run: DFlash step phases (first task start to last task end on "
        "any SM, median over decode steps; phases overlap): {}\n",
        phases.describe());
  if (check) {
    const int64_t n = int64_t(tokens.size());
    if (check->logitsCompared) {
      // Teacher-forced on the engine's tokens, routing near-ties followed.
      std::cerr << fmt::format(
          "tile-run: check against the CPU reference (bf16 activations): {} "
          "of {} greedy tokens agree{}; logits over {} positions: max "
          "relative error {:.2e}, max absolute {:.2e}",
          check->tokensAgree, n,
          check->logitNearTies
              ? fmt::format(" ({} at logit near-ties)", check->logitNearTies)
              : std::string(),
          check->positions, check->maxRelativeError, check->maxAbsoluteError);
      if (check->mismatchedRows)
        std::cerr << fmt::format(" ({} rows over the tolerance {:.1e}, the "
                                 "first at position {})",
                                 check->mismatchedRows, o.logitTolerance,
                                 check->firstMismatchedRow);
      if (!check->resolved.flip.empty()) {
        float largest = 0;
        std::vector<std::string> where;
        for (const ref::RouterTies::Tie &t : check->resolved.flip) {
          largest = std::max(largest, t.gap);
          where.push_back(
              fmt::format("{}@{}{}", t.layer, t.position, t.group ? "g" : ""));
        }
        std::cerr << fmt::format(
            "; routing near-ties resolved the engine's way: {} of {} met "
            "(gap < {:.0e}; largest {:.1e}; layer@position: {})",
            check->resolved.flip.size(), check->tiesSeen,
            check->resolved.epsilon, largest, fmt::join(where, " "));
      }
      if (check->matchingPrefix != n)
        std::cerr << fmt::format("; free-running, the reference's own tokens "
                                 "agree for the first {}",
                                 check->matchingPrefix);
    } else {
      std::cerr << fmt::format(
          "tile-run: check against the CPU reference "
          "(bf16 activations): {} of {} greedy tokens "
          "agree{}",
          check->matchingPrefix, n,
          check->matchingPrefix == n ? "" : " (then they differ)");
    }
    std::cerr << "\n";
    if (drafts) {
      // On the engine's committed tokens: exactly equal, or else at a logit
      // near-tie (within the row's logit error of the reference's best).
      std::cerr << fmt::format(
          "tile-run: drafts against the reference drafter (bf16 "
          "activations, on the engine's tokens): {} of {} draft tokens agree "
          "over {} steps ({} equal, {} at logit near-ties){}",
          drafts->agree, drafts->tokens, drafts->steps, drafts->equal,
          drafts->logitNearTies,
          drafts->firstDifferentStep < 0
              ? std::string()
              : fmt::format(" (first difference at step {})",
                            drafts->firstDifferentStep));
      if (drafts->logitRows)
        std::cerr << fmt::format("; draft logits over {} rows: max relative "
                                 "error {:.2e}",
                                 drafts->logitRows, drafts->maxRelativeError);
      std::cerr << "\n";
    }
    // bf16 activations on both sides: only summation order differs.
    if (!check->passed(int64_t(tokens.size())) ||
        (drafts && !drafts->passed(o.logitTolerance))) {
      std::cerr << "tile-run: error: the engine does not match the reference\n";
      return 1;
    }
  }
  return 0;
}

/// `tile-run sample-check`: speculative sampling's output distribution against
/// the target's (runtime/engine/SampleCheck.h). Exits 1 when the chi-square
/// p-value of either test is below `alpha`.
int sampleCheck(const RunOptions &o, const SampleCheckOptions &options,
                double alpha) {
  EngineManifest manifest = readEngine(o.engineDir);
  if (!manifest.spec.enabled())
    fail("sample-check: engine '{}' has no DFlash step", o.engineDir);
  WeightSourceSpec weights = chooseWeightSource(manifest, o.weightsDir, o.seed);
  std::vector<int32_t> ids = parseIds(o.prompt, engineVocab(manifest));
  SelectedExecutor selected =
      makeExecutor(o.engineDir, manifest, weights, executorChoice(o));
  std::cerr << "tile-run: " << selected.notice << "\n";
  Model model = engineModel(manifest);
  std::unique_ptr<WeightSource> source = cpuWeights(weights, model);
  SampleCheckResult r =
      checkSampling(*selected.executor, model, *source, ids, options);
  bool ok = r.pValue >= alpha && r.firstPValue >= alpha;
  if (o.json) {
    nlohmann::json out = {{"engine", o.engineDir},
                          {"executor", selected.executor->name()},
                          {"prompt", ids},
                          {"temperature", options.temperature},
                          {"drafts", options.oracle ? "oracle" : "drafter"},
                          {"samples", r.samples},
                          {"accepted_drafts", r.acceptedDrafts},
                          {"first_token",
                           {{"chi_square", r.firstChiSquare},
                            {"cells", r.firstCells},
                            {"p_value", r.firstPValue}}},
                          {"both_tokens",
                           {{"chi_square", r.chiSquare},
                            {"cells", r.cells},
                            {"p_value", r.pValue},
                            {"total_variation", r.totalVariation}}},
                          {"alpha", alpha},
                          {"pass", ok}};
    std::cout << out.dump() << "\n";
    return ok ? 0 : 1;
  }
  std::cout << fmt::format(
      "sample-check: {} two-token samples at temperature {} ({} drafts): "
      "second token an accepted draft in {} ({:.1f}%)\n"
      "  first token:  chi-square {:.1f} over {} cells, p = {:.3g}\n"
      "  both tokens:  chi-square {:.1f} over {} cells, p = {:.3g}; total "
      "variation to the exact joint {:.3f}\n"
      "  {} (fails below p = {})\n",
      r.samples, options.temperature, options.oracle ? "oracle" : "drafter",
      r.acceptedDrafts, 100.0 * double(r.acceptedDrafts) / double(r.samples),
      r.firstChiSquare, r.firstCells, r.firstPValue, r.chiSquare, r.cells,
      r.pValue, r.totalVariation,
      ok ? "PASS: the target's distribution" : "FAIL", alpha);
  return ok ? 0 : 1;
}

struct ProfileRunOptions {
  RunOptions run;    // engine, executor, prompt, weights, host/GPU options
  int64_t steps = 8; // -n
  std::string outDir;
  int width = 1400;
};

/// `tile-run profile`: `steps` decoding steps with per-task stamps on, then
/// OUT/trace.json (every step), OUT/timeline.png (the last step) and
/// OUT/summary.txt (printed too; --json prints it as one object).
int runProfile(const ProfileRunOptions &p) {
  const RunOptions &o = p.run;
  EngineManifest manifest = readEngine(o.engineDir);
  const std::string out =
      p.outDir.empty()
          ? (std::filesystem::path(o.engineDir) / "profile").string()
          : p.outDir;
  // The output directory before any work: a bad --out fails in a second.
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec || !std::filesystem::is_directory(out))
    fail("--out {}: cannot create the directory ({})", out,
         ec ? ec.message() : "a file of that name is in the way");
  const std::string summaryPath = out + "/summary.txt",
                    tracePath = out + "/trace.json",
                    pngPath = out + "/timeline.png";
  {
    std::ofstream probe(summaryPath);
    if (!probe)
      fail("--out {}: cannot write {} there ({})", out, "summary.txt",
           std::strerror(errno));
  }
  WeightSourceSpec weights = chooseWeightSource(manifest, o.weightsDir, o.seed);
  std::vector<int32_t> ids = parseIds(o.prompt, engineVocab(manifest));
  // The steps must fit the KV cache (checked before loading anything).
  const int64_t T = manifest.tokens;
  if (manifest.spec.enabled()) {
    // DFlash: the prefill commits the prompt and drafts the first block;
    // then each launch verifies, accepts and drafts the next one, moving at
    // most T positions and writing up to 2T past its block.
    const int64_t last = int64_t(ids.size()) + (p.steps + 2) * T;
    if (last >= maxContext(manifest))
      fail("-n {}: {} DFlash steps of up to {} tokens after a prompt of {} "
           "need positions up to {}, but the engine's KV cache holds {}; "
           "profile fewer steps or recompile with a larger --max-context",
           p.steps, p.steps, T, ids.size(), last, maxContext(manifest));
  } else {
    // Plain engines: decode step i writes positions up to P + i + T - 1.
    const int64_t last = int64_t(ids.size()) + p.steps + T - 2;
    if (last >= maxContext(manifest))
      fail("-n {}: {} steps after a prompt of {} need positions up to {}, but "
           "the engine's KV cache holds {}; profile fewer steps or recompile "
           "with a larger --max-context",
           p.steps, p.steps, ids.size(), last, maxContext(manifest));
  }
  ExecutorChoice choice = executorChoice(o);
  choice.host.trace = true;
  choice.gpu.trace = true;
  SelectedExecutor selected =
      makeExecutor(o.engineDir, manifest, weights, choice);
  std::cerr << "tile-run: " << selected.notice << "\n";
  if (!selected.loadSummary.empty())
    std::cerr << "tile-run: " << selected.loadSummary << "\n";
  Executor &executor = *selected.executor;
  const bool onHost = selected.kind == ExecutorKind::Host;

  // The steps: after the prompt (not traced), `steps` decode steps, each
  // trace read back after its step.
  std::vector<std::vector<uint64_t>> traces;
  Progress bar("profile", p.steps, ProgressUnit::Items, "steps");
  auto record = [&] {
    traces.push_back(executor.readTrace());
    bar.update(int64_t(traces.size()));
  };
  if (manifest.spec.enabled()) {
    generateDflash(executor, ids, 1);
    std::vector<int32_t> committed(size_t(T + 1));
    for (int64_t i = 0; i < p.steps; ++i) {
      executor.launch(manifest.spec.outBuffer, committed.data(), 4 * (T + 1));
      if (committed[0] < 1 || committed[0] > T)
        fail("{} executor: a DFlash step committed {} tokens (1 .. {} "
             "expected)",
             executor.name(), committed[0], T);
      record();
    }
  } else {
    // Plain engines: the first token comes from the prompt's last step.
    bool prompt = true;
    generateGreedy(executor, ids, p.steps + 1, nullptr, [&](int32_t) {
      if (!prompt)
        record();
      prompt = false;
    });
  }
  bar.finish();

  ProfileSource source;
  source.engine = o.engineDir;
  source.executor = executor.name();
  if (auto *gpu = dynamic_cast<GpuEngine *>(&executor)) {
    source.device = gpu->device().describe();
    source.clock = "GPU globaltimer: the megakernel's own time stamps";
  } else {
    source.loadStamped = false; // the host executor has no load role
    source.device = fmt::format(
        "the host executor on the CPU ({} thread{}, event checks {})",
        o.threads, o.threads == 1 ? "" : "s", o.noEventChecks ? "off" : "on");
    source.clock = "host steady_clock: the host executor's task bodies on the "
                   "CPU; host times, not GPU times";
  }
  ProfileSummary summary = summarizeProfile(manifest, traces, source);
  std::string text = formatProfileSummary(summary);
  TraceSlices slices = writeChromeTrace(
      manifest, traces, tracePath,
      onHost ? "host steady_clock (CPU, not GPU times)" : "GPU globaltimer");
  TimelineOptions timeline;
  timeline.width = p.width;
  timeline.title =
      fmt::format("tilec profile: {}, {} ({}), step {} of {}",
                  manifest.modelName, onHost ? "host executor" : "gpu",
                  onHost ? "cpu times, not gpu times" : source.device,
                  traces.size(), traces.size());
  uint64_t b = UINT64_MAX, e = 0;
  forEachTaskSpan(manifest, traces.back(), [&](const TaskSpan &t) {
    b = std::min(b, t.begin);
    e = std::max(e, t.end);
  });
  timeline.subtitle = fmt::format(
      "{} sms, {} tasks, step {:.1f} us; mean per sm: compute idle {:.0f}%, "
      "sched waiting {:.0f}%; predicted step {:.1f} us",
      manifest.sms, manifest.taskCount(), e > b ? double(e - b) / 1e3 : 0.0,
      100 * summary.idleMean, 100 * summary.roles[int(TraceRole::Sched)].mean,
      summary.predictedStepUs);
  writePng(renderTimeline(manifest, traces.back(), timeline), pngPath);
  {
    std::ofstream file(summaryPath);
    file << text;
    if (!file)
      fail("--out {}: cannot write {}", out, summaryPath);
  }
  if (o.json) {
    nlohmann::json j = profileSummaryJson(summary);
    j["weights"] = weights.describe();
    j["files"] = {
        {"trace", tracePath}, {"timeline", pngPath}, {"summary", summaryPath}};
    std::cout << j.dump() << "\n";
  } else {
    std::cout << text;
  }
  std::cerr << fmt::format("tile-run: wrote {} ({} task slices, {} sched "
                           "waits, {} load prefetches; chrome://tracing or "
                           "ui.perfetto.dev), {} (the last step) and {}\n",
                           tracePath, slices.compute, slices.sched, slices.load,
                           pngPath, summaryPath);
  return 0;
}

/// One arena buffer of `tile-run compare` after one step.
struct BufferDiff {
  int64_t step = 0;
  std::string name, kind; // kind: the dtype, or "pair" for argmax partials
  int64_t elements = 0, differ = 0, indexDiffer = 0;
  double maxDiff = 0, relative = 0;
  bool wrong = false;
};

/// Compares `bytes` bytes of buffer `b` as the two executors left them.
BufferDiff diffBuffer(const BufferInfo &b, const uint8_t *g, const uint8_t *h) {
  BufferDiff d;
  d.name = b.name;
  double maxRef = 0;
  // Argmax partials are (f32 value, int32 index) pairs: values compared
  // as floats; an index may differ only where values tie to rounding.
  const std::string suffix = ".partial";
  const bool pairs =
      b.dtype == "i32" && b.name.size() > suffix.size() &&
      b.name.compare(b.name.size() - suffix.size(), suffix.size(), suffix) == 0;
  d.kind = pairs ? "pair" : b.dtype;
  for (int64_t i = 0; i + 1 < b.bytes;) {
    double x, y;
    if (b.dtype == "bf16") {
      uint16_t a, c;
      std::memcpy(&a, g + i, 2);
      std::memcpy(&c, h + i, 2);
      x = bf16ToF32(a), y = bf16ToF32(c), i += 2;
    } else if (b.dtype == "f32" || (pairs && (i / 4) % 2 == 0)) {
      float a, c;
      std::memcpy(&a, g + i, 4);
      std::memcpy(&c, h + i, 4);
      x = a, y = c, i += 4;
    } else {
      int32_t a, c;
      std::memcpy(&a, g + i, 4);
      std::memcpy(&c, h + i, 4);
      x = a, y = c, i += 4;
      if (pairs) {
        d.indexDiffer += a != c;
        continue;
      }
    }
    ++d.elements;
    d.differ += x != y && !(std::isnan(x) && std::isnan(y));
    d.maxDiff = std::max(d.maxDiff, std::fabs(x - y));
    maxRef = std::max(maxRef, std::fabs(y));
  }
  d.relative = maxRef > 0 ? d.maxDiff / maxRef : d.maxDiff;
  d.wrong = b.dtype == "i32" && !pairs ? d.differ > 0 : d.relative > 2e-2;
  return d;
}

/// `tile-run compare`: the same steps on the GPU (or, with --executor host,
/// a second host executor with another interleaving) and on the host
/// executor, then every arena buffer compared (compile with
/// tile-plan-memory{reuse=false} so no buffer is overwritten by a later one).
/// Names the buffers that differ; exits 1 when any is wrong.
int compareExecutors(const std::string &dir, const std::string &prompt,
                     int64_t steps, uint64_t seed, const std::string &first,
                     uint64_t interleavingsSeed, bool json) {
  EngineManifest manifest = readEngine(dir);
  WeightSourceSpec weights = chooseWeightSource(manifest, "", seed);
  std::unique_ptr<Executor> a;
  if (first == "gpu") {
    GpuEngineOptions gpuOptions;
    gpuOptions.weights = weights;
    a = std::make_unique<GpuEngine>(dir, gpuOptions);
  } else {
    HostOptions options;
    options.interleavingSeed = interleavingsSeed;
    a = std::make_unique<HostExecutor>(manifest, weights, options);
  }
  HostExecutor host(manifest, weights, HostOptions());
  std::vector<int32_t> ids = parseIds(prompt, engineVocab(manifest));
  int64_t T = manifest.tokens;
  std::vector<BufferDiff> diffs;
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<int32_t> tokens(static_cast<size_t>(T)),
        positions(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) {
      tokens[size_t(i)] = ids[size_t((step * T + i) % int64_t(ids.size()))];
      positions[size_t(i)] = int32_t(step * T + i);
    }
    if (manifest.spec.enabled()) {
      // DFlash: each step verifies the tokens as a forced (prompt) block, so
      // both executors commit the same tokens whatever their argmax says.
      int32_t forced = int32_t(T);
      for (Executor *e : {a.get(), static_cast<Executor *>(&host)}) {
        e->writeBuffer(manifest.spec.tokensBuffer, tokens.data(), 4 * T);
        e->writeBuffer(manifest.spec.positionsBuffer, positions.data(), 4 * T);
        e->writeBuffer(manifest.spec.forcedBuffer, &forced, 4);
        e->launch();
      }
    } else {
      a->step(tokens, positions);
      host.step(tokens, positions);
    }
    for (const BufferInfo &b : manifest.buffers) {
      std::vector<uint8_t> g(size_t(b.bytes)), h(size_t(b.bytes));
      a->readBuffer(b.name, g.data(), b.bytes);
      host.readBuffer(b.name, h.data(), b.bytes);
      diffs.push_back(diffBuffer(b, g.data(), h.data()));
      diffs.back().step = step;
    }
  }
  int64_t bad = 0;
  for (const BufferDiff &d : diffs)
    bad += d.wrong;
  const std::string against =
      first == "gpu"
          ? "gpu"
          : fmt::format("host (interleavings seed {})", interleavingsSeed);
  if (json) {
    nlohmann::json buffers = nlohmann::json::array();
    for (const BufferDiff &d : diffs) {
      nlohmann::json j = {{"step", d.step},
                          {"name", d.name},
                          {"kind", d.kind},
                          {"elements", d.elements},
                          {"differ", d.differ},
                          {"max_abs_diff", d.maxDiff},
                          {"max_rel_diff", d.relative},
                          {"wrong", d.wrong}};
      if (d.kind == "pair")
        j["argmax_indices_differ"] = d.indexDiffer;
      buffers.push_back(j);
    }
    nlohmann::json out = {
        {"engine", dir}, {"executor", first}, {"compared_with", "host"},
        {"prompt", ids}, {"steps", steps},    {"buffers", buffers},
        {"wrong", bad},  {"pass", bad == 0}};
    if (first == "host")
      out["interleavings_seed"] = interleavingsSeed;
    std::cout << out.dump() << "\n";
    return bad ? 1 : 0;
  }
  for (const BufferDiff &d : diffs)
    std::cout << fmt::format(
        "step {} {:<40} {:>4} {:>8} elems, {:>6} differ, max |{}-host| "
        "{:.3e} ({:.1e} of max |host|){}{}\n",
        d.step, d.name, d.kind, d.elements, d.differ, first, d.maxDiff,
        d.relative,
        d.kind == "pair" && d.indexDiffer
            ? fmt::format(", {} argmax indices differ", d.indexDiffer)
            : std::string(),
        d.wrong ? "  <-- WRONG" : "");
  std::cerr << fmt::format("tile-run: compare {} against the host executor: "
                           "{} buffers over {} steps, {} wrong\n",
                           against, manifest.buffers.size(), steps, bad);
  return bad ? 1 : 0;
}

/// tile-run tokenize: the ids of a text (or the text of ids), each id's
/// spelling in tokenizer.json, and whether decoding gives the text back.
int tokenize(const std::string &path, const std::optional<std::string> &text,
             const std::optional<std::string> &idsText, bool json) {
  std::error_code ec;
  std::optional<Tokenizer> tokenizer;
  if (std::filesystem::is_regular_file(path + "/manifest.json", ec))
    tokenizer = engineTokenizer(readEngine(path), "", "", path);
  else
    tokenizer = Tokenizer::load(path);
  if (!text && !idsText)
    fail("tokenize: give --text TEXT or --ids 1,2,3");
  std::vector<int32_t> ids = text ? tokenizer->encode(*text)
                                  : parseIds(*idsText, tokenizer->vocabSize());
  std::string decoded = tokenizer->decode(ids);
  std::vector<std::string> pieces;
  for (int32_t id : ids)
    pieces.push_back(tokenizer->tokenSpelling(id));
  if (json) {
    nlohmann::json out = {{"tokenizer", tokenizer->where()},
                          {"ids", ids},
                          {"pieces", pieces},
                          {"decoded", decoded}};
    if (text) {
      out["text"] = *text;
      out["round_trip"] = decoded == *text;
    }
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::cout << fmt::format("ids: {}\n", fmt::join(ids, ","));
  std::cout << fmt::format("tokens: {}\n", nlohmann::json(pieces).dump());
  std::cout << fmt::format("decoded: {}\n", nlohmann::json(decoded).dump());
  if (text)
    std::cout << fmt::format(
        "round trip: {}\n",
        decoded == *text ? "exact" : "differs (decode does not give the text)");
  std::cerr << fmt::format("tile-run: {} tokens with {} (vocabulary {})\n",
                           ids.size(), tokenizer->where(),
                           tokenizer->vocabSize());
  return 0;
}

struct BenchOptions {
  std::vector<std::string> engines;
  int64_t steps = 64, warmup = 8;
  std::string launch = "both"; // megakernel, per-op, both
  bool oracleDraft = false;
  std::string prompt = "1,2,3,4", weightsDir;
  std::optional<uint64_t> seed;
  int device = 0;
  int64_t copyMib = 1024;
  bool json = false, noCache = false;
  std::vector<std::string> defines; // --define NAME=VALUE
};

/// One engine in one launch mode: `warmup` + `steps` decode steps (DFlash
/// engines: enough tokens for at least that many), the steps after the
/// warm-up timed by the engine's CUDA events.
BenchRow benchOne(const BenchOptions &o, const std::string &dir,
                  const EngineManifest &manifest, const std::string &launch) {
  std::vector<int32_t> ids = parseIds(o.prompt, engineVocab(manifest));
  const bool dflash = manifest.spec.enabled();
  const int64_t T = manifest.tokens;
  // Plain: one token per step and the first from the prefill; DFlash: each
  // step commits at most T tokens.
  const int64_t count =
      dflash ? (o.warmup + o.steps) * T : o.warmup + o.steps + 1;
  const int64_t need = int64_t(ids.size()) + count + 2 * T;
  if (need > maxContext(manifest))
    fail("bench: engine '{}' holds {} positions; {} warm-up and {} timed steps "
         "of {} tokens after a {}-token prompt need {}: fewer steps (-n, "
         "--warmup) or an engine with more context (tilec --max-context)",
         dir, maxContext(manifest), o.warmup, o.steps, T, ids.size(), need);
  GpuEngineOptions options;
  options.device = o.device;
  options.weights = chooseWeightSource(manifest, o.weightsDir, o.seed);
  options.useCache = !o.noCache;
  options.perOpLaunch = launch == "per-op";
  options.nvrtcOptions = defineOptions(o.defines);
  GpuEngine engine(dir, options);

  BenchRow row;
  row.engine = dir;
  row.model = manifest.modelName;
  row.launch = launch;
  row.tokensPerStep = T;
  row.launchesPerStep = engine.launchesPerStep();
  row.tasks = manifest.taskCount();
  row.bytesPerStep = estimatedBytesPerStep(manifest);
  int64_t prefillSteps = 0, decodeSteps = 0;
  double decodeSeconds = 0;
  std::vector<double> committed; // per decode step
  std::vector<int32_t> oracle;
  if (dflash) {
    DflashOptions options;
    if (o.oracleDraft) {
      oracle = generateDflash(engine, ids, count + T);
      options.oracle = &oracle;
      engine.reset();
    }
    DflashStats spec;
    size_t before = engine.stepMillis().size();
    generateDflash(engine, ids, count, options, &spec);
    prefillSteps = int64_t(before) + spec.prefillSteps;
    decodeSteps = spec.decodeSteps;
    decodeSeconds = spec.decodeSeconds;
    for (int64_t a : spec.accepted)
      committed.push_back(double(a));
    row.drafting = o.oracleDraft                    ? "oracle"
                   : manifest.spec.autoregressive() ? "ar"
                                                    : "drafter";
  } else {
    GenerateStats stats;
    generateGreedy(engine, ids, count, &stats);
    prefillSteps = stats.prefillSteps;
    decodeSteps = stats.decodeSteps;
    decodeSeconds = stats.decodeSeconds;
    committed.assign(size_t(decodeSteps), 1.0);
  }
  std::vector<float> all = engine.stepMillis();
  if (int64_t(all.size()) != prefillSteps + decodeSteps ||
      int64_t(committed.size()) != decodeSteps || decodeSteps <= o.warmup)
    fail("bench: engine '{}' ran {} prefill and {} decode steps and timed {}; "
         "expected more than the {} warm-up steps",
         dir, prefillSteps, decodeSteps, all.size(), o.warmup);
  std::vector<double> ms(all.begin() + prefillSteps + o.warmup, all.end());
  row.step = summarizeSteps(ms);
  double sum = 0, total = 0;
  for (size_t i = size_t(o.warmup); i < committed.size(); ++i)
    sum += committed[i];
  for (double c : committed)
    total += c;
  row.committedPerStep = sum / double(committed.size() - size_t(o.warmup));
  row.wallTokensPerSecond = decodeSeconds > 0 ? total / decodeSeconds : 0;
  return row;
}

/// `tile-run bench`: the GPU's copy bandwidth first, then every engine in
/// each launch mode asked for.
int runBench(const BenchOptions &o) {
  std::string reason;
  if (!CudaDriver::available(&reason))
    fail("bench: needs a GPU (the host executor's times say nothing about "
         "HBM): {}",
         reason);
  // Every engine readable before any GPU time is spent.
  std::vector<EngineManifest> manifests;
  for (const std::string &dir : o.engines)
    manifests.push_back(readEngine(dir));
  CopyBandwidth bw = measureCopyBandwidth(o.device, o.copyMib << 20);
  std::string device = bw.device.describe();
  if (!o.json)
    std::cerr << fmt::format("tile-run: {}; HBM copy bandwidth {:.0f} GB/s\n",
                             device, bw.gbps);
  std::vector<std::string> launches;
  if (o.launch == "both")
    launches = {"megakernel", "per-op"};
  else
    launches = {o.launch};
  std::vector<BenchRow> rows;
  for (size_t e = 0; e < o.engines.size(); ++e)
    for (const std::string &launch : launches) {
      const std::string &dir = o.engines[e];
      BenchRow row = benchOne(o, dir, manifests[e], launch);
      finishRow(row, bw.gbps);
      if (!o.json)
        std::cerr << fmt::format("tile-run: {} ({}): {:.3f} ms per step\n", dir,
                                 launch, row.step.medianMs);
      rows.push_back(std::move(row));
    }
  if (o.json) {
    std::cout << benchJson(rows, device, bw.gbps, bw.trialsGbps).dump() << "\n";
    return 0;
  }
  std::cout << formatBench(
      rows, device, bw.gbps,
      fmt::format("{} MiB x {} copies, best of {} trials: {:.0f} GB/s",
                  o.copyMib, bw.reps, bw.trials,
                  fmt::join(bw.trialsGbps, " / ")));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"tile-run: run tilec models and engines"};
  app.require_subcommand(1);

  app.add_subcommand("presets", "List the built-in models");

  CLI::App *synth = app.add_subcommand("synth", "Write a synthetic checkpoint");
  std::string synthModel, synthOut;
  uint64_t synthSeed = 0;
  SyntheticCheckpointOptions synthOptions;
  synth->add_option("model", synthModel, "Preset name or model directory")
      ->required();
  synth->add_option("-o,--output", synthOut, "Checkpoint directory to write")
      ->required();
  synth->add_option("--seed", synthSeed, "Seed of the synthetic weights");
  synth->add_flag("--packed-experts", synthOptions.packedExperts,
                  "Store experts packed ([E, 2I, H]) instead of per expert");
  synth->add_option("--shard-bytes", synthOptions.maxShardBytes,
                    "Shard the weights into files of at most this many bytes");
  synth->add_flag("--for-transformers", synthOptions.forTransformers,
                  "Write a config.json transformers loads (bf16 models only)");

  CLI::App *reference = app.add_subcommand(
      "reference", "Greedy tokens from the CPU reference model");
  std::string refModel, refPrompt = "1,2,3,4";
  int64_t refCount = 16;
  bool refSynthetic = false, refJson = false;
  uint64_t refSeed = 0;
  reference
      ->add_option("model", refModel,
                   "Preset name, model directory or engine directory")
      ->required();
  reference->add_option("--prompt-ids", refPrompt,
                        "Comma-separated prompt token ids");
  reference->add_option("-n,--max-new-tokens", refCount, "Tokens to generate")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  reference->add_flag("--synthetic", refSynthetic,
                      "Synthetic weights even for a model directory");
  reference->add_option("--seed", refSeed, "Seed of the synthetic weights");
  reference->add_flag("--json", refJson, "Print one JSON object");

  CLI::App *run =
      app.add_subcommand("run", "Greedy tokens from a compiled engine (DFlash "
                                "speculative decoding when it has a drafter)");
  RunOptions runOptions;
  uint64_t runSeed = 0;
  run->add_option("engine", runOptions.engineDir,
                  "Engine directory (tilec MODEL -o DIR)")
      ->required();
  run->add_option("--executor", runOptions.executor,
                  "What runs the engine: gpu (the megakernel), host (the CPU "
                  "host executor) or auto (the GPU when there is one; says "
                  "which on stderr)")
      ->check(CLI::IsMember({"gpu", "host", "auto"}));
  run->add_option("--device", runOptions.device, "GPU executor: which GPU")
      ->check(CLI::NonNegativeNumber);
  run->add_option("--watchdog-ms", runOptions.watchdogMs,
                  "GPU executor: a wait on an event longer than this is "
                  "reported as a hang naming SM, task and event (0: off)");
  run->add_flag("--no-cache", runOptions.noCache,
                "GPU executor: compile kernel.cu with NVRTC even when the "
                "cubin cache ($XDG_CACHE_HOME/tilec) has it");
  run->add_option("--define", runOptions.defines,
                  "Define a device-library macro for NVRTC (repeatable), e.g. "
                  "TILEC_GEMV_MMA_MIN_T=17");
  run->alias("generate");
  CLI::Option *runPromptIds = run->add_option(
      "--prompt-ids", runOptions.prompt, "Comma-separated prompt token ids");
  run->add_option("--prompt", runOptions.promptText,
                  "Prompt text, encoded with the tokenizer.json of the model "
                  "directory (or --tokenizer); the generated text streams to "
                  "stdout (with --json: its \"text\")")
      ->excludes(runPromptIds);
  run->add_option("--tokenizer", runOptions.tokenizerPath,
                  "With --prompt: this tokenizer.json (or a directory holding "
                  "one) instead of the model directory's");
  run->add_option("-n,--max-new-tokens", runOptions.count, "Tokens to generate")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  CLI::Option *seedOption =
      run->add_option("--seed", runSeed,
                      "Synthetic weights from this seed (default for "
                      "engines of presets: seed 0)");
  run->add_option("--weights", runOptions.weightsDir,
                  "Checkpoint directory (default: the model directory the "
                  "engine was compiled from, synthetic for presets)")
      ->excludes(seedOption);
  run->add_option("--interleavings-seed", runOptions.interleavingsSeed,
                  "Host executor: seed of the random task interleaving");
  run->add_option("--threads", runOptions.threads,
                  "Host executor: worker threads (1: reproducible)")
      ->check(CLI::Range(1, 256));
  run->add_flag("--no-event-checks", runOptions.noEventChecks,
                "Host executor: skip the shadow-state event checks");
  run->add_flag("--json", runOptions.json, "Print one JSON object");
  run->add_flag("--oracle-draft", runOptions.oracleDraft,
                "DFlash engines: replace the drafts by the target's own greedy "
                "continuation (computed first), so every block is accepted "
                "whole: the speed at full acceptance, and a test of accept / "
                "commit");
  run->add_option("--temperature", runOptions.temperature,
                  "DFlash engines: sample at this temperature (speculative "
                  "sampling; 0: greedy)")
      ->check(CLI::Range(0.0f, 1e6f));
  run->add_option("--sample-seed", runOptions.sampleSeed,
                  "Seed of the sampling's random numbers");
  run->add_flag("--trace", runOptions.trace,
                "GPU, DFlash engines: per-task time stamps; report how long "
                "the verify, context, accept and draft parts of a step span");
  run->add_option("--launch", runOptions.launch,
                  "GPU executor: megakernel (one persistent launch per step) "
                  "or per-op (the baseline: one launch per op, same task "
                  "bodies, no persistence or cross-op prefetch)")
      ->check(CLI::IsMember({"megakernel", "per-op"}));
  run->add_option("--trace-out", runOptions.traceOut,
                  "GPU: write the last step's per-task stamps as a Chrome / "
                  "Perfetto trace (JSON, a sched, load and compute track per "
                  "SM)");
  run->add_option("--corrupt-drafts", runOptions.corruptEvery,
                  "With --oracle-draft: make every K-th oracle token wrong, so "
                  "that steps accept partial blocks (0: none)")
      ->check(CLI::NonNegativeNumber);
  run->add_flag(
      "--check", runOptions.check,
      "Compare tokens and logits with the CPU reference model, teacher-forced "
      "on the engine's tokens (exit 1 when they differ)");
  run->add_option("--tie-epsilon", runOptions.tieEpsilon,
                  "--check: a routing choice whose two sides are closer than "
                  "this (sigmoid + bias) is a near-tie, which the reference "
                  "resolves the engine's way where that explains the engine's "
                  "logits (0: never)")
      ->check(CLI::Range(0.0, 1.0));

  run->add_option(
         "--logit-tolerance", runOptions.logitTolerance,
         fmt::format("--check: the largest ||engine - reference|| / "
                     "||reference|| of a logit row, target and draft logits "
                     "(default {}: torch.testing.assert_close's rtol for "
                     "bfloat16)",
                     ReferenceCheckOptions().logitTolerance))
      ->check(CLI::Range(0.0, 1.0));

  CLI::App *compile = app.add_subcommand(
      "compile",
      "NVRTC-compile an engine's kernel (no GPU needed) and report it");
  std::string compileDir, compileArch = "";
  bool compileNoCache = false, compileJson = false;
  compile->add_option("engine", compileDir, "Engine directory (tilec -o)")
      ->required();
  compile->add_option("--arch", compileArch,
                      "Architecture (default: the engine's, e.g. sm_90a)");
  compile->add_flag("--no-cache", compileNoCache, "Compile even if cached");
  compile->add_flag("--json", compileJson, "Print one JSON object");
  std::vector<std::string> compileDefines;
  compile->add_option("--define", compileDefines,
                      "Define a device-library macro for NVRTC (repeatable), "
                      "e.g. TILEC_GEMV_MMA_MIN_T=17");

  CLI::App *compareCmd = app.add_subcommand(
      "compare", "Run steps on the GPU and the host executor and compare every "
                 "arena buffer (debugging; compile with "
                 "tile-plan-memory{reuse=false})");
  std::string compareDir, comparePrompt = "3,1,4,1,5,9,2,6";
  int64_t compareSteps = 2;
  uint64_t compareSeed = 0;
  compareCmd->add_option("engine", compareDir, "Engine directory")->required();
  compareCmd->add_option("--prompt-ids", comparePrompt,
                         "Token ids fed step by step");
  compareCmd->add_option("--steps", compareSteps, "Steps to run")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  compareCmd->add_option("--seed", compareSeed,
                         "Seed of the synthetic weights");
  std::string compareFirst = "gpu";
  uint64_t compareInterleavings = 1;
  bool compareJson = false;
  compareCmd
      ->add_option("--executor", compareFirst,
                   "What is compared with the host executor: gpu (the "
                   "default), or host (another interleaving: the host "
                   "executor must not depend on it)")
      ->check(CLI::IsMember({"gpu", "host"}));
  compareCmd->add_option("--interleavings-seed", compareInterleavings,
                         "With --executor host: its interleaving seed (the "
                         "reference side uses 0)");
  compareCmd->add_flag("--json", compareJson, "Print one JSON object");

  CLI::App *profileCmd = app.add_subcommand(
      "profile", "Run decoding steps with per-task time stamps and write "
                 "OUT/trace.json, OUT/timeline.png and OUT/summary.txt (time, "
                 "bytes and bandwidth per task family and op, the share of "
                 "the step each warp role (sched, load, compute) waits, "
                 "prefetches or idles per SM, "
                 "the compiler's predicted times against the measured ones)");
  ProfileRunOptions profileOptions;
  uint64_t profileSeed = 0;
  bool profileEventChecks = false;
  profileCmd
      ->add_option("engine", profileOptions.run.engineDir,
                   "Engine directory (tilec MODEL -o DIR)")
      ->required();
  profileCmd
      ->add_option("-n,--steps", profileOptions.steps,
                   "Decoding steps to trace (after the prompt)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  profileCmd->add_option("--out", profileOptions.outDir,
                         "Directory for trace.json, timeline.png and "
                         "summary.txt (default: ENGINE_DIR/profile)");
  profileCmd->add_flag("--json", profileOptions.run.json,
                       "Print the summary as one JSON object");
  profileCmd
      ->add_option("--executor", profileOptions.run.executor,
                   "gpu (the megakernel's globaltimer), host (the host "
                   "executor's CPU times: not GPU times) or auto")
      ->check(CLI::IsMember({"gpu", "host", "auto"}));
  profileCmd->add_option("--prompt-ids", profileOptions.run.prompt,
                         "Comma-separated prompt token ids");
  CLI::Option *profileSeedOption = profileCmd->add_option(
      "--seed", profileSeed, "Synthetic weights from this seed");
  profileCmd
      ->add_option("--weights", profileOptions.run.weightsDir,
                   "Checkpoint directory (default: the engine's model)")
      ->excludes(profileSeedOption);
  profileCmd->add_option("--device", profileOptions.run.device,
                         "GPU executor: which GPU");
  profileCmd->add_flag("--no-cache", profileOptions.run.noCache,
                       "GPU executor: compile even when the cubin is cached");
  profileCmd->add_option("--define", profileOptions.run.defines,
                         "Define a device-library macro for NVRTC "
                         "(repeatable), e.g. TILEC_GEMV_MMA_MIN_T=17");
  profileCmd
      ->add_option("--threads", profileOptions.run.threads,
                   "Host executor: worker threads")
      ->check(CLI::Range(1, 256));
  profileCmd->add_option("--interleavings-seed",
                         profileOptions.run.interleavingsSeed,
                         "Host executor: seed of the task interleaving");
  profileCmd->add_flag("--event-checks", profileEventChecks,
                       "Host executor: keep the shadow-state event checks on "
                       "(off by default: they dominate host times)");
  profileCmd
      ->add_option("--width", profileOptions.width,
                   "Width of timeline.png in pixels")
      ->check(CLI::Range(400, 20000));

  CLI::App *benchCmd = app.add_subcommand(
      "bench", "Time engines on the GPU against its measured HBM bandwidth: "
               "per-step kernel time, tokens/s, bytes per step and the "
               "fraction of the copy bandwidth, in the megakernel and the "
               "one-kernel-per-op modes");
  BenchOptions benchOptions;
  uint64_t benchSeed = 0;
  benchCmd->add_option("engines", benchOptions.engines, "Engine directories")
      ->required();
  benchCmd
      ->add_option("-n,--steps", benchOptions.steps,
                   "Timed decode steps per engine and mode (at least)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  benchCmd
      ->add_option("--warmup", benchOptions.warmup,
                   "Decode steps run before the timed ones")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  benchCmd
      ->add_option("--launch", benchOptions.launch,
                   "megakernel, per-op (the baseline) or both")
      ->check(CLI::IsMember({"megakernel", "per-op", "both"}));
  benchCmd->add_flag("--oracle-draft", benchOptions.oracleDraft,
                     "DFlash engines (plain ones ignore it): the target's own "
                     "continuation as the "
                     "drafts (every block accepted whole: the step time at "
                     "full acceptance)");
  benchCmd->add_option("--prompt-ids", benchOptions.prompt,
                       "Comma-separated prompt token ids");
  CLI::Option *benchSeedOption = benchCmd->add_option(
      "--seed", benchSeed, "Synthetic weights from this seed");
  benchCmd
      ->add_option("--weights", benchOptions.weightsDir,
                   "Checkpoint directory (default: the engine's model)")
      ->excludes(benchSeedOption);
  benchCmd->add_option("--device", benchOptions.device, "Which GPU")
      ->check(CLI::Range(0, 1023));
  benchCmd
      ->add_option("--copy-mib", benchOptions.copyMib,
                   "MiB per copy of the bandwidth measurement")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  benchCmd->add_flag("--json", benchOptions.json,
                     "Print one JSON object (device, bandwidth, runs)");
  benchCmd->add_flag("--no-cache", benchOptions.noCache,
                     "Compile even when the cubin is cached");
  benchCmd->add_option("--define", benchOptions.defines,
                       "Define a device-library macro for NVRTC (repeatable), "
                       "e.g. TILEC_GEMV_MMA_MIN_T=17");

  CLI::App *sampleCmd = app.add_subcommand(
      "sample-check",
      "DFlash sampling: many two-token samples against the target's exact "
      "distribution (chi-square)");
  RunOptions sampleRun;
  SampleCheckOptions sampleOptions;
  double sampleAlpha = 1e-3;
  sampleCmd->add_option("engine", sampleRun.engineDir, "Engine directory")
      ->required();
  sampleCmd->add_option("--executor", sampleRun.executor, "gpu, host or auto")
      ->check(CLI::IsMember({"gpu", "host", "auto"}));
  sampleCmd->add_option("--prompt-ids", sampleRun.prompt, "Prompt token ids");
  sampleCmd
      ->add_option("--temperature", sampleOptions.temperature,
                   "Sampling temperature")
      ->check(CLI::Range(1e-3f, 1e6f));
  sampleCmd->add_option("--samples", sampleOptions.samples, "Samples")
      ->check(CLI::Range(int64_t(10), int64_t(1) << 30));
  sampleCmd->add_flag("--oracle-draft", sampleOptions.oracle,
                      "Drafts from the target's greedy continuation (accepted "
                      "often)");
  sampleCmd
      ->add_option("--alpha", sampleAlpha,
                   "Fail when a chi-square p-value is below this")
      ->check(CLI::Range(0.0, 1.0));
  sampleCmd->add_flag("--json", sampleRun.json, "Print one JSON object");
  sampleCmd->add_flag("--no-event-checks", sampleRun.noEventChecks,
                      "Host executor: skip the event checks");

  CLI::App *tokenizeCmd = app.add_subcommand(
      "tokenize", "Encode text with a tokenizer.json (or decode ids) and show "
                  "the round trip");
  std::string tokenizePath;
  std::optional<std::string> tokenizeText, tokenizeIds;
  bool tokenizeJson = false;
  tokenizeCmd
      ->add_option("tokenizer", tokenizePath,
                   "A tokenizer.json, a directory holding one, or an engine "
                   "directory (its model's)")
      ->required();
  CLI::Option *textOption =
      tokenizeCmd->add_option("--text", tokenizeText, "Text to encode");
  tokenizeCmd->add_option("--ids", tokenizeIds, "Comma-separated ids to decode")
      ->excludes(textOption);
  tokenizeCmd->add_flag("--json", tokenizeJson, "Print one JSON object");

  CLI11_PARSE(app, argc, argv);
  try {
    if (app.got_subcommand("presets")) {
      for (const std::string &name : presetNames())
        std::cout << name << "\n";
      return 0;
    }
    if (synth->parsed()) {
      Model model = loadModel(synthModel);
      writeSyntheticCheckpoint(model, synthSeed, synthOut, synthOptions);
      std::cerr << fmt::format("tile-run: wrote {} (seed {})\n", synthOut,
                               synthSeed);
      return 0;
    }
    if (compile->parsed()) {
      EngineManifest manifest = readEngine(compileDir);
      std::ifstream in(compileDir + "/" + manifest.kernelFile);
      std::stringstream text;
      text << in.rdbuf();
      NvrtcSource src =
          engineKernelSource(manifest, text.str(),
                             compileArch.empty() ? manifest.arch : compileArch);
      src.extraOptions = defineOptions(compileDefines);
      NvrtcSettings settings;
      settings.useCache = !compileNoCache;
      // The cache key names the driver: with one, fill the cache `tile-run
      // run` will read (engines compiled ahead, in parallel).
      try {
        std::vector<GpuDeviceInfo> gpus = listGpus();
        if (!gpus.empty())
          settings.driverVersion = gpus.front().driverVersion;
      } catch (const Error &) {
      }
      NvrtcResult result = nvrtcCompile(src, settings);
      if (!result.log.empty())
        std::cerr << result.log << "\n";
      // The entry points in the cubin (ELF symbol names), and what the
      // one-kernel-per-op mode would launch.
      std::vector<std::string> kernels;
      for (const char *k : {"tilec_step", "tilec_task_group"})
        if (std::search(result.cubin.begin(), result.cubin.end(), k,
                        k + std::strlen(k)) != result.cubin.end())
          kernels.push_back(k);
      const size_t groups = launchGroups(manifest).size();
      if (compileJson) {
        nlohmann::json out = {{"engine", compileDir},
                              {"kernel_file", manifest.kernelFile},
                              {"arch", src.arch},
                              {"cubin_bytes", result.cubin.size()},
                              {"cache_hit", result.cacheHit},
                              {"seconds", result.seconds},
                              {"cache_path", result.cachePath},
                              {"kernels", kernels},
                              {"per_op_launches", groups},
                              {"tasks", manifest.taskCount()}};
        std::cout << out.dump() << "\n";
        return 0;
      }
      std::cout << fmt::format(
          "{}: {} for {}: {} bytes of cubin ({}, {:.1f} s)\n", compileDir,
          manifest.kernelFile, src.arch, result.cubin.size(),
          result.cacheHit ? "cached" : "compiled", result.seconds);
      std::cout << fmt::format(
          "{}: kernels {}; --launch per-op: {} launches per step for {} "
          "tasks\n",
          compileDir, fmt::join(kernels, ", "), groups, manifest.taskCount());
      return 0;
    }
    if (tokenizeCmd->parsed())
      return tokenize(tokenizePath, tokenizeText, tokenizeIds, tokenizeJson);
    if (benchCmd->parsed()) {
      if (benchSeedOption->count() > 0)
        benchOptions.seed = benchSeed;
      return runBench(benchOptions);
    }
    if (sampleCmd->parsed())
      return sampleCheck(sampleRun, sampleOptions, sampleAlpha);
    if (profileCmd->parsed()) {
      if (profileSeedOption->count() > 0)
        profileOptions.run.seed = profileSeed;
      profileOptions.run.noEventChecks = !profileEventChecks;
      return runProfile(profileOptions);
    }
    if (compareCmd->parsed())
      return compareExecutors(compareDir, comparePrompt, compareSteps,
                              compareSeed, compareFirst, compareInterleavings,
                              compareJson);
    if (reference->parsed())
      return runReference(refModel, refPrompt, refCount, refSynthetic, refSeed,
                          refJson);
    if (run->parsed()) {
      if (seedOption->count() > 0)
        runOptions.seed = runSeed;
      return runEngine(runOptions);
    }
  } catch (const Error &e) {
    std::cerr << "tile-run: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
