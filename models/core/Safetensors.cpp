//===- Safetensors.cpp - Safetensors file reader and writer ---------------===//
#include "models/core/Safetensors.h"

#include "models/core/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace tilec;
using json = nlohmann::json;

namespace {
struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},           {DType::U16, "U16", 2},
    {DType::I16, "I16", 2},         {DType::U32, "U32", 4},
    {DType::I32, "I32", 4},         {DType::U64, "U64", 8},
    {DType::I64, "I64", 8},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},       {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},         {DType::C64, "C64", 8},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E8M0, "F8_E8M0", 1},
};

const DTypeEntry &entryOf(DType dtype) {
  for (const DTypeEntry &e : kDTypes)
    if (e.dtype == dtype)
      return e;
  fail("unknown DType value {}", int(dtype));
}

/// numel * elemSize with overflow checks; nullopt on overflow.
std::optional<uint64_t> byteSize(const std::vector<int64_t> &shape,
                                 size_t elemSize) {
  uint64_t total = elemSize;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(total, uint64_t(d), &total))
      return std::nullopt;
  return total;
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

/// A JSON value for messages: short, one line.
std::string excerpt(const json &value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 60)
    text = text.substr(0, 57) + "...";
  return text;
}

uint64_t readLittleEndian64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}
} // namespace

std::string_view tilec::dtypeName(DType dtype) { return entryOf(dtype).name; }

size_t tilec::dtypeSize(DType dtype) { return entryOf(dtype).size; }

std::optional<DType> tilec::parseDType(std::string_view name) {
  for (const DTypeEntry &e : kDTypes)
    if (e.name == name)
      return e.dtype;
  return std::nullopt;
}

bool tilec::isValidUtf8(std::string_view text) {
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  size_t n = text.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len)
      return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

