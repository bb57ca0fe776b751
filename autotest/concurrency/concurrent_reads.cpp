// Issue 14, concurrency: many threads, each with its own dataset handle, read seeded
// random windows of NSAT files and must get the pixels of a serial read. Built with
// ThreadSanitizer by -DNSAT_TSAN=ON and run by scripts/tsan.sh, which also makes the files.
//
//   nsat_concurrent_reads [--threads N] [--windows W] [--seed S] [--eviction-cache-kb K]
//                         FILE.nsat...
//   nsat_concurrent_reads --selftest-race   (a deliberate race: TSan must report it)
// (defaults: 8 threads, 16 windows per thread, seed 14, a 1024 KiB cache in phase 3b)
//
// The NSAT driver comes from GDAL_DRIVER_PATH (the script points it at the TSan build;
// the program prints which gdal_NSAT.so and nsat_learned.so it loaded). For every file:
//   1. cold start: the N threads open their handles at once and each reads a window
//      before anything else in the process has touched the codec, so the learned
//      module's dlopen, the model loading and every lazy static race with each other;
//   2. reference: one handle opened with NUM_THREADS=1 reads every level (full
//      resolution and each internal overview) whole, serially, all bands;
//   3. hot: the N threads read W windows each (seeded; sizes from 1 px to a whole
//      level; level 0 or an overview; all bands in one dataset RasterIO, band-
//      interleaved or pixel-interleaved, or band by band in a random band order;
//      and resampled reads of level 0 that GDAL serves from an overview), on handles
//      opened with a random NUM_THREADS (none, 1, 2, 3, ALL_CPUS) and reopened now and
//      then, so handles open, read and close concurrently. The block cache is large
//      enough that no thread evicts another's blocks (why: at GDALSetCacheMax64 below);
//   3b. eviction: W/4 windows per thread through a tiny block cache, so that the
//      threads evict and recycle each other's blocks. TSan ignores these threads' own
//      memory accesses there (GDAL's eviction is invisible to it) but still watches
//      the decoder pool's threads;
//   4. a shared handle (below).
// Every window is compared with the reference (resampled reads with the same request
// made serially on the reference handle). Exit status 0 only if no window differs and
// no read failed.
//
// One handle shared by several threads: GDAL does not allow it for a plain dataset
// (gdal.org/user/multithreading.html). GDAL 3.10's GDAL_OF_THREAD_SAFE datasets
// (RFC 101) do allow it; the shared-handle phase runs only where gdal.h has that flag.
#include <gdal_priv.h>
#include <cpl_conv.h>
#include <cpl_string.h>

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

// ---------------------------------------------------------------- errors

std::atomic<long> gdalFailures{0};
std::mutex printMutex;

void CPL_STDCALL countErrors(CPLErr level, CPLErrorNum number, const char* message) {
  if (level < CE_Failure) return;
  const long count = ++gdalFailures;
  if (count <= 10) {
    std::lock_guard<std::mutex> lock(printMutex);
    std::fprintf(stderr, "GDAL error %d: %s\n", int(number), message);
  }
}

// ---------------------------------------------------------------- files and levels

struct Level {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // band-sequential, native type
};

struct File {
  std::string path;
  std::string codec;
  int bands = 0;
  GDALDataType type = GDT_Unknown;
  int sampleSize = 0;
  int blockSize = 0;
  std::vector<Level> levels;  // [0] full resolution, then the internal overviews
};

enum class Mode { AllBands, AllBandsPixelInterleaved, BandByBand, Resampled };

const char* modeName(Mode mode) {
  switch (mode) {
    case Mode::AllBands: return "all bands";
    case Mode::AllBandsPixelInterleaved: return "all bands, pixel-interleaved buffer";
    case Mode::BandByBand: return "band by band";
    case Mode::Resampled: return "resampled";
  }
  return "?";
}

struct Window {
  int file = 0;
  int level = 0;
  int x = 0, y = 0, width = 0, height = 0;
  Mode mode = Mode::AllBands;
  std::vector<int> bands;      // 1-based, the order they are read in
  int bufferWidth = 0, bufferHeight = 0;  // Resampled only
  GDALRIOResampleAlg resampling = GRIORA_NearestNeighbour;
  std::vector<uint8_t> expected;  // Resampled only: the serial read of the same request
};

