#include "codecs/learned/diffusion_refiner.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "codecs/learned/kernel_planes.h"
#include "codecs/learned/multirate_model.h"
#include "codecs/learned/pixel_shuffle.h"
#include "codecs/learned/torch_weights.h"

namespace nsat {

namespace {

constexpr int kCodecScalars = 3;  // lambda, sigma, flow time

}  // namespace

std::vector<float> DiffusionRefiner::Dense::apply(const std::vector<float>& x, bool relu) const {
  std::vector<float> out(size_t(this->out));
  for (int o = 0; o < this->out; ++o) {
    float sum = bias[o];
    for (int i = 0; i < in; ++i) sum = sum + weight[size_t(o) * in + i] * x[i];
    out[o] = relu ? std::max(0.0f, sum) : sum;
  }
  return out;
}

DiffusionRefiner::DiffusionRefiner(const ModelFolder& folder) : folder_(folder) {
  const torch::jit::Module module = loadTorchScript(folder, "refiner.pt");
  const NamedTensors tensors = namedTensors(module);
  try {
    const auto& card = folder.card;
    if (card.at("codec").get<std::string>() != "DIFFUSION") throw Error("not a DIFFUSION model");
    const auto& architecture = card.at("architecture");
    bands_ = architecture.at("bands").get<int>();
    channels_ = architecture.at("channels").get<int>();
    blocks_ = architecture.at("blocks").get<int>();
    hidden_ = architecture.at("hidden").get<int>();
    frequencies_ = architecture.at("frequencies").get<int>();
    sigmaMax_ = architecture.at("sigma_max").get<float>();
    const auto& rate = architecture.at("rate_embedding");
    rateIsLevels_ = rate.at("rate").get<std::string>() == "levels";
    if (rateIsLevels_) {
      levels_ = rate.at("levels").get<int>();
    } else {
      lambdaMin_ = rate.at("lambda_range").at(0).get<double>();
      lambdaMax_ = rate.at("lambda_range").at(1).get<double>();
    }
    const auto keys = architecture.at("condition_keys").get<std::vector<std::string>>();
    if (keys != std::vector<std::string>(kRefinerSceneKeys.begin(), kRefinerSceneKeys.end())) {
      throw Error("its condition keys are not the ones this NSAT computes");
    }
    if (synthesisArithmetic(folder) != SynthesisArithmetic::FusedMultiplyAdd) {
      throw Error("the refiner runs on fused multiply-adds only");
    }
    baseCodec_ = card.at("base_model").at("codec").get<std::string>();
    baseModel_ = card.at("base_model").at("id").get<std::string>();
    baseModelSha256_ = card.at("base_model").at("card_sha256").get<std::string>();
    defaultSteps_ = card.at("decode").at("euler_steps").get<int>();
    defaultSigma_ = card.at("decode").at("sigma").get<float>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("model " + folder.id + ": " + e.what());
  } catch (const Error& e) {
    throw Error("model " + folder.id + ": " + e.what());
  }
  if (bands_ != 3 || channels_ < 4 || channels_ % 4 || channels_ > 256 || blocks_ < 0 ||
      blocks_ > 16 || hidden_ < 1 || hidden_ > 1024 || frequencies_ < 1 || frequencies_ > 16 ||
      defaultSteps_ < 1 || defaultSteps_ > 8 || !(sigmaMax_ > 0) || !(defaultSigma_ >= 0) ||
      (rateIsLevels_ ? levels_ < 1 || levels_ > 8 : !(lambdaMin_ > 0 && lambdaMax_ > lambdaMin_)) ||
      (baseCodec_ != "MULTIRATE" && baseCodec_ != "VQ") || rateIsLevels_ != (baseCodec_ == "VQ")) {
    throw Error("model " + folder.id + ": card.json has unsupported dimensions");
  }
  const std::string file = "model " + folder.id + ": refiner.pt";
  const int perScalar = 2 * frequencies_;
  const int embedding = (kRefinerSceneScalars + kCodecScalars) * perScalar;
  auto dense = [&](const std::string& name, int in, int out) {
    return Dense{in, out, tensorFloats(tensors, file, name + ".weight", {out, in}),
                 tensorFloats(tensors, file, name + ".bias", {out})};
  };
  auto conv = [&](const std::string& name, int in, int out) {
    return Conv{in, out, tensorFloats(tensors, file, name + ".weight", {out, in, 3, 3}),
                tensorFloats(tensors, file, name + ".bias", {out})};
  };
  unknown_ = tensorFloats(tensors, file, "unknown", {kRefinerSceneScalars, perScalar});
  embed1_ = dense("embedding_mlp.0", embedding, hidden_);
  embed2_ = dense("embedding_mlp.2", hidden_, hidden_);
  convIn_ = conv("conv_in", 2 * bands_ * 4, channels_);
  for (int b = 0; b < blocks_; ++b) {
    convA_.push_back(conv("conv_a." + std::to_string(b), channels_, channels_));
    convB_.push_back(conv("conv_b." + std::to_string(b), channels_, channels_));
    film_.push_back(dense("film." + std::to_string(b), hidden_, 2 * channels_));
  }
  convOut_ = conv("conv_out", channels_, bands_ * 4);
}

float DiffusionRefiner::rateArgument(const nlohmann::json& baseParameters) const {
  try {
    if (rateIsLevels_) {
      const int levels = baseParameters.at("levels").get<int>();
      return levels_ == 1 ? -0.5f : float(levels - 1) / float(levels_ - 1) - 0.5f;
    }
    const double lambda = baseParameters.at("lambda").get<double>();
    return float(std::log(lambda / lambdaMin_) / std::log(lambdaMax_ / lambdaMin_) - 0.5);
  } catch (const nlohmann::json::exception&) {
    throw Error("DIFFUSION: the base parameters have no " +
                    std::string(rateIsLevels_ ? "levels" : "lambda") +
                    " (TARGET_BPP is not supported)",
                ErrorKind::InvalidOption);
  }
}

double DiffusionRefiner::macsPerPixel(int steps) const {
  const double halfResolution =
      9.0 * (double(convIn_.in) * channels_ + 2.0 * blocks_ * channels_ * channels_ +
             double(channels_) * convOut_.out);
  return steps * halfResolution / 4.0;
}

// E(m) = [sin(pi 2^k m) for k < F, cos(pi 2^k m) for k < F] per scalar, an unknown scene
// scalar's learned vector instead; then Dense, ReLU, Dense, ReLU.
std::vector<float> DiffusionRefiner::conditionVector(const SceneArguments& scene,
                                                     float rateArgument, float sigmaArgument,
                                                     float timeArgument) const {
  const int perScalar = 2 * frequencies_;
  std::vector<float> embedding;
  embedding.reserve(size_t(kRefinerSceneScalars + kCodecScalars) * perScalar);
  auto sinusoidal = [&](float m) {
    for (int k = 0; k < frequencies_; ++k)
      embedding.push_back(float(sinPi(std::ldexp(double(m), k))));
    for (int k = 0; k < frequencies_; ++k) {
      embedding.push_back(
          float(sinPi(std::ldexp(double(m), k) + 0.5)));  // cos(pi a) = sin(pi (a + 1/2))
    }
  };
  for (int i = 0; i < kRefinerSceneScalars; ++i) {
    if (scene[i]) {
      sinusoidal(*scene[i]);
    } else {
      embedding.insert(embedding.end(), unknown_.begin() + size_t(i) * perScalar,
                       unknown_.begin() + size_t(i + 1) * perScalar);
    }
  }
  for (float m : {rateArgument, sigmaArgument, timeArgument}) sinusoidal(m);
  return embed2_.apply(embed1_.apply(embedding, true), true);
}

std::vector<float> DiffusionRefiner::refine(const std::vector<float>& base, int height, int width,
                                            const SceneArguments& scene, float rateArgument,
                                            float sigma, int steps, const std::vector<float>& noise,
                                            const Parallelism& parallelism) const {
  const size_t plane = size_t(height) * width;
  if (height % 2 || width % 2 || base.size() != bands_ * plane || noise.size() != base.size() ||
      steps < 1 || steps > 8 || !(sigma >= 0 && sigma <= sigmaMax_)) {
    throw Error("DIFFUSION refiner: bad tile, steps or sigma");
  }
  static const KernelIsa isa = defaultKernelIsa();
  const SynthesisKernels& kernels = synthesisKernels(isa);
  const SynthesisArithmetic arithmetic = SynthesisArithmetic::FusedMultiplyAdd;
  const int h = height / 2, w = width / 2;
  const int stride = kernelRowWidth(w);
  const size_t outPlane = size_t(h) * stride;
  const int inputs = convIn_.in;  // unshuffled [z, base]

  std::vector<float> inputBuffer(paddedSize(std::max(inputs, channels_), h, w));
  std::vector<float> state(size_t(channels_) * outPlane);  // h, the residual stream
  std::vector<float> convOut(size_t(std::max(channels_, convOut_.out)) * outPlane);
  std::vector<float> shuffledIn(size_t(convOut_.out) * h * w), velocity(base.size());

  // Runs `conv` on `input` into convOut (planes `outPlane` apart, rows `stride`).
  auto runConv = [&](const Conv& conv, PaddedPlanes& input) {
    const Conv3x3Job job{
        input.data,       conv.in,        h,     w, input.stride, conv.weight.data(),
        conv.bias.data(), convOut.data(), stride};
    forChannelGroups(conv.out, parallelism,
                     [&](int begin, int end) { kernels.conv3x3(job, begin, end, arithmetic); });
  };
  // f(convOut) (or of state) written into the padded input of the next convolution.
  auto fillInput = [&](PaddedPlanes& input, const float* source, auto&& f) {
    for (int c = 0; c < input.channels; ++c)
      for (int y = 0; y < h; ++y) {
        const float* from = source + c * outPlane + size_t(y) * stride;
        float* to = input.interior(c) + size_t(y) * input.stride;
        for (int x = 0; x < w; ++x) to[x] = f(c, from[x]);
      }
    input.clearBorder();
  };

  std::vector<float> z(base.size());
  for (size_t i = 0; i < z.size(); ++i) z[i] = base[i] + sigma * noise[i];
  const float sigmaArgument = sigma / sigmaMax_ - 0.5f;
  for (int step = 0; step < steps; ++step) {
    const float time = float(step) / float(steps);
    const std::vector<float> c = conditionVector(scene, rateArgument, sigmaArgument, time - 0.5f);
    // unshuffle2([z, base] - 0.5): channel 4 b + 2 i + j holds band b's sample (2y + i, 2x + j).
    PaddedPlanes input = paddedPlanes(inputBuffer.data(), inputs, h, w);
    for (int b = 0; b < 2 * bands_; ++b) {
      const float* source = (b < bands_ ? z.data() : base.data()) + size_t(b % bands_) * plane;
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
          for (int y = 0; y < h; ++y) {
            float* to = input.interior(4 * b + 2 * i + j) + size_t(y) * input.stride;
            const float* from = source + size_t(2 * y + i) * width + j;
            for (int x = 0; x < w; ++x) to[x] = from[2 * x] - 0.5f;
          }
    }
    input.clearBorder();
    runConv(convIn_, input);
    std::copy(convOut.begin(), convOut.begin() + state.size(), state.begin());
    PaddedPlanes hidden = paddedPlanes(inputBuffer.data(), channels_, h, w);
    for (int block = 0; block < blocks_; ++block) {
      const std::vector<float> film = film_[block].apply(c, false);  // gamma, then beta
      fillInput(hidden, state.data(), [](int, float v) { return std::max(0.0f, v); });
      runConv(convA_[block], hidden);
      fillInput(hidden, convOut.data(), [&](int ch, float v) {
        return std::max(0.0f, v * (1.0f + film[ch]) + film[channels_ + ch]);
      });
      runConv(convB_[block], hidden);
      for (size_t i = 0; i < state.size(); ++i) state[i] = state[i] + convOut[i];
    }
    fillInput(hidden, state.data(), [](int, float v) { return std::max(0.0f, v); });
    runConv(convOut_, hidden);
    for (int ch = 0; ch < convOut_.out; ++ch)
      for (int y = 0; y < h; ++y)
        std::memcpy(&shuffledIn[(size_t(ch) * h + y) * w],
                    &convOut[ch * outPlane + size_t(y) * stride], sizeof(float) * w);
    pixelShuffle2(shuffledIn.data(), convOut_.out, h, w, velocity.data());
    for (size_t i = 0; i < z.size(); ++i) z[i] = z[i] + velocity[i] / float(steps);
  }
  // NaN (only from a corrupt model) becomes 0 instead of reaching a cast.
  for (float& v : z) v = v > 0.0f ? std::min(v, 1.0f) : 0.0f;
  return z;
}

std::shared_ptr<const DiffusionRefiner> loadDiffusionRefiner(const std::string& id,
                                                             const std::string& sha256) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const DiffusionRefiner>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = loaded.find(id);
  if (found == loaded.end()) {
    found = loaded.emplace(id, std::make_shared<const DiffusionRefiner>(openModelFolder(id))).first;
  }
  if (!sha256.empty()) requireModelVersion(found->second->folder(), sha256);
  return found->second;
}

}  // namespace nsat
