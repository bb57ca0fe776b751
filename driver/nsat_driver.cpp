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
    "    <Value>FIXED_QUALITY</Value>"
    "    <Value>RDIC</Value>"
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
    "          description='Learned codecs: model name in the models folder (RDIC: rdic-classifier-rgb8; MULTIRATE: "
    "multirate-rgb8 for Byte, multirate-ms16 for UInt16/Int16; FIXED_QUALITY: "
    "fixed-quality-rgb8 / fixed-quality-ms16)'/>"
    "  <Option name='TARGET_PSNR' type='float'"
    "          description='FIXED_QUALITY: PSNR in dB every block should reach (peak 255 "
    "for Byte, 65535 for UInt16/Int16)'/>"
    "  <Option name='TARGET_MSE' type='float'"
    "          description='FIXED_QUALITY: mean squared error every block should stay under "
    "(instead of TARGET_PSNR)'/>"
    "  <Option name='QUALITY_BLOCK' type='string-select' default='32'"
    "          description='FIXED_QUALITY: block side in pixels that gets its own lambda, or "
    "GLOBAL (one lambda per tile)'>"
    "    <Value>16</Value><Value>32</Value><Value>64</Value><Value>GLOBAL</Value>"
    "  </Option>"
    "  <Option name='REFINE' type='int' min='0' max='8' default='2'"
    "          description='FIXED_QUALITY: closed-loop passes that decode, measure each block "
    "and correct its lambda'/>"
    "  <Option name='ROI_QUALITY' type='int' min='1' max='100' default='100'"
    "          description='RDIC: JPEG quality of the relevant region'/>"
    "  <Option name='BG_QUALITY' type='int' min='1' max='100' default='50'"
    "          description='RDIC: JPEG quality of the background'/>"
    "  <Option name='DILATION' type='int' min='0' max='64' default='0'"
    "          description='RDIC: dilation of the relevance mask in pixels before it is "
    "snapped to 16 px cells'/>"
    "  <Option name='RELEVANCE' type='string-select' default='PREDICTED'"
    "          description='RDIC: explain the predicted class or all classes'>"
    "    <Value>PREDICTED</Value><Value>ALL</Value>"
    "  </Option>"
    "  <Option name='ROI_MASK' type='string'"
    "          description='RDIC: raster of the image size whose non-zero pixels mark the "
    "region to keep (instead of the classifier relevance)'/>"
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
    "  <Option name='NUM_THREADS' type='string' default='ALL_CPUS'"
    "          description='Encoding threads: a number or ALL_CPUS (default: "
    "GDAL_NUM_THREADS, else ALL_CPUS). The output is identical for any value'/>"
    "</CreationOptionList>";

// Open options: how many threads decode the tiles of one read.
constexpr const char* kOpenOptions =
    "<OpenOptionList>"
    "  <Option name='NUM_THREADS' type='string' default='ALL_CPUS'"
    "          description='Decoding threads for the tiles of one read: a number or ALL_CPUS "
    "(default: GDAL_NUM_THREADS, else ALL_CPUS). The pixels are identical for any value'/>"
    "</OpenOptionList>";

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
  driver->SetMetadataItem(GDAL_DMD_OPENOPTIONLIST, kOpenOptions);
  driver->SetMetadataItem(GDAL_DCAP_VIRTUALIO, "YES");
  driver->SetMetadataItem(GDAL_DCAP_CREATECOPY, "YES");
  driver->pfnIdentify = nsat::NSATDataset::Identify;
  driver->pfnOpen = nsat::NSATDataset::Open;
  driver->pfnCreateCopy = nsat::NSATDataset::CreateCopy;
  GetGDALDriverManager()->RegisterDriver(driver);
}
