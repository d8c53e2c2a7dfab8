"""Indexing: getitem/setitem/.at[], take, take_along_axis, put_along_axis.

Oracles: numpy's own indexing (hand-written keys applied to numpy arrays), numpy's ufunc.at for
accumulation, real MLX where it is installed, and finite differences for the gradients.
"""

import itertools

import kiln.core as mx
import numpy as np
import pytest


def _np_key(key):
    """The same key for numpy: kiln arrays become numpy arrays."""
    if isinstance(key, tuple):
        return tuple(_np_key(k) for k in key)
    if isinstance(key, mx.array):
        return np.array(key)
    return key


def _mlx_key(key, real):
    if isinstance(key, tuple):
        return tuple(_mlx_key(k, real) for k in key)
    if isinstance(key, mx.array):
        return real.array(np.array(key))
    return key


def I(*values):
    """An int32 index array, written compactly in the tables."""
    return mx.array(np.array(values, dtype=np.int32))


SHAPE = (3, 4, 5)

GETITEM_KEYS = [
    0, -1, 2, (1, 2), (-1, -2, -3), (0, 0, 0),
    slice(None), slice(1, None), slice(None, None, -1), slice(None, None, 2), slice(-2, None),
    slice(10, 20), slice(-10, 2), slice(3, 1), slice(1, 3, -1), slice(None, None, -2), slice(-10, None, -1),
    (slice(None), slice(3, 0, -1)), (slice(None), slice(None), slice(4, None, -3)),
    (slice(2, None, -1), 1, slice(None, 1, -1)),
    None, (None, 0), (0, None), (None, Ellipsis, None), (Ellipsis, 1), (1, Ellipsis), (Ellipsis,), (),
    (0, Ellipsis, 0), (None, slice(None), None, 2, None),
    I(0, 2), I(-1, 0, -3), I(1, 1, 1), [0, 2], [[0, 1], [2, 2]], I(), mx.array(1), mx.array(-1),
    (I(0, 2), 1), (1, I(0, 3)), (I(0, 2), I(1, 3)), (I(0, 2), I(1, 3), I(4, 0)),
    (slice(None), I(0, 1)), (slice(None), I(0, 1), I(3, 4)), (I(0, 1), slice(None), I(3, 4)),
    (I(0, 1), I(0, 1), slice(None)), (0, slice(None), I(0, 1)), (slice(None), 0, I(0, 1)),
    (None, slice(None), 0, I(0, 1)), (I(0, 1), None, I(0, 1)), (slice(None), I(0, 1), None, I(0, 1)),
    (Ellipsis, I(0, 1)), (I(0, 1), Ellipsis), (I(0, 1), Ellipsis, I(0, 1)),
    (mx.array([[0], [2]]), I(0, 1, 3)), (mx.array([[0], [2]]), slice(1, 3), I(0, 1, 3)),
    (slice(None, None, -1), I(2, 0), slice(None, None, -2)),
    (mx.array(0), slice(None), I(0, 1)), (mx.array(2), mx.array(3)),
    I(0, 1).astype(mx.uint8), I(-1, 0).astype(mx.int64), I(2, 1).astype(mx.int8),
    (1, slice(1, 3), [[0, 1], [2, 4]]),
]


def _base(shape=SHAPE, dtype=np.float32):
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


@pytest.mark.parametrize("key", GETITEM_KEYS, ids=[repr(k)[:40] for k in GETITEM_KEYS])
def test_getitem_matches_numpy(key):
    x = _base()
    got = mx.array(x)[key]
    want = x[_np_key(key)]
    assert got.shape == want.shape
    assert got.dtype == mx.float32
    np.testing.assert_array_equal(np.array(got), want)


# MLX places separated advanced indices differently when an Ellipsis that stands for no axis separates
# them (it treats them as adjacent); kiln follows numpy there.
_MLX_DIFFERS = {repr((I(0, 1), Ellipsis, I(0, 1)))}


@pytest.mark.parametrize("key", GETITEM_KEYS, ids=[repr(k)[:40] for k in GETITEM_KEYS])
def test_getitem_matches_mlx(key):
    real = pytest.importorskip("mlx.core")
    if repr(key) in _MLX_DIFFERS:
        pytest.skip("MLX differs from numpy here; kiln follows numpy")
    x = _base()
    want = real.array(x)[_mlx_key(key, real)]
    got = mx.array(x)[key]
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(np.array(got), np.array(want))


