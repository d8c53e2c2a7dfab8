"""Elementwise ops through the public API: values against hand-written numpy, result dtypes against MLX's
rules (and real MLX where installed), broadcasting, special values, integer semantics, weak Python scalars,
every Python operator, comparison helpers, laziness and the ops' names."""

import math
import operator

import kiln.core as mx
import ml_dtypes
import numpy as np
import pytest

NAN, INF = float("nan"), float("inf")
ALL_DTYPES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
              "float16", "bfloat16", "float32", "float64"]
FLOATS = ["float16", "bfloat16", "float32", "float64"]
INTS = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
SIGNED = ["int8", "int16", "int32", "int64"]
NP_OF = {"bool_": np.bool_, "bfloat16": ml_dtypes.bfloat16}
# Relative tolerance per output dtype: a few units in the last place.
RTOL = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 1e-5, "float64": 1e-12}


def np_dtype(name):
    return np.dtype(NP_OF.get(name, name))


def kiln_array(values, dtype):
    """A kiln array of `dtype` holding `values` (which must be representable)."""
    return mx.array(np.asarray(values).astype(np_dtype(dtype)), dtype=getattr(mx, dtype))


def as_f64(a):
    # numpy refuses a bfloat16 array's buffer (as with MLX): read it through float32, which holds it exactly
    return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a).astype(np.float64)


def assert_close(actual, expected, dtype):
    np.testing.assert_allclose(as_f64(actual), np.asarray(expected, np.float64), rtol=RTOL[dtype],
                               atol=RTOL[dtype], equal_nan=True)


# -- unary ops ------------------------------------------------------------------------------------
WIDE = [-2.5, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0]
POSITIVE = [0.25, 0.5, 1.0, 2.0, 10.0]
UNIT = [-0.75, -0.5, 0.0, 0.25, 0.5, 0.75]

# op name -> (numpy reference in float64, input values)
FLOAT_UNARY = {
    "exp": (np.exp, WIDE),
    "expm1": (np.expm1, WIDE),
    "log": (np.log, POSITIVE),
    "log1p": (np.log1p, [-0.5, 0.0, 0.5, 1.0, 9.0]),
    "log2": (np.log2, POSITIVE),
    "log10": (np.log10, POSITIVE),
    "sqrt": (np.sqrt, POSITIVE + [0.0]),
    "rsqrt": (lambda x: 1.0 / np.sqrt(x), POSITIVE),
    "reciprocal": (lambda x: 1.0 / x, [-4.0, -0.5, 0.25, 2.0, 8.0]),
    "sin": (np.sin, WIDE),
    "cos": (np.cos, WIDE),
    "tan": (np.tan, UNIT),
    "arcsin": (np.arcsin, UNIT),
    "arccos": (np.arccos, UNIT),
    "arctan": (np.arctan, WIDE),
    "sinh": (np.sinh, WIDE),
    "cosh": (np.cosh, WIDE),
    "tanh": (np.tanh, WIDE),
    "arcsinh": (np.arcsinh, WIDE),
    "arccosh": (np.arccosh, [1.0, 1.5, 2.0, 10.0]),
    "arctanh": (np.arctanh, UNIT),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), WIDE),
    "erf": (np.vectorize(math.erf), WIDE),
    "degrees": (lambda x: x * 180.0 / math.pi, WIDE),
    "radians": (lambda x: x * math.pi / 180.0, WIDE),
}


def representable(values, dtype):
    """The values as `dtype` holds them, back in float64 (so references see the rounded inputs)."""
    return np.asarray(values, np.float64).astype(np_dtype(dtype)).astype(np.float64)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", sorted(FLOAT_UNARY))
def test_float_unary_matches_numpy_and_keeps_the_float_dtype(op, dtype):
    ref, values = FLOAT_UNARY[op]
    x = representable(values, dtype)
    out = getattr(mx, op)(kiln_array(x, dtype))
    assert out.dtype == getattr(mx, dtype)
    assert out.shape == x.shape
    assert_close(out, ref(x), dtype)


@pytest.mark.parametrize("dtype", ["bool_", "uint8", "int8", "int32", "uint64", "int64"])
@pytest.mark.parametrize("op", ["exp", "log", "sqrt", "sin", "sigmoid", "erf", "degrees", "rsqrt", "reciprocal"])
def test_float_unary_of_integers_and_bools_computes_in_float32(op, dtype):
    values = [1, 0] if dtype == "bool_" else [1, 2, 3, 7]
    out = getattr(mx, op)(kiln_array(values, dtype))
    assert out.dtype == mx.float32
    with np.errstate(divide="ignore"):
        assert_close(out, FLOAT_UNARY[op][0](np.asarray(values, np.float64)), "float32")


@pytest.mark.parametrize("dtype", FLOATS)
def test_erfinv_inverts_erf(dtype):
    x = representable([-0.9, -0.5, 0.0, 0.3, 0.8], dtype)
    out = as_f64(mx.erfinv(kiln_array(x, dtype)))
    np.testing.assert_allclose(np.vectorize(math.erf)(out), x, rtol=3 * RTOL[dtype], atol=3 * RTOL[dtype])


