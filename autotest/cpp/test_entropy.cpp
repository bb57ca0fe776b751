// The rANS entropy coder and its probability tables (codecs/entropy/).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "codecs/entropy/cdf_tables.h"
#include "codecs/entropy/rans_coder.h"

namespace nsat {
namespace {

// A value and the table it is coded against.
struct CodedValue {
  int32_t value;
  const QuantizedCdf* table;
};

std::vector<uint8_t> encodeAll(const std::vector<CodedValue>& values) {
  RansEncoder encoder;
  for (const CodedValue& coded : values) encoder.encode(coded.value, *coded.table);
  return encoder.finish();
}

// Decodes every value, checks the stream ends exactly, and returns the values.
std::vector<int32_t> decodeAll(const std::vector<uint8_t>& bytes,
                               const std::vector<CodedValue>& values) {
  RansDecoder decoder(bytes.data(), bytes.size());
  std::vector<int32_t> decoded;
  decoded.reserve(values.size());
  for (const CodedValue& coded : values) decoded.push_back(decoder.decode(*coded.table));
  decoder.verifyEnd();
  return decoded;
}

std::vector<int32_t> valuesOf(const std::vector<CodedValue>& values) {
  std::vector<int32_t> plain;
  for (const CodedValue& coded : values) plain.push_back(coded.value);
  return plain;
}

// Ideal code length of `value` under `table` in bits: the symbol's -log2 probability,
// plus for escapes the Elias-gamma bypass bits (2 * mantissa bits + 1).
double modelBits(int32_t value, const QuantizedCdf& table) {
  const int64_t index = static_cast<int64_t>(value) - table.minValue();
  if (index >= 0 && index < table.regularSymbolCount()) {
    return -std::log2(table.frequency(static_cast<uint32_t>(index)) /
                      static_cast<double>(kRansTotalFrequency));
  }
  const uint64_t escaped =
      value < table.minValue()
          ? 2 * static_cast<uint64_t>(static_cast<int64_t>(table.minValue()) - 1 - value) + 1
          : 2 * static_cast<uint64_t>(static_cast<int64_t>(value) - table.maxValue() - 1);
  int mantissaBits = 0;
  while (((escaped + 1) >> (mantissaBits + 1)) != 0) ++mantissaBits;
  return -std::log2(table.frequency(table.escapeSymbol()) /
                    static_cast<double>(kRansTotalFrequency)) +
         2 * mantissaBits + 1;
}

void expectValidTable(const QuantizedCdf& table) {
  const auto& cumulative = table.cumulative();
  ASSERT_EQ(cumulative.size(), table.symbolCount() + 1);
  EXPECT_EQ(cumulative.front(), 0u);
  EXPECT_EQ(cumulative.back(), kRansTotalFrequency);
  uint64_t total = 0;
  for (uint32_t symbol = 0; symbol < table.symbolCount(); ++symbol) {
    EXPECT_GE(table.frequency(symbol), 1u);
    total += table.frequency(symbol);
  }
  EXPECT_EQ(total, kRansTotalFrequency);
}

// Per-channel factorised-prior tables from random, peaked PMFs, as a network gives.
std::vector<QuantizedCdf> randomFactorizedTables(std::mt19937& rng, int channels) {
  std::uniform_int_distribution<int> halfWidth(0, 40);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<std::vector<float>> pmfs;
  std::vector<float> tails;
  std::vector<int32_t> offsets;
  for (int channel = 0; channel < channels; ++channel) {
    const int width = halfWidth(rng);
    const double decay = 0.2 + 2.0 * unit(rng);
    std::vector<float> pmf;
    for (int k = -width; k <= width; ++k) {
      pmf.push_back(static_cast<float>(std::exp(-decay * std::abs(k)) * (0.5 + unit(rng))));
    }
    pmfs.push_back(pmf);
    tails.push_back(static_cast<float>(1e-6 * unit(rng)));
    offsets.push_back(-width);
  }
  return factorizedPriorTables(pmfs, tails, offsets);
}

// 1e5 latents: Gaussian and Laplacian of random scales against the scale tables,
// plus hyper-latents against per-channel factorised tables.
struct MixedLatents {
  std::vector<QuantizedCdf> factorized;
  std::vector<CodedValue> values;
};

MixedLatents makeMixedLatents(uint32_t seed, size_t count) {
  std::mt19937 rng(seed);
  MixedLatents latents;
  latents.factorized = randomFactorizedTables(rng, 16);
  const std::vector<double> scaleTable = defaultScaleTable();
  const auto& gaussian = defaultGaussianTables();
  std::uniform_real_distribution<double> logScale(std::log(0.05), std::log(300.0));
  std::uniform_int_distribution<int> kind(0, 2);
  std::uniform_int_distribution<size_t> channel(0, latents.factorized.size() - 1);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::exponential_distribution<double> exponential(1.0);
  latents.values.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const double scale = std::exp(logScale(rng));
    const QuantizedCdf* table = &gaussian[scaleIndexFor(scaleTable, scale)];
    double sample = 0.0;
    switch (kind(rng)) {
      case 0:
        sample = scale * normal(rng);
        break;
      case 1:  // Laplacian of the same standard deviation: heavier tails, more escapes.
        sample = scale / std::sqrt(2.0) * (exponential(rng) - exponential(rng));
        break;
      default: {
        const QuantizedCdf& prior = latents.factorized[channel(rng)];
        table = &prior;
        sample = (prior.maxValue() / 4.0) * (exponential(rng) - exponential(rng));
      }
    }
    latents.values.push_back({static_cast<int32_t>(std::lround(sample)), table});
  }
  return latents;
}

TEST(EntropyTables, DefaultScaleTableIsGeometricFrom011To256) {
  const std::vector<double> scales = defaultScaleTable();
  ASSERT_EQ(scales.size(), 64u);
  EXPECT_EQ(scales.front(), 0.11);
  EXPECT_EQ(scales.back(), 256.0);
  const double ratio = std::pow(256.0 / 0.11, 1.0 / 63.0);
  for (size_t i = 1; i < scales.size(); ++i) {
    EXPECT_NEAR(scales[i] / scales[i - 1], ratio, 1e-9) << i;
  }
}

TEST(EntropyTables, GaussianTablesAreValidAndCoverTheirTailMass) {
  const auto& tables = defaultGaussianTables();
  const std::vector<double> scales = defaultScaleTable();
  ASSERT_EQ(tables.size(), scales.size());
  for (size_t i = 0; i < tables.size(); ++i) {
    SCOPED_TRACE(i);
    expectValidTable(tables[i]);
    // Symmetric support -h .. h, just wide enough for a 1e-9 tail (|z| ~ 6.1).
    EXPECT_EQ(tables[i].minValue(), -tables[i].maxValue());
    const double halfWidth = tables[i].maxValue();
    EXPECT_GE(halfWidth + 0.5, 6.10 * scales[i]);
    EXPECT_LT(halfWidth - 0.5, 6.11 * scales[i]);
    // The most likely value is 0.
    EXPECT_EQ(tables[i].symbolForSlot(kRansTotalFrequency / 2) + tables[i].minValue(), 0);
  }
  EXPECT_EQ(tables.front().regularSymbolCount(), 3u);  // scale 0.11: -1, 0, 1
  EXPECT_GT(tables.back().regularSymbolCount(), 3000u);
}

TEST(EntropyTables, GaussianQuantisationIsCloseToTheTrueDistribution) {
  // Cross-entropy of the quantised table against the exact discretised Gaussian,
  // over its entropy: what quantising to 16 bits costs.
  for (double scale : {0.11, 0.5, 2.0, 20.0, 256.0}) {
    const QuantizedCdf table = gaussianCdf(scale);
    double entropy = 0.0;
    double crossEntropy = 0.0;
    for (int32_t value = table.minValue(); value <= table.maxValue(); ++value) {
      const double upper = (value + 0.5) / (scale * std::sqrt(2.0));
      const double lower = (value - 0.5) / (scale * std::sqrt(2.0));
      const double p = 0.5 * (std::erfc(-upper) - std::erfc(-lower));  // Phi(u) - Phi(l)
      if (p <= 0.0) continue;
      const double q = table.frequency(static_cast<uint32_t>(value - table.minValue())) /
                       static_cast<double>(kRansTotalFrequency);
      entropy -= p * std::log2(p);
      crossEntropy -= p * std::log2(q);
    }
    SCOPED_TRACE(scale);
    EXPECT_LE(crossEntropy - entropy, std::max(0.01 * entropy, 0.002));
  }
}

TEST(EntropyTables, FactorizedPriorTablesAreValidForAnyPmf) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> length(1, 5000);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> pmf(length(rng));
    for (float& p : pmf) {
      // Some zeros, some denormals, some huge spikes.
      const float draw = unit(rng);
      p = draw < 0.2f ? 0.0f : draw < 0.25f ? 1e-40f : draw < 0.27f ? 1e30f : unit(rng);
    }
    expectValidTable(factorizedPriorCdf(pmf, unit(rng) * 1e-3f, -37));
  }
  // Degenerate inputs still give usable tables.
  expectValidTable(factorizedPriorCdf({0.0f, 0.0f, 0.0f}, 0.0f, 0));        // uniform
  expectValidTable(factorizedPriorCdf({1.0f}, 0.0f, 0));                     // one value
  expectValidTable(factorizedPriorCdf(std::vector<float>(65535, 1.0f), 0.0f, 0));  // full
}

