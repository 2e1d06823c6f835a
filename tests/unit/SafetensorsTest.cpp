//===- SafetensorsTest.cpp - Safetensors files, checkpoints and experts ---===//
#include "models/core/Safetensors.h"
#include "models/core/Checkpoint.h"
#include "models/core/Error.h"
#include "models/core/Formats.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

using namespace tilec;
namespace fs = std::filesystem;

namespace {
/// A fresh directory under the build tree (or /tmp), removed at the end.
class TempDir {
public:
  TempDir() {
    const char *binary = std::getenv("TILEC_BINARY_DIR");
    std::string base = binary ? std::string(binary) + "/tmp" : "/tmp";
    fs::create_directories(base);
    std::string tmpl = base + "/safetensors-XXXXXX";
    if (!mkdtemp(tmpl.data()))
      throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string &name) const { return path_ + "/" + name; }
  const std::string &path() const { return path_; }

private:
  std::string path_;
};

void writeBytes(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char *>(bytes.data()),
            std::streamsize(bytes.size()));
}

/// A file with the given header text (length prefix computed) and data bytes.
std::vector<uint8_t> rawFile(const std::string &header, size_t dataBytes) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i)
    out.push_back(uint8_t(uint64_t(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + dataBytes, 0xab);
  return out;
}

/// Runs `fn`, expecting a tilec::Error whose message holds every fragment.
void expectError(const std::function<void()> &fn,
                 const std::vector<std::string> &fragments) {
  try {
    fn();
  } catch (const Error &e) {
    std::string message = e.what();
    for (const std::string &f : fragments)
      EXPECT_NE(message.find(f), std::string::npos)
          << "message '" << message << "' lacks '" << f << "'";
    return;
  }
  ADD_FAILURE() << "expected a tilec::Error";
}

/// Both entry points reject the bytes: fromBytes and open() of a written file;
/// the message names the file and holds every fragment.
void expectRejected(const std::vector<uint8_t> &bytes,
                    std::vector<std::string> fragments) {
  SCOPED_TRACE(fragments.empty() ? "" : fragments.front());
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  writeBytes(path, bytes);
  std::vector<std::string> withPath = fragments;
  withPath.push_back(path);
  expectError([&] { SafetensorsFile::open(path); }, withPath);
  fragments.push_back("<memory>");
  expectError([&] { SafetensorsFile::fromBytes(bytes.data(), bytes.size()); },
              fragments);
}

std::vector<uint8_t> randomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t &b : out)
    b = uint8_t(rng());
  return out;
}

std::vector<uint8_t> floatBytes(const std::vector<float> &v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<uint8_t> bf16Bytes(const std::vector<float> &v) {
  std::vector<uint8_t> out(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t b = f32ToBf16(v[i]);
    std::memcpy(&out[2 * i], &b, 2);
  }
  return out;
}

std::vector<float> randomFloats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> out(n);
  for (float &x : out)
    x = dist(rng);
  return out;
}
} // namespace

//===-- DTypes
//----------------------------------------------------------------===//

TEST(DType, NamesAndSizes) {
  for (DType d : kAllDTypes) {
    EXPECT_EQ(parseDType(dtypeName(d)), d);
  }
  EXPECT_EQ(dtypeName(DType::F8_E4M3), "F8_E4M3");
  EXPECT_EQ(dtypeSize(DType::BF16), 2u);
  EXPECT_EQ(dtypeSize(DType::F8_E8M0), 1u);
  EXPECT_EQ(dtypeSize(DType::I64), 8u);
  EXPECT_EQ(dtypeSize(DType::C64), 8u);
  EXPECT_EQ(parseDType("F4"), std::nullopt);
  EXPECT_EQ(parseDType("bf16"), std::nullopt);
}

