// bindings: the only nanobind module definition. Exposes the passes (optimize), the JIT (load_kernel) and the
// native Program (program.h: the per-call dispatch loop).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "numpy_api.h"

#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "array_buffer.h"
#include "families.h"
#include "graph.h"
#include "jit.h"
#include "kernel_abi.h"
#include "prelude_embed.h"
#include "program.h"
#include "random.h"
#include "render.h"
#include "runtime.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {

namespace {

// ---- optimize: Python's compact graph in, simplified + fused structure out --------------------------
Graph parse_graph(nb::dict spec) {
  Graph g;
  for (nb::handle op : nb::cast<nb::list>(spec["ops"])) {
    nb::tuple t = nb::cast<nb::tuple>(op);
    g.ops.push_back(OpInfo{nb::cast<std::string>(t[0]), nb::cast<std::string>(t[1]), nb::cast<bool>(t[2]),
                           nb::cast<bool>(t[3]), nb::cast<bool>(t[4]), nb::cast<bool>(t[5]),
                           nb::cast<bool>(t[6])});
  }
  for (nb::handle v : nb::cast<nb::list>(spec["values"])) {
    nb::tuple t = nb::cast<nb::tuple>(v);
    Value val;
    val.kind = nb::cast<int>(t[0]);
    val.dtype = nb::cast<int>(t[1]);
    val.shape = nb::cast<std::vector<int64_t>>(t[2]);
    val.bits = nb::cast<uint64_t>(t[3]);
    g.values.push_back(std::move(val));
  }
  int index = 0;
  for (nb::handle n : nb::cast<nb::list>(spec["nodes"])) {
    nb::tuple t = nb::cast<nb::tuple>(n);
    Node node;
    node.op = nb::cast<int>(t[0]);
    node.params = nb::cast<std::string>(t[1]);
    node.expr = nb::cast<std::string>(t[2]);
    node.inputs = nb::cast<std::vector<int>>(t[3]);
    node.out = nb::cast<int>(t[4]);
    node.ints = nb::cast<std::vector<int64_t>>(t[5]);
    node.orig = index++;
    g.values[node.out].node = node.orig;
    g.nodes.push_back(std::move(node));
  }
  g.outputs = nb::cast<std::vector<int>>(spec["outputs"]);
  g.num_inputs = nb::cast<int>(spec["num_inputs"]);
  g.num_consts = nb::cast<int>(spec["num_consts"]);
  g.shapeless = nb::cast<bool>(spec["shapeless"]);
  return g;
}

// spec["language"] (optional): "cpu" (default) or "metal", the language the regions are rendered in.
const LanguageOptions& language(nb::dict spec) {
  if (!spec.contains("language")) {
    return kCpu;
  }
  const std::string name = nb::cast<std::string>(spec["language"]);
  if (name != "cpu" && name != "metal") {
    throw std::invalid_argument("[compile] unknown kernel language " + name);
  }
  return name == "metal" ? kMetal : kCpu;
}

nb::dict optimize(nb::dict spec) {
  const LanguageOptions& lang = language(spec);
  Graph g = parse_graph(spec);
  int rewrites = simplify(g);
  Fused fused;
  if (nb::cast<bool>(spec["fuse"])) {
    fused = fuse(g, nb::cast<int>(spec["max_inputs"]), lang.row_kernel != nullptr);
  } else {
    for (const Node& n : g.nodes) {
      if (n.alive) {
        fused.steps.push_back(Step{-1, n.orig});
      }
    }
  }
  nb::list nodes;
  for (const Node& n : g.nodes) {
    if (n.alive) {
      nodes.append(nb::make_tuple(n.orig, n.inputs));
    }
  }
  nb::list regions;
  for (Region& r : fused.regions) {
    render(g, r, lang);
    nb::dict d;
    d["nodes"] = r.nodes;
    d["inputs"] = r.inputs;
    d["out"] = r.out;
    d["rows"] = r.rows;
    d["name"] = r.name;
    d["source"] = r.source;
    regions.append(d);
  }
  nb::list steps;
  for (const Step& s : fused.steps) {
    steps.append(nb::make_tuple(s.region, s.node));
  }
  nb::dict out;
  out["nodes"] = nodes;
  out["regions"] = regions;
  out["steps"] = steps;
  out["rewrites"] = rewrites;
  return out;
}

std::string full_source(const std::string& kernel) {
  return std::string(kKernelAbi) + "\n" + kKernelPrelude + "\n" + kernel;
}


nb::tuple load_kernel(const std::string& name, const std::string& kernel_source) {
  std::string source = full_source(kernel_source);
  jit::Loaded loaded;
  {
    nb::gil_scoped_release release;
    loaded = jit::load(name, source);
  }
  return nb::make_tuple(reinterpret_cast<uintptr_t>(loaded.fn), loaded.from_disk, loaded.compiled, loaded.warning);
}

// Test aid: a Metal kernel compiled as C++ through metal/metal_shim.h, with the CPU kernel's signature.
nb::tuple load_metal_shim(const std::string& name, const std::string& kernel_source) {
  std::string source = metal_shim_source(name, kernel_source);
  jit::Loaded loaded;
  {
    nb::gil_scoped_release release;
    loaded = jit::load(name + "_shim", source);
  }
  return nb::make_tuple(reinterpret_cast<uintptr_t>(loaded.fn), loaded.from_disk, loaded.compiled, loaded.warning);
}

nb::dict build_info() {
  nb::dict d;
  d["version"] = KILN_VERSION;
  d["build_type"] = KILN_BUILD_TYPE;
  d["compiler"] = KILN_BUILD_COMPILER;
  d["cxx_standard"] = static_cast<int>(__cplusplus);
  d["kernel_compiler"] = jit::compiler_command();
  d["kernel_flags"] = jit::compile_flags();
  d["num_threads"] = runtime::num_threads();
  d["numpy_abi"] = NPY_ABI_VERSION;
  return d;
}

}  // namespace

}  // namespace kiln

