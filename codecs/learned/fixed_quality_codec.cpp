#include "codecs/learned/fixed_quality_codec.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "codecs/byte_io.h"
#include "codecs/entropy/rans_coder.h"
#include "codecs/learned/multirate_engine.h"
#include "codecs/learned_module.h"
#include "codecs/nodata_guard.h"

namespace nsat {

namespace {

// The calibrations of the default MULTIRATE models (multirate-rgb8-v6, multirate-ms16-v3).
// fixed-quality-rgb8 and fixed-quality-ms16 (of the first models) stay selectable; a file
// decodes with the MULTIRATE model it names, so no calibration is needed to read it.
constexpr const char* kRgbCalibration = "fixed-quality-rgb8-v4";
constexpr const char* kSingleBandCalibration = "fixed-quality-ms16-v2";
// Version 1 spaces the 256 lambda levels linearly, as the paper stores them; over the
// default models' 1000x lambda ranges that leaves the low rates a handful of levels (level 1
// is already 5x lambda_min), so version 2, which every encoder writes, spaces them
// logarithmically. Both decode.
constexpr uint8_t kLinearLevelsPayloadVersion = 1;
constexpr uint8_t kPayloadVersion = 2;
constexpr int kLevels = 256;          // the 8-bit lambda map
constexpr double kPsnrStep = 0.1;     // the stored achieved-PSNR map's unit, dB
constexpr double kMaxStoredPsnr = 150;  // lossless blocks (MSE 0) are stored as this

std::string defaultCalibration(DataType type) {
  return type == DataType::Byte ? kRgbCalibration : kSingleBandCalibration;
}

double psnrPeak(DataType type) { return type == DataType::Byte ? 255.0 : 65535.0; }

// Bound on a decoded PSNR-map entry, in kPsnrStep units (PSNR can be negative only for
// errors above the peak, which the range of the samples rules out; kept symmetric).
constexpr int64_t kMaxPsnrSteps = int64_t(kMaxStoredPsnr / kPsnrStep) + 1;

double psnrFromMse(double mse, double peak) {
  if (mse <= 0) return kMaxStoredPsnr;
  return std::min(kMaxStoredPsnr, 10.0 * std::log10(peak * peak / mse));
}

// The encoder-side error model of a MULTIRATE model (fitted by
// scripts/learned/fit_fixed_quality.py): MSE(lambda) = MSE0 + alpha * MSE0 / (2 Mbar)^2.
struct Calibration {
  ModelFolder folder;
  double alpha = 0;
  std::string baseModel, baseModelSha256;
};

Calibration loadCalibration(const std::string& id) {
  Calibration calibration;
  calibration.folder = openModelFolder(id);
  try {
    const auto& card = calibration.folder.card;
    if (card.at("codec").get<std::string>() != "FIXED_QUALITY") {
      throw Error("model " + id + " is not a FIXED_QUALITY calibration");
    }
    calibration.alpha = card.at("alpha").get<double>();
    calibration.baseModel = card.at("base_model").get<std::string>();
    calibration.baseModelSha256 = card.at("base_model_sha256").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("model " + id + ": card.json: " + e.what());
  }
  if (!(calibration.alpha > 0) || !std::isfinite(calibration.alpha)) {
    throw Error("model " + id + ": card.json has an invalid alpha");
  }
  return calibration;
}

// Side information is coded with the Gaussian tables of the latents: residuals of a
// smooth map are small integers around 0. The table whose scale codes them in the
// fewest bits is chosen per map and its index stored.
uint8_t cheapestGaussianTable(const std::vector<int32_t>& values) {
  const auto& tables = defaultGaussianTables();
  double bestBits = std::numeric_limits<double>::infinity();
  uint8_t best = 0;
  for (size_t t = 0; t < tables.size(); ++t) {
    const QuantizedCdf& table = tables[t];
    double bits = 0;
    for (int32_t value : values) {
      const bool regular = value >= table.minValue() && value <= table.maxValue();
      const uint32_t symbol = regular ? uint32_t(value - table.minValue()) : table.escapeSymbol();
      bits += kRansPrecisionBits - std::log2(double(table.frequency(symbol)));
      if (!regular) bits += 2 * std::log2(std::abs(double(value)) + 2) + 1;  // Elias gamma
    }
    if (bits < bestBits) {
      bestBits = bits;
      best = uint8_t(t);
    }
  }
  return best;
}

// Left neighbour (above for the first column, `start` for the first block).
int32_t predictFromNeighbours(const std::vector<int32_t>& map, int across, size_t i,
                              int32_t start) {
  if (i == 0) return start;
  if (i % across == 0) return map[i - across];
  return map[i - 1];
}

std::vector<int32_t> residuals(const std::vector<int32_t>& map, int across, int32_t start) {
  std::vector<int32_t> out(map.size());
  for (size_t i = 0; i < map.size(); ++i) {
    out[i] = map[i] - predictFromNeighbours(map, across, i, start);
  }
  return out;
}

// The block grid of a tile: `latents` latent positions (the model's cells) per block side.
struct BlockGrid {
  int cell = 0;          // pixels per latent position
  int latents = 0;       // per block side
  int latentWidth = 0, latentHeight = 0;
  int across = 0, down = 0;

