//===- Nvrtc.cpp - NVRTC compilation with a content-addressed cubin cache -===//
#include "runtime/cuda/Nvrtc.h"

#include "models/core/Error.h"
#include "runtime/cuda/Sha256.h"
#include "runtime/engine/Progress.h"

#include <nvrtc.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#ifndef TILEC_DEFAULT_DEVICE_INCLUDE
#error "the build must define TILEC_DEFAULT_DEVICE_INCLUDE (the source tree)"
#endif
#ifndef TILEC_DEFAULT_CUDA_INCLUDE
#error "the build must define TILEC_DEFAULT_CUDA_INCLUDE (CUDA's include dir)"
#endif

namespace tilec {

namespace fs = std::filesystem;

namespace {

std::string env(const char *name) {
  const char *value = std::getenv(name);
  return value ? value : "";
}

void checkNvrtc(nvrtcResult result, const char *what, const std::string &name) {
  if (result != NVRTC_SUCCESS)
    fail("NVRTC: {} for {}: {}", what, name, nvrtcGetErrorString(result));
}

bool readFile(const fs::path &path, std::string &out) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  std::ostringstream text;
  text << in.rdbuf();
  out = text.str();
  return bool(in) || in.eof();
}

/// The targets of `#include "x"` / `#include <x>` lines, in order, with
/// whether they were quoted.
std::vector<std::pair<std::string, bool>> includesOf(const std::string &text) {
  std::vector<std::pair<std::string, bool>> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    size_t i = line.find_first_not_of(" \t");
    if (i == std::string::npos || line[i] != '#')
      continue;
    i = line.find_first_not_of(" \t", i + 1);
    if (i == std::string::npos || line.compare(i, 7, "include") != 0)
      continue;
    i = line.find_first_not_of(" \t", i + 7);
    if (i == std::string::npos || (line[i] != '"' && line[i] != '<'))
      continue;
    char close = line[i] == '"' ? '"' : '>';
    size_t end = line.find(close, i + 1);
    if (end == std::string::npos)
      continue;
    out.push_back({line.substr(i + 1, end - i - 1), close == '"'});
  }
  return out;
}

/// The include roots that belong to tilec (the device library): headers found
/// there are hashed; CUDA's own are covered by the NVRTC version.
std::vector<std::string> projectRoots(const NvrtcSource &source) {
  std::vector<std::string> roots = source.includeDirs;
  roots.push_back(deviceIncludeDir());
  return roots;
}

/// Hashes every project header `text` includes, transitively.
void hashIncludes(const std::string &text, const fs::path &dir,
                  const std::vector<std::string> &roots, Sha256 &hash,
                  std::set<std::string> &seen,
                  std::vector<std::string> &headers) {
  for (const auto &[name, quoted] : includesOf(text)) {
    std::vector<fs::path> candidates;
    if (quoted && !dir.empty())
      candidates.push_back(dir / name);
    for (const std::string &root : roots)
      candidates.push_back(fs::path(root) / name);
    for (const fs::path &candidate : candidates) {
      std::error_code ec;
      if (!fs::is_regular_file(candidate, ec))
        continue;
      std::string path = fs::weakly_canonical(candidate, ec).string();
      if (ec)
        path = candidate.string();
      if (!seen.insert(path).second)
        break;
      std::string content;
      if (!readFile(candidate, content))
        fail("NVRTC cache: cannot read the included header {}", path);
      hash.updateField("header");
      hash.updateField(name);
      hash.updateField(content);
      headers.push_back(path);
      hashIncludes(content, candidate.parent_path(), roots, hash, seen,
                   headers);
      break;
    }
  }
}

