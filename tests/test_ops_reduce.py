"""Reductions, arg-reductions, logsumexp/softmax and scans: values against numpy for every axis form, result
dtypes against MLX's rules (and real MLX where installed), empty and 0-d inputs."""

import kiln.core as mx
import ml_dtypes
import numpy as np
import pytest

NAN, INF = float("nan"), float("inf")
ALL_DTYPES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
              "float16", "bfloat16", "float32", "float64"]
AXES = [None, 0, 1, 2, -1, -3, (0, 1), (0, 2), (2, 0), (-1, 0), (0, 1, 2), ()]
X = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)


def np_axis(axis):
    return tuple(range(3)) if axis is None else axis


def typed(values, dtype):
    np_dtype = {"bool_": np.bool_, "bfloat16": ml_dtypes.bfloat16}.get(dtype, dtype)
    return mx.array(np.asarray(values).astype(np_dtype), dtype=getattr(mx, dtype))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("op", ["sum", "prod", "max", "min", "mean", "var", "std", "logsumexp"])
def test_float_reductions_match_numpy(op, axis, keepdims):
    refs = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "mean": np.mean, "var": np.var,
            "std": np.std,
            "logsumexp": lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))}
    out = getattr(mx, op)(mx.array(X), axis=axis, keepdims=keepdims)
    expected = refs[op](X.astype(np.float64), axis=np_axis(axis), keepdims=keepdims)
    assert out.shape == expected.shape and out.dtype == mx.float32
    np.testing.assert_allclose(np.array(out), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("op", ["all", "any"])
def test_all_any_match_numpy(op, axis):
    x = X > 0.3
    for keepdims in (False, True):
        out = getattr(mx, op)(mx.array(x), axis=axis, keepdims=keepdims)
        assert out.dtype == mx.bool_
        np.testing.assert_array_equal(np.array(out), getattr(np, op)(x, axis=np_axis(axis), keepdims=keepdims))
    assert mx.all(mx.array([1.5, 0.0])).item() is False and mx.any(mx.array([0, 3])).item() is True


@pytest.mark.parametrize("ddof", [0, 1, 2])
def test_var_and_std_with_ddof(ddof):
    x = X.reshape(6, 4)
    np.testing.assert_allclose(np.array(mx.var(mx.array(x), axis=0, ddof=ddof)), np.var(x, 0, ddof=ddof), rtol=1e-5)
    np.testing.assert_allclose(np.array(mx.std(mx.array(x), ddof=ddof)), np.std(x, ddof=ddof), rtol=1e-5)


def test_var_with_ddof_at_least_the_count_is_inf():
    assert mx.var(mx.array([1.0, 2.0]), ddof=2).item() == INF


def test_method_forms():
    a = mx.array(X)
    np.testing.assert_allclose(np.array(a.sum(1)), X.sum(1), rtol=1e-5)
    np.testing.assert_allclose(np.array(a.mean(axis=(0, 2), keepdims=True)), X.mean((0, 2), keepdims=True),
                               rtol=1e-5)
    assert a.argmax().item() == int(np.argmax(X))
    assert a.max().item() == pytest.approx(float(X.max()))


@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_argmin(op, axis):
    x = np.round(X * 2)  # ties: the first index wins, as in numpy
    for keepdims in (False, True):
        out = getattr(mx, op)(mx.array(x), axis=axis, keepdims=keepdims)
        expected = getattr(np, op)(x, axis=axis, keepdims=keepdims)
        assert out.dtype == mx.uint32 and out.shape == np.shape(expected)
        np.testing.assert_array_equal(np.array(out), expected)


def test_argmax_with_nan_and_on_0d():
    assert mx.argmax(mx.array([1.0, NAN, 2.0])).item() == 1
    assert mx.argmax(mx.array(3.0)).item() == 0
    assert mx.argmax(mx.array([[1, 5], [7, 0]]), keepdims=True).shape == (1, 1)


def test_max_min_propagate_nan_and_handle_infinities():
    assert np.isnan(mx.max(mx.array([1.0, NAN])).item())
    assert np.isnan(mx.min(mx.array([NAN, 1.0])).item())
    assert mx.max(mx.array([-INF, -INF])).item() == -INF


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_logsumexp_is_stable_and_handles_infinite_rows(axis):
    x = np.array([[1000.0, 1000.0, -INF], [-INF, -INF, -INF]], np.float32)
    out = np.array(mx.logsumexp(mx.array(x), axis=axis))
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isinf(m), 0, m)
        expected = np.squeeze(np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m, axis=axis)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
