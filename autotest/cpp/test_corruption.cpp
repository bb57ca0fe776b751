// Damaged files: whatever byte is flipped or wherever the file is cut, opening and
// decoding either works or throws nsat::Error. Run under ASan by scripts/test.sh.
#include <random>

#include <cpl_vsi.h>

#include "autotest/cpp/test_support.h"
#include "codecs/registry.h"
#include "container/container_file.h"
#include "container/tile_payload.h"

namespace nsat {
namespace {

std::vector<uint8_t> readGolden(const std::string& name) {
  const std::string path = std::string(NSAT_TEST_DATA) + "/../golden/" + name;
  VSILFILE* file = VSIFOpenL(path.c_str(), "rb");
  EXPECT_NE(file, nullptr) << path;
  std::vector<uint8_t> bytes;
  if (!file) return bytes;
  VSIFSeekL(file, 0, SEEK_END);
  bytes.resize(VSIFTellL(file));
  VSIFSeekL(file, 0, SEEK_SET);
  EXPECT_EQ(VSIFReadL(bytes.data(), 1, bytes.size(), file), bytes.size());
  VSIFCloseL(file);
  return bytes;
}

// Opens the file and decodes every tile of every level; returns how many decoded.
int decodeEverything(const std::string& path) {
  const auto reader = ContainerReader::open(path);
  const Header& header = reader->header();
  const CodecDescriptor* descriptor = findCodec(header.codecName);
  if (!descriptor) throw Error("unknown codec");
  const auto codec = descriptor->create(header.codecParameters);
  int decoded = 0;
  for (int level = 0; level < int(header.levels.size()); ++level) {
    for (int y = 0; y < header.tilesDown(level); ++y) {
      for (int x = 0; x < header.tilesAcross(level); ++x) {
        const TileShape shape = header.tileShape(level, x, y);
        std::vector<uint8_t> pixels(shape.byteCount());
        try {
          const auto payload = reader->readTile(level, x, y);
          decodeTilePayload(*codec, shape, payload.data(), payload.size(), header.nodata,
                            pixels.data());
          ++decoded;
        } catch (const Error&) {
          // expected for damaged tiles; the other tiles must still decode
        }
      }
    }
  }
  return decoded;
}

class DamagedGoldenFile : public ::testing::TestWithParam<const char*> {};

TEST_P(DamagedGoldenFile, NeverCrashes) {
  const auto good = readGolden(GetParam());
  ASSERT_FALSE(good.empty());
  const std::string path = std::string("/vsimem/damaged_") + GetParam();
  auto put = [&](const std::vector<uint8_t>& bytes) {
    VSILFILE* file = VSIFOpenL(path.c_str(), "wb");
    VSIFWriteL(bytes.data(), 1, bytes.size(), file);
    VSIFCloseL(file);
  };
  put(good);
  const int allTiles = decodeEverything(path);
  EXPECT_GT(allTiles, 0);

  std::mt19937 random(1234);  // fixed seed: the same damage on every run
  std::uniform_int_distribution<size_t> position(0, good.size() - 1);
  for (int trial = 0; trial < 150; ++trial) {
    auto bytes = good;
    const int flips = 1 + trial % 4;
    for (int i = 0; i < flips; ++i) bytes[position(random)] ^= uint8_t(1 + random() % 255);
    if (trial % 3 == 0) bytes.resize(position(random));
    put(bytes);
    try {
      const int decoded = decodeEverything(path);
      EXPECT_LE(decoded, allTiles);
    } catch (const Error&) {
    }
  }

  // CRCs stop the damage above before any decoder sees it; here the codecs and the
  // mask parser get damaged payloads directly.
  put(good);
  const auto reader = ContainerReader::open(path);
  const Header& header = reader->header();
  const auto codec = findCodec(header.codecName)->create(header.codecParameters);
  const TileShape shape = header.tileShape(0, 0, 0);
  const auto payload = reader->readTile(0, 0, 0);
  std::uniform_int_distribution<size_t> inPayload(0, payload.size() - 1);
  std::vector<uint8_t> pixels(shape.byteCount());
  for (int trial = 0; trial < 300; ++trial) {
    auto bytes = payload;
    for (int i = 0; i < 1 + trial % 3; ++i) bytes[inPayload(random)] ^= uint8_t(1 + random() % 255);
    if (trial % 4 == 0) bytes.resize(1 + inPayload(random));
    try {
      decodeTilePayload(*codec, shape, bytes.data(), bytes.size(), header.nodata, pixels.data());
    } catch (const Error&) {
    }
  }
  VSIUnlink(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Golden, DamagedGoldenFile,
                         ::testing::Values("eurosat_ms_lossless.nsat",
                                           "landsat7_collar_jpeg.nsat",
                                           "s1_db_float32_lossless.nsat",
                                           "eurosat_ms_epsg_lossless_v11.nsat"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           return name.substr(0, name.find('.'));
                         });

}  // namespace
}  // namespace nsat
