// render_cpu: one C++ kernel per fused region. The source depends on the region's structure and dtypes,
// never on sizes: the same kernel serves every shape, with shapes and strides passed at run time.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "graph.h"

namespace kiln {

namespace {

// Per dtype: storage type, compute type, load / store / round-to-dtype function names.
struct TypeNames {
  const char* storage;
  const char* compute;
  const char* load;
  const char* store;
  const char* fix;
};

const TypeNames& names(int dtype) {
  static const TypeNames table[kNumDtypes] = {
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
  return table[dtype];
}

float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31;
  int exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  double mag;
  if (exp == 0) {
    mag = std::ldexp((double)mant, -24);
  } else if (exp == 31) {
    mag = mant ? NAN : INFINITY;
  } else {
    mag = std::ldexp((double)(mant | 0x400u), exp - 25);
  }
  float f = (float)mag;
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
}

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
    std::snprintf(buf, sizeof buf, "((%s)%" PRIu64 "ull)", names(dtype).compute, bits);
    return buf;
  }
  int64_t v = (int64_t)(bits << (64 - 8 * size)) >> (64 - 8 * size);
  if (v == INT64_MIN) {
    std::snprintf(buf, sizeof buf, "((int64_t)(-9223372036854775807ll - 1))");
  } else {
    std::snprintf(buf, sizeof buf, "((%s)%" PRId64 "ll)", names(dtype).compute, v);
  }
  return buf;
}

std::string substitute(const std::string& expr, const std::vector<std::string>& operands) {
  std::string out;
  for (size_t i = 0; i < expr.size(); ++i) {
    if (expr[i] == '{') {
      size_t close = expr.find('}', i);
      if (close != std::string::npos) {
        std::string index = expr.substr(i + 1, close - i - 1);
        bool numeric = !index.empty() && index.find_first_not_of("0123456789") == std::string::npos;
        if (numeric && std::stoul(index) < operands.size()) {
          out += operands[std::stoul(index)];
          i = close;
          continue;
        }
      }
    }
    out += expr[i];
  }
  return out;
}

uint64_t fnv1a(const std::string& s, uint64_t h) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

int dtype_size(int dtype) {
  static const int sizes[kNumDtypes] = {1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 2, 4, 8, 8};
  return sizes[dtype];
}

const char* dtype_short(int dtype) {
  static const char* shorts[kNumDtypes] = {"bool", "u8", "u16", "u32", "u64", "i8",  "i16",
                                           "i32",  "i64", "f16", "bf16", "f32", "f64", "c64"};
  return shorts[dtype];
}

bool is_float(int dtype) { return dtype >= kF16 && dtype <= kF64; }

std::string literal_text(int dtype, uint64_t bits) {
  switch (dtype) {
    case kBool:
      return bits ? "true" : "false";
    case kF16:
      return float_text(half_to_float((uint16_t)bits), true);
    case kBF16: {
      uint32_t b = (uint32_t)bits << 16;
      float f;
      std::memcpy(&f, &b, 4);
      return float_text(f, true);
    }
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

void render_cpu(const Graph& g, Region& r) {
  std::unordered_map<int, std::string> operand;
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    operand[r.inputs[k]] = "a" + std::to_string(k);
  }
  std::string body;
  std::string summary;
  for (size_t j = 0; j < r.nodes.size(); ++j) {
    const Node& n = g.nodes[r.nodes[j]];
    std::vector<std::string> args;
    for (int v : n.inputs) {
      const Value& val = g.values[v];
      args.push_back(val.kind == kLiteral ? literal_text(val.dtype, val.bits) : operand.at(v));
    }
    const TypeNames& t = names(g.values[n.out].dtype);
    std::string var = "v" + std::to_string(j);
    body += "      const " + std::string(t.compute) + " " + var + " = " + t.fix + "(" + substitute(n.expr, args) +
            ");\n";
    operand[n.out] = var;
    summary += (j ? "," : "") + g.ops[n.op].name;
  }
  const int out_dtype = g.values[r.out].dtype;
  const std::string result = operand.at(r.out);

  // Loads differ between the flat and the strided loop; the body is the same text in both.
  auto loads = [&](bool strided) {
    std::string s;
    for (size_t k = 0; k < r.inputs.size(); ++k) {
      const TypeNames& t = names(g.values[r.inputs[k]].dtype);
      std::string idx = strided ? "j * s" + std::to_string(k) : "j";
      s += "      const " + std::string(t.compute) + " a" + std::to_string(k) + " = " + t.load + "(q" +
           std::to_string(k) + "[" + idx + "]);\n";
    }
    return s;
  };
  const std::string store = "      qo[j] = " + std::string(names(out_dtype).store) + "(" + result + ");\n";
  std::string pointers;
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    const TypeNames& t = names(g.values[r.inputs[k]].dtype);
    std::string ks = std::to_string(k);
    pointers += "  const " + std::string(t.storage) + "* __restrict p" + ks + " = (const " + t.storage + "*)L->in[" +
                ks + "];\n";
  }
  const std::string out_t = names(out_dtype).storage;

  std::string src;
  src += "// fused[" + summary + "]\n";
  src += "extern \"C\" void KILN_KERNEL_NAME(const kiln_launch* L, int64_t begin, int64_t end) {\n";
  src += pointers;
  src += "  " + out_t + "* __restrict po = (" + out_t + "*)L->out;\n";
  src += "  if (L->variant == KILN_FLAT) {\n";
  src += "    for (int64_t b = begin; b < end; b += KILN_BLOCK) {\n";
  src += "    const int64_t n = end - b < KILN_BLOCK ? end - b : KILN_BLOCK;\n";
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    const TypeNames& t = names(g.values[r.inputs[k]].dtype);
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
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    std::string ks = std::to_string(k);
    src += "  const int64_t s" + ks + " = L->strides[" + ks + "][nd - 1];\n";
  }
  src += "  for (int64_t pos = begin; pos < end;) {\n";
  src += "    const int64_t n = (inner - idx[nd - 1]) < (end - pos) ? (inner - idx[nd - 1]) : (end - pos);\n";
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    const TypeNames& t = names(g.values[r.inputs[k]].dtype);
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

  // The name is a hash of the structure-only source, so equal regions share one kernel.
  uint64_t h1 = fnv1a(src, 1469598103934665603ull);
  uint64_t h2 = fnv1a(src, 0x9e3779b97f4a7c15ull);
  char name[64];
  std::snprintf(name, sizeof name, "kiln_%016" PRIx64 "%08" PRIx64, h1, h2 >> 32);
  r.name = name;
  std::string marker = "KILN_KERNEL_NAME";
  src.replace(src.find(marker), marker.size(), r.name);
  r.source = src;
}

}  // namespace kiln
