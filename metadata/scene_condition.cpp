#include "metadata/scene_condition.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include <cpl_error.h>
#include <gdal_alg.h>
#include <ogr_spatialref.h>

#include "codecs/error.h"

namespace nsat {

const char* const kComputedSunSource = "computed (NOAA solar position)";

namespace {

// ------------------------------------------------------------------ calendar

constexpr int kFirstYear = 1900;
constexpr int kLastYear = 2199;
constexpr double kSecondsPerDay = 86400.0;
constexpr double kPi = 3.14159265358979323846;

double radians(double value) { return value * kPi / 180.0; }
double degrees(double value) { return value * 180.0 / kPi; }

bool isLeapYear(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }
int daysInYear(int year) { return isLeapYear(year) ? 366 : 365; }
int daysInMonth(int year, int month) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && isLeapYear(year) ? 29 : kDays[month - 1];
}

// `time` moved by `seconds` (a time-zone offset, a time of day), across days and years.
std::optional<UtcTime> shifted(UtcTime time, double seconds) {
  double secondsOfDay = time.secondsOfDay.value_or(0.0) + seconds;
  while (secondsOfDay < 0) {
    secondsOfDay += kSecondsPerDay;
    if (--time.dayOfYear < 1) time.dayOfYear = daysInYear(--time.year);
  }
  while (secondsOfDay >= kSecondsPerDay) {
    secondsOfDay -= kSecondsPerDay;
    if (++time.dayOfYear > daysInYear(time.year)) {
      time.dayOfYear = 1;
      ++time.year;
    }
  }
  if (time.year < kFirstYear || time.year > kLastYear) return std::nullopt;
  time.secondsOfDay = secondsOfDay;
  return time;
}

// ------------------------------------------------------------------ strict text reading

// Reads a text left to right; a reader that does not match leaves the position alone.
class Cursor {
 public:
  explicit Cursor(const std::string& text) : text_(text) {}

  bool atEnd() const { return position_ == text_.size(); }
  char peek() const { return atEnd() ? '\0' : text_[position_]; }

  bool skip(char wanted) {
    if (atEnd() || std::toupper(static_cast<unsigned char>(text_[position_])) !=
                       std::toupper(static_cast<unsigned char>(wanted))) {
      return false;
    }
    ++position_;
    return true;
  }

  // Exactly `count` digits (no sign, no blank).
  bool digits(int count, int& value) {
    if (position_ + count > text_.size()) return false;
    int result = 0;
    for (int i = 0; i < count; ++i) {
      const char c = text_[position_ + i];
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
      result = result * 10 + (c - '0');
    }
    position_ += count;
    value = result;
    return true;
  }

  // A decimal fraction after '.' or ',' (ISO 8601 allows both): 0 when there is none,
  // false when the separator has no digit after it.
  bool fraction(double& value) {
    value = 0;
    if (peek() != '.' && peek() != ',') return true;
    size_t end = position_ + 1;
    double scale = 0.1;
    while (end < text_.size() && std::isdigit(static_cast<unsigned char>(text_[end]))) {
      value += (text_[end] - '0') * scale;
      scale /= 10;
      ++end;
    }
    if (end == position_ + 1) return false;
    position_ = end;
    return true;
  }

