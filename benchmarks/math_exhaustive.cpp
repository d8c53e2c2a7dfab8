// The largest error of the kernels' float32 sin, cos (the CPU prelude's: a double reduction below 2^20) and
// sin_any, cos_any (csrc/kiln_math.h's exact Payne-Hanek reduction, Metal's everywhere and the CPU's from 2^20
// up), and sigmoid (kiln_math.h) over every float32, in ULP of the float32 result against glibc's double
// functions (tests/float32_sweeps.py's measure). sin is odd and cos even, so they run on the non-negative
// half (and check -0); sigmoid runs on both halves.
//
//   c++ -O3 -march=native -std=c++17 -fno-math-errno -fwrapv -ffp-contract=off -Icsrc \
//       benchmarks/math_exhaustive.cpp -o /tmp/math_exhaustive && /tmp/math_exhaustive sin_any cos_any sigmoid
//
// (the flags are the JIT's; under a minute per function on one core). Measured 2026-12-03 on the project VM:
// sin_any 0.936 ULP, cos_any 0.924 ULP (every finite float, huge arguments included), sigmoid 2.781 ULP (every float,
// subnormal results included).
#include "kernel_abi.h"
#include "kernel_prelude.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

static float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static double ulp_error(float got, double ref) {
  if (std::isnan(got) || std::isnan(ref)) {
    return std::isnan(got) && std::isnan(ref) ? 0.0 : INFINITY;
  }
  const float r32 = static_cast<float>(ref);
  const double spacing = std::fmax(std::nextafter(std::fabs(r32), INFINITY) - std::fabs(r32), std::ldexp(1.0, -149));
  return std::fabs(static_cast<double>(got) - ref) / spacing;
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

template <class Kernel, class Ref>
static double sweep(const char* name, Kernel kernel, Ref ref, bool both_signs) {
  const uint64_t last = 0x7f800000u;  // +inf
  const uint32_t chunk = 1u << 20;
  std::vector<float> x(chunk), y(chunk);
  double worst = 0;
  float worst_x = 0;
  for (int sign = 0; sign < (both_signs ? 2 : 1); ++sign) {
    for (uint64_t base = 0; base <= last; base += chunk) {
      const uint32_t n = static_cast<uint32_t>(base + chunk <= last + 1 ? chunk : last + 1 - base);
      for (uint32_t i = 0; i < n; ++i) {
        x[i] = from_bits(static_cast<uint32_t>(base + i) | (sign ? 0x80000000u : 0u));
      }
#pragma GCC ivdep
      for (uint32_t i = 0; i < n; ++i) {
        y[i] = kernel(x[i]);  // vectorised, as in a kernel
      }
      for (uint32_t i = 0; i < n; ++i) {
        const double e = ulp_error(y[i], ref(static_cast<double>(x[i])));
        if (!(e <= worst)) {
          worst = std::isnan(e) ? INFINITY : e;
          worst_x = x[i];
        }
      }
    }
  }
  std::printf("%s: max %.3f ULP at x = %a (%.9g)\n", name, worst, worst_x, worst_x);
  return worst;
}

int main(int argc, char** argv) {
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    if (name == "sin") {
      ok &= sweep("sin", [](float v) { return kiln_sin(v); }, [](double v) { return std::sin(v); }, false) <= 1.0;
      ok &= std::signbit(kiln_sin(-0.0f)) && std::isnan(kiln_sin(INFINITY)) && std::isnan(kiln_sin(-INFINITY));
    } else if (name == "cos") {
      ok &= sweep("cos", [](float v) { return kiln_cos(v); }, [](double v) { return std::cos(v); }, false) <= 1.0;
      ok &= kiln_cos(-0.0f) == 1.0f && std::isnan(kiln_cos(INFINITY));
    } else if (name == "sin_any") {
      ok &= sweep("sin_any", [](float v) { return kiln_sin_any(v); }, [](double v) { return std::sin(v); }, false) <= 1.0;
    } else if (name == "cos_any") {
      ok &= sweep("cos_any", [](float v) { return kiln_cos_any(v); }, [](double v) { return std::cos(v); }, false) <= 1.0;
    } else if (name == "sigmoid") {
      ok &= sweep("sigmoid", [](float v) { return kiln_sigmoid(v); }, ref_sigmoid, true) <= 3.0;
    } else {
      std::printf("unknown function %s (sin, cos, sin_any, cos_any, sigmoid)\n", name.c_str());
      ok = false;
    }
  }
  return ok ? 0 : 1;
}
