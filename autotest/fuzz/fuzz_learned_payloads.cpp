// libFuzzer target: the tile decoders of the learned codecs MULTIRATE and FIXED_QUALITY
// (payload fields, side information, rANS entropy decoding, integer hyper-synthesis,
// demodulation, the synthesis network and MULTIRATE's spectral transform), linked from
// their sources, with the models of the normal model store ($NSAT_MODELS_DIR, else the
// source tree's models/) loaded once by id, whatever their hash. LibTorch is linked but
// not instrumented; decoding never calls it.
//
// Input: 4 bytes that choose the codec and the tile, then one codec payload as it
// follows a tile payload's framing (the flags byte and nodata mask of
// container/tile_payload.cpp are stripped; fuzz_nsat_reader.cpp covers them):
//   [0] bits 0-1: 0 MULTIRATE multirate-rgb8 (Byte), 1 MULTIRATE multirate-ms16 (UInt16),
//                 2 FIXED_QUALITY on multirate-rgb8, 3 FIXED_QUALITY on multirate-ms16;
//       bits 2-3: FIXED_QUALITY quality_block 16, 32, 64 or 0 (GLOBAL);
//                 MULTIRATE (bit 1 clear) the variant: 0 as bit 0 says (payload version
//                 1), 1 multirate-sar-db (version 1, band by band), 2 multirate-ms16 with
//                 the spectral transform (spectral_transform KLT, version 2), 3
//                 multirate-sar-db with the spectral transform; for variants 1-3 bit 0
//                 chooses the type: clear Float32, set UInt16 (Int16 with bit 4);
//       bit 4: Int16 instead of UInt16 (models of 16-bit and Float32 data);
//       bit 5: MULTIRATE multirate-ms16-v2 wherever multirate-ms16 would be chosen;
//              FIXED_QUALITY payload version 1 (linear lambda levels) instead of 2 (FIXED_QUALITY
//              always decodes with the base model of its calibration fixed-quality-rgb8 or
//              fixed-quality-ms16). Other bits are ignored.
//   [1] width - 1, [2] height - 1 (1 .. 256 px: real edge tiles are any size; the
//       mutator makes tiles of at most 64 px), [3] bands - 1 (mod 4), or with the
//       spectral transform bands - 2 (mod 16: 2 .. 17 bands).
// Every input goes through Codec::auxiliaryValues (FIXED_QUALITY's block PSNR map: the
// side information alone) and Codec::decode. nsat::Error is the one allowed failure;
// any other exception, a sanitizer report, a leak, or a broken contract (an auxiliary
// map of the wrong size, decode accepting side information auxiliaryValues refused) is
// a finding.
//
// Built with NSAT_FUZZ_ENTROPY_ONLY (target nsat_fuzz_learned_entropy), an input stops
// after entropy decoding: auxiliaryValues, then for each band group the z and y symbols
// through MultirateEngine::decodeLatent and the demodulation, without the synthesis
// network (the group fields are read here, as the codecs lay them out; with the spectral
// transform also its weights and their inversion, without the band samples).
//
// The custom mutator keeps mutations meaningful. A crafted payload can hold any rANS
// stream, but flipped stream bytes almost never survive the decoder's end-of-stream
// check, so most mutations decode the input's symbols (side-information residuals, z,
// y), change symbols, group fields (lambda, sample mapping, table indices), the
// spectral transform (its weights: near rotations, near-singular and singular ones; the
// band count; the tile's lambda) or the tile shape and variant, and code the symbols
// again with the tables the decoder will use (a seed of one model or variant becomes a
// valid payload of another). The rest are libFuzzer's byte-level mutations, for the
// parsers' own checks.
//
// With NSAT_FUZZ_VERBOSE=1 each input prints its selection and how each call ended (the
// nsat::Error message, or "ok"), e.g. to see what a reproducer or a corpus reaches.
//
// Built by scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <tuple>
#include <vector>

#include "codecs/byte_io.h"
#include "codecs/entropy/rans_coder.h"
#include "codecs/learned/fixed_quality_codec.h"
#include "codecs/learned/multirate_codec.h"
#include "codecs/learned/multirate_engine.h"
#include "codecs/learned/multirate_model.h"
#include "codecs/learned/spectral_transform.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize);