 private:
  const std::string& text_;
  size_t position_ = 0;
};

// HH:MM[:SS[.fff]] as seconds after midnight.
bool readClock(Cursor& cursor, double& seconds) {
  int hour = 0, minute = 0, second = 0;
  double fraction = 0;
  if (!cursor.digits(2, hour) || !cursor.skip(':') || !cursor.digits(2, minute)) return false;
  if (cursor.skip(':') && (!cursor.digits(2, second) || !cursor.fraction(fraction))) return false;
  if (hour > 23 || minute > 59 || second > 60) return false;  // 60: a leap second
  seconds = hour * 3600.0 + minute * 60.0 + second + fraction;
  return true;
}

// Nothing (UTC), Z, or ±HH[[:]MM]: the offset from UTC in seconds.
bool readZone(Cursor& cursor, double& offset) {
  offset = 0;
  if (cursor.skip('Z')) return true;
  const char sign = cursor.peek();
  if (sign != '+' && sign != '-') return true;
  cursor.skip(sign);
  int hours = 0, minutes = 0;
  if (!cursor.digits(2, hours)) return false;
  const bool colon = cursor.skip(':');
  if ((colon || !cursor.atEnd()) && !cursor.digits(2, minutes)) return false;
  if (hours > 14 || minutes > 59) return false;
  offset = (sign == '-' ? -1.0 : 1.0) * (hours * 3600.0 + minutes * 60.0);
  return true;
}

// ------------------------------------------------------------------ product ids

// '#' a digit, '@' a letter, '?' either; any other character stands for itself, in
// either case (file names are sometimes lower-case).
bool matchesShape(const std::string& text, size_t at, const char* shape) {
  for (size_t i = 0; shape[i]; ++i) {
    if (at + i >= text.size()) return false;
    const unsigned char c = static_cast<unsigned char>(text[at + i]);
    const bool matches = shape[i] == '#'   ? std::isdigit(c) != 0
                         : shape[i] == '@' ? std::isalpha(c) != 0
                         : shape[i] == '?' ? std::isalnum(c) != 0
                                           : std::toupper(c) == std::toupper(shape[i]);
    if (!matches) return false;
  }
  return true;
}

bool isAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool wordEndsAt(const std::string& text, size_t at) {
  return at >= text.size() || !isAlnum(text[at]);
}

int digitsAt(const std::string& text, size_t at, int count) {
  int value = 0;
  for (int i = 0; i < count; ++i) value = value * 10 + (text[at + i] - '0');
  return value;
}

std::optional<UtcTime> compactDate(const std::string& text, size_t at) {
  return calendarDate(digitsAt(text, at, 4), digitsAt(text, at + 4, 2), digitsAt(text, at + 6, 2));
}

// Landsat's sensor letter (C, O, T, E, M) for a mission number; empty if not one.
std::string landsatSensor(char letter, int mission) {
  const std::string name = "Landsat " + std::to_string(mission);
  switch (std::toupper(static_cast<unsigned char>(letter))) {
    case 'C':
      return name + " OLI/TIRS";
    case 'O':
      return name + " OLI";
    case 'T':
      return name + (mission >= 8 ? " TIRS" : " TM");
    case 'E':
      return name + " ETM+";
    case 'M':
      return name + " MSS";
    default:
      return "";
  }
}

// LC08_L1TP_044034_20210508_20210518_01_T1: the first date is the acquisition.
std::optional<ProductId> landsatProductIdAt(const std::string& text, size_t at) {
  const char* shape = "L?0#_L#??_######_########_########_##_??";
  if (!matchesShape(text, at, shape) || !wordEndsAt(text, at + std::strlen(shape))) return {};
  const int mission = text[at + 3] - '0';
  const std::string sensor = landsatSensor(text[at + 1], mission);
  const auto date = compactDate(text, at + 17);
  if (mission == 0 || sensor.empty() || !date) return {};
  return ProductId{*date, "Landsat product id", sensor};
}

// LC80440342021128LGN00: mission, path, row, year, day of year, station, version.
std::optional<ProductId> landsatSceneIdAt(const std::string& text, size_t at) {
  const char* shape = "L?##############@@@##";
  if (!matchesShape(text, at, shape) || !wordEndsAt(text, at + std::strlen(shape))) return {};
  const int mission = text[at + 2] - '0';
  const std::string sensor = landsatSensor(text[at + 1], mission);
  const int year = digitsAt(text, at + 9, 4);
  const int day = digitsAt(text, at + 13, 3);
  if (mission == 0 || sensor.empty() || year < kFirstYear || year > kLastYear || day < 1 ||
      day > daysInYear(year)) {
    return {};
  }
  return ProductId{UtcTime{year, day, std::nullopt}, "Landsat scene id", sensor};
}

// S2A_MSIL1C_20170105T013442_..., S1A_IW_GRDH_1SDV_20170613T165043_..., pyroSAR's
// S1A__IW___A_20150309T173017: the first _YYYYMMDDThhmmss is the sensing start. Old
// S2 names (S2A_OPER_PRD_MSIL1C_PDMC_<processing>_R..._V<sensing start>_...) mark it V.
std::optional<ProductId> sentinelProductIdAt(const std::string& text, size_t at) {
  if (!matchesShape(text, at, "S#@_")) return {};
  const char mission = text[at + 1];
  const char unit = static_cast<char>(std::toupper(static_cast<unsigned char>(text[at + 2])));
  if (mission < '1' || mission > '3' || unit < 'A' || unit > 'D') return {};
  size_t end = at + 4;
  while (end < text.size() && end - at < 128 && (isAlnum(text[end]) || text[end] == '_')) ++end;
  size_t sensing = std::string::npos;
  for (size_t p = at + 4; p < end; ++p) {
    if (!matchesShape(text, p, "########T")) continue;
    if (text[p - 1] == 'V' && text[p - 2] == '_') {
      sensing = p;
      break;
    }
    if (text[p - 1] == '_' && sensing == std::string::npos) sensing = p;
  }
  if (sensing == std::string::npos) return {};
  auto time = compactDate(text, sensing);
  if (!time) return {};
  // Exactly six digits, else the date alone: BigEarthNet's patch names drop digits
  // (S2B_MSIL2A_20180204T94161 for 09:41:56).
  size_t clockEnd = sensing + 9;
  while (clockEnd < text.size() && std::isdigit(static_cast<unsigned char>(text[clockEnd]))) {
    ++clockEnd;
  }
  if (clockEnd - (sensing + 9) == 6) {
    const int hour = digitsAt(text, sensing + 9, 2), minute = digitsAt(text, sensing + 11, 2),
              second = digitsAt(text, sensing + 13, 2);
    if (hour <= 23 && minute <= 59 && second <= 59) {
      time->secondsOfDay = hour * 3600.0 + minute * 60.0 + second;
    }
  }
  // The first field after the mission: the instrument mode or product type.
  size_t fieldStart = at + 4;
  while (fieldStart < end && text[fieldStart] == '_') ++fieldStart;
  size_t fieldEnd = fieldStart;
  while (fieldEnd < end && text[fieldEnd] != '_') ++fieldEnd;
  std::string sensor = std::string("Sentinel-") + mission + unit;
  if (fieldStart < sensing && fieldEnd > fieldStart) {
    sensor += " " + text.substr(fieldStart, fieldEnd - fieldStart);
  }
  return ProductId{*time, "Sentinel product id", sensor};
}

// ------------------------------------------------------------------ metadata

struct MetadataItem {
  std::string owner;  // "" for the dataset, "band 1 "
  std::string domain;
  std::string location;  // for sources: "IMD:SUN_ELEVATION", "band 1 xml:XMP:document"
  std::string key;       // the last dotted component, upper-case: IMD's nested keys end so
  std::string value;     // without surrounding blanks and double quotes
};

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

std::string unquoted(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return std::string();
  std::string value = text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  return value;
}

// Domains that describe the file's storage, or repeat its name.
bool isStorageDomain(const std::string& domain) {
  return domain == "IMAGE_STRUCTURE" || domain == "DERIVED_SUBDATASETS";
}

void collectMetadata(GDALMajorObject& object, const std::string& owner,
                     std::vector<MetadataItem>& items) {
  std::vector<std::string> domains = {""};  // not every driver lists the default domain
  char** list = object.GetMetadataDomainList();
  for (char** name = list; name && *name; ++name) {
    if (**name && !isStorageDomain(*name)) domains.push_back(*name);
  }
  CSLDestroy(list);
  for (const std::string& domain : domains) {
    // xml: and json: domains hold one document, not KEY=VALUE items.
    const bool document =
        STARTS_WITH_CI(domain.c_str(), "xml:") || STARTS_WITH_CI(domain.c_str(), "json:");
    CSLConstList entries = object.GetMetadata(domain.c_str());
    for (CSLConstList entry = entries; entry && *entry; ++entry) {
      const std::string text = *entry;
      const size_t equals = document ? std::string::npos : text.find('=');
      MetadataItem item;
      item.owner = owner;
      item.domain = domain;
      if (equals != std::string::npos) {
        const size_t dot = text.rfind('.', equals);
        const size_t keyStart = dot == std::string::npos ? 0 : dot + 1;
        item.key = upper(text.substr(keyStart, equals - keyStart));
        item.value = unquoted(text.substr(equals + 1));
      } else {
        item.value = text;
      }
      item.location =
          owner + (domain.empty() ? "" : domain + ":") + (item.key.empty() ? "document" : item.key);
      items.push_back(std::move(item));
    }
  }
}

std::vector<MetadataItem> collectAllMetadata(GDALDataset& dataset) {
  std::vector<MetadataItem> items;
  collectMetadata(dataset, "", items);
  // Bands after the dataset: a band's metadata are more often about the band.
  for (int i = 1; i <= dataset.GetRasterCount(); ++i) {
    collectMetadata(*dataset.GetRasterBand(i), "band " + std::to_string(i) + " ", items);
  }
  return items;
}

std::string metadataSource(const MetadataItem& item) { return "metadata " + item.location; }

// A number from metadata: strictly the whole value (options.h's parser), else unknown.
std::optional<double> metadataNumber(const std::string& text, double minimum, double maximum) {
  const OptionDeclaration declaration = numberOptionDeclaration("METADATA", "");
  try {
    return numberOption({{declaration.name, text}}, declaration, minimum, maximum);
  } catch (const Error&) {
    return std::nullopt;
  }
}

// ------------------------------------------------------------------ acquisition time

struct TimeCandidate {
  UtcTime time;
  std::string source;
};

// GDAL's metadata readers write the Unix epoch when they cannot read a date: GDAL 3.6's
// Landsat reader gives ACQUISITIONDATETIME=1970-01-01 00:00:00 for an MTL whose
// SCENE_CENTER_TIME has seven decimals.
bool isEpochPlaceholder(const UtcTime& time) {
  return time.year == 1970 && time.dayOfYear == 1 && time.secondsOfDay.value_or(0) == 0;
}

// Metadata keys whose value is an ISO 8601 time, the most specific first: a granule's
// or scene's own time before its product's or datatake's start.
const char* const kIsoTimeKeys[] = {
    "ACQUISITIONDATETIME",                // GDAL's IMAGERY domain (any product its readers know)
    "DATE_ACQUIRED",                      // Landsat MTL, with SCENE_CENTER_TIME
    "ACQUISITION_DATE",                   // older Landsat MTL, with SCENE_CENTER_SCAN_TIME
    "SENSING_TIME",                       // Sentinel-2 granule
    "DATATAKE_1_DATATAKE_SENSING_START",  // Sentinel-2 product
    "PRODUCT_START_TIME",                 // Sentinel-2 product
    "ACQUISITION_START_TIME",             // Sentinel-1 SAFE
};

const MetadataItem* findInDomain(const std::vector<MetadataItem>& items, const MetadataItem& near,
                                 const char* key) {
  for (const auto& item : items) {
    if (item.key == key && item.domain == near.domain && item.owner == near.owner) {
      return &item;
    }
  }
  return nullptr;
}

void addMetadataTimes(const std::vector<MetadataItem>& items,
                      std::vector<TimeCandidate>& candidates) {
  for (const char* key : kIsoTimeKeys) {
    for (const auto& item : items) {
      if (item.key != key) continue;
      auto time = parseIsoDateTime(item.value);
      if (!time || isEpochPlaceholder(*time)) continue;
      std::string source = metadataSource(item);
      if (!time->secondsOfDay) {
        for (const char* clockKey : {"SCENE_CENTER_TIME", "SCENE_CENTER_SCAN_TIME"}) {
          const MetadataItem* clock = findInDomain(items, item, clockKey);
          const auto seconds = clock ? parseTimeOfDay(clock->value) : std::nullopt;
          if (!seconds) continue;
          if (const auto combined = shifted(*time, *seconds)) {
            time = combined;
            source += " + " + clock->key;
            break;
          }
        }
      }
      candidates.push_back({*time, source});
    }
  }
}

struct FoundProductId {
  ProductId id;
  std::string where;  // "file name", "metadata TIFFTAG_IMAGEDESCRIPTION"
};

std::vector<FoundProductId> findProductIds(GDALDataset& dataset,
                                           const std::vector<MetadataItem>& items) {
  std::vector<FoundProductId> found;
  for (const auto& item : items) {
    if (auto id = findProductId(item.value)) found.push_back({*id, metadataSource(item)});
  }
  const std::string description = dataset.GetDescription();
  if (auto id = findProductId(CPLGetFilename(description.c_str()))) {
    found.push_back({*id, "file name"});
  }
  if (auto id = findProductId(description)) found.push_back({*id, "description"});
  return found;
}

// The first candidate gives the date; when it has no time, the first later one on the
// same date gives it (a Landsat scene id's date, then the time a TIFF tag adds).
std::optional<TimeCandidate> chooseTime(const std::vector<TimeCandidate>& candidates) {
  std::optional<TimeCandidate> chosen;
  for (const auto& candidate : candidates) {
    if (!chosen) {
      chosen = candidate;
      if (chosen->time.secondsOfDay) break;
    } else if (candidate.time.secondsOfDay && candidate.time.year == chosen->time.year &&
               candidate.time.dayOfYear == chosen->time.dayOfYear) {
      chosen->time.secondsOfDay = candidate.time.secondsOfDay;
      chosen->source += ", time from " + candidate.source;
      break;
    }
  }
  return chosen;
}

void setTime(SceneCondition& condition, const UtcTime& time, const std::string& source) {
  condition.year = {double(time.year), source};
  if (time.secondsOfDay) {
    condition.dayOfYear = {time.dayOfYear + *time.secondsOfDay / kSecondsPerDay, source};
    condition.hourUtc = {*time.secondsOfDay / 3600.0, source};
  } else {
    condition.dayOfYear = {time.dayOfYear + 0.5, source + " (date only: midday)"};
    condition.hourUtc = {std::nullopt, source + " (date only)"};
  }
}

// ------------------------------------------------------------------ sun

const char* const kElevationKeys[] = {"SUN_ELEVATION", "SUN_ELEVATION_ANGLE", "MEAN_SUN_ELEVATION",
                                      "MEAN_SUN_ELEVATION_ANGLE", "MEANSUNEL"};
const char* const kZenithKeys[] = {"MEAN_SUN_ZENITH_ANGLE", "SUN_ZENITH_ANGLE", "MEAN_SUN_ZENITH",
                                   "SUN_ZENITH", "SOLAR_ZENITH_ANGLE"};
const char* const kAzimuthKeys[] = {
    "SUN_AZIMUTH",      "SUN_AZIMUTH_ANGLE", "MEAN_SUN_AZIMUTH_ANGLE",
    "MEAN_SUN_AZIMUTH", "MEANSUNAZ",         "SOLAR_AZIMUTH_ANGLE"};

template <size_t N>
ConditionValue metadataAngle(const std::vector<MetadataItem>& items, const char* const (&keys)[N],
                             double minimum, double maximum) {
  for (const char* key : keys) {
    for (const auto& item : items) {
      if (item.key != key) continue;
      if (const auto value = metadataNumber(item.value, minimum, maximum)) {
        return {*value, metadataSource(item)};
      }
    }
  }
  return {};
}

std::optional<SunPosition> sunFromTimeAndPlace(const SceneCondition& condition) {
  if (!condition.year.value || !condition.dayOfYear.value || !condition.hourUtc.value ||
      !condition.centerLatitude.value || !condition.centerLongitude.value) {
    return std::nullopt;
  }
  return computeSunPosition(int(*condition.year.value), *condition.dayOfYear.value,
                            *condition.centerLatitude.value, *condition.centerLongitude.value);
}

// Computes what the metadata did not give, and recomputes what was computed from an
// older time or place (unknown when the new ones do not allow it).
void refreshComputedSun(SceneCondition& condition) {
  const auto sun = sunFromTimeAndPlace(condition);
  auto refresh = [&](ConditionValue& value, double computed) {
    if (value.value && value.source != kComputedSunSource) return;
    value = sun ? ConditionValue{computed, kComputedSunSource} : ConditionValue{};
  };
  refresh(condition.sunElevation, sun ? sun->elevation : 0.0);
  refresh(condition.sunAzimuth, sun ? sun->azimuth : 0.0);
}

// ------------------------------------------------------------------ position

struct CoordinateTransformationDeleter {
  void operator()(OGRCoordinateTransformation* transform) const {
    OGRCoordinateTransformation::DestroyCT(transform);
  }
};

// The raster's centre and four points half a pixel around it, in the CRS of `srs`.
struct CentrePoints {
  static constexpr int kCount = 5;  // centre, -x, +x, -y, +y
  double x[kCount] = {}, y[kCount] = {};
  const OGRSpatialReference* srs = nullptr;
  std::string source;
};

void centrePixels(GDALDataset& dataset, double pixel[], double line[]) {
  const double cx = dataset.GetRasterXSize() / 2.0, cy = dataset.GetRasterYSize() / 2.0;
  const double dx[] = {0, -0.5, 0.5, 0, 0}, dy[] = {0, 0, 0, -0.5, 0.5};
  for (int i = 0; i < CentrePoints::kCount; ++i) {
    pixel[i] = cx + dx[i];
    line[i] = cy + dy[i];
  }
}

bool hasCrs(const OGRSpatialReference* srs) { return srs && !srs->IsEmpty(); }

std::optional<CentrePoints> centreFromGeotransform(GDALDataset& dataset) {
  double transform[6];
  if (dataset.GetGeoTransform(transform) != CE_None || !hasCrs(dataset.GetSpatialRef())) {
    return std::nullopt;
  }
  CentrePoints points;
  double pixel[CentrePoints::kCount], line[CentrePoints::kCount];
  centrePixels(dataset, pixel, line);
  for (int i = 0; i < CentrePoints::kCount; ++i) {
    points.x[i] = transform[0] + pixel[i] * transform[1] + line[i] * transform[2];
    points.y[i] = transform[3] + pixel[i] * transform[4] + line[i] * transform[5];
  }
  points.srs = dataset.GetSpatialRef();
  points.source = "PROJ from geotransform + CRS";
  return points;
}

// GDAL's least-squares polynomial through the GCPs (second order from six GCPs on),
// which follows a radar scene's curved grid better than an affine fit.
std::optional<CentrePoints> centreFromGcps(GDALDataset& dataset) {
  if (dataset.GetGCPCount() < 3 || !hasCrs(dataset.GetGCPSpatialRef())) return std::nullopt;
  void* fit = GDALCreateGCPTransformer(dataset.GetGCPCount(), dataset.GetGCPs(), 0, FALSE);
  if (!fit) return std::nullopt;
  CentrePoints points;
  double z[CentrePoints::kCount] = {};
  int success[CentrePoints::kCount] = {};
  centrePixels(dataset, points.x, points.y);
  const bool ok =
      GDALGCPTransform(fit, FALSE, CentrePoints::kCount, points.x, points.y, z, success);
  GDALDestroyGCPTransformer(fit);
  for (int flag : success) {
    if (!ok || !flag) return std::nullopt;
  }
  points.srs = dataset.GetGCPSpatialRef();
  points.source = "PROJ from GCPs (polynomial fit) + GCP CRS";
  return points;
}

double wrappedDegrees(double value) { return value - 360.0 * std::floor((value + 180.0) / 360.0); }

// Metres on the ground per pixel from the four points around the centre in WGS 84
// degrees, with the ellipsoid's radii of curvature at the centre latitude.
std::optional<double> groundSampleDistance(const double lon[], const double lat[]) {
  const double a = 6378137.0, flattening = 1 / 298.257223563;
  const double e2 = flattening * (2 - flattening);
  const double sinLat = std::sin(radians(lat[0]));
  const double w = std::sqrt(1 - e2 * sinLat * sinLat);
  const double meridian = a * (1 - e2) / (w * w * w);
  const double parallel = a / w * std::cos(radians(lat[0]));
  const double eastAlongX = radians(wrappedDegrees(lon[2] - lon[1])) * parallel;
  const double northAlongX = radians(lat[2] - lat[1]) * meridian;
  const double eastAlongY = radians(wrappedDegrees(lon[4] - lon[3])) * parallel;
  const double northAlongY = radians(lat[4] - lat[3]) * meridian;
  const double area = std::fabs(eastAlongX * northAlongY - northAlongX * eastAlongY);
  if (!std::isfinite(area) || area <= 0) return std::nullopt;
  return std::sqrt(area);
}

void fillPosition(GDALDataset& dataset, SceneCondition& condition) {
  auto points = centreFromGeotransform(dataset);
  if (!points) points = centreFromGcps(dataset);
  if (!points) return;

  OGRSpatialReference wgs84;
  wgs84.SetWellKnownGeogCS("WGS84");
  wgs84.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);  // x = longitude
  std::unique_ptr<OGRCoordinateTransformation, CoordinateTransformationDeleter> transform(
      OGRCreateCoordinateTransformation(points->srs, &wgs84));
  double lon[CentrePoints::kCount], lat[CentrePoints::kCount];
  std::copy(points->x, points->x + CentrePoints::kCount, lon);
  std::copy(points->y, points->y + CentrePoints::kCount, lat);
  int success[CentrePoints::kCount] = {};
  const bool transformed =
      transform && transform->Transform(CentrePoints::kCount, lon, lat, nullptr, success);
  bool allTransformed = transformed;
  for (int flag : success) allTransformed = allTransformed && flag;

