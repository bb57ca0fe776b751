// rANS entropy coder for the learned codecs' quantised latents.
//
// A 32-bit state, byte-wise renormalising range-asymmetric-numeral-system coder
// (the design of Fabian Giesen's rans_byte) at 16-bit probability precision. Symbols
// are coded against QuantizedCdf tables (cdf_tables.h). rANS is last-in first-out, so
// the encoder queues symbols and codes them in reverse when finished; the decoder then
// reads them back in the order they were given.
//
// Any int32 value round-trips against any table: a value outside the table's range is
// sent as the table's escape symbol followed by an Elias-gamma code of its distance
// from the range, in equiprobable bypass bits inside the same stream.
//
// Bitstream (fixed; the known-answer test guards it): the final encoder state as 4
// bytes, most significant first, then the renormalisation bytes in decoding order.
// A stream of no symbols is the 4 bytes 00 80 00 00.
//
// Encoding and decoding use integer arithmetic only, so the bytes are the same on every
// machine and for any thread count. The decoder never reads outside its buffer and does
// a bounded amount of work per symbol; corrupt or truncated data gives nsat::Error (or,
// for some corruptions, wrong values: a container CRC guards against those).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codecs/entropy/cdf_tables.h"

namespace nsat {

class RansEncoder {
 public:
  // Queues `value` to be coded against `cdf`. The table need not outlive the call:
  // only the symbol's interval is kept.
  void encode(int32_t value, const QuantizedCdf& cdf);
  // Codes every queued symbol and returns the stream; the encoder is then empty and
  // can be reused.
  std::vector<uint8_t> finish();
  // Coding operations queued so far (an escaped value counts for several).
  size_t pendingOperations() const { return pending_.size(); }

 private:
  void queue(uint32_t start, uint32_t frequency);
  void queueBypassBits(uint32_t bits, int count);
  void queueEliasGamma(uint64_t number);

  // Each entry: start in the low 16 bits, frequency - 1 in the high 16 bits.
  std::vector<uint32_t> pending_;
};

class RansDecoder {
 public:
  // Reads the initial state. Throws nsat::Error if the stream is too short for it or
  // the state is one no encoder produces. `data` must outlive the decoder.
  RansDecoder(const uint8_t* data, size_t size);

  // The next value, decoded against the same table the encoder used for it.
  // Throws nsat::Error if the stream ends early or an escape code is impossible.
  int32_t decode(const QuantizedCdf& cdf);

  // Throws nsat::Error unless the stream was consumed exactly and the state is back
  // where the encoder started: a cheap check that the right number of symbols was
  // decoded against the right tables.
  void verifyEnd() const;
  size_t bytesConsumed() const { return position_; }

 private:
  uint32_t decodeBypassBits(int count);
  void advance(uint32_t start, uint32_t frequency);
  uint8_t nextByte();

  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
  uint32_t state_ = 0;
};

}  // namespace nsat
