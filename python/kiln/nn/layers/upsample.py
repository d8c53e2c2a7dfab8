"""Upsample: nearest, linear and cubic resampling of the spatial axes of (B, *spatial, C) inputs.

Sample positions and tap weights depend only on shapes, so they are computed once on the host (float32,
as MLX computes them); the array work is one gather and multiply-add per tap and spatial axis.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

import kiln.core as mx

from .base import Module

_F32 = np.float32


def _source_positions(size: int, scale: float, align_corners: bool) -> np.ndarray:
    """Where each output sample of one axis falls in input coordinates (float32)."""
    out_size = int(scale * size)
    steps = np.arange(out_size, dtype=_F32)
    if align_corners:
        return steps * _F32((size - 1) / max(out_size - 1, 1))
    step = 1 / scale
    # centres of output cells mapped onto centres of input cells
    offset = ((out_size - 1) * step - size + 1) / 2
    return steps * _F32(step) - _F32(offset)


def _nearest_taps(size: int, scale: float) -> np.ndarray:
    out_size = int(scale * size)
    steps = np.arange(out_size, dtype=_F32)
    if out_size > size:
        # round the centre of each output cell (ties to even) to an input cell
        return np.round((steps + _F32(0.5)) * _F32(size / out_size) - _F32(0.5)).astype(np.int64)
    return (steps * _F32(size / out_size)).astype(np.int64)


def _linear_taps(size: int, scale: float, align_corners: bool) -> list:
    """Two taps (left, right) with weights 1 - t and t, positions clamped to the input."""
    pos = np.clip(_source_positions(size, scale, align_corners), 0, size - 1)
    left = np.floor(pos)
    frac = pos - left
    return [(left, _F32(1) - frac), (np.ceil(pos), frac)]


def _keys_inner(x: np.ndarray, a: float) -> np.ndarray:
    """Keys cubic kernel for distances in [0, 1]."""
    return ((_F32(a + 2) * x - _F32(a + 3)) * x * x + _F32(1)).astype(_F32)


def _keys_outer(x: np.ndarray, a: float) -> np.ndarray:
    """Keys cubic kernel for distances in [1, 2]."""
    return ((((x - _F32(5)) * x + _F32(8)) * x - _F32(4)) * _F32(a)).astype(_F32)


def _cubic_taps(size: int, scale: float, align_corners: bool) -> list:
    """Four taps around each position with Keys a=-0.75 weights; out-of-range taps repeat the border."""
    pos = _source_positions(size, scale, align_corners)
    left = np.floor(pos)
    right = np.floor(pos + _F32(1))
    taps = [(left, _keys_inner(np.abs(pos - left), -0.75)),
            (right, _keys_inner(np.abs(pos - right), -0.75)),
            (left - 1, _keys_outer(np.abs(pos - (left - 1)), -0.75)),
            (right + 1, _keys_outer(np.abs(pos - (right + 1)), -0.75))]
    return taps


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(_F32(1) - x, _F32(0))


def _keys_half(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel with a=-0.5 (the antialiased kernel), zero beyond distance 2."""
    return np.where(x <= 1, _keys_inner(x, -0.5), np.where(x <= 2, _keys_outer(x, -0.5), _F32(0))).astype(_F32)


def _antialiased_taps(size: int, scale: float, kernel, radius: float) -> list:
    """Taps of a kernel widened by 1/scale when shrinking; out-of-range taps are dropped, weights renormalised."""
    pos = _source_positions(size, scale, False)
    widen = 1.0 / scale if scale < 1 else 1.0
    reach = math.ceil(radius * widen) + 1
    taps = []
    for k in range(1 - reach, reach):
        index = np.floor(pos) + k
        weight = kernel((np.abs(pos - index) / _F32(widen)).astype(_F32))
        taps.append((index, np.where((index >= 0) & (index < size), weight, _F32(0)).astype(_F32)))
    total = sum(w for _, w in taps)
    total = np.where(total > 0, total, _F32(1))
    return [(index, (weight / total).astype(_F32)) for index, weight in taps]


def _gather(x, axis: int, index: np.ndarray, size: int):
    index = np.clip(index, 0, size - 1).astype(np.int32)
    return mx.take(x, mx.array(index), axis=axis)


def _resample_axis(x, axis: int, taps: list):
    """Sum over taps of x gathered along ``axis`` times the tap's weight."""
    size = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = -1
    out = None
    for index, weight in taps:
        term = _gather(x, axis, index, size) * mx.array(weight.reshape(shape))
        out = term if out is None else out + term
    return out


