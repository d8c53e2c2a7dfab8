"""MLX's text form of arrays (`repr`/`str`) and its print options (`set_printoptions`, `printoptions`)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PrintOptions", "get_printoptions", "set_printoptions", "printoptions"]

_EDGE = 3  # a dimension longer than 2 * _EDGE shows its first and last _EDGE entries around "..."
_INDENT = len("array(")


class PrintOptions:
    """Array printing options. ``precision == -1`` means C's ``%g`` (6 significant digits)."""

    def __init__(self, precision: int = -1):
        self.precision = precision


_options = PrintOptions()


def get_printoptions() -> PrintOptions:
    """Get global printing precision for array formatting.

    Returns:
        PrintOptions: The format options used for printing arrays.
    """
    return PrintOptions(_options.precision)


def set_printoptions(precision: int = -1) -> None:
    """Set global printing precision for array formatting.

    Args:
        precision (int): Number of decimal places, or -1 for the default (6 significant digits).

    Returns:
        None
    """
    if isinstance(precision, bool) or not isinstance(precision, int):
        raise TypeError(f"[set_printoptions] precision must be an int, got {type(precision).__name__}.")
    _options.precision = precision


class printoptions:
    """Context manager for setting print options temporarily.

    Args:
        precision (int): Number of decimal places. Use -1 for default.
    """

    def __init__(self, precision: int = -1):
        self._precision = precision
        self._saved = None

    def __enter__(self):
        self._saved = _options.precision
        set_printoptions(self._precision)
        return self

    def __exit__(self, *exc):
        _options.precision = self._saved
        return False


def _format_real(x: float, precision: int) -> str:
    # C++ streams print a NaN's sign bit ("-nan"); Python's %-formatting drops it.
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    if precision == -1:
        return "%g" % x
    # std::fixed with a negative precision falls back to the stream default of 6 decimals.
    return "%.*f" % (precision if precision >= 0 else 6, x)


def _format_complex(z: complex, precision: int) -> str:
    # The imaginary part carries its own sign; "+" is written for >= 0 (so "+-0") and for NaN (so "+-nan").
    sign = "+" if z.imag >= 0 or math.isnan(z.imag) else ""
    return f"{_format_real(z.real, precision)}{sign}{_format_real(z.imag, precision)}j"


def _element_formatter(np_dtype: np.dtype):
    precision = _options.precision
    if np_dtype == np.bool_:
        return lambda v: "True" if v else "False"
    if np_dtype.kind in "iu":
        return lambda v: str(int(v))
    if np_dtype.kind == "c":
        return lambda v: _format_complex(complex(v), precision)
    # float16 / bfloat16 / float32 widen exactly to a Python float before formatting, as MLX does.
    return lambda v: _format_real(float(v), precision)


def _shown_rows(n: int):
    """Indices to print along a dimension of length n; None marks the "..." gap."""
    if n > 2 * _EDGE:
        return [*range(_EDGE), None, *range(n - _EDGE, n)]
    return list(range(n))


def _nested(data: np.ndarray, depth: int, fmt) -> str:
    if data.shape[0] == 0:
        return "[]"
    rows = _shown_rows(data.shape[0])
    if data.ndim == 1:
        return "[" + ", ".join("..." if i is None else fmt(data[i]) for i in rows) + "]"
    separator = ",\n" + " " * (_INDENT + depth + 1)
    return "[" + separator.join("..." if i is None else _nested(data[i], depth + 1, fmt) for i in rows) + "]"


def format_array(data: np.ndarray, dtype) -> str:
    """MLX's repr of an array: ``array(<values>, dtype=<name>)``.

    Args:
        data (np.ndarray): The evaluated values.
        dtype (Dtype): The kiln dtype, whose name is printed.

    Returns:
        str: e.g. ``array([[1.5, 3, 4.5],\\n       [6, 7.5, 9]], dtype=float32)``.
    """
    fmt = _element_formatter(np.asarray(data).dtype)
    body = fmt(data[()]) if data.ndim == 0 else _nested(data, 0, fmt)
    return f"array({body}, dtype={dtype.name})"
