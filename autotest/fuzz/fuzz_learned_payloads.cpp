// libFuzzer target: the tile decoders of the learned codecs MULTIRATE and FIXED_QUALITY
// (payload fields, side information, rANS entropy decoding, integer hyper-synthesis,
// demodulation and the synthesis network), linked from their sources, with the models
// of the normal model store ($NSAT_MODELS_DIR, else the source tree's models/) loaded
// once. LibTorch is linked but not instrumented; decoding never calls it.
//
// Input: 4 bytes that choose the codec and the tile, then one codec payload as it
// follows a tile payload's framing (the flags byte and nodata mask of
// container/tile_payload.cpp are stripped; fuzz_nsat_reader.cpp covers them):
//   [0] bits 0-1: 0 MULTIRATE multirate-rgb8 (Byte), 1 MULTIRATE multirate-ms16 (UInt16),
//                 2 FIXED_QUALITY on multirate-rgb8, 3 FIXED_QUALITY on multirate-ms16;
//       bits 2-3: FIXED_QUALITY quality_block 16, 32, 64 or 0 (GLOBAL);
//       bit 4: Int16 instead of UInt16 (16-bit models); other bits are ignored.
//   [1] width - 1, [2] height - 1 (1 .. 256 px: real edge tiles are any size; the
//       mutator makes tiles of at most 64 px), [3] bands - 1 (mod 4).
// Every input goes through Codec::auxiliaryValues (FIXED_QUALITY's block PSNR map: the
// side information alone) and Codec::decode. nsat::Error is the one allowed failure;
// any other exception, a sanitizer report, a leak, or a broken contract (an auxiliary
// map of the wrong size, decode accepting side information auxiliaryValues refused) is
// a finding.
//
// Built with NSAT_FUZZ_ENTROPY_ONLY (target nsat_fuzz_learned_entropy), an input stops
// after entropy decoding: auxiliaryValues, then for each band group the z and y symbols
// through MultirateEngine::decodeLatent and the demodulation, without the synthesis
// network (the group fields are read here, as the codecs lay them out).
//
// The custom mutator keeps mutations meaningful. A crafted payload can hold any rANS
// stream, but flipped stream bytes almost never survive the decoder's end-of-stream
// check, so most mutations decode the input's symbols (side-information residuals, z,
// y), change symbols, group fields (lambda, sample mapping, table indices) or the tile
// shape, and code the symbols again with the tables the decoder will use. The rest are
// libFuzzer's byte-level mutations, for the parsers' own checks.
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

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize);

namespace nsat {
namespace {

constexpr size_t kSelectorSize = 4;
constexpr int kMutatedMaxSide = 64;
constexpr uint8_t kPayloadVersion = 1;
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

// One MULTIRATE model and the codecs that decode with it.
struct ModelCodecs {
  std::shared_ptr<const MultirateModel> model;
  std::unique_ptr<MultirateEngine> engine;
  std::unique_ptr<Codec> multirate;
  std::unique_ptr<Codec> fixedQuality[4];  // by quality-block selector
};
ModelCodecs* gModels[2];  // multirate-rgb8, multirate-ms16; built once, never freed

// What the first 4 bytes select.
struct Selection {
  int model = 0;  // index into gModels
  bool fixedQuality = false;
  int qualityBlock = 0;  // index into kQualityBlocks
  TileShape shape;