def test_float_unary_special_values():
    x = mx.array([NAN, INF, -INF, 0.0, -0.0])
    np.testing.assert_array_equal(np.array(mx.exp(x)), [NAN, INF, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(np.array(mx.log(x)), [NAN, INF, NAN, -INF, -INF])
    np.testing.assert_array_equal(np.array(mx.sqrt(mx.array([-1.0, INF, 0.0]))), [NAN, INF, 0.0])
    np.testing.assert_array_equal(np.array(mx.tanh(x)), [NAN, 1.0, -1.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.array(mx.sigmoid(mx.array([-INF, INF, NAN]))), [0.0, 1.0, NAN])
    np.testing.assert_array_equal(np.array(mx.reciprocal(mx.array([0.0, -0.0, INF]))), [INF, -INF, 0.0])
    np.testing.assert_array_equal(np.array(mx.log1p(mx.array([-1.0, -2.0]))), [-INF, NAN])
    # float16 overflows to inf where float32 does not
    assert mx.exp(mx.array([12.0], mx.float16)).item() == INF


SAME_DTYPE_UNARY = {
    "abs": np.abs,
    "negative": np.negative,
    "square": np.square,
    "sign": np.sign,
}


@pytest.mark.parametrize("dtype", [d for d in ALL_DTYPES if d != "bool_"])
@pytest.mark.parametrize("op", sorted(SAME_DTYPE_UNARY))
def test_abs_negative_square_sign_keep_the_dtype(op, dtype):
    values = [0, 1, 3, 5, 100] if dtype.startswith("u") else [-100, -3, -1, 0, 1, 5]
    x = np.asarray(values).astype(np_dtype(dtype))
    out = getattr(mx, op)(kiln_array(x, dtype))
    assert out.dtype == getattr(mx, dtype)
    with np.errstate(over="ignore"):
        expected = SAME_DTYPE_UNARY[op](x)  # numpy wraps integers as C does
    if dtype in FLOATS:
        assert_close(out, expected.astype(np.float64), dtype)
    else:
        np.testing.assert_array_equal(np.array(out), expected)


def test_integer_negation_and_abs_wrap_at_the_minimum():
    assert mx.negative(mx.array([-128], mx.int8)).item() == -128
    assert mx.abs(mx.array([-128], mx.int8)).item() == -128
    assert mx.negative(mx.array([1], mx.uint8)).item() == 255
    assert mx.square(mx.array([16], mx.int8)).item() == 0


def test_unary_ops_on_bools():
    b = mx.array([True, False])
    assert mx.abs(b).dtype == mx.bool_ and mx.abs(b).tolist() == [True, False]
    assert mx.sign(b).dtype == mx.bool_ and mx.sign(b).tolist() == [True, False]
    assert mx.square(b).tolist() == [True, False]
    assert mx.logical_not(b).tolist() == [False, True]
    assert mx.bitwise_invert(b).tolist() == [False, True]


def test_sign_of_floats_and_nan():
    out = mx.sign(mx.array([-2.5, -0.0, 0.0, 3.0, -INF, NAN]))
    # kiln keeps numpy's NaN for sign(NaN); MLX 0.32 returns 0 there (noted as a deliberate difference)
    np.testing.assert_array_equal(np.array(out), [-1.0, 0.0, 0.0, 1.0, -1.0, NAN])


@pytest.mark.parametrize("dtype", FLOATS)
def test_floor_ceil_round(dtype):
    x = representable([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.7, -2.7], dtype)
    a = kiln_array(x, dtype)
    np.testing.assert_array_equal(as_f64(mx.floor(a)), np.floor(x))
    np.testing.assert_array_equal(as_f64(mx.ceil(a)), np.ceil(x))
    np.testing.assert_array_equal(as_f64(mx.round(a)), np.round(x))  # half to even
    assert mx.floor(a).dtype == mx.ceil(a).dtype == mx.round(a).dtype == getattr(mx, dtype)


def test_round_with_decimals_and_integer_inputs():
    np.testing.assert_allclose(np.array(mx.round(mx.array([1.234, -5.678, 12.5]), 1)), [1.2, -5.7, 12.5], rtol=1e-6)
    np.testing.assert_allclose(np.array(mx.round(mx.array([1234.0, 1250.0]), -2)), [1200.0, 1200.0])
    for op in (mx.floor, mx.ceil, mx.round):
        out = op(mx.array([1, -2, 3], mx.int16))
        assert out.dtype == mx.int16 and out.tolist() == [1, -2, 3]


def test_predicates():
    x = mx.array([NAN, INF, -INF, 0.0, 1.5])
    assert mx.isnan(x).tolist() == [True, False, False, False, False]
    assert mx.isinf(x).tolist() == [False, True, True, False, False]
    assert mx.isfinite(x).tolist() == [False, False, False, True, True]
    assert mx.isposinf(x).tolist() == [False, True, False, False, False]
    assert mx.isneginf(x).tolist() == [False, False, True, False, False]
    i = mx.array([1, 2], mx.int64)
    assert mx.isnan(i).tolist() == [False, False] and mx.isfinite(i).tolist() == [True, True]
    assert mx.isinf(i).dtype == mx.bool_ and mx.isposinf(i).tolist() == [False, False]
    h = mx.array([NAN, INF], mx.bfloat16)
    assert mx.isnan(h).tolist() == [True, False] and mx.isinf(h).tolist() == [False, True]


def test_nan_to_num():
    x = mx.array([NAN, INF, -INF, 1.5])
    big = float(np.finfo(np.float32).max)
    np.testing.assert_array_equal(np.array(mx.nan_to_num(x)), [0.0, big, -big, 1.5])
    np.testing.assert_array_equal(np.array(mx.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0)), [-1, 9, -9, 1.5])
    h = mx.nan_to_num(mx.array([INF], mx.float16))
    assert h.dtype == mx.float16 and h.item() == 65504.0
    assert mx.nan_to_num(mx.array([3])).tolist() == [3]


def test_bitwise_invert_of_integers():
    assert mx.bitwise_invert(mx.array([0, 5, -1], mx.int32)).tolist() == [-1, -6, 0]
    assert mx.bitwise_invert(mx.array([0, 5], mx.uint8)).tolist() == [255, 250]


def test_stop_gradient_and_copy_return_equal_values():
    x = mx.array([1.5, -2.0])
    for out in (mx.stop_gradient(x), mx.copy(x)):
        assert out.dtype == mx.float32 and out.tolist() == [1.5, -2.0]


@pytest.mark.parametrize("op", sorted(FLOAT_UNARY) + ["erfinv", "abs", "negative", "square", "sign", "floor",
                                                       "ceil", "round", "isnan", "isinf", "isfinite",
                                                       "logical_not"])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_unary_result_dtype_matches_mlx(mlx, op, dtype):
    values = np.array([1, 0, 1], dtype=np.float32)
    ours, theirs = None, None
    try:
        theirs = getattr(mlx, op)(mlx.array(values).astype(getattr(mlx, dtype))).dtype
    except ValueError:
        with pytest.raises(ValueError):
            getattr(mx, op)(mx.array(values).astype(getattr(mx, dtype)))
        return
    ours = getattr(mx, op)(mx.array(values).astype(getattr(mx, dtype))).dtype
    assert ours.name == str(theirs).split(".")[-1]


# -- binary ops: values -------------------------------------------------------------------------------
A_VALUES = [0, 1, 2, 3, 7, -1, -2, -7, 100, -100, 5, 0]
B_VALUES = [1, 2, 3, -3, 2, 2, -3, 2, 7, 7, 5, 4]


def binary_operands(dtype):
    a, b = np.array(A_VALUES), np.array(B_VALUES)
    if dtype == "bool_":
        return a > 0, b > 0
    if dtype.startswith("u"):
        a, b = np.abs(a), np.abs(b)
    return a.astype(np_dtype(dtype)), b.astype(np_dtype(dtype))


def wrap_to(values, dtype):
    """Python ints reduced modulo 2**bits into `dtype`'s range (C's wrapping)."""
    info = np.iinfo(np_dtype(dtype))
    span = 1 << (8 * np_dtype(dtype).itemsize)
    return np.array([((int(v) - info.min) % span) + info.min for v in values], dtype=np_dtype(dtype))


def int_reference(op, a, b, dtype):
    pa, pb = [int(v) for v in a], [int(v) for v in b]
    if op == "add":
        return wrap_to([x + y for x, y in zip(pa, pb)], dtype)
    if op == "subtract":
        return wrap_to([x - y for x, y in zip(pa, pb)], dtype)
    if op == "multiply":
        return wrap_to([x * y for x, y in zip(pa, pb)], dtype)
    if op == "floor_divide":
        return wrap_to([x // y if y else 0 for x, y in zip(pa, pb)], dtype)
    if op == "remainder":
        return wrap_to([x % y if y else x for x, y in zip(pa, pb)], dtype)
    if op == "power":
        return wrap_to([x ** y for x, y in zip(pa, pb)], dtype)
    if op == "maximum":
        return np.maximum(a, b)
    if op == "minimum":
        return np.minimum(a, b)
    raise KeyError(op)


FLOAT_BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "floor_divide": lambda x, y: np.floor(x / y), "remainder": np.remainder, "power": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "arctan2": np.arctan2, "logaddexp": np.logaddexp,
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", sorted(FLOAT_BINARY))
def test_float_binary_matches_numpy(op, dtype):
    a = representable([0.5, 1.0, 2.0, 3.0, -1.5, -2.0, 7.0, -7.0, 0.25], dtype)
    b = representable([2.0, -3.0, 0.5, 2.0, 2.0, -0.75, 2.0, 3.0, 1.0], dtype)
    if op == "power":
        a = np.abs(a)
    out = getattr(mx, op)(kiln_array(a, dtype), kiln_array(b, dtype))
    assert out.dtype == getattr(mx, dtype)
    assert_close(out, FLOAT_BINARY[op](a, b), dtype)


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "floor_divide", "remainder", "maximum", "minimum"])
def test_integer_binary_matches_python_integer_arithmetic_with_wrapping(op, dtype):
    a, b = binary_operands(dtype)
    out = getattr(mx, op)(mx.array(a), mx.array(b))
    assert out.dtype == getattr(mx, dtype)
    np.testing.assert_array_equal(np.array(out), int_reference(op, a, b, dtype))


@pytest.mark.parametrize("dtype", INTS)
def test_integer_power_with_non_negative_exponents(dtype):
    a = np.array([0, 1, 2, 3, 5, 7, 2], dtype=np_dtype(dtype))
    b = np.array([0, 5, 3, 4, 2, 1, 9], dtype=np_dtype(dtype))
    out = mx.power(mx.array(a), mx.array(b))
    assert out.dtype == getattr(mx, dtype)
    np.testing.assert_array_equal(np.array(out), int_reference("power", a, b, dtype))


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_integer_power_with_negative_exponents_is_zero(dtype):
    # MLX's rule (its own tests assert it): 0 for every negative exponent, even 1**-9 and (-1)**-2
    d = getattr(mx, dtype)
    out = mx.power(mx.array([1, -1, -1, 2, -3, 0, 3], d), mx.array([-9, -3, -2, -1, -2, -1, 2], d))
    assert out.dtype == d and out.tolist() == [0, 0, 0, 0, 0, 0, 9]
    # one negative exponent among many must only zero its own element in a vectorised kernel
    many = mx.power(mx.full((16,), 2, d), mx.array([3] * 3 + [-1] + [3] * 12, d))
    assert many.tolist() == [8] * 3 + [0] + [8] * 12
    assert mx.power(2, -1).item() == 0


def test_integer_division_and_remainder_signs_and_zero():
    a = mx.array([7, -7, 7, -7, 5, -5, 0])
    b = mx.array([2, 2, -2, -2, 0, 0, 0])
    assert mx.floor_divide(a, b).tolist() == [3, -4, -4, 3, 0, 0, 0]  # floor, and x // 0 == 0
    assert mx.remainder(a, b).tolist() == [1, 1, -1, -1, 5, -5, 0]  # sign of the divisor, and x % 0 == x
    assert mx.divide(a, b).dtype == mx.float32
    np.testing.assert_array_equal(np.array(mx.divide(a, b)), [3.5, -3.5, -3.5, 3.5, INF, -INF, NAN])
    # the int32 minimum divided by -1 wraps, as in C
    assert mx.floor_divide(mx.array([-(2**31)]), -1).item() == -(2**31)


def test_float_division_and_remainder_signs_and_special_values():
    a = mx.array([7.0, -7.0, 7.0, -7.0, 1.0, -1.0, 0.0])
    b = mx.array([2.0, 2.0, -2.0, -2.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.array(mx.floor_divide(a, b)), [3, -4, -4, 3, INF, -INF, NAN])
    np.testing.assert_array_equal(np.array(mx.remainder(a[:4], b[:4])), [1, 1, -1, -1])
    assert math.isnan(mx.remainder(mx.array(1.0), 0.0).item())
    assert mx.remainder(mx.array(1.0), INF).item() == 1.0


BOOL_BINARY = {
    "add": np.logical_or, "multiply": np.logical_and, "subtract": np.logical_xor, "maximum": np.logical_or,
    "minimum": np.logical_and, "floor_divide": np.logical_and,
    "remainder": lambda a, b: a & ~b, "power": lambda a, b: a | ~b,
}


@pytest.mark.parametrize("op", sorted(BOOL_BINARY))
def test_arithmetic_on_bools_stays_bool(op):
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    out = getattr(mx, op)(mx.array(a), mx.array(b))
    assert out.dtype == mx.bool_
    np.testing.assert_array_equal(np.array(out), BOOL_BINARY[op](a, b))


def test_divide_of_bools_and_integers_is_float32():
    assert mx.divide(mx.array([True]), mx.array([True])).dtype == mx.float32
    assert mx.divide(mx.array([3], mx.int64), mx.array([2], mx.int64)).tolist() == [1.5]
    assert mx.divide(mx.array([3], mx.int64), 2).dtype == mx.float32
    assert mx.divide(mx.array([3], mx.float16), 2).dtype == mx.float16


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("op", ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"])
def test_comparisons_return_bool(op, dtype):
    a, b = binary_operands(dtype)
    out = getattr(mx, op)(mx.array(a), mx.array(b))
    assert out.dtype == mx.bool_
    np.testing.assert_array_equal(np.array(out), getattr(np, op)(a, b))


def test_comparisons_with_nan():
    x, y = mx.array([NAN, 1.0, NAN]), mx.array([NAN, NAN, 1.0])
    assert mx.equal(x, y).tolist() == [False, False, False]
    assert mx.not_equal(x, y).tolist() == [True, True, True]
    assert mx.less(x, y).tolist() == [False, False, False]
    assert mx.greater_equal(x, y).tolist() == [False, False, False]
    np.testing.assert_array_equal(np.array(mx.maximum(x, y)), [NAN, NAN, NAN])
    np.testing.assert_array_equal(np.array(mx.minimum(x, y)), [NAN, NAN, NAN])


@pytest.mark.parametrize("dtype", INTS + ["bool_"])
@pytest.mark.parametrize("op", ["bitwise_and", "bitwise_or", "bitwise_xor"])
def test_bitwise_ops(op, dtype):
    a, b = binary_operands(dtype)
    out = getattr(mx, op)(mx.array(a), mx.array(b))
    assert out.dtype == getattr(mx, dtype)
    np.testing.assert_array_equal(np.array(out), getattr(np, op)(a, b))


@pytest.mark.parametrize("dtype", INTS)
def test_shifts(dtype):
    a = np.array([1, 3, 100, 7], dtype=np_dtype(dtype))
    s = np.array([0, 2, 1, 3], dtype=np_dtype(dtype))
    np.testing.assert_array_equal(np.array(mx.left_shift(mx.array(a), mx.array(s))), np.left_shift(a, s))
    np.testing.assert_array_equal(np.array(mx.right_shift(mx.array(a), mx.array(s))), np.right_shift(a, s))


def test_shift_edge_cases():
    # arithmetic right shift for signed values; bools shift as uint8 (MLX's promotion)
    assert mx.right_shift(mx.array([-8], mx.int32), 1).item() == -4
    assert mx.left_shift(mx.array([64], mx.int8), 1).item() == -128
    out = mx.left_shift(mx.array([True]), mx.array([True]))
    assert out.dtype == mx.uint8 and out.item() == 2
    # shifting by the width or more is 0 (sign-filled for negative right shifts), never C's undefined result
    assert mx.left_shift(mx.array([1], mx.int32), 40).item() == 0
    assert mx.right_shift(mx.array([-1], mx.int32), 40).item() == -1


def test_logical_and_or_not_cast_to_bool():
    a, b = mx.array([1.5, 0.0, 2.0]), mx.array([0, 0, 3])
    assert mx.logical_and(a, b).tolist() == [False, False, True]
    assert mx.logical_or(a, b).tolist() == [True, False, True]
    assert mx.logical_not(a).tolist() == [False, True, False]
    assert mx.logical_and(a, True).dtype == mx.bool_


def test_where_promotes_branches_and_broadcasts():
    cond = mx.array([[True], [False]])
    out = mx.where(cond, mx.array([1, 2, 3], mx.int8), 2.5)
    assert out.dtype == mx.float32 and out.shape == (2, 3)
    np.testing.assert_array_equal(np.array(out), [[1, 2, 3], [2.5, 2.5, 2.5]])
    assert mx.where(mx.array([1, 0]), 1, 0).tolist() == [1, 0]
    assert mx.where(True, mx.array([1], mx.uint8), 7).dtype == mx.uint8


def test_clip():
    x = mx.array([-3, 0, 5, 10])
    assert mx.clip(x, 0, 6).tolist() == [0, 0, 5, 6]
    assert mx.clip(x, None, 2).tolist() == [-3, 0, 2, 2]
    assert mx.clip(x, mx.array([-1, 1, 1, 1]), None).tolist() == [-1, 1, 5, 10]
    assert mx.clip(mx.array([0.5], mx.float16), 0, 0.25).dtype == mx.float16


# -- result dtypes: every pair of dtypes, against real MLX ------------------------------------------------
BINARY_OPS = ["add", "subtract", "multiply", "divide", "floor_divide", "remainder", "power", "maximum", "minimum",
              "arctan2", "logaddexp", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
              "logical_and", "logical_or", "bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift"]


@pytest.mark.parametrize("op", BINARY_OPS)
def test_binary_result_dtypes_match_mlx_for_every_pair(mlx, op):
    """Promotion is checked on lazy nodes (nothing is computed); where MLX refuses a pair, kiln must too."""
    for left in ALL_DTYPES:
        for right in ALL_DTYPES:
            ml = mlx.zeros((2,)).astype(getattr(mlx, left))
            mr = mlx.zeros((2,)).astype(getattr(mlx, right))
            kl = mx.zeros((2,), getattr(mx, left))
            kr = mx.zeros((2,), getattr(mx, right))
            try:
                expected = str(getattr(mlx, op)(ml, mr).dtype).split(".")[-1]
            except (ValueError, RuntimeError):
                with pytest.raises(ValueError, match=rf"^\[{op}\]"):
                    getattr(mx, op)(kl, kr)
                continue
            assert getattr(mx, op)(kl, kr).dtype.name == expected, (left, right)


# -- weak Python scalars -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, scalar, expected", [
    ("float16", 2.0, "float16"), ("bfloat16", 2.0, "bfloat16"), ("float16", 3, "float16"),
    ("uint8", 1, "uint8"), ("int8", -3, "int8"), ("uint8", True, "uint8"), ("bool_", True, "bool_"),
    ("bool_", 1, "int32"), ("bool_", 1.5, "float32"), ("int32", 1.5, "float32"), ("int64", 1.5, "float32"),
    ("uint64", 2.5, "float32"), ("int16", 1, "int16"), ("float64", 1.5, "float64"), ("uint64", 1, "uint64"),
    ("int32", 1 + 2j, "complex64"), ("float16", 1j, "complex64"),
])
def test_python_scalars_are_weakly_typed(dtype, scalar, expected):
    a = mx.zeros((2,), getattr(mx, dtype))
    assert (a + scalar).dtype == getattr(mx, expected)
    assert (scalar + a).dtype == getattr(mx, expected)
    assert mx.multiply(a, scalar).dtype == getattr(mx, expected)


def test_numpy_scalars_are_weak_like_python_scalars():
    a = mx.array([1, 2], mx.int16)
    assert (a + np.int64(3)).dtype == mx.int16
    assert (a + np.float32(1.5)).dtype == mx.float32
    assert (mx.array([1.0], mx.float16) * np.float64(2.0)).dtype == mx.float16


def test_two_python_scalars_promote_as_the_arrays_they_would_make():
    assert mx.add(1, 2.5).dtype == mx.float32
    assert mx.add(True, 1).dtype == mx.int32
    assert mx.add(True, False).dtype == mx.bool_
    assert mx.add(2**40, 1).dtype == mx.int64 and mx.add(2**40, 1).item() == 2**40 + 1
    assert mx.maximum(1, 2).item() == 2


@pytest.mark.parametrize("dtype, scalar", [("uint8", 300), ("uint8", -1), ("int8", 128), ("int8", -129),
                                           ("int32", 2**31), ("uint32", -1), ("int16", 2**40),
                                           ("int64", 2**63)])
def test_python_int_that_does_not_fit_the_array_dtype_raises(dtype, scalar):
    a = mx.zeros((2,), getattr(mx, dtype))
    with pytest.raises(ValueError, match=rf"^\[add\] Converting {scalar} to {dtype} would result in overflow"):
        mx.add(a, scalar)
    with pytest.raises(ValueError, match=r"^\[less\]"):
        mx.less(a, scalar)


def test_python_int_at_the_dtype_limits_is_accepted():
    assert (mx.array([0], mx.uint8) + 255).item() == 255
    assert (mx.array([0], mx.int8) + -128).item() == -128
    assert (mx.array([1], mx.uint64) + (2**64 - 2)).item() == 2**64 - 1


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("scalar", [True, 1, 2.5])
@pytest.mark.parametrize("op", ["add", "multiply", "maximum", "equal", "divide", "power"])
def test_weak_scalar_dtypes_match_mlx(mlx, op, scalar, dtype):
    ours = getattr(mx, op)(mx.zeros((2,), getattr(mx, dtype)), scalar).dtype
    theirs = getattr(mlx, op)(mlx.zeros((2,)).astype(getattr(mlx, dtype)), scalar).dtype
    assert ours.name == str(theirs).split(".")[-1]
    ours = getattr(mx, op)(scalar, mx.zeros((2,), getattr(mx, dtype))).dtype
    theirs = getattr(mlx, op)(scalar, mlx.zeros((2,)).astype(getattr(mlx, dtype))).dtype
    assert ours.name == str(theirs).split(".")[-1]


# -- integer overflow -----------------------------------------------------------------------------------
def test_integer_arithmetic_wraps():
    assert (mx.array([127], mx.int8) + 1).item() == -128
    assert (mx.array([0], mx.uint8) - 1).item() == 255
    assert (mx.array([2**31 - 1]) + 1).item() == -(2**31)
    assert (mx.array([2**16], mx.int32) * mx.array([2**16], mx.int32)).item() == 0
    assert (mx.array([200], mx.uint8) * 2).item() == 144
    assert (mx.array([2**63 - 1], mx.int64) + 1).item() == -(2**63)


# -- broadcasting, 0-d and empty arrays ----------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b, shape_out", [
    ((2, 1, 3), (4, 1), (2, 4, 3)), ((), (3,), (3,)), ((), (), ()), ((0, 3), (1, 3), (0, 3)), ((0,), (1,), (0,)),
    ((5, 1), (1, 0), (5, 0)), ((1,), (2, 3), (2, 3)), ((3, 1, 1), (1, 2, 1), (3, 2, 1)),
])
def test_broadcasting(shape_a, shape_b, shape_out):
    a = np.arange(int(np.prod(shape_a)), dtype=np.float32).reshape(shape_a)
    b = np.arange(int(np.prod(shape_b)), dtype=np.float32).reshape(shape_b) + 1
    for op, ref in ((mx.add, np.add), (mx.multiply, np.multiply), (mx.less, np.less), (mx.arctan2, np.arctan2)):
        out = op(mx.array(a), mx.array(b))
        assert out.shape == shape_out
        np.testing.assert_allclose(np.array(out), ref(a, b), rtol=1e-6)


