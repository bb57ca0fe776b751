#include "driver/nsat_errors.h"

#include <new>

#include "codecs/error.h"

namespace nsat {

CPLErrorNum gdalErrorClass(const std::exception& error, ErrorSite site) {
  const CPLErrorNum fallback = site == ErrorSite::Open ? CPLE_OpenFailed : CPLE_AppDefined;
  if (dynamic_cast<const std::bad_alloc*>(&error)) return CPLE_OutOfMemory;
  const auto* ours = dynamic_cast<const Error*>(&error);
  if (!ours) return fallback;
  switch (ours->kind()) {
    case ErrorKind::InvalidOption: return CPLE_IllegalArg;
    case ErrorKind::NotSupported: return CPLE_NotSupported;
    case ErrorKind::OutOfMemory: return CPLE_OutOfMemory;
    case ErrorKind::Cancelled: return CPLE_UserInterrupt;
    case ErrorKind::OpenFailed: return CPLE_OpenFailed;
    case ErrorKind::FileIO: return site == ErrorSite::Open ? CPLE_OpenFailed : CPLE_FileIO;
    case ErrorKind::Failed: return fallback;
  }
  return fallback;
}

void reportError(CPLErr severity, const std::exception& error, ErrorSite site,
                 const std::string& context) {
  CPLError(severity, gdalErrorClass(error, site), "NSAT: %s: %s", context.c_str(), error.what());
}

}  // namespace nsat
