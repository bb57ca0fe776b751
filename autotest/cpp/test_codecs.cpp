#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include <jpeglib.h>

#include "autotest/cpp/test_support.h"
#include "codecs/jpeg_codec.h"
#include "codecs/registry.h"

namespace nsat {
namespace {

using test::readScene;

std::unique_ptr<Codec> makeCodec(const std::string& name, const CodecOptions& options = {},
                                 DataType type = DataType::Byte, int bands = 3) {
  const CodecDescriptor* descriptor = findCodec(name);
  EXPECT_NE(descriptor, nullptr);
  return descriptor->create(descriptor->parametersFromOptions(options, type, bands));
}

std::vector<uint8_t> roundTrip(const Codec& codec, const test::Scene& scene,
                               size_t* encodedSize = nullptr) {
  const auto bytes = codec.encode(scene.shape, scene.pixels.data());
  if (encodedSize) *encodedSize = bytes.size();
  std::vector<uint8_t> decoded(scene.shape.byteCount());
  codec.decode(scene.shape, bytes.data(), bytes.size(), decoded.data());
  return decoded;
}

struct LosslessCase {
  const char* file;
  DataType type;
  GDALDataType gdalType;
};

class LosslessRoundTrip : public ::testing::TestWithParam<LosslessCase> {};

// Bit-exact for every stored type, on real scenes, with an odd-sized (edge) tile.
TEST_P(LosslessRoundTrip, IsBitExactAndCompresses) {
  const auto& param = GetParam();
  const auto scene = readScene(param.file, param.type, param.gdalType, 3, 5, 61, 47);
  const auto codec = makeCodec("LOSSLESS");
  size_t encoded = 0;
  EXPECT_EQ(roundTrip(*codec, scene, &encoded), scene.pixels);
  EXPECT_LT(encoded, scene.pixels.size());
}

INSTANTIATE_TEST_SUITE_P(
    RealScenes, LosslessRoundTrip,
    ::testing::Values(LosslessCase{"landsat7_rgb_byte.tif", DataType::Byte, GDT_Byte},
                      LosslessCase{"landsat8_b4_uint16.tif", DataType::UInt16, GDT_UInt16},
                      LosslessCase{"landsat_int16_custom_crs.tif", DataType::Int16, GDT_Int16},
                      LosslessCase{"eurosat_ms_residential.tif", DataType::UInt32, GDT_UInt32},
                      LosslessCase{"eurosat_ms_residential.tif", DataType::Int32, GDT_Int32},
                      LosslessCase{"s1_grd_vv_db_float32.tif", DataType::Float32, GDT_Float32},
                      LosslessCase{"s1_grd_vv_db_float32.tif", DataType::Float64, GDT_Float64}),
    [](const ::testing::TestParamInfo<LosslessCase>& info) {
      std::string file = info.param.file;
      file = file.substr(0, file.find('.'));
      return file + "_as_" + dataTypeName(info.param.type);
    });

TEST(LosslessCodec, KeepsNanBitPatterns) {
  std::vector<float> samples = {1.5f, std::nanf(""), -0.0f, INFINITY, 3.25f, -INFINITY};
  const TileShape shape{3, 2, 1, DataType::Float32, {}};
  const auto codec = makeCodec("LOSSLESS");
  const auto bytes = codec->encode(shape, samples.data());
  std::vector<float> decoded(samples.size());
  codec->decode(shape, bytes.data(), bytes.size(), decoded.data());
  EXPECT_EQ(std::memcmp(decoded.data(), samples.data(), samples.size() * sizeof(float)), 0);
}

TEST(JpegCodec, RgbQualityControlsSizeAndFidelity) {
  const auto scene = readScene("landsat7_rgb_byte.tif", DataType::Byte, GDT_Byte, 300, 300, 256,
                               200);
  size_t smallSize = 0, largeSize = 0;
  const auto low = roundTrip(*makeCodec("JPEG", {{"QUALITY", "30"}}), scene, &smallSize);
  const auto high = roundTrip(*makeCodec("JPEG", {{"QUALITY", "95"}}), scene, &largeSize);
  EXPECT_LT(smallSize, largeSize);
  EXPECT_GT(test::psnr8(scene.pixels, high), test::psnr8(scene.pixels, low));
  // Thresholds measured on this cloudy 300 m window (33.8 / 23.0 dB with 4:2:0).
  EXPECT_GT(test::psnr8(scene.pixels, high), 32.5);
  EXPECT_GT(test::psnr8(scene.pixels, low), 22.0);
  const auto full = roundTrip(
      *makeCodec("JPEG", {{"QUALITY", "95"}, {"CHROMA_SUBSAMPLING", "444"}}), scene);
  EXPECT_GT(test::psnr8(scene.pixels, full), test::psnr8(scene.pixels, high));
}

TEST(JpegCodec, FourBandsAreCodedBandByBand) {
  const auto scene = readScene("naip_4band_byte.tif", DataType::Byte, GDT_Byte, 100, 100, 130,
                               77);
  const auto decoded = roundTrip(*makeCodec("JPEG", {{"QUALITY", "90"}}), scene);
  EXPECT_GT(test::psnr8(scene.pixels, decoded), 35.0);
}

TEST(JpegCodec, RejectsNonByteDataAndBadOptions) {
  const CodecDescriptor* jpeg = findCodec("jpeg");
  ASSERT_NE(jpeg, nullptr);
  EXPECT_FALSE(jpeg->rejectReason(DataType::UInt16, 1).empty());
  EXPECT_TRUE(jpeg->rejectReason(DataType::Byte, 5).empty());
  EXPECT_THROW(jpeg->parametersFromOptions({{"QUALITY", "101"}}, DataType::Byte, 3), Error);
  EXPECT_THROW(jpeg->parametersFromOptions({{"QUALITY", "high"}}, DataType::Byte, 3), Error);
  EXPECT_THROW(jpeg->create({{"quality", 0}}), Error);
  EXPECT_EQ(codecNames(DataType::Float32, 1), "LOSSLESS");
}

ErrorKind kindOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "expected an nsat::Error";
  return ErrorKind::Failed;
}

// The declaration is what the parsers check: strictly, and as InvalidOption.
TEST(Options, DeclaredBoundsDefaultsAndValuesAreEnforced) {
  const OptionDeclaration quality = integerOptionDeclaration("QUALITY", 1, 100, 75, "help");
  EXPECT_EQ(integerOption({}, quality), 75);
  EXPECT_EQ(integerOption({{"QUALITY", "100"}}, quality), 100);
  for (const char* bad : {"101", "0", "7.5", "0x10", "75abc", "", " 75", "1e2"}) {
    EXPECT_EQ(kindOf([&] { integerOption({{"QUALITY", bad}}, quality); }),
              ErrorKind::InvalidOption)
        << bad;
  }
  const OptionDeclaration block =
      choiceOptionDeclaration("QUALITY_BLOCK", {"16", "GLOBAL"}, "16", "help");
  EXPECT_EQ(choiceOption({{"QUALITY_BLOCK", "global"}}, block), "GLOBAL");
  EXPECT_EQ(choiceOption({}, block), "16");
  EXPECT_EQ(kindOf([&] { choiceOption({{"QUALITY_BLOCK", "48"}}, block); }),
            ErrorKind::InvalidOption);
  const OptionDeclaration lambda = numberOptionDeclaration("LAMBDA", "help");
  EXPECT_DOUBLE_EQ(numberOption({{"LAMBDA", "0.5"}}, lambda, 0, 1), 0.5);
  for (const char* bad : {"2", "nan", "inf", "1e999", "0x1p-1", "half"}) {
    EXPECT_EQ(kindOf([&] { numberOption({{"LAMBDA", bad}}, lambda, 0, 1); }),
              ErrorKind::InvalidOption)
        << bad;
  }
}

// Only codecs that exist are in the catalogue; each built-in one parses its own options.
TEST(Options, TheCatalogueHoldsExactlyTheCodecsThatExist) {
  std::vector<std::string> names;
  for (const auto& codec : codecCatalogue()) names.push_back(codec.name);
  EXPECT_EQ(names, (std::vector<std::string>{"LOSSLESS", "JPEG", "RDIC", "MULTIRATE",
                                             "FIXED_QUALITY", "VQ", "DIFFUSION"}));
  EXPECT_TRUE(findCodecDeclaration("VQ")->storesLatentIndices);
  EXPECT_TRUE(findCodecDeclaration("DIFFUSION")->conditionedOnScene);
  EXPECT_EQ(findCodecDeclaration("DIFFUSION")->openOptions.at(0).name, "REFINEMENT");
  EXPECT_EQ(findCodec("CONDITIONAL"), nullptr);  // refused without loading the module
  EXPECT_TRUE(findCodecDeclaration("FIXED_QUALITY")->mayStoreAuxiliary);
  EXPECT_EQ(kindOf([] { findCodec("jpeg")->parametersFromOptions(
                            {{"CHROMA_SUBSAMPLING", "422"}}, DataType::Byte, 3); }),
            ErrorKind::InvalidOption);
}

// Corrupt payloads raise nsat::Error: never a crash, never silent garbage.
// A grey 64 x 64 stream written by libjpeg itself, progressive or baseline.
std::vector<uint8_t> greyJpeg(int width, int height, bool progressive) {
  jpeg_compress_struct info;
  jpeg_error_mgr error;
  info.err = jpeg_std_error(&error);
  jpeg_create_compress(&info);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&info, &buffer, &size);
  info.image_width = JDIMENSION(width);
  info.image_height = JDIMENSION(height);
  info.input_components = 1;
  info.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&info);
  if (progressive) jpeg_simple_progression(&info);
  jpeg_start_compress(&info, TRUE);
  std::vector<uint8_t> row(size_t(width), 128);
  while (info.next_scanline < info.image_height) {
    JSAMPROW pointer = row.data();
    jpeg_write_scanlines(&info, &pointer, 1);
  }
  jpeg_finish_compress(&info);
  std::vector<uint8_t> out(buffer, buffer + size);
  jpeg_destroy_compress(&info);
  std::free(buffer);
  return out;
}

