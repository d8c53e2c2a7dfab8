"""Eager mode's fast paths give the answers of the general paths: cached scalar constants, binary promotion
shortcuts, one broadcast check per op, the single-node evaluation shortcut and the cheap floating-point
error state. Expectations are hand-written (numpy) or real MLX's where it is installed."""

import copy
import pickle
import warnings

import kiln.core as mx
import numpy as np
import pytest
from kiln.core import dtypes as dt


# -- scalar constants: every value keeps its own buffer ---------------------------------------------
def test_signed_zeros_stay_apart():
    neg = mx.array(-0.0)
    # Both orders, so that neither zero can be served from a cache entry made for the other.
    for _ in range(2):
        assert not np.signbit(np.array(neg + 0.0))  # -0 + +0 is +0
        assert np.signbit(np.array(neg + -0.0))  # -0 + -0 is -0
    assert np.signbit(np.array(mx.multiply(mx.array(1.0), -0.0)))
    assert not np.signbit(np.array(mx.multiply(mx.array(1.0), 0.0)))


def test_nan_scalars_every_time():
    x = mx.array([1.0, 2.0])
    for _ in range(3):
        assert np.isnan(np.array(x + float("nan"))).all()


def test_bool_int_float_scalars_are_different_constants():
    ints = mx.array([1, 2], mx.int32)
    bools = mx.array([True, False])
    # The same numeric value as bool, int and float, back to back: each gets its own dtype.
    for _ in range(2):
        plus_true, plus_one, plus_float = ints + True, ints + 1, ints + 1.0
        assert (plus_true.dtype, plus_one.dtype, plus_float.dtype) == (mx.int32, mx.int32, mx.float32)
        np.testing.assert_array_equal(np.array(plus_float), np.array([2.0, 3.0], np.float32))
        assert (bools * True).dtype == mx.bool_
        assert (bools * 1).dtype == mx.int32
        assert (bools * 1.0).dtype == mx.float32
        np.testing.assert_array_equal(np.array(bools * 1.0), np.array([1.0, 0.0], np.float32))


def test_one_value_many_dtypes():
    for d in (mx.int8, mx.uint8, mx.int64, mx.float16, mx.bfloat16, mx.float32):
        out = mx.array([3], d) * 2
        assert out.dtype == d
        assert np.array(out.astype(mx.float32)).tolist() == [6.0]


def test_large_integer_scalars():
    big = 2**40 + 1
    x = mx.array([1], mx.int64)
    assert np.array(x + big).tolist() == [big + 1]
    assert np.array(x + (big + 1)).tolist() == [big + 2]


def test_overflowing_scalar_raises_every_time():
    x = mx.array([1], mx.int8)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"^\[add\]"):
            x + 1000
    assert np.array(x + 100).tolist() == [101]


def test_constant_returned_to_user_is_not_shared():
    # full((), v) hands back the scalar array itself; updating it in place must not change later constants.
    a = mx.full((), 1.0)
    a += 1
    b = mx.full((), 1.0)
    assert a.item() == 2.0 and b.item() == 1.0
    c = mx.full((), 1.0)
    c[...] = 5.0
    assert mx.full((), 1.0).item() == 1.0


def test_scalar_buffers_are_read_only():
    y = mx.array([1.0]) + 2.5
    for x in y._inputs:
        assert not np.asarray(x._data).flags.writeable


def test_numpy_scalars_promote_weakly():
    x = mx.array([1.0], mx.float16)
    assert (x + np.float64(2.0)).dtype == mx.float16
    assert (x + np.float32(0.5)).item() == 1.5


def test_scalar_results_match_mlx(mlx):
    cases = [("float16", 1.5), ("bfloat16", -2.25), ("int8", 3), ("uint8", True), ("int32", 2.5),
             ("bool_", 1), ("bool_", 0.5), ("uint32", 7), ("float32", -0.0), ("int64", 2**33)]
    for name, scalar in cases:
        values = [1, 0, 1] if name == "bool_" else [1, 2, 3]
        ours = mx.array(values, getattr(mx, name))
        theirs = mlx.array(values, getattr(mlx, name))
        for op in ("add", "multiply", "subtract", "maximum"):
            if name == "bool_" and op == "subtract":
                continue
            for a_first in (True, False):
                args_k = (ours, scalar) if a_first else (scalar, ours)
                args_m = (theirs, scalar) if a_first else (scalar, theirs)
                k = getattr(mx, op)(*args_k)
                m = getattr(mlx, op)(*args_m)
                assert k.dtype.name == str(m.dtype).split(".")[-1], (name, scalar, op)
                np.testing.assert_array_equal(np.array(k.astype(mx.float32)),
                                              np.array(m.astype(mlx.float32)), err_msg=f"{name} {op} {scalar}")


