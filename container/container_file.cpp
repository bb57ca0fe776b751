#include "container/container_file.h"

#include <cstring>

#include <cpl_conv.h>
#include <unistd.h>
#include <zlib.h>

#include "container/byte_order.h"

namespace nsat {

namespace {

std::vector<uint64_t> firstTileOfEachLevel(const Header& header) {
  std::vector<uint64_t> first;
  uint64_t total = 0;
  for (size_t level = 0; level < header.levels.size(); ++level) {
    first.push_back(total);
    total += header.tileCount(int(level));
  }
  return first;
}

void readExactly(VSILFILE* file, uint64_t offset, void* buffer, size_t size, const char* what) {
  if (VSIFSeekL(file, offset, SEEK_SET) != 0 || VSIFReadL(buffer, 1, size, file) != size) {
    throw Error(std::string("file is truncated or unreadable: cannot read the ") + what,
                ErrorKind::FileIO);
  }
}

void writeExactly(VSILFILE* file, const void* data, size_t size) {
  if (size && VSIFWriteL(data, 1, size, file) != size) {
    throw Error("write failed (disk full or file system error)", ErrorKind::FileIO);
  }
}

// A seek first writes out the bytes buffered so far, so on a full disk it is the seek
// that fails: the user must hear the same as for a failed write.
void seekForWriting(VSILFILE* file, uint64_t offset) {
  if (VSIFSeekL(file, offset, SEEK_SET) != 0) {
    throw Error("write failed (disk full or file system error)", ErrorKind::FileIO);
  }
}

}  // namespace

bool hasNsatMagic(const uint8_t* bytes, size_t size) {
  return size >= sizeof(kMagic) && std::memcmp(bytes, kMagic, sizeof(kMagic)) == 0;
}

uint32_t crc32Of(const uint8_t* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large buffers in pieces.
  while (size > 0) {
    const uInt piece = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, data, piece);
    data += piece;
    size -= piece;
  }
  return static_cast<uint32_t>(crc);
}

// ---------------------------------------------------------------- reader

