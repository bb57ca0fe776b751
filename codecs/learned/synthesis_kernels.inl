// The body of the synthesis kernels (synthesis_kernels.h), included once per
// instruction set by synthesis_kernels_<isa>.cpp after it defines `Isa` (its vector
// type and operations) in namespace nsat::NSAT_KERNEL_NAMESPACE. Raw loops only: this
// code is compiled with that set's flags.
//
// Register blocking: O output channels x B vectors of neighbouring samples of one row
// are accumulated at once, so each input vector is loaded once for O outputs and each
// weight once for B vectors. Every accumulator still sees its terms in the order
// (input channel, ky, kx).

namespace nsat {
namespace NSAT_KERNEL_NAMESPACE {

using V = Isa::Vector;
constexpr int kLanes = Isa::kLanes;

// Vectors per row (kernelRowWidth, restated here so that no inline function of the
// header is compiled with this set's flags).
static int rowVectors(int width) {
  return (width + kKernelWidthQuantum - 1) / kKernelWidthQuantum * kKernelWidthQuantum / kLanes;
}

template <SynthesisArithmetic Arithmetic>
inline V multiplyAdd(V accumulator, V weight, V value) {
  if constexpr (Arithmetic == SynthesisArithmetic::FusedMultiplyAdd) {
    return Isa::fma(weight, value, accumulator);
  } else {
    return Isa::add(accumulator, Isa::mul(weight, value));
  }
}

// A block's B vectors are B consecutive slots of the plane in row-major order (a slot is
// one vector of one row), so narrow planes still fill every accumulator.
struct Slots {
  int rowVectors;
  int y[8], x[8];
  void set(int first, int count) {
    for (int b = 0; b < count; ++b) {
      y[b] = (first + b) / rowVectors;
      x[b] = (first + b) % rowVectors * kLanes;
    }
  }
};

template <SynthesisArithmetic Arithmetic, int O, int B>
inline void convolveBlock(const Conv3x3Job& job, int o0, const Slots& slots) {
  const size_t inPlane = size_t(job.height + 2) * job.inStride;
  const float* weights[O];
  size_t inOffset[B];
  V acc[O][B];
  for (int b = 0; b < B; ++b) inOffset[b] = size_t(slots.y[b]) * job.inStride + slots.x[b];
  for (int o = 0; o < O; ++o) {
    weights[o] = job.weight + size_t(o0 + o) * job.inChannels * 9;
    for (int b = 0; b < B; ++b) acc[o][b] = Isa::set1(job.bias[o0 + o]);
  }
  for (int c = 0; c < job.inChannels; ++c) {
    const float* in = job.input + c * inPlane;
    for (int ky = 0; ky < 3; ++ky) {
      for (int kx = 0; kx < 3; ++kx) {
        const float* tap = in + ky * job.inStride + kx;
        V values[B];
        for (int b = 0; b < B; ++b) values[b] = Isa::load(tap + inOffset[b]);
        const int t = c * 9 + ky * 3 + kx;
        for (int o = 0; o < O; ++o) {
          const V weight = Isa::set1(weights[o][t]);
          for (int b = 0; b < B; ++b) acc[o][b] = multiplyAdd<Arithmetic>(acc[o][b], weight, values[b]);
        }
      }
    }
  }
  const size_t outPlane = size_t(job.height) * job.outStride;
  for (int o = 0; o < O; ++o) {
    float* out = job.output + (o0 + o) * outPlane;
    for (int b = 0; b < B; ++b) {
      Isa::store(out + size_t(slots.y[b]) * job.outStride + slots.x[b], acc[o][b]);
    }
  }
}

constexpr int blockFor(int outputs) {
  return Isa::kAccumulators / outputs > 6 ? 6 : Isa::kAccumulators / outputs;
}


template <SynthesisArithmetic Arithmetic, int O>
void convolveChannels(const Conv3x3Job& job, int o0) {
  constexpr int kBlock = blockFor(O);
  Slots slots{rowVectors(job.width), {}, {}};
  const int count = job.height * slots.rowVectors;
  int s = 0;
  for (; s + kBlock <= count; s += kBlock) {
    slots.set(s, kBlock);
    convolveBlock<Arithmetic, O, kBlock>(job, o0, slots);
  }
  for (; s < count; ++s) {
    slots.set(s, 1);
    convolveBlock<Arithmetic, O, 1>(job, o0, slots);
  }
}

template <SynthesisArithmetic Arithmetic>
void conv3x3Range(const Conv3x3Job& job, int begin, int end) {
  int o = begin;
  if constexpr (Isa::kOutputs == 8) {
    for (; o + 8 <= end; o += 8) convolveChannels<Arithmetic, 8>(job, o);
  }
  for (; o + 4 <= end; o += 4) convolveChannels<Arithmetic, 4>(job, o);
  for (; o < end; ++o) convolveChannels<Arithmetic, 1>(job, o);
}

template <SynthesisArithmetic Arithmetic, int O, int B>
inline void inverseGdnBlock(const InverseGdnJob& job, int i0, const Slots& slots) {
  const size_t plane = size_t(job.height) * job.stride;
  size_t offset[B];
  V acc[O][B];
  for (int b = 0; b < B; ++b) offset[b] = size_t(slots.y[b]) * job.stride + slots.x[b];
  for (int o = 0; o < O; ++o)
    for (int b = 0; b < B; ++b) acc[o][b] = Isa::set1(job.beta[i0 + o]);
  for (int j = 0; j < job.channels; ++j) {
    const float* square = job.squares + j * plane;
    V values[B];
    for (int b = 0; b < B; ++b) values[b] = Isa::load(square + offset[b]);
    for (int o = 0; o < O; ++o) {
      const V gamma = Isa::set1(job.gamma[size_t(i0 + o) * job.channels + j]);
      for (int b = 0; b < B; ++b) acc[o][b] = multiplyAdd<Arithmetic>(acc[o][b], gamma, values[b]);
    }
  }
  for (int o = 0; o < O; ++o) {
    const float* x = job.x + (i0 + o) * plane;
    float* out = job.output + (i0 + o) * job.outPlane;
    for (int b = 0; b < B; ++b) {
      const V value = Isa::mul(Isa::load(x + offset[b]), Isa::sqrt(acc[o][b]));
      Isa::store(out + size_t(slots.y[b]) * job.outStride + slots.x[b], value);
    }
  }
}

template <SynthesisArithmetic Arithmetic, int O>
void inverseGdnChannels(const InverseGdnJob& job, int i0) {
  constexpr int kBlock = blockFor(O);
  Slots slots{rowVectors(job.width), {}, {}};
  const int count = job.height * slots.rowVectors;
  int s = 0;
  for (; s + kBlock <= count; s += kBlock) {
    slots.set(s, kBlock);
    inverseGdnBlock<Arithmetic, O, kBlock>(job, i0, slots);
  }
  for (; s < count; ++s) {
    slots.set(s, 1);
    inverseGdnBlock<Arithmetic, O, 1>(job, i0, slots);
  }
}

template <SynthesisArithmetic Arithmetic>
void inverseGdnRange(const InverseGdnJob& job, int begin, int end) {
  int i = begin;
  if constexpr (Isa::kOutputs == 8) {
    for (; i + 8 <= end; i += 8) inverseGdnChannels<Arithmetic, 8>(job, i);
  }
  for (; i + 4 <= end; i += 4) inverseGdnChannels<Arithmetic, 4>(job, i);
  for (; i < end; ++i) inverseGdnChannels<Arithmetic, 1>(job, i);
}

void conv3x3(const Conv3x3Job& job, int begin, int end, SynthesisArithmetic arithmetic) {
  if (arithmetic == SynthesisArithmetic::FusedMultiplyAdd) {
    conv3x3Range<SynthesisArithmetic::FusedMultiplyAdd>(job, begin, end);
  } else {
    conv3x3Range<SynthesisArithmetic::MultiplyThenAdd>(job, begin, end);
  }
}

void inverseGdn(const InverseGdnJob& job, int begin, int end, SynthesisArithmetic arithmetic) {
  if (arithmetic == SynthesisArithmetic::FusedMultiplyAdd) {
    inverseGdnRange<SynthesisArithmetic::FusedMultiplyAdd>(job, begin, end);
  } else {
    inverseGdnRange<SynthesisArithmetic::MultiplyThenAdd>(job, begin, end);
  }
}

}  // namespace NSAT_KERNEL_NAMESPACE

extern const SynthesisKernels NSAT_KERNEL_TABLE;
const SynthesisKernels NSAT_KERNEL_TABLE = {&NSAT_KERNEL_NAMESPACE::conv3x3,
                                            &NSAT_KERNEL_NAMESPACE::inverseGdn};

}  // namespace nsat
