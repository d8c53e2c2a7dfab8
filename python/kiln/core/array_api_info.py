"""The array API's inspection namespace (``mx.__array_namespace_info__()``): kiln's devices, default dtypes
and supported dtypes per device, as MLX answers them (float64 exists on the CPU only)."""

from __future__ import annotations

from . import dtypes as dt
from .devices import Device, cpu, default_device, device_count, gpu

# The array API's dtype kinds, each a tuple of dtype names in the order MLX lists them.
_SIGNED = ("int8", "int16", "int32", "int64")
_UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
_REAL = ("float32", "float64")
_COMPLEX = ("complex64",)
_KINDS = {
    "bool": ("bool",),
    "signed integer": _SIGNED,
    "unsigned integer": _UNSIGNED,
    "integral": _SIGNED + _UNSIGNED,
    "real floating": _REAL,
    "complex floating": _COMPLEX,
    "numeric": _SIGNED + _UNSIGNED + _REAL + _COMPLEX,
}


def _check_device(device) -> Device:
    if device is None:
        return default_device()
    if not isinstance(device, Device):
        raise TypeError("Expected a mlx Device")
    return device


class ArrayNamespaceInfo:
    """What the array API asks of a namespace: capabilities, devices and dtypes."""

    def capabilities(self) -> dict:
        """Boolean indexing and data-dependent shapes are not supported; at most 10 dimensions."""
        return {"boolean indexing": False, "data-dependent shapes": False, "max dimensions": 10}

    def default_device(self) -> Device:
        """The device arrays are made on (``mx.default_device()``)."""
        return default_device()

    def devices(self) -> tuple:
        """Every available device, CPUs first."""
        return tuple(Device(kind, i) for kind in (cpu, gpu) for i in range(device_count(kind)))

    def default_dtypes(self, *, device=None) -> dict:
        """The dtypes arrays get by default, by kind."""
        _check_device(device)
        return {"real floating": dt.float32, "complex floating": dt.complex64, "integral": dt.int32,
                "indexing": dt.int32}

    def dtypes(self, *, device=None, kind=None) -> dict:
        """The array-API dtypes a device supports, by name.

        Args:
            device (Device, optional): The device; default: the default device.
            kind (str or tuple(str), optional): Only dtypes of these kinds ("bool", "signed integer",
                "unsigned integer", "integral", "real floating", "complex floating", "numeric").

        Returns:
            dict: name to Dtype.
        """
        device = _check_device(device)
        names = ("bool",) + _SIGNED + _UNSIGNED + ("float32", "complex64")
        if device.type == cpu:
            names += ("float64",)
        if kind is None:
            wanted = names
        else:
            kinds = (kind,) if isinstance(kind, str) else kind
            if not isinstance(kinds, tuple) or any(k not in _KINDS for k in kinds):
                raise ValueError(f"Unsupported dtype kind: {kind!r}")
            wanted = {name for k in kinds for name in _KINDS[k]}
        return {name: getattr(dt, "bool_" if name == "bool" else name) for name in names if name in wanted}


def __array_namespace_info__() -> ArrayNamespaceInfo:
    """The array API's inspection namespace for ``mlx.core``."""
    return ArrayNamespaceInfo()
