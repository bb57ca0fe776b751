#include "codecs/learned/multirate_codec.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "codecs/byte_io.h"
#include "codecs/entropy/rans_coder.h"
#include "codecs/learned/multirate_model.h"

namespace nsat {

namespace {

constexpr const char* kRgbModel = "multirate-rgb8";
constexpr const char* kSingleBandModel = "multirate-ms16";
constexpr int kDownsampling = 16;
constexpr int kDefaultQuality = 75;
constexpr uint8_t kPayloadVersion = 1;

// The model a type is coded with unless MODEL says otherwise.
std::string defaultModel(DataType type) {
  return type == DataType::Byte ? kRgbModel : kSingleBandModel;
}

std::string rejectReason(DataType type, int) {
  if (type == DataType::Byte || type == DataType::UInt16 || type == DataType::Int16) return "";
  return std::string("the MULTIRATE models code Byte, UInt16 and Int16 samples, not ") +
         dataTypeName(type);
}

// QUALITY 1..100 maps log-linearly onto the model's lambda range.
float lambdaForQuality(const MultirateModel& model, double quality) {
  const double t = (quality - 1.0) / 99.0;
  return float(model.lambdaMin * std::pow(model.lambdaMax / model.lambdaMin, t));
}

double doubleOption(const CodecOptions& options, const std::string& key, double low,
                    double high) {
  const std::string& text = options.at(key);
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || *end != '\0' || !(value >= low && value <= high)) {
    throw Error(key + "=" + text + " is invalid: expected a number from " + std::to_string(low) +
                " to " + std::to_string(high));
  }
  return value;
}

// Which image bands are coded together. A 3-band model codes consecutive triplets and
// any band left over alone, as grey (replicated to 3 channels, outputs averaged); a
// 1-band model codes every band alone.
struct BandGroup {
  int firstBand;
  int bandCount;
};

std::vector<BandGroup> bandGroups(int modelBands, int imageBands) {
  std::vector<BandGroup> groups;
  int band = 0;
  if (modelBands == 3) {
    for (; band + 3 <= imageBands; band += 3) groups.push_back({band, 3});
  }
  for (; band < imageBands; ++band) groups.push_back({band, 1});
  return groups;
}

// 16-bit groups are mapped into the range the single-band model was trained on
// (EuroSAT L1C reflectance, a few thousand DN): model value = (sample - offset) / 2^shift
// + base, with the smallest shift that fits the tile's range into kMappedRange. Powers
// of two keep the mapping exact; a scene of 12-bit-like DNs (Landsat 8 up to 65535)
// is then coded at a precision relative to its own range. Byte groups are not mapped.
struct SampleMapping {
  int32_t offset = 0;
  int shift = 0;
  float base = 0;