  if (allTransformed && std::isfinite(lat[0]) && std::isfinite(lon[0]) && std::fabs(lat[0]) <= 90) {
    condition.centerLatitude = {lat[0], points->source};
    condition.centerLongitude = {wrappedDegrees(lon[0]), points->source};
    if (const auto gsd = groundSampleDistance(lon, lat)) {
      condition.groundSampleDistance = {*gsd, points->source};
    }
  } else if (points->srs->IsProjected()) {
    // No way to WGS 84 (a CRS PROJ cannot invert): the grid spacing in the CRS's unit.
    const double area = std::fabs((points->x[2] - points->x[1]) * (points->y[4] - points->y[3]) -
                                  (points->y[2] - points->y[1]) * (points->x[4] - points->x[3]));
    const double gsd = std::sqrt(area) * points->srs->GetLinearUnits();
    if (std::isfinite(gsd) && gsd > 0) {
      condition.groundSampleDistance = {gsd, "CRS linear unit (no transformation to WGS 84)"};
    }
  }
}

// ------------------------------------------------------------------ band set

const char* const kSpacecraftKeys[] = {"SPACECRAFT_ID", "SPACECRAFT_NAME", "SATELLITEID",
                                       "MISSION_ID"};
const char* const kInstrumentKeys[] = {"SENSOR_ID", "INSTRUMENT"};

