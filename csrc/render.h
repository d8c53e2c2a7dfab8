// render: one walker over a fused region, two sets of language options (C++ for the CPU, Metal Shading
// Language for Apple GPUs). The walker owns what both share: the registry's scalar expressions, one
// variable per node, loads and stores through the preludes' helpers. A language supplies its spellings
// (types, literals) and the kernel around the body (signature, address spaces, where the index comes from).
#pragma once

#include <string>
#include <vector>

#include "graph.h"

namespace kiln {

// Per dtype: storage type, compute type, load / store / round-to-dtype function names.
// A null storage name means the language cannot hold that dtype (Metal has no float64).
struct TypeNames {
  const char* storage;
  const char* compute;
  const char* load;
  const char* store;
  const char* fix;
};

// What the walker hands a language's kernel template: the region's body, already spelled.
struct KernelParts {
  std::string summary;              // "exp,multiply,add": the region's primitives, for a comment
  std::vector<int> input_dtypes;    // one per kernel input a0, a1, ...
  int out_dtype = kF32;
  std::vector<std::string> body;    // "const float v0 = ...;", one line per node, no indentation
  std::string result;               // the variable that holds the output value
};

// A row region's kernel: body lines for one row i (N elements), inputs kinded 0 row, 1 per row, 2 single.
struct RowParts {
  std::string summary;
  std::vector<int> input_dtypes;
  std::vector<int> input_kinds;
  int out_dtype = kF32;
  bool out_row = true;              // the output is a row (else one value per row)
  std::vector<std::string> body;    // for row i; ends by storing the output
};

struct LanguageOptions {
  const char* name;                  // "cpu" or "metal": shown in error messages
  const char* device;                // "on the GPU": where an unsupported dtype is unsupported
  const TypeNames* types;            // indexed by dtype (kNumDtypes entries)
  // A literal of the given dtype from its bit pattern, spelled so that it round-trips exactly.
  std::string (*literal)(int dtype, uint64_t bits);
  // Respells literals inside a registry expression (fill's value arrives as C++ text); nullptr: as is.
  std::string (*respell)(const std::string& expr);
  // The whole kernel around the body; KILN_KERNEL_NAME stands for the kernel's name.
  std::string (*kernel)(const KernelParts& parts);
  const char* name_prefix;           // kernel names are prefix + a hash of the source
  // The kernel around a row region's body; nullptr: the language does not fuse reductions.
  std::string (*row_kernel)(const RowParts& parts);
};

extern const LanguageOptions kCpu;
extern const LanguageOptions kMetal;

// Render region r with the given language: sets r.name (a hash of the source) and r.source.
// Throws std::invalid_argument("[<language>] ...") for a dtype the language cannot hold.
void render(const Graph& g, Region& r, const LanguageOptions& lang);

// Pieces the languages share.
float half_to_float(uint16_t h);
float bfloat_to_float(uint16_t b);
// The indented lines of a body, each ending in a newline.
std::string indent_lines(const std::vector<std::string>& lines, const std::string& indent);

// The Metal source as C++ for Linux: the kernel ABI, the shim, the Metal preamble, the kernel, and an
// `extern "C"` entry point `<name>_shim` with the CPU kernel's signature that runs the grid serially.
std::string metal_shim_source(const std::string& name, const std::string& kernel);
// The Metal preamble + kernel: what a Metal library would be built from.
std::string metal_full_source(const std::string& kernel);

}  // namespace kiln
