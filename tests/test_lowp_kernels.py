"""The engine's low-precision kernel families against the interpreter's numpy meaning (the registry's impls).

Half-precision matmul and quantized products accumulate in float32 and round once; the bound checked is
    |kernel - reference| <= K * 2**-22 * (|a| @ |b|) + u_out * |reference| (+ the reference's own rounding of
    dequantized weights to the scales' type, 2 * u_scale * (|x| @ |w|), for quantized products)
where u is the unit roundoff of a type (2**-11 float16, 2**-8 bfloat16, 2**-24 float32). dequantize is
bit-identical to the reference. Eager calls, compiled calls and real MLX (where installed) are compared.
"""

from __future__ import annotations

import kiln.core as mx
import numpy as np
import pytest
from kiln.core import dtypes as dt
from kiln.core import engine
from kiln.core.primitives import REGISTRY

pytestmark = pytest.mark.skipif(not engine.available(), reason="the native kernels need the C++ engine")

RNG = np.random.default_rng(7)
UNIT = {mx.float16: 2.0 ** -11, mx.bfloat16: 2.0 ** -8, mx.float32: 2.0 ** -24}


def _np(a) -> np.ndarray:
    return np.array(a.astype(mx.float32)) if a.dtype in (mx.float16, mx.bfloat16) else np.array(a)


def _host(a) -> np.ndarray:
    """The array's own numpy buffer (bfloat16 as ml_dtypes' type: numpy refuses a bfloat16 buffer, as with MLX)."""
    return a._numpy().copy()  # C order: the reference float16 matmul rounds differently on other layouts


def _assert_within(got, ref, abs_product, K, out_type, extra=0.0):
    bound = K * 2.0 ** -22 * abs_product + UNIT[out_type] * np.abs(ref) + extra + 1e-30
    excess = np.abs(got.astype(np.float64) - ref) - bound
    assert np.all(excess <= 0), f"worst excess {excess.max()} at {np.unravel_index(excess.argmax(), excess.shape)}"


# -- float16 / bfloat16 matmul --------------------------------------------------------------------------------
MATMUL_SHAPES = [
    ((1, 1), (1, 1)), ((1, 7), (7, 5)), ((1, 64), (64, 33)), ((3, 100), (100, 37)), ((1, 257), (257, 129)),
    ((16, 31), (31, 17)), ((17, 31), (31, 17)), ((40, 65), (65, 70)), ((2, 1, 48), (2, 48, 9)),
    ((4, 3, 20), (20, 6)), ((5, 20), (3, 20, 6)), ((2, 1, 2, 16), (1, 3, 16, 5)), ((0, 8), (8, 4)),
    ((3, 0), (0, 4)), ((2, 8), (8, 0)),
]


def _half_operands(a_shape, b_shape, dtype):
    a = RNG.standard_normal(a_shape).astype(np.float32)
    b = RNG.standard_normal(b_shape).astype(np.float32)
    return mx.array(a).astype(dtype), mx.array(b).astype(dtype)


def _check_matmul(x, y, out):
    a, b = _np(x).astype(np.float64), _np(y).astype(np.float64)
    ref = REGISTRY["matmul"].impl(_host(x), _host(y)).astype(np.float64)
    assert out.dtype == x.dtype and tuple(out.shape) == ref.shape
    _assert_within(_np(out), ref, np.abs(a) @ np.abs(b), a.shape[-1], x.dtype)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES, ids=str)
def test_half_matmul_matches_the_reference(dtype, a_shape, b_shape):
    x, y = _half_operands(a_shape, b_shape, dtype)
    _check_matmul(x, y, x @ y)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("m", [1, 3, 16, 40])
