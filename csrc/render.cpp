// render: the walker shared by every kernel language. It turns a fused region into one line per node
// (the registry's scalar expression with operands filled in, rounded to the node's dtype), then asks the
// language for the kernel around those lines. The source depends on the region's structure and dtypes,
// never on sizes, and the kernel's name is a hash of it, so equal regions share one kernel.
#include "render.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

namespace kiln {

namespace {

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

const char* dtype_name(int dtype) {
  static const char* names[kNumDtypes] = {"bool",  "uint8",   "uint16",   "uint32",  "uint64",
                                          "int8",  "int16",   "int32",    "int64",   "float16",
                                          "bfloat16", "float32", "float64", "complex64"};
  return names[dtype];
}

// Every dtype the kernel touches must exist in the language (Metal has no float64).
void check_dtype(const LanguageOptions& lang, int dtype) {
  if (lang.types[dtype].storage == nullptr) {
    throw std::invalid_argument(std::string("[") + lang.name + "] " + dtype_name(dtype) + " is not supported " +
                                lang.device);
  }
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

float bfloat_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::string indent_lines(const std::vector<std::string>& lines, const std::string& indent) {
  std::string out;
  for (const std::string& line : lines) {
    out += indent + line + "\n";
  }
  return out;
}

void render(const Graph& g, Region& r, const LanguageOptions& lang) {
  KernelParts parts;
  std::unordered_map<int, std::string> operand;
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    const int dtype = g.values[r.inputs[k]].dtype;
    check_dtype(lang, dtype);
    operand[r.inputs[k]] = "a" + std::to_string(k);
    parts.input_dtypes.push_back(dtype);
  }
  for (size_t j = 0; j < r.nodes.size(); ++j) {
    const Node& n = g.nodes[r.nodes[j]];
    std::vector<std::string> args;
    for (int v : n.inputs) {
      const Value& val = g.values[v];
      if (val.kind == kLiteral) {
        check_dtype(lang, val.dtype);
        args.push_back(lang.literal(val.dtype, val.bits));
      } else {
        args.push_back(operand.at(v));
      }
    }
    const int dtype = g.values[n.out].dtype;
    check_dtype(lang, dtype);
    const TypeNames& t = lang.types[dtype];
    const std::string expr = lang.respell ? lang.respell(n.expr) : n.expr;
    std::string var = "v" + std::to_string(j);
    parts.body.push_back("const " + std::string(t.compute) + " " + var + " = " + t.fix + "(" +
                         substitute(expr, args) + ");");
    operand[n.out] = var;
    parts.summary += (j ? "," : "") + g.ops[n.op].name;
  }
  parts.out_dtype = g.values[r.out].dtype;
  parts.result = operand.at(r.out);
  std::string src = lang.kernel(parts);

  uint64_t h1 = fnv1a(src, 1469598103934665603ull);
  uint64_t h2 = fnv1a(src, 0x9e3779b97f4a7c15ull);
  char hash[40];
  std::snprintf(hash, sizeof hash, "%016" PRIx64 "%08" PRIx64, h1, h2 >> 32);
  r.name = std::string(lang.name_prefix) + hash;
  const std::string marker = "KILN_KERNEL_NAME";
  src.replace(src.find(marker), marker.size(), r.name);
  r.source = src;
}

}  // namespace kiln
