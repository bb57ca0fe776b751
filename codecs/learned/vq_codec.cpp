#include "codecs/learned/vq_codec.h"

#include <algorithm>

#include "codecs/byte_io.h"
#include "codecs/learned/multirate_engine.h"
#include "codecs/learned/multirate_model.h"
#include "codecs/learned/vq_model.h"
#include "codecs/learned_module.h"

namespace nsat {

namespace {

constexpr uint8_t kPayloadVersion = 1;

// The model an image is coded with unless MODEL says otherwise, or "" if none fits.
std::string defaultModel(DataType type, int bands) {
  if (type == DataType::Byte) {
    if (bands % 4 == 0) return "vq-rgbn8-v1";
    if (bands % 3 == 0) return "vq-rgb8-v2";
    return "";
  }
  if ((type == DataType::UInt16 || type == DataType::Int16) && bands % 4 == 0) return "vq-rgbn16-v1";
  return "";
}

std::string rejectReason(DataType type, int bands) {
  if (type != DataType::Byte && type != DataType::UInt16 && type != DataType::Int16) {
    return std::string("VQ codes Byte, UInt16 and Int16 samples, not ") + dataTypeName(type);
  }
  if (defaultModel(type, bands).empty()) {
    return type == DataType::Byte
               ? "VQ codes Byte images of 3 bands (RGB) or 4 (RGB+NIR), or multiples of them"
               : "VQ codes 16-bit images of 4 bands (Sentinel-2 B2, B3, B4, B8) or multiples of 4";
  }
  return "";
}

class VqCodec final : public Codec {
 public:
  VqCodec(std::shared_ptr<const VqModel> model, nlohmann::json parameters)
      : model_(std::move(model)), parameters_(std::move(parameters)),
        levels_(parameters_.at("levels").get<int>()) {
    if (levels_ < 1 || levels_ > model_->levels) throw Error("VQ parameters: levels out of range");
  }

  std::string name() const override { return "VQ"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override { return parameters_; }
  std::vector<ModelRef> models() const override { return {model_->folder.ref()}; }

  // Payload (FORMAT.md): version byte, then per band group the LEB128 length of its rANS
  // stream of indices and the stream.
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                              const EncodeGuide&) const override {
    checkShape(shape);
    std::vector<uint8_t> payload{kPayloadVersion};
    const int height = latentSize(shape.height), width = latentSize(shape.width);
    for (int first = 0; first < shape.bands; first += model_->bands) {
      const std::vector<float> y = analyse(shape, pixels, first);
      const VqIndices indices = quantiseVqLatent(*model_, y.data(), levels_, height, width);
      const std::vector<uint8_t> stream = encodeVqIndices(*model_, indices);
      appendVarint(payload, uint32_t(stream.size()));
      payload.insert(payload.end(), stream.begin(), stream.end());
    }
    return payload;
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& parallelism) const override {
    checkShape(shape);
    const int height = latentSize(shape.height), width = latentSize(shape.width);
    const int scale = model_->downsampling;
    const std::vector<VqIndices> groups = readIndices(shape, data, size);
    for (size_t g = 0; g < groups.size(); ++g) {
      const std::vector<float> samples =
          model_->synthesis->runScaled(vqLatent(*model_, groups[g]), height, width, parallelism);
      const size_t outPlane = size_t(height) * scale * width * scale;
      for (int c = 0; c < model_->bands; ++c) {
        const size_t band = g * model_->bands + c;
        for (int y = 0; y < shape.height; ++y)
          for (int x = 0; x < shape.width; ++x) {
            storeSample(shape, pixels, band * shape.pixelsPerBand() + size_t(y) * shape.width + x,
                        samples[c * outPlane + size_t(y) * width * scale + x]);
          }
      }
    }
  }

  std::optional<AuxiliaryDescription> latentIndices(int bands, int) const override {
    AuxiliaryDescription description;
    description.name = "VQ_INDEX";
    description.description = "codebook indices on the latent grid; the codewords are in " +
                              model_->folder.id + "/vq_tables.json (\"codebooks\")";
    description.cellSize = model_->downsampling;
    const int bandGroups = bands / model_->bands;
    for (int g = 0; g < bandGroups; ++g)
      for (int level = 0; level < levels_; ++level)
        for (int group = 0; group < model_->groups; ++group) {
          description.layerNames.push_back(
              (bandGroups > 1 ? "bands" + std::to_string(g * model_->bands + 1) + "-" +
                                    std::to_string((g + 1) * model_->bands) + "_"
                              : std::string()) +
              "level" + std::to_string(level + 1) + "_group" + std::to_string(group + 1));
        }
    return description;
  }

  std::vector<float> latentIndexValues(const TileShape& shape, const uint8_t* data,
                                       size_t size) const override {
    checkShape(shape);
    std::vector<float> values;
    for (const VqIndices& indices : readIndices(shape, data, size)) {
      values.insert(values.end(), indices.values.begin(), indices.values.end());
    }
    return values;
  }

 private:
  int latentSize(int pixels) const {
    return (pixels + model_->downsampling - 1) / model_->downsampling;
  }

