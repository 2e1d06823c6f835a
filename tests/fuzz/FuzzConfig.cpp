//===- FuzzConfig.cpp - libFuzzer entry for target and drafter configs ----===//
//
// Bytes -> JSON -> parseTargetConfig + validate, and parseDrafterConfig +
// validate against preset targets. Bad input must end in tilec::Error; any
// other exception, a crash, or a config whose written JSON does not read back
// as the same config is a bug (abort).
//
//===----------------------------------------------------------------------===//
#include "models/core/Config.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

using namespace tilec;
using json = nlohmann::json;

namespace {

[[noreturn]] void bug(const char *what, const std::string &detail) {
  std::fprintf(stderr, "FuzzConfig: %s: %s\n", what, detail.c_str());
  std::abort();
}

// Every writer that accepts a valid config must produce JSON that parses and
// validates back to the same config.
void checkTargetRoundTrip(const TargetConfig &c) {
  for (int writer = 0; writer < 2; ++writer) {
    json j;
    try {
      j = writer == 0 ? toHfJson(c) : toHubJson(c);
    } catch (const Error &) {
      continue; // a spelling that cannot express this config
    }
    try {
      TargetConfig back = parseTargetConfig(json::parse(j.dump()), "written");
      validate(back, "written");
      if (back != c)
        bug("target round trip differs", j.dump());
    } catch (const Error &e) {
      bug("written target config rejected", e.what());
    }
  }
  for (int64_t l = 0; l < c.numLayers; ++l)
    (void)c.attention(l);
}

void checkDrafterRoundTrip(const DrafterConfig &d, const TargetConfig &target) {
  json j;
  try {
    j = toDrafterJson(d, target);
  } catch (const Error &) {
    return;
  }
  try {
    DrafterConfig back =
        parseDrafterConfig(json::parse(j.dump()), target, "written");
    validate(back, target, "written");
    if (back != d)
      bug("drafter round trip differs", j.dump());
  } catch (const Error &e) {
    bug("written drafter config rejected", e.what());
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json j = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return 0;

  try {
    TargetConfig c = parseTargetConfig(j, "fuzz/config.json");
    validate(c, "fuzz/config.json");
    checkTargetRoundTrip(c);
  } catch (const Error &) {
  }

  static const Model tiny = *findPreset("tiny");
  static const Model pro = *findPreset("mimo-v2.5-pro");
  for (const Model *m : {&tiny, &pro}) {
    try {
      DrafterConfig d = parseDrafterConfig(j, m->target, "fuzz/drafter.json");
      validate(d, m->target, "fuzz/drafter.json");
      checkDrafterRoundTrip(d, m->target);
    } catch (const Error &) {
    }
  }
  return 0;
}
