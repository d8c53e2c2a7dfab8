"""sort, argsort, partition, argpartition, topk: values against numpy, MLX where installed, errors, transforms."""

import math

import kiln.core as mx
import numpy as np
import pytest

NAN = float("nan")


def np_of(x):
    return np.array(x)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- forward values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_sort_and_argsort_match_numpy_on_every_axis(axis):
    x = rand((3, 4, 5))
    out = mx.sort(mx.array(x), axis=axis)
    idx = mx.argsort(mx.array(x), axis=axis)
    np.testing.assert_array_equal(np_of(out), np.sort(x, axis=axis))
    np.testing.assert_array_equal(np_of(idx), np.argsort(x, axis=axis, kind="stable"))
    assert out.dtype == mx.float32 and idx.dtype == mx.uint32


def test_axis_none_flattens():
    x = np.array([[3, 1], [0, 2]], np.int32)
    assert mx.sort(mx.array(x), axis=None).tolist() == [0, 1, 2, 3]
    assert mx.argsort(mx.array(x), axis=None).tolist() == [2, 1, 3, 0]
    assert mx.topk(mx.array(x), 2, axis=None).tolist() == [2, 3]
    assert mx.partition(mx.array(x), 0, axis=None).shape == (4,)


def test_argsort_is_stable_on_ties():
    x = [1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    expected = sorted(range(len(x)), key=lambda i: x[i])  # Python's sort is stable
    assert mx.argsort(mx.array(x)).tolist() == expected
    assert mx.argsort(mx.array([-0.0, 0.0, -0.0, 0.0])).tolist() == [0, 1, 2, 3]


def test_nan_sorts_last_and_counts_as_largest():
    x = mx.array([NAN, math.inf, -math.inf, 1.0, NAN])
    out = mx.sort(x).tolist()
    assert out[:3] == [-math.inf, 1.0, math.inf] and all(math.isnan(v) for v in out[3:])
    assert mx.argsort(x).tolist() == [2, 3, 1, 0, 4]
    assert math.isnan(mx.topk(mx.array([3.0, NAN, 1.0]), 1).item())
    part = mx.partition(mx.array([3.0, NAN, 1.0, 2.0]), 3).tolist()
    assert math.isnan(part[3])


@pytest.mark.parametrize("dtype", [mx.int8, mx.uint8, mx.int32, mx.uint32, mx.int64, mx.uint64, mx.float16,
                                   mx.bfloat16, mx.float64, mx.bool_])
def test_dtypes_are_kept_and_ordered(dtype):
    vals = [5, 0, 3, 1, 4] if dtype != mx.bool_ else [True, False, True, False, False]
    x = mx.array(vals, dtype=dtype)
    out = mx.sort(x)
    assert out.dtype == dtype
    assert out.tolist() == sorted(out.tolist()) and sorted(out.tolist()) == sorted(x.tolist())
    assert mx.argsort(x).dtype == mx.uint32
    assert mx.topk(x, 2).dtype == dtype
    assert mx.argpartition(x, 1).dtype == mx.uint32


def test_half_precision_sorts_with_negative_zero_and_nan():
    x = mx.array([1.5, -0.0, 0.0, -2.0, NAN], dtype=mx.bfloat16)
    out = mx.sort(x).tolist()
    assert out[:4] == [-2.0, -0.0, 0.0, 1.5] and math.isnan(out[4])


def test_complex_sorts_lexicographically():
    x = mx.array([1 + 2j, 1 - 1j, 0 + 5j])
    assert mx.sort(x).tolist() == [5j, 1 - 1j, 1 + 2j]


def test_zero_d_and_empty():
    with pytest.raises(IndexError, match=r"^\[sort\] Axis -1 is out of bounds for array with 0 dimensions"):
        mx.sort(mx.array(3.0))
    assert mx.sort(mx.array(3.0), axis=None).tolist() == [3.0]
    assert mx.sort(mx.zeros((0, 3)), 0).shape == (0, 3)
    idx = mx.argsort(mx.zeros((2, 0)))
    assert idx.shape == (2, 0) and idx.dtype == mx.uint32
    assert mx.topk(mx.zeros((2, 3)), 0).shape == (2, 0)
    assert mx.topk(mx.zeros((0,)), 0).shape == (0,)
    assert mx.partition(mx.zeros((3, 0)), 0, axis=0).shape == (3, 0)


@pytest.mark.parametrize("kth", [0, 2, 5, -1, -6])
def test_partition_places_kth_and_sides(kth):
    x = rand((4, 6), seed=3)
    out = np_of(mx.partition(mx.array(x), kth))
    idx = np_of(mx.argpartition(mx.array(x), kth))
    k = kth % 6
    ref = np.sort(x, axis=-1)
    np.testing.assert_array_equal(out[:, k], ref[:, k])
    assert (out[:, :k] <= out[:, k:k + 1]).all() and (out[:, k + 1:] >= out[:, k:k + 1]).all()
    np.testing.assert_array_equal(np.sort(out, -1), ref)
    np.testing.assert_array_equal(np.take_along_axis(x, idx.astype(np.int64), -1), out)


def test_partition_on_other_axis():
    x = rand((5, 3), seed=4)
    out = np_of(mx.partition(mx.array(x), 1, axis=0))
    np.testing.assert_array_equal(out[1], np.sort(x, axis=0)[1])


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("axis", [-1, 0])
def test_topk_values_are_the_k_largest_in_ascending_order(k, axis):
    x = rand((6, 6), seed=5)
    out = np_of(mx.topk(mx.array(x), k, axis=axis))
    ref = np.sort(x, axis=axis)
    ref = ref[..., -k:] if axis == -1 else ref[-k:]
    np.testing.assert_array_equal(out, ref)


def test_topk_on_integers_with_ties():
    out = mx.topk(mx.array([5, 1, 9, 5, 7, 9]), 3)
    assert out.dtype == mx.int32 and out.tolist() == [7, 9, 9]


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, exc, message", [
    (lambda a: mx.sort(a, axis=2), IndexError, r"^\[sort\] Axis 2 is out of bounds for array with 2 dimensions"),
    (lambda a: mx.argsort(a, axis=-3), IndexError, r"^\[argsort\] Axis -3 is out of bounds"),
    (lambda a: mx.topk(a, 4), ValueError,
     r"^\[topk\] Received invalid k=4 along axis -1 for array with shape: \(2,3\)"),
    (lambda a: mx.topk(a, -1), ValueError, r"^\[topk\] Received invalid k=-1"),
    (lambda a: mx.topk(a, 1, axis=5), IndexError, r"^\[topk\] Axis 5 is out of bounds"),
    (lambda a: mx.topk(a, 2.0), TypeError, r"^\[topk\] k must be an int"),
    (lambda a: mx.partition(a, 3), ValueError,
     r"^\[partition\] Received invalid kth 3 along axis -1 for array with shape: \(2,3\)"),
    (lambda a: mx.partition(a, -4), ValueError, r"^\[partition\] Received invalid kth -4"),
    (lambda a: mx.argpartition(a, 0, axis=2), IndexError, r"^\[argpartition\] Axis 2 is out of bounds"),
    (lambda a: mx.argpartition(mx.zeros((2, 0)), 0), ValueError, r"^\[argpartition\] Received invalid kth 0"),
    (lambda a: mx.sort(a, axis=1.0), TypeError, r"^\[sort\] axis must be an int"),
    (lambda a: mx.topk(mx.array(3.0), 1), IndexError, r"^\[topk\] Axis -1 is out of bounds"),
])
def test_error_table(call, exc, message):
    with pytest.raises(exc, match=message):
        call(mx.array([[3, 1, 2], [0, 5, 4]]))


