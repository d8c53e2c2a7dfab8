"""The `mx.fft` namespace: MLX's Fourier transforms and shifts, with MLX's names, defaults, dtypes and errors.

Every transform checks its arguments, crops or zero-pads the input to the requested sizes and binds the one
`fft` primitive (prims/fft.py); the shifts are rolls.
"""

from __future__ import annotations

import numpy as np

from . import dtypes as dt
from . import ops
from .array import array, bind
from .prims import fft as _prim  # noqa: F401  (registers the fft primitive)

__all__ = [
    "fft",
    "fft2",
    "fftfreq",
    "fftn",
    "fftshift",
    "ifft",
    "ifft2",
    "ifftn",
    "ifftshift",
    "irfft",
    "irfft2",
    "irfftn",
    "rfft",
    "rfft2",
    "rfftfreq",
    "rfftn",
]


def _normalised_axes(op: str, axes, ndim: int) -> tuple:
    out = []
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"[{op}] Invalid axis {ax} for an array with {ndim} dimensions.")
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"[{op}] Duplicated axis received {tuple(axes)}.")
    return tuple(out)


def _transform(op: str, a, s, axes, inverse: bool, real: bool) -> array:
    """Check the arguments, fit the input to the sizes `s` along `axes`, then bind the primitive."""
    a = ops.to_array(a, op=op)
    if axes is None:
        if s is not None:
            raise ValueError(f"[{op}] `axes` should not be `None` if `s` is not `None`.")
        axes = range(a.ndim)
    axes = _normalised_axes(op, tuple(axes), a.ndim)
    if not axes:
        raise ValueError(f"[{op}] Requires at least one axis; got an array with {a.ndim} dimensions.")
    if s is None:
        s = [a.shape[ax] for ax in axes]
        if real and inverse:
            s[-1] = 2 * (a.shape[axes[-1]] - 1)
    s = [int(n) for n in s]
    if len(s) != len(axes):
        raise ValueError(f"[{op}] Shape and axes have different sizes.")
    if any(n <= 0 for n in s):
        raise ValueError(f"[{op}] Invalid FFT output size requested {tuple(s)}.")
    sizes = list(s)
    if real and inverse:
        sizes[-1] = s[-1] // 2 + 1
    a = ops.astype(a, dt.float32 if real and not inverse else dt.complex64)
    a = _fit(a, axes, sizes)
    return bind("fft", a, axes=axes, inverse=inverse, real=real, last=s[-1] if real and inverse else 0)


def _fit(a: array, axes: tuple, sizes: list) -> array:
    """Crop or zero-pad `a` along `axes` to `sizes` (at the end, as numpy)."""
    crop = [slice(None)] * a.ndim
    widths = [(0, 0)] * a.ndim
    for ax, n in zip(axes, sizes):
        if a.shape[ax] > n:
            crop[ax] = slice(0, n)
        elif a.shape[ax] < n:
            widths[ax] = (0, n - a.shape[ax])
    if any(c != slice(None) for c in crop):
        a = a[tuple(crop)]
    if any(w != (0, 0) for w in widths):
        a = ops.pad(a, widths)
    return a


def _one_axis(n, axis):
    return (None if n is None else [n]), [axis]


def fft(a, n=None, axis=-1, stream=None) -> array:
    """One dimensional discrete Fourier Transform.

    Args:
        a (array): The input array.
        n (int, optional): Size of the transformed axis: the input is cropped or zero-padded to it.
          Default: ``a.shape[axis]``.
        axis (int, optional): Axis along which to perform the FFT. Default: ``-1``.

    Returns:
        array: The DFT of the input along the given axis (complex64).
    """
    return _transform("fft", a, *_one_axis(n, axis), inverse=False, real=False)


def ifft(a, n=None, axis=-1, stream=None) -> array:
    """One dimensional inverse discrete Fourier Transform.

    Args:
        a (array): The input array.
        n (int, optional): Size of the transformed axis. Default: ``a.shape[axis]``.
        axis (int, optional): Axis along which to perform the inverse FFT. Default: ``-1``.

    Returns:
        array: The inverse DFT of the input along the given axis (complex64).
    """
    return _transform("ifft", a, *_one_axis(n, axis), inverse=True, real=False)


def fft2(a, s=None, axes=(-2, -1), stream=None) -> array:
    """Two dimensional discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: ``[-2, -1]``.

    Returns:
        array: The DFT of the input along the given axes (complex64).
    """
    return _transform("fft2", a, s, axes, inverse=False, real=False)


def ifft2(a, s=None, axes=(-2, -1), stream=None) -> array:
    """Two dimensional inverse discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: ``[-2, -1]``.

    Returns:
        array: The inverse DFT of the input along the given axes (complex64).
    """
    return _transform("ifft2", a, s, axes, inverse=True, real=False)


def fftn(a, s=None, axes=None, stream=None) -> array:
    """n-dimensional discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: all axes (``s`` then
          needs ``axes``).

    Returns:
        array: The DFT of the input along the given axes (complex64).
    """
    return _transform("fftn", a, s, axes, inverse=False, real=False)