int64_t TensorInfo::numel() const {
  // A zero dimension first: the other dimensions' product may not fit alone.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end())
    return 0;
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

//===----------------------------------------------------------------------===//
// Reader
//===----------------------------------------------------------------------===//

struct SafetensorsFile::Storage {
  const uint8_t *bytes = nullptr;
  size_t size = 0;
  void *map = nullptr; // from mmap, or null for an owned buffer
  std::vector<uint8_t> owned;

  Storage() = default;
  Storage(const Storage &) = delete;
  Storage &operator=(const Storage &) = delete;
  ~Storage() {
    if (map)
      munmap(map, size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  auto storage = std::make_shared<Storage>();
  storage->size = size_t(st.st_size);
  if (storage->size > 0) {
    void *map = mmap(nullptr, storage->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail("{}: cannot map {} bytes: {}", path, storage->size,
           std::strerror(err));
    }
    storage->map = map;
    storage->bytes = static_cast<const uint8_t *>(map);
  }
  ::close(fd);
  return parse(std::move(storage), path);
}

SafetensorsFile SafetensorsFile::fromBytes(const void *data, size_t size,
                                           std::string name) {
  auto storage = std::make_shared<Storage>();
  const auto *bytes = static_cast<const uint8_t *>(data);
  storage->owned.assign(bytes, bytes + size);
  storage->bytes = storage->owned.data();
  storage->size = size;
  return parse(std::move(storage), std::move(name));
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const Storage> storage,
                                       std::string path) {
  SafetensorsFile file;
  file.storage_ = storage;
  file.path_ = std::move(path);
  const std::string &p = file.path_;
  const uint8_t *bytes = storage->bytes;
  size_t size = storage->size;

  if (size < 8)
    fail("{}: file is {} bytes, shorter than the 8-byte header length", p,
         size);
  uint64_t headerLen = readLittleEndian64(bytes);
  if (headerLen > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the {}-byte limit", p, headerLen,
         kMaxHeaderBytes);
  if (headerLen > size - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes)", p,
         headerLen, size);
  const uint8_t *dataBuffer = bytes + 8 + headerLen;
  uint64_t dataSize = size - 8 - headerLen;

  json header;
  try {
    // Reject duplicate names (JSON would keep the last) and nesting deeper than
    // the format has (this also bounds the parser's work on hostile input).
    std::set<std::string> seen;
    auto callback = [&](int depth, json::parse_event_t event, json &parsed) {
      if ((event == json::parse_event_t::object_start ||
           event == json::parse_event_t::array_start) &&
          depth >= 3)
        fail("{}: header nests deeper than {{name: {{field: [values]}}}}", p);
      if (event == json::parse_event_t::key && depth == 1 &&
          !seen.insert(parsed.get<std::string>()).second)
        fail("{}: tensor '{}' appears twice in the header", p,
             parsed.get<std::string>());
      return true;
    };
    header = json::parse(bytes + 8, dataBuffer, callback);
  } catch (const json::exception &e) {
    // nlohmann checks UTF-8 in strings: non-UTF-8 names end up here.
    fail("{}: header is not valid JSON: {}", p, e.what());
  }
  if (!header.is_object())
    fail("{}: header must be a JSON object, got {}", p, header.type_name());

  struct Range {
    uint64_t begin, end;
    const std::string *name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const json &value = it.value();
    if (name == "__metadata__") {
      if (value.is_null())
        continue;
      if (!value.is_object())
        fail("{}: __metadata__ must be an object of strings, got {}", p,
             value.type_name());
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string())
          fail("{}: __metadata__ key '{}' must map to a string, got {}", p,
               m.key(), excerpt(m.value()));
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (name.empty())
      fail("{}: a tensor has an empty name", p);
    if (!isValidUtf8(name))
      fail("{}: tensor name is not valid UTF-8", p);
    if (!value.is_object())
      fail("{}: tensor '{}': expected an object with dtype, shape and "
           "data_offsets, "
           "got {}",
           p, name, excerpt(value));

    TensorInfo info;
    info.name = name;
    info.file = p;
    auto dtypeIt = value.find("dtype");
    if (dtypeIt == value.end() || !dtypeIt->is_string())
      fail("{}: tensor '{}': dtype must be a string", p, name);
    std::optional<DType> dtype = parseDType(dtypeIt->get<std::string>());
    if (!dtype)
      fail("{}: tensor '{}': unknown dtype {}", p, name, excerpt(*dtypeIt));
    info.dtype = *dtype;

    auto shapeIt = value.find("shape");
    if (shapeIt == value.end() || !shapeIt->is_array())
      fail("{}: tensor '{}': shape must be an array of non-negative integers",
           p, name);
    for (const json &d : *shapeIt) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
        fail("{}: tensor '{}': shape entry {} is not a non-negative 64-bit "
             "integer",
             p, name, excerpt(d));
      info.shape.push_back(d.get<int64_t>());
    }
    std::optional<uint64_t> expectedBytes =
        byteSize(info.shape, dtypeSize(info.dtype));
    if (!expectedBytes)
      fail("{}: tensor '{}': shape {} overflows a 64-bit byte count", p, name,
           shapeString(info.shape));

    auto offIt = value.find("data_offsets");
    if (offIt == value.end() || !offIt->is_array() || offIt->size() != 2 ||
        !(*offIt)[0].is_number_unsigned() || !(*offIt)[1].is_number_unsigned())
      fail("{}: tensor '{}': data_offsets must be [begin, end] with "
           "non-negative "
           "integers, got {}",
           p, name,
           offIt == value.end() ? std::string("nothing") : excerpt(*offIt));
    uint64_t begin = (*offIt)[0].get<uint64_t>(),
             end = (*offIt)[1].get<uint64_t>();
    if (begin > end)
      fail("{}: tensor '{}': data_offsets [{}, {}] has begin > end", p, name,
           begin, end);
    if (end > dataSize)
      fail("{}: tensor '{}': data_offsets [{}, {}] run past the {}-byte data "
           "buffer "
           "(file truncated?)",
           p, name, begin, end, dataSize);
    if (end - begin != *expectedBytes)
      fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but {} {} "
           "needs {}",
           p, name, begin, end, end - begin, dtypeName(info.dtype),
           shapeString(info.shape), *expectedBytes);
    info.data = dataBuffer + begin;
    info.nbytes = size_t(end - begin);
    if (begin != end)
      ranges.push_back({begin, end, &it.key()});
    file.tensors_.push_back(std::move(info));
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      fail("{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", p,
           *ranges[i - 1].name, ranges[i - 1].begin, ranges[i - 1].end,
           *ranges[i].name, ranges[i].begin, ranges[i].end);
  // nlohmann's object is a std::map: tensors_ is already in name order.
  return file;
}

const TensorInfo *SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const TensorInfo &t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const TensorInfo &SafetensorsFile::tensor(std::string_view name) const {
  if (const TensorInfo *t = find(name))
    return *t;
  fail("{}: no tensor '{}'", path_, name);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const TensorInfo &t : tensors_)
    out.push_back(t.name);
  return out;
}

//===----------------------------------------------------------------------===//
// Writer
//===----------------------------------------------------------------------===//