// Both used to reach jpeg_start_decompress, which allocates for the stream's own size
// and, for a progressive stream, decodes every scan.
TEST(JpegCodec, RefusesStreamsOfAnotherSizeOrProgressiveBeforeDecoding) {
  std::vector<uint8_t> out(64 * 64);
  EXPECT_NO_THROW(decompressJpeg(greyJpeg(64, 64, false).data(), greyJpeg(64, 64, false).size(),
                                 64, 64, 1, out.data()));
  const auto progressive = greyJpeg(64, 64, true);
  EXPECT_THROW(decompressJpeg(progressive.data(), progressive.size(), 64, 64, 1, out.data()), Error);
  const auto larger = greyJpeg(4096, 64, false);
  EXPECT_THROW(decompressJpeg(larger.data(), larger.size(), 64, 64, 1, out.data()), Error);
}

// A tile of a 600 x 300 level in tiles of 256: grown by the margin, clipped to the level.
TEST(TileGeometry, ContextWindowIsTheTileGrownAndClipped) {
  TileShape tile{256, 256, 3, DataType::Byte, {0, 256, 0, 600, 300, 600, 300}};
  const TileShape window = contextWindow(tile, 8);
  EXPECT_EQ(window.placement.x, 248);
  EXPECT_EQ(window.placement.y, 0);
  EXPECT_EQ(window.width, 256 + 16);
  EXPECT_EQ(window.height, 256 + 8);
  TileShape corner = tile;
  corner.placement.x = 512;
  corner.width = 88;
  const TileShape cornerWindow = contextWindow(corner, 8);
  EXPECT_EQ(cornerWindow.placement.x, 504);
  EXPECT_EQ(cornerWindow.width, 96);
  EXPECT_EQ(contextWindow(tile, 0).width, 256);
  // A tile placed nowhere (no level size) has no neighbours.
  const TileShape nowhere{64, 64, 1, DataType::Byte, {}};
  EXPECT_EQ(contextWindow(nowhere, 8).width, 64);
  EXPECT_EQ(contextWindow(nowhere, 8).placement.x, 0);
}

