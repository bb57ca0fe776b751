#include "codecs/learned/vq_model.h"

#include <limits>
#include <map>
#include <mutex>

#include "codecs/entropy/rans_coder.h"
#include "codecs/learned/multirate_model.h"

namespace nsat {

namespace {

ContextReference referenceNamed(const std::string& name) {
  if (name == "left") return ContextReference::Left;
  if (name == "up") return ContextReference::Up;
  if (name == "group") return ContextReference::PreviousGroup;
  if (name == "level") return ContextReference::PreviousLevel;
  throw Error("unknown context reference '" + name + "'");
}

void readTables(VqModel& model, const nlohmann::json& tables) {
  if (tables.at("format").get<int>() != 1 || tables.at("levels").get<int>() != model.levels ||
      tables.at("groups").get<int>() != model.groups ||
      tables.at("entries").get<int>() != model.entries ||
      tables.at("group_channels").get<int>() != model.groupChannels) {
    throw Error("vq_tables.json disagrees with card.json");
  }
  const auto& context = tables.at("context");
  for (const auto& name : context.at("references")) {
    model.references.push_back(referenceNamed(name.get<std::string>()));
  }
  model.classCount = context.at("classes").get<int>();
  if (model.classCount < 1 || model.classCount > 16 || model.references.size() > 4) {
    throw Error("vq_tables.json has an unsupported context");
  }
  model.contextCount = 1;
  for (size_t j = 0; j < model.references.size(); ++j) model.contextCount *= model.classCount + 1;

  const auto& books = tables.at("codebooks");
  const auto& classes = tables.at("classes");
  const auto& frequencies = tables.at("frequencies");
  auto sized = [](const nlohmann::json& node, int count) {
    if (!node.is_array() || int(node.size()) != count) throw Error("vq_tables.json has a table of the wrong size");
  };
  sized(books, model.levels);
  sized(classes, model.levels);
  sized(frequencies, model.levels);
  for (int level = 0; level < model.levels; ++level) {
    sized(books[level], model.groups);
    sized(classes[level], model.groups);
    sized(frequencies[level], model.groups);
    for (int group = 0; group < model.groups; ++group) {
      sized(books[level][group], model.entries);
      sized(classes[level][group], model.entries);
      sized(frequencies[level][group], model.contextCount);
      for (const auto& entry : books[level][group]) {
        sized(entry, model.groupChannels);
        for (const auto& value : entry) model.codebooks.push_back(value.get<float>());
      }
      for (const auto& value : classes[level][group]) {
        const int entryClass = value.get<int>();
        if (entryClass < 0 || entryClass >= model.classCount) throw Error("vq_tables.json has a bad class");
        model.classes.push_back(uint8_t(entryClass));
      }
      for (const auto& table : frequencies[level][group]) {
        sized(table, model.entries + 1);  // the entries, then the escape
        model.tables.push_back(QuantizedCdf::fromFrequencies(table.get<std::vector<uint32_t>>(), 0));
      }
    }
  }
}

std::shared_ptr<const VqModel> buildModel(const ModelFolder& folder) {
  useUnoptimisedTorchScript();
  auto model = std::make_shared<VqModel>();
  model->folder = folder;
  try {
    if (folder.card.at("codec").get<std::string>() != "VQ") throw Error("it is not a VQ model");
    const auto& architecture = folder.card.at("architecture");
    model->bands = architecture.at("bands").get<int>();
    model->levels = architecture.at("levels").get<int>();
    model->groups = architecture.at("groups").get<int>();
    model->entries = architecture.at("entries").get<int>();
    model->groupChannels = architecture.at("group_channels").get<int>();
    model->downsampling = architecture.at("downsampling").get<int>();
    const std::string type = folder.card.at("sample_type").get<std::string>();
    if (type != "Byte" && type != "UInt16") throw Error("unsupported sample_type " + type);
    model->codesBytes = type == "Byte";
    model->inputScale = folder.card.at("input_scale").get<double>();
    if (model->bands < 1 || model->bands > 16 || model->levels < 1 || model->levels > 8 ||
        model->groups < 1 || model->entries < 2 || model->entries > 65535 ||
        model->groupChannels < 1 || !(model->inputScale > 0)) {
      throw Error("card.json has unsupported dimensions");
    }
    readTables(*model, readJson(folder, "vq_tables.json"));
  } catch (const nlohmann::json::exception& e) {
    throw Error("model " + folder.id + ": " + e.what());
  } catch (const Error& e) {
    throw Error("model " + folder.id + ": " + e.what());
  }
  model->analysis = loadTorchScript(folder, "analysis.pt");
  model->synthesis = std::make_unique<SynthesisNetwork>(loadTorchScript(folder, "synthesis.pt"),
                                                        synthesisArithmetic(folder));
  if (model->synthesis->latentChannels() != model->latentChannels() ||
      model->synthesis->outputBands() != model->bands ||
      model->synthesis->upsampling() != model->downsampling) {
    throw Error("model " + folder.id + ": its files disagree on channel counts or scale");
  }
  return model;
}

// Context of index (level, group, y, x) from the indices coded before it.
int contextOf(const VqModel& model, const VqIndices& indices, int level, int group, int y, int x) {
  const int missing = model.classCount;
  int context = 0, base = 1;
  for (ContextReference reference : model.references) {
    int entryClass = missing;
    switch (reference) {
      case ContextReference::Left:
        if (x > 0) entryClass = model.entryClass(level, group, indices.at(level, group, y, x - 1));
        break;
      case ContextReference::Up:
        if (y > 0) entryClass = model.entryClass(level, group, indices.at(level, group, y - 1, x));
        break;
      case ContextReference::PreviousGroup:
        if (group > 0) entryClass = model.entryClass(level, group - 1, indices.at(level, group - 1, y, x));
        break;
      case ContextReference::PreviousLevel:
        if (level > 0) entryClass = model.entryClass(level - 1, group, indices.at(level - 1, group, y, x));
        break;
    }
    context += entryClass * base;
    base *= model.classCount + 1;
  }
  return context;
}

}  // namespace

std::shared_ptr<const VqModel> loadVqModel(const std::string& id, const std::string& expectedSha256) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const VqModel>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = loaded.find(id);
  if (found == loaded.end()) found = loaded.emplace(id, buildModel(openModelFolder(id))).first;
  if (!expectedSha256.empty()) requireModelVersion(found->second->folder, expectedSha256);
  return found->second;
}

