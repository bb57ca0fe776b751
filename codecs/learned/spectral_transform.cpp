#include "codecs/learned/spectral_transform.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "codecs/byte_io.h"

namespace nsat {

namespace {

// Eigenvectors (columns of the returned n x n matrix, row-major) and eigenvalues of the
// symmetric matrix `a` by cyclic Jacobi rotations. `a` is overwritten (diagonal =
// eigenvalues on return).
std::vector<double> jacobiEigenvectors(std::vector<double>& a, int n) {
  std::vector<double> v(size_t(n) * n, 0.0);
  for (int i = 0; i < n; ++i) v[size_t(i) * n + i] = 1.0;
  auto at = [n](std::vector<double>& m, int r, int c) -> double& { return m[size_t(r) * n + c]; };
  for (int sweep = 0; sweep < 64; ++sweep) {
    double off = 0, scale = 0;
    for (int r = 0; r < n; ++r) {
      for (int c = 0; c < n; ++c) (r == c ? scale : off) += at(a, r, c) * at(a, r, c);
    }
    if (off <= 1e-30 * std::max(scale, 1e-300)) break;
    for (int p = 0; p < n - 1; ++p) {
      for (int q = p + 1; q < n; ++q) {
        const double apq = at(a, p, q);
        if (std::fabs(apq) <= 1e-300) continue;
        const double theta = (at(a, q, q) - at(a, p, p)) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; ++k) {  // columns p and q of a, then rows
          const double akp = at(a, k, p), akq = at(a, k, q);
          at(a, k, p) = c * akp - s * akq;
          at(a, k, q) = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {
          const double apk = at(a, p, k), aqk = at(a, q, k);
          at(a, p, k) = c * apk - s * aqk;
          at(a, q, k) = s * apk + c * aqk;
        }
        for (int k = 0; k < n; ++k) {
          const double vkp = at(v, k, p), vkq = at(v, k, q);
          at(v, k, p) = c * vkp - s * vkq;
          at(v, k, q) = s * vkp + c * vkq;
        }
      }
    }
  }
  return v;
}

// W's inverse by Gauss-Jordan elimination with partial pivoting, in double: only +, -, *
// and / in a fixed order (this file is built without contraction).
std::vector<double> invertWeights(const SpectralTransform& transform) {
  const int n = transform.bands;
  std::vector<double> a(size_t(n) * n), inverse(size_t(n) * n, 0.0);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) a[size_t(r) * n + c] = transform.weight(r, c);
    inverse[size_t(r) * n + r] = 1.0;
  }
  for (int column = 0; column < n; ++column) {
    int pivot = column;
    for (int r = column + 1; r < n; ++r) {
      if (std::fabs(a[size_t(r) * n + column]) > std::fabs(a[size_t(pivot) * n + column])) pivot = r;
    }
    if (std::fabs(a[size_t(pivot) * n + column]) < 1e-3) {
      throw Error("MULTIRATE tile has a singular spectral transform");
    }
    for (int c = 0; c < n; ++c) {
      std::swap(a[size_t(pivot) * n + c], a[size_t(column) * n + c]);
      std::swap(inverse[size_t(pivot) * n + c], inverse[size_t(column) * n + c]);
    }
    const double scale = a[size_t(column) * n + column];
    for (int c = 0; c < n; ++c) {
      a[size_t(column) * n + c] /= scale;
      inverse[size_t(column) * n + c] /= scale;
    }
    for (int r = 0; r < n; ++r) {
      const double factor = a[size_t(r) * n + column];
      if (r == column || factor == 0.0) continue;
      for (int c = 0; c < n; ++c) {
        a[size_t(r) * n + c] -= factor * a[size_t(column) * n + c];
        inverse[size_t(r) * n + c] -= factor * inverse[size_t(column) * n + c];
      }
    }
  }
  return inverse;
}

}  // namespace

