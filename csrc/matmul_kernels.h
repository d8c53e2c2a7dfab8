// The half-precision matmul family, JIT-compiled per specialisation (after kernel_abi.h and the prelude):
// float16/bfloat16 storage, float32 arithmetic, one rounding of each result (MLX's numerics). Defined
// before this text: KILN_KERNEL (the entry point), KILN_OP (one of the KILN_OP_* below) and KILN_HALF
// (1 float16, 2 bfloat16). Matrix-vector products stream the weights once; matrix-matrix products widen
// both operands (KILN_OP_WIDEN), multiply with the float32 GEMM and narrow the result (KILN_OP_NARROW).
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define KILN_MM_AVX512 1
#endif

#define KILN_OP_GEMV_NT 1  // out[b, m, n] = sum_k x[b, m, k] * W[b, n, k]  (x @ W.T: rows of W contiguous)
#define KILN_OP_GEMV_NN 2  // out[b, m, n] = sum_k x[b, m, k] * W[b, k, n]  (x @ W: columns contiguous)
#define KILN_OP_WIDEN 3    // float32 out[r, c] = src[r * rs + c * cs]
#define KILN_OP_NARROW 4   // half out[i] = round(float32 src[i])

KILN_INLINE float kiln_half_load(uint16_t h) {
#if KILN_HALF == 1
  return kiln_ld_f16(kiln_bits<kiln_f16_t>(h));
#else
  return kiln_ld_bf16(h);
#endif
}

KILN_INLINE uint16_t kiln_half_store(float f) {
#if KILN_HALF == 1
  return kiln_bits<uint16_t>(kiln_st_f16(f));
#else
  return kiln_st_bf16(f);
#endif
}

#if KILN_MM_AVX512
// Sixteen halves (the first `n` of them; the rest read as 0) widened to float32.
KILN_INLINE __m512 kiln_load16(const uint16_t* p, int n) {
  const __m256i bits = n >= 16 ? _mm256_loadu_si256((const __m256i*)p)
                               : _mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1u), p);
#if KILN_HALF == 1
  return _mm512_cvtph_ps(bits);
#else
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
#endif
}

KILN_INLINE __m512 kiln_loadx(const float* p, int n) {
  return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
#endif

// The arguments of both matrix-vector kernels: in[0] float32 x, in[1] W, in[2]/in[3] per-batch element offsets
// of x and W; shape = {B, M, N, K, ldw}; out (B, M, N) contiguous.
struct kiln_gemv {
  int64_t M, N, K, ldw;
  const float* xs;
  const uint16_t* ws;
  const int64_t* xoff;
  const int64_t* woff;
  uint16_t* out;
};

KILN_INLINE kiln_gemv kiln_gemv_args(const kiln_launch* L) {
  return kiln_gemv{L->shape[1], L->shape[2], L->shape[3], L->shape[4], (const float*)L->in[0],
                   (const uint16_t*)L->in[1], (const int64_t*)L->in[2], (const int64_t*)L->in[3],
                   (uint16_t*)L->out};
}

#if KILN_OP == KILN_OP_GEMV_NT
// R rows of W against MM rows of x: dots[m][r] = sum_k x[m][k] * w[r][k].
template <int R, int MM>
KILN_INLINE void kiln_dot_block(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t K,
                                float dots[MM][R]) {
#if KILN_MM_AVX512
  __m512 acc[MM][R];
  for (int m = 0; m < MM; ++m) {
    for (int r = 0; r < R; ++r) {
      acc[m][r] = _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < K; k += 16) {
    const int n = K - k >= 16 ? 16 : (int)(K - k);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) {
      wv[r] = kiln_load16(w + r * ldw + k, n);
    }
    for (int m = 0; m < MM; ++m) {
      const __m512 xv = kiln_loadx(x + m * ldx + k, n);
      for (int r = 0; r < R; ++r) {
        acc[m][r] = _mm512_fmadd_ps(wv[r], xv, acc[m][r]);
      }
    }
  }
  for (int m = 0; m < MM; ++m) {
    for (int r = 0; r < R; ++r) {
      dots[m][r] = _mm512_reduce_add_ps(acc[m][r]);
    }
  }
#else
  for (int m = 0; m < MM; ++m) {
    for (int r = 0; r < R; ++r) {
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        sum += x[m * ldx + k] * kiln_half_load(w[r * ldw + k]);
      }
      dots[m][r] = sum;
    }
  }
#endif
}

template <int R>
KILN_INLINE void kiln_rows(const float* x, int64_t M, int64_t K, const uint16_t* w, int64_t ldw, uint16_t* out,
                           int64_t N) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) {
    float dots[4][R];
    kiln_dot_block<R, 4>(x + m * K, K, w, ldw, K, dots);
    for (int i = 0; i < 4; ++i) {
      for (int r = 0; r < R; ++r) {
        out[(m + i) * N + r] = kiln_half_store(dots[i][r]);
      }
    }
  }
  for (; m < M; ++m) {
    float dots[1][R];
    kiln_dot_block<R, 1>(x + m * K, K, w, ldw, K, dots);
    for (int r = 0; r < R; ++r) {
      out[m * N + r] = kiln_half_store(dots[0][r]);
    }
  }
}