template <size_t N>
const MetadataItem* firstWithValue(const std::vector<MetadataItem>& items,
                                   const char* const (&keys)[N]) {
  for (const char* key : keys) {
    for (const auto& item : items) {
      if (item.key == key && !item.value.empty()) return &item;
    }
  }
  return nullptr;
}

ConditionText sensorOf(const std::vector<MetadataItem>& items,
                       const std::vector<FoundProductId>& productIds) {
  if (const MetadataItem* spacecraft = firstWithValue(items, kSpacecraftKeys)) {
    std::string value = spacecraft->value, source = metadataSource(*spacecraft);
    if (const MetadataItem* instrument = firstWithValue(items, kInstrumentKeys)) {
      value += " " + instrument->value;
      source += " + " + instrument->location;
    }
    return {value, source};
  }
  if (!productIds.empty()) {
    return {productIds.front().id.sensor,
            productIds.front().id.kind + " in " + productIds.front().where};
  }
  // Sentinel-1 GeoTIFFs name their product here ("Sentinel-1A IW GRD HR L1"); other
  // descriptions are free text.
  for (const auto& item : items) {
    if (item.key == "TIFFTAG_IMAGEDESCRIPTION" && item.value.size() <= 64 &&
        (STARTS_WITH_CI(item.value.c_str(), "Sentinel-") ||
         STARTS_WITH_CI(item.value.c_str(), "Landsat"))) {
      return {item.value, metadataSource(item)};
    }
  }
  return {};
}