  void checkShape(const TileShape& shape) const {
    const std::string rejected = rejectReason(shape.type, shape.bands);
    if (!rejected.empty()) throw Error(rejected, ErrorKind::NotSupported);
    if (model_->codesBytes != (shape.type == DataType::Byte) || shape.bands % model_->bands != 0) {
      throw Error("VQ model " + model_->folder.id + " codes " + std::to_string(model_->bands) +
                      "-band " + (model_->codesBytes ? "Byte" : "16-bit") + " images, not " +
                      std::to_string(shape.bands) + " x " + dataTypeName(shape.type),
                  ErrorKind::NotSupported);
    }
  }

  // g_a of the bands first .. first + model bands - 1, padded by edge replication to the
  // latent grid: latentChannels x height x width.
  std::vector<float> analyse(const TileShape& shape, const void* pixels, int first) const {
    const int scale = model_->downsampling;
    const int height = latentSize(shape.height) * scale, width = latentSize(shape.width) * scale;
    at::Tensor input = at::empty({1, model_->bands, height, width}, at::kFloat);
    float* out = input.data_ptr<float>();
    const float top = model_->codesBytes ? 255.0f : 65535.0f;
    for (int c = 0; c < model_->bands; ++c)
      for (int y = 0; y < height; ++y) {
        const size_t row = size_t(first + c) * shape.pixelsPerBand() +
                           size_t(std::min(y, shape.height - 1)) * shape.width;
        for (int x = 0; x < width; ++x) {
          *out++ = std::clamp(float(sampleAt(shape, pixels, row + std::min(x, shape.width - 1))), 0.0f, top);
        }
      }
    c10::InferenceMode guard;
    const at::Tensor y = runModule(model_->analysis, input).contiguous();
    if (y.size(1) != model_->latentChannels()) throw Error("VQ analysis gave the wrong latent");
    return std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
  }

  std::vector<VqIndices> readIndices(const TileShape& shape, const uint8_t* data, size_t size) const {
    if (size < 1 || data[0] != kPayloadVersion) throw Error("VQ tile has an unknown payload version");
    ByteReader reader(data + 1, size - 1, "VQ tile");
    const int height = latentSize(shape.height), width = latentSize(shape.width);
    std::vector<VqIndices> groups;
    for (int first = 0; first < shape.bands; first += model_->bands) {
      const uint32_t length = reader.varint();
      const uint8_t* stream = reader.bytes(length);
      groups.push_back(decodeVqIndices(*model_, stream, length, levels_, height, width));
    }
    if (!reader.atEnd()) throw Error("VQ tile has trailing bytes");
    return groups;
  }

  std::shared_ptr<const VqModel> model_;
  nlohmann::json parameters_;
  int levels_;
};

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType type, int bands) {
  const auto& declared = learnedCodecDeclaration("VQ").options;
  const auto modelOption = options.find("MODEL");
  const std::string modelId =
      modelOption == options.end() ? defaultModel(type, bands) : modelOption->second;
  const auto model = loadVqModel(modelId);
  if (model->codesBytes != (type == DataType::Byte) || bands % model->bands != 0) {
    throw Error("MODEL=" + modelId + " codes " + std::to_string(model->bands) + "-band " +
                    (model->codesBytes ? "Byte" : "UInt16/Int16") + " images (or multiples), not " +
                    std::to_string(bands) + " x " + dataTypeName(type),
                ErrorKind::InvalidOption);
  }
  const int levels = options.count("LEVELS")
                         ? integerOption(options, declarationOf(declared, "LEVELS"))
                         : std::min(model->levels,
                                    integerOption({}, declarationOf(declared, "LEVELS")));
  if (levels > model->levels) {
    throw Error("LEVELS=" + std::to_string(levels) + " is invalid: model " + modelId + " has " +
                    std::to_string(model->levels) + " levels",
                ErrorKind::InvalidOption);
  }
  return {{"model", model->folder.id},
          {"model_sha256", model->folder.cardSha256},
          {"levels", levels},
          {"payload_version", kPayloadVersion}};
}

std::unique_ptr<Codec> createCodec(const nlohmann::json& parameters) {
  try {
    if (parameters.value("payload_version", 0) != kPayloadVersion) {
      throw Error("VQ payload version " + parameters.value("payload_version", nlohmann::json()).dump() +
                  " is newer than this NSAT");
    }
    const auto model = loadVqModel(parameters.at("model").get<std::string>(),
                                   parameters.at("model_sha256").get<std::string>());
    return std::make_unique<VqCodec>(model, parameters);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("VQ parameters are invalid: ") + e.what());
  }
}

}  // namespace

CodecDescriptor vqCodecDescriptor() {
  CodecDescriptor descriptor;
  static_cast<CodecDeclaration&>(descriptor) = learnedCodecDeclaration("VQ");
  descriptor.rejectReason = rejectReason;
  descriptor.parametersFromOptions = parametersFromOptions;
  descriptor.create = createCodec;
  return descriptor;
}

}  // namespace nsat