std::shared_ptr<ContainerReader> ContainerReader::open(const std::string& path) {
  std::shared_ptr<ContainerReader> reader(new ContainerReader());
  reader->file_ = VSIFOpenL(path.c_str(), "rb");
  if (!reader->file_) throw Error("cannot open " + path, ErrorKind::FileIO);
  VSILFILE* file = reader->file_;

  if (VSIFSeekL(file, 0, SEEK_END) != 0) throw Error("cannot seek in " + path, ErrorKind::FileIO);
  const uint64_t fileSize = VSIFTellL(file);

  uint8_t preamble[kPreambleSize];
  readExactly(file, 0, preamble, sizeof(preamble), "preamble");
  if (!hasNsatMagic(preamble, sizeof(preamble))) throw Error(path + " is not an NSAT file", ErrorKind::OpenFailed);
  const int major = int(getLE(preamble + 8, 2));
  reader->formatMinor_ = int(getLE(preamble + 10, 2));
  if (major != kFormatMajor) {
    throw Error("NSAT format version " + std::to_string(major) + "." +
                std::to_string(reader->formatMinor_) + " is not supported (this driver reads " +
                    std::to_string(kFormatMajor) + ".x)",
                ErrorKind::NotSupported);
  }
  const uint32_t headerSize = uint32_t(getLE(preamble + 12, 4));
  const uint32_t headerCrc = uint32_t(getLE(preamble + 16, 4));
  const uint32_t indexCrc = uint32_t(getLE(preamble + 20, 4));
  if (headerSize == 0 || headerSize > kMaxHeaderSize || kPreambleSize + headerSize > fileSize) {
    throw Error("header size is invalid or the file is truncated");
  }
  std::vector<uint8_t> headerBytes(headerSize);
  readExactly(file, kPreambleSize, headerBytes.data(), headerSize, "header");
  if (crc32Of(headerBytes.data(), headerSize) != headerCrc) {
    throw Error("header checksum mismatch: the file is corrupt");
  }
  // Byte 24 was reserved (0) in 1.0, which is the plain JSON encoding.
  const uint8_t encoding = preamble[24];
  if (encoding > uint8_t(kNewestHeaderEncoding)) {
    throw Error("NSAT header encoding " + std::to_string(encoding) +
                    " is not supported by this driver (a newer writer made the file)",
                ErrorKind::NotSupported);
  }
  reader->headerEncoding_ = HeaderEncoding(encoding);
  const std::string headerText = decodeHeader(headerBytes.data(), headerSize,
                                              reader->headerEncoding_, kMaxHeaderSize);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(headerText);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("header is not valid JSON: ") + e.what());
  }
  reader->header_ = Header::fromJson(json);

  const uint64_t indexOffset = kPreambleSize + headerSize;
  const uint64_t tiles = reader->header_.totalTileCount();
  if (tiles > (fileSize - indexOffset) / kIndexEntrySize) {
    throw Error("tile index does not fit in the file: truncated or corrupt");
  }
  std::vector<uint8_t> indexBytes(tiles * kIndexEntrySize);
  readExactly(file, indexOffset, indexBytes.data(), indexBytes.size(), "tile index");
  if (crc32Of(indexBytes.data(), indexBytes.size()) != indexCrc) {
    throw Error("tile index checksum mismatch: the file is corrupt");
  }
  const uint64_t dataStart = indexOffset + indexBytes.size();
  reader->index_.resize(tiles);
  for (uint64_t i = 0; i < tiles; ++i) {
    const uint8_t* raw = indexBytes.data() + i * kIndexEntrySize;
    TileEntry& entry = reader->index_[i];
    entry.offset = getLE(raw, 8);
    entry.size = uint32_t(getLE(raw + 8, 4));
    entry.crc32 = uint32_t(getLE(raw + 12, 4));
    if (entry.size == 0 || entry.offset < dataStart || entry.offset > fileSize ||
        entry.size > fileSize - entry.offset) {
      throw Error("tile index entry " + std::to_string(i) +
                  " points outside the file: truncated or corrupt");
    }
  }
  reader->levelFirstTile_ = firstTileOfEachLevel(reader->header_);
  return reader;
}

ContainerReader::~ContainerReader() {
  if (file_) VSIFCloseL(file_);
}

const TileEntry& ContainerReader::entry(int level, int tileX, int tileY) const {
  if (level < 0 || size_t(level) >= header_.levels.size() || tileX < 0 || tileY < 0 ||
      tileX >= header_.tilesAcross(level) || tileY >= header_.tilesDown(level)) {
    throw Error("tile request outside the raster");
  }
  return index_[levelFirstTile_[level] + uint64_t(tileY) * header_.tilesAcross(level) + tileX];
}

namespace {

void checkTileCrc(const std::vector<uint8_t>& payload, const TileEntry& tile, int level, int tileX,
                  int tileY) {
  if (crc32Of(payload.data(), payload.size()) != tile.crc32) {
    throw Error("tile (" + std::to_string(tileX) + ", " + std::to_string(tileY) + ") of level " +
                std::to_string(level) + " failed its CRC32 check: the file is corrupt");
  }
}

}  // namespace

std::vector<uint8_t> ContainerReader::readTile(int level, int tileX, int tileY) const {
  const TileEntry& tile = entry(level, tileX, tileY);
  std::vector<uint8_t> payload(tile.size);
  {
    std::lock_guard<std::mutex> lock(fileMutex_);
    readExactly(file_, tile.offset, payload.data(), payload.size(), "tile");
  }
  checkTileCrc(payload, tile, level, tileX, tileY);
  return payload;
}

