//===- tile-run.cpp - Run tilec models and engines
//-------------------------===//
//
// The runtime's command line (no LLVM in it):
//   tile-run presets                         list the built-in models
//   tile-run synth MODEL -o DIR              write a synthetic checkpoint
//   tile-run reference MODEL --prompt-ids .. greedy tokens from the CPU
//   reference
//
//===----------------------------------------------------------------------===//
#include "models/core/CheckpointWeights.h"
#include "models/core/Config.h"
#include "models/core/Error.h"
#include "models/core/Reference.h"
#include "models/core/Synthetic.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>

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

std::vector<int32_t> parseIds(const std::string &text,
                              const TargetConfig &cfg) {
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
    if (value < 0 || value >= cfg.vocabSize)
      fail("--prompt-ids: token id {} is outside the vocabulary [0, {})", value,
           cfg.vocabSize);
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
  Model model = loadModel(name);
  std::unique_ptr<WeightSource> weights = openWeights(model, synthetic, seed);
  std::vector<int32_t> ids = parseIds(prompt, model.target);
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
  reference->add_option("model", refModel, "Preset name or model directory")
      ->required();
  reference->add_option("--prompt-ids", refPrompt,
                        "Comma-separated prompt token ids");
  reference->add_option("-n,--max-new-tokens", refCount, "Tokens to generate")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  reference->add_flag("--synthetic", refSynthetic,
                      "Synthetic weights even for a model directory");
  reference->add_option("--seed", refSeed, "Seed of the synthetic weights");
  reference->add_flag("--json", refJson, "Print one JSON object");

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
    if (reference->parsed())
      return runReference(refModel, refPrompt, refCount, refSynthetic, refSeed,
                          refJson);
  } catch (const Error &e) {
    std::cerr << "tile-run: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
