// Spectral decorrelation of a band stack before the 2-D learned coder (issue 17).
//
// Neighbouring bands of a multispectral tile are strongly correlated; coding each band
// alone spends their shared structure once per band. As CCSDS 122.1 does before its 2-D
// coder, MULTIRATE first turns a stack into principal components, a Karhunen-Loeve
// transform fitted per tile: components[k] = sum_b W[k][b] * band_b, component 0 carrying
// the most variance. W is the eigenvector matrix rounded to int8 / 127 (B x B bytes in the
// tile: the component mappings absorb the band means), so it is cheap enough for 64 px
// tiles. The decoder inverts that W itself (Gauss-Jordan in double, a fixed order), so
// the inverse of the forward transform gives back integer samples exactly (tested on real
// stacks). W is near-orthonormal: an error in the components is about the same error in
// the bands, which is what lets MULTIRATE allocate rate across components by slope.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nsat {

class ByteReader;

struct SpectralTransform {
  static constexpr double kWeightScale = 127.0;
  int bands = 0;
  std::vector<int8_t> weights;  // bands x bands, row k = component k, times kWeightScale

  size_t payloadBytes() const { return weights.size(); }
  double weight(int component, int band) const {
    return weights[size_t(component) * bands + band] / kWeightScale;
  }
};

// The KLT of `samples` (band-major, `plane` samples per band): covariance about the band
// means, its eigenvectors by cyclic Jacobi rotations (a few bands: exact to rounding,
// deterministic), rows by decreasing variance, each row's largest weight positive.
SpectralTransform fitSpectralTransform(const std::vector<double>& samples, int bands,
                                       size_t plane);

// components[k * plane + p] from band samples.
std::vector<double> forwardSpectral(const SpectralTransform& transform,
                                    const std::vector<double>& samples, size_t plane);

// Band samples from components (float32, as decoded) through the inverse of W, each
// band's sum taken in order k = 0 .. bands-1, so that every machine gives the same bits.
// Throws nsat::Error if W is singular (a damaged tile).
std::vector<double> inverseSpectral(const SpectralTransform& transform, const float* components,
                                    size_t plane);

// Payload form: W row by row, one signed byte each.
void appendSpectralTransform(std::vector<uint8_t>& payload, const SpectralTransform& transform);
// Throws nsat::Error for weights whose rows are not near unit length.
SpectralTransform readSpectralTransform(ByteReader& reader, int bands, const std::string& codec);

}  // namespace nsat