// "_B4", "_B04", "_B8A", "_BQA", "_VV" at the end of a one-band file's name (Landsat's,
// Sentinel-2's and BigEarthNet's band files).
std::optional<std::string> bandFromFileName(const std::string& path) {
  const std::string base = CPLGetBasename(path.c_str());
  const size_t underscore = base.rfind('_');
  if (underscore == std::string::npos) return std::nullopt;
  const std::string suffix = upper(base.substr(underscore + 1));
  const bool polarisation = suffix == "VV" || suffix == "VH" || suffix == "HH" || suffix == "HV";
  const bool optical = suffix == "BQA" || suffix == "B8A" ||
                       (suffix.size() == 2 && matchesShape(suffix, 0, "B#")) ||
                       (suffix.size() == 3 && matchesShape(suffix, 0, "B##"));
  if (!polarisation && !optical) return std::nullopt;
  return suffix;
}

ConditionText bandNamesOf(GDALDataset& dataset) {
  const int count = dataset.GetRasterCount();
  if (count == 0) return {};
  std::string descriptions, interpretations;
  bool allDescribed = true, allInterpreted = true;
  for (int i = 1; i <= count; ++i) {
    GDALRasterBand* band = dataset.GetRasterBand(i);
    const std::string description = band->GetDescription();
    allDescribed = allDescribed && !description.empty();
    descriptions += (i > 1 ? "," : "") + description;
    const GDALColorInterp interpretation = band->GetColorInterpretation();
    // Gray is what a band is when nobody said otherwise.
    allInterpreted =
        allInterpreted && interpretation != GCI_Undefined && interpretation != GCI_GrayIndex;
    interpretations +=
        std::string(i > 1 ? "," : "") + GDALGetColorInterpretationName(interpretation);
  }
  if (allDescribed) return {descriptions, "band descriptions"};
  if (count == 1) {
    if (const auto band = bandFromFileName(dataset.GetDescription())) return {*band, "file name"};
  }
  if (allInterpreted) return {interpretations, "colour interpretation"};
  return {};
}

