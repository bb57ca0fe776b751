// What the codecs built on a MULTIRATE model share (MULTIRATE itself, FIXED_QUALITY):
// band grouping, the 16-bit sample mapping, the analysis transform, entropy coding of a
// modulated latent, and reconstruction from latent symbols with a lambda per latent
// position.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "codecs/codec.h"
#include "codecs/learned/multirate_model.h"

namespace nsat {

// Which image bands are coded together. A 3-band model codes consecutive triplets and
// any band left over alone, as grey (replicated to 3 channels, outputs averaged); a
// 1-band model codes every band alone.
struct BandGroup {
  int firstBand;
  int bandCount;
};
std::vector<BandGroup> bandGroups(int modelBands, int imageBands);

// 16-bit and Float32 groups are mapped into the range the single-band model was trained
// on (EuroSAT L1C reflectance, a few thousand DN): model value = (sample - offset) / 2^shift
// + base. Integer samples: offset = the tile's minimum, the smallest shift >= 0 that fits
// the tile's range into 4096; powers of two keep the mapping exact, and a scene of
// 12-bit-like DNs (Landsat 8 up to 65535) is coded at a precision relative to its own
// range. Float32 samples (backscatter in dB, spectral components): offset = the tile's
// minimum (a float32), the smallest shift >= kMinFloatShift (it may be negative: a range
// of 30 dB is spread over 3840 model levels). Byte groups are not mapped.
struct SampleMapping {
  double offset = 0;
  int shift = 0;
  float base = 0;

  float toModel(double sample) const;
  double fromModel(float value) const;
};
constexpr int kMaxSampleShift = 16;
constexpr int kMinFloatShift = -24;
constexpr int kMaxFloatShift = 127;
constexpr float kMappedBase = 256;

// A group's mapping in a payload: integer samples as u32 offset + u8 shift, Float32
// samples as float32 offset + i8 shift. Readers check the fields (nsat::Error).
void appendSampleMapping(std::vector<uint8_t>& payload, DataType type,
                         const SampleMapping& mapping);
SampleMapping readSampleMapping(class ByteReader& reader, DataType type, const std::string& codec);

// Empty if the MULTIRATE models can code this sample type, else why not. FIXED_QUALITY
// (PSNR against the type's peak) codes integers only; MULTIRATE codes Float32 too.
std::string multirateRejectReason(DataType type, int bands);
std::string multirateFloatRejectReason(DataType type, int bands);

double sampleAt(const TileShape& shape, const void* pixels, size_t index);
void storeSample(const TileShape& shape, void* pixels, size_t index, double value);

// The MULTIRATE model that a file's codec parameters name (`<key>` and `<key>_sha256`),
// refused unless it is that version, builds the entropy tables the writer used
// ("tables") and the file's "payload_version" is `payloadVersion`. Throws nsat::Error
// (or nlohmann::json::exception for missing fields).
std::shared_ptr<const MultirateModel> modelOfFile(const nlohmann::json& parameters,
                                                  const std::string& key, int payloadVersion);

class MultirateEngine {
 public:
  // `codesFloat32`: the codec takes Float32 tiles (MULTIRATE), not only integers.
  MultirateEngine(std::shared_ptr<const MultirateModel> model, std::string codecName,
                  bool codesFloat32 = false);

  const MultirateModel& model() const { return *model_; }
  ModelRef modelRef() const { return model_->folder.ref(); }
  // Throws nsat::Error unless this model can code tiles of this type.
  void checkShape(const TileShape& shape) const;
  bool mapsSamples() const { return !model_->codesBytes(); }
  std::vector<BandGroup> groups(const TileShape& shape) const {
    return bandGroups(model_->bands, shape.bands);
  }

  SampleMapping mappingFor(const TileShape& shape, const void* pixels,
                           const BandGroup& group) const;
  // g_a of one band group, padded to whole latent cells by edge replication, before any
  // lambda gain: (1, M, h, w).
  at::Tensor analyse(const TileShape& shape, const void* pixels, const BandGroup& group,
                     const SampleMapping& mapping) const;
  // The modulation gain for lambda: (M).
  at::Tensor modulationGain(float lambda) const;
  // The rANS stream of z then y for a latent already multiplied by its gain. Symbols
  // of `prefix` (side information) are coded first, each with its table.
  struct PrefixSymbol {
    int32_t value;
    const QuantizedCdf* table;
  };
  std::vector<uint8_t> codeModulatedLatent(const at::Tensor& modulated,
                                           const std::vector<PrefixSymbol>& prefix = {}) const;

  // Decoder side: the symbols of y (M x height x width) from a stream positioned after
  // any prefix symbols, which `decoder` has already read.
  std::vector<int32_t> decodeLatent(class RansDecoder& decoder, int height, int width) const;
  // Writes a band group's samples from latent values already multiplied by the
  // demodulation gain (M x height x width), cropped to the tile and mapped back.
  void reconstruct(const TileShape& shape, const BandGroup& group, const SampleMapping& mapping,
                   const std::vector<float>& scaledLatent, int height, int width,
                   void* pixels, const Parallelism& parallelism) const;
  // y symbols times the demodulation gain of each position's lambda.
  std::vector<float> demodulate(const std::vector<int32_t>& y,
                                const std::vector<float>& lambdaPerPosition) const;

 private:
  std::shared_ptr<const MultirateModel> model_;
  std::string codecName_;
  bool codesFloat32_;
};

}  // namespace nsat
