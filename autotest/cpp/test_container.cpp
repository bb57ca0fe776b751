#include <cmath>

#include <cpl_vsi.h>

#include "autotest/cpp/test_support.h"
#include "codecs/registry.h"
#include "container/byte_order.h"
#include "container/container_file.h"
#include "container/tile_payload.h"

namespace nsat {
namespace {

Header sampleHeader() {
  Header header;
  header.width = 300;
  header.height = 200;
  header.bands = 2;
  header.type = DataType::UInt16;
  header.blockWidth = header.blockHeight = 128;
  header.levels = {{300, 200}, {150, 100}};
  header.codecName = "LOSSLESS";
  header.codecParameters = {{"predictor", "horizontal"}, {"zstd_level", 3}};
  header.nodata = {std::optional<double>(0.0), std::nullopt};
  header.georeferencing = {{"geotransform", {10.0, 30.0, 0.0, 50.0, 0.0, -30.0}}};
  return header;
}

std::vector<uint8_t> fileBytes(const std::string& path) {
  vsi_l_offset size = 0;
  GByte* data = VSIGetMemFileBuffer(path.c_str(), &size, FALSE);
  return std::vector<uint8_t>(data, data + size);
}

void putFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  VSILFILE* file = VSIFOpenL(path.c_str(), "wb");
  VSIFWriteL(bytes.data(), 1, bytes.size(), file);
  VSIFCloseL(file);
}

// Writes a small two-level file with recognisable tile payloads.
std::string writeSample(const std::string& path) {
  ContainerWriter writer(path, sampleHeader());
  const Header& header = writer.header();
  for (int level = 0; level < 2; ++level)
    for (int y = 0; y < header.tilesDown(level); ++y)
      for (int x = 0; x < header.tilesAcross(level); ++x)
        writer.writeTile(level, x, y, {uint8_t(level), uint8_t(x), uint8_t(y), 42});
  writer.commit();
  return path;
}

TEST(Header, JsonRoundTripKeepsEveryField) {
  Header header = sampleHeader();
  header.nodata[1] = std::nan("");
  header.models = {{"multirate-rgb", std::string(64, 'a')}};
  const Header back = Header::fromJson(header.toJson());
  EXPECT_EQ(back.toJson(), header.toJson());
  EXPECT_TRUE(std::isnan(*back.nodata[1]));
  EXPECT_EQ(back.tilesAcross(0), 3);
  EXPECT_EQ(back.tilesDown(0), 2);
  EXPECT_EQ(back.tileShape(0, 2, 1).width, 300 - 256);
  EXPECT_EQ(back.tileShape(0, 2, 1).height, 200 - 128);
}

TEST(Header, SanityLimitsRejectHostileValues) {
  auto mutate = [](auto change) {
    nlohmann::json json = sampleHeader().toJson();
    change(json);
    return json;
  };
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j["raster"]["width"] = -5; })), Error);
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j["raster"]["bands"] = 70000; })), Error);
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j["raster"]["block_width"] = 1 << 20; })),
               Error);
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j["raster"]["data_type"] = "CInt16"; })),
               Error);
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j["levels"][1] = {400, 100}; })), Error);
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j["nodata"] = {1}; })), Error);
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j.erase("codec"); })), Error);
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) { j["raster"]["width"] = "wide"; })), Error);
  // 4096 x 4096 tiles of 65535 Float64 bands would be a 8 TiB allocation per tile.
  EXPECT_THROW(Header::fromJson(mutate([](auto& j) {
                 j["raster"]["bands"] = 65535;
                 j["raster"]["block_width"] = j["raster"]["block_height"] = 4096;
               })),
               Error);
}