  float toModel(double sample) const {
    return float(std::ldexp(sample - offset, -shift) + base);
  }
  double fromModel(float value) const {
    return std::ldexp(double(value) - base, shift) + offset;
  }
};
constexpr double kMappedRange = 4096;
constexpr float kMappedBase = 256;
constexpr int kMaxShift = 16;

int decodeThreads() {
  if (const char* text = std::getenv("NSAT_DECODE_THREADS")) {
    const int threads = std::atoi(text);
    if (threads > 0) return threads;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

double sampleAt(const TileShape& shape, const void* pixels, size_t index) {
  switch (shape.type) {
    case DataType::Byte: return static_cast<const uint8_t*>(pixels)[index];
    case DataType::UInt16: return static_cast<const uint16_t*>(pixels)[index];
    case DataType::Int16: return static_cast<const int16_t*>(pixels)[index];
    default: throw Error("MULTIRATE: unsupported sample type");
  }
}

void storeSample(const TileShape& shape, void* pixels, size_t index, double value) {
  const double rounded = std::floor(value + 0.5);
  switch (shape.type) {
    case DataType::Byte:
      static_cast<uint8_t*>(pixels)[index] = uint8_t(std::clamp(rounded, 0.0, 255.0));
      break;
    case DataType::UInt16:
      static_cast<uint16_t*>(pixels)[index] = uint16_t(std::clamp(rounded, 0.0, 65535.0));
      break;
    case DataType::Int16:
      static_cast<int16_t*>(pixels)[index] = int16_t(std::clamp(rounded, -32768.0, 32767.0));
      break;
    default: throw Error("MULTIRATE: unsupported sample type");
  }
}

// Module::forward is not const; a copy is a handle onto the same shared module.
at::Tensor runModule(const torch::jit::Module& module, const at::Tensor& input) {
  torch::jit::Module handle = module;
  return handle.forward({input}).toTensor();
}

int paddedSize(int size) { return (size + kDownsampling - 1) / kDownsampling * kDownsampling; }

class MultirateCodec final : public Codec {
 public:
  MultirateCodec(std::shared_ptr<const MultirateModel> model, nlohmann::json parameters)
      : model_(std::move(model)), parameters_(std::move(parameters)) {
    if (parameters_.contains("lambda")) lambda_ = parameters_["lambda"].get<float>();
    if (parameters_.contains("target_bpp")) targetBpp_ = parameters_["target_bpp"].get<double>();
  }

  std::string name() const override { return "MULTIRATE"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override { return parameters_; }
  std::vector<ModelRef> models() const override { return {model_->folder.ref()}; }

  // Payload: version byte, then per band group: lambda (float32), stream length (u32)
  // and the rANS stream of z then y.
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels) const override {
    checkShape(shape);
    const auto groups = bandGroups(model_->bands, shape.bands);
    std::vector<at::Tensor> latents;  // g_a output per group, before the lambda gain
    std::vector<SampleMapping> mappings;
    for (const auto& group : groups) {
      mappings.push_back(mappingFor(shape, pixels, group));
      latents.push_back(analyse(shape, pixels, group, mappings.back()));
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
      if (mapsSamples()) {
        appendU32(payload, uint32_t(mappings[g].offset));
        payload.push_back(uint8_t(mappings[g].shift));
      }
      appendU32(payload, uint32_t(streams[g].size()));
      payload.insert(payload.end(), streams[g].begin(), streams[g].end());
    }
    return payload;
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size,
              void* pixels) const override {
    checkShape(shape);
    if (size < 1 || data[0] != kPayloadVersion) {
      throw Error("MULTIRATE tile has an unknown payload version");
    }
    ByteReader reader(data + 1, size - 1, "MULTIRATE tile");
    for (const auto& group : bandGroups(model_->bands, shape.bands)) {
      const float lambda = reader.float32();
      SampleMapping mapping;
      if (mapsSamples()) {
        mapping = {int32_t(reader.u32()), *reader.bytes(1), kMappedBase};
        if (mapping.shift > kMaxShift) throw Error("MULTIRATE tile has a bad sample mapping");
      }
      const uint32_t length = reader.u32();
      const uint8_t* stream = reader.bytes(length);
      if (!std::isfinite(lambda) || lambda <= 0) throw Error("MULTIRATE tile has a bad lambda");
      decodeGroup(shape, group, lambda, mapping, stream, length, pixels);
    }
    if (!reader.atEnd()) throw Error("MULTIRATE tile has trailing bytes");
  }

 private:
  void checkShape(const TileShape& shape) const {
    if (!rejectReason(shape.type, shape.bands).empty()) {
      throw Error("MULTIRATE: " + rejectReason(shape.type, shape.bands));
    }
    const bool byteModel = model_->codesBytes();
    if (byteModel != (shape.type == DataType::Byte)) {
      throw Error("MULTIRATE model " + model_->folder.id + " codes " +
                  (byteModel ? "Byte" : "16-bit") + " images, not " + dataTypeName(shape.type));
    }
  }

  bool mapsSamples() const { return !model_->codesBytes(); }

  SampleMapping mappingFor(const TileShape& shape, const void* pixels,
                           const BandGroup& group) const {
    SampleMapping mapping;
    if (!mapsSamples()) return mapping;
    const size_t first = size_t(group.firstBand) * shape.pixelsPerBand();
    const size_t count = size_t(group.bandCount) * shape.pixelsPerBand();
    double low = sampleAt(shape, pixels, first), high = low;
    for (size_t i = first; i < first + count; ++i) {
      const double value = sampleAt(shape, pixels, i);
      low = std::min(low, value);
      high = std::max(high, value);
    }
    mapping.offset = int32_t(low);
    mapping.base = kMappedBase;
    while (mapping.shift < kMaxShift && std::ldexp(high - low, -mapping.shift) > kMappedRange) {
      ++mapping.shift;
    }
    return mapping;
  }

  // g_a of one band group, padded to a multiple of 16 by edge replication.
  at::Tensor analyse(const TileShape& shape, const void* pixels, const BandGroup& group,
                     const SampleMapping& mapping) const {
    const int width = paddedSize(shape.width), height = paddedSize(shape.height);
    at::Tensor input = at::empty({1, model_->bands, height, width}, at::kFloat);
    float* out = input.data_ptr<float>();
    for (int c = 0; c < model_->bands; ++c) {
      const int band = group.firstBand + (group.bandCount == 1 ? 0 : c);
      for (int y = 0; y < height; ++y) {
        const size_t row = size_t(band) * shape.pixelsPerBand() +
                           size_t(std::min(y, shape.height - 1)) * shape.width;
        for (int x = 0; x < width; ++x) {
          const double value = sampleAt(shape, pixels, row + std::min(x, shape.width - 1));
          *out++ = std::clamp(mapping.toModel(value), 0.0f, float(model_->sampleMax));
        }
      }
    }
    c10::InferenceMode guard;
    return runModule(model_->analysisTransform, input * model_->inputScale);
  }

  std::vector<uint8_t> codeLatent(const at::Tensor& latent, float lambda) const {
    c10::InferenceMode guard;
    const at::Tensor lambdaNormalised =
        at::full({1, 1}, lambda, at::kFloat) / float(model_->lambdaMax);
    const at::Tensor gain = runModule(model_->modulation, lambdaNormalised);
    const at::Tensor modulated = latent * gain.reshape({1, -1, 1, 1});
    const at::Tensor z = runModule(model_->hyperAnalysis, modulated);
    const at::Tensor ySymbols = at::round(modulated).to(at::kInt).contiguous();
    const at::Tensor zSymbols = at::round(z).to(at::kInt).contiguous();

    const int zHeight = int(z.size(2)), zWidth = int(z.size(3));
    const int height = int(modulated.size(2)), width = int(modulated.size(3));
    const int32_t* zData = zSymbols.data_ptr<int32_t>();
    const std::vector<int32_t> zValues(zData, zData + zSymbols.numel());
    const std::vector<uint8_t> indices =
        model_->hyperSynthesis->scaleIndices(zValues, zHeight, zWidth, height, width);

    RansEncoder encoder;
    const size_t zPlane = size_t(zHeight) * zWidth;
    for (size_t i = 0; i < zValues.size(); ++i) {
      encoder.encode(zValues[i], model_->hyperLatentTables[i / zPlane]);
    }
    const int32_t* yData = ySymbols.data_ptr<int32_t>();
    const auto& gaussians = defaultGaussianTables();
    for (size_t i = 0; i < indices.size(); ++i) encoder.encode(yData[i], gaussians[indices[i]]);
    return encoder.finish();
  }

  // TARGET_BPP: the largest lambda (best quality) whose tile payload fits the target,
  // found by bisection on log(lambda); lambda_min if even that is too large.
  float searchLambda(const std::vector<at::Tensor>& latents, const TileShape& shape,
                     std::vector<std::vector<uint8_t>>& streams) const {
    const double budgetBytes = targetBpp_ * shape.pixelsPerBand() / 8.0;
    auto codeAll = [&](float lambda) {
      std::vector<std::vector<uint8_t>> coded;
      size_t bytes = 1;
      for (const auto& latent : latents) {
        coded.push_back(codeLatent(latent, lambda));
        bytes += coded.back().size() + (mapsSamples() ? 13 : 8);  // group header
      }
      return std::make_pair(bytes, coded);
    };
    double low = std::log(model_->lambdaMin), high = std::log(model_->lambdaMax);
    auto best = codeAll(float(model_->lambdaMin));
    float bestLambda = float(model_->lambdaMin);
    auto top = codeAll(float(model_->lambdaMax));
    if (double(top.first) <= budgetBytes) {
      streams = std::move(top.second);
      return float(model_->lambdaMax);
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

  void decodeGroup(const TileShape& shape, const BandGroup& group, float lambda,
                   const SampleMapping& mapping, const uint8_t* stream, size_t length,
                   void* pixels) const {
    const int height = paddedSize(shape.height) / kDownsampling;
    const int width = paddedSize(shape.width) / kDownsampling;
    const int zHeight = (height + 3) / 4, zWidth = (width + 3) / 4;
    RansDecoder decoder(stream, length);
    const auto& zTables = model_->hyperLatentTables;
    std::vector<int32_t> z(zTables.size() * zHeight * zWidth);
    const size_t zPlane = size_t(zHeight) * zWidth;
    for (size_t i = 0; i < z.size(); ++i) z[i] = decoder.decode(zTables[i / zPlane]);
    const std::vector<uint8_t> indices =
        model_->hyperSynthesis->scaleIndices(z, zHeight, zWidth, height, width);
    const auto& gaussians = defaultGaussianTables();
    std::vector<int32_t> y(indices.size());
    for (size_t i = 0; i < y.size(); ++i) y[i] = decoder.decode(gaussians[indices[i]]);
    decoder.verifyEnd();

    const std::vector<float> image =
        model_->synthesis->run(y, height, width, lambda, decodeThreads());
    const int paddedWidth = width * kDownsampling;
    const size_t paddedPlane = size_t(height) * kDownsampling * paddedWidth;
    for (int b = 0; b < group.bandCount; ++b) {
      const size_t band = size_t(group.firstBand + b);
      for (int row = 0; row < shape.height; ++row) {
        for (int x = 0; x < shape.width; ++x) {
          const size_t at = size_t(row) * paddedWidth + x;
          float value = image[b * paddedPlane + at];
          if (group.bandCount == 1 && model_->bands == 3) {  // grey through the RGB model
            value = (image[at] + image[paddedPlane + at] + image[2 * paddedPlane + at]) / 3.0f;
          }
          storeSample(shape, pixels, band * shape.pixelsPerBand() + size_t(row) * shape.width + x,
                      mapping.fromModel(value));
        }
      }
    }
  }

  std::shared_ptr<const MultirateModel> model_;
  nlohmann::json parameters_;
  float lambda_ = 0;
  double targetBpp_ = 0;
};

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType type, int) {
  const auto modelOption = options.find("MODEL");
  const std::string modelId = modelOption == options.end() ? defaultModel(type)
                                                           : modelOption->second;
  const auto model = loadMultirateModel(modelId);
  const bool byteModel = model->codesBytes();
  if (byteModel != (type == DataType::Byte)) {
    throw Error("MODEL=" + modelId + " codes " + (byteModel ? "Byte" : "UInt16/Int16") +
                " images, not " + dataTypeName(type) + " (the default for " +
                dataTypeName(type) + " is " + defaultModel(type) + ")");
  }
  const int given = int(options.count("QUALITY")) + int(options.count("LAMBDA")) +
                    int(options.count("TARGET_BPP"));
  if (given > 1) throw Error("give only one of QUALITY, LAMBDA and TARGET_BPP");

  nlohmann::json parameters = {{"model", model->folder.id},
                               {"model_sha256", model->folder.cardSha256},
                               {"tables", model->tablesFingerprint},
                               {"payload_version", kPayloadVersion}};
  if (options.count("TARGET_BPP")) {
    parameters["target_bpp"] = doubleOption(options, "TARGET_BPP", 0.001, 64.0);
  } else if (options.count("LAMBDA")) {
    parameters["lambda"] = float(doubleOption(options, "LAMBDA", model->lambdaMin * 0.999999,
                                              model->lambdaMax * 1.000001));
  } else {
    const int quality = intOption(options, "QUALITY", kDefaultQuality, 1, 100);
    parameters["quality"] = quality;
    parameters["lambda"] = lambdaForQuality(*model, quality);
  }
  return parameters;
}

std::unique_ptr<Codec> createCodec(const nlohmann::json& parameters) {
  try {
    const auto model = loadMultirateModel(parameters.at("model").get<std::string>(),
                                          parameters.at("model_sha256").get<std::string>());
    if (parameters.at("tables").get<std::string>() != model->tablesFingerprint) {
      throw Error("this machine builds other entropy tables than the writer did (fingerprint " +
                  model->tablesFingerprint + " vs " + parameters.at("tables").get<std::string>() +
                  "); decoding would give garbage");
    }
    if (parameters.value("payload_version", 0) != kPayloadVersion) {
      throw Error("payload version " + parameters.value("payload_version", nlohmann::json()).dump() +
                  " is newer than this NSAT");
    }
    return std::make_unique<MultirateCodec>(model, parameters);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("MULTIRATE parameters are invalid: ") + e.what());
  }
}

}  // namespace

CodecDescriptor multirateCodecDescriptor() {
  CodecDescriptor descriptor;
  descriptor.name = "MULTIRATE";
  descriptor.description =
      "learned multirate codec (scale hyperprior, lambda-modulated latent; one model, every rate)";
  descriptor.optionNames = {"QUALITY", "LAMBDA", "TARGET_BPP", "MODEL"};
  descriptor.rejectReason = rejectReason;
  descriptor.parametersFromOptions = parametersFromOptions;
  descriptor.create = createCodec;
  return descriptor;
}

}  // namespace nsat