  const ModelCodecs& codecs() const { return *gModels[model]; }
  const Codec& codec() const {
    return fixedQuality ? *codecs().fixedQuality[qualityBlock] : *codecs().multirate;
  }
  bool sixteenBit() const { return model == 1; }
};

Selection selectionOf(const uint8_t* selector) {
  Selection s;
  s.model = selector[0] & 1;
  s.fixedQuality = (selector[0] & 2) != 0;
  s.qualityBlock = (selector[0] >> 2) & 3;
  s.shape.width = selector[1] + 1;
  s.shape.height = selector[2] + 1;
  s.shape.bands = selector[3] % 4 + 1;
  s.shape.type = s.model == 0 ? DataType::Byte
                              : (selector[0] & 16) ? DataType::Int16 : DataType::UInt16;
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
  g.latentHeight = paddedToLatentGrid(s.shape.height) / kLatentDownsampling;
  g.latentWidth = paddedToLatentGrid(s.shape.width) / kLatentDownsampling;
  g.zHeight = (g.latentHeight + 3) / 4;
  g.zWidth = (g.latentWidth + 3) / 4;
  g.zCount = model.hyperLatentTables.size() * g.zHeight * g.zWidth;
  g.yCount = size_t(model.synthesis->latentChannels()) * g.latentHeight * g.latentWidth;
  if (s.fixedQuality) {
    const int blockPixels = kQualityBlocks[s.qualityBlock];
    g.latentsPerBlock = blockPixels > 0 ? blockPixels / kLatentDownsampling
                                        : std::max(g.latentWidth, g.latentHeight);
    g.blocksAcross = (g.latentWidth + g.latentsPerBlock - 1) / g.latentsPerBlock;
    g.blocks = size_t(g.blocksAcross) *
               ((g.latentHeight + g.latentsPerBlock - 1) / g.latentsPerBlock);
  }
  return g;
}

// ------------------------------------------------------------ payloads as symbols

struct GroupSymbols {
  float lambda = 0.01f;                   // MULTIRATE
  uint32_t offset = 0;                    // 16-bit models
  uint8_t shift = 0;
  uint8_t levelTable = 0, psnrTable = 0;  // FIXED_QUALITY
  std::vector<int32_t> levels, psnr;      // FIXED_QUALITY: residuals as coded
  std::vector<int32_t> z, y;
};

struct PayloadSymbols {
  uint8_t selector[kSelectorSize];
  uint8_t version = kPayloadVersion;
  std::vector<GroupSymbols> groups;
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
    for (size_t count = bandGroups(model.bands, s.shape.bands).size(); count > 0; --count) {
      GroupSymbols group;
      if (!s.fixedQuality) group.lambda = reader.float32();
      if (s.sixteenBit()) {
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
      const uint32_t length = reader.u32();
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

// Fits group count and symbol counts to the selector (after a shape change).
void conform(PayloadSymbols& p) {
  const Selection s = selectionOf(p.selector);
  const Geometry g = geometryOf(s);
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
  for (const GroupSymbols& group : p.groups) {
    if (!s.fixedQuality) appendFloat32(out, group.lambda);
    if (s.sixteenBit()) {
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
    appendU32(out, uint32_t(stream.size()));
    out.insert(out.end(), stream.begin(), stream.end());
  }
  return out;
}

// ------------------------------------------------------------ the mutator

using Random = std::minstd_rand;

uint32_t below(Random& random, uint32_t bound) { return bound ? random() % bound : 0; }

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

int newSide(Random& random) {
  static const int kSides[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64};
  if (below(random, 2)) return kSides[below(random, sizeof kSides / sizeof kSides[0])];
  return int(below(random, kMutatedMaxSide)) + 1;
}

void mutateOnce(PayloadSymbols& p, Random& random) {
  const Selection s = selectionOf(p.selector);
  GroupSymbols* group = p.groups.empty() ? nullptr : &p.groups[below(random, p.groups.size())];
  std::vector<std::vector<int32_t>*> arrays;
  if (group) {
    for (auto* array : {&group->levels, &group->psnr, &group->z, &group->y, &group->z, &group->y}) {
      if (!array->empty()) arrays.push_back(array);
    }
  }
  const uint32_t choice = below(random, 16);
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
  } else if (choice < 13 && group) {  // group fields
    switch (below(random, 4)) {
      case 0: group->lambda = interestingLambda(random, group->lambda, *s.codecs().model); break;
      case 1: group->offset = uint32_t(interestingValue(random, int32_t(group->offset))); break;
      case 2: group->shift = uint8_t(below(random, 2) ? below(random, 18) : random()); break;
      default:
        (below(random, 2) ? group->levelTable : group->psnrTable) =
            uint8_t(below(random, 8) ? below(random, 64) : random());
    }
  } else if (choice < 15) {  // the tile: size, bands, data type
    switch (below(random, 3)) {
      case 0: p.selector[1] = uint8_t(newSide(random) - 1); break;
      case 1: p.selector[2] = uint8_t(newSide(random) - 1); break;
      default: p.selector[3] = uint8_t(below(random, 4)); break;
    }
    if (below(random, 4) == 0) p.selector[0] ^= uint8_t(1u << below(random, 5));
  } else {
    p.version = below(random, 4) ? kPayloadVersion : uint8_t(random());
  }
}

size_t mutateSymbols(uint8_t* data, size_t size, size_t maxSize, Random& random) {
  std::optional<PayloadSymbols> symbols = parseSymbols(data, size);
  if (!symbols) return 0;
  for (uint32_t n = below(random, 3) + 1; n > 0; --n) mutateOnce(*symbols, random);
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

// Each band group's fields and side information (as the codecs lay them out), then the
// engine's entropy decoding and demodulation of z and y.
void decodeEntropy(const Selection& s, const uint8_t* data, size_t size) {
  if (size < 1 || data[0] != kPayloadVersion) return;
  const ModelCodecs& codecs = s.codecs();
  const MultirateModel& model = *codecs.model;
  const Geometry g = geometryOf(s);
  const auto& gaussians = defaultGaussianTables();
  ByteReader reader(data + 1, size - 1, "fuzz payload");
  for (size_t count = bandGroups(model.bands, s.shape.bands).size(); count > 0; --count) {
    const float lambda = s.fixedQuality ? 0.0f : reader.float32();
    if (s.sixteenBit()) {
      reader.u32();
      if (*reader.bytes(1) > kMaxSampleShift) return;
    }
    uint8_t levelTable = 0, psnrTable = 0;
    if (s.fixedQuality) {
      levelTable = *reader.bytes(1);
      psnrTable = *reader.bytes(1);
      if (levelTable >= gaussians.size() || psnrTable >= gaussians.size()) return;
    }
    const uint32_t length = reader.u32();
    RansDecoder decoder(reader.bytes(length), length);
    std::vector<float> lambdas(size_t(g.latentHeight) * g.latentWidth, lambda);
    if (s.fixedQuality) {
      std::vector<int32_t> levels(g.blocks);
      for (size_t i = 0; i < g.blocks; ++i) {
        const int32_t predicted = i == 0 ? kLevels / 2
                                  : i % g.blocksAcross == 0 ? levels[i - g.blocksAcross]
                                                            : levels[i - 1];
        const int64_t level = int64_t(decoder.decode(gaussians[levelTable])) + predicted;
        if (level < 0 || level >= kLevels) return;
        levels[i] = int32_t(level);
      }
      for (size_t i = 0; i < g.blocks; ++i) decoder.decode(gaussians[psnrTable]);
      for (int y = 0; y < g.latentHeight; ++y) {
        for (int x = 0; x < g.latentWidth; ++x) {
          const int level = levels[size_t(y / g.latentsPerBlock) * g.blocksAcross +
                                   x / g.latentsPerBlock];
          lambdas[size_t(y) * g.latentWidth + x] =
              float((model.lambdaMax - model.lambdaMin) * level / (kLevels - 1) + model.lambdaMin);
        }
      }
    } else if (!std::isfinite(lambda) || lambda <= 0) {
      return;
    }
    const std::vector<int32_t> y = codecs.engine->decodeLatent(decoder, g.latentHeight, g.latentWidth);
    const std::vector<float> scaled = codecs.engine->demodulate(y, lambdas);
    if (scaled.size() != g.yCount) contractBroken("demodulate returned the wrong size");
  }
}
#endif

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
  } catch (const Error&) {
  }
#ifdef NSAT_FUZZ_ENTROPY_ONLY
  try {
    decodeEntropy(s, payload, payloadSize);
  } catch (const Error&) {
  }
  (void)auxiliaryRead;
#else
  std::vector<uint8_t> pixels(s.shape.byteCount());
  bool decoded = false;
  try {
    codec.decode(s.shape, payload, payloadSize, pixels.data(), Parallelism());
    decoded = true;
  } catch (const Error&) {
  }
  if (decoded && s.fixedQuality && !auxiliaryRead) {
    contractBroken("decode accepted a tile whose side information auxiliaryValues refused");
  }
#endif
}

// One real tile of every codec, coded and decoded once, so that everything built on
// first use (tables, per-thread buffers, LibTorch's first runs) exists before the
// per-input leak checks.
void warmUp() {
  for (int selector = 0; selector < 16; ++selector) {
    const uint8_t header[kSelectorSize] = {uint8_t(selector), 40, 20, 3};
    const Selection s = selectionOf(header);
    std::vector<uint8_t> pixels(s.shape.byteCount());
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t(i * 7 + i / 41 * 13);
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
  const CodecDescriptor multirate = multirateCodecDescriptor();
  const CodecDescriptor fixedQuality = fixedQualityCodecDescriptor();
  const struct {
    DataType type;
    int bands;
    const char* targetPsnr;
  } kinds[2] = {{DataType::Byte, 3, kRgbTargetPsnr}, {DataType::UInt16, 1, kSixteenBitTargetPsnr}};
  try {
    for (int m = 0; m < 2; ++m) {
      auto* codecs = new ModelCodecs;
      const nlohmann::json parameters =
          multirate.parametersFromOptions({}, kinds[m].type, kinds[m].bands);
      codecs->model = loadMultirateModel(parameters.at("model").get<std::string>());
      codecs->engine = std::make_unique<MultirateEngine>(codecs->model, "MULTIRATE");
      codecs->multirate = multirate.create(parameters);
      for (int b = 0; b < 4; ++b) {
        const int block = kQualityBlocks[b];
        codecs->fixedQuality[b] = fixedQuality.create(fixedQuality.parametersFromOptions(
            {{"TARGET_PSNR", kinds[m].targetPsnr},
             {"QUALITY_BLOCK", block ? std::to_string(block) : std::string("GLOBAL")}},
            kinds[m].type, kinds[m].bands));
      }
      gModels[m] = codecs;
    }
    warmUp();
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