// Widths near INT_MAX once overflowed the tile count (UBSan: "2147483647 + 256 cannot be
// represented"); sizes and tile counts are now capped in 64-bit arithmetic.
TEST(Header, HugeRastersAreRefusedBeforeAnyAllocation) {
  auto sized = [](int width, int height, int block) {
    Header header = sampleHeader();
    header.width = width;
    header.height = height;
    header.blockWidth = header.blockHeight = block;
    header.levels = {{width, height}};
    return header;
  };
  EXPECT_THROW(sized(2147483647, 200, 256).validate(), Error);
  EXPECT_THROW(sized(kMaxRasterSize + 1, 1, 4096).validate(), Error);
  // 2^30 x 2^30 in 16 px tiles: 2^52 index entries.
  EXPECT_THROW(sized(kMaxRasterSize, kMaxRasterSize, 16).validate(), Error);
  // The largest side is fine when the tiles are large enough.
  const Header wide = sized(kMaxRasterSize, 64, 4096);
  EXPECT_NO_THROW(wide.validate());
  EXPECT_EQ(wide.tilesAcross(0), kMaxRasterSize / 4096);
  EXPECT_EQ(sized(kMaxRasterSize - 1, 64, 4096).tilesAcross(0), kMaxRasterSize / 4096);
}

// Such a header used to reach the index allocation with the temporary file open: a
// bad_alloc then left `<target>.<pid>.partial` behind.
TEST(Container, RefusedHeaderLeavesNoTemporaryFile) {
  Header header = sampleHeader();
  header.width = header.height = 2000000000;
  header.blockWidth = header.blockHeight = 16;
  header.levels = {{header.width, header.height}};
  EXPECT_THROW(ContainerWriter("/vsimem/huge_header.nsat", header), Error);
  char** files = VSIReadDir("/vsimem/");
  for (char** file = files; file && *file; ++file) {
    EXPECT_EQ(std::string(*file).find("huge_header"), std::string::npos) << *file;
  }
  CSLDestroy(files);
}

TEST(Container, WriteThenReadEveryTile) {
  const auto path = writeSample("/vsimem/container_roundtrip.nsat");
  const auto reader = ContainerReader::open(path);
  EXPECT_EQ(reader->header().toJson(), sampleHeader().toJson());
  EXPECT_EQ(reader->readTile(0, 2, 1), (std::vector<uint8_t>{0, 2, 1, 42}));
  EXPECT_EQ(reader->readTile(1, 1, 0), (std::vector<uint8_t>{1, 1, 0, 42}));
  EXPECT_EQ(reader->levelPayloadBytes(0), 6u * 4u);
  EXPECT_THROW(reader->readTile(0, 3, 0), Error);
  EXPECT_THROW(reader->readTile(2, 0, 0), Error);
  VSIUnlink(path.c_str());
}

TEST(Container, TargetAppearsOnlyOnCommit) {
  const std::string path = "/vsimem/container_abort.nsat";
  {
    ContainerWriter writer(path, sampleHeader());
    writer.writeTile(0, 0, 0, {1, 2, 3});
    VSIStatBufL stat;
    EXPECT_NE(VSIStatL(path.c_str(), &stat), 0);
  }  // destroyed without commit: the temporary file goes too
  char** files = VSIReadDir("/vsimem/");
  for (char** file = files; file && *file; ++file) {
    EXPECT_EQ(std::string(*file).find("container_abort"), std::string::npos) << *file;
  }
  CSLDestroy(files);
}

TEST(Container, CorruptionIsDetected) {
  const auto good = fileBytes(writeSample("/vsimem/container_good.nsat"));
  const std::string bad = "/vsimem/container_bad.nsat";
  auto expectOpenFails = [&](std::vector<uint8_t> bytes, const char* what) {
    putFile(bad, bytes);
    EXPECT_THROW(ContainerReader::open(bad), Error) << what;
  };
  auto flip = [&](size_t offset) {
    auto bytes = good;
    bytes[offset] ^= 0x40;
    return bytes;
  };
  expectOpenFails(flip(1), "magic");
  expectOpenFails(flip(40), "header byte");
  const size_t headerSize = getLE(good.data() + 12, 4);
  expectOpenFails(flip(kPreambleSize + headerSize + 3), "index byte");
  expectOpenFails(std::vector<uint8_t>(good.begin(), good.begin() + 20), "short preamble");
  expectOpenFails(std::vector<uint8_t>(good.begin(), good.begin() + 100), "short header");
  expectOpenFails(std::vector<uint8_t>(good.begin(), good.end() - 5), "truncated tiles");
  auto huge = good;
  std::fill(huge.begin() + 12, huge.begin() + 16, uint8_t(0xFF));  // header size 4 GiB
  expectOpenFails(huge, "huge header size");
  auto future = good;
  future[8] = 2;  // major version 2
  future[9] = 0;
  expectOpenFails(future, "format version 2");

  // A flipped payload byte opens fine but fails that tile's CRC.
  putFile(bad, flip(good.size() - 2));
  const auto reader = ContainerReader::open(bad);
  EXPECT_THROW(reader->readTile(1, 1, 0), Error);
  EXPECT_NO_THROW(reader->readTile(0, 0, 0));
  VSIUnlink(bad.c_str());
}

