#include "codecs/learned/multirate_codec.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "codecs/byte_io.h"
#include "codecs/entropy/rans_coder.h"
#include "codecs/learned/multirate_engine.h"
#include "codecs/learned/spectral_transform.h"
#include "codecs/learned_module.h"

namespace nsat {

namespace {

constexpr const char* kRgbModel = "multirate-rgb8-v6";
constexpr const char* kSingleBandModel = "multirate-ms16-v6";
constexpr const char* kSarModel = "multirate-sar-db-v3";
// 1: band groups; 2: a spectral transform, then its components (files with
// "spectral_transform"). Files without the transform keep writing 1.
constexpr uint8_t kBandPayloadVersion = 1;
constexpr uint8_t kSpectralPayloadVersion = 2;
// Versions 3 and 4: 1 and 2 coded on the tile's context window (OVERLAP), so that a reader
// that crops nothing refuses them by version instead of decoding garbage.
constexpr uint8_t kOverlapVersionStep = 2;

uint8_t payloadVersion(bool spectral, int overlap) {
  return uint8_t((spectral ? kSpectralPayloadVersion : kBandPayloadVersion) +
                 (overlap > 0 ? kOverlapVersionStep : 0));
}
// SPECTRAL_TRANSFORM=AUTO: from this many bands on (16-bit and Float32 stacks).
constexpr int kAutoSpectralBands = 4;
constexpr int kMaxSpectralBands = 255;  // the payload's u8 band count

// SAMPLE_TRANSFORM=AMPLITUDE_DB: UInt16 SAR amplitude is coded as 20 log10(DN) by the SAR
// model (it spans 0..96 dB where a linear mapping would spend its 4096 levels on the few
// bright scatterers). DN 0 (no return, or a collar) is taken as 0.25, which decodes to 0.
constexpr double kAmplitudeFloor = 0.25;

float amplitudeToDb(double amplitude) {
  return float(20.0 * std::log10(std::max(amplitude, kAmplitudeFloor)));
}

double dbToAmplitude(float decibels) {
  return std::clamp(std::round(std::pow(10.0, double(decibels) / 20.0)), 0.0, 65535.0);
}

// The model a type is coded with unless MODEL says otherwise: Float32 is taken to be
// backscatter in dB (Sentinel-1), the one Float32 product the models are trained on.
std::string defaultModel(DataType type, bool amplitudeDb = false) {
  if (type == DataType::Byte) return kRgbModel;
  return type == DataType::Float32 || amplitudeDb ? kSarModel : kSingleBandModel;
}

// QUALITY 1..100 maps log-linearly onto the model's lambda range.
float lambdaForQuality(const MultirateModel& model, double quality) {
  const double t = (quality - 1.0) / 99.0;
  return float(model.lambdaMin * std::pow(model.lambdaMax / model.lambdaMin, t));
}

class MultirateCodec final : public Codec {
 public:
  MultirateCodec(std::shared_ptr<const MultirateModel> model, nlohmann::json parameters)
      : engine_(std::move(model), "MULTIRATE", /*codesFloat32=*/true),
        parameters_(std::move(parameters)) {
    if (parameters_.contains("lambda")) lambda_ = parameters_["lambda"].get<float>();
    if (parameters_.contains("target_bpp")) targetBpp_ = parameters_["target_bpp"].get<double>();
    spectral_ = parameters_.value("spectral_transform", "NONE") == "KLT";
    amplitudeDb_ = parameters_.value("sample_transform", "NONE") == "AMPLITUDE_DB";
    overlap_ = parameters_.value("overlap", 0);  // files before OVERLAP have none
    const auto& declared = declarationOf(learnedCodecDeclaration("MULTIRATE").options, "OVERLAP");
    if (overlap_ < 0 || overlap_ > *declared.maximum) {
      throw Error("MULTIRATE parameters: overlap " + std::to_string(overlap_) + " is out of range");
    }
  }