def test_zero_dimensional_results_stay_zero_dimensional():
    x = mx.array(2.0)
    assert mx.exp(x).shape == () and (x * 3).shape == () and mx.maximum(x, 1).shape == ()
    assert (x + 1).item() == 3.0


def test_empty_arrays_through_unary_and_binary_ops():
    e = mx.zeros((0, 3))
    assert mx.exp(e).shape == (0, 3)
    assert (e + 1).shape == (0, 3)
    assert mx.equal(e, e).shape == (0, 3)
    assert np.array(mx.log(e)).size == 0


# -- Python operators ---------------------------------------------------------------------------------------
ARITH_OPERATORS = [
    (operator.add, np.add), (operator.sub, np.subtract), (operator.mul, np.multiply),
    (operator.truediv, np.true_divide), (operator.floordiv, np.floor_divide), (operator.mod, np.remainder),
]


@pytest.mark.parametrize("py_op, np_op", ARITH_OPERATORS)
def test_arithmetic_operators_and_their_reflected_forms(py_op, np_op):
    a = np.array([[1.0, 2.5, -3.0]], np.float32)
    b = np.array([[2.0], [0.5]], np.float32)
    np.testing.assert_allclose(np.array(py_op(mx.array(a), mx.array(b))), np_op(a, b), rtol=1e-6)
    np.testing.assert_allclose(np.array(py_op(mx.array(a), 2.0)), np_op(a, np.float32(2.0)), rtol=1e-6)
    np.testing.assert_allclose(np.array(py_op(3.0, mx.array(b))), np_op(np.float32(3.0), b), rtol=1e-6)


