// The write pipeline of CreateCopy: source pixels in, tile payloads out in file order.
//
// Tiles go in file order (level, row, column). A level is read in windows of tiles of
// kWindowBytes (at least one tile): runs of tiles within one tile row of a wide image,
// several whole tile rows of a narrow one. A round is a run of consecutive windows that
// holds at least `threads` tiles, so that a one-tile-wide image keeps every thread busy
// too; the pool codes its tiles while the calling thread stores the round for the next
// level and reads the next round, then the round's payloads (the reorder buffer) are
// written in file order.
//
// Overview level k is made, with the user's resampling, from the pixels of level k-1 as
// they were read (never from decoded lossy pixels), kept in a temporary ZSTD GTiff; level
// 1 reads the source itself. Keeping level 0 as well would cost a temporary file as large
// as the image: reading the source again for level 1 costs one more pass over it at full
// resolution instead, and each further level reads a file a quarter the size of the one
// before (the strip pipeline before this one read the full-resolution source once per
// level). gdaladdo builds GTiff overviews the same way, so NSAT's match them.
#include "driver/nsat_tile_encoder.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <utility>

#include <cpl_multiproc.h>
#include <cpl_string.h>

#include "codecs/thread_pool.h"
#include "container/tile_payload.h"
#include "driver/nsat_dataset.h"

