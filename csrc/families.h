// families: kernel families that are not fused elementwise regions (half-precision matmul, affine-quantized
// matmul and dequantize). Each is one JIT source specialised by #define lines; Python (core/kernels.py)
// prepares the buffers and launches them across the thread pool.
#pragma once

#include <nanobind/nanobind.h>

namespace kiln {

// Adds family_source, load_family_kernel and launch_family to the extension module.
void register_families(nanobind::module_& m);

}  // namespace kiln
