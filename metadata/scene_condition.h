// The scene metadata a diffusion codec is conditioned on (after COSMIC: each scalar goes
// through a sinusoidal embedding, a missing one gets an "unknown" embedding): when the
// scene was taken, where the sun was, where the scene is, how fine its pixels are and
// what its bands are. Each value says where it came from. Extracted from any GDAL
// dataset, overridden by creation options, kept in the header as JSON.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <cpl_string.h>
#include <gdal_priv.h>
#include <nlohmann/json.hpp>

#include "codecs/options.h"

namespace nsat {

// One scalar of the condition: empty when unknown.
struct ConditionValue {
  std::optional<double> value;
  std::string source;  // "metadata IMD:SUN_ELEVATION", "computed (NOAA solar position)"
};

struct ConditionText {
  std::optional<std::string> value;
  std::string source;
};

struct SceneCondition {
  // UTC. dayOfYear is 1.0 at 1 January 00:00 and fractional, so it lies in [1, 367);
  // when only the date is known it is the middle of that day and hourUtc is unknown.
  ConditionValue dayOfYear;
  ConditionValue hourUtc;  // [0, 24)
  ConditionValue year;
  // Degrees: geometric elevation above the horizon (no refraction), azimuth clockwise
  // from north. From the product's metadata when it has them, else computed.
  ConditionValue sunElevation;
  ConditionValue sunAzimuth;
  // The centre of the raster, WGS 84 degrees.
  ConditionValue centerLatitude;
  ConditionValue centerLongitude;
  // Metres on the ground per pixel at the centre (the square root of a pixel's area).
  ConditionValue groundSampleDistance;
  // Always known.
  int bandCount = 0;
  std::string dataType;  // GDAL's name: "UInt16"
  // When known: "Landsat 8 OLI/TIRS", "LANDSAT_8 OLI_TIRS", "Sentinel-1A IW GRD HR L1".
  ConditionText sensor;
  // When known: "B4", "VV,VH", "Red,Green,Blue".
  ConditionText bandNames;
};

bool operator==(const ConditionValue& a, const ConditionValue& b);
bool operator==(const ConditionText& a, const ConditionText& b);
bool operator==(const SceneCondition& a, const SceneCondition& b);

// The source of a sun position computed from time and place; overrides recompute these.
extern const char* const kComputedSunSource;

// Reads the dataset's metadata (every domain, then the bands'), product ids in metadata,
// description and file name, and its georeferencing through PROJ. Never throws for what
// the file contains: what cannot be read is unknown. Emits no GDAL errors.
SceneCondition extractSceneCondition(GDALDataset& dataset);

// ACQUISITION_DATETIME (ISO 8601: 2021-05-08T18:30:00Z, 2021-05-08), SUN_ELEVATION,
// SUN_AZIMUTH, CENTER_LAT, CENTER_LON, GSD, in the form creation options take.
const std::vector<OptionDeclaration>& sceneConditionOptions();

// Applies those options. A value that does not parse or is out of range throws
// nsat::Error (InvalidOption, which GDAL reports as CPLE_IllegalArg). A new time or
// position recomputes a computed sun position (one given by metadata is kept); SUN_*
// options win over both.
void applyConditionOverrides(SceneCondition& condition, CSLConstList options);

// Unknowns are null; sources are kept. Exact round trip. fromJson throws nsat::Error
// on a malformed object; absent members are unknown.
nlohmann::json toJson(const SceneCondition& condition);
SceneCondition sceneConditionFromJson(const nlohmann::json& json);

// "KEY=VALUE (source)" lines for gdalinfo; "KEY=unknown" for what is not known (with
// the source when one says why: "(... date only)").
std::vector<std::string> describe(const SceneCondition& condition);

// ---- Building blocks, public for the tests.

// A UTC instant; secondsOfDay is empty when only the date is known.
struct UtcTime {
  int year = 0;
  int dayOfYear = 0;                   // 1..366
  std::optional<double> secondsOfDay;  // [0, 86400)
};

// The date if it exists in the Gregorian calendar (years 1900..2199: anything outside
// is a placeholder or a typo, not an acquisition).
std::optional<UtcTime> calendarDate(int year, int month, int day);

// Strict parsers: the whole text must match, else empty.
// ISO 8601 "2021-05-08", "2021-05-08T18:30:00Z", "2017-01-05T01:34:42.026Z",
// "2021-05-08 18:30:00" (GDAL's IMAGERY domain), "2003-10-17T12:30:30-07:00"; without
// an offset the time is taken as UTC.
std::optional<UtcTime> parseIsoDateTime(const std::string& text);
// TIFF's DateTime tag, "2018:07:16 06:06:23" (no time zone: taken as UTC).
std::optional<UtcTime> parseTiffDateTime(const std::string& text);
// A time of day "16:19:21.7917421Z" (Landsat SCENE_CENTER_TIME): seconds after midnight
// UTC, outside [0, 86400) when an offset moves it to another day.
std::optional<double> parseTimeOfDay(const std::string& text);

// The first Landsat or Sentinel product id in `text` with the acquisition it names:
// LC08_L1TP_044034_20210508_20210518_01_T1 (date), LC80440342021128LGN00 (year and
// day), S2A_MSIL1C_20170105T013442_..., S1A_IW_GRDH_1SDV_20170613T165043_... (time).
struct ProductId {
  UtcTime time;
  std::string kind;    // "Landsat product id", "Landsat scene id", "Sentinel product id"
  std::string sensor;  // "Landsat 8 OLI/TIRS", "Sentinel-2A MSIL1C"
};
std::optional<ProductId> findProductId(const std::string& text);

struct SunPosition {
  double elevation = 0;  // degrees, geometric
  double azimuth = 0;    // degrees clockwise from north, [0, 360)
};
// NOAA's solar position equations for `dayOfYear` (fractional, UTC) of `year`.
SunPosition computeSunPosition(int year, double dayOfYear, double latitude, double longitude);

}  // namespace nsat
