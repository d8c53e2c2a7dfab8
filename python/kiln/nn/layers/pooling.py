"""Max and average pooling over the spatial axes of (N, *spatial, C) inputs, built on the window primitive."""

from __future__ import annotations

import math

import kiln.core as mx
from kiln.core.ops_conv import sliding_windows

from .base import Module


def _value_or_list(value, n: int, message: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n or not all(isinstance(v, int) for v in value):
            raise ValueError(message)
        return list(value)
    if not isinstance(value, int):
        raise ValueError(message)
    return [value] * n


class _Pool(Module):
    def __init__(self, reduce_fn, padding_value, kernel_size, stride, padding):
        super().__init__()
        self._reduce_fn = reduce_fn
        self._padding_value = padding_value
        self._kernel_size = kernel_size
        self._stride = stride
        self._padding = padding
        nd = len(kernel_size)
        self._axes = tuple(range(-nd - 1, -1))

    def _extra_repr(self):
        ks = tuple(self._kernel_size)
        st = tuple(self._stride)
        pd = tuple(p[0] for p in self._padding)
        return f"kernel_size={ks}, stride={st}, padding={pd}"

    def __call__(self, x):
        nd = len(self._kernel_size)
        if x.ndim != nd + 2:
            raise ValueError(f"[{type(self).__name__}] Expected an input with {nd + 2} dimensions "
                             f"(N, ..., C), got shape {tuple(x.shape)}.")
        if any(p[0] > 0 for p in self._padding):
            x = mx.pad(x, [(0, 0)] + list(self._padding) + [(0, 0)], constant_values=self._padding_value)
        windows = sliding_windows(x, self._kernel_size, self._stride)
        return self._reduce_fn(windows, self._axes)


def _pool_args(cls_name, nd, kernel_size, stride, padding):
    word = {1: "1 integer", 2: "2 integers", 3: "3 integers"}[nd]
    msg = "[{}] '{}' must be an integer or a tuple containing " + word
    kernel_size = _value_or_list(kernel_size, nd, msg.format(cls_name, "kernel_size"))
    stride = kernel_size if stride is None else _value_or_list(stride, nd, msg.format(cls_name, "stride"))
    padding = _value_or_list(padding, nd, msg.format(cls_name, "padding"))
    for name, values in (("kernel_size", kernel_size), ("stride", stride)):
        if any(v <= 0 for v in values):
            raise ValueError(f"[{cls_name}] '{name}' must be positive but got {tuple(values)}.")
    if any(p < 0 for p in padding):
        raise ValueError(f"[{cls_name}] 'padding' must be non-negative but got {tuple(padding)}.")
    return kernel_size, stride, [(p, p) for p in padding]


def _max(x, axes):
    return mx.max(x, axis=axes)


def _mean(x, axes):
    return mx.mean(x, axis=axes)


def _make_pool(name, nd, reduce_fn, padding_value, doc):
    def __init__(self, kernel_size, stride=None, padding=0):
        args = _pool_args(type(self).__name__, nd, kernel_size, stride, padding)
        _Pool.__init__(self, reduce_fn, padding_value, *args)

    return type(name, (_Pool,), {"__init__": __init__, "__doc__": doc})


_DOC = """Applies {kind} pooling over the {nd}-d spatial axes of an ``(N, {axes}, C)`` input.

    Args:
        kernel_size (int or tuple(int)): The size of the pooling window.
        stride (int or tuple(int), optional): The stride of the pooling window. Default: ``kernel_size``.
        padding (int or tuple(int), optional): How much {pad} padding to apply to the input (on both sides
            of each spatial axis). Default: ``0``.
    """
_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}
MaxPool1d = _make_pool("MaxPool1d", 1, _max, -math.inf,
                       _DOC.format(kind="max", nd=1, axes=_AXES[1], pad="negative infinity"))
MaxPool2d = _make_pool("MaxPool2d", 2, _max, -math.inf,
                       _DOC.format(kind="max", nd=2, axes=_AXES[2], pad="negative infinity"))
MaxPool3d = _make_pool("MaxPool3d", 3, _max, -math.inf,
                       _DOC.format(kind="max", nd=3, axes=_AXES[3], pad="negative infinity"))
AvgPool1d = _make_pool("AvgPool1d", 1, _mean, 0,
                       _DOC.format(kind="average", nd=1, axes=_AXES[1], pad="zero"))
AvgPool2d = _make_pool("AvgPool2d", 2, _mean, 0,
                       _DOC.format(kind="average", nd=2, axes=_AXES[2], pad="zero"))
AvgPool3d = _make_pool("AvgPool3d", 3, _mean, 0,
                       _DOC.format(kind="average", nd=3, axes=_AXES[3], pad="zero"))
