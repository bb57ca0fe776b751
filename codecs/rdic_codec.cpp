#include "codecs/rdic_codec.h"

#include <gdal_priv.h>

#include <algorithm>
#include <cmath>

#include "codecs/byte_io.h"
#include "codecs/jpeg_codec.h"
#include "codecs/learned_module.h"

namespace nsat {

namespace {

constexpr uint8_t kPayloadVersion = 1;
// The mask's cell: one 4:2:0 JPEG MCU, so each cell is whole JPEG blocks of both streams.
constexpr int kCellSize = 16;
constexpr const char* kDefaultClassifier = "rdic-classifier-rgb8";
constexpr int kDefaultRoiQuality = 100;
constexpr int kDefaultBackgroundQuality = 50;
constexpr int kDefaultDilation = 0;
constexpr double kDefaultEpsilon = 0.01;
// An LRP cell is relevant when at least this share of its pixels is (after dilation).
constexpr double kRelevantShare = 0.5;

std::string rejectReason(DataType type, int bands) {
  if (type == DataType::Byte && bands == 3) return "";
  return "RDIC codes 3-band (RGB) Byte images: its classifier was trained on RGB";
}

struct CellGrid {
  int across, down;
  CellGrid(int width, int height)
      : across((width + kCellSize - 1) / kCellSize), down((height + kCellSize - 1) / kCellSize) {}
  size_t count() const { return size_t(across) * down; }
};

// Epsilon-LRP mask: |R| >= mean |R|, dilated by `dilation` pixels (square element),
// then a cell is relevant if enough of its pixels are.
std::vector<uint8_t> cellsFromRelevance(const std::vector<float>& relevance, int width, int height,
                                        int dilation) {
  double meanMagnitude = 0;
  for (float r : relevance) meanMagnitude += std::abs(r);
  meanMagnitude /= std::max<size_t>(relevance.size(), 1);
  std::vector<uint8_t> mask(relevance.size());
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = std::abs(relevance[i]) >= meanMagnitude;
  if (dilation > 0) {  // separable: rows, then columns
    std::vector<uint8_t> rows(mask.size(), 0);
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x)
        for (int d = std::max(0, x - dilation); d <= std::min(width - 1, x + dilation); ++d)
          if (mask[size_t(y) * width + d]) {
            rows[size_t(y) * width + x] = 1;
            break;
          }
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        uint8_t on = 0;
        for (int d = std::max(0, y - dilation); d <= std::min(height - 1, y + dilation) && !on; ++d)
          on = rows[size_t(d) * width + x];
        mask[size_t(y) * width + x] = on;
      }
  }
  const CellGrid grid(width, height);
  std::vector<uint8_t> cells(grid.count(), 0);
  std::vector<int> on(grid.count(), 0), all(grid.count(), 0);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const size_t cell = size_t(y / kCellSize) * grid.across + x / kCellSize;
      on[cell] += mask[size_t(y) * width + x];
      ++all[cell];
    }
  for (size_t c = 0; c < cells.size(); ++c) cells[c] = on[c] >= kRelevantShare * all[c];
  return cells;
}

