#include "codecs/registry.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

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

std::string joinNames(const std::function<bool(const CodecDescriptor&)>& keep) {
  std::string names;
  for (const auto& codec : allCodecs()) {
    if (!keep(codec)) continue;
    if (!names.empty()) names += ", ";
    names += codec.name;
  }
  return names;
}

}  // namespace

const std::vector<CodecDescriptor>& allCodecs() {
  static const std::vector<CodecDescriptor> codecs = {
      losslessCodecDescriptor(), jpegCodecDescriptor(), rdicCodecDescriptor()};
  return codecs;
}

const CodecDescriptor* findCodec(const std::string& name) {
  const std::string wanted = upper(name);
  for (const auto& codec : allCodecs()) {
    if (codec.name == wanted) return &codec;
  }
  if (!isLearnedCodecName(wanted)) return nullptr;
  for (const auto& codec : learnedCodecs()) {  // throws if the module is missing
    if (codec.name == wanted) return &codec;
  }
  throw Error("CODEC=" + wanted + " is not provided by the learned-codec module " +
              learnedModulePath());
}

std::string codecNames() {
  return joinNames([](const CodecDescriptor&) { return true; });
}

std::string codecNames(DataType type, int bands) {
  return joinNames(
      [&](const CodecDescriptor& codec) { return codec.rejectReason(type, bands).empty(); });
}

int intOption(const CodecOptions& options, const std::string& key, int defaultValue,
              int minValue, int maxValue) {
  const auto found = options.find(key);
  if (found == options.end()) return defaultValue;
  const char* text = found->second.c_str();
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < minValue || value > maxValue) {
    throw Error(key + "=" + found->second + " is invalid: expected an integer from " +
                std::to_string(minValue) + " to " + std::to_string(maxValue));
  }
  return static_cast<int>(value);
}

double doubleOption(const CodecOptions& options, const std::string& key, double minValue,
                    double maxValue) {
  const std::string& text = options.at(key);
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || *end != '\0' || !(value >= minValue && value <= maxValue)) {
    throw Error(key + "=" + text + " is invalid: expected a number from " +
                std::to_string(minValue) + " to " + std::to_string(maxValue));
  }
  return value;
}

}  // namespace nsat
