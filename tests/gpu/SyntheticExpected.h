//===- SyntheticExpected.h - models/core's synthetic bytes (GPU tests) ----===//
//
// Plain types only: device_test.cu (nvcc) includes this; the implementation
// (host C++) uses models/core's checkpoint writer and quantizers.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tilec::gputest {

/// One tensor as models/core stores it, with what tilec_synthesize needs to
/// make it: format 0 bf16, 1 fp8_block, 2 mxfp4, 3 f32 (TilecFormat +
/// TILEC_SYNTH_F32).
struct SynthTensor {
  std::string name;
  int format = 0;
  uint64_t key = 0;
  float scale = 1.0f, offset = 0.0f;
  int64_t rows = 1, cols = 1, matrices = 1;
  std::vector<uint8_t> data, scales;
};

/// Writes the preset's synthetic checkpoint (packed experts) under `dir` with
/// models/core's writer and returns every tensor of it (target and drafter) as
/// stored in the files. Throws on error.
std::vector<SynthTensor> checkpointTensors(const std::string &preset,
                                           uint64_t seed,
                                           const std::string &dir);

/// Large tensors of each format (MiMo-V2.5-Pro-sized rows), encoded as the
/// writer encodes them (synthesizeRaw + quantizeMxfp4 / quantizeFp8Block /
/// f32ToBf16).
std::vector<SynthTensor> largeTensors(uint64_t seed);

} // namespace tilec::gputest
