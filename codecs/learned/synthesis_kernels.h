// The float32 kernels of the deterministic synthesis g_s: a 3x3 convolution and the
// inverse GDN, in one fixed order of IEEE operations per output, on three instruction
// sets that give the same bits: a scalar fallback, AVX2 and AVX-512.
//
// Every output starts from its bias (beta for the GDN) and adds its terms input
// channel by input channel, then ky, then kx. Vector code only computes neighbouring
// outputs side by side; it never reorders one output's sum. The arithmetic of a term
// is the model's (see Arithmetic): a rounded multiply then a rounded add, or one fused
// multiply-add, which IEEE 754 specifies exactly, so both are the same on every
// x86-64 CPU and on the scalar path (std::fma).
//
// Each kernel lives in its own translation unit, compiled for its instruction set
// and holding nothing but raw loops, so no inline function built with AVX reaches the
// rest of the module.
#pragma once

#include <cstddef>

namespace nsat {

enum class SynthesisArithmetic {
  MultiplyThenAdd,  // acc + w * x, two roundings (the models of format 1.0)
  FusedMultiplyAdd  // fma(w, x, acc), one rounding
};

enum class KernelIsa { Scalar, Avx2, Avx512 };
const char* kernelIsaName(KernelIsa isa);

// Rows of every plane are `stride` floats apart and computed in whole vectors of 16
// samples: a plane's width rounds up to kKernelWidthQuantum, and the extra columns
// (zero on input) are scratch.
constexpr int kKernelWidthQuantum = 16;
inline int kernelRowWidth(int width) {
  return (width + kKernelWidthQuantum - 1) / kKernelWidthQuantum * kKernelWidthQuantum;
}

// out[o][y][x] = bias[o] + sum_c sum_ky sum_kx weight[o][c][ky][kx] * in[c][y+ky][x+kx],
// `input` zero-padded by one sample on every side: inChannels x (height + 2) x inStride,
// inStride >= kernelRowWidth(width) + 2; `output`: outChannels x height x outStride,
// outStride >= kernelRowWidth(width).
struct Conv3x3Job {
  const float* input;
  int inChannels, height, width, inStride;
  const float* weight;  // [out][in][3][3]
  const float* bias;
  float* output;
  int outStride;
};

// Inverse GDN of planes x (channels x height x stride) with squares = x * x:
// out[i] = x[i] * sqrt(beta[i] + sum_j gamma[i][j] * squares[j]), written to
// `output` + i * outPlane + y * outStride + x.
struct InverseGdnJob {
  const float* x;
  const float* squares;
  int channels, height, width, stride;
  const float* beta;
  const float* gamma;  // [i][j]
  float* output;
  size_t outPlane;
  int outStride;
};

// Output channels [begin, end) of a job; `begin` and `end` multiples of 4 or `end` the
// channel count.
struct SynthesisKernels {
  void (*conv3x3)(const Conv3x3Job&, int begin, int end, SynthesisArithmetic);
  void (*inverseGdn)(const InverseGdnJob&, int begin, int end, SynthesisArithmetic);
};

// The kernels of an instruction set; throws nsat::Error if this CPU lacks it.
const SynthesisKernels& synthesisKernels(KernelIsa isa);
// The widest set this CPU runs, or $NSAT_SYNTHESIS_KERNEL (scalar, avx2, avx512).
KernelIsa defaultKernelIsa();
bool cpuSupports(KernelIsa isa);

}  // namespace nsat