// A user mask raster (non-zero = keep), same size as the image; read resampled for
// overview levels. A cell is relevant if any of its pixels is.
std::vector<uint8_t> cellsFromMaskRaster(const std::string& path, const TileShape& shape) {
  GDALDatasetUniquePtr mask(GDALDataset::Open(path.c_str(), GDAL_OF_RASTER));
  if (!mask) throw Error("ROI_MASK=" + path + " cannot be opened");
  const TilePlacement& place = shape.placement;
  if (mask->GetRasterXSize() != place.imageWidth || mask->GetRasterYSize() != place.imageHeight) {
    throw Error("ROI_MASK=" + path + " is " + std::to_string(mask->GetRasterXSize()) + "x" +
                std::to_string(mask->GetRasterYSize()) + ", the image is " +
                std::to_string(place.imageWidth) + "x" + std::to_string(place.imageHeight));
  }
  const double scaleX = double(place.imageWidth) / place.levelWidth;
  const double scaleY = double(place.imageHeight) / place.levelHeight;
  GDALRasterIOExtraArg extra;
  INIT_RASTERIO_EXTRA_ARG(extra);
  extra.eResampleAlg = GRIORA_Mode;
  extra.bFloatingPointWindowValidity = TRUE;
  extra.dfXOff = place.x * scaleX;
  extra.dfYOff = place.y * scaleY;
  extra.dfXSize = std::min(shape.width * scaleX, place.imageWidth - extra.dfXOff);
  extra.dfYSize = std::min(shape.height * scaleY, place.imageHeight - extra.dfYOff);
  const int x0 = int(std::floor(extra.dfXOff)), y0 = int(std::floor(extra.dfYOff));
  const int x1 = std::min(place.imageWidth, int(std::ceil(extra.dfXOff + extra.dfXSize)));
  const int y1 = std::min(place.imageHeight, int(std::ceil(extra.dfYOff + extra.dfYSize)));
  std::vector<uint8_t> pixels(shape.pixelsPerBand());
  if (mask->GetRasterBand(1)->RasterIO(GF_Read, x0, y0, x1 - x0, y1 - y0, pixels.data(),
                                       shape.width, shape.height, GDT_Byte, 0, 0,
                                       &extra) != CE_None) {
    throw Error("ROI_MASK=" + path + " cannot be read");
  }
  const CellGrid grid(shape.width, shape.height);
  std::vector<uint8_t> cells(grid.count(), 0);
  for (int y = 0; y < shape.height; ++y)
    for (int x = 0; x < shape.width; ++x)
      if (pixels[size_t(y) * shape.width + x]) cells[size_t(y / kCellSize) * grid.across + x / kCellSize] = 1;
  return cells;
}

// Interleaved RGB copy of the tile in which every cell whose mask value is not `keep`
// is replaced by its mean colour: such cells cost a DC coefficient and an end-of-block,
// and JPEG's chroma upsampling blends in a colour close to the real one.
std::vector<uint8_t> keepCells(const TileShape& shape, const uint8_t* planar,
                               const std::vector<uint8_t>& cells, uint8_t keep) {
  const CellGrid grid(shape.width, shape.height);
  const size_t plane = shape.pixelsPerBand();
  std::vector<uint8_t> out(plane * 3);
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) out[i * 3 + c] = planar[c * plane + i];
  for (int cy = 0; cy < grid.down; ++cy) {
    for (int cx = 0; cx < grid.across; ++cx) {
      if (cells[size_t(cy) * grid.across + cx] == keep) continue;
      const int x0 = cx * kCellSize, y0 = cy * kCellSize;
      const int x1 = std::min(shape.width, x0 + kCellSize), y1 = std::min(shape.height, y0 + kCellSize);
      for (int c = 0; c < 3; ++c) {
        double sum = 0;
        for (int y = y0; y < y1; ++y)
          for (int x = x0; x < x1; ++x) sum += out[(size_t(y) * shape.width + x) * 3 + c];
        const uint8_t mean = uint8_t(std::lround(sum / ((x1 - x0) * (y1 - y0))));
        for (int y = y0; y < y1; ++y)
          for (int x = x0; x < x1; ++x) out[(size_t(y) * shape.width + x) * 3 + c] = mean;
      }
    }
  }
  return out;
}

class RdicCodec final : public Codec {
 public:
  explicit RdicCodec(nlohmann::json parameters) : parameters_(std::move(parameters)) {
    roiQuality_ = parameters_.at("roi_quality").get<int>();
    backgroundQuality_ = parameters_.at("bg_quality").get<int>();
    dilation_ = parameters_.value("dilation", kDefaultDilation);
    epsilon_ = parameters_.value("epsilon", kDefaultEpsilon);
    allClasses_ = parameters_.value("relevance", std::string("PREDICTED")) == "ALL";
    classifier_ = parameters_.value("model", std::string());
    maskPath_ = parameters_.value("roi_mask", std::string());
  }

