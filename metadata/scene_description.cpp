#include "metadata/scene_description.h"

#include <cmath>
#include <limits>

#include <ogr_spatialref.h>

namespace nsat {

namespace {

// Domains that describe how a file is stored, not the scene: the target sets its own.
bool isStorageDomain(const std::string& domain) {
  return domain == "IMAGE_STRUCTURE" || domain == "DERIVED_SUBDATASETS" ||
         domain == "SUBDATASETS";
}

// Statistics describe the source pixels; a lossy copy would report stale values.
bool isStaleStatistic(const char* item) { return STARTS_WITH(item, "STATISTICS_"); }

nlohmann::json metadataToJson(GDALMajorObject& object) {
  nlohmann::json domains = nlohmann::json::object();
  char** names = object.GetMetadataDomainList();
  for (char** name = names; name && *name; ++name) {
    if (isStorageDomain(*name)) continue;
    nlohmann::json items = nlohmann::json::array();
    for (char** item = object.GetMetadata(*name); item && *item; ++item) {
      if (!isStaleStatistic(*item)) items.push_back(*item);
    }
    if (!items.empty()) domains[*name] = items;
  }
  CSLDestroy(names);
  return domains;
}

void applyMetadata(const nlohmann::json& domains, GDALMajorObject& object) {
  for (const auto& [domain, items] : domains.items()) {
    CPLStringList list;
    for (const auto& item : items) list.AddString(item.get<std::string>().c_str());
    object.SetMetadata(list.List(), domain.c_str());
  }
}

std::string toWkt2(const OGRSpatialReference* srs) {
  char* wkt = nullptr;
  const char* const options[] = {"FORMAT=WKT2_2019", nullptr};
  srs->exportToWkt(&wkt, options);
  std::string text = wkt ? wkt : "";
  CPLFree(wkt);
  return text;
}

// "EPSG:<code>" when the CRS is exactly an EPSG CRS (as GeoTIFF stores it: a code
// instead of ~1.5 KB of WKT2), else empty.
std::string epsgCode(const OGRSpatialReference& srs) {
  const char* authority = srs.GetAuthorityName(nullptr);
  const char* code = srs.GetAuthorityCode(nullptr);
  if (!authority || !code || !EQUAL(authority, "EPSG")) return std::string();
  OGRSpatialReference registered;
  if (registered.importFromEPSG(atoi(code)) != OGRERR_NONE) return std::string();
  const char* const criteria[] = {"CRITERION=EQUIVALENT", "IGNORE_DATA_AXIS_TO_SRS_AXIS_MAPPING=YES",
                                  nullptr};
  return srs.IsSame(&registered, criteria) ? std::string("EPSG:") + code : std::string();
}

// Stores a CRS under `key` ("EPSG:<code>") or `key`_wkt (WKT2 2019); nothing if none.
void storeCrs(const OGRSpatialReference* srs, const std::string& key, nlohmann::json& geo) {
  if (!srs || srs->IsEmpty()) return;
  const std::string code = epsgCode(*srs);
  if (!code.empty()) {
    geo[key] = code;
  } else {
    geo[key + "_wkt"] = toWkt2(srs);
  }
}

}  // namespace

bool loadCrs(const nlohmann::json& geo, const std::string& key, OGRSpatialReference& srs) {
  srs.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
  const auto text = [&](const std::string& name) {
    const auto found = geo.find(name);
    return found != geo.end() && found->is_string() ? found->get<std::string>() : std::string();
  };
  const std::string code = text(key);
  if (STARTS_WITH_CI(code.c_str(), "EPSG:")) {
    return srs.importFromEPSG(atoi(code.c_str() + 5)) == OGRERR_NONE;
  }
  const std::string wkt = text(key + "_wkt");
  return !wkt.empty() && srs.importFromWkt(wkt.c_str()) == OGRERR_NONE;
}

namespace {

nlohmann::json numberOrString(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  return value;
}

nlohmann::json bandToJson(GDALRasterBand& band) {
  // Fields at their default are left out: they would cost a chip file a third of its bytes.
  nlohmann::json json;
  if (*band.GetDescription()) json["description"] = band.GetDescription();
  json["color_interpretation"] = GDALGetColorInterpretationName(band.GetColorInterpretation());
  int hasValue = FALSE;
  const double scale = band.GetScale(&hasValue);
  if (hasValue) json["scale"] = numberOrString(scale);
  const double offset = band.GetOffset(&hasValue);
  if (hasValue) json["offset"] = numberOrString(offset);
  if (band.GetUnitType() && *band.GetUnitType()) json["unit"] = band.GetUnitType();
  if (GDALColorTable* table = band.GetColorTable()) {
    nlohmann::json entries = nlohmann::json::array();
    for (int i = 0; i < table->GetColorEntryCount(); ++i) {
      const GDALColorEntry* entry = table->GetColorEntry(i);
      entries.push_back({entry->c1, entry->c2, entry->c3, entry->c4});
    }
    json["color_table"] = entries;
  }
  nlohmann::json metadata = metadataToJson(band);
  if (!metadata.empty()) json["metadata"] = metadata;
  return json;
}

void applyBand(const nlohmann::json& json, GDALPamRasterBand& band) {
  band.SetDescription(json.value("description", std::string()).c_str());
  if (json.contains("scale") && json["scale"].is_number()) band.SetScale(json["scale"]);
  if (json.contains("offset") && json["offset"].is_number()) band.SetOffset(json["offset"]);
  if (json.contains("unit")) band.SetUnitType(json["unit"].get<std::string>().c_str());
  if (json.contains("color_table")) {
    GDALColorTable table;
    int index = 0;
    for (const auto& rgba : json["color_table"]) {
      const GDALColorEntry entry = {rgba.at(0).get<short>(), rgba.at(1).get<short>(),
                                    rgba.at(2).get<short>(), rgba.at(3).get<short>()};
      table.SetColorEntry(index++, &entry);
    }
    band.SetColorTable(&table);
  }
  // After the table: PAM resets the interpretation to Palette when a table is set.
  band.SetColorInterpretation(
      GDALGetColorInterpretationByName(json.value("color_interpretation", "Undefined").c_str()));
  applyMetadata(json.value("metadata", nlohmann::json::object()), band);
}

}  // namespace

void describeScene(GDALDataset& source, Header& header) {
  nlohmann::json geo = nlohmann::json::object();
  double transform[6];
  if (source.GetGeoTransform(transform) == CE_None) {
    geo["geotransform"] = std::vector<double>(transform, transform + 6);
  }
  storeCrs(source.GetSpatialRef(), "crs", geo);
  if (source.GetGCPCount() > 0) {
    nlohmann::json gcps = nlohmann::json::array();
    const GDAL_GCP* list = source.GetGCPs();
    for (int i = 0; i < source.GetGCPCount(); ++i) {
      gcps.push_back({{"id", list[i].pszId ? list[i].pszId : ""},
                      {"info", list[i].pszInfo ? list[i].pszInfo : ""},
                      {"pixel", list[i].dfGCPPixel},
                      {"line", list[i].dfGCPLine},
                      {"x", list[i].dfGCPX},
                      {"y", list[i].dfGCPY},
                      {"z", list[i].dfGCPZ}});
    }
    geo["gcps"] = gcps;
    storeCrs(source.GetGCPSpatialRef(), "gcp_crs", geo);
  }
  header.georeferencing = geo;

  header.nodata.clear();
  header.bandDescriptions = nlohmann::json::array();
  for (int i = 1; i <= source.GetRasterCount(); ++i) {
    GDALRasterBand* band = source.GetRasterBand(i);
    int hasNodata = FALSE;
    const double nodata = band->GetNoDataValue(&hasNodata);
    header.nodata.push_back(hasNodata ? std::optional<double>(nodata) : std::nullopt);
    header.bandDescriptions.push_back(bandToJson(*band));
  }
  header.metadataDomains = metadataToJson(source);
}

void applySceneDescription(const Header& header, GDALPamDataset& dataset) {
  const nlohmann::json& geo = header.georeferencing;
  if (geo.contains("geotransform")) {
    std::vector<double> transform = geo["geotransform"].get<std::vector<double>>();
    if (transform.size() == 6) dataset.SetGeoTransform(transform.data());
  }
  OGRSpatialReference srs;
  if (loadCrs(geo, "crs", srs)) dataset.SetSpatialRef(&srs);
  if (geo.contains("gcps")) {
    std::vector<GDAL_GCP> gcps;
    std::vector<std::string> texts;  // keeps the ids and infos alive for SetGCPs
    const auto& list = geo["gcps"];
    texts.reserve(list.size() * 2);
    for (const auto& item : list) {
      texts.push_back(item.value("id", std::string()));
      texts.push_back(item.value("info", std::string()));
      GDAL_GCP gcp;
      gcp.pszId = const_cast<char*>(texts[texts.size() - 2].c_str());
      gcp.pszInfo = const_cast<char*>(texts.back().c_str());
      gcp.dfGCPPixel = item.at("pixel");
      gcp.dfGCPLine = item.at("line");
      gcp.dfGCPX = item.at("x");
      gcp.dfGCPY = item.at("y");
      gcp.dfGCPZ = item.value("z", 0.0);
      gcps.push_back(gcp);
    }
    OGRSpatialReference gcpSrs;
    const bool hasGcpSrs = loadCrs(geo, "gcp_crs", gcpSrs);
    dataset.SetGCPs(int(gcps.size()), gcps.data(), hasGcpSrs ? &gcpSrs : nullptr);
  }
  for (int i = 0; i < header.bands && i < int(header.bandDescriptions.size()); ++i) {
    auto* band = static_cast<GDALPamRasterBand*>(dataset.GetRasterBand(i + 1));
    applyBand(header.bandDescriptions[i], *band);
  }
  applyMetadata(header.metadataDomains, dataset);
}

}  // namespace nsat