const char* kThreadChoices[] = {nullptr, "1", "2", "3", "ALL_CPUS"};

GDALDataset* openHandle(const std::string& path, const char* threads) {
  const char* drivers[] = {"NSAT", nullptr};
  CPLStringList options;
  if (threads) options.SetNameValue("NUM_THREADS", threads);
  return GDALDataset::Open(path.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY | GDAL_OF_VERBOSE_ERROR,
                           drivers, options.List(), nullptr);
}

// The dataset that holds level `level` (0: the handle itself; k: its k-th overview).
GDALDataset* levelDataset(GDALDataset* handle, int level) {
  if (level == 0) return handle;
  GDALRasterBand* overview = handle->GetRasterBand(1)->GetOverview(level - 1);
  return overview ? overview->GetDataset() : nullptr;
}

// Reads one window into band-sequential native-type samples (`out`), in the window's mode.
bool readWindow(GDALDataset* handle, const File& file, const Window& window,
                std::vector<uint8_t>& out) {
  GDALDataset* dataset = levelDataset(handle, window.level);
  if (!dataset) return false;
  const int ss = file.sampleSize;
  const int outWidth = window.mode == Mode::Resampled ? window.bufferWidth : window.width;
  const int outHeight = window.mode == Mode::Resampled ? window.bufferHeight : window.height;
  const size_t plane = size_t(outWidth) * outHeight * ss;
  const int bandCount = int(window.bands.size());
  out.assign(plane * bandCount, 0);
  std::vector<int> bandMap(window.bands);
  GDALRasterIOExtraArg extra;
  INIT_RASTERIO_EXTRA_ARG(extra);
  extra.eResampleAlg = window.resampling;
  switch (window.mode) {
    case Mode::AllBands:
    case Mode::Resampled:
      return dataset->RasterIO(GF_Read, window.x, window.y, window.width, window.height, out.data(),
                               outWidth, outHeight, file.type, bandCount, bandMap.data(), 0, 0, 0,
                               &extra) == CE_None;
    case Mode::AllBandsPixelInterleaved: {
      std::vector<uint8_t> interleaved(out.size());
      const GSpacing pixel = GSpacing(ss) * bandCount;
      if (dataset->RasterIO(GF_Read, window.x, window.y, window.width, window.height,
                            interleaved.data(), outWidth, outHeight, file.type, bandCount,
                            bandMap.data(), pixel, pixel * outWidth, ss, &extra) != CE_None) {
        return false;
      }
      for (int b = 0; b < bandCount; ++b) {
        for (size_t p = 0; p < size_t(outWidth) * outHeight; ++p) {
          std::memcpy(&out[b * plane + p * ss], &interleaved[(p * bandCount + b) * ss], ss);
        }
      }
      return true;
    }
    case Mode::BandByBand:
      for (int b = 0; b < bandCount; ++b) {
        if (dataset->GetRasterBand(window.bands[b])
                ->RasterIO(GF_Read, window.x, window.y, window.width, window.height,
                           out.data() + b * plane, outWidth, outHeight, file.type, 0, 0,
                           &extra) != CE_None) {
          return false;
        }
      }
      return true;
  }
  return false;
}

// Samples of `got` that differ from what the window must contain.
size_t countMismatches(const File& file, const Window& window, const std::vector<uint8_t>& got) {
  if (window.mode == Mode::Resampled) {
    size_t differing = 0;
    for (size_t i = 0; i < got.size(); i += file.sampleSize) {
      differing += std::memcmp(&got[i], &window.expected[i], file.sampleSize) != 0;
    }
    return differing;
  }
  const Level& level = file.levels[size_t(window.level)];
  const size_t ss = file.sampleSize;
  const size_t row = size_t(window.width) * ss;
  size_t differing = 0;
  for (size_t b = 0; b < window.bands.size(); ++b) {
    const size_t band = size_t(window.bands[b] - 1);
    for (int y = 0; y < window.height; ++y) {
      const uint8_t* want = &level.pixels[((band * level.height + size_t(window.y + y)) * level.width +
                                           size_t(window.x)) * ss];
      const uint8_t* have = &got[(b * window.height + size_t(y)) * row];
      if (std::memcmp(want, have, row) == 0) continue;
      for (size_t x = 0; x < size_t(window.width); ++x) {
        differing += std::memcmp(want + x * ss, have + x * ss, ss) != 0;
      }
    }
  }
  return differing;
}

