// The engine's mirror of kiln's IR (python/kiln/core/graph.py) and the passes over it.
// Python sends a compact form (value table + equations + op table); passes rewrite it in place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

// dtype codes; the order is the one engine.py sends (kiln.core.dtypes.ALL).
enum Dtype : int {
  kBool, kU8, kU16, kU32, kU64, kI8, kI16, kI32, kI64, kF16, kBF16, kF32, kF64, kC64, kNumDtypes
};

int dtype_size(int dtype);
const char* dtype_short(int dtype);
bool is_float(int dtype);

// What Python tells the engine about each primitive (derived from the registry record).
struct OpInfo {
  std::string name;
  std::string kind;    // unary, binary, ternary, shape, reduction, random, ...
  bool identity;       // the output is the input (c_expr "{0}"): copy, stop_gradient
  bool coerce;         // the output is the input converted to the output's type (astype, broadcast_to)
  bool fusible;        // may join an elementwise region (elementwise kinds with a c_expr, broadcast_to)
  bool permutes;       // a transpose: Node::ints holds its permutation
  bool reshapes;       // the same elements in C order under a new shape (reshape, flatten, squeeze, expand_dims)
};

enum ValueKind : int { kInput, kConst, kLiteral, kNode };

struct Value {
  int kind = kInput;
  int dtype = kF32;
  std::vector<int64_t> shape;
  uint64_t bits = 0;  // literals: the value's bit pattern, zero-extended
  int node = -1;      // kNode: the equation that defines it
};

struct Node {
  int op = 0;               // index into the op table
  std::string params;       // canonical text of the params: equal text means equal params
  std::string expr;         // c_expr with params substituted; operands are {0}, {1}, ...
  std::vector<int64_t> ints;  // a transpose's permutation (empty for other ops)
  std::vector<int> inputs;  // value ids
  int out = -1;             // value id
  int orig = -1;            // index of the equation in the Python Graph
  bool alive = true;
};

struct Graph {
  std::vector<OpInfo> ops;
  std::vector<Value> values;
  std::vector<Node> nodes;
  std::vector<int> outputs;
  int num_inputs = 0;
  int num_consts = 0;
  bool shapeless = false;  // forbids rewrites that are only valid at the traced shapes
};

// A fused region: one kernel. nodes are in topological order; the last one is the output.
struct Region {
  std::vector<int> nodes;
  std::vector<int> inputs;  // external value ids (no literals), in order of first use
  int out = -1;
  bool rows = false;   // a row region: holds last-axis reductions, runs one row per iteration
  std::string name;    // kernel symbol, a hash of the source
  std::string source;  // rendered C++ (without the prelude)
};

// A step of the fused program: a region, or one equation run by the numpy implementation.
struct Step {
  int region = -1;
  int node = -1;
};

struct Fused {
  std::vector<Region> regions;
  std::vector<Step> steps;
};

// Passes.
int simplify(Graph& g);  // returns the number of rewrites
Fused fuse(const Graph& g, int max_inputs, bool rows);
void render_cpu(const Graph& g, Region& r);
std::string literal_text(int dtype, uint64_t bits);

}  // namespace kiln