SafetensorsWriter::Entry &
SafetensorsWriter::addEntry(std::string name, DType dtype,
                            std::vector<int64_t> shape, size_t nbytes) {
  if (name.empty())
    fail("safetensors writer: empty tensor name");
  if (name == "__metadata__")
    fail("safetensors writer: '__metadata__' is reserved, not a tensor name");
  if (!isValidUtf8(name))
    fail("safetensors writer: tensor name is not valid UTF-8");
  if (tensors_.count(name))
    fail("safetensors writer: tensor '{}' added twice", name);
  std::optional<uint64_t> expected = byteSize(shape, dtypeSize(dtype));
  if (!expected)
    fail("safetensors writer: tensor '{}': shape {} is negative or overflows",
         name, shapeString(shape));
  if (*expected != nbytes)
    fail("safetensors writer: tensor '{}': {} {} needs {} bytes, got {}", name,
         dtypeName(dtype), shapeString(shape), *expected, nbytes);
  Entry &entry = tensors_[std::move(name)];
  entry.dtype = dtype;
  entry.shape = std::move(shape);
  entry.nbytes = nbytes;
  return entry;
}

void SafetensorsWriter::add(std::string name, DType dtype,
                            std::vector<int64_t> shape, const void *data,
                            size_t nbytes) {
  Entry &entry = addEntry(std::move(name), dtype, std::move(shape), nbytes);
  const auto *bytes = static_cast<const uint8_t *>(data);
  entry.owned.assign(bytes, bytes + nbytes);
  entry.data = entry.owned.data();
}

void SafetensorsWriter::addBorrowed(std::string name, DType dtype,
                                    std::vector<int64_t> shape,
                                    const void *data, size_t nbytes) {
  Entry &entry = addEntry(std::move(name), dtype, std::move(shape), nbytes);
  entry.data = static_cast<const uint8_t *>(data);
}

void SafetensorsWriter::setMetadata(std::string key, std::string value) {
  if (!isValidUtf8(key) || !isValidUtf8(value))
    fail("safetensors writer: metadata '{}' is not valid UTF-8", key);
  metadata_[std::move(key)] = std::move(value);
}

std::vector<uint8_t> SafetensorsWriter::serialize(
    const std::vector<const std::string *> &names) const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty())
    header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const std::string *name : names) {
    const Entry &e = tensors_.at(*name);
    header[*name] = {{"dtype", dtypeName(e.dtype)},
                     {"shape", e.shape},
                     {"data_offsets", {offset, offset + e.nbytes}}};
    offset += e.nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i)
    out.push_back(uint8_t(uint64_t(text.size()) >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const std::string *name : names) {
    const Entry &e = tensors_.at(*name);
    out.insert(out.end(), e.data, e.data + e.nbytes);
  }
  return out;
}

std::vector<uint8_t> SafetensorsWriter::toBytes() const {
  std::vector<const std::string *> names;
  for (const auto &[name, entry] : tensors_)
    names.push_back(&name);
  return serialize(names);
}

static void writeFile(const std::string &path,
                      const std::vector<uint8_t> &bytes) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      fail("{}: cannot create: {}", tmp, std::strerror(errno));
    out.write(reinterpret_cast<const char *>(bytes.data()),
              std::streamsize(bytes.size()));
    out.close();
    if (!out)
      fail("{}: write failed: {}", tmp, std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    fail("{}: cannot rename from {}: {}", path, tmp, std::strerror(err));
  }
}

void SafetensorsWriter::write(const std::string &path) const {
  writeFile(path, toBytes());
}

std::vector<std::string>
SafetensorsWriter::writeSharded(const std::string &dir, uint64_t maxShardBytes,
                                const std::string &base) const {
  if (maxShardBytes == 0)
    fail("safetensors writer: maxShardBytes must be positive");
  std::vector<std::vector<const std::string *>> shards(1);
  uint64_t shardBytes = 0;
  for (const auto &[name, entry] : tensors_) {
    if (!shards.back().empty() && shardBytes + entry.nbytes > maxShardBytes) {
      shards.emplace_back();
      shardBytes = 0;
    }
    shards.back().push_back(&name);
    shardBytes += entry.nbytes;
  }

  std::vector<std::string> files;
  json weightMap = json::object();
  uint64_t totalSize = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string fileName = fmt::format("{}-{:05d}-of-{:05d}.safetensors", base,
                                       i + 1, shards.size());
    writeFile(dir + "/" + fileName, serialize(shards[i]));
    for (const std::string *name : shards[i]) {
      weightMap[*name] = fileName;
      totalSize += tensors_.at(*name).nbytes;
    }
    files.push_back(fileName);
  }
  json index = {{"metadata", {{"total_size", totalSize}}},
                {"weight_map", weightMap}};
  std::string text = index.dump(2) + "\n";
  writeFile(dir + "/" + base + ".safetensors.index.json",
            std::vector<uint8_t>(text.begin(), text.end()));
  return files;
}