TEST(EntropyTables, QuantisationFollowsTheProbabilities) {
  const QuantizedCdf table = factorizedPriorCdf({0.5f, 0.25f, 0.25f}, 0.0f, 10);
  EXPECT_EQ(table.minValue(), 10);
  EXPECT_EQ(table.maxValue(), 12);
  // 32768 + 16384 + 16384 + 1 is one too many: the count comes off where it costs
  // least, 0.5 * log(32768 / 32767) < 0.25 * log(16384 / 16383).
  EXPECT_EQ(table.frequency(0), 32767u);
  EXPECT_EQ(table.frequency(1), 16384u);
  EXPECT_EQ(table.frequency(2), 16384u);
  EXPECT_EQ(table.frequency(table.escapeSymbol()), 1u);
}

TEST(EntropyTables, InvalidInputsAreRefused) {
  EXPECT_THROW(factorizedPriorCdf({}, 0.1f, 0), Error);
  EXPECT_THROW(factorizedPriorCdf({0.5f, -0.1f}, 0.0f, 0), Error);
  EXPECT_THROW(factorizedPriorCdf({0.5f, std::nanf("")}, 0.0f, 0), Error);
  EXPECT_THROW(factorizedPriorCdf({0.5f}, std::numeric_limits<float>::infinity(), 0), Error);
  EXPECT_THROW(factorizedPriorCdf(std::vector<float>(65536, 1.0f), 0.0f, 0), Error);
  EXPECT_THROW(factorizedPriorCdf({0.5f, 0.5f}, 0.0f, std::numeric_limits<int32_t>::max()),
               Error);
  EXPECT_THROW(factorizedPriorTables({{1.0f}}, {0.0f, 0.0f}, {0}), Error);
  EXPECT_THROW(gaussianCdf(0.0), Error);
  EXPECT_THROW(gaussianCdf(-1.0), Error);
  EXPECT_THROW(gaussianCdf(std::nan("")), Error);
  EXPECT_THROW(gaussianCdf(1.0, 0.0), Error);
  EXPECT_THROW(gaussianCdf(1e5), Error);  // support wider than 65536 symbols
  EXPECT_THROW(QuantizedCdf({0, kRansTotalFrequency}, 0), Error);             // escape only
  EXPECT_THROW(QuantizedCdf({0, 100, 100, kRansTotalFrequency}, 0), Error);   // frequency 0
  EXPECT_THROW(QuantizedCdf({0, 100, kRansTotalFrequency - 1}, 0), Error);    // short total
  EXPECT_THROW(QuantizedCdf({1, 100, kRansTotalFrequency}, 0), Error);        // bad start
  EXPECT_THROW(QuantizedCdf::fromFrequencies({65535, 2}, 0), Error);          // over
  EXPECT_THROW(scaleIndexFor({}, 1.0), Error);
}