// Tasks [begin, end) are (batch, n) pairs (kiln_gemv holds the arguments).
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const kiln_gemv g = kiln_gemv_args(L);
  const int64_t M = g.M, N = g.N, K = g.K, ldw = g.ldw;
  for (int64_t t = begin; t < end;) {
    const int64_t b = t / N, n = t % N;
    int64_t rows = N - n < end - t ? N - n : end - t;
    rows = rows < 4 ? rows : 4;
    const float* x = g.xs + g.xoff[b];
    const uint16_t* w = g.ws + g.woff[b] + n * ldw;
    uint16_t* o = g.out + b * M * N + n;
    switch (rows) {
      case 4: kiln_rows<4>(x, M, K, w, ldw, o, N); break;
      case 3: kiln_rows<3>(x, M, K, w, ldw, o, N); break;
      case 2: kiln_rows<2>(x, M, K, w, ldw, o, N); break;
      default: kiln_rows<1>(x, M, K, w, ldw, o, N); break;
    }
    t += rows;
  }
}
#endif

#if KILN_OP == KILN_OP_GEMV_NN
// Columns in blocks of this many: each row of W contributes one contiguous run to a block.
#define KILN_NN_BLOCK 128

// Tasks [begin, end) are (batch, n) pairs, taken a column block at a time; the arguments as for GEMV_NT, with
// ldw the distance between rows k and k + 1 of W.
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const kiln_gemv g = kiln_gemv_args(L);
  const int64_t M = g.M, N = g.N, K = g.K, ldw = g.ldw;
  float acc[KILN_NN_BLOCK];
  for (int64_t t = begin; t < end;) {
    const int64_t b = t / N, n = t % N;
    int64_t cols = N - n < end - t ? N - n : end - t;
    cols = cols < KILN_NN_BLOCK ? cols : KILN_NN_BLOCK;
    const uint16_t* w = g.ws + g.woff[b] + n;
    for (int64_t m = 0; m < M; ++m) {
      const float* x = g.xs + g.xoff[b] + m * K;
#if KILN_MM_AVX512
      __m512 a[KILN_NN_BLOCK / 16];
      for (int j = 0; j < KILN_NN_BLOCK / 16; ++j) {
        a[j] = _mm512_setzero_ps();
      }
      const int full = (int)(cols / 16);
      const int tail = (int)(cols % 16);
      for (int64_t k = 0; k < K; ++k) {
        const __m512 xv = _mm512_set1_ps(x[k]);
        const uint16_t* row = w + k * ldw;
        for (int j = 0; j < full; ++j) {
          a[j] = _mm512_fmadd_ps(kiln_load16(row + 16 * j, 16), xv, a[j]);
        }
        if (tail) {
          a[full] = _mm512_fmadd_ps(kiln_load16(row + 16 * full, tail), xv, a[full]);
        }
      }
      for (int j = 0; j < KILN_NN_BLOCK / 16; ++j) {
        _mm512_storeu_ps(acc + 16 * j, a[j]);
      }
#else
      for (int64_t j = 0; j < cols; ++j) {
        acc[j] = 0.0f;
      }
      for (int64_t k = 0; k < K; ++k) {
        const uint16_t* row = w + k * ldw;
        for (int64_t j = 0; j < cols; ++j) {
          acc[j] += x[k] * kiln_half_load(row[j]);
        }
      }
#endif
      uint16_t* o = g.out + (b * M + m) * N + n;
      for (int64_t j = 0; j < cols; ++j) {
        o[j] = kiln_half_store(acc[j]);
      }
    }
    t += cols;
  }
}
#endif

#if KILN_OP == KILN_OP_WIDEN
// Rows [begin, end) of a (rows, cols) view: in[0] the source, shape = {rows, cols, row stride, col stride}.
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const int64_t cols = L->shape[1], rs = L->shape[2], cs = L->shape[3];
  const uint16_t* src = (const uint16_t*)L->in[0];
  float* out = (float*)L->out;
  for (int64_t r = begin; r < end; ++r) {
    const uint16_t* s = src + r * rs;
    float* o = out + r * cols;
    int64_t c = 0;
#if KILN_MM_AVX512
    if (cs == 1) {
      for (; c + 16 <= cols; c += 16) {
        _mm512_storeu_ps(o + c, kiln_load16(s + c, 16));
      }
    }
#endif
    for (; c < cols; ++c) {
      o[c] = kiln_half_load(s[c * cs]);
    }
  }
}
#endif

#if KILN_OP == KILN_OP_NARROW
// Elements [begin, end) of a contiguous float32 in[0], rounded to nearest even.
extern "C" void KILN_KERNEL(const kiln_launch* L, int64_t begin, int64_t end) {
  const float* src = (const float*)L->in[0];
  uint16_t* out = (uint16_t*)L->out;
  for (int64_t i = begin; i < end; ++i) {
    out[i] = kiln_half_store(src[i]);
  }
}
#endif
