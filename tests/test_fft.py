"""mx.fft: forward results against numpy.fft (double precision), gradients against real MLX where installed and
against the adjoint identity, transforms under compile, vmap and jvp, and MLX's errors."""

from __future__ import annotations

import kiln.core as mx
import numpy as np
import pytest

RNG = np.random.default_rng(0)


def _complex(*shape):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)


def _real(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


ONE_AXIS = [
    ("fft", _complex, {}), ("fft", _complex, {"n": 5}), ("fft", _complex, {"n": 11, "axis": 0}),
    ("ifft", _complex, {"axis": 0}), ("ifft", _complex, {"n": 3}),
    ("rfft", _real, {}), ("rfft", _real, {"n": 9}), ("rfft", _real, {"axis": 0, "n": 4}),
]


@pytest.mark.parametrize("name,make,kwargs", ONE_AXIS)
def test_one_axis_transforms_match_numpy(name, make, kwargs):
    x = make(6, 8)
    want = getattr(np.fft, name)(x.astype(np.complex128 if x.dtype.kind == "c" else np.float64), **kwargs)
    got = getattr(mx.fft, name)(mx.array(x), **kwargs)
    assert got.dtype == mx.complex64 and tuple(got.shape) == want.shape
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [None, 7, 8, 12])
def test_irfft_matches_numpy(n):
    x = _complex(3, 5)
    want = np.fft.irfft(x.astype(np.complex128), n=n)
    got = mx.fft.irfft(mx.array(x), n=n)
    assert got.dtype == mx.float32 and tuple(got.shape) == want.shape
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["fft2", "ifft2", "fftn", "ifftn", "rfft2", "rfftn", "irfft2", "irfftn"])
@pytest.mark.parametrize("axes,s", [(None, None), ((0, 2), None), ((2, 1), (5, 6)), ((1, 2), (3, 10))])
def test_multi_axis_transforms_match_numpy(name, axes, s):
    if name.endswith("2") and axes is None:
        axes = (-2, -1)
    x = _real(4, 6, 8) if name.startswith("rfft") else _complex(4, 6, 8)
    want = getattr(np.fft, name)(x.astype(np.float64 if x.dtype.kind == "f" else np.complex128), s=s, axes=axes)
    got = getattr(mx.fft, name)(mx.array(x), s=s, axes=axes)
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["fftshift", "ifftshift"])
@pytest.mark.parametrize("axes", [None, 0, [1], (0, 1), [-1]])
def test_shifts_match_numpy(name, axes):
    x = _real(5, 6)
    np.testing.assert_array_equal(np.array(getattr(mx.fft, name)(mx.array(x), axes=axes)),
                                  getattr(np.fft, name)(x, axes=axes))


def test_integer_and_non_contiguous_inputs():
    x = np.arange(12).reshape(3, 4)
    np.testing.assert_allclose(np.array(mx.fft.fft(mx.array(x))), np.fft.fft(x), atol=1e-5)
    c = _complex(4, 8)
    np.testing.assert_allclose(np.array(mx.fft.fft(mx.array(c)[:, ::2])), np.fft.fft(c[:, ::2]), atol=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda: mx.fft.irfftn(mx.array(3.0)), r"\[irfftn\]"),
    (lambda: mx.fft.fft(mx.ones((2, 2)), axis=2), r"\[fft\] Invalid axis"),
    (lambda: mx.fft.fftn(mx.ones((2, 2)), axes=(0, 0)), r"\[fftn\] Duplicated axis"),
    (lambda: mx.fft.fftn(mx.ones((2, 2)), s=(2,)), r"\[fftn\] `axes` should not be `None`"),
    (lambda: mx.fft.fftn(mx.ones((2, 2)), s=(2, 2), axes=(0,)), r"\[fftn\] Shape and axes have different sizes"),
    (lambda: mx.fft.fft(mx.ones((4,)), n=0), r"\[fft\] Invalid FFT output size"),
    (lambda: mx.fft.fftshift(mx.ones((4, 4)), axes=[2]), r"\[fftshift\]"),
    (lambda: mx.fft.fftshift(mx.ones((4, 4)), axes=[-3]), r"\[fftshift\]"),
])
def test_errors_name_the_operation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_compiled_and_vmapped_transforms_match_eager():
    x = mx.array(_complex(3, 16))
    eager = np.array(mx.fft.fft(x))
    np.testing.assert_allclose(np.array(mx.compile(mx.fft.fft)(x)), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.array(mx.vmap(mx.fft.fft)(x)), eager, rtol=1e-6, atol=1e-6)
    r = mx.array(_real(3, 16))
    np.testing.assert_allclose(np.array(mx.vmap(mx.fft.rfft, in_axes=1, out_axes=1)(mx.transpose(r))),
                               np.fft.rfft(np.array(r), axis=1).T, rtol=1e-5, atol=1e-5)


def test_jvp_is_the_transform_of_the_tangent():
    x, t = _real(8), _real(8)
    _, (jt,) = mx.jvp(mx.fft.rfft, [mx.array(x)], [mx.array(t)])
    np.testing.assert_allclose(np.array(jt), np.fft.rfft(t), rtol=1e-5, atol=1e-5)


