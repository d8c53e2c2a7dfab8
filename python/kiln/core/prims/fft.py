"""The discrete Fourier transform primitive: complex-to-complex, real-to-complex and complex-to-real, over any
set of axes, unnormalised forward and 1/n-normalised inverse (numpy's "backward" norm, as MLX).

One record, as MLX's FFT primitive: `axes` (non-negative, distinct), `inverse`, `real`, and `last` (the real
output's length along the last axis of a complex-to-real transform, which the input alone cannot tell; 0
otherwise). Padding and cropping to the requested sizes happen in ops (core/fft.py), so the primitive is
strict. The reference is scipy.fft (pocketfft), computed in double precision and rounded once.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from .. import dtypes as dt
from ..primitives import OTHER, Primitive, register


def _ops():
    from .. import ops

    return ops


def _real(x):
    from ..ops_extra import real

    return real(x)


def _bind(x, **params):
    from ..array import bind

    return bind("fft", x, **params)


def _fft_rule(a, axes, inverse, real, last):
    if not axes or len(set(axes)) != len(axes) or any(not 0 <= ax < len(a.shape) for ax in axes):
        raise ValueError(f"[fft] internal: invalid axes {axes} for an input of shape {tuple(a.shape)}.")
    shape = list(a.shape)
    if real and inverse:
        if a.dtype != dt.complex64 or shape[axes[-1]] != last // 2 + 1:
            raise ValueError(f"[fft] A complex-to-real transform of length {last} needs a complex64 input with "
                             f"{last // 2 + 1} entries on axis {axes[-1]}, got {a.dtype} {tuple(a.shape)}.")
        shape[axes[-1]] = last
        return tuple(shape), dt.float32
    if real:
        if not dt.is_floating(a.dtype) or a.dtype == dt.complex64:
            raise ValueError(f"[fft] A real-to-complex transform needs a real floating input, got {a.dtype}.")
        shape[axes[-1]] = shape[axes[-1]] // 2 + 1
        return tuple(shape), dt.complex64
    if a.dtype != dt.complex64:
        raise ValueError(f"[fft] A complex transform needs a complex64 input, got {a.dtype}.")
    return tuple(shape), dt.complex64


def _fft_impl(x, axes, inverse, real, last):
    axes = list(axes)
    if real and inverse:
        sizes = [x.shape[ax] for ax in axes[:-1]] + [last]
        return scipy.fft.irfftn(x.astype(np.complex128), s=sizes, axes=axes).astype(np.float32)
    if real:
        return scipy.fft.rfftn(x.astype(np.float64), axes=axes).astype(np.complex64)
    transform = scipy.fft.ifftn if inverse else scipy.fft.fftn
    return transform(x.astype(np.complex128), axes=axes).astype(np.complex64)


def _fft_jvp(tangents, out, inputs, params):
    # Every variant is linear in its input (the real ones over the reals), so the tangent is transformed alike.
    (t,) = tangents
    ops = _ops()
    if params["real"] and not params["inverse"]:
        t = ops.astype(t, inputs[0].dtype)
    else:
        t = ops.astype(t, dt.complex64)
    return _bind(t, **params)


def _fft_vjp(ct, out, inputs, params):
    # MLX's convention: the cotangent map is the adjoint (conjugate transpose) of the linear transform.
    ops = _ops()
    (x,) = inputs
    axes, inverse, real = params["axes"], params["inverse"], params["real"]
    if real and inverse:
        # irfft = (1/n) * (hermitian extension, then inverse DFT): its adjoint is a forward DFT of the cotangent,
        # cropped to the half spectrum, with the bins that stand for two conjugate bins counted twice.
        n = math.prod(out.shape[ax] for ax in axes)
        spectrum = _bind(ops.astype(ct, dt.complex64), axes=axes, inverse=False, real=False, last=0)
        keep = x.shape[axes[-1]]
        cropped = spectrum[tuple(slice(None) if ax != axes[-1] else slice(0, keep) for ax in range(x.ndim))]
        weights = np.full(keep, 2.0, np.float32)
        weights[0] = 1.0
        if params["last"] % 2 == 0:
            weights[-1] = 1.0
        weights = weights.reshape([keep if ax == axes[-1] else 1 for ax in range(x.ndim)]) / n
        from ..array import array

        return (ops.multiply(cropped, array(weights.astype(np.complex64))),)
    if real:
        # rfft keeps the first n//2+1 bins of a full DFT of a real signal: pad the cotangent back, apply the
        # adjoint of the full DFT (n * ifft), keep the real part (the input is real).
        n = math.prod(x.shape[ax] for ax in axes)
        widths = [(0, 0)] * x.ndim
        widths[axes[-1]] = (0, x.shape[axes[-1]] - ct.shape[axes[-1]])
        full = ops.pad(ops.astype(ct, dt.complex64), widths)
        back = _bind(full, axes=axes, inverse=True, real=False, last=0)
        return (ops.astype(_real(back) * n, x.dtype),)
    n = math.prod(x.shape[ax] for ax in axes)
    back = _bind(ops.astype(ct, dt.complex64), axes=axes, inverse=not inverse, real=False, last=0)
    return (back * (1.0 / n if inverse else float(n)),)


def _fft_vmap(inputs, bdims, params):
    (x,), (d,) = inputs, bdims
    x = _ops().moveaxis(x, d, 0)
    return _bind(x, **dict(params, axes=tuple(ax + 1 for ax in params["axes"]))), 0


register(Primitive("fft", OTHER, _fft_impl, _fft_rule, _fft_vjp, _fft_jvp, _fft_vmap,
                   doc="Discrete Fourier transform over `axes` (c2c, r2c or c2r)."))