std::vector<std::vector<uint8_t>> ContainerReader::readTiles(
    int level, const std::vector<std::pair<int, int>>& tiles) const {
  std::vector<std::vector<uint8_t>> payloads(tiles.size());
  std::vector<void*> buffers(tiles.size());
  std::vector<vsi_l_offset> offsets(tiles.size());
  std::vector<size_t> sizes(tiles.size());
  for (size_t i = 0; i < tiles.size(); ++i) {
    const TileEntry& tile = entry(level, tiles[i].first, tiles[i].second);
    payloads[i].resize(tile.size);
    buffers[i] = payloads[i].data();
    offsets[i] = tile.offset;
    sizes[i] = tile.size;
  }
  {
    std::lock_guard<std::mutex> lock(fileMutex_);
    if (!tiles.empty() && VSIFReadMultiRangeL(int(tiles.size()), buffers.data(), offsets.data(),
                                              sizes.data(), file_) != 0) {
      throw Error("file is truncated or unreadable: cannot read the tiles of a window",
                  ErrorKind::FileIO);
    }
  }
  for (size_t i = 0; i < tiles.size(); ++i) {
    checkTileCrc(payloads[i], entry(level, tiles[i].first, tiles[i].second), level,
                 tiles[i].first, tiles[i].second);
  }
  return payloads;
}

uint64_t ContainerReader::levelPayloadBytes(int level) const {
  uint64_t total = 0;
  const uint64_t first = levelFirstTile_.at(level);
  for (uint64_t i = first; i < first + header_.tileCount(level); ++i) total += index_[i].size;
  return total;
}

// ---------------------------------------------------------------- writer

ContainerWriter::ContainerWriter(const std::string& path, Header header, size_t headerReserve,
                                 HeaderEncoding encoding)
    : path_(path), header_(std::move(header)), encoding_(encoding), headerReserve_(headerReserve) {
  header_.validate();
  if (header_.toJson().dump().size() + headerReserve > kMaxHeaderSize) {
    throw Error("header exceeds 16 MiB (too much metadata)", ErrorKind::NotSupported);
  }
  // Everything is allocated before the temporary file exists, so a failed allocation
  // leaves nothing behind.
  levelFirstTile_ = firstTileOfEachLevel(header_);
  index_.resize(header_.totalTileCount());
  temporaryPath_ = path + "." + std::to_string(getpid()) + ".partial";
  file_ = VSIFOpenL(temporaryPath_.c_str(), "wb");
  if (!file_) throw Error("cannot create " + temporaryPath_, ErrorKind::FileIO);
}

ContainerWriter::~ContainerWriter() { abort(); }

void ContainerWriter::writeLayoutStart(size_t reserve) {
  const std::string json = header_.toJson().dump();
  std::vector<uint8_t> stored = encodeHeader(json, encoding_);
  if (reserve) stored = encodeHeader(json, encoding_, stored.size() + reserve);
  headerSize_ = stored.size();
  indexOffset_ = kPreambleSize + stored.size();
  const uint64_t dataStart = indexOffset_ + index_.size() * kIndexEntrySize;

  uint8_t preamble[kPreambleSize] = {};
  std::memcpy(preamble, kMagic, sizeof(kMagic));
  putLE(preamble + 8, kFormatMajor, 2);
  putLE(preamble + 10, kFormatMinor, 2);
  putLE(preamble + 12, stored.size(), 4);
  putLE(preamble + 16, crc32Of(stored.data(), stored.size()), 4);
  // Bytes 20..23 (index CRC) are written by commit().
  preamble[24] = uint8_t(encoding_);
  writeExactly(file_, preamble, sizeof(preamble));
  writeExactly(file_, stored.data(), stored.size());
  // Placeholder: the index is known only once every tile is written.
  std::vector<uint8_t> zeros(index_.size() * kIndexEntrySize, 0);
  writeExactly(file_, zeros.data(), zeros.size());
  // The held tiles, in the order they came; their offsets were relative to the data start.
  for (TileEntry& tile : index_) {
    if (tile.size) tile.offset += dataStart;
  }
  for (const std::vector<uint8_t>& payload : heldTiles_) writeExactly(file_, payload.data(), payload.size());
  nextOffset_ = dataStart + heldBytes_;
  heldTiles_.clear();
  heldTiles_.shrink_to_fit();
  started_ = true;
}

