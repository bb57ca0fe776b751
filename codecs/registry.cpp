#include "codecs/registry.h"

#include <algorithm>
#include <cctype>

#include "codecs/jpeg_codec.h"
#include "codecs/learned_module.h"
#include "codecs/lossless_codec.h"
#include "codecs/rdic_codec.h"

namespace nsat {

namespace {

std::string upper(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return text;
}

void appendName(std::string& names, const std::string& name) {
  if (!names.empty()) names += ", ";
  names += name;
}

}  // namespace

bool CodecDeclaration::readsOption(const std::string& optionName) const {
  return std::any_of(options.begin(), options.end(),
                     [&](const OptionDeclaration& option) { return option.name == optionName; });
}

const std::vector<CodecDescriptor>& allCodecs() {
  static const std::vector<CodecDescriptor> codecs = {
      losslessCodecDescriptor(), jpegCodecDescriptor(), rdicCodecDescriptor()};
  return codecs;
}

const std::vector<CodecDeclaration>& codecCatalogue() {
  static const std::vector<CodecDeclaration> catalogue = [] {
    std::vector<CodecDeclaration> all(allCodecs().begin(), allCodecs().end());
    const auto& learned = learnedCodecDeclarations();
    all.insert(all.end(), learned.begin(), learned.end());
    return all;
  }();
  return catalogue;
}

const CodecDeclaration* findCodecDeclaration(const std::string& upperCaseName) {
  for (const auto& codec : codecCatalogue()) {
    if (codec.name == upperCaseName) return &codec;
  }
  return nullptr;
}

const CodecDescriptor* findCodec(const std::string& name) {
  const std::string wanted = upper(name);
  for (const auto& codec : allCodecs()) {
    if (codec.name == wanted) return &codec;
  }
  const CodecDeclaration* declared = findCodecDeclaration(wanted);
  if (!declared || !declared->learned) return nullptr;
  for (const auto& codec : learnedCodecs()) {  // throws if the module is missing
    if (codec.name == wanted) return &codec;
  }
  throw Error("CODEC=" + wanted + " is not provided by the learned-codec module " +
                  learnedModulePath(),
              ErrorKind::NotSupported);
}

std::string codecNames() {
  std::string names;
  for (const auto& codec : codecCatalogue()) appendName(names, codec.name);
  return names;
}

std::string codecNames(DataType type, int bands) {
  std::string names;
  for (const auto& codec : allCodecs()) {
    if (codec.rejectReason(type, bands).empty()) appendName(names, codec.name);
  }
  try {
    for (const auto& codec : learnedCodecs()) {
      if (codec.rejectReason(type, bands).empty()) appendName(names, codec.name);
    }
  } catch (const Error&) {
    // No learned-codec module: only the built-in codecs can be offered.
  }
  return names;
}

}  // namespace nsat
