#include "codecs/learned/relevance.h"

#include <torch/csrc/autograd/autograd.h>

#include <map>
#include <mutex>

#include "codecs/learned/multirate_model.h"

namespace nsat {

namespace {

// eps * sign(z), with sign(0) = +1 so that a zero pre-activation never divides by zero.
at::Tensor stabilised(const at::Tensor& z, double epsilon) {
  return z + at::where(z >= 0, at::full({}, epsilon, z.options()), at::full({}, -epsilon, z.options()));
}

}  // namespace

LandCoverClassifier::LandCoverClassifier(const std::string& id) : folder_(openModelFolder(id)) {
  std::vector<nlohmann::json> layers;
  try {
    if (folder_.card.at("codec").get<std::string>() != "RDIC") {
      throw Error("model " + id + " is not an RDIC classifier");
    }
    classes_ = folder_.card.at("classes").get<std::vector<std::string>>();
    const auto& architecture = folder_.card.at("architecture");
    layers = architecture.at("layers").get<std::vector<nlohmann::json>>();
    inputScale_ = architecture.at("input_scale").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("model " + id + ": card.json: " + e.what());
  }
  std::map<std::string, at::Tensor> parameters;
  const torch::jit::Module module = loadTorchScript(folder_, "classifier.pt");
  for (const auto& parameter : module.named_parameters()) {
    parameters[parameter.name] = parameter.value.detach().clone().contiguous();
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string prefix = "features." + std::to_string(2 * i);
    Conv conv;
    conv.weight = parameters[prefix + ".weight"];
    conv.bias = parameters[prefix + ".bias"];
    conv.stride = layers[i].value("stride", 1);
    conv.padding = layers[i].value("padding", 0);
    if (!conv.weight.defined() || !conv.bias.defined() || conv.weight.dim() != 4) {
      throw Error("model " + id + ": classifier.pt lacks " + prefix);
    }
    convs_.push_back(conv);
  }
  head_ = parameters["classifier.weight"];
  if (convs_.empty() || !head_.defined() || head_.size(0) != int64_t(classes_.size()) ||
      head_.size(1) != convs_.back().weight.size(0) || convs_.front().weight.size(1) != 3) {
    throw Error("model " + id + ": classifier.pt does not match its card");
  }
}

RelevanceResult LandCoverClassifier::explain(const std::vector<float>& rgb, int height, int width,
                                             bool allClasses, double epsilon) const {
  if (rgb.size() != size_t(3) * height * width) throw Error("RDIC: classifier input size");
  at::AutoGradMode gradients(true);
  // Forward, keeping every layer's input.
  std::vector<at::Tensor> inputs;
  at::Tensor a = at::from_blob(const_cast<float*>(rgb.data()), {1, 3, height, width}, at::kFloat)
                     .clone() * float(inputScale_);
  for (const Conv& conv : convs_) {
    inputs.push_back(a);
    a = at::relu(at::conv2d(a, conv.weight, conv.bias, conv.stride, conv.padding));
  }
  const int64_t positions = a.size(2) * a.size(3);
  const at::Tensor pooled = a.mean({2, 3});                          // (1, C)
  const at::Tensor logits = at::matmul(pooled, head_.t());           // (1, K)

  RelevanceResult result;
  const at::Tensor logitValues = logits.detach().reshape({-1});
  result.logits.assign(logitValues.data_ptr<float>(),
                       logitValues.data_ptr<float>() + logitValues.numel());
  result.predictedClass = int(logitValues.argmax().item<int64_t>());
  at::Tensor outputRelevance = at::zeros_like(logitValues);
  if (allClasses) {
    outputRelevance = logitValues.clone();
  } else {
    outputRelevance[result.predictedClass] = logitValues[result.predictedClass];
  }
  result.explained = outputRelevance.sum().item<double>();

  // Head: z_(c,p)j = a_cp w_jc / P, summed over c and p it is logit j (no bias).
  const at::Tensor s = outputRelevance / stabilised(logitValues, epsilon);        // (K)
  const at::Tensor back = at::matmul(s, head_).reshape({1, -1, 1, 1});           // (1, C, 1, 1)
  at::Tensor relevance = a.detach() * back / double(positions);
  result.absorbed = result.explained - relevance.sum().item<double>();

  // Convolutions, last to first: R_in = a * W^T (R / (z + eps sign z)).
  for (size_t layer = convs_.size(); layer-- > 0;) {
    const Conv& conv = convs_[layer];
    const at::Tensor input = inputs[layer].detach().requires_grad_(true);
    const at::Tensor z = at::conv2d(input, conv.weight, conv.bias, conv.stride, conv.padding);
    const at::Tensor ratio = (relevance / stabilised(z.detach(), epsilon)).detach();
    const at::Tensor gradient = torch::autograd::grad({z}, {input}, {ratio})[0];
    const at::Tensor passed = input.detach() * gradient;
    result.absorbed += relevance.sum().item<double>() - passed.sum().item<double>();
    relevance = passed;
  }
  const at::Tensor perPixel = relevance.sum(1).reshape({-1}).contiguous();
  result.relevance.assign(perPixel.data_ptr<float>(), perPixel.data_ptr<float>() + perPixel.numel());
  return result;
}

std::shared_ptr<const LandCoverClassifier> loadLandCoverClassifier(const std::string& id) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const LandCoverClassifier>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = loaded.find(id);
  if (found == loaded.end()) {
    found = loaded.emplace(id, std::make_shared<LandCoverClassifier>(id)).first;
  }
  return found->second;
}

}  // namespace nsat