def test_softmax_matches_numpy(axis):
    x = X.reshape(6, 4) * 10
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    out = mx.softmax(mx.array(x), axis=axis)
    np.testing.assert_allclose(np.array(out), e / e.sum(axis=axis, keepdims=True), rtol=1e-5, atol=1e-7)
    assert mx.softmax(mx.array([1, 2])).dtype == mx.float32
    assert mx.softmax(mx.array([1, 2], mx.float16)).dtype == mx.float16


SCAN_REFS = {
    "cumsum": np.cumsum, "cumprod": np.cumprod,
    "cummax": lambda x, axis: np.maximum.accumulate(x, axis=axis),
    "cummin": lambda x, axis: np.minimum.accumulate(x, axis=axis),
}
SCAN_IDENTITY = {"cumsum": 0.0, "cumprod": 1.0, "cummax": -INF, "cummin": INF}


def scan_reference(op, x, axis, reverse, inclusive):
    if axis is None:
        x, axis = x.reshape(-1), 0
    if reverse:
        x = np.flip(x, axis)
    out = SCAN_REFS[op](x, axis=axis)
    if not inclusive:
        ident = np.full_like(np.take(out, [0], axis=axis), SCAN_IDENTITY[op])
        out = np.concatenate([ident, np.delete(out, -1, axis=axis)], axis=axis)
    return np.flip(out, axis) if reverse else out


@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
@pytest.mark.parametrize("op", sorted(SCAN_REFS))
def test_scans_match_numpy(op, axis, reverse, inclusive):
    out = getattr(mx, op)(mx.array(X), axis=axis, reverse=reverse, inclusive=inclusive)
    expected = scan_reference(op, X.astype(np.float64), axis, reverse, inclusive)
    assert out.shape == expected.shape and out.dtype == mx.float32
    np.testing.assert_allclose(np.array(out), expected, rtol=1e-5, atol=1e-6)


def test_integer_scans_wrap_in_their_dtype():
    assert mx.cumsum(mx.array([100, 100], mx.int8)).tolist() == [100, -56]
    assert mx.cumprod(mx.array([16, 16], mx.uint8)).tolist() == [16, 0]
    assert mx.cummax(mx.array([1, 3, 2]), inclusive=False).tolist() == [-(2**31), 1, 3]
    assert mx.cummin(mx.array([1, 3, 2], mx.uint8), inclusive=False).tolist() == [255, 1, 1]
    assert mx.cumsum(mx.array([True, True, False])).tolist() == [1, 2, 2]
    assert mx.cummax(mx.array([False, True, False])).tolist() == [False, True, True]


# -- result dtypes -------------------------------------------------------------------------------------------
# MLX's table: sums/products of bool and small integers accumulate in (u)int32; means are floating.
SUM_DTYPE = {"bool_": "int32", "uint8": "uint32", "uint16": "uint32", "int8": "int32", "int16": "int32"}


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_reduction_result_dtypes(dtype):
    x = typed([1, 0, 1], dtype)
    floating = dtype in ("float16", "bfloat16", "float32", "float64")
    assert mx.sum(x).dtype.name == SUM_DTYPE.get(dtype, dtype)
    assert mx.prod(x).dtype.name == SUM_DTYPE.get(dtype, dtype)
    assert mx.max(x).dtype.name == dtype.rstrip("_") and mx.min(x).dtype == x.dtype
    for op in (mx.mean, mx.var, mx.std, mx.logsumexp):
        assert op(x).dtype.name == (dtype if floating else "float32")
    assert mx.all(x).dtype == mx.any(x).dtype == mx.bool_
    assert mx.argmax(x).dtype == mx.argmin(x).dtype == mx.uint32
    assert mx.cumsum(x).dtype.name == ("int32" if dtype == "bool_" else dtype.rstrip("_"))
    assert mx.cumprod(x).dtype == mx.cummax(x).dtype == mx.cummin(x).dtype == x.dtype


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("op", ["sum", "prod", "max", "min", "mean", "var", "std", "all", "any", "argmax",
                                "argmin", "cumsum", "cumprod", "cummax", "cummin", "logsumexp"])