  std::string name() const override { return "MULTIRATE"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override { return parameters_; }
  std::vector<ModelRef> models() const override { return {engine_.modelRef()}; }
  int contextMargin() const override { return overlap_; }

  // Payload (FORMAT.md). Version 1: per band group lambda (float32), the sample mapping
  // (16-bit and Float32), stream length (u32) and the rANS stream of z then y. Version 2
  // (spectral transform): band count, int8 weights, the tile's lambda (float32), then per
  // component its mapping, stream length (LEB128) and stream.
  // With an overlap the payload codes the tile's context window (contextWindow), whose
  // decode is cropped to the tile.
  std::vector<uint8_t> encode(const TileShape& tile, const void* tilePixels,
                              const EncodeGuide& guide) const override {
    engine_.checkShape(tile);
    const TileShape window = contextWindow(tile, overlap_);
    if (window.width == tile.width && window.height == tile.height) {
      return encodeWindow(tile, tilePixels, tile);
    }
    if (!guide.context.empty()) {
      if (guide.context.size() != window.byteCount()) {
        throw Error("MULTIRATE: the tile's context has the wrong size");
      }
      return encodeWindow(window, guide.context.data(), tile);
    }
    std::vector<uint8_t> grown(window.byteCount());
    copyClamped(tile, tilePixels, window, grown.data());
    return encodeWindow(window, grown.data(), tile);
  }

  void decode(const TileShape& tile, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& parallelism) const override {
    engine_.checkShape(tile);
    const TileShape window = contextWindow(tile, overlap_);
    if (window.width == tile.width && window.height == tile.height) {
      decodeWindow(tile, data, size, pixels, parallelism);
      return;
    }
    std::vector<uint8_t> decoded(window.byteCount());
    decodeWindow(window, data, size, decoded.data(), parallelism);
    copyClamped(window, decoded.data(), tile, pixels);
  }

 private:
  // `tile`: what TARGET_BPP's budget counts (the tile, not its margin).
  std::vector<uint8_t> encodeWindow(const TileShape& shape, const void* pixels,
                                    const TileShape& tile) const {
    std::vector<uint8_t> payload{payloadVersion(spectral_, overlap_)};
    if (amplitudeDb_) {
      std::vector<float> decibels(shape.pixelsPerBand() * shape.bands);
      for (size_t i = 0; i < decibels.size(); ++i) decibels[i] = amplitudeToDb(sampleAt(shape, pixels, i));
      codeGroups(componentShape(shape), decibels.data(), /*equalSlope=*/false, tile, payload);
      return payload;
    }
    if (!spectral_) {
      codeGroups(shape, pixels, /*equalSlope=*/false, tile, payload);
      return payload;
    }
    const std::vector<double> samples = tileSamples(shape, pixels);
    const SpectralTransform transform =
        fitSpectralTransform(samples, shape.bands, shape.pixelsPerBand());
    const std::vector<double> components = forwardSpectral(transform, samples, shape.pixelsPerBand());
    const std::vector<float> componentPixels(components.begin(), components.end());
    payload.push_back(uint8_t(shape.bands));
    appendSpectralTransform(payload, transform);
    codeGroups(componentShape(shape), componentPixels.data(), /*equalSlope=*/true, tile, payload);
    return payload;
  }

  void decodeWindow(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
                    const Parallelism& parallelism) const {
    const uint8_t version = size < 1 ? 0 : data[0];
    if (version != payloadVersion(spectral_, overlap_)) {
      throw Error("MULTIRATE tile has an unknown payload version");
    }
    ByteReader reader(data + 1, size - 1, "MULTIRATE tile");
    if (amplitudeDb_) {
      const TileShape decibelShape = componentShape(shape);
      std::vector<float> decibels(shape.pixelsPerBand() * shape.bands);
      decodeGroups(decibelShape, reader, /*equalSlope=*/false, decibels.data(), parallelism);
      for (size_t i = 0; i < decibels.size(); ++i) {
        // A damaged mapping may give infinities or NaN, which no cast may see.
        if (!std::isfinite(decibels[i])) throw Error("MULTIRATE tile decodes to samples out of range");
        storeSample(shape, pixels, i, dbToAmplitude(decibels[i]));
      }
    } else if (!spectral_) {
      decodeGroups(shape, reader, /*equalSlope=*/false, pixels, parallelism);
    } else {
      if (*reader.bytes(1) != shape.bands) {
        throw Error("MULTIRATE tile's spectral transform is for another band count");
      }
      const SpectralTransform transform = readSpectralTransform(reader, shape.bands, "MULTIRATE");
      const TileShape components = componentShape(shape);
      std::vector<float> componentPixels(components.pixelsPerBand() * components.bands);
      decodeGroups(components, reader, /*equalSlope=*/true, componentPixels.data(), parallelism);
      const std::vector<double> samples =
          inverseSpectral(transform, componentPixels.data(), shape.pixelsPerBand());
      // A damaged component mapping (a shift that overflows Float32) or a W next to
      // singular gives infinities and NaN, which no cast to the type may see.
      for (size_t i = 0; i < samples.size(); ++i) {
        if (!std::isfinite(samples[i])) {
          throw Error("MULTIRATE tile's spectral transform gives samples out of range");
        }
        storeSample(shape, pixels, i, samples[i]);
      }
    }
    if (!reader.atEnd()) throw Error("MULTIRATE tile has trailing bytes");
  }

  // The components of a spectral transform, or amplitudes in dB: a Float32 tile of as
  // many bands.
  static TileShape componentShape(const TileShape& shape) {
    TileShape components = shape;
    components.type = DataType::Float32;
    return components;
  }

  static std::vector<double> tileSamples(const TileShape& shape, const void* pixels) {
    std::vector<double> samples(shape.pixelsPerBand() * shape.bands);
    for (size_t i = 0; i < samples.size(); ++i) samples[i] = sampleAt(shape, pixels, i);
    return samples;
  }

  struct CodedGroup {
    SampleMapping mapping;
    float lambda;
    std::vector<uint8_t> stream;
  };
  struct CodedTile {
    float lambda;  // the tile's
    std::vector<CodedGroup> groups;
  };

  // Equal slope across spectral components: an error of one model level weighs 4^shift in
  // sample units, so a component mapped `coarsest - shift` steps finer than the coarsest
  // one is coded at lambda * 4^(shift - coarsest), never below the model's lambda_min. The
  // decoder derives it from the stored lambda and shifts the same way.
  float componentLambda(float lambda, int shift, int coarsest) const {
    return float(std::max(engine_.model().lambdaMin, std::ldexp(double(lambda), 2 * (shift - coarsest))));
  }

  // Codes every band group of the tile at one lambda (or the TARGET_BPP search).
  // `equalSlope` (spectral components): each component keeps its own mapping step, at most
  // 4^k finer than the coarsest one's, where k is how far lambda lies above lambda_min in
  // powers of 4, and gets componentLambda (a weak component: a fine step, a small lambda).
  void codeGroups(const TileShape& shape, const void* pixels, bool equalSlope,
                  const TileShape& tile, std::vector<uint8_t>& payload) const {
    const MultirateModel& model = engine_.model();
    const auto groups = engine_.groups(shape);
    std::vector<SampleMapping> own;
    for (const auto& group : groups) own.push_back(engine_.mappingFor(shape, pixels, group));
    int coarsest = own.front().shift;
    for (const auto& mapping : own) coarsest = std::max(coarsest, mapping.shift);
    std::map<std::pair<size_t, int>, at::Tensor> latents;  // g_a output by (group, shift)
    auto codeAt = [&](float lambda) {
      CodedTile tile{lambda, {}};
      for (size_t g = 0; g < groups.size(); ++g) {
        CodedGroup group{own[g], lambda, {}};
        if (equalSlope) {
          const int finerSteps =
              std::max(0, int(std::floor(std::log(lambda / model.lambdaMin) / std::log(4.0))));
          group.mapping.shift = std::max(own[g].shift, coarsest - finerSteps);
          group.lambda = componentLambda(lambda, group.mapping.shift, coarsest);
        }
        const auto key = std::make_pair(g, group.mapping.shift);
        auto latent = latents.find(key);
        if (latent == latents.end()) {
          latent = latents.emplace(key, engine_.analyse(shape, pixels, groups[g], group.mapping)).first;
        }
        group.stream = codeLatent(latent->second, group.lambda);
        tile.groups.push_back(std::move(group));
      }
      return tile;
    };
    auto append = [&](std::vector<uint8_t>& out, const CodedTile& tile) {
      if (equalSlope) appendFloat32(out, tile.lambda);
      for (const CodedGroup& group : tile.groups) {
        if (!equalSlope) appendFloat32(out, group.lambda);
        if (engine_.mapsSamples()) appendSampleMapping(out, shape.type, group.mapping);
        if (equalSlope) {
          appendVarint(out, uint32_t(group.stream.size()));
        } else {
          appendU32(out, uint32_t(group.stream.size()));
        }
        out.insert(out.end(), group.stream.begin(), group.stream.end());
      }
    };
    append(payload, targetBpp_ > 0 ? searchLambda(codeAt, append, tile, payload.size())
                                   : codeAt(lambda_));
  }

  void decodeGroups(const TileShape& shape, ByteReader& reader, bool equalSlope, void* pixels,
                    const Parallelism& parallelism) const {
    const int height = engine_.model().latentsFor(shape.height);
    const int width = engine_.model().latentsFor(shape.width);
    const float tileLambda = equalSlope ? reader.float32() : 0.0f;
    struct StoredGroup {
      float lambda;
      SampleMapping mapping;
      const uint8_t* stream;
      uint32_t length;
    };
    const auto groups = engine_.groups(shape);
    std::vector<StoredGroup> stored;
    for (size_t g = 0; g < groups.size(); ++g) {
      StoredGroup group{equalSlope ? tileLambda : reader.float32(), {}, nullptr, 0};
      if (engine_.mapsSamples()) group.mapping = readSampleMapping(reader, shape.type, "MULTIRATE");
      group.length = equalSlope ? reader.varint() : reader.u32();
      group.stream = reader.bytes(group.length);
      if (!std::isfinite(group.lambda) || group.lambda <= 0) {
        throw Error("MULTIRATE tile has a bad lambda");
      }
      stored.push_back(group);
    }
    if (equalSlope) {
      int coarsest = stored.front().mapping.shift;
      for (const auto& group : stored) coarsest = std::max(coarsest, group.mapping.shift);
      for (auto& group : stored) group.lambda = componentLambda(tileLambda, group.mapping.shift, coarsest);
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      RansDecoder decoder(stored[g].stream, stored[g].length);
      const std::vector<int32_t> y = engine_.decodeLatent(decoder, height, width);
      const std::vector<float> lambdas(size_t(height) * width, stored[g].lambda);
      engine_.reconstruct(shape, groups[g], stored[g].mapping, engine_.demodulate(y, lambdas),
                          height, width, pixels, parallelism);
    }
  }

  std::vector<uint8_t> codeLatent(const at::Tensor& latent, float lambda) const {
    c10::InferenceMode guard;
    const at::Tensor gain = engine_.modulationGain(lambda);
    return engine_.codeModulatedLatent(latent * gain.reshape({1, -1, 1, 1}));
  }

  // TARGET_BPP: the largest lambda (best quality) whose tile payload fits the target,
  // found by bisection on log(lambda); lambda_min if even that is too large.
  // `fixedBytes`: what the payload holds before its groups; `append` serialises them.
  template <typename CodeAt, typename Append>
  CodedTile searchLambda(const CodeAt& codeAt, const Append& append, const TileShape& shape,
                         size_t fixedBytes) const {
    const MultirateModel& model = engine_.model();
    const double budgetBytes = targetBpp_ * shape.pixelsPerBand() / 8.0;
    auto bytesOf = [&](const CodedTile& tile) {
      std::vector<uint8_t> groups;
      append(groups, tile);
      return double(fixedBytes + groups.size());
    };
    double low = std::log(model.lambdaMin), high = std::log(model.lambdaMax);
    CodedTile best = codeAt(float(model.lambdaMin));
    CodedTile top = codeAt(float(model.lambdaMax));
    if (bytesOf(top) <= budgetBytes) return top;
    for (int iteration = 0; iteration < 10 && bytesOf(best) <= budgetBytes; ++iteration) {
      const float middle = float(std::exp(0.5 * (low + high)));
      CodedTile attempt = codeAt(middle);
      if (bytesOf(attempt) <= budgetBytes) {
        best = std::move(attempt);
        low = std::log(double(middle));
      } else {
        high = std::log(double(middle));
      }
    }
    return best;
  }

  MultirateEngine engine_;
  nlohmann::json parameters_;
  float lambda_ = 0;
  double targetBpp_ = 0;
  bool spectral_ = false;
  bool amplitudeDb_ = false;
  int overlap_ = 0;
};

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType type, int bands) {
  const auto& declared = learnedCodecDeclaration("MULTIRATE").options;
  const bool amplitudeDb =
      choiceOption(options, declarationOf(declared, "SAMPLE_TRANSFORM")) == "AMPLITUDE_DB";
  if (amplitudeDb && type != DataType::UInt16) {
    throw Error("SAMPLE_TRANSFORM=AMPLITUDE_DB is for UInt16 SAR amplitude, not " +
                    std::string(dataTypeName(type)),
                ErrorKind::InvalidOption);
  }
  const auto modelOption = options.find("MODEL");
  const std::string modelId = modelOption == options.end() ? defaultModel(type, amplitudeDb)
                                                           : modelOption->second;
  const auto model = loadMultirateModel(modelId);
  const bool byteModel = model->codesBytes();
  if (byteModel != (type == DataType::Byte)) {
    throw Error("MODEL=" + modelId + " codes " + (byteModel ? "Byte" : "UInt16/Int16/Float32") +
                    " images, not " + dataTypeName(type) + " (the default for " +
                    dataTypeName(type) + " is " + defaultModel(type) + ")",
                ErrorKind::InvalidOption);
  }
  const int given = int(options.count("QUALITY")) + int(options.count("LAMBDA")) +
                    int(options.count("TARGET_BPP"));
  if (given > 1) {
    throw Error("give only one of QUALITY, LAMBDA and TARGET_BPP", ErrorKind::InvalidOption);
  }

  const std::string spectral =
      choiceOption(options, declarationOf(declared, "SPECTRAL_TRANSFORM"));
  const bool singleBandModel = model->bands == 1;
  const bool useSpectral = singleBandModel && !amplitudeDb && bands >= 2 &&
                           bands <= kMaxSpectralBands &&
                           (spectral == "KLT" || (spectral == "AUTO" && bands >= kAutoSpectralBands));
  if (spectral == "KLT" && !useSpectral) {
    throw Error("SPECTRAL_TRANSFORM=KLT needs 2 to " + std::to_string(kMaxSpectralBands) +
                    " bands coded by a single-band model (16-bit or Float32 data), and no "
                    "SAMPLE_TRANSFORM",
                ErrorKind::InvalidOption);
  }
  if (amplitudeDb && !singleBandModel) {
    throw Error("SAMPLE_TRANSFORM=AMPLITUDE_DB needs a single-band model (the default is " +
                    std::string(kSarModel) + ")",
                ErrorKind::InvalidOption);
  }
  const int overlap = integerOption(options, declarationOf(declared, "OVERLAP"));
  nlohmann::json parameters = {
      {"model", model->folder.id},
      {"model_sha256", model->folder.cardSha256},
      {"tables", model->tablesFingerprint},
      {"payload_version", payloadVersion(useSpectral, overlap)}};
  if (useSpectral) parameters["spectral_transform"] = "KLT";
  if (overlap > 0) parameters["overlap"] = overlap;
  if (amplitudeDb) parameters["sample_transform"] = "AMPLITUDE_DB";
  if (options.count("TARGET_BPP")) {
    parameters["target_bpp"] =
        numberOption(options, declarationOf(declared, "TARGET_BPP"), 0.001, 64.0);
  } else if (options.count("LAMBDA")) {
    parameters["lambda"] =
        float(numberOption(options, declarationOf(declared, "LAMBDA"),
                           model->lambdaMin * 0.999999, model->lambdaMax * 1.000001));
  } else {
    const int quality = integerOption(options, declarationOf(declared, "QUALITY"));
    parameters["quality"] = quality;
    parameters["lambda"] = lambdaForQuality(*model, quality);
  }
  return parameters;
}

std::unique_ptr<Codec> createCodec(const nlohmann::json& parameters) {
  try {
    const int version = payloadVersion(parameters.value("spectral_transform", "NONE") == "KLT",
                                       parameters.value("overlap", 0));
    return std::make_unique<MultirateCodec>(modelOfFile(parameters, "model", version), parameters);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("MULTIRATE parameters are invalid: ") + e.what());
  }
}

}  // namespace

CodecDescriptor multirateCodecDescriptor() {
  CodecDescriptor descriptor;
  static_cast<CodecDeclaration&>(descriptor) = learnedCodecDeclaration("MULTIRATE");
  descriptor.rejectReason = multirateFloatRejectReason;
  descriptor.parametersFromOptions = parametersFromOptions;
  descriptor.create = createCodec;
  return descriptor;
}

}  // namespace nsat
