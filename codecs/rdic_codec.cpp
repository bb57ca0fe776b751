#include "codecs/rdic_codec.h"

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
// v2: trained with JPEG q30..100 augmentation, so a coarse background does not flip its
// decision (EuroSAT test at q50: 94.4 % against 75.9 % for rdic-classifier-rgb8).
constexpr const char* kDefaultClassifier = "rdic-classifier-rgb8-v2";
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

// RELEVANCE_SHARE: the fewest cells that together hold `share` of the tile's total
// |R| (largest first; ties by position, so the choice is deterministic).
std::vector<uint8_t> cellsHoldingShare(const std::vector<float>& relevance, int width, int height,
                                       double share) {
  const CellGrid grid(width, height);
  std::vector<double> cellRelevance(grid.count(), 0.0);
  double total = 0;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const double magnitude = std::abs(relevance[size_t(y) * width + x]);
      cellRelevance[size_t(y / kCellSize) * grid.across + x / kCellSize] += magnitude;
      total += magnitude;
    }
  std::vector<size_t> order(grid.count());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return cellRelevance[a] > cellRelevance[b]; });
  std::vector<uint8_t> cells(grid.count(), 0);
  double kept = 0;
  for (size_t cell : order) {
    if (kept >= share * total || cellRelevance[cell] <= 0) break;
    cells[cell] = 1;
    kept += cellRelevance[cell];
  }
  return cells;
}

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

// The user's mask (EncodeGuide::regionOfInterest): a cell is relevant if any of its
// pixels is.
std::vector<uint8_t> cellsFromUserMask(const std::vector<uint8_t>& pixels, const TileShape& shape) {
  if (pixels.size() != shape.pixelsPerBand()) {
    throw Error("internal error: RDIC was given a ROI_MASK window of the wrong size");
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
    relevanceShare_ = parameters_.value("relevance_share", 0.0);
    relevanceWindow_ = parameters_.value("relevance_window", 0);
    classifier_ = parameters_.value("model", std::string());
    // Files before 0.2 stored the mask's path here; the mask itself never was needed
    // to decode.
    userMask_ = parameters_.value("mask", std::string()) == "ROI_MASK" ||
                parameters_.contains("roi_mask");
  }

  std::string name() const override { return "RDIC"; }
  bool isLossless() const override { return false; }
  nlohmann::json parameters() const override { return parameters_; }

  // Payload: u8 version, the cell mask (one bit per 16 px cell, row-major, LSB first),
  // u32 length + background JPEG (BG_QUALITY, relevant cells flattened), u32 length +
  // region JPEG (ROI_QUALITY, other cells flattened; length 0 when no cell is relevant).
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                              const EncodeGuide& guide) const override {
    checkShape(shape);
    const auto* planar = static_cast<const uint8_t*>(pixels);
    const std::vector<uint8_t> cells = relevantCells(shape, planar, guide);
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

  std::vector<uint8_t> relevantCells(const TileShape& shape, const uint8_t* planar,
                                     const EncodeGuide& guide) const {
    if (userMask_) {
      if (guide.regionOfInterest.empty()) {
        throw Error("RDIC with ROI_MASK: the driver gave no mask for this tile",
                    ErrorKind::NotSupported);
      }
      return cellsFromUserMask(guide.regionOfInterest, shape);
    }
    const std::vector<float> relevance = windowedRelevance(shape, planar);
    if (relevanceShare_ > 0) {
      return cellsHoldingShare(relevance, shape.width, shape.height, relevanceShare_);
    }
    return cellsFromRelevance(relevance, shape.width, shape.height, dilation_);
  }

  // The classifier's relevance over the tile: as one image, or with RELEVANCE_WINDOW
  // window by window (each explains its own class: on a large scene a single decision
  // would pick the evidence of one land cover only), each window's map scaled to the
  // same total |R| so that every window is weighed alike.
  std::vector<float> windowedRelevance(const TileShape& shape, const uint8_t* planar) const {
    const int window = relevanceWindow_ > 0 ? relevanceWindow_ : std::max(shape.width, shape.height);
    const size_t plane = shape.pixelsPerBand();
    std::vector<float> relevance(plane, 0.0f);
    for (int top = 0; top < shape.height; top += window) {
      for (int left = 0; left < shape.width; left += window) {
        const int height = std::min(window, shape.height - top);
        const int width = std::min(window, shape.width - left);
        std::vector<float> rgb(size_t(3) * width * height);
        for (int c = 0; c < 3; ++c)
          for (int y = 0; y < height; ++y)
            for (int x = 0; x < width; ++x)
              rgb[(size_t(c) * height + y) * width + x] =
                  planar[c * plane + size_t(top + y) * shape.width + left + x];
        const ClassifierExplanation explanation =
            learnedModule().explain(classifier_, rgb, height, width, allClasses_, epsilon_);
        double total = 0;
        for (float r : explanation.relevance) total += std::abs(r);
        const double scale = relevanceWindow_ > 0 && total > 0 ? double(width) * height / total : 1;
        for (int y = 0; y < height; ++y)
          for (int x = 0; x < width; ++x)
            relevance[size_t(top + y) * shape.width + left + x] =
                float(explanation.relevance[size_t(y) * width + x] * scale);
      }
    }
    return relevance;
  }

  nlohmann::json parameters_;
  int roiQuality_, backgroundQuality_, dilation_;
  double epsilon_;
  double relevanceShare_;  // 0: the |R| >= mean |R| rule
  int relevanceWindow_;    // 0: the tile as one image
  bool allClasses_;
  bool userMask_;
  std::string classifier_;
};