def upsample_nearest(x, scale_factor: tuple):
    """Nearest-neighbour resampling of the spatial axes of ``x`` by ``scale_factor`` (one per axis)."""
    if x.ndim - 2 != len(scale_factor):
        raise ValueError("A scale needs to be provided for each spatial dimension")
    if all(float(s).is_integer() for s in scale_factor):
        # integer factors repeat each element; keeps the dtype exactly
        for axis, s in enumerate(scale_factor, start=1):
            x = mx.repeat(x, int(s), axis=axis)
        return x
    for axis, s in enumerate(scale_factor, start=1):
        x = mx.take(x, mx.array(_nearest_taps(x.shape[axis], s).astype(np.int32)), axis=axis)
    return x


def _interpolate(x, scale_factor: tuple, taps_fn):
    if x.ndim - 2 != len(scale_factor):
        raise ValueError("A scale needs to be provided for each spatial dimension")
    # linear and cubic interpolation are tensor products, so one axis at a time gives the same values
    for axis, s in enumerate(scale_factor, start=1):
        x = _resample_axis(x, axis, taps_fn(x.shape[axis], s))
    return x


def _check_antialias(align_corners: bool, antialias: bool):
    if antialias and align_corners:
        raise ValueError("[Upsample] antialias=True with align_corners=True is not supported. Use "
                         "align_corners=False for antialiased interpolation.")


def upsample_linear(x, scale_factor: tuple, align_corners: bool = False, antialias: bool = False):
    """Linear (bilinear, trilinear, ...) resampling of the spatial axes of ``x``."""
    _check_antialias(align_corners, antialias)
    if antialias:
        return _interpolate(x, scale_factor, lambda n, s: _antialiased_taps(n, s, _triangle, 1.0))
    return _interpolate(x, scale_factor, lambda n, s: _linear_taps(n, s, align_corners))


def upsample_cubic(x, scale_factor: tuple, align_corners: bool = False, antialias: bool = False):
    """Cubic (bicubic, ...) resampling of the spatial axes of ``x`` (Keys a=-0.75, a=-0.5 antialiased)."""
    _check_antialias(align_corners, antialias)
    if antialias:
        return _interpolate(x, scale_factor, lambda n, s: _antialiased_taps(n, s, _keys_half, 2.0))
    return _interpolate(x, scale_factor, lambda n, s: _cubic_taps(n, s, align_corners))


class Upsample(Module):
    r"""Upsample the input signal spatially (axes ``1`` to ``x.ndim - 2``; batch first, features last).

    Args:
        scale_factor (float or tuple): The multiplier for the spatial size, one for all spatial axes or one
            per spatial axis.
        mode (str, optional): ``"nearest"``, ``"linear"`` or ``"cubic"``. Default: ``"nearest"``.
        align_corners (bool, optional): For ``"linear"`` and ``"cubic"``: map the corner samples of input and
            output onto each other. Default: ``False``.
        antialias (bool, optional): Low-pass filter when downsampling with ``"linear"`` or ``"cubic"``
            (cubic then uses the kernel coefficient ``a=-0.5``). Default: ``False``.
    """

    def __init__(self, scale_factor: float | tuple, mode: Literal["nearest", "linear", "cubic"] = "nearest",
                 align_corners: bool = False, antialias: bool = False):
        super().__init__()
        if mode not in ("nearest", "linear", "cubic"):
            raise ValueError(f"[Upsample] Got unsupported upsampling algorithm: {mode}")
        if antialias and mode == "nearest":
            raise ValueError("[Upsample] Antialiasing is not supported for nearest neighbor upsampling")
        if isinstance(scale_factor, (list, tuple)):
            scale_factor = tuple(float(s) for s in scale_factor)
        else:
            scale_factor = float(scale_factor)
        _check_antialias(align_corners, antialias)
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners
        self.antialias = antialias

    def _extra_repr(self) -> str:
        text = f"scale_factor={self.scale_factor}, mode={self.mode!r}, align_corners={self.align_corners}"
        return text + (", antialias=True" if self.antialias else "")

    def __call__(self, x):
        dims = x.ndim - 2
        if dims <= 0:
            raise ValueError(f"[Upsample] The input should have at least 1 spatial dimension which means it "
                             f"should be at least 3D but {x.ndim}D was provided")
        scale_factor = self.scale_factor
        if isinstance(scale_factor, tuple):
            if len(scale_factor) != dims:
                raise ValueError(f"[Upsample] One scale per spatial dimension is required but "
                                 f"scale_factor={scale_factor} and the number of spatial dimensions were {dims}")
        else:
            scale_factor = (scale_factor,) * dims
        if self.mode == "nearest":
            return upsample_nearest(x, scale_factor)
        if self.mode == "linear":
            return upsample_linear(x, scale_factor, self.align_corners, self.antialias)
        return upsample_cubic(x, scale_factor, self.align_corners, self.antialias)
