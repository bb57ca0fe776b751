#include "codecs/learned/diffusion_codec.h"

#include <algorithm>
#include <cmath>

#include "codecs/learned/diffusion_refiner.h"
#include "codecs/learned/multirate_codec.h"
#include "codecs/learned/vq_codec.h"
#include "codecs/learned_module.h"

namespace nsat {

namespace {

constexpr int kPayloadVersion = 1;  // the payload is the base codec's, unchanged
constexpr const char* kDefaultModel = "diffusion-vq-rgb8-v3";

std::string rejectReason(DataType type, int bands) {
  if (type != DataType::Byte || bands != 3) {
    return "DIFFUSION codes 3-band (RGB) Byte images; its refiner has seen nothing else";
  }
  return "";
}

// The codecs a refiner may sit on (its card's base_model.codec).
CodecDescriptor baseDescriptor(const std::string& codec) {
  if (codec == "VQ") return vqCodecDescriptor();
  return multirateCodecDescriptor();
}

// FNV-1a of the stored condition: the same scene gives the same file, two scenes
// different noise.
uint32_t conditionSeed(const std::string& text) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : text) hash = (hash ^ c) * 16777619u;
  return hash;
}

class DiffusionCodec final : public Codec {
 public:
  DiffusionCodec(std::shared_ptr<const DiffusionRefiner> refiner, std::unique_ptr<Codec> base,
                 nlohmann::json parameters)
      : refiner_(std::move(refiner)), base_(std::move(base)), parameters_(std::move(parameters)) {
    const auto& arguments = parameters_.at("scene_arguments");
    if (!arguments.is_array() || arguments.size() != kRefinerSceneScalars) {
      throw Error("DIFFUSION parameters: scene_arguments has the wrong length");
    }
    for (int i = 0; i < kRefinerSceneScalars; ++i) {
      if (arguments[i].is_null()) continue;
      scene_[i] = arguments[i].get<float>();
      // An infinite argument (1e300 in a crafted header) would make the embedding NaN and
      // the tile silently black.
      if (!std::isfinite(*scene_[i])) {
        throw Error("DIFFUSION parameters: scene argument " + std::to_string(i) + " is not finite");
      }
    }
    rateArgument_ = parameters_.at("rate_argument").get<float>();
    sigma_ = parameters_.at("sigma").get<float>();
    steps_ = parameters_.at("steps").get<int>();
    seed_ = parameters_.at("noise_seed").get<uint32_t>();
    if (steps_ < 1 || steps_ > 8 || !(sigma_ >= 0 && sigma_ <= refiner_->sigmaMax()) ||
        !std::isfinite(rateArgument_)) {
      throw Error("DIFFUSION parameters: steps, sigma or rate argument out of range");
    }
    const auto open = parameters_.find(kOpenOptionsParameter);
    if (open != parameters_.end()) {
      refinement_ = open->value("REFINEMENT", std::string("YES")) != "NO";
    }
  }

