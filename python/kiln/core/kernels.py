"""Native kernel families beyond fused elementwise regions: float16/bfloat16 matmul, MLX's affine-quantized
quantize / dequantize / quantized_matmul / gather_qmm, and random bits. Each family is one JIT source in csrc/ specialised by #define
lines; this module picks the specialisation, lays out the buffers and launches it. The choosers register in
engine's native table, so compiled Programs and eager evaluation reach the same kernels.

Numerics: products read half-precision or quantized weights into float32 registers and accumulate in
float32, rounding the result once (MLX's numerics); dequantize rounds exactly as the numpy reference does.
"""

from __future__ import annotations

import numpy as np

from . import dtypes as dt
from . import engine
from .primitives import REGISTRY

# Storage codes the kernel sources use: 0 float32, 1 float16, 2 bfloat16.
_STORAGE = {dt.float32: 0, dt.float16: 1, dt.bfloat16: 2}
_HALF = {dt.float16: 1, dt.bfloat16: 2}
# Matrix products with at most this many rows stream the weights once (matrix-vector kernels); taller ones
# widen to float32 and use numpy's float32 GEMM (OpenBLAS in numpy's wheels), narrowing the result.
GEMV_MAX_ROWS = 16
# Matmul family ops (csrc/matmul_kernels.h) and quantized family ops (csrc/quantized_kernels.h).
_GEMV_NT, _GEMV_NN, _WIDEN, _NARROW = 1, 2, 3, 4
_QMV_T, _QMV_N, _DEQUANT, _QUANTIZE = 1, 2, 3, 4

_loaded: dict = {}


def _kernel(family: str, **spec) -> int:
    """The address of one specialisation, compiled (or loaded from the caches) on first use."""
    key = (family,) + tuple(sorted(spec.items()))
    address = _loaded.get(key)
    if address is None:
        name = "kiln_" + family + "_" + "_".join(f"{k}{v}" for k, v in sorted(spec.items()))
        defines = "\n".join([f"#define KILN_KERNEL {name}"] + [f"#define KILN_{k.upper()} {v}" for k, v in
                                                               sorted(spec.items())])
        address, _from_disk, _compiled, warning = engine._engine.load_family_kernel(name, family, defines)
        engine._warn_once(f"kiln: {warning}" if warning else "")
        _loaded[key] = address
    return address


def _launch(address: int, inputs: list, out: np.ndarray, shape: list, tasks: int, work: int) -> np.ndarray:
    engine._engine.launch_family(address, inputs, out, shape, tasks, work)
    return out