// The dictionaries are part of format 1.1: these are the bytes FORMAT.md names.
TEST(HeaderEncoding, DictionariesNeverChange) {
  struct Expected {
    HeaderEncoding encoding;
    size_t size;
    uint32_t crc;
  };
  const Expected dictionaries[] = {
      {HeaderEncoding::ZstdDictionary1, 26601, 0xBC9D3F82u},
      {HeaderEncoding::ZstdDictionary2, 35027, 0x15EE1B1Bu},
      {HeaderEncoding::ZstdDictionary3, 41026, 0x481BDCEAu},
      {HeaderEncoding::ZstdDictionary4, 50524, 0x2A2F1F76u},
      {HeaderEncoding::ZstdDictionary5, 55518, 0x57CA438Bu},
      {HeaderEncoding::ZstdDictionary6, 64176, 0x42989FF9u},
      {HeaderEncoding::ZstdDictionary7, 66853, 0x799C18E4u},
      {HeaderEncoding::ZstdDictionary8, 72378, 0xCAB131F2u},
      {HeaderEncoding::ZstdDictionary9, 80831, 0x0E1C1215u},
      {HeaderEncoding::ZstdDictionary10, 84519, 0x0CB5942Eu}};
  std::string previous;
  for (const Expected& expected : dictionaries) {
    const int number = int(expected.encoding);
    const std::string bytes = headerDictionary(expected.encoding);
    EXPECT_EQ(bytes.size(), expected.size) << "dictionary " << number;
    EXPECT_EQ(crc32Of(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), expected.crc)
        << "dictionary " << number;
    EXPECT_EQ(bytes.substr(0, previous.size()), previous) << number << " extends " << number - 1;
    previous = bytes;
  }
}

TEST(HeaderEncoding, NewFilesAreFormat11WithACompressedHeader) {
  const auto bytes = fileBytes(writeSample("/vsimem/container_compact.nsat"));
  EXPECT_EQ(getLE(bytes.data() + 8, 2), 1u);
  EXPECT_EQ(getLE(bytes.data() + 10, 2), 1u);
  EXPECT_EQ(bytes[24], uint8_t(kNewestHeaderEncoding));
  const size_t stored = getLE(bytes.data() + 12, 4);
  EXPECT_LT(stored, sampleHeader().toJson().dump().size() / 2);
  const auto reader = ContainerReader::open("/vsimem/container_compact.nsat");
  EXPECT_EQ(reader->header().toJson(), sampleHeader().toJson());
  EXPECT_EQ(reader->headerEncoding(), kNewestHeaderEncoding);
  VSIUnlink("/vsimem/container_compact.nsat");
}

// Files of format 1.0 (plain JSON, minor 0, byte 24 reserved) keep opening.
TEST(HeaderEncoding, PlainJsonHeadersStillRead) {
  const std::string path = "/vsimem/container_plain.nsat";
  {
    ContainerWriter writer(path, sampleHeader(), 0, HeaderEncoding::Json);
    for (int level = 0; level < 2; ++level)
      for (int y = 0; y < writer.header().tilesDown(level); ++y)
        for (int x = 0; x < writer.header().tilesAcross(level); ++x) writer.writeTile(level, x, y, {7});
    writer.commit();
  }
  auto bytes = fileBytes(path);
  EXPECT_EQ(bytes[kPreambleSize], uint8_t('{'));
  bytes[10] = 0;  // as a 1.0 writer left it
  putFile(path, bytes);
  const auto reader = ContainerReader::open(path);
  EXPECT_EQ(reader->formatMinor(), 0);
  EXPECT_EQ(reader->header().toJson(), sampleHeader().toJson());
  VSIUnlink(path.c_str());
}

