"""Floating-point quantization modes (mxfp4, mxfp8, nvfp4) and fp8 conversion: bit-exact against real MLX
where installed, and against the formats' definitions (ml_dtypes) and error bounds everywhere."""

from __future__ import annotations

import kiln.core as mx
import ml_dtypes
import numpy as np
import pytest

MODES = ["mxfp4", "mxfp8", "nvfp4"]
RNG = np.random.default_rng(0)


def _weights(rows=16, cols=64):
    # rows of very different magnitudes, and one all-zero group
    w = (RNG.standard_normal((rows, cols)) * np.exp(RNG.uniform(-6, 6, (rows, 1)))).astype(np.float32)
    w[0, :32] = 0.0
    return w


@pytest.mark.parametrize("mode", MODES)
def test_quantize_is_bit_exact_with_mlx(mode):
    mlx = pytest.importorskip("mlx.core")
    w = _weights()
    kq, ks = mx.quantize(mx.array(w), mode=mode)
    mq, ms = mlx.quantize(mlx.array(w), mode=mode)
    assert kq.dtype == mx.uint32 and ks.dtype == mx.uint8
    np.testing.assert_array_equal(np.array(kq), np.array(mq))
    np.testing.assert_array_equal(np.array(ks), np.array(ms))
    for dtype in (None, "float32", "float16"):
        kwargs = {} if dtype is None else {"dtype": getattr(mx, dtype)}
        mkwargs = {} if dtype is None else {"dtype": getattr(mlx, dtype)}
        kd = mx.dequantize(mx.array(np.array(mq)), mx.array(np.array(ms)), mode=mode, **kwargs)
        md = mlx.dequantize(mq, ms, mode=mode, **mkwargs)
        assert str(kd.dtype).split(".")[-1] == str(md.dtype).split(".")[-1]
        np.testing.assert_array_equal(np.array(kd.astype(mx.float32)), np.array(md.astype(mlx.float32)))


def test_nvfp4_global_scale_is_bit_exact_with_mlx():
    mlx = pytest.importorskip("mlx.core")
    w = _weights()
    g = np.float32(448 * 6 / np.abs(w).max())
    kq, ks = mx.quantize(mx.array(w), mode="nvfp4", global_scale=mx.array(g))
    mq, ms = mlx.quantize(mlx.array(w), mode="nvfp4", global_scale=mlx.array(g))
    np.testing.assert_array_equal(np.array(kq), np.array(mq))
    np.testing.assert_array_equal(np.array(ks), np.array(ms))
    kd = mx.dequantize(kq, ks, mode="nvfp4", global_scale=mx.array(g), dtype=mx.float32)
    md = mlx.dequantize(mq, ms, mode="nvfp4", global_scale=mlx.array(g), dtype=mlx.float32)
    np.testing.assert_array_equal(np.array(kd), np.array(md))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transpose", [True, False])
def test_quantized_matmul_matches_the_dequantized_product(mode, transpose):
    w = _weights(32, 64) if transpose else _weights(64, 32)  # (out, in) or (in, out); the input size is 64
    x = RNG.standard_normal((3, 64)).astype(np.float32)
    wq, scales = mx.quantize(mx.array(w), mode=mode)
    dense = np.array(mx.dequantize(wq, scales, mode=mode, dtype=mx.float32))
    got = mx.quantized_matmul(mx.array(x), wq, scales, transpose=transpose, mode=mode)
    want = x @ (dense.T if transpose else dense)
    assert got.dtype == mx.float32
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("mode,element", [("mxfp4", ml_dtypes.float4_e2m1fn), ("mxfp8", ml_dtypes.float8_e4m3fn),
                                          ("nvfp4", ml_dtypes.float4_e2m1fn)])
def test_round_trip_error_is_within_half_a_step(mode, element):
    # Independent of MLX: each element is the nearest value of its format times the group's scale, and the
    # group's largest magnitude needs no saturation (mx) or saturates at most by the scale's rounding (nv).
    w = _weights()
    wq, scales = mx.quantize(mx.array(w), mode=mode)
    back = np.array(mx.dequantize(wq, scales, mode=mode, dtype=mx.float32))
    group = 16 if mode == "nvfp4" else 32
    scale_type = ml_dtypes.float8_e4m3fn if mode == "nvfp4" else ml_dtypes.float8_e8m0fnu
    step = np.repeat(np.array(scales).view(scale_type).astype(np.float32), group, axis=-1)
    nearest = np.clip(w / np.where(step > 0, step, 1), -float(ml_dtypes.finfo(element).max),
                      float(ml_dtypes.finfo(element).max)).astype(element).astype(np.float32) * step
    np.testing.assert_array_equal(np.abs(back), np.abs(nearest))