def test_half_matmul_layouts_and_strides(dtype, m):
    w = mx.array(RNG.standard_normal((24, 80)).astype(np.float32)).astype(dtype)  # (N, K)
    x = mx.array(RNG.standard_normal((m, 80)).astype(np.float32)).astype(dtype)
    _check_matmul(x, w.T, x @ w.T)  # x @ W.T: rows of W contiguous
    wt = mx.array(np.ascontiguousarray(_host(w.T)))
    _check_matmul(x, wt, x @ wt)  # x @ W
    strided_w = mx.array(_host(mx.concatenate([w, w], axis=1)))[:, ::2]  # every other column
    _check_matmul(x, strided_w.T, x @ strided_w.T)
    strided_x = mx.concatenate([x, x], axis=1)[:, 1::2]
    _check_matmul(strided_x, w.T, strided_x @ w.T)
    batch_t = mx.swapaxes(mx.stack([w, w * 2]), 0, 0)
    xb = mx.stack([x, x])
    _check_matmul(xb, mx.swapaxes(batch_t, -1, -2), xb @ mx.swapaxes(batch_t, -1, -2))


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16], ids=["float16", "bfloat16"])
def test_half_addmm_vector_and_large_k(dtype):
    c = mx.array(RNG.standard_normal((2, 9)).astype(np.float32)).astype(dtype)
    a, b = _half_operands((2, 4099), (4099, 9), dtype)
    out = mx.addmm(c, a, b, alpha=0.5, beta=2.0)
    ref = 0.5 * (_np(a).astype(np.float64) @ _np(b)) + 2.0 * _np(c)
    bound = 4099 * 2.0 ** -22 * (np.abs(_np(a)) @ np.abs(_np(b))) + 4 * UNIT[dtype] * (np.abs(ref) + 2 * np.abs(_np(c)))
    assert np.all(np.abs(_np(out) - ref) <= bound + 4 * UNIT[dtype] * np.abs(_np(a) @ _np(b)))
    v = mx.array(RNG.standard_normal(33).astype(np.float32)).astype(dtype)
    m = mx.array(RNG.standard_normal((33, 5)).astype(np.float32)).astype(dtype)
    _check_matmul(mx.expand_dims(v, 0), m, mx.expand_dims(v @ m, 0))


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16], ids=["float16", "bfloat16"])
def test_half_matmul_compiled_and_gradients(dtype):
    x, w = _half_operands((3, 40), (12, 40), dtype)
    eager = x @ w.T
    compiled = mx.compile(lambda a, b: a @ b.T)(x, w)
    np.testing.assert_array_equal(_np(compiled), _np(eager))
    gx, gw = mx.grad(lambda a, b: (a @ b.T).astype(mx.float32).sum(), argnums=(0, 1))(x, w)
    assert gx.dtype == dtype and gw.dtype == dtype
    ones = np.ones((3, 12))
    np.testing.assert_allclose(_np(gx), ones @ _np(w), rtol=4 * UNIT[dtype], atol=40 * 4 * UNIT[dtype])
    np.testing.assert_allclose(_np(gw), ones.T @ _np(x), rtol=4 * UNIT[dtype], atol=3 * 4 * UNIT[dtype])


def test_verify_accepts_the_half_kernels_rounding(monkeypatch):
    monkeypatch.setenv("KILN_VERIFY", "1")
    x, w = _half_operands((3, 300), (50, 300), mx.float16)
    out = mx.compile(lambda a, b: a @ b.T)(x, w)  # checked against the interpreter, within two roundings
    _check_matmul(x, w.T, out)


def test_integer_matmul_is_refused():
    with pytest.raises(ValueError, match=r"\[matmul\]"):
        mx.matmul(mx.ones((2, 2), dtype=mx.int32), mx.ones((2, 2), dtype=mx.int32))


# -- affine quantized -----------------------------------------------------------------------------------------
def _quantized(n, k, group_size, bits, dtype, lead=()):
    w = mx.array(RNG.standard_normal(lead + (n, k)).astype(np.float32)).astype(dtype)
    return mx.quantize(w, group_size=group_size, bits=bits)


def _dense(wq, scales, biases, group_size, bits):
    """The reference's dequantized matrix (in the scales' type) as float64."""
    return REGISTRY["dequantize"].impl(_host(wq), _host(scales), _host(biases), group_size=group_size,
                                       bits=bits, dtype=scales.dtype).astype(np.float64)


