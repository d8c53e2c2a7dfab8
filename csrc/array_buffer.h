// array_buffer: the C base type of kiln.core.array that exports its data through the buffer protocol.
#pragma once

#include <nanobind/nanobind.h>

namespace kiln {

// Adds `ArrayBuffer` to the module.
void register_array_buffer(nanobind::module_& m);

}  // namespace kiln
