//===- Png.h - A tiny PNG writer (no zlib) ----------------------*- C++ -*-===//
//
// Truecolour 8-bit PNGs for the profiler's timeline (tile-run profile): the
// IDAT stream is zlib with "stored" (uncompressed) deflate blocks, so the
// encoder needs only CRC-32 (chunks) and Adler-32 (zlib). Images are larger
// than compressed ones, which a timeline of a few hundred KiB can afford.
// LLVM-free, no dependency beyond the standard library.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tilec {

/// An RGB image, rows top to bottom, 3 bytes per pixel.
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels; // width * height * 3

  RgbImage() = default;
  RgbImage(int w, int h, uint32_t rgb = 0xffffff);
  /// 0xRRGGBB; pixels outside the image are ignored.
  void set(int x, int y, uint32_t rgb);
  uint32_t get(int x, int y) const;
  /// Fills [x0, x1) x [y0, y1), clipped to the image.
  void fill(int x0, int y0, int x1, int y1, uint32_t rgb);
};

/// CRC-32 (ISO 3309 / ITU-T V.42, as PNG uses) of `n` bytes, continuing
/// from `crc` (0 to start).
uint32_t crc32(const uint8_t *data, size_t n, uint32_t crc = 0);
/// Adler-32 (RFC 1950) of `n` bytes, continuing from `adler` (1 to start).
uint32_t adler32(const uint8_t *data, size_t n, uint32_t adler = 1);

/// The PNG file of `image` (colour type 2, bit depth 8, filter 0 on every
/// row, zlib stream of stored deflate blocks). Throws tilec::Error for an
/// empty image or one whose pixel count does not match its size.
std::string encodePng(const RgbImage &image);
/// Writes encodePng(image) to `path`; throws tilec::Error naming the path
/// when it cannot.
void writePng(const RgbImage &image, const std::string &path);

} // namespace tilec