// ------------------------------------------------------------------ JSON and text

struct ValueField {
  const char* jsonKey;
  const char* describeKey;
  int decimals;
  ConditionValue SceneCondition::*member;
};

const ValueField kValueFields[] = {
    {"year", "ACQUISITION_YEAR", 0, &SceneCondition::year},
    {"day_of_year", "ACQUISITION_DAY_OF_YEAR", 6, &SceneCondition::dayOfYear},
    {"hour_utc", "ACQUISITION_HOUR_UTC", 6, &SceneCondition::hourUtc},
    {"sun_elevation", "SUN_ELEVATION", 4, &SceneCondition::sunElevation},
    {"sun_azimuth", "SUN_AZIMUTH", 4, &SceneCondition::sunAzimuth},
    {"center_lat", "CENTER_LAT", 6, &SceneCondition::centerLatitude},
    {"center_lon", "CENTER_LON", 6, &SceneCondition::centerLongitude},
    {"gsd", "GSD", 3, &SceneCondition::groundSampleDistance},
};

struct TextField {
  const char* jsonKey;
  const char* describeKey;
  ConditionText SceneCondition::*member;
};

const TextField kTextFields[] = {
    {"sensor", "SENSOR", &SceneCondition::sensor},
    {"band_names", "BAND_NAMES", &SceneCondition::bandNames},
};

template <typename Value>
nlohmann::json entryToJson(const Value& entry) {
  nlohmann::json json;
  json["value"] = entry.value ? nlohmann::json(*entry.value) : nlohmann::json(nullptr);
  json["source"] = entry.source;
  return json;
}

template <typename Value>
Value entryFromJson(const nlohmann::json& json, const char* key,
                    bool (nlohmann::json::*isType)() const) {
  Value entry;
  if (!json.contains(key)) return entry;
  const auto& object = json.at(key);
  if (!object.is_object())
    throw Error(std::string("scene condition: ") + key + " is not an object");
  const auto& value = object.value("value", nlohmann::json(nullptr));
  if (!value.is_null()) {
    if (!(value.*isType)())
      throw Error(std::string("scene condition: ") + key + " has a value of the wrong type");
    entry.value = value.get<typename decltype(entry.value)::value_type>();
  }
  entry.source = object.value("source", std::string());
  return entry;
}

// Fixed decimals without trailing zeros: "30", "64.7436".
std::string decimalText(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  std::string result = text;
  if (result.find('.') != std::string::npos) {
    result.erase(result.find_last_not_of('0') + 1);
    if (result.back() == '.') result.pop_back();
  }
  return result == "-0" ? "0" : result;
}

std::string describeLine(const char* key, const std::optional<std::string>& value,
                         const std::string& source) {
  return std::string(key) + "=" + value.value_or("unknown") +
         (source.empty() ? "" : " (" + source + ")");
}

}  // namespace

// ------------------------------------------------------------------ public

bool operator==(const ConditionValue& a, const ConditionValue& b) {
  return a.value == b.value && a.source == b.source;
}
bool operator==(const ConditionText& a, const ConditionText& b) {
  return a.value == b.value && a.source == b.source;
}
bool operator==(const SceneCondition& a, const SceneCondition& b) {
  for (const auto& field : kValueFields) {
    if (!(a.*field.member == b.*field.member)) return false;
  }
  for (const auto& field : kTextFields) {
    if (!(a.*field.member == b.*field.member)) return false;
  }
  return a.bandCount == b.bandCount && a.dataType == b.dataType;
}

std::optional<UtcTime> calendarDate(int year, int month, int day) {
  if (year < kFirstYear || year > kLastYear || month < 1 || month > 12 || day < 1 ||
      day > daysInMonth(year, month)) {
    return std::nullopt;
  }
  int dayOfYear = day;
  for (int m = 1; m < month; ++m) dayOfYear += daysInMonth(year, m);
  return UtcTime{year, dayOfYear, std::nullopt};
}

std::optional<UtcTime> parseIsoDateTime(const std::string& text) {
  Cursor cursor(text);
  int year = 0, month = 0, day = 0;
  if (!cursor.digits(4, year) || !cursor.skip('-') || !cursor.digits(2, month) ||
      !cursor.skip('-') || !cursor.digits(2, day)) {
    return std::nullopt;
  }
  const auto date = calendarDate(year, month, day);
  if (!date || cursor.atEnd()) return date;
  double seconds = 0, offset = 0;
  if ((!cursor.skip('T') && !cursor.skip(' ')) || !readClock(cursor, seconds) ||
      !readZone(cursor, offset) || !cursor.atEnd()) {
    return std::nullopt;
  }
  return shifted(*date, seconds - offset);
}

std::optional<UtcTime> parseTiffDateTime(const std::string& text) {
  Cursor cursor(text);
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!cursor.digits(4, year) || !cursor.skip(':') || !cursor.digits(2, month) ||
      !cursor.skip(':') || !cursor.digits(2, day) || !cursor.skip(' ') || !cursor.digits(2, hour) ||
      !cursor.skip(':') || !cursor.digits(2, minute) || !cursor.skip(':') ||
      !cursor.digits(2, second) || !cursor.atEnd() || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  const auto date = calendarDate(year, month, day);
  if (!date) return std::nullopt;
  return shifted(*date, hour * 3600.0 + minute * 60.0 + second);
}

std::optional<double> parseTimeOfDay(const std::string& text) {
  Cursor cursor(text);
  double seconds = 0, offset = 0;
  if (!readClock(cursor, seconds) || !readZone(cursor, offset) || !cursor.atEnd()) {
    return std::nullopt;
  }
  return seconds - offset;
}

