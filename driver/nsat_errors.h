// The one place where the core's errors become GDAL error classes.
#pragma once

#include <exception>
#include <string>

#include <cpl_error.h>

namespace nsat {

// Where an error reached the GDAL boundary: opening maps data and file errors to
// CPLE_OpenFailed, as GDAL's own drivers do; elsewhere they keep their own class.
enum class ErrorSite { Open, Read, Write };

// nsat::Error by its kind, std::bad_alloc as CPLE_OutOfMemory, anything else as
// CPLE_AppDefined (CPLE_OpenFailed when opening).
CPLErrorNum gdalErrorClass(const std::exception& error, ErrorSite site);

// CPLError(severity, gdalErrorClass(...), "NSAT: <context>: <message>").
void reportError(CPLErr severity, const std::exception& error, ErrorSite site,
                 const std::string& context);

}  // namespace nsat
