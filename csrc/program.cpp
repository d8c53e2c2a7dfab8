// program.cpp: the native Program, the per-call dispatch loop of a compiled graph: buffers in, kernels and
// numpy steps (views, reductions, native calls, Python fallbacks), buffers out.
#include "program.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#define KILN_NUMPY_BORROW
#include "numpy_api.h"

#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_abi.h"
#include "runtime.h"

namespace nb = nanobind;

namespace kiln {

// ---- buffers -----------------------------------------------------------------------------------------
namespace {

void release_capsule(PyObject* capsule) {
  void* p = PyCapsule_GetPointer(capsule, "kiln.buffer");
  size_t bytes = reinterpret_cast<size_t>(PyCapsule_GetContext(capsule));
  runtime::buffer_put(p, bytes);
}

// A fresh C-contiguous array; large ones come from the buffer pool (already faulted in when reused).
PyObject* new_output(PyArray_Descr* descr, int ndim, npy_intp* dims, size_t nbytes) {
  if (nbytes < runtime::buffer_min_bytes()) {
    Py_INCREF(descr);
    return PyArray_NewFromDescr(&PyArray_Type, descr, ndim, dims, nullptr, nullptr, 0, nullptr);
  }
  void* p = runtime::buffer_get(nbytes);
  if (!p) {
    PyErr_NoMemory();
    return nullptr;
  }
  PyObject* capsule = PyCapsule_New(p, "kiln.buffer", release_capsule);
  if (!capsule) {
    runtime::buffer_put(p, nbytes);
    return nullptr;
  }
  PyCapsule_SetContext(capsule, reinterpret_cast<void*>(nbytes));
  Py_INCREF(descr);
  PyObject* arr = PyArray_NewFromDescr(&PyArray_Type, descr, ndim, dims, nullptr, p, NPY_ARRAY_CARRAY, nullptr);
  if (!arr) {
    Py_DECREF(capsule);
    return nullptr;
  }
  if (PyArray_SetBaseObject(reinterpret_cast<PyArrayObject*>(arr), capsule) < 0) {
    Py_DECREF(arr);
    return nullptr;
  }
  return arr;
}

// Whether an array of numpy type number `got` can feed a kernel built for `want`: numpy spells one C type
// two ways where long and long long are both 64 bits (a uint64 array made from ints >= 2**63 is 'Q', not 'L').
bool same_c_type(int got, int want) {
  return got == want || PyArray_EquivTypenums(got, want);
}

}  // namespace

PyObject* new_pooled_array(int typenum, int ndim, const int64_t* dims) {
  npy_intp shape[NPY_MAXDIMS];
  size_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    shape[d] = static_cast<npy_intp>(dims[d]);
    count *= static_cast<size_t>(dims[d]);
  }
  PyArray_Descr* descr = PyArray_DescrFromType(typenum);
  if (!descr) {
    return nullptr;
  }
  PyObject* arr = new_output(descr, ndim, shape, count * static_cast<size_t>(PyDataType_ELSIZE(descr)));
  Py_DECREF(descr);
  return arr;
}

