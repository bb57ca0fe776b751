// libFuzzer target: any byte string, as an .nsat file in /vsimem/, opened by the NSAT
// driver, every block of every band and level read, and the NSAT_AUX subdataset too.
//
// The custom mutator keeps mutations meaningful: a crafted file recomputes its CRCs, so
// after libFuzzer's own mutation the header CRC, every in-file tile's CRC and the index
// CRC are recomputed. Mutations thus reach the JSON header, the index, the nodata mask
// and the payload parsers of the built-in codecs (LOSSLESS, JPEG, RDIC) instead of
// stopping at the first checksum. A format-1.1 compressed header is mutated as JSON half
// of the time (decompressed, mutated, compressed again, the file laid out around it), so
// that mutations reach the JSON parser through the zstd frame. Learned codecs need
// LibTorch and are not built here.
//
// Built by scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <cpl_conv.h>
#include <cpl_vsi.h>
#include <gdal_priv.h>

#include "container/byte_order.h"
#include "container/container_file.h"
#include "container/header_encoding.h"

extern "C" void GDALRegister_NSAT();
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize);

namespace {

constexpr size_t kMaxBlocksRead = 4096;  // bounds the work per input

// Recomputes the CRCs of a mutated file wherever its layout still parses.
void repairChecksums(uint8_t* data, size_t size) {
  using nsat::kPreambleSize;
  if (size < kPreambleSize || !nsat::hasNsatMagic(data, size)) return;
  const uint64_t headerSize = nsat::getLE(data + 12, 4);
  if (headerSize == 0 || kPreambleSize + headerSize > size) return;
  nsat::putLE(data + 16, nsat::crc32Of(data + kPreambleSize, size_t(headerSize)), 4);
  // Without parsing the JSON the tile count is unknown: every 16-byte entry after the
  // header that points inside the file gets the CRC of what it points at.
  const uint64_t indexOffset = kPreambleSize + headerSize;
  uint64_t entries = 0;
  for (uint64_t at = indexOffset; at + nsat::kIndexEntrySize <= size; at += nsat::kIndexEntrySize) {
    const uint64_t offset = nsat::getLE(data + at, 8);
    const uint64_t length = nsat::getLE(data + at + 8, 4);
    if (length == 0 || offset < at + nsat::kIndexEntrySize || offset > size || length > size - offset) {
      break;
    }
    nsat::putLE(data + at + 12, nsat::crc32Of(data + offset, size_t(length)), 4);
    ++entries;
  }
  nsat::putLE(data + 20, nsat::crc32Of(data + indexOffset, size_t(entries * nsat::kIndexEntrySize)), 4);
}

// Mutates the JSON inside a compressed header and writes the file back with the new
// frame, index offsets shifted by the change in size; 0 if the input has no such header.
size_t mutateCompressedHeader(uint8_t* data, size_t size, size_t maxSize) {
  using nsat::kPreambleSize;
  if (size < kPreambleSize || !nsat::hasNsatMagic(data, size) || data[24] == 0 ||
      data[24] > uint8_t(nsat::kNewestHeaderEncoding)) {
    return 0;
  }
  const auto encoding = nsat::HeaderEncoding(data[24]);
  const size_t headerSize = size_t(nsat::getLE(data + 12, 4));
  if (headerSize == 0 || kPreambleSize + headerSize > size) return 0;
  std::string json;
  std::vector<uint8_t> stored;
  try {
    json = nsat::decodeHeader(data + kPreambleSize, headerSize, encoding, size_t(1) << 20);
    std::vector<uint8_t> text(json.begin(), json.end());
    text.resize(json.size() + 256);
    text.resize(LLVMFuzzerMutate(text.data(), json.size(), text.size()));
    stored = nsat::encodeHeader(std::string(text.begin(), text.end()), encoding);
  } catch (const std::exception&) {
    return 0;
  }
  const size_t tail = kPreambleSize + headerSize;  // index and payloads
  const size_t newSize = kPreambleSize + stored.size() + (size - tail);
  if (newSize > maxSize) return 0;
  std::vector<uint8_t> out(data, data + kPreambleSize);
  nsat::putLE(out.data() + 12, stored.size(), 4);
  out.insert(out.end(), stored.begin(), stored.end());
  out.insert(out.end(), data + tail, data + size);
  for (size_t at = kPreambleSize + stored.size(); at + nsat::kIndexEntrySize <= out.size();
       at += nsat::kIndexEntrySize) {
    const uint64_t offset = nsat::getLE(out.data() + at, 8);
    const uint64_t length = nsat::getLE(out.data() + at + 8, 4);
    if (length == 0 || offset < tail || offset > size || length > size - offset) break;
    nsat::putLE(out.data() + at, offset - tail + kPreambleSize + stored.size(), 8);
  }
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

void readEverything(GDALDataset* dataset) {
  size_t blocks = 0;
  std::vector<GByte> buffer;
  for (int b = 1; b <= dataset->GetRasterCount(); ++b) {
    GDALRasterBand* band = dataset->GetRasterBand(b);
    int noData = 0;
    band->GetNoDataValue(&noData);
    std::vector<GDALRasterBand*> levels = {band};
    for (int i = 0; i < band->GetOverviewCount(); ++i) levels.push_back(band->GetOverview(i));
    for (GDALRasterBand* level : levels) {
      if (!level) continue;
      int blockX = 0, blockY = 0;
      level->GetBlockSize(&blockX, &blockY);
      const int across = (level->GetXSize() + blockX - 1) / blockX;
      const int down = (level->GetYSize() + blockY - 1) / blockY;
      buffer.resize(size_t(blockX) * blockY * GDALGetDataTypeSizeBytes(level->GetRasterDataType()));
      for (int y = 0; y < down; ++y) {
        for (int x = 0; x < across; ++x) {
          if (++blocks > kMaxBlocksRead) return;
          CPL_IGNORE_RET_VAL(level->ReadBlock(x, y, buffer.data()));
        }
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  CPLSetConfigOption("GDAL_PAM_ENABLED", "NO");
  CPLSetConfigOption("GDAL_NUM_THREADS", "1");
  CPLSetConfigOption("CPL_DEBUG", "OFF");
  CPLSetErrorHandler(CPLQuietErrorHandler);
  GDALRegister_NSAT();
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize,
                                          unsigned int seed) {
  const size_t headerMutated = seed % 2 ? 0 : mutateCompressedHeader(data, size, maxSize);
  size = headerMutated ? headerMutated : LLVMFuzzerMutate(data, size, maxSize);
  repairChecksums(data, size);
  return size;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = "/vsimem/fuzz.nsat";
  VSILFILE* file = VSIFileFromMemBuffer(path.c_str(), const_cast<GByte*>(data), vsi_l_offset(size),
                                        FALSE);
  if (!file) return 0;
  VSIFCloseL(file);
  const char* const drivers[] = {"NSAT", nullptr};
  if (GDALDataset* dataset = GDALDataset::FromHandle(
          GDALOpenEx(path.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY, drivers, nullptr, nullptr))) {
    readEverything(dataset);
    CSLConstList subdatasets = dataset->GetMetadata("SUBDATASETS");
    const char* auxiliary = CSLFetchNameValue(subdatasets, "SUBDATASET_1_NAME");
    const std::string auxiliaryName = auxiliary ? auxiliary : "";
    CPL_IGNORE_RET_VAL(dataset->GetMetadata());  // the auxiliary summary
    GDALClose(dataset);
    if (!auxiliaryName.empty()) {
      if (GDALDataset* aux = GDALDataset::FromHandle(GDALOpenEx(
              auxiliaryName.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY, drivers, nullptr, nullptr))) {
        readEverything(aux);
        GDALClose(aux);
      }
    }
  }
  VSIUnlink(path.c_str());
  return 0;
}
