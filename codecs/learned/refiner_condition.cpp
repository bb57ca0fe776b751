#include "codecs/learned/refiner_condition.h"

#include <algorithm>
#include <cmath>

namespace nsat {

const std::array<const char*, kRefinerSceneScalars> kRefinerSceneKeys = {
    "day_of_year", "hour_utc", "sun_elevation", "sun_azimuth", "center_lat", "center_lon", "gsd"};

namespace {

// Encoder side: libm is fine here, the arguments are stored in the file.
float sceneArgument(int index, double value) {
  switch (index) {
    case 0:
      return float(2.0 * (value - 1.0) / 365.25);  // day of year: one period a year
    case 1:
      return float(2.0 * value / 24.0);
    case 2:
      return float(value / 180.0);
    case 3:
      return float(2.0 * value / 360.0);
    case 4:
      return float(value / 180.0);
    case 5:
      return float(2.0 * value / 360.0);
    default:
      return float((std::log2(std::max(value, 1e-3)) - 2.0) / 16.0);  // GSD, metres
  }
}

// Counter-based hash (SplitMix64's finaliser): the same 64 bits for the same input anywhere.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

SceneArguments sceneArguments(const nlohmann::json& sceneCondition) {
  SceneArguments arguments;
  for (int i = 0; i < kRefinerSceneScalars; ++i) {
    const auto entry = sceneCondition.find(kRefinerSceneKeys[i]);
    if (entry == sceneCondition.end() || !entry->is_object()) continue;
    const auto value = entry->find("value");
    if (value != entry->end() && value->is_number())
      arguments[i] = sceneArgument(i, value->get<double>());
  }
  return arguments;
}

double sinPi(double x) {
  // x - 2 round(x / 2) is exact; then fold onto [-1/2, 1/2] with sin(pi (1 - r)) = sin(pi r).
  double r = x - 2.0 * std::nearbyint(x / 2.0);
  if (r > 0.5) r = 1.0 - r;
  if (r < -0.5) r = -1.0 - r;
  // Taylor series of sin(pi r) to r^19: the error is below 1e-15 for |r| <= 1/2.
  static const double kCoefficients[] = {3.14159265358979311600e+00, -5.16771278004996936772e+00,
                                         2.55016403987734507908e+00, -5.99264529320791883293e-01,
                                         8.21458866111281910127e-02, -7.37043094571434784235e-03,
                                         4.66302805767612336876e-04, -2.19153534478302037397e-05,
                                         7.95205400147550837596e-07, -2.29484289972698564928e-08};
  const double r2 = r * r;
  double sum = kCoefficients[9];
  for (int k = 8; k >= 0; --k) sum = sum * r2 + kCoefficients[k];
  return sum * r;
}

uint64_t tileNoiseKey(uint32_t fileSeed, int level, int x, int y) {
  uint64_t key = mix64(0x6E736174ull ^ (uint64_t(fileSeed) << 32));
  key = mix64(key ^ uint64_t(uint32_t(level)));
  key = mix64(key ^ (uint64_t(uint32_t(x)) << 32 | uint32_t(y)));
  return key;
}

std::vector<float> tileNoise(uint64_t key, size_t count) {
  // The sum of 4 uniforms has variance 1/3: times sqrt(3), unit variance.
  constexpr float kScale = 1.7320508f / 65536.0f;
  std::vector<float> noise(count);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t bits = mix64(key + 0x9E3779B97F4A7C15ull * (uint64_t(i) + 1));
    float sum = 0;
    for (int k = 0; k < 4; ++k) sum = sum + (float((bits >> (16 * k)) & 0xFFFF) + 0.5f);
    noise[i] = (sum - 131072.0f) * kScale;
  }
  return noise;
}

}  // namespace nsat