TEST(Utf8, Validation) {
  EXPECT_TRUE(isValidUtf8("model.layers.0"));
  EXPECT_TRUE(isValidUtf8("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(isValidUtf8("\xff"));
  EXPECT_FALSE(isValidUtf8("\xc0\xaf"));         // overlong '/'
  EXPECT_FALSE(isValidUtf8("\xed\xa0\x80"));     // surrogate
  EXPECT_FALSE(isValidUtf8("\xf4\x90\x80\x80")); // past U+10FFFF
  EXPECT_FALSE(isValidUtf8("\xe2\x82"));         // truncated
}

//===-- Round trips
//-----------------------------------------------------------===//

TEST(Safetensors, RoundTripEveryDType) {
  TempDir dir;
  SafetensorsWriter writer;
  std::map<std::string, std::vector<uint8_t>> expected;
  unsigned seed = 0;
  for (DType d : kAllDTypes) {
    std::string name = "t." + std::string(dtypeName(d));
    std::vector<uint8_t> bytes = randomBytes(6 * dtypeSize(d), ++seed);
    writer.add(name, d, {2, 3}, bytes.data(), bytes.size());
    expected[name] = bytes;
  }
  writer.add("empty", DType::F32, {0, 4}, nullptr, 0);
  expected["empty"] = {};
  float scalar = 2.5f;
  writer.add("scalar", DType::F32, {}, &scalar, 4);
  expected["scalar"] = floatBytes({2.5f});
  writer.setMetadata("format", "pt");

  std::vector<uint8_t> bytes = writer.toBytes();
  uint64_t headerLen = 0;
  std::memcpy(&headerLen, bytes.data(), 8);
  EXPECT_EQ(headerLen % 8, 0u);
  EXPECT_EQ(bytes[8 + headerLen - 1] == ' ' || bytes[8 + headerLen - 1] == '}',
            true);

  std::string path = dir.file("all.safetensors");
  writer.write(path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  for (const SafetensorsFile &file :
       {SafetensorsFile::open(path),
        SafetensorsFile::fromBytes(bytes.data(), bytes.size())}) {
    ASSERT_EQ(file.tensors().size(), expected.size());
    EXPECT_EQ(file.metadata().at("format"), "pt");
    for (const auto &[name, data] : expected) {
      const TensorInfo &t = file.tensor(name);
      EXPECT_EQ(std::vector<uint8_t>(t.data, t.data + t.nbytes), data) << name;
    }
    const TensorInfo &bf = file.tensor("t.BF16");
    EXPECT_EQ(bf.dtype, DType::BF16);
    EXPECT_EQ(bf.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(bf.numel(), 6);
    EXPECT_EQ(file.tensor("scalar").numel(), 1);
    EXPECT_EQ(file.tensor("empty").numel(), 0);
    EXPECT_EQ(file.find("nope"), nullptr);
    std::vector<std::string> names = file.names();
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  }
  EXPECT_EQ(SafetensorsFile::open(path).tensor("t.U8").file, path);
  expectError([&] { SafetensorsFile::open(path).tensor("nope"); },
              {path, "'nope'"});
}

TEST(Safetensors, WriterIsDeterministicAndContiguous) {
  std::vector<uint8_t> a = randomBytes(12, 1), b = randomBytes(6, 2);
  SafetensorsWriter w1, w2;
  w1.add("b", DType::U8, {12}, a.data(), a.size());
  w1.add("a", DType::I16, {3}, b.data(), b.size());
  w2.add("a", DType::I16, {3}, b.data(), b.size());
  w2.addBorrowed("b", DType::U8, {12}, a.data(), a.size());
  EXPECT_EQ(w1.toBytes(), w2.toBytes());

  std::vector<uint8_t> bytes = w1.toBytes();
  uint64_t headerLen = 0;
  std::memcpy(&headerLen, bytes.data(), 8);
  auto header =
      nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + headerLen);
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json({0, 6}));
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json({6, 18}));
  EXPECT_EQ(bytes.size(), 8 + headerLen + 18);
  EXPECT_FALSE(header.contains("__metadata__"));
}

TEST(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  float x[2] = {};
  w.add("x", DType::F32, {2}, x, 8);
  expectError([&] { w.add("x", DType::F32, {2}, x, 8); }, {"'x'", "twice"});
  expectError([&] { w.add("y", DType::F32, {3}, x, 8); },
              {"'y'", "needs 12 bytes"});
  expectError([&] { w.add("z", DType::F32, {-2}, x, 8); }, {"'z'", "negative"});
  expectError([&] { w.add("", DType::F32, {2}, x, 8); }, {"empty"});
  expectError([&] { w.add("__metadata__", DType::F32, {2}, x, 8); },
              {"reserved"});
  expectError([&] { w.add("bad\xff", DType::F32, {2}, x, 8); }, {"UTF-8"});
}

TEST(Safetensors, ShardedRoundTrip) {
  TempDir dir;
  SafetensorsWriter writer;
  std::map<std::string, std::vector<uint8_t>> expected;
  for (int i = 0; i < 10; ++i) {
    std::string name = "model.layers." + std::to_string(i) + ".w";
    expected[name] = randomBytes(100, i);
    writer.add(name, DType::U8, {10, 10}, expected[name].data(), 100);
  }
  std::vector<std::string> shards = writer.writeSharded(dir.path(), 250);
  ASSERT_EQ(shards.size(), 5u);
  EXPECT_EQ(shards.front(), "model-00001-of-00005.safetensors");
  std::ifstream indexFile(dir.file("model.safetensors.index.json"));
  nlohmann::json index = nlohmann::json::parse(indexFile);
  EXPECT_EQ(index["metadata"]["total_size"], 1000);
  EXPECT_EQ(index["weight_map"].size(), 10u);

  for (const std::string &path :
       {dir.path(), dir.file("model.safetensors.index.json")}) {
    Checkpoint ck = Checkpoint::open(path);
    EXPECT_EQ(ck.files().size(), 5u);
    ASSERT_EQ(ck.size(), 10u);
    for (const auto &[name, data] : expected) {
      const TensorInfo &t = ck.tensor(name);
      EXPECT_EQ(std::vector<uint8_t>(t.data, t.data + t.nbytes), data);
      EXPECT_EQ(fs::path(t.file).filename().string(),
                index["weight_map"][name].get<std::string>());
    }
    EXPECT_EQ(ck.namesWithPrefix("model.layers.1").size(), 1u);
    EXPECT_EQ(ck.names().size(), 10u);
  }
  // A tensor bigger than the limit gets a shard of its own.
  SafetensorsWriter big;
  std::vector<uint8_t> blob(300);
  big.add("a", DType::U8, {300}, blob.data(), 300);
  big.add("b", DType::U8, {1}, blob.data(), 1);
  TempDir dir2;
  EXPECT_EQ(big.writeSharded(dir2.path(), 100).size(), 2u);
}

//===-- Reader rejections
//-----------------------------------------------------===//

namespace {
std::string tensorEntry(const std::string &name, const std::string &dtype,
                        const std::string &shape, const std::string &offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}
} // namespace

TEST(SafetensorsReject, ShorterThanHeaderLength) {
  expectRejected({1, 0, 0}, {"3 bytes", "8-byte header length"});
}

TEST(SafetensorsReject, HeaderOver100MB) {
  std::vector<uint8_t> bytes(16, ' ');
  uint64_t n = SafetensorsFile::kMaxHeaderBytes + 1;
  std::memcpy(bytes.data(), &n, 8);
  expectRejected(bytes, {"header length 100000001", "limit"});
}

TEST(SafetensorsReject, HeaderPastEnd) {
  std::vector<uint8_t> bytes = rawFile("{}", 0);
  bytes[0] = 100;
  expectRejected(bytes, {"header length 100", "past the end"});
}

TEST(SafetensorsReject, HeaderNotJson) {
  expectRejected(rawFile("{\"a\": ", 0), {"not valid JSON"});
}

TEST(SafetensorsReject, HeaderNotObject) {
  expectRejected(rawFile("[1, 2]", 0), {"must be a JSON object", "array"});
}

TEST(SafetensorsReject, NonUtf8Name) {
  expectRejected(
      rawFile("{" + tensorEntry("bad\xff", "U8", "[1]", "[0,1]") + "}", 1),
      {"not valid JSON", "UTF-8"});
}

TEST(SafetensorsReject, EmptyName) {
  expectRejected(rawFile("{" + tensorEntry("", "U8", "[1]", "[0,1]") + "}", 1),
                 {"empty name"});
}

TEST(SafetensorsReject, DuplicateName) {
  expectRejected(rawFile("{" + tensorEntry("w", "U8", "[1]", "[0,1]") + "," +
                             tensorEntry("w", "U8", "[1]", "[1,2]") + "}",
                         2),
                 {"'w'", "twice"});
}

TEST(SafetensorsReject, EntryNotObject) {
  expectRejected(rawFile("{\"w\": [1]}", 0), {"'w'", "expected an object"});
}

TEST(SafetensorsReject, MissingDtype) {
  expectRejected(
      rawFile("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 1]}}", 1),
      {"'w'", "dtype must be a string"});
}

TEST(SafetensorsReject, UnknownDtype) {
  expectRejected(rawFile("{" + tensorEntry("w", "F4", "[2]", "[0,1]") + "}", 1),
                 {"'w'", "unknown dtype \"F4\""});
}

TEST(SafetensorsReject, NegativeShape) {
  expectRejected(
      rawFile("{" + tensorEntry("w", "U8", "[2,-1]", "[0,0]") + "}", 0),
      {"'w'", "shape entry -1"});
}

TEST(SafetensorsReject, FractionalShape) {
  expectRejected(
      rawFile("{" + tensorEntry("w", "U8", "[1.5]", "[0,1]") + "}", 1),
      {"'w'", "shape entry 1.5"});
}

TEST(SafetensorsReject, ShapeNotArray) {
  expectRejected(rawFile("{" + tensorEntry("w", "U8", "4", "[0,4]") + "}", 4),
                 {"'w'", "shape must be an array"});
}

TEST(SafetensorsReject, ShapeOverflow) {
  expectRejected(
      rawFile(
          "{" + tensorEntry("w", "F32", "[4294967296,4294967296,2]", "[0,0]") +
              "}",
          0),
      {"'w'", "overflows"});
  expectRejected(
      rawFile("{" + tensorEntry("w", "U8", "[18446744073709551615]", "[0,0]") +
                  "}",
              0),
      {"'w'", "shape entry 18446744073709551615"});
}

TEST(SafetensorsReject, DeepNesting) {
  expectRejected(
      rawFile("{" + tensorEntry("w", "U8", "[[1]]", "[0,1]") + "}", 1),
      {"nests deeper"});
}

TEST(SafetensorsReject, DataOffsetsNotAPair) {
  expectRejected(rawFile("{" + tensorEntry("w", "U8", "[1]", "[0]") + "}", 1),
                 {"'w'", "data_offsets must be [begin, end]"});
  expectRejected(
      rawFile("{" + tensorEntry("w", "U8", "[1]", "[0,-1]") + "}", 1),
      {"'w'", "data_offsets must be [begin, end]"});
  expectRejected(rawFile("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1),
                 {"'w'", "data_offsets must be [begin, end]"});
}

TEST(SafetensorsReject, BeginAfterEnd) {
  expectRejected(rawFile("{" + tensorEntry("w", "U8", "[0]", "[4,2]") + "}", 8),
                 {"'w'", "[4, 2]", "begin > end"});
}

TEST(SafetensorsReject, OffsetsOutOfRange) {
  expectRejected(
      rawFile("{" + tensorEntry("w", "U8", "[16]", "[0,16]") + "}", 8),
      {"'w'", "8-byte data buffer", "truncated"});
}

TEST(SafetensorsReject, SizeMismatch) {
  expectRejected(
      rawFile("{" + tensorEntry("w", "F32", "[2]", "[0,4]") + "}", 8),
      {"'w'", "hold 4 bytes", "F32 [2] needs 8"});
}

TEST(SafetensorsReject, OverlappingTensors) {
  expectRejected(rawFile("{" + tensorEntry("a", "U8", "[8]", "[0,8]") + "," +
                             tensorEntry("b", "U8", "[8]", "[4,12]") + "}",
                         12),
                 {"'a'", "'b'", "overlap"});
  // Empty tensors overlap nothing.
  std::vector<uint8_t> ok =
      rawFile("{" + tensorEntry("a", "U8", "[8]", "[0,8]") + "," +
                  tensorEntry("e", "U8", "[0]", "[4,4]") + "}",
              8);
  EXPECT_EQ(SafetensorsFile::fromBytes(ok.data(), ok.size()).tensors().size(),
            2u);
}

TEST(SafetensorsReject, MetadataNotStrings) {
  expectRejected(rawFile("{\"__metadata__\": {\"format\": 1}}", 0),
                 {"__metadata__", "'format'", "must map to a string"});
  expectRejected(rawFile("{\"__metadata__\": [\"x\"]}", 0),
                 {"__metadata__ must be an object"});
  std::vector<uint8_t> ok = rawFile("{\"__metadata__\": null}", 0);
  EXPECT_TRUE(
      SafetensorsFile::fromBytes(ok.data(), ok.size()).metadata().empty());
}

TEST(SafetensorsReject, TruncatedFile) {
  TempDir dir;
  SafetensorsWriter writer;
  std::vector<uint8_t> data = randomBytes(64, 9);
  writer.add("model.embed_tokens.weight", DType::BF16, {4, 8}, data.data(), 64);
  std::vector<uint8_t> bytes = writer.toBytes();
  bytes.resize(bytes.size() - 1);
  expectRejected(bytes, {"'model.embed_tokens.weight'", "truncated"});
}

TEST(SafetensorsReject, MissingOrSpecialFiles) {
  TempDir dir;
  expectError([&] { SafetensorsFile::open(dir.file("absent.safetensors")); },
              {"absent.safetensors", "cannot open"});
  expectError([&] { SafetensorsFile::open(dir.path()); },
              {"not a regular file"});
  writeBytes(dir.file("empty.safetensors"), {});
  expectError([&] { SafetensorsFile::open(dir.file("empty.safetensors")); },
              {"0 bytes"});
}

//===-- Checkpoints
//-----------------------------------------------------------===//

TEST(Checkpoint, OpensSingleFileDirectoryAndFileSets) {
  TempDir dir;
  std::vector<uint8_t> data = randomBytes(8, 1);
  SafetensorsWriter a, b;
  a.add("model.norm.weight", DType::BF16, {4}, data.data(), 8);
  b.add("lm_head.weight", DType::BF16, {2, 2}, data.data(), 8);

  fs::create_directories(dir.file("single"));
  a.write(dir.file("single/model.safetensors"));
  b.write(dir.file("single/ignored.safetensors")); // model.safetensors wins
  Checkpoint single = Checkpoint::open(dir.file("single"));
  EXPECT_EQ(single.names(), std::vector<std::string>{"model.norm.weight"});

  fs::create_directories(dir.file("set"));
  a.write(dir.file("set/part-a.safetensors"));
  b.write(dir.file("set/part-b.safetensors"));
  Checkpoint set = Checkpoint::open(dir.file("set"));
  EXPECT_EQ(set.names(),
            (std::vector<std::string>{"lm_head.weight", "model.norm.weight"}));
  EXPECT_EQ(set.tensor("lm_head.weight").file,
            dir.file("set/part-b.safetensors"));

  Checkpoint file = Checkpoint::open(dir.file("set/part-a.safetensors"));
  EXPECT_TRUE(file.contains("model.norm.weight"));
  EXPECT_FALSE(file.contains("lm_head.weight"));
}

TEST(Checkpoint, RejectsDuplicatesAndEmptyDirectories) {
  TempDir dir;
  std::vector<uint8_t> data = randomBytes(8, 1);
  SafetensorsWriter a;
  a.add("w", DType::BF16, {4}, data.data(), 8);
  a.write(dir.file("x.safetensors"));
  a.write(dir.file("y.safetensors"));
  expectError([&] { Checkpoint::open(dir.path()); },
              {"'w'", "x.safetensors", "y.safetensors"});
  fs::create_directories(dir.file("empty"));
  expectError([&] { Checkpoint::open(dir.file("empty")); },
              {"empty", "no model"});
  expectError([&] { Checkpoint::open(dir.file("missing")); },
              {"missing", "no such file"});
}

TEST(Checkpoint, MissingTensorSuggestsCloseNames) {
  TempDir dir;
  std::vector<uint8_t> data = randomBytes(8, 1);
  SafetensorsWriter a;
  a.add("model.layers.0.self_attn.q_proj.weight", DType::BF16, {4}, data.data(),
        8);
  a.add("model.layers.0.self_attn.k_proj.weight", DType::BF16, {4}, data.data(),
        8);
  a.add("lm_head.weight", DType::BF16, {4}, data.data(), 8);
  a.write(dir.file("model.safetensors"));
  Checkpoint ck = Checkpoint::open(dir.path());
  expectError([&] { ck.tensor("model.layers.0.self_attn.v_proj.weight"); },
              {dir.path(), "no tensor 'model.layers.0.self_attn.v_proj.weight'",
               "did you mean", "q_proj", "k_proj"});
  try {
    ck.tensor("embed");
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()).find("did you mean"), std::string::npos);
  }
}