namespace nsat {
namespace {

constexpr size_t kSelectorSize = 4;
constexpr int kMutatedMaxSide = 64;
// Payload versions (multirate_codec.cpp): band groups, and MULTIRATE's spectral transform;
// FIXED_QUALITY's (fixed_quality_codec.cpp): linear, then log-spaced lambda levels.
constexpr uint8_t kBandPayloadVersion = 1;
constexpr uint8_t kSpectralPayloadVersion = 2;
constexpr uint8_t kLinearLevelsPayloadVersion = 1;
constexpr uint8_t kLogLevelsPayloadVersion = 2;
constexpr int kSpectralBandChoices = 16;  // selector [3]: 2 .. 17 bands
constexpr int kQualityBlocks[4] = {16, 32, 64, 0};
// FIXED_QUALITY decodes the PSNR map relative to the target PSNR of the file: the
// rgb8 target is that of autotest/golden/naip_fixed_quality.nsat, and scripts/fuzz.sh
// makes its seeds with these.
constexpr const char* kRgbTargetPsnr = "29.5";
constexpr const char* kSixteenBitTargetPsnr = "50";

[[noreturn]] void contractBroken(const char* what) {
  std::fprintf(stderr, "fuzz_learned_payloads: %s\n", what);
  std::abort();
}

// The models, loaded by id: whichever version the model store holds.
enum ModelIndex { kRgb8, kMs16, kSarDb, kMs16V2, kModelCount };
constexpr const char* kModelIds[kModelCount] = {"multirate-rgb8", "multirate-ms16",
                                                "multirate-sar-db", "multirate-ms16-v2"};
// The FIXED_QUALITY calibrations of the first two (none for the others).
constexpr const char* kCalibrationIds[kModelCount] = {"fixed-quality-rgb8", "fixed-quality-ms16",
                                                      nullptr, nullptr};

// One MULTIRATE model and the codecs that decode with it.
struct ModelCodecs {
  std::shared_ptr<const MultirateModel> model;
  std::unique_ptr<MultirateEngine> engine;
  std::unique_ptr<Codec> multirate;
  std::unique_ptr<Codec> spectral;         // spectral_transform KLT: all but multirate-rgb8
  // By [linear levels][quality-block selector]: multirate-rgb8 and -ms16 only.
  std::unique_ptr<Codec> fixedQuality[2][4];
};
ModelCodecs* gModels[kModelCount];  // built once, never freed
bool gVerbose = false;               // NSAT_FUZZ_VERBOSE

// What the first 4 bytes select.
struct Selection {
  int model = kRgb8;  // index into gModels
  bool fixedQuality = false;
  bool linearLevels = false;  // FIXED_QUALITY payload version 1
  bool spectral = false;      // MULTIRATE payload version 2
  int qualityBlock = 0;   // index into kQualityBlocks
  TileShape shape;