// A seeded random window of `file` (of its full-resolution level only, if `levelZero`).
Window randomWindow(std::mt19937_64& random, const std::vector<File>& files, int fileIndex,
                    bool levelZero = false) {
  auto uniform = [&](int low, int high) {  // inclusive
    return std::uniform_int_distribution<int>(low, high)(random);
  };
  const File& file = files[size_t(fileIndex)];
  Window window;
  window.file = fileIndex;
  const int modeDraw = uniform(0, 99);
  window.mode = modeDraw < 35 ? Mode::AllBands
                : modeDraw < 50 ? Mode::AllBandsPixelInterleaved
                : modeDraw < 85 ? Mode::BandByBand
                                : Mode::Resampled;
  const int levels = int(file.levels.size());
  window.level = window.mode == Mode::Resampled || uniform(0, 1) == 0 ? 0 : uniform(1, levels - 1);
  if (levels == 1 || levelZero) window.level = 0;
  const Level& level = file.levels[size_t(window.level)];
  auto side = [&](int limit) {
    const int draw = uniform(0, 99);
    const int block = file.blockSize;
    int size = draw < 30   ? uniform(1, std::min(48, block))  // inside a tile or two
               : draw < 75 ? uniform(block / 2, 3 * block)    // a few tiles
               : draw < 95 ? uniform(3 * block, 6 * block)    // many tiles
                           : limit;                           // the whole side
    return std::clamp(size, 1, limit);
  };
  window.width = side(level.width);
  window.height = side(level.height);
  window.x = uniform(0, level.width - window.width);
  window.y = uniform(0, level.height - window.height);
  if (uniform(0, 3) == 0) {  // tile-aligned corner
    window.x -= window.x % file.blockSize;
    window.y -= window.y % file.blockSize;
  }
  if (window.mode == Mode::Resampled) {
    const int factor = 1 << uniform(1, std::max(1, levels));  // 2, 4, ... beyond the last overview
    window.bufferWidth = std::max(1, window.width / factor);
    window.bufferHeight = std::max(1, window.height / factor);
    const GDALRIOResampleAlg choices[] = {GRIORA_NearestNeighbour, GRIORA_Average,
                                          GRIORA_Bilinear};
    window.resampling = choices[uniform(0, 2)];
  }
  for (int band = 1; band <= file.bands; ++band) window.bands.push_back(band);
  if (window.mode == Mode::BandByBand) {
    std::shuffle(window.bands.begin(), window.bands.end(), random);
    window.bands.resize(size_t(uniform(1, file.bands)));
  } else if (uniform(0, 4) == 0 && file.bands > 1) {
    std::shuffle(window.bands.begin(), window.bands.end(), random);  // a band map out of order
  }
  return window;
}

bool loadReference(File& file) {
  std::unique_ptr<GDALDataset> handle(openHandle(file.path, "1"));
  if (!handle) return false;
  file.bands = handle->GetRasterCount();
  GDALRasterBand* first = handle->GetRasterBand(1);
  file.type = first->GetRasterDataType();
  file.sampleSize = GDALGetDataTypeSizeBytes(file.type);
  int blockWidth = 0, blockHeight = 0;
  first->GetBlockSize(&blockWidth, &blockHeight);
  file.blockSize = blockWidth;
  const char* codec = handle->GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE");
  file.codec = codec ? codec : "?";
  const int levels = 1 + first->GetOverviewCount();
  for (int l = 0; l < levels; ++l) {
    GDALDataset* dataset = levelDataset(handle.get(), l);
    if (!dataset) return false;
    Level level;
    level.width = dataset->GetRasterXSize();
    level.height = dataset->GetRasterYSize();
    level.pixels.resize(size_t(level.width) * level.height * file.bands * file.sampleSize);
    if (dataset->RasterIO(GF_Read, 0, 0, level.width, level.height, level.pixels.data(),
                          level.width, level.height, file.type, file.bands, nullptr, 0, 0, 0,
                          nullptr) != CE_None) {
      return false;
    }
    file.levels.push_back(std::move(level));
  }
  return true;
}

