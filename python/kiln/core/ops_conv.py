"""Public convolution ops with MLX's signatures: inputs (N, *spatial, C_in), weights (C_out, *kernel, C_in)."""

from __future__ import annotations

import numpy as np

from . import dtypes as dt
from .array import array, bind
from .ops import astype, to_array

__all__ = ["conv1d", "conv2d", "conv3d", "conv_general", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d"]


def _tuple(op: str, value, nd: int, name: str) -> tuple:
    """An int or a length-nd sequence of ints, as a tuple of nd ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    items = tuple(int(v) for v in value)
    if len(items) != nd:
        raise ValueError(f"[{op}] Expected {nd} values for {name}, got {len(items)}: {items}.")
    return items


def _padding_pairs(op: str, padding, nd: int) -> tuple:
    """int | sequence | (lows, highs) -> ((lo, hi), ...) per spatial axis."""
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        lows = _tuple(op, padding[0], nd, "padding")
        highs = _tuple(op, padding[1], nd, "padding")
        return tuple(zip(lows, highs))
    sym = _tuple(op, padding, nd, "padding")
    return tuple((p, p) for p in sym)


def _operands(op: str, input, weight):
    x, w = to_array(input), to_array(weight)
    if not 3 <= x.ndim <= 5:
        raise ValueError("[conv] Only works for inputs with 1-3 spatial dimensions. The inputs must be in the "
                         "format [N, ..., C_in]")
    if w.ndim != x.ndim:
        raise ValueError(f"[conv] Invalid weight array with {w.ndim} dimensions for input with {x.ndim} "
                         "dimensions. The weight must be in the format [C_out, ..., C_in]")
    d = dt.result_type(x, w)
    if not dt.is_floating(d):
        raise ValueError(f"[conv] Invalid input array with type {d.name}. Convolution currently only supports "
                         "floating point types")
    return astype(x, d), astype(w, d)


def _check_positive(values, what):
    if any(v <= 0 for v in values):
        raise ValueError(f"[conv] {what} sizes must be positive. Got {what.lower()}s "
                         f"({','.join(str(v) for v in values)}).")


def conv_general(input, weight, stride=1, padding=0, kernel_dilation=1, input_dilation=1, groups: int = 1,
                 flip: bool = False, stream=None) -> array:
    """General convolution over any number of spatial dimensions.

    Args:
        input (array): Input array of shape ``(N, ..., C_in)``.
        weight (array): Weight array of shape ``(C_out, ..., C_in / groups)``.
        stride (int or list(int), optional): Kernel strides. Default: ``1``.
        padding (int, list(int) or tuple(list(int), list(int)), optional): Symmetric padding, or
            ``(low, high)`` padding per spatial axis. Default: ``0``.
        kernel_dilation (int or list(int), optional): Kernel dilation. Default: ``1``.
        input_dilation (int or list(int), optional): Input dilation. Default: ``1``.
        groups (int, optional): Input feature groups. Default: ``1``.
        flip (bool, optional): Flip the kernel (a true convolution rather than a cross-correlation).
            Default: ``False``.

    Returns:
        array: The convolved array of shape ``(N, ..., C_out)``.
    """
    x, w = _operands("conv_general", input, weight)
    nd = x.ndim - 2
    strides = _tuple("conv", stride, nd, "stride")
    _check_positive(strides, "Stride")
    kd = _tuple("conv", kernel_dilation, nd, "kernel_dilation")
    _check_positive(kd, "Dilation")
    ld = _tuple("conv", input_dilation, nd, "input_dilation")
    _check_positive(ld, "Input dilation")
    if groups <= 0:
        raise ValueError(f"[conv] Groups must be positive, got {groups}.")
    pads = _padding_pairs("conv", padding, nd)
    return bind("conv_general", x, w, strides=strides, padding=pads, kernel_dilation=kd, input_dilation=ld,
                groups=int(groups), flip=bool(flip))


def _conv_nd(nd, input, weight, stride, padding, dilation, groups):
    x = to_array(input)
    if 3 <= x.ndim <= 5 and x.ndim != nd + 2:
        raise ValueError(f"[conv] Expected an input with {nd + 2} dimensions (N, ..., C_in) for conv{nd}d, got "
                         f"shape {tuple(x.shape)}.")
    return conv_general(x, weight, stride=_tuple(f"conv{nd}d", stride, nd, "stride"),
                        padding=_tuple(f"conv{nd}d", padding, nd, "padding"),
                        kernel_dilation=_tuple(f"conv{nd}d", dilation, nd, "dilation"), groups=groups)


def conv1d(input, weight, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1,
           stream=None) -> array:
    """1D convolution over an input with several channels.

    Args:
        input (array): Input array of shape ``(N, L, C_in)``.
        weight (array): Weight array of shape ``(C_out, K, C_in / groups)``.
        stride (int, optional): Kernel stride. Default: ``1``.
        padding (int, optional): Input padding. Default: ``0``.
        dilation (int, optional): Kernel dilation. Default: ``1``.
        groups (int, optional): Input feature groups. Default: ``1``.

    Returns:
        array: The convolved array.
    """
    return _conv_nd(1, input, weight, stride, padding, dilation, groups)


def conv2d(input, weight, stride=1, padding=0, dilation=1, groups: int = 1, stream=None) -> array:
    """2D convolution over an input with several channels (``(N, H, W, C_in)``, weight ``(C_out, KH, KW, C_in)``).

    Args:
        input (array): Input ``(N, H, W, C_in)``.
        weight (array): Weight ``(C_out, KH, KW, C_in / groups)``.
        stride (int or tuple(int), optional): Stride. Default: ``1``.
        padding (int or tuple(int), optional): Zero padding. Default: ``0``.
        dilation (int or tuple(int), optional): Kernel dilation. Default: ``1``.
        groups (int, optional): Input channel groups. Default: ``1``.

    Returns:
        array: The convolution.
    """
    return _conv_nd(2, input, weight, stride, padding, dilation, groups)


def conv3d(input, weight, stride=1, padding=0, dilation=1, groups: int = 1, stream=None) -> array:
    """3D convolution over an input with several channels (``(N, D, H, W, C_in)``).

    Args:
        input (array): Input ``(N, D, H, W, C_in)``.
        weight (array): Weight ``(C_out, KD, KH, KW, C_in / groups)``.
        stride (int or tuple(int), optional): Stride. Default: ``1``.
        padding (int or tuple(int), optional): Zero padding. Default: ``0``.
        dilation (int or tuple(int), optional): Kernel dilation. Default: ``1``.
        groups (int, optional): Input channel groups. Default: ``1``.

    Returns:
        array: The convolution.
    """
    return _conv_nd(3, input, weight, stride, padding, dilation, groups)


def _conv_transpose_nd(nd, input, weight, stride, padding, dilation, output_padding, groups):
    op = f"conv_transpose{nd}d"
    x, w = to_array(input), to_array(weight)
    if 3 <= x.ndim <= 5 and x.ndim != nd + 2:
        raise ValueError(f"[{op}] Expected an input with {nd + 2} dimensions (N, ..., C_in), got shape "
                         f"{tuple(x.shape)}.")
    if x.ndim != nd + 2:
        _operands(op, x, w)  # raises MLX's message for unsupported ranks
    strides = _tuple(op, stride, nd, "stride")
    pads = _tuple(op, padding, nd, "padding")
    dil = _tuple(op, dilation, nd, "dilation")
    out_pad = _tuple(op, output_padding, nd, "output_padding")
    kernel = tuple(w.shape[1:-1]) if w.ndim == nd + 2 else (1,) * nd
    # A transposed convolution is a flipped convolution of the stride-dilated input.
    lows = tuple(d * (k - 1) - p for d, k, p in zip(dil, kernel, pads))
    highs = tuple(lo + op_ for lo, op_ in zip(lows, out_pad))
    return conv_general(x, w, stride=1, padding=(lows, highs), kernel_dilation=dil, input_dilation=strides,
                        groups=groups, flip=True)


def conv_transpose1d(input, weight, stride: int = 1, padding: int = 0, dilation: int = 1, output_padding: int = 0,
                     groups: int = 1, stream=None) -> array:
    """1D transposed convolution over an input with several channels.

    Args:
        input (array): Input array of shape ``(N, L, C_in)``.
        weight (array): Weight array of shape ``(C_out, K, C_in / groups)``.
        stride (int, optional): Kernel stride. Default: ``1``.
        padding (int, optional): Input padding. Default: ``0``.
        dilation (int, optional): Kernel dilation. Default: ``1``.
        output_padding (int, optional): Extra size added to one side of the output. Default: ``0``.
        groups (int, optional): Input feature groups. Default: ``1``.

    Returns:
        array: The transposed-convolved array.
    """
    return _conv_transpose_nd(1, input, weight, stride, padding, dilation, output_padding, groups)


def conv_transpose2d(input, weight, stride=1, padding=0, dilation=1, output_padding=0, groups: int = 1,
                     stream=None) -> array:
    """2D transposed convolution (``(N, H, W, C_in)``, weight ``(C_out, KH, KW, C_in)``).

    Args:
        input (array): Input ``(N, H, W, C_in)``.
        weight (array): Weight ``(C_out, KH, KW, C_in / groups)``.
        stride (int or tuple(int), optional): Stride. Default: ``1``.
        padding (int or tuple(int), optional): Padding. Default: ``0``.
        dilation (int or tuple(int), optional): Kernel dilation. Default: ``1``.
        output_padding (int or tuple(int), optional): Extra size on one side of the output. Default: ``0``.
        groups (int, optional): Input channel groups. Default: ``1``.

    Returns:
        array: The transposed convolution.
    """
    return _conv_transpose_nd(2, input, weight, stride, padding, dilation, output_padding, groups)


def conv_transpose3d(input, weight, stride=1, padding=0, dilation=1, output_padding=0, groups: int = 1,
                     stream=None) -> array:
    """3D transposed convolution (``(N, D, H, W, C_in)``).

    Args:
        input (array): Input ``(N, D, H, W, C_in)``.
        weight (array): Weight ``(C_out, KD, KH, KW, C_in / groups)``.
        stride (int or tuple(int), optional): Stride. Default: ``1``.
        padding (int or tuple(int), optional): Padding. Default: ``0``.
        dilation (int or tuple(int), optional): Kernel dilation. Default: ``1``.
        output_padding (int or tuple(int), optional): Extra size on one side of the output. Default: ``0``.
        groups (int, optional): Input channel groups. Default: ``1``.

    Returns:
        array: The transposed convolution.
    """
    return _conv_transpose_nd(3, input, weight, stride, padding, dilation, output_padding, groups)


def sliding_windows(x, kernel, strides, kernel_dilation=None, padding=None) -> array:
    """Every window of x (N, *S, C) as (N, *out, *kernel, C); used by pooling (not part of MLX's API)."""
    x = to_array(x)
    nd = len(kernel)
    kd = tuple(kernel_dilation) if kernel_dilation is not None else (1,) * nd
    pads = tuple(padding) if padding is not None else ((0, 0),) * nd
    return bind("sliding_windows", x, kernel=tuple(kernel), strides=tuple(strides), kernel_dilation=kd,
                padding=pads, input_dilation=(1,) * nd)
