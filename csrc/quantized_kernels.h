// The affine-quantized family (MLX's layout), JIT-compiled per specialisation (after kernel_abi.h and the
// prelude). Element i of a row of w occupies bits [i*bits, (i+1)*bits) of the row's little-endian bit stream;
// a group of KILN_GROUP elements shares a scale and a bias: value = scale * code + bias. Defined before this
// text: KILN_KERNEL, KILN_OP (one of the KILN_QOP_* below), KILN_BITS, KILN_GROUP, KILN_SCALE (storage of
// scales and biases) and KILN_OUT (storage of the output): 0 float32, 1 float16, 2 bfloat16.
// Products never materialise the float weights: matrix-vector work decodes a group into registers.
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define KILN_Q_AVX512 1
#endif

#define KILN_QOP_QMV_T 1   // out[b, m, n] = sum_k x[b, m, k] * deq(w)[b, n, k]  (transpose=True)
#define KILN_QOP_QMV_N 2   // out[b, m, n] = sum_k x[b, m, k] * deq(w)[b, k, n]  (transpose=False)
#define KILN_QOP_DEQUANT 3 // out[r, k] = deq(w)[r, k], rounded as the interpreter rounds (two ops in KILN_OUT)
#define KILN_QOP_QUANTIZE 4 // (words, scales, biases) of rows of w (stored as KILN_SCALE), MLX's affine rule

KILN_INLINE float kiln_q_load(const void* p, int64_t i, int type) {
  if (type == 0) {
    return ((const float*)p)[i];
  }
  const uint16_t h = ((const uint16_t*)p)[i];
  return type == 1 ? kiln_ld_f16(kiln_bits<kiln_f16_t>(h)) : kiln_ld_bf16(h);
}

// float32 rounded to the output type and back (the interpreter computes each op in the output type).
KILN_INLINE float kiln_q_round(float v) {
#if KILN_OUT == 1
  return kiln_fix_f16(v);
#elif KILN_OUT == 2
  return kiln_fix_bf16(v);
#else
  return v;
#endif
}

// Element i of a buffer stored as `type` (0 float32, 1 float16, 2 bfloat16), rounded to nearest even.
KILN_INLINE void kiln_q_write(void* p, int64_t i, float v, int type) {
  if (type == 0) {
    ((float*)p)[i] = v;
  } else if (type == 1) {
    ((uint16_t*)p)[i] = kiln_bits<uint16_t>(kiln_st_f16(v));
  } else {
    ((uint16_t*)p)[i] = kiln_st_bf16(v);
  }
}

KILN_INLINE void kiln_q_store(void* p, int64_t i, float v) { kiln_q_write(p, i, v, KILN_OUT); }

#define KILN_QMASK ((1u << KILN_BITS) - 1u)

// Codes of elements [8j, 8j + 8) of a row: eight elements always fill exactly KILN_BITS bytes.
KILN_INLINE void kiln_decode8(const uint8_t* row, int64_t j, float* out) {
  uint64_t v = 0;
  memcpy(&v, row + j * KILN_BITS, KILN_BITS);
  for (int i = 0; i < 8; ++i) {
    out[i] = (float)((uint32_t)(v >> (i * KILN_BITS)) & KILN_QMASK);
  }
}

// The codes of group g of a row as floats, in element order.
KILN_INLINE void kiln_decode_group(const uint8_t* row, int64_t g, float* out) {
  for (int j = 0; j < KILN_GROUP / 8; ++j) {
    kiln_decode8(row, g * (KILN_GROUP / 8) + j, out + 8 * j);
  }
}

// With 4 bits, x arrives permuted within every 32 elements: the 16 even elements, then the 16 odd ones, so
// the low and high nibbles of 16 bytes meet their x without a shuffle. KILN_XPOS maps an element to its place.
#if KILN_BITS == 4
#define KILN_XPOS(e) (((e) & ~31) | (((e) & 1) << 4) | (((e) & 31) >> 1))
#else
#define KILN_XPOS(e) (e)
#endif

#if KILN_Q_AVX512 && (KILN_BITS == 4 || KILN_BITS == 8)
// 32 codes (at `p`, 16 bytes with 4 bits, 32 with 8) as two float vectors, in x's order (the kernel order).
#define KILN_Q_FAST 1
#define KILN_CHUNK_BYTES (32 * KILN_BITS / 8)
KILN_INLINE void kiln_decode32(const uint8_t* p, __m512* v0, __m512* v1) {
#if KILN_BITS == 8
  *v0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p)));
  *v1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(p + 16))));
#else
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p));
  *v0 = _mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(15)));
  *v1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
#endif
}
#endif