def test_reduction_result_dtypes_match_mlx(mlx, op, dtype):
    ours = getattr(mx, op)(mx.zeros((3,), getattr(mx, dtype))).dtype
    theirs = getattr(mlx, op)(mlx.zeros((3,)).astype(getattr(mlx, dtype))).dtype
    assert ours.name == str(theirs).split(".")[-1]


def test_integer_sums_accumulate_in_the_result_dtype():
    assert mx.sum(mx.array([100, 100], mx.int8)).item() == 200
    assert mx.sum(mx.array([2**31 - 1, 1])).item() == -(2**31)  # wraps in int32, as in MLX
    assert mx.sum(mx.array([True] * 5)).item() == 5
    assert mx.prod(mx.array([100, 100], mx.int8)).item() == 10000


def test_half_precision_reductions_accumulate_in_float32():
    x = mx.full((4096,), 1.0, mx.float16)
    assert mx.sum(x).dtype == mx.float16 and mx.sum(x).item() == 4096.0  # a float16 running sum stops at 2048
    assert mx.mean(mx.full((3000,), 0.1, mx.bfloat16)).item() == pytest.approx(0.1, rel=1e-2)


# -- empty and 0-d -------------------------------------------------------------------------------------------
def test_reductions_of_empty_arrays():
    e = mx.zeros((0,))
    assert mx.sum(e).item() == 0.0 and mx.prod(e).item() == 1.0
    assert mx.all(e).item() is True and mx.any(e).item() is False
    assert np.isnan(mx.mean(e).item())
    assert mx.sum(mx.zeros((2, 0)), axis=1).tolist() == [0.0, 0.0]
    assert mx.max(mx.zeros((0, 2)), axis=1).shape == (0,)
    assert mx.cumsum(e).shape == (0,)
    for op in (mx.max, mx.min, mx.argmax, mx.logsumexp):
        with pytest.raises(ValueError):
            op(e)


def test_reductions_of_0d_arrays():
    x = mx.array(2.5)
    assert mx.sum(x).item() == 2.5 and mx.sum(x).shape == ()
    assert mx.max(x, keepdims=True).shape == ()
    assert mx.mean(mx.array(3)).dtype == mx.float32
    assert mx.cumsum(x).tolist() == [2.5]


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
@pytest.mark.parametrize("axis", [-1, None, (0, 1)])
def test_softmax_precise_computes_in_float32(dtype, axis):
    # precise=True: the whole softmax in float32, rounded to the input's type once (MLX)
    x = np.random.default_rng(0).normal(scale=10, size=(4, 64)).astype(np.float32)
    a = mx.array(x).astype(dtype)
    exact = np.array(a.astype(mx.float32), np.float64)
    shifted = np.exp(exact - exact.max(axis=axis, keepdims=True))
    want = mx.array((shifted / shifted.sum(axis=axis, keepdims=True)).astype(np.float32)).astype(dtype)
    out = mx.softmax(a, axis=axis, precise=True)
    assert out.dtype == dtype
    assert mx.array_equal(out, want).item()


def test_mean_of_integers_sums_exactly_before_converting():
    # MLX sums integers in their own type and converts the total: float32 accumulation would lose the
    # low bits of totals beyond 2**24 (the mean of each column here is an integer).
    x = np.arange(1, 2 * 1024 * 16 + 1, dtype=np.int32).reshape(2, 1024, 16)[::-1]
    out = mx.mean(mx.arange(1, x.size + 1).reshape(x.shape)[::-1], axis=1)
    assert out.dtype == mx.float32
    np.testing.assert_array_equal(np.array(out), x.mean(axis=1).astype(np.float32))
    assert mx.mean(mx.array([100, 100], mx.int8)).item() == 100.0


