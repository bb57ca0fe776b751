// AVX2 + FMA synthesis kernels: 8 samples per vector, 12 accumulators of the 16 ymm
// registers. Compiled with -mavx2 -mfma -ffp-contract=off.
#include <immintrin.h>

#include "codecs/learned/synthesis_kernels.h"

namespace nsat::avx2_kernels {
struct Isa {
  using Vector = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kOutputs = 8;
  static constexpr int kAccumulators = 8;
  static Vector load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Vector v) { _mm256_storeu_ps(p, v); }
  static Vector set1(float value) { return _mm256_set1_ps(value); }
  static Vector add(Vector a, Vector b) { return _mm256_add_ps(a, b); }
  static Vector mul(Vector a, Vector b) { return _mm256_mul_ps(a, b); }
  static Vector fma(Vector a, Vector b, Vector c) { return _mm256_fmadd_ps(a, b, c); }
  static Vector sqrt(Vector a) { return _mm256_sqrt_ps(a); }
};
}  // namespace nsat::avx2_kernels

#define NSAT_KERNEL_NAMESPACE avx2_kernels
#define NSAT_KERNEL_TABLE kAvx2SynthesisKernels
#include "codecs/learned/synthesis_kernels.inl"
