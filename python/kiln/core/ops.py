"""The public ops: check arguments, normalise axes, promote dtypes, then `bind` primitives.

Primitives stay strict (one dtype per elementwise op, normalised axes); everything MLX users may pass
is handled here. Errors start with `[opname]`, as MLX's do.
"""

from __future__ import annotations

import builtins
import math
import operator

import numpy as np

from . import dtypes as dt
from .array import array, bind
from .array import evaluate as _evaluate
from .prims.elementwise import broadcast_shapes as _broadcast_shapes
from .prims.shape import resolve_reshape as _resolve_reshape
from .tracing import note_rank_decision as _note_rank_decision
from .tracing import tracing_shapeless as _tracing_shapeless

Scalar = (bool, int, float, complex, np.number, np.bool_)


# -- argument helpers ------------------------------------------------------------------------------
def _is_scalar(x) -> bool:
    return isinstance(x, Scalar) and not isinstance(x, array)


def _py_scalar(x):
    if isinstance(x, np.generic):
        return x.item()
    return x


class _AxisError(ValueError, IndexError):
    """A bad axis: a ValueError like kiln's other argument errors, and the IndexError MLX raises."""


def to_array(x, dtype: dt.Dtype | None = None, op: str | None = None) -> array:
    """An array for x (arrays pass through, cast if dtype is given); `op` names the caller in errors.

    Args:
        x (array or scalar or list): The value.
        dtype (Dtype, optional): Cast to it.
        op (str, optional): The calling op's name, for error messages.

    Returns:
        array: The array.
    """
    if isinstance(x, array):
        return x if dtype is None or x.dtype == dtype else astype(x, dtype)
    if op is None:
        return array(x, dtype)
    try:
        return array(x, dtype)
    except (TypeError, ValueError) as e:
        raise type(e)(f"[{op}] {str(e).removeprefix('[array] ')}") from None


def _scalar_array(x, dtype: dt.Dtype, op: str = "array") -> array:
    """A 0-d array of `dtype` holding scalar x; an integer that does not fit raises, as in MLX."""
    x = _py_scalar(x)
    key = _scalar_key(x, dtype)
    data = _SCALAR_BUFFERS.get(key) if key is not None else None
    if data is None:
        data = _scalar_buffer(x, dtype, op)
        if key is not None:
            if len(_SCALAR_BUFFERS) >= _SCALAR_BUFFERS_MAX:
                _SCALAR_BUFFERS.clear()
            _SCALAR_BUFFERS[key] = data
    # A fresh array object per call (an in-place update rebinds the object), sharing the read-only buffer.
    return array._constant(data, dtype)


# Scalar constants (`x + 1.0`, `2 * x`) repeat endlessly in eager code: their 0-d buffers are made once.
_SCALAR_BUFFERS: dict = {}
_SCALAR_BUFFERS_MAX = 1024


def _scalar_key(x, dtype: dt.Dtype):
    """A cache key naming x exactly (-0.0 apart from 0.0, 1 apart from 1.0 and True); None: don't cache."""
    kind = type(x)
    if kind is float:
        if math.isnan(x):
            return None  # NaNs differ in payload bits that equality cannot see
        return (kind, x, math.copysign(1.0, x), dtype) if x == 0.0 else (kind, x, dtype)
    if kind is int or kind is bool:
        return (kind, x, dtype)
    return None


def _scalar_buffer(x, dtype: dt.Dtype, op: str) -> np.ndarray:
    """The read-only 0-d numpy buffer of `dtype` holding x (MLX's overflow check for integers)."""
    if dt.is_integer(dtype) and isinstance(x, int) and not isinstance(x, bool):
        info = np.iinfo(dtype.np)
        if not info.min <= x <= info.max:
            raise ValueError(f"[{op}] Converting {x} to {dtype.name} would result in overflow.")
    with np.errstate(all="ignore"):
        if dt.is_integer(dtype) and isinstance(x, float):
            data = np.array(x).astype(dtype.np)
        else:
            data = np.array(x, dtype=dtype.np)
        if data.dtype != dtype.np:
            data = data.astype(dtype.np)
    data.flags.writeable = False
    return data


_WEAK_TYPES = (bool, int, float)


def _promote(op: str, *xs) -> list:
    """Arrays of one promoted dtype (Python scalars are weakly typed)."""
    if len(xs) == 2:
        # Fast paths for the usual binary cases; the general code below gives the same answers.
        a, b = xs
        kind_a, kind_b = type(a), type(b)
        if kind_a is array:
            if kind_b is array:
                if a._dtype is b._dtype:
                    return [a, b]
            elif kind_b in _WEAK_TYPES:
                d = dt.weak_result(a._dtype, kind_b)
                return [a if d is a._dtype else astype(a, d), _scalar_array(b, d, op)]
        elif kind_b is array and kind_a in _WEAK_TYPES:
            d = dt.weak_result(b._dtype, kind_a)
            return [_scalar_array(a, d, op), b if d is b._dtype else astype(b, d)]
    items = []
    for x in xs:
        if isinstance(x, array) or _is_scalar(x):
            items.append(_py_scalar(x) if not isinstance(x, array) else x)
        else:
            items.append(to_array(x, op=op))
    d = dt.result_type(*items)
    out = []
    for x in items:
        out.append(astype(x, d) if isinstance(x, array) else _scalar_array(x, d, op))
    return out


def _axes(op: str, ndim: int, axis, allow_none=True) -> tuple:
    """Normalise an int/tuple/None axis argument to a sorted tuple of non-negative axes."""
    _note_rank_decision()
    if axis is None:
        return tuple(range(ndim))
    seq = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in seq:
        a = int(a)
        if not -ndim <= a < ndim:
            raise _AxisError(f"[{op}] Invalid axis {a} for array with {ndim} dimensions.")
        a = a + ndim if a < 0 else a
        if a in out:
            raise ValueError(f"[{op}] Received duplicate axis {a}.")
        out.append(a)
    return tuple(sorted(out))


def _axis(op: str, ndim: int, axis: int) -> int:
    _note_rank_decision()
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"[{op}] axis must be an int, got {type(axis).__name__}.")
    if not -ndim <= axis < ndim:
        raise _AxisError(f"[{op}] Invalid axis {axis} for array with {ndim} dimensions.")
    return int(axis) + ndim if axis < 0 else int(axis)


# -- dtype ------------------------------------------------------------------------------------------
def astype(a, dtype, stream=None) -> array:
    """Cast `a` to `dtype` (float to int truncates toward zero; nonzero to bool is True).

    Args:
        a (array): Input array.
        dtype (Dtype): The type to cast to.

    Returns:
        array: `a` if it already has `dtype`, else the cast array.
    """
    if type(a) is array and a._dtype is dtype:
        return a  # already that dtype: the common case in promotion and optimizers
    d = dt.dtype_arg(dtype, "astype")
    a = to_array(a, op="astype")
    if a.dtype == d:
        return a
    return bind("astype", a, dtype=d)


# -- elementwise -----------------------------------------------------------------------------------
_FLOATING = frozenset(d for d in dt.ALL if dt.is_floating(d))


def _float_input(op: str, a) -> array:
    if type(a) is array and a._dtype in _FLOATING:
        return a  # unary float ops on float arrays: no conversion, no cast
    a = to_array(a, op=op)
    if not dt.is_floating(a.dtype):
        a = astype(a, dt.float32)
    return a


def _named(fn, name: str, doc: str):
    """Give a function made by a factory its public name, so tracebacks and reprs read `exp`, not `fn`."""
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _refuse_complex(op: str, a: array) -> array:
    """MLX defines these ops on real numbers only; numpy would answer (or fail) differently for complex."""
    if a.dtype == dt.complex64:
        raise ValueError(f"[{op}] Not supported for complex64.")
    return a


def _unary_float(name, real_only=False):
    def fn(a, stream=None) -> array:
        x = _float_input(name, a)
        return bind(name, _refuse_complex(name, x) if real_only else x)

    return _named(fn, name, f"""Element-wise {name}. Integer and bool inputs are computed in float32.

    Args:
        a (array): Input array.

    Returns:
        array: The {name} of `a`.
    """)


exp = _unary_float("exp")
expm1 = _unary_float("expm1", real_only=True)
log = _unary_float("log")
log1p = _unary_float("log1p")
log2 = _unary_float("log2")
log10 = _unary_float("log10")
sqrt = _unary_float("sqrt")
rsqrt = _unary_float("rsqrt")
reciprocal = _unary_float("reciprocal")
sin = _unary_float("sin")
cos = _unary_float("cos")
tan = _unary_float("tan")
arcsin = _unary_float("arcsin")
arccos = _unary_float("arccos")
arctan = _unary_float("arctan")
sinh = _unary_float("sinh")
cosh = _unary_float("cosh")
tanh = _unary_float("tanh")
arcsinh = _unary_float("arcsinh")
arccosh = _unary_float("arccosh")
arctanh = _unary_float("arctanh")
sigmoid = _unary_float("sigmoid", real_only=True)
erf = _unary_float("erf", real_only=True)
erfinv = _unary_float("erfinv", real_only=True)