SpectralTransform fitSpectralTransform(const std::vector<double>& samples, int bands,
                                       size_t plane) {
  SpectralTransform transform;
  transform.bands = bands;
  std::vector<double> mean(bands, 0.0);
  for (int b = 0; b < bands; ++b) {
    const double* band = samples.data() + size_t(b) * plane;
    mean[b] = std::accumulate(band, band + plane, 0.0) / double(std::max<size_t>(plane, 1));
  }
  std::vector<double> covariance(size_t(bands) * bands, 0.0);
  for (int i = 0; i < bands; ++i) {
    for (int j = i; j < bands; ++j) {
      const double* x = samples.data() + size_t(i) * plane;
      const double* y = samples.data() + size_t(j) * plane;
      double sum = 0;
      for (size_t p = 0; p < plane; ++p) sum += (x[p] - mean[i]) * (y[p] - mean[j]);
      covariance[size_t(i) * bands + j] = covariance[size_t(j) * bands + i] = sum / double(plane);
    }
  }
  const std::vector<double> vectors = jacobiEigenvectors(covariance, bands);
  std::vector<int> order(bands);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int l, int r) {
    return covariance[size_t(l) * bands + l] > covariance[size_t(r) * bands + r];
  });
  for (int k : order) {
    int largest = 0;
    for (int b = 1; b < bands; ++b) {
      if (std::fabs(vectors[size_t(b) * bands + k]) > std::fabs(vectors[size_t(largest) * bands + k])) {
        largest = b;
      }
    }
    const double sign = vectors[size_t(largest) * bands + k] < 0 ? -1.0 : 1.0;
    for (int b = 0; b < bands; ++b) {
      const double scaled = std::nearbyint(sign * vectors[size_t(b) * bands + k] * SpectralTransform::kWeightScale);
      transform.weights.push_back(int8_t(std::clamp(scaled, -127.0, 127.0)));
    }
  }
  return transform;
}

std::vector<double> forwardSpectral(const SpectralTransform& transform,
                                    const std::vector<double>& samples, size_t plane) {
  const int bands = transform.bands;
  std::vector<double> components(size_t(bands) * plane, 0.0);
  for (int k = 0; k < bands; ++k) {
    double* out = components.data() + size_t(k) * plane;
    for (int b = 0; b < bands; ++b) {
      const double weight = transform.weight(k, b);
      const double* band = samples.data() + size_t(b) * plane;
      for (size_t p = 0; p < plane; ++p) out[p] += weight * band[p];
    }
  }
  return components;
}

std::vector<double> inverseSpectral(const SpectralTransform& transform, const float* components,
                                    size_t plane) {
  const int bands = transform.bands;
  const std::vector<double> inverse = invertWeights(transform);
  std::vector<double> samples(size_t(bands) * plane, 0.0);
  for (int b = 0; b < bands; ++b) {
    double* out = samples.data() + size_t(b) * plane;
    for (int k = 0; k < bands; ++k) {
      const double weight = inverse[size_t(b) * bands + k];
      const float* component = components + size_t(k) * plane;
      for (size_t p = 0; p < plane; ++p) out[p] += weight * double(component[p]);
    }
  }
  return samples;
}

void appendSpectralTransform(std::vector<uint8_t>& payload, const SpectralTransform& transform) {
  for (int8_t weight : transform.weights) payload.push_back(uint8_t(weight));
}

SpectralTransform readSpectralTransform(ByteReader& reader, int bands, const std::string& codec) {
  SpectralTransform transform;
  transform.bands = bands;
  const uint8_t* bytes = reader.bytes(size_t(bands) * bands);
  for (int i = 0; i < bands * bands; ++i) transform.weights.push_back(int8_t(bytes[i]));
  // Rows of about unit length, as a rounded rotation has; anything else is a damaged tile.
  for (int k = 0; k < bands; ++k) {
    double norm = 0;
    for (int b = 0; b < bands; ++b) norm += transform.weight(k, b) * transform.weight(k, b);
    if (std::fabs(norm - 1.0) > 0.1) {
      throw Error(codec + " tile has a spectral transform that is not a rotation");
    }
  }
  return transform;
}

}  // namespace nsat
