// The one error type of the NSAT core. It carries a kind so that the GDAL boundary
// (driver/nsat_errors.cpp) can report the right CPLE_* class; nothing inside the core
// knows those classes.
#pragma once

#include <stdexcept>
#include <string>

namespace nsat {

enum class ErrorKind {
  Failed,          // corrupt data, a codec that cannot go on: CPLE_AppDefined
  InvalidOption,   // a creation/open option's value: CPLE_IllegalArg
  NotSupported,    // a valid request this driver or codec does not do: CPLE_NotSupported
  FileIO,          // reading or writing bytes failed (truncated file, full disk): CPLE_FileIO
  OpenFailed,      // not an NSAT file, or one this driver cannot open: CPLE_OpenFailed
  OutOfMemory,     // an allocation was refused: CPLE_OutOfMemory
  Cancelled,       // the user's progress callback asked to stop: CPLE_UserInterrupt
};

// Thrown by the core (container, codecs, module); caught at the GDAL boundary and
// never let through to C callers. The learned-codec module throws it too: its layout is
// part of kLearnedModuleAbi.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::Failed)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace nsat