def test_getitem_ellipsis_separates_advanced_indices_like_numpy():
    x = _base((2, 3, 4))
    got = mx.array(x)[I(0, 1), ..., I(0, 1)]
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(np.array(got), [[0, 4, 8], [13, 17, 21]])


def test_getitem_hand_written_values():
    a = mx.arange(12).reshape(3, 4)
    assert a[1].tolist() == [4, 5, 6, 7]
    assert a[-1, -1].item() == 11
    assert a[::-1, 0].tolist() == [8, 4, 0]
    assert a[I(0, 2), I(3, 0)].tolist() == [3, 8]
    assert a[1:, I(1)].tolist() == [[5], [9]]
    assert a[None].shape == (1, 3, 4)
    assert a[I(1, 1), None].shape == (2, 1, 4)
    assert a[0, I(0, 1)].tolist() == [0, 1]
    assert a.dtype == mx.int32 and a[0].dtype == mx.int32


def test_getitem_on_0d_and_empty():
    s = mx.array(5.0)
    assert s[None].tolist() == [5.0]
    assert s[()].item() == 5.0
    assert s[...].item() == 5.0
    e = mx.zeros((0, 3))
    assert e[:, 1].shape == (0,)
    assert e[I()].shape == (0, 3)
    assert e[1:].shape == (0, 3)


def test_getitem_accepts_numpy_integer_keys():
    a = mx.arange(10)
    assert a[np.int64(3)].item() == 3
    assert a[np.array([1, -1])].tolist() == [1, 9]
    assert a[slice(np.int32(1), np.int64(4))].tolist() == [1, 2, 3]
    assert a[mx.array(2):mx.array(4)].tolist() == [2, 3]


def test_getitem_is_lazy_and_does_not_change_the_source():
    a = mx.arange(6).reshape(2, 3)
    b = a[1]
    assert b._data is None
    assert b.tolist() == [3, 4, 5]
    assert a.tolist() == [[0, 1, 2], [3, 4, 5]]


# -- errors ----------------------------------------------------------------------------------------
ERROR_CASES = [
    (10, "out of bounds"), (-6, "out of bounds"), ((0, 4), "out of bounds"), ((0, -5), "out of bounds"),
    ((0, 0, 0), "Too many indices"), ((Ellipsis, 0, Ellipsis), "single ellipsis"),
    (slice(None, None, 0), "step cannot be zero"), (1.5, "type float"), ("a", "type str"),
    (True, "bool"), (mx.array([True, False, True, True, False]), "Boolean"), ([True, False], "Boolean"),
    (np.array([True, False]), "Boolean"), (mx.array([0.5]), "integral"), ([0, 1.5], "integral"),
    ((I(0, 1), I(0, 1, 2)), "broadcast"), (slice(1.5, None), "Slice indices"),
]


@pytest.mark.parametrize("key,message", ERROR_CASES, ids=[repr(k)[:30] for k, _ in ERROR_CASES])
def test_getitem_errors(key, message):
    a = mx.arange(20).reshape(5, 4)
    with pytest.raises((IndexError, ValueError), match=message) as info:
        a[key]
    assert str(info.value).startswith("[getitem]")


def test_out_of_range_ints_raise_index_error_and_value_error():
    a = mx.arange(5)
    with pytest.raises(IndexError, match=r"^\[getitem\] Index 10 is out of bounds for axis 0 with size 5"):
        a[10]
    with pytest.raises(ValueError, match=r"^\[getitem\] Index -6 is out of bounds"):
        a[-6]
    with pytest.raises(IndexError, match="0-dimensional|0 dimensions"):
        mx.array(3)[0]


@pytest.mark.parametrize("indices", [[5], [-6], [0, 7, 1], [[0], [100]]])
def test_index_arrays_out_of_range_raise_when_evaluated(indices):
    a = mx.arange(5)
    out = a[mx.array(indices)]  # building the node is fine; evaluating it must raise, never read garbage
    with pytest.raises(IndexError, match=r"^\[gather\] Index -?\d+ is out of bounds for axis 0 with size 5"):
        mx.eval(out)
    with pytest.raises(IndexError, match="out of bounds"):
        mx.take(a, mx.array(indices)).tolist()


def test_unsigned_index_out_of_range():
    with pytest.raises(IndexError, match="Index 200 is out of bounds"):
        mx.arange(5)[mx.array([200], dtype=mx.uint8)].tolist()