def negative(a, stream=None) -> array:
    """Element-wise negation (integers wrap; bool is refused, as in MLX).

    Args:
        a (array): Input array.

    Returns:
        array: ``-a``.
    """
    a = to_array(a, op="negative")
    if a.dtype == dt.bool_:
        raise ValueError("[negative] Not supported for bool, use logical_not instead.")
    return bind("negative", a)


def floor(a, stream=None) -> array:
    """Element-wise floor (integers are returned unchanged).

    Args:
        a (array): Input array.

    Returns:
        array: The floor of ``a``.
    """
    a = _refuse_complex("floor", to_array(a, op="floor"))
    return a if not dt.is_floating(a.dtype) else bind("floor", a)


def ceil(a, stream=None) -> array:
    """Element-wise ceiling (integers are returned unchanged).

    Args:
        a (array): Input array.

    Returns:
        array: The ceiling of ``a``.
    """
    a = _refuse_complex("ceil", to_array(a, op="ceil"))
    return a if not dt.is_floating(a.dtype) else bind("ceil", a)


def round(a, decimals: int = 0, stream=None) -> array:  # noqa: A001
    """Round to the given number of decimals (halves to even).

    Args:
        a (array): Input array.
        decimals (int, optional): Number of decimals. Default: ``0``.

    Returns:
        array: The rounded array.
    """
    a = to_array(a, op="round")
    if decimals == 0:
        return bind("round", a) if dt.is_floating(a.dtype) else a
    # As MLX: scale in floating point (integers and booleans in float32), round, multiply by the inverse
    # scale (not divide: 1.471 rounds to float32(147 * 0.01), below 1.47), cast back.
    scaled = bind("round", multiply(a, 10.0**decimals))
    return astype(multiply(scaled, 10.0 ** -decimals), a.dtype)


def _predicate(name):
    def fn(a, stream=None) -> array:
        a = to_array(a, op=name)
        if not dt.is_floating(a.dtype):
            return full_like(a, name == "isfinite", dtype=dt.bool_)
        return bind(name, a)

    return _named(fn, name, f"""Element-wise {name} test (always {name == 'isfinite'} for integer and bool inputs).

    Args:
        a (array): Input array.

    Returns:
        array: A bool array shaped like `a`.
    """)


isnan = _predicate("isnan")
isinf = _predicate("isinf")
isfinite = _predicate("isfinite")


def isposinf(a, stream=None) -> array:
    """Element-wise test for positive infinity.

    Args:
        a (array): Input array.

    Returns:
        array: The bool result.
    """
    a = to_array(a, op="isposinf")
    return logical_and(isinf(a), greater(a, 0))


def isneginf(a, stream=None) -> array:
    """Element-wise test for negative infinity.

    Args:
        a (array): Input array.

    Returns:
        array: The bool result.
    """
    a = to_array(a, op="isneginf")
    return logical_and(isinf(a), less(a, 0))


def logical_not(a, stream=None) -> array:
    """Element-wise logical not (nonzero is True).

    Args:
        a (array or scalar): Input array.

    Returns:
        array: The bool result.
    """
    return bind("logical_not", astype(a, dt.bool_))


def bitwise_invert(a, stream=None) -> array:
    """Element-wise bitwise not (logical not for bool).

    Args:
        a (array): Input array.

    Returns:
        array: ``~a``.
    """
    a = to_array(a, op="bitwise_invert")
    if dt.is_floating(a.dtype):
        raise ValueError(f"[bitwise_invert] Only allowed on integer or boolean types but got type {a.dtype.name}.")
    if a.dtype == dt.bool_:
        return logical_not(a)
    return bind("bitwise_invert", a)


def stop_gradient(a, stream=None) -> array:
    """The array, with no gradient flowing through it.

    Args:
        a (array): Input array.

    Returns:
        array: ``a``, cut off from autodiff.
    """
    return bind("stop_gradient", to_array(a, op="stop_gradient"))


def copy(a, stream=None) -> array:
    """A copy of the array.

    Args:
        a (array): Input array.

    Returns:
        array: The copy.
    """
    return bind("copy", to_array(a, op="copy"))


def _binary(name, float_result=False, check=None):
    def fn(a, b, stream=None) -> array:
        x, y = _promote(name, a, b)
        if check:
            x, y = check(name, a, b, x, y)
        if float_result and not dt.is_floating(x.dtype):
            x, y = astype(x, dt.float32), astype(y, dt.float32)
        return bind(name, x, y)  # the primitive's shape rule checks broadcasting, with the same `[name]` error

    return _named(fn, name, f"""Element-wise {name} with numpy-style broadcasting and MLX's type promotion.

    Args:
        a (array or scalar): First input.
        b (array or scalar): Second input.

    Returns:
        array: The {name} of `a` and `b`.
    """)


def _integer_only(op, a, b, x, y):
    """Bitwise ops take integers or bools; a promotion that lands on a float (uint64 with int64) is refused."""
    if dt.is_floating(x.dtype):
        ta = a.dtype.name if isinstance(a, array) else type(a).__name__
        tb = b.dtype.name if isinstance(b, array) else type(b).__name__
        raise ValueError(f"[{op}] Only allowed on integer or boolean types but got types {ta} and {tb}.")
    return x, y


def _real_operands(op, a, b, x, y):
    if x.dtype == dt.complex64:
        raise ValueError(f"[{op}] Complex type not supported." if op == "remainder" else
                         f"[{op}] Not supported for complex64.")
    return x, y


def _shift_operands(op, a, b, x, y):
    """Shifts are integer-only; two bools shift as uint8, as in MLX."""
    x, y = _integer_only(op, a, b, x, y)
    if x.dtype == dt.bool_:
        x, y = astype(x, dt.uint8), astype(y, dt.uint8)
    return x, y


add = _binary("add")
subtract = _binary("subtract")
multiply = _binary("multiply")
divide = _binary("divide", float_result=True)
floor_divide = _binary("floor_divide")
remainder = _binary("remainder", check=_real_operands)
power = _binary("power")
maximum = _binary("maximum")
minimum = _binary("minimum")
arctan2 = _binary("arctan2", float_result=True, check=_real_operands)
logaddexp = _binary("logaddexp", float_result=True)
equal = _binary("equal")
not_equal = _binary("not_equal")
less = _binary("less")
less_equal = _binary("less_equal")
greater = _binary("greater")
greater_equal = _binary("greater_equal")
bitwise_and = _binary("bitwise_and", check=_integer_only)
bitwise_or = _binary("bitwise_or", check=_integer_only)
bitwise_xor = _binary("bitwise_xor", check=_integer_only)
left_shift = _binary("left_shift", check=_shift_operands)
right_shift = _binary("right_shift", check=_shift_operands)


def true_divide(a, b, stream=None):
    """Element-wise true division (integer inputs give float32).

    Args:
        a (array or scalar): Input array.
        b (array or scalar): Input array.

    Returns:
        array: ``a / b``.
    """
    return divide(a, b)


def divmod(a, b, stream=None):  # noqa: A001
    """Element-wise quotient and remainder: ``(floor_divide(a, b), remainder(a, b))``.

    Args:
        a (array or scalar): Input array.
        b (array or scalar): Input array.

    Returns:
        tuple(array): The quotient and the remainder.
    """
    return floor_divide(a, b), remainder(a, b)


def bitwise_xor_any(a, b, stream=None) -> array:
    """`^`: logical for two bools, bitwise otherwise.

    Args:
        a (array or scalar): Input array.
        b (array or scalar): Input array.

    Returns:
        array: ``a ^ b``.
    """
    if isinstance(a, array) and a.dtype == dt.bool_ and isinstance(b, array) and b.dtype == dt.bool_:
        return not_equal(a, b)
    return bitwise_xor(a, b)


def logical_and(a, b, stream=None) -> array:
    """Element-wise logical and: both inputs are cast to bool (nonzero is True), then broadcast.

    Args:
        a (array or scalar): Input array.
        b (array or scalar): Input array.

    Returns:
        array: The bool result.
    """
    x, y = astype(to_array(a, op="logical_and"), dt.bool_), astype(to_array(b, op="logical_and"), dt.bool_)
    return bind("logical_and", x, y)  # the shape rule checks broadcasting