def _check_quantized(out, x, wq, scales, biases, group_size, bits, transpose):
    ref = REGISTRY["quantized_matmul"].impl(_host(x), _host(wq), _host(scales), _host(biases),
                                            transpose=transpose, group_size=group_size, bits=bits)
    out_type = dt.promote_types(x.dtype, scales.dtype)
    assert out.dtype == out_type and tuple(out.shape) == ref.shape
    dense = _dense(wq, scales, biases, group_size, bits)
    dense = np.swapaxes(dense, -1, -2) if transpose else dense
    xs = np.abs(_np(x).astype(np.float64))
    product = xs @ np.abs(dense)
    _assert_within(_np(out), ref.astype(np.float64), product, xs.shape[-1], out_type,
                   extra=2 * UNIT[scales.dtype] * product)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=["float32", "float16", "bfloat16"])
def test_quantized_matmul_matches_the_reference(bits, group_size, dtype):
    wq, scales, biases = _quantized(37, 3 * group_size, group_size, bits, dtype)
    for m in (1, 2, 5, 20):
        x = mx.array(RNG.standard_normal((m, 3 * group_size)).astype(np.float32)).astype(dtype)
        out = mx.quantized_matmul(x, wq, scales, biases, group_size=group_size, bits=bits)
        _check_quantized(out, x, wq, scales, biases, group_size, bits, True)
    # transpose=False: w holds (K, N) with groups along N
    wq, scales, biases = _quantized(48, 2 * group_size, group_size, bits, dtype)
    for m in (1, 3, 20):
        x = mx.array(RNG.standard_normal((m, 48)).astype(np.float32)).astype(dtype)
        out = mx.quantized_matmul(x, wq, scales, biases, transpose=False, group_size=group_size, bits=bits)
        _check_quantized(out, x, wq, scales, biases, group_size, bits, False)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_matmul_batches_mixed_types_and_strides(bits):
    wq, scales, biases = _quantized(20, 128, 64, bits, mx.float16, lead=(3,))
    x = mx.array(RNG.standard_normal((3, 2, 128)).astype(np.float32)).astype(mx.bfloat16)  # -> float32 result
    _check_quantized(mx.quantized_matmul(x, wq, scales, biases, bits=bits), x, wq, scales, biases, 64, bits, True)
    x1 = mx.array(RNG.standard_normal((4, 1, 1, 128)).astype(np.float32))
    out = mx.quantized_matmul(x1, wq, scales, biases, bits=bits)  # x batch broadcast against w's
    _check_quantized(out, x1, wq, scales, biases, 64, bits, True)
    w2, s2, b2 = wq[1], scales[1], biases[1]
    wide = mx.stack([w2, w2], axis=1)[:, 0, :]  # packed rows two rows apart
    _check_quantized(mx.quantized_matmul(x1[0, 0], wide, s2, b2, bits=bits), x1[0, 0], w2, s2, b2, 64, bits, True)
    vec = mx.quantized_matmul(x1[0, 0, 0], w2, s2, b2, bits=bits)  # a 1-D input
    assert vec.shape == (20,)
    empty = mx.quantized_matmul(mx.zeros((0, 128)), w2, s2, b2, bits=bits)
    assert empty.shape == (0, 20)


def test_tall_quantized_products_dequantize_a_tile_at_a_time(monkeypatch):
    from kiln.core import kernels

    monkeypatch.setattr(kernels, "GEMM_TILE_ROWS", 32)
    wq, scales, biases = _quantized(100, 128, 64, 4, mx.float16)
    x = mx.array(RNG.standard_normal((2, 30, 128)).astype(np.float32)).astype(mx.float16)
    _check_quantized(mx.quantized_matmul(x, wq, scales, biases), x, wq, scales, biases, 64, 4, True)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=["float32", "float16", "bfloat16"])