# -- setitem ---------------------------------------------------------------------------------------
SETITEM_CASES = [
    (0, 7.0), (-1, np.arange(20.0).reshape(4, 5)), ((1, 2), np.arange(5.0)), ((0, slice(None), 1), -1.0),
    (slice(None, None, -1), np.arange(5.0)), ((slice(None), slice(3, 0, -1)), np.ones((3, 3, 1))),
    ((Ellipsis, 0), 2.5), ((None, 1), np.arange(20.0).reshape(1, 4, 5)), (Ellipsis, 3.0),
    (slice(10, 20), 1.0), (I(0, 2), np.arange(40.0).reshape(2, 4, 5)), (I(2, 0), np.arange(5.0)),
    ((I(0, 2), I(1, 3)), np.array([[100.0], [200.0]]).reshape(2, 1)), ((I(0, 2), I(1, 3), I(4, 0)), -5.0),
    ((slice(None), I(0, 1)), np.arange(30.0).reshape(3, 2, 5)),
    ((0, slice(None), I(0, 1)), np.arange(8.0).reshape(2, 4)),  # separated: index dims first
    ((I(0, 1), slice(1, 3), I(3, 4)), np.arange(4.0).reshape(2, 2)),
    ((slice(None, None, -1), I(1), slice(None, None, 2)), np.arange(9.0).reshape(3, 1, 3)),
    ((mx.array([[0], [2]]), I(0, 3)), np.arange(4.0).reshape(2, 2, 1)),
    (0, np.arange(20.0).reshape(1, 1, 4, 5)),  # extra leading unit dims are dropped, as numpy does
    ((1, None, 2, None), np.arange(5.0).reshape(1, 1, 5)),
]


@pytest.mark.parametrize("key,value", SETITEM_CASES, ids=[repr(k)[:40] for k, _ in SETITEM_CASES])
def test_setitem_matches_numpy(key, value):
    x = _base()
    a = mx.array(x)
    a[key] = value if np.ndim(value) == 0 else mx.array(value)
    want = x.copy()
    want[_np_key(key)] = value
    assert a.shape == SHAPE and a.dtype == mx.float32
    np.testing.assert_array_equal(np.array(a), want)


def test_setitem_matches_mlx_on_common_cases():
    real = pytest.importorskip("mlx.core")
    for key, value in SETITEM_CASES[:14]:
        a, r = mx.array(_base()), real.array(_base())
        a[key] = value if np.ndim(value) == 0 else mx.array(value)
        r[_mlx_key(key, real)] = value if np.ndim(value) == 0 else real.array(value)
        np.testing.assert_array_equal(np.array(a), np.array(r), err_msg=repr(key))


def test_setitem_casts_to_the_array_dtype():
    a = mx.arange(6).reshape(2, 3)
    a[0] = 2.5
    assert a.dtype == mx.int32
    assert a.tolist() == [[2, 2, 2], [3, 4, 5]]
    b = mx.zeros((3,), dtype=mx.float16)
    b[I(1)] = mx.array([7.0])
    assert b.dtype == mx.float16 and b.tolist() == [0.0, 7.0, 0.0]


def test_setitem_reads_the_old_value_in_its_own_operands():
    a = mx.arange(4)
    alias = a
    a[1] = 10
    assert alias.tolist() == [0, 10, 2, 3]  # the same Python object
    a[I(0, 3)] = mx.array([-1, -2])
    a[2:] += 100  # read-modify-write: the value reads a's old value
    assert a.tolist() == [-1, 10, 102, 98]
    b = mx.arange(5)
    b[b > 2] = 0  # the mask reads b's old value
    b[mx.argmax(b)] = -1  # so does an index array
    b[I(0)] = b[I(1)] * 7
    assert b.tolist() == [7, 1, -1, 0, 0]


def test_setitem_leaves_earlier_lazy_dependents_alone():
    a = mx.arange(4)
    before = a * 1
    a[1] = 10
    assert before.tolist() == [0, 1, 2, 3]  # as in MLX


def test_setitem_repeated_indices_last_wins():
    a = mx.zeros(3)
    a[I(0, 0, 0)] = mx.array([1.0, 2.0, 3.0])
    assert a.tolist() == [3.0, 0.0, 0.0]