def logical_or(a, b, stream=None) -> array:
    """Element-wise logical or: both inputs are cast to bool (nonzero is True), then broadcast.

    Args:
        a (array or scalar): Input array.
        b (array or scalar): Input array.

    Returns:
        array: The bool result.
    """
    x, y = astype(to_array(a, op="logical_or"), dt.bool_), astype(to_array(b, op="logical_or"), dt.bool_)
    return bind("logical_or", x, y)  # the shape rule checks broadcasting


def where(condition, x, y, stream=None) -> array:
    """Select from x where condition is true, else from y (broadcasting all three).

    Args:
        condition (array): Where to take ``x``.
        x (array or scalar): Values where true.
        y (array or scalar): Values where false.

    Returns:
        array: The selected values.
    """
    c = astype(to_array(condition, op="where"), dt.bool_)
    xa, ya = _promote("where", x, y)
    return bind("select", c, xa, ya)  # the shape rule checks broadcasting, as `[where]`


def clip(a, a_min, a_max, stream=None) -> array:
    """Clip the values of an array to ``[a_min, a_max]``.

    Args:
        a (array): Input array.
        a_min (scalar or array, optional): Lower bound; ``None`` for none.
        a_max (scalar or array, optional): Upper bound; ``None`` for none.

    Returns:
        array: The clipped array.
    """
    if a_min is None and a_max is None:
        raise ValueError("[clip] One of min or max must be provided.")
    out = to_array(a, op="clip")
    if a_min is not None:
        out = maximum(out, a_min)
    if a_max is not None:
        out = minimum(out, a_max)
    return out


def nan_to_num(a, nan: float = 0.0, posinf=None, neginf=None, stream=None) -> array:
    """Replace NaN and infinities with finite numbers.

    Args:
        a (array): Input array.
        nan (float, optional): Value for NaN. Default: ``0``.
        posinf (float, optional): Value for +inf; the dtype's largest by default.
        neginf (float, optional): Value for -inf; the dtype's lowest by default.

    Returns:
        array: The array with the replacements.
    """
    a = to_array(a, op="nan_to_num")
    if not dt.is_floating(a.dtype):
        return a
    big = dt.finfo_max(a.dtype)
    posinf = big if posinf is None else posinf
    neginf = -big if neginf is None else neginf
    out = where(isnan(a), nan, a)
    out = where(isposinf(a), posinf, out)
    return where(isneginf(a), neginf, out)


def square(a, stream=None) -> array:
    """Element-wise square.

    Args:
        a (array): Input array.

    Returns:
        array: ``a * a``.
    """
    a = to_array(a, op="square")
    return bind("square", a)


def abs(a, stream=None) -> array:  # noqa: A001
    """Element-wise absolute value.

    Args:
        a (array): Input array.

    Returns:
        array: The absolute value of ``a``.
    """
    a = to_array(a, op="abs")
    if dt.is_unsigned(a.dtype) or a.dtype == dt.bool_:
        return a
    return bind("abs", a)


def sign(a, stream=None) -> array:
    """Element-wise sign: -1, 0 or 1 (bool and unsigned inputs: 0 or 1 in their own dtype).

    Args:
        a (array): Input array.

    Returns:
        array: The signs.
    """
    a = to_array(a, op="sign")
    if a.dtype == dt.bool_:
        return a
    return bind("sign", a)


def degrees(a, stream=None):
    """Convert angles from radians to degrees (integer inputs give float32).

    Args:
        a (array): Input array.

    Returns:
        array: ``a * 180 / pi``.
    """
    return multiply(_float_input("degrees", a), 180.0 / math.pi)


def radians(a, stream=None):
    """Convert angles from degrees to radians (integer inputs give float32).

    Args:
        a (array): Input array.

    Returns:
        array: ``a * pi / 180``.
    """
    return multiply(_float_input("radians", a), math.pi / 180.0)


# -- creation ----------------------------------------------------------------------------------------
def _dim_int(op, value) -> int:
    """One given dimension as an int: only ``__index__`` integers (not floats or strings), within int32."""
    try:
        v = operator.index(value)
    except TypeError:
        kind = type(value).__name__
        raise TypeError(f"[{op}] Shape dimensions must be integers, got {kind} {value!r}.") from None
    return dt.check_dim(v, op)


def _dims_arg(op, shape) -> tuple:
    """A shape argument (an int or a sequence of ints) as a tuple of ints, each checked by `_dim_int`."""
    if isinstance(shape, (int, np.integer)):
        return (_dim_int(op, shape),)
    if isinstance(shape, (str, bytes)):
        raise TypeError(f"[{op}] shape must be an int or a sequence of ints, got {shape!r}.")
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"[{op}] shape must be an int or a sequence of ints, got {shape!r}.") from None
    return tuple(_dim_int(op, s) for s in items)


def _shape_arg(op, shape) -> tuple:
    if type(shape) is tuple:
        for s in shape:
            if type(s) is not int or not 0 <= s <= dt.INT32_RANGE[1]:
                break
        else:
            return shape  # already a tuple of non-negative ints
    shape = _dims_arg(op, shape)
    if builtins.any(s < 0 for s in shape):
        raise ValueError(f"[{op}] Negative dimensions are not allowed: {shape}.")
    return shape


def _alloc(op, shape, d):
    nbytes = d.size
    for s in shape:
        nbytes *= s
    if nbytes > (1 << 46):
        raise MemoryError(f"[{op}] Cannot allocate {nbytes} bytes for shape {shape}.")


def full(shape, vals, dtype=None, stream=None) -> array:
    """An array of `shape` filled with `vals`.

    Args:
        shape (int or sequence of ints): The output shape.
        vals (scalar or array): The fill value; an array is broadcast to `shape`.
        dtype (Dtype, optional): The output dtype; by default that of `vals` (Python int -> int32, or int64
          when it does not fit; float -> float32; a numpy scalar keeps its own dtype).

    Returns:
        array: The filled array.
    """
    shape = _shape_arg("full", shape)
    # Python scalars follow MLX's defaults; numpy scalars and arrays keep their dtype (numpy float64 -> float32)
    is_py_scalar = _is_scalar(vals) and not isinstance(vals, np.generic)
    v = None if is_py_scalar else to_array(vals, op="full")
    d = dt.dtype_arg(dtype, "full") if dtype is not None else (v.dtype if v is not None else dt.scalar_dtype(vals))
    _alloc("full", shape, d)
    if v is None:
        v = _scalar_array(vals, d, "full")
    return broadcast_to(astype(v, d), shape)


def zeros(shape, dtype=dt.float32, stream=None) -> array:
    """An array of `shape` and `dtype` (default float32) filled with zeros.

    Args:
        shape (int or list(int)): The shape.
        dtype (Dtype, optional): Data type. Default: ``float32``.

    Returns:
        array: The zeros.
    """
    shape = _shape_arg("zeros", shape)
    d = dt.dtype_arg(dtype, "zeros", default=dt.float32)
    _alloc("zeros", shape, d)
    return array._from_numpy(np.zeros(shape, d.np), d)


def ones(shape, dtype=dt.float32, stream=None) -> array:
    """An array of `shape` and `dtype` (default float32) filled with ones.

    Args:
        shape (int or list(int)): The shape.
        dtype (Dtype, optional): Data type. Default: ``float32``.

    Returns:
        array: The ones.
    """
    shape = _shape_arg("ones", shape)
    d = dt.dtype_arg(dtype, "ones", default=dt.float32)
    _alloc("ones", shape, d)
    return array._from_numpy(np.ones(shape, d.np), d)


def full_like(a, vals, dtype=None, stream=None) -> array:
    """An array shaped like `a`, of `a`'s dtype unless `dtype` is given, filled with `vals`.

    Args:
        a (array): Input array.
        vals (scalar or array): The fill value.
        dtype (Dtype, optional): Data type; ``a``'s by default.

    Returns:
        array: The filled array.
    """
    a = to_array(a, op="full_like")
    d = dt.dtype_arg(dtype, "full_like", default=a.dtype)
    if not _is_scalar(vals):
        return broadcast_to(astype(to_array(vals, op="full_like"), d), a.shape)
    return bind("fill", a, value=_scalar_array(vals, d, "full_like").item(), dtype=d)


def zeros_like(a, dtype=None, stream=None) -> array:
    """An array of zeros shaped like ``a``.

    Args:
        a (array): Input array.
        dtype (Dtype, optional): The output type; ``a``'s by default.

    Returns:
        array: The zeros.
    """
    return full_like(a, 0, dtype=dtype)


def ones_like(a, dtype=None, stream=None) -> array:
    """An array of ones shaped like ``a``.

    Args:
        a (array): Input array.
        dtype (Dtype, optional): The output type; ``a``'s by default.

    Returns:
        array: The ones.
    """
    return full_like(a, 1, dtype=dtype)