# -- transforms -----------------------------------------------------------------------------------------
def test_sort_vjp_routes_cotangents_through_the_permutation():
    x = mx.array([3.0, 1.0, 2.0, 4.0, -1.0, 0.5])
    g = mx.grad(lambda x: (mx.sort(x) * mx.arange(6)).sum())(x)
    # sorted order takes x[4], x[5], x[1], x[2], x[0], x[3]: each gets its output position as gradient
    assert g.tolist() == [4.0, 2.0, 3.0, 5.0, 0.0, 1.0]


def test_partition_and_topk_vjp():
    x = mx.array([3.0, 1.0, 2.0, 4.0, -1.0, 0.5])
    g = mx.grad(lambda x: (mx.partition(x, 2) * mx.partition(x, 2)).sum())(x)
    np.testing.assert_allclose(np_of(g), 2 * np_of(x))
    g = mx.grad(lambda x: (mx.topk(x, 2) * mx.array([10.0, 20.0])).sum())(x)
    assert g.tolist() == [10.0, 0.0, 0.0, 20.0, 0.0, 0.0]


def test_sort_vjp_against_finite_differences_on_a_matrix():
    x = rand((3, 5), seed=7)
    w = rand((3, 5), seed=8)

    def f(a):
        return (mx.sort(a, axis=0) * mx.array(w)).sum()

    g = np_of(mx.grad(f)(mx.array(x)))
    eps = 1e-3
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        num[i] = (f(mx.array(x + d)).item() - f(mx.array(x - d)).item()) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-2, atol=1e-2)


