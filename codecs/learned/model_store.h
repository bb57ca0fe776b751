// Where the learned codecs find their weights, and the check that a model on disk is
// the one a file was written with.
//
// A model is a folder `<root>/<id>/` holding `card.json` and the files the card lists
// with their SHA-256. The model's identity is the SHA-256 of card.json, which covers
// every other file through those hashes; it is stored in every .nsat that uses it.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "codecs/codec.h"

namespace nsat {

// Folders searched for models, in order: $NSAT_MODELS_DIR, the source tree's models/
// (so a build tree never picks up older installed weights), then the installed share
// folder (share/nsat/models).
std::vector<std::string> modelSearchPath();

struct ModelFolder {
  std::string id;
  std::string path;  // folder, no trailing slash
  std::string cardSha256;
  nlohmann::json card;

  std::string file(const std::string& name) const { return path + "/" + name; }
  ModelRef ref() const { return {id, cardSha256}; }
};

// Finds model `id`, reads its card and checks every listed file's SHA-256. Throws
// nsat::Error naming the model and what is wrong (missing, unreadable, altered).
ModelFolder openModelFolder(const std::string& id);

// Throws nsat::Error unless `model` is the version a file was written with.
void requireModelVersion(const ModelFolder& model, const std::string& expectedSha256);

std::string sha256File(const std::string& path);
std::string readTextFile(const std::string& path);

}  // namespace nsat
