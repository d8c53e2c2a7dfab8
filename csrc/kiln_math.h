// kiln_math: the float32 math that CPU and Metal kernels share, so one scalar expression computes the same
// bits on both (DESIGN.md). csrc/kernel_prelude.h and metal/kiln_metal.h include it; when CMake embeds them
// it pastes this text over their include line (JIT-compiled source has no include path).
// Written in the part of C++14 that Metal accepts: plain float functions, no double, no templates, no
// compiler builtins outside the backend block, which maps a handful of primitives per language.
//
// Bit-identical across backends because every step is an IEEE operation with one correct rounding:
// + - * /, sqrt, fma (always fused: explicit, never left to contraction), rint, fabs, copysign, bit casts.
// That holds on the CPU where the compiler has FMA (x86-64 with FMA3 under -march=native, every aarch64; an
// older x86 rounds a*b+c twice) and through metal/metal_shim.h. On a GPU it needs fast math off (division
// and sqrt correctly rounded), no a*b+c contraction by the Metal compiler, and subnormals kept (a GPU that
// flushes them to zero differs below 2^-126); NaN payloads aside.
//
// Max error, ULP of the float32 result against a float64 reference (dense sweeps with special values in
// tests/test_engine_math.py; erf over every float, benchmarks/erf_exhaustive.cpp):
//   poly_exp 1, expm1 2, poly_log 1, log1p 3, erf 3, erfinv 3, poly_tanh 3, sigmoid 3, sin_any 1, cos_any 1
//   (measured 0.93, 1.39, 0.79, 2.25, 2.28, 2.36, 2.22, 2.78, 0.94, 0.92; sigmoid, sin and cos over every float,
//   benchmarks/math_exhaustive.cpp; erfinv with glibc's logf or kiln_poly_log, every 7th float in [0, 1]
//   too); logaddexp(x, y) within 4e-7 (max(|x|, |y|) + 1), absolute: it cancels near x = -y.
// The CPU kernels use kiln_poly_exp/log/tanh for exp, log and tanh; Metal kernels use metal::precise there
// (tests/test_metal.py lists the functions whose results legitimately differ between the two).
#ifndef KILN_MATH_H
#define KILN_MATH_H

// ---- backend primitives: kf:: (kiln float) ---------------------------------------------------------------
#if defined(__METAL_VERSION__) || defined(KILN_METAL_SHIM)
#define KILN_MATH inline
namespace kf {
typedef uint u32;
typedef ulong u64;
typedef long i64;
inline float fma(float a, float b, float c) { return metal::fma(a, b, c); }
inline float rint(float x) { return metal::rint(x); }
inline float fabs(float x) { return metal::fabs(x); }
inline float copysign(float x, float y) { return metal::copysign(x, y); }
inline float sqrt(float x) { return metal::precise::sqrt(x); }
inline bool isnan(float x) { return metal::isnan(x); }
inline float as_float(u32 u) { return as_type<float>(u); }
inline u32 as_u32(float x) { return as_type<u32>(x); }
}  // namespace kf
#else
#include <stdint.h>
#define KILN_MATH static inline __attribute__((always_inline))
namespace kf {
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;
KILN_MATH float fma(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;  // no FMA unit: libm's fmaf would stop vectorisation, so round twice instead
#endif
}
KILN_MATH float rint(float x) { return __builtin_rintf(x); }
KILN_MATH float fabs(float x) { return __builtin_fabsf(x); }
KILN_MATH float copysign(float x, float y) { return __builtin_copysignf(x, y); }
KILN_MATH float sqrt(float x) { return __builtin_sqrtf(x); }
KILN_MATH bool isnan(float x) { return x != x; }
KILN_MATH float as_float(u32 u) { return __builtin_bit_cast(float, u); }
KILN_MATH u32 as_u32(float x) { return __builtin_bit_cast(u32, x); }
}  // namespace kf
#endif

// Both languages spell infinity and NaN differently; the bits are the same.
KILN_MATH float kiln_inf() { return kf::as_float(0x7f800000u); }
KILN_MATH float kiln_qnan() { return kf::as_float(0x7fc00000u); }

KILN_MATH float kiln_pow2i(int n) {
  // 2^n for n in [-126, 127] by building the exponent field.
  return kf::as_float((kf::u32)(n + 127) << 23);
}