# -- one broadcast check per op, with the op's name --------------------------------------------------
@pytest.mark.parametrize("op", ["add", "multiply", "greater", "logical_and", "logical_or", "maximum"])
def test_broadcast_errors_name_the_op(op):
    with pytest.raises(ValueError, match=rf"^\[{op}\] Shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        getattr(mx, op)(mx.ones((2, 3)), mx.ones((4,)))


def test_where_broadcast_error():
    with pytest.raises(ValueError, match=r"^\[where\]"):
        mx.where(mx.ones((2, 3)) > 0, mx.ones((3,)), mx.ones((4,)))


def test_broadcast_shapes_fast_cases():
    assert mx.broadcast_shapes((2, 3), (2, 3)) == (2, 3)
    assert mx.broadcast_shapes((2, 3), ()) == (2, 3)
    assert mx.broadcast_shapes((), (2, 3)) == (2, 3)
    assert mx.broadcast_shapes((1, 3), (2, 1)) == (2, 3)
    assert mx.broadcast_shapes((0,), (1,)) == (0,)
    assert mx.broadcast_shapes((5,), (5,), (5,)) == (5,)
    with pytest.raises(ValueError, match=r"^\[broadcast_shapes\]"):
        mx.broadcast_shapes((2,), (3,))
    with pytest.raises(ValueError, match=r"^\[broadcast_shapes\] Must provide at least one shape"):
        mx.broadcast_shapes()  # MLX 0.32.4 refuses no shapes at all


# -- dtypes are singletons ------------------------------------------------------------------------------
def test_dtype_identity_survives_copies():
    for d in (mx.float32, mx.bfloat16, mx.bool_, mx.complex64):
        assert pickle.loads(pickle.dumps(d)) is d
        assert copy.copy(d) is d and copy.deepcopy(d) is d
        assert dt.from_name(d.name) is d
    assert {mx.float32: 1}[pickle.loads(pickle.dumps(mx.float32))] == 1
    assert mx.float32 != np.float32 and mx.float32 != "float32"


def test_second_dtype_of_a_name_refused():
    with pytest.raises(ValueError, match="exists already"):
        dt.Dtype("float32", np.float32, dt.floating, "f32")


def test_weak_result_table_agrees_with_result_type():
    for d in dt.ALL:
        for scalar in (True, 3, 2.5, 1 + 2j):
            assert dt.weak_result(d, type(scalar)) is dt.result_type(mx.zeros((1,), d), scalar)


# -- evaluation --------------------------------------------------------------------------------------
def test_shared_subexpressions_and_several_outputs():
    x = mx.array([1.0, 2.0, 3.0])
    a = x * 2
    b = a + a
    c = mx.exp(a) - b
    mx.eval(c, b, a)
    xs = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_allclose(np.array(c), np.exp(xs * 2) - 4 * xs, rtol=1e-6)
    np.testing.assert_array_equal(np.array(b), 4 * xs)


def test_long_chain_evaluates_without_recursion():
    y = mx.array(0.0)
    for _ in range(5000):
        y = y + 1.0
    assert y.item() == 5000.0


def test_floating_point_errors_are_silent_and_the_state_is_restored():
    before = np.geterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf((mx.array(1.0) / 0.0).item())
        assert np.isnan(mx.log(mx.array(-1.0)).item())
    assert np.geterr() == before


def test_callers_error_state_is_kept_outside_evaluation():
    with np.errstate(divide="raise"):
        assert np.isinf((mx.array([1.0]) / 0.0).tolist()[0])  # kiln evaluates quietly
        with pytest.raises(FloatingPointError):
            np.divide(np.ones(1), np.zeros(1))  # the caller's setting still holds
    with np.errstate(invalid="raise"):
        assert np.isnan(mx.sqrt(mx.array(-1.0)).item())
        with pytest.raises(FloatingPointError):
            np.sqrt(-np.ones(1))


def test_numpy_views_write_through_to_their_array_only():
    # As in MLX, np.asarray(y) is a writable view of y; an array whose buffer was shared (a broadcast
    # constant, an earlier result) takes a private copy first, so no other array changes.
    y = mx.array([1.0, 2.0]) + 1.0
    kept = y * 1  # may share y's buffer
    mx.eval(y, kept)
    np.asarray(y)[0] = 7.0
    assert y.tolist() == [7.0, 3.0] and kept.tolist() == [2.0, 3.0]
    zeros = mx.zeros((3,))
    np.asarray(zeros)[1] = 5.0
    assert zeros.tolist() == [0.0, 5.0, 0.0] and mx.zeros((3,)).tolist() == [0.0, 0.0, 0.0]