# The largest whole number below which every whole number is exact in a float dtype (2 ** mantissa bits).
_EXACT_WHOLE = {dt.float32: 1 << 24, dt.float64: 1 << 53}


def _whole(v) -> bool:
    """v is a whole number and not -0.0 (a running sum that starts at -0.0 keeps its sign)."""
    if type(v) is int:
        return True
    v = float(v)
    return v.is_integer() and (v != 0 or math.copysign(1.0, v) > 0)


def _arange_arguments(args, start, stop, step, dtype):
    """MLX's two overloads: ``arange(start, stop, step, dtype)`` and ``arange(stop, step, dtype)``.

    The positional arguments fill ``start, stop, step, dtype`` in order; a lone start (given by position)
    is the stop. A start given by keyword needs a stop, as in MLX.
    """
    if len(args) > 4:
        raise TypeError(f"arange() takes at most 4 positional arguments ({len(args)} given).")
    start_by_keyword = start is not None
    given = {"start": start, "stop": stop, "step": step, "dtype": dtype}
    for name, value in zip(("start", "stop", "step", "dtype"), args):
        if given[name] is not None:
            raise TypeError(f"arange() got multiple values for argument '{name}'.")
        given[name] = value
    start, stop, step, dtype = given["start"], given["stop"], given["step"], given["dtype"]
    if stop is None:
        if start is None or start_by_keyword:
            raise TypeError("arange() needs a stop: arange(stop, step=None) or arange(start, stop, step=None).")
        start, stop = 0, start
    return 0 if start is None else start, stop, 1 if step is None else step, dtype


