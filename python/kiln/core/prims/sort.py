"""Sorting primitives: sort, argsort, partition, argpartition along one (normalised) axis, and searchsorted.

Each value primitive is defined as "its arg-twin's permutation applied to the input", so the value and the
index forms always agree (on ties too) and gradients route through the same permutation.
Sorts are stable and place NaN last, as MLX's do.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import OTHER, Primitive, register
from .elementwise import _HALF


def _ops():
    from .. import ops

    return ops


def _bind(name, *xs, **params):
    from ..array import bind

    return bind(name, *xs, **params)


def _sort_key(x):
    # numpy cannot order bfloat16 (and orders float16 slowly); both widen to float32 exactly.
    return x.astype(np.float32) if x.dtype in _HALF else x


def _argsort_impl(x, axis):
    return np.argsort(_sort_key(x), axis=axis, kind="stable").astype(np.uint32)


def _argpartition_impl(x, axis, kth):
    if x.shape[axis] == 0:
        return np.zeros(x.shape, np.uint32)
    return np.argpartition(_sort_key(x), kth, axis=axis).astype(np.uint32)


def _sort_impl(x, axis):
    return np.take_along_axis(x, _argsort_impl(x, axis).astype(np.intp), axis)


def _partition_impl(x, axis, kth):
    return np.take_along_axis(x, _argpartition_impl(x, axis, kth).astype(np.intp), axis)


# -- shape rules ---------------------------------------------------------------------------------------
def _check_axis(name, x, axis):
    nd = len(x.shape)
    if not 0 <= axis < nd:
        raise ValueError(f"[{name}] internal: axis {axis} is not normalised for array with {nd} dimensions.")


def _check_kth(name, x, axis, kth):
    n = x.shape[axis]
    if not (-n <= kth < n) and n > 0:
        raise ValueError(f"[{name}] Received invalid kth {kth} along axis {axis} for array with shape: "
                         f"{tuple(x.shape)}.")


def _value_rule(name, with_kth):
    def rule(x, axis, kth=None):
        _check_axis(name, x, axis)
        if with_kth:
            _check_kth(name, x, axis, kth)
        return tuple(x.shape), x.dtype

    return rule


def _index_rule(name, with_kth):
    def rule(x, axis, kth=None):
        _check_axis(name, x, axis)
        if with_kth:
            _check_kth(name, x, axis, kth)
        return tuple(x.shape), dt.uint32

    return rule


# -- transforms ----------------------------------------------------------------------------------------
def _permutation(inputs, params, index_prim):
    """The uint32 permutation the value primitive applied (its arg-twin, without gradient)."""
    ops = _ops()
    x = ops.stop_gradient(inputs[0])
    return _bind(index_prim, x, **params)


def _take(x, idx, axis):
    return _ops().take_along_axis(x, idx, axis=axis)


def _value_vjp(index_prim):
    def vjp(ct, out, inputs, params):
        # out = x[perm] along the axis, so x's cotangent is ct[perm^-1]; argsort of a permutation inverts it.
        perm = _permutation(inputs, params, index_prim)
        inverse = _bind("argsort", perm, axis=params["axis"])
        return (_take(ct, inverse, params["axis"]),)

    return vjp


def _value_jvp(index_prim):
    def jvp(tangents, out, inputs, params):
        perm = _permutation(inputs, params, index_prim)
        return _take(tangents[0], perm, params["axis"])

    return jvp


def _vmap(name):
    def rule(inputs, bdims, params):
        x = _ops().moveaxis(inputs[0], bdims[0], 0)
        p = dict(params)
        p["axis"] = params["axis"] + 1
        return _bind(name, x, **p), 0

    return rule


def _index_vjp(name):
    # Indices are piecewise constant in the input: their derivative is zero almost everywhere.
    def vjp(ct, out, inputs, params):
        return (None,)

    return vjp


def _index_jvp(tangents, out, inputs, params):
    return _ops().zeros_like(out)


register(Primitive("sort", OTHER, _sort_impl, _value_rule("sort", False), _value_vjp("argsort"),
                   _value_jvp("argsort"), _vmap("sort"), doc="stable ascending sort along `axis`, NaN last"))
register(Primitive("argsort", OTHER, _argsort_impl, _index_rule("argsort", False), _index_vjp("argsort"),
                   _index_jvp, _vmap("argsort"), differentiable=False,
                   doc="the uint32 permutation that sorts along `axis` (stable)"))
register(Primitive("partition", OTHER, _partition_impl, _value_rule("partition", True), _value_vjp("argpartition"),
                   _value_jvp("argpartition"), _vmap("partition"),
                   doc="element `kth` in sorted place, smaller before it, larger after it"))
register(Primitive("argpartition", OTHER, _argpartition_impl, _index_rule("argpartition", True),
                   _index_vjp("argpartition"), _index_jvp, _vmap("argpartition"), differentiable=False,
                   doc="the uint32 permutation that partitions along `axis` around `kth`"))


# -- searchsorted ---------------------------------------------------------------------------------------
def _searchsorted_impl(sequence, values, right):
    # numpy's order is sort's: NaN after every number, so a NaN value lands after the numbers
    found = np.searchsorted(_sort_key(sequence), _sort_key(values), side="right" if right else "left")
    return np.asarray(found, dtype=np.uint32)


def _searchsorted_rule(sequence, values, right):
    if len(sequence.shape) != 1:
        raise ValueError(f"[searchsorted] The sorted sequence must be 1-D but has {len(sequence.shape)} "
                         "dimensions.")
    if sequence.dtype != values.dtype:
        raise ValueError(f"[searchsorted] internal: operands must share a dtype, got {sequence.dtype} and "
                         f"{values.dtype}")
    return tuple(values.shape), dt.uint32


def _searchsorted_vmap(inputs, bdims, params):
    # each value is searched on its own, so a batch of values is a batch of results; a batch of sequences
    # would need one search per sequence, which MLX refuses too
    if bdims[0] is not None:
        raise ValueError("[searchsorted] Cannot vmap over the sorted sequence, only over the values being "
                         "searched for.")
    return _bind("searchsorted", *inputs, **params), bdims[1]


register(Primitive("searchsorted", OTHER, _searchsorted_impl, _searchsorted_rule, _index_vjp("searchsorted"),
                   _index_jvp, _searchsorted_vmap, differentiable=False,
                   doc="uint32 insertion points of `values` in the 1-D ascending `sequence` (NaN last)"))
