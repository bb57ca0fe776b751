#include "codecs/learned/multirate_codec.h"

#include <algorithm>
#include <cmath>

#include "codecs/byte_io.h"
#include "codecs/entropy/rans_coder.h"
#include "codecs/learned/multirate_engine.h"
#include "codecs/learned_module.h"

namespace nsat {

namespace {

constexpr const char* kRgbModel = "multirate-rgb8";
constexpr const char* kSingleBandModel = "multirate-ms16";
constexpr uint8_t kPayloadVersion = 1;

// The model a type is coded with unless MODEL says otherwise.
std::string defaultModel(DataType type) {
  return type == DataType::Byte ? kRgbModel : kSingleBandModel;
}

// QUALITY 1..100 maps log-linearly onto the model's lambda range.
float lambdaForQuality(const MultirateModel& model, double quality) {
  const double t = (quality - 1.0) / 99.0;
  return float(model.lambdaMin * std::pow(model.lambdaMax / model.lambdaMin, t));
}

class MultirateCodec final : public Codec {
 public:
  MultirateCodec(std::shared_ptr<const MultirateModel> model, nlohmann::json parameters)
      : engine_(std::move(model), "MULTIRATE"), parameters_(std::move(parameters)) {
    if (parameters_.contains("lambda")) lambda_ = parameters_["lambda"].get<float>();
    if (parameters_.contains("target_bpp")) targetBpp_ = parameters_["target_bpp"].get<double>();
  }

  std::string name() const override { return "MULTIRATE"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override { return parameters_; }
  std::vector<ModelRef> models() const override { return {engine_.modelRef()}; }

  // Payload: version byte, then per band group: lambda (float32), stream length (u32)
  // and the rANS stream of z then y.
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                              const EncodeGuide&) const override {
    engine_.checkShape(shape);
    const auto groups = engine_.groups(shape);
    std::vector<at::Tensor> latents;  // g_a output per group, before the lambda gain
    std::vector<SampleMapping> mappings;
    for (const auto& group : groups) {
      mappings.push_back(engine_.mappingFor(shape, pixels, group));
      latents.push_back(engine_.analyse(shape, pixels, group, mappings.back()));
    }

    float lambda = lambda_;
    std::vector<std::vector<uint8_t>> streams;
    if (targetBpp_ > 0) {
      lambda = searchLambda(latents, shape, streams);
    } else {
      for (const auto& latent : latents) streams.push_back(codeLatent(latent, lambda));
    }
    std::vector<uint8_t> payload{kPayloadVersion};
    for (size_t g = 0; g < groups.size(); ++g) {
      appendFloat32(payload, lambda);
      if (engine_.mapsSamples()) {
        appendU32(payload, uint32_t(mappings[g].offset));
        payload.push_back(uint8_t(mappings[g].shift));
      }
      appendU32(payload, uint32_t(streams[g].size()));
      payload.insert(payload.end(), streams[g].begin(), streams[g].end());
    }
    return payload;
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& parallelism) const override {
    engine_.checkShape(shape);
    if (size < 1 || data[0] != kPayloadVersion) {
      throw Error("MULTIRATE tile has an unknown payload version");
    }
    const int height = paddedToLatentGrid(shape.height) / kLatentDownsampling;
    const int width = paddedToLatentGrid(shape.width) / kLatentDownsampling;
    ByteReader reader(data + 1, size - 1, "MULTIRATE tile");
    for (const auto& group : engine_.groups(shape)) {
      const float lambda = reader.float32();
      SampleMapping mapping;
      if (engine_.mapsSamples()) {
        mapping = {int32_t(reader.u32()), *reader.bytes(1), kMappedBase};
        if (mapping.shift > kMaxSampleShift) throw Error("MULTIRATE tile has a bad sample mapping");
      }
      const uint32_t length = reader.u32();
      const uint8_t* stream = reader.bytes(length);
      if (!std::isfinite(lambda) || lambda <= 0) throw Error("MULTIRATE tile has a bad lambda");
      RansDecoder decoder(stream, length);
      const std::vector<int32_t> y = engine_.decodeLatent(decoder, height, width);
      const std::vector<float> lambdas(size_t(height) * width, lambda);
      engine_.reconstruct(shape, group, mapping, engine_.demodulate(y, lambdas), height, width,
                          pixels, parallelism);
    }
    if (!reader.atEnd()) throw Error("MULTIRATE tile has trailing bytes");
  }