TEST(Checkpoint, RejectsBadIndexes) {
  TempDir dir;
  std::vector<uint8_t> data = randomBytes(8, 1);
  SafetensorsWriter a;
  a.add("w", DType::BF16, {4}, data.data(), 8);
  a.write(dir.file("shard-1.safetensors"));
  auto writeIndex = [&](const std::string &text) {
    std::ofstream(dir.file("model.safetensors.index.json")) << text;
  };
  writeIndex(R"({"weight_map": {"w": "shard-2.safetensors"}})");
  expectError([&] { Checkpoint::open(dir.path()); },
              {"'w'", "shard-2.safetensors", "does not exist"});
  writeIndex(R"({"weight_map": {"v": "shard-1.safetensors"}})");
  expectError([&] { Checkpoint::open(dir.path()); },
              {"'v'", "shard-1.safetensors", "does not hold it"});
  writeIndex(R"({"weight_map": {"w": "../shard-1.safetensors"}})");
  expectError([&] { Checkpoint::open(dir.path()); },
              {"'w'", "expected a file inside"});
  writeIndex(R"({"weight_map": {"w": 3}})");
  expectError([&] { Checkpoint::open(dir.path()); },
              {"'w'", "file name string"});
  writeIndex(R"({"metadata": {}})");
  expectError([&] { Checkpoint::open(dir.path()); }, {"weight_map"});
  writeIndex("{");
  expectError([&] { Checkpoint::open(dir.path()); },
              {"model.safetensors.index.json", "not valid JSON"});
  writeIndex(R"({"weight_map": {"w": "shard-1.safetensors"}})");
  EXPECT_EQ(Checkpoint::open(dir.path()).size(), 1u);
}