def test_complex_variance_is_real():
    # numpy's (and MLX's) definition: the mean of |x - mean|^2, a float32 result
    x = np.array([[1 + 2j, -3 - 4j, 0.5 - 0.25j], [2j, 1, 3 - 1j]], np.complex64)
    for kwargs in ({}, {"axis": 1}, {"axis": 0, "keepdims": True}, {"ddof": 1}):
        var, std = mx.var(mx.array(x), **kwargs), mx.std(mx.array(x), **kwargs)
        assert var.dtype == std.dtype == mx.float32
        np.testing.assert_allclose(np.array(var), np.var(x, **kwargs), rtol=1e-6)
        np.testing.assert_allclose(np.array(std), np.std(x, **kwargs), rtol=1e-6)


def _logcumsumexp_reference(x):
    out = x.astype(np.complex128)
    for i in range(1, len(out)):
        hi, lo = (out[i - 1], out[i]) if (out[i - 1].real, out[i - 1].imag) >= (out[i].real, out[i].imag) \
            else (out[i], out[i - 1])
        out[i] = hi + np.log(1 + np.exp(lo - hi))
    return out


def test_complex_logcumsumexp_and_exclusive_scans():
    a = np.array([-3 + 1j, -1 + 2j, -4 + 0j, 0 + 5j, 2 - 1j], np.complex64)
    np.testing.assert_allclose(np.array(mx.logcumsumexp(mx.array(a))), _logcumsumexp_reference(a), rtol=1e-5)
    for op in ("cummax", "cummin", "logcumsumexp"):
        for reverse in (False, True):
            inclusive = np.array(getattr(mx, op)(mx.array(a), inclusive=True, reverse=reverse))
            exclusive = np.array(getattr(mx, op)(mx.array(a), inclusive=False, reverse=reverse))
            got, want = (exclusive[:-1], inclusive[1:]) if reverse else (exclusive[1:], inclusive[:-1])
            np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{op} reverse={reverse}")
    # the first exclusive entry is the identity: -inf-infj for max, inf+infj for min (as MLX), e^z = 0 for logsumexp
    assert np.array(mx.cummax(mx.array(a), inclusive=False))[0] == complex(-INF, -INF)
    assert np.array(mx.cummin(mx.array(a), inclusive=False))[0] == complex(INF, INF)
    assert np.array(mx.logcumsumexp(mx.array(a), inclusive=False))[0].real == -INF


def test_complex_scans_agree_with_mlx(mlx):
    a = np.array([-3 + 1j, -1 + 2j, -4 + 0j, 0 + 5j, 2 - 1j], np.complex64)
    for op in ("cummax", "cummin", "logcumsumexp"):
        for reverse in (False, True):
            for inclusive in (False, True):
                ours = getattr(mx, op)(mx.array(a), reverse=reverse, inclusive=inclusive)
                theirs = getattr(mlx, op)(mlx.array(a), reverse=reverse, inclusive=inclusive)
                np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_median_propagates_nan(dtype):
    for values in ([1.0, NAN, 0.0], [NAN, 1.0, 0.0], [1.0, 2.0, NAN, 4.0]):
        out = mx.median(mx.array(values, getattr(mx, dtype)))
        assert out.dtype == getattr(mx, dtype) and np.isnan(out.item())
    x = np.array([[1.0, NAN, 3.0], [4.0, 5.0, 6.0]], np.float32)
    for axis in (0, 1):
        np.testing.assert_array_equal(np.array(mx.median(mx.array(x), axis=axis)), np.median(x, axis=axis))
    assert mx.median(mx.array(x), axis=1, keepdims=True).shape == (2, 1)
    assert np.isnan(np.array(mx.median(mx.array([1 + 0j, complex(NAN, 0), 0j])))).all()
    assert mx.median(mx.array([0, 1, 2, 3, 4])).item() == 2