  std::string name() const override { return "RDIC"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override { return parameters_; }

  // Payload: u8 version, the cell mask (one bit per 16 px cell, row-major, LSB first),
  // u32 length + background JPEG (BG_QUALITY, relevant cells flattened), u32 length +
  // region JPEG (ROI_QUALITY, other cells flattened; length 0 when no cell is relevant).
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels) const override {
    checkShape(shape);
    const auto* planar = static_cast<const uint8_t*>(pixels);
    const std::vector<uint8_t> cells = relevantCells(shape, planar);
    std::vector<uint8_t> payload{kPayloadVersion};
    std::vector<uint8_t> bits((cells.size() + 7) / 8, 0);
    for (size_t i = 0; i < cells.size(); ++i) bits[i / 8] |= uint8_t(cells[i] << (i % 8));
    payload.insert(payload.end(), bits.begin(), bits.end());
    const auto background = compressJpeg(keepCells(shape, planar, cells, 0).data(), shape.width,
                                          shape.height, 3, backgroundQuality_, true);
    appendU32(payload, uint32_t(background.size()));
    payload.insert(payload.end(), background.begin(), background.end());
    std::vector<uint8_t> region;
    if (std::find(cells.begin(), cells.end(), 1) != cells.end()) {
      region = compressJpeg(keepCells(shape, planar, cells, 1).data(), shape.width, shape.height,
                            3, roiQuality_, true);
    }
    appendU32(payload, uint32_t(region.size()));
    payload.insert(payload.end(), region.begin(), region.end());
    return payload;
  }

