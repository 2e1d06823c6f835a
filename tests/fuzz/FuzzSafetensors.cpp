//===- FuzzSafetensors.cpp - libFuzzer target for the safetensors reader --===//
//
// Any input must either parse or throw tilec::Error; anything else (another
// exception, a crash, a sanitizer report) is a bug. Inputs that parse are
// checked further: every tensor's bytes are readable, lookups find every name,
// and writing the tensors back out and parsing again gives the same file.
//
//===----------------------------------------------------------------------===//
#include "models/core/Error.h"
#include "models/core/Safetensors.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

using namespace tilec;

namespace {
void check(bool condition) {
  if (!condition)
    __builtin_trap();
}
} // namespace

static void parseAndCheck(const uint8_t *data, size_t size) {
  std::optional<SafetensorsFile> file;
  try {
    file = SafetensorsFile::fromBytes(data, size, "fuzz.safetensors");
  } catch (const Error &) {
    return;
  }

  // Outside the try: an exception here escapes and libFuzzer reports it.
  SafetensorsWriter writer;
  for (const TensorInfo &t : file->tensors()) {
    check(file->find(t.name) == &t);
    check(t.nbytes == size_t(t.numel()) * dtypeSize(t.dtype));
    if (t.nbytes > 0) {
      volatile uint8_t first = t.data[0], last = t.data[t.nbytes - 1];
      (void)first;
      (void)last;
    }
    writer.addBorrowed(t.name, t.dtype, t.shape, t.data, t.nbytes);
  }
  for (const auto &[key, value] : file->metadata())
    writer.setMetadata(key, value);

  std::vector<uint8_t> bytes = writer.toBytes();
  SafetensorsFile again =
      SafetensorsFile::fromBytes(bytes.data(), bytes.size());
  check(again.tensors().size() == file->tensors().size());
  check(again.metadata() == file->metadata());
  for (size_t i = 0; i < again.tensors().size(); ++i) {
    const TensorInfo &a = again.tensors()[i], &b = file->tensors()[i];
    check(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape &&
          a.nbytes == b.nbytes);
    check(a.nbytes == 0 || std::memcmp(a.data, b.data, a.nbytes) == 0);
  }
  // The writer's output is canonical: writing it again changes nothing.
  SafetensorsWriter canonical;
  for (const TensorInfo &t : again.tensors())
    canonical.addBorrowed(t.name, t.dtype, t.shape, t.data, t.nbytes);
  for (const auto &[key, value] : again.metadata())
    canonical.setMetadata(key, value);
  check(canonical.toBytes() == bytes);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  parseAndCheck(data, size);
  const uint8_t *end = data + size;
  while (end > data + 8 && end[-1] != '}')
    --end;
  if (end > data + 8) {
    std::vector<uint8_t> framed(data, data + size);
    uint64_t headerLen = uint64_t(end - data) - 8;
    for (int i = 0; i < 8; ++i)
      framed[i] = uint8_t(headerLen >> (8 * i));
    parseAndCheck(framed.data(), framed.size());
  }
  return 0;
}
