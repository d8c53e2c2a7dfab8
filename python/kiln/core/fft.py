"""The `mx.fft` namespace: MLX's Fourier transforms and shifts, with MLX's names, defaults, dtypes and errors.

Every transform checks its arguments, crops or zero-pads the input to the requested sizes and binds the one
`fft` primitive (prims/fft.py); the shifts are rolls.
"""

from __future__ import annotations

import math

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


_NORMS = ("backward", "ortho", "forward")


def _norm_factor(norm: str, n: int, inverse: bool) -> float:
    """What the unnormalised (forward) or 1/n-normalised (inverse) transform is multiplied by for `norm`."""
    if norm == "ortho":
        return n ** 0.5 if inverse else n ** -0.5
    if norm == "forward":
        return float(n) if inverse else 1.0 / n
    return 1.0


def _normalised_axes(op: str, axes, ndim: int) -> tuple:
    out = []
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"[{op}] Invalid axis {ax} for an array with {ndim} dimensions.")
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"[{op}] Duplicated axis received {tuple(axes)}.")
    return tuple(out)


def _transform(op: str, a, s, axes, inverse: bool, real: bool, norm: str = "backward") -> array:
    """Check the arguments, fit the input to the sizes `s` along `axes`, bind the primitive, then scale for
    `norm` (the primitive is unnormalised forward and 1/n-normalised inverse: numpy's "backward")."""
    if norm not in _NORMS:
        raise ValueError(f"[{op}] Invalid norm. Expected one of {{'backward', 'ortho', 'forward'}}, got {norm!r}.")
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
    out = bind("fft", a, axes=axes, inverse=inverse, real=real, last=s[-1] if real and inverse else 0)
    factor = _norm_factor(norm, math.prod(s), inverse)
    return out if factor == 1.0 else out * factor


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


def fft(a, n=None, axis=-1, norm: str = "backward", stream=None) -> array:
    """One dimensional discrete Fourier Transform.

    Args:
        a (array): The input array.
        n (int, optional): Size of the transformed axis: the input is cropped or zero-padded to it.
          Default: ``a.shape[axis]``.
        axis (int, optional): Axis along which to perform the FFT. Default: ``-1``.
        norm (str, optional): ``"backward"`` (no scaling forward, ``1/n`` inverse), ``"ortho"`` or
          ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The DFT of the input along the given axis (complex64).
    """
    return _transform("fft", a, *_one_axis(n, axis), inverse=False, real=False, norm=norm)


def ifft(a, n=None, axis=-1, norm: str = "backward", stream=None) -> array:
    """One dimensional inverse discrete Fourier Transform.

    Args:
        a (array): The input array.
        n (int, optional): Size of the transformed axis. Default: ``a.shape[axis]``.
        axis (int, optional): Axis along which to perform the inverse FFT. Default: ``-1``.
        norm (str, optional): ``"backward"`` (no scaling forward, ``1/n`` inverse), ``"ortho"`` or
          ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The inverse DFT of the input along the given axis (complex64).
    """
    return _transform("ifft", a, *_one_axis(n, axis), inverse=True, real=False, norm=norm)


def fft2(a, s=None, axes=(-2, -1), norm: str = "backward", stream=None) -> array:
    """Two dimensional discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: ``[-2, -1]``.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The DFT of the input along the given axes (complex64).
    """
    return _transform("fft2", a, s, axes, inverse=False, real=False, norm=norm)


def ifft2(a, s=None, axes=(-2, -1), norm: str = "backward", stream=None) -> array:
    """Two dimensional inverse discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: ``[-2, -1]``.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The inverse DFT of the input along the given axes (complex64).
    """
    return _transform("ifft2", a, s, axes, inverse=True, real=False, norm=norm)


def fftn(a, s=None, axes=None, norm: str = "backward", stream=None) -> array:
    """n-dimensional discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: all axes (``s`` then
          needs ``axes``).
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The DFT of the input along the given axes (complex64).
    """
    return _transform("fftn", a, s, axes, inverse=False, real=False, norm=norm)


def ifftn(a, s=None, axes=None, norm: str = "backward", stream=None) -> array:
    """n-dimensional inverse discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: all axes.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The inverse DFT of the input along the given axes (complex64).
    """
    return _transform("ifftn", a, s, axes, inverse=True, real=False, norm=norm)


def rfft(a, n=None, axis=-1, norm: str = "backward", stream=None) -> array:
    """One dimensional discrete Fourier Transform on a real input.

    Args:
        a (array): The input array (a complex input is cast to real, as MLX).
        n (int, optional): Size of the transformed axis. Default: ``a.shape[axis]``.
        axis (int, optional): Axis along which to perform the FFT. Default: ``-1``.
        norm (str, optional): ``"backward"`` (no scaling forward, ``1/n`` inverse), ``"ortho"`` or
          ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The DFT along the axis, whose size becomes ``n // 2 + 1`` (complex64).
    """
    return _transform("rfft", a, *_one_axis(n, axis), inverse=False, real=True, norm=norm)


