"""Linear-algebra primitives: matmul (batched, broadcasting leading dimensions)."""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import OTHER, Primitive, register
from .elementwise import _HALF, _conj, broadcast_shapes


def _ops():
    from .. import ops

    return ops


def _matmul_rule(a, b):
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ValueError("[matmul] internal: operands must be at least 2-D (ops adds the missing axes)")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"[matmul] Last dimension of first input with shape {tuple(a.shape)} must match second to last "
            f"dimension of second input with shape {tuple(b.shape)}.")
    if a.dtype != b.dtype:
        raise ValueError("[matmul] internal: operands must share a dtype")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], op="matmul")
    return batch + (a.shape[-2], b.shape[-1]), a.dtype


def _matmul_impl(a, b):
    if a.dtype in _HALF:
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
    return np.matmul(a, b)


def _matmul_vjp(ct, out, inputs, params):
    from .elementwise import unbroadcast

    ops = _ops()
    a, b = inputs
    a, b = _conj(a), _conj(b)  # complex cotangents flow through the conjugate derivative, as in MLX
    ga = ops.matmul(ct, ops.swapaxes(b, -1, -2))
    gb = ops.matmul(ops.swapaxes(a, -1, -2), ct)
    return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)


def _matmul_jvp(tangents, out, inputs, params):
    ops = _ops()
    a, b = inputs
    ta, tb = tangents
    parts = []
    if ta is not None:
        parts.append(ops.matmul(ta, b))
    if tb is not None:
        parts.append(ops.matmul(a, tb))
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def _matmul_vmap(inputs, bdims, params):
    from ..array import bind

    ops = _ops()
    a, b = inputs
    ba, bb = bdims
    size = a.shape[ba] if ba is not None else b.shape[bb]
    rank = max(x.ndim - (d is not None) for x, d in zip(inputs, bdims))
    moved = []
    for x, d in zip(inputs, bdims):
        if d is None:
            x = ops.reshape(x, (1,) * (rank - x.ndim + 1) + tuple(x.shape))
        else:
            x = ops.moveaxis(x, d, 0)
            x = ops.reshape(x, (size,) + (1,) * (rank - (x.ndim - 1)) + tuple(x.shape[1:]))
        moved.append(x)
    return bind("matmul", *moved), 0


register(Primitive("matmul", OTHER, _matmul_impl, _matmul_rule, _matmul_vjp, _matmul_jvp, _matmul_vmap))
