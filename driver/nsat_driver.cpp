// Plugin entry point: GDAL calls GDALRegister_NSAT when it loads gdal_NSAT.so.
#include <gdal_priv.h>

#include "driver/nsat_dataset.h"

namespace {

// Declared as XML so that `gdalinfo --format NSAT` and QGIS list the options.
constexpr const char* kCreationOptions =
    "<CreationOptionList>"
    "  <Option name='CODEC' type='string-select' default='LOSSLESS'"
    "          description='Tile codec'>"
    "    <Value>LOSSLESS</Value>"
    "    <Value>JPEG</Value>"
    "    <Value>MULTIRATE</Value>"
    "  </Option>"
    "  <Option name='QUALITY' type='int' min='1' max='100' default='75'"
    "          description='Lossy codecs: 1 (smallest) to 100 (best). JPEG: libjpeg quality; "
    "MULTIRATE: log-linear over the model lambda range'/>"
    "  <Option name='LAMBDA' type='float'"
    "          description='MULTIRATE: rate-distortion trade-off inside the model range "
    "(instead of QUALITY)'/>"
    "  <Option name='TARGET_BPP' type='float'"
    "          description='MULTIRATE: fixed rate, bits per pixel (all bands) per tile; "
    "lambda is searched per tile'/>"
    "  <Option name='MODEL' type='string'"
    "          description='MULTIRATE: model name in the models folder (default: "
    "multirate-rgb8 for Byte, multirate-ms16 for UInt16/Int16)'/>"
    "  <Option name='CHROMA_SUBSAMPLING' type='string-select' default='420'"
    "          description='JPEG with 3 bands: 420 (smaller) or 444 (sharper colour)'>"
    "    <Value>420</Value><Value>444</Value>"
    "  </Option>"
    "  <Option name='ZSTD_LEVEL' type='int' min='1' max='22' default='9'"
    "          description='LOSSLESS: zstd effort, higher is smaller and slower'/>"
    "  <Option name='BLOCKSIZE' type='int' min='16' max='4096' default='256'"
    "          description='Tile width and height in pixels, a multiple of 16'/>"
    "  <Option name='OVERVIEWS' type='string-select' default='AUTO'"
    "          description='AUTO: internal overviews down to 256 px; NONE: none'>"
    "    <Value>AUTO</Value><Value>NONE</Value>"
    "  </Option>"
    "  <Option name='OVERVIEW_RESAMPLING' type='string-select' default='AVERAGE'"
    "          description='Resampling for internal overviews'>"
    "    <Value>NEAREST</Value><Value>AVERAGE</Value><Value>BILINEAR</Value>"
    "    <Value>CUBIC</Value><Value>CUBICSPLINE</Value><Value>LANCZOS</Value>"
    "    <Value>MODE</Value><Value>GAUSS</Value><Value>RMS</Value>"
    "  </Option>"
    "  <Option name='NUM_THREADS' type='string' default='1'"
    "          description='Encoding threads: a number or ALL_CPUS (default: "
    "GDAL_NUM_THREADS, else 1). The output is identical for any value'/>"
    "</CreationOptionList>";

}  // namespace

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
  driver->SetMetadataItem(GDAL_DMD_CREATIONOPTIONLIST, kCreationOptions);
  driver->SetMetadataItem(GDAL_DCAP_VIRTUALIO, "YES");
  driver->SetMetadataItem(GDAL_DCAP_CREATECOPY, "YES");
  driver->pfnIdentify = nsat::NSATDataset::Identify;
  driver->pfnOpen = nsat::NSATDataset::Open;
  driver->pfnCreateCopy = nsat::NSATDataset::CreateCopy;
  GetGDALDriverManager()->RegisterDriver(driver);
}