def test_setitem_boolean_mask():
    x = _base((3, 4))
    a = mx.array(x)
    a[a > 5] = 0.0
    want = x.copy()
    want[want > 5] = 0.0
    np.testing.assert_array_equal(np.array(a), want)
    b = mx.array(x)
    b[mx.array([True, False, True])] = mx.array([1.0, 2.0, 3.0, 4.0])
    assert b.tolist()[0] == [1.0, 2.0, 3.0, 4.0] and b.tolist()[2] == [1.0, 2.0, 3.0, 4.0]
    assert b.tolist()[1] == [4.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match=r"^\[setitem\] The boolean mask should have the same shape"):
        b[mx.array([True, False])] = 1.0


@pytest.mark.parametrize("mask", [True, False, np.True_, [True, False, True], np.array([False, True, True])])
def test_setitem_python_and_numpy_masks_as_numpy(mask):
    # A bare bool is a 0-d mask: True sets every element, False none (numpy's and MLX's a[True] = v).
    x = _base((3, 2))
    a = mx.array(x)
    a[mask] = 9.0
    want = x.copy()
    want[mask] = 9.0
    np.testing.assert_array_equal(np.array(a), want)


def test_setitem_mask_shape_must_lead_the_array():
    for shape in ((1, 10, 10), (10, 10, 1)):
        with pytest.raises(ValueError):
            mx.arange(1000).reshape(10, 10, 10)[np.zeros(shape, dtype=bool)] = 0


def test_setitem_boolean_mask_consumes_values_in_order():
    a = mx.arange(6).reshape(2, 3)
    a[mx.array([[True, False, True], [False, True, False]])] = mx.array([10, 20, 30, 40])  # extra ignored
    assert a.tolist() == [[10, 1, 20], [3, 30, 5]]
    b = mx.arange(6).reshape(2, 3)
    b[mx.array([True, True])] = mx.array([[7, 8, 9], [1, 2, 3]])
    assert b.tolist() == [[7, 8, 9], [1, 2, 3]]
    c = mx.arange(6).reshape(2, 3)
    c[np.array([False, True])] = mx.array([[4], [5]])[1:]  # one row of values, broadcast along the row
    assert c.tolist() == [[0, 1, 2], [5, 5, 5]]
    d = mx.zeros(4)
    d[mx.array([True, False, True, True])] = mx.array([1.0, 2.0])  # too few values: an error, not garbage
    with pytest.raises(IndexError, match="out of bounds"):
        d.tolist()
    g = mx.grad(lambda v: _masked_sum(v))(mx.array([1.0, 2.0, 3.0]))
    assert g.tolist() == [1.0, 2.0, 0.0]


def _masked_sum(v):
    a = mx.zeros(3)
    a[mx.array([True, False, True])] = v
    return (a * mx.array([1.0, 5.0, 2.0])).sum()


SETITEM_ERRORS = [
    (0, np.ones(3), "Cannot broadcast"), (0, np.ones((2, 1)), "Cannot broadcast"),
    (I(0, 1), np.ones((3, 4)), "Cannot broadcast"), (7, 1.0, "out of bounds"), ((0, 9), 1.0, "out of bounds"),
]


@pytest.mark.parametrize("key,value,message", SETITEM_ERRORS)
def test_setitem_errors(key, value, message):
    a = mx.zeros((3, 4))
    with pytest.raises((IndexError, ValueError), match=message) as info:
        a[key] = value if np.ndim(value) == 0 else mx.array(value)
    assert str(info.value).startswith("[setitem]")
    assert a.tolist() == [[0.0] * 4] * 3  # a failed update leaves the array as it was


def test_setitem_index_array_out_of_range_raises_at_eval():
    a = mx.zeros(4)
    a[I(1, 4)] = 1.0
    with pytest.raises(IndexError, match=r"^\[scatter\] Index 4 is out of bounds for axis 0 with size 4"):
        a.tolist()


# -- .at[] ----------------------------------------------------------------------------------------
AT_OPS = [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply), ("divide", np.divide),
          ("maximum", np.maximum), ("minimum", np.minimum)]


@pytest.mark.parametrize("name,ufunc", AT_OPS)
@pytest.mark.parametrize("key", [I(0, 0, 3, 0), (I(1, 1), I(2, 2)), (slice(None), I(0, 0)), (I(2, 2), slice(1, 3)),
                                 (I(3, 3), -1)], ids=repr)
def test_at_accumulates_like_ufunc_at(name, ufunc, key):
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 2, size=(4, 5)).astype(np.float32)
    nkey = _np_key(key)
    shape = x[nkey].shape
    v = rng.uniform(0.5, 3, size=shape).astype(np.float32)
    want = x.copy()
    ufunc.at(want, nkey, v)
    got = getattr(mx.array(x).at[key], name)(mx.array(v))
    np.testing.assert_allclose(np.array(got), want, rtol=1e-6)