  std::string name() const override { return "DIFFUSION"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override {
    nlohmann::json stored = parameters_;
    stored.erase(kOpenOptionsParameter);
    return stored;
  }
  std::vector<ModelRef> models() const override {
    std::vector<ModelRef> refs = base_->models();
    refs.push_back(refiner_->folder().ref());
    return refs;
  }

  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                              const EncodeGuide& guide) const override {
    checkShape(shape);
    return base_->encode(shape, pixels, guide);
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& parallelism) const override {
    checkShape(shape);
    base_->decode(shape, data, size, pixels, parallelism);
    if (!refinement_) return;
    // The refiner works on 2 x 2 cells: an odd edge is padded by replication.
    const int height = shape.height + shape.height % 2, width = shape.width + shape.width % 2;
    const size_t plane = size_t(height) * width;
    const auto* samples = static_cast<uint8_t*>(pixels);
    std::vector<float> base(3 * plane);
    for (int b = 0; b < 3; ++b)
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
          const size_t from = b * shape.pixelsPerBand() +
                              size_t(std::min(y, shape.height - 1)) * shape.width +
                              std::min(x, shape.width - 1);
          base[b * plane + size_t(y) * width + x] = float(samples[from]) / 255.0f;
        }
    const TilePlacement& at = shape.placement;
    const std::vector<float> noise =
        tileNoise(tileNoiseKey(seed_, at.level, at.x, at.y), base.size());
    const std::vector<float> refined = refiner_->refine(base, height, width, scene_, rateArgument_,
                                                        sigma_, steps_, noise, parallelism);
    auto* out = static_cast<uint8_t*>(pixels);
    for (int b = 0; b < 3; ++b)
      for (int y = 0; y < shape.height; ++y)
        for (int x = 0; x < shape.width; ++x) {
          out[b * shape.pixelsPerBand() + size_t(y) * shape.width + x] =
              uint8_t(std::nearbyint(refined[b * plane + size_t(y) * width + x] * 255.0f));
        }
  }

 private:
  static void checkShape(const TileShape& shape) {
    const std::string rejected = rejectReason(shape.type, shape.bands);
    if (!rejected.empty()) throw Error(rejected, ErrorKind::NotSupported);
  }

  std::shared_ptr<const DiffusionRefiner> refiner_;
  std::unique_ptr<Codec> base_;
  nlohmann::json parameters_;
  SceneArguments scene_;
  float rateArgument_ = 0, sigma_ = 0;
  int steps_ = 1;
  uint32_t seed_ = 0;
  bool refinement_ = true;
};

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType type, int bands) {
  const auto& declared = learnedCodecDeclaration("DIFFUSION").options;
  const auto modelOption = options.find("MODEL");
  const std::string modelId = modelOption == options.end() ? kDefaultModel : modelOption->second;
  const auto refiner = loadDiffusionRefiner(modelId);
  const auto condition = options.find(kSceneConditionOption);
  if (condition == options.end())
    throw Error("internal error: DIFFUSION was given no scene condition");
  nlohmann::json scene;
  try {
    scene = nlohmann::json::parse(condition->second);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("internal error: the scene condition is not JSON: ") + e.what());
  }
  // Every header byte counts for 64 px chips: an unknown without a reason is left out (a
  // reader takes an absent member as unknown).
  for (auto entry = scene.begin(); entry != scene.end();) {
    const bool silent = entry->is_object() && entry->value("value", nlohmann::json()).is_null() &&
                        entry->value("source", std::string()).empty();
    entry = silent ? scene.erase(entry) : std::next(entry);
  }
  // The base codec gets its rate options, and the model the refiner was trained on.
  const CodecDescriptor base = baseDescriptor(refiner->baseCodec());
  CodecOptions baseOptions;
  for (const auto& [key, value] : options) {
    if (key == "QUALITY" || key == "LAMBDA" || key == "LEVELS") {
      if (!base.readsOption(key)) {
        throw Error(key + " is not an option of model " + modelId + ", whose base codec is " +
                        base.name +
                        (base.name == "VQ" ? " (give LEVELS)" : " (give QUALITY or LAMBDA)"),
                    ErrorKind::InvalidOption);
      }
      baseOptions[key] = value;
    }
  }
  baseOptions["MODEL"] = refiner->baseModel();
  // The refiner was trained on base tiles coded alone.
  if (base.readsOption(kContextMarginOption)) baseOptions[kContextMarginOption] = "0";
  nlohmann::json baseParameters = base.parametersFromOptions(baseOptions, type, bands);
  if (baseParameters.at("model_sha256") != refiner->baseModelSha256()) {
    throw Error("model " + modelId + " was trained on another version of " + refiner->baseModel());
  }
  const float sigma =
      options.count("NOISE")
          ? float(numberOption(options, declarationOf(declared, "NOISE"), 0.0, refiner->sigmaMax()))
          : refiner->defaultSigma();
  const int seed = integerOption(options, declarationOf(declared, "NOISE_SEED"));
  nlohmann::json arguments = nlohmann::json::array();
  for (const auto& value : sceneArguments(scene)) {
    arguments.push_back(value ? nlohmann::json(*value) : nlohmann::json());
  }
  return {{"model", refiner->folder().id},
          {"model_sha256", refiner->folder().cardSha256},
          {"base_codec", base.name},
          {"base", baseParameters},
          {"scene_condition", scene},
          {"scene_arguments", arguments},
          {"rate_argument", refiner->rateArgument(baseParameters)},
          {"sigma", sigma},
          {"steps", refiner->defaultSteps()},
          {"noise_seed", seed != 0 ? uint32_t(seed) : conditionSeed(scene.dump())},
          {"payload_version", kPayloadVersion}};
}

std::unique_ptr<Codec> createCodec(const nlohmann::json& parameters) {
  try {
    if (parameters.value("payload_version", 0) != kPayloadVersion) {
      throw Error("DIFFUSION payload version " +
                  parameters.value("payload_version", nlohmann::json()).dump() +
                  " is newer than this NSAT");
    }
    auto refiner = loadDiffusionRefiner(parameters.at("model").get<std::string>(),
                                        parameters.at("model_sha256").get<std::string>());
    auto base = baseDescriptor(refiner->baseCodec()).create(parameters.at("base"));
    return std::make_unique<DiffusionCodec>(std::move(refiner), std::move(base), parameters);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("DIFFUSION parameters are invalid: ") + e.what());
  }
}

}  // namespace

CodecDescriptor diffusionCodecDescriptor() {
  CodecDescriptor descriptor;
  static_cast<CodecDeclaration&>(descriptor) = learnedCodecDeclaration("DIFFUSION");
  descriptor.rejectReason = rejectReason;
  descriptor.parametersFromOptions = parametersFromOptions;
  descriptor.create = createCodec;
  return descriptor;
}

}  // namespace nsat