namespace {

// ---- the native program ----------------------------------------------------------------------------
// What a step does. Shape steps build numpy views in C++; reduce and call steps call a numpy function
// directly (no Python frame); anything unusual at run time falls back to the step's Python callable.
enum class StepKind { kPython, kKernel, kRows, kTranspose, kReshape, kFlatten, kExpandDims, kSqueeze, kBroadcastTo,
                      kSlice, kReduce, kCall };

StepKind step_kind(const std::string& name) {
  static const std::pair<const char*, StepKind> kNames[] = {
      {"python", StepKind::kPython},       {"kernel", StepKind::kKernel},
      {"transpose", StepKind::kTranspose}, {"reshape", StepKind::kReshape},
      {"flatten", StepKind::kFlatten},     {"expand_dims", StepKind::kExpandDims},
      {"squeeze", StepKind::kSqueeze},     {"broadcast_to", StepKind::kBroadcastTo},
      {"slice", StepKind::kSlice},         {"reduce", StepKind::kReduce},
      {"call", StepKind::kCall}, {"rows", StepKind::kRows}};
  for (const auto& [text, kind] : kNames) {
    if (name == text) {
      return kind;
    }
  }
  throw std::invalid_argument("[compile] unknown step kind " + name);
}

struct ProgramStep {
  StepKind kind = StepKind::kPython;
  kiln_kernel_fn fn = nullptr;
  std::vector<int> in;
  int out = -1;
  std::vector<int> in_types;                      // numpy type numbers the kernel was built for
  std::vector<int> in_sizes;                      // item sizes
  nb::object out_dtype;                           // numpy dtype of the output
  std::vector<std::vector<int64_t>> shapes;       // broadcast_to targets inside the region
  std::vector<int64_t> ints;                      // shape steps: axes, a shape, flatten's (start, end), or
                                                  // slice's starts, stops and strides
  nb::object func;                                // reduce/call steps: the numpy function
  nb::object axis;                                // reduce steps: the axis tuple
  bool keepdims = false;                          // reduce steps
  nb::object call;                                // numpy step, or the native step's fallback
  std::vector<int> release;                       // slots whose last use is this step
};

// numpy's floating-point error state for "ignore all" (a context variable and its value, set by engine.py),
// so numpy calls made while a program runs never warn: the interpreter ignores them too, kernels never report.
PyObject* g_fp_state_var = nullptr;
PyObject* g_fp_state_quiet = nullptr;

// Holds numpy's error state at "ignore" for one run; restores it however the run ends.
struct QuietFloatingPoint {
  PyObject* token = nullptr;
  QuietFloatingPoint() {
    if (g_fp_state_var && g_fp_state_quiet) {
      token = PyContextVar_Set(g_fp_state_var, g_fp_state_quiet);
      if (!token) {
        PyErr_Clear();
      }
    }
  }
  ~QuietFloatingPoint() {
    if (token) {
      if (PyContextVar_Reset(g_fp_state_var, token) < 0) {
        PyErr_Clear();
      }
      Py_DECREF(token);
    }
  }
};

struct SlotGuard {
  std::vector<PyObject*>& slots;
  ~SlotGuard() {
    for (PyObject*& p : slots) {
      Py_XDECREF(p);
      p = nullptr;
    }
  }
};

// `copies` copies of one element of `size` bytes, written with the element's own width.
template <typename T>
void fill_typed(uint64_t* block, const char* data, int copies) {
  T value;
  std::memcpy(&value, data, sizeof(T));
  T* out = reinterpret_cast<T*>(block);
  for (int b = 0; b < copies; ++b) {
    out[b] = value;
  }
}

void fill_block(uint64_t* block, const char* data, int size, int copies) {
  switch (size) {
    case 1:
      fill_typed<uint8_t>(block, data, copies);
      break;
    case 2:
      fill_typed<uint16_t>(block, data, copies);
      break;
    case 4:
      fill_typed<uint32_t>(block, data, copies);
      break;
    default:
      fill_typed<uint64_t>(block, data, copies);
      break;
  }
}

}  // namespace

struct Program::Impl {
  Impl(int num_inputs, int num_slots, nb::list fixed, nb::list steps, std::vector<int> outputs,
          std::vector<bool> copy_outputs)
      : num_inputs_(num_inputs), num_slots_(num_slots), outputs_(std::move(outputs)),
        copy_outputs_(std::move(copy_outputs)) {
    for (nb::handle f : fixed) {
      nb::tuple t = nb::cast<nb::tuple>(f);
      fixed_.emplace_back(nb::cast<int>(t[0]), nb::borrow<nb::object>(t[1]));
    }
    for (nb::handle s : steps) {
      nb::dict d = nb::cast<nb::dict>(s);
      ProgramStep step;
      step.kind = step_kind(nb::cast<std::string>(d["kind"]));
      step.in = nb::cast<std::vector<int>>(d["inputs"]);
      step.out = nb::cast<int>(d["out"]);
      step.call = nb::borrow<nb::object>(d["call"]);
      step.release = nb::cast<std::vector<int>>(d["release"]);
      if (d.contains("ints")) {
        step.ints = nb::cast<std::vector<int64_t>>(d["ints"]);
      }
      if (d.contains("func")) {
        step.func = nb::borrow<nb::object>(d["func"]);
      }
      if (d.contains("axis")) {
        step.axis = nb::borrow<nb::object>(d["axis"]);
        step.keepdims = nb::cast<bool>(d["keepdims"]);
      }
      if (d.contains("out_dtype")) {
        step.out_dtype = nb::borrow<nb::object>(d["out_dtype"]);
      }
      const bool calls_numpy = step.kind == StepKind::kReduce || step.kind == StepKind::kCall;
      const bool needs_axis = step.kind == StepKind::kReduce;
      const bool complete = step.func.is_valid() && step.out_dtype.is_valid() && (!needs_axis || step.axis.is_valid());
      if (calls_numpy && !complete) {
        throw std::invalid_argument("[compile] a reduce or call step needs func, out_dtype (and axis)");
      }
      if (step.kind == StepKind::kKernel || step.kind == StepKind::kRows) {
        step.fn = reinterpret_cast<kiln_kernel_fn>(nb::cast<uintptr_t>(d["fn"]));
        step.in_types = nb::cast<std::vector<int>>(d["in_types"]);
        step.in_sizes = nb::cast<std::vector<int>>(d["in_sizes"]);
        step.shapes = nb::cast<std::vector<std::vector<int64_t>>>(d["shapes"]);
        if (step.in.size() > KILN_MAX_ARGS) {
          throw std::invalid_argument("[compile] too many kernel inputs");
        }
      }
      calls_numpy_ = calls_numpy_ || (step.kind != StepKind::kKernel && step.kind != StepKind::kRows);
      steps_.push_back(std::move(step));
    }
  }