def test_fp8_conversions():
    x = np.concatenate([np.linspace(-600, 600, 4001), [np.nan, np.inf, -np.inf, -0.0, 1e-9]]).astype(np.float32)
    codes = np.array(mx.to_fp8(mx.array(x)))
    assert codes.dtype == np.uint8
    saturated = np.where(np.isnan(x), 448.0, np.clip(x, -448.0, 448.0))
    np.testing.assert_array_equal(codes, saturated.astype(ml_dtypes.float8_e4m3fn).view(np.uint8))
    all_codes = np.arange(256, dtype=np.uint8)
    decoded = mx.from_fp8(mx.array(all_codes))
    assert decoded.dtype == mx.bfloat16
    np.testing.assert_array_equal(np.array(mx.from_fp8(mx.array(all_codes), mx.float32)),
                                  all_codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32))
    with pytest.raises(ValueError, match=r"\[to_fp8\]"):
        mx.to_fp8(mx.array([1, 2]))
    with pytest.raises(ValueError, match=r"\[from_fp8\]"):
        mx.from_fp8(mx.array([1.0]))


def test_fp8_matches_mlx():
    mlx = pytest.importorskip("mlx.core")
    x = np.concatenate([np.linspace(-600, 600, 2001), [np.nan, np.inf, -np.inf, -0.0]]).astype(np.float32)
    np.testing.assert_array_equal(np.array(mx.to_fp8(mx.array(x))), np.array(mlx.to_fp8(mlx.array(x))))


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "mxfp4", "group_size": 64}, "requires group size 32"),
    ({"mode": "mxfp4", "bits": 8}, "requires bits to be 4"),
    ({"mode": "nvfp4", "group_size": 32}, "requires group size 16"),
    ({"mode": "mxfp8", "bits": 4}, "requires bits to be 8"),
    ({"mode": "foo"}, "Invalid quantization mode 'foo'"),
    ({"mode": "mxfp4", "global_scale": mx.array(1.0)}, "only used by 'nvfp4'"),
])
def test_quantize_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mx.quantize(mx.ones((2, 64)), **kwargs)


def test_dequantize_refuses_biases_and_wrong_shapes():
    wq, scales = mx.quantize(mx.ones((2, 64)), mode="mxfp4")
    with pytest.raises(ValueError, match="Biases must be null"):
        mx.dequantize(wq, scales, mx.zeros_like(scales), mode="mxfp4")
    with pytest.raises(ValueError, match=r"\[dequantize\] Shape of scales"):
        mx.dequantize(wq, scales[:, :1], mode="mxfp4")
    with pytest.raises(ValueError, match=r"\[quantize\] The last dimension"):
        mx.quantize(mx.ones((2, 20)), mode="mxfp4")


def test_quantization_compiles_and_vmaps():
    w = mx.array(_weights(8, 64))
    eager = mx.quantize(w, mode="mxfp4")
    compiled = mx.compile(lambda a: mx.quantize(a, mode="mxfp4"))(w)
    for e, c in zip(eager, compiled):
        np.testing.assert_array_equal(np.array(e), np.array(c))
    batched = mx.vmap(lambda a: mx.dequantize(*mx.quantize(a, mode="nvfp4"), mode="nvfp4", dtype=mx.float32))(
        mx.reshape(w, (2, 4, 64)))
    whole = mx.dequantize(*mx.quantize(w, mode="nvfp4"), mode="nvfp4", dtype=mx.float32)
    np.testing.assert_array_equal(np.array(batched).reshape(8, 64), np.array(whole))


# -- fp-mode gather_qmm, qqmm / gather_qqmm, and the refused scale gradients ------------------------------------
def _dequantized(w, mode, global_scale=None):
    wq, scales = mx.quantize(mx.array(w), mode=mode, global_scale=global_scale)
    return wq, scales, np.array(mx.dequantize(wq, scales, mode=mode, global_scale=global_scale, dtype=mx.float32))


@pytest.mark.parametrize("mode", MODES)
def test_gather_qmm_in_fp_modes_is_gather_mm_of_the_dequantized_weights(mode):
    experts = np.stack([_weights(32, 64) for _ in range(3)])
    wq, scales, dense = _dequantized(experts, mode)
    x = RNG.standard_normal((4, 1, 64)).astype(np.float32)
    rhs = np.array([2, 0, 1, 2], np.uint32)
    got = mx.gather_qmm(mx.array(x), wq, scales, rhs_indices=mx.array(rhs), mode=mode)
    want = np.stack([x[i] @ dense[r].T for i, r in enumerate(rhs)])
    assert got.shape == (4, 1, 32)
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize("packed", [True, False])
def test_qqmm_is_the_product_of_both_operands_on_the_grid(mode, rows, packed):
    """The oracle: each operand quantized and dequantized by kiln's bit-exact quantize (checked against MLX
    above), multiplied in float64."""
    w = _weights(32, 64)
    x = RNG.standard_normal((rows, 64)).astype(np.float32)
    wq, scales, w_grid = _dequantized(w, mode)
    _, _, x_grid = _dequantized(x, mode)
    got = mx.qqmm(mx.array(x), wq, scales, mode=mode) if packed else mx.qqmm(mx.array(x), mx.array(w), mode=mode)
    want = x_grid.astype(np.float64) @ w_grid.T.astype(np.float64)
    assert got.shape == (rows, 32) and got.dtype == mx.float32
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    half = mx.qqmm(mx.array(x).astype(mx.bfloat16), wq, scales, mode=mode)
    assert half.dtype == mx.bfloat16