TEST(EntropyTables, ScaleIndexPicksTheFirstScaleNotBelow) {
  const std::vector<double> scales = defaultScaleTable();
  EXPECT_EQ(scaleIndexFor(scales, 0.0), 0u);
  EXPECT_EQ(scaleIndexFor(scales, -5.0), 0u);
  EXPECT_EQ(scaleIndexFor(scales, std::nan("")), 0u);
  EXPECT_EQ(scaleIndexFor(scales, 0.11), 0u);
  EXPECT_EQ(scaleIndexFor(scales, scales[10]), 10u);
  EXPECT_EQ(scaleIndexFor(scales, scales[10] * 1.0001), 11u);
  EXPECT_EQ(scaleIndexFor(scales, 256.0), 63u);
  EXPECT_EQ(scaleIndexFor(scales, 1e9), 63u);
  EXPECT_EQ(scaleIndexFor(scales, std::numeric_limits<double>::infinity()), 63u);
}

// Pins the default Gaussian tables. If this fails, tables changed (code, or the maths
// library's erf/erfc/exp/log): files that recorded the old fingerprint must be refused
// on this build, and this value updated only together with a format version bump.
TEST(EntropyTables, DefaultGaussianTablesFingerprintIsPinned) {
  const uint64_t fingerprint = tablesFingerprint(defaultGaussianTables());
  EXPECT_EQ(fingerprintHex(fingerprint), "4f7e5d5c8188677e");
  // The serialisation is what the fingerprint covers: every table, in order.
  std::vector<QuantizedCdf> reordered(defaultGaussianTables().rbegin(),
                                      defaultGaussianTables().rend());
  EXPECT_NE(tablesFingerprint(reordered), fingerprint);
  EXPECT_EQ(fnv1a64(nullptr, 0), 0xcbf29ce484222325ull);
  const uint8_t a = 'a';
  EXPECT_EQ(fnv1a64(&a, 1), 0xaf63dc4c8601ec8cull);  // published FNV-1a test vector
}

