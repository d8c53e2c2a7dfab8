"""Memory management and back-end namespaces (MLX's get_active_memory ... and `mx.metal`, `mx.cuda`).

kiln's buffers are numpy arrays freed by Python's reference counting: there is no allocator cache to clear,
and the limits are remembered only to be returned. Active and peak memory count the buffers arrays hold
(`track`), each buffer once, until numpy frees it.
"""

from __future__ import annotations

import os
import platform
import threading
import types
import weakref

import numpy as np

__all__ = [
    "clear_cache",
    "cuda",
    "device_info",
    "get_active_memory",
    "get_cache_memory",
    "get_memory_limit",
    "get_peak_memory",
    "metal",
    "reset_peak_memory",
    "set_cache_limit",
    "set_memory_limit",
    "set_wired_limit",
]


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


_limits = {"memory": _physical_memory(), "cache": _physical_memory(), "wired": 0}


def _check_limit(op: str, limit) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"[{op}] limit must be an int, got {type(limit).__name__}.")
    if limit < 0:
        raise ValueError(f"[{op}] limit must be non-negative, got {limit}.")
    return limit


def _swap_limit(op: str, key: str, limit) -> int:
    previous = _limits[key]
    _limits[key] = _check_limit(op, limit)
    return previous


_held: dict = {}  # id(buffer) -> weak reference, for the buffers arrays hold now
_sizes: dict = {}  # id(weak reference) -> (id(buffer), bytes), read when the buffer is freed
_count = {"active": 0, "peak": 0}
_lock = threading.RLock()  # (reentrant: a buffer may be freed, and its callback run, while the lock is held)


def _release(ref) -> None:
    with _lock:
        key, nbytes = _sizes.pop(id(ref))
        if _held.get(key) is ref:
            del _held[key]
        _count["active"] -= nbytes


def buffer_owner(data: np.ndarray) -> np.ndarray:
    """The numpy array that owns the memory behind `data` (views share their owner's buffer)."""
    while isinstance(data.base, np.ndarray):
        data = data.base
    return data


def track(data: np.ndarray) -> None:
    """Count the buffer behind `data` (the numpy array that owns the memory) as active until it is freed."""
    owner = buffer_owner(data)
    key = id(owner)
    ref = _held.get(key)
    if ref is not None and ref() is owner:
        return
    nbytes = owner.nbytes
    with _lock:
        ref = weakref.ref(owner, _release)
        _held[key] = ref
        _sizes[id(ref)] = (key, nbytes)
        active = _count["active"] = _count["active"] + nbytes
        if active > _count["peak"]:
            _count["peak"] = active


def clear_cache() -> None:
    """Clear the memory cache (kiln keeps none: a no-op).

    Returns:
        None
    """


def get_active_memory() -> int:
    """Get the actively used memory in bytes: the buffers that arrays hold, each counted once.

    Returns:
        int: Bytes.
    """
    return _count["active"]


def get_peak_memory() -> int:
    """Get the peak amount of used memory in bytes since the last `reset_peak_memory`.

    Returns:
        int: Bytes.
    """
    return _count["peak"]


def reset_peak_memory() -> None:
    """Reset the peak memory to zero.

    Returns:
        None
    """
    _count["peak"] = 0


def get_cache_memory() -> int:
    """Get the cache size in bytes (kiln keeps no cache: 0).

    Returns:
        int: Bytes.
    """
    return 0


def get_memory_limit() -> int:
    """Get the current memory limit in bytes (by default the machine's physical memory).

    Returns:
        int: Bytes.
    """
    return _limits["memory"]


def set_memory_limit(limit: int) -> int:
    """Set the memory limit (a guideline; kiln does not enforce it).

    Args:
        limit (int): Memory limit in bytes.

    Returns:
        int: The previous memory limit in bytes.
    """
    return _swap_limit("set_memory_limit", "memory", limit)


def set_cache_limit(limit: int) -> int:
    """Set the free cache limit (kiln keeps no cache, so it has no effect).

    Args:
        limit (int): The cache limit in bytes.

    Returns:
        int: The previous cache limit in bytes.
    """
    return _swap_limit("set_cache_limit", "cache", limit)


def set_wired_limit(limit: int) -> int:
    """Set the wired size limit (meaningful only for Metal on macOS; no effect here).

    Args:
        limit (int): The wired limit in bytes.

    Returns:
        int: The previous wired limit in bytes.
    """
    return _swap_limit("set_wired_limit", "wired", limit)


def device_info(d=None) -> dict:
    """Get information about a device.

    Args:
        d (Device, optional): The device; the default device if omitted.

    Returns:
        dict: ``architecture``, ``device_name`` and ``memory_size`` of the CPU.
    """
    name = platform.processor() or platform.machine()
    return {"architecture": platform.machine(), "device_name": name, "memory_size": _physical_memory()}


def _backend_namespace(name: str, extra: dict) -> types.ModuleType:
    """`mx.metal` / `mx.cuda`: `is_available()` is False (kiln runs on the CPU), memory queries forward."""
    module = types.ModuleType(f"kiln.core.{name}", f"The {name} back end (not available in kiln).")
    module.is_available = lambda: False
    for fn_name in ("clear_cache", "get_active_memory", "get_peak_memory", "reset_peak_memory", "get_cache_memory",
                    "set_memory_limit", "set_cache_limit", "set_wired_limit"):
        setattr(module, fn_name, globals()[fn_name])
    module.device_info = dict
    for fn_name, fn in extra.items():
        setattr(module, fn_name, fn)
    return module


def _no_capture(*args, **kwargs):
    raise RuntimeError("[metal] Capturing a GPU trace needs the Metal back end, which kiln does not have.")


metal = _backend_namespace("metal", {"start_capture": _no_capture, "stop_capture": _no_capture})
cuda = _backend_namespace("cuda", {})