// Where a loaded shared object came from (/proc/self/maps), or "".
std::string loadedObject(const char* name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const size_t slash = line.find('/');
    if (slash != std::string::npos && line.find(name) != std::string::npos) return line.substr(slash);
  }
  return "";
}

// All threads start their work together.
class StartLine {
 public:
  explicit StartLine(int parties) : waiting_(parties) {}
  void arriveAndWait() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (--waiting_ == 0) {
      released_.notify_all();
    } else {
      released_.wait(lock, [this] { return waiting_ == 0; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  int waiting_;
};

struct Tally {
  std::atomic<long> windows{0}, samples{0}, mismatches{0}, failures{0}, opens{0};
  std::atomic<long> byMode[4] = {};
  std::atomic<long> overviewWindows{0};
};

void reportMismatch(const File& file, const Window& window, size_t differing, const char* phase,
                    int thread) {
  std::lock_guard<std::mutex> lock(printMutex);
  std::fprintf(stderr,
               "MISMATCH (%s, thread %d): %s level %d window %d,%d %dx%d, %s, %zu samples "
               "differ\n",
               phase, thread, file.path.c_str(), window.level, window.x, window.y, window.width,
               window.height, modeName(window.mode), differing);
}

// ThreadSanitizer's per-thread switch (weak: the program also builds without TSan).
extern "C" void __tsan_ignore_thread_begin() __attribute__((weak));
extern "C" void __tsan_ignore_thread_end() __attribute__((weak));

// Thread t reads plans[t], each window on its own handle of the window's file, which it
// reopens now and then with a random NUM_THREADS. With `unwatched`, TSan ignores the
// memory accesses of these threads (not those of the decoder pool's threads).
void runThreads(int threadCount, const std::vector<File>& files,
                const std::vector<std::vector<Window>>& plans, uint64_t seed, const char* phase,
                Tally& tally, bool unwatched) {
  StartLine line(threadCount);
  std::vector<std::thread> threads;
  for (int t = 0; t < threadCount; ++t) {
    threads.emplace_back([&, t] {
      if (unwatched && __tsan_ignore_thread_begin) __tsan_ignore_thread_begin();
      std::mt19937_64 random(seed + uint64_t(t));
      std::vector<std::unique_ptr<GDALDataset>> handles(files.size());
      std::vector<uint8_t> result;
      line.arriveAndWait();
      for (const Window& window : plans[size_t(t)]) {
        const File& file = files[size_t(window.file)];
        auto& handle = handles[size_t(window.file)];
        if (!handle || std::uniform_int_distribution<int>(0, 3)(random) == 0) {
          handle.reset();  // close before opening again: another thread may be reading
          handle.reset(openHandle(file.path, kThreadChoices[random() % 5]));
          ++tally.opens;
          // The default domain (what gdalinfo prints) adds the auxiliary raster's summary.
          if (handle && random() % 2 == 0) handle->GetMetadata();
        }
        ++tally.windows;
        ++tally.byMode[int(window.mode)];
        if (window.level > 0) ++tally.overviewWindows;
        if (!handle || !readWindow(handle.get(), file, window, result)) {
          ++tally.failures;
          std::lock_guard<std::mutex> lock(printMutex);
          std::fprintf(stderr, "FAILED read (%s, thread %d): %s level %d window %d,%d %dx%d, %s\n",
                       phase, t, file.path.c_str(), window.level, window.x, window.y,
                       window.width, window.height, modeName(window.mode));
          continue;
        }
        tally.samples += long(result.size() / file.sampleSize);
        const size_t differing = countMismatches(file, window, result);
        if (differing) {
          tally.mismatches += long(differing);
          reportMismatch(file, window, differing, phase, t);
        }
      }
      handles.clear();
      if (unwatched && __tsan_ignore_thread_end) __tsan_ignore_thread_end();
    });
  }
  for (auto& thread : threads) thread.join();
}

// A deliberate data race, for scripts/tsan.sh to check that ThreadSanitizer is on: under
// TSan (halt_on_error=1) this never returns; without it, it returns 3.
long unsynchronised = 0;
int selfTestRace() {
  auto add = [] {
    for (int i = 0; i < 1000; ++i) unsynchronised = unsynchronised + 1;
  };
  std::thread first(add), second(add);
  first.join();
  second.join();
  std::printf("no ThreadSanitizer report for a deliberate race (count %ld)\n", unsynchronised);
  return 3;
}

void usage() {
  std::fprintf(stderr,
               "usage: nsat_concurrent_reads [--threads N] [--windows W] [--seed S] "
               "[--eviction-cache-kb K] FILE.nsat...\n");
}

}  // namespace

int main(int argc, char** argv) {
  int threadCount = 8, windowsPerThread = 16, evictionCacheKb = 1024;
  uint64_t seed = 14;
  std::vector<File> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--selftest-race") return selfTestRace();
    if (arg == "--threads") threadCount = std::max(1, std::atoi(value()));
    else if (arg == "--windows") windowsPerThread = std::max(1, std::atoi(value()));
    else if (arg == "--seed") seed = std::strtoull(value(), nullptr, 10);
    else if (arg == "--eviction-cache-kb") evictionCacheKb = std::max(64, std::atoi(value()));
    else if (arg.rfind("--", 0) == 0) { usage(); return 2; }
    else {
      File file;
      file.path = arg;
      files.push_back(std::move(file));
    }
  }
  if (files.empty()) {
    usage();
    return 2;
  }

  GDALAllRegister();
  CPLSetErrorHandler(countErrors);
  GDALDriver* driver = GetGDALDriverManager()->GetDriverByName("NSAT");
  if (!driver) {
    std::fprintf(stderr, "the NSAT driver is not registered (set GDAL_DRIVER_PATH)\n");
    return 2;
  }
  Dl_info plugin;
  const bool located = dladdr(reinterpret_cast<void*>(driver->pfnOpen), &plugin) && plugin.dli_fname;
  std::printf("plugin: %s\n", located ? plugin.dli_fname : "?");
  const auto started = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };

  Tally tally;
  // 1. Cold start: thread t opens file t % n and reads a window before any serial read.
  // The windows are planned on the file's header (sizes only), checked after step 2.
  for (File& file : files) {
    std::unique_ptr<GDALDataset> probe(openHandle(file.path, "1"));
    if (!probe) {
      std::fprintf(stderr, "cannot open %s with the NSAT driver\n", file.path.c_str());
      return 1;
    }
    // Enough of the file for randomWindow: sizes of every level, bands, block size.
    file.bands = probe->GetRasterCount();
    file.type = probe->GetRasterBand(1)->GetRasterDataType();
    file.sampleSize = GDALGetDataTypeSizeBytes(file.type);
    int blockHeight = 0;
    probe->GetRasterBand(1)->GetBlockSize(&file.blockSize, &blockHeight);
    for (int l = 0; l <= probe->GetRasterBand(1)->GetOverviewCount(); ++l) {
      Level level;
      level.width = levelDataset(probe.get(), l)->GetRasterXSize();
      level.height = levelDataset(probe.get(), l)->GetRasterYSize();
      file.levels.push_back(std::move(level));
    }
  }
  // No block evicted by another thread in phases 1-4: GDAL's block cache hands the
  // memory of a block it evicts to the block it creates, and the lock count that orders
  // the two (CPLAtomicCompareAndExchange in GDALRasterBlock::Internalize) is an atomic of
  // the uninstrumented libgdal, which TSan cannot see: it would report the new owner's
  // writes (our copyBand) as racing with the old owner's. Every thread may hold every
  // block of every file; twice that, plus room for the serial handles.
  int64_t allBlocks = 0;
  for (const File& file : files) {
    for (const Level& level : file.levels) {
      const int64_t columns = (level.width + file.blockSize - 1) / file.blockSize;
      const int64_t rows = (level.height + file.blockSize - 1) / file.blockSize;
      allBlocks += columns * rows * file.blockSize * file.blockSize * file.bands * file.sampleSize;
    }
  }
  GDALSetCacheMax64(2 * (threadCount + 2) * allBlocks + (int64_t(64) << 20));
  std::vector<Window> coldWindows;
  std::vector<std::vector<uint8_t>> coldResults(static_cast<size_t>(threadCount));
  std::vector<int> coldOk(size_t(threadCount), 0);
  {
    std::mt19937_64 random(seed);
    for (int t = 0; t < threadCount; ++t) {
      Window window = randomWindow(random, files, t % int(files.size()));
      if (window.mode == Mode::Resampled) window.mode = Mode::AllBands;  // no serial twin yet
      coldWindows.push_back(window);
    }
    StartLine line(threadCount);
    std::vector<std::thread> threads;
    for (int t = 0; t < threadCount; ++t) {
      threads.emplace_back([&, t] {
        const Window& window = coldWindows[size_t(t)];
        const File& file = files[size_t(window.file)];
        line.arriveAndWait();
        std::unique_ptr<GDALDataset> handle(openHandle(file.path, kThreadChoices[t % 5]));
        ++tally.opens;
        coldOk[size_t(t)] = handle && readWindow(handle.get(), file, window, coldResults[size_t(t)]);
      });
    }
    for (auto& thread : threads) thread.join();
  }
  std::printf("cold start: %d threads opened and read at once (%.1f s)\n", threadCount, seconds());
  const std::string learned = loadedObject("nsat_learned.so");
  std::printf("learned module: %s\n", learned.empty() ? "(not loaded)" : learned.c_str());

