// array_buffer: a C base type that gives kiln's Python `array` the buffer protocol (memoryview(a), bytes(a),
// np.array(a, copy=False) as a view). Before Python 3.12 (PEP 688) only a C type can export a buffer.
#include <Python.h>

#include <nanobind/nanobind.h>

#include <string>

namespace kiln {

namespace {

// What one export holds until the consumer releases it: numpy's buffer over the array's data, and the
// PEP 3118 format the array reports (MLX's, which differs from numpy's for int64, uint64 and bfloat16).
struct Export {
  Py_buffer inner;
  std::string format;
};

// The Python side answers `_buffer_export()` with (ndarray, format): a writable numpy array over the array's
// own data in its own layout (bfloat16 as uint16) and the format string to report.
int array_getbuffer(PyObject* self, Py_buffer* view, int flags) {
  view->obj = nullptr;
  PyObject* spec = PyObject_CallMethod(self, "_buffer_export", nullptr);
  if (spec == nullptr) {
    return -1;
  }
  PyObject* data = nullptr;
  const char* format = nullptr;
  if (!PyArg_ParseTuple(spec, "Os", &data, &format)) {
    Py_DECREF(spec);
    return -1;
  }
  auto* held = new Export{};
  held->format = format;
  // The numpy buffer keeps its array alive (inner.obj); its shape and strides live as long as that array.
  int rc = PyObject_GetBuffer(data, &held->inner, flags);
  Py_DECREF(spec);
  if (rc < 0) {
    delete held;
    return -1;
  }
  *view = held->inner;
  Py_INCREF(self);
  view->obj = self;  // the memoryview keeps the kiln array alive, as in MLX
  if (view->format != nullptr) {
    view->format = held->format.data();
  }
  view->internal = held;
  return 0;
}

void array_releasebuffer(PyObject*, Py_buffer* view) {
  auto* held = static_cast<Export*>(view->internal);
  PyBuffer_Release(&held->inner);
  delete held;
}

PyType_Slot array_buffer_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(array_getbuffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(array_releasebuffer)},
    {Py_tp_doc, const_cast<char*>("Base of kiln.core.array: exports the array's data through the buffer protocol.")},
    {0, nullptr},
};

// basicsize 0: the layout of `object`, so Python subclasses keep __slots__, weak references and
// object.__new__.
PyType_Spec array_buffer_spec = {"kiln._engine.ArrayBuffer", 0, 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
                                 array_buffer_slots};

}  // namespace

void register_array_buffer(nanobind::module_& m) {
  PyObject* type = PyType_FromSpec(&array_buffer_spec);
  if (type == nullptr) {
    throw nanobind::python_error();
  }
  m.attr("ArrayBuffer") = nanobind::steal(type);
}

}  // namespace kiln