NB_MODULE(_engine, m) {
  if (_import_array() < 0) {
    throw nb::python_error();
  }
  m.doc() = "kiln's C++ engine: simplify, fuse, render, JIT-compile and run elementwise kernels.";
  m.attr("__version__") = KILN_VERSION;
  kiln::register_families(m);
  kiln::register_array_buffer(m);
  m.def("build_info", &kiln::build_info, "Version and build flags of the engine.");
  m.def("optimize", &kiln::optimize, "spec"_a, "Simplify and fuse a compact graph; render one kernel per region.");
  m.def("load_kernel", &kiln::load_kernel, "name"_a, "source"_a,
        "Compile (or load from the caches) a rendered kernel; returns (address, from_disk, compiled, warning).");
  m.def("full_source", &kiln::full_source, "kernel"_a, "The kernel source with the prelude it is compiled with.");
  m.def("metal_full_source", &kiln::metal_full_source, "kernel"_a,
        "A rendered Metal kernel with the Metal preamble it is built with.");
  m.def("metal_shim_source", &kiln::metal_shim_source, "name"_a, "kernel"_a,
        "A rendered Metal kernel as C++ for the host compiler (through metal/metal_shim.h).");
  m.def("load_metal_shim", &kiln::load_metal_shim, "name"_a, "source"_a,
        "Compile a rendered Metal kernel as C++ through the shim; returns (address, from_disk, compiled, warning).");
  m.def("compiler_path", &kiln::jit::compiler_path);
  m.def("compile_flags", &kiln::jit::compile_flags);
  m.def("cache_dir", [] {
    std::string why;
    std::string dir = kiln::jit::cache_dir(&why);
    return nb::make_tuple(dir, why);
  });
  m.def("clear_memory_cache", &kiln::jit::clear_memory_cache);
  m.def("set_fp_quiet", &kiln::set_fp_quiet, "var"_a.none(), "value"_a.none(),
        "numpy's error-state context variable and its 'ignore all' value, set while programs run.");
  m.def("num_threads", &kiln::runtime::num_threads);
  m.def("set_num_threads", &kiln::runtime::set_num_threads, "n"_a);
  m.def("pool_solo", &kiln::runtime::solo,
        "Whether launches run on the calling thread alone for now (a worker stalled a recent launch).");
  m.def("buffer_cached_bytes", &kiln::runtime::buffer_cached_bytes);
  m.def("buffer_trim", &kiln::runtime::buffer_trim);
  m.def("random_bits", &kiln::random_bits, "keys"_a, "shape"_a, "width"_a,
        "Threefry-2x32 random bits in MLX's layout (the random_bits primitive), multithreaded.");
  m.def("random_uniform", &kiln::random_uniform, "keys"_a, "shape"_a, "low"_a, "high"_a,
        "float32 uniform samples in [low, high) from those bits (the random_uniform primitive), one pass.");
  nb::class_<kiln::Program>(m, "Program")
      .def(nb::init<int, int, nb::list, nb::list, std::vector<int>, std::vector<bool>>(), "num_inputs"_a,
           "num_slots"_a, "fixed"_a, "steps"_a, "outputs"_a, "copy_outputs"_a)
      .def("run", &kiln::Program::run, "inputs"_a, "Run on a list of numpy arrays; returns fresh arrays.");
}
