"""Array creation: mx.array from Python values, lists and numpy with MLX's default dtypes, and the creation
ops (zeros, ones, full, *_like, arange, linspace, eye, identity, tri) against numpy."""

import math

import kiln.core as mx
import numpy as np
import pytest


@pytest.mark.parametrize("value, dtype, shape", [
    (1, mx.int32, ()), (1.0, mx.float32, ()), (True, mx.bool_, ()), (2**31, mx.int64, ()),
    (-(2**31), mx.int32, ()), (-(2**31) - 1, mx.int64, ()), (1 + 2j, mx.complex64, ()),
    ([1, 2], mx.int32, (2,)), ([1, 2.0], mx.float32, (2,)), ([True, 2], mx.int32, (2,)),
    ([True, False], mx.bool_, (2,)), ([[1, 2], [3, 4]], mx.int32, (2, 2)), ([], mx.float32, (0,)),
    ([[], []], mx.float32, (2, 0)), ((1, 2, 3), mx.int32, (3,)), ([1, 2**40], mx.int64, (2,)),
    ([1, 2j], mx.complex64, (2,)),
])
def test_array_from_python_values_uses_mlx_default_dtypes(value, dtype, shape):
    a = mx.array(value)
    assert a.dtype == dtype and a.shape == shape
    np.testing.assert_array_equal(np.array(a), np.array(value))


@pytest.mark.parametrize("np_value, dtype", [
    (np.array([1.5, 2.5]), mx.float32), (np.array([1, 2], np.int64), mx.int64), (np.array([1], np.int8), mx.int8),
    (np.array([1], np.uint64), mx.uint64), (np.array([1], np.float16), mx.float16), (np.array(3.5), mx.float32),
    (np.float64(3.5), mx.float32), (np.float32(3.5), mx.float32), (np.int64(3), mx.int64), (np.int16(3), mx.int16),
    (np.bool_(True), mx.bool_), (np.array([1 + 1j]), mx.complex64), (np.array([True]), mx.bool_),
    (np.zeros((2, 0)), mx.float32),
])
def test_array_from_numpy_keeps_the_dtype_except_float64(np_value, dtype):
    a = mx.array(np_value)
    assert a.dtype == dtype and a.shape == np.shape(np_value)
    np.testing.assert_array_equal(np.array(a), np.asarray(np_value).astype(dtype.np))


def test_array_with_explicit_dtype():
    assert mx.array([1.7, -1.7], mx.int32).tolist() == [1, -1]  # truncation toward zero
    assert mx.array([0.0, 2.0], mx.bool_).tolist() == [False, True]
    assert mx.array([1, 2], dtype=mx.bfloat16).dtype == mx.bfloat16
    assert mx.array([1, 2], dtype=mx.float64).dtype == mx.float64
    assert mx.array(np.array([1.5]), dtype=mx.float64).item() == 1.5
    assert mx.array(300, mx.uint8).item() == 44  # an explicit dtype converts (and wraps) as a C cast
    assert mx.array(mx.array([1, 2]), mx.float32).dtype == mx.float32


def test_array_from_arrays_and_non_contiguous_numpy():
    assert mx.array([mx.array([1, 2]), mx.array([3, 4])]).tolist() == [[1, 2], [3, 4]]
    assert mx.array([mx.array(1), mx.array(2.5)]).tolist() == [1.0, 2.5]
    view = np.arange(6).reshape(2, 3)[:, ::2]
    np.testing.assert_array_equal(np.array(mx.array(view)), view)


