//===- DeviceCompileTest.cpp - NVRTC builds runtime/device for sm_90a -----===//
//
// No GPU needed: NVRTC builds a kernel.cu of the shape codegen emits, with
// every task family at small and MiMo-V2.5-Pro shapes, and tilec_synthesize, to
// a cubin; the log must carry no error or warning, only ptxas's resource lines,
// which are printed (registers, spills per function).
//
//===----------------------------------------------------------------------===//
#include <nvrtc.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#ifndef TILEC_CUDA_INCLUDE_DIR
#error "TILEC_CUDA_INCLUDE_DIR must name the CUDA toolkit's include directory"
#endif

namespace {

struct Compiled {
  nvrtcResult result = NVRTC_SUCCESS;
  std::string log;
  std::vector<char> cubin;
  double seconds = 0;
};

Compiled compile(const std::string &source, const char *name,
                 std::vector<std::string> extra = {}) {
  // The repository (ctest sets TILEC_SOURCE_DIR; else the one built from).
  const char *dir = std::getenv("TILEC_SOURCE_DIR");
  if (!dir)
    dir = TILEC_DEFAULT_SOURCE_DIR;
  Compiled out;
  const std::string cuda = TILEC_CUDA_INCLUDE_DIR;
  std::vector<std::string> options = {
      "--gpu-architecture=sm_90a", "-std=c++17",
      std::string("-I") + dir,     "-I" + cuda,
      "-I" + cuda + "/cccl",       "--ptxas-options=-v"};
  options.insert(options.end(), extra.begin(), extra.end());
  std::vector<const char *> argv;
  for (const std::string &o : options)
    argv.push_back(o.c_str());

  const auto start = std::chrono::steady_clock::now();
  nvrtcProgram program;
  out.result =
      nvrtcCreateProgram(&program, source.c_str(), name, 0, nullptr, nullptr);
  if (out.result != NVRTC_SUCCESS)
    return out;
  out.result = nvrtcCompileProgram(program, int(argv.size()), argv.data());
  size_t size = 0;
  nvrtcGetProgramLogSize(program, &size);
  out.log.resize(size);
  if (size)
    nvrtcGetProgramLog(program, out.log.data());
  if (out.result == NVRTC_SUCCESS) {
    size = 0;
    nvrtcGetCUBINSize(program, &size);
    out.cubin.resize(size);
    if (size)
      nvrtcGetCUBIN(program, out.cubin.data());
  }
  nvrtcDestroyProgram(&program);
  out.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return out;
}

bool contains(const std::vector<char> &bytes, const std::string &text) {
  return std::search(bytes.begin(), bytes.end(), text.begin(), text.end()) !=
         bytes.end();
}

/// Every "N bytes spill stores" of the ptxas log, with the function it is for.
std::vector<std::pair<std::string, int>> spills(const std::string &log) {
  std::vector<std::pair<std::string, int>> out;
  static const std::regex function("Function properties for ([^\\s]+)");
  static const std::regex spill("(\\d+) bytes spill stores");
  std::string current;
  size_t begin = 0;
  while (begin < log.size()) {
    size_t end = log.find('\n', begin);
    if (end == std::string::npos)
      end = log.size();
    const std::string line = log.substr(begin, end - begin);
    std::smatch m;
    if (std::regex_search(line, m, function))
      current = m[1];
    else if (std::regex_search(line, m, spill))
      out.push_back({current, std::stoi(m[1])});
    begin = end + 1;
  }
  return out;
}

/// The lines of the log that are not ptxas's resource report.
std::string problems(const std::string &log) {
  std::string out;
  size_t begin = 0;
  while (begin < log.size()) {
    size_t end = log.find('\n', begin);
    if (end == std::string::npos)
      end = log.size();
    const std::string line = log.substr(begin, end - begin);
    const bool info = line.find("ptxas info") != std::string::npos ||
                      line.find("bytes stack frame") != std::string::npos ||
                      line.find_first_not_of(" \t\r") == std::string::npos ||
                      line[0] == '\0';
    if (!info)
      out += line + "\n";
    begin = end + 1;
  }
  return out;
}

// One body per (family, parameters), as codegen's kernel.cu dispatches them:
// MiMo-V2.5-Pro shapes for one GPU of eight (16 q heads and one kv head per
// GPU, MXFP4 experts, FP8 attention and dense MLP, BF16 o_proj and lm_head)
// and small ones.
const char *kKernel = R"(
#define TILEC_THREADS 384
#define TILEC_SMEM_BYTES 196608
#include "runtime/device/megakernel.cuh"

struct Dispatch {
  __device__ static void run(long long instance, const TilecTask &t,
                             const tilec::Ctx &c) {
    switch (instance) {
    case 0: tilec::embed_task<8, 6144, 152576>(t, c); break;
    case 1: tilec::linear_task<8, 6144, 3072, 192, TILEC_FMT_FP8, TILEC_PRO_RMSNORM, TILEC_EPI_ROPE_STORE, 16, 192, 64, 0, 0, 0>(t, c); break;
    case 2: tilec::linear_task<8, 6144, 192, 64, TILEC_FMT_FP8, TILEC_PRO_RMSNORM, TILEC_EPI_ROPE_KCACHE, 1, 192, 64, 8192, 0, 0>(t, c); break;
    case 3: tilec::linear_task<8, 6144, 128, 32, TILEC_FMT_FP8, TILEC_PRO_RMSNORM, TILEC_EPI_VCACHE, 1, 128, 0, 8192, 0, 0>(t, c); break;
    case 4: tilec::attention_task<8, 16, 1, 192, 128, 0, 8192, 0, 0, 32>(t, c); break;
    case 5: tilec::attention_task<8, 16, 1, 192, 128, 128, 136, 1, 0, 128>(t, c); break;
    case 6: tilec::linear_task<8, 2048, 6144, 64, TILEC_FMT_BF16, TILEC_PRO_NONE, TILEC_EPI_RESIDUAL, 0, 0, 0, 0, 0, 0>(t, c); break;
    case 7: tilec::linear_task<8, 6144, 384, 16, TILEC_FMT_BF16, TILEC_PRO_RMSNORM, TILEC_EPI_STORE_F32, 0, 0, 0, 0, 0, 0>(t, c); break;
    case 8: tilec::router_topk_task<8, 384, 8, 1, 1, 1>(t, c); break;
    case 9: tilec::moe_gate_up_task<8, 6144, 2048, 384, 8, 64, 256, TILEC_FMT_MXFP4>(t, c); break;
    case 10: tilec::moe_down_task<8, 6144, 2048, 384, 8, 64, 512, TILEC_FMT_MXFP4>(t, c); break;
    case 11: tilec::moe_combine_task<8, 6144, 8>(t, c); break;
    case 12: tilec::linear_task<8, 6144, 2048, 32, TILEC_FMT_FP8, TILEC_PRO_RMSNORM, TILEC_EPI_SILU_PAIR, 0, 0, 0, 0, 0, 0>(t, c); break;
    case 13: tilec::linear_task<8, 16384, 6144, 64, TILEC_FMT_FP8, TILEC_PRO_NONE, TILEC_EPI_RESIDUAL, 0, 0, 0, 0, 0, 0>(t, c); break;
    case 14: tilec::linear_task<8, 6144, 19072, 160, TILEC_FMT_BF16, TILEC_PRO_RMSNORM, TILEC_EPI_ARGMAX, 0, 0, 0, 0, 0, 0>(t, c); break;
    case 15: tilec::argmax_reduce_task<8, 120>(t, c); break;
    case 16: tilec::linear_task<1, 6144, 2048, 16, TILEC_FMT_MXFP4, TILEC_PRO_RMSNORM, TILEC_EPI_STORE_BF16, 0, 0, 0, 0, 0, 0>(t, c); break;
    case 17: tilec::router_topk_task<4, 256, 8, 8, 4, 1>(t, c); break;
    case 18: tilec::attention_task<1, 4, 2, 48, 32, 8, 16, 1, 0, 2>(t, c); break;
    case 19: tilec::moe_gate_up_task<4, 64, 64, 8, 2, 8, 32, TILEC_FMT_FP8>(t, c); break;
    case 20: tilec::moe_down_task<4, 64, 64, 8, 2, 8, 32, TILEC_FMT_BF16>(t, c); break;
    // DFlash: the drafter's q/k with head norms, its bidirectional block
    // attention, a capped lm_head, the taps, the accept/update tasks and the
    // autoregressive drafter's fill.
    case 21: tilec::linear_task<8, 6144, 16384, 128, TILEC_FMT_BF16, TILEC_PRO_RMSNORM, TILEC_EPI_ROPE_STORE, 128, 128, 64, 0, 1, 0>(t, c); break;
    case 22: tilec::linear_task<8, 6144, 1024, 128, TILEC_FMT_BF16, TILEC_PRO_RMSNORM, TILEC_EPI_ROPE_KCACHE, 8, 128, 64, 1032, 1, 0>(t, c); break;
    case 23: tilec::attention_task<8, 128, 8, 128, 128, 1024, 1032, 1, 1, 128>(t, c); break;
    case 24: tilec::linear_task<8, 6144, 19072, 160, TILEC_FMT_BF16, TILEC_PRO_RMSNORM, TILEC_EPI_ARGMAX, 0, 0, 0, 0, 0, 1>(t, c); break;
    case 25: tilec::concat_task<8, 6144, 30720, 0>(t, c); break;
    case 26: tilec::concat_task<8, 6144, 30720, 1>(t, c); break;
    case 27: tilec::spec_accept_task<8, 8191, 152576>(t, c); break;
    case 28: tilec::spec_update_task<8>(t, c); break;
    case 29: tilec::attention_task<4, 4, 2, 16, 16, 16, 20, 0, 0, 8>(t, c); break;
    case 30: tilec::draft_fill_task<8>(t, c); break;
    // tile-fuse{disable=silu-pair}: the dense MLP's gate and up as two linears
    // storing bf16, then SILU_MUL (16-byte vectors, and an odd width).
    case 31: tilec::linear_task<8, 6144, 16384, 128, TILEC_FMT_FP8, TILEC_PRO_RMSNORM, TILEC_EPI_STORE_BF16, 0, 0, 0, 0, 0, 0>(t, c); break;
    case 32: tilec::silu_mul_task<8, 16384>(t, c); break;
    case 33: tilec::silu_mul_task<1, 100>(t, c); break;
    default: break;
    }
  }
};

extern "C" __global__ void __launch_bounds__(TILEC_THREADS, 1)
tilec_step(TilecStepParams p) { tilec::run_megakernel<Dispatch>(p); }
)";

