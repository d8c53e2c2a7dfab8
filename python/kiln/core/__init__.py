"""kiln.core: MLX-compatible arrays, ops, transforms and compile (`import kiln.core as mx`)."""

import importlib as _importlib

from .. import __version__  # noqa: F401  (kiln's own version, as mx.__version__ is MLX's)

from .array import ArrayIterator, ArrayLike, array  # noqa: F401
from .indexing import AtIndexer as ArrayAt  # noqa: F401  (MLX's name for the `array.at` helper)
from .array_api_info import __array_namespace_info__  # noqa: F401
from .dtypes import (  # noqa: F401
    Dtype, DtypeCategory, bfloat16, bool_, complex64, complexfloating, float16, float32, float64, floating,
    generic, inexact, int8, int16, int32, int64, integer, issubdtype, number, signedinteger, uint8, uint16,
    uint32, uint64, unsignedinteger,
)

# Modules whose `__all__` forms the public namespace. Each owns one family of ops or one transform.
_PUBLIC_MODULES = ("_format", "ops", "indexing", "ops_sort", "ops_linalg", "devices", "autodiff", "vmap", "compile",
                   "export", "ops_conv", "ops_extra", "fileio", "memory", "quantized",
                   "quant_modes")


def _export(module_name: str):
    try:
        module = _importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{module_name}":
            return
        raise
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))
                 and getattr(getattr(module, n), "__module__", None) == module.__name__]
    for n in names:
        globals()[n] = getattr(module, n)


for _m in _PUBLIC_MODULES:
    _export(_m)

for _sub in ("random", "linalg", "fast", "distributed", "fft"):
    try:
        globals()[_sub] = _importlib.import_module(f"{__name__}.{_sub}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_sub}":
            raise
del _m, _sub