namespace nsat {

namespace {

// A rectangle of tiles of one level, read with one RasterIO call.
struct Window {
  int tileX = 0, tileY = 0;  // its first tile
  int tilesAcross = 0, tilesDown = 0;
};

// A window's pixels, planar (band, row, column), and where they lie in their level: the
// window's tiles and, around them, the codec's context margin (clipped to the level).
struct WindowPixels {
  Window window;
  TileShape core;  // the tiles alone
  TileShape area;  // the pixels read: the tiles and the margin
  std::vector<uint8_t> planar;
};

// A level's read windows, in file order.
std::vector<Window> windowsOf(const Header& header, int level) {
  const size_t tileBytes =
      size_t(header.blockWidth) * header.blockHeight * header.bands * dataTypeSize(header.type);
  const int tilesPerWindow = int(std::clamp<size_t>(kWindowBytes / tileBytes, 1, INT_MAX));
  const int across = header.tilesAcross(level), down = header.tilesDown(level);
  std::vector<Window> windows;
  if (across <= tilesPerWindow) {
    const int rows = tilesPerWindow / across;
    for (int y = 0; y < down; y += rows) windows.push_back({0, y, across, std::min(rows, down - y)});
  } else {
    for (int y = 0; y < down; ++y) {
      for (int x = 0; x < across; x += tilesPerWindow) {
        windows.push_back({x, y, std::min(tilesPerWindow, across - x), 1});
      }
    }
  }
  return windows;
}

// Windows [first, end) of a level, whose tiles are coded together.
struct Round {
  size_t first = 0, end = 0;
};

std::vector<Round> roundsOf(const std::vector<Window>& windows, int threads) {
  std::vector<Round> rounds;
  for (size_t first = 0; first < windows.size();) {
    size_t end = first;
    for (int tiles = 0; end < windows.size() && tiles < threads; ++end) {
      tiles += windows[end].tilesAcross * windows[end].tilesDown;
    }
    rounds.push_back({first, end});
    first = end;
  }
  return rounds;
}

// Where a level's pixels come from: the source for levels 0 and 1, the previous level's
// temporary copy beyond; both cover the same ground at the level's or a finer resolution.
struct LevelInput {
  GDALDataset* dataset = nullptr;
  std::string name;  // for error messages
};

WindowPixels readWindow(const LevelInput& input, GDALRIOResampleAlg resampling,
                        const Header& header, int level, const Window& window, int margin) {
  const LevelSize& size = header.levels[level];
  WindowPixels pixels;
  pixels.window = window;
  TileShape& core = pixels.core;
  core = header.tileShape(level, window.tileX, window.tileY);
  core.width = std::min(window.tilesAcross * header.blockWidth, size.width - core.placement.x);
  core.height = std::min(window.tilesDown * header.blockHeight, size.height - core.placement.y);
  pixels.area = contextWindow(core, margin);
  const TilePlacement& at = pixels.area.placement;
  const size_t sampleSize = dataTypeSize(header.type);
  pixels.planar.resize(pixels.area.byteCount());

  const int inputWidth = input.dataset->GetRasterXSize();
  const int inputHeight = input.dataset->GetRasterYSize();
  const double scaleX = double(inputWidth) / size.width;
  const double scaleY = double(inputHeight) / size.height;
  const double left = at.x * scaleX, top = at.y * scaleY;
  const double right = std::min<double>(inputWidth, (at.x + pixels.area.width) * scaleX);
  const double bottom = std::min<double>(inputHeight, (at.y + pixels.area.height) * scaleY);
  const int firstColumn = int(std::floor(left)), firstRow = int(std::floor(top));
  const int endColumn = std::min(inputWidth, int(std::ceil(right)));
  const int endRow = std::min(inputHeight, int(std::ceil(bottom)));

  GDALRasterIOExtraArg extra;
  INIT_RASTERIO_EXTRA_ARG(extra);
  const bool sameSize = inputWidth == size.width && inputHeight == size.height;
  extra.eResampleAlg = sameSize ? GRIORA_NearestNeighbour : resampling;
  extra.bFloatingPointWindowValidity = TRUE;
  extra.dfXOff = left;
  extra.dfYOff = top;
  extra.dfXSize = right - left;
  extra.dfYSize = bottom - top;
  const GSpacing pixelSpace = GSpacing(sampleSize);
  const GSpacing lineSpace = pixelSpace * pixels.area.width;
  const GSpacing bandSpace = lineSpace * pixels.area.height;
  if (input.dataset->RasterIO(GF_Read, firstColumn, firstRow, endColumn - firstColumn,
                              endRow - firstRow, pixels.planar.data(), pixels.area.width,
                              pixels.area.height, toGdalType(header.type), header.bands, nullptr,
                              pixelSpace, lineSpace, bandSpace, &extra) != CE_None) {
    throw Error("reading " + input.name + " failed", ErrorKind::FileIO);
  }
  return pixels;
}

// pid and a counter of this process: no two writers on one machine get the same name;
// the random part keeps writers on machines that share a folder apart.
std::string uniqueTemporaryPath(const std::string& folder, int level) {
  static std::atomic<unsigned> counter{0};
  std::random_device random;
  const unsigned long long noise = (uint64_t(random()) << 32) ^ random();
  return CPLFormFilename(folder.c_str(),
                         CPLSPrintf("nsat_level%d_%d_%u_%016llx", level,
                                    CPLGetCurrentProcessID(), counter++, noise),
                         "tif");
}

std::string temporaryFolder(const EncodeSettings& settings) {
  if (const char* configured = CPLGetConfigOption("CPL_TMPDIR", nullptr)) return configured;
  if (!settings.temporaryFolder.empty()) return settings.temporaryFolder;
  const char* system = std::getenv("TMPDIR");
  return system && *system ? system : "/tmp";
}

// The GTiff's block: the largest multiple of 16 up to 512 that divides the NSAT block,
// so that each GTiff block lies in one read window and is written (compressed) once.
int temporaryBlockSize(int nsatBlockSize) {
  int size = std::min(nsatBlockSize, 512) / 16 * 16;
  while (nsatBlockSize % size != 0) size -= 16;
  return size;
}

// One overview level's pixels, in a tiled ZSTD GTiff while the next level is made from
// them; the file is removed when this goes out of scope, also on error or cancellation.
class TemporaryLevel {
 public:
  TemporaryLevel(const std::string& folder, const Header& header, int level)
      : path_(uniqueTemporaryPath(folder, level)),
        name_("the temporary copy of overview level " + std::to_string(level) + " (" + path_ + ")") {
    GDALDriver* gtiff = GetGDALDriverManager()->GetDriverByName("GTiff");
    if (!gtiff) throw Error("overviews need GDAL's GTiff driver, which is not registered");
    const LevelSize& size = header.levels[level];
    CPLStringList options;
    options.SetNameValue("TILED", "YES");
    options.SetNameValue("BLOCKXSIZE", std::to_string(temporaryBlockSize(header.blockWidth)).c_str());
    options.SetNameValue("BLOCKYSIZE", std::to_string(temporaryBlockSize(header.blockHeight)).c_str());
    options.SetNameValue("INTERLEAVE", "BAND");
    options.SetNameValue("BIGTIFF", "YES");
    const char* compressions = gtiff->GetMetadataItem(GDAL_DMD_CREATIONOPTIONLIST);
    if (compressions && std::strstr(compressions, "ZSTD")) {
      options.SetNameValue("COMPRESS", "ZSTD");
      options.SetNameValue("ZSTD_LEVEL", "1");
    }
    dataset_ = gtiff->Create(path_.c_str(), size.width, size.height, header.bands,
                             toGdalType(header.type), options.List());
    if (!dataset_) {
      remove();
      throw Error("cannot create " + name_ + "; set CPL_TMPDIR to a folder with room",
                  ErrorKind::FileIO);
    }
    // Resampling the next level must skip nodata as it did on the source. GTiff keeps one
    // nodata value per file, but per band while the file stays open, which it does: its
    // warning about reopening does not apply.
    CPLPushErrorHandler(CPLQuietErrorHandler);
    for (int band = 0; band < header.bands; ++band) {
      if (header.nodata[band]) dataset_->GetRasterBand(band + 1)->SetNoDataValue(*header.nodata[band]);
    }
    CPLPopErrorHandler();
  }
  ~TemporaryLevel() { remove(); }
  TemporaryLevel(const TemporaryLevel&) = delete;
  TemporaryLevel& operator=(const TemporaryLevel&) = delete;