//===-- Weight views
//----------------------------------------------------------===//

TEST(WeightView, DenseFp8AndMxfp4) {
  TempDir dir;
  const int64_t rows = 130, cols = 64;
  std::vector<float> w = randomFloats(rows * cols, 7);
  SafetensorsWriter writer;
  writer.add("dense.weight", DType::BF16, {rows, cols}, bf16Bytes(w).data(),
             rows * cols * 2);
  writer.add("f32.weight", DType::F32, {rows, cols}, floatBytes(w).data(),
             rows * cols * 4);

  std::vector<uint8_t> fp8(rows * cols);
  std::vector<float> fp8Scales(fp8ScaleDim(rows) * fp8ScaleDim(cols));
  quantizeFp8Block(w.data(), rows, cols, fp8.data(), fp8Scales.data());
  writer.add("fp8.weight", DType::F8_E4M3, {rows, cols}, fp8.data(),
             fp8.size());
  writer.add("fp8.weight_scale_inv", DType::F32, {2, 1},
             floatBytes(fp8Scales).data(), 8);

  std::vector<uint8_t> packed(rows * cols / 2), scales(rows * cols / 32);
  quantizeMxfp4(w.data(), rows, cols, packed.data(), scales.data());
  writer.add("fp4.weight", DType::U8, {rows, cols / 2}, packed.data(),
             packed.size());
  writer.add("fp4.weight_scale", DType::F8_E8M0, {rows, cols / 32},
             scales.data(), scales.size());
  writer.add("alias.weight", DType::U8, {rows, cols / 2}, packed.data(),
             packed.size());
  writer.add("alias.weight_scale_inv", DType::U8, {rows, cols / 32},
             scales.data(), scales.size());
  writer.write(dir.file("model.safetensors"));
  Checkpoint ck = Checkpoint::open(dir.path());

  std::vector<float> out(rows * cols), ref(rows * cols);
  WeightView dense = weightView(ck, "dense.weight");
  EXPECT_EQ(dense.format, StorageFormat::Dense);
  EXPECT_EQ(dense.rowBytes(), cols * 2);
  dequantizeWeight(dense, out.data());
  for (int64_t i = 0; i < rows * cols; ++i)
    ASSERT_EQ(out[i], bf16ToF32(f32ToBf16(w[i])));
  dequantizeWeight(weightView(ck, "f32.weight"), out.data());
  EXPECT_EQ(out, w);

  WeightView f8 = weightView(ck, "fp8.weight");
  EXPECT_EQ(f8.format, StorageFormat::Fp8Block);
  EXPECT_EQ(f8.scales, ck.tensor("fp8.weight_scale_inv").data);
  dequantizeWeight(f8, out.data());
  dequantizeFp8Block(fp8.data(), fp8Scales.data(), rows, cols, ref.data());
  EXPECT_EQ(out, ref);

  dequantizeMxfp4(packed.data(), scales.data(), rows, cols, ref.data());
  for (const char *name : {"fp4.weight", "alias.weight"}) {
    WeightView v = weightView(ck, name);
    EXPECT_EQ(v.format, StorageFormat::Mxfp4);
    EXPECT_EQ(v.cols, cols);
    EXPECT_EQ(v.rowBytes(), cols / 2);
    dequantizeWeight(v, out.data());
    EXPECT_EQ(out, ref) << name;
  }
}