  const ModelCodecs& codecs() const { return *gModels[model]; }
  const Codec& codec() const {
    if (fixedQuality) return *codecs().fixedQuality[linearLevels][qualityBlock];
    return spectral ? *codecs().spectral : *codecs().multirate;
  }
  bool mapsSamples() const { return model != kRgb8; }  // a sample mapping per group
  uint8_t version() const {
    if (fixedQuality) return linearLevels ? kLinearLevelsPayloadVersion : kLogLevelsPayloadVersion;
    return spectral ? kSpectralPayloadVersion : kBandPayloadVersion;
  }
};

Selection selectionOf(const uint8_t* selector) {
  Selection s;
  const int variant = (selector[0] >> 2) & 3;
  const DataType sixteenBit = (selector[0] & 16) ? DataType::Int16 : DataType::UInt16;
  s.fixedQuality = (selector[0] & 2) != 0;
  if (s.fixedQuality || variant == 0) {
    s.model = selector[0] & 1;
    s.qualityBlock = s.fixedQuality ? variant : 0;
    s.shape.type = s.model == kRgb8 ? DataType::Byte : sixteenBit;
  } else {
    s.model = variant == 2 ? kMs16 : kSarDb;
    s.spectral = variant >= 2;
    s.shape.type = (selector[0] & 1) ? sixteenBit : DataType::Float32;
  }
  if (s.model == kMs16 && !s.fixedQuality && (selector[0] & 32)) s.model = kMs16V2;
  s.linearLevels = s.fixedQuality && (selector[0] & 32);
  s.shape.width = selector[1] + 1;
  s.shape.height = selector[2] + 1;
  s.shape.bands = s.spectral ? selector[3] % kSpectralBandChoices + 2 : selector[3] % 4 + 1;
  s.shape.placement.levelWidth = s.shape.placement.imageWidth = s.shape.width;
  s.shape.placement.levelHeight = s.shape.placement.imageHeight = s.shape.height;
  return s;
}

// Symbol counts of a tile, as the decoders derive them (multirate_engine.cpp and
// fixed_quality_codec.cpp's BlockGrid).
struct Geometry {
  int latentHeight = 0, latentWidth = 0, zHeight = 0, zWidth = 0;
  size_t zCount = 0, yCount = 0;
  int blocksAcross = 0;
  size_t blocks = 0;  // FIXED_QUALITY only
  int latentsPerBlock = 1;
};

Geometry geometryOf(const Selection& s) {
  const MultirateModel& model = *s.codecs().model;
  Geometry g;
  g.latentHeight = model.latentsFor(s.shape.height);
  g.latentWidth = model.latentsFor(s.shape.width);
  g.zHeight = (g.latentHeight + 3) / 4;
  g.zWidth = (g.latentWidth + 3) / 4;
  g.zCount = model.hyperLatentTables.size() * g.zHeight * g.zWidth;
  g.yCount = size_t(model.synthesis->latentChannels()) * g.latentHeight * g.latentWidth;
  if (s.fixedQuality) {
    const int blockPixels = kQualityBlocks[s.qualityBlock];
    g.latentsPerBlock = blockPixels > 0 ? blockPixels / model.downsampling
                                        : std::max(g.latentWidth, g.latentHeight);
    g.blocksAcross = (g.latentWidth + g.latentsPerBlock - 1) / g.latentsPerBlock;
    g.blocks = size_t(g.blocksAcross) *
               ((g.latentHeight + g.latentsPerBlock - 1) / g.latentsPerBlock);
  }
  return g;
}

// ------------------------------------------------------------ payloads as symbols

struct GroupSymbols {
  float lambda = 0.01f;  // MULTIRATE version 1
  // The sample mapping (models of 16-bit and Float32 data), as stored: u32 offset and u8
  // shift, or for Float32 the bits of an f32 offset and an i8 shift.
  uint32_t offset = 0;
  uint8_t shift = 0;
  uint8_t levelTable = 0, psnrTable = 0;  // FIXED_QUALITY
  std::vector<int32_t> levels, psnr;      // FIXED_QUALITY: residuals as coded
  std::vector<int32_t> z, y;
};

struct PayloadSymbols {
  uint8_t selector[kSelectorSize];
  uint8_t version = kBandPayloadVersion;
  // The spectral transform (version 2): the stored band count, shape.bands^2 weights
  // (row-major), the tile's lambda.
  uint8_t transformBands = 0;
  std::vector<int8_t> weights;
  float tileLambda = 0.01f;
  std::vector<GroupSymbols> groups;  // version 2: one per component
};

// The y tables of z (the hyper-synthesis), for the mutator: most mutations keep z, and
// the hyper-synthesis is the costly part of parsing and coding a payload.
const std::vector<uint8_t>& scaleIndicesOf(const Selection& s, const Geometry& g,
                                           const std::vector<int32_t>& z) {
  using Key = std::tuple<int, int, int, int, int, std::vector<int32_t>>;
  static std::map<Key, std::vector<uint8_t>> cache;
  Key key{s.model, g.zHeight, g.zWidth, g.latentHeight, g.latentWidth, z};
  auto found = cache.find(key);
  if (found == cache.end()) {
    if (cache.size() >= 256) cache.clear();
    found = cache.emplace(std::move(key), s.codecs().model->hyperSynthesis->scaleIndices(
                                              z, g.zHeight, g.zWidth, g.latentHeight,
                                              g.latentWidth))
                .first;
  }
  return found->second;
}

// The symbols of an input, read as the decoders read them (without their end and
// range checks); nullopt where they would stop earlier.
std::optional<PayloadSymbols> parseSymbols(const uint8_t* data, size_t size) {
  if (size < kSelectorSize + 1) return std::nullopt;
  PayloadSymbols p;
  std::memcpy(p.selector, data, kSelectorSize);
  p.version = data[kSelectorSize];
  const Selection s = selectionOf(p.selector);
  const Geometry g = geometryOf(s);
  const MultirateModel& model = *s.codecs().model;
  const auto& gaussians = defaultGaussianTables();
  try {
    ByteReader reader(data + kSelectorSize + 1, size - kSelectorSize - 1, "fuzz input");
    if (s.spectral) {
      p.transformBands = *reader.bytes(1);
      const size_t count = size_t(s.shape.bands) * s.shape.bands;
      const uint8_t* weights = reader.bytes(count);
      for (size_t i = 0; i < count; ++i) p.weights.push_back(int8_t(weights[i]));
      p.tileLambda = reader.float32();
    }
    for (size_t count = bandGroups(model.bands, s.shape.bands).size(); count > 0; --count) {
      GroupSymbols group;
      if (!s.fixedQuality && !s.spectral) group.lambda = reader.float32();
      if (s.mapsSamples()) {
        group.offset = reader.u32();
        group.shift = *reader.bytes(1);
      }
      if (s.fixedQuality) {
        group.levelTable = *reader.bytes(1);
        group.psnrTable = *reader.bytes(1);
        if (group.levelTable >= gaussians.size() || group.psnrTable >= gaussians.size()) {
          return std::nullopt;
        }
      }
      const uint32_t length = s.spectral ? reader.varint() : reader.u32();
      RansDecoder decoder(reader.bytes(length), length);
      for (size_t i = 0; i < g.blocks; ++i) {
        group.levels.push_back(decoder.decode(gaussians[group.levelTable]));
      }
      for (size_t i = 0; i < g.blocks; ++i) {
        group.psnr.push_back(decoder.decode(gaussians[group.psnrTable]));
      }
      const size_t zPlane = size_t(g.zHeight) * g.zWidth;
      for (size_t i = 0; i < g.zCount; ++i) {
        group.z.push_back(decoder.decode(model.hyperLatentTables[i / zPlane]));
      }
      for (uint8_t index : scaleIndicesOf(s, g, group.z)) {
        group.y.push_back(decoder.decode(gaussians[index]));
      }
      p.groups.push_back(std::move(group));
    }
  } catch (const Error&) {
    return std::nullopt;
  }
  return p;
}

// Fits the version, the spectral transform, group count and symbol counts to the
// selector (after a change of shape or variant).
void conform(PayloadSymbols& p) {
  const Selection s = selectionOf(p.selector);
  const Geometry g = geometryOf(s);
  // A version that some variant uses follows the variant; others stay (a mutation).
  if (p.version == kBandPayloadVersion || p.version == kSpectralPayloadVersion) {
    p.version = s.version();
  }
  if (s.spectral) {
    const size_t bands = size_t(s.shape.bands);
    if (p.weights.size() != bands * bands) {
      // The old matrix's corner, the identity elsewhere; a stored band count that
      // followed the old shape follows the new one.
      size_t old = 0;
      while ((old + 1) * (old + 1) <= p.weights.size()) ++old;
      if (old * old != p.weights.size()) old = 0;
      if (p.weights.empty()) {
        p.tileLambda = p.groups.empty() ? 0.01f : p.groups.front().lambda;
      }
      std::vector<int8_t> weights(bands * bands, 0);
      for (size_t r = 0; r < bands; ++r) {
        for (size_t c = 0; c < bands; ++c) {
          weights[r * bands + c] = r < old && c < old ? p.weights[r * old + c]
                                   : r == c           ? int8_t(127)
                                                      : int8_t(0);
        }
      }
      p.weights = std::move(weights);
      p.transformBands = uint8_t(bands);
    }
  }
  const GroupSymbols fill = p.groups.empty() ? GroupSymbols() : p.groups.back();
  p.groups.resize(bandGroups(s.codecs().model->bands, s.shape.bands).size(), fill);
  for (GroupSymbols& group : p.groups) {
    group.levels.resize(g.blocks, 0);
    group.psnr.resize(g.blocks, 0);
    group.z.resize(g.zCount, 0);
    group.y.resize(g.yCount, 0);
  }
}

std::vector<uint8_t> serializeSymbols(const PayloadSymbols& p) {
  const Selection s = selectionOf(p.selector);
  const Geometry g = geometryOf(s);
  const MultirateModel& model = *s.codecs().model;
  const auto& gaussians = defaultGaussianTables();
  std::vector<uint8_t> out(p.selector, p.selector + kSelectorSize);
  out.push_back(p.version);
  if (s.spectral) {
    out.push_back(p.transformBands);
    for (int8_t weight : p.weights) out.push_back(uint8_t(weight));
    appendFloat32(out, p.tileLambda);
  }
  for (const GroupSymbols& group : p.groups) {
    if (!s.fixedQuality && !s.spectral) appendFloat32(out, group.lambda);
    if (s.mapsSamples()) {
      appendU32(out, group.offset);
      out.push_back(group.shift);
    }
    if (s.fixedQuality) {
      out.push_back(group.levelTable);
      out.push_back(group.psnrTable);
    }
    RansEncoder encoder;
    for (int32_t value : group.levels) encoder.encode(value, gaussians[group.levelTable % gaussians.size()]);
    for (int32_t value : group.psnr) encoder.encode(value, gaussians[group.psnrTable % gaussians.size()]);
    const size_t zPlane = size_t(g.zHeight) * g.zWidth;
    for (size_t i = 0; i < group.z.size(); ++i) {
      encoder.encode(group.z[i], model.hyperLatentTables[i / zPlane]);
    }
    const std::vector<uint8_t>& indices = scaleIndicesOf(s, g, group.z);
    for (size_t i = 0; i < group.y.size(); ++i) encoder.encode(group.y[i], gaussians[indices[i]]);
    const std::vector<uint8_t> stream = encoder.finish();
    if (s.spectral) {
      appendVarint(out, uint32_t(stream.size()));
    } else {
      appendU32(out, uint32_t(stream.size()));
    }
    out.insert(out.end(), stream.begin(), stream.end());
  }
  return out;
}

// ------------------------------------------------------------ the mutator

using Random = std::minstd_rand;

uint32_t below(Random& random, uint32_t bound) { return bound ? random() % bound : 0; }
double uniform(Random& random) { return double(random() - Random::min()) / (Random::max() - Random::min()); }

int32_t interestingValue(Random& random, int32_t old) {
  static const int32_t kValues[] = {0, 1, -1, 2, -2, 127, -127, 128, -128, 255, 256, -256,
                                    1 << 15, -(1 << 15), 1 << 16, -(1 << 16), 1 << 24,
                                    INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1};
  switch (below(random, 5)) {
    case 0: return int32_t(int64_t(old) + int64_t(below(random, 7)) - 3);
    case 1: return int32_t(below(random, 129)) - 64;
    case 2: return kValues[below(random, sizeof kValues / sizeof kValues[0])];
    case 3: return int32_t(random() ^ (random() << 16));
    default: return int32_t(-int64_t(old));  // INT32_MIN stays itself
  }
}

float interestingLambda(Random& random, float old, const MultirateModel& model) {
  const float kValues[] = {0.0f, -0.0f, -1.0f, std::numeric_limits<float>::denorm_min(),
                           std::numeric_limits<float>::min(), std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN(), float(model.lambdaMin),
                           float(model.lambdaMax), 1.0f, 1e6f, 1e30f};
  switch (below(random, 4)) {
    case 0: return kValues[below(random, sizeof kValues / sizeof kValues[0])];
    case 1: return old * std::ldexp(1.0f, int(below(random, 41)) - 20);
    case 2: {
      uint32_t bits;
      std::memcpy(&bits, &old, 4);
      bits ^= 1u << below(random, 32);
      float value;
      std::memcpy(&value, &bits, 4);
      return value;
    }
    default:
      return float(model.lambdaMin +
                   (model.lambdaMax - model.lambdaMin) * double(below(random, 1001)) / 1000.0);
  }
}

// A Float32 mapping's offset (its bits): dB values, extremes, non-finite values.
uint32_t interestingFloatOffset(Random& random, uint32_t oldBits) {
  const float kValues[] = {0.0f, -0.0f, -30.0f, -25.5f, 10.0f, 65535.0f, 1e-30f, 1e30f, -1e30f,
                           std::numeric_limits<float>::denorm_min(),
                           std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN()};
  float value;
  std::memcpy(&value, &oldBits, 4);
  switch (below(random, 4)) {
    case 0: value = kValues[below(random, sizeof kValues / sizeof kValues[0])]; break;
    case 1: value += float(int(below(random, 2001)) - 1000) / 10.0f; break;
    case 2: return oldBits ^ (1u << below(random, 32));
    default: value = -50.0f + float(below(random, 7001)) / 100.0f;  // -50 .. 20 dB
  }
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

// A Float32 mapping's i8 shift: about the valid range (from -24), or any byte.
uint8_t interestingFloatShift(Random& random) {
  static const int8_t kValues[] = {-24, -25, -128, 127, 126, 100, 0, -1};
  switch (below(random, 3)) {
    case 0: return uint8_t(kValues[below(random, sizeof kValues / sizeof kValues[0])]);
    case 1: return uint8_t(int8_t(int(below(random, 48)) - 26));
    default: return uint8_t(random());
  }
}

int8_t roundedWeight(double value) {
  return int8_t(std::clamp(std::nearbyint(value), -128.0, 127.0));
}

// The spectral transform: weights near a rotation (what the encoder writes and the
// reader's row check accepts), near-singular and singular matrices (the inversion's
// pivot check), rows about the length limit, the stored band count.
void mutateTransform(PayloadSymbols& p, int bands, Random& random) {
  std::vector<int8_t>& w = p.weights;  // bands x bands (conform)
  auto at = [&](int r, int c) -> int8_t& { return w[size_t(r) * bands + c]; };
  const int i = int(below(random, bands));
  const int j = (i + 1 + int(below(random, bands - 1))) % bands;  // another row
  const double scale = SpectralTransform::kWeightScale;
  switch (below(random, 9)) {
    case 0:  // a few weights
      for (uint32_t n = below(random, 3) + 1; n > 0; --n) {
        int8_t& weight = w[below(random, w.size())];
        weight = below(random, 4) ? roundedWeight(weight + int(below(random, 9)) - 4)
                                  : int8_t(uint8_t(random()));
      }
      break;
    case 1: {  // a rotation of two rows
      const double angle = uniform(random) * 6.283185307179586;
      for (int c = 0; c < bands; ++c) {
        const double a = at(i, c), b = at(j, c);
        at(i, c) = roundedWeight(std::cos(angle) * a - std::sin(angle) * b);
        at(j, c) = roundedWeight(std::sin(angle) * a + std::cos(angle) * b);
      }
      break;
    }
    case 2: {  // a signed permutation
      std::vector<int> order(bands);
      for (int k = 0; k < bands; ++k) order[k] = k;
      std::shuffle(order.begin(), order.end(), random);
      std::fill(w.begin(), w.end(), int8_t(0));
      for (int k = 0; k < bands; ++k) at(k, order[k]) = below(random, 2) ? 127 : -127;
      break;
    }
    case 3: {  // row j almost along row i: near-singular
      const int k = int(below(random, bands));
      const double epsilon = std::pow(10.0, -4.0 * uniform(random));
      double norm = 0;
      std::vector<double> row(bands);
      for (int c = 0; c < bands; ++c) {
        row[c] = std::cos(epsilon) * at(i, c) + std::sin(epsilon) * at(k, c);
        norm += row[c] * row[c];
      }
      norm = std::sqrt(norm) / scale;
      for (int c = 0; c < bands; ++c) at(j, c) = roundedWeight(norm > 0 ? row[c] / norm : row[c]);
      break;
    }
    case 4: {  // row j = +-row i: singular, every row of unit length
      const bool negate = below(random, 2);
      for (int c = 0; c < bands; ++c) at(j, c) = negate ? roundedWeight(-at(i, c)) : at(i, c);
      break;
    }
    case 5:  // two rows or two columns swapped
      for (int c = 0; c < bands; ++c) {
        if (below(random, 2)) {
          std::swap(at(i, c), at(j, c));
        } else {
          std::swap(at(c, i), at(c, j));
        }
      }
      break;
    case 6: {  // a row's length about the limit (0.1 on the squared norm)
      const double factor = 1.0 + (int(below(random, 41)) - 20) / 200.0;
      for (int c = 0; c < bands; ++c) at(i, c) = roundedWeight(at(i, c) * factor);
      break;
    }
    case 7: {  // a random rotation: Givens rotations of the identity
      std::vector<double> m(size_t(bands) * bands, 0.0);
      for (int k = 0; k < bands; ++k) m[size_t(k) * bands + k] = 1.0;
      for (int n = 0; n < 2 * bands; ++n) {
        const int a = int(below(random, bands)), b = (a + 1 + int(below(random, bands - 1))) % bands;
        const double angle = uniform(random) * 6.283185307179586;
        for (int c = 0; c < bands; ++c) {
          const double x = m[size_t(a) * bands + c], y = m[size_t(b) * bands + c];
          m[size_t(a) * bands + c] = std::cos(angle) * x - std::sin(angle) * y;
          m[size_t(b) * bands + c] = std::sin(angle) * x + std::cos(angle) * y;
        }
      }
      for (size_t k = 0; k < m.size(); ++k) w[k] = roundedWeight(m[k] * scale);
      break;
    }
    default: {  // the stored band count
      static const int kCounts[] = {0, 1, 2, 13, 17, 18, 255};
      p.transformBands = below(random, 2) ? uint8_t(kCounts[below(random, 7)])
                                          : uint8_t(bands + int(below(random, 3)) - 1);
    }
  }
}

int newSide(Random& random) {
  static const int kSides[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64};
  if (below(random, 2)) return kSides[below(random, sizeof kSides / sizeof kSides[0])];
  return int(below(random, kMutatedMaxSide)) + 1;
}

void mutateOnce(PayloadSymbols& p, Random& random) {
  const Selection s = selectionOf(p.selector);
  const bool floatSamples = s.shape.type == DataType::Float32;
  GroupSymbols* group = p.groups.empty() ? nullptr : &p.groups[below(random, p.groups.size())];
  std::vector<std::vector<int32_t>*> arrays;
  if (group) {
    for (auto* array : {&group->levels, &group->psnr, &group->z, &group->y, &group->z, &group->y}) {
      if (!array->empty()) arrays.push_back(array);
    }
  }
  const uint32_t choice = below(random, s.spectral ? 19 : 16);
  if (choice < 8 && !arrays.empty()) {  // a few symbols
    std::vector<int32_t>& array = *arrays[below(random, arrays.size())];
    for (uint32_t n = below(random, 4) + 1; n > 0; --n) {
      int32_t& value = array[below(random, array.size())];
      value = interestingValue(random, value);
    }
  } else if (choice < 10 && !arrays.empty()) {  // a run of symbols, or all of them
    std::vector<int32_t>& array = *arrays[below(random, arrays.size())];
    const size_t begin = below(random, 2) ? 0 : below(random, array.size());
    const size_t end = below(random, 2) ? array.size()
                                        : std::min(array.size(), begin + below(random, 64) + 1);
    const int32_t value = interestingValue(random, array[begin]);
    std::fill(array.begin() + begin, array.begin() + end, value);
  } else if (choice < 13 && group) {  // group fields (the tile's lambda with the transform)
    switch (below(random, 4)) {
      case 0: {
        float& lambda = s.spectral ? p.tileLambda : group->lambda;
        lambda = interestingLambda(random, lambda, *s.codecs().model);
        break;
      }
      case 1:
        group->offset = floatSamples ? interestingFloatOffset(random, group->offset)
                                     : uint32_t(interestingValue(random, int32_t(group->offset)));
        break;
      case 2:
        group->shift = floatSamples ? interestingFloatShift(random)
                                    : uint8_t(below(random, 2) ? below(random, 18) : random());
        break;
      default:
        (below(random, 2) ? group->levelTable : group->psnrTable) =
            uint8_t(below(random, 8) ? below(random, 64) : random());
    }
  } else if (choice < 15) {  // the tile: size, bands, codec, model, data type
    switch (below(random, 3)) {
      case 0: p.selector[1] = uint8_t(newSide(random) - 1); break;
      case 1: p.selector[2] = uint8_t(newSide(random) - 1); break;
      default: p.selector[3] = uint8_t(below(random, s.spectral ? kSpectralBandChoices : 4)); break;
    }
    if (below(random, 4) == 0) p.selector[0] ^= uint8_t(1u << below(random, 6));
  } else if (choice < 16) {
    p.version = below(random, 4) ? s.version() : uint8_t(random());
  } else {  // the spectral transform
    mutateTransform(p, s.shape.bands, random);
  }
}

size_t mutateSymbols(uint8_t* data, size_t size, size_t maxSize, Random& random) {
  std::optional<PayloadSymbols> symbols = parseSymbols(data, size);
  if (!symbols) return 0;
  conform(*symbols);  // the transform's weights before mutateTransform
  for (uint32_t n = below(random, 3) + 1; n > 0; --n) {
    mutateOnce(*symbols, random);
    conform(*symbols);
  }
  // Larger tiles (the golden files' 128 and 256 px) shrink to fuzzing size.
  for (int side : {1, 2}) {
    if (symbols->selector[side] >= kMutatedMaxSide) {
      symbols->selector[side] = uint8_t(newSide(random) - 1);
    }
  }
  conform(*symbols);
  std::vector<uint8_t> bytes;
  try {
    bytes = serializeSymbols(*symbols);
  } catch (const Error&) {
    return 0;
  }
  if (bytes.size() > maxSize) return 0;
  std::memcpy(data, bytes.data(), bytes.size());
  return bytes.size();
}

// ------------------------------------------------------------ decoding

void checkAuxiliary(const Selection& s, const std::vector<float>& values) {
  if (!s.fixedQuality) {
    if (!values.empty()) contractBroken("MULTIRATE returned auxiliary values");
    return;
  }
  const int tileSize = std::max(s.shape.width, s.shape.height);
  const std::optional<AuxiliaryDescription> description =
      s.codec().auxiliary(s.shape.bands, tileSize);
  if (!description) contractBroken("FIXED_QUALITY has no auxiliary description");
  const size_t cell = size_t(description->cellSize);
  const size_t expected = description->layerNames.size() * ((s.shape.height + cell - 1) / cell) *
                          ((s.shape.width + cell - 1) / cell);
  if (values.size() != expected) contractBroken("auxiliaryValues has the wrong size");
  for (float value : values) {
    if (!std::isfinite(value) || std::fabs(value) > 200) {
      contractBroken("auxiliaryValues returned an impossible PSNR");
    }
  }
}

#ifdef NSAT_FUZZ_ENTROPY_ONLY
constexpr int kLevels = 256;  // FIXED_QUALITY's 8-bit lambda map

// Each band group's fields and side information (as the codecs lay them out; with the
// spectral transform first its weights, inverted as the decoder does, and the tile's
// lambda), then the engine's entropy decoding and demodulation of z and y.
void decodeEntropy(const Selection& s, const uint8_t* data, size_t size) {
  if (size < 1 || data[0] != s.version()) return;
  const ModelCodecs& codecs = s.codecs();
  const MultirateModel& model = *codecs.model;
  const Geometry g = geometryOf(s);
  const auto& gaussians = defaultGaussianTables();
  ByteReader reader(data + 1, size - 1, "fuzz payload");
  float tileLambda = 0;
  if (s.spectral) {
    if (*reader.bytes(1) != s.shape.bands) return;
    const SpectralTransform transform = readSpectralTransform(reader, s.shape.bands, "MULTIRATE");
    inverseSpectral(transform, nullptr, 0);  // W's inverse, for no samples
    tileLambda = reader.float32();
  }
  struct StoredGroup {
    float lambda = 0;
    SampleMapping mapping;
    uint8_t levelTable = 0, psnrTable = 0;
    const uint8_t* stream = nullptr;
    uint32_t length = 0;
  };
  std::vector<StoredGroup> stored;
  for (size_t count = bandGroups(model.bands, s.shape.bands).size(); count > 0; --count) {
    StoredGroup group;
    group.lambda = s.fixedQuality ? 0.0f : s.spectral ? tileLambda : reader.float32();
    if (s.mapsSamples()) group.mapping = readSampleMapping(reader, s.shape.type, "fuzz payload");
    if (s.fixedQuality) {
      group.levelTable = *reader.bytes(1);
      group.psnrTable = *reader.bytes(1);
      if (group.levelTable >= gaussians.size() || group.psnrTable >= gaussians.size()) return;
    }
    group.length = s.spectral ? reader.varint() : reader.u32();
    group.stream = reader.bytes(group.length);
    if (!s.fixedQuality && (!std::isfinite(group.lambda) || group.lambda <= 0)) return;
    stored.push_back(group);
  }
  if (s.spectral) {  // each component's lambda: multirate_codec.cpp's componentLambda
    int coarsest = stored.front().mapping.shift;
    for (const StoredGroup& group : stored) coarsest = std::max(coarsest, group.mapping.shift);
    for (StoredGroup& group : stored) {
      group.lambda = float(std::max(
          model.lambdaMin, std::ldexp(double(tileLambda), 2 * (group.mapping.shift - coarsest))));
    }
  }
  for (const StoredGroup& group : stored) {
    RansDecoder decoder(group.stream, group.length);
    std::vector<float> lambdas(size_t(g.latentHeight) * g.latentWidth, group.lambda);
    if (s.fixedQuality) {
      std::vector<int32_t> levels(g.blocks);
      for (size_t i = 0; i < g.blocks; ++i) {
        const int32_t predicted = i == 0 ? kLevels / 2
                                  : i % g.blocksAcross == 0 ? levels[i - g.blocksAcross]
                                                            : levels[i - 1];
        const int64_t level = int64_t(decoder.decode(gaussians[group.levelTable])) + predicted;
        if (level < 0 || level >= kLevels) return;
        levels[i] = int32_t(level);
      }
      for (size_t i = 0; i < g.blocks; ++i) decoder.decode(gaussians[group.psnrTable]);
      for (int y = 0; y < g.latentHeight; ++y) {
        for (int x = 0; x < g.latentWidth; ++x) {
          const int level = levels[size_t(y / g.latentsPerBlock) * g.blocksAcross +
                                   x / g.latentsPerBlock];
          lambdas[size_t(y) * g.latentWidth + x] =
              fixedQualityLevelLambda(model.lambdaMin, model.lambdaMax, level, s.version());
        }
      }
    }
    const std::vector<int32_t> y = codecs.engine->decodeLatent(decoder, g.latentHeight, g.latentWidth);
    const std::vector<float> scaled = codecs.engine->demodulate(y, lambdas);
    if (scaled.size() != g.yCount) contractBroken("demodulate returned the wrong size");
  }
}
#endif

void report(const Selection& s, const char* call, const char* outcome) {
  if (!gVerbose) return;
  std::fprintf(stderr, "fuzz_learned_payloads: %s %s%s %s %dx%dx%d: %s: %s\n",
               s.fixedQuality ? "FIXED_QUALITY" : "MULTIRATE", kModelIds[s.model],
               s.spectral ? " KLT" : "", dataTypeName(s.shape.type), s.shape.width,
               s.shape.height, s.shape.bands, call, outcome);
}

void decodeInput(const uint8_t* data, size_t size) {
  if (size < kSelectorSize) return;
  const Selection s = selectionOf(data);
  const Codec& codec = s.codec();
  const uint8_t* payload = data + kSelectorSize;
  const size_t payloadSize = size - kSelectorSize;

  bool auxiliaryRead = false;
  try {
    checkAuxiliary(s, codec.auxiliaryValues(s.shape, payload, payloadSize));
    auxiliaryRead = true;
    report(s, "auxiliaryValues", "ok");
  } catch (const Error& e) {
    report(s, "auxiliaryValues", e.what());
  }
#ifdef NSAT_FUZZ_ENTROPY_ONLY
  try {
    decodeEntropy(s, payload, payloadSize);
    report(s, "entropy decoding", "ended");
  } catch (const Error& e) {
    report(s, "entropy decoding", e.what());
  }
  (void)auxiliaryRead;
#else
  std::vector<uint8_t> pixels(s.shape.byteCount());
  bool decoded = false;
  try {
    codec.decode(s.shape, payload, payloadSize, pixels.data(), Parallelism());
    decoded = true;
    report(s, "decode", "ok");
  } catch (const Error& e) {
    report(s, "decode", e.what());
  }
  if (decoded && s.fixedQuality && !auxiliaryRead) {
    contractBroken("decode accepted a tile whose side information auxiliaryValues refused");
  }
#endif
}

// One real tile of every codec and variant, coded and decoded once, so that everything
// built on first use (tables, per-thread buffers, LibTorch's first runs) exists before
// the per-input leak checks.
void warmUp() {
  for (int selector = 0; selector < 48; selector += selector == 15 ? 17 : 1) {  // bit 4 clear
    const uint8_t header[kSelectorSize] = {uint8_t(selector), 40, 20, 3};
    const Selection s = selectionOf(header);
    std::vector<uint8_t> pixels(s.shape.byteCount());
    if (s.shape.type == DataType::Float32) {  // backscatter-like dB, a slope per band
      const size_t plane = s.shape.pixelsPerBand();
      for (size_t i = 0; i < plane * s.shape.bands; ++i) {
        storeSample(s.shape, pixels.data(), i,
                    -20.0 + 8.0 * std::sin(double(i % plane) * 0.37) + 1.5 * double(i / plane));
      }
    } else {
      for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t(i * 7 + i / 41 * 13);
    }
    const std::vector<uint8_t> payload = s.codec().encode(s.shape, pixels.data());
    std::vector<uint8_t> input(header, header + kSelectorSize);
    input.insert(input.end(), payload.begin(), payload.end());
    decodeInput(input.data(), input.size());
    if (!parseSymbols(input.data(), input.size())) contractBroken("warm-up tile does not parse");
  }
}

}  // namespace
}  // namespace nsat

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace nsat;
  at::set_num_threads(1);
  const char* verbose = std::getenv("NSAT_FUZZ_VERBOSE");
  const CodecDescriptor multirate = multirateCodecDescriptor();
  const CodecDescriptor fixedQuality = fixedQualityCodecDescriptor();
  const struct {
    DataType type;
    int bands;
    const char* targetPsnr;  // FIXED_QUALITY, or none
    bool spectral;           // a single-band model for band stacks
  } kinds[kModelCount] = {{DataType::Byte, 3, kRgbTargetPsnr, false},
                          {DataType::UInt16, 1, kSixteenBitTargetPsnr, true},
                          {DataType::Float32, 1, nullptr, true},
                          {DataType::UInt16, 1, nullptr, true}};
  try {
    for (int m = 0; m < kModelCount; ++m) {
      auto* codecs = new ModelCodecs;
      const CodecOptions model = {{"MODEL", kModelIds[m]}};
      codecs->model = loadMultirateModel(kModelIds[m]);
      codecs->engine = std::make_unique<MultirateEngine>(codecs->model, "MULTIRATE", true);
      codecs->multirate =
          multirate.create(multirate.parametersFromOptions(model, kinds[m].type, kinds[m].bands));
      if (kinds[m].spectral) {
        CodecOptions options = model;
        options["SPECTRAL_TRANSFORM"] = "KLT";
        codecs->spectral = multirate.create(multirate.parametersFromOptions(options, kinds[m].type, 2));
      }
      for (int b = 0; b < 4 && kinds[m].targetPsnr; ++b) {
        const int block = kQualityBlocks[b];
        auto parameters = fixedQuality.parametersFromOptions(
            {{"MODEL", kCalibrationIds[m]},
             {"TARGET_PSNR", kinds[m].targetPsnr},
             {"QUALITY_BLOCK", block ? std::to_string(block) : std::string("GLOBAL")}},
            kinds[m].type, kinds[m].bands);
        codecs->fixedQuality[0][b] = fixedQuality.create(parameters);
        parameters["payload_version"] = kLinearLevelsPayloadVersion;  // files written before 2
        codecs->fixedQuality[1][b] = fixedQuality.create(parameters);
      }
      gModels[m] = codecs;
    }
    warmUp();
    gVerbose = verbose && *verbose && std::strcmp(verbose, "0") != 0;  // after the warm-up
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_learned_payloads: cannot set up the codecs: %s\n", e.what());
    std::abort();
  }
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize,
                                          unsigned int seed) {
  nsat::Random random(seed);
  if (random() % 4 != 0) {
    if (const size_t mutated = nsat::mutateSymbols(data, size, maxSize, random)) return mutated;
  }
  return LLVMFuzzerMutate(data, size, maxSize);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nsat::decodeInput(data, size);
  return 0;
}
