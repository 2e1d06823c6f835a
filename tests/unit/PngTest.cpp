//===- PngTest.cpp - The tiny PNG writer ----------------------------------===//
//
// runtime/engine/Png.h against the PNG and zlib specifications: the
// checksums' reference values, the signature and chunk layout with every
// chunk's CRC checked, and the pixels decoded back from the IDAT stream by a
// reader of stored deflate blocks written here.
//
//===----------------------------------------------------------------------===//
#include "runtime/engine/Png.h"
#include "models/core/Error.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace tilec;

namespace {

uint32_t be32(const std::string &s, size_t at) {
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 |
         uint32_t(uint8_t(s[at + 2])) << 8 | uint32_t(uint8_t(s[at + 3]));
}

struct Chunk {
  std::string type, data;
};

/// The chunks after the signature; fails the test on a bad CRC or length.
std::vector<Chunk> readChunks(const std::string &png) {
  std::vector<Chunk> chunks;
  size_t at = 8;
  while (at < png.size()) {
    EXPECT_LE(at + 12, png.size()) << "truncated chunk at " << at;
    if (at + 12 > png.size())
      break;
    uint32_t length = be32(png, at);
    EXPECT_LE(at + 12 + length, png.size());
    if (at + 12 + length > png.size())
      break;
    std::string typeAndData = png.substr(at + 4, 4 + length);
    uint32_t crc = be32(png, at + 8 + length);
    EXPECT_EQ(crc, crc32(reinterpret_cast<const uint8_t *>(typeAndData.data()),
                         typeAndData.size()))
        << "CRC of chunk " << typeAndData.substr(0, 4);
    chunks.push_back({typeAndData.substr(0, 4), typeAndData.substr(4)});
    at += 12 + length;
  }
  return chunks;
}

/// Inflates a zlib stream made only of stored blocks; fails the test on
/// anything else (a compressed block, a bad LEN/NLEN, a bad Adler-32).
std::vector<uint8_t> inflateStored(const std::string &z) {
  std::vector<uint8_t> out;
  EXPECT_GE(z.size(), 2u + 5u + 4u);
  uint8_t cmf = uint8_t(z[0]), flg = uint8_t(z[1]);
  EXPECT_EQ(cmf & 0x0f, 8) << "compression method deflate";
  EXPECT_EQ((cmf * 256 + flg) % 31, 0) << "zlib header check bits";
  EXPECT_EQ(flg & 0x20, 0) << "no preset dictionary";
  size_t at = 2;
  bool last = false;
  while (!last && at + 5 <= z.size()) {
    uint8_t header = uint8_t(z[at]);
    last = header & 1;
    EXPECT_EQ((header >> 1) & 3, 0) << "a stored block";
    uint16_t len = uint16_t(uint8_t(z[at + 1]) | uint8_t(z[at + 2]) << 8);
    uint16_t nlen = uint16_t(uint8_t(z[at + 3]) | uint8_t(z[at + 4]) << 8);
    EXPECT_EQ(uint16_t(~nlen), len);
    at += 5;
    EXPECT_LE(at + len, z.size());
    out.insert(out.end(), z.begin() + ptrdiff_t(at),
               z.begin() + ptrdiff_t(at + len));
    at += len;
  }
  EXPECT_TRUE(last) << "the last block has BFINAL";
  EXPECT_EQ(at + 4, z.size()) << "Adler-32 ends the stream";
  if (at + 4 == z.size()) {
    EXPECT_EQ(be32(z, at), adler32(out.data(), out.size()));
  }
  return out;
}

/// The pixels of a PNG written by encodePng (filter 0 on every row).
RgbImage decode(const std::string &png) {
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::vector<Chunk> chunks = readChunks(png);
  RgbImage image;
  if (chunks.size() < 3) {
    ADD_FAILURE() << "expected IHDR, IDAT, IEND";
    return image;
  }
  EXPECT_EQ(chunks.front().type, "IHDR");
  EXPECT_EQ(chunks.back().type, "IEND");
  EXPECT_EQ(chunks.back().data, "");
  const std::string &h = chunks.front().data;
  EXPECT_EQ(h.size(), 13u);
  image.width = int(be32(h, 0));
  image.height = int(be32(h, 4));
  EXPECT_EQ(h[8], 8) << "bit depth";
  EXPECT_EQ(h[9], 2) << "truecolour";
  EXPECT_EQ(h.substr(10), std::string(3, '\0'));
  std::string z;
  for (const Chunk &c : chunks)
    if (c.type == "IDAT")
      z += c.data;
  std::vector<uint8_t> raw = inflateStored(z);
  const size_t row = size_t(image.width) * 3;
  EXPECT_EQ(raw.size(), (row + 1) * size_t(image.height));
  for (int y = 0; y < image.height && (row + 1) * size_t(y + 1) <= raw.size();
       ++y) {
    EXPECT_EQ(raw[(row + 1) * size_t(y)], 0) << "filter type of row " << y;
    image.pixels.insert(image.pixels.end(),
                        raw.begin() + ptrdiff_t((row + 1) * size_t(y) + 1),
                        raw.begin() + ptrdiff_t((row + 1) * size_t(y + 1)));
  }
  return image;
}

TEST(Png, ChecksumsMatchTheirReferenceValues) {
  const std::string check = "123456789";
  auto bytes = reinterpret_cast<const uint8_t *>(check.data());
  EXPECT_EQ(crc32(bytes, check.size()), 0xCBF43926u); // CRC-32's check value
  // Continuing a CRC over a split input gives the whole input's.
  EXPECT_EQ(crc32(bytes + 4, 5, crc32(bytes, 4)), 0xCBF43926u);
  EXPECT_EQ(crc32(bytes, 0), 0u);
  const std::string wiki = "Wikipedia";
  EXPECT_EQ(
      adler32(reinterpret_cast<const uint8_t *>(wiki.data()), wiki.size()),
      0x11E60398u);
  EXPECT_EQ(adler32(nullptr, 0), 1u);
  // The IEND chunk's CRC every PNG ends with.
  EXPECT_EQ(crc32(reinterpret_cast<const uint8_t *>("IEND"), 4), 0xAE426082u);
}

TEST(Png, SmallImageDecodesToItsPixels) {
  RgbImage image(3, 2, 0x000000);
  image.set(0, 0, 0xff0000);
  image.set(1, 0, 0x00ff00);
  image.set(2, 0, 0x0000ff);
  image.set(2, 1, 0x123456);
  image.set(5, 5, 0xffffff); // outside: ignored
  EXPECT_EQ(image.get(2, 1), 0x123456u);
  std::string png = encodePng(image);
  RgbImage back = decode(png);
  EXPECT_EQ(back.width, 3);
  EXPECT_EQ(back.height, 2);
  EXPECT_EQ(back.pixels, image.pixels);
  EXPECT_EQ(png.substr(png.size() - 12),
            std::string("\0\0\0\0IEND\xAE\x42\x60\x82", 12));
}

TEST(Png, LargeImageSpansSeveralStoredBlocks) {
  // 300 x 200 x 3 + 200 filter bytes = 180200 bytes: three stored blocks.
  RgbImage image(300, 200);
  for (int y = 0; y < 200; ++y)
    for (int x = 0; x < 300; ++x)
      image.set(x, y, uint32_t(x * 7 + y * 13) << 8 | uint32_t(x ^ y));
  image.fill(10, 10, 20, 15, 0xabcdef);
  EXPECT_EQ(image.get(19, 14), 0xabcdefu);
  EXPECT_NE(image.get(20, 14), 0xabcdefu);
  RgbImage back = decode(encodePng(image));
  EXPECT_EQ(back.width, 300);
  EXPECT_EQ(back.height, 200);
  EXPECT_TRUE(back.pixels == image.pixels);
}

TEST(Png, BadImagesAndPathsAreRefused) {
  RgbImage empty;
  EXPECT_THROW(encodePng(empty), Error);
  RgbImage wrong(2, 2);
  wrong.pixels.pop_back();
  try {
    encodePng(wrong);
    ADD_FAILURE() << "a short pixel buffer was encoded";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("11 bytes of pixels for a 2 x 2"),
              std::string::npos)
        << e.what();
  }
  try {
    writePng(RgbImage(1, 1), "/nonexistent-dir/x.png");
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.png"),
              std::string::npos)
        << e.what();
  }
}

} // namespace