TEST(WeightView, RejectsMissingOrMisshapedScales) {
  TempDir dir;
  std::vector<uint8_t> bytes(64 * 32);
  SafetensorsWriter writer;
  writer.add("noscale.weight", DType::F8_E4M3, {64, 32}, bytes.data(), 64 * 32);
  writer.add("badscale.weight", DType::F8_E4M3, {64, 32}, bytes.data(),
             64 * 32);
  writer.add("badscale.weight_scale_inv", DType::F32, {2, 1}, bytes.data(), 8);
  writer.add("bf16scale.weight", DType::F8_E4M3, {64, 32}, bytes.data(),
             64 * 32);
  writer.add("bf16scale.weight_scale_inv", DType::BF16, {1, 1}, bytes.data(),
             2);
  writer.add("fp4.weight", DType::U8, {64, 16}, bytes.data(), 64 * 16);
  writer.add("oddfp4.weight", DType::U8, {64, 5}, bytes.data(), 64 * 5);
  writer.add("int.weight", DType::I32, {4, 4}, bytes.data(), 64);
  writer.add("vec.weight", DType::BF16, {8}, bytes.data(), 16);
  writer.write(dir.file("model.safetensors"));
  Checkpoint ck = Checkpoint::open(dir.path());
  expectError([&] { weightView(ck, "noscale.weight"); },
              {"'noscale.weight'", "'noscale.weight_scale_inv'"});
  expectError([&] { weightView(ck, "badscale.weight"); },
              {"'badscale.weight_scale_inv'", "[2, 1]", "expected [1, 1]"});
  expectError([&] { weightView(ck, "bf16scale.weight"); },
              {"BF16", "expected F32"});
  expectError([&] { weightView(ck, "fp4.weight"); }, {"'fp4.weight_scale'"});
  expectError([&] { weightView(ck, "oddfp4.weight"); },
              {"'oddfp4.weight'", "multiple of 32"});
  expectError([&] { weightView(ck, "int.weight"); }, {"'int.weight'", "I32"});
  expectError([&] { weightView(ck, "vec.weight"); }, {"'vec.weight'", "2-D"});
}

