// The scalar synthesis kernels: the reference every vector set must match bit for bit,
// and the path of CPUs without AVX2. Compiled with -ffp-contract=off so that a * b + c
// stays two roundings; std::fma is the one-rounding operation.
#include <cmath>

#include "codecs/learned/synthesis_kernels.h"

namespace nsat::scalar_kernels {
struct Isa {
  using Vector = float;
  static constexpr int kLanes = 1;
  static constexpr int kOutputs = 4;
  static constexpr int kAccumulators = 12;
  static Vector load(const float* p) { return *p; }
  static void store(float* p, Vector v) { *p = v; }
  static Vector set1(float value) { return value; }
  static Vector add(Vector a, Vector b) { return a + b; }
  static Vector mul(Vector a, Vector b) { return a * b; }
  static Vector fma(Vector a, Vector b, Vector c) { return std::fma(a, b, c); }
  static Vector sqrt(Vector a) { return std::sqrt(a); }
};
}  // namespace nsat::scalar_kernels

#define NSAT_KERNEL_NAMESPACE scalar_kernels
#define NSAT_KERNEL_TABLE kScalarSynthesisKernels
#include "codecs/learned/synthesis_kernels.inl"