def test_power_operator_and_its_reflected_form():
    a = np.array([0.5, 2.0, 3.0], np.float32)
    np.testing.assert_allclose(np.array(mx.array(a) ** 2), a**2)
    np.testing.assert_allclose(np.array(2 ** mx.array(a)), 2**a, rtol=1e-6)
    np.testing.assert_allclose(np.array(mx.array(a) ** mx.array(a)), a**a, rtol=1e-6)
    assert (mx.array([2, 3]) ** 2).tolist() == [4, 9]
    assert (2 ** mx.array([2, 3])).tolist() == [4, 8]


def test_divmod():
    q, r = divmod(mx.array([7, -7]), 2)
    assert q.tolist() == [3, -4] and r.tolist() == [1, 1]
    q, r = divmod(7, mx.array([2, -2]))
    assert q.tolist() == [3, -4] and r.tolist() == [1, -1]


@pytest.mark.parametrize("py_op, np_op", [
    (operator.and_, np.bitwise_and), (operator.or_, np.bitwise_or), (operator.xor, np.bitwise_xor),
    (operator.lshift, np.left_shift), (operator.rshift, np.right_shift),
])
def test_bitwise_operators_and_their_reflected_forms(py_op, np_op):
    a = np.array([1, 6, 12], np.int32)
    np.testing.assert_array_equal(np.array(py_op(mx.array(a), mx.array(a[::-1]))), np_op(a, a[::-1]))
    np.testing.assert_array_equal(np.array(py_op(mx.array(a), 2)), np_op(a, 2))
    np.testing.assert_array_equal(np.array(py_op(3, mx.array(a))), np_op(3, a))


