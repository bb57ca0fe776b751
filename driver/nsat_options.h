// The driver's own options, declared once like the codecs' (codecs/options.h), and the
// option-list XML GDAL shows (gdalinfo --format NSAT, QGIS), made from both.
#pragma once

#include <string>
#include <vector>

#include "codecs/options.h"

namespace nsat {

// CODEC, BLOCKSIZE, OVERVIEWS, OVERVIEW_RESAMPLING, NUM_THREADS.
const std::vector<OptionDeclaration>& driverCreationOptions();
// NUM_THREADS.
const std::vector<OptionDeclaration>& driverOpenOptions();

// NUM_THREADS (creation or open option): `text`, else GDAL_NUM_THREADS, else every CPU.
// Throws nsat::Error (InvalidOption) for anything but a count (1..1024) or ALL_CPUS.
int threadCountOption(const char* text);

// <CreationOptionList>: the driver's options, then every codec's, one entry per name
// (an option several codecs read says what each does with it).
std::string creationOptionListXml();
std::string openOptionListXml();

}  // namespace nsat