def test_sort_jvp_permutes_the_tangent():
    _, (t,) = mx.jvp(lambda x: mx.sort(x), [mx.array([3.0, 1.0, 2.0])], [mx.array([1.0, 2.0, 3.0])])
    assert t.tolist() == [2.0, 3.0, 1.0]


def test_argsort_has_zero_gradient():
    g = mx.grad(lambda x: (mx.argsort(x).astype(mx.float32) * x).sum())(mx.array([2.0, 1.0, 3.0]))
    assert g.tolist() == [1.0, 0.0, 2.0]


@pytest.mark.parametrize("fn", [lambda x: mx.sort(x), lambda x: mx.argsort(x), lambda x: mx.topk(x, 2),
                                lambda x: mx.partition(x, 1), lambda x: mx.argpartition(x, -1)])
@pytest.mark.parametrize("in_axis", [0, 1])
def test_vmap_matches_a_loop(fn, in_axis):
    x = rand((3, 4), seed=9)
    batched = np_of(mx.vmap(fn, in_axes=in_axis)(mx.array(x)))
    rows = x if in_axis == 0 else x.T
    looped = np.stack([np_of(fn(mx.array(r))) for r in rows])
    np.testing.assert_array_equal(batched, looped)


def test_compiled_matches_eager():
    from kiln.testing import assert_compiled_matches

    def f(x):
        return mx.sort(x, axis=0) + mx.topk(x, 2, axis=0).sum() + mx.argsort(x).astype(mx.float32)

    assert_compiled_matches(f, mx.array(rand((4, 3), seed=10)))


# -- real MLX as the oracle ---------------------------------------------------------------------------
def test_against_mlx():
    mlx = pytest.importorskip("mlx.core")
    x = rand((4, 7), seed=11)
    x[1, 2] = np.nan
    x[2, :3] = 0.5
    for axis in (-1, 0, None):
        np.testing.assert_array_equal(np_of(mx.sort(mx.array(x), axis=axis)), np.array(mlx.sort(mlx.array(x), axis=axis)))
        np.testing.assert_array_equal(np_of(mx.argsort(mx.array(x), axis=axis)),
                                      np.array(mlx.argsort(mlx.array(x), axis=axis)))
        ours = np_of(mx.topk(mx.array(x), 3, axis=axis))
        theirs = np.array(mlx.topk(mlx.array(x), 3, axis=axis))
        np.testing.assert_array_equal(np.sort(ours, axis=-1 if axis is None else axis),
                                      np.sort(theirs, axis=-1 if axis is None else axis))
    ints = np.array([5, 1, 9, 3, 7, 2], np.int32)
    for kth in (0, 2, -1):
        assert np_of(mx.partition(mx.array(ints), kth))[kth] == np.array(mlx.partition(mlx.array(ints), kth))[kth]
    assert mx.argsort(mx.array(ints)).dtype == mx.uint32 and mlx.argsort(mlx.array(ints)).dtype == mlx.uint32