  BlockGrid(const MultirateModel& model, const TileShape& shape, int blockPixels)
      : cell(model.downsampling) {
    latentWidth = model.latentsFor(shape.width);
    latentHeight = model.latentsFor(shape.height);
    latents = blockPixels > 0 ? blockPixels / cell
                              : std::max(latentWidth, latentHeight);  // GLOBAL: one block
    across = (latentWidth + latents - 1) / latents;
    down = (latentHeight + latents - 1) / latents;
  }
  size_t count() const { return size_t(across) * down; }
  int pixels() const { return latents * cell; }
  size_t blockOfLatent(int y, int x) const { return size_t(y / latents) * across + x / latents; }
};

class FixedQualityCodec final : public Codec {
 public:
  FixedQualityCodec(std::shared_ptr<const MultirateModel> model, nlohmann::json parameters,
                    double alpha)
      : engine_(std::move(model), "FIXED_QUALITY"),
        parameters_(std::move(parameters)),
        alpha_(alpha) {
    blockPixels_ = parameters_.at("quality_block").get<int>();
    refinePasses_ = parameters_.at("refine").get<int>();
    targetMse_ = parameters_.at("target_mse").get<double>();
    peak_ = parameters_.at("psnr_peak").get<double>();
    targetPsnr_ = psnrFromMse(targetMse_, peak_);
    payloadVersion_ = uint8_t(parameters_.at("payload_version").get<int>());
    for (int q = 0; q < kLevels; ++q) levelLambdas_.push_back(lambdaOfLevel(q));
  }

  std::string name() const override { return "FIXED_QUALITY"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override { return parameters_; }
  std::vector<ModelRef> models() const override { return {engine_.modelRef()}; }

  // Payload: version byte, then per band group: [i32 offset, u8 shift for 16-bit
  // models], u8 table of the lambda-map residuals, u8 table of the PSNR-map residuals,
  // u32 stream length, and one rANS stream: lambda map, achieved-PSNR map, z, y.
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                              const EncodeGuide& guide) const override {
    if (alpha_ <= 0) throw Error("FIXED_QUALITY: this codec instance only decodes");
    buildEncoderTables();
    engine_.checkShape(shape);
    const BlockGrid grid(engine_.model(), shape, blockPixels_);
    std::vector<uint8_t> payload{payloadVersion_};
    std::vector<uint8_t> decoded(shape.byteCount());
    for (const BandGroup& group : engine_.groups(shape)) {
      const SampleMapping mapping = engine_.mappingFor(shape, pixels, group);
      const at::Tensor latent = engine_.analyse(shape, pixels, group, mapping);

      // Baseline error: synthesis of the unquantised latent at lambda_max.
      std::vector<float> baseline = latentValues(latent * maxLambdaGain_.reshape({1, -1, 1, 1}));
      const std::vector<float> maxGain =
          engine_.model().synthesis->demodulationGain(float(engine_.model().lambdaMax));
      scaleChannels(baseline, maxGain, grid);
      // Serial: CreateCopy already codes tiles on every thread.
      engine_.reconstruct(shape, group, mapping, baseline, grid.latentHeight, grid.latentWidth,
                          decoded.data(), Parallelism());
      const std::vector<double> mse0 = blockMse(shape, group, grid, pixels, decoded.data());

      std::vector<double> alpha(grid.count(), alpha_);
      std::vector<int32_t> levels = predictLevels(mse0, alpha);
      std::vector<int32_t> ySymbols;
      std::vector<double> achieved;
      for (int pass = 0;; ++pass) {
        ySymbols = quantise(latent, levels, grid);
        engine_.reconstruct(shape, group, mapping,
                            engine_.demodulate(ySymbols, positionLambdas(levels, grid)),
                            grid.latentHeight, grid.latentWidth, decoded.data(), Parallelism());
        // The PSNR map records what a reader gets, after the tile's nodata guard.
        moveGroupOffNodata(shape, group, guide, decoded.data());
        achieved = blockMse(shape, group, grid, pixels, decoded.data());
        if (pass == refinePasses_) break;
        // Closed loop: each block's own alpha from what it achieved, then re-solve.
        for (size_t b = 0; b < grid.count(); ++b) {
          const double gain = 2 * levelMeanGain_[levels[b]];
          if (achieved[b] > mse0[b] && mse0[b] > 0) {
            alpha[b] = (achieved[b] - mse0[b]) * gain * gain / mse0[b];
          }
        }
        std::vector<int32_t> next = predictLevels(mse0, alpha);
        if (next == levels) break;
        levels = std::move(next);
      }
      appendGroup(payload, shape.type, grid, mapping, latent, levels, achieved);
    }
    return payload;
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& parallelism) const override {
    engine_.checkShape(shape);
    const BlockGrid grid(engine_.model(), shape, blockPixels_);
    forEachGroup(shape, data, size, [&](const BandGroup& group, const SampleMapping& mapping,
                                        RansDecoder& decoder, const std::vector<int32_t>& levels,
                                        const std::vector<float>&) {
      const std::vector<int32_t> y =
          engine_.decodeLatent(decoder, grid.latentHeight, grid.latentWidth);
      engine_.reconstruct(shape, group, mapping,
                          engine_.demodulate(y, positionLambdas(levels, grid)),
                          grid.latentHeight, grid.latentWidth, pixels, parallelism);
    });
  }