#if KILN_OP == KILN_QOP_QMV_T
#if KILN_Q_FAST
// Sixteen scales or biases (the first `n`; the rest read as 0) as float32.
KILN_INLINE __m512 kiln_q_load16(const void* p, int64_t i, int n) {
  const __mmask16 mask = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
#if KILN_SCALE == 0
  return _mm512_maskz_loadu_ps(mask, (const float*)p + i);
#else
  const __m256i bits = _mm256_maskz_loadu_epi16(mask, (const uint16_t*)p + i);
#if KILN_SCALE == 1
  return _mm512_cvtph_ps(bits);
#else
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
#endif
#endif
}
#endif

// sum_g bias[g] * xsum[g]: the biases meet the group sums of x.
KILN_INLINE float kiln_bias_dot(const void* bi, const float* xsum, int64_t G) {
#if KILN_Q_FAST
  __m512 acc = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; g += 16) {
    const int n = G - g >= 16 ? 16 : (int)(G - g);
    const __m512 xs = _mm512_maskz_loadu_ps((__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1u), xsum + g);
    acc = _mm512_fmadd_ps(kiln_q_load16(bi, g, n), xs, acc);
  }
  return _mm512_reduce_add_ps(acc);
#else
  float b = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    b += kiln_q_load(bi, g, KILN_SCALE) * xsum[g];
  }
  return b;
#endif
}

// R rows of w (rows `ldw` bytes apart, scales/biases `lds` elements apart) against MM rows of x (K floats
// each); xsum rows hold G group sums.
template <int R, int MM>
KILN_INLINE void kiln_qdot(const float* x, int64_t K, const float* xsum, const uint8_t* row, int64_t ldw,
                           const char* sc, const char* bi, int64_t lds, int64_t G, float dots[MM][R]) {
  const int ssize = KILN_SCALE == 0 ? 4 : 2;
#if KILN_Q_FAST
  __m512 acc[MM][R];
  for (int m = 0; m < MM; ++m) {
    for (int r = 0; r < R; ++r) {
      acc[m][r] = _mm512_setzero_ps();
    }
  }
  for (int64_t g = 0; g < G; ++g) {
    __m512 s[R];
    for (int r = 0; r < R; ++r) {
      s[r] = _mm512_set1_ps(kiln_q_load(sc + r * lds * ssize, g, KILN_SCALE));
    }
    const uint8_t* codes = row + g * (KILN_GROUP * KILN_BITS / 8);
    for (int m = 0; m < MM; ++m) {
      const float* xg = x + m * K + g * KILN_GROUP;
      __m512 d[R];
      for (int r = 0; r < R; ++r) {
        d[r] = _mm512_setzero_ps();
      }
      for (int c = 0; c < KILN_GROUP / 32; ++c) {
        const __m512 x0 = _mm512_loadu_ps(xg + 32 * c);
        const __m512 x1 = _mm512_loadu_ps(xg + 32 * c + 16);
        for (int r = 0; r < R; ++r) {
          __m512 v0, v1;
          kiln_decode32(codes + r * ldw + c * KILN_CHUNK_BYTES, &v0, &v1);
          d[r] = _mm512_fmadd_ps(v0, x0, d[r]);
          d[r] = _mm512_fmadd_ps(v1, x1, d[r]);
        }
      }
      for (int r = 0; r < R; ++r) {
        acc[m][r] = _mm512_fmadd_ps(d[r], s[r], acc[m][r]);
      }
    }
  }
  for (int m = 0; m < MM; ++m) {
    for (int r = 0; r < R; ++r) {
      dots[m][r] = _mm512_reduce_add_ps(acc[m][r]);
    }
  }
#else
  float q[KILN_GROUP];
  for (int r = 0; r < R; ++r) {
    for (int m = 0; m < MM; ++m) {
      dots[m][r] = 0.0f;
    }
    for (int64_t g = 0; g < G; ++g) {
      kiln_decode_group(row + r * ldw, g, q);
      const float s = kiln_q_load(sc + r * lds * ssize, g, KILN_SCALE);
      for (int m = 0; m < MM; ++m) {
        const float* xg = x + m * K + g * KILN_GROUP;
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // eight running sums: a vectorisable reduction
        for (int i = 0; i < KILN_GROUP; i += 8) {
          for (int l = 0; l < 8; ++l) {
            part[l] += q[i + l] * xg[KILN_XPOS(i + l)];
          }
        }
        dots[m][r] += (((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]))) * s;
      }
    }
  }
#endif
  for (int m = 0; m < MM; ++m) {
    for (int r = 0; r < R; ++r) {
      dots[m][r] += kiln_bias_dot(bi + r * lds * ssize, xsum + m * G, G);
    }
  }
}

