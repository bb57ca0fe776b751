// The synthesis kernels of every instruction set this CPU has give the bits of a plain
// loop in the documented order (synthesis_kernels.h), for both arithmetics, on layer
// shapes that exercise every register block and row remainder. The thread pool that
// runs them: nested loops, errors.
#include <atomic>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "codecs/learned/synthesis_kernels.h"
#include "codecs/thread_pool.h"

namespace nsat {
namespace {

// The contract, written as plainly as possible. This file is compiled with
// -ffp-contract=off, so `acc + w * x` is two roundings here.
float term(SynthesisArithmetic arithmetic, float acc, float w, float x) {
  return arithmetic == SynthesisArithmetic::FusedMultiplyAdd ? std::fma(w, x, acc) : acc + w * x;
}

struct ConvCase {
  int in, out, height, width;
};

std::vector<float> randomValues(size_t count, std::mt19937& random, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(count);
  for (auto& v : values) v = normal(random);
  return values;
}

bool sameBits(const float* a, const float* b, size_t count) {
  return std::memcmp(a, b, count * sizeof(float)) == 0;
}

std::vector<KernelIsa> availableIsas() {
  std::vector<KernelIsa> isas;
  for (KernelIsa isa : {KernelIsa::Scalar, KernelIsa::Avx2, KernelIsa::Avx512}) {
    if (cpuSupports(isa)) isas.push_back(isa);
  }
  return isas;
}

TEST(SynthesisKernels, ConvolutionMatchesThePlainLoopOnEveryInstructionSet) {
  std::mt19937 random(11);
  // Latent widths of 256-, 64- and odd edge tiles; 12 outputs = RGB's last layer.
  const std::vector<ConvCase> cases = {{192, 256, 16, 16}, {64, 12, 6, 11}, {64, 256, 3, 5},
                                       {7, 20, 9, 33}, {3, 4, 1, 1}};
  for (const ConvCase& c : cases) {
    const int stride = kernelRowWidth(c.width) + 2;
    const int outStride = kernelRowWidth(c.width);
    std::vector<float> input(size_t(c.in) * (c.height + 2) * stride, 0.0f);
    const auto interior = randomValues(size_t(c.in) * c.height * c.width, random, 2.0f);
    for (int ch = 0; ch < c.in; ++ch)
      for (int y = 0; y < c.height; ++y)
        for (int x = 0; x < c.width; ++x)
          input[(size_t(ch) * (c.height + 2) + y + 1) * stride + x + 1] =
              interior[(size_t(ch) * c.height + y) * c.width + x];
    const auto weight = randomValues(size_t(c.out) * c.in * 9, random, 0.1f);
    const auto bias = randomValues(size_t(c.out), random, 1.0f);
    for (auto arithmetic : {SynthesisArithmetic::MultiplyThenAdd,
                            SynthesisArithmetic::FusedMultiplyAdd}) {
      std::vector<float> expected(size_t(c.out) * c.height * c.width);
      for (int o = 0; o < c.out; ++o)
        for (int y = 0; y < c.height; ++y)
          for (int x = 0; x < c.width; ++x) {
            float acc = bias[o];
            for (int ch = 0; ch < c.in; ++ch)
              for (int ky = 0; ky < 3; ++ky)
                for (int kx = 0; kx < 3; ++kx)
                  acc = term(arithmetic, acc, weight[((size_t(o) * c.in + ch) * 3 + ky) * 3 + kx],
                             input[(size_t(ch) * (c.height + 2) + y + ky) * stride + x + kx]);
            expected[(size_t(o) * c.height + y) * c.width + x] = acc;
          }
      for (KernelIsa isa : availableIsas()) {
        std::vector<float> output(size_t(c.out) * c.height * outStride, -1.0f);
        const Conv3x3Job job{input.data(), c.in, c.height, c.width, stride, weight.data(),
                             bias.data(), output.data(), outStride};
        // Two ranges, as the pool splits them.
        const int split = c.out > 8 ? 8 : c.out;
        synthesisKernels(isa).conv3x3(job, 0, split, arithmetic);
        synthesisKernels(isa).conv3x3(job, split, c.out, arithmetic);
        for (int o = 0; o < c.out; ++o)
          for (int y = 0; y < c.height; ++y)
            ASSERT_TRUE(sameBits(&output[(size_t(o) * c.height + y) * outStride],
                                 &expected[(size_t(o) * c.height + y) * c.width], size_t(c.width)))
                << kernelIsaName(isa) << " " << c.in << "->" << c.out << " " << c.height << "x"
                << c.width << " output " << o << " row " << y;
      }
    }
  }
}

TEST(SynthesisKernels, InverseGdnMatchesThePlainLoopOnEveryInstructionSet) {
  std::mt19937 random(5);
  for (const auto& [channels, height, width] :
       std::vector<std::tuple<int, int, int>>{{64, 8, 32}, {64, 5, 22}, {12, 3, 7}}) {
    const int stride = kernelRowWidth(width);
    const size_t plane = size_t(height) * stride;
    std::vector<float> x = randomValues(size_t(channels) * plane, random, 3.0f);
    std::vector<float> squares(x.size());
    for (size_t i = 0; i < x.size(); ++i) squares[i] = x[i] * x[i];
    std::vector<float> beta = randomValues(size_t(channels), random, 0.2f);
    for (auto& b : beta) b = std::fabs(b) + 1e-3f;
    std::vector<float> gamma = randomValues(size_t(channels) * channels, random, 0.05f);
    for (auto& g : gamma) g = std::fabs(g);
    for (auto arithmetic : {SynthesisArithmetic::MultiplyThenAdd,
                            SynthesisArithmetic::FusedMultiplyAdd}) {
      std::vector<float> expected(x.size());
      for (int i = 0; i < channels; ++i)
        for (size_t p = 0; p < plane; ++p) {
          float norm = beta[i];
          for (int j = 0; j < channels; ++j) {
            norm = term(arithmetic, norm, gamma[size_t(i) * channels + j], squares[j * plane + p]);
          }
          expected[i * plane + p] = x[i * plane + p] * std::sqrt(norm);
        }
      for (KernelIsa isa : availableIsas()) {
        std::vector<float> output(x.size(), -1.0f);
        const InverseGdnJob job{x.data(), squares.data(), channels, height, width, stride,
                                beta.data(), gamma.data(), output.data(), plane, stride};
        synthesisKernels(isa).inverseGdn(job, 0, channels, arithmetic);
        for (int i = 0; i < channels; ++i)
          for (int y = 0; y < height; ++y)
            ASSERT_TRUE(sameBits(&output[i * plane + size_t(y) * stride],
                                 &expected[i * plane + size_t(y) * stride], size_t(width)))
                << kernelIsaName(isa) << " channel " << i << " row " << y;
      }
    }
  }
}

TEST(ThreadPool, RunsEveryIndexOnceAndNestedLoopsFinish) {
  ThreadPool pool;
  std::vector<std::atomic<int>> hits(64);
  pool.parallelFor(hits.size(), 3, [&](size_t i) {
    // A nested loop from a worker: runs on whatever threads are free, never deadlocks.
    std::atomic<int> inner{0};
    pool.parallelFor(16, 3, [&](size_t) { ++inner; });
    EXPECT_EQ(inner.load(), 16);
    ++hits[i];
  });
  for (const auto& hit : hits) EXPECT_EQ(hit.load(), 1);
}

TEST(ThreadPool, RethrowsTheFirstErrorAfterTheOthersStop) {
  ThreadPool pool;
  std::atomic<int> started{0};
  EXPECT_THROW(pool.parallelFor(1000, 2,
                                [&](size_t i) {
                                  ++started;
                                  if (i == 3) throw std::runtime_error("tile 3 is corrupt");
                                  // Slower than unwinding, so the stop is seen.
                                  std::this_thread::sleep_for(std::chrono::microseconds(200));
                                }),
               std::runtime_error);
  EXPECT_LT(started.load(), 100);  // work stopped being handed out
  // The pool still works afterwards.
  std::atomic<int> count{0};
  pool.parallelFor(10, 2, [&](size_t) { ++count; });
  EXPECT_EQ(count.load(), 10);
}

TEST(ThreadPool, ThreadCountsAsUsersWriteThem) {
  EXPECT_EQ(parseThreadCount("4"), 4);
  EXPECT_GE(parseThreadCount("ALL_CPUS"), 1);
  EXPECT_GE(parseThreadCount("all_cpus"), 1);
  for (const char* bad : {"0", "-1", "2abc", "", "1025", "two"}) EXPECT_EQ(parseThreadCount(bad), 0) << bad;
  EXPECT_EQ(parseThreadCount(nullptr), 0);
}

}  // namespace
}  // namespace nsat