  LevelInput input() const { return {dataset_, name_}; }

  // The window's tiles, not its margin: the neighbouring windows store that.
  void store(const Header& header, WindowPixels& pixels) {
    const GSpacing pixelSpace = GSpacing(dataTypeSize(header.type));
    const GSpacing lineSpace = pixelSpace * pixels.area.width;
    const TilePlacement& at = pixels.area.placement;
    const TileShape& core = pixels.core;
    uint8_t* first = pixels.planar.data() + (core.placement.y - at.y) * lineSpace +
                     (core.placement.x - at.x) * pixelSpace;
    if (dataset_->RasterIO(GF_Write, core.placement.x, core.placement.y, core.width,
                           core.height, first, core.width, core.height,
                           toGdalType(header.type), header.bands, nullptr, pixelSpace, lineSpace,
                           lineSpace * pixels.area.height, nullptr) != CE_None) {
      throw writeFailed();
    }
  }

  // Writes what GDAL's block cache still holds, so that a full disk shows now.
  void finish() {
    CPLErrorReset();
    dataset_->FlushCache(false);
    if (CPLGetLastErrorType() == CE_Failure) throw writeFailed();
  }

 private:
  Error writeFailed() const {
    return Error("writing " + name_ + " failed; set CPL_TMPDIR to a folder with room",
                 ErrorKind::FileIO);
  }
  // Quiet: a copy that cannot be written is an error already, and is deleted anyway.
  void remove() {
    CPLPushErrorHandler(CPLQuietErrorHandler);
    if (dataset_) GDALClose(dataset_);
    dataset_ = nullptr;
    VSIUnlink(path_.c_str());
    VSIUnlink((path_ + ".aux.xml").c_str());
    CPLPopErrorHandler();
  }