def test_bool_operators_are_logical():
    a, b = mx.array([True, True, False]), mx.array([True, False, False])
    assert (a & b).tolist() == [True, False, False] and (a & b).dtype == mx.bool_
    assert (a | b).tolist() == [True, True, False]
    assert (a ^ b).tolist() == [False, True, False]
    assert (~a).tolist() == [False, False, True]
    assert (a & True).tolist() == [True, True, False]


@pytest.mark.parametrize("py_op, np_op", [
    (operator.eq, np.equal), (operator.ne, np.not_equal), (operator.lt, np.less), (operator.le, np.less_equal),
    (operator.gt, np.greater), (operator.ge, np.greater_equal),
])
def test_comparison_operators_and_reflection(py_op, np_op):
    a = np.array([1, 2, 3], np.int32)
    out = py_op(mx.array(a), 2)
    assert out.dtype == mx.bool_
    np.testing.assert_array_equal(np.array(out), np_op(a, 2))
    np.testing.assert_array_equal(np.array(py_op(2, mx.array(a))), np_op(2, a))


def test_unary_operators():
    a = mx.array([-1.5, 2.0])
    assert (-a).tolist() == [1.5, -2.0]
    assert (+a) is a
    assert abs(a).tolist() == [1.5, 2.0]
    assert (~mx.array([0, 1])).tolist() == [-1, -2]