  // 2. Reference: serial reads of every level.
  for (File& file : files) {
    file.levels.clear();
    if (!loadReference(file)) {
      std::fprintf(stderr, "cannot read %s serially\n", file.path.c_str());
      return 1;
    }
    std::printf("reference: %s (%s, %d band(s) %s, %d px blocks, levels", file.path.c_str(),
                file.codec.c_str(), file.bands, GDALGetDataTypeName(file.type), file.blockSize);
    for (const Level& level : file.levels) std::printf(" %dx%d", level.width, level.height);
    std::printf(")\n");
  }
  for (int t = 0; t < threadCount; ++t) {
    const Window& window = coldWindows[size_t(t)];
    ++tally.windows;
    if (!coldOk[size_t(t)]) {
      ++tally.failures;
      std::fprintf(stderr, "FAILED cold-start read of thread %d\n", t);
      continue;
    }
    const size_t differing = countMismatches(files[size_t(window.file)], window, coldResults[size_t(t)]);
    tally.samples += long(coldResults[size_t(t)].size() / files[size_t(window.file)].sampleSize);
    if (differing) {
      tally.mismatches += long(differing);
      reportMismatch(files[size_t(window.file)], window, differing, "cold start", t);
    }
  }
  std::printf("reference read (%.1f s)\n", seconds());

  // 3. Hot: every thread's windows, planned here; resampled ones read serially first.
  std::vector<std::vector<Window>> plans(static_cast<size_t>(threadCount));
  {
    std::vector<std::unique_ptr<GDALDataset>> serial;
    for (const File& file : files) serial.emplace_back(openHandle(file.path, "1"));
    for (int t = 0; t < threadCount; ++t) {
      std::mt19937_64 random(seed * 1000003u + uint64_t(t) + 1);
      for (int w = 0; w < windowsPerThread; ++w) {
        const int fileIndex = std::uniform_int_distribution<int>(0, int(files.size()) - 1)(random);
        Window window = randomWindow(random, files, fileIndex);
        if (window.mode == Mode::Resampled &&
            !readWindow(serial[size_t(fileIndex)].get(), files[size_t(fileIndex)], window,
                        window.expected)) {
          std::fprintf(stderr, "cannot make the serial read of a resampled window\n");
          return 1;
        }
        plans[size_t(t)].push_back(std::move(window));
      }
    }
  }
  std::printf("windows planned (%.1f s)\n", seconds());
  runThreads(threadCount, files, plans, seed * 7919u, "hot", tally, false);
  std::printf("concurrent reads done (%.1f s)\n", seconds());

