#include "codecs/entropy/cdf_tables.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <queue>
#include <utility>

namespace nsat {

QuantizedCdf::QuantizedCdf(std::vector<uint32_t> cumulative, int32_t minValue)
    : cumulative_(std::move(cumulative)), minValue_(minValue) {
  // Two entries would be the escape alone: a table must hold at least one value.
  if (cumulative_.size() < 3) {
    throw Error("entropy table needs at least one value besides the escape symbol");
  }
  if (cumulative_.front() != 0 || cumulative_.back() != kRansTotalFrequency) {
    throw Error("entropy table must start at 0 and end at 1 << 16");
  }
  for (size_t i = 1; i < cumulative_.size(); ++i) {
    if (cumulative_[i] <= cumulative_[i - 1]) {
      throw Error("entropy table has a symbol of frequency 0");
    }
  }
  if (static_cast<int64_t>(minValue_) + regularSymbolCount() - 1 > INT32_MAX) {
    throw Error("entropy table's values run past the int32 range");
  }
}

QuantizedCdf QuantizedCdf::fromFrequencies(const std::vector<uint32_t>& frequencies,
                                           int32_t minValue) {
  std::vector<uint32_t> cumulative(frequencies.size() + 1, 0);
  uint64_t total = 0;
  for (size_t i = 0; i < frequencies.size(); ++i) {
    total += frequencies[i];
    // Guards the uint32 prefix sums; the constructor rejects any total but 1 << 16.
    if (total > kRansTotalFrequency) throw Error("entropy table frequencies exceed 1 << 16");
    cumulative[i + 1] = static_cast<uint32_t>(total);
  }
  return QuantizedCdf(std::move(cumulative), minValue);
}

uint32_t QuantizedCdf::symbolForSlot(uint32_t slot) const {
  // cumulative_[0] = 0 <= slot < 1 << 16 = back(), so the answer is always a symbol.
  const auto firstAbove = std::upper_bound(cumulative_.begin() + 1, cumulative_.end(), slot);
  return static_cast<uint32_t>(firstAbove - (cumulative_.begin() + 1));
}

namespace {

// Frequencies for `weights` (escape last). Each symbol gets at least 1, then the rounded
// shares are corrected one count at a time where it costs the least code length:
// taking a count from frequency f of weight w costs w * log(f / (f - 1)) ~ w / (f - 0.5)
// bits and adding one gains ~ w / (f + 0.5). The approximation avoids libm, so only
// IEEE-exact operations decide the result; ties go to the lower index.
std::vector<uint32_t> quantizeWeights(std::vector<double> weights) {
  const size_t count = weights.size();
  if (count < 2) throw Error("entropy table needs at least one value besides the escape");
  if (count > kRansTotalFrequency) throw Error("entropy table has more than 65536 symbols");
  double total = 0.0;
  for (double weight : weights) {
    if (!std::isfinite(weight) || weight < 0.0) {
      throw Error("entropy table probabilities must be finite and non-negative");
    }
    total += weight;
  }
  if (!std::isfinite(total)) throw Error("entropy table probabilities overflow");
  if (total == 0.0) {
    std::fill(weights.begin(), weights.end(), 1.0);
    total = static_cast<double>(count);
  }

  std::vector<uint32_t> frequencies(count);
  uint64_t assigned = 0;
  for (size_t i = 0; i < count; ++i) {
    const double share = weights[i] / total * kRansTotalFrequency;
    frequencies[i] = share < 1.0 ? 1u : static_cast<uint32_t>(std::floor(share + 0.5));
    assigned += frequencies[i];
  }

  using Candidate = std::pair<double, size_t>;  // (marginal bits, symbol)
  if (assigned > kRansTotalFrequency) {
    // Pop the cheapest removal first; equal costs pop the lower index first.
    auto costlier = [](const Candidate& a, const Candidate& b) {
      return a.first != b.first ? a.first > b.first : a.second > b.second;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(costlier)> queue(costlier);
    for (size_t i = 0; i < count; ++i) {
      if (frequencies[i] > 1) queue.push({weights[i] / (frequencies[i] - 0.5), i});
    }
    // Cannot run dry: count <= 1 << 16 means some frequency is still > 1 while over.
    for (; assigned > kRansTotalFrequency; --assigned) {
      const size_t i = queue.top().second;
      queue.pop();
      if (--frequencies[i] > 1) queue.push({weights[i] / (frequencies[i] - 0.5), i});
    }
  } else if (assigned < kRansTotalFrequency) {
    // Pop the largest gain first; equal gains pop the lower index first.
    auto smallerGain = [](const Candidate& a, const Candidate& b) {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(smallerGain)> queue(
        smallerGain);
    for (size_t i = 0; i < count; ++i) queue.push({weights[i] / (frequencies[i] + 0.5), i});
    for (; assigned < kRansTotalFrequency; ++assigned) {
      const size_t i = queue.top().second;
      queue.pop();
      ++frequencies[i];
      queue.push({weights[i] / (frequencies[i] + 0.5), i});
    }
  }
  return frequencies;
}

}  // namespace

QuantizedCdf quantizeProbabilities(const std::vector<double>& regularProbabilities,
                                   double escapeProbability, int32_t minValue) {
  if (regularProbabilities.empty()) {
    throw Error("entropy table needs at least one value besides the escape symbol");
  }
  std::vector<double> weights;
  weights.reserve(regularProbabilities.size() + 1);
  weights.insert(weights.end(), regularProbabilities.begin(), regularProbabilities.end());
  weights.push_back(escapeProbability);
  return QuantizedCdf::fromFrequencies(quantizeWeights(std::move(weights)), minValue);
}

std::vector<double> defaultScaleTable() {
  constexpr int kScaleCount = 64;
  constexpr double kSmallestScale = 0.11;
  constexpr double kLargestScale = 256.0;
  const double logSmallest = std::log(kSmallestScale);
  const double logStep = (std::log(kLargestScale) - logSmallest) / (kScaleCount - 1);
  std::vector<double> scales(kScaleCount);
  for (int i = 0; i < kScaleCount; ++i) scales[i] = std::exp(logSmallest + i * logStep);
  // Pin the ends exactly, whatever exp(log(x)) rounds to.
  scales.front() = kSmallestScale;
  scales.back() = kLargestScale;
  return scales;
}

QuantizedCdf gaussianCdf(double scale, double tailMass) {
  if (!std::isfinite(scale) || scale <= 0.0) {
    throw Error("Gaussian entropy table needs a finite scale > 0");
  }
  if (!(tailMass > 0.0 && tailMass < 1.0)) {
    throw Error("Gaussian entropy table needs a tail mass in (0, 1)");
  }
  // P(|X| > t) = erfc(t / (scale * sqrt 2)); sqrt is IEEE-exact.
  const double toErfArgument = 1.0 / (scale * std::sqrt(2.0));
  // Smallest half-width h whose tails beyond +-(h + 0.5) hold at most tailMass.
  uint32_t halfWidth = 0;
  while (std::erfc((halfWidth + 0.5) * toErfArgument) > tailMass) {
    ++halfWidth;
    if (2 * static_cast<uint64_t>(halfWidth) + 2 > kRansTotalFrequency) {
      throw Error("Gaussian entropy table too wide for 16-bit precision");
    }
  }
  // Probabilities of |k| = 0 .. h, mirrored so the table is built symmetric.
  std::vector<double> ofMagnitude(halfWidth + 1);
  ofMagnitude[0] = std::erf(0.5 * toErfArgument);
  for (uint32_t k = 1; k <= halfWidth; ++k) {
    // Difference of upper tails: accurate far out where CDF differences would cancel.
    ofMagnitude[k] =
        0.5 * (std::erfc((k - 0.5) * toErfArgument) - std::erfc((k + 0.5) * toErfArgument));
  }
  std::vector<double> probabilities(2 * halfWidth + 1);
  for (uint32_t k = 0; k <= halfWidth; ++k) {
    probabilities[halfWidth + k] = ofMagnitude[k];
    probabilities[halfWidth - k] = ofMagnitude[k];
  }
  const double escapeProbability = std::erfc((halfWidth + 0.5) * toErfArgument);
  return quantizeProbabilities(probabilities, escapeProbability,
                               -static_cast<int32_t>(halfWidth));
}

std::vector<QuantizedCdf> gaussianScaleTables(const std::vector<double>& scales,
                                              double tailMass) {
  std::vector<QuantizedCdf> tables;
  tables.reserve(scales.size());
  for (double scale : scales) tables.push_back(gaussianCdf(scale, tailMass));
  return tables;
}

const std::vector<QuantizedCdf>& defaultGaussianTables() {
  // Function-local static: built once, thread-safe initialisation.
  static const std::vector<QuantizedCdf> tables = gaussianScaleTables(defaultScaleTable());
  return tables;
}

size_t scaleIndexFor(const std::vector<double>& scaleTable, double scale) {
  if (scaleTable.empty()) throw Error("scale table is empty");
  if (std::isnan(scale)) return 0;
  const auto firstNotBelow = std::lower_bound(scaleTable.begin(), scaleTable.end(), scale);
  const size_t index = static_cast<size_t>(firstNotBelow - scaleTable.begin());
  return std::min(index, scaleTable.size() - 1);
}

QuantizedCdf factorizedPriorCdf(const std::vector<float>& pmf, float tailMass,
                                int32_t minValue) {
  const std::vector<double> probabilities(pmf.begin(), pmf.end());
  return quantizeProbabilities(probabilities, tailMass, minValue);
}

std::vector<QuantizedCdf> factorizedPriorTables(const std::vector<std::vector<float>>& pmfs,
                                                const std::vector<float>& tailMasses,
                                                const std::vector<int32_t>& minValues) {
  if (tailMasses.size() != pmfs.size() || minValues.size() != pmfs.size()) {
    throw Error("factorised prior: pmfs, tail masses and offsets differ in channel count");
  }
  std::vector<QuantizedCdf> tables;
  tables.reserve(pmfs.size());
  for (size_t channel = 0; channel < pmfs.size(); ++channel) {
    tables.push_back(factorizedPriorCdf(pmfs[channel], tailMasses[channel], minValues[channel]));
  }
  return tables;
}

namespace {

void appendLittleEndian32(std::vector<uint8_t>& bytes, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) bytes.push_back(static_cast<uint8_t>(value >> shift));
}

}  // namespace

std::vector<uint8_t> serializeTables(const std::vector<QuantizedCdf>& tables) {
  std::vector<uint8_t> bytes;
  appendLittleEndian32(bytes, static_cast<uint32_t>(tables.size()));
  for (const QuantizedCdf& table : tables) {
    appendLittleEndian32(bytes, static_cast<uint32_t>(table.minValue()));
    appendLittleEndian32(bytes, table.symbolCount());
    for (uint32_t entry : table.cumulative()) appendLittleEndian32(bytes, entry);
  }
  return bytes;
}

uint64_t fnv1a64(const uint8_t* data, size_t size) {
  constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ull;
  constexpr uint64_t kPrime = 0x100000001b3ull;
  uint64_t hash = kOffsetBasis;
  for (size_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= kPrime;
  }
  return hash;
}

uint64_t tablesFingerprint(const std::vector<QuantizedCdf>& tables) {
  const std::vector<uint8_t> bytes = serializeTables(tables);
  return fnv1a64(bytes.data(), bytes.size());
}

std::string fingerprintHex(uint64_t fingerprint) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(fingerprint));
  return text;
}

}  // namespace nsat
