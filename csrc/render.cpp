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

namespace {

// "const T v = fix(expr);" for node n, operands looked up in `operand`.
std::string node_line(const Graph& g, const Node& n, const std::unordered_map<int, std::string>& operand,
                      const LanguageOptions& lang, const std::string& var) {
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
  return "const " + std::string(t.compute) + " " + var + " = " + t.fix + "(" + substitute(expr, args) + ");";
}

void name_kernel(Region& r, std::string src, const LanguageOptions& lang) {
  uint64_t h1 = fnv1a(src, 1469598103934665603ull);
  uint64_t h2 = fnv1a(src, 0x9e3779b97f4a7c15ull);
  char hash[40];
  std::snprintf(hash, sizeof hash, "%016" PRIx64 "%08" PRIx64, h1, h2 >> 32);
  r.name = std::string(lang.name_prefix) + hash;
  const std::string marker = "KILN_KERNEL_NAME";
  src.replace(src.find(marker), marker.size(), r.name);
  r.source = src;
}

// A row region: per-row values (reductions and what is computed from them) live at row scope; row values
// are recomputed inside each loop that needs them (a reduction's loop, and the output's loop), so the row
// is read once per reduction plus once for the output, from cache, and written once.
// max/min compare exactly as numpy (NaN propagates); sum accumulates in double, rounded once.
void render_rows(const Graph& g, Region& r, const LanguageOptions& lang) {
  std::vector<int64_t> row;
  for (int i : r.nodes) {
    if (g.ops[g.nodes[i].op].kind == "reduction") {
      row = g.values[g.nodes[i].inputs[0]].shape;
      break;
    }
  }
  std::vector<int64_t> cell = row;
  cell.back() = 1;
  RowParts parts;
  std::unordered_map<int, std::string> operand;  // row-scope names
  std::vector<std::string> row_loads;
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    const Value& v = g.values[r.inputs[k]];
    check_dtype(lang, v.dtype);
    const TypeNames& t = lang.types[v.dtype];
    const int kind = v.shape == row ? 0 : (v.shape == cell ? 1 : 2);
    const std::string a = "a" + std::to_string(k);
    const std::string p = "p" + std::to_string(k);
    parts.input_dtypes.push_back(v.dtype);
    parts.input_kinds.push_back(kind);
    operand[r.inputs[k]] = a;
    if (kind == 0) {
      row_loads.push_back("const " + std::string(t.compute) + " " + a + " = " + t.load + "(" + p + "[i * N + c]);");
    } else {
      parts.body.push_back("const " + std::string(t.compute) + " " + a + " = " + t.load + "(" + p +
                           (kind == 1 ? "[i]);" : "[0]);"));
    }
  }
  std::unordered_map<int, bool> is_row;  // value id -> computed inside loops
  std::unordered_map<int, int> pos;      // value id -> index in r.nodes
  for (size_t j = 0; j < r.nodes.size(); ++j) {
    const Node& n = g.nodes[r.nodes[j]];
    const bool red = g.ops[n.op].kind == "reduction";
    is_row[n.out] = !red && !(g.values[n.out].shape == cell && cell != row);
    pos[n.out] = static_cast<int>(j);
  }
  // The loop body computing row value `target`: its row-node closure in order, then loads first.
  // The row nodes `target` needs, stopping at `kept` (a value the output buffer already holds).
  auto closure = [&](int target, int kept) {
    std::vector<bool> need(r.nodes.size(), false);
    std::vector<int> stack = {target};
    while (!stack.empty()) {
      int v = stack.back();
      stack.pop_back();
      auto it = pos.find(v);
      if (it == pos.end() || !is_row[v] || need[it->second] || v == kept) {
        continue;
      }
      need[it->second] = true;
      for (int u : g.nodes[r.nodes[it->second]].inputs) {
        stack.push_back(u);
      }
    }
    return need;
  };
  check_dtype(lang, g.values[r.out].dtype);
  const TypeNames& ot = lang.types[g.values[r.out].dtype];
  auto loop_body = [&](int target, int kept) {
    std::vector<bool> need = closure(target, kept);
    std::vector<std::string> lines = row_loads;
    std::unordered_map<int, std::string> names = operand;
    if (kept >= 0) {
      lines.push_back("const " + std::string(lang.types[g.values[kept].dtype].compute) + " wk = " + ot.load +
                      "(po[i * N + c]);");
      names[kept] = "wk";
    }
    for (size_t j = 0; j < r.nodes.size(); ++j) {
      if (!need[j]) {
        continue;
      }
      const Node& n = g.nodes[r.nodes[j]];
      std::string var = "w" + std::to_string(j);
      lines.push_back(node_line(g, n, names, lang, var));
      names[n.out] = var;
    }
    return std::make_pair(lines, names.at(target));
  };
  // The last reduction's operand, when the output needs it too, is stored in the output row by that
  // reduction's loop and read back by the output's loop instead of being computed again (softmax's exp).
  int kept = -1;
  int last_reduction = -1;
  for (size_t j = 0; j < r.nodes.size(); ++j) {
    if (g.ops[g.nodes[r.nodes[j]].op].kind == "reduction") {
      last_reduction = static_cast<int>(j);
    }
  }
  if (is_row[r.out] && last_reduction >= 0) {
    const int x = g.nodes[r.nodes[last_reduction]].inputs[0];
    auto it = pos.find(x);
    if (it != pos.end() && is_row[x] && x != r.out && g.values[x].dtype == g.values[r.out].dtype &&
        closure(r.out, -1)[it->second]) {
      kept = x;
    }
  }
  for (size_t j = 0; j < r.nodes.size(); ++j) {
    const Node& n = g.nodes[r.nodes[j]];
    const std::string& name = g.ops[n.op].name;
    parts.summary += (j ? "," : "") + name;
    if (is_row[n.out]) {
      continue;
    }
    const int dtype = g.values[n.out].dtype;
    check_dtype(lang, dtype);
    const TypeNames& t = lang.types[dtype];
    const std::string var = "v" + std::to_string(j);
    if (g.ops[n.op].kind != "reduction") {
      parts.body.push_back(node_line(g, n, operand, lang, var));
      operand[n.out] = var;
      continue;
    }
    auto [lines, x] = loop_body(n.inputs[0], -1);
    if (static_cast<int>(j) == last_reduction && kept >= 0) {
      lines.push_back("po[i * N + c] = " + std::string(ot.store) + "(" + x + ");");
    }
    // Blocks of the row: an elementwise loop fills a buffer, the language's kiln_row_<op> folds it into
    // KILN_LANES accumulators (vectorized; a sum's are double), kiln_row_<op>_lanes combines them.
    const std::string acc = "r" + std::to_string(j);
    const std::string buf = "t" + std::to_string(j);
    const bool sum = name == "sum";
    const std::string acc_t = sum ? "double" : t.compute;
    const std::string init = sum ? "0.0" : std::string(name == "max" ? "-" : "") + "__builtin_inf()";
    parts.body.push_back(acc_t + " " + acc + "[KILN_LANES];");
    parts.body.push_back("for (int u = 0; u < KILN_LANES; ++u) " + acc + "[u] = " + init + ";");
    parts.body.push_back("for (int64_t b = 0; b < N; b += KILN_BLOCK) {");
    parts.body.push_back("  const int64_t e = N - b < KILN_BLOCK ? N : b + KILN_BLOCK;");
    parts.body.push_back("  " + std::string(t.compute) + " " + buf + "[KILN_BLOCK];");
    parts.body.push_back("  #pragma GCC ivdep");
    parts.body.push_back("  for (int64_t c = b; c < e; ++c) {");
    for (const std::string& l : lines) {
      parts.body.push_back("    " + l);
    }
    parts.body.push_back("    " + buf + "[c - b] = " + x + ";");
    parts.body.push_back("  }");
    parts.body.push_back("  kiln_row_" + name + "(" + acc + ", " + buf + ", e - b);");
    parts.body.push_back("}");
    parts.body.push_back("const " + std::string(t.compute) + " " + var + " = " + t.fix + "(kiln_row_" + name +
                         "_lanes(" + acc + "));");
    operand[n.out] = var;
  }
  check_dtype(lang, g.values[r.out].dtype);
  parts.out_dtype = g.values[r.out].dtype;
  parts.out_row = is_row[r.out];
  if (parts.out_row) {
    auto [lines, x] = loop_body(r.out, kept);
    parts.body.push_back("#pragma GCC ivdep");
    parts.body.push_back("for (int64_t c = 0; c < N; ++c) {");
    for (const std::string& l : lines) {
      parts.body.push_back("  " + l);
    }
    parts.body.push_back("  po[i * N + c] = " + std::string(ot.store) + "(" + x + ");");
    parts.body.push_back("}");
  } else {
    parts.body.push_back("po[i] = " + std::string(ot.store) + "(" + operand.at(r.out) + ");");
  }
  name_kernel(r, lang.row_kernel(parts), lang);
}

}  // namespace

void render(const Graph& g, Region& r, const LanguageOptions& lang) {
  if (r.rows) {
    render_rows(g, r, lang);
    return;
  }
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
    std::string var = "v" + std::to_string(j);
    parts.body.push_back(node_line(g, n, operand, lang, var));
    operand[n.out] = var;
    parts.summary += (j ? "," : "") + g.ops[n.op].name;
  }
  parts.out_dtype = g.values[r.out].dtype;
  parts.result = operand.at(r.out);
  name_kernel(r, lang.kernel(parts), lang);
}

}  // namespace kiln
