#include "codecs/jpeg_codec.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <jpeglib.h>

#include "codecs/byte_io.h"

namespace nsat {

namespace {

constexpr int kDefaultQuality = 75;
// libjpeg's working memory per image sample when decoding a baseline tile (whole-image
// buffers are not needed for baseline; this leaves room for its row buffers).
constexpr int kJpegMemoryPerSample = 4;

// libjpeg reports errors through a callback that must not return: we jump back to
// the caller, which turns the message into an nsat::Error.
struct ErrorJump {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jumpOnError(j_common_ptr info) {
  auto* self = reinterpret_cast<ErrorJump*>(info->err);
  info->err->format_message(info, self->message);
  std::longjmp(self->jump, 1);
}

// A corrupt stream often only warns ("premature end of data") and returns grey:
// treat every warning as an error so that no damaged tile decodes silently.
void jumpOnWarning(j_common_ptr info, int level) {
  if (level < 0) jumpOnError(info);
}

void installErrorJump(ErrorJump& error) {
  jpeg_std_error(&error.manager);
  error.manager.error_exit = jumpOnError;
  error.manager.emit_message = jumpOnWarning;
  error.message[0] = '\0';
}

// Interleaves `count` planes of width*height bytes, or splits them back.
void interleave(const uint8_t* planar, int pixels, int count, uint8_t* interleaved) {
  for (int i = 0; i < pixels; ++i)
    for (int c = 0; c < count; ++c) interleaved[i * count + c] = planar[c * pixels + i];
}

void deinterleave(const uint8_t* interleaved, int pixels, int count, uint8_t* planar) {
  for (int i = 0; i < pixels; ++i)
    for (int c = 0; c < count; ++c) planar[c * pixels + i] = interleaved[i * count + c];
}

class JpegCodec final : public Codec {
 public:
  JpegCodec(int quality, bool subsampleChroma)
      : quality_(quality), subsampleChroma_(subsampleChroma) {}

  std::string name() const override { return "JPEG"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override {
    return {{"quality", quality_}, {"chroma_subsampling", subsampleChroma_ ? "420" : "444"}};
  }

  // One stream for 1 or 3 bands; otherwise [u32 band count][u32 size per band][streams].
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                              const EncodeGuide&) const override {
    const auto* planes = static_cast<const uint8_t*>(pixels);
    const int count = static_cast<int>(shape.pixelsPerBand());
    if (shape.bands == 1 || shape.bands == 3) {
      std::vector<uint8_t> interleaved(shape.byteCount());
      interleave(planes, count, shape.bands, interleaved.data());
      return compressJpeg(interleaved.data(), shape.width, shape.height, shape.bands, quality_,
                          subsampleChroma_);
    }
    std::vector<std::vector<uint8_t>> streams;
    for (int band = 0; band < shape.bands; ++band) {
      streams.push_back(compressJpeg(planes + static_cast<size_t>(band) * count, shape.width,
                                     shape.height, 1, quality_, false));
    }
    std::vector<uint8_t> out;
    appendU32(out, static_cast<uint32_t>(shape.bands));
    for (const auto& stream : streams) appendU32(out, static_cast<uint32_t>(stream.size()));
    for (const auto& stream : streams) out.insert(out.end(), stream.begin(), stream.end());
    return out;
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& /*parallelism*/) const override {
    auto* planes = static_cast<uint8_t*>(pixels);
    const int count = static_cast<int>(shape.pixelsPerBand());
    if (shape.bands == 1 || shape.bands == 3) {
      std::vector<uint8_t> interleaved(shape.byteCount());
      decompressJpeg(data, size, shape.width, shape.height, shape.bands, interleaved.data());
      deinterleave(interleaved.data(), count, shape.bands, planes);
      return;
    }
    ByteReader table(data, size, "JPEG tile");
    if (table.u32() != static_cast<uint32_t>(shape.bands)) {
      throw Error("JPEG tile is corrupt: bad band table");
    }
    std::vector<uint32_t> lengths(shape.bands);
    for (auto& length : lengths) length = table.u32();
    for (int band = 0; band < shape.bands; ++band) {
      const uint8_t* stream = table.bytes(lengths[band]);
      decompressJpeg(stream, lengths[band], shape.width, shape.height, 1,
                     planes + static_cast<size_t>(band) * count);
    }
  }