@pytest.mark.parametrize("name,ufunc", AT_OPS)
def test_at_with_basic_keys_and_scalars(name, ufunc):
    x = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
    want = x.copy()
    ufunc.at(want, (slice(None), slice(1, 3)), 2.0)
    got = getattr(mx.array(x).at[:, 1:], name)(2.0)
    np.testing.assert_allclose(np.array(got), want, rtol=1e-6)


def test_at_hand_written_and_mlx_values():
    a = mx.arange(5.0)
    idx = I(0, 0, 1)
    assert a.at[idx].add(1.0).tolist() == [2.0, 2.0, 2.0, 3.0, 4.0]
    assert a.at[idx].subtract(1.0).tolist() == [-2.0, 0.0, 2.0, 3.0, 4.0]
    assert a.at[idx].multiply(2.0).tolist() == [0.0, 2.0, 2.0, 3.0, 4.0]
    assert a.at[idx].maximum(mx.array([3.0, 5.0, -1.0])).tolist() == [5.0, 1.0, 2.0, 3.0, 4.0]
    assert a.at[idx].minimum(mx.array([3.0, -5.0, -1.0])).tolist() == [-5.0, -1.0, 2.0, 3.0, 4.0]
    assert a.at[I(1, 1)].set(mx.array([7.0, 9.0])).tolist() == [0.0, 9.0, 2.0, 3.0, 4.0]
    assert a.at[None].add(10.0).tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert a.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # .at never changes its array
    assert mx.array([7.0, 9.0]).at[I(0, 0)].divide(mx.array([2.0, 4.0])).tolist() == [0.875, 9.0]


def test_at_keeps_integer_and_bool_dtypes():
    i = mx.arange(5)
    out = i.at[I(0, 0)].add(2.5)  # the value is cast to int32 first, as in MLX
    assert out.dtype == mx.int32 and out.tolist() == [4, 1, 2, 3, 4]
    div = mx.array([7, 9, -7, 100]).at[I(0, 1, 2, 3, 3)].divide(2)
    assert div.dtype == mx.int32 and div.tolist() == [3, 4, -4, 25]  # floor division, repeated per index
    b = mx.zeros(4, dtype=mx.bool_).at[I(1)].add(True)
    assert b.dtype == mx.bool_ and b.tolist() == [False, True, False, False]


def test_at_errors():
    with pytest.raises(IndexError, match=r"^\[scatter_add\] Index 7 is out of bounds"):
        mx.arange(5).at[I(7)].add(1).tolist()
    with pytest.raises(IndexError, match=r"^\[at\] Index 7 is out of bounds"):
        mx.arange(5).at[7].add(1)
    with pytest.raises(ValueError, match=r"^\[at\] Cannot broadcast"):
        mx.arange(5).at[I(0, 1)].add(mx.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"^Must give indices to array.at"):
        mx.array(1).at.add(1)  # the key is missing: MLX's ValueError, not an AttributeError
    with pytest.raises(AttributeError):
        mx.array(1).at.nonexistent
    assert mx.array(1).at[None].add(1).item() == 2


@pytest.mark.parametrize("key", [2**32, 2**31, -(2**31) - 1, slice(None, 2**32), slice(2**31, None),
                                 slice(None, None, 2**31), (Ellipsis, 2**31)])
def test_indices_and_slice_bounds_beyond_int32_are_value_errors(key):
    # MLX's indices are int32: larger ones raise ValueError (before any bounds check), for get and set.
    x = mx.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"^Slice indices must be 32-bit integers\.$"):
        x[key]
    with pytest.raises(ValueError, match=r"^Slice indices must be 32-bit integers\.$"):
        x[key] = 1
    assert x[:-(2**31)].tolist() == [] and x[:2**31 - 1].tolist() == [0, 1, 2]  # the edges of int32 are fine


# -- take / take_along_axis / put_along_axis --------------------------------------------------------
def test_take_matches_numpy():
    x = _base((3, 4, 5))
    a = mx.array(x)
    for idx in ([0, 2], [[1, -1], [0, 0]], [], [3]):
        np_idx = np.array(idx, dtype=np.int32)
        for axis in (None, 0, 1, 2, -1):
            if axis is not None and np_idx.size and np_idx.max() >= x.shape[axis]:
                continue
            got = mx.take(a, mx.array(np_idx), axis=axis)
            np.testing.assert_array_equal(np.array(got), np.take(x, np_idx, axis=axis), err_msg=f"{idx} {axis}")
    assert mx.take(a, 1, axis=1).shape == (3, 5)
    assert mx.take(a, -1).item() == 59.0
    assert mx.take(mx.array(4), mx.array([0, 0])).tolist() == [4, 4]