  std::optional<AuxiliaryDescription> auxiliary(int bands, int tileSize) const override {
    AuxiliaryDescription description;
    description.name = "BLOCK_PSNR";
    description.description = "PSNR (peak " + std::to_string(int(peak_)) +
                              ") that each block achieved when it was encoded";
    description.unit = "dB";
    description.cellSize = blockPixels_ > 0 ? blockPixels_ : tileSize;
    for (const BandGroup& group : bandGroups(engine_.model().bands, bands)) {
      description.layerNames.push_back(groupName(group));
    }
    return description;
  }

  std::vector<float> auxiliaryValues(const TileShape& shape, const uint8_t* data,
                                     size_t size) const override {
    engine_.checkShape(shape);
    std::vector<float> values;
    forEachGroup(shape, data, size, [&](const BandGroup&, const SampleMapping&, RansDecoder&,
                                        const std::vector<int32_t>&,
                                        const std::vector<float>& psnr) {
      values.insert(values.end(), psnr.begin(), psnr.end());
    });
    return values;
  }

 private:
  static std::string groupName(const BandGroup& group) {
    if (group.bandCount == 1) return "band " + std::to_string(group.firstBand + 1);
    return "bands " + std::to_string(group.firstBand + 1) + "-" +
           std::to_string(group.firstBand + group.bandCount);
  }

  // The modulation gain of every level (257 TorchScript runs): encoder-only, so built on
  // the first encode and never by a reader.
  void buildEncoderTables() const {
    std::call_once(encoderTablesBuilt_, [this] {
      c10::InferenceMode guard;
      for (int q = 0; q < kLevels; ++q) {
        levelGains_.push_back(engine_.modulationGain(levelLambdas_[q]).contiguous());
        levelMeanGain_.push_back(levelGains_.back().mean().item<double>());
      }
      maxLambdaGain_ = engine_.modulationGain(float(engine_.model().lambdaMax)).contiguous();
    });
  }

  float lambdaOfLevel(int level) const {
    const MultirateModel& model = engine_.model();
    return fixedQualityLevelLambda(model.lambdaMin, model.lambdaMax, level, payloadVersion_);
  }

  // The smallest level (fewest bits) whose predicted error meets the target; the top
  // level where none does (target unreachable for this block).
  std::vector<int32_t> predictLevels(const std::vector<double>& mse0,
                                     const std::vector<double>& alpha) const {
    std::vector<int32_t> levels(mse0.size(), kLevels - 1);
    for (size_t b = 0; b < mse0.size(); ++b) {
      for (int q = 0; q < kLevels; ++q) {
        const double gain = 2 * levelMeanGain_[q];
        if (mse0[b] + alpha[b] * mse0[b] / (gain * gain) <= targetMse_) {
          levels[b] = q;
          break;
        }
      }
    }
    return levels;
  }

