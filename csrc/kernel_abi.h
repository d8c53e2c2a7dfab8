// The calling convention between the engine's runtime and generated kernels (both include this text).
// A kernel is `extern "C" void NAME(const kiln_launch* L, int64_t begin, int64_t end)` and writes output
// elements [begin, end) of a C-contiguous output.
#pragma once
#include <stdint.h>

#define KILN_MAX_DIMS 16
#define KILN_MAX_ARGS 32
// The flat variant walks blocks of this many elements; a scalar input points at a block-sized copy.
#define KILN_BLOCK 256

enum { KILN_FLAT = 0, KILN_STRIDED = 1 };

typedef struct kiln_launch {
  int32_t variant;
  int32_t ndim;                                  // strided: dimensions after collapsing (>= 1)
  int64_t shape[KILN_MAX_DIMS];                  // strided: the output's collapsed shape
  char* out;
  const char* in[KILN_MAX_ARGS];
  int64_t step[KILN_MAX_ARGS];                   // flat: 1 for a full input, 0 for a scalar block
  int64_t strides[KILN_MAX_ARGS][KILN_MAX_DIMS];  // strided: in elements; 0 on broadcast dimensions
} kiln_launch;

typedef void (*kiln_kernel_fn)(const kiln_launch*, int64_t, int64_t);