def test_lists_mixing_arrays_and_scalars_stack_their_elements():
    # Each element converts on its own, then they stack: Python ints beside a float16 array stay float16.
    half = mx.array([1.5], mx.float16)
    got = mx.array([[half, [2]], [[3], mx.array([True])]])
    assert got.dtype == mx.float16 and got.tolist() == [[[1.5], [2.0]], [[3.0], [1.0]]]
    assert mx.array([mx.array([7], mx.bfloat16), [2]]).dtype == mx.bfloat16
    assert mx.array([mx.array([7], mx.bfloat16), [2.0]]).dtype == mx.float32  # [2.0] alone is float32
    assert mx.array([mx.array(4, mx.int64), 2]).dtype == mx.int64
    assert mx.array([mx.array([1], mx.int64), [2]], mx.int16).dtype == mx.int16
    for bad in ([half, 1.0], [1.0, half], [[half, 1.0]], [[], half]):
        with pytest.raises(ValueError, match=r"^Initialization encountered non-uniform length\.$"):
            mx.array(bad)


def test_lists_holding_arrays_stay_in_the_graph():
    def f(x):
        return (2 * mx.array([[x, [3.0]], [[1.0], x]])).sum()

    assert mx.grad(f)(mx.array([1.0])).item() == 4.0


def test_lists_holding_arrays_match_mlx(mlx):
    from itertools import permutations

    names = ["bool_", "uint8", "int8", "int32", "int64", "uint64", "float16", "bfloat16", "float32", "complex64"]
    for a, b in permutations(names, 2):
        for fill in (2.0, 2):
            results = []
            for lib in (mx, mlx):
                x, y = lib.array([True], getattr(lib, a)), lib.array([False], getattr(lib, b))
                z = lib.array([[x, [fill]], [[3], y]])
                results.append((str(z.dtype).split(".")[-1], z.astype(lib.float32).tolist()))
            assert results[0] == results[1], (a, b, fill)


def test_array_from_buffer_protocol_objects():
    import array as pyarray

    assert mx.array(b"Hello").dtype == mx.uint8 and mx.array(b"Hello").tolist() == [72, 101, 108, 108, 111]
    assert mx.array(bytearray([1, 2, 3])).tolist() == [1, 2, 3] and mx.array(b"").shape == (0,)
    assert mx.array(b"ab", mx.float32).tolist() == [97.0, 98.0]
    floats = mx.array(pyarray.array("d", [1.5, 2.5]))  # float64 buffers become float32, as numpy arrays do
    assert floats.dtype == mx.float32 and floats.tolist() == [1.5, 2.5]
    strided = mx.array(memoryview(np.arange(6, dtype=np.int16))[::2])
    assert strided.dtype == mx.int16 and strided.tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match="Invalid type str"):
        mx.array("abc")


def test_array_copies_its_numpy_source():
    src = np.array([1.0, 2.0], np.float32)
    a = mx.array(src)
    src[0] = 99.0
    assert a.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("op, fill", [(mx.zeros, 0), (mx.ones, 1)])
def test_zeros_and_ones(op, fill):
    for shape, dtype in (((2, 3), mx.float32), (3, mx.float32), ((), mx.float32), ((0, 2), mx.float32),
                         ([2, 2], mx.bool_), ((2,), mx.uint8), ((2,), mx.bfloat16)):
        a = op(shape, dtype) if dtype != mx.float32 else op(shape)
        expected = np.full(shape, fill, dtype=dtype.np)
        assert a.dtype == dtype and a.shape == expected.shape
        np.testing.assert_array_equal(np.array(a.astype(mx.float32)), expected.astype(np.float32))  # exact


@pytest.mark.parametrize("vals, dtype, expected_dtype", [
    (7, None, mx.int32), (7.5, None, mx.float32), (True, None, mx.bool_), (7, mx.float16, mx.float16),
    (2**40, None, mx.int64), (1.5, mx.int32, mx.int32), (np.float64(1.5), None, mx.float32),
    (np.int64(3), None, mx.int64), (np.float16(3), None, mx.float16),
])
def test_full_with_scalars(vals, dtype, expected_dtype):
    a = mx.full((2, 3), vals, dtype) if dtype is not None else mx.full((2, 3), vals)
    assert a.dtype == expected_dtype and a.shape == (2, 3)
    np.testing.assert_array_equal(np.array(a), np.full((2, 3), vals).astype(expected_dtype.np))


