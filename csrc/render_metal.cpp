// render_metal: the Metal Shading Language options of the kernel walker (render.cpp). One thread per
// output element: the index comes from [[thread_position_in_grid]], each input is read at the offset the
// preamble's kiln_offset computes for the launch's variant (flat or strided), and buffers live in the
// device address space. Metal has no float64, so regions that touch it are refused.
//
// TODO(macOS backend): build a MTLLibrary from metal_full_source(kernel) (MTLCompileOptions with
// mathMode = MTLMathModeSafe), make one MTLComputePipelineState per kernel name, and dispatch it with
// buffers 0..k-1 = inputs, k = output, k+1 = kiln_metal_args (filled from the same collapsed shape and
// strides as the CPU runtime's kiln_launch; it is larger than setBytes' 4 KB, so it goes in a buffer),
// grid = (min(size, 2^30), ceil(size / 2^30), 1). On Linux the same source runs through metal/metal_shim.h.
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "metal_embed.h"
#include "prelude_embed.h"
#include "render.h"

namespace kiln {

namespace {

const TypeNames kMetalTypes[kNumDtypes] = {
    {"uchar", "bool", "kiln_ld_bool", "kiln_st_bool", "(bool)"},
    {"uchar", "uchar", "kiln_ld_id", "kiln_st_id", "(uchar)"},
    {"ushort", "ushort", "kiln_ld_id", "kiln_st_id", "(ushort)"},
    {"uint", "uint", "kiln_ld_id", "kiln_st_id", "(uint)"},
    {"ulong", "ulong", "kiln_ld_id", "kiln_st_id", "(ulong)"},
    {"char", "char", "kiln_ld_id", "kiln_st_id", "(char)"},
    {"short", "short", "kiln_ld_id", "kiln_st_id", "(short)"},
    {"int", "int", "kiln_ld_id", "kiln_st_id", "(int)"},
    {"long", "long", "kiln_ld_id", "kiln_st_id", "(long)"},
    {"half", "float", "kiln_ld_f16", "kiln_st_f16", "kiln_fix_f16"},
    {"ushort", "float", "kiln_ld_bf16", "kiln_st_bf16", "kiln_fix_bf16"},
    {"float", "float", "kiln_ld_id", "kiln_st_id", "(float)"},
    {nullptr, nullptr, nullptr, nullptr, nullptr},  // float64: Metal has no double
    {nullptr, nullptr, nullptr, nullptr, nullptr},  // complex64: never fused
};

// The shortest decimal that reads back as the same float: readable, and exact (Metal's parser rounds
// correctly, and nine significant digits always suffice).
std::string metal_float(float v) {
  if (std::isnan(v)) {
    return std::signbit(v) ? "(-NAN)" : "(NAN)";
  }
  if (std::isinf(v)) {
    return v < 0 ? "(-INFINITY)" : "(INFINITY)";
  }
  char buf[64];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
    if (std::strtof(buf, nullptr) == v) {
      break;
    }
  }
  std::string text = buf;
  if (text.find_first_of(".e") == std::string::npos) {
    text += ".0";  // "2f" is not a literal; "2.0f" is
  }
  return "(" + text + "f)";
}

std::string metal_int(int dtype, uint64_t bits) {
  const int size = dtype_size(dtype);
  const bool is_signed = dtype >= kI8 && dtype <= kI64;
  const char* type = kMetalTypes[dtype].compute;
  char buf[96];
  if (!is_signed) {
    std::snprintf(buf, sizeof buf, "((%s)%" PRIu64 "%s)", type, bits, bits > 0xffffffffull ? "ul" : "u");
    return buf;
  }
  const int64_t v = (int64_t)(bits << (64 - 8 * size)) >> (64 - 8 * size);
  if (v == INT64_MIN) {
    return "((long)(-9223372036854775807l - 1))";
  }
  const bool wide = v < INT32_MIN || v > INT32_MAX;
  std::snprintf(buf, sizeof buf, "((%s)%" PRId64 "%s)", type, v, wide ? "l" : "");
  return buf;
}

std::string metal_literal(int dtype, uint64_t bits) {
  switch (dtype) {
    case kBool:
      return bits ? "true" : "false";
    case kF16:
      return metal_float(half_to_float((uint16_t)bits));
    case kBF16:
      return metal_float(bfloat_to_float((uint16_t)bits));
    case kF32: {
      const uint32_t b = (uint32_t)bits;
      float f;
      std::memcpy(&f, &b, 4);
      return metal_float(f);
    }
    default:
      return metal_int(dtype, bits);
  }
}

bool ident_char(char c) { return std::isalnum((unsigned char)c) || c == '_'; }

// A registry expression is C++ text, and fill's value arrives spelled for C++ (hex floats, ll suffixes,
// __builtin_nan). Respell those tokens for Metal; everything else passes through.
std::string metal_respell(const std::string& expr) {
  static const char* const builtins[][2] = {
      {"__builtin_nan(\"\")", "NAN"},   {"__builtin_nanf(\"\")", "NAN"},
      {"__builtin_inf()", "INFINITY"}, {"__builtin_inff()", "INFINITY"},
  };
  std::string out;
  size_t i = 0;
  while (i < expr.size()) {
    const char c = expr[i];
    if (std::isalpha((unsigned char)c) || c == '_') {
      bool replaced = false;
      for (const auto& b : builtins) {
        if (expr.compare(i, std::strlen(b[0]), b[0]) == 0) {
          out += b[1];
          i += std::strlen(b[0]);
          replaced = true;
          break;
        }
      }
      if (!replaced) {
        while (i < expr.size() && ident_char(expr[i])) {
          out += expr[i++];
        }
      }
      continue;
    }
    if (!std::isdigit((unsigned char)c)) {
      out += c;
      ++i;
      continue;
    }
    // A number: digits, letters, dots, and a sign right after an exponent letter.
    const size_t start = i;
    const bool hex = expr.compare(i, 2, "0x") == 0 || expr.compare(i, 2, "0X") == 0;
    while (i < expr.size()) {
      const char d = expr[i];
      const char prev = i > start ? (char)std::tolower((unsigned char)expr[i - 1]) : ' ';
      const bool exponent_sign = (d == '+' || d == '-') && (hex ? prev == 'p' : prev == 'e');
      if (!(ident_char(d) || d == '.' || exponent_sign)) {
        break;
      }
      ++i;
    }
    const std::string token = expr.substr(start, i - start);
    const bool is_float = hex ? token.find_first_of("pP") != std::string::npos
                              : token.find_first_of(".eE") != std::string::npos;
    if (is_float) {
      // Values reaching a Metal kernel are at most float32, so the float spelling is exact.
      out += metal_float((float)std::strtod(token.c_str(), nullptr));
      continue;
    }
    std::string digits = token;
    while (!digits.empty() && std::strchr("uUlL", digits.back())) {
      digits.pop_back();
    }
    const bool is_unsigned = token.find_first_of("uU") != std::string::npos;
    const bool is_long = token.find_first_of("lL") != std::string::npos;
    out += digits + (is_unsigned ? "u" : "") + (is_long ? "l" : "");
  }
  return out;
}

std::string metal_kernel(const KernelParts& parts) {
  const size_t num_inputs = parts.input_dtypes.size();
  std::string src;
  src += "// fused[" + parts.summary + "]\n";
  src += "kernel void KILN_KERNEL_NAME(\n";
  for (size_t k = 0; k < num_inputs; ++k) {
    const std::string ks = std::to_string(k);
    src += "    device const " + std::string(kMetalTypes[parts.input_dtypes[k]].storage) + "* p" + ks +
           " [[buffer(" + ks + ")]],\n";
  }
  const std::string out_buffer = std::to_string(num_inputs);
  const std::string args_buffer = std::to_string(num_inputs + 1);
  src += "    device " + std::string(kMetalTypes[parts.out_dtype].storage) + "* po [[buffer(" + out_buffer + ")]],\n";
  src += "    constant kiln_metal_args& A [[buffer(" + args_buffer + ")]],\n";
  src += "    uint3 gid [[thread_position_in_grid]],\n";
  src += "    uint3 grid [[threads_per_grid]]) {\n";
  src += "  const long i = kiln_index(gid, grid);\n";
  src += "  if (i >= A.size) {\n";
  src += "    return;\n";
  src += "  }\n";
  for (size_t k = 0; k < num_inputs; ++k) {
    const TypeNames& t = kMetalTypes[parts.input_dtypes[k]];
    const std::string ks = std::to_string(k);
    src += "  const " + std::string(t.compute) + " a" + ks + " = " + t.load + "(p" + ks + "[kiln_offset(A, " + ks +
           ", i)]);\n";
  }
  src += indent_lines(parts.body, "  ");
  src += "  po[i] = " + std::string(kMetalTypes[parts.out_dtype].store) + "(" + parts.result + ");\n";
  src += "}\n";
  return src;
}

}  // namespace

const LanguageOptions kMetal = {"metal", "on the GPU", kMetalTypes, metal_literal, metal_respell, metal_kernel,
                                "kiln_metal_", nullptr};

std::string metal_full_source(const std::string& kernel) { return std::string(kMetalPreamble) + "\n" + kernel; }

std::string metal_shim_source(const std::string& name, const std::string& kernel) {
  std::string src = std::string(kKernelAbi) + "\n" + kMetalShim + "\n" + metal_full_source(kernel);
  src += "\nextern \"C\" void " + name + "_shim(const kiln_launch* L, int64_t begin, int64_t end) {\n";
  src += "  kiln_shim_launch(" + name + ", L, begin, end);\n";
  src += "}\n";
  return src;
}

}  // namespace kiln
