// render_cpu: the C++ language options of the kernel walker (render.cpp). A CPU kernel has the signature
// of csrc/kernel_abi.h and writes output elements [begin, end): a flat blocked loop when every input is
// contiguous or a scalar block, else a strided walk of the collapsed index space.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "render.h"

namespace kiln {

namespace {

const TypeNames kCpuTypes[kNumDtypes] = {
    {"uint8_t", "bool", "kiln_ld_bool", "kiln_st_bool", "(bool)"},
    {"uint8_t", "uint8_t", "kiln_ld_id", "kiln_st_id", "(uint8_t)"},
    {"uint16_t", "uint16_t", "kiln_ld_id", "kiln_st_id", "(uint16_t)"},
    {"uint32_t", "uint32_t", "kiln_ld_id", "kiln_st_id", "(uint32_t)"},
    {"uint64_t", "uint64_t", "kiln_ld_id", "kiln_st_id", "(uint64_t)"},
    {"int8_t", "int8_t", "kiln_ld_id", "kiln_st_id", "(int8_t)"},
    {"int16_t", "int16_t", "kiln_ld_id", "kiln_st_id", "(int16_t)"},
    {"int32_t", "int32_t", "kiln_ld_id", "kiln_st_id", "(int32_t)"},
    {"int64_t", "int64_t", "kiln_ld_id", "kiln_st_id", "(int64_t)"},
    {"kiln_f16_t", "float", "kiln_ld_f16", "kiln_st_f16", "kiln_fix_f16"},
    {"uint16_t", "float", "kiln_ld_bf16", "kiln_st_bf16", "kiln_fix_bf16"},
    {"float", "float", "kiln_ld_id", "kiln_st_id", "(float)"},
    {"double", "double", "kiln_ld_id", "kiln_st_id", "(double)"},
    {"void", "void", "", "", ""},
};

std::string float_text(double v, bool single) {
  const char* suffix = single ? "f" : "";
  if (std::isnan(v)) {
    return std::string(std::signbit(v) ? "(-" : "(") + (single ? "__builtin_nanf(\"\"))" : "__builtin_nan(\"\"))");
  }
  if (std::isinf(v)) {
    return std::string(v < 0 ? "(-" : "(") + (single ? "__builtin_inff())" : "__builtin_inf())");
  }
  // Hex floats round-trip exactly; the sign is part of the literal, so -0.0 stays a float.
  char buf[64];
  std::snprintf(buf, sizeof buf, "(%a%s)", v, suffix);
  return buf;
}

std::string int_text(int dtype, uint64_t bits) {
  char buf[96];
  int size = dtype_size(dtype);
  bool is_signed = dtype >= kI8 && dtype <= kI64;
  if (!is_signed) {
    std::snprintf(buf, sizeof buf, "((%s)%" PRIu64 "ull)", kCpuTypes[dtype].compute, bits);
    return buf;
  }
  int64_t v = (int64_t)(bits << (64 - 8 * size)) >> (64 - 8 * size);
  if (v == INT64_MIN) {
    std::snprintf(buf, sizeof buf, "((int64_t)(-9223372036854775807ll - 1))");
  } else {
    std::snprintf(buf, sizeof buf, "((%s)%" PRId64 "ll)", kCpuTypes[dtype].compute, v);
  }
  return buf;
}

std::string cpu_literal(int dtype, uint64_t bits) {
  switch (dtype) {
    case kBool:
      return bits ? "true" : "false";
    case kF16:
      return float_text(half_to_float((uint16_t)bits), true);
    case kBF16:
      return float_text(bfloat_to_float((uint16_t)bits), true);
    case kF32: {
      uint32_t b = (uint32_t)bits;
      float f;
      std::memcpy(&f, &b, 4);
      return float_text(f, true);
    }
    case kF64: {
      double d;
      std::memcpy(&d, &bits, 8);
      return float_text(d, false);
    }
    default:
      return int_text(dtype, bits);
  }
}

std::string cpu_kernel(const KernelParts& parts) {
  const size_t num_inputs = parts.input_dtypes.size();
  const std::string body = indent_lines(parts.body, "      ");
  // Loads differ between the flat and the strided loop; the body is the same text in both.
  auto loads = [&](bool strided) {
    std::string s;
    for (size_t k = 0; k < num_inputs; ++k) {
      const TypeNames& t = kCpuTypes[parts.input_dtypes[k]];
      std::string idx = strided ? "j * s" + std::to_string(k) : "j";
      s += "      const " + std::string(t.compute) + " a" + std::to_string(k) + " = " + t.load + "(q" +
           std::to_string(k) + "[" + idx + "]);\n";
    }
    return s;
  };
  const std::string store = "      qo[j] = " + std::string(kCpuTypes[parts.out_dtype].store) + "(" + parts.result +
                            ");\n";
  std::string pointers;
  for (size_t k = 0; k < num_inputs; ++k) {
    const TypeNames& t = kCpuTypes[parts.input_dtypes[k]];
    std::string ks = std::to_string(k);
    pointers += "  const " + std::string(t.storage) + "* __restrict p" + ks + " = (const " + t.storage + "*)L->in[" +
                ks + "];\n";
  }
  const std::string out_t = kCpuTypes[parts.out_dtype].storage;

  std::string src;
  src += "// fused[" + parts.summary + "]\n";
  src += "extern \"C\" void KILN_KERNEL_NAME(const kiln_launch* L, int64_t begin, int64_t end) {\n";
  src += pointers;
  src += "  " + out_t + "* __restrict po = (" + out_t + "*)L->out;\n";
  src += "  if (L->variant == KILN_FLAT) {\n";
  src += "    for (int64_t b = begin; b < end; b += KILN_BLOCK) {\n";
  src += "    const int64_t n = end - b < KILN_BLOCK ? end - b : KILN_BLOCK;\n";
  for (size_t k = 0; k < num_inputs; ++k) {
    const TypeNames& t = kCpuTypes[parts.input_dtypes[k]];
    std::string ks = std::to_string(k);
    src += "    const " + std::string(t.storage) + "* __restrict q" + ks + " = p" + ks + " + b * L->step[" + ks + "];\n";
  }
  src += "    " + out_t + "* __restrict qo = po + b;\n";
  src += "    #pragma GCC ivdep\n";
  src += "    for (int64_t j = 0; j < n; ++j) {\n" + loads(false) + body + store + "    }\n";
  src += "    }\n";
  src += "    return;\n";
  src += "  }\n";
  src += "  // Strided: walk the collapsed output index space; the innermost dimension is the loop.\n";
  src += "  const int nd = L->ndim;\n";
  src += "  const int64_t inner = L->shape[nd - 1];\n";
  src += "  int64_t idx[KILN_MAX_DIMS];\n";
  src += "  int64_t rest = begin;\n";
  src += "  for (int d = nd - 1; d >= 0; --d) {\n";
  src += "    idx[d] = rest % L->shape[d];\n";
  src += "    rest /= L->shape[d];\n";
  src += "  }\n";
  for (size_t k = 0; k < num_inputs; ++k) {
    std::string ks = std::to_string(k);
    src += "  const int64_t s" + ks + " = L->strides[" + ks + "][nd - 1];\n";
  }
  src += "  for (int64_t pos = begin; pos < end;) {\n";
  src += "    const int64_t n = (inner - idx[nd - 1]) < (end - pos) ? (inner - idx[nd - 1]) : (end - pos);\n";
  for (size_t k = 0; k < num_inputs; ++k) {
    const TypeNames& t = kCpuTypes[parts.input_dtypes[k]];
    std::string ks = std::to_string(k);
    src += "    int64_t o" + ks + " = 0;\n";
    src += "    for (int d = 0; d < nd; ++d) o" + ks + " += idx[d] * L->strides[" + ks + "][d];\n";
    src += "    const " + std::string(t.storage) + "* q" + ks + " = p" + ks + " + o" + ks + ";\n";
  }
  src += "    " + out_t + "* __restrict qo = po + pos;\n";
  src += "    for (int64_t j = 0; j < n; ++j) {\n" + loads(true) + body + store + "    }\n";
  src += "    pos += n;\n";
  src += "    idx[nd - 1] += n;\n";
  src += "    for (int d = nd - 1; d > 0 && idx[d] == L->shape[d]; --d) {\n";
  src += "      idx[d] = 0;\n";
  src += "      idx[d - 1] += 1;\n";
  src += "    }\n";
  src += "  }\n";
  src += "}\n";
  return src;
}

// Folds of a block into KILN_LANES accumulators with GCC vector extensions: gcc does not vectorize a
// NaN-propagating max as a scalar loop. NaN wins and stays (no comparison with a NaN lane is true).
// The sum converts to double before adding, so its only rounding of note is the final one to float.
const char* const kRowHelpers = R"(#ifndef KILN_ROW_HELPERS
#define KILN_ROW_HELPERS
#define KILN_LANES 8
template <class T, bool kMax>
static inline void kiln_row_extreme(T* acc, const T* x, int64_t n) {
  typedef T V __attribute__((vector_size(KILN_LANES * sizeof(T))));
  V r;
  __builtin_memcpy(&r, acc, sizeof r);
  int64_t c = 0;
  for (; c + KILN_LANES <= n; c += KILN_LANES) {
    V a;
    __builtin_memcpy(&a, x + c, sizeof a);
    r = ((kMax ? a > r : a < r) | (a != a)) ? a : r;
  }
  __builtin_memcpy(acc, &r, sizeof r);
  for (; c < n; ++c) {
    const T a = x[c];
    acc[0] = ((kMax ? a > acc[0] : a < acc[0]) || a != a) ? a : acc[0];
  }
}
template <class T, bool kMax>
static inline T kiln_row_extreme_lanes(const T* acc) {
  T r = acc[0];
  for (int u = 1; u < KILN_LANES; ++u) {
    r = ((kMax ? acc[u] > r : acc[u] < r) || acc[u] != acc[u]) ? acc[u] : r;
  }
  return r;
}
template <class T> static inline void kiln_row_max(T* acc, const T* x, int64_t n) { kiln_row_extreme<T, true>(acc, x, n); }
template <class T> static inline void kiln_row_min(T* acc, const T* x, int64_t n) { kiln_row_extreme<T, false>(acc, x, n); }
template <class T> static inline T kiln_row_max_lanes(const T* acc) { return kiln_row_extreme_lanes<T, true>(acc); }
template <class T> static inline T kiln_row_min_lanes(const T* acc) { return kiln_row_extreme_lanes<T, false>(acc); }
static inline void kiln_row_sum(double* acc, const float* x, int64_t n) {
  typedef float V __attribute__((vector_size(KILN_LANES * sizeof(float))));
  typedef double D __attribute__((vector_size(KILN_LANES * sizeof(double))));
  D r;
  __builtin_memcpy(&r, acc, sizeof r);
  int64_t c = 0;
  for (; c + KILN_LANES <= n; c += KILN_LANES) {
    V a;
    __builtin_memcpy(&a, x + c, sizeof a);
    r += __builtin_convertvector(a, D);
  }
  __builtin_memcpy(acc, &r, sizeof r);
  for (; c < n; ++c) {
    acc[0] += (double)x[c];
  }
}
static inline double kiln_row_sum_lanes(const double* acc) {
  double r = acc[0];
  for (int u = 1; u < KILN_LANES; ++u) {
    r += acc[u];
  }
  return r;
}
#endif
)";

// A row kernel runs rows [begin, end); L->shape holds {rows, N}; every input is C-contiguous.
std::string cpu_row_kernel(const RowParts& parts) {
  std::string src;
  src += "// fused rows[" + parts.summary + "]\n";
  src += kRowHelpers;
  src += "extern \"C\" void KILN_KERNEL_NAME(const kiln_launch* L, int64_t begin, int64_t end) {\n";
  for (size_t k = 0; k < parts.input_dtypes.size(); ++k) {
    const TypeNames& t = kCpuTypes[parts.input_dtypes[k]];
    std::string ks = std::to_string(k);
    src += "  const " + std::string(t.storage) + "* __restrict p" + ks + " = (const " + t.storage + "*)L->in[" +
           ks + "];\n";
  }
  const std::string out_t = kCpuTypes[parts.out_dtype].storage;
  src += "  " + out_t + "* __restrict po = (" + out_t + "*)L->out;\n";
  src += "  const int64_t N = L->shape[1];\n";
  src += "  for (int64_t i = begin; i < end; ++i) {\n";
  src += indent_lines(parts.body, "    ");
  src += "  }\n";
  src += "}\n";
  return src;
}

}  // namespace

const LanguageOptions kCpu = {"cpu", "on the CPU", kCpuTypes, cpu_literal, nullptr, cpu_kernel, "kiln_",
                              cpu_row_kernel};

std::string literal_text(int dtype, uint64_t bits) { return cpu_literal(dtype, bits); }

void render_cpu(const Graph& g, Region& r) { render(g, r, kCpu); }

}  // namespace kiln
