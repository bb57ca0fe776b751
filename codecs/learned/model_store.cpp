#include "codecs/learned/model_store.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <sys/stat.h>

namespace nsat {

namespace {

bool isDirectory(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

std::string hex(const unsigned char* bytes, unsigned int size) {
  static const char* digits = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < size; ++i) {
    text += digits[bytes[i] >> 4];
    text += digits[bytes[i] & 15];
  }
  return text;
}

std::string searchPathText() {
  std::string text;
  for (const auto& folder : modelSearchPath()) text += (text.empty() ? "" : ", ") + folder;
  return text;
}

}  // namespace

std::vector<std::string> modelSearchPath() {
  std::vector<std::string> folders;
  if (const char* overridden = std::getenv("NSAT_MODELS_DIR")) folders.push_back(overridden);
  folders.push_back(NSAT_SOURCE_MODELS_DIR);
  folders.push_back(NSAT_INSTALLED_MODELS_DIR);
  return folders;
}

std::string readTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string sha256File(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    throw Error("SHA-256 is unavailable (OpenSSL)");
  }
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), std::streamsize(buffer.size()));
    EVP_DigestUpdate(context.get(), buffer.data(), size_t(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(context.get(), digest, &size);
  return hex(digest, size);
}

ModelFolder openModelFolder(const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || id[0] == '.') {
    throw Error("'" + id + "' is not a model name", ErrorKind::InvalidOption);
  }
  ModelFolder model;
  model.id = id;
  for (const auto& root : modelSearchPath()) {
    if (isDirectory(root + "/" + id)) {
      model.path = root + "/" + id;
      break;
    }
  }
  if (model.path.empty()) {
    throw Error("model " + id + " is not installed (looked in " + searchPathText() +
                    "; set NSAT_MODELS_DIR to the folder that holds it)",
                ErrorKind::FileIO);
  }
  const std::string cardPath = model.file("card.json");
  model.cardSha256 = sha256File(cardPath);
  try {
    model.card = nlohmann::json::parse(readTextFile(cardPath));
    if (model.card.at("id").get<std::string>() != id) {
      throw Error("its card names it " + model.card.at("id").get<std::string>());
    }
    for (const auto& [name, expected] : model.card.at("files").items()) {
      if (sha256File(model.file(name)) != expected.get<std::string>()) {
        throw Error(name + " does not match the SHA-256 in card.json (altered or damaged)");
      }
    }
  } catch (const std::exception& e) {
    throw Error("model " + id + " in " + model.path + " is unusable: " + e.what());
  }
  return model;
}

void requireModelVersion(const ModelFolder& model, const std::string& expectedSha256) {
  if (model.cardSha256 != expectedSha256) {
    throw Error("model " + model.id + " in " + model.path + " is not the one this file was " +
                "written with (card.json SHA-256 " + model.cardSha256 + ", the file expects " +
                expectedSha256 + ")");
  }
}

}  // namespace nsat