TEST(RansCoder, EmptyStreamIsTheInitialState) {
  RansEncoder encoder;
  const std::vector<uint8_t> bytes = encoder.finish();
  EXPECT_EQ(bytes, (std::vector<uint8_t>{0x00, 0x80, 0x00, 0x00}));
  RansDecoder decoder(bytes.data(), bytes.size());
  EXPECT_NO_THROW(decoder.verifyEnd());
}

TEST(RansCoder, MixedLatentsRoundTripExactly) {
  const MixedLatents latents = makeMixedLatents(20240601, 100000);
  const std::vector<uint8_t> bytes = encodeAll(latents.values);
  EXPECT_EQ(decodeAll(bytes, latents.values), valuesOf(latents.values));
}

TEST(RansCoder, CodedSizeIsWithinOnePercentOfTheModelEntropy) {
  const MixedLatents latents = makeMixedLatents(99, 100000);
  double bits = 0.0;
  for (const CodedValue& coded : latents.values) bits += modelBits(coded.value, *coded.table);
  const std::vector<uint8_t> bytes = encodeAll(latents.values);
  const double codedBits = 8.0 * bytes.size();
  EXPECT_GE(codedBits, bits - 64.0);  // no coder beats the model
  EXPECT_LE(codedBits, bits * 1.01);
  // Per-scale check too: rANS overhead must not hide in the low-entropy tables.
  for (size_t index : {0u, 8u, 32u, 63u}) {
    const QuantizedCdf& table = defaultGaussianTables()[index];
    std::mt19937 rng(static_cast<uint32_t>(index));
    std::normal_distribution<double> normal(0.0, defaultScaleTable()[index]);
    std::vector<CodedValue> values;
    double tableBits = 0.0;
    for (int i = 0; i < 100000; ++i) {
      values.push_back({static_cast<int32_t>(std::lround(normal(rng))), &table});
      tableBits += modelBits(values.back().value, table);
    }
    SCOPED_TRACE(index);
    EXPECT_LE(8.0 * encodeAll(values).size(), tableBits * 1.01 + 64.0);
  }
}

