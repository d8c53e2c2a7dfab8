"""Public sorting ops: sort, argsort, partition, argpartition, topk (MLX's names, defaults and errors).

`axis=None` sorts the flattened array. Index results are uint32, as in MLX.
"""

from __future__ import annotations

import numpy as np

from . import ops
from .array import array, bind

__all__ = ["argpartition", "argsort", "partition", "sort", "topk"]


def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _prepare(op: str, a, axis):
    """The input (flattened for axis=None) and its normalised axis; IndexError as MLX for a bad axis."""
    a = ops.to_array(a)
    if axis is None:
        return ops.reshape(a, (-1,)), 0
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"[{op}] axis must be an int or None, got {type(axis).__name__}.")
    axis = int(axis)
    if not -a.ndim <= axis < a.ndim:
        raise IndexError(f"[{op}] Axis {axis} is out of bounds for array with {a.ndim} dimensions.")
    return a, axis % a.ndim


def _int_arg(op: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"[{op}] {name} must be an int, got {type(v).__name__}.")
    return int(v)


def sort(a, /, axis: int | None = -1, *, stream=None) -> array:
    """Returns a sorted copy of the array.

    The sort is stable; NaNs sort to the end.

    Args:
        a (array): Input array.
        axis (int or None, optional): Axis to sort over. If ``None`` the array is flattened first.
            Default: ``-1``.

    Returns:
        array: The sorted array.
    """
    x, ax = _prepare("sort", a, axis)
    return bind("sort", x, axis=ax)


def argsort(a, /, axis: int | None = -1, *, stream=None) -> array:
    """Returns the indices that sort the array.

    Args:
        a (array): Input array.
        axis (int or None, optional): Axis to sort over. If ``None`` the array is flattened first.
            Default: ``-1``.

    Returns:
        array: The ``uint32`` indices that sort ``a`` along ``axis`` (stable: ties keep their order).
    """
    x, ax = _prepare("argsort", a, axis)
    return bind("argsort", x, axis=ax)


def _kth(op: str, x, ax: int, kth, axis_arg) -> int:
    kth = _int_arg(op, "kth", kth)
    n = x.shape[ax]
    if not -n <= kth < n:
        shown = -1 if axis_arg is None else axis_arg
        raise ValueError(f"[{op}] Received invalid kth {kth} along axis {shown} for array with shape: "
                         f"{_shape_text(x.shape)}")
    return kth % n


def partition(a, /, kth: int, axis: int | None = -1, *, stream=None) -> array:
    """Returns a partitioned copy of the array such that the smaller ``kth`` elements are first.

    The element at position ``kth`` is the one a full sort would put there; every element before it is
    not greater and every element after it is not smaller. The order within each side is unspecified.

    Args:
        a (array): Input array.
        kth (int): Element index at which to partition (negative counts from the end).
        axis (int or None, optional): Axis to partition over. If ``None`` the array is flattened first.
            Default: ``-1``.

    Returns:
        array: The partitioned array.
    """
    x, ax = _prepare("partition", a, axis)
    k = _kth("partition", x, ax, kth, axis)
    return bind("partition", x, axis=ax, kth=k)


def argpartition(a, /, kth: int, axis: int | None = -1, *, stream=None) -> array:
    """Returns the indices that partition the array.

    Args:
        a (array): Input array.
        kth (int): Element index at which to partition (negative counts from the end).
        axis (int or None, optional): Axis to partition over. If ``None`` the array is flattened first.
            Default: ``-1``.

    Returns:
        array: The ``uint32`` indices that partition ``a`` along ``axis``.
    """
    x, ax = _prepare("argpartition", a, axis)
    k = _kth("argpartition", x, ax, kth, axis)
    return bind("argpartition", x, axis=ax, kth=k)


def topk(a, /, k: int, axis: int | None = -1, *, stream=None) -> array:
    """Returns the ``k`` largest elements along an axis.

    MLX promises no order among the results beyond the first being the k-th largest; kiln returns them in
    ascending order, which keeps that promise and is deterministic.

    Args:
        a (array): Input array.
        k (int): Number of elements to return, ``0 <= k <=`` the axis size.
        axis (int or None, optional): Axis to select over. If ``None`` the array is flattened first.
            Default: ``-1``.

    Returns:
        array: The top ``k`` values, the axis shortened to ``k``.
    """
    x, ax = _prepare("topk", a, axis)
    k = _int_arg("topk", "k", k)
    n = x.shape[ax]
    if not 0 <= k <= n:
        shown = -1 if axis is None else axis
        raise ValueError(f"[topk] Received invalid k={k} along axis {shown} for array with shape: "
                         f"{_shape_text(x.shape)}")
    if k == 0:
        return ops.split(x, [0], axis=ax)[0]
    top = bind("partition", x, axis=ax, kth=n - k)
    if k < n:
        top = ops.split(top, [n - k], axis=ax)[1]
    # The k largest are unordered after a partition; ordering k of them is cheap next to the selection.
    return bind("sort", top, axis=ax)