bool looksLikeCubin(const std::string &bytes) {
  return bytes.size() > 16 && bytes.compare(0, 4,
                                            "\x7f"
                                            "ELF") == 0;
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a
/// concurrent reader never sees half a cubin. Returns false on failure.
bool writeAtomically(const fs::path &path, const std::string &bytes) {
  fs::path tmp = path;
  tmp += fmt::format(".tmp.{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out)
      return false;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    fs::remove(tmp, ec);
  return !ec;
}

} // namespace

std::string deviceIncludeDir() {
  std::string dir = env("TILEC_DEVICE_INCLUDE");
  return dir.empty() ? TILEC_DEFAULT_DEVICE_INCLUDE : dir;
}

std::string cudaIncludeDir() {
  std::string dir = env("TILEC_CUDA_INCLUDE");
  if (!dir.empty())
    return dir;
  for (const char *var : {"CUDA_HOME", "CUDA_PATH"}) {
    std::string home = env(var);
    std::error_code ec;
    if (!home.empty() && fs::is_regular_file(home + "/include/cuda_bf16.h", ec))
      return home + "/include";
  }
  return TILEC_DEFAULT_CUDA_INCLUDE;
}

std::string archForCapability(int major, int minor) {
  return fmt::format("sm_{}{}{}", major, minor, major >= 9 ? "a" : "");
}

std::string nvrtcVersion() {
  int major = 0, minor = 0;
  checkNvrtc(::nvrtcVersion(&major, &minor), "asking the version", "NVRTC");
  return fmt::format("{}.{}", major, minor);
}

std::string nvrtcCacheDir() {
  std::string base = env("XDG_CACHE_HOME");
  if (!base.empty())
    return base + "/tilec";
  std::string home = env("HOME");
  return home.empty() ? "" : home + "/.cache/tilec";
}

std::vector<std::string> nvrtcOptions(const NvrtcSource &source) {
  std::vector<std::string> options = {"--gpu-architecture=" + source.arch,
                                      "-std=c++17", "-lineinfo"};
  for (const std::string &dir : source.includeDirs)
    options.push_back("-I" + dir);
  std::string cuda = cudaIncludeDir();
  options.push_back("-I" + deviceIncludeDir());
  options.push_back("-I" + cuda + "/cccl");
  options.push_back("-I" + cuda);
  for (const std::string &define : source.defines)
    options.push_back("-D" + define);
  options.insert(options.end(), source.extraOptions.begin(),
                 source.extraOptions.end());
  return options;
}

std::string nvrtcCacheKey(const NvrtcSource &source, int driverVersion,
                          std::vector<std::string> *headers) {
  Sha256 hash;
  hash.updateField("tilec-nvrtc-cache-v1");
  hash.updateField(source.name);
  hash.updateField(source.text);
  for (const std::string &option : nvrtcOptions(source))
    hash.updateField(option);
  hash.updateField("nvrtc " + nvrtcVersion());
  hash.updateField(fmt::format("driver {}", driverVersion));
  std::set<std::string> seen;
  std::vector<std::string> found;
  hashIncludes(source.text, fs::path(), projectRoots(source), hash, seen,
               found);
  if (headers)
    *headers = found;
  return hash.hex();
}

NvrtcResult nvrtcCompile(const NvrtcSource &source,
                         const NvrtcSettings &settings) {
  std::error_code ec;
  std::string devRoot = deviceIncludeDir();
  if (!fs::is_regular_file(devRoot + "/runtime/abi/TaskAbi.h", ec))
    fail("NVRTC: the device headers are not under {} (no "
         "runtime/abi/TaskAbi.h there); set TILEC_DEVICE_INCLUDE to the "
         "directory holding runtime/device/ and runtime/abi/ (the tilec "
         "source tree)",
         devRoot);
  std::string cuda = cudaIncludeDir();
  if (!fs::is_regular_file(cuda + "/cuda_bf16.h", ec))
    fail("NVRTC: the CUDA headers are not under {} (no cuda_bf16.h there); "
         "set TILEC_CUDA_INCLUDE or CUDA_HOME",
         cuda);

  NvrtcResult result;
  result.key = nvrtcCacheKey(source, settings.driverVersion, &result.headers);
  std::string dir =
      settings.cacheDir.empty() ? nvrtcCacheDir() : settings.cacheDir;
  fs::path cubinPath;
  if (settings.useCache && !dir.empty()) {
    cubinPath = fs::path(dir) / (result.key + ".cubin");
    result.cachePath = cubinPath.string();
    std::string cached;
    if (readFile(cubinPath, cached) && looksLikeCubin(cached)) {
      result.cubin = std::move(cached);
      result.cacheHit = true;
      return result;
    }
  }

  // One blocking call: the line says what runs, then how long it took.
  Progress bar("NVRTC", 0, ProgressUnit::Items,
               fmt::format("compiling {} for {}", source.name, source.arch),
               settings.progress);
  auto start = std::chrono::steady_clock::now();

  nvrtcProgram program = nullptr;
  checkNvrtc(nvrtcCreateProgram(&program, source.text.c_str(),
                                source.name.c_str(), 0, nullptr, nullptr),
             "creating the program", source.name);
  struct Destroy {
    nvrtcProgram &p;
    ~Destroy() { nvrtcDestroyProgram(&p); }
  } destroy{program};

  std::vector<std::string> options = nvrtcOptions(source);
  std::vector<const char *> argv;
  for (const std::string &option : options)
    argv.push_back(option.c_str());
  nvrtcResult status =
      nvrtcCompileProgram(program, int(argv.size()), argv.data());
  size_t logSize = 0;
  if (nvrtcGetProgramLogSize(program, &logSize) == NVRTC_SUCCESS &&
      logSize > 1) {
    result.log.resize(logSize);
    if (nvrtcGetProgramLog(program, result.log.data()) != NVRTC_SUCCESS)
      result.log.clear();
    while (!result.log.empty() &&
           (result.log.back() == '\0' || result.log.back() == '\n'))
      result.log.pop_back();
  }
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  bar.finish(status == NVRTC_SUCCESS ? "" : "(failed)");
  if (status != NVRTC_SUCCESS)
    fail("NVRTC: compiling {} for {} failed ({}). Options: {}\n{}", source.name,
         source.arch, nvrtcGetErrorString(status), fmt::join(options, " "),
         result.log);

  size_t size = 0;
  checkNvrtc(nvrtcGetCUBINSize(program, &size), "getting the cubin size",
             source.name);
  if (size == 0)
    fail("NVRTC: {} produced no cubin for {} (a virtual architecture gives "
         "PTX only; use sm_XY)",
         source.name, source.arch);
  result.cubin.resize(size);
  checkNvrtc(nvrtcGetCUBIN(program, result.cubin.data()), "getting the cubin",
             source.name);

  if (!cubinPath.empty()) {
    fs::create_directories(cubinPath.parent_path(), ec);
    if (ec || !writeAtomically(cubinPath, result.cubin)) {
      result.cachePath.clear();
    } else if (!result.log.empty()) {
      fs::path logPath = cubinPath;
      logPath.replace_extension(".log");
      writeAtomically(logPath, result.log + "\n");
    }
  }
  return result;
}

} // namespace tilec