def test_full_with_arrays_broadcasts():
    a = mx.full((2, 3), mx.array([1, 2, 3]))
    assert a.dtype == mx.int32 and a.tolist() == [[1, 2, 3]] * 2
    assert mx.full((2, 3), mx.array([1.5, 2, 3]), mx.int32).tolist() == [[1, 2, 3]] * 2
    assert mx.full(3, 2.5).shape == (3,)
    assert mx.full((), 3).shape == ()


def test_like_constructors():
    assert mx.zeros_like(mx.array([1, 2])).tolist() == [0, 0]
    assert mx.ones_like(mx.array([1.5, 2])).dtype == mx.float32
    assert mx.zeros_like(mx.array([[True]])).tolist() == [[False]]
    assert mx.ones_like(mx.zeros((2, 0))).shape == (2, 0)
    assert mx.full_like(mx.array([1, 2]), 3.7).tolist() == [3, 3]
    assert mx.full_like(mx.array([1, 2]), 3.7, mx.float32).tolist() == pytest.approx([3.7, 3.7])
    assert mx.full_like(mx.array([1.5, 2]), 3).dtype == mx.float32
    assert mx.ones_like(mx.array(2, mx.float16)).dtype == mx.float16


@pytest.mark.parametrize("args, kwargs", [
    ((5,), {}), ((5.0,), {}), ((1, 5), {}), ((1, 5, 2), {}), ((5, 1, -1), {}), ((0, 1, 0.25), {}),
    ((5,), {"dtype": mx.float32}), ((3, 1), {}), ((-3,), {}), ((0, 10, 3), {"dtype": mx.int16}),
    ((2**31 - 3, 2**31 - 1), {}), ((0.5, 3), {"dtype": mx.int32}), ((0, 5, 1.5), {"dtype": mx.int32}),
    ((1, 2.9, 0.3), {"dtype": mx.int32}), ((-0.5, 3, 1.5), {"dtype": mx.int32}), ((0.0, 1.0, 0.3), {}),
])
def test_arange_matches_numpy(args, kwargs):
    a = mx.arange(*args, **kwargs)
    any_float = any(isinstance(v, float) for v in args)
    dtype = kwargs.get("dtype", mx.float32 if any_float else mx.int32)
    assert a.dtype == dtype
    np_args = [np.float32(v) if isinstance(v, float) and dtype == mx.float32 else v for v in args]
    with np.errstate(over="ignore"):
        expected = np.arange(*np_args, dtype=dtype.np)
    np.testing.assert_array_equal(np.array(a), expected)


@pytest.mark.parametrize("args, expected", [
    ((2**40, 2**40 + 3), np.arange(2**40, 2**40 + 3)),
    ((2**31 - 2, 2**31 + 1), np.arange(2**31 - 2, 2**31 + 1)),
    ((-(2**31) - 1, -(2**31) + 1), np.arange(-(2**31) - 1, -(2**31) + 1)),
    ((2**40 + 3, 2**40, -1), np.arange(2**40 + 3, 2**40, -1)),
    ((0, 2, 2**40), np.array([0])),
])
def test_arange_widens_to_int64_beyond_int32(args, expected):
    a = mx.arange(*args)
    assert a.dtype == mx.int64 and a.tolist() == expected.tolist()
    n = 2**31 - 1  # an explicit int32 wraps, as a C cast would
    assert mx.arange(n - 1, n + 2, dtype=mx.int32).tolist() == np.arange(n - 1, n + 2).astype(np.int32).tolist()