  nb::list run(nb::handle inputs) {
    PyObject* seq = PySequence_Fast(inputs.ptr(), "[compile] Program.run expects a list of arrays");
    if (!seq) {
      throw nb::python_error();
    }
    nb::object seq_owner = nb::steal(seq);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n != num_inputs_) {
      throw std::invalid_argument("[compile] expected " + std::to_string(num_inputs_) + " inputs, got " +
                                  std::to_string(n));
    }
    std::optional<QuietFloatingPoint> quiet;
    if (calls_numpy_) {
      quiet.emplace();  // kernels never report; only numpy calls need the quiet state
    }
    std::vector<PyObject*> slots(num_slots_, nullptr);
    SlotGuard guard{slots};
    PyObject** items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; ++i) {
      Py_INCREF(items[i]);
      slots[i] = items[i];
    }
    for (auto& [slot, value] : fixed_) {
      Py_INCREF(value.ptr());
      slots[slot] = value.ptr();
    }
    for (const ProgramStep& step : steps_) {
      PyObject* result = run_step(step, slots);
      if (!result) {
        throw nb::python_error();
      }
      Py_XDECREF(slots[step.out]);
      slots[step.out] = result;
      for (int r : step.release) {
        Py_XDECREF(slots[r]);
        slots[r] = nullptr;
      }
    }
    nb::list out;
    for (size_t i = 0; i < outputs_.size(); ++i) {
      PyObject* v = slots[outputs_[i]];
      if (copy_outputs_[i] || !PyArray_Check(v)) {
        PyObject* arr = PyArray_FROM_O(v);
        if (!arr) {
          throw nb::python_error();
        }
        PyObject* copy = PyArray_NewCopy(reinterpret_cast<PyArrayObject*>(arr), NPY_CORDER);
        Py_DECREF(arr);
        if (!copy) {
          throw nb::python_error();
        }
        out.append(nb::steal(copy));
      } else {
        out.append(nb::borrow(v));
      }
    }
    return out;
  }

  static PyObject* run_step(const ProgramStep& step, std::vector<PyObject*>& slots) {
    switch (step.kind) {
      case StepKind::kKernel:
        return run_kernel(step, slots);
      case StepKind::kPython:
        return call_python(step, slots);
      case StepKind::kReduce:
        return run_reduce(step, slots);
      case StepKind::kRows:
        return run_rows(step, slots);
      case StepKind::kCall:
        return run_call(step, slots);
      default:
        return run_view(step, slots);
    }
  }

  // The single input as an aligned, native-order ndarray, or nullptr (the step then takes the fallback).
  static PyArrayObject* plain_input(const ProgramStep& step, std::vector<PyObject*>& slots) {
    PyObject* obj = slots[step.in[0]];
    if (!PyArray_Check(obj)) {
      return nullptr;
    }
    auto* a = reinterpret_cast<PyArrayObject*>(obj);
    return PyArray_ISNOTSWAPPED(a) ? a : nullptr;
  }

  // Shape steps: numpy views built here, exactly what the registry's numpy implementation returns.
  static PyObject* run_view(const ProgramStep& step, std::vector<PyObject*>& slots) {
    PyArrayObject* a = plain_input(step, slots);
    if (!a) {
      return call_python(step, slots);
    }
    const int nd = PyArray_NDIM(a);
    const npy_intp* shape = PyArray_DIMS(a);
    npy_intp dims[NPY_MAXDIMS];
    int out_nd = 0;
    bool ok = false;
    switch (step.kind) {
      case StepKind::kTranspose:
        return transpose_view(step, slots, a);
      case StepKind::kBroadcastTo:
        return broadcast_view(step, slots, a);
      case StepKind::kSlice:
        return slice_view(step, slots, a);
      case StepKind::kReshape:
        ok = reshape_dims(step.ints, shape, nd, dims, &out_nd);
        break;
      case StepKind::kFlatten:
        ok = flatten_dims(step.ints, shape, nd, dims, &out_nd);
        break;
      case StepKind::kExpandDims:
        ok = expand_dims(step.ints, shape, nd, dims, &out_nd);
        break;
      case StepKind::kSqueeze:
        ok = squeeze_dims(step.ints, shape, nd, dims, &out_nd);
        break;
      default:
        break;
    }
    if (!ok) {
      return call_python(step, slots);  // the implementation raises the proper error
    }
    PyArray_Dims newshape{dims, out_nd};
    return PyArray_Newshape(a, &newshape, NPY_CORDER);
  }

  static PyObject* transpose_view(const ProgramStep& step, std::vector<PyObject*>& slots, PyArrayObject* a) {
    const int nd = PyArray_NDIM(a);
    if (static_cast<int>(step.ints.size()) != nd) {
      return call_python(step, slots);
    }
    npy_intp perm[NPY_MAXDIMS];
    bool seen[NPY_MAXDIMS] = {};
    for (int d = 0; d < nd; ++d) {
      const int64_t axis = step.ints[d];
      if (axis < 0 || axis >= nd || seen[axis]) {
        return call_python(step, slots);
      }
      seen[axis] = true;
      perm[d] = static_cast<npy_intp>(axis);
    }
    PyArray_Dims permute{perm, nd};
    return PyArray_Transpose(a, &permute);
  }

  // A read-only view with stride 0 on the broadcast dimensions, as np.broadcast_to makes.
  static PyObject* broadcast_view(const ProgramStep& step, std::vector<PyObject*>& slots, PyArrayObject* a) {
    const int nd = PyArray_NDIM(a);
    const int out_nd = static_cast<int>(step.ints.size());
    if (out_nd < nd || out_nd > NPY_MAXDIMS) {
      return call_python(step, slots);
    }
    npy_intp dims[NPY_MAXDIMS];
    npy_intp strides[NPY_MAXDIMS];
    for (int d = 0; d < out_nd; ++d) {
      const int i = d - (out_nd - nd);
      dims[d] = static_cast<npy_intp>(step.ints[d]);
      if (i < 0 || (PyArray_DIM(a, i) == 1 && dims[d] != 1)) {
        strides[d] = 0;
      } else if (PyArray_DIM(a, i) == dims[d]) {
        strides[d] = PyArray_STRIDE(a, i);
      } else {
        return call_python(step, slots);
      }
    }
    return view_of(a, out_nd, dims, strides, PyArray_BYTES(a), 0);
  }

  // x[start:stop:step] per axis with Python's slice rules (a negative stop means "to the end"), as the
  // implementation indexes; the view is writeable when the input is, like numpy's.
  static PyObject* slice_view(const ProgramStep& step, std::vector<PyObject*>& slots, PyArrayObject* a) {
    const int nd = PyArray_NDIM(a);
    if (static_cast<int>(step.ints.size()) != 3 * nd) {
      return call_python(step, slots);
    }
    npy_intp dims[NPY_MAXDIMS];
    npy_intp strides[NPY_MAXDIMS];
    char* data = PyArray_BYTES(a);
    for (int d = 0; d < nd; ++d) {
      Py_ssize_t start = static_cast<Py_ssize_t>(step.ints[d]);
      Py_ssize_t stop = static_cast<Py_ssize_t>(step.ints[nd + d]);
      const Py_ssize_t by = static_cast<Py_ssize_t>(step.ints[2 * nd + d]);
      if (by == 0) {
        return call_python(step, slots);
      }
      if (stop < 0) {
        stop = by > 0 ? PY_SSIZE_T_MAX : PY_SSIZE_T_MIN;
      }
      dims[d] = PySlice_AdjustIndices(PyArray_DIM(a, d), &start, &stop, by);
      data += start * PyArray_STRIDE(a, d);
      strides[d] = PyArray_STRIDE(a, d) * by;
    }
    return view_of(a, nd, dims, strides, data, PyArray_FLAGS(a) & NPY_ARRAY_WRITEABLE);
  }

  // A view of a's memory (data, dims, strides, flags) that keeps a alive, as numpy's own views do.
  static PyObject* view_of(PyArrayObject* a, int nd, npy_intp* dims, npy_intp* strides, char* data, int flags) {
    PyArray_Descr* descr = PyArray_DESCR(a);
    Py_INCREF(descr);
    PyObject* view = PyArray_NewFromDescr(&PyArray_Type, descr, nd, dims, strides, data, flags, nullptr);
    if (!view) {
      return nullptr;
    }
    Py_INCREF(a);
    if (PyArray_SetBaseObject(reinterpret_cast<PyArrayObject*>(view), reinterpret_cast<PyObject*>(a)) < 0) {
      Py_DECREF(view);
      return nullptr;
    }
    return view;
  }

  static int64_t size_of(const npy_intp* shape, int nd) {
    int64_t n = 1;
    for (int d = 0; d < nd; ++d) {
      n *= shape[d];
    }
    return n;
  }

  // reshape's target: at most one -1, resolved against the input's size (resolve_reshape in shape.py).
  static bool reshape_dims(const std::vector<int64_t>& target, const npy_intp* shape, int nd, npy_intp* dims,
                           int* out_nd) {
    const int n = static_cast<int>(target.size());
    if (n > NPY_MAXDIMS) {
      return false;
    }
    int unknown = -1;
    int64_t known = 1;
    for (int d = 0; d < n; ++d) {
      if (target[d] == -1) {
        if (unknown >= 0) {
          return false;
        }
        unknown = d;
      } else if (target[d] < 0) {
        return false;
      } else {
        known *= target[d];
      }
      dims[d] = static_cast<npy_intp>(target[d]);
    }
    const int64_t size = size_of(shape, nd);
    if (unknown >= 0) {
      if (known == 0 || size % known != 0) {
        return false;
      }
      dims[unknown] = static_cast<npy_intp>(size / known);
    } else if (known != size) {
      return false;
    }
    *out_nd = n;
    return true;
  }

  // flatten(start_axis, end_axis), with MLX's clamping (_flatten_shape in shape.py).
  static bool flatten_dims(const std::vector<int64_t>& axes, const npy_intp* shape, int nd, npy_intp* dims,
                           int* out_nd) {
    if (axes.size() != 2) {
      return false;
    }
    if (nd == 0) {
      dims[0] = 1;
      *out_nd = 1;
      return true;
    }
    const int64_t s = std::max<int64_t>(axes[0] < 0 ? axes[0] + nd : axes[0], 0);
    const int64_t e = std::min<int64_t>(axes[1] < 0 ? axes[1] + nd : axes[1], nd - 1);
    if (s > e) {
      return false;
    }
    int k = 0;
    for (int64_t d = 0; d < s; ++d) {
      dims[k++] = shape[d];
    }
    dims[k++] = static_cast<npy_intp>(size_of(shape + s, static_cast<int>(e - s + 1)));
    for (int64_t d = e + 1; d < nd; ++d) {
      dims[k++] = shape[d];
    }
    *out_nd = k;
    return true;
  }

  // expand_dims: axes index the output (negative ones count from its end); each gets a new size-1 axis.
  static bool expand_dims(const std::vector<int64_t>& axes, const npy_intp* shape, int nd, npy_intp* dims,
                          int* out_nd) {
    const int n = nd + static_cast<int>(axes.size());
    if (n > NPY_MAXDIMS) {
      return false;
    }
    bool inserted[NPY_MAXDIMS] = {};
    for (int64_t axis : axes) {
      const int64_t a = axis < 0 ? axis + n : axis;
      if (a < 0 || a >= n || inserted[a]) {
        return false;
      }
      inserted[a] = true;
    }
    int k = 0;
    for (int d = 0; d < n; ++d) {
      dims[d] = inserted[d] ? 1 : shape[k++];
    }
    *out_nd = n;
    return true;
  }

  // squeeze: drop the listed axes, each of which must have size 1.
  static bool squeeze_dims(const std::vector<int64_t>& axes, const npy_intp* shape, int nd, npy_intp* dims,
                           int* out_nd) {
    bool dropped[NPY_MAXDIMS] = {};
    for (int64_t axis : axes) {
      const int64_t a = axis < 0 ? axis + nd : axis;
      if (a < 0 || a >= nd || dropped[a] || shape[a] != 1) {
        return false;
      }
      dropped[a] = true;
    }
    int k = 0;
    for (int d = 0; d < nd; ++d) {
      if (!dropped[d]) {
        dims[k++] = shape[d];
      }
    }
    *out_nd = k;
    return true;
  }

  // A numpy result as an ndarray of the step's output dtype (numpy scalars become 0-d arrays).
  static PyObject* as_output(const ProgramStep& step, PyObject* r) {
    if (!r) {
      return nullptr;
    }
    if (!PyArray_Check(r)) {
      PyObject* arr = PyArray_FROM_O(r);
      Py_DECREF(r);
      r = arr;
      if (!r) {
        return nullptr;
      }
    }
    auto* descr = reinterpret_cast<PyArray_Descr*>(step.out_dtype.ptr());
    auto* a = reinterpret_cast<PyArrayObject*>(r);
    if (PyArray_DESCR(a)->type_num == descr->type_num) {
      return r;
    }
    Py_INCREF(descr);
    PyObject* cast = PyArray_CastToType(a, descr, 0);
    Py_DECREF(r);
    return cast;
  }

  // func(x, axis=..., keepdims=...): a ufunc's reduce, the same call np.sum/np.max make after their checks.
  static PyObject* run_reduce(const ProgramStep& step, std::vector<PyObject*>& slots) {
    if (!plain_input(step, slots)) {
      return call_python(step, slots);
    }
    static PyObject* kwnames = Py_BuildValue("(ss)", "axis", "keepdims");
    PyObject* args[4] = {nullptr, slots[step.in[0]], step.axis.ptr(), step.keepdims ? Py_True : Py_False};
    PyObject* r = PyObject_Vectorcall(step.func.ptr(), args + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
    return as_output(step, r);
  }

  static bool same_shape(PyArrayObject* a, const std::vector<int64_t>& shape) {
    if (PyArray_NDIM(a) != static_cast<int>(shape.size())) {
      return false;
    }
    for (size_t d = 0; d < shape.size(); ++d) {
      if (PyArray_DIMS(a)[d] != shape[d]) {
        return false;
      }
    }
    return true;
  }

  // A row region: shapes are the traced ones (shapes[0] = the row shape, shapes[1] = the output shape,
  // shapes[2 + j] = input j's shape);
  // inputs are made C-contiguous; anything else takes the interpreter's path.
  static PyObject* run_rows(const ProgramStep& step, std::vector<PyObject*>& slots) {
    const size_t k = step.in.size();
    const std::vector<int64_t>& row = step.shapes[0];
    const std::vector<int64_t>& oshape = step.shapes[1];
    std::vector<nb::object> owned;
    kiln_launch L;
    for (size_t j = 0; j < k; ++j) {
      PyObject* obj = slots[step.in[j]];
      if (!PyArray_Check(obj)) {
        return call_python(step, slots);
      }
      PyArrayObject* a = reinterpret_cast<PyArrayObject*>(obj);
      if (!same_c_type(PyArray_DESCR(a)->type_num, step.in_types[j])) {
        return call_python(step, slots);
      }
      if (!PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a) || !same_shape(a, step.shapes[2 + j])) {
        return call_python(step, slots);
      }
      PyArrayObject* c = PyArray_GETCONTIGUOUS(a);
      if (!c) {
        return nullptr;
      }
      owned.push_back(nb::steal(reinterpret_cast<PyObject*>(c)));
      L.in[j] = PyArray_BYTES(c);
    }
    npy_intp dims[NPY_MAXDIMS];
    int64_t total = 1;
    for (size_t d = 0; d < oshape.size(); ++d) {
      dims[d] = static_cast<npy_intp>(oshape[d]);
      total *= oshape[d];
    }
    auto* descr = reinterpret_cast<PyArray_Descr*>(step.out_dtype.ptr());
    const size_t out_size = static_cast<size_t>(PyDataType_ELSIZE(descr));
    PyObject* out = new_output(descr, static_cast<int>(oshape.size()), dims, static_cast<size_t>(total) * out_size);
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < row.size(); ++d) {
      rows *= row[d];
    }
    if (!out || rows == 0) {
      return out;
    }
    L.variant = KILN_STRIDED;
    L.ndim = 2;
    L.shape[0] = rows;
    L.shape[1] = row.back();
    L.out = PyArray_BYTES(reinterpret_cast<PyArrayObject*>(out));
    runtime::launch_rows(step.fn, &L, rows, rows * row.back());
    return out;
  }

  // func(*inputs) for a numpy function that is the whole implementation (np.matmul).
  static PyObject* run_call(const ProgramStep& step, std::vector<PyObject*>& slots) {
    PyObject* args[KILN_MAX_ARGS + 1];
    const size_t k = step.in.size();
    if (k > KILN_MAX_ARGS) {
      return call_python(step, slots);
    }
    for (size_t i = 0; i < k; ++i) {
      if (!PyArray_Check(slots[step.in[i]])) {
        return call_python(step, slots);
      }
      args[i + 1] = slots[step.in[i]];
    }
    PyObject* r = PyObject_Vectorcall(step.func.ptr(), args + 1, k | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
    return as_output(step, r);
  }

  static PyObject* call_python(const ProgramStep& step, std::vector<PyObject*>& slots) {
    PyObject* args[KILN_MAX_ARGS + 1];
    std::vector<PyObject*> many;
    PyObject** argv = args;
    if (step.in.size() > KILN_MAX_ARGS) {
      many.resize(step.in.size());
      argv = many.data();
    }
    for (size_t i = 0; i < step.in.size(); ++i) {
      argv[i] = slots[step.in[i]];
    }
    PyObject* r = PyObject_Vectorcall(step.call.ptr(), argv, step.in.size(), nullptr);
    if (r && !PyArray_Check(r)) {
      PyObject* arr = PyArray_FROM_O(r);
      Py_DECREF(r);
      r = arr;
    }
    return r;
  }

  static PyObject* run_kernel(const ProgramStep& step, std::vector<PyObject*>& slots) {
    const size_t k = step.in.size();
    PyArrayObject* arrs[KILN_MAX_ARGS];
    std::vector<nb::object> owned;
    for (size_t j = 0; j < k; ++j) {
      PyObject* obj = slots[step.in[j]];
      if (!PyArray_Check(obj)) {
        PyObject* a = PyArray_FROM_O(obj);
        if (!a) {
          return nullptr;
        }
        owned.push_back(nb::steal(a));
        obj = a;
      }
      PyArrayObject* a = reinterpret_cast<PyArrayObject*>(obj);
      if (!same_c_type(PyArray_DESCR(a)->type_num, step.in_types[j])) {
        PyErr_Format(PyExc_TypeError, "[compile] kernel input %d has dtype %R; the kernel was built for another",
                     (int)j, (PyObject*)PyArray_DESCR(a));
        return nullptr;
      }
      if (!PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a)) {
        return call_python(step, slots);  // unusual layouts take the interpreter's path
      }
      arrs[j] = a;
    }
    // The output shape: inputs and broadcast_to targets broadcast together (1 against 0 gives 0).
    int ndim = 0;
    for (size_t j = 0; j < k; ++j) {
      ndim = std::max(ndim, PyArray_NDIM(arrs[j]));
    }
    for (const auto& s : step.shapes) {
      ndim = std::max(ndim, static_cast<int>(s.size()));
    }
    npy_intp dims[NPY_MAXDIMS];
    if (ndim > NPY_MAXDIMS) {
      return call_python(step, slots);
    }
    for (int d = 0; d < ndim; ++d) {
      dims[d] = 1;
    }
    auto merge = [&](int nd, const auto* shape) -> bool {
      for (int i = 0; i < nd; ++i) {
        int d = ndim - nd + i;
        npy_intp s = static_cast<npy_intp>(shape[i]);
        if (s == 1) {
          continue;
        }
        if (dims[d] != 1 && dims[d] != s) {
          return false;
        }
        dims[d] = s;
      }
      return true;
    };
    for (size_t j = 0; j < k; ++j) {
      if (!merge(PyArray_NDIM(arrs[j]), PyArray_DIMS(arrs[j]))) {
        PyErr_SetString(PyExc_ValueError, "[compile] inputs of a fused kernel cannot be broadcast together");
        return nullptr;
      }
    }
    for (const auto& s : step.shapes) {
      if (!merge(static_cast<int>(s.size()), s.data())) {
        PyErr_SetString(PyExc_ValueError, "[broadcast_to] shapes cannot be broadcast");
        return nullptr;
      }
    }
    int64_t total = 1;
    for (int d = 0; d < ndim; ++d) {
      total *= dims[d];
    }
    auto* descr = reinterpret_cast<PyArray_Descr*>(step.out_dtype.ptr());
    const size_t out_size = static_cast<size_t>(PyDataType_ELSIZE(descr));
    PyObject* out = new_output(descr, ndim, dims, static_cast<size_t>(total) * out_size);
    if (!out || total == 0) {
      return out;
    }

    // Element strides of every input in the output's index space (0 on broadcast dimensions).
    int64_t es[KILN_MAX_ARGS][NPY_MAXDIMS];
    bool flat = true;
    bool is_full[KILN_MAX_ARGS];
    for (size_t j = 0; j < k; ++j) {
      const int nd = PyArray_NDIM(arrs[j]);
      const npy_intp* sh = PyArray_DIMS(arrs[j]);
      const npy_intp* st = PyArray_STRIDES(arrs[j]);
      bool full = true;
      bool scalar = true;
      int64_t expect = 1;
      for (int d = ndim - 1; d >= 0; --d) {
        int i = d - (ndim - nd);
        int64_t s = (i < 0 || sh[i] == 1) ? 0 : st[i] / step.in_sizes[j];
        es[j][d] = s;
        if (dims[d] != 1) {
          full = full && s == expect;
          scalar = scalar && s == 0;
        }
        expect *= dims[d];
      }
      is_full[j] = full;
      flat = flat && (full || scalar);
    }
    kiln_launch L;
    L.out = PyArray_BYTES(reinterpret_cast<PyArrayObject*>(out));
    if (flat) {
      L.variant = KILN_FLAT;
      L.ndim = 1;
      // A scalar operand is read through a block of copies, so the flat loop stays unit-stride; a launch
      // shorter than a block needs only as many copies as it has elements.
      const int copies = total < KILN_BLOCK ? static_cast<int>(total) : KILN_BLOCK;
      thread_local std::vector<uint64_t> blocks(static_cast<size_t>(KILN_MAX_ARGS) * KILN_BLOCK);
      uint64_t* next_block = blocks.data();
      for (size_t j = 0; j < k; ++j) {
        const char* data = PyArray_BYTES(arrs[j]);
        if (is_full[j]) {
          L.in[j] = data;
          L.step[j] = 1;
          continue;
        }
        fill_block(next_block, data, step.in_sizes[j], copies);
        L.in[j] = reinterpret_cast<const char*>(next_block);
        L.step[j] = 0;
        next_block += KILN_BLOCK;
      }
    } else {
      // Drop size-1 dimensions, then merge neighbours that every operand walks as one.
      int kept[NPY_MAXDIMS];
      int nk = 0;
      for (int d = 0; d < ndim; ++d) {
        if (dims[d] != 1) {
          kept[nk++] = d;
        }
      }
      int64_t cshape[NPY_MAXDIMS];
      int64_t cstr[KILN_MAX_ARGS][NPY_MAXDIMS];
      int nc = 0;
      for (int t = 0; t < nk; ++t) {
        int d = kept[t];
        bool mergeable = nc > 0;
        for (size_t j = 0; j < k && mergeable; ++j) {
          mergeable = cstr[j][nc - 1] == es[j][d] * dims[d];
        }
        if (mergeable) {
          cshape[nc - 1] *= dims[d];
          for (size_t j = 0; j < k; ++j) {
            cstr[j][nc - 1] = es[j][d];
          }
        } else {
          cshape[nc] = dims[d];
          for (size_t j = 0; j < k; ++j) {
            cstr[j][nc] = es[j][d];
          }
          ++nc;
        }
      }
      if (nc > KILN_MAX_DIMS) {
        Py_DECREF(out);
        return call_python(step, slots);
      }
      L.variant = KILN_STRIDED;
      L.ndim = nc;
      for (int d = 0; d < nc; ++d) {
        L.shape[d] = cshape[d];
      }
      for (size_t j = 0; j < k; ++j) {
        L.in[j] = PyArray_BYTES(arrs[j]);
        for (int d = 0; d < nc; ++d) {
          L.strides[j][d] = cstr[j][d];
        }
      }
    }
    if (total >= runtime::parallel_threshold()) {
      nb::gil_scoped_release release;
      runtime::launch(step.fn, &L, total, true);
    } else {
      step.fn(&L, 0, total);
    }
    return out;
  }

  int num_inputs_;
  int num_slots_;
  std::vector<std::pair<int, nb::object>> fixed_;
  std::vector<ProgramStep> steps_;
  std::vector<int> outputs_;
  std::vector<bool> copy_outputs_;
  bool calls_numpy_ = false;  // some step calls numpy (everything but kernels), so runs set the quiet state
};

Program::Program(int num_inputs, int num_slots, nb::list fixed, nb::list steps, std::vector<int> outputs,
                 std::vector<bool> copy_outputs)
    : impl_(std::make_unique<Impl>(num_inputs, num_slots, fixed, steps, std::move(outputs),
                                   std::move(copy_outputs))) {}

Program::~Program() = default;

nb::list Program::run(nb::handle inputs) { return impl_->run(inputs); }

void set_fp_quiet(nb::object var, nb::object value) {
  Py_XDECREF(g_fp_state_var);
  Py_XDECREF(g_fp_state_quiet);
  g_fp_state_var = var.is_none() ? nullptr : var.release().ptr();
  g_fp_state_quiet = value.is_none() ? nullptr : value.release().ptr();
}

}  // namespace kiln