  // 3b. Eviction: the same with a block cache too small for one thread's windows, so the
  // threads evict and recycle each other's blocks (GDAL_CACHEMAX as QGIS users set it).
  // Pixels only for these threads' own accesses (see above); TSan still watches the
  // decoder pool's threads.
  {
    std::vector<std::vector<Window>> evictionPlans(static_cast<size_t>(threadCount));
    std::mt19937_64 random(seed * 104729u);
    for (auto& plan : evictionPlans) {
      for (int w = 0; w < std::max(2, windowsPerThread / 4); ++w) {
        const int fileIndex = std::uniform_int_distribution<int>(0, int(files.size()) - 1)(random);
        Window window = randomWindow(random, files, fileIndex);
        if (window.mode == Mode::Resampled) window.mode = Mode::AllBands;  // no serial twin
        plan.push_back(std::move(window));
      }
    }
    const long before = tally.windows;
    GDALSetCacheMax64(int64_t(evictionCacheKb) << 10);
    runThreads(threadCount, files, evictionPlans, seed * 6151u, "eviction", tally, true);
    std::printf("eviction: %ld windows through a %d KiB block cache (%.1f s)\n",
                tally.windows - before, evictionCacheKb, seconds());
  }

#ifdef GDAL_OF_THREAD_SAFE
  // 4. One thread-safe handle (GDAL >= 3.10, RFC 101) shared by every thread; full
  // resolution only (the windows of overviews go through their own datasets).
  {
    std::unique_ptr<GDALDataset> shared(GDALDataset::Open(
        files[0].path.c_str(), GDAL_OF_RASTER | GDAL_OF_THREAD_SAFE | GDAL_OF_VERBOSE_ERROR));
    if (!shared) {
      ++tally.failures;
      std::fprintf(stderr, "FAILED: cannot open %s with GDAL_OF_THREAD_SAFE\n", files[0].path.c_str());
    } else {
      std::vector<std::thread> threads;
      for (int t = 0; t < threadCount; ++t) {
        threads.emplace_back([&, t] {
          std::mt19937_64 random(seed * 31u + uint64_t(t));
          std::vector<uint8_t> result;
          for (int w = 0; w < std::max(1, windowsPerThread / 4); ++w) {
            Window window = randomWindow(random, files, 0, true);
            if (window.mode == Mode::Resampled) window.mode = Mode::BandByBand;  // no serial twin
            ++tally.windows;
            if (!readWindow(shared.get(), files[0], window, result)) {
              ++tally.failures;
              continue;
            }
            tally.samples += long(result.size() / files[0].sampleSize);
            const size_t differing = countMismatches(files[0], window, result);
            if (differing) {
              tally.mismatches += long(differing);
              reportMismatch(files[0], window, differing, "shared thread-safe handle", t);
            }
          }
        });
      }
      for (auto& thread : threads) thread.join();
      std::printf("shared thread-safe handle (GDAL_OF_THREAD_SAFE): %d threads done\n", threadCount);
    }
  }
#else
  std::printf("shared handle: skipped (GDAL %s datasets are not thread-safe; "
              "GDAL_OF_THREAD_SAFE needs GDAL 3.10)\n", GDALVersionInfo("RELEASE_NAME"));
#endif

  std::printf(
      "summary: %d threads, %zu file(s), %ld handles opened, %ld windows (%ld all bands, %ld "
      "all bands pixel-interleaved, %ld band by band, %ld resampled; %ld on overviews), %ld "
      "samples compared, %ld mismatching samples, %ld failed reads, %ld GDAL errors, %.1f s\n",
      threadCount, files.size(), tally.opens.load(), tally.windows.load(),
      tally.byMode[0].load(), tally.byMode[1].load(), tally.byMode[2].load(),
      tally.byMode[3].load(), tally.overviewWindows.load(), tally.samples.load(),
      tally.mismatches.load(), tally.failures.load(), gdalFailures.load(), seconds());
  const bool ok = tally.mismatches == 0 && tally.failures == 0 && gdalFailures == 0;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  GDALDestroyDriverManager();
  return ok ? 0 : 1;
}
