// families: JIT-compiled kernel families beyond elementwise fusion, and the launch that runs one over a
// range of tasks on the thread pool with the GIL released. The kernels read their arguments from a
// kiln_launch: in[] the buffers, shape[] the sizes and strides a family documents in its source.
#include "families.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#define KILN_NUMPY_BORROW
#include "numpy_api.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "families_embed.h"
#include "jit.h"
#include "kernel_abi.h"
#include "prelude_embed.h"
#include "runtime.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {

namespace {

// Below this many elements touched (multiply-adds, for products) a launch runs on the calling thread.
constexpr int64_t kParallelWork = int64_t{1} << 20;
// Tasks are split in multiples of this many (the matrix-vector kernels take four rows at a time).
constexpr int64_t kGrain = 16;

const char* family_text(const std::string& family) {
  if (family == "matmul") {
    return kMatmulKernels;
  }
  if (family == "quantized") {
    return kQuantizedKernels;
  }
  throw std::invalid_argument("[kernels] unknown kernel family " + family);
}

// The whole source of one specialisation: ABI, prelude, the #define lines, the family's text.
std::string family_source(const std::string& family, const std::string& defines) {
  return std::string(kKernelAbi) + "\n" + kKernelPrelude + "\n" + defines + "\n" + family_text(family);
}

nb::tuple load_family_kernel(const std::string& name, const std::string& family, const std::string& defines) {
  const std::string source = family_source(family, defines);
  jit::Loaded loaded;
  {
    nb::gil_scoped_release release;
    loaded = jit::load(name, source);
  }
  return nb::make_tuple(reinterpret_cast<uintptr_t>(loaded.fn), loaded.from_disk, loaded.compiled, loaded.warning);
}

char* array_bytes(nb::handle obj, const char* what) {
  if (!PyArray_Check(obj.ptr())) {
    throw std::invalid_argument(std::string("[kernels] ") + what + " must be a numpy array");
  }
  return PyArray_BYTES(reinterpret_cast<PyArrayObject*>(obj.ptr()));
}

// Runs fn over tasks [0, tasks) (split across the pool when `work`, the elements touched, is large).
// The caller owns the layout contract: buffers as the family's source documents them.
void launch_family(uintptr_t fn, nb::list inputs, nb::handle out, std::vector<int64_t> shape, int64_t tasks,
                   int64_t work) {
  if (inputs.size() > KILN_MAX_ARGS || shape.size() > KILN_MAX_DIMS) {
    throw std::invalid_argument("[kernels] too many launch arguments");
  }
  kiln_launch L{};
  L.variant = KILN_FLAT;
  L.ndim = static_cast<int32_t>(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    L.shape[d] = shape[d];
  }
  for (size_t j = 0; j < inputs.size(); ++j) {
    L.in[j] = array_bytes(inputs[j], "a kernel input");
  }
  L.out = array_bytes(out, "the kernel output");
  if (tasks <= 0) {
    return;
  }
  auto kernel = reinterpret_cast<kiln_kernel_fn>(fn);
  nb::gil_scoped_release release;
  if (work < kParallelWork) {
    kernel(&L, 0, tasks);  // waking the pool costs more than it saves
    return;
  }
  runtime::launch_tasks(kernel, &L, tasks, kGrain);
}

}  // namespace

void register_families(nb::module_& m) {
  m.def("family_source", &family_source, "family"_a, "defines"_a,
        "The full source of one specialisation of a kernel family.");
  m.def("load_family_kernel", &load_family_kernel, "name"_a, "family"_a, "defines"_a,
        "Compile (or load from the caches) one specialisation; returns (address, from_disk, compiled, warning).");
  m.def("launch_family", &launch_family, "fn"_a, "inputs"_a, "out"_a, "shape"_a, "tasks"_a, "work"_a,
        "Run a family kernel over tasks [0, tasks) on the thread pool (GIL released).");
}

}  // namespace kiln
