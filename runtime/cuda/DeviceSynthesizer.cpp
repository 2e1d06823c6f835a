//===- DeviceSynthesizer.cpp - Synthetic weights generated on the GPU -----===//
#include "runtime/cuda/DeviceSynthesizer.h"

#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "models/core/Synthetic.h"
#include "models/core/WeightList.h"
#include "runtime/cuda/Nvrtc.h"
#include "runtime/engine/Progress.h"

#include <algorithm>
#include <map>

namespace tilec {

namespace {

/// One tensor (or part) the device generates: `matrices` consecutive
/// [rows, cols] matrices of WeightSpec `spec`, stored at `data` / `scales`.
struct Job {
  const WeightSpec *spec = nullptr;
  int64_t matrices = 1, rows = 1, cols = 1;
  CUdeviceptr data = 0, scales = 0;
};

/// Is the synthetic tensor stored in the engine's format, so that its bytes
/// are copied, not converted (WeightPacker's sameFormat)?
bool storedAsEngine(const WeightSpec &spec, const WeightLayout &l) {
  if (l.f32)
    return spec.role == WeightRole::RouterBias;
  switch (l.format) {
  case TILEC_FMT_BF16:
    return spec.format == WeightFormat::BF16 &&
           spec.role != WeightRole::RouterBias;
  case TILEC_FMT_FP8:
    return spec.format == WeightFormat::FP8Block;
  case TILEC_FMT_MXFP4:
    return spec.format == WeightFormat::MXFP4;
  }
  return false;
}

int64_t rowBytes(const WeightLayout &l, int64_t cols) {
  if (l.f32)
    return 4 * cols;
  switch (l.format) {
  case TILEC_FMT_BF16:
    return 2 * cols;
  case TILEC_FMT_FP8:
    return cols;
  case TILEC_FMT_MXFP4:
    return cols / 2;
  }
  return 0;
}

int64_t scaleBytes(const WeightLayout &l, int64_t rows, int64_t cols) {
  if (l.f32 || l.format == TILEC_FMT_BF16)
    return 0;
  if (l.format == TILEC_FMT_FP8)
    return fp8ScaleDim(rows) * fp8ScaleDim(cols) * 4;
  return rows * (cols / kMxfp4BlockSize);
}

bool isExpertTensor(const WeightInfo &w) {
  if (w.shape.size() != 3 || !w.parts.empty())
    return false;
  for (const char *suffix : {".experts.gate_up_proj", ".experts.down_proj"}) {
    std::string s = suffix;
    if (w.name.size() > s.size() &&
        w.name.compare(w.name.size() - s.size(), s.size(), s) == 0)
      return true;
  }
  return false;
}

/// The jobs that generate weight `w` in place, or none when WeightPacker
/// would convert it (then the host packs it).
std::vector<Job> jobsFor(const WeightInfo &w, const WeightLayout &l,
                         const std::map<std::string, const WeightSpec *> &specs,
                         CUdeviceptr base) {
  auto spec = [&](const std::string &name) -> const WeightSpec & {
    auto it = specs.find(name);
    if (it == specs.end())
      fail("synthetic weights: the model has no tensor named {} (engine "
           "weight {})",
           name, w.name);
    return *it->second;
  };
  std::vector<Job> jobs;
  if (isExpertTensor(w)) {
    const WeightSpec &s = spec(w.name);
    if (s.shape != w.shape || !storedAsEngine(s, l))
      return {};
    jobs.push_back({&s, l.matrices, l.rows, l.cols,
                    base + CUdeviceptr(w.offset),
                    l.matrixScaleBytes ? base + CUdeviceptr(w.scaleOffset)
                                       : CUdeviceptr(0)});
    return jobs;
  }
  if (w.shape.size() == 3)
    return {}; // WeightPacker rejects it with its own message
  std::vector<std::string> names =
      w.parts.empty() ? std::vector<std::string>{w.name} : w.parts;
  int64_t data = w.offset, scales = w.scaleOffset, rows = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const WeightSpec &s = spec(names[i]);
    if (s.shape.size() > 2 || !storedAsEngine(s, l))
      return {};
    int64_t r = s.shape.size() == 2 ? s.shape[0] : 1;
    int64_t c = s.shape.empty() ? 1 : s.shape.back();
    if (c != l.cols)
      return {};
    // FP8 scale blocks concatenate only at 128-row seams.
    if (l.format == TILEC_FMT_FP8 && !l.f32 && i + 1 < names.size() &&
        r % kFp8BlockSize != 0)
      return {};
    jobs.push_back(
        {&s, 1, r, c, base + CUdeviceptr(data),
         l.matrixScaleBytes ? base + CUdeviceptr(scales) : CUdeviceptr(0)});
    data += r * rowBytes(l, c);
    scales += scaleBytes(l, r, c);
    rows += r;
  }
  if (rows != l.rows)
    return {};
  return jobs;
}

/// Launches runtime/device/synthetic.cuh's
///   tilec_synthesize(data, scales, key, begin, scale, offset, rows, cols,
///                    matrices, format)
/// for one job (grid-stride loops; FP8 takes a CTA per 128x128 block).
void launch(CudaDriver &d, CUfunction fn, const Job &job, const WeightLayout &l,
            uint64_t seed, CUstream stream) {
  constexpr int kSynthF32 = 3; // TILEC_SYNTH_F32
  unsigned long long dataPtr = job.data, scalesPtr = job.scales;
  unsigned long long key = syntheticKey(seed, job.spec->name);
  long long begin = 0, rows = job.rows, cols = job.cols,
            matrices = job.matrices;
  SyntheticInit init = syntheticInit(*job.spec);
  float scale = init.scale, offset = init.offset;
  int format = l.f32 ? kSynthF32 : int(l.format);
  void *params[] = {&dataPtr, &scalesPtr, &key,  &begin,    &scale,
                    &offset,  &rows,      &cols, &matrices, &format};
  const int64_t n = job.matrices * job.rows * job.cols;
  int64_t units =
      format == TILEC_FMT_FP8
          ? job.matrices * fp8ScaleDim(job.rows) * fp8ScaleDim(job.cols)
          : (n + 255) / 256;
  unsigned grid =
      unsigned(std::max<int64_t>(1, std::min<int64_t>(units, 8192)));
  d.check(
      d.cuLaunchKernel(fn, grid, 1, 1, 256, 1, 1, 0, stream, params, nullptr),
      fmt::format("launching tilec_synthesize for {}", job.spec->name));
}

} // namespace

