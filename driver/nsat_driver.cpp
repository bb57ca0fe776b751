// Plugin entry point: GDAL calls GDALRegister_NSAT when it loads gdal_NSAT.so.
#include <gdal_priv.h>

#include "driver/nsat_dataset.h"
#include "driver/nsat_options.h"

extern "C" CPL_DLL void GDALRegister_NSAT();

void GDALRegister_NSAT() {
  if (!GDAL_CHECK_VERSION("NSAT")) return;
  if (GDALGetDriverByName("NSAT") != nullptr) return;

  auto* driver = new GDALDriver();
  driver->SetDescription("NSAT");
  driver->SetMetadataItem(GDAL_DCAP_RASTER, "YES");
  driver->SetMetadataItem(GDAL_DMD_LONGNAME, "NSAT learned-compression satellite imagery");
  driver->SetMetadataItem(GDAL_DMD_EXTENSION, "nsat");
  driver->SetMetadataItem(GDAL_DMD_EXTENSIONS, "nsat");
  driver->SetMetadataItem(GDAL_DMD_HELPTOPIC, "README.md (NSAT project)");
  driver->SetMetadataItem(GDAL_DMD_CREATIONDATATYPES,
                          "Byte UInt16 Int16 UInt32 Int32 Float32 Float64");
  // Made from the option declarations, so that gdalinfo --format NSAT and QGIS list
  // exactly the options the codecs read.
  driver->SetMetadataItem(GDAL_DMD_CREATIONOPTIONLIST, nsat::creationOptionListXml().c_str());
  driver->SetMetadataItem(GDAL_DMD_OPENOPTIONLIST, nsat::openOptionListXml().c_str());
  driver->SetMetadataItem(GDAL_DCAP_VIRTUALIO, "YES");
  driver->SetMetadataItem(GDAL_DCAP_CREATECOPY, "YES");
  driver->pfnIdentify = nsat::NSATDataset::Identify;
  driver->pfnOpen = nsat::NSATDataset::Open;
  driver->pfnCreateCopy = nsat::NSATDataset::CreateCopy;
  GetGDALDriverManager()->RegisterDriver(driver);
}