@pytest.mark.parametrize("mode", ["nvfp4", "mxfp8"])
def test_qqmm_matches_mlx_where_mlx_computes_it(mlx, mode):
    """MLX's CPU build computes qqmm for one row with a packed w."""
    w, x = _weights(32, 64), RNG.standard_normal((1, 64)).astype(np.float32)
    wq, scales = mlx.quantize(mlx.array(w), mode=mode)
    want = np.array(mlx.qqmm(mlx.array(x), wq, scales, mode=mode))
    got = mx.qqmm(mx.array(x), mx.array(np.array(wq)), mx.array(np.array(scales)), mode=mode)
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_gather_qqmm_gathers_like_gather_mm():
    experts = np.stack([_weights(16, 32) for _ in range(2)])
    x = RNG.standard_normal((3, 32)).astype(np.float32)
    got = mx.gather_qqmm(mx.array(x), mx.array(experts), rhs_indices=mx.array([0, 1, 1]), mode="mxfp8")
    for i, r in enumerate([0, 1, 1]):
        np.testing.assert_array_equal(np.array(got[i]), np.array(mx.qqmm(mx.array(x), mx.array(experts[r]),
                                                                          mode="mxfp8")))


def test_qqmm_gradients_pass_straight_through_the_quantization():
    w, x = _weights(8, 32), RNG.standard_normal((2, 32)).astype(np.float32)
    _, _, w_grid = _dequantized(w, "mxfp8")
    _, _, x_grid = _dequantized(x, "mxfp8")
    dx, dw = mx.grad(lambda a, b: mx.qqmm(a, b, mode="mxfp8").sum(), argnums=(0, 1))(mx.array(x), mx.array(w))
    np.testing.assert_allclose(np.array(dx), np.ones((2, 8)) @ w_grid, rtol=1e-6)
    np.testing.assert_allclose(np.array(dw), np.ones((8, 2)) @ x_grid, rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "affine"}, "Invalid quantization mode"),
    ({"group_size": 32}, "group size"),
    ({"bits": 8}, "bits"),
    ({"scales": None}, "Scales must be provided"),
])
def test_qqmm_errors(kwargs, match):
    wq, scales = mx.quantize(mx.array(_weights(32, 64)), mode="nvfp4")
    args = {"scales": scales, "mode": "nvfp4", **kwargs}
    with pytest.raises(ValueError, match=match):
        mx.qqmm(mx.ones((1, 64)), wq, **args)
    with pytest.raises(ValueError, match="first argument dtype == int32"):
        mx.qqmm(mx.ones((1, 64), dtype=mx.int32), wq, scales)
    with pytest.raises(ValueError, match="global_scale_x and global_scale_w"):
        mx.qqmm(mx.ones((1, 64)), wq, scales, global_scale_x=mx.array(1.0))


@pytest.mark.parametrize("mode", MODES)
def test_products_refuse_the_gradient_of_fp_scales_but_not_of_x(mode):
    w, x = _weights(32, 64), mx.array(RNG.standard_normal((2, 64)).astype(np.float32))
    wq, scales, dense = _dequantized(w, mode)
    with pytest.raises(ValueError, match=r"\[quantized_matmul\].*scales"):
        mx.grad(lambda s: mx.quantized_matmul(x, wq, s, mode=mode).sum())(scales)
    with pytest.raises(ValueError, match=r"\[gather_qmm\].*scales"):
        mx.grad(lambda s: mx.gather_qmm(x, wq, s, rhs_indices=mx.array(0), mode=mode).sum())(scales)
    dx = mx.grad(lambda a: mx.quantized_matmul(a, wq, scales, mode=mode).sum())(x)
    np.testing.assert_allclose(np.array(dx), np.ones((2, 32)) @ dense, rtol=1e-5, atol=1e-6)
    # dequantize itself has a zero derivative with respect to its codes, as in MLX
    ds = mx.grad(lambda s: mx.dequantize(wq, s, mode=mode, dtype=mx.float32).sum())(scales)
    assert ds.dtype == mx.uint8 and not np.array(ds).any()


def test_dequantize_refuses_a_non_floating_output_type():
    wq, scales = mx.quantize(mx.array(_weights()), mode="mxfp4")
    with pytest.raises(ValueError, match="Only real floating types are supported but output dtype == int32"):
        mx.dequantize(wq, scales, mode="mxfp4", dtype=mx.int32)