def _elements(a: np.ndarray) -> int:
    """Element strides of `a` (numpy's byte strides divided by the item size)."""
    return [s // a.itemsize for s in a.strides]


def _batch_offsets(a: np.ndarray, batch: tuple, unit: int = 1) -> np.ndarray:
    """int64 offsets (in units of `unit` bytes) of each matrix of `a`, its batch broadcast to `batch`."""
    lead = a.ndim - 2
    offsets = np.zeros(a.shape[:lead], np.int64)
    for d in range(lead):
        shape = [1] * lead
        shape[d] = a.shape[d]
        offsets = offsets + (np.arange(a.shape[d], dtype=np.int64) * (a.strides[d] // unit)).reshape(shape)
    return np.ascontiguousarray(np.broadcast_to(offsets, batch)).reshape(-1)


# -- half precision ------------------------------------------------------------------------------------------
def _rows(a: np.ndarray) -> np.ndarray:
    """`a` as a 2-D (rows, last axis) view when its leading axes merge into one stride, else a C-order copy."""
    if a.ndim == 2:
        return a
    cols = a.shape[-1] if a.ndim else 1
    rows = a.size // cols if cols else 0
    lead = [(n, st) for n, st in zip(a.shape[:-1], a.strides[:-1]) if n != 1]
    if all(st == nxt_st * nxt_n for (_, st), (nxt_n, nxt_st) in zip(lead, lead[1:])):
        row_stride = lead[-1][1] if lead else cols * a.itemsize
        col_stride = a.strides[-1] if a.ndim else a.itemsize
        return np.lib.stride_tricks.as_strided(a, (rows, cols), (row_stride, col_stride))
    return np.ascontiguousarray(a).reshape(rows, cols)


def widen(a: np.ndarray) -> np.ndarray:
    """A float32 copy of a float16/bfloat16 array (multithreaded): C-contiguous, or the transpose of one when
    `a` is a transposed view (W.T), so each source row is read in order."""
    if a.ndim >= 2 and a.strides[-2] == a.itemsize and a.strides[-1] != a.itemsize and a.shape[-1] > 1:
        return np.swapaxes(widen(np.swapaxes(a, -1, -2)), -1, -2)
    out = np.empty(a.shape, np.float32)
    if a.size == 0:
        return out
    rows = _rows(a)
    rs, cs = _elements(rows)
    fn = _kernel("matmul", op=_WIDEN, half=_HALF[dt.from_numpy(a.dtype)])
    return _launch(fn, [rows], out, [rows.shape[0], rows.shape[1], rs, cs], rows.shape[0], a.size)


def narrow(a: np.ndarray, dtype: dt.Dtype) -> np.ndarray:
    """float32 -> float16/bfloat16, rounded to nearest even (multithreaded)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    out = np.empty(a.shape, dtype.np)
    return _launch(_kernel("matmul", op=_NARROW, half=_HALF[dtype]), [a], out, [a.size], a.size, a.size)


def _half_matmul(half_type: dt.Dtype):
    half = _HALF[half_type]

    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        M, K = a.shape[-2:]
        N = b.shape[-1]
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        if M * N * K == 0:
            return np.zeros(batch + (M, N), half_type.np)
        if M > GEMV_MAX_ROWS:
            return narrow(np.matmul(widen(a), widen(b)), half_type)
        x = widen(a)
        sk, sn = _elements(b)[-2:]
        if sk == 1 or K == 1:
            op, ldw = _GEMV_NT, sn
        else:
            if sn != 1 and N != 1:
                b = np.ascontiguousarray(b)
                sk = _elements(b)[-2]
            op, ldw = _GEMV_NN, sk
        count = int(np.prod(batch, dtype=np.int64))
        xoff = _batch_offsets(x, batch, x.itemsize)
        woff = _batch_offsets(b, batch, b.itemsize)
        out = np.empty(batch + (M, N), half_type.np)
        return _launch(_kernel("matmul", op=op, half=half), [x, b, xoff, woff], out, [count, M, N, K, ldw],
                       count * N, count * M * N * K)

    return run


def _choose_matmul(params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    if in_dtypes[0] in _HALF and in_dtypes[1] == in_dtypes[0]:
        return _half_matmul(in_dtypes[0])
    return None


# -- affine quantized -------------------------------------------------------------------------------------------
def _kernel_layout(w: np.ndarray, scales: np.ndarray, biases: np.ndarray) -> tuple:
    """The operands as the kernels read them: packed rows contiguous; scales and biases alike, unit columns."""
    if w.strides[-1] != w.itemsize:
        w = np.ascontiguousarray(w)
    if scales.strides != biases.strides or scales.strides[-1] != scales.itemsize:
        scales, biases = np.ascontiguousarray(scales), np.ascontiguousarray(biases)
    return w, scales, biases


def _nibble_order(x: np.ndarray) -> np.ndarray:
    """x (..., K) with every 32 elements reordered evens-then-odds: the order the 4-bit kernels decode the low
    and high nibbles of 16 bytes in (KILN_XPOS in csrc/quantized_kernels.h)."""
    pairs = x.reshape(x.shape[:-1] + (-1, 16, 2))
    return np.ascontiguousarray(np.swapaxes(pairs, -1, -2)).reshape(x.shape)


def _quantized_spec(params: dict, x_dtype, scale_dtype, out_dtype) -> dict | None:
    """The kernel specialisation for these types, or None (float64 and other types run the reference)."""
    if x_dtype not in _STORAGE or scale_dtype not in _STORAGE or out_dtype not in _STORAGE:
        return None
    return {"bits": params["bits"], "group": params["group_size"], "scale": _STORAGE[scale_dtype],
            "out": _STORAGE[out_dtype]}


def _quantized_product(spec: dict, transpose: bool, out_dtype: dt.Dtype, x, w, scales, biases, xoff, woff, soff):
    """out[i] = x[xoff[i]] @ (the quantized matrix at byte offset woff[i], scales at soff[i]) for each i.

    x is (count_x, M, K); w, scales and biases in the kernel layout.
    """
    count = len(xoff)
    M, K = x.shape[-2:]
    gs, bits = spec["group"], spec["bits"]
    n = w.shape[-2] if transpose else w.shape[-1] * 32 // bits
    out = np.empty((count, M, n), out_dtype.np)
    if out.size == 0 or K == 0:
        out[...] = 0
        return out
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    shape = [count, M, n, K, w.strides[-2], scales.strides[-2] // scales.itemsize]
    if transpose:
        xsum = np.ascontiguousarray(x32.reshape(x32.shape[:-1] + (K // gs, gs)).sum(-1, dtype=np.float32))
        fn = _kernel("quantized", op=_QMV_T, **spec)
        inputs = [_nibble_order(x32) if bits == 4 else x32, w, scales, biases, xsum, xoff, woff, soff]
        return _launch(fn, inputs, out, shape, count * n, count * M * n * K)
    fn = _kernel("quantized", op=_QMV_N, **spec)
    return _launch(fn, [x32, w, scales, biases, x32, xoff, woff, soff], out, shape, count * (n // gs),
                   count * M * n * K)


# Tall quantized products dequantize this many rows of w at a time into float32 for the GEMM.
GEMM_TILE_ROWS = 1024


def _quantized_gemm(spec: dict, transpose: bool, out_dtype: dt.Dtype, x, w, scales, biases) -> np.ndarray:
    """Tall products: dequantize natively into float32 a tile of rows at a time, multiply each tile with
    numpy's float32 GEMM into its columns of the result, round once at the end."""
    x32 = x.astype(np.float32, copy=False)
    # With 4 bits and x @ W.T, tiles come out in the kernel's nibble order (decoded in registers) and x is
    # permuted alike, which leaves the product unchanged.
    kernel_order = transpose and spec["bits"] == 4
    if kernel_order:
        x32 = _nibble_order(x32)

    def tile(lo: int, hi: int) -> np.ndarray:
        return dequantize_native(w[..., lo:hi, :], scales[..., lo:hi, :], biases[..., lo:hi, :], spec["group"],
                                 spec["bits"], dt.float32, spec["scale"], kernel_order)

    rows = w.shape[-2]
    if not transpose or rows <= GEMM_TILE_ROWS:
        weights = tile(0, rows)
        out = np.matmul(x32, np.swapaxes(weights, -1, -2) if transpose else weights)
    else:
        batch = np.broadcast_shapes(x.shape[:-2], w.shape[:-2])
        out = np.empty(batch + (x.shape[-2], rows), np.float32)
        for lo in range(0, rows, GEMM_TILE_ROWS):
            hi = min(lo + GEMM_TILE_ROWS, rows)
            out[..., lo:hi] = np.matmul(x32, np.swapaxes(tile(lo, hi), -1, -2))
    return narrow(out, out_dtype) if out_dtype in _HALF else out


def _choose_quantized_matmul(params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    spec = _quantized_spec(params, in_dtypes[0], in_dtypes[2], out_dtype)
    if spec is None:
        return None
    transpose = params["transpose"]

    def run(x, w, scales, biases):
        w, scales, biases = _kernel_layout(w, scales, biases)
        if x.shape[-2] > GEMV_MAX_ROWS:
            return _quantized_gemm(spec, transpose, out_dtype, x, w, scales, biases)
        batch = np.broadcast_shapes(x.shape[:-2], w.shape[:-2])
        xb = np.broadcast_to(x, batch + x.shape[-2:]).reshape((-1,) + x.shape[-2:])
        xoff = np.arange(len(xb), dtype=np.int64)
        woff = _batch_offsets(w, batch, 1)
        soff = _batch_offsets(scales, batch, scales.itemsize)
        out = _quantized_product(spec, transpose, out_dtype, xb, w, scales, biases, xoff, woff, soff)
        return out.reshape(batch + out.shape[-2:])

    return run


def dequantize_native(w, scales, biases, group_size: int, bits: int, out_dtype: dt.Dtype, scale_code: int,
                      kernel_order: bool = False):
    """Dequantize in the kernel layout, rounding as the numpy reference does in `out_dtype`; with
    `kernel_order` each row's codes come out in the order the 4-bit kernels read x in (_nibble_order)."""
    K = w.shape[-1] * 32 // bits
    w2, s2, b2 = _rows(w), _rows(scales), _rows(biases)
    w2, s2, b2 = _kernel_layout(w2, s2, b2)
    out = np.empty(w.shape[:-1] + (K,), out_dtype.np)
    rows = w2.shape[0]
    if out.size == 0:
        return out
    fn = _kernel("quantized", op=_DEQUANT, bits=bits, group=group_size, scale=scale_code, out=_STORAGE[out_dtype],
                 kernel_order=int(kernel_order))
    return _launch(fn, [w2, s2, b2], out, [rows, w2.strides[0], s2.strides[0] // s2.itemsize, K], rows, rows * K)


def _choose_dequantize(params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    if in_dtypes[1] not in _STORAGE or out_dtype not in _STORAGE:
        return None
    scale_code = _STORAGE[in_dtypes[1]]

    def run(w, scales, biases):
        return dequantize_native(w, scales, biases, params["group_size"], params["bits"], out_dtype, scale_code)

    return run


def _choose_quantize(params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    if in_dtypes[0] not in _STORAGE:
        return None
    group_size, bits, output = params["group_size"], params["bits"], params["output"]
    fn_spec = {"bits": bits, "group": group_size, "scale": _STORAGE[in_dtypes[0]], "out": 0}

    def run(w):
        rows = _rows(np.ascontiguousarray(w))
        K = rows.shape[1]
        words = np.empty(w.shape[:-1] + (K * bits // 32,), np.uint32)
        scales = np.empty(w.shape[:-1] + (K // group_size,), w.dtype)
        biases = np.empty_like(scales)
        if words.size:
            fn = _kernel("quantized", op=_QUANTIZE, **fn_spec)
            _launch(fn, [rows, scales, biases], words, [rows.shape[0], K], rows.shape[0], rows.size)
        return (words, scales, biases)[output]

    return run


def _flat_pairs(lhs, rhs, n_x: int, n_w: int) -> tuple:
    """The broadcast index arrays, flattened to int64 and checked against the batch sizes they index."""
    lhs, rhs = np.broadcast_arrays(lhs, rhs)
    lhs_i, rhs_i = lhs.reshape(-1).astype(np.int64), rhs.reshape(-1).astype(np.int64)
    if lhs_i.size and (lhs_i.min() < 0 or lhs_i.max() >= n_x or rhs_i.min() < 0 or rhs_i.max() >= n_w):
        raise IndexError("[gather_qmm] Index out of range.")
    return lhs.shape, lhs_i, rhs_i


def _gathered_gemm(spec: dict, transpose: bool, out_dtype: dt.Dtype, xs, w, scales, biases, lhs_i, rhs_i):
    """Tall gathered products: each matrix of w that some pair uses is multiplied once, by the tiled GEMM of
    _quantized_gemm, with the stack of inputs paired with it (a mixture-of-experts prefill)."""
    M, bits = xs.shape[-2], spec["bits"]
    flat = [a.reshape((-1,) + a.shape[-2:]) for a in (w, scales, biases)]
    n = w.shape[-2] if transpose else w.shape[-1] * 32 // bits
    out = np.empty((len(lhs_i), M, n), out_dtype.np)
    for e in np.unique(rhs_i):
        pairs = np.nonzero(rhs_i == e)[0]
        w_e, s_e, b_e = _kernel_layout(*(a[e] for a in flat))
        out[pairs] = _quantized_gemm(spec, transpose, out_dtype, xs[lhs_i[pairs]], w_e, s_e, b_e)
    return out


def _choose_gather_qmm(params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    spec = _quantized_spec(params, in_dtypes[0], in_dtypes[2], out_dtype)
    if spec is None:
        return None
    transpose = params["transpose"]

    def run(x, w, scales, biases, lhs, rhs):
        xs = x.reshape((-1,) + x.shape[-2:])
        n_w = int(np.prod(w.shape[:-2], dtype=np.int64))
        shape, lhs_i, rhs_i = _flat_pairs(lhs, rhs, len(xs), n_w)
        if x.shape[-2] > GEMV_MAX_ROWS:
            out = _gathered_gemm(spec, transpose, out_dtype, xs, w, scales, biases, lhs_i, rhs_i)
            return out.reshape(shape + out.shape[-2:])
        w, scales, biases = _kernel_layout(w, scales, biases)
        woff = _batch_offsets(w, w.shape[:-2], 1)[rhs_i]
        soff = _batch_offsets(scales, scales.shape[:-2], scales.itemsize)[rhs_i]
        out = _quantized_product(spec, transpose, out_dtype, xs, w, scales, biases, lhs_i, woff, soff)
        return out.reshape(shape + out.shape[-2:])

    return run


# -- random bits (csrc/random.cpp: built ahead of time, nothing to specialise per graph) ----------------------
def _random_bits_kernel(params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    """csrc/random.cpp: Threefry-2x32 bits in MLX's layout, byte for byte the registry's implementation."""
    shape, width = [int(s) for s in params["shape"]], int(params["width"])
    return lambda keys: engine._engine.random_bits(keys, shape, width)


def _random_uniform_kernel(params: dict, in_dtypes: tuple, out_dtype: dt.Dtype):
    """csrc/random.cpp: bits, scaling and shift in one pass where the bounds are scalars (else numpy)."""
    if out_dtype != dt.float32:
        return None
    shape = [int(s) for s in params["shape"]]
    reference = REGISTRY["random_uniform"].impl

    def call(keys, low, high):
        if low.size == 1 and high.size == 1 and low.ndim <= len(shape) and high.ndim <= len(shape):
            out = engine._engine.random_uniform(keys, shape, float(low.reshape(())), float(high.reshape(())))
            return out
        return reference(keys, low, high, shape=tuple(shape))

    return call


engine._NATIVE_FAMILIES.update({
    "matmul": _choose_matmul,
    "quantized_matmul": _choose_quantized_matmul,
    "dequantize": _choose_dequantize,
    "quantize": _choose_quantize,
    "gather_qmm": _choose_gather_qmm,
    "random_bits": _random_bits_kernel,
    "random_uniform": _random_uniform_kernel,
})