  std::vector<float> positionLambdas(const std::vector<int32_t>& levels,
                                     const BlockGrid& grid) const {
    std::vector<float> lambdas(size_t(grid.latentHeight) * grid.latentWidth);
    for (int y = 0; y < grid.latentHeight; ++y)
      for (int x = 0; x < grid.latentWidth; ++x)
        lambdas[size_t(y) * grid.latentWidth + x] = levelLambdas_[levels[grid.blockOfLatent(y, x)]];
    return lambdas;
  }

  // The latent times each position's modulation gain.
  at::Tensor modulate(const at::Tensor& latent, const std::vector<int32_t>& levels,
                      const BlockGrid& grid) const {
    c10::InferenceMode guard;
    const int channels = int(latent.size(1));
    at::Tensor gain = at::empty({1, channels, grid.latentHeight, grid.latentWidth}, at::kFloat);
    float* out = gain.data_ptr<float>();
    const size_t plane = size_t(grid.latentHeight) * grid.latentWidth;
    for (int y = 0; y < grid.latentHeight; ++y) {
      for (int x = 0; x < grid.latentWidth; ++x) {
        const float* level = levelGains_[levels[grid.blockOfLatent(y, x)]].data_ptr<float>();
        for (int c = 0; c < channels; ++c) out[c * plane + size_t(y) * grid.latentWidth + x] = level[c];
      }
    }
    return latent * gain;
  }

  std::vector<int32_t> quantise(const at::Tensor& latent, const std::vector<int32_t>& levels,
                                const BlockGrid& grid) const {
    c10::InferenceMode guard;
    const at::Tensor symbols = at::round(modulate(latent, levels, grid)).to(at::kInt).contiguous();
    return std::vector<int32_t>(symbols.data_ptr<int32_t>(),
                                symbols.data_ptr<int32_t>() + symbols.numel());
  }