@pytest.mark.parametrize("args, kwargs, expected", [
    ((0, 10, math.inf), {}, [0.0]), ((0, -10, -math.inf), {}, [0.0]), ((10, 0, math.inf), {}, []),
    ((0, 10, -math.inf), {}, []), ((3, 3, math.inf), {}, []), ((0.5, 10, math.inf), {"dtype": mx.int32}, [0]),
    ((0, 3, 0.2), {"dtype": mx.int32}, [0] * 15), ((-1, -20, -1.2), {"dtype": mx.int32}, list(range(-1, -17, -1))),
])
def test_arange_infinite_and_fractional_steps(args, kwargs, expected):
    # An infinite step keeps the start alone when the range points its way; an integer dtype truncates
    # the start and start + step (so a step under 1 repeats the start).
    assert mx.arange(*args, **kwargs).tolist() == expected


def test_arange_overloads():
    assert mx.arange(stop=3).tolist() == [0, 1, 2]
    assert mx.arange(stop=2, step=0.5).tolist() == [0.0, 0.5, 1.0, 1.5]
    assert mx.arange(-3, step=-1).tolist() == [0, -1, -2]
    assert mx.arange(-3, None, -1).tolist() == [0, -1, -2]
    assert mx.arange(5, stop=3).tolist() == []
    assert mx.arange(start=1, stop=4).tolist() == [1, 2, 3]
    assert mx.arange(1, 4, 1, mx.float16).dtype == mx.float16
    for bad in (lambda: mx.arange(start=1, step=2), lambda: mx.arange(), lambda: mx.arange(1, start=2)):
        with pytest.raises(TypeError):
            bad()
    for bad in ((0, 2**31), (0, 1, 1e-10), (math.nan, 1), (0, math.inf, math.inf), (math.inf, 1, 5), (2, 2, 0)):
        with pytest.raises(ValueError, match=r"^\[arange\]"):
            mx.arange(*bad)


def test_arange_float32_steps_accumulate_in_float32():
    # start + i * step computed in float32, as MLX does: 0.3 * 3 is 0.90000004 there
    assert np.array(mx.arange(0, 1, 0.3))[3] == np.float32(0.3) * np.float32(3)


@pytest.mark.parametrize("start, stop, step", [
    (0, 64, 1), (-0.0, 4, 1), (0.0, 4.0, 1.0), (10, -10, -3), (2**24 - 3, 2**24 + 3, 1), (2**24 - 2, 2**24 + 9, 3),
    (-(2**24) - 4, -(2**24) + 4, 2), (np.float32(3), 9, 1), (np.int64(2), 7, 2), (5, 2, 1),
])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float64, mx.float16])
def test_arange_of_whole_numbers_is_the_running_sum(start, stop, step, dtype):
    # The definition: the first value, then each the previous one plus step, rounded in the dtype (the sign of a
    # -0.0 start kept); whole-number ranges take a shortcut that must give the same bits.
    n = max(0, int(np.ceil((stop - start) / step)))
    with np.errstate(over="ignore"):
        terms = np.full(n, step).astype(dtype.np)
        if n:
            terms[0] = start
        expected = np.cumsum(terms, dtype=dtype.np)
    got = np.array(mx.arange(start, stop, step, dtype=dtype))
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("start, stop, num, dtype", [
    (0, 1, 5, mx.float32), (0, 1, 50, mx.float32), (1, 0, 3, mx.float32), (0, 10, 1, mx.float32),
    (0, 10, 0, mx.float32), (0, 10, 4, mx.int32), (-1, 1, 3, mx.float16),
])
def test_linspace(start, stop, num, dtype):
    a = mx.linspace(start, stop, num, dtype=dtype)
    assert a.dtype == dtype and a.shape == (num,)
    np.testing.assert_allclose(np.array(a).astype(np.float64), np.linspace(start, stop, num).astype(dtype.np),
                               rtol=1e-6)


@pytest.mark.parametrize("n, m, k, dtype", [(3, None, 0, mx.float32), (2, 3, 0, mx.float32), (3, None, 1, mx.int32),
                                            (3, 4, -1, mx.bool_), (0, None, 0, mx.float32), (3, 2, 5, mx.float32)])
