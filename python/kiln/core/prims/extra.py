"""Primitives for complex parts (real, imag, conj) and reinterpreting buffers (view, as_strided).

Registered when `core/ops_extra.py` is imported. None of them fuses: they run on the interpreter.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import OTHER, Primitive, register


def _bind(name, *xs, **params):
    from ..array import bind

    return bind(name, *xs, **params)


def _ops():
    from .. import ops

    return ops


def _same_bdim(name):
    """vmap for primitives that act on each element independently: the batch axis stays where it is."""

    def rule(inputs, bdims, params):
        return _bind(name, inputs[0], **params), bdims[0]

    return rule


def _real_dtype(x):
    return dt.float32 if x.dtype == dt.complex64 else x.dtype


def _as_complex(x):
    return _ops().astype(x, dt.complex64)


def _real_vjp(ct, out, inputs, params):
    # real(x) of a real x is the identity; keep the cotangent's precision then
    return (_as_complex(ct) if inputs[0].dtype == dt.complex64 else ct,)


def _imag_vjp(ct, out, inputs, params):
    # d imag(z) / dz pulls a real cotangent c back to the complex cotangent i*c; a real x has imag(x) = 0
    if inputs[0].dtype != dt.complex64:
        return (None,)
    return (_ops().multiply(_as_complex(ct), 1j),)


register(Primitive(
    "real", OTHER, impl=lambda x: np.ascontiguousarray(np.real(x)),
    shape_rule=lambda x: (tuple(x.shape), _real_dtype(x)),
    vjp=_real_vjp,
    jvp=lambda t, out, inputs, params: _bind("real", t[0]),
    vmap=_same_bdim("real"),
    rank_agnostic=True,
))


def _imag_impl(x):
    if np.iscomplexobj(x):
        return np.ascontiguousarray(np.imag(x))
    return np.zeros(x.shape, x.dtype)


register(Primitive(
    "imag", OTHER, impl=_imag_impl,
    shape_rule=lambda x: (tuple(x.shape), _real_dtype(x)),
    vjp=_imag_vjp,
    jvp=lambda t, out, inputs, params: _bind("imag", t[0]),
    vmap=_same_bdim("imag"),
    rank_agnostic=True,
))

register(Primitive(
    "conjugate", OTHER, impl=lambda x: np.conjugate(x),
    shape_rule=lambda x: (tuple(x.shape), x.dtype),
    vjp=lambda ct, out, inputs, params: (_bind("conjugate", ct),),
    jvp=lambda t, out, inputs, params: _bind("conjugate", t[0]),
    vmap=_same_bdim("conjugate"),
    rank_agnostic=True,
))


# -- view: reinterpret the bytes of each row as another dtype -------------------------------------------
def view_shape(shape: tuple, src: dt.Dtype, dst: dt.Dtype, op: str = "view") -> tuple:
    if src.size == dst.size:
        return tuple(shape)
    if not shape:
        raise ValueError(f"[{op}] Changing the type of a scalar is only allowed for types with the same size.")
    row_bytes = shape[-1] * src.size
    if row_bytes % dst.size != 0:
        raise ValueError(f"[{op}] When viewing as a larger dtype, the size in bytes of the last axis must be a "
                         "multiple of the requested type size.")
    return tuple(shape[:-1]) + (row_bytes // dst.size,)


def _view_impl(x, dtype):
    if x.ndim == 0:  # (np.ascontiguousarray would return a 1-d array)
        return x.reshape(1).view(dtype.np).reshape(())
    return np.ascontiguousarray(x).view(dtype.np)


def _view_vmap(inputs, bdims, params):
    x, b = inputs[0], bdims[0]
    if b == x.ndim - 1:
        # the batch axis must not be the one whose length changes
        x = _ops().moveaxis(x, b, 0)
        b = 0
    return _bind("view", x, **params), b


register(Primitive(
    "view", OTHER, impl=_view_impl,
    shape_rule=lambda x, dtype: (view_shape(tuple(x.shape), x.dtype, dtype), dtype),
    vmap=_view_vmap, differentiable=False,
))


# -- as_strided: a strided window over the row-contiguous buffer ----------------------------------------
def _as_strided_impl(x, shape, strides, offset):
    flat = np.ascontiguousarray(x).reshape(-1)
    item = flat.dtype.itemsize
    # The window starts at `offset`; negative strides walk back from there (the shape rule checked that
    # every element read lies inside the buffer).
    window = np.lib.stride_tricks.as_strided(flat[offset:], shape=shape,
                                             strides=tuple(s * item for s in strides), writeable=False)
    return np.array(window)


def _as_strided_rule(x, shape, strides, offset):
    size = int(np.prod(x.shape, dtype=np.int64))
    first = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
    empty = any(n == 0 for n in shape)
    if not empty and (first < 0 or last >= size):
        raise ValueError(f"[as_strided] The view with shape {tuple(shape)}, strides {tuple(strides)} and offset "
                         f"{offset} reads outside the input of {size} elements.")
    return tuple(shape), x.dtype


def _as_strided_vmap(inputs, bdims, params):
    # batch first: each item's buffer is then a contiguous run of item_size elements
    x = _ops().moveaxis(inputs[0], bdims[0], 0)
    item_size = int(np.prod(x.shape[1:], dtype=np.int64))
    return _bind("as_strided", x, shape=(x.shape[0],) + tuple(params["shape"]),
                 strides=(item_size,) + tuple(params["strides"]), offset=params["offset"]), 0


register(Primitive(
    "as_strided", OTHER, impl=_as_strided_impl, shape_rule=_as_strided_rule, vmap=_as_strided_vmap,
    differentiable=False,
))