// Tasks [begin, end) are (batch, n) pairs. in[0] float32 x (count_x, M, K), in[1] packed w, in[2] scales,
// in[3] biases, in[4] float32 group sums of x (B?, M, G), in[5..7] per-batch offsets (int64) of x (and its
// group sums, in rows of M), w (bytes) and scales/biases (elements). shape = {B, M, N, K, w row bytes,
// scale row stride}. out (B, M, N) contiguous.
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const int64_t M = L->shape[1], N = L->shape[2], K = L->shape[3], ldw = L->shape[4], lds = L->shape[5];
  const int64_t G = K / KILN_GROUP;
  const int ssize = KILN_SCALE == 0 ? 4 : 2;
  const int64_t* xoff = (const int64_t*)L->in[5];
  const int64_t* woff = (const int64_t*)L->in[6];
  const int64_t* soff = (const int64_t*)L->in[7];
  for (int64_t t = begin; t < end;) {
    const int64_t b = t / N, n = t % N;
    int64_t rows = N - n < end - t ? N - n : end - t;
    const float* x = (const float*)L->in[0] + xoff[b] * M * K;
    const float* xsum = (const float*)L->in[4] + xoff[b] * M * G;
    const uint8_t* row = (const uint8_t*)L->in[1] + woff[b] + n * ldw;
    const char* sc = L->in[2] + (soff[b] + n * lds) * ssize;
    const char* bi = L->in[3] + (soff[b] + n * lds) * ssize;
    if (M == 1 && rows >= 4) {
      float dots[1][4];
      kiln_qdot<4, 1>(x, K, xsum, row, ldw, sc, bi, lds, G, dots);
      for (int r = 0; r < 4; ++r) {
        kiln_q_store(L->out, b * N + n + r, dots[0][r]);
      }
      t += 4;
      continue;
    }
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      float dots[4][1];
      kiln_qdot<1, 4>(x + m * K, K, xsum + m * G, row, ldw, sc, bi, lds, G, dots);
      for (int i = 0; i < 4; ++i) {
        kiln_q_store(L->out, (b * M + m + i) * N + n, dots[i][0]);
      }
    }
    for (; m < M; ++m) {
      float dots[1][1];
      kiln_qdot<1, 1>(x + m * K, K, xsum + m * G, row, ldw, sc, bi, lds, G, dots);
      kiln_q_store(L->out, (b * M + m) * N + n, dots[0][0]);
    }
    t += 1;
  }
}
#endif

#if KILN_OP == KILN_QOP_QMV_N
// Tasks [begin, end) are (batch, column group) pairs: out[b, m, group] accumulates over every row k of w.
// Arguments as for QMV_T, with x unpermuted, in[4] unused, and shape[2] = N (columns of the result).
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const int64_t M = L->shape[1], N = L->shape[2], K = L->shape[3], ldw = L->shape[4], lds = L->shape[5];
  const int64_t G = N / KILN_GROUP;
  const int ssize = KILN_SCALE == 0 ? 4 : 2;
  const int64_t* xoff = (const int64_t*)L->in[5];
  const int64_t* woff = (const int64_t*)L->in[6];
  const int64_t* soff = (const int64_t*)L->in[7];
  float q[KILN_GROUP];
  float acc[KILN_GROUP];
  for (int64_t t = begin; t < end; ++t) {
    const int64_t b = t / G, g = t % G;
    const float* x = (const float*)L->in[0] + xoff[b] * M * K;
    for (int64_t m = 0; m < M; ++m) {
      for (int i = 0; i < KILN_GROUP; ++i) {
        acc[i] = 0.0f;
      }
      for (int64_t k = 0; k < K; ++k) {
        const uint8_t* row = (const uint8_t*)L->in[1] + woff[b] + k * ldw;
        const int64_t at = (soff[b] + k * lds) * ssize;
        const float sg = kiln_q_load(L->in[2] + at, g, KILN_SCALE);
        const float bias = kiln_q_load(L->in[3] + at, g, KILN_SCALE);
        kiln_decode_group(row, g, q);
        const float xk = x[m * K + k];
        for (int i = 0; i < KILN_GROUP; ++i) {
          acc[i] += xk * (sg * q[i] + bias);
        }
      }
      for (int i = 0; i < KILN_GROUP; ++i) {
        kiln_q_store(L->out, (b * M + m) * N + g * KILN_GROUP + i, acc[i]);
      }
    }
  }
}
#endif

#if KILN_OP == KILN_QOP_DEQUANT
// KILN_KERNEL_ORDER 1: codes come out in the kernel order (KILN_XPOS), for products whose x is permuted alike;
// with float32 output that order lets 4- and 8-bit groups decode in registers.
#if !defined(KILN_KERNEL_ORDER)
#define KILN_KERNEL_ORDER 0
#endif
#define KILN_DEQUANT_FAST (KILN_Q_FAST && KILN_OUT == 0 && (KILN_BITS == 8 || KILN_KERNEL_ORDER))