//===-- Experts
//---------------------------------------------------------------===//

namespace {
constexpr int64_t kE = 3, kI = 128, kH = 64;

/// Reference expert weights: gate/up [I, H] and down [H, I] per expert.
struct ExpertData {
  std::vector<std::vector<float>> gate, up, down;
  ExpertData() {
    for (int64_t e = 0; e < kE; ++e) {
      gate.push_back(randomFloats(kI * kH, 100 + e));
      up.push_back(randomFloats(kI * kH, 200 + e));
      down.push_back(randomFloats(kH * kI, 300 + e));
    }
  }
};

enum class Storage { BF16, MXFP4, FP8 };

/// Adds `name` (a [rows, cols] matrix, or a [mats, rows, cols] stack) in the
/// given storage, with the scale tensor named `scaleName`.
void addWeight(SafetensorsWriter &w, const std::string &name,
               const std::string &scaleName,
               const std::vector<const std::vector<float> *> &mats,
               int64_t rows, int64_t cols, Storage storage, bool stack) {
  std::vector<int64_t> lead;
  if (stack)
    lead.push_back(int64_t(mats.size()));
  auto shape = [&](std::vector<int64_t> tail) {
    std::vector<int64_t> s = lead;
    s.insert(s.end(), tail.begin(), tail.end());
    return s;
  };
  std::vector<uint8_t> data, scales;
  for (const std::vector<float> *m : mats) {
    if (storage == Storage::BF16) {
      std::vector<uint8_t> b = bf16Bytes(*m);
      data.insert(data.end(), b.begin(), b.end());
    } else if (storage == Storage::MXFP4) {
      std::vector<uint8_t> p(rows * cols / 2), s(rows * cols / 32);
      quantizeMxfp4(m->data(), rows, cols, p.data(), s.data());
      data.insert(data.end(), p.begin(), p.end());
      scales.insert(scales.end(), s.begin(), s.end());
    } else {
      std::vector<uint8_t> q(rows * cols);
      std::vector<float> s(fp8ScaleDim(rows) * fp8ScaleDim(cols));
      quantizeFp8Block(m->data(), rows, cols, q.data(), s.data());
      data.insert(data.end(), q.begin(), q.end());
      std::vector<uint8_t> sb = floatBytes(s);
      scales.insert(scales.end(), sb.begin(), sb.end());
    }
  }
  if (storage == Storage::BF16) {
    w.add(name, DType::BF16, shape({rows, cols}), data.data(), data.size());
  } else if (storage == Storage::MXFP4) {
    w.add(name, DType::U8, shape({rows, cols / 2}), data.data(), data.size());
    w.add(scaleName, DType::F8_E8M0, shape({rows, cols / 32}), scales.data(),
          scales.size());
  } else {
    w.add(name, DType::F8_E4M3, shape({rows, cols}), data.data(), data.size());
    w.add(scaleName, DType::F32, shape({fp8ScaleDim(rows), fp8ScaleDim(cols)}),
          scales.data(), scales.size());
  }
}

void writePerExpert(SafetensorsWriter &w, const ExpertData &d,
                    const std::string &mlp, Storage storage) {
  for (int64_t e = 0; e < kE; ++e) {
    std::string p = mlp + ".experts." + std::to_string(e) + ".";
    const char *suffix = storage == Storage::FP8 ? "_scale_inv" : "_scale";
    addWeight(w, p + "gate_proj.weight", p + "gate_proj.weight" + suffix,
              {&d.gate[e]}, kI, kH, storage, false);
    addWeight(w, p + "up_proj.weight", p + "up_proj.weight" + suffix,
              {&d.up[e]}, kI, kH, storage, false);
    addWeight(w, p + "down_proj.weight", p + "down_proj.weight" + suffix,
              {&d.down[e]}, kH, kI, storage, false);
  }
}

void writePacked(SafetensorsWriter &w, const ExpertData &d,
                 const std::string &mlp, Storage storage) {
  std::vector<std::vector<float>> gateUp(kE);
  std::vector<const std::vector<float> *> gateUpPtrs, downPtrs;
  for (int64_t e = 0; e < kE; ++e) {
    gateUp[e] = d.gate[e];
    gateUp[e].insert(gateUp[e].end(), d.up[e].begin(), d.up[e].end());
    gateUpPtrs.push_back(&gateUp[e]);
    downPtrs.push_back(&d.down[e]);
  }
  const char *suffix = storage == Storage::FP8 ? "_scale_inv" : "_scale";
  std::string p = mlp + ".experts.";
  addWeight(w, p + "gate_up_proj", p + "gate_up_proj" + suffix, gateUpPtrs,
            2 * kI, kH, storage, true);
  addWeight(w, p + "down_proj", p + "down_proj" + suffix, downPtrs, kH, kI,
            storage, true);
}

std::vector<float> dequantized(const WeightView &v) {
  std::vector<float> out(v.rows * v.cols);
  dequantizeWeight(v, out.data());
  return out;
}
} // namespace