def test_matmul_operator():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(np.array(mx.array(a) @ mx.array(a.T)), a @ a.T)


def test_in_place_operators_update_the_shared_array():
    x = mx.array([1, 2], mx.int32)
    alias = x
    doubled = x * 2  # computed before the update: keeps its value, as in MLX
    x += 1
    assert x.tolist() == [2, 3]
    assert alias.tolist() == [2, 3]  # the same array object, updated in place as in MLX
    assert doubled.tolist() == [2, 4]
    x *= 2
    x -= 1
    x //= 2
    x **= 2
    x %= 3
    assert x.tolist() == [1, 1]
    y = mx.array([1, 2], mx.uint8)
    y <<= 1
    y |= 1
    y &= 7
    y ^= 2
    y >>= 1
    assert y.dtype == mx.uint8 and y.tolist() == [0, 3]
    f = mx.array([3.0])
    f /= 2
    assert f.item() == 1.5
    i = mx.array([1, 2], mx.int32)
    i += 1.5  # promotion may change the dtype of the rebound name
    assert i.dtype == mx.float32 and i.tolist() == [2.5, 3.5]


def test_in_place_true_division_of_integers_is_refused():
    x = mx.array([1, 2])
    with pytest.raises(ValueError, match="In place division"):
        x /= 2


