// How the header JSON is stored on disk (FORMAT.md, "Header encodings"): as plain UTF-8
// (format 1.0), or as one zstd frame compressed against a fixed dictionary of typical
// headers (format 1.1), which brings a small file's header from ~700 bytes to ~60.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nsat {

enum class HeaderEncoding : uint8_t {
  Json = 0,             // UTF-8 JSON, then optional trailing spaces
  ZstdDictionary1 = 1,  // zstd frame against header dictionary 1, then optional zero bytes
  ZstdDictionary2 = 2,  // the same against dictionary 2 (1 plus the models shipped after it)
  ZstdDictionary3 = 3,  // the same against dictionary 3 (2 plus the VQ codec and its models)
  ZstdDictionary4 = 4,  // the same against dictionary 4 (3 plus the DIFFUSION codec and its models)
  ZstdDictionary5 = 5,  // the same against dictionary 5 (4 plus diffusion-vq-rgb8-v2)
  ZstdDictionary6 = 6,  // the same against dictionary 6 (5 plus the FIXED_QUALITY calibrations
                        // of the default models and diffusion-vq-rgb8-v3)
  ZstdDictionary7 = 7,  // the same against dictionary 7 (6 plus multirate-sar-db-v3)
  ZstdDictionary8 = 8,  // the same against dictionary 8 (7 plus multirate-rgb8-v5 and
                        // fixed-quality-rgb8-v3)
  ZstdDictionary9 = 9,  // the same against dictionary 9 (8 plus OVERLAP headers,
                        // multirate-rgb8-v6 and fixed-quality-rgb8-v4)
  ZstdDictionary10 = 10,  // the same against dictionary 10 (9 plus multirate-ms16-v6)
};
// What writers write: the newest dictionary.
constexpr HeaderEncoding kNewestHeaderEncoding = HeaderEncoding::ZstdDictionary10;

// The bytes of header dictionary `encoding` (container/header_dictionary_v<N>.txt, built
// into the library); empty for Json. A dictionary's bytes never change once files use it: a new
// one gets a new encoding number.
std::string headerDictionary(HeaderEncoding encoding);

// Encodes header JSON text, then pads it to at least `minimumSize` bytes (spaces for
// Json, zero bytes after the frame otherwise) so that a later header can replace it.
std::vector<uint8_t> encodeHeader(const std::string& json, HeaderEncoding encoding,
                                  size_t minimumSize = 0);

// Decodes stored header bytes to JSON text; throws nsat::Error on anything malformed,
// checking the declared decoded size against `maxDecodedSize` before allocating.
std::string decodeHeader(const uint8_t* bytes, size_t size, HeaderEncoding encoding,
                         size_t maxDecodedSize);

}  // namespace nsat