def test_eye_and_tri(n, m, k, dtype):
    e = mx.eye(n, m, k, dtype=dtype)
    assert e.dtype == dtype
    np.testing.assert_array_equal(np.array(e), np.eye(n, m, k, dtype=dtype.np))
    t = mx.tri(n, m, k, dtype=dtype)
    assert t.dtype == dtype
    np.testing.assert_array_equal(np.array(t), np.tri(n, m, k, dtype=dtype.np))


def test_identity():
    np.testing.assert_array_equal(np.array(mx.identity(3)), np.eye(3, dtype=np.float32))
    assert mx.identity(2, mx.bool_).tolist() == [[True, False], [False, True]]


def test_creation_agrees_with_mlx(mlx, mlx_numpy):
    cases = [
        lambda m: m.array([1, 2**40]), lambda m: m.array(np.array([1, 2], np.uint16)), lambda m: m.array(2**31),
        lambda m: m.arange(0, 5, 1.5, dtype=m.int32), lambda m: m.arange(0, 1, 0.3), lambda m: m.full((2,), 2**40),
        lambda m: m.full((2,), np.int64(3)), lambda m: m.linspace(0, 10, 4, dtype=m.int32),
        lambda m: m.eye(3, 4, -1), lambda m: m.tri(3, 4, 1), lambda m: m.array([[]]),
        lambda m: m.full_like(m.array([1, 2]), 3.7), lambda m: m.array(np.float32(3.5)),
        lambda m: m.arange(2**31 - 2, 2**31 + 1), lambda m: m.arange(stop=2**40, step=-1),
        lambda m: m.arange(0.5, 2**40, 2**39), lambda m: m.arange(-1, -4, -0.9, dtype=m.int32),
        lambda m: m.arange(0, 10, float("inf")), lambda m: m.arange(stop=2, step=0.5),
    ]
    for case in cases:
        ours, theirs = case(mx), case(mlx)
        assert ours.dtype.name == str(theirs.dtype).split(".")[-1]
        np.testing.assert_array_equal(np.array(ours), mlx_numpy(theirs))


@pytest.mark.parametrize("args, dtype, expected", [
    ((0, 10, float("inf")), None, [0.0]), ((0, -10, float("-inf")), None, [0.0]),
    ((10, 0, float("inf")), None, []), ((0, 10, float("-inf")), None, []), ((0, 0, float("inf")), None, []),
    ((0, 10, float("inf")), mx.int32, [0]), ((0, 3, 0.2), mx.int32, [0] * 15), ((-1, -4, -0.9), mx.int32, [-1] * 4),
])
def test_arange_infinite_steps_and_integer_casts(args, dtype, expected):
    # as MLX: an infinite step gives the first value when it points from start towards stop
    out = mx.arange(*args, dtype=dtype) if dtype else mx.arange(*args)
    assert out.tolist() == expected and out.dtype == (dtype or mx.float32)


def test_arange_keywords_and_invalid_bounds():
    assert mx.arange(stop=2, step=0.5).tolist() == [0.0, 0.5, 1.0, 1.5]
    assert mx.arange(stop=3).tolist() == [0, 1, 2] and mx.arange(-3, step=-1).tolist() == [0, -1, -2]
    with pytest.raises(TypeError):
        mx.arange(step=2)
    inf, nan = float("inf"), float("nan")
    for args in ((nan, 1, 5), (0, nan, 5), (0, 2, nan), (0, inf, inf), (inf, 1, inf), (inf, 1, 5), (0, -inf, -1)):
        with pytest.raises(ValueError, match=r"\[arange\] Cannot compute length"):
            mx.arange(*args)


def test_arange_edge_cases_match_mlx(mlx):
    inf = float("inf")
    for args in ((0, 10, inf), (10, 0, inf), (0, -10, -inf), (0.5, 10, inf), (-1, -20, -1.2), (0, 10, 100)):
        ours, theirs = mx.arange(*args), mlx.arange(*args)
        assert ours.tolist() == theirs.tolist() and str(ours.dtype) == str(theirs.dtype), args