def test_numpy_arrays_on_either_side_of_an_operator():
    out = mx.array([1.0, 2.0]) + np.array([1, 2])
    assert isinstance(out, mx.array) and out.dtype == mx.float32 and out.tolist() == [2.0, 4.0]
    out = np.array([1.0, 2.0], np.float32) * mx.array([2.0, 3.0])
    np.testing.assert_array_equal(np.array(out), [2.0, 6.0])


# -- comparison helpers --------------------------------------------------------------------------------------
def test_isclose_matches_numpy():
    a = np.array([1.0, 1.0, NAN, INF, -INF, 0.0, 1e-9], np.float32)
    b = np.array([1.0 + 1e-6, 1.1, NAN, INF, INF, 1e-9, 0.0], np.float32)
    for equal_nan in (False, True):
        out = mx.isclose(mx.array(a), mx.array(b), equal_nan=equal_nan)
        np.testing.assert_array_equal(np.array(out), np.isclose(a, b, equal_nan=equal_nan))
    out = mx.isclose(mx.array(a), mx.array(b), rtol=0.2, atol=0.0)
    np.testing.assert_array_equal(np.array(out), np.isclose(a, b, rtol=0.2, atol=0.0))


def test_allclose():
    assert mx.allclose(mx.array([1.0, 2.0]), mx.array([1.0, 2.0 + 1e-7])).item() is True
    assert mx.allclose(mx.array([1.0, 2.0]), mx.array([1.0, 2.1])).item() is False
    assert mx.allclose(mx.array([NAN]), mx.array([NAN])).item() is False
    assert mx.allclose(mx.array([NAN]), mx.array([NAN]), equal_nan=True).item() is True
    assert mx.allclose(mx.array([1, 2]), mx.array([[1, 2], [1, 2]])).item() is True  # broadcasts
    assert mx.allclose(mx.array([1.0]), 1).dtype == mx.bool_


def test_array_equal():
    assert mx.array_equal(mx.array([1, 2]), mx.array([1.0, 2.0])).item() is True
    assert mx.array_equal(mx.array([1, 2]), mx.array([1, 3])).item() is False
    assert mx.array_equal(mx.array([1, 2]), mx.array([[1, 2]])).item() is False  # shapes differ
    assert mx.array_equal(mx.array([NAN, 1.0]), mx.array([NAN, 1.0])).item() is False
    assert mx.array_equal(mx.array([NAN, 1.0]), mx.array([NAN, 1.0]), equal_nan=True).item() is True
    assert mx.array_equal(mx.array([]), mx.array([])).item() is True