// ---- exp family ------------------------------------------------------------------------------------------
// x = n ln2 + r, |r| <= ln2/2, with ln2 split in two so n ln2 is exact; then 2^n scales a polynomial in r.
KILN_MATH float kiln_poly_exp(float x) {
  const float xc0 = x < -104.0f ? -104.0f : x;
  const float xc = xc0 > 88.8f ? 88.8f : xc0;
  const float n = kf::rint(xc * 1.44269504088896341f);
  float r = kf::fma(-n, 0.693145751953125f, xc);
  r = kf::fma(-n, 1.42860682030941723212e-6f, r);
  float p = 1.98412698412698413e-4f;
  p = kf::fma(p, r, 1.38888888888888889e-3f);
  p = kf::fma(p, r, 8.33333333333333333e-3f);
  p = kf::fma(p, r, 4.16666666666666667e-2f);
  p = kf::fma(p, r, 1.66666666666666667e-1f);
  p = kf::fma(p, r, 0.5f);
  p = kf::fma(p, r, 1.0f);
  p = kf::fma(p, r, 1.0f);
  // Two factors: 2^n alone leaves the exponent range for n < -126 (subnormal results).
  const int ni = (int)n;
  const int n1 = ni / 2;
  const float result = p * kiln_pow2i(n1) * kiln_pow2i(ni - n1);
  return kf::isnan(x) ? x : result;
}

KILN_MATH float kiln_expm1(float x) {
  const float xc0 = x < -18.0f ? -18.0f : x;
  const float xc = xc0 > 88.8f ? 88.8f : xc0;
  const float n = kf::rint(xc * 1.44269504088896341f);
  float r = kf::fma(-n, 0.693145751953125f, xc);
  r = kf::fma(-n, 1.42860682030941723212e-6f, r);
  // expm1(r) = r + r^2 (1/2 + r/6 + ...), |r| <= ln2/2.
  float p = 2.48015873015873016e-5f;
  p = kf::fma(p, r, 1.98412698412698413e-4f);
  p = kf::fma(p, r, 1.38888888888888889e-3f);
  p = kf::fma(p, r, 8.33333333333333333e-3f);
  p = kf::fma(p, r, 4.16666666666666667e-2f);
  p = kf::fma(p, r, 1.66666666666666667e-1f);
  p = kf::fma(p, r, 0.5f);
  p = kf::fma(p * r, r, r);
  const int ni = (int)n;
  const int nc = ni > 127 ? 127 : ni;
  const float s = kiln_pow2i(nc);
  const float scale = ni > 127 ? 2.0f : 1.0f;
  const float result = kf::fma(s, p, s - 1.0f) * scale;
  return (kf::isnan(x) || x == 0.0f) ? x : result;
}

KILN_MATH float kiln_sigmoid(float x) {
  const float e = kiln_poly_exp(-kf::fabs(x));
  const float inv = 1.0f / (1.0f + e);
  return x >= 0.0f ? inv : e * inv;
}

KILN_MATH float kiln_poly_tanh(float x) {
  const float a0 = kf::fabs(x);
  const float a = a0 > 10.0f ? 10.0f : a0;  // NaN passes through
  const float t = kiln_expm1(2.0f * a);
  const float r = t / (t + 2.0f);
  return kf::copysign(r, x);
}

// ---- log family ------------------------------------------------------------------------------------------
KILN_MATH float kiln_poly_log(float x) {
  // x = 2^e m with m in [sqrt(2)/2, sqrt(2)); log(m) = 2 atanh(f / (2 + f)) with f = m - 1.
  const bool sub = x < 1.17549435e-38f;
  const float xs = sub ? x * 8388608.0f : x;
  const kf::u32 ix = kf::as_u32(xs);
  int e = (int)((ix >> 23) & 0xffu) - 127 - (sub ? 23 : 0);
  float m = kf::as_float((ix & 0x7fffffu) | 0x3f800000u);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s;
  float R = 0.181818181818181818f;
  R = kf::fma(R, z, 0.222222222222222222f);
  R = kf::fma(R, z, 0.285714285714285714f);
  R = kf::fma(R, z, 0.4f);
  R = kf::fma(R, z, 0.666666666666666667f);
  R = R * z;
  const float hfsq = 0.5f * f * f;
  const float log_m = f - (hfsq - s * (hfsq + R));
  const float fe = (float)e;
  const float result = kf::fma(fe, 0.693145751953125f, kf::fma(fe, 1.42860682030941723212e-6f, log_m));
  const float infinity = kiln_inf();
  const float special = x == 0.0f ? -infinity : (x < 0.0f ? kiln_qnan() : x);  // 0, negatives, +inf, NaN
  const bool is_special = !(x > 0.0f) || x == infinity;
  return is_special ? special : result;
}