TEST(TileGeometry, CopyClampedCropsAndRepeatsEdges) {
  // A 4 x 3 UInt16 window of two bands at (10, 20); its 2 x 2 inner tile at (11, 21).
  TileShape window{4, 3, 2, DataType::UInt16, {0, 10, 20, 100, 100, 100, 100}};
  std::vector<uint16_t> pixels(4 * 3 * 2);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint16_t(i);
  const auto rectangle = [&window](int x, int y, int side) {
    TileShape shape = window;
    shape.placement.x = x;
    shape.placement.y = y;
    shape.width = shape.height = side;
    return shape;
  };
  const TileShape inner = rectangle(11, 21, 2);
  std::vector<uint16_t> cropped(2 * 2 * 2);
  copyClamped(window, pixels.data(), inner, cropped.data());
  EXPECT_EQ(cropped, (std::vector<uint16_t>{5, 6, 9, 10, 17, 18, 21, 22}));
  // Grown back by one pixel on each side: the inner tile's edge samples repeat.
  const TileShape grown = rectangle(10, 20, 4);
  std::vector<uint16_t> back(4 * 4 * 2);
  copyClamped(inner, cropped.data(), grown, back.data());
  EXPECT_EQ(std::vector<uint16_t>(back.begin(), back.begin() + 4), (std::vector<uint16_t>{5, 5, 6, 6}));
  EXPECT_EQ(std::vector<uint16_t>(back.begin() + 12, back.begin() + 16),
            (std::vector<uint16_t>{9, 9, 10, 10}));
  EXPECT_EQ(back[16], 17);
}

