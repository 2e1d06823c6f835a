//===- Safetensors.h - Safetensors file reader and writer -----------------===//
//
// The safetensors format: a u64 little-endian header length N, N bytes of JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str:
// str}}`, then the data buffer (offsets are relative to its start). The reader
// maps the file read-only and hands out pointers into the map; it validates
// every field and names the file and the tensor at fault. Packed sub-byte
// formats do not appear here: MXFP4 weights arrive as U8 (see Checkpoint.h for
// their scale tensors).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tilec {

/// Element types of safetensors, spelled as in the header.
enum class DType : uint8_t {
  BOOL,
  U8,
  I8,
  U16,
  I16,
  U32,
  I32,
  U64,
  I64,
  F16,
  BF16,
  F32,
  F64,
  C64,
  F8_E4M3,
  F8_E5M2,
  F8_E8M0,
};
inline constexpr DType kAllDTypes[] = {
    DType::BOOL,    DType::U8,     DType::I8,  DType::U16, DType::I16,
    DType::U32,     DType::I32,    DType::U64, DType::I64, DType::F16,
    DType::BF16,    DType::F32,    DType::F64, DType::C64, DType::F8_E4M3,
    DType::F8_E5M2, DType::F8_E8M0};

/// The header spelling ("BF16", "F8_E4M3", ...).
std::string_view dtypeName(DType dtype);
std::optional<DType> parseDType(std::string_view name);
/// Bytes per element.
size_t dtypeSize(DType dtype);

/// True if `text` is well-formed UTF-8 (no overlongs, surrogates or code points
/// past U+10FFFF).
bool isValidUtf8(std::string_view text);

/// One tensor of a file: `data` points into the file's map (or buffer) and
/// stays valid while the SafetensorsFile (or a copy of it) lives. Safetensors
/// does not align tensors: `data` may be unaligned for its dtype, read it with
/// memcpy.
struct TensorInfo {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  const uint8_t *data = nullptr;
  size_t nbytes = 0;
  /// The file that holds the tensor (the name given to fromBytes for buffers).
  std::string file;

  int64_t numel() const;
};

/// A parsed safetensors file. Copies share the mapping.
class SafetensorsFile {
public:
  /// Maps `path` read-only (zero copy) and validates it; throws tilec::Error.
  static SafetensorsFile open(const std::string &path);
  /// Parses a copy of an in-memory file; `name` stands for the path in
  /// messages.
  static SafetensorsFile fromBytes(const void *data, size_t size,
                                   std::string name = "<memory>");

  const std::string &path() const { return path_; }
  /// Every tensor, sorted by name.
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  /// Null if absent.
  const TensorInfo *find(std::string_view name) const;
  /// Throws tilec::Error naming the file if absent.
  const TensorInfo &tensor(std::string_view name) const;
  std::vector<std::string> names() const;
  const std::map<std::string, std::string> &metadata() const {
    return metadata_;
  }

  /// Largest accepted header (as the reference implementation: 100 MB).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

private:
  struct Storage;
  static SafetensorsFile parse(std::shared_ptr<const Storage> storage,
                               std::string path);

  std::shared_ptr<const Storage> storage_;
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// Collects tensors and writes one safetensors file or a sharded set with
/// `<base>.safetensors.index.json`. Output is deterministic: tensors in name
/// order, laid out back to back (no gaps, as the reference reader requires),
/// header JSON padded with spaces to a multiple of 8 bytes. transformers wants
/// metadata
/// {"format": "pt"}: set it with setMetadata when writing for it.
class SafetensorsWriter {
public:
  /// Copies `nbytes` bytes. Throws unless the name is new, non-empty, UTF-8 and
  /// not
  /// "__metadata__", the shape non-negative and nbytes = numel * dtypeSize.
  void add(std::string name, DType dtype, std::vector<int64_t> shape,
           const void *data, size_t nbytes);
  /// As add, without copying: `data` must stay valid until the last write.
  void addBorrowed(std::string name, DType dtype, std::vector<int64_t> shape,
                   const void *data, size_t nbytes);
  void setMetadata(std::string key, std::string value);

  size_t size() const { return tensors_.size(); }
  /// The whole file in memory.
  std::vector<uint8_t> toBytes() const;
  /// Writes through `<path>.tmp` and a rename, so readers never see half a
  /// file.
  void write(const std::string &path) const;
  /// Packs tensors in name order into files of at most `maxShardBytes` data
  /// bytes (a larger tensor gets a file of its own), named
  /// `<base>-00001-of-0000N.safetensors`, and writes
  /// `<base>.safetensors.index.json` with `weight_map` and
  /// `metadata.total_size`. Returns the shard file names.
  std::vector<std::string>
  writeSharded(const std::string &dir, uint64_t maxShardBytes,
               const std::string &base = "model") const;

private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> owned;
    const uint8_t *data;
    size_t nbytes;
  };
  Entry &addEntry(std::string name, DType dtype, std::vector<int64_t> shape,
                  size_t nbytes);
  std::vector<uint8_t>
  serialize(const std::vector<const std::string *> &names) const;

  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
};

} // namespace tilec