def test_dequantize_is_bit_identical_to_the_reference(bits, dtype):
    wq, scales, biases = _quantized(9, 256, 32, bits, dtype, lead=(2,))
    for out_type in (None, mx.float32, mx.float16, mx.bfloat16):
        got = mx.dequantize(wq, scales, biases, group_size=32, bits=bits, dtype=out_type)
        want_type = scales.dtype if out_type is None else out_type
        ref = REGISTRY["dequantize"].impl(_host(wq), _host(scales), _host(biases), group_size=32, bits=bits,
                                          dtype=want_type)
        assert got.dtype == want_type
        np.testing.assert_array_equal(_np(got), ref.astype(np.float32))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=["float32", "float16", "bfloat16"])
def test_quantize_is_bit_identical_to_the_reference(bits, group_size, dtype):
    w = RNG.standard_normal((2, 5, 2 * group_size)).astype(np.float32)
    w[0, 0, :group_size] = 0.0  # a constant group: the smallest scale
    w[0, 1, :group_size] = np.abs(w[0, 1, :group_size])  # a group whose larger end is its maximum
    wx = mx.array(w).astype(dtype)
    got = mx.quantize(wx, group_size=group_size, bits=bits)
    for output, value in enumerate(got):
        ref = REGISTRY["quantize"].impl(_host(wx), group_size=group_size, bits=bits, output=output)
        assert value.dtype == (mx.uint32 if output == 0 else dtype)
        np.testing.assert_array_equal(_np(value), ref.astype(np.float32) if output else ref)


def test_gather_qmm_matches_gathered_products():
    wq, scales, biases = _quantized(24, 128, 64, 4, mx.float16, lead=(5,))
    x = mx.array(RNG.standard_normal((3, 1, 128)).astype(np.float32)).astype(mx.float16)
    lhs, rhs = mx.array([0, 2, 2, 1]), mx.array([4, 0, 1, 4])
    out = mx.gather_qmm(x, wq, scales, biases, lhs_indices=lhs, rhs_indices=rhs, bits=4)
    assert out.shape == (4, 1, 24) and out.dtype == mx.float16
    for i, (li, ri) in enumerate(zip(_host(lhs), _host(rhs))):
        one = mx.quantized_matmul(x[int(li)], wq[int(ri)], scales[int(ri)], biases[int(ri)], bits=4)
        np.testing.assert_array_equal(_np(out[i]), _np(one))
    only_rhs = mx.gather_qmm(x[0], wq, scales, biases, rhs_indices=mx.array([[3], [1]]), bits=4)
    assert only_rhs.shape == (2, 1, 1, 24)


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("bits", [4, 8])
def test_tall_gather_qmm_multiplies_each_used_matrix_once(transpose, bits):
    """More than 16 rows (a mixture-of-experts prefill): per used matrix one tiled GEMM over its inputs; each
    result equals that pair's own quantized_matmul, and the reference meaning within the stated bound."""
    n = 24 if transpose else 64  # x @ W.T with W (n, 128), or x @ W with W (128, n) quantized along n
    wq, scales, biases = _quantized(*((n, 128) if transpose else (128, n)), 64, bits, mx.float16, lead=(5,))
    x = mx.array(RNG.standard_normal((3, 20, 128)).astype(np.float32)).astype(mx.float16)
    lhs, rhs = mx.array([0, 2, 2, 1, 0]), mx.array([4, 0, 1, 4, 4])
    out = mx.gather_qmm(x, wq, scales, biases, lhs_indices=lhs, rhs_indices=rhs, transpose=transpose, bits=bits)
    assert out.shape == (5, 20, n) and out.dtype == mx.float16
    for i, (li, ri) in enumerate(zip(_host(lhs), _host(rhs))):
        one = mx.quantized_matmul(x[int(li)], wq[int(ri)], scales[int(ri)], biases[int(ri)], transpose=transpose,
                                  bits=bits)
        np.testing.assert_array_equal(_np(out[i]), _np(one))
    ref = REGISTRY["gather_qmm"].impl(*(_host(a) for a in (x, wq, scales, biases, lhs, rhs)), transpose=transpose,
                                      group_size=64, bits=bits)
    np.testing.assert_allclose(_np(out), ref.astype(np.float32), rtol=2e-3, atol=2e-3 * np.abs(ref).max())


