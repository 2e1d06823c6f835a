//===- Sha256.h - A small self-contained SHA-256 (FIPS 180-4) ---*- C++ -*-===//
//
// Keys the NVRTC cubin cache. Incremental: update() any number of times, then
// hex() or digest() once.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tilec {

class Sha256 {
public:
  Sha256();
  void update(const void *data, size_t size);
  void update(std::string_view text) { update(text.data(), text.size()); }
  /// Appends the length first, then the bytes: hashing a sequence of fields
  /// this way cannot make ("ab", "c") and ("a", "bc") collide.
  void updateField(std::string_view text);
  /// Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 32> digest();
  std::string hex();

  static std::string hex(std::string_view text);

private:
  void block(const uint8_t *p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0; // bytes
  bool finished_ = false;
};

} // namespace tilec
