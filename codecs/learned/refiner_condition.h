// What DIFFUSION's refiner is conditioned on and seeded with, without LibTorch: the scene
// scalars mapped to their embedding arguments, the sinusoidal embedding's sin(pi x) from our
// own polynomial, and the per-tile noise from a counter hash. Every decode computes them
// with +, x and / only (this file is built without contraction), so they are the same bits
// on every machine; the libm calls (log2 of the GSD) are the encoder's, whose results the
// file stores.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace nsat {

// The scene scalars the refiner sees, in the model's order (the keys of
// scene_condition.h's toJson): day_of_year, hour_utc, sun_elevation, sun_azimuth,
// center_lat, center_lon, gsd.
constexpr int kRefinerSceneScalars = 7;
extern const std::array<const char*, kRefinerSceneScalars> kRefinerSceneKeys;

// Each known scalar mapped to its embedding argument (periodic ones so that one period is
// [0, 2), the others into [-0.5, 0.5], as diffusion_model.condition_argument); unknown
// ones are empty.
using SceneArguments = std::array<std::optional<float>, kRefinerSceneScalars>;
SceneArguments sceneArguments(const nlohmann::json& sceneCondition);

// sin(pi x) from a fixed polynomial (error below 1e-15).
double sinPi(double x);

// The noise of one tile: `count` unit-variance samples (a sum of 4 uniforms from a counter
// hash of the key and the sample's index).
std::vector<float> tileNoise(uint64_t key, size_t count);
uint64_t tileNoiseKey(uint32_t fileSeed, int level, int x, int y);

}  // namespace nsat