TEST(RansCoder, OutOfRangeValuesRoundTripThroughBypass) {
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int32_t kMax = std::numeric_limits<int32_t>::max();
  const std::vector<QuantizedCdf> tables = {
      gaussianCdf(0.11),                                        // -1 .. 1
      gaussianCdf(256.0),                                       // wide
      QuantizedCdf::fromFrequencies({60000, 5535, 1}, kMin),    // at the bottom of int32
      QuantizedCdf::fromFrequencies({100, 65435, 1}, kMax - 1)  // at the top of int32
  };
  std::vector<int32_t> specials = {kMin,     kMin + 1, kMin + 2, -1000000000, -70000, -3, -2,
                                   -1,       0,        1,        2,           3,      70000,
                                   1 << 30,  kMax - 2, kMax - 1, kMax};
  for (const QuantizedCdf& table : tables) {
    for (int64_t edge : {static_cast<int64_t>(table.minValue()) - 1,
                         static_cast<int64_t>(table.maxValue()) + 1}) {
      if (edge >= kMin && edge <= kMax) specials.push_back(static_cast<int32_t>(edge));
    }
  }
  std::vector<CodedValue> values;
  for (const QuantizedCdf& table : tables) {
    for (int32_t value : specials) values.push_back({value, &table});
  }
  std::mt19937 rng(3);
  for (int i = 0; i < 20000; ++i) {  // uniformly random int32s: nearly all escapes
    values.push_back({static_cast<int32_t>(rng()), &tables[i % tables.size()]});
  }
  const std::vector<uint8_t> bytes = encodeAll(values);
  EXPECT_EQ(decodeAll(bytes, values), valuesOf(values));
}

// Guards the bitstream: a change to the coder that changes its output must fail here.
// Integer-only tables and mt19937's raw output (fixed by the C++ standard) so the
// expected bytes do not depend on the maths library or the standard library.
TEST(RansCoder, KnownAnswer) {
  const QuantizedCdf table = QuantizedCdf::fromFrequencies(
      {1, 30, 2000, 30000, 20000, 10000, 3474, 30, 1}, -3);  // values -3 .. 4, escape
  const QuantizedCdf flat = QuantizedCdf::fromFrequencies({16384, 16384, 16384, 16383, 1}, 0);
  std::mt19937 rng(12345);
  std::vector<CodedValue> values;
  for (int i = 0; i < 10000; ++i) {
    const uint32_t draw = rng();
    if (draw % 97 == 0) {
      values.push_back({static_cast<int32_t>(rng()), &table});  // escape, any size
    } else if (draw % 5 == 0) {
      values.push_back({static_cast<int32_t>(draw >> 29), &flat});  // 0..7: some escapes
    } else {
      values.push_back({static_cast<int32_t>((draw >> 8) % 9) - 4, &table});  // -4..4
    }
  }
  const std::vector<uint8_t> bytes = encodeAll(values);
  EXPECT_EQ(bytes.size(), 11713u);
  EXPECT_EQ(fingerprintHex(fnv1a64(bytes.data(), bytes.size())), "684bfa83b6643a73");
  EXPECT_EQ(decodeAll(bytes, values), valuesOf(values));
}

TEST(RansCoder, SameBytesFromEveryThread) {
  const MixedLatents latents = makeMixedLatents(5, 20000);
  const std::vector<uint8_t> expected = encodeAll(latents.values);
  std::vector<std::vector<uint8_t>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&latents, &result] { result = encodeAll(latents.values); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_EQ(result, expected);
}

TEST(RansCoder, TruncatedStreamsAlwaysThrow) {
  // The decoder reads exactly the bytes the encoder wrote, in order, so any cut is met.
  const MixedLatents latents = makeMixedLatents(11, 3000);
  const std::vector<uint8_t> bytes = encodeAll(latents.values);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    const std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + cut);
    EXPECT_THROW(decodeAll(truncated, latents.values), Error) << cut;
  }
}