// A file larger than what the writer holds back is laid out as its tiles come: the
// header gets its reserve, and a later header must fit in it.
TEST(HeaderEncoding, ReserveTakesALaterLongerHeader) {
  Header longer = sampleHeader();
  longer.auxiliary = {{"name", "BLOCK_PSNR"}, {"mean", 37.7}, {"cells", 4}};
  std::string noise;  // letters zstd cannot squeeze into the reserve
  for (uint32_t state = 1; noise.size() < 4000;) {
    state = state * 1103515245u + 12345u;
    noise.push_back(char('a' + (state >> 16) % 26));
  }
  Header tooLong = sampleHeader();
  tooLong.auxiliary = {{"name", noise}};
  const std::vector<uint8_t> bigTile(5u << 20, 3);
  for (HeaderEncoding encoding :
       {HeaderEncoding::Json, HeaderEncoding::ZstdDictionary1, HeaderEncoding::ZstdDictionary2,
        HeaderEncoding::ZstdDictionary3, HeaderEncoding::ZstdDictionary4,
        HeaderEncoding::ZstdDictionary5, HeaderEncoding::ZstdDictionary6,
        HeaderEncoding::ZstdDictionary7}) {
    const std::string path = "/vsimem/container_reserve.nsat";
    ContainerWriter writer(path, sampleHeader(), 64, encoding);
    writer.writeTile(0, 0, 0, bigTile);
    writer.rewriteHeader(longer);
    EXPECT_THROW(writer.rewriteHeader(tooLong), Error);
    for (int level = 0; level < 2; ++level)
      for (int y = 0; y < longer.tilesDown(level); ++y)
        for (int x = 0; x < longer.tilesAcross(level); ++x)
          if (level || x || y) writer.writeTile(level, x, y, {7});
    writer.commit();
    const auto reader = ContainerReader::open(path);
    EXPECT_EQ(reader->header().auxiliary, longer.auxiliary);
    EXPECT_EQ(reader->readTile(0, 0, 0), bigTile);
    EXPECT_EQ(reader->readTile(1, 1, 0), std::vector<uint8_t>{7});
    VSIUnlink(path.c_str());
  }
}

// A small file is laid out once, at commit: its header has its final size, no reserve.
TEST(HeaderEncoding, SmallFilesStoreTheFinalHeaderOnly) {
  const std::string path = "/vsimem/container_small.nsat";
  Header longer = sampleHeader();
  longer.auxiliary = {{"name", std::string(4000, 'x')}};
  {
    ContainerWriter writer(path, sampleHeader(), 64);
    for (int level = 0; level < 2; ++level)
      for (int y = 0; y < longer.tilesDown(level); ++y)
        for (int x = 0; x < longer.tilesAcross(level); ++x) writer.writeTile(level, x, y, {7});
    writer.rewriteHeader(longer);
    writer.commit();
  }
  const auto bytes = fileBytes(path);
  EXPECT_EQ(getLE(bytes.data() + 12, 4),
            encodeHeader(longer.toJson().dump(), kNewestHeaderEncoding).size());
  EXPECT_EQ(ContainerReader::open(path)->header().auxiliary, longer.auxiliary);
  VSIUnlink(path.c_str());
}