def test_quantized_bad_input_is_a_clear_error():
    wq, scales, biases = _quantized(8, 128, 64, 4, mx.float32)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\] Last dimension"):
        mx.quantized_matmul(mx.ones((1, 100)), wq, scales, biases)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\] Scales and biases"):
        mx.quantized_matmul(mx.ones((1, 128)), wq, scales[:, :1], biases)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\]"):
        mx.quantized_matmul(mx.ones((1, 128)), wq, scales, biases, bits=7)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\]"):
        mx.quantized_matmul(mx.ones((1, 128)), wq, scales, biases, group_size=48)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\] The weight matrix should be uint32"):
        mx.quantized_matmul(mx.ones((1, 128)), wq.astype(mx.int32), scales, biases)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\] The shapes of the weight and scales"):
        mx.quantized_matmul(mx.ones((1, 128)), wq, scales, biases, bits=8)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\] Only real floating"):
        mx.quantized_matmul(mx.ones((1, 128), dtype=mx.int32), wq, scales, biases)
    with pytest.raises(ValueError, match=r"\[dequantize\]"):
        mx.dequantize(wq[0], scales, biases)
    with pytest.raises(IndexError, match=r"\[gather_qmm\]"):
        mx.eval(mx.gather_qmm(mx.ones((1, 1, 128)), mx.expand_dims(wq, 0), mx.expand_dims(scales, 0),
                              mx.expand_dims(biases, 0), rhs_indices=mx.array([3])))


def test_quantized_matmul_compiled_and_gradients():
    wq, scales, biases = _quantized(16, 64, 32, 4, mx.float32)
    x = mx.array(RNG.standard_normal((2, 64)).astype(np.float32))
    f = lambda a, s, b: mx.quantized_matmul(a, wq, s, b, group_size=32, bits=4)  # noqa: E731
    np.testing.assert_array_equal(_host(mx.compile(f)(x, scales, biases)), _host(f(x, scales, biases)))
    dense = mx.dequantize(wq, scales, biases, group_size=32, bits=4)
    gx = mx.grad(lambda a: f(a, scales, biases).sum())(x)
    np.testing.assert_allclose(_host(gx), np.ones((2, 16)) @ _host(dense), rtol=1e-5, atol=1e-5)
    g_ref = mx.grad(lambda s, b: (x @ mx.dequantize(wq, s, b, group_size=32, bits=4).T).sum(), argnums=(0, 1))
    gs, gb = mx.grad(lambda s, b: f(x, s, b).sum(), argnums=(0, 1))(scales, biases)
    rs, rb = g_ref(scales, biases)
    np.testing.assert_allclose(_host(gs), _host(rs), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_host(gb), _host(rb), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
def test_quantize_dequantize_quantized_matmul_agree_with_mlx(bits, mlx, mlx_numpy):
    w = RNG.standard_normal((48, 128)).astype(np.float32)
    x = RNG.standard_normal((2, 128)).astype(np.float32)
    for dtype, mlx_type in ((mx.float32, mlx.float32), (mx.float16, mlx.float16), (mx.bfloat16, mlx.bfloat16)):
        ours = mx.quantize(mx.array(w).astype(dtype), group_size=64, bits=bits)
        theirs = mlx.quantize(mlx.array(w).astype(mlx_type), group_size=64, bits=bits)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(_np(a), mlx_numpy(b))
        np.testing.assert_array_equal(_np(mx.dequantize(*ours, group_size=64, bits=bits)),
                                      mlx_numpy(mlx.dequantize(*theirs, group_size=64, bits=bits)))
        got = mx.quantized_matmul(mx.array(x).astype(dtype), *ours, group_size=64, bits=bits)
        want = mlx.quantized_matmul(mlx.array(x).astype(mlx_type), *theirs, group_size=64, bits=bits)
        dense = np.abs(_dense(*ours, 64, bits))
        tol = 128 * 2.0 ** -22 * (np.abs(x) @ dense.T) + 4 * UNIT[dtype] * (np.abs(x) @ dense.T)
        assert np.all(np.abs(_np(got) - mlx_numpy(want)) <= tol)