TEST(Experts, LayoutsAgreeInEveryStorage) {
  ExpertData d;
  for (Storage storage : {Storage::BF16, Storage::MXFP4, Storage::FP8}) {
    SCOPED_TRACE(int(storage));
    TempDir dir;
    SafetensorsWriter w;
    writePerExpert(w, d, "model.layers.1.mlp", storage);
    writePacked(w, d, "model.layers.2.mlp", storage);
    w.add("model.layers.1.mlp.gate.weight", DType::F32, {kE, kH},
          floatBytes(randomFloats(kE * kH, 1)).data(), kE * kH * 4);
    w.write(dir.file("model.safetensors"));
    Checkpoint ck = Checkpoint::open(dir.path());

    EXPECT_EQ(detectExpertLayout(ck, "model.layers.1.mlp"),
              ExpertLayout::PerExpert);
    EXPECT_EQ(detectExpertLayout(ck, "model.layers.2.mlp"),
              ExpertLayout::Packed);
    EXPECT_EQ(detectExpertLayout(ck, "model.layers.3.mlp"), std::nullopt);
    LayerExperts perExpert = loadExperts(ck, "model.layers.1.mlp");
    LayerExperts packed = loadExperts(ck, "model.layers.2.mlp");
    for (const LayerExperts *layer : {&perExpert, &packed}) {
      EXPECT_EQ(layer->numExperts, kE);
      EXPECT_EQ(layer->hidden, kH);
      EXPECT_EQ(layer->intermediate, kI);
      ASSERT_EQ(layer->experts.size(), size_t(kE));
    }
    // Packed views point into the stacked tensor: no copies.
    const TensorInfo &gateUp =
        ck.tensor("model.layers.2.mlp.experts.gate_up_proj");
    EXPECT_EQ(packed.experts[1].gate.data, gateUp.data + gateUp.nbytes / kE);
    EXPECT_EQ(packed.experts[1].up.data,
              gateUp.data + gateUp.nbytes / kE + gateUp.nbytes / kE / 2);

    for (int64_t e = 0; e < kE; ++e) {
      const ExpertWeights &a = perExpert.experts[e], &b = packed.experts[e];
      EXPECT_EQ(dequantized(a.gate), dequantized(b.gate)) << e;
      EXPECT_EQ(dequantized(a.up), dequantized(b.up)) << e;
      EXPECT_EQ(dequantized(a.down), dequantized(b.down)) << e;
      // And close to the source: the loosest format (MXFP4) is within 2 units
      // of its block scale, well under 1.0 for normal data.
      std::vector<float> gate = dequantized(b.gate);
      for (int64_t i = 0; i < kI * kH; ++i)
        ASSERT_NEAR(gate[i], d.gate[e][i], 1.0f);
      std::vector<float> up = dequantized(b.up);
      for (int64_t i = 0; i < kI * kH; ++i)
        ASSERT_NEAR(up[i], d.up[e][i], 1.0f);
    }
  }
}