  std::string path_;
  std::string name_;
  GDALDataset* dataset_ = nullptr;
};

// Runs code(0 .. jobs-1) on the shared pool. The calling thread, which alone touches GDAL
// datasets and calls the user's progress (both belong to its thread), also runs `io` once
// and `report` after each job it codes.
void runRound(size_t jobs, int threads, const std::function<void(size_t)>& code,
              const std::function<void()>& io, const std::function<void()>& report) {
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> ioClaimed{false};
  ThreadPool::shared().parallelFor(jobs, threads, [&](size_t job) {
    const bool onCaller = std::this_thread::get_id() == caller;
    if (onCaller && !ioClaimed.exchange(true)) io();
    code(job);
    if (onCaller) report();
  });
  if (!ioClaimed.exchange(true)) io();  // the helpers took every job before the caller came
}

struct TileJob {
  const WindowPixels* pixels;
  int tileX, tileY;
};

}  // namespace

AuxiliarySummary encodeAllLevels(GDALDataset& source, ContainerWriter& writer, const Codec& codec,
                                 const EncodeSettings& settings, bool summarise,
                                 GDALProgressFunc progress, void* progressData) {
  AuxiliarySummary summary;
  const Header& header = writer.header();
  const int levels = int(header.levels.size());
  double totalPixels = 0;
  for (const auto& level : header.levels) totalPixels += double(level.width) * level.height;
  std::atomic<uint64_t> codedPixels{0};
  const auto report = [&] {
    if (!progress(double(codedPixels.load()) / totalPixels, nullptr, progressData)) {
      throw Error("cancelled by the user", ErrorKind::Cancelled);
    }
  };
  const LevelInput sourceInput{&source, "the source image"};
  const int margin = codec.contextMargin();
  std::unique_ptr<TemporaryLevel> previousLevel;  // pixels of level - 1 when level >= 2

  for (int level = 0; level < levels; ++level) {
    const LevelInput input = level >= 2 ? previousLevel->input() : sourceInput;
    std::unique_ptr<TemporaryLevel> thisLevel;
    if (level >= 1 && level + 1 < levels) {
      thisLevel = std::make_unique<TemporaryLevel>(temporaryFolder(settings), header, level);
    }
    const std::vector<Window> windows = windowsOf(header, level);
    const std::vector<Round> rounds = roundsOf(windows, settings.threads);
    const auto readRound = [&](const Round& round) {
      std::vector<WindowPixels> pixels;
      for (size_t w = round.first; w < round.end; ++w) {
        pixels.push_back(readWindow(input, settings.resampling, header, level, windows[w], margin));
      }
      return pixels;
    };

    std::vector<WindowPixels> next = readRound(rounds.front());
    for (size_t r = 0; r < rounds.size(); ++r) {
      std::vector<WindowPixels> current = std::exchange(next, {});
      std::vector<TileJob> jobs;
      for (const WindowPixels& pixels : current) {
        const Window& window = pixels.window;
        for (int tileY = window.tileY; tileY < window.tileY + window.tilesDown; ++tileY) {
          for (int tileX = window.tileX; tileX < window.tileX + window.tilesAcross; ++tileX) {
            jobs.push_back({&pixels, tileX, tileY});
          }
        }
      }
      std::vector<std::vector<uint8_t>> payloads(jobs.size());
      std::vector<AuxiliarySummary> summaries(jobs.size());
      const auto codeTile = [&](size_t j) {
        const TileShape shape = header.tileShape(level, jobs[j].tileX, jobs[j].tileY);
        const WindowPixels& pixels = *jobs[j].pixels;
        // A window of this one tile (large tiles) is its planar buffer already.
        const bool wholeWindow =
            pixels.area.width == shape.width && pixels.area.height == shape.height;
        std::vector<uint8_t> cut;
        if (!wholeWindow) {
          cut.resize(shape.byteCount());
          copyClamped(pixels.area, pixels.planar.data(), shape, cut.data());
        }
        EncodeGuide guide;
        if (settings.regionOfInterest) guide.regionOfInterest = settings.regionOfInterest->tileMask(shape);
        if (margin > 0) {
          const TileShape context = contextWindow(shape, margin);
          guide.context.resize(context.byteCount());
          copyClamped(pixels.area, pixels.planar.data(), context, guide.context.data());
        }
        payloads[j] = encodeTilePayload(codec, shape, wholeWindow ? pixels.planar.data() : cut.data(),
                                        header.nodata, guide);
        if (summarise && level == 0) summaries[j] = summariseTile(codec, shape, payloads[j]);
        codedPixels += shape.pixelsPerBand();
      };
      const auto storeAndReadAhead = [&] {
        if (thisLevel) {
          for (WindowPixels& pixels : current) thisLevel->store(header, pixels);
        }
        if (r + 1 < rounds.size()) next = readRound(rounds[r + 1]);
      };
      runRound(jobs.size(), settings.threads, codeTile, storeAndReadAhead, report);

      for (size_t j = 0; j < jobs.size(); ++j) {
        writer.writeTile(level, jobs[j].tileX, jobs[j].tileY, payloads[j]);
        summary.add(summaries[j]);
      }
      report();
    }
    if (thisLevel) thisLevel->finish();
    previousLevel = std::move(thisLevel);
  }
  return summary;
}

}  // namespace nsat