DeviceSynthesizer::DeviceSynthesizer(CudaDriver &driver,
                                     const std::string &arch, int driverVersion,
                                     bool useCache, bool progress)
    : d_(driver) {
  NvrtcSource src;
  src.name = "tilec_synthesize.cu";
  src.text = "#include \"runtime/device/synthetic.cuh\"\n";
  src.arch = arch;
  NvrtcSettings settings;
  settings.useCache = useCache;
  settings.progress = progress;
  settings.driverVersion = driverVersion;
  NvrtcResult cubin = nvrtcCompile(src, settings);
  d_.check(
      d_.cuModuleLoadDataEx(&module_, cubin.cubin.data(), 0, nullptr, nullptr),
      "loading the synthetic weight generator (runtime/device/"
      "synthetic.cuh)");
  CUresult r = d_.cuModuleGetFunction(&fn_, module_, "tilec_synthesize");
  if (r != CUDA_SUCCESS) {
    d_.cuModuleUnload(module_);
    module_ = nullptr;
    fail("runtime/device/synthetic.cuh defines no extern \"C\" kernel "
         "tilec_synthesize: {}",
         d_.errorText(r));
  }
}

DeviceSynthesizer::~DeviceSynthesizer() {
  if (module_)
    d_.cuModuleUnload(module_);
}