std::vector<uint8_t> encodeVqIndices(const VqModel& model, const VqIndices& indices) {
  RansEncoder encoder;
  for (int y = 0; y < indices.height; ++y)
    for (int x = 0; x < indices.width; ++x)
      for (int level = 0; level < indices.levels; ++level)
        for (int group = 0; group < model.groups; ++group) {
          encoder.encode(indices.at(level, group, y, x),
                         model.table(level, group, contextOf(model, indices, level, group, y, x)));
        }
  return encoder.finish();
}

VqIndices decodeVqIndices(const VqModel& model, const uint8_t* data, size_t size, int levels,
                          int height, int width) {
  if (levels < 1 || levels > model.levels) throw Error("VQ tile: level count out of range");
  VqIndices indices(levels, model.groups, height, width);
  RansDecoder decoder(data, size);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int level = 0; level < levels; ++level)
        for (int group = 0; group < model.groups; ++group) {
          const int32_t value =
              decoder.decode(model.table(level, group, contextOf(model, indices, level, group, y, x)));
          if (value < 0 || value >= model.entries) throw Error("VQ tile has an index out of range");
          indices.at(level, group, y, x) = uint16_t(value);
        }
  decoder.verifyEnd();
  return indices;
}

std::vector<float> vqLatent(const VqModel& model, const VqIndices& indices) {
  const size_t plane = size_t(indices.height) * indices.width;
  std::vector<float> latent(size_t(model.latentChannels()) * plane, 0.0f);
  for (int level = 0; level < indices.levels; ++level)
    for (int group = 0; group < model.groups; ++group)
      for (int y = 0; y < indices.height; ++y)
        for (int x = 0; x < indices.width; ++x) {
          const float* codeword = model.codeword(level, group, indices.at(level, group, y, x));
          const size_t position = size_t(y) * indices.width + x;
          for (int c = 0; c < model.groupChannels; ++c) {
            latent[(size_t(group) * model.groupChannels + c) * plane + position] += codeword[c];
          }
        }
  return latent;
}

VqIndices quantiseVqLatent(const VqModel& model, const float* y, int levels, int height, int width) {
  VqIndices indices(levels, model.groups, height, width);
  const size_t plane = size_t(height) * width;
  std::vector<float> residual(size_t(model.groupChannels));
  for (int group = 0; group < model.groups; ++group)
    for (size_t position = 0; position < plane; ++position) {
      for (int c = 0; c < model.groupChannels; ++c) {
        residual[size_t(c)] = y[(size_t(group) * model.groupChannels + c) * plane + position];
      }
      for (int level = 0; level < levels; ++level) {
        int best = 0;
        float bestDistance = std::numeric_limits<float>::infinity();
        for (int entry = 0; entry < model.entries; ++entry) {
          const float* codeword = model.codeword(level, group, entry);
          float distance = 0;
          for (int c = 0; c < model.groupChannels; ++c) {
            const float d = residual[size_t(c)] - codeword[c];
            distance += d * d;
          }
          if (distance < bestDistance) {
            bestDistance = distance;
            best = entry;
          }
        }
        const float* chosen = model.codeword(level, group, best);
        for (int c = 0; c < model.groupChannels; ++c) residual[size_t(c)] -= chosen[c];
        indices.at(level, group, int(position / width), int(position % width)) = uint16_t(best);
      }
    }
  return indices;
}

}  // namespace nsat
