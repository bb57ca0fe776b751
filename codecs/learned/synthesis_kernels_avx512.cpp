// AVX-512 synthesis kernels: 16 samples per vector, 24 accumulators of the 32 zmm
// registers. Compiled with -mavx512f -mfma -ffp-contract=off.
#include <immintrin.h>

#include "codecs/learned/synthesis_kernels.h"

namespace nsat::avx512_kernels {
struct Isa {
  using Vector = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kOutputs = 4;
  static constexpr int kAccumulators = 12;
  static Vector load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Vector v) { _mm512_storeu_ps(p, v); }
  static Vector set1(float value) { return _mm512_set1_ps(value); }
  static Vector add(Vector a, Vector b) { return _mm512_add_ps(a, b); }
  static Vector mul(Vector a, Vector b) { return _mm512_mul_ps(a, b); }
  static Vector fma(Vector a, Vector b, Vector c) { return _mm512_fmadd_ps(a, b, c); }
  static Vector sqrt(Vector a) { return _mm512_sqrt_ps(a); }
};
}  // namespace nsat::avx512_kernels

#define NSAT_KERNEL_NAMESPACE avx512_kernels
#define NSAT_KERNEL_TABLE kAvx512SynthesisKernels
#include "codecs/learned/synthesis_kernels.inl"