  static std::vector<float> latentValues(const at::Tensor& tensor) {
    const at::Tensor values = tensor.contiguous();
    return std::vector<float>(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
  }

  static void scaleChannels(std::vector<float>& latent, const std::vector<float>& gain,
                            const BlockGrid& grid) {
    const size_t plane = size_t(grid.latentHeight) * grid.latentWidth;
    for (size_t i = 0; i < latent.size(); ++i) latent[i] = latent[i] * gain[i / plane];
  }

  static void moveGroupOffNodata(const TileShape& shape, const BandGroup& group,
                                 const EncodeGuide& guide, uint8_t* decoded) {
    for (int band = group.firstBand; band < group.firstBand + group.bandCount; ++band) {
      if (size_t(band) < guide.nodata.size() && guide.nodata[band]) {
        moveOffNodata(shape.type, decoded + size_t(band) * shape.bytesPerBand(),
                      shape.pixelsPerBand(), *guide.nodata[band]);
      }
    }
  }

  // Mean squared error of every block over the group's bands, in sample units.
  static std::vector<double> blockMse(const TileShape& shape, const BandGroup& group,
                                      const BlockGrid& grid, const void* original,
                                      const void* decoded) {
    std::vector<double> sum(grid.count(), 0.0), count(grid.count(), 0.0);
    const int blockPixels = grid.pixels();
    for (int b = 0; b < group.bandCount; ++b) {
      const size_t band = size_t(group.firstBand + b) * shape.pixelsPerBand();
      for (int y = 0; y < shape.height; ++y) {
        for (int x = 0; x < shape.width; ++x) {
          const size_t at = band + size_t(y) * shape.width + x;
          const double d = sampleAt(shape, original, at) - sampleAt(shape, decoded, at);
          const size_t block = size_t(y / blockPixels) * grid.across + x / blockPixels;
          sum[block] += d * d;
          count[block] += 1;
        }
      }
    }
    for (size_t i = 0; i < sum.size(); ++i) sum[i] /= std::max(count[i], 1.0);
    return sum;
  }

  void appendGroup(std::vector<uint8_t>& payload, DataType type, const BlockGrid& grid,
                   const SampleMapping& mapping, const at::Tensor& latent,
                   const std::vector<int32_t>& levels, const std::vector<double>& achievedMse) const {
    std::vector<int32_t> psnrSteps(achievedMse.size());
    for (size_t b = 0; b < achievedMse.size(); ++b) {
      psnrSteps[b] = int32_t(std::lround(psnrFromMse(achievedMse[b], peak_) / kPsnrStep));
    }
    const int32_t psnrStart = int32_t(std::lround(targetPsnr_ / kPsnrStep));
    const std::vector<int32_t> levelResiduals = residuals(levels, grid.across, kLevels / 2);
    const std::vector<int32_t> psnrResiduals = residuals(psnrSteps, grid.across, psnrStart);
    const uint8_t levelTable = cheapestGaussianTable(levelResiduals);
    const uint8_t psnrTable = cheapestGaussianTable(psnrResiduals);
    const auto& tables = defaultGaussianTables();
    std::vector<MultirateEngine::PrefixSymbol> prefix;
    for (int32_t r : levelResiduals) prefix.push_back({r, &tables[levelTable]});
    for (int32_t r : psnrResiduals) prefix.push_back({r, &tables[psnrTable]});
    const std::vector<uint8_t> stream =
        engine_.codeModulatedLatent(modulate(latent, levels, grid), prefix);

    if (engine_.mapsSamples()) appendSampleMapping(payload, type, mapping);
    payload.push_back(levelTable);
    payload.push_back(psnrTable);
    appendU32(payload, uint32_t(stream.size()));
    payload.insert(payload.end(), stream.begin(), stream.end());
  }

  // Parses a payload and calls `visit(group, mapping, decoder, levels, psnr)` for each
  // band group with the decoder positioned after the side information.
  template <typename Visit>
  void forEachGroup(const TileShape& shape, const uint8_t* data, size_t size, Visit visit) const {
    if (size < 1 || data[0] != payloadVersion_) {
      throw Error("FIXED_QUALITY tile has an unknown payload version");
    }
    const BlockGrid grid(engine_.model(), shape, blockPixels_);
    const auto& tables = defaultGaussianTables();
    ByteReader reader(data + 1, size - 1, "FIXED_QUALITY tile");
    for (const BandGroup& group : engine_.groups(shape)) {
      SampleMapping mapping;
      if (engine_.mapsSamples()) mapping = readSampleMapping(reader, shape.type, "FIXED_QUALITY");
      const uint8_t levelTable = *reader.bytes(1), psnrTable = *reader.bytes(1);
      if (levelTable >= tables.size() || psnrTable >= tables.size()) {
        throw Error("FIXED_QUALITY tile names an unknown side-information table");
      }
      const uint32_t length = reader.u32();
      RansDecoder decoder(reader.bytes(length), length);
      std::vector<int32_t> levels(grid.count());
      // Residual + prediction in 64 bits: an escaped residual may be any int32.
      for (size_t i = 0; i < levels.size(); ++i) {
        const int64_t level = int64_t(decoder.decode(tables[levelTable])) +
                              predictFromNeighbours(levels, grid.across, i, kLevels / 2);
        if (level < 0 || level >= kLevels) {
          throw Error("FIXED_QUALITY tile has a lambda level outside 0..255");
        }
        levels[i] = int32_t(level);
      }
      std::vector<int32_t> steps(grid.count());
      std::vector<float> psnr(grid.count());
      const int32_t psnrStart = int32_t(std::lround(targetPsnr_ / kPsnrStep));
      for (size_t i = 0; i < steps.size(); ++i) {
        const int64_t step = int64_t(decoder.decode(tables[psnrTable])) +
                             predictFromNeighbours(steps, grid.across, i, psnrStart);
        // The encoder stores 0 .. kMaxStoredPsnr; anything else is a damaged stream.
        if (step < -kMaxPsnrSteps || step > kMaxPsnrSteps) {
          throw Error("FIXED_QUALITY tile has an achieved PSNR out of range");
        }
        steps[i] = int32_t(step);
        psnr[i] = float(steps[i] * kPsnrStep);
      }
      visit(group, mapping, decoder, levels, psnr);
    }
    if (!reader.atEnd()) throw Error("FIXED_QUALITY tile has trailing bytes");
  }

  MultirateEngine engine_;
  nlohmann::json parameters_;
  double alpha_;  // 0: decoder only
  int blockPixels_ = 0, refinePasses_ = 0;
  uint8_t payloadVersion_ = kPayloadVersion;
  double targetMse_ = 0, targetPsnr_ = 0, peak_ = 255;
  std::vector<float> levelLambdas_;
  mutable std::once_flag encoderTablesBuilt_;
  mutable std::vector<at::Tensor> levelGains_;  // (M) per level
  mutable std::vector<double> levelMeanGain_;
  mutable at::Tensor maxLambdaGain_;
};

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType type, int) {
  const auto& declared = learnedCodecDeclaration("FIXED_QUALITY").options;
  const auto modelOption = options.find("MODEL");
  const std::string calibrationId =
      modelOption == options.end() ? defaultCalibration(type) : modelOption->second;
  const Calibration calibration = loadCalibration(calibrationId);
  const auto model = loadMultirateModel(calibration.baseModel, calibration.baseModelSha256);
  if (model->codesBytes() != (type == DataType::Byte)) {
    throw Error("MODEL=" + calibrationId + " codes " + (model->codesBytes() ? "Byte" : "UInt16/Int16") +
                    " images, not " + dataTypeName(type) + " (the default for " +
                    dataTypeName(type) + " is " + defaultCalibration(type) + ")",
                ErrorKind::InvalidOption);
  }
  const double peak = psnrPeak(type);
  const bool byPsnr = options.count("TARGET_PSNR") > 0, byMse = options.count("TARGET_MSE") > 0;
  if (byPsnr == byMse) {
    throw Error("FIXED_QUALITY needs exactly one of TARGET_PSNR (dB, peak " +
                    std::to_string(int(peak)) + ") and TARGET_MSE",
                ErrorKind::InvalidOption);
  }
  double targetMse;
  nlohmann::json parameters = {{"model", calibration.folder.id},
                               {"model_sha256", calibration.folder.cardSha256},
                               {"base_model", model->folder.id},
                               {"base_model_sha256", model->folder.cardSha256},
                               {"tables", model->tablesFingerprint},
                               {"payload_version", kPayloadVersion},
                               {"psnr_peak", peak}};
  if (byPsnr) {
    const double psnr = numberOption(options, declarationOf(declared, "TARGET_PSNR"), 1.0, 140.0);
    parameters["target_psnr"] = psnr;
    targetMse = peak * peak / std::pow(10.0, psnr / 10.0);
  } else {
    targetMse = numberOption(options, declarationOf(declared, "TARGET_MSE"), 1e-6, peak * peak);
  }
  parameters["target_mse"] = targetMse;

  const std::string block = choiceOption(options, declarationOf(declared, "QUALITY_BLOCK"));
  parameters["quality_block"] = block == "GLOBAL" ? 0 : std::stoi(block);
  parameters["refine"] = integerOption(options, declarationOf(declared, "REFINE"));
  return parameters;
}

std::unique_ptr<Codec> createCodec(const nlohmann::json& parameters) {
  try {
    const bool linearLevels =
        parameters.value("payload_version", 0) == kLinearLevelsPayloadVersion;
    const auto model = modelOfFile(parameters, "base_model",
                                   linearLevels ? kLinearLevelsPayloadVersion : kPayloadVersion);
    const int block = parameters.at("quality_block").get<int>();
    if (block != 0 && block != 16 && block != 32 && block != 64) {
      throw Error("quality_block " + std::to_string(block) + " is invalid");
    }
    if (!(parameters.at("target_mse").get<double>() > 0)) throw Error("target_mse is invalid");
    // The calibration is needed to encode only; a reader without it still decodes.
    double alpha = 0;
    try {
      const Calibration calibration = loadCalibration(parameters.at("model").get<std::string>());
      requireModelVersion(calibration.folder, parameters.at("model_sha256").get<std::string>());
      alpha = calibration.alpha;
    } catch (const Error&) {
    }
    return std::make_unique<FixedQualityCodec>(model, parameters, alpha);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("FIXED_QUALITY parameters are invalid: ") + e.what());
  }
}

}  // namespace

float fixedQualityLevelLambda(double lambdaMin, double lambdaMax, int level, int payloadVersion) {
  const double share = double(level) / (kLevels - 1);
  if (payloadVersion == kLinearLevelsPayloadVersion) {
    return float((lambdaMax - lambdaMin) * share + lambdaMin);
  }
  return float(lambdaMin * std::pow(lambdaMax / lambdaMin, share));
}

CodecDescriptor fixedQualityCodecDescriptor() {
  CodecDescriptor descriptor;
  static_cast<CodecDeclaration&>(descriptor) = learnedCodecDeclaration("FIXED_QUALITY");
  descriptor.rejectReason = multirateRejectReason;
  descriptor.parametersFromOptions = parametersFromOptions;
  descriptor.create = createCodec;
  return descriptor;
}

}  // namespace nsat
