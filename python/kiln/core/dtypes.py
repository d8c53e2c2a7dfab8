"""dtypes, dtype categories and MLX's type-promotion rules (Python scalars are weakly typed)."""

from __future__ import annotations

import enum

import ml_dtypes
import numpy as np


class DtypeCategory(enum.Enum):
    """MLX's abstract dtype categories, used with `issubdtype`."""

    complexfloating = "complexfloating"
    floating = "floating"
    inexact = "inexact"
    signedinteger = "signedinteger"
    unsignedinteger = "unsignedinteger"
    integer = "integer"
    number = "number"
    generic = "generic"

    def __repr__(self) -> str:
        return f"DtypeCategory.{self.value}"

    __str__ = __repr__


_BY_NAME: dict = {}


class Dtype:
    """An array element type. Compare with `==`; `size` is bytes per element.

    There is one object per dtype (pickling and copying return it), so equality and hashing are
    identity's, which C does without a Python call: dtype comparisons sit on every op's hot path.
    """

    __slots__ = ("name", "np", "size", "category", "short")

    def __init__(self, name: str, np_dtype, category: DtypeCategory, short: str):
        if name in _BY_NAME:
            raise ValueError(f"dtype {name!r} exists already: use kiln.core.{name}")
        _BY_NAME[name] = self
        self.name = name
        self.np = np.dtype(np_dtype)
        self.size = self.np.itemsize
        self.category = category
        self.short = short  # the IR's spelling: f32, i64, bf16, ...

    def __repr__(self) -> str:
        # MLX's spelling, so code and tests that print or compare dtype names read the same under kiln.
        return f"mlx.core.{self.name}"

    __str__ = __repr__

    def __reduce__(self):
        return (from_name, (self.name,))


_C = DtypeCategory
bool_ = Dtype("bool", np.bool_, _C.generic, "bool")
uint8 = Dtype("uint8", np.uint8, _C.unsignedinteger, "u8")
uint16 = Dtype("uint16", np.uint16, _C.unsignedinteger, "u16")
uint32 = Dtype("uint32", np.uint32, _C.unsignedinteger, "u32")
uint64 = Dtype("uint64", np.uint64, _C.unsignedinteger, "u64")
int8 = Dtype("int8", np.int8, _C.signedinteger, "i8")
int16 = Dtype("int16", np.int16, _C.signedinteger, "i16")
int32 = Dtype("int32", np.int32, _C.signedinteger, "i32")
int64 = Dtype("int64", np.int64, _C.signedinteger, "i64")
float16 = Dtype("float16", np.float16, _C.floating, "f16")
bfloat16 = Dtype("bfloat16", ml_dtypes.bfloat16, _C.floating, "bf16")
float32 = Dtype("float32", np.float32, _C.floating, "f32")
float64 = Dtype("float64", np.float64, _C.floating, "f64")
complex64 = Dtype("complex64", np.complex64, _C.complexfloating, "c64")

ALL = (bool_, uint8, uint16, uint32, uint64, int8, int16, int32, int64,
       float16, bfloat16, float32, float64, complex64)
_BY_NP = {d.np: d for d in ALL}

complexfloating = _C.complexfloating
floating = _C.floating
inexact = _C.inexact
signedinteger = _C.signedinteger
unsignedinteger = _C.unsignedinteger
integer = _C.integer
number = _C.number
generic = _C.generic

# Which categories each category belongs to (MLX's lattice).
_PARENTS = {
    _C.complexfloating: {_C.complexfloating, _C.inexact, _C.number, _C.generic},
    _C.floating: {_C.floating, _C.inexact, _C.number, _C.generic},
    _C.inexact: {_C.inexact, _C.number, _C.generic},
    _C.signedinteger: {_C.signedinteger, _C.integer, _C.number, _C.generic},
    _C.unsignedinteger: {_C.unsignedinteger, _C.integer, _C.number, _C.generic},
    _C.integer: {_C.integer, _C.number, _C.generic},
    _C.number: {_C.number, _C.generic},
    _C.generic: {_C.generic},
}


def from_name(name: str) -> Dtype:
    return _BY_NAME[name]


def from_numpy(np_dtype) -> Dtype:
    """The kiln dtype of a numpy dtype; float64 stays float64, other unknowns raise."""
    nd = np.dtype(np_dtype)
    if nd in _BY_NP:
        return _BY_NP[nd]
    if nd == np.complex128:
        return complex64
    raise ValueError(f"[array] Unsupported numpy dtype {nd}.")


def issubdtype(a, b) -> bool:
    """True if `a` (a Dtype or category) is `b` or belongs to category `b`.

    Args:
        a (Dtype or DtypeCategory): The dtype to test.
        b (Dtype or DtypeCategory): The dtype or category to test against.

    Returns:
        bool: The answer.
    """
    if isinstance(a, Dtype) and isinstance(b, Dtype):
        return a == b
    if isinstance(a, Dtype) and isinstance(b, DtypeCategory):
        return b in _PARENTS[a.category]
    if isinstance(a, DtypeCategory) and isinstance(b, DtypeCategory):
        return b in _PARENTS[a]
    if isinstance(a, DtypeCategory) and isinstance(b, Dtype):
        return False
    # As in MLX: None is refused as an argument type, anything else (a name, a numpy type) as an input.
    if a is None or b is None:
        raise TypeError(f"[issubdtype] Expected a Dtype or DtypeCategory, got {a!r} and {b!r}.")
    which = "first" if not isinstance(a, (Dtype, DtypeCategory)) else "second"
    raise ValueError(f"[issubdtype] Received invalid type for {which} input.")


