// random: native kernels of the random_bits family (engine.py's native_impl table reaches them).
#pragma once

#include <nanobind/nanobind.h>

#include <cstdint>
#include <vector>

namespace kiln {

// Threefry-2x32 random bits for each key in `keys` (..., 2) uint32: an array of shape keys.shape[:-1] + shape
// of unsigned `width`-byte integers, byte for byte core/prims/random.py's random_bits_impl.
nanobind::object random_bits(nanobind::handle keys, std::vector<int64_t> shape, int width);

// float32 samples in [low, high) from the same bits (width 4): random_uniform_impl's meaning, one pass.
nanobind::object random_uniform(nanobind::handle keys, std::vector<int64_t> shape, float low, float high);

}  // namespace kiln