# -- laziness -------------------------------------------------------------------------------------------------
def test_ops_build_nodes_and_compute_only_when_asked():
    x = mx.array([1.0, 2.0])
    y = mx.exp(x) + x * 2
    assert y._data is None and y._prim is not None
    assert y.shape == (2,) and y.dtype == mx.float32  # known without computing
    mx.eval(y)
    assert y._data is not None
    z = mx.sum(y)
    assert z._data is None
    assert z.item() == pytest.approx(float(np.exp(1) + np.exp(2) + 6), rel=1e-6)
    w = mx.sqrt(x)
    str(w)
    assert w._data is not None


# -- names of the ops made by factories ------------------------------------------------------------------
FACTORY_MADE = sorted(FLOAT_UNARY) + ["erfinv", "isnan", "isinf", "isfinite"] + BINARY_OPS


@pytest.mark.parametrize("name", FACTORY_MADE)
def test_ops_have_their_public_names(name):
    fn = getattr(mx, name)
    assert fn.__name__ == name
    assert fn.__qualname__ == name
    assert fn.__doc__


def test_operator_methods_have_their_dunder_names():
    assert mx.array.__add__.__name__ == "__add__"
    assert mx.array.__radd__.__qualname__ == "array.__radd__"
    assert mx.array.__iadd__.__name__ == "__iadd__"


def test_round_complex_and_integer_decimals():
    # numpy rounds real and imaginary parts half to even, as MLX does
    values = np.array([22.2 + 3.6j, 18.5 + 98.2j, -2.5 - 0.5j], np.complex64)
    assert mx.round(mx.array(values)).tolist() == np.round(values).tolist()
    # integers with decimals go through float32 and back (MLX): halves round to even in the scaled value
    ints = np.array([15, 25, 35, -15, 122, 149, 150], np.int32)
    for decimals in (-2, -1, 0, 1):
        out = mx.round(mx.array(ints), decimals=decimals)
        want = np.round(ints.astype(np.float32) * np.float32(10.0**decimals)) * np.float32(10.0**-decimals)
        assert out.dtype == mx.int32 and out.tolist() == want.astype(np.int32).tolist(), decimals
    assert mx.round(mx.array([True, False]), decimals=-1).tolist() == [False, False]


def test_round_matches_mlx(mlx):
    cases = [(np.array([22.2 + 3.6j, 18.5 + 98.2j], np.complex64), 0), (np.array([2.26 + 3.35j], np.complex64), 1),
             (np.array([15, 25, 122, 149, 150, 250], np.int32), -1), (np.array([15, 122], np.uint8), -1),
             (np.array([1.537, 1.471], np.float32), 2)]
    for values, decimals in cases:
        ours, theirs = mx.round(mx.array(values), decimals), mlx.round(mlx.array(values), decimals)
        assert str(ours.dtype) == str(theirs.dtype) and ours.tolist() == theirs.tolist(), (values, decimals)


def _complex_logaddexp_reference(x, y):
    # log(e^x + e^y) in complex128, imaginary part unwrapped: the larger (by real, then imaginary part) plus
    # log1p of e^(smaller - larger), so the result stays near the larger input
    x, y = x.astype(np.complex128), y.astype(np.complex128)
    x_is_hi = (x.real > y.real) | ((x.real == y.real) & (x.imag >= y.imag))
    hi, lo = np.where(x_is_hi, x, y), np.where(x_is_hi, y, x)
    return hi + np.log(1 + np.exp(lo - hi))


def test_complex_logaddexp():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=64) * 3 + 1j * rng.normal(size=64) * 4).astype(np.complex64)
    y = (rng.normal(size=64) * 3 + 1j * rng.normal(size=64) * 4).astype(np.complex64)
    out = mx.logaddexp(mx.array(x), mx.array(y))
    assert out.dtype == mx.complex64
    np.testing.assert_allclose(np.array(out), _complex_logaddexp_reference(x, y), rtol=1e-5, atol=1e-5)
    # e^out really is e^x + e^y (this is independent of the branch the imaginary part takes)
    np.testing.assert_allclose(np.exp(np.array(out, np.complex128)), np.exp(x.astype(np.complex128)) +
                               np.exp(y.astype(np.complex128)), rtol=1e-4)
    # -inf contributes nothing; a NaN anywhere gives NaN
    special = mx.logaddexp(mx.array([complex(-INF, 0), complex(-INF, 3), complex(NAN, 0), 1 + 2j]),
                           mx.array([1 + 2j, complex(-INF, 3), 1 + 2j, complex(0, NAN)]))
    got = np.array(special)
    assert got[0] == 1 + 2j and got[1] == complex(-INF, 3) and np.isnan(got[2:]).all()


def test_complex_logaddexp_agrees_with_mlx(mlx):
    x = np.array([0, 1, 2, 9.0, -3, 5], np.float32) + 1j * np.array([1, 1, -2, 0.5, 3, -3], np.float32)
    y = np.array([1, 0, 4, 2.5, -3, 5], np.float32) + 1j * np.array([1, -1, 2, 3, 3, 3], np.float32)
    ours, theirs = mx.logaddexp(mx.array(x), mx.array(y)), mlx.logaddexp(mlx.array(x), mlx.array(y))
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-5, atol=1e-5)
