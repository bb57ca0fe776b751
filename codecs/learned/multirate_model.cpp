#include "codecs/learned/multirate_model.h"

#include <torch/csrc/jit/python/update_graph_executor_opt.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <cmath>
#include <map>
#include <mutex>

namespace nsat {

torch::jit::Module loadTorchScript(const ModelFolder& folder, const std::string& name) {
  // LibTorch's loader shares state between calls (ThreadSanitizer saw two models of
  // different codecs load at once race inside it): one load at a time in the process.
  static std::mutex loading;
  std::lock_guard<std::mutex> lock(loading);
  try {
    torch::jit::Module module = torch::jit::load(folder.file(name), torch::kCPU);
    module.eval();
    return module;
  } catch (const c10::Error& e) {
    throw Error("model " + folder.id + ": cannot load " + name + ": " + e.what_without_backtrace());
  }
}

nlohmann::json readJson(const ModelFolder& folder, const std::string& name) {
  try {
    return nlohmann::json::parse(readTextFile(folder.file(name)));
  } catch (const nlohmann::json::exception& e) {
    throw Error("model " + folder.id + ": " + name + " is not valid JSON: " + e.what());
  }
}

namespace {

std::vector<QuantizedCdf> hyperLatentTables(const ModelFolder& folder) {
  const nlohmann::json prior = readJson(folder, "factorized_prior.json");
  std::vector<std::vector<float>> pmfs;
  std::vector<float> tailMasses;
  std::vector<int32_t> minValues;
  try {
    for (const auto& table : prior.at("tables")) {
      pmfs.push_back(table.at("pmf").get<std::vector<float>>());
      tailMasses.push_back(table.at("tail_mass").get<float>());
      minValues.push_back(table.at("min_value").get<int32_t>());
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("model " + folder.id + ": factorized_prior.json: " + e.what());
  }
  return factorizedPriorTables(pmfs, tailMasses, minValues);
}

}  // namespace

at::Tensor runModule(const torch::jit::Module& module, const at::Tensor& input) {
  torch::jit::Module handle = module;  // forward is not const; a copy shares the module
  return handle.forward({input}).toTensor();
}

// The TorchScript graph executor re-optimises a graph after profiling its first runs,
// which changes float results between the first tiles and the rest: encoded bytes
// would then depend on which thread coded which tile. Plain execution only.
void useUnoptimisedTorchScript() {
  static std::once_flag once;
  std::call_once(once, [] {
    torch::jit::getProfilingMode() = false;
    torch::jit::getExecutorMode() = false;
    torch::jit::setGraphExecutorOptimize(false);
  });
}

// The card's "synthesis_arithmetic": how g_s adds a product. Models made before the
// field existed were decoded with a multiply then an add, and their files must keep
// decoding to the same bits.
SynthesisArithmetic synthesisArithmetic(const ModelFolder& folder) {
  const std::string name =
      folder.card.at("architecture").value("synthesis_arithmetic", "multiply-then-add");
  if (name == "multiply-then-add") return SynthesisArithmetic::MultiplyThenAdd;
  if (name == "fused-multiply-add") return SynthesisArithmetic::FusedMultiplyAdd;
  throw Error("model " + folder.id + ": unknown synthesis_arithmetic '" + name + "'");
}

namespace {

// The card's "gain_activation" (and "gain_floor"): "relu" for cards without it; and its
// "demodulation": "inverse_of_modulation" for tied gains (older cards hold a description
// there, which means a learned demodulation net).
GainActivation gainActivation(const ModelFolder& folder) {
  const auto& architecture = folder.card.at("architecture");
  GainActivation activation;
  const auto demodulation = architecture.find("demodulation");
  activation.inverse = demodulation != architecture.end() && demodulation->is_string() &&
                       demodulation->get<std::string>() == "inverse_of_modulation";
  const std::string name = architecture.value("gain_activation", "relu");
  if (name == "relu") {
    // A ReLU gain can be 0, and a tied decoder divides by it.
    if (activation.inverse) throw Error("model " + folder.id + ": tied gains need gain_activation positive");
    return activation;
  }
  if (name == "positive") {
    const auto floor = architecture.find("gain_floor");
    if (floor == architecture.end() || !floor->is_number() || !(floor->get<double>() > 0)) {
      throw Error("model " + folder.id + ": gain_activation positive needs a gain_floor > 0");
    }
    activation.positive = true;
    activation.floor = floor->get<float>();
    return activation;
  }
  throw Error("model " + folder.id + ": unknown gain_activation '" + name + "'");
}

std::shared_ptr<const MultirateModel> buildModel(const ModelFolder& folder) {
  useUnoptimisedTorchScript();
  auto model = std::make_shared<MultirateModel>();
  model->folder = folder;
  try {
    const auto& architecture = folder.card.at("architecture");
    model->bands = architecture.at("bands").get<int>();
    model->downsampling = architecture.value("downsampling", 16);
    model->lambdaMin = folder.card.at("lambda_min").get<double>();
    model->lambdaMax = folder.card.at("lambda_max").get<double>();
    if (folder.card.at("codec").get<std::string>() != "MULTIRATE") {
      throw Error("it is not a MULTIRATE model");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("model " + folder.id + ": card.json: " + e.what());
  }
  if ((model->bands != 1 && model->bands != 3 && model->bands != 4) || !(model->lambdaMin > 0) ||
      !(model->lambdaMax >= model->lambdaMin)) {
    throw Error("model " + folder.id + ": card.json has an unsupported band count or lambda range");
  }
  const torch::jit::Module analysis = loadTorchScript(folder, "analysis.pt");
  try {
    model->analysisTransform = analysis.attr("g_a").toModule();
    model->modulation = analysis.attr("modulation").toModule();
    model->inputScale = analysis.attr("input_scale").toDouble();
  } catch (const c10::Error&) {
    throw Error("model " + folder.id + ": analysis.pt lacks g_a, modulation or input_scale");
  }
  model->hyperAnalysis = loadTorchScript(folder, "hyper_analysis.pt");
  model->synthesis = std::make_unique<SynthesisNetwork>(loadTorchScript(folder, "synthesis.pt"),
                                                        synthesisArithmetic(folder),
                                                        gainActivation(folder));
  model->sampleMax = model->synthesis->outputMax();
  model->hyperSynthesis = std::make_unique<IntegerHyperSynthesis>(
      readJson(folder, "hyper_synthesis_int.json"));
  model->hyperLatentTables = hyperLatentTables(folder);
  if (model->synthesis->outputBands() != model->bands ||
      model->hyperSynthesis->outputChannels() != model->synthesis->latentChannels() ||
      int(model->hyperLatentTables.size()) != model->hyperSynthesis->inputChannels() ||
      model->hyperSynthesis->scaleLevels() != int(defaultGaussianTables().size())) {
    throw Error("model " + folder.id + ": its files disagree on channel counts");
  }
  if (model->synthesis->upsampling() != model->downsampling) {
    throw Error("model " + folder.id + ": synthesis.pt upsamples " +
                std::to_string(model->synthesis->upsampling()) + "x, the card says " +
                std::to_string(model->downsampling) + "x");
  }
  std::vector<QuantizedCdf> allTables = model->hyperLatentTables;
  allTables.insert(allTables.end(), defaultGaussianTables().begin(),
                   defaultGaussianTables().end());
  model->tablesFingerprint = fingerprintHex(tablesFingerprint(allTables));
  return model;
}

}  // namespace

std::shared_ptr<const MultirateModel> loadMultirateModel(const std::string& id,
                                                         const std::string& expectedSha256) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const MultirateModel>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = loaded.find(id);
  if (found == loaded.end()) {
    found = loaded.emplace(id, buildModel(openModelFolder(id))).first;
  }
  if (!expectedSha256.empty()) requireModelVersion(found->second->folder, expectedSha256);
  return found->second;
}

}  // namespace nsat