def _arange_length(start, stop, step) -> int:
    if builtins.all(isinstance(v, (int, np.integer)) for v in (start, stop, step)):
        return builtins.max(0, -((int(start) - int(stop)) // int(step)))  # exact ceil for large ints
    if math.isinf(step):
        # ceil(finite / inf) is 0 or -0: MLX keeps the start alone when the range points the step's way
        return 1 if (step > 0 and start < stop) or (step < 0 and start > stop) else 0
    return builtins.max(0, math.ceil((stop - start) / step))


def arange(*args, start=None, stop=None, step=None, dtype=None, stream=None) -> array:
    """Values in ``[start, stop)`` spaced by `step`: ``arange(stop)``, ``arange(start, stop, step)``.

    Args:
        start (int or float, optional): The first value; 0 when only `stop` is given.
        stop (int or float): The end, excluded.
        step (int or float, optional): The spacing, 1 by default.
        dtype (Dtype, optional): By default int32 when every argument is an int (int64 when one does not
          fit in int32), float32 otherwise.

    Returns:
        array: A 1-D array of ``ceil((stop - start) / step)`` values.
    """
    start, stop, step, dtype = _arange_arguments(args, start, stop, step, dtype)
    if step == 0:
        raise ValueError("[arange] step must be nonzero.")
    if not builtins.all(math.isfinite(v) for v in (start, stop)) or math.isnan(step):
        raise ValueError("[arange] Cannot compute length.")
    values = (start, stop, step)
    if dtype is not None:
        d = dt.dtype_arg(dtype, "arange")
    elif builtins.any(isinstance(v, (float, np.floating)) for v in values):
        d = dt.float32
    else:
        fits = builtins.all(dt.INT32_RANGE[0] <= v <= dt.INT32_RANGE[1] for v in values)
        d = dt.int32 if fits else dt.int64
    if d == dt.bool_:
        raise ValueError("[arange] bool not supported for arange.")
    n = _arange_length(start, stop, step)
    if n > dt.INT32_RANGE[1]:
        raise ValueError("[arange] Maximum size exceeded.")
    _alloc("arange", (n,), d)
    if n <= 1:
        return array._from_numpy(np.array([start] * n).astype(d.np), d)
    if dt.is_integer(d):
        # numpy's (and MLX's) rule: the first value and the spacing are each converted to the integer type;
        # an explicit narrower dtype wraps, as in MLX
        first = math.trunc(start)
        spacing = math.trunc(start + step) - first if n > 1 else 0
        data = first + spacing * np.arange(n, dtype=np.int64)
        return array._from_numpy(data.astype(d.np), d)
    # floats: a running sum in the output dtype (each value is the previous one plus step), as MLX computes it
    exact = _EXACT_WHOLE.get(d)
    end = start + n * step
    if exact and _whole(start) and _whole(step) and builtins.abs(start) <= exact and builtins.abs(end) <= exact:
        # Every partial sum is a whole number the dtype holds exactly: the same values, computed at once.
        first, spacing = int(start), int(step)
        data = np.arange(first, first + n * spacing, spacing, dtype=np.int64)
        return array._from_numpy(data.astype(d.np), d)
    with np.errstate(all="ignore"):  # values beyond the dtype's range become inf, as in MLX
        terms = np.full(n, step).astype(d.np)
        terms[0] = start
        data = np.cumsum(terms, dtype=d.np)
    return array._from_numpy(data.astype(d.np), d)


def linspace(start, stop, num: int = 50, endpoint: bool = True, dtype=dt.float32, stream=None) -> array:
    """`num` evenly spaced values from `start` to `stop`.

    Args:
        start (scalar): The first value.
        stop (scalar): The last value.
        num (int): How many values (default 50).
        endpoint (bool): If ``True`` (default), ``stop`` is the last value; otherwise it is excluded.
        dtype (Dtype): The output dtype (default float32).

    Returns:
        array: A 1-D array of `num` values.
    """
    if num < 0:
        raise ValueError(f"[linspace] number of samples, {num}, must be non-negative.")
    d = dt.dtype_arg(dtype, "linspace", default=dt.float32)
    return array._from_numpy(np.linspace(start, stop, num, endpoint=endpoint).astype(d.np), d)


def eye(n: int, m: int | None = None, k: int = 0, dtype=dt.float32, stream=None) -> array:
    """An ``n x m`` matrix with ones on diagonal `k` (0: main, positive: above) and zeros elsewhere.

    Args:
        n (int): Number of rows.
        m (int, optional): Number of columns; ``n`` by default.
        k (int, optional): The diagonal. Default: ``0``.
        dtype (Dtype, optional): Data type. Default: ``float32``.

    Returns:
        array: The matrix.
    """
    d = dt.dtype_arg(dtype, "eye", default=dt.float32)
    if n < 0 or (m is not None and m < 0):
        raise ValueError("[eye] N and M must be non-negative integers.")
    return array._from_numpy(np.eye(n, m, k, dtype=d.np), d)


def identity(n: int, dtype=dt.float32, stream=None) -> array:
    """The ``n x n`` identity matrix.

    Args:
        n (int): Number of rows and columns.
        dtype (Dtype, optional): Data type. Default: ``float32``.

    Returns:
        array: The identity matrix.
    """
    return eye(n, dtype=dtype)


def tri(n: int, m: int | None = None, k: int = 0, dtype=dt.float32, stream=None) -> array:
    """An ``n x m`` matrix with ones at and below diagonal `k` and zeros above it.

    Args:
        n (int): Number of rows.
        m (int, optional): Number of columns; ``n`` by default.
        k (int, optional): The diagonal. Default: ``0``.
        dtype (Dtype, optional): Data type. Default: ``float32``.

    Returns:
        array: The matrix.
    """
    d = dt.dtype_arg(dtype, "tri", default=dt.float32)
    if n < 0 or (m is not None and m < 0):
        raise ValueError("[tri] N and M must be non-negative integers.")
    return array._from_numpy(np.tri(n, m, k, dtype=d.np), d)


def tril(x, k: int = 0, stream=None) -> array:
    """The lower triangle of a matrix (elements above diagonal ``k`` are zero).

    Args:
        x (array): Input array (at least 2-D).
        k (int, optional): The diagonal. Default: ``0``.

    Returns:
        array: The lower triangle.
    """
    x = to_array(x, op="tril")
    if x.ndim < 2:
        raise ValueError("[tril] array must be at least 2-D.")
    mask = tri(x.shape[-2], x.shape[-1], k, dtype=dt.bool_)
    return where(mask, x, zeros_like(x))


def triu(x, k: int = 0, stream=None) -> array:
    """The upper triangle of a matrix (elements below diagonal ``k`` are zero).

    Args:
        x (array): Input array (at least 2-D).
        k (int, optional): The diagonal. Default: ``0``.

    Returns:
        array: The upper triangle.
    """
    x = to_array(x, op="triu")
    if x.ndim < 2:
        raise ValueError("[triu] array must be at least 2-D.")
    mask = tri(x.shape[-2], x.shape[-1], k - 1, dtype=dt.bool_)
    return where(mask, zeros_like(x), x)


def meshgrid(*arrays, sparse: bool = False, indexing: str = "xy", stream=None) -> tuple:
    """Coordinate arrays from coordinate vectors.

    Args:
        *arrays (array): 1-D coordinate vectors.
        sparse (bool, optional): Return broadcastable arrays instead of full ones. Default: ``False``.
        indexing (str, optional): ``'xy'`` (Cartesian) or ``'ij'`` (matrix). Default: ``'xy'``.

    Returns:
        tuple(array): One array per input vector.
    """
    if indexing not in ("xy", "ij"):
        raise ValueError("[meshgrid] indexing must be 'xy' or 'ij'.")
    # inputs of any rank count as their flattened values, as in numpy and MLX
    arrs = [reshape(to_array(a, op="meshgrid"), (-1,)) for a in arrays]
    n = len(arrs)
    outs = []
    for i, a in enumerate(arrs):
        shape = [1] * n
        shape[i] = a.size
        if indexing == "xy" and n >= 2 and i < 2:
            shape[0], shape[1] = shape[1], shape[0]
        outs.append(reshape(a, shape))
    if sparse:
        return tuple(outs)
    return broadcast_arrays(*outs)


# -- reductions -------------------------------------------------------------------------------------------
def _reduce(name, a, axis, keepdims):
    a = to_array(a, op=name)
    axes = _axes(name, a.ndim, axis)
    if not axes:
        return a if name not in ("all", "any") else astype(a, dt.bool_)
    return bind(name, a, axes=axes, keepdims=bool(keepdims))


def sum(a, axis=None, keepdims: bool = False, stream=None) -> array:  # noqa: A001
    """A sum-reduction over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The sums.
    """
    return _reduce("sum", a, axis, keepdims)


def prod(a, axis=None, keepdims: bool = False, stream=None) -> array:
    """A product-reduction over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The products.
    """
    return _reduce("prod", a, axis, keepdims)


def max(a, axis=None, keepdims: bool = False, stream=None) -> array:  # noqa: A001
    """A max-reduction over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The maxima.
    """
    return _reduce("max", a, axis, keepdims)


def min(a, axis=None, keepdims: bool = False, stream=None) -> array:  # noqa: A001
    """A min-reduction over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The minima.
    """
    return _reduce("min", a, axis, keepdims)


def all(a, axis=None, keepdims: bool = False, stream=None) -> array:  # noqa: A001
    """An and-reduction over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The bool result.
    """
    return _reduce("all", astype(to_array(a, op="all"), dt.bool_), axis, keepdims)


def any(a, axis=None, keepdims: bool = False, stream=None) -> array:  # noqa: A001
    """An or-reduction over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The bool result.
    """
    return _reduce("any", astype(to_array(a, op="any"), dt.bool_), axis, keepdims)


def _count(a, axes) -> int:
    n = 1
    for ax in axes:
        n *= a.shape[ax]
    return n


def _divide_by_count(total, a, axes, ddof: int = 0):
    """total / (elements over axes - ddof); under a shapeless trace the count is read at run time."""
    if axes and _tracing_shapeless():
        n = bind("number_of_elements", a, axes=axes, inverted=False, dtype=total.dtype)
        return divide(total, maximum(subtract(n, ddof), 0) if ddof else n)
    return divide(total, builtins.max(_count(a, axes) - ddof, 0))


def mean(a, axis=None, keepdims: bool = False, stream=None) -> array:
    """The mean over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The means.
    """
    a = to_array(a, op="mean")
    axes = _axes("mean", a.ndim, axis)
    total = sum(a, axes, keepdims)
    if not dt.is_floating(a.dtype):
        total = astype(total, dt.float32)  # as MLX: integers sum exactly in their own type, then convert
    return _divide_by_count(total, a, axes)


def var(a, axis=None, keepdims: bool = False, ddof: int = 0, *, correction=None, stream=None) -> array:
    """The variance over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.
        ddof (int, optional): Subtracted from the element count in the divisor. Default: ``0``.
        correction (int, optional): The array API's name for ``ddof``; used when given.

    Returns:
        array: The variances.
    """
    if correction is not None:
        ddof = correction
    a = to_array(a, op="var")
    axes = _axes("var", a.ndim, axis)
    if not dt.is_floating(a.dtype):
        a = astype(a, dt.float32)
    mu = mean(a, axes, keepdims=True)
    d = subtract(a, mu)
    if a.dtype == dt.complex64:
        # |d|^2, a real (float32) variance as in MLX and numpy
        squares = add(square(bind("real", d)), square(bind("imag", d)))
    else:
        squares = multiply(d, d)
    return _divide_by_count(sum(squares, axes, keepdims), a, axes, ddof)


def std(a, axis=None, keepdims: bool = False, ddof: int = 0, *, correction=None, stream=None) -> array:
    """The standard deviation over the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.
        ddof (int, optional): Subtracted from the element count in the divisor. Default: ``0``.
        correction (int, optional): The array API's name for ``ddof``; used when given.

    Returns:
        array: The standard deviations.
    """
    return sqrt(var(a, axis, keepdims, ddof, correction=correction))


def logsumexp(a, axis=None, keepdims: bool = False, stream=None) -> array:
    """``log(sum(exp(a), axis))``, computed without overflow.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The result.
    """
    a = _float_input("logsumexp", a)
    axes = _axes("logsumexp", a.ndim, axis)
    if a.size == 0:
        raise ValueError("[logsumexp] Received empty array.")
    m = stop_gradient(max(a, axes, keepdims=True))
    m = where(isinf(m), zeros_like(m), m)
    out = add(log(sum(exp(subtract(a, m)), axes, keepdims=True)), m)
    return out if keepdims else squeeze(out, axes)


def softmax(a, axis=None, precise: bool = False, stream=None) -> array:
    """``exp(a) / sum(exp(a))`` over the given axes, computed stably.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axes to normalise over; all axes by default.
        precise (bool, optional): Accumulate half-precision inputs in float32. Default: ``False``.

    Returns:
        array: The softmax.
    """
    a = _float_input("softmax", a)
    axes = _axes("softmax", a.ndim, axis)
    out_dtype = a.dtype
    if precise and a.dtype in (dt.float16, dt.bfloat16):
        a = astype(a, dt.float32)  # as MLX: the whole softmax in float32, rounded once at the end
    m = stop_gradient(max(a, axes, keepdims=True))
    e = exp(subtract(a, m))
    return astype(divide(e, sum(e, axes, keepdims=True)), out_dtype)


def _arg_reduce(name, a, axis, keepdims):
    a = to_array(a, op=name)
    if axis is None:
        # over the flattened array; keepdims keeps every axis as size 1, as in MLX
        out = bind(name, reshape(a, (-1,)), axes=(0,), keepdims=False)
        return reshape(out, (1,) * a.ndim) if keepdims else out
    ax = _axis(name, a.ndim, axis)
    return bind(name, a, axes=(ax,), keepdims=bool(keepdims))


def argmax(a, axis=None, keepdims: bool = False, stream=None) -> array:
    """Indices of the maximum values along an axis (the first one on ties).

    Args:
        a (array): Input array.
        axis (int, optional): Axis to reduce over; the flattened array by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: uint32 indices.
    """
    return _arg_reduce("argmax", a, axis, keepdims)


def argmin(a, axis=None, keepdims: bool = False, stream=None) -> array:
    """Indices of the minimum values along an axis (the first one on ties).

    Args:
        a (array): Input array.
        axis (int, optional): Axis to reduce over; the flattened array by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: uint32 indices.
    """
    return _arg_reduce("argmin", a, axis, keepdims)


def _scan(name, a, axis, reverse, inclusive):
    a = to_array(a, op=name)
    if axis is None:
        a = reshape(a, (-1,))
        axis = 0
    ax = _axis(name, a.ndim, axis)
    return bind(name, a, axis=ax, reverse=bool(reverse), inclusive=bool(inclusive))


def cumsum(a, axis=None, reverse: bool = False, inclusive: bool = True, dtype=None, stream=None) -> array:
    """Cumulative sum along an axis.

    Args:
        a (array): Input array.
        axis (int, optional): Axis of the scan; the flattened array by default.
        reverse (bool, optional): Scan from the end. Default: ``False``.
        inclusive (bool, optional): Include each element in its own result. Default: ``True``.
        dtype (Dtype, optional): Accumulate (and return) in this type. Default: ``a``'s.

    Returns:
        array: The running sum.
    """
    x = a if dtype is None else astype(to_array(a, op="cumsum"), dtype)
    return _scan("cumsum", x, axis, reverse, inclusive)


def cumprod(a, axis=None, reverse: bool = False, inclusive: bool = True, dtype=None, stream=None) -> array:
    """Cumulative product along an axis.

    Args:
        a (array): Input array.
        axis (int, optional): Axis of the scan; the flattened array by default.
        reverse (bool, optional): Scan from the end. Default: ``False``.
        inclusive (bool, optional): Include each element in its own result. Default: ``True``.
        dtype (Dtype, optional): Accumulate (and return) in this type. Default: ``a``'s.

    Returns:
        array: The running product.
    """
    x = a if dtype is None else astype(to_array(a, op="cumprod"), dtype)
    return _scan("cumprod", x, axis, reverse, inclusive)


def cummax(a, axis=None, reverse: bool = False, inclusive: bool = True, stream=None) -> array:
    """Cumulative maximum along an axis.

    Args:
        a (array): Input array.
        axis (int, optional): Axis of the scan; the flattened array by default.
        reverse (bool, optional): Scan from the end. Default: ``False``.
        inclusive (bool, optional): Include each element in its own result. Default: ``True``.

    Returns:
        array: The running maximum.
    """
    return _scan("cummax", a, axis, reverse, inclusive)


def cummin(a, axis=None, reverse: bool = False, inclusive: bool = True, stream=None) -> array:
    """Cumulative minimum along an axis.

    Args:
        a (array): Input array.
        axis (int, optional): Axis of the scan; the flattened array by default.
        reverse (bool, optional): Scan from the end. Default: ``False``.
        inclusive (bool, optional): Include each element in its own result. Default: ``True``.

    Returns:
        array: The running minimum.
    """
    return _scan("cummin", a, axis, reverse, inclusive)


# -- shape --------------------------------------------------------------------------------------------
def reshape(a, shape, stream=None) -> array:
    """Give an array a new shape with the same elements (one dimension may be ``-1``).

    Args:
        a (array): Input array.
        shape (tuple(int)): The new shape.

    Returns:
        array: The reshaped array.
    """
    a = to_array(a, op="reshape")
    shape = _dims_arg("reshape", shape)
    # A reshape to the same shape is a no-op, except in a shapeless trace, where it must replay later.
    # Without a -1 the target is `shape` itself (an invalid one fails in the primitive's rule, which
    # resolves it with the same function and errors).
    target = _resolve_reshape(a.shape, shape) if -1 in shape else shape
    if target == a.shape and not _tracing_shapeless():
        return a
    return bind("reshape", a, shape=shape)


def flatten(a, start_axis: int = 0, end_axis: int = -1, stream=None) -> array:
    """Flatten the axes from ``start_axis`` to ``end_axis`` (both included) into one.

    Args:
        a (array): Input array.
        start_axis (int, optional): First axis to flatten. Default: ``0``.
        end_axis (int, optional): Last axis to flatten. Default: ``-1``.

    Returns:
        array: The flattened array.
    """
    a = to_array(a, op="flatten")
    return bind("flatten", a, start_axis=int(start_axis), end_axis=int(end_axis))


def unflatten(a, axis: int, shape, stream=None) -> array:
    """Split one axis into several.

    Args:
        a (array): Input array.
        axis (int): The axis to split.
        shape (tuple(int)): Its new shape (one entry may be -1).

    Returns:
        array: The unflattened array.
    """
    a = to_array(a, op="unflatten")
    ax = _axis("unflatten", a.ndim, axis)
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError("[unflatten] Shape to unflatten to cannot be empty.")
    new = a.shape[:ax] + shape + a.shape[ax + 1:]
    return reshape(a, new)


def squeeze(a, axis=None, stream=None) -> array:
    """Remove size-1 dimensions.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axes to remove; every size-1 axis by default.

    Returns:
        array: The squeezed array.
    """
    a = to_array(a, op="squeeze")
    if axis is None:
        _note_rank_decision()
        axes = tuple(i for i, s in enumerate(a.shape) if s == 1)
    else:
        axes = _axes("squeeze", a.ndim, axis)
    if not axes:
        return a
    return bind("squeeze", a, axes=axes)


def expand_dims(a, axis, stream=None) -> array:
    """Add size-1 dimensions at the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int)): Positions of the new axes in the output.

    Returns:
        array: The array with the new axes.
    """
    a = to_array(a, op="expand_dims")
    seq = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = a.ndim + len(seq)
    axes = []
    for ax in seq:
        if not -nd <= ax < nd:
            raise _AxisError(f"[expand_dims] Invalid axis {ax} for output with {nd} dimensions.")
        ax = ax + nd if ax < 0 else ax
        if ax in axes:
            raise ValueError("[expand_dims] Received duplicate axes.")
        axes.append(ax)
    return bind("expand_dims", a, axes=tuple(sorted(axes)))


def transpose(a, axes=None, stream=None) -> array:
    """Permute the axes of an array.

    Args:
        a (array): Input array.
        axes (list(int), optional): The permutation; the axes reversed by default.

    Returns:
        array: The transposed array.
    """
    a = to_array(a, op="transpose")
    if axes is None:
        # The reversed axes (`a.T`) are valid by construction; only the identity permutation skips the node.
        _note_rank_decision()
        ndim = len(a._shape)
        if ndim < 2:
            return a
        return bind("transpose", a, axes=tuple(range(ndim - 1, -1, -1)))
    axes = tuple(map(int, axes))
    ndim = len(a._shape)
    if len(axes) != ndim:
        raise ValueError(f"[transpose] Received {len(axes)} axes for array with {ndim} dimensions.")
    _note_rank_decision()
    norm = tuple(x + ndim if x < 0 else x for x in axes)
    identity = tuple(range(ndim))
    if sorted(norm) != list(identity):
        for x in axes:
            _axis("transpose", ndim, x)  # an axis out of range raises its own error first
        raise ValueError(f"[transpose] Repeated axes in permutation {axes}.")
    if norm == identity:
        return a
    return bind("transpose", a, axes=norm)


def swapaxes(a, axis1: int, axis2: int, stream=None) -> array:
    """Swap two axes.

    Args:
        a (array): Input array.
        axis1 (int): First axis.
        axis2 (int): Second axis.

    Returns:
        array: The array with the axes swapped.
    """
    a = to_array(a, op="swapaxes")
    i, j = _axis("swapaxes", a.ndim, axis1), _axis("swapaxes", a.ndim, axis2)
    perm = list(range(a.ndim))
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def moveaxis(a, source: int, destination: int, stream=None) -> array:
    """Move an axis to a new position.

    Args:
        a (array): Input array.
        source (int): The axis to move.
        destination (int): Its new position.

    Returns:
        array: The array with the axis moved.
    """
    a = to_array(a, op="moveaxis")
    s, d = _axis("moveaxis", a.ndim, source), _axis("moveaxis", a.ndim, destination)
    perm = [i for i in range(a.ndim) if i != s]
    perm.insert(d, s)
    return transpose(a, perm)


def broadcast_to(a, shape, stream=None) -> array:
    """Broadcast an array to a shape.

    Args:
        a (array or scalar): Input array.
        shape (list(int)): The shape to broadcast to.

    Returns:
        array: The broadcast array.
    """
    a = to_array(a, op="broadcast_to")
    shape = _shape_arg("broadcast_to", shape)
    if a.shape == shape:
        _note_rank_decision()
        return a
    return bind("broadcast_to", a, shape=shape)


def broadcast_shapes(*shapes) -> tuple:
    """The shape that the given shapes broadcast to.

    Args:
        *shapes (tuple(int)): Input shapes.

    Returns:
        tuple(int): The broadcast shape.
    """
    if not shapes:
        raise ValueError("[broadcast_shapes] Must provide at least one shape.")
    return _broadcast_shapes(*(tuple(s) for s in shapes), op="broadcast_shapes")


def broadcast_arrays(*arrays, stream=None) -> tuple:
    """Broadcast arrays against each other.

    Args:
        *arrays (array): Input arrays.

    Returns:
        tuple(array): The arrays, all of the broadcast shape.
    """
    arrs = [to_array(a, op="broadcast_arrays") for a in arrays]
    shape = _broadcast_shapes(*(a.shape for a in arrs), op="broadcast_arrays")
    return tuple(broadcast_to(a, shape) for a in arrs)


def atleast_1d(*arys):
    """Arrays with at least one dimension (0-d arrays become shape ``(1,)``).

    Args:
        *arys (array): Input arrays.

    Returns:
        array or list(array): One array for one input, else a list.
    """
    outs = [reshape(to_array(a, op="atleast_1d"), (1,)) if to_array(a, op="atleast_1d").ndim == 0 else to_array(a, op="atleast_1d") for a in arys]
    return outs[0] if len(outs) == 1 else outs


def atleast_2d(*arys):
    """Arrays with at least two dimensions: 0-d -> ``(1, 1)``, ``(n,)`` -> ``(1, n)``.

    Args:
        *arys (array): Input arrays.

    Returns:
        array or list(array): One array for one input, else a list.
    """
    outs = []
    for a in arys:
        a = to_array(a, op="atleast_2d")
        outs.append(reshape(a, (1,) * (2 - a.ndim) + a.shape) if a.ndim < 2 else a)
    return outs[0] if len(outs) == 1 else outs


def atleast_3d(*arys):
    """Arrays with at least three dimensions: 0-d -> (1, 1, 1), (n,) -> (1, n, 1), (m, n) -> (m, n, 1).

    Args:
        *arys (array): Input arrays.

    Returns:
        array or list(array): One array for one input, else a list.
    """
    outs = []
    for a in arys:
        a = to_array(a, op="atleast_3d")
        if a.ndim == 0:
            a = reshape(a, (1, 1, 1))
        elif a.ndim == 1:
            a = reshape(a, (1, a.shape[0], 1))
        elif a.ndim == 2:
            a = expand_dims(a, 2)
        outs.append(a)
    return outs[0] if len(outs) == 1 else outs


def concatenate(arrays, axis: int | None = 0, stream=None) -> array:
    """Join arrays along an existing axis.

    Args:
        arrays (list(array)): Input arrays.
        axis (int, optional): Axis to join along; ``None`` flattens the inputs first. Default: ``0``.

    Returns:
        array: The concatenated array.
    """
    arrs = list(arrays)
    if not arrs:
        raise ValueError("[concatenate] No arrays provided for concatenation.")
    if axis is None:
        arrs = [reshape(to_array(a, op="concatenate"), (-1,)) for a in arrs]
        axis = 0
    arrs = _promote("concatenate", *arrs)
    ax = _axis("concatenate", arrs[0].ndim, axis)
    if builtins.all(x.ndim == arrs[0].ndim for x in arrs):
        dt.check_dim(builtins.sum(x.shape[ax] for x in arrs), "concatenate")
    if len(arrs) == 1:
        return arrs[0]
    return bind("concatenate", *arrs, axis=ax)


def concat(arrays, axis: int | None = 0, stream=None) -> array:
    """Join arrays along an existing axis (alias of :func:`concatenate`).

    Args:
        arrays (list(array)): Input arrays.
        axis (int, optional): Axis to join along; ``None`` flattens the inputs first. Default: ``0``.

    Returns:
        array: The concatenated array.
    """
    return concatenate(arrays, axis)


def stack(arrays, axis: int = 0, stream=None) -> array:
    """Join arrays along a new axis.

    Args:
        arrays (list(array)): Input arrays, all of one shape.
        axis (int, optional): Position of the new axis in the output. Default: ``0``.

    Returns:
        array: The stacked array.
    """
    arrs = [to_array(a, op="stack") for a in arrays]
    if not arrs:
        raise ValueError("[stack] No arrays provided for stacking.")
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError("[stack] All arrays must have the same shape.")
    _axis("stack", arrs[0].ndim + 1, axis)
    return concatenate([expand_dims(a, axis) for a in arrs], axis)


def slice_update(a, update, start, stop, strides) -> array:
    """a with a[start:stop:strides] replaced by update (all static, normalised).

    Args:
        a (array): Input array.
        update (array): The new values.
        start (tuple(int)): Start per axis.
        stop (tuple(int)): Stop per axis.
        strides (tuple(int)): Step per axis.

    Returns:
        array: The updated copy.
    """
    a = to_array(a, op="slice_update")
    u = astype(to_array(update, op="slice_update"), a.dtype)
    return bind("slice_update", a, u, start=tuple(start), stop=tuple(stop), strides=tuple(strides))


def _slice(a, start, stop, strides) -> array:
    return bind("slice", a, start=tuple(start), stop=tuple(stop), strides=tuple(strides))


def split(a, indices_or_sections, axis: int = 0, stream=None) -> list:
    """Split an array along an axis.

    Args:
        a (array): Input array.
        indices_or_sections (int or list(int)): A number of equal parts, or the indices to split at.
        axis (int, optional): Axis to split along. Default: ``0``.

    Returns:
        list(array): The parts.
    """
    a = to_array(a, op="split")
    ax = _axis("split", a.ndim, axis)
    n = a.shape[ax]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k != 0:
            raise ValueError(f"[split] Array split does not result in sub arrays with equal size: {n} into {k}.")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        # indices are positions along the axis; negative ones count from the end, like Python slices
        bounds = [0] + [int(i) + n if int(i) < 0 else int(i) for i in indices_or_sections] + [n]
    outs = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        lo_c, hi_c = builtins.min(builtins.max(lo, 0), n), builtins.min(builtins.max(hi, 0), n)
        start = [0] * a.ndim
        stop = list(a.shape)
        start[ax], stop[ax] = lo_c, builtins.max(hi_c, lo_c)
        outs.append(_slice(a, start, stop, [1] * a.ndim))
    return outs


def _pad_widths(pad_width, ndim: int) -> tuple:
    """MLX's pad_width forms (n, (n,), (lo, hi), [(lo, hi), ...]) as one (lo, hi) pair per axis."""
    if isinstance(pad_width, (int, np.integer)):
        return ((int(pad_width), int(pad_width)),) * ndim
    pw = list(pad_width)
    if pw and builtins.all(isinstance(v, (int, np.integer)) for v in pw) and len(pw) <= 2:
        return ((int(pw[0]), int(pw[-1])),) * ndim
    pairs = [tuple(p) if isinstance(p, (tuple, list)) else (p,) for p in pw]
    if builtins.any(len(p) not in (1, 2) for p in pairs):
        raise ValueError(f"[pad] Invalid pad_width {pad_width!r}: expected (before, after) pairs.")
    pairs = [(int(p[0]), int(p[-1])) for p in pairs]
    if len(pairs) == 1:
        pairs = pairs * ndim
    if len(pairs) != ndim:
        raise ValueError(f"[pad] Got {len(pairs)} (before, after) pairs for an array with {ndim} dimensions.")
    return tuple(pairs)


def _axis_slice(a, axis: int, start: int, stop: int, step: int = 1) -> array:
    begin, end, strides = [0] * a.ndim, list(a.shape), [1] * a.ndim
    begin[axis], end[axis], strides[axis] = start, stop, step
    return _slice(a, begin, end, strides)


def _pad_axis_periodic(a, axis: int, lo: int, hi: int, mode: str) -> array:
    """Pad one axis by mirroring: the padded axis is a window of the periodic sequence a, reversed(a), a, ..."""
    n = a.shape[axis]
    if n == 0:
        raise ValueError(f"[pad] Cannot pad an empty axis in {mode!r} mode.")
    if mode == "edge" or (mode == "reflect" and n == 1):
        first = broadcast_to(_axis_slice(a, axis, 0, 1), a.shape[:axis] + (lo,) + a.shape[axis + 1:])
        last = broadcast_to(_axis_slice(a, axis, n - 1, n), a.shape[:axis] + (hi,) + a.shape[axis + 1:])
        return concatenate([first, a, last], axis)
    if mode == "reflect":  # mirror without repeating the edge: period 2n - 2
        block = concatenate([a, _axis_slice(a, axis, n - 2, 0, -1)], axis)
    else:  # symmetric: mirror repeating the edge, period 2n
        block = concatenate([a, _axis_slice(a, axis, n - 1, -1, -1)], axis)
    period = block.shape[axis]
    start = (-lo) % period
    copies = -(-(start + lo + n + hi) // period)
    tiled = concatenate([block] * copies, axis)
    return _axis_slice(tiled, axis, start, start + lo + n + hi)


def pad(a, pad_width, mode: str = "constant", constant_values=0, stream=None) -> array:
    """Pad an array.

    Args:
        a (array): Input array.
        pad_width (int, tuple or list of tuples): ``n``, ``(n,)``, ``(before, after)`` for every axis, or one
          ``(before, after)`` pair per axis.
        mode (str): ``"constant"``, ``"edge"``, ``"reflect"`` (mirror, edge not repeated) or ``"symmetric"``
          (mirror, edge repeated).
        constant_values (scalar or array): The value padded in ``"constant"`` mode.

    Returns:
        array: The padded array.
    """
    a = to_array(a, op="pad")
    if mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError(f"[pad] Invalid padding mode ({mode}) passed to pad.")
    widths = _pad_widths(pad_width, a.ndim)
    if builtins.any(lo < 0 or hi < 0 for lo, hi in widths):
        raise ValueError(f"[pad] Invalid negative padding {widths}.")
    if mode != "constant":
        out = a
        for ax, (lo, hi) in enumerate(widths):
            if lo or hi:
                out = _pad_axis_periodic(out, ax, lo, hi, mode)
        return out
    if _is_scalar(constant_values):
        value = _scalar_array(constant_values, a.dtype, "pad")
    else:
        value = astype(to_array(constant_values, op="pad"), a.dtype)
    return bind("pad", a, value, widths=widths)


def repeat(a, repeats: int, axis: int | None = None, stream=None) -> array:
    """Repeat each element of an array.

    Args:
        a (array): Input array.
        repeats (int): How many times each element repeats.
        axis (int, optional): Axis to repeat along; the flattened array by default.

    Returns:
        array: The repeated array.
    """
    a = to_array(a, op="repeat")
    if axis is None:
        a = reshape(a, (-1,))
        axis = 0
    ax = _axis("repeat", a.ndim, axis)
    if repeats < 0:
        raise ValueError("[repeat] Number of repeats cannot be negative.")
    dt.check_dim(a.shape[ax] * repeats, "repeat")
    e = expand_dims(a, ax + 1)
    shape = list(e.shape)
    shape[ax + 1] = repeats
    e = broadcast_to(e, shape)
    new = list(a.shape)
    new[ax] *= repeats
    return reshape(e, new)


def tile(a, reps, stream=None) -> array:
    """Repeat the whole array along each axis.

    Args:
        a (array): Input array.
        reps (int or list(int)): Repetitions per axis.

    Returns:
        array: The tiled array.
    """
    a = to_array(a, op="tile")
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    if builtins.any(r < 0 for r in reps):
        raise ValueError(f"[tile] Negative repetitions {reps} are not allowed.")
    nd = builtins.max(a.ndim, len(reps))
    reps = (1,) * (nd - len(reps)) + reps
    a = reshape(a, (1,) * (nd - a.ndim) + a.shape)
    # interleave a size-`r` axis before each axis, broadcast, then merge
    e = reshape(a, tuple(v for s in a.shape for v in (1, s)))
    e = broadcast_to(e, tuple(v for r, s in zip(reps, a.shape) for v in (r, s)))
    return reshape(e, tuple(r * s for r, s in zip(reps, a.shape)))


def roll(a, shift, axis=None, stream=None) -> array:
    """Roll elements along axes (those pushed past the end come back at the start).

    Args:
        a (array): Input array.
        shift (int or tuple(int)): How far to roll.
        axis (int or tuple(int), optional): Axes to roll; the flattened array by default.

    Returns:
        array: The rolled array.
    """
    a = to_array(a, op="roll")
    if axis is None:
        flat = reshape(a, (-1,))
        return reshape(roll(flat, shift, 0), a.shape) if a.ndim else a
    shifts = (shift,) if isinstance(shift, (int, np.integer)) else tuple(shift)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    # shift and axis broadcast against each other, as in numpy: roll(a, (1, 2), axis=0) rolls axis 0 by 3
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    if len(axes) == 1:
        axes = axes * len(shifts)
    if len(shifts) != len(axes):
        raise ValueError(f"[roll] Got {len(shifts)} shifts and {len(axes)} axes; they must have the same number.")
    out = a
    for s, ax in zip(shifts, axes):
        ax = _axis("roll", a.ndim, ax)
        n = a.shape[ax]
        if n == 0:
            continue
        s = int(s) % n
        if s == 0:
            continue
        head, tail = split(out, [n - s], axis=ax)
        out = concatenate([tail, head], ax)
    return out


def take(a, indices, axis: int | None = None, stream=None) -> array:
    from .indexing import take as _take

    return _take(a, indices, axis)


def take_along_axis(a, indices, axis: int | None = None, stream=None) -> array:
    from .indexing import take_along_axis as _tal

    return _tal(a, indices, axis)


# -- comparison helpers ---------------------------------------------------------------------------------
def isclose(a, b, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False, stream=None) -> array:
    """Element-wise ``abs(a - b) <= atol + rtol * abs(b)`` (infinities equal only themselves).

    Args:
        a (array): Input array.
        b (array): Input array.
        rtol (float, optional): Relative tolerance. Default: ``1e-05``.
        atol (float, optional): Absolute tolerance. Default: ``1e-08``.
        equal_nan (bool, optional): Count NaNs as equal. Default: ``False``.

    Returns:
        array: The bool result, broadcast from ``a`` and ``b``.
    """
    a, b = to_array(a, op="isclose"), to_array(b, op="isclose")
    x, y = _promote("isclose", a, b)
    _broadcast_shapes(x.shape, y.shape, op="isclose")
    if not dt.is_floating(x.dtype):
        x, y = astype(x, dt.float32), astype(y, dt.float32)
    close = less_equal(abs(subtract(x, y)), add(atol, multiply(rtol, abs(y))))
    # an infinity is close only to the same infinity (inf - -inf would pass the tolerance test above)
    close = logical_and(close, logical_and(isfinite(x), isfinite(y)))
    close = logical_or(close, equal(x, y))
    if equal_nan:
        close = logical_or(close, logical_and(isnan(x), isnan(y)))
    return close


def allclose(a, b, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False, stream=None) -> array:
    """Whether two arrays are equal within a tolerance: ``all(abs(a - b) <= atol + rtol * abs(b))``.

    Args:
        a (array): Input array.
        b (array): Input array.
        rtol (float, optional): Relative tolerance. Default: ``1e-05``.
        atol (float, optional): Absolute tolerance. Default: ``1e-08``.
        equal_nan (bool, optional): Count NaNs as equal. Default: ``False``.

    Returns:
        array: A 0-d bool array.
    """
    return all(isclose(a, b, rtol, atol, equal_nan))


def array_equal(a, b, equal_nan: bool = False, stream=None) -> array:
    """Whether two arrays have the same shape and equal values (their dtypes may differ).

    Args:
        a (array): Input array.
        b (array): Input array.
        equal_nan (bool, optional): Count NaNs as equal. Default: ``False``.

    Returns:
        array: A 0-d bool array.
    """
    a, b = to_array(a, op="array_equal"), to_array(b, op="array_equal")
    if a.shape != b.shape:
        return array(False)
    x, y = _promote("array_equal", a, b)
    eq = equal(x, y)
    if equal_nan and dt.is_floating(x.dtype):
        eq = logical_or(eq, logical_and(isnan(x), isnan(y)))
    return all(eq)


def eval(*trees) -> None:  # noqa: A001
    """Evaluate every array in the given trees (lists, tuples, dicts, modules).

    Args:
        *trees (array or tree of arrays): Arrays, or lists, tuples and dicts holding them.

    Returns:
        None
    """
    leaves = []
    for t in trees:
        _array_leaves(t, leaves)
    _evaluate(leaves)


def _array_leaves(tree, out: list) -> None:
    """Append the arrays in a tree of lists, tuples and dicts to `out` (no paths: eval runs every step)."""
    if isinstance(tree, array):
        out.append(tree)
    elif isinstance(tree, (list, tuple)):
        for child in tree:
            _array_leaves(child, out)
    elif isinstance(tree, dict):
        for child in tree.values():
            _array_leaves(child, out)


def async_eval(*trees) -> None:
    """Start evaluating the arrays in the given trees. kiln evaluates them now; as in MLX, an operation's
    failure is reported when the arrays are evaluated (``eval``, ``.item()``), not here: they stay unevaluated.

    Args:
        *trees (array or tree of arrays): Arrays, or lists, tuples and dicts holding them.

    Returns:
        None
    """
    from .array import PlaceholderError

    try:
        eval(*trees)
    except PlaceholderError:
        raise  # evaluating inside a trace is a usage error, reported at once
    except ValueError:
        pass

# -- linear algebra ---------------------------------------------------------------------------------
def _dtype_name(v) -> str:
    return v.dtype.name if isinstance(v, array) else type(v).__name__


def matmul(a, b, stream=None) -> array:
    """Matrix product with numpy semantics (1-D operands gain and then lose an axis).

    Args:
        a (array): Input array.
        b (array): Input array.

    Returns:
        array: The matrix product.
    """
    x, y = _promote("matmul", a, b)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("[matmul] Got 0 dimension input. Inputs must have at least one dimension.")
    if not dt.is_floating(x.dtype):
        names = f"{_dtype_name(a)} and {_dtype_name(b)}"
        raise ValueError(f"[matmul] Only inexact types are supported but {names} were provided which results in "
                         f"{x.dtype.name}, which is not a floating point type.")
    x1, y1 = x.ndim == 1, y.ndim == 1
    if x1:
        x = expand_dims(x, 0)
    if y1:
        y = expand_dims(y, 1)
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(
            f"[matmul] Last dimension of first input with shape {a.shape if isinstance(a, array) else x.shape} "
            f"must match second to last dimension of second input with shape "
            f"{b.shape if isinstance(b, array) else y.shape}.")
    out = bind("matmul", x, y)
    if x1 and y1:
        return squeeze(out, (-2, -1))
    if x1:
        return squeeze(out, -2)
    if y1:
        return squeeze(out, -1)
    return out
