"""Small floating-point storage formats (OCP FP8 E4M3, FP4 E2M1, the E8M0 power-of-two scale): conversion
between float arrays and their uint8 codes, as two primitives.

`float_encode` rounds to nearest (ties to even) and saturates at the format's largest finite value; NaN
saturates to the positive maximum, as MLX's `to_fp8` does. `float_decode` reads codes back into a float
dtype. The reference conversions are ml_dtypes' (the library numpy-based JAX uses for these formats).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .. import dtypes as dt
from ..primitives import OTHER, Primitive, register
from .elementwise import elementwise_vmap

# format name -> (ml_dtypes type, largest finite value, whether it can be encoded here)
FORMATS = {
    "e4m3": (ml_dtypes.float8_e4m3fn, 448.0, True),
    "e2m1": (ml_dtypes.float4_e2m1fn, 6.0, True),
    "e8m0": (ml_dtypes.float8_e8m0fnu, None, False),  # scales are computed by ops (a rounding up), only read here
}


def _check_format(op: str, fmt, encode: bool):
    if fmt not in FORMATS or (encode and not FORMATS[fmt][2]):
        raise ValueError(f"[{op}] internal: unsupported format {fmt!r}.")


def _encode_rule(x, format):
    _check_format("float_encode", format, True)
    if not dt.is_floating(x.dtype) or x.dtype == dt.complex64:
        raise ValueError(f"[float_encode] Only real floating types are supported, got {x.dtype.name}.")
    return tuple(x.shape), dt.uint8


def _encode_impl(x, format):
    kind, largest, _ = FORMATS[format]
    x = np.asarray(x, dtype=np.float32)
    saturated = np.where(np.isnan(x), largest, np.clip(x, -largest, largest))
    return saturated.astype(kind).view(np.uint8)


def _decode_rule(codes, format, dtype, grad_error=None):
    _check_format("float_decode", format, False)
    if codes.dtype != dt.uint8:
        raise ValueError(f"[float_decode] Codes must have type uint8, got {codes.dtype.name}.")
    if not dt.is_floating(dtype) or dtype == dt.complex64:
        raise ValueError(f"[float_decode] The output type must be a real floating type, got {dtype.name}.")
    return tuple(codes.shape), dtype


def _decode_impl(codes, format, dtype, grad_error=None):
    kind = FORMATS[format][0]
    if format == "e2m1":
        codes = codes & np.uint8(0x0F)  # a 4-bit format: only the low nibble is the code
    return np.asarray(codes, dtype=np.uint8).view(kind).astype(np.float32).astype(dtype.np)


register(Primitive("float_encode", OTHER, _encode_impl, _encode_rule, vmap=elementwise_vmap("float_encode"),
                   differentiable=False, doc="Round floats to a small float format's uint8 codes."))
def _refuse_if_marked(params):
    """Codes have a zero derivative; `grad_error` marks a use whose derivative MLX refuses instead (the
    scales of a product in a floating-point quantization mode)."""
    if params.get("grad_error"):
        raise ValueError(params["grad_error"])


def _decode_vjp(ct, out, inputs, params):
    _refuse_if_marked(params)
    return (None,)


def _decode_jvp(tangents, out, inputs, params):
    _refuse_if_marked(params)
    return None


register(Primitive("float_decode", OTHER, _decode_impl, _decode_rule, vmap=elementwise_vmap("float_decode"),
                   vjp=_decode_vjp, jvp=_decode_jvp,
                   doc="Read a small float format's uint8 codes as floats."))
