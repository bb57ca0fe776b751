// Quantised probability tables for the rANS coder (rans_coder.h).
//
// A table is an alphabet of consecutive integer values plus one escape symbol that
// stands for every value outside it (the coder then sends the value in bypass bits).
// Frequencies are integers summing to exactly 1 << 16, every symbol >= 1, so any
// value can be coded against any table.
//
// Determinism: the coder itself is pure integer arithmetic, but the tables are built
// from doubles. The Gaussian tables come from std::exp/std::log (the scale table) and
// std::erf/std::erfc (the probabilities); the quantisation that follows uses only
// IEEE-exact operations (+ - * / floor) with index-ordered tie-breaking. The encoder
// and decoder run this same code once per process, so tables agree wherever the maths
// library agrees. A file should record tablesFingerprint() of the tables it used, so
// that a decoder on a platform whose erfc differs in the last bit refuses the file
// instead of silently decoding garbage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "codecs/codec.h"

namespace nsat {

constexpr int kRansPrecisionBits = 16;
constexpr uint32_t kRansTotalFrequency = 1u << kRansPrecisionBits;
// Probability left outside a Gaussian table's support (both tails together); it is
// what the escape symbol is worth.
constexpr double kDefaultGaussianTailMass = 1e-9;

// Values minValue() .. maxValue() are regular symbols 0 .. regularSymbolCount() - 1;
// symbol escapeSymbol() (the last) codes everything else. Immutable once built, so
// one table is shared by any number of coders and threads.
class QuantizedCdf {
 public:
  // `cumulative` holds symbolCount() + 1 entries: 0, strictly increasing, ending at
  // 1 << 16 (so every frequency is >= 1), with at least one regular symbol before
  // the escape. Throws nsat::Error otherwise, or if maxValue() overflows int32.
  QuantizedCdf(std::vector<uint32_t> cumulative, int32_t minValue);
  // Same, from frequencies (regular symbols, then the escape) that sum to 1 << 16.
  static QuantizedCdf fromFrequencies(const std::vector<uint32_t>& frequencies,
                                      int32_t minValue);

  int32_t minValue() const { return minValue_; }
  int32_t maxValue() const {
    return static_cast<int32_t>(static_cast<int64_t>(minValue_) + regularSymbolCount() - 1);
  }
  uint32_t symbolCount() const { return static_cast<uint32_t>(cumulative_.size() - 1); }
  uint32_t regularSymbolCount() const { return symbolCount() - 1; }
  uint32_t escapeSymbol() const { return symbolCount() - 1; }

  uint32_t start(uint32_t symbol) const { return cumulative_[symbol]; }
  uint32_t frequency(uint32_t symbol) const {
    return cumulative_[symbol + 1] - cumulative_[symbol];
  }
  // The symbol whose interval [start, start + frequency) holds `slot` (< 1 << 16).
  uint32_t symbolForSlot(uint32_t slot) const;

  const std::vector<uint32_t>& cumulative() const { return cumulative_; }

 private:
  std::vector<uint32_t> cumulative_;
  int32_t minValue_;
};

// Quantises non-negative weights (regular symbols, then the escape last; they need not
// sum to 1) to frequencies >= 1 summing to exactly 1 << 16: rounding to nearest, then
// greedy corrections that cost the least code length. An all-zero input gives a
// uniform table. Throws nsat::Error on negative or non-finite weights, fewer than two
// symbols or more than 1 << 16.
QuantizedCdf quantizeProbabilities(const std::vector<double>& regularProbabilities,
                                   double escapeProbability, int32_t minValue);

// --- Gaussian conditional (the latents y, coded as round(y - mean)) ---

// The classic scale table: 64 scales geometrically spaced from 0.11 to 256.
std::vector<double> defaultScaleTable();

// A zero-mean Gaussian of standard deviation `scale`, discretised to integers
// (P(k) = Phi((k + 0.5) / scale) - Phi((k - 0.5) / scale)). The support is the
// smallest -h .. h whose two tails together hold at most `tailMass`; that mass goes to
// the escape symbol. Throws nsat::Error if scale is not finite and > 0, tailMass not
// in (0, 1), or the support would exceed 1 << 16 symbols.
QuantizedCdf gaussianCdf(double scale, double tailMass = kDefaultGaussianTailMass);
std::vector<QuantizedCdf> gaussianScaleTables(const std::vector<double>& scales,
                                              double tailMass = kDefaultGaussianTailMass);
// gaussianScaleTables(defaultScaleTable()), built once per process on first use.
const std::vector<QuantizedCdf>& defaultGaussianTables();

// The index of the table to code a latent whose predicted scale is `scale`: the first
// entry of the ascending `scaleTable` that is >= scale (a wider table never hurts
// much, a narrower one does), clamped to the last; small or NaN scales give 0.
size_t scaleIndexFor(const std::vector<double>& scaleTable, double scale);

// --- Factorised prior (the hyper-latents z, one table per channel) ---

// `pmf[i]` is the probability of value minValue + i, `tailMass` the probability of
// every value outside that range. Float inputs as a network exports them.
QuantizedCdf factorizedPriorCdf(const std::vector<float>& pmf, float tailMass,
                                int32_t minValue);
// One table per channel; the three vectors have one entry per channel.
std::vector<QuantizedCdf> factorizedPriorTables(const std::vector<std::vector<float>>& pmfs,
                                                const std::vector<float>& tailMasses,
                                                const std::vector<int32_t>& minValues);

// --- Recording which tables a file used ---

// Canonical bytes of a list of tables (little-endian): table count, then per table
// minValue, symbolCount and the symbolCount + 1 cumulative frequencies.
std::vector<uint8_t> serializeTables(const std::vector<QuantizedCdf>& tables);
// 64-bit FNV-1a, not cryptographic: it only has to notice a table that differs.
uint64_t fnv1a64(const uint8_t* data, size_t size);
uint64_t tablesFingerprint(const std::vector<QuantizedCdf>& tables);
// 16 lower-case hex digits, for a JSON header.
std::string fingerprintHex(uint64_t fingerprint);

}  // namespace nsat
