"""kiln.core: MLX-compatible arrays, ops, transforms and compile (`import kiln.core as mx`)."""

from . import dtypes as _dtypes
from .array import array
from .dtypes import (  # noqa: F401
    Dtype, DtypeCategory, bfloat16, bool_, complex64, complexfloating, float16, float32, float64, floating,
    generic, inexact, int8, int16, int32, int64, integer, issubdtype, number, signedinteger, uint8, uint16,
    uint32, uint64, unsignedinteger,
)
from . import ops as _ops

for _name in dir(_ops):
    if not _name.startswith("_") and callable(getattr(_ops, _name)) and _name not in ("to_array", "Scalar"):
        globals()[_name] = getattr(_ops, _name)
del _name

__all__ = [n for n in globals() if not n.startswith("_")]