KILN_MATH float kiln_log1p(float x) {
  // log1p(x) = log(u) * x / (u - 1) with u = 1 + x rounded: the ratio corrects u's rounding error.
  const float u = 1.0f + x;
  const float d = u - 1.0f;
  const float ratio = x / (d == 0.0f ? 1.0f : d);
  const float result = kiln_poly_log(u) * ratio;
  return (d == 0.0f || x == kiln_inf()) ? x : result;
}

KILN_MATH float kiln_logaddexp(float x, float y) {
  const float d = x - y;
  const float larger = d > 0.0f ? x : y;
  const float tail = kiln_log1p(kiln_poly_exp(-kf::fabs(d)));
  // Equal infinities give d = NaN: the sum is that infinity (log 2 more for equal finite values).
  return x == y ? x + 0.693147180559945309f : (kf::isnan(d) ? d : larger + tail);
}

// ---- erf and erfinv --------------------------------------------------------------------------------------
KILN_MATH float kiln_erf(float x) {
  // Two branches, both cheap (about 23 vector operations), blended with one select:
  //   |x| < 1.3:  erf(x) = a + a h(a^2), h ~ erf(a)/a - 1 (the final fma keeps h's rounding error small);
  //   |x| >= 1.3: erf(x) = 1 - g(a)^8, g ~ erfc(a)^(1/8), smooth and slowly varying on [1.3, 4], so a
  //               degree-6 polynomial fits it; three squarings (the last one fused) replace an exp.
  //               The fit weighs large |x| more (gelu multiplies erf's error by x/2): <= 0.6 ULP beyond 2.
  // a is clamped to 4 in the second branch: erfc(4) < 2^-25, so 1 - g^8 rounds to 1 from there on.
  // NaN takes the first branch (a >= 1.3 is false) and stays NaN; the sign goes back on by copysign.
  // Coefficients: weighted least-squares minimax fits, checked in float32 arithmetic over every float.
  // Hexadecimal float literals are C++17 and Metal is C++14: each coefficient is spelled as the nine-digit
  // decimal that converts to the fitted float exactly.
  const float a = kf::fabs(x);
  const float t = a * a;
  float h = 5.88282383e-05f;
  h = kf::fma(h, t, -0.0007280953f);
  h = kf::fma(h, t, 0.00508538773f);
  h = kf::fma(h, t, -0.0267857797f);
  h = kf::fma(h, t, 0.112815246f);
  h = kf::fma(h, t, -0.376123935f);
  h = kf::fma(h, t, 0.128379121f);
  const float small = kf::fma(a, h, a);
  const float s = a < 4.0f ? a : 4.0f;
  float g = 0.000178032991f;
  g = kf::fma(g, s, -0.00278504309f);
  g = kf::fma(g, s, 0.0143691124f);
  g = kf::fma(g, s, -0.0148357926f);
  g = kf::fma(g, s, -0.056831263f);
  g = kf::fma(g, s, -0.148262739f);
  g = kf::fma(g, s, 1.00175095f);
  const float g2 = g * g;
  const float g4 = g2 * g2;
  const float large = kf::fma(-g4, g4, 1.0f);
  const float r = a >= 1.29999995f ? large : small;
  return kf::copysign(r, x);
}

