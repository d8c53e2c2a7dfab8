// One numpy C-API table for the whole extension: bindings.cpp imports it (import_array in NB_MODULE);
// every other file defines KILN_NUMPY_BORROW before including this header and uses the same table.
#pragma once

#define PY_ARRAY_UNIQUE_SYMBOL kiln_numpy_api
#ifdef KILN_NUMPY_BORROW
#define NO_IMPORT_ARRAY
#endif
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
