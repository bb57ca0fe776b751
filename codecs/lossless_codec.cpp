#include "codecs/lossless_codec.h"

#include <cstring>

#include <zstd.h>

namespace nsat {

namespace {

constexpr int kDefaultZstdLevel = 9;

// Residuals of each sample against its left neighbour, modulo 2^bits. Working on the
// bit pattern (floats included) keeps the round trip exact whatever the values.
template <typename Word>
void predict(const Word* samples, Word* residuals, size_t width, size_t rows) {
  for (size_t row = 0; row < rows; ++row) {
    const Word* in = samples + row * width;
    Word* out = residuals + row * width;
    Word previous = 0;
    for (size_t x = 0; x < width; ++x) {
      out[x] = static_cast<Word>(in[x] - previous);
      previous = in[x];
    }
  }
}

template <typename Word>
void unpredict(Word* samples, size_t width, size_t rows) {
  for (size_t row = 0; row < rows; ++row) {
    Word* line = samples + row * width;
    Word previous = 0;
    for (size_t x = 0; x < width; ++x) {
      previous = static_cast<Word>(previous + line[x]);
      line[x] = previous;
    }
  }
}

// Residuals are small numbers: their high bytes are mostly 0x00/0xFF, so grouping
// byte k of every word together gives zstd long runs.
template <typename Word>
void splitBytePlanes(const Word* words, size_t count, uint8_t* planes) {
  for (size_t i = 0; i < count; ++i) {
    Word value = words[i];
    for (size_t byte = 0; byte < sizeof(Word); ++byte) {
      planes[byte * count + i] = static_cast<uint8_t>(value & 0xFF);
      value = static_cast<Word>(value >> 8);
    }
  }
}

template <typename Word>
void joinBytePlanes(const uint8_t* planes, size_t count, Word* words) {
  for (size_t i = 0; i < count; ++i) {
    Word value = 0;
    for (size_t byte = sizeof(Word); byte-- > 0;) {
      value = static_cast<Word>((value << 8) | planes[byte * count + i]);
    }
    words[i] = value;
  }
}

class LosslessCodec final : public Codec {
 public:
  explicit LosslessCodec(int zstdLevel) : zstdLevel_(zstdLevel) {}

  std::string name() const override { return "LOSSLESS"; }
  bool isLossless() const override { return true; }
  nlohmann::json parameters() const override {
    return {{"predictor", "horizontal"}, {"zstd_level", zstdLevel_}};
  }

  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                              const EncodeGuide&) const override {
    switch (dataTypeSize(shape.type)) {
      case 1: return encodeWords<uint8_t>(shape, pixels);
      case 2: return encodeWords<uint16_t>(shape, pixels);
      case 4: return encodeWords<uint32_t>(shape, pixels);
      default: return encodeWords<uint64_t>(shape, pixels);
    }
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& /*parallelism*/) const override {
    switch (dataTypeSize(shape.type)) {
      case 1: return decodeWords<uint8_t>(shape, data, size, pixels);
      case 2: return decodeWords<uint16_t>(shape, data, size, pixels);
      case 4: return decodeWords<uint32_t>(shape, data, size, pixels);
      default: return decodeWords<uint64_t>(shape, data, size, pixels);
    }
  }

 private:
  template <typename Word>
  std::vector<uint8_t> encodeWords(const TileShape& shape, const void* pixels) const {
    const size_t count = shape.pixelsPerBand() * shape.bands;
    std::vector<Word> residuals(count);
    predict(static_cast<const Word*>(pixels), residuals.data(), shape.width,
            static_cast<size_t>(shape.height) * shape.bands);
    std::vector<uint8_t> planes(count * sizeof(Word));
    splitBytePlanes(residuals.data(), count, planes.data());

    std::vector<uint8_t> out(ZSTD_compressBound(planes.size()));
    const size_t written =
        ZSTD_compress(out.data(), out.size(), planes.data(), planes.size(), zstdLevel_);
    if (ZSTD_isError(written)) {
      throw Error(std::string("zstd compression failed: ") + ZSTD_getErrorName(written));
    }
    out.resize(written);
    return out;
  }

  template <typename Word>
  void decodeWords(const TileShape& shape, const uint8_t* data, size_t size,
                   void* pixels) const {
    const size_t count = shape.pixelsPerBand() * shape.bands;
    const size_t expected = count * sizeof(Word);
    // Refuse before allocating: a corrupt frame must not announce its own size.
    if (ZSTD_getFrameContentSize(data, size) != expected) {
      throw Error("LOSSLESS tile is corrupt: unexpected decompressed size");
    }
    std::vector<uint8_t> planes(expected);
    const size_t got = ZSTD_decompress(planes.data(), planes.size(), data, size);
    if (ZSTD_isError(got) || got != expected) {
      throw Error("LOSSLESS tile is corrupt: zstd could not decompress it");
    }
    Word* words = static_cast<Word*>(pixels);
    joinBytePlanes(planes.data(), count, words);
    unpredict(words, shape.width, static_cast<size_t>(shape.height) * shape.bands);
  }

  int zstdLevel_;
};

}  // namespace

CodecDescriptor losslessCodecDescriptor() {
  CodecDescriptor descriptor;
  descriptor.name = "LOSSLESS";
  descriptor.description = "bit-exact: delta predictor + zstd, every data type";
  descriptor.options = {integerOptionDeclaration(
      "ZSTD_LEVEL", 1, ZSTD_maxCLevel(), kDefaultZstdLevel,
      "zstd effort, higher is smaller and slower")};
  descriptor.rejectReason = [](DataType, int) { return std::string(); };
  descriptor.parametersFromOptions = [options = descriptor.options](
                                         const CodecOptions& given, DataType, int) {
    return LosslessCodec(integerOption(given, options[0])).parameters();
  };
  descriptor.create = [](const nlohmann::json& params) -> std::unique_ptr<Codec> {
    const int level = params.value("zstd_level", kDefaultZstdLevel);
    if (params.value("predictor", std::string()) != "horizontal" || level < 1 ||
        level > ZSTD_maxCLevel()) {
      throw Error("LOSSLESS parameters not understood: " + params.dump());
    }
    return std::make_unique<LosslessCodec>(level);
  };
  return descriptor;
}

}  // namespace nsat