def test_real_gradient_through_a_spectrum_matches_finite_differences():
    # loss = sum |rfft(x)|^2 weighted: a real function of a real input, checked without any complex convention.
    x = RNG.standard_normal(10)
    w = np.linspace(0.5, 2.0, 6)

    def loss_np(v):
        return float(np.sum(w * np.abs(np.fft.rfft(v)) ** 2))

    g = mx.grad(lambda v: mx.sum(mx.array(w.astype(np.float32)) * mx.abs(mx.fft.rfft(v)) ** 2))(
        mx.array(x.astype(np.float32)))
    eps = 1e-6
    numeric = np.array([(loss_np(x + eps * e) - loss_np(x - eps * e)) / (2 * eps) for e in np.eye(10)])
    np.testing.assert_allclose(np.array(g), numeric, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name,kwargs,make", [
    ("fft", {}, lambda: _complex(6)), ("ifft", {}, lambda: _complex(6)), ("fft2", {}, lambda: _complex(3, 4)),
    ("rfft", {}, lambda: _real(6)), ("rfft", {}, lambda: _real(7)), ("rfftn", {}, lambda: _real(3, 5)),
    ("irfft", {}, lambda: _complex(4)), ("irfft", {"n": 7}, lambda: _complex(4)),
    ("irfftn", {}, lambda: _complex(3, 4)),
])
def test_vjp_matches_real_mlx(name, kwargs, make):
    mlx = pytest.importorskip("mlx.core")
    x = make()
    out = getattr(np.fft, name)(x, **kwargs)
    ct = RNG.standard_normal(out.shape).astype(np.float32)
    if out.dtype.kind == "c":
        ct = (ct + 1j * RNG.standard_normal(out.shape)).astype(np.complex64)
    (got,) = mx.vjp(lambda a: getattr(mx.fft, name)(a, **kwargs), [mx.array(x)], [mx.array(ct)])[1]
    (want,) = mlx.vjp(lambda a: getattr(mlx.fft, name)(a, **kwargs), [mlx.array(x)], [mlx.array(ct)])[1]
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,d", [(1, 1.0), (8, 1.0), (9, 0.25), (16, 3.0)])
def test_sample_frequencies_match_numpy(n, d):
    for name in ("fftfreq", "rfftfreq"):
        got = getattr(mx.fft, name)(n, d)
        assert got.dtype == mx.float32
        np.testing.assert_allclose(np.array(got), getattr(np.fft, name)(n, d), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[fftfreq\]"):
        mx.fft.fftfreq(0)


STFT_CASES = [
    {"n_fft": 8},
    {"n_fft": 8, "center": False},
    {"n_fft": 16, "hop_length": 3, "win_length": 12, "window": "hann"},
    {"n_fft": 16, "pad_mode": "constant", "norm": "ortho"},
    {"n_fft": 10, "pad_mode": "edge", "norm": "forward", "onesided": False},
]


def _stft_kwargs(lib, case):
    kwargs = dict(case)
    if kwargs.get("window") == "hann":
        kwargs["window"] = lib.array(np.hanning(12).astype(np.float32))
    return kwargs


@pytest.mark.parametrize("case", STFT_CASES)
def test_stft_and_istft_match_mlx(case):
    mlx = pytest.importorskip("mlx.core")
    x = RNG.standard_normal((2, 50)).astype(np.float32)
    ours = mx.fft.stft(mx.array(x), **_stft_kwargs(mx, case))
    theirs = mlx.fft.stft(mlx.array(x), **_stft_kwargs(mlx, case))
    assert ours.shape == theirs.shape and ours.dtype == mx.complex64
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-5, atol=1e-5)
    inverse = {k: v for k, v in case.items() if k != "pad_mode"}
    back = mx.fft.istft(ours, **_stft_kwargs(mx, inverse))
    want = mlx.fft.istft(theirs, **_stft_kwargs(mlx, inverse))
    assert back.shape == want.shape
    np.testing.assert_allclose(np.array(back), np.array(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_fft,hop", [(8, 2), (16, 4), (12, 5)])
def test_istft_inverts_stft(n_fft, hop):
    # Independent of MLX: overlap-add with the squared-window envelope reconstructs the signal exactly.
    x = RNG.standard_normal((3, 64)).astype(np.float32)
    window = mx.array(np.hanning(n_fft + 2)[1:-1].astype(np.float32))
    spectrum = mx.fft.stft(mx.array(x), n_fft=n_fft, hop_length=hop, window=window)
    # each column is the rfft of one windowed frame of the reflect-padded signal
    padded = np.pad(x, [(0, 0), (n_fft // 2, n_fft // 2)], mode="reflect")
    np.testing.assert_allclose(np.array(spectrum)[:, :, 1],
                               np.fft.rfft(padded[:, hop:hop + n_fft] * np.array(window)), rtol=1e-4, atol=1e-4)
    back = mx.fft.istft(spectrum, n_fft=n_fft, hop_length=hop, window=window, length=64)
    np.testing.assert_allclose(np.array(back), x, rtol=1e-4, atol=1e-4)


def test_stft_errors():
    with pytest.raises(ValueError, match=r"\[stft\] pad_mode"):
        mx.fft.stft(mx.ones((32,)), n_fft=8, pad_mode="wrap")
    with pytest.raises(ValueError, match=r"\[stft\] norm"):
        mx.fft.stft(mx.ones((32,)), n_fft=8, norm="twice")
    with pytest.raises(ValueError, match=r"\[istft\] 3 frequencies do not match"):
        mx.fft.istft(mx.ones((3, 4), dtype=mx.complex64), n_fft=8)


@pytest.mark.parametrize("name", ["fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "fftn", "ifftn", "rfft2", "irfft2",
                                  "rfftn", "irfftn"])
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_norm_matches_numpy(name, norm):
    x = _real(6, 8)
    inp = np.fft.rfftn(x).astype(np.complex64) if name.startswith("irfft") else x
    want = getattr(np.fft, name)(inp.astype(np.complex128 if inp.dtype.kind == "c" else np.float64), norm=norm)
    np.testing.assert_allclose(np.array(getattr(mx.fft, name)(mx.array(inp), norm=norm)), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=rf"\[{name}\] Invalid norm"):
        getattr(mx.fft, name)(mx.array(inp), norm="sideways")
