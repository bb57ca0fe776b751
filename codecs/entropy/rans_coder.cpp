#include "codecs/entropy/rans_coder.h"

#include <algorithm>

namespace nsat {

namespace {

// Between symbols the state lies in [kStateLow, kStateLow << 8): low enough that the
// encoder's (state / freq) << 16 fits 32 bits, high enough that a symbol never loses
// more than 16 bits of precision before a byte is shifted in.
constexpr uint32_t kStateLow = 1u << 23;
constexpr uint32_t kSlotMask = kRansTotalFrequency - 1;
constexpr int kStateBytes = 4;
// Bypass bits go in chunks of at most the precision (a chunk of n bits is one symbol
// of frequency 2^(16 - n)).
constexpr int kMaxBypassChunkBits = kRansPrecisionBits;
// An escaped distance is below 2^32, so the gamma-coded number (2 * distance + sign
// + 1) is below 2^33 and has at most 32 bits after its leading one. More means corrupt
// data, and stopping there bounds the decoder's work.
constexpr int kMaxGammaMantissaBits = 32;

}  // namespace

void RansEncoder::queue(uint32_t start, uint32_t frequency) {
  pending_.push_back(start | ((frequency - 1) << 16));
}

void RansEncoder::queueBypassBits(uint32_t bits, int count) {
  const int unusedBits = kRansPrecisionBits - count;
  queue(bits << unusedBits, 1u << unusedBits);
}

void RansEncoder::queueEliasGamma(uint64_t number) {
  // number >= 1: its bit length minus one in unary (ones ended by a zero), then the
  // bits below its leading one, most significant chunk first.
  int mantissaBits = 0;
  while ((number >> (mantissaBits + 1)) != 0) ++mantissaBits;
  for (int i = 0; i < mantissaBits; ++i) queueBypassBits(1, 1);
  queueBypassBits(0, 1);
  for (int remaining = mantissaBits; remaining > 0;) {
    const int chunk = std::min(remaining, kMaxBypassChunkBits);
    remaining -= chunk;
    queueBypassBits(static_cast<uint32_t>((number >> remaining) & ((1ull << chunk) - 1)), chunk);
  }
}

void RansEncoder::encode(int32_t value, const QuantizedCdf& cdf) {
  const int64_t index = static_cast<int64_t>(value) - cdf.minValue();
  if (index >= 0 && index < cdf.regularSymbolCount()) {
    const auto symbol = static_cast<uint32_t>(index);
    queue(cdf.start(symbol), cdf.frequency(symbol));
    return;
  }
  const uint32_t escape = cdf.escapeSymbol();
  queue(cdf.start(escape), cdf.frequency(escape));
  // Distance beyond the range, with the side in the lowest bit; small overshoots,
  // the common case, cost only a few bits.
  const uint64_t escaped =
      value < cdf.minValue()
          ? 2 * static_cast<uint64_t>(static_cast<int64_t>(cdf.minValue()) - 1 - value) + 1
          : 2 * static_cast<uint64_t>(static_cast<int64_t>(value) - cdf.maxValue() - 1);
  queueEliasGamma(escaped + 1);
}

std::vector<uint8_t> RansEncoder::finish() {
  std::vector<uint8_t> bytes;
  // Latents average a few bits each; one byte per operation is only a starting size.
  bytes.reserve(pending_.size() + kStateBytes);
  uint32_t state = kStateLow;
  // Last in, first out: code in reverse so the decoder meets symbols in given order.
  for (auto operation = pending_.rbegin(); operation != pending_.rend(); ++operation) {
    const uint32_t start = *operation & kSlotMask;
    const uint32_t frequency = (*operation >> 16) + 1;
    // Shift bytes out until coding this symbol keeps the state below kStateLow << 8.
    const uint32_t limit = ((kStateLow >> kRansPrecisionBits) << 8) * frequency;
    while (state >= limit) {
      bytes.push_back(static_cast<uint8_t>(state));
      state >>= 8;
    }
    state = ((state / frequency) << kRansPrecisionBits) + (state % frequency) + start;
  }
  for (int i = 0; i < kStateBytes; ++i) {
    bytes.push_back(static_cast<uint8_t>(state));
    state >>= 8;
  }
  // Bytes were produced last-decoded first.
  std::reverse(bytes.begin(), bytes.end());
  pending_.clear();
  return bytes;
}

RansDecoder::RansDecoder(const uint8_t* data, size_t size) : data_(data), size_(size) {
  if (size_ < static_cast<size_t>(kStateBytes) || data_ == nullptr) {
    throw Error("rANS stream is shorter than its 4-byte state");
  }
  for (int i = 0; i < kStateBytes; ++i) state_ = (state_ << 8) | nextByte();
  // Keeping the invariant from the start bounds every later renormalisation.
  if (state_ < kStateLow || state_ >= (kStateLow << 8)) {
    throw Error("rANS stream is corrupt: impossible initial state");
  }
}

uint8_t RansDecoder::nextByte() {
  if (position_ >= size_) throw Error("rANS stream is truncated or corrupt: read past its end");
  return data_[position_++];
}

void RansDecoder::advance(uint32_t start, uint32_t frequency) {
  // state < 2^31 and frequency <= 2^16 - 1: no overflow; the result is >= 2^7, so at
  // most two bytes restore state >= kStateLow.
  state_ = frequency * (state_ >> kRansPrecisionBits) + (state_ & kSlotMask) - start;
  while (state_ < kStateLow) state_ = (state_ << 8) | nextByte();
}

uint32_t RansDecoder::decodeBypassBits(int count) {
  const int unusedBits = kRansPrecisionBits - count;
  const uint32_t bits = (state_ & kSlotMask) >> unusedBits;
  advance(bits << unusedBits, 1u << unusedBits);
  return bits;
}

int32_t RansDecoder::decode(const QuantizedCdf& cdf) {
  const uint32_t symbol = cdf.symbolForSlot(state_ & kSlotMask);
  advance(cdf.start(symbol), cdf.frequency(symbol));
  if (symbol != cdf.escapeSymbol()) {
    return static_cast<int32_t>(static_cast<int64_t>(cdf.minValue()) + symbol);
  }

  int mantissaBits = 0;
  while (decodeBypassBits(1) == 1) {
    if (++mantissaBits > kMaxGammaMantissaBits) {
      throw Error("rANS stream is corrupt: escape code too long");
    }
  }
  uint64_t number = 1;
  for (int remaining = mantissaBits; remaining > 0;) {
    const int chunk = std::min(remaining, kMaxBypassChunkBits);
    remaining -= chunk;
    number = (number << chunk) | decodeBypassBits(chunk);
  }
  const uint64_t escaped = number - 1;
  const auto distance = static_cast<int64_t>(escaped >> 1);
  const int64_t value = (escaped & 1) != 0 ? static_cast<int64_t>(cdf.minValue()) - 1 - distance
                                           : static_cast<int64_t>(cdf.maxValue()) + 1 + distance;
  if (value < INT32_MIN || value > INT32_MAX) {
    throw Error("rANS stream is corrupt: escaped value outside the int32 range");
  }
  return static_cast<int32_t>(value);
}

void RansDecoder::verifyEnd() const {
  if (position_ != size_ || state_ != kStateLow) {
    throw Error(
        "rANS stream did not end where expected: corrupt data, or decoded with other tables "
        "or another symbol count than it was written with");
  }
}

}  // namespace nsat