def test_take_errors():
    a = mx.zeros((2, 3))
    with pytest.raises(IndexError, match=r"^\[take\] Received invalid axis 2"):
        mx.take(a, mx.array([0]), axis=2)
    with pytest.raises(ValueError, match=r"^\[take\] Indices must be integral"):
        mx.take(a, mx.array([0.5]), axis=1)
    with pytest.raises(IndexError, match=r"^\[take\] Index 3 is out of bounds"):
        mx.take(a, 3, axis=1)
    with pytest.raises(IndexError, match=r"out of bounds for axis 1 with size 3"):
        mx.take(a, mx.array([0, 3]), axis=1).tolist()


def test_take_from_an_empty_axis():
    a = mx.zeros((4, 0))
    out = mx.take(a, mx.array([1, 2]), axis=0)  # the empty axis is not the one taken from
    assert out.shape == (2, 0) and out.dtype == mx.float32
    assert mx.take(mx.zeros((0, 3)), mx.array([], mx.int32), axis=0).shape == (0, 3)
    with pytest.raises(ValueError, match=r"^\[take\] Cannot do a non-empty take from an empty axis"):
        mx.take(a, mx.array([[0]]), axis=1)
    with pytest.raises(ValueError, match=r"^\[take\] Cannot do a non-empty take from an empty axis"):
        mx.take(a, mx.array([0]))
    with pytest.raises(ValueError, match=r"^\[take\] Cannot do a non-empty take from an array with zero"):
        mx.take(mx.zeros((0, 3)), 1, axis=1)


def test_take_along_axis_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    for axis in (0, 1, 2, -1):
        idx = np.argsort(x, axis=axis)[(slice(None),) * 3]
        got = mx.take_along_axis(mx.array(x), mx.array(idx.astype(np.int32)), axis=axis)
        np.testing.assert_array_equal(np.array(got), np.take_along_axis(x, idx, axis=axis))
    idx = np.array([[[0]], [[4]]], dtype=np.int32)  # broadcasts against x except along the axis
    assert mx.take_along_axis(mx.array(x[:2]), mx.array(idx), axis=2).shape == (2, 4, 1)
    np.testing.assert_array_equal(
        np.array(mx.take_along_axis(mx.array(x[:2]), mx.array(idx), axis=2)), np.take_along_axis(x[:2], idx, 2))
    flat = np.array([0, 59, -1], dtype=np.int32)
    np.testing.assert_array_equal(np.array(mx.take_along_axis(mx.array(x), mx.array(flat), axis=None)),
                                  x.reshape(-1)[flat])
    assert mx.take_along_axis(mx.arange(6).reshape(2, 3), mx.array([[2], [0]])).tolist() == [[2], [3]]


def test_take_along_axis_errors():
    a = mx.zeros((2, 3))
    with pytest.raises(ValueError, match=r"^\[take_along_axis\] Indices of dimension 1 does not match"):
        mx.take_along_axis(a, mx.array([0]), axis=1)
    with pytest.raises(IndexError, match=r"^\[take_along_axis\] Axis 2 is out of bounds"):
        mx.take_along_axis(a, mx.array([[0]]), axis=2)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        mx.take_along_axis(a, mx.array([[0], [1], [0]]), axis=1)
    with pytest.raises(IndexError, match="out of bounds for axis 1 with size 3"):
        mx.take_along_axis(a, mx.array([[0], [3]]), axis=1).tolist()


def test_put_along_axis_matches_numpy():
    x = np.zeros((3, 4), dtype=np.float32)
    idx = np.array([[1], [3], [0]])
    vals = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    want = x.copy()
    np.put_along_axis(want, idx, vals, axis=1)
    got = mx.put_along_axis(mx.array(x), mx.array(idx.astype(np.int32)), mx.array(vals), axis=1)
    np.testing.assert_array_equal(np.array(got), want)
    want0 = x.copy()
    np.put_along_axis(want0, np.array([[2, 0, 1, 1]]), 5.0, axis=0)
    got0 = mx.put_along_axis(mx.array(x), I(2, 0, 1, 1)[None], mx.array(5.0), axis=0)
    np.testing.assert_array_equal(np.array(got0), want0)
    flat = mx.put_along_axis(mx.zeros((2, 3)), I(0, 5), mx.array([1.0, 2.0]), axis=None)
    assert flat.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]
    ints = mx.put_along_axis(mx.zeros((2, 3), dtype=mx.int32), mx.array([[0], [0]]), mx.array(5.5), axis=1)
    assert ints.dtype == mx.int32 and ints.tolist() == [[5, 0, 0], [5, 0, 0]]