std::optional<ProductId> findProductId(const std::string& text) {
  for (size_t at = 0; at < text.size(); ++at) {
    if (at > 0 && isAlnum(text[at - 1])) continue;  // ids start a word
    if (auto id = landsatProductIdAt(text, at)) return id;
    if (auto id = landsatSceneIdAt(text, at)) return id;
    if (auto id = sentinelProductIdAt(text, at)) return id;
  }
  return std::nullopt;
}

// NOAA Global Monitoring Laboratory, "General Solar Position Calculations" and its Solar
// Calculator spreadsheet (after J. Meeus, Astronomical Algorithms, 1991, ch. 25 and 28):
// the Sun's mean longitude and anomaly give its apparent longitude, the obliquity its
// declination; the equation of time and the longitude give the hour angle. About 0.01°
// between 1900 and 2100; no refraction; ΔT (about a minute) is ignored.
SunPosition computeSunPosition(int year, double dayOfYear, double latitude, double longitude) {
  // Julian day of 1 January 00:00 UTC (Meeus 7.1, January counted as month 13 of the
  // year before), then the days since.
  const int y = year - 1;
  const int century = y / 100;
  const double gregorian = 2 - century + century / 4;
  const double julianDay = std::floor(365.25 * (y + 4716)) + std::floor(30.6001 * 14) + 1 +
                           gregorian - 1524.5 + (dayOfYear - 1);
  const double t = (julianDay - 2451545.0) / 36525.0;  // Julian centuries since J2000.0

  const double meanLongitude = std::fmod(280.46646 + t * (36000.76983 + t * 0.0003032), 360.0);
  const double meanAnomaly = radians(357.52911 + t * (35999.05029 - 0.0001537 * t));
  const double eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t);
  const double centre = std::sin(meanAnomaly) * (1.914602 - t * (0.004817 + 0.000014 * t)) +
                        std::sin(2 * meanAnomaly) * (0.019993 - 0.000101 * t) +
                        std::sin(3 * meanAnomaly) * 0.000289;
  const double node = radians(125.04 - 1934.136 * t);
  const double apparentLongitude =
      radians(meanLongitude + centre - 0.00569 - 0.00478 * std::sin(node));
  const double meanObliquity =
      23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0;
  const double obliquity = radians(meanObliquity + 0.00256 * std::cos(node));
  const double declination = std::asin(std::sin(obliquity) * std::sin(apparentLongitude));

  const double l0 = radians(meanLongitude);
  const double v = std::pow(std::tan(obliquity / 2), 2);
  const double equationOfTimeMinutes =
      4 * degrees(v * std::sin(2 * l0) - 2 * eccentricity * std::sin(meanAnomaly) +
                  4 * eccentricity * v * std::sin(meanAnomaly) * std::cos(2 * l0) -
                  0.5 * v * v * std::sin(4 * l0) -
                  1.25 * eccentricity * eccentricity * std::sin(2 * meanAnomaly));
  const double minutesOfDay = (dayOfYear - std::floor(dayOfYear)) * 1440.0;
  const double trueSolarMinutes = minutesOfDay + equationOfTimeMinutes + 4 * longitude;
  const double hourAngle = radians(trueSolarMinutes / 4 - 180);

  const double phi = radians(latitude);
  const double cosZenith = std::sin(phi) * std::sin(declination) +
                           std::cos(phi) * std::cos(declination) * std::cos(hourAngle);
  SunPosition sun;
  sun.elevation = 90 - degrees(std::acos(std::max(-1.0, std::min(1.0, cosZenith))));
  // Meeus 13.5: measured from the south, westwards; +180 for from the north.
  const double fromSouth =
      std::atan2(std::sin(hourAngle),
                 std::cos(hourAngle) * std::sin(phi) - std::tan(declination) * std::cos(phi));
  sun.azimuth = std::fmod(degrees(fromSouth) + 540.0, 360.0);
  return sun;
}

SceneCondition extractSceneCondition(GDALDataset& dataset) {
  // Nothing a file lacks is an error here: failing PROJ look-ups stay quiet and leave
  // the caller's last error as it was.
  CPLErrorStateBackuper keepLastError;
  CPLErrorHandlerPusher quiet(CPLQuietErrorHandler);

  SceneCondition condition;
  condition.bandCount = dataset.GetRasterCount();
  condition.dataType = condition.bandCount > 0
                           ? GDALGetDataTypeName(dataset.GetRasterBand(1)->GetRasterDataType())
                           : "";
  const std::vector<MetadataItem> items = collectAllMetadata(dataset);
  const std::vector<FoundProductId> productIds = findProductIds(dataset, items);

  std::vector<TimeCandidate> times;
  addMetadataTimes(items, times);
  for (const auto& found : productIds)
    times.push_back({found.id.time, found.id.kind + " in " + found.where});
  // Last, and only its date: writers set the tag to when they wrote the file, hours to
  // years after the acquisition. s1_grd_gcps_uint16.tif says 06:06 UTC, but Sentinel-1's
  // dawn-dusk orbit passes over India near 00:50 or 12:50 UTC; a sun computed from that
  // hour would be wrong.
  for (const auto& item : items) {
    if (item.key != "TIFFTAG_DATETIME") continue;
    if (auto time = parseTiffDateTime(item.value)) {
      time->secondsOfDay.reset();
      times.push_back({*time, metadataSource(item) + " (its hour is often the processing time)"});
    }
  }
  if (const auto chosen = chooseTime(times)) setTime(condition, chosen->time, chosen->source);

  fillPosition(dataset, condition);

  condition.sunElevation = metadataAngle(items, kElevationKeys, -90, 90);
  if (!condition.sunElevation.value) {
    const ConditionValue zenith = metadataAngle(items, kZenithKeys, 0, 180);
    if (zenith.value)
      condition.sunElevation = {90 - *zenith.value, zenith.source + " (90 - zenith)"};
  }
  condition.sunAzimuth = metadataAngle(items, kAzimuthKeys, -180, 360);
  if (condition.sunAzimuth.value && *condition.sunAzimuth.value < 0) {
    *condition.sunAzimuth.value += 360;
  }
  refreshComputedSun(condition);

  condition.sensor = sensorOf(items, productIds);
  condition.bandNames = bandNamesOf(dataset);
  return condition;
}

