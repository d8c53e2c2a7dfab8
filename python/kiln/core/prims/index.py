"""Index primitives: `gather` (read x at index arrays along some axes) and the `scatter` family (write or
combine updates into x at such indices: set, add, multiply, maximum, minimum).

Both take their index arrays already broadcast to one shape B (ops broadcast, primitives never do):
`gather(x, *idx, axes)` has shape B + the non-indexed dims of x in order, and a scatter's `updates` has
exactly that shape. Indices may be negative (counted from the end); out-of-range ones raise IndexError
when the node is evaluated, never read or write past the buffer.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import INDEX, Primitive, register


class IndexOutOfRange(IndexError, ValueError):
    """An index outside its axis (an IndexError, as numpy raises, and a ValueError, as MLX raises)."""


def _ops():
    from .. import ops

    return ops


def _bind(name, *xs, **params):
    from ..array import bind

    return bind(name, *xs, **params)


# -- helpers shared by impls and rules -------------------------------------------------------------
def _rest_axes(ndim, axes):
    return [d for d in range(ndim) if d not in axes]


def _check_indices(op, x, indices, axes):
    if not indices or len(indices) != len(axes):
        raise ValueError(f"[{op}] internal: expected one index array per axis, got {len(indices)} for {axes}.")
    if len(set(axes)) != len(axes) or any(not 0 <= a < len(x.shape) for a in axes):
        raise ValueError(f"[{op}] Invalid axes {tuple(axes)} for array with {len(x.shape)} dimensions.")
    for idx in indices:
        if not dt.is_integer(idx.dtype):
            raise ValueError(f"[{op}] Got indices with invalid dtype {idx.dtype}. Indices must be integral.")
        if tuple(idx.shape) != tuple(indices[0].shape):
            raise ValueError(f"[{op}] internal: index arrays must share a shape, got "
                             f"{tuple(indices[0].shape)} and {tuple(idx.shape)}.")
    return tuple(indices[0].shape)


def normalise_index(idx, size, axis, op):
    """Index array with negative entries wrapped; raises IndexOutOfRange for entries outside the axis."""
    idx = np.asarray(idx)
    if idx.dtype.kind == "u":
        bad = idx >= size
    else:
        bad = (idx < -size) | (idx >= size)
    if bad.any():
        first = idx[bad].flat[0]
        raise IndexOutOfRange(f"[{op}] Index {int(first)} is out of bounds for axis {axis} with size {size}.")
    idx = idx.astype(np.int64)
    return np.where(idx < 0, idx + size, idx)


def _front_view(x, axes):
    """x with the indexed axes moved to the front (in `axes` order), and the permutation used."""
    perm = list(axes) + _rest_axes(x.ndim, axes)
    return np.transpose(x, perm), perm


# -- gather ------------------------------------------------------------------------------------------
def _gather_rule(x, *indices, axes):
    batch = _check_indices("gather", x, indices, axes)
    rest = tuple(x.shape[d] for d in _rest_axes(len(x.shape), axes))
    return batch + rest, x.dtype


def _gather_impl(x, *indices, axes):
    idx = tuple(normalise_index(i, x.shape[a], a, "gather") for i, a in zip(indices, axes))
    front, _ = _front_view(x, axes)
    return front[idx]


def _gather_vjp(ct, out, inputs, params):
    x, indices = inputs[0], inputs[1:]
    zeros = _ops().zeros_like(x)
    return (_bind("scatter_add", zeros, ct, *indices, **params),) + (None,) * len(indices)


def _gather_jvp(t, out, inputs, params):
    if t[0] is None:
        return _ops().zeros_like(out)
    return _bind("gather", t[0], *inputs[1:], **params)


def _batch_indices(indices, bdims, size):
    """Index arrays with the batch dimension in front (unbatched ones broadcast), plus an iota over it."""
    ops = _ops()
    batch = tuple(next(i.shape[:b] + i.shape[b + 1:] for i, b in zip(indices, bdims) if b is not None))
    out = []
    for i, b in zip(indices, bdims):
        i = ops.moveaxis(i, b, 0) if b is not None else ops.expand_dims(i, 0)
        out.append(ops.broadcast_to(i, (size,) + batch))
    iota = ops.reshape(ops.arange(size, dtype=dt.int32), (size,) + (1,) * len(batch))
    return out, ops.broadcast_to(iota, (size,) + batch)


def _batch_size(inputs, bdims):
    return next(x.shape[b] for x, b in zip(inputs, bdims) if b is not None)


def _gather_vmap(inputs, bdims, params):
    ops = _ops()
    x, indices = inputs[0], inputs[1:]
    bx, bidx = bdims[0], bdims[1:]
    axes = tuple(params["axes"])
    if all(b is None for b in bidx):
        # Only x is batched: its batch axis becomes one more non-indexed axis, first of the rest.
        x = ops.moveaxis(x, bx, 0)
        return _bind("gather", x, *indices, axes=tuple(a + 1 for a in axes)), indices[0].ndim
    size = _batch_size(inputs, bdims)
    idx, iota = _batch_indices(indices, bidx, size)
    if bx is None:
        return _bind("gather", x, *idx, axes=axes), 0
    x = ops.moveaxis(x, bx, 0)
    return _bind("gather", x, iota, *idx, axes=(0,) + tuple(a + 1 for a in axes)), 0


register(Primitive(
    "gather", INDEX, impl=_gather_impl, shape_rule=_gather_rule, vjp=_gather_vjp, jvp=_gather_jvp,
    vmap=_gather_vmap,
    doc="x read at broadcast index arrays along `axes`: shape B + the other dims of x.",
))


# -- scatter family ----------------------------------------------------------------------------------
def _scatter_rule(name):
    def rule(x, updates, *indices, axes):
        batch = _check_indices(name, x, indices, axes)
        rest = tuple(x.shape[d] for d in _rest_axes(len(x.shape), axes))
        if tuple(updates.shape) != batch + rest:
            raise ValueError(f"[{name}] internal: updates of shape {tuple(updates.shape)} do not match the "
                             f"indexed shape {batch + rest}.")
        if updates.dtype != x.dtype:
            raise ValueError(f"[{name}] internal: updates must have the dtype of the array.")
        return tuple(x.shape), x.dtype

    return rule


_HALF = (np.dtype(np.float16), np.dtype(dt.bfloat16.np))


def _scatter_impl(name, combine):
    """combine is a numpy ufunc applied unbuffered (repeated indices accumulate), or None for set."""

    def impl(x, updates, *indices, axes):
        idx = tuple(normalise_index(i, x.shape[a], a, name) for i, a in zip(indices, axes))
        work_dtype = np.float32 if x.dtype in _HALF and combine is not None else x.dtype
        front, perm = _front_view(x, axes)
        out = np.array(front, dtype=work_dtype)  # a private, writable copy
        if combine is None:
            out[idx] = updates  # repeated indices: the last update wins
        else:
            combine.at(out, idx, np.asarray(updates, dtype=work_dtype))
        return np.transpose(out, np.argsort(perm)).astype(x.dtype, copy=False)

    return impl


def _zeros_if_none(t, like):
    return t if t is not None else _ops().zeros_like(like)


def _scatter_vmap(name):
    def rule(inputs, bdims, params):
        ops = _ops()
        x, upd, indices = inputs[0], inputs[1], inputs[2:]
        bx, bu, bidx = bdims[0], bdims[1], bdims[2:]
        axes = tuple(params["axes"])
        size = _batch_size(inputs, bdims)
        x = ops.moveaxis(x, bx, 0) if bx is not None else ops.broadcast_to(ops.expand_dims(x, 0),
                                                                           (size,) + tuple(x.shape))
        if all(b is None for b in bidx):
            # The batch axis of x is a non-indexed axis: updates carry it after the index dims B.
            nb = indices[0].ndim
            if bu is not None:
                upd = ops.moveaxis(upd, bu, nb)
            else:
                upd = ops.broadcast_to(ops.expand_dims(upd, nb), upd.shape[:nb] + (size,) + upd.shape[nb:])
            return _bind(name, x, upd, *indices, axes=tuple(a + 1 for a in axes)), 0
        idx, iota = _batch_indices(indices, bidx, size)
        upd = ops.moveaxis(upd, bu, 0) if bu is not None else ops.broadcast_to(ops.expand_dims(upd, 0),
                                                                               (size,) + tuple(upd.shape))
        return _bind(name, x, upd, iota, *idx, axes=(0,) + tuple(a + 1 for a in axes)), 0

    return rule


def _gathered(value, indices, params):
    return _bind("gather", value, *indices, **params)


# scatter (set): the overwritten slots of x get no gradient; each slot's cotangent goes to the update
# that won it (the last of repeated indices), found by scattering update positions the same way.
def _winners(upd, indices, params, like):
    ops = _ops()
    size = 1
    for s in upd.shape:
        size *= s
    position = ops.reshape(ops.arange(size, dtype=dt.int32), upd.shape)
    slots = _bind("scatter", ops.full(like.shape, -1, dt.int32), position, *indices, **params)
    return ops.equal(_gathered(slots, indices, params), position)


def _set_vjp(ct, out, inputs, params):
    ops = _ops()
    x, upd, indices = inputs[0], inputs[1], inputs[2:]
    ct_x = _bind("scatter", ct, ops.zeros_like(upd), *indices, **params)
    ct_u = ops.where(_winners(upd, indices, params, x), _gathered(ct, indices, params), ops.zeros_like(upd))
    return (ct_x, ct_u) + (None,) * len(indices)


def _set_jvp(t, out, inputs, params):
    x, upd, indices = inputs[0], inputs[1], inputs[2:]
    return _bind("scatter", _zeros_if_none(t[0], x), _zeros_if_none(t[1], upd), *indices, **params)


# scatter_add: out = x + (sum of the updates at each slot).
def _add_vjp(ct, out, inputs, params):
    indices = inputs[2:]
    return (ct, _gathered(ct, indices, params)) + (None,) * len(indices)


def _add_jvp(t, out, inputs, params):
    x, upd, indices = inputs[0], inputs[1], inputs[2:]
    return _bind("scatter_add", _zeros_if_none(t[0], x), _zeros_if_none(t[1], upd), *indices, **params)


# scatter_multiply: out = x * (product of the updates at each slot).
def _mul_vjp(ct, out, inputs, params):
    upd, indices = inputs[1], inputs[2:]
    ct_x = _bind("scatter_multiply", ct, upd, *indices, **params)
    # d out / d u_k = out / u_k at u_k's slot (as MLX and JAX, this divides by the update).
    ct_u = _gathered(ct * out, indices, params) / upd
    return (ct_x, ct_u) + (None,) * len(indices)


def _mul_jvp(t, out, inputs, params):
    x, upd, indices = inputs[0], inputs[1], inputs[2:]
    parts = []
    if t[0] is not None:
        parts.append(_bind("scatter_multiply", t[0], upd, *indices, **params))
    if t[1] is not None:
        rel = _bind("scatter_add", _ops().zeros_like(x), t[1] / upd, *indices, **params)
        parts.append(out * rel)
    if not parts:
        return _ops().zeros_like(out)
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


# scatter_maximum / scatter_minimum: the gradient goes to whichever value won (all of them on a tie).
def _extremum_vjp(ct, out, inputs, params):
    ops = _ops()
    x, upd, indices = inputs[0], inputs[1], inputs[2:]
    zero = ops.zeros_like(ct)
    ct_x = ops.where(ops.equal(out, x), ct, zero)
    won = ops.equal(_gathered(out, indices, params), upd)
    ct_u = ops.where(won, _gathered(ct, indices, params), ops.zeros_like(upd))
    return (ct_x, ct_u) + (None,) * len(indices)


def _extremum_jvp(t, out, inputs, params):
    ops = _ops()
    x, upd, indices = inputs[0], inputs[1], inputs[2:]
    tx = _zeros_if_none(t[0], x)
    tu = _zeros_if_none(t[1], upd)
    won = ops.equal(_gathered(out, indices, params), upd)
    from_updates = _bind("scatter_add", ops.zeros_like(x), ops.where(won, tu, ops.zeros_like(tu)), *indices,
                         **params)
    return ops.where(ops.equal(out, x), tx, from_updates)


for _name, _combine, _vjp, _jvp in (
    ("scatter", None, _set_vjp, _set_jvp),
    ("scatter_add", np.add, _add_vjp, _add_jvp),
    ("scatter_multiply", np.multiply, _mul_vjp, _mul_jvp),
    ("scatter_maximum", np.maximum, _extremum_vjp, _extremum_jvp),
    ("scatter_minimum", np.minimum, _extremum_vjp, _extremum_jvp),
):
    register(Primitive(
        _name, INDEX, impl=_scatter_impl(_name, _combine), shape_rule=_scatter_rule(_name), vjp=_vjp, jvp=_jvp,
        vmap=_scatter_vmap(_name),
        doc="x with updates combined in at broadcast index arrays along `axes` (repeated indices accumulate).",
    ))
del _name, _combine, _vjp, _jvp
