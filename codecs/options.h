// Options are declared once, here in this form: each codec's descriptor lists its own,
// the driver lists its own, and the CreationOptionList XML, the warnings about options
// a codec ignores, the bounds and defaults the parsers apply and the README's option
// table (scripts/options_table.py, checked by a test) are all made from them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nsat {

// Creation options addressed to the codec (QUALITY, ZSTD_LEVEL, ...), keys upper-case.
using CodecOptions = std::map<std::string, std::string>;

struct OptionDeclaration {
  enum class Type { Integer, Number, Choice, Text };
  std::string name;
  Type type = Type::Text;
  std::string help;          // what it does, one or two sentences (gdalinfo, QGIS, README)
  std::string defaultValue;  // as the user would write it; empty: none or computed
  std::optional<double> minimum, maximum;  // Integer and Number
  std::vector<std::string> values;         // Choice, in the order they are listed
};

OptionDeclaration integerOptionDeclaration(std::string name, int minimum, int maximum,
                                           int defaultValue, std::string help);
OptionDeclaration numberOptionDeclaration(std::string name, std::string help);
OptionDeclaration choiceOptionDeclaration(std::string name, std::vector<std::string> values,
                                          std::string defaultValue, std::string help);
OptionDeclaration textOptionDeclaration(std::string name, std::string help,
                                        std::string defaultValue = "");

// A bound or default as the user reads it: "100", "0.5" (no trailing zeros).
std::string optionNumberText(double value);

// The declaration of `name` in `options`; throws nsat::Error (internal) if absent.
const OptionDeclaration& declarationOf(const std::vector<OptionDeclaration>& options,
                                       const std::string& name);

// Parsers: the value given, else the declared default. A value that is not of the
// declared type or outside its range or list throws nsat::Error (InvalidOption).
int integerOption(const CodecOptions& options, const OptionDeclaration& declaration);
// `minimum`/`maximum` when the range depends on more than the declaration (a model's
// lambda range); the option must be present.
double numberOption(const CodecOptions& options, const OptionDeclaration& declaration,
                    double minimum, double maximum);
// The listed value that matches case-insensitively (so "global" gives "GLOBAL").
std::string choiceOption(const CodecOptions& options, const OptionDeclaration& declaration);

}  // namespace nsat