TEST(DeviceCompile, MegakernelForSm90a) {
  Compiled c = compile(kKernel, "kernel.cu");
  ASSERT_EQ(c.result, NVRTC_SUCCESS) << nvrtcGetErrorString(c.result) << "\n"
                                     << c.log;
  EXPECT_EQ(problems(c.log), "") << c.log;
  ASSERT_FALSE(c.cubin.empty());
  EXPECT_TRUE(contains(c.cubin, "tilec_step"));
  std::smatch m;
  static const std::regex regs("Used (\\d+) registers");
  ASSERT_TRUE(std::regex_search(c.log, m, regs)) << c.log;
  EXPECT_LE(std::stoi(m[1]), 65536 / 384) << "over the launch bound";
  std::printf("NVRTC: %.1f s, %zu-byte cubin, %s registers\n", c.seconds,
              c.cubin.size(), m[1].str().c_str());
  for (const auto &[function, bytes] : spills(c.log)) {
    if (bytes)
      std::printf("  spills %4d B  %s\n", bytes, function.c_str());
    // A body that spills this much needs a smaller tile or fewer registers.
    EXPECT_LE(bytes, 512) << function;
  }
}

TEST(DeviceCompile, SynthesizeForSm90a) {
  Compiled c =
      compile("#include \"runtime/device/synthetic.cuh\"\n", "synthetic.cu");
  ASSERT_EQ(c.result, NVRTC_SUCCESS) << nvrtcGetErrorString(c.result) << "\n"
                                     << c.log;
  EXPECT_EQ(problems(c.log), "") << c.log;
  ASSERT_FALSE(c.cubin.empty());
  EXPECT_TRUE(contains(c.cubin, "tilec_synthesize"));
  for (const auto &[function, bytes] : spills(c.log))
    EXPECT_EQ(bytes, 0) << function;
}

} // namespace
