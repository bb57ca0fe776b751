#include "codecs/options.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <strings.h>

#include "codecs/error.h"

namespace nsat {

std::string optionNumberText(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.15g", value);
  return text;
}

namespace {

Error invalidValue(const std::string& name, const std::string& value, const std::string& expected) {
  return Error(name + "=" + value + " is invalid: expected " + expected, ErrorKind::InvalidOption);
}

// Strict: the whole text must be the number (" 256", "256abc", "0x100" and "" are refused).
bool parseNumber(const std::string& text, double& value) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])) ||
      text.find_first_of("xXnN") != std::string::npos) {  // hex, inf, nan
    return false;
  }
  char* end = nullptr;
  errno = 0;
  value = std::strtod(text.c_str(), &end);
  return errno == 0 && end != text.c_str() && *end == '\0' && std::isfinite(value);
}

bool parseInteger(const std::string& text, long long& value) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  errno = 0;
  value = std::strtoll(text.c_str(), &end, 10);
  return errno == 0 && end != text.c_str() && *end == '\0';
}

}  // namespace

OptionDeclaration integerOptionDeclaration(std::string name, int minimum, int maximum,
                                           int defaultValue, std::string help) {
  OptionDeclaration option;
  option.name = std::move(name);
  option.type = OptionDeclaration::Type::Integer;
  option.help = std::move(help);
  option.defaultValue = std::to_string(defaultValue);
  option.minimum = minimum;
  option.maximum = maximum;
  return option;
}

OptionDeclaration numberOptionDeclaration(std::string name, std::string help) {
  OptionDeclaration option;
  option.name = std::move(name);
  option.type = OptionDeclaration::Type::Number;
  option.help = std::move(help);
  return option;
}

OptionDeclaration choiceOptionDeclaration(std::string name, std::vector<std::string> values,
                                          std::string defaultValue, std::string help) {
  OptionDeclaration option;
  option.name = std::move(name);
  option.type = OptionDeclaration::Type::Choice;
  option.help = std::move(help);
  option.defaultValue = std::move(defaultValue);
  option.values = std::move(values);
  return option;
}

OptionDeclaration textOptionDeclaration(std::string name, std::string help,
                                        std::string defaultValue) {
  OptionDeclaration option;
  option.name = std::move(name);
  option.help = std::move(help);
  option.defaultValue = std::move(defaultValue);
  return option;
}

const OptionDeclaration& declarationOf(const std::vector<OptionDeclaration>& options,
                                       const std::string& name) {
  for (const auto& option : options) {
    if (option.name == name) return option;
  }
  throw Error("internal error: option " + name + " is not declared");
}

int integerOption(const CodecOptions& options, const OptionDeclaration& declaration) {
  const auto found = options.find(declaration.name);
  const std::string& text = found == options.end() ? declaration.defaultValue : found->second;
  long long value = 0;
  const double minimum = declaration.minimum.value_or(-2147483648.0);
  const double maximum = declaration.maximum.value_or(2147483647.0);
  if (!parseInteger(text, value) || double(value) < minimum || double(value) > maximum) {
    throw invalidValue(declaration.name, text,
                       "an integer from " + optionNumberText(minimum) + " to " + optionNumberText(maximum));
  }
  return int(value);
}

double numberOption(const CodecOptions& options, const OptionDeclaration& declaration,
                    double minimum, double maximum) {
  const std::string& text = options.at(declaration.name);
  double value = 0;
  if (!parseNumber(text, value) || !(value >= minimum && value <= maximum)) {
    throw invalidValue(declaration.name, text,
                       "a number from " + optionNumberText(minimum) + " to " + optionNumberText(maximum));
  }
  return value;
}

std::string choiceOption(const CodecOptions& options, const OptionDeclaration& declaration) {
  const auto found = options.find(declaration.name);
  const std::string& text = found == options.end() ? declaration.defaultValue : found->second;
  std::string listed;
  for (const auto& value : declaration.values) {
    if (strcasecmp(value.c_str(), text.c_str()) == 0) return value;
    listed += (listed.empty() ? "" : ", ") + value;
  }
  throw invalidValue(declaration.name, text, "one of " + listed);
}

}  // namespace nsat
