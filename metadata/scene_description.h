// What NSAT keeps of a scene besides its pixels: georeferencing (geotransform, CRS by
// EPSG code or as WKT2, GCPs and their CRS), per-band nodata, description, colour interpretation,
// scale/offset, unit, colour table and metadata, and the dataset's metadata domains.
// Converts between GDAL objects and the header's JSON (container/FORMAT.md).
#pragma once

#include <gdal_pam.h>
#include <gdal_priv.h>
#include <ogr_spatialref.h>

#include "container/header.h"

namespace nsat {

// Fills header.nodata, georeferencing, bandDescriptions and metadataDomains.
void describeScene(GDALDataset& source, Header& header);

// The CRS the header's georeferencing stores under `key` ("crs" or "gcp_crs": an EPSG
// code or WKT2), in GIS axis order (x = easting/longitude) as GDAL datasets report it.
// False if there is none or it does not parse.
bool loadCrs(const nlohmann::json& georeferencing, const std::string& key, OGRSpatialReference& srs);

// Applies the header's description through GDAL's PAM setters, which the dataset's
// getters then report. The caller clears the PAM dirty flag afterwards so that
// opening a file never writes an .aux.xml next to it.
void applySceneDescription(const Header& header, GDALPamDataset& dataset);

}  // namespace nsat