TEST(HeaderEncoding, MalformedCompressedHeadersAreRefused) {
  const std::string json = sampleHeader().toJson().dump();
  const auto frame = encodeHeader(json, HeaderEncoding::ZstdDictionary1);
  const size_t limit = 1 << 20;
  EXPECT_EQ(decodeHeader(frame.data(), frame.size(), HeaderEncoding::ZstdDictionary1, limit), json);
  auto trailing = encodeHeader(json, HeaderEncoding::ZstdDictionary1, frame.size() + 8);
  EXPECT_EQ(decodeHeader(trailing.data(), trailing.size(), HeaderEncoding::ZstdDictionary1, limit),
            json);
  trailing.back() = 1;  // only zero bytes may follow the frame
  EXPECT_THROW(decodeHeader(trailing.data(), trailing.size(), HeaderEncoding::ZstdDictionary1, limit),
               Error);
  EXPECT_THROW(decodeHeader(frame.data(), frame.size() - 1, HeaderEncoding::ZstdDictionary1, limit),
               Error);
  // The declared size is checked before the buffer is allocated.
  EXPECT_THROW(decodeHeader(frame.data(), frame.size(), HeaderEncoding::ZstdDictionary1, 16), Error);
  // A flipped byte gives an nsat::Error or other text, never a crash (the preamble's CRC
  // stops it before this in a file).
  for (size_t i = 0; i < frame.size(); ++i) {
    auto bad = frame;
    bad[i] ^= 0x10;
    try {
      (void)decodeHeader(bad.data(), bad.size(), HeaderEncoding::ZstdDictionary1, limit);
    } catch (const Error&) {
    }
  }

  // An encoding this reader does not know is refused by number.
  auto bytes = fileBytes(writeSample("/vsimem/container_encoding.nsat"));
  bytes[24] = uint8_t(uint8_t(kNewestHeaderEncoding) + 1);
  putFile("/vsimem/container_encoding.nsat", bytes);
  try {
    ContainerReader::open("/vsimem/container_encoding.nsat");
    ADD_FAILURE() << "an unknown header encoding opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotSupported);
  }
  VSIUnlink("/vsimem/container_encoding.nsat");
}

TEST(Crc32, MatchesTheStandardCheckValue) {
  const std::string text = "123456789";
  EXPECT_EQ(crc32Of(reinterpret_cast<const uint8_t*>(text.data()), text.size()), 0xCBF43926u);
}

// The Landsat 7 scene's rotated collar is nodata 0: JPEG smears it, the mask must not.
TEST(TilePayload, LossyCodecKeepsNodataExact) {
  const auto scene =
      test::readScene("landsat7_rgb_byte.tif", DataType::Byte, GDT_Byte, 0, 0, 256, 256);
  const std::vector<std::optional<double>> nodata(3, 0.0);
  const CodecDescriptor* jpeg = findCodec("JPEG");
  const auto codec = jpeg->create(jpeg->parametersFromOptions({{"QUALITY", "40"}}, DataType::Byte, 3));
  const auto payload = encodeTilePayload(*codec, scene.shape, scene.pixels.data(), nodata);
  std::vector<uint8_t> decoded(scene.shape.byteCount());
  decodeTilePayload(*codec, scene.shape, payload.data(), payload.size(), nodata, decoded.data());
  size_t collar = 0;
  for (size_t i = 0; i < decoded.size(); ++i) {
    ASSERT_EQ(scene.pixels[i] == 0, decoded[i] == 0) << "sample " << i;
    collar += scene.pixels[i] == 0;
  }
  EXPECT_GT(collar, decoded.size() / 10);  // the window really holds collar
}

TEST(TilePayload, AllNodataTileIsOneByte) {
  const TileShape shape{64, 64, 2, DataType::Float32, {}};
  std::vector<float> pixels(shape.pixelsPerBand() * 2, -99.0f);
  const std::vector<std::optional<double>> nodata(2, -99.0);
  const CodecDescriptor* lossless = findCodec("LOSSLESS");
  const auto codec = lossless->create(lossless->parametersFromOptions({}, DataType::Byte, 3));
  const auto payload = encodeTilePayload(*codec, shape, pixels.data(), nodata);
  EXPECT_EQ(payload.size(), 1u);
  std::vector<float> decoded(pixels.size(), 0.0f);
  decodeTilePayload(*codec, shape, payload.data(), payload.size(), nodata, decoded.data());
  EXPECT_EQ(decoded, pixels);
  const uint8_t badFlags[] = {0x80};
  EXPECT_THROW(decodeTilePayload(*codec, shape, badFlags, 1, nodata, decoded.data()), Error);
}

}  // namespace
}  // namespace nsat