 private:
  std::vector<uint8_t> codeLatent(const at::Tensor& latent, float lambda) const {
    c10::InferenceMode guard;
    const at::Tensor gain = engine_.modulationGain(lambda);
    return engine_.codeModulatedLatent(latent * gain.reshape({1, -1, 1, 1}));
  }

  // TARGET_BPP: the largest lambda (best quality) whose tile payload fits the target,
  // found by bisection on log(lambda); lambda_min if even that is too large.
  float searchLambda(const std::vector<at::Tensor>& latents, const TileShape& shape,
                     std::vector<std::vector<uint8_t>>& streams) const {
    const MultirateModel& model = engine_.model();
    const double budgetBytes = targetBpp_ * shape.pixelsPerBand() / 8.0;
    auto codeAll = [&](float lambda) {
      std::vector<std::vector<uint8_t>> coded;
      size_t bytes = 1;
      for (const auto& latent : latents) {
        coded.push_back(codeLatent(latent, lambda));
        bytes += coded.back().size() + (engine_.mapsSamples() ? 13 : 8);  // group header
      }
      return std::make_pair(bytes, coded);
    };
    double low = std::log(model.lambdaMin), high = std::log(model.lambdaMax);
    auto best = codeAll(float(model.lambdaMin));
    float bestLambda = float(model.lambdaMin);
    auto top = codeAll(float(model.lambdaMax));
    if (double(top.first) <= budgetBytes) {
      streams = std::move(top.second);
      return float(model.lambdaMax);
    }
    for (int iteration = 0; iteration < 10 && double(best.first) <= budgetBytes; ++iteration) {
      const float middle = float(std::exp(0.5 * (low + high)));
      auto attempt = codeAll(middle);
      if (double(attempt.first) <= budgetBytes) {
        best = std::move(attempt);
        bestLambda = middle;
        low = std::log(double(middle));
      } else {
        high = std::log(double(middle));
      }
    }
    streams = std::move(best.second);
    return bestLambda;
  }

  MultirateEngine engine_;
  nlohmann::json parameters_;
  float lambda_ = 0;
  double targetBpp_ = 0;
};

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType type, int) {
  const auto& declared = learnedCodecDeclaration("MULTIRATE").options;
  const auto modelOption = options.find("MODEL");
  const std::string modelId = modelOption == options.end() ? defaultModel(type)
                                                           : modelOption->second;
  const auto model = loadMultirateModel(modelId);
  const bool byteModel = model->codesBytes();
  if (byteModel != (type == DataType::Byte)) {
    throw Error("MODEL=" + modelId + " codes " + (byteModel ? "Byte" : "UInt16/Int16") +
                    " images, not " + dataTypeName(type) + " (the default for " +
                    dataTypeName(type) + " is " + defaultModel(type) + ")",
                ErrorKind::InvalidOption);
  }
  const int given = int(options.count("QUALITY")) + int(options.count("LAMBDA")) +
                    int(options.count("TARGET_BPP"));
  if (given > 1) {
    throw Error("give only one of QUALITY, LAMBDA and TARGET_BPP", ErrorKind::InvalidOption);
  }

  nlohmann::json parameters = {{"model", model->folder.id},
                               {"model_sha256", model->folder.cardSha256},
                               {"tables", model->tablesFingerprint},
                               {"payload_version", kPayloadVersion}};
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
    return std::make_unique<MultirateCodec>(modelOfFile(parameters, "model", kPayloadVersion),
                                            parameters);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("MULTIRATE parameters are invalid: ") + e.what());
  }
}

}  // namespace

CodecDescriptor multirateCodecDescriptor() {
  CodecDescriptor descriptor;
  static_cast<CodecDeclaration&>(descriptor) = learnedCodecDeclaration("MULTIRATE");
  descriptor.rejectReason = multirateRejectReason;
  descriptor.parametersFromOptions = parametersFromOptions;
  descriptor.create = createCodec;
  return descriptor;
}

}  // namespace nsat
