// Spectral decorrelation of a band stack before the 2-D learned coder (issue 17).
//
// Neighbouring bands of a multispectral tile are strongly correlated; coding each band
// alone spends their shared structure once per band. As CCSDS 122.1 does before its 2-D
// coder, MULTIRATE first turns a stack into its principal components, a Karhunen-Loeve
// transform fitted per tile: components[k] = sum_b matrix[k][b] * (band_b - mean_b),
// component 0 carrying the most variance. The matrix and means are stored (float32) in
// the tile, and both sides compute with those stored values in double, so the inverse
// of the forward transform gives back integer samples exactly (tested on real stacks).
// The matrix is orthonormal, so an error in the components is the same error in the
// bands: one lambda for every component is the rate allocation of equal slopes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nsat {

class ByteReader;

struct SpectralTransform {
  int bands = 0;
  std::vector<float> means;   // per band
  std::vector<float> matrix;  // bands x bands, row k = the weights of component k

  size_t payloadBytes() const { return size_t(bands) * (bands + 1) * 4; }
};

// The KLT of `samples` (band-major, `plane` samples per band): covariance about the band
// means, its eigenvectors by cyclic Jacobi rotations (a few bands: exact to rounding,
// deterministic), rows by decreasing variance, each row's largest weight positive.
SpectralTransform fitSpectralTransform(const std::vector<double>& samples, int bands,
                                       size_t plane);

// components[k * plane + p] from band samples, with the stored (float32) weights.
std::vector<double> forwardSpectral(const SpectralTransform& transform,
                                    const std::vector<double>& samples, size_t plane);

// Band samples from components (float32, as decoded), components summed in order
// k = 0 .. bands-1 so that every machine gives the same bits.
std::vector<double> inverseSpectral(const SpectralTransform& transform, const float* components,
                                    size_t plane);

// Payload form: means, then the matrix row by row, all float32 little-endian.
void appendSpectralTransform(std::vector<uint8_t>& payload, const SpectralTransform& transform);
// Throws nsat::Error for a non-finite entry or weights that are not a rotation.
SpectralTransform readSpectralTransform(ByteReader& reader, int bands, const std::string& codec);

}  // namespace nsat
