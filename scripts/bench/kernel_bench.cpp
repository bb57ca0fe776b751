// Throughput of the synthesis kernels (codecs/learned/synthesis_kernels.h) on the layer
// shapes of a MULTIRATE RGB decode of one 256 x 256 tile, next to the FMA peak of this
// core measured by a loop of independent fused multiply-adds. One thread; prints JSON.
//
//   build/nsat_kernel_bench [repeats]
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "codecs/learned/synthesis_kernels.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Independent fused multiply-adds on 16 accumulators (2 FMA pipes x 4-cycle latency
// need at least 8 in flight), 8 lanes (AVX2) or 16 (AVX-512).
#define NSAT_FMA_PEAK(NAME, TARGET, VEC, SET1, FMA, LANES)                          \
  __attribute__((target(TARGET))) double NAME(long iterations) {                    \
    VEC a0 = SET1(1e-3f), a1 = SET1(2e-3f), a2 = SET1(3e-3f), a3 = SET1(4e-3f);     \
    VEC a4 = SET1(5e-3f), a5 = SET1(6e-3f), a6 = SET1(7e-3f), a7 = SET1(8e-3f);     \
    VEC a8 = SET1(9e-3f), a9 = SET1(1e-2f), a10 = SET1(2e-2f), a11 = SET1(3e-2f);   \
    const VEC m = SET1(0.999999f), c = SET1(1e-7f);                                 \
    const auto start = Clock::now();                                                \
    for (long n = 0; n < iterations; ++n) {                                         \
      a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c); \
      a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c); \
      a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c); \
      __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5)); \
    }                                                                               \
    const double elapsed = seconds(start);                                          \
    volatile float sink = 0;                                                        \
    VEC sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;          \
    sink = sum[0];                                                                  \
    (void)sink;                                                                     \
    return double(iterations) * 12 * LANES / elapsed / 1e9;                         \
  }

NSAT_FMA_PEAK(fmaPeakAvx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, 8)
NSAT_FMA_PEAK(fmaPeakAvx512, "avx512f,fma", __m512, _mm512_set1_ps, _mm512_fmadd_ps, 16)

struct Layer {
  int in, out, height, width;
};

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 5;
  // g_s of an RGB model on a 256 x 256 tile: latent 16 x 16.
  const std::vector<Layer> layers = {{192, 256, 16, 16}, {64, 256, 32, 32}, {64, 256, 64, 64},
                                     {64, 12, 128, 128}};
  std::mt19937 random(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::printf("{\n  \"fma_peak_gmacs_avx2\": %.2f,\n", fmaPeakAvx2(200000000L));
  if (nsat::cpuSupports(nsat::KernelIsa::Avx512)) {
    std::printf("  \"fma_peak_gmacs_avx512\": %.2f,\n", fmaPeakAvx512(200000000L));
  }
  std::printf("  \"kernels\": [\n");
  bool first = true;
  for (nsat::KernelIsa isa : {nsat::KernelIsa::Scalar, nsat::KernelIsa::Avx2, nsat::KernelIsa::Avx512}) {
    if (!nsat::cpuSupports(isa)) continue;
    const nsat::SynthesisKernels& kernels = nsat::synthesisKernels(isa);
    for (auto arithmetic : {nsat::SynthesisArithmetic::MultiplyThenAdd,
                            nsat::SynthesisArithmetic::FusedMultiplyAdd}) {
      double macs = 0, elapsed = 0;
      for (const Layer& layer : layers) {
        const int inStride = nsat::kernelRowWidth(layer.width) + 2;
        const int outStride = nsat::kernelRowWidth(layer.width);
        std::vector<float> input(size_t(layer.in) * (layer.height + 2) * inStride);
        std::vector<float> weight(size_t(layer.out) * layer.in * 9), bias(size_t(layer.out));
        std::vector<float> output(size_t(layer.out) * layer.height * outStride);
        for (auto& v : input) v = uniform(random);
        for (auto& v : weight) v = uniform(random) * 0.05f;
        for (auto& v : bias) v = uniform(random);
        const nsat::Conv3x3Job job{input.data(), layer.in, layer.height, layer.width, inStride,
                                   weight.data(), bias.data(), output.data(), outStride};
        const int runs = isa == nsat::KernelIsa::Scalar ? 1 : repeats;
        const auto start = Clock::now();
        for (int r = 0; r < runs; ++r) kernels.conv3x3(job, 0, layer.out, arithmetic);
        elapsed += seconds(start);
        macs += double(runs) * layer.in * layer.out * 9.0 * layer.height * layer.width;
      }
      std::printf("%s    {\"isa\": \"%s\", \"arithmetic\": \"%s\", \"gmacs\": %.2f}", first ? "" : ",\n",
                  nsat::kernelIsaName(isa),
                  arithmetic == nsat::SynthesisArithmetic::FusedMultiplyAdd ? "fused-multiply-add"
                                                                            : "multiply-then-add",
                  macs / elapsed / 1e9);
      first = false;
    }
  }
  std::printf("\n  ]\n}\n");
  return 0;
}