 private:
  int quality_;
  bool subsampleChroma_;
};

}  // namespace

std::vector<uint8_t> compressJpeg(const uint8_t* interleaved, int width, int height,
                                  int components, int quality, bool subsampleChroma) {
  jpeg_compress_struct info;
  ErrorJump error;
  // Owned by libjpeg's memory destination; freed on both paths below.
  unsigned char* buffer = nullptr;
  unsigned long bufferSize = 0;
  info.err = &error.manager;
  installErrorJump(error);
  if (setjmp(error.jump)) {
    jpeg_destroy_compress(&info);
    std::free(buffer);
    throw Error(std::string("JPEG compression failed: ") + error.message);
  }
  jpeg_create_compress(&info);
  jpeg_mem_dest(&info, &buffer, &bufferSize);
  info.image_width = static_cast<JDIMENSION>(width);
  info.image_height = static_cast<JDIMENSION>(height);
  info.input_components = components;
  info.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, quality, TRUE);
  if (components == 3 && !subsampleChroma) {
    for (int c = 0; c < 3; ++c) {
      info.comp_info[c].h_samp_factor = 1;
      info.comp_info[c].v_samp_factor = 1;
    }
  }
  // Optimised Huffman tables: a few percent smaller for the same pixels.
  info.optimize_coding = TRUE;
  jpeg_start_compress(&info, TRUE);
  const size_t stride = static_cast<size_t>(width) * components;
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(interleaved + info.next_scanline * stride);
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  std::vector<uint8_t> out(buffer, buffer + bufferSize);
  jpeg_destroy_compress(&info);
  std::free(buffer);
  return out;
}

void decompressJpeg(const uint8_t* data, size_t size, int width, int height, int components,
                    uint8_t* interleaved) {
  jpeg_decompress_struct info;
  ErrorJump error;
  info.err = &error.manager;
  installErrorJump(error);
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&info);
    throw Error(std::string("JPEG tile is corrupt: ") + error.message);
  }
  jpeg_create_decompress(&info);
  // libjpeg allocates for the stream's own dimensions: at most a few tiles' worth.
  info.mem->max_memory_to_use = static_cast<long>(kJpegMemoryPerSample) * width * height * components +
                                (8L << 20);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&info, TRUE);
  // Checked before jpeg_start_decompress allocates anything for the stream. NSAT writes
  // baseline streams only; a progressive one (possibly thousands of scans, each a full
  // pass over the coefficients) is not ours.
  const char* refusal = nullptr;
  if (static_cast<int>(info.image_width) != width || static_cast<int>(info.image_height) != height ||
      info.num_components != components) {
    refusal = "JPEG tile is corrupt: its size does not match the tile";
  } else if (jpeg_has_multiple_scans(&info)) {
    refusal = "JPEG tile is corrupt: a progressive stream (NSAT writes baseline JPEG only)";
  }
  if (refusal) {
    jpeg_destroy_decompress(&info);
    throw Error(refusal);
  }
  info.out_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_start_decompress(&info);
  if (static_cast<int>(info.output_width) != width ||
      static_cast<int>(info.output_height) != height ||
      info.output_components != components) {
    jpeg_destroy_decompress(&info);
    throw Error("JPEG tile is corrupt: its size does not match the tile");
  }
  const size_t stride = static_cast<size_t>(width) * components;
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = interleaved + info.output_scanline * stride;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
}

CodecDescriptor jpegCodecDescriptor() {
  CodecDescriptor descriptor;
  descriptor.name = "JPEG";
  descriptor.description = "libjpeg-turbo, Byte data (1/3 bands as one image, others per band)";
  descriptor.options = {
      integerOptionDeclaration("QUALITY", 1, 100, kDefaultQuality,
                               "libjpeg's quality scale, 1 smallest, 100 best"),
      choiceOptionDeclaration("CHROMA_SUBSAMPLING", {"420", "444"}, "420",
                              "with 3 bands: 4:2:0 is smaller, 4:4:4 keeps colour edges")};
  descriptor.rejectReason = [](DataType type, int) {
    return type == DataType::Byte ? std::string()
                                  : std::string("JPEG codes 8-bit (Byte) data only");
  };
  descriptor.parametersFromOptions = [options = descriptor.options](
                                         const CodecOptions& given, DataType, int) {
    const int quality = integerOption(given, declarationOf(options, "QUALITY"));
    const std::string sampling = choiceOption(given, declarationOf(options, "CHROMA_SUBSAMPLING"));
    return JpegCodec(quality, sampling == "420").parameters();
  };
  descriptor.create = [](const nlohmann::json& params) -> std::unique_ptr<Codec> {
    const int quality = params.value("quality", -1);
    const std::string sampling = params.value("chroma_subsampling", std::string());
    if (quality < 1 || quality > 100 || (sampling != "420" && sampling != "444")) {
      throw Error("JPEG parameters not understood: " + params.dump());
    }
    return std::make_unique<JpegCodec>(quality, sampling == "420");
  };
  return descriptor;
}

}  // namespace nsat
