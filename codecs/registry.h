// Codecs by name. The driver asks here for the codec a creation option or a file
// header names; each codec registers how it validates options and how it is rebuilt
// from the parameters stored in a file.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codecs/codec.h"
#include "codecs/options.h"

namespace nsat {

// What the driver knows of a codec without building it (nor loading the learned-codec
// module): its name, what it is, and the creation options it reads.
struct CodecDeclaration {
  std::string name;
  std::string description;
  // The driver warns about any codec option the chosen codec does not declare.
  std::vector<OptionDeclaration> options;
  bool learned = false;             // provided by nsat_learned.so
  bool mayStoreAuxiliary = false;   // opening such a file builds the codec to describe it
  bool storesLatentIndices = false;  // its files offer NSAT_LATENT:<file> (VQ)
  // The driver extracts the source's scene condition (metadata/scene_condition.h, with the
  // creation options that override it) and hands it to parametersFromOptions as JSON
  // under kSceneConditionOption (DIFFUSION).
  bool conditionedOnScene = false;
  // Open options this codec reads; the driver passes those given to create() under
  // kOpenOptionsParameter (never stored in a file).
  std::vector<OptionDeclaration> openOptions;
  // BLOCKSIZE when none is given; 0: the driver's default (MULTIRATE: larger tiles, so
  // that its OVERLAP margins cost less).
  int defaultBlockSize = 0;
  bool readsOption(const std::string& name) const;
};

constexpr const char* kSceneConditionOption = "NSAT_SCENE_CONDITION";
constexpr const char* kOpenOptionsParameter = "open_options";
// The option of the codecs with a Codec::contextMargin (MULTIRATE): the driver sets it to 0
// for an image of one tile, which has no neighbours to code.
constexpr const char* kContextMarginOption = "OVERLAP";

struct CodecDescriptor : CodecDeclaration {
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
// Every codec that exists, built-in then learned, without loading the module.
const std::vector<CodecDeclaration>& codecCatalogue();
// nullptr if no codec of the catalogue has this (upper-case) name.
const CodecDeclaration* findCodecDeclaration(const std::string& upperCaseName);
// "LOSSLESS, JPEG, ..." (the catalogue) or, with a filter, the codecs that accept that
// type and band count (this one loads the module to ask the learned codecs).
std::string codecNames(DataType type, int bands);
std::string codecNames();

}  // namespace nsat
