// The native Program: a compiled graph's per-call dispatch loop (kernels, numpy views and calls, Python
// fallbacks over slots of numpy arrays). engine.py builds its steps; bindings.cpp exposes it.
#pragma once

#include <nanobind/nanobind.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace kiln {

class Program {
 public:
  Program(int num_inputs, int num_slots, nanobind::list fixed, nanobind::list steps, std::vector<int> outputs,
          std::vector<bool> copy_outputs);
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  // Run on a sequence of numpy arrays (graph input order); returns fresh arrays the caller owns.
  nanobind::list run(nanobind::handle inputs);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A fresh C-contiguous numpy array of numpy type `typenum`; large ones come from the runtime's buffer pool
// (already faulted in when reused). A new reference, or nullptr with a Python error set.
PyObject* new_pooled_array(int typenum, int ndim, const int64_t* dims);

// numpy's error-state context variable and its "ignore all" value, set while programs call numpy.
void set_fp_quiet(nanobind::object var, nanobind::object value);

}  // namespace kiln