def ifftn(a, s=None, axes=None, stream=None) -> array:
    """n-dimensional inverse discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: all axes.

    Returns:
        array: The inverse DFT of the input along the given axes (complex64).
    """
    return _transform("ifftn", a, s, axes, inverse=True, real=False)


def rfft(a, n=None, axis=-1, stream=None) -> array:
    """One dimensional discrete Fourier Transform on a real input.

    Args:
        a (array): The input array (a complex input is cast to real, as MLX).
        n (int, optional): Size of the transformed axis. Default: ``a.shape[axis]``.
        axis (int, optional): Axis along which to perform the FFT. Default: ``-1``.

    Returns:
        array: The DFT along the axis, whose size becomes ``n // 2 + 1`` (complex64).
    """
    return _transform("rfft", a, *_one_axis(n, axis), inverse=False, real=True)


def irfft(a, n=None, axis=-1, stream=None) -> array:
    """The inverse of :func:`rfft`.

    Args:
        a (array): The input array (half spectrum).
        n (int, optional): Size of the real output along the axis; the input is cropped or zero-padded to
          ``n // 2 + 1``. Default: ``2 * (a.shape[axis] - 1)``.
        axis (int, optional): Axis along which to perform the inverse FFT. Default: ``-1``.

    Returns:
        array: The real inverse DFT along the axis (float32).
    """
    return _transform("irfft", a, *_one_axis(n, axis), inverse=True, real=True)


def rfft2(a, s=None, axes=(-2, -1), stream=None) -> array:
    """Two dimensional real discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: ``[-2, -1]``.

    Returns:
        array: The DFT; the last transformed axis becomes ``s[-1] // 2 + 1`` long (complex64).
    """
    return _transform("rfft2", a, s, axes, inverse=False, real=True)


def irfft2(a, s=None, axes=(-2, -1), stream=None) -> array:
    """The inverse of :func:`rfft2`.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the real output along ``axes``. Default: the input's sizes, the
          last one ``2 * (a.shape[axes[-1]] - 1)``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: ``[-2, -1]``.

    Returns:
        array: The real inverse DFT (float32).
    """
    return _transform("irfft2", a, s, axes, inverse=True, real=True)


def rfftn(a, s=None, axes=None, stream=None) -> array:
    """n-dimensional real discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: all axes.

    Returns:
        array: The DFT; the last transformed axis becomes ``s[-1] // 2 + 1`` long (complex64).
    """
    return _transform("rfftn", a, s, axes, inverse=False, real=True)


def irfftn(a, s=None, axes=None, stream=None) -> array:
    """The inverse of :func:`rfftn`.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the real output along ``axes``. Default: the input's sizes, the
          last one ``2 * (a.shape[axes[-1]] - 1)``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: all axes.

    Returns:
        array: The real inverse DFT (float32).
    """
    return _transform("irfftn", a, s, axes, inverse=True, real=True)


def _shift(op: str, a, axes, sign: int) -> array:
    a = ops.to_array(a, op=op)
    if axes is None:
        axes = range(a.ndim)
    elif isinstance(axes, int):
        axes = (axes,)
    axes = _normalised_axes(op, tuple(axes), a.ndim)
    if not axes or a.size == 0:
        return a
    return ops.roll(a, [sign * (a.shape[ax] // 2) for ax in axes], axes)


def fftshift(a, axes=None, stream=None) -> array:
    """Shift the zero-frequency component to the center of the spectrum.

    Args:
        a (array): The input array.
        axes (int or list(int), optional): Axes to shift. Default: all axes.

    Returns:
        array: The shifted array.
    """
    return _shift("fftshift", a, axes, 1)


def ifftshift(a, axes=None, stream=None) -> array:
    """The inverse of :func:`fftshift`.

    Args:
        a (array): The input array.
        axes (int or list(int), optional): Axes to shift. Default: all axes.

    Returns:
        array: The shifted array.
    """
    return _shift("ifftshift", a, axes, -1)


def _check_window_length(op: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"[{op}] `n` must be a positive integer, got {n!r}.")
    return int(n)


def fftfreq(n: int, d: float = 1.0, stream=None) -> array:
    """Return the discrete Fourier Transform sample frequencies.

    Args:
        n (int): Window length.
        d (float, optional): Sample spacing. Default: ``1.0``.

    Returns:
        array: The sample frequencies ``[0, 1, ..., -2, -1] / (d * n)``, one-dimensional, ``float32``.
    """
    n = _check_window_length("fftfreq", n)
    bins = np.concatenate([np.arange((n + 1) // 2), np.arange(-(n // 2), 0)])
    return array((bins / (d * n)).astype(np.float32))


def rfftfreq(n: int, d: float = 1.0, stream=None) -> array:
    """Return the sample frequencies of :func:`rfft` and :func:`irfft`: the non-negative ones.

    Args:
        n (int): Window length.
        d (float, optional): Sample spacing. Default: ``1.0``.

    Returns:
        array: ``[0, 1, ..., n // 2] / (d * n)``, one-dimensional, ``float32``.
    """
    n = _check_window_length("rfftfreq", n)
    return array((np.arange(n // 2 + 1) / (d * n)).astype(np.float32))