const std::vector<OptionDeclaration>& rdicOptions() {
  static const std::vector<OptionDeclaration> options = {
      integerOptionDeclaration("ROI_QUALITY", 1, 100, kDefaultRoiQuality,
                               "JPEG quality of the relevant region"),
      integerOptionDeclaration("BG_QUALITY", 1, 100, kDefaultBackgroundQuality,
                               "JPEG quality of the background (at most ROI_QUALITY)"),
      integerOptionDeclaration("DILATION", 0, 64, kDefaultDilation,
                               "dilation of the relevance mask in pixels before it is snapped "
                               "to 16 px cells"),
      choiceOptionDeclaration("RELEVANCE", {"PREDICTED", "ALL"}, "PREDICTED",
                              "explain the predicted class, or all classes at once"),
      numberOptionDeclaration(
          "RELEVANCE_SHARE",
          "keep the fewest 16 px cells that hold this share (0..1) of the tile's total "
          "relevance, instead of the cells where |R| is at least its mean (DILATION is then "
          "not used)"),
      integerOptionDeclaration(
          "RELEVANCE_WINDOW", 0, 4096, 0,
          "explain windows of this many pixels one by one (multiples of 16; 64 is the "
          "classifier's training size), each for its own class, for scenes larger than what "
          "the classifier was trained on; 0: the tile as one image"),
      textOptionDeclaration(kRoiMaskOption,
                            "a raster of the image's size whose non-zero pixels mark the region "
                            "to keep, instead of the classifier's relevance (any non-zero pixel "
                            "makes its 16 px cell relevant; resampled by mode for overviews; "
                            "its path is not stored in the file)"),
      textOptionDeclaration("MODEL", "the classifier, a folder in models/",
                            kDefaultClassifier)};
  return options;
}

nlohmann::json parametersFromOptions(const CodecOptions& options, DataType, int) {
  const auto& declared = rdicOptions();
  nlohmann::json parameters = {
      {"payload_version", kPayloadVersion},
      {"cell_size", kCellSize},
      {"roi_quality", integerOption(options, declarationOf(declared, "ROI_QUALITY"))},
      {"bg_quality", integerOption(options, declarationOf(declared, "BG_QUALITY"))}};
  if (parameters["bg_quality"] > parameters["roi_quality"]) {
    throw Error("BG_QUALITY must not exceed ROI_QUALITY", ErrorKind::InvalidOption);
  }
  if (options.count(kRoiMaskOption)) {
    for (const char* key : {"DILATION", "RELEVANCE", "RELEVANCE_SHARE", "RELEVANCE_WINDOW", "MODEL"}) {
      if (options.count(key)) {
        throw Error(std::string(key) + " applies to LRP masks, not ROI_MASK",
                    ErrorKind::InvalidOption);
      }
    }
    // The driver reads the raster and hands each tile its window (EncodeGuide).
    parameters["mask"] = kRoiMaskOption;
    return parameters;
  }
  const auto model = options.find("MODEL");
  const std::string classifier = model == options.end() ? kDefaultClassifier : model->second;
  const ModelRef ref = learnedModule().classifierRef(classifier);
  parameters["model"] = ref.id;
  parameters["model_sha256"] = ref.sha256;
  parameters["dilation"] = integerOption(options, declarationOf(declared, "DILATION"));
  parameters["relevance"] = choiceOption(options, declarationOf(declared, "RELEVANCE"));
  if (options.count("RELEVANCE_SHARE")) {
    parameters["relevance_share"] =
        numberOption(options, declarationOf(declared, "RELEVANCE_SHARE"), 0.01, 1.0);
  }
  const int window = integerOption(options, declarationOf(declared, "RELEVANCE_WINDOW"));
  if (window % kCellSize != 0) {
    throw Error("RELEVANCE_WINDOW=" + std::to_string(window) + " is invalid: expected a "
                    "multiple of 16",
                ErrorKind::InvalidOption);
  }
  if (window > 0) parameters["relevance_window"] = window;
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
  descriptor.options = rdicOptions();
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