def irfft(a, n=None, axis=-1, norm: str = "backward", stream=None) -> array:
    """The inverse of :func:`rfft`.

    Args:
        a (array): The input array (half spectrum).
        n (int, optional): Size of the real output along the axis; the input is cropped or zero-padded to
          ``n // 2 + 1``. Default: ``2 * (a.shape[axis] - 1)``.
        axis (int, optional): Axis along which to perform the inverse FFT. Default: ``-1``.
        norm (str, optional): ``"backward"`` (no scaling forward, ``1/n`` inverse), ``"ortho"`` or
          ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The real inverse DFT along the axis (float32).
    """
    return _transform("irfft", a, *_one_axis(n, axis), inverse=True, real=True, norm=norm)


def rfft2(a, s=None, axes=(-2, -1), norm: str = "backward", stream=None) -> array:
    """Two dimensional real discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: ``[-2, -1]``.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The DFT; the last transformed axis becomes ``s[-1] // 2 + 1`` long (complex64).
    """
    return _transform("rfft2", a, s, axes, inverse=False, real=True, norm=norm)


def irfft2(a, s=None, axes=(-2, -1), norm: str = "backward", stream=None) -> array:
    """The inverse of :func:`rfft2`.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the real output along ``axes``. Default: the input's sizes, the
          last one ``2 * (a.shape[axes[-1]] - 1)``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: ``[-2, -1]``.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The real inverse DFT (float32).
    """
    return _transform("irfft2", a, s, axes, inverse=True, real=True, norm=norm)


def rfftn(a, s=None, axes=None, norm: str = "backward", stream=None) -> array:
    """n-dimensional real discrete Fourier Transform.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the transformed axes. Default: the input's sizes along ``axes``.
        axes (list(int), optional): Axes along which to perform the FFT. Default: all axes.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The DFT; the last transformed axis becomes ``s[-1] // 2 + 1`` long (complex64).
    """
    return _transform("rfftn", a, s, axes, inverse=False, real=True, norm=norm)


def irfftn(a, s=None, axes=None, norm: str = "backward", stream=None) -> array:
    """The inverse of :func:`rfftn`.

    Args:
        a (array): The input array.
        s (list(int), optional): Sizes of the real output along ``axes``. Default: the input's sizes, the
          last one ``2 * (a.shape[axes[-1]] - 1)``.
        axes (list(int), optional): Axes along which to perform the inverse FFT. Default: all axes.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.

    Returns:
        array: The real inverse DFT (float32).
    """
    return _transform("irfftn", a, s, axes, inverse=True, real=True, norm=norm)


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


def _frame_window(op: str, n_fft: int, win_length, window) -> array:
    """The analysis window, centred and zero-padded to n_fft (a rectangular one by default)."""
    win_length = n_fft if win_length is None else int(win_length)
    if not 0 < win_length <= n_fft:
        raise ValueError(f"[{op}] win_length must be in (0, n_fft], got {win_length} with n_fft={n_fft}.")
    window = ops.ones((win_length,)) if window is None else ops.to_array(window, op=op)
    if window.ndim != 1 or window.shape[0] != win_length:
        raise ValueError(f"[{op}] window must be one-dimensional of length win_length={win_length}, got shape "
                         f"{tuple(window.shape)}.")
    left = (n_fft - win_length) // 2
    return ops.pad(window, [(left, n_fft - win_length - left)])