TEST(Codecs, CorruptPayloadsAreErrors) {
  const auto scene = readScene("landsat7_rgb_byte.tif", DataType::Byte, GDT_Byte, 200, 200, 64,
                               64);
  for (const char* name : {"LOSSLESS", "JPEG"}) {
    const auto codec = makeCodec(name);
    auto bytes = codec->encode(scene.shape, scene.pixels.data());
    std::vector<uint8_t> out(scene.shape.byteCount());
    const std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + bytes.size() / 2);
    EXPECT_THROW(codec->decode(scene.shape, truncated.data(), truncated.size(), out.data()),
                 Error)
        << name;
    EXPECT_THROW(codec->decode(scene.shape, bytes.data(), 3, out.data()), Error) << name;
    TileShape wrongShape = scene.shape;
    wrongShape.width = 32;
    std::vector<uint8_t> wrongOut(wrongShape.byteCount());
    EXPECT_THROW(codec->decode(wrongShape, bytes.data(), bytes.size(), wrongOut.data()), Error)
        << name;
  }
}

}  // namespace
}  // namespace nsat

namespace nsat {
namespace {

// Learned codecs come from a module loaded on first use; without it, the error must
// name the module rather than claim the codec does not exist.
TEST(LearnedModule, MissingModuleIsAClearError) {
  setenv("NSAT_LEARNED_MODULE", "/nonexistent/nsat_learned.so", 1);
  EXPECT_EQ(findCodec("NO_SUCH_CODEC"), nullptr);
  try {
    findCodec("multirate");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/nsat_learned.so"), std::string::npos)
        << e.what();
  }
  // Asked again, the same error: the failed load is remembered, not retried.
  EXPECT_THROW(findCodec("FIXED_QUALITY"), Error);
  EXPECT_NE(findCodec("LOSSLESS"), nullptr);
}

}  // namespace
}  // namespace nsat