def test_put_along_axis_with_empty_indices_of_any_dtype():
    # MLX checks these indices' dtype only when it runs the scatter, which an empty index never does.
    e = mx.array([], mx.float32)
    out = mx.put_along_axis(e, e, e, axis=None)
    assert out.shape == (0,) and out.dtype == mx.float32 and out.tolist() == []
    assert mx.take_along_axis(mx.zeros((2, 3)), mx.zeros((2, 0)), axis=1).shape == (2, 0)
    with pytest.raises(ValueError, match=r"^\[put_along_axis\] Indices must be integral"):
        mx.put_along_axis(mx.zeros(3), mx.array([1.0]), mx.array([1.0]), axis=0)


def test_take_family_matches_mlx():
    real = pytest.importorskip("mlx.core")
    x = _base((3, 4))
    idx = np.array([[2, 0], [1, 1]], dtype=np.int32)
    for axis in (None, 0, 1):
        np.testing.assert_array_equal(np.array(mx.take(mx.array(x), mx.array(idx), axis=axis)),
                                      np.array(real.take(real.array(x), real.array(idx), axis=axis)))
    ia = np.array([[0, 3, 1]] * 3, dtype=np.int32)
    np.testing.assert_array_equal(np.array(mx.take_along_axis(mx.array(x), mx.array(ia), axis=1)),
                                  np.array(real.take_along_axis(real.array(x), real.array(ia), axis=1)))


# -- transforms ---------------------------------------------------------------------------------------
def _numeric_grad(f, x, eps=1e-3):
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g


def _check_grad(fn, *args, argnum=0):
    """fn builds a scalar from kiln arrays; compare mx.grad with central differences in float64 numpy."""
    args = [np.asarray(a, dtype=np.float32) for a in args]
    got = mx.grad(lambda *xs: fn(*xs), argnums=argnum)(*[mx.array(a) for a in args])

    def f(v):
        xs = [mx.array(a.astype(np.float32)) for a in args]
        xs[argnum] = mx.array(v.astype(np.float32))
        return float(np.array(fn(*xs), dtype=np.float64))

    want = _numeric_grad(f, args[argnum])
    np.testing.assert_allclose(np.array(got), want, rtol=2e-2, atol=2e-2)


W = np.linspace(-1.0, 1.0, 12).reshape(3, 4).astype(np.float32)


def test_gather_gradient_accumulates_repeats():
    x = np.linspace(0.5, 2.0, 12).reshape(3, 4)
    _check_grad(lambda a: (a[I(0, 0, 2), 1:] ** 2).sum(), x)
    _check_grad(lambda a: (mx.take_along_axis(a, mx.array([[0, 0], [3, 1], [2, 2]]), 1) ** 3).sum(), x)
    g = mx.grad(lambda a: a[I(1, 1, 1)].sum())(mx.zeros(3))
    assert g.tolist() == [0.0, 3.0, 0.0]


@pytest.mark.parametrize("name", ["set", "add", "subtract", "multiply", "divide", "maximum", "minimum"])
def test_scatter_gradients(name):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 2.0, size=(3, 4))
    v = rng.uniform(0.5, 2.0, size=(3, 4))  # distinct values: no ties for maximum/minimum
    key = (I(0, 2, 0), slice(None))
    values = v[:3]

    def f(a, u):
        return (getattr(a.at[key], name)(u) * mx.array(W)).sum()

    _check_grad(f, x, values, argnum=0)
    _check_grad(f, x, values, argnum=1)


def test_setitem_gradient_zeroes_overwritten_slots():
    def f(a, u):
        b = a * 1.0
        b[1:, I(0, 2)] = u
        return (b * mx.array(W)).sum()

    ga = mx.grad(f)(mx.ones((3, 4)), mx.ones((2, 2)))
    want = W.copy()
    want[1:, [0, 2]] = 0.0
    np.testing.assert_allclose(np.array(ga), want)
    gu = mx.grad(f, argnums=1)(mx.ones((3, 4)), mx.ones((2, 2)))
    np.testing.assert_allclose(np.array(gu), W[1:, [0, 2]])