def _check_stft_sizes(op: str, n_fft, hop_length, norm) -> tuple:
    if n_fft <= 0:
        raise ValueError(f"[{op}] n_fft must be positive, got {n_fft}.")
    hop_length = max(n_fft // 4, 1) if hop_length is None else int(hop_length)
    if hop_length <= 0:
        raise ValueError(f"[{op}] hop_length must be positive, got {hop_length}.")
    if norm not in _NORMS:
        raise ValueError(f"[{op}] norm must be one of {_NORMS}, got {norm!r}.")
    return int(n_fft), hop_length


def stft(x, n_fft: int = 2048, hop_length=None, win_length=None, window=None, center: bool = True,
         pad_mode: str = "reflect", norm: str = "backward", onesided=None, stream=None) -> array:
    """Short-Time Fourier Transform.

    Splits the last axis of ``x`` into overlapping frames of length ``n_fft``, applies ``window``, and takes
    the Fourier Transform of each frame.

    Args:
        x (array): The input array.
        n_fft (int, optional): Size of the Fourier Transform. Default: ``2048``.
        hop_length (int, optional): Samples between frames. Default: ``n_fft // 4``.
        win_length (int, optional): Window size. Default: ``n_fft``.
        window (array, optional): A one-dimensional window, centered and zero-padded to ``n_fft``.
          Default: a rectangular window.
        center (bool, optional): Pad both ends by ``n_fft // 2`` so frames are centered. Default: ``True``.
        pad_mode (str, optional): ``"reflect"``, ``"constant"`` or ``"edge"``, used when ``center``.
          Default: ``"reflect"``.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.
        onesided (bool, optional): Return only non-negative frequencies. Default: ``True`` for real input,
          ``False`` for complex input.

    Returns:
        array: The STFT, complex, of shape ``(..., n_freq, n_frames)``.
    """
    x = ops.to_array(x, op="stft")
    n_fft, hop_length = _check_stft_sizes("stft", n_fft, hop_length, norm)
    if x.ndim < 1:
        raise ValueError("[stft] The input must have at least one dimension.")
    if pad_mode not in ("reflect", "constant", "edge"):
        raise ValueError(f"[stft] pad_mode must be 'reflect', 'constant' or 'edge', got {pad_mode!r}.")
    is_complex = x.dtype == dt.complex64
    onesided = not is_complex if onesided is None else bool(onesided)
    if onesided and is_complex:
        raise ValueError("[stft] onesided=True needs a real input.")
    if not is_complex:
        x = ops.astype(x, dt.float32)
    window = ops.astype(_frame_window("stft", n_fft, win_length, window), x.dtype)
    if center:
        widths = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x = ops.pad(x, widths, mode=pad_mode)
    length = x.shape[-1]
    if length < n_fft:
        raise ValueError(f"[stft] The input (length {length} after padding) is shorter than n_fft={n_fft}.")
    n_frames = 1 + (length - n_fft) // hop_length
    starts = ops.arange(0, n_frames * hop_length, hop_length)
    frames = ops.take(x, starts[:, None] + ops.arange(n_fft)[None, :], axis=-1) * window
    spectrum = (rfft if onesided else fft)(frames, axis=-1) * _norm_factor(norm, n_fft, inverse=False)
    return ops.swapaxes(spectrum, -1, -2)


def istft(stft_matrix, n_fft=None, hop_length=None, win_length=None, window=None, center: bool = True,
          norm: str = "backward", onesided=None, length=None, stream=None) -> array:
    """Inverse Short-Time Fourier Transform: overlap-adds the windowed inverse transform of each frame,
    normalized by the squared-window envelope.

    Args:
        stft_matrix (array): The STFT, of shape ``(..., n_freq, n_frames)``.
        n_fft (int, optional): Size of the Fourier Transform. Default: inferred from ``n_freq`` and
          ``onesided`` (even when onesided; pass ``n_fft`` for an odd size).
        hop_length (int, optional): Samples between frames. Default: ``n_fft // 4``.
        win_length (int, optional): Window size. Default: ``n_fft``.
        window (array, optional): A one-dimensional window. Default: a rectangular window.
        center (bool, optional): Whether the STFT was centered. Default: ``True``.
        norm (str, optional): ``"backward"``, ``"ortho"`` or ``"forward"``. Default: ``"backward"``.
        onesided (bool, optional): Whether the STFT has only non-negative frequencies. Default: ``True``.
        length (int, optional): Trim or zero-pad the output to this length.

    Returns:
        array: The reconstructed signal (real when ``onesided``).
    """
    spectrum = ops.astype(ops.to_array(stft_matrix, op="istft"), dt.complex64)
    if spectrum.ndim < 2:
        raise ValueError("[istft] The STFT must have at least two dimensions (n_freq, n_frames).")
    onesided = True if onesided is None else bool(onesided)
    n_freq, n_frames = spectrum.shape[-2], spectrum.shape[-1]
    if n_fft is None:
        n_fft = 2 * (n_freq - 1) if onesided else n_freq
    n_fft, hop_length = _check_stft_sizes("istft", int(n_fft), hop_length, norm)
    expected = n_fft // 2 + 1 if onesided else n_fft
    if n_freq != expected:
        raise ValueError(f"[istft] {n_freq} frequencies do not match n_fft={n_fft} (expected {expected}).")
    columns = ops.swapaxes(spectrum, -1, -2)
    frames = irfft(columns, n=n_fft, axis=-1) if onesided else ifft(columns, axis=-1)
    window = _frame_window("istft", n_fft, win_length, window)
    frames = frames * ops.astype(window, frames.dtype) * _norm_factor(norm, n_fft, inverse=True)
    total = n_fft + hop_length * (n_frames - 1)
    positions = ops.reshape(ops.arange(0, n_frames * hop_length, hop_length)[:, None] + ops.arange(n_fft)[None, :],
                            (-1,))
    lead = frames.shape[:-2]
    flat = ops.reshape(frames, (-1, n_frames * n_fft))
    signal = ops.zeros((flat.shape[0], total), dtype=flat.dtype).at[:, positions].add(flat)
    envelope = ops.zeros((total,)).at[positions].add(ops.reshape(ops.broadcast_to(window * window,
                                                                                  (n_frames, n_fft)), (-1,)))
    signal = signal / ops.astype(ops.where(envelope > 1e-11, envelope, 1.0), signal.dtype)
    signal = ops.reshape(signal, lead + (total,))
    start = n_fft // 2 if center else 0
    stop = total - n_fft // 2 if center else total
    if length is not None:
        stop = start + int(length)
    signal = signal[..., start:min(stop, total)]
    if length is not None and signal.shape[-1] < length:
        signal = ops.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, int(length) - signal.shape[-1])])
    return signal