# Asked once per op: constant tuples (found by identity) spare the enum attribute lookups.
_FLOATING_CATEGORIES = (_C.floating, _C.complexfloating)
_INTEGER_CATEGORIES = (_C.signedinteger, _C.unsignedinteger)


def is_floating(d: Dtype) -> bool:
    return d.category in _FLOATING_CATEGORIES


def is_integer(d: Dtype) -> bool:
    return d.category in _INTEGER_CATEGORIES


def is_unsigned(d: Dtype) -> bool:
    return d.category is _C.unsignedinteger


def _signed_of_size(size: int) -> Dtype:
    return {1: int8, 2: int16, 4: int32, 8: int64}[size]


def promote_types(a: Dtype, b: Dtype) -> Dtype:
    """MLX's promotion of two array dtypes."""
    if a == b:
        return a
    if a == bool_:
        return b
    if b == bool_:
        return a
    if a == complex64 or b == complex64:
        return complex64
    if is_floating(a) and is_floating(b):
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if a.size > b.size else b
    if is_floating(a):
        return a
    if is_floating(b):
        return b
    if is_unsigned(a) == is_unsigned(b):
        return a if a.size > b.size else b
    unsigned, signed = (a, b) if is_unsigned(a) else (b, a)
    if unsigned.size < signed.size:
        return signed
    if unsigned.size == 8:
        return float32  # no signed type holds every uint64 (MLX's rule)
    return _signed_of_size(unsigned.size * 2)


def result_type(*items) -> Dtype:
    """Promote arrays (strong) and Python scalars (weak), as MLX does."""
    array = _array_type()
    strong = [x.dtype for x in items if isinstance(x, array)]
    strong += [x for x in items if isinstance(x, Dtype)]
    weak = [x for x in items if isinstance(x, (bool, int, float, complex)) and not isinstance(x, Dtype)]
    if not strong and not weak:
        return None
    if not strong:
        # Only Python scalars: each acts as the array it would make (2**40 -> int64), as in MLX.
        strong = [scalar_dtype(w) for w in weak]
    out = strong[0]
    for d in strong[1:]:
        out = promote_types(out, d)
    for w in weak:
        out = _promote_weak(out, w)
    return out


_ARRAY_TYPE = []


def _array_type():
    # array.py imports this module, so the array type is looked up on first use (once, not per call).
    if not _ARRAY_TYPE:
        from .array import array

        _ARRAY_TYPE.append(array)
    return _ARRAY_TYPE[0]


def _promote_weak(d: Dtype, scalar) -> Dtype:
    """The dtype of `d` combined with a weakly typed Python scalar: the array's dtype wins within a kind."""
    if isinstance(scalar, complex):
        return complex64
    if isinstance(scalar, bool):
        return d
    if isinstance(scalar, int):
        return int32 if d == bool_ else d
    return d if is_floating(d) else float32


# _promote_weak depends on the scalar's type only, never its value: one table lookup for the op fast paths.
_WEAK_RESULT = {(d, t): _promote_weak(d, t(0)) for d in ALL for t in (bool, int, float, complex)}


def weak_result(d: Dtype, scalar_type: type) -> Dtype:
    """`result_type(array of d, scalar)` for a scalar of exactly `scalar_type` (bool, int, float, complex)."""
    return _WEAK_RESULT[d, scalar_type]


# Shape dimensions are int32, as in MLX.
INT32_RANGE = (-(1 << 31), (1 << 31) - 1)


def check_dim(n: int, op: str | None = None) -> int:
    """A shape dimension, given or computed, must fit in int32: else MLX's OverflowError (its words, with
    `[op] ` in front when an op is named)."""
    if not INT32_RANGE[0] <= n <= INT32_RANGE[1]:
        prefix = f"[{op}] " if op else ""
        raise OverflowError(f"{prefix}Shape dimension {n} is outside the supported range [-2147483648, "
                            "2147483647]. MLX currently uses 32-bit integers for shape dimensions.")
    return n


def scalar_dtype(value) -> Dtype:
    """The dtype `mx.array(value)` gets for a Python scalar."""
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return int32 if -(2**31) <= value < 2**31 else int64
    if isinstance(value, float):
        return float32
    if isinstance(value, complex):
        return complex64
    raise TypeError(f"not a scalar: {value!r}")


def dtype_arg(d, op: str, default=None) -> Dtype:
    """The `dtype=` argument of a public op, checked as MLX checks it: a kiln Dtype, or None for `default`.

    A dtype name ("float32"), a Python type (float) or a numpy dtype is a TypeError, as in MLX, so code
    that runs on kiln also runs on MLX.
    """
    if isinstance(d, Dtype):
        return d
    if d is None and default is not None:
        return default
    raise TypeError(f"[{op}] dtype must be a Dtype such as mx.float32, got {d!r} ({type(d).__name__}).")


def finfo_max(d: Dtype) -> float:
    return float(ml_dtypes.finfo(d.np).max)
