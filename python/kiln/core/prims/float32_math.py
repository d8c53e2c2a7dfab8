"""float32 functions computed step by step as MLX's CPU build computes them, so the interpreter gives MLX's bits.

`fma32` is C's `fmaf` (one rounding) in numpy; `logf` is the C library's own `logf`, called through ctypes,
because that is the function MLX's CPU kernels call (`std::log` on a float) and glibc's `logf` is not
correctly rounded (about 0.7% of its results differ from the correctly rounded ones in the last bit).
`erfinv32` is MLX's float32 erfinv built from the two.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

_LOGF = []


def fma32(a, b, c) -> np.ndarray:
    """float32 ``a * b + c`` rounded once, like C's ``fmaf``.

    The product of two float32 values is exact in float64; the float64 sum rounds, and rounding that again to
    float32 can differ from one rounding only when the sum lands exactly halfway between two float32 values
    while the exact sum does not: there the sum's rounding error (two-sum, exact) picks the side.
    """
    with np.errstate(all="ignore"):  # NaN and infinite operands pass through
        a64 = np.asarray(a, np.float32).astype(np.float64)
        b64 = np.asarray(b, np.float32).astype(np.float64)
        c64 = np.asarray(c, np.float32).astype(np.float64)
        product = a64 * b64
        total = product + c64
        back = total - product
        error = (product - (total - back)) + (c64 - back)
        rounded = total.astype(np.float32)
        # The float32 neighbour of `rounded` on total's side, and the midpoint between the two.
        side = np.where(total > rounded, np.float32(np.inf), np.float32(-np.inf))
        neighbour = np.nextafter(rounded, side)
        halfway = total == (rounded.astype(np.float64) + neighbour.astype(np.float64)) / 2
        ambiguous = halfway & (error != 0) & np.isfinite(error)
        if not ambiguous.any():
            return rounded
        nudged = np.nextafter(total, np.where(error > 0, np.inf, -np.inf)).astype(np.float32)
    return np.where(ambiguous, nudged, rounded)


def _c_logf():
    """The C library's logf as a function of one Python float, or None where there is no C library to ask."""
    if not _LOGF:
        function = None
        try:
            libm = ctypes.CDLL(ctypes.util.find_library("m") or None)
            function = libm.logf
            function.restype = ctypes.c_float
            function.argtypes = (ctypes.c_float,)
        except (OSError, AttributeError):
            function = None
        _LOGF.append(function)
    return _LOGF[0]


def logf(x) -> np.ndarray:
    """float32 natural logarithm by the C library's ``logf``, element by element.

    Without a loadable C math library: the correctly rounded float32 logarithm (float64, rounded once), which
    differs from glibc's in the last bit for about 0.7% of inputs.
    """
    x = np.asarray(x, np.float32)
    function = _c_logf()
    if function is None:
        with np.errstate(all="ignore"):
            return np.log(x.astype(np.float64)).astype(np.float32)
    values = np.fromiter(map(function, x.ravel().tolist()), np.float32, count=x.size)
    return values.reshape(x.shape)


# MLX's float32 erfinv (mlx/backend/cpu/simd/math.h): with t = log(1 - x^2), x times a polynomial in t, one
# for |t| > 6.125 (|x| > 0.9978) and one below. Coefficients highest degree first, as hexadecimal floats.
_TAIL = tuple(float.fromhex(h) for h in (
    "0x1.4deb44p-32", "0x1.f7c9aep-26", "0x1.47e512p-20", "0x1.dca7dep-16", "0x1.9cab92p-12",
    "0x1.8cc0dep-9", "0x1.3ca920p-8", "-0x1.0eff66p-2", "0x1.ae16a4p-1",
))
_CENTRE = tuple(float.fromhex(h) for h in (
    "0x1.75c000p-28", "0x1.33b402p-23", "0x1.499232p-20", "0x1.e52cd2p-24", "-0x1.d70bd0p-15",
    "-0x1.35be90p-13", "0x1.2f6400p-9", "0x1.7a1e50p-7", "-0x1.db2aeep-3", "0x1.c5bf88p-1",
))
_TAIL_FROM = np.float32(6.125)


def _horner32(coefficients, t: np.ndarray) -> np.ndarray:
    p = np.full(t.shape, coefficients[0], np.float32)
    for c in coefficients[1:]:
        p = fma32(p, t, np.float32(c))
    return p


def erfinv32(x) -> np.ndarray:
    """float32 erfinv, MLX's CPU algorithm with each step rounded as there (within 3 ULP of the true value).

    Args:
        x (numpy.ndarray): float32 values.

    Returns:
        numpy.ndarray: float32: erfinv(x); +-inf at +-1, NaN beyond.
    """
    x = np.asarray(x, np.float32)
    one = np.float32(1.0)
    t = logf(fma32(x, -x, one))  # 1 - x^2 rounded once: exact near |x| = 1, where it matters
    with np.errstate(all="ignore"):
        tail = np.abs(t) > _TAIL_FROM
        p = np.empty_like(t)
        p[tail] = _horner32(_TAIL, t[tail])
        p[~tail] = _horner32(_CENTRE, t[~tail])
        return x * p