KILN_MATH float kiln_erfinv_from_log(float x, float t) {
  // MLX's float32 erfinv (mlx/backend/cpu/simd/math.h), given t = log(1 - x^2) with 1 - x^2 from one fma
  // (exact near |x| = 1, where it matters): x times a polynomial in t, one for |t| > 6.125 (|x| > 0.9978)
  // and one below. The log is the caller's: CPU kernels call the C library's logf, as MLX's CPU build does,
  // and so get MLX's bits (kernel_prelude.h); Metal kernels, which have no such function, use kiln_poly_log.
  // +-1 give +-inf (t = -inf), |x| > 1 and NaN give NaN (t = NaN).
  float tail = 3.03697567e-10f;
  tail = kf::fma(tail, t, 2.93243101e-08f);
  tail = kf::fma(tail, t, 1.22150334e-06f);
  tail = kf::fma(tail, t, 2.84108955e-05f);
  tail = kf::fma(tail, t, 0.000393552968f);
  tail = kf::fma(tail, t, 0.00302698812f);
  tail = kf::fma(tail, t, 0.00483185798f);
  tail = kf::fma(tail, t, -0.264646143f);
  tail = kf::fma(tail, t, 0.840016484f);
  float centre = 5.43877832e-09f;
  centre = kf::fma(centre, t, 1.43285448e-07f);
  centre = kf::fma(centre, t, 1.22774793e-06f);
  centre = kf::fma(centre, t, 1.12963626e-07f);
  centre = kf::fma(centre, t, -5.6153076e-05f);
  centre = kf::fma(centre, t, -0.000147697632f);
  centre = kf::fma(centre, t, 0.00231468678f);
  centre = kf::fma(centre, t, 0.0115392581f);
  centre = kf::fma(centre, t, -0.232015476f);
  centre = kf::fma(centre, t, 0.886226892f);
  return x * (kf::fabs(t) > 6.125f ? tail : centre);
}

// ---- sin and cos -----------------------------------------------------------------------------------------
// x = (4k + q) pi/2 + r with |r| <= pi/4, exact for every finite float (Payne-Hanek, in integers, no branch):
// |x| = M 2^(E-150) with M the 24-bit significand. M times a 128-bit window of 2/pi's binary digits holds
// |x| 2/pi mod 4 with 62 fraction bits; the window starts where the digits left out above it only add
// multiples of 4 (k0 below), and the digits below it change the result by less than 2^-70. No float32 lies
// closer to a multiple of pi/2 than about 2^-30 of it, so r keeps 32 significant bits; it comes back as a
// float pair r + lo. Inputs below pi/4 are their own r. Branch-free, with 64-bit integers (Metal has them):
// Metal kernels use kiln_sin_any/kiln_cos_any for every argument, the CPU prelude for |x| >= 2^20 (below
// that its double-precision reduction is faster; both are within 1 ULP).
KILN_MATH kf::u32 kiln_two_over_pi_bits(int i) {
  // Bits 32 i + 1 ... 32 i + 32 of 2/pi's fraction, i in [0, 6] (selects, not a table: no gather).
  kf::u32 w = 0xA2F9836Eu;
  w = i == 1 ? 0x4E441529u : w;
  w = i == 2 ? 0xFC2757D1u : w;
  w = i == 3 ? 0xF534DDC0u : w;
  w = i == 4 ? 0xDB629599u : w;
  w = i == 5 ? 0x3C439041u : w;
  w = i == 6 ? 0xFE5163ABu : w;
  return w;
}

struct kiln_reduced {
  float r;   // r + lo is the reduced argument
  float lo;
  int q;     // the quadrant, 0..3
};