TEST(RansCoder, WrongEndingsAreDetected) {
  const MixedLatents latents = makeMixedLatents(12, 1000);
  std::vector<uint8_t> bytes = encodeAll(latents.values);
  {  // one value too few
    RansDecoder decoder(bytes.data(), bytes.size());
    for (size_t i = 0; i + 1 < latents.values.size(); ++i) {
      decoder.decode(*latents.values[i].table);
    }
    EXPECT_THROW(decoder.verifyEnd(), Error);
  }
  bytes.push_back(0);  // trailing data
  EXPECT_THROW(decodeAll(bytes, latents.values), Error);
}

TEST(RansCoder, ImpossibleEscapeCodesAreRefused) {
  // A one-bit bypass read drops bit 15 of the state, so a state of all ones, refilled
  // with 0xFF bytes, reads ones forever: against a table whose escape is exactly the
  // upper half, the Elias-gamma length never ends. The decoder must give up.
  const QuantizedCdf halfEscape = QuantizedCdf::fromFrequencies({32768, 32768}, 0);
  std::vector<uint8_t> endlessOnes(64, 0xFF);
  endlessOnes[0] = 0x7F;  // highest valid initial state
  RansDecoder endless(endlessOnes.data(), endlessOnes.size());
  EXPECT_THROW(endless.decode(halfEscape), Error);

  // The largest escape against a table at the bottom of int32, read back against a
  // table at 0 with the same frequencies: a valid code for a value past INT32_MAX.
  const std::vector<uint32_t> frequencies = {32768, 32767, 1};
  const QuantizedCdf atBottom =
      QuantizedCdf::fromFrequencies(frequencies, std::numeric_limits<int32_t>::min());
  const QuantizedCdf atZero = QuantizedCdf::fromFrequencies(frequencies, 0);
  RansEncoder encoder;
  encoder.encode(std::numeric_limits<int32_t>::max(), atBottom);
  const std::vector<uint8_t> bytes = encoder.finish();
  RansDecoder tooLarge(bytes.data(), bytes.size());
  EXPECT_THROW(tooLarge.decode(atZero), Error);
  RansDecoder right(bytes.data(), bytes.size());
  EXPECT_EQ(right.decode(atBottom), std::numeric_limits<int32_t>::max());
  EXPECT_NO_THROW(right.verifyEnd());
}

TEST(RansCoder, CorruptStreamsNeverCrashOrHang) {
  // Under AddressSanitizer this also proves no out-of-bounds read. Each decode call
  // does bounded work, so a fixed number of calls always terminates.
  const MixedLatents latents = makeMixedLatents(13, 2000);
  const std::vector<uint8_t> valid = encodeAll(latents.values);
  // Tables where garbage decodes to escapes often, to exercise the bypass decoder.
  const QuantizedCdf escapeHeavy = QuantizedCdf::fromFrequencies({100, 100, 65336}, 0);
  // True if the decoder refused the stream (nsat::Error), false if it decoded it.
  auto refuses = [&](const std::vector<uint8_t>& bytes, bool escapes) {
    try {
      RansDecoder decoder(bytes.data(), bytes.size());
      for (const CodedValue& coded : latents.values) {
        decoder.decode(escapes ? escapeHeavy : *coded.table);
      }
      decoder.verifyEnd();
      return false;
    } catch (const Error&) {
      return true;
    }
  };
  std::mt19937 rng(17);
  std::uniform_int_distribution<size_t> length(0, 400);
  for (int trial = 0; trial < 1000; ++trial) {
    std::vector<uint8_t> garbage(length(rng));
    for (uint8_t& byte : garbage) byte = static_cast<uint8_t>(rng());
    EXPECT_TRUE(refuses(garbage, trial % 2 == 0)) << trial;
  }
  // rANS has no redundancy: a flip can turn k into the equally likely -k and fall back
  // in step, so only most flips are caught here; integrity is the container CRC's job.
  size_t flips = 0;
  size_t refusedFlips = 0;
  for (size_t bit = 0; bit < valid.size() * 8; bit += 3, ++flips) {
    std::vector<uint8_t> flipped = valid;
    flipped[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    refusedFlips += refuses(flipped, false) ? 1 : 0;
  }
  EXPECT_GT(refusedFlips, flips * 9 / 10);
}

}  // namespace
}  // namespace nsat
