#include "driver/nsat_options.h"

#include <cpl_conv.h>
#include <cpl_string.h>

#include <algorithm>

#include "codecs/registry.h"
#include "codecs/thread_pool.h"

namespace nsat {

namespace {

constexpr const char* kThreadHelpTail =
    "a number or ALL_CPUS (default: GDAL_NUM_THREADS, else ALL_CPUS); the result is identical "
    "for any value";

std::string xmlText(const std::string& text) {
  char* escaped = CPLEscapeString(text.c_str(), int(text.size()), CPLES_XML);
  std::string result = escaped;
  CPLFree(escaped);
  return result;
}

const char* xmlType(OptionDeclaration::Type type) {
  switch (type) {
    case OptionDeclaration::Type::Integer: return "int";
    case OptionDeclaration::Type::Number: return "float";
    case OptionDeclaration::Type::Choice: return "string-select";
    case OptionDeclaration::Type::Text: return "string";
  }
  return "string";
}

// One <Option>: `declaration` gives the name, type, range and values; `description`
// and `defaultValue` may merge several codecs' declarations.
std::string optionXml(const OptionDeclaration& declaration, const std::string& description,
                      const std::string& defaultValue, bool sameRange) {
  // Double quotes: CPLES_XML escapes them, and help texts contain apostrophes.
  std::string xml = "<Option name=\"" + declaration.name + "\" type=\"" +
                    xmlType(declaration.type) + "\"";
  if (sameRange && declaration.minimum) xml += " min=\"" + optionNumberText(*declaration.minimum) + "\"";
  if (sameRange && declaration.maximum) xml += " max=\"" + optionNumberText(*declaration.maximum) + "\"";
  if (!defaultValue.empty()) xml += " default=\"" + xmlText(defaultValue) + "\"";
  xml += " description=\"" + xmlText(description) + "\"";
  if (declaration.values.empty()) return xml + "/>";
  xml += ">";
  for (const auto& value : declaration.values) xml += "<Value>" + xmlText(value) + "</Value>";
  return xml + "</Option>";
}

struct CodecOption {
  const CodecDeclaration* codec;
  const OptionDeclaration* option;
};

std::string codecOptionXml(const std::vector<CodecOption>& readers) {
  const OptionDeclaration& first = *readers.front().option;
  const auto same = [&](auto field) {
    return std::all_of(readers.begin(), readers.end(),
                       [&](const CodecOption& r) { return field(*r.option) == field(first); });
  };
  const bool sameDefault = same([](const OptionDeclaration& o) { return o.defaultValue; });
  const bool sameRange = same([](const OptionDeclaration& o) { return o.minimum; }) &&
                         same([](const OptionDeclaration& o) { return o.maximum; });
  std::string description;
  for (const auto& reader : readers) {
    if (!description.empty()) description += " ";
    description += reader.codec->name;
    if (!sameDefault && !reader.option->defaultValue.empty()) {
      description += " (default " + reader.option->defaultValue + ")";
    }
    description += ": " + reader.option->help + ".";
  }
  return optionXml(first, description, sameDefault ? first.defaultValue : "", sameRange);
}

}  // namespace

const std::vector<OptionDeclaration>& driverCreationOptions() {
  static const std::vector<OptionDeclaration> options = [] {
    std::vector<std::string> codecs;
    std::string ownBlockSizes;
    for (const auto& codec : codecCatalogue()) {
      codecs.push_back(codec.name);
      if (codec.defaultBlockSize > 0) {
        ownBlockSizes += "; " + std::to_string(codec.defaultBlockSize) + " for " + codec.name;
      }
    }
    return std::vector<OptionDeclaration>{
        choiceOptionDeclaration("CODEC", codecs, "LOSSLESS", "tile codec (see Codecs)"),
        integerOptionDeclaration("BLOCKSIZE", 16, 4096, 256,
                                 "tile width and height in pixels, a multiple of 16 (default 256" +
                                     ownBlockSizes + ")"),
        choiceOptionDeclaration(
            "OVERVIEWS", {"AUTO", "NONE"}, "AUTO",
            "AUTO stores internal overviews, halving until the larger side is at most 256 px"),
        choiceOptionDeclaration(
            "OVERVIEW_RESAMPLING",
            {"NEAREST", "AVERAGE", "BILINEAR", "CUBIC", "CUBICSPLINE", "LANCZOS", "MODE", "GAUSS",
             "RMS"},
            "AVERAGE", "how internal overviews are computed (GDAL's own resampling)"),
        textOptionDeclaration("NUM_THREADS",
                              std::string("tiles encoded in parallel: ") + kThreadHelpTail,
                              "ALL_CPUS")};
  }();
  return options;
}

const std::vector<OptionDeclaration>& driverOpenOptions() {
  static const std::vector<OptionDeclaration> options = {textOptionDeclaration(
      "NUM_THREADS", std::string("threads that decode the tiles of one read: ") + kThreadHelpTail,
      "ALL_CPUS")};
  return options;
}

int threadCountOption(const char* text) {
  if (!text) {
    const int configured = parseThreadCount(CPLGetConfigOption("GDAL_NUM_THREADS", nullptr));
    return configured > 0 ? configured : parseThreadCount("ALL_CPUS");
  }
  const int threads = parseThreadCount(text);
  if (threads == 0) {
    throw Error(std::string("NUM_THREADS=") + text +
                    " is invalid: expected a number of threads (1..1024) or ALL_CPUS",
                ErrorKind::InvalidOption);
  }
  return threads;
}

std::string creationOptionListXml() {
  std::string xml = "<CreationOptionList>";
  for (const auto& option : driverCreationOptions()) {
    xml += optionXml(option, option.help, option.defaultValue, true);
  }
  // Codec options in the order the catalogue first declares them.
  std::vector<std::string> names;
  for (const auto& codec : codecCatalogue()) {
    for (const auto& option : codec.options) {
      if (std::find(names.begin(), names.end(), option.name) == names.end()) {
        names.push_back(option.name);
      }
    }
  }
  for (const auto& name : names) {
    std::vector<CodecOption> readers;
    for (const auto& codec : codecCatalogue()) {
      for (const auto& option : codec.options) {
        if (option.name == name) readers.push_back({&codec, &option});
      }
    }
    xml += codecOptionXml(readers);
  }
  return xml + "</CreationOptionList>";
}

std::string openOptionListXml() {
  std::string xml = "<OpenOptionList>";
  for (const auto& option : driverOpenOptions()) {
    xml += optionXml(option, option.help, option.defaultValue, true);
  }
  for (const auto& codec : codecCatalogue()) {
    for (const auto& option : codec.openOptions) {
      xml += optionXml(option, option.help, option.defaultValue, true);
    }
  }
  return xml + "</OpenOptionList>";
}

}  // namespace nsat
