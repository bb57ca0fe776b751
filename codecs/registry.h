// Codecs by name. The driver asks here for the codec a creation option or a file
// header names; each codec registers how it validates options and how it is rebuilt
// from the parameters stored in a file.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codecs/codec.h"

namespace nsat {

struct CodecDescriptor {
  std::string name;
  std::string description;
  // Creation options this codec reads; the driver warns about any other codec option.
  std::vector<std::string> optionNames;
  // Empty when the codec accepts tiles of this type and band count, else why not.
  std::function<std::string(DataType, int bands)> rejectReason;
  // Validates user options for an image of this type and band count (already accepted
  // by rejectReason) and fills defaults; throws nsat::Error on a bad value.
  std::function<nlohmann::json(const CodecOptions&, DataType, int bands)> parametersFromOptions;
  // Rebuilds the codec from stored parameters; throws nsat::Error if they are invalid.
  std::function<std::unique_ptr<Codec>(const nlohmann::json&)> create;
};

// nullptr if no codec has this name (case-insensitive). A learned codec's name loads
// the learned-codec module first; throws nsat::Error naming it if that fails.
const CodecDescriptor* findCodec(const std::string& name);
// The built-in codecs (no LibTorch needed).
const std::vector<CodecDescriptor>& allCodecs();
// "LOSSLESS, JPEG" or, with a filter, the codecs that accept that type and band count.
std::string codecNames(DataType type, int bands);
std::string codecNames();

// Parsing helpers shared by codecs' parametersFromOptions.
int intOption(const CodecOptions& options, const std::string& key, int defaultValue,
              int minValue, int maxValue);
// `key` must be present; throws nsat::Error unless it is a number in [minValue, maxValue].
double doubleOption(const CodecOptions& options, const std::string& key, double minValue,
                    double maxValue);

}  // namespace nsat