// Rows [begin, end) of the (rows, K) result: in[0] packed w (row stride shape[1] bytes), in[1] scales and
// in[2] biases (row stride shape[2] elements); shape = {rows, w row bytes, scale row stride, K}.
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const int64_t ldw = L->shape[1], lds = L->shape[2], K = L->shape[3];
  const int64_t G = K / KILN_GROUP;
  float q[KILN_GROUP];
  for (int64_t r = begin; r < end; ++r) {
    const uint8_t* row = (const uint8_t*)L->in[0] + r * ldw;
    for (int64_t g = 0; g < G; ++g) {
      const float s = kiln_q_round(kiln_q_load(L->in[1], r * lds + g, KILN_SCALE));
      const float b = kiln_q_round(kiln_q_load(L->in[2], r * lds + g, KILN_SCALE));
#if KILN_DEQUANT_FAST
      const __m512 sv = _mm512_set1_ps(s), bv = _mm512_set1_ps(b);
      float* o = (float*)L->out + r * K + g * KILN_GROUP;
      for (int c = 0; c < KILN_GROUP / 32; ++c) {
        __m512 v0, v1;
        kiln_decode32(row + (g * KILN_GROUP + 32 * c) * KILN_BITS / 8, &v0, &v1);
        _mm512_storeu_ps(o + 32 * c, _mm512_add_ps(_mm512_mul_ps(v0, sv), bv));
        _mm512_storeu_ps(o + 32 * c + 16, _mm512_add_ps(_mm512_mul_ps(v1, sv), bv));
      }
#else
      kiln_decode_group(row, g, q);
      for (int i = 0; i < KILN_GROUP; ++i) {
        const int64_t at = KILN_KERNEL_ORDER ? KILN_XPOS(i) : i;
        kiln_q_store(L->out, r * K + g * KILN_GROUP + at, kiln_q_round(kiln_q_round(q[i] * s) + b));
      }
#endif
    }
  }
}
#endif

#if KILN_OP == KILN_QOP_QUANTIZE
// Scale and bias of one group (float32, as MLX computes them): with two or more bits the end of larger
// magnitude is represented exactly; one bit maps the two codes to the minimum and the maximum.
KILN_INLINE void kiln_affine_params(const float* v, float* scale, float* bias) {
  float high = v[0], low = v[0];
  for (int i = 1; i < KILN_GROUP; ++i) {
    high = v[i] > high ? v[i] : high;
    low = v[i] < low ? v[i] : low;
  }
  const float tiny = 1e-7f;
#if KILN_BITS == 1
  const float range = high - low;
  *scale = range > tiny ? range : tiny;
  *bias = low;
#else
  const float levels = (float)KILN_QMASK;
  const bool low_is_edge = __builtin_fabsf(low) > __builtin_fabsf(high);
  float s = (high - low) / levels;
  s = s > tiny ? s : tiny;
  s = low_is_edge ? s : -s;
  const float edge = low_is_edge ? low : high;
  const float edge_code = km::rint(edge / s);
  *scale = edge_code != 0.0f ? edge / edge_code : s;
  *bias = edge_code == 0.0f ? 0.0f : edge;
#endif
}

// Rows [begin, end) of w (rows, K) stored as KILN_SCALE, C-contiguous: out the packed words (rows, K * bits /
// 32), in[1] scales and in[2] biases (rows, K / group) written in the input's type; shape = {rows, K}.
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const int64_t K = L->shape[1];
  const int64_t G = K / KILN_GROUP;
  const int64_t row_bytes = K * KILN_BITS / 8;
  const float levels = (float)KILN_QMASK;
  float v[KILN_GROUP];
  for (int64_t r = begin; r < end; ++r) {
    uint8_t* words = (uint8_t*)L->out + r * row_bytes;
    for (int64_t g = 0; g < G; ++g) {
      for (int i = 0; i < KILN_GROUP; ++i) {
        v[i] = kiln_q_load(L->in[0], r * K + g * KILN_GROUP + i, KILN_SCALE);
      }
      float scale, bias;
      kiln_affine_params(v, &scale, &bias);
      kiln_q_write((void*)L->in[1], r * G + g, scale, KILN_SCALE);
      kiln_q_write((void*)L->in[2], r * G + g, bias, KILN_SCALE);
      for (int j = 0; j < KILN_GROUP / 8; ++j) {
        uint64_t packed = 0;
        for (int i = 0; i < 8; ++i) {
          float c = km::rint((v[8 * j + i] - bias) / scale);
          c = c < 0.0f ? 0.0f : (c > levels ? levels : c);
          packed |= (uint64_t)(uint32_t)c << (i * KILN_BITS);
        }
        memcpy(words + (g * (KILN_GROUP / 8) + j) * KILN_BITS, &packed, KILN_BITS);
      }
    }
  }
}
#endif