KILN_MATH kiln_reduced kiln_trig_reduce(float a) {
  // a = |x|, finite.
  const kf::u32 ia = kf::as_u32(a);
  const int e = (int)(ia >> 23);
  const kf::u64 m = (kf::u64)((ia & 0x7fffffu) | 0x800000u);
  const int k0 = e > 152 ? (e - 152) >> 5 : 0;  // words of 2/pi above the window: multiples of 4
  // m times the window, as limbs p1..p4 of 32 bits (p0, bits 0..31, only carries into p1).
  kf::u64 t = m * (kf::u64)kiln_two_over_pi_bits(k0 + 3);
  t = m * (kf::u64)kiln_two_over_pi_bits(k0 + 2) + (t >> 32);
  const kf::u64 p1 = t & 0xffffffffu;
  t = m * (kf::u64)kiln_two_over_pi_bits(k0 + 1) + (t >> 32);
  const kf::u64 p2 = t & 0xffffffffu;
  t = m * (kf::u64)kiln_two_over_pi_bits(k0) + (t >> 32);
  const kf::u64 p3 = t & 0xffffffffu;
  const kf::u64 p4 = t >> 32;
  // |x| 2/pi = product 2^(e - 278 - 32 k0): its units bit is bit 278 + 32 k0 - e of the product, and the
  // 64 bits from low = that - 62 up hold 2 integer bits (q) and 62 fraction bits. low is in [33, 90] here.
  const int low = 216 + 32 * k0 - e;
  const int b = low & 31;
  const bool from_p1 = low < 64;
  const kf::u64 under = from_p1 ? ((p2 << 32) | p1) : ((p3 << 32) | p2);
  const kf::u64 over = from_p1 ? p3 : p4;
  const kf::u64 f = (under >> b) | ((over << 1) << (63 - b));
  // Round to the nearest quadrant: the fraction becomes signed, in [-1/2, 1/2).
  const kf::u64 half = (kf::u64)1 << 61;
  const kf::u64 rounded = f + half;
  const int quadrant = (int)(rounded >> 62);
  const kf::i64 frac = (kf::i64)(rounded & ((half << 1) - 1)) - (kf::i64)half;
  const float hi = (float)frac;
  const float rest = (float)(frac - (kf::i64)hi);
  const float scale = kf::as_float(0x20800000u);  // 2^-62
  const float fh = hi * scale;
  const float fl = rest * scale;
  // (fh + fl) pi/2 with pi/2 = P1 + P2 and the product's rounding error kept (fma).
  const float P1 = 1.57079637f;
  const float P2 = -4.37113883e-08f;
  const float rh = fh * P1;
  const float rl = kf::fma(fh, P2, kf::fma(fl, P1, kf::fma(fh, P1, -rh)));
  const float r = rh + rl;
  const float r_lo = rl - (r - rh);
  // Selects between values computed on every path: a conditional float operation (which may trap, as far
  // as the compiler knows) would stop the loop from vectorising.
  const bool small = a < 0.785398163f;
  kiln_reduced out;
  out.r = small ? a : r;
  out.lo = small ? 0.0f : r_lo;
  out.q = small ? 0 : quadrant;
  return out;
}

// sin(r + lo) and cos(r + lo) for |r| <= pi/4 (Cephes' sinf/cosf coefficients); lo is tiny next to r.
KILN_MATH float kiln_sin_kernel(float r, float lo) {
  const float z = r * r;
  float p = -1.9515295891e-4f;
  p = kf::fma(p, z, 8.3321608736e-3f);
  p = kf::fma(p, z, -1.6666654611e-1f);
  return r + kf::fma(r * z, p, lo);
}
KILN_MATH float kiln_cos_kernel(float r, float lo) {
  // 1 - z/2 + z^2 p: w = 1 - h rounds, and the tail ((1 - w) - h) is exact (fdlibm's cos kernel), as is
  // z's own rounding error zl.
  const float z = r * r;
  const float zl = kf::fma(r, r, -z);
  float p = 2.443315711809948e-5f;
  p = kf::fma(p, z, -1.388731625493765e-3f);
  p = kf::fma(p, z, 4.166664568298827e-2f);
  const float h = 0.5f * z;
  const float w = 1.0f - h;
  const float tail = ((1.0f - w) - h) + kf::fma(z * z, p, kf::fma(-r, lo, -0.5f * zl));
  return w + tail;
}

KILN_MATH float kiln_sin_any(float x) {
  const float a = kf::fabs(x);
  const kiln_reduced red = kiln_trig_reduce(a < kiln_inf() ? a : 0.0f);
  const int q = red.q;
  const float odd = kiln_cos_kernel(red.r, red.lo);
  const float even = kiln_sin_kernel(red.r, red.lo);
  const float v = (q & 1) ? odd : even;
  const bool negate = ((kf::as_u32(x) >> 31) ^ (kf::u32)((q >> 1) & 1)) != 0u;  // sin(-x) = -sin(x)
  const float out = negate ? -v : v;
  return a < kiln_inf() ? out : kiln_qnan();
}

KILN_MATH float kiln_cos_any(float x) {
  const float a = kf::fabs(x);
  const kiln_reduced red = kiln_trig_reduce(a < kiln_inf() ? a : 0.0f);
  const int q = red.q;
  const float odd = kiln_sin_kernel(red.r, red.lo);
  const float even = kiln_cos_kernel(red.r, red.lo);
  const float v = (q & 1) ? odd : even;
  const float out = ((q + 1) & 2) ? -v : v;
  return a < kiln_inf() ? out : kiln_qnan();
}

#endif  // KILN_MATH_H