def test_jvp_of_gather_and_scatter():
    x = mx.array(W)
    t = mx.ones((3, 4))
    _, (tan,) = mx.jvp(lambda a: a[I(2, 2), 1], [x], [t])
    assert tan.tolist() == [1.0, 1.0]
    _, (tan,) = mx.jvp(lambda a: a.at[I(0, 0)].multiply(mx.array(2.0)), [x], [t])
    np.testing.assert_allclose(np.array(tan)[0], [4.0] * 4)
    np.testing.assert_allclose(np.array(tan)[1:], 1.0)


def test_vmap_of_indexing():
    x = _base((4, 5))
    idx = np.array([[0, 4], [3, 3], [1, 0], [2, 2]], dtype=np.int32)
    got = mx.vmap(lambda row, i: row[i])(mx.array(x), mx.array(idx))
    np.testing.assert_array_equal(np.array(got), np.take_along_axis(x, idx, 1))
    got = mx.vmap(lambda row: row[I(3, 0)], in_axes=1)(mx.array(x))
    np.testing.assert_array_equal(np.array(got), x[[3, 0]].T)
    got = mx.vmap(lambda i: mx.array(x.T)[i], in_axes=0)(mx.array(idx))
    np.testing.assert_array_equal(np.array(got), x.T[idx])
    got = mx.vmap(lambda row, i, v: row.at[i].add(v))(mx.array(x), mx.array(idx), mx.ones((4, 2)))
    want = x.copy()
    for r in range(4):
        np.add.at(want[r], idx[r], 1.0)
    np.testing.assert_array_equal(np.array(got), want)
    got = mx.vmap(lambda row, v: row.at[I(1, 1)].maximum(v), in_axes=(0, None))(mx.array(x), mx.array(100.0))
    want = x.copy()
    want[:, 1] = 100.0
    np.testing.assert_array_equal(np.array(got), want)


def test_traced_graph_uses_index_primitives():
    from kiln.core.tracing import make_graph

    text = str(make_graph(lambda x, i: x[1:, ::-1][i], mx.zeros((3, 4)), mx.array([0, 1])))
    assert "slice[start=(1, 3) stop=(3, -1) strides=(1, -1)]" in text
    assert "gather[axes=(0,)]" in text


@pytest.mark.parametrize("transform", ["compile", "vmap", "grad"])
def test_setitem_on_a_transformed_input(transform):
    def f(x):
        x[0] = 1.0
        return x * 2

    if transform == "compile":
        out = mx.compile(f)(mx.zeros((2, 3)))
        assert out.tolist() == [[2.0] * 3, [0.0] * 3]
    elif transform == "vmap":
        out = mx.vmap(f)(mx.zeros((2, 3)))
        assert out.tolist() == [[2.0, 0.0, 0.0]] * 2
    else:
        g = mx.grad(lambda x: f(x).sum())(mx.zeros(3))
        assert g.tolist() == [0.0, 2.0, 2.0]


def test_basic_keys_take_a_shortcut_that_builds_the_general_paths_graph():
    # Keys of Python ints, slices and one Ellipsis skip the general key parser; the shortcut must record the
    # same nodes (slice params, squeeze axes, no node for a whole read), give numpy's values, and leave
    # every error (and every other kind of key) to the general path.
    from kiln.core import indexing

    def nodes(x):
        out = []
        while x._prim is not None:
            out.append((x._prim, x._params, x._shape))
            x = x._inputs[0]
        return out

    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a = mx.array(base)
    atoms = [0, -1, 2, -3, 5, slice(None), slice(1, None), slice(None, None, -1), slice(0, 0), slice(-2, 10, 2),
             slice(None, None, 0), Ellipsis, None, True]
    shortcuts = 0
    for r in range(4):
        for key in itertools.product(atoms, repeat=r):
            got = indexing._basic_read(a, key)
            try:
                want = indexing._read(a, indexing._plan(a.shape, key, "getitem"))
            except (IndexError, ValueError):
                assert got is None, key
                continue
            if got is None:
                assert any(k is None or type(k) is bool for k in key) or key.count(Ellipsis) > 1, key
                continue
            shortcuts += 1
            assert nodes(got) == nodes(want) and (got is a) == (want is a), key
            np.testing.assert_array_equal(np.array(got), base[key])
    assert shortcuts > 400