  void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
              const Parallelism& /*parallelism*/) const override {
    checkShape(shape);
    ByteReader reader(data, size, "RDIC tile");
    const std::vector<uint8_t> cells = readCells(shape, reader);
    const size_t plane = shape.pixelsPerBand();
    std::vector<uint8_t> background(plane * 3), region;
    const uint32_t backgroundLength = reader.u32();
    decompressJpeg(reader.bytes(backgroundLength), backgroundLength, shape.width, shape.height, 3,
                   background.data());
    const uint32_t regionLength = reader.u32();
    if (regionLength > 0) {
      region.resize(plane * 3);
      decompressJpeg(reader.bytes(regionLength), regionLength, shape.width, shape.height, 3,
                     region.data());
    } else if (std::find(cells.begin(), cells.end(), 1) != cells.end()) {
      throw Error("RDIC tile marks relevant cells but has no region stream");
    }
    if (!reader.atEnd()) throw Error("RDIC tile has trailing bytes");
    const CellGrid grid(shape.width, shape.height);
    auto* out = static_cast<uint8_t*>(pixels);
    for (int y = 0; y < shape.height; ++y) {
      for (int x = 0; x < shape.width; ++x) {
        const size_t i = size_t(y) * shape.width + x;
        const bool relevant = cells[size_t(y / kCellSize) * grid.across + x / kCellSize];
        const uint8_t* source = relevant ? &region[i * 3] : &background[i * 3];
        for (int c = 0; c < 3; ++c) out[c * plane + i] = source[c];
      }
    }
  }

  std::optional<AuxiliaryDescription> auxiliary(int, int) const override {
    return AuxiliaryDescription{
        "ROI_MASK",
        "1 where the tile was coded at ROI_QUALITY (relevant to the classifier), 0 at BG_QUALITY",
        "", kCellSize, {"relevant region"}};
  }

  std::vector<float> auxiliaryValues(const TileShape& shape, const uint8_t* data,
                                     size_t size) const override {
    checkShape(shape);
    ByteReader reader(data, size, "RDIC tile");
    const std::vector<uint8_t> cells = readCells(shape, reader);
    return std::vector<float>(cells.begin(), cells.end());
  }

 private:
  static void checkShape(const TileShape& shape) {
    const std::string rejected = rejectReason(shape.type, shape.bands);
    if (!rejected.empty()) throw Error(rejected);
  }

  static std::vector<uint8_t> readCells(const TileShape& shape, ByteReader& reader) {
    const uint8_t* version = reader.bytes(1);
    if (*version != kPayloadVersion) throw Error("RDIC tile has an unknown payload version");
    const CellGrid grid(shape.width, shape.height);
    const uint8_t* bits = reader.bytes((grid.count() + 7) / 8);
    std::vector<uint8_t> cells(grid.count());
    for (size_t i = 0; i < cells.size(); ++i) cells[i] = (bits[i / 8] >> (i % 8)) & 1;
    return cells;
  }

  std::vector<uint8_t> relevantCells(const TileShape& shape, const uint8_t* planar) const {
    if (!maskPath_.empty()) return cellsFromMaskRaster(maskPath_, shape);
    const std::vector<float> rgb(planar, planar + shape.pixelsPerBand() * 3);
    const ClassifierExplanation explanation = learnedModule().explain(
        classifier_, rgb, shape.height, shape.width, allClasses_, epsilon_);
    return cellsFromRelevance(explanation.relevance, shape.width, shape.height, dilation_);
  }

  nlohmann::json parameters_;
  int roiQuality_, backgroundQuality_, dilation_;
  double epsilon_;
  bool allClasses_;
  std::string classifier_, maskPath_;
};

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType, int) {
  nlohmann::json parameters = {
      {"payload_version", kPayloadVersion},
      {"cell_size", kCellSize},
      {"roi_quality", intOption(options, "ROI_QUALITY", kDefaultRoiQuality, 1, 100)},
      {"bg_quality", intOption(options, "BG_QUALITY", kDefaultBackgroundQuality, 1, 100)}};
  if (parameters["bg_quality"] > parameters["roi_quality"]) {
    throw Error("BG_QUALITY must not exceed ROI_QUALITY");
  }
  const auto mask = options.find("ROI_MASK");
  if (mask != options.end()) {
    for (const char* key : {"DILATION", "RELEVANCE", "MODEL"}) {
      if (options.count(key)) throw Error(std::string(key) + " applies to LRP masks, not ROI_MASK");
    }
    GDALDatasetUniquePtr dataset(GDALDataset::Open(mask->second.c_str(), GDAL_OF_RASTER));
    if (!dataset) throw Error("ROI_MASK=" + mask->second + " cannot be opened as a raster");
    parameters["roi_mask"] = mask->second;
    return parameters;
  }
  const auto model = options.find("MODEL");
  const std::string classifier = model == options.end() ? kDefaultClassifier : model->second;
  const ModelRef ref = learnedModule().classifierRef(classifier);
  parameters["model"] = ref.id;
  parameters["model_sha256"] = ref.sha256;
  parameters["dilation"] = intOption(options, "DILATION", kDefaultDilation, 0, 64);
  const auto relevance = options.find("RELEVANCE");
  std::string which = relevance == options.end() ? "PREDICTED" : relevance->second;
  std::transform(which.begin(), which.end(), which.begin(), ::toupper);
  if (which != "PREDICTED" && which != "ALL") {
    throw Error("RELEVANCE=" + relevance->second + " is invalid: expected PREDICTED or ALL");
  }
  parameters["relevance"] = which;
  parameters["epsilon"] = kDefaultEpsilon;
  return parameters;
}

}  // namespace

CodecDescriptor rdicCodecDescriptor() {
  CodecDescriptor descriptor;
  descriptor.name = "RDIC";
  descriptor.description =
      "relevance-driven JPEG: cells a land-cover classifier finds relevant (epsilon-LRP) at "
      "ROI_QUALITY, the rest at BG_QUALITY";
  descriptor.optionNames = {"ROI_QUALITY", "BG_QUALITY", "DILATION", "RELEVANCE", "ROI_MASK",
                            "MODEL"};
  descriptor.rejectReason = rejectReason;
  descriptor.parametersFromOptions = parametersFromOptions;
  descriptor.create = [](const nlohmann::json& parameters) -> std::unique_ptr<Codec> {
    try {
      if (parameters.value("payload_version", 0) != kPayloadVersion ||
          parameters.value("cell_size", 0) != kCellSize) {
        throw Error("RDIC payload version or cell size is newer than this NSAT");
      }
      return std::make_unique<RdicCodec>(parameters);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("RDIC parameters are invalid: ") + e.what());
    }
  };
  return descriptor;
}

}  // namespace nsat
