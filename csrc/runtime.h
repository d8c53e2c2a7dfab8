// runtime: the persistent thread pool that splits kernel launches, and the pool of large output buffers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernel_abi.h"

namespace kiln::runtime {

// Run fn(L, begin, end) over [0, n): on the calling thread when n is small, split across the pool otherwise.
void launch(kiln_kernel_fn fn, const kiln_launch* L, int64_t n, bool parallel);
// Run fn over rows [0, rows) of `work` elements in all: split across the pool when work is large.
void launch_rows(kiln_kernel_fn fn, const kiln_launch* L, int64_t rows, int64_t work);
// Run fn over tasks [0, tasks) of roughly equal cost (rows of a matrix-vector product), split across the pool
// in pieces that are multiples of `grain` tasks. The caller decides that the work is worth splitting.
void launch_tasks(kiln_kernel_fn fn, const kiln_launch* L, int64_t tasks, int64_t grain);
// Elements at which a launch is worth splitting across threads.
int64_t parallel_threshold();
int num_threads();
void set_num_threads(int n);
// Whether launches currently run on the calling thread alone (after a worker stalled one).
bool solo();

// Large buffers come from here and go back here, so a big output does not pay page faults on every call.
void* buffer_get(size_t bytes);
void buffer_put(void* p, size_t bytes);
size_t buffer_min_bytes();
size_t buffer_cached_bytes();
void buffer_trim();

}  // namespace kiln::runtime
