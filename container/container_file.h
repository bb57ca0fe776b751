// Reading and writing the `.nsat` layout: preamble, JSON header, tile index, tile
// payloads (FORMAT.md). All I/O goes through GDAL's VSI layer so that /vsimem/,
// /vsizip/ and /vsicurl/ paths work like local files.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <cpl_vsi.h>

#include "container/header.h"
#include "container/header_encoding.h"

namespace nsat {

constexpr uint8_t kMagic[8] = {0x89, 'N', 'S', 'A', 'T', '\r', '\n', 0x1A};
constexpr int kFormatMajor = 1;
// 1.1: the header may be compressed (preamble byte 24 names its encoding).
constexpr int kFormatMinor = 1;
constexpr size_t kPreambleSize = 32;
constexpr size_t kIndexEntrySize = 16;
constexpr uint32_t kMaxHeaderSize = 16u << 20;

// True if these leading bytes are an NSAT file (any version).
bool hasNsatMagic(const uint8_t* bytes, size_t size);

struct TileEntry {
  uint64_t offset = 0;
  uint32_t size = 0;
  uint32_t crc32 = 0;
};

uint32_t crc32Of(const uint8_t* data, size_t size);

class ContainerReader {
 public:
  // Reads and checks the preamble, header and tile index; throws nsat::Error.
  static std::shared_ptr<ContainerReader> open(const std::string& path);
  ~ContainerReader();

  const Header& header() const { return header_; }
  int formatMinor() const { return formatMinor_; }
  HeaderEncoding headerEncoding() const { return headerEncoding_; }
  // Payload bytes of one tile after its CRC was checked; throws nsat::Error.
  // Safe to call from several threads.
  std::vector<uint8_t> readTile(int level, int tileX, int tileY) const;
  // Payloads of several tiles of one level, in one VSIFReadMultiRangeL call: over
  // /vsicurl/ exactly their byte ranges are fetched (no read-ahead into other tiles).
  // Each is CRC-checked; throws nsat::Error.
  std::vector<std::vector<uint8_t>> readTiles(int level,
                                              const std::vector<std::pair<int, int>>& tiles) const;
  // Bytes of all tile payloads of one level.
  uint64_t levelPayloadBytes(int level) const;

 private:
  ContainerReader() = default;
  const TileEntry& entry(int level, int tileX, int tileY) const;

  VSILFILE* file_ = nullptr;
  mutable std::mutex fileMutex_;
  Header header_;
  int formatMinor_ = 0;
  HeaderEncoding headerEncoding_ = HeaderEncoding::Json;
  std::vector<uint64_t> levelFirstTile_;
  std::vector<TileEntry> index_;
};

class ContainerWriter {
 public:
  // Writes to a temporary sibling of `path`; `path` itself appears only on commit(),
  // so a failed or cancelled write never leaves a partial file under that name.
  // Tiles are held in memory until they pass kHeldTileBytes: a small file is then laid
  // out once, at commit, with its final header. A larger one is written as it comes, with
  // `headerReserve` spare bytes after the stored header, so that rewriteHeader() can add
  // what is known only once every tile is coded.
  ContainerWriter(const std::string& path, Header header, size_t headerReserve = 0,
                  HeaderEncoding encoding = kNewestHeaderEncoding);
  ~ContainerWriter();
  ContainerWriter(const ContainerWriter&) = delete;
  ContainerWriter& operator=(const ContainerWriter&) = delete;

  const Header& header() const { return header_; }
  void writeTile(int level, int tileX, int tileY, const std::vector<uint8_t>& payload);
  // Replaces the header (same raster, levels and codec); once tiles went to the file,
  // within the stored size plus the reserve; throws nsat::Error if it no longer fits.
  void rewriteHeader(const Header& header);
  // Writes the index, closes and renames into place; throws nsat::Error.
  void commit();
  // Removes the temporary file; called by the destructor if commit() did not happen.
  void abort();

 private:
  // Preamble, header (with `reserve` spare bytes), index placeholder, then the held tiles.
  void writeLayoutStart(size_t reserve);

  static constexpr uint64_t kHeldTileBytes = 4u << 20;

  std::string path_;
  std::string temporaryPath_;
  Header header_;
  VSILFILE* file_ = nullptr;
  HeaderEncoding encoding_;
  size_t headerReserve_;
  bool started_ = false;  // preamble and header are in the file
  std::vector<std::vector<uint8_t>> heldTiles_;
  uint64_t heldBytes_ = 0;
  size_t headerSize_ = 0;  // stored header plus its reserve, as the preamble says
  uint64_t indexOffset_ = 0;
  uint64_t nextOffset_ = 0;
  std::vector<uint64_t> levelFirstTile_;
  std::vector<TileEntry> index_;
};

}  // namespace nsat
