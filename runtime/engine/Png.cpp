//===- Png.cpp - A tiny PNG writer (stored deflate blocks) ----------------===//
#include "runtime/engine/Png.h"

#include "models/core/Error.h"

#include <algorithm>
#include <array>
#include <fstream>

namespace tilec {

RgbImage::RgbImage(int w, int h, uint32_t rgb) : width(w), height(h) {
  if (w < 0 || h < 0)
    fail("image: negative size {} x {}", w, h);
  pixels.resize(size_t(w) * size_t(h) * 3);
  fill(0, 0, w, h, rgb);
}

void RgbImage::set(int x, int y, uint32_t rgb) {
  if (x < 0 || y < 0 || x >= width || y >= height)
    return;
  uint8_t *p = &pixels[(size_t(y) * size_t(width) + size_t(x)) * 3];
  p[0] = uint8_t(rgb >> 16);
  p[1] = uint8_t(rgb >> 8);
  p[2] = uint8_t(rgb);
}

uint32_t RgbImage::get(int x, int y) const {
  if (x < 0 || y < 0 || x >= width || y >= height)
    return 0;
  const uint8_t *p = &pixels[(size_t(y) * size_t(width) + size_t(x)) * 3];
  return uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2];
}

void RgbImage::fill(int x0, int y0, int x1, int y1, uint32_t rgb) {
  x0 = std::max(x0, 0), y0 = std::max(y0, 0);
  x1 = std::min(x1, width), y1 = std::min(y1, height);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x)
      set(x, y, rgb);
}

uint32_t crc32(const uint8_t *data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k)
        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i)
    crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(const uint8_t *data, size_t n, uint32_t adler) {
  uint32_t a = adler & 0xffff, b = adler >> 16;
  for (size_t i = 0; i < n; ++i) {
    a = (a + data[i]) % 65521;
    b = (b + a) % 65521;
  }
  return b << 16 | a;
}

namespace {

void putBe32(std::string &out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8)
    out.push_back(char(uint8_t(v >> s)));
}

/// A chunk: length, type, data, CRC of type and data.
void chunk(std::string &out, const char type[4], const std::string &data) {
  putBe32(out, uint32_t(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  putBe32(out,
          crc32(reinterpret_cast<const uint8_t *>(body.data()), body.size()));
}

} // namespace

std::string encodePng(const RgbImage &image) {
  if (image.width <= 0 || image.height <= 0)
    fail("PNG: the image is empty ({} x {})", image.width, image.height);
  const size_t rowBytes = size_t(image.width) * 3;
  if (image.pixels.size() != rowBytes * size_t(image.height))
    fail("PNG: {} bytes of pixels for a {} x {} RGB image", image.pixels.size(),
         image.width, image.height);
  // The filtered scanlines: a filter byte (0, none) before each row.
  std::vector<uint8_t> raw;
  raw.reserve((rowBytes + 1) * size_t(image.height));
  for (int y = 0; y < image.height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(),
               image.pixels.begin() + ptrdiff_t(rowBytes * size_t(y)),
               image.pixels.begin() + ptrdiff_t(rowBytes * size_t(y + 1)));
  }
  // zlib: CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (check bits: 0x7801 is
  // a multiple of 31, no dictionary, fastest), stored blocks of at most
  // 65535 bytes (BFINAL on the last, BTYPE 00, LEN, ~LEN), then Adler-32.
  std::string z = {char(0x78), char(0x01)};
  size_t at = 0;
  do {
    size_t n = std::min<size_t>(65535, raw.size() - at);
    bool last = at + n == raw.size();
    z.push_back(char(last ? 1 : 0));
    z.push_back(char(uint8_t(n)));
    z.push_back(char(uint8_t(n >> 8)));
    z.push_back(char(uint8_t(~n)));
    z.push_back(char(uint8_t(~n >> 8)));
    z.append(reinterpret_cast<const char *>(raw.data() + at), n);
    at += n;
  } while (at < raw.size());
  putBe32(z, adler32(raw.data(), raw.size()));

  std::string out = "\x89PNG\r\n\x1a\n";
  std::string header;
  putBe32(header, uint32_t(image.width));
  putBe32(header, uint32_t(image.height));
  header += {char(8), char(2), char(0), char(0), char(0)}; // 8-bit RGB
  chunk(out, "IHDR", header);
  chunk(out, "IDAT", z);
  chunk(out, "IEND", "");
  return out;
}

void writePng(const RgbImage &image, const std::string &path) {
  std::string bytes = encodePng(image);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out)
    fail("cannot write '{}'", path);
}

} // namespace tilec