TEST(Experts, RejectsBrokenLayouts) {
  ExpertData d;
  TempDir dir;
  SafetensorsWriter w;
  writePerExpert(w, d, "model.layers.1.mlp", Storage::BF16);
  writePerExpert(w, d, "model.layers.2.mlp", Storage::BF16);
  writePacked(w, d, "model.layers.2.mlp", Storage::BF16);
  // Layer 3: expert 1 lacks up_proj.
  for (int64_t e : {0, 1})
    for (const char *proj : {"gate_proj", "up_proj", "down_proj"}) {
      if (e == 1 && std::string(proj) == "up_proj")
        continue;
      std::vector<float> m = randomFloats(kI * kH, 5);
      w.add("model.layers.3.mlp.experts." + std::to_string(e) + "." + proj +
                ".weight",
            DType::F32,
            std::string(proj) == "down_proj" ? std::vector<int64_t>{kH, kI}
                                             : std::vector<int64_t>{kI, kH},
            floatBytes(m).data(), m.size() * 4);
    }
  // Layer 4: down_proj of the wrong shape.
  for (const char *proj : {"gate_proj", "up_proj", "down_proj"}) {
    std::vector<float> m = randomFloats(kI * kH, 6);
    w.add(std::string("model.layers.4.mlp.experts.0.") + proj + ".weight",
          DType::F32, {kI, kH}, floatBytes(m).data(), m.size() * 4);
  }
  w.write(dir.file("model.safetensors"));
  Checkpoint ck = Checkpoint::open(dir.path());
  expectError([&] { loadExperts(ck, "model.layers.2.mlp"); },
              {"both", "packed"});
  expectError([&] { loadExperts(ck, "model.layers.3.mlp"); },
              {"'model.layers.3.mlp.experts.1.up_proj.weight'", "missing"});
  expectError([&] { loadExperts(ck, "model.layers.4.mlp"); },
              {"'model.layers.4.mlp.experts.0.down_proj.weight'",
               "expected [64, 128]"});
  expectError([&] { loadExperts(ck, "model.layers.9.mlp"); },
              {"no experts under 'model.layers.9.mlp.experts.'"});
  EXPECT_EQ(loadExperts(ck, "model.layers.1.mlp").numExperts, kE);
}

TEST(Experts, PackedFp8NeedsBlockAlignedHalves) {
  TempDir dir;
  SafetensorsWriter w;
  const int64_t i = 64, h = 128; // 2I = 128: up starts inside a scale block
  std::vector<float> gateUp = randomFloats(2 * i * h, 1),
                     down = randomFloats(h * i, 2);
  addWeight(w, "m.experts.gate_up_proj", "m.experts.gate_up_proj_scale_inv",
            {&gateUp}, 2 * i, h, Storage::FP8, true);
  addWeight(w, "m.experts.down_proj", "m.experts.down_proj_scale_inv", {&down},
            h, i, Storage::FP8, true);
  w.write(dir.file("model.safetensors"));
  Checkpoint ck = Checkpoint::open(dir.path());
  expectError([&] { loadExperts(ck, "m"); },
              {"'m.experts.gate_up_proj'", "rows from 64", "scale blocks"});
  // Packed tensors must be 3-D.
  TempDir dir2;
  SafetensorsWriter w2;
  addWeight(w2, "m.experts.gate_up_proj", "", {&gateUp}, 2 * i, h,
            Storage::BF16, false);
  w2.write(dir2.file("model.safetensors"));
  expectError([&] { loadExperts(Checkpoint::open(dir2.path()), "m"); },
              {"'m.experts.gate_up_proj'", "must be 3-D"});
}
