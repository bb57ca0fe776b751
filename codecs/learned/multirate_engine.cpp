#include "codecs/learned/multirate_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include "codecs/byte_io.h"
#include "codecs/entropy/rans_coder.h"

namespace nsat {

namespace {

constexpr double kMappedRange = 4096;

// A single band coded through a multi-band model (its copy in every input band) decodes as
// the mean of the model's output bands, summed in band order: for the RGB model exactly the
// (r + g + b) / 3 that every such file was written with.
float greyOf(const std::vector<float>& image, size_t plane, size_t at, int bands) {
  float sum = image[at];
  for (int b = 1; b < bands; ++b) sum += image[size_t(b) * plane + at];
  return sum / float(bands);
}

}  // namespace

std::vector<BandGroup> bandGroups(int modelBands, int imageBands) {
  std::vector<BandGroup> groups;
  int band = 0;
  if (modelBands > 1) {
    for (; band + modelBands <= imageBands; band += modelBands) groups.push_back({band, modelBands});
  }
  for (; band < imageBands; ++band) groups.push_back({band, 1});
  return groups;
}

std::string multirateRejectReason(DataType type, int) {
  if (type == DataType::Byte || type == DataType::UInt16 || type == DataType::Int16) return "";
  return std::string("this codec codes Byte, UInt16 and Int16 samples, not ") +
         dataTypeName(type);
}

std::string multirateFloatRejectReason(DataType type, int bands) {
  if (type == DataType::Float32) return "";
  if (multirateRejectReason(type, bands).empty()) return "";
  return std::string("MULTIRATE codes Byte, UInt16, Int16 and Float32 samples, not ") +
         dataTypeName(type);
}

void appendSampleMapping(std::vector<uint8_t>& payload, DataType type,
                         const SampleMapping& mapping) {
  if (type == DataType::Float32) {
    appendFloat32(payload, float(mapping.offset));
    payload.push_back(uint8_t(int8_t(mapping.shift)));
  } else {
    appendU32(payload, uint32_t(int32_t(mapping.offset)));
    payload.push_back(uint8_t(mapping.shift));
  }
}

SampleMapping readSampleMapping(ByteReader& reader, DataType type, const std::string& codec) {
  SampleMapping mapping;
  mapping.base = kMappedBase;
  if (type == DataType::Float32) {
    mapping.offset = reader.float32();
    mapping.shift = int8_t(*reader.bytes(1));
    if (!std::isfinite(mapping.offset) || mapping.shift < kMinFloatShift) {
      throw Error(codec + " tile has a bad sample mapping");
    }
  } else {
    mapping.offset = int32_t(reader.u32());
    mapping.shift = *reader.bytes(1);
    if (mapping.shift > kMaxSampleShift) throw Error(codec + " tile has a bad sample mapping");
  }
  return mapping;
}

float SampleMapping::toModel(double sample) const {
  return float(std::ldexp(sample - offset, -shift) + base);
}

double SampleMapping::fromModel(float value) const {
  return std::ldexp(double(value) - base, shift) + offset;
}

double sampleAt(const TileShape& shape, const void* pixels, size_t index) {
  switch (shape.type) {
    case DataType::Byte: return static_cast<const uint8_t*>(pixels)[index];
    case DataType::UInt16: return static_cast<const uint16_t*>(pixels)[index];
    case DataType::Int16: return static_cast<const int16_t*>(pixels)[index];
    case DataType::Float32: return static_cast<const float*>(pixels)[index];
    default: throw Error("learned codec: unsupported sample type");
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
    case DataType::Float32:  // not rounded: the mapping's own precision
      static_cast<float*>(pixels)[index] = float(value);
      break;
    default: throw Error("learned codec: unsupported sample type");
  }
}

std::shared_ptr<const MultirateModel> modelOfFile(const nlohmann::json& parameters,
                                                  const std::string& key, int payloadVersion) {
  const auto model = loadMultirateModel(parameters.at(key).get<std::string>(),
                                        parameters.at(key + "_sha256").get<std::string>());
  const std::string tables = parameters.at("tables").get<std::string>();
  if (tables != model->tablesFingerprint) {
    throw Error("this machine builds other entropy tables than the writer did (fingerprint " +
                model->tablesFingerprint + " vs " + tables + "); decoding would give garbage");
  }
  if (parameters.value("payload_version", 0) != payloadVersion) {
    throw Error("payload version " + parameters.value("payload_version", nlohmann::json()).dump() +
                " is newer than this NSAT");
  }
  return model;
}

MultirateEngine::MultirateEngine(std::shared_ptr<const MultirateModel> model,
                                 std::string codecName, bool codesFloat32)
    : model_(std::move(model)), codecName_(std::move(codecName)), codesFloat32_(codesFloat32) {}

void MultirateEngine::checkShape(const TileShape& shape) const {
  const std::string rejected = codesFloat32_ ? multirateFloatRejectReason(shape.type, shape.bands)
                                             : multirateRejectReason(shape.type, shape.bands);
  if (!rejected.empty()) throw Error(codecName_ + ": " + rejected, ErrorKind::NotSupported);
  const bool byteModel = model_->codesBytes();
  if (byteModel != (shape.type == DataType::Byte)) {
    throw Error(codecName_ + " model " + model_->folder.id + " codes " +
                    (byteModel ? "Byte" : "16-bit") + " images, not " + dataTypeName(shape.type),
                ErrorKind::NotSupported);
  }
}

SampleMapping MultirateEngine::mappingFor(const TileShape& shape, const void* pixels,
                                          const BandGroup& group) const {
  SampleMapping mapping;
  if (!mapsSamples()) return mapping;
  const size_t first = size_t(group.firstBand) * shape.pixelsPerBand();
  const size_t count = size_t(group.bandCount) * shape.pixelsPerBand();
  double low = sampleAt(shape, pixels, first), high = low;
  for (size_t i = first; i < first + count; ++i) {
    const double value = sampleAt(shape, pixels, i);
    if (!std::isfinite(value)) {
      throw Error(codecName_ + " cannot code NaN or infinite samples: give the band a nodata "
                  "value (NaN nodata is kept exactly by the tile mask)", ErrorKind::NotSupported);
    }
    low = std::min(low, value);
    high = std::max(high, value);
  }
  mapping.base = kMappedBase;
  if (shape.type == DataType::Float32) {
    mapping.offset = low;  // a float32 value: stored exactly
    mapping.shift = kMinFloatShift;
    while (mapping.shift < kMaxFloatShift && std::ldexp(high - low, -mapping.shift) > kMappedRange) {
      ++mapping.shift;
    }
    return mapping;
  }
  mapping.offset = int32_t(low);
  while (mapping.shift < kMaxSampleShift && std::ldexp(high - low, -mapping.shift) > kMappedRange) {
    ++mapping.shift;
  }
  return mapping;
}

at::Tensor MultirateEngine::analyse(const TileShape& shape, const void* pixels,
                                    const BandGroup& group, const SampleMapping& mapping) const {
  const int cell = model_->downsampling;
  const int width = model_->latentsFor(shape.width) * cell;
  const int height = model_->latentsFor(shape.height) * cell;
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

at::Tensor MultirateEngine::modulationGain(float lambda) const {
  c10::InferenceMode guard;
  const at::Tensor lambdaNormalised =
      at::full({1, 1}, lambda, at::kFloat) / float(model_->lambdaMax);
  return runModule(model_->modulation, lambdaNormalised).reshape({-1});
}

std::vector<uint8_t> MultirateEngine::codeModulatedLatent(
    const at::Tensor& modulated, const std::vector<PrefixSymbol>& prefix) const {
  c10::InferenceMode guard;
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
  for (const PrefixSymbol& symbol : prefix) encoder.encode(symbol.value, *symbol.table);
  const size_t zPlane = size_t(zHeight) * zWidth;
  for (size_t i = 0; i < zValues.size(); ++i) {
    encoder.encode(zValues[i], model_->hyperLatentTables[i / zPlane]);
  }
  const int32_t* yData = ySymbols.data_ptr<int32_t>();
  const auto& gaussians = defaultGaussianTables();
  for (size_t i = 0; i < indices.size(); ++i) encoder.encode(yData[i], gaussians[indices[i]]);
  return encoder.finish();
}

std::vector<int32_t> MultirateEngine::decodeLatent(RansDecoder& decoder, int height,
                                                   int width) const {
  const int zHeight = (height + 3) / 4, zWidth = (width + 3) / 4;
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
  return y;
}

std::vector<float> MultirateEngine::demodulate(const std::vector<int32_t>& y,
                                               const std::vector<float>& lambdaPerPosition) const {
  const size_t plane = lambdaPerPosition.size();
  const int channels = model_->synthesis->latentChannels();
  if (y.size() != plane * channels) throw Error(codecName_ + ": latent has the wrong size");
  std::map<float, std::vector<float>> gains;  // a tile uses few distinct lambdas
  for (float lambda : lambdaPerPosition) {
    if (!gains.count(lambda)) gains.emplace(lambda, model_->synthesis->demodulationGain(lambda));
  }
  std::vector<float> scaled(y.size());
  for (size_t p = 0; p < plane; ++p) {
    const std::vector<float>& gain = gains.at(lambdaPerPosition[p]);
    for (int c = 0; c < channels; ++c) scaled[c * plane + p] = float(y[c * plane + p]) * gain[c];
  }
  return scaled;
}

void MultirateEngine::reconstruct(const TileShape& shape, const BandGroup& group,
                                  const SampleMapping& mapping,
                                  const std::vector<float>& scaledLatent, int height, int width,
                                  void* pixels, const Parallelism& parallelism) const {
  const std::vector<float> image =
      model_->synthesis->runScaled(scaledLatent, height, width, parallelism);
  const int paddedWidth = width * model_->downsampling;
  const size_t paddedPlane = size_t(height) * model_->downsampling * paddedWidth;
  for (int b = 0; b < group.bandCount; ++b) {
    const size_t band = size_t(group.firstBand + b);
    for (int row = 0; row < shape.height; ++row) {
      for (int x = 0; x < shape.width; ++x) {
        const size_t at = size_t(row) * paddedWidth + x;
        float value = image[b * paddedPlane + at];
        if (group.bandCount == 1 && model_->bands > 1) {  // grey through a multi-band model
          value = greyOf(image, paddedPlane, at, model_->bands);
        }
        const size_t index = band * shape.pixelsPerBand() + size_t(row) * shape.width + x;
        if (shape.type == DataType::Byte) {  // unmapped: storeSample's rounding, inlined
          static_cast<uint8_t*>(pixels)[index] =
              uint8_t(std::clamp(std::floor(double(value) + 0.5), 0.0, 255.0));
        } else {
          storeSample(shape, pixels, index, mapping.fromModel(value));
        }
      }
    }
  }
}

}  // namespace nsat
