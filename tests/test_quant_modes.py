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