# -- searchsorted -------------------------------------------------------------------------------------
def test_searchsorted_orders_nan_last():
    # sort's order: NaN follows every number (numpy's searchsorted uses the same order)
    seq = np.array([1, 2, NAN], np.float32)
    for side in ("left", "right"):
        for values in ([NAN], [NAN, 2.0, 5.0]):
            got = mx.searchsorted(mx.array(seq), mx.array(values, mx.float32), side=side)
            np.testing.assert_array_equal(np_of(got), np.searchsorted(seq, np.array(values, np.float32), side=side))
    assert mx.searchsorted(mx.array([1, 2, 3], mx.float32), mx.array([NAN])).tolist() == [3]
    half = mx.searchsorted(mx.array([1, 2, NAN], mx.bfloat16), mx.array([NAN, 1.5], mx.bfloat16))
    assert half.tolist() == [2, 1]


def test_searchsorted_shapes_promotion_and_empty_inputs():
    a = mx.arange(16, dtype=mx.float32)
    for shape in [(), (1,), (3, 4)]:
        v = np.random.default_rng(0).random(shape).astype(np.float32) * 20
        out = mx.searchsorted(a, mx.array(v))
        assert out.shape == shape and out.dtype == mx.uint32
        np.testing.assert_array_equal(np_of(out), np.searchsorted(np.arange(16), v))
    # the int sequence and float values promote (4.5 lands after the 4, not before it)
    assert mx.searchsorted(mx.array([1, 3, 4, 7]), mx.array([4.5])).tolist() == [3]
    assert mx.searchsorted(mx.array([], mx.float32), mx.array([1.0, -1.0])).tolist() == [0, 0]
    assert mx.searchsorted(a, mx.array([], mx.float32)).shape == (0,)


def test_searchsorted_vmaps_over_values_only():
    seq = mx.arange(8, dtype=mx.float32)
    values = np.random.default_rng(1).random((3, 5)).astype(np.float32) * 10
    out = mx.vmap(lambda v: mx.searchsorted(seq, v))(mx.array(values))
    np.testing.assert_array_equal(np_of(out), np.searchsorted(np.arange(8), values))
    with pytest.raises(ValueError, match=r"^\[searchsorted\] Cannot vmap over the sorted sequence"):
        mx.vmap(lambda s: mx.searchsorted(s, mx.array([1.0])))(mx.zeros((3, 4)))
    compiled = mx.compile(lambda s, v: mx.searchsorted(s, v, side="right"), shapeless=True)
    assert compiled(seq, mx.array([2.0, 7.5])).tolist() == [3, 8]
    assert compiled(mx.arange(4, dtype=mx.float32), mx.array([2.0, 7.5, -1.0])).tolist() == [3, 4, 0]


@pytest.mark.parametrize("call, message", [
    (lambda: mx.searchsorted(mx.zeros((3, 4)), mx.array([1.0])), "The sorted sequence must be 1-D"),
    (lambda: mx.searchsorted(mx.array(1.0), mx.array([1.0])), "The sorted sequence must be 1-D"),
    (lambda: mx.searchsorted(mx.array([1.0]), mx.array([1.0]), side="middle"), "Invalid side 'middle'"),
])
def test_searchsorted_errors(call, message):
    with pytest.raises(ValueError, match=rf"^\[searchsorted\] {message}"):
        call()


def test_searchsorted_agrees_with_mlx(mlx):
    seq = np.array([1, 2, 2, 4, NAN], np.float32)
    values = np.array([[0, 1, 2], [3, 5, NAN]], np.float32)
    for side in ("left", "right"):
        ours = mx.searchsorted(mx.array(seq), mx.array(values), side=side)
        theirs = mlx.searchsorted(mlx.array(seq), mlx.array(values), side=side)
        np.testing.assert_array_equal(np_of(ours), np.array(theirs))