const std::vector<OptionDeclaration>& sceneConditionOptions() {
  static const std::vector<OptionDeclaration> options = [] {
    auto number = [](const char* name, double minimum, double maximum, const char* help) {
      OptionDeclaration option = numberOptionDeclaration(name, help);
      option.minimum = minimum;
      option.maximum = maximum;
      return option;
    };
    return std::vector<OptionDeclaration>{
        textOptionDeclaration("ACQUISITION_DATETIME",
                              "when the scene was taken, ISO 8601 (2021-05-08T18:30:00Z, or a "
                              "date alone); replaces what the metadata say"),
        number("SUN_ELEVATION", -90, 90, "sun elevation in degrees at the scene centre"),
        number("SUN_AZIMUTH", 0, 360, "sun azimuth in degrees clockwise from north"),
        number("CENTER_LAT", -90, 90, "latitude of the scene centre, WGS 84 degrees"),
        number("CENTER_LON", -180, 180, "longitude of the scene centre, WGS 84 degrees"),
        number("GSD", 0.001, 1e6, "ground sample distance in metres"),
    };
  }();
  return options;
}

void applyConditionOverrides(SceneCondition& condition, CSLConstList options) {
  // Every value is checked before any is applied.
  SceneCondition updated = condition;
  const auto& declarations = sceneConditionOptions();
  auto number = [&](const char* name) -> std::optional<double> {
    const char* text = CSLFetchNameValue(options, name);
    if (!text) return std::nullopt;
    const OptionDeclaration& declaration = declarationOf(declarations, name);
    return numberOption({{name, text}}, declaration, *declaration.minimum, *declaration.maximum);
  };
  const auto overrideSource = [](const char* name) {
    return std::string("creation option ") + name;
  };

  bool timeOrPlaceChanged = false;
  if (const char* text = CSLFetchNameValue(options, "ACQUISITION_DATETIME")) {
    const auto time = parseIsoDateTime(text);
    if (!time) {
      throw Error(std::string("ACQUISITION_DATETIME=") + text +
                      " is invalid: expected an ISO 8601 date and time such as "
                      "2021-05-08T18:30:00Z (years 1900 to 2199)",
                  ErrorKind::InvalidOption);
    }
    setTime(updated, *time, overrideSource("ACQUISITION_DATETIME"));
    timeOrPlaceChanged = true;
  }
  const struct {
    const char* name;
    ConditionValue SceneCondition::*member;
  } numbers[] = {{"CENTER_LAT", &SceneCondition::centerLatitude},
                 {"CENTER_LON", &SceneCondition::centerLongitude},
                 {"GSD", &SceneCondition::groundSampleDistance},
                 {"SUN_ELEVATION", &SceneCondition::sunElevation},
                 {"SUN_AZIMUTH", &SceneCondition::sunAzimuth}};
  std::optional<double> sunElevation, sunAzimuth;
  for (const auto& field : numbers) {
    const auto value = number(field.name);
    if (!value) continue;
    ConditionValue& target = updated.*field.member;
    // Sun options are applied after the recomputation below, so that they win.
    if (field.member == &SceneCondition::sunElevation) {
      sunElevation = value;
    } else if (field.member == &SceneCondition::sunAzimuth) {
      sunAzimuth = value;
    } else {
      target = {*value, overrideSource(field.name)};
      timeOrPlaceChanged =
          timeOrPlaceChanged || field.member != &SceneCondition::groundSampleDistance;
    }
  }
  if (timeOrPlaceChanged) refreshComputedSun(updated);
  if (sunElevation) updated.sunElevation = {*sunElevation, overrideSource("SUN_ELEVATION")};
  if (sunAzimuth) updated.sunAzimuth = {*sunAzimuth, overrideSource("SUN_AZIMUTH")};
  condition = std::move(updated);
}

nlohmann::json toJson(const SceneCondition& condition) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& field : kValueFields) json[field.jsonKey] = entryToJson(condition.*field.member);
  json["band_count"] = condition.bandCount;
  json["data_type"] = condition.dataType;
  for (const auto& field : kTextFields) json[field.jsonKey] = entryToJson(condition.*field.member);
  return json;
}

SceneCondition sceneConditionFromJson(const nlohmann::json& json) {
  if (!json.is_object()) throw Error("scene condition is not a JSON object");
  SceneCondition condition;
  try {
    for (const auto& field : kValueFields) {
      condition.*field.member =
          entryFromJson<ConditionValue>(json, field.jsonKey, &nlohmann::json::is_number);
    }
    for (const auto& field : kTextFields) {
      condition.*field.member =
          entryFromJson<ConditionText>(json, field.jsonKey, &nlohmann::json::is_string);
    }
    condition.bandCount = json.value("band_count", 0);
    condition.dataType = json.value("data_type", std::string());
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("scene condition is malformed: ") + e.what());
  }
  if (condition.bandCount < 0) throw Error("scene condition has a negative band count");
  return condition;
}

std::vector<std::string> describe(const SceneCondition& condition) {
  std::vector<std::string> lines;
  for (const auto& field : kValueFields) {
    const ConditionValue& entry = condition.*field.member;
    const std::optional<std::string> text =
        entry.value ? std::optional<std::string>(decimalText(*entry.value, field.decimals))
                    : std::nullopt;
    lines.push_back(describeLine(field.describeKey, text, entry.source));
  }
  lines.push_back("BAND_COUNT=" + std::to_string(condition.bandCount));
  lines.push_back("DATA_TYPE=" + condition.dataType);
  for (const auto& field : kTextFields) {
    const ConditionText& entry = condition.*field.member;
    lines.push_back(describeLine(field.describeKey, entry.value, entry.source));
  }
  return lines;
}

}  // namespace nsat