void ContainerWriter::writeTile(int level, int tileX, int tileY,
                                const std::vector<uint8_t>& payload) {
  if (!file_) throw Error("writer is closed");
  if (payload.empty() || payload.size() > UINT32_MAX) throw Error("tile payload size invalid");
  TileEntry& tile =
      index_.at(levelFirstTile_.at(level) + uint64_t(tileY) * header_.tilesAcross(level) + tileX);
  tile.size = static_cast<uint32_t>(payload.size());
  tile.crc32 = crc32Of(payload.data(), payload.size());
  if (!started_) {
    tile.offset = heldBytes_;
    heldTiles_.push_back(payload);
    heldBytes_ += payload.size();
    if (heldBytes_ > kHeldTileBytes) writeLayoutStart(headerReserve_);
    return;
  }
  tile.offset = nextOffset_;
  writeExactly(file_, payload.data(), payload.size());
  nextOffset_ += payload.size();
}

void ContainerWriter::rewriteHeader(const Header& header) {
  if (!file_) throw Error("writer is closed");
  header.validate();
  if (!started_) {  // nothing written yet: the header is stored once, at its own size
    header_ = header;
    return;
  }
  const std::vector<uint8_t> stored = encodeHeader(header.toJson().dump(), encoding_, headerSize_);
  if (stored.size() > headerSize_) throw Error("internal error: the header outgrew its reserve");
  uint8_t crc[4];
  putLE(crc, crc32Of(stored.data(), stored.size()), 4);
  seekForWriting(file_, 16);
  writeExactly(file_, crc, sizeof(crc));
  seekForWriting(file_, kPreambleSize);
  writeExactly(file_, stored.data(), stored.size());
  seekForWriting(file_, nextOffset_);  // further tiles go after the ones written so far
  header_ = header;
}

void ContainerWriter::commit() {
  if (!file_) throw Error("writer is closed");
  if (!started_) writeLayoutStart(0);
  std::vector<uint8_t> indexBytes;
  indexBytes.reserve(index_.size() * kIndexEntrySize);
  for (const TileEntry& tile : index_) {
    if (tile.size == 0) throw Error("internal error: a tile was never written");
    appendLE(indexBytes, tile.offset, 8);
    appendLE(indexBytes, tile.size, 4);
    appendLE(indexBytes, tile.crc32, 4);
  }
  uint8_t indexCrc[4];
  putLE(indexCrc, crc32Of(indexBytes.data(), indexBytes.size()), 4);
  seekForWriting(file_, indexOffset_);
  writeExactly(file_, indexBytes.data(), indexBytes.size());
  seekForWriting(file_, 20);
  writeExactly(file_, indexCrc, sizeof(indexCrc));
  const bool closed = VSIFCloseL(file_) == 0;
  file_ = nullptr;
  if (!closed) {
    VSIUnlink(temporaryPath_.c_str());
    throw Error("closing " + temporaryPath_ + " failed (disk full?)", ErrorKind::FileIO);
  }
  if (VSIRename(temporaryPath_.c_str(), path_.c_str()) != 0) {
    VSIUnlink(temporaryPath_.c_str());
    throw Error("cannot rename " + temporaryPath_ + " to " + path_, ErrorKind::FileIO);
  }
  temporaryPath_.clear();
}

void ContainerWriter::abort() {
  if (file_) {
    VSIFCloseL(file_);
    file_ = nullptr;
  }
  if (!temporaryPath_.empty()) {
    VSIUnlink(temporaryPath_.c_str());
    temporaryPath_.clear();
  }
}

}  // namespace nsat