DeviceSynthesisStats DeviceSynthesizer::fill(const EngineManifest &m,
                                             const WeightSourceSpec &source,
                                             CUdeviceptr weights,
                                             CUstream stream, bool progress) {
  if (source.kind != WeightSourceSpec::Kind::Synthetic)
    fail("DeviceSynthesizer: {} is not a synthetic source", source.describe());
  Model model = source.model ? *source.model : engineModel(m);
  std::vector<WeightSpec> specList = modelWeights(model);
  std::map<std::string, const WeightSpec *> specs;
  for (const WeightSpec &s : specList)
    specs[s.name] = &s;

  DeviceSynthesisStats stats;
  std::unique_ptr<WeightPacker> packer; // for the weights the host converts
  std::vector<uint8_t> staging;
  std::vector<const WeightInfo *> onDevice;
  Progress bar("synthesizing weights on the GPU", int64_t(m.weights.size()),
               ProgressUnit::Items, "weights", progress);
  int64_t done = 0;
  for (const WeightInfo &w : m.weights) {
    WeightLayout l = weightLayout(w);
    if (w.offset + w.bytes > m.weightBytes ||
        (w.scaleBytes && w.scaleOffset + w.scaleBytes > m.weightBytes))
      fail("engine weight {}: [{}, {}) lies outside the weight region of {} "
           "bytes",
           w.name, w.offset, w.offset + w.bytes, m.weightBytes);
    std::vector<Job> jobs = jobsFor(w, l, specs, weights);
    if (jobs.empty()) {
      if (!packer)
        packer = std::make_unique<WeightPacker>(m, source);
      staging.resize(size_t(w.bytes + w.scaleBytes));
      packer->pack(w, staging.data(),
                   w.scaleBytes ? staging.data() + w.bytes : nullptr);
      d_.check(d_.cuStreamSynchronize(stream), "synthesizing weights");
      d_.check(d_.cuMemcpyHtoD(weights + CUdeviceptr(w.offset), staging.data(),
                               size_t(w.bytes)),
               fmt::format("uploading weight {}", w.name));
      if (w.scaleBytes)
        d_.check(d_.cuMemcpyHtoD(weights + CUdeviceptr(w.scaleOffset),
                                 staging.data() + w.bytes,
                                 size_t(w.scaleBytes)),
                 fmt::format("uploading the scales of weight {}", w.name));
      stats.bytesFromHost += w.bytes + w.scaleBytes;
    } else {
      for (const Job &job : jobs) {
        launch(d_, fn_, job, l, source.seed, stream);
        ++stats.launches;
      }
      stats.bytesOnDevice += w.bytes + w.scaleBytes;
      onDevice.push_back(&w);
    }
    bar.update(++done);
  }
  d_.check(d_.cuStreamSynchronize(stream), "synthesizing weights on the GPU");
  bar.finish(done);

  // Self-check: per storage format, the smallest device-made matrix against
  // WeightPacker's bytes for it.
  std::map<std::string, const WeightInfo *> sample;
  for (const WeightInfo *w : onDevice) {
    WeightLayout l = weightLayout(*w);
    const WeightInfo *&best = sample[w->format];
    if (!best || l.matrixBytes < weightLayout(*best).matrixBytes)
      best = w;
  }
  for (const auto &[format, w] : sample) {
    WeightLayout l = weightLayout(*w);
    if (!packer)
      packer = std::make_unique<WeightPacker>(m, source);
    std::vector<uint8_t> host(size_t(l.matrixBytes + l.matrixScaleBytes)),
        gpu(host.size());
    packer->packMatrix(*w, 0, host.data(),
                       l.matrixScaleBytes ? host.data() + l.matrixBytes
                                          : nullptr);
    d_.check(d_.cuMemcpyDtoH(gpu.data(), weights + CUdeviceptr(w->offset),
                             size_t(l.matrixBytes)),
             "reading back a synthesized weight");
    if (l.matrixScaleBytes)
      d_.check(d_.cuMemcpyDtoH(gpu.data() + l.matrixBytes,
                               weights + CUdeviceptr(w->scaleOffset),
                               size_t(l.matrixScaleBytes)),
               "reading back a synthesized weight's scales");
    auto diff = std::mismatch(gpu.begin(), gpu.end(), host.begin());
    if (diff.first != gpu.end()) {
      int64_t at = diff.first - gpu.begin();
      fail("synthetic weights: the GPU generator (runtime/device/"
           "synthetic.cuh) disagrees with the host (WeightPacker) on {} ({}), "
           "matrix 0, {} byte {}: GPU {:#04x}, host {:#04x}",
           w->name, format, at < l.matrixBytes ? "data" : "scale",
           at < l.matrixBytes ? at : at - l.matrixBytes, *diff.first,
           *diff.second);
    }
    ++stats.checked;
  }
  return stats;
}
} // namespace tilec
