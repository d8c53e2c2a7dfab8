"""Reductions (sum, prod, max, min, argmax, argmin, all, any) and scans (cumsum, cumprod, cummax, cummin).

`axes` are normalised (non-negative, sorted) by ops before binding; shape rules recompute the output
from the input shape, so traced reductions replay at any shape.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import REDUCTION, Primitive, register
from .elementwise import _HALF, _conj, broadcast_like


def _ops():
    from .. import ops

    return ops


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _check_axes(name, x, axes):
    for a in axes:
        if not 0 <= a < max(len(x.shape), 1) or (len(x.shape) == 0):
            raise ValueError(f"[{name}] Invalid axis {a} for array with {len(x.shape)} dimensions.")


def _rule(name, out_dtype=None, nonempty=False):
    def rule(x, axes, keepdims):
        _check_axes(name, x, axes)
        if nonempty and any(x.shape[a] == 0 for a in axes):
            raise ValueError(f"[{name}] Cannot reduce over an empty axis.")
        d = out_dtype(x.dtype) if out_dtype else x.dtype
        return _reduced_shape(x.shape, axes, keepdims), d

    return rule


def _expand(ct, x_shape, axes, keepdims):
    ops = _ops()
    if not keepdims:
        ct = ops.expand_dims(ct, axes)
    return ct


def _vmap_reduction(name):
    def rule(inputs, bdims, params):
        from ..array import bind

        ops = _ops()
        x = ops.moveaxis(inputs[0], bdims[0], 0)
        p = dict(params)
        p["axes"] = tuple(a + 1 for a in params["axes"])
        return bind(name, x, **p), 0

    return rule


def _sum_dtype(d):
    # MLX: sums of bool and small ints accumulate in int32/uint32.
    if d == dt.bool_ or d in (dt.int8, dt.int16):
        return dt.int32
    if d in (dt.uint8, dt.uint16):
        return dt.uint32
    return d


def _accumulating(fn):
    def impl(x, axes, keepdims):
        acc = x.astype(np.float32) if x.dtype in _HALF else x
        return fn(acc, axis=axes, keepdims=keepdims)

    return impl


def _sum_vjp(ct, out, inputs, params):
    x = inputs[0]
    ct = _expand(ct, x.shape, params["axes"], params["keepdims"])
    return (broadcast_like(ct, x),)


def _sum_jvp(tangents, out, inputs, params):
    from ..array import bind

    return bind("sum", tangents[0], **params)


def _prod_vjp(ct, out, inputs, params):
    ops = _ops()
    x = inputs[0]
    axes, keep = params["axes"], params["keepdims"]
    ct = _expand(ct, x.shape, axes, keep)
    o = _expand(out, x.shape, axes, keep)
    # product of the other elements: out / x where x != 0, else the product with x replaced by 1
    nonzero = ops.where(x == 0, ops.ones_like(x), x)
    others = ops.prod(nonzero, axis=axes, keepdims=True)
    zeros = ops.sum(ops.astype(x == 0, dt.int32), axis=axes, keepdims=True)
    grad = ops.where(x == 0, ops.where(zeros == 1, others, ops.zeros_like(others)),
                     ops.where(zeros == 0, o / nonzero, ops.zeros_like(o)))
    return (ct * _conj(grad),)  # complex cotangents flow through the conjugate derivative, as in MLX


def _prod_jvp(tangents, out, inputs, params):
    ops = _ops()
    (ct_x,) = _prod_vjp(ops.ones_like(out), out, inputs, params)
    ct_x = _conj(ct_x)  # the jvp needs the derivative itself, not its conjugate
    from ..array import bind

    return bind("sum", ct_x * tangents[0], **params)


def _minmax_vjp(ct, out, inputs, params):
    ops = _ops()
    x = inputs[0]
    axes, keep = params["axes"], params["keepdims"]
    ct = _expand(ct, x.shape, axes, keep)
    o = _expand(out, x.shape, axes, keep)
    mask = ops.astype(x == o, x.dtype)
    count = ops.sum(mask, axis=axes, keepdims=True)
    return (ct * mask / count,)


def _minmax_jvp(tangents, out, inputs, params):
    ops = _ops()
    (g,) = _minmax_vjp(ops.ones_like(out), out, inputs, params)
    from ..array import bind

    return bind("sum", g * tangents[0], **params)


register(Primitive("sum", REDUCTION, _accumulating(np.sum), _rule("sum", _sum_dtype), _sum_vjp, _sum_jvp,
                   _vmap_reduction("sum"), c_expr="+"))
register(Primitive("prod", REDUCTION, _accumulating(np.prod), _rule("prod", _sum_dtype), _prod_vjp, _prod_jvp,
                   _vmap_reduction("prod"), c_expr="*"))
register(Primitive("max", REDUCTION, lambda x, axes, keepdims: np.max(x, axis=axes, keepdims=keepdims),
                   _rule("max", nonempty=True), _minmax_vjp, _minmax_jvp, _vmap_reduction("max"), c_expr="max"))
register(Primitive("min", REDUCTION, lambda x, axes, keepdims: np.min(x, axis=axes, keepdims=keepdims),
                   _rule("min", nonempty=True), _minmax_vjp, _minmax_jvp, _vmap_reduction("min"), c_expr="min"))
register(Primitive("all", REDUCTION, lambda x, axes, keepdims: np.all(x, axis=axes, keepdims=keepdims),
                   _rule("all", lambda d: dt.bool_), vmap=_vmap_reduction("all"), differentiable=False))
register(Primitive("any", REDUCTION, lambda x, axes, keepdims: np.any(x, axis=axes, keepdims=keepdims),
                   _rule("any", lambda d: dt.bool_), vmap=_vmap_reduction("any"), differentiable=False))


def _arg_impl(fn):
    def impl(x, axes, keepdims):
        (axis,) = axes
        return fn(x, axis=axis, keepdims=keepdims).astype(np.uint32)

    return impl


register(Primitive("argmax", REDUCTION, _arg_impl(np.argmax), _rule("argmax", lambda d: dt.uint32, True),
                   vmap=_vmap_reduction("argmax"), differentiable=False))
register(Primitive("argmin", REDUCTION, _arg_impl(np.argmin), _rule("argmin", lambda d: dt.uint32, True),
                   vmap=_vmap_reduction("argmin"), differentiable=False))


# -- scans -------------------------------------------------------------------------------------------
def _scan_impl(fn):
    def impl(x, axis, reverse, inclusive):
        acc = x.astype(np.float32) if x.dtype in _HALF else x
        if reverse:
            acc = np.flip(acc, axis)
        out = fn(acc, axis=axis)
        if not inclusive:
            out = np.moveaxis(out, axis, 0)
            acc_m = np.moveaxis(acc, axis, 0)
            ident = _scan_identity(fn, out.dtype)
            shifted = np.concatenate([np.full((1,) + out.shape[1:], ident, out.dtype), out[:-1]], 0)
            out = np.moveaxis(shifted[: acc_m.shape[0]], 0, axis)
        if reverse:
            out = np.flip(out, axis)
        return np.ascontiguousarray(out)

    return impl


def _scan_identity(fn, dtype):
    if fn is np.cumsum:
        return 0
    if fn is np.cumprod:
        return 1
    # the identity of max is the lowest value of the dtype: False, the integer minimum, or -inf
    if dtype == np.bool_:
        return fn is not _cummax
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return info.min if fn is _cummax else info.max
    if np.issubdtype(dtype, np.complexfloating):
        return complex(-np.inf, -np.inf) if fn is _cummax else complex(np.inf, np.inf)  # as MLX
    return -np.inf if fn is _cummax else np.inf


def _cummax(x, axis):
    return np.maximum.accumulate(x, axis=axis)


def _cummin(x, axis):
    return np.minimum.accumulate(x, axis=axis)


def _cumsum_dtype(d):
    # MLX: a running count of bools is int32; every other scan keeps its input's dtype (and wraps).
    return dt.int32 if d == dt.bool_ else d


def _scan_rule(name, out_dtype=None):
    def rule(x, axis, reverse, inclusive):
        if not 0 <= axis < max(len(x.shape), 1) or len(x.shape) == 0:
            raise ValueError(f"[{name}] Invalid axis {axis} for array with {len(x.shape)} dimensions.")
        return tuple(x.shape), (out_dtype(x.dtype) if out_dtype else x.dtype)

    return rule


def _cumsum_vjp(ct, out, inputs, params):
    ops = _ops()
    return (ops.cumsum(ct, axis=params["axis"], reverse=not params["reverse"], inclusive=params["inclusive"]),)


def _cumsum_jvp(tangents, out, inputs, params):
    from ..array import bind

    return bind("cumsum", tangents[0], **params)


def _cumprod_vjp(ct, out, inputs, params):
    # d out_j / d x_i is the product of the other factors of out_j: out_j / x_i while x has no zero before
    # j. Along the scan, elements before the first zero take that form, the first zero takes the products
    # with itself replaced by one, and every later element gets zero (each of its products holds the zero).
    ops = _ops()
    x = inputs[0]
    axis, reverse, inclusive = params["axis"], params["reverse"], params["inclusive"]

    def pulled_back(products):
        return ops.cumsum(ct * products, axis=axis, reverse=not reverse, inclusive=inclusive)

    def scan(v, inclusive):
        return _bind("cumprod", v, axis=axis, reverse=reverse, inclusive=inclusive)

    zero = ops.zeros_like(x)
    zero_so_far = scan(x, True) == zero
    first_zero = ops.logical_and(zero_so_far, scan(x, False) != zero)
    with_one = scan(ops.where(first_zero, ops.ones_like(x), x), inclusive)
    before = ops.where(zero_so_far, zero, pulled_back(out) / x)
    return (ops.where(first_zero, pulled_back(with_one), before),)


def _cumprod_jvp(tangents, out, inputs, params):
    ops = _ops()
    x = inputs[0]
    return out * ops.cumsum(tangents[0] / x, axis=params["axis"], reverse=params["reverse"],
                            inclusive=params["inclusive"])


def _cumext_source(name):
    """Where each output of cummax/cummin came from: (source index along the axis, has-a-source mask).

    As MLX, output j takes the last position (in scan order) at or before j that reached the running
    extreme, so on ties the latest equal element gets the gradient; an exclusive scan's first output has
    no source (it is the identity).
    """

    def source(x, out, params):
        ops = _ops()
        axis, reverse = params["axis"], params["reverse"]
        n = x.shape[axis]
        shape = [1] * x.ndim
        shape[axis] = n
        pos = ops.reshape(ops.arange(n, dtype=dt.int32), shape)
        order = (n - 1) - pos if reverse else pos
        x = ops.stop_gradient(x)
        running = ops.stop_gradient(out) if params["inclusive"] else _bind(name, x, axis=axis, reverse=reverse,
                                                                             inclusive=True)
        # 1-based scan position of every element that equals the running extreme there, 0 elsewhere.
        key = ops.where(x == running, order + 1, ops.zeros_like(order))
        last = ops.cummax(key, axis=axis, reverse=reverse, inclusive=params["inclusive"])
        valid = last > 0
        src = ops.maximum(last, 1) - 1  # (exclusive scans start at the int minimum: clamp first)
        return ((n - 1) - src if reverse else src), valid

    return source


def _bind(name, *xs, **params):
    from ..array import bind

    return bind(name, *xs, **params)


def _cumext_vjp(name):
    source = _cumext_source(name)

    def vjp(ct, out, inputs, params):
        ops = _ops()
        x = inputs[0]
        src, valid = source(x, out, params)
        # Scatter-add each output's cotangent to its source: index arrays address every element of ct.
        grids = [ops.broadcast_to(ops.reshape(ops.arange(s, dtype=dt.int32),
                                              [s if d == i else 1 for d in range(x.ndim)]), x.shape)
                 for i, s in enumerate(x.shape)]
        grids[params["axis"]] = src
        updates = ops.where(valid, ct, ops.zeros_like(ct))
        return (_bind("scatter_add", ops.zeros_like(x), updates, *grids, axes=tuple(range(x.ndim))),)

    return vjp


def _cumext_jvp(name):
    source = _cumext_source(name)

    def jvp(tangents, out, inputs, params):
        ops = _ops()
        src, valid = source(inputs[0], out, params)
        t = ops.take_along_axis(tangents[0], src, axis=params["axis"])
        return ops.where(valid, t, ops.zeros_like(t))

    return jvp


def _vmap_scan(name):
    def rule(inputs, bdims, params):
        from ..array import bind

        ops = _ops()
        x = ops.moveaxis(inputs[0], bdims[0], 0)
        p = dict(params)
        p["axis"] = params["axis"] + 1
        return bind(name, x, **p), 0

    return rule


register(Primitive("cumsum", REDUCTION, _scan_impl(np.cumsum), _scan_rule("cumsum", _cumsum_dtype), _cumsum_vjp,
                   _cumsum_jvp, _vmap_scan("cumsum")))
register(Primitive("cumprod", REDUCTION, _scan_impl(np.cumprod), _scan_rule("cumprod"), _cumprod_vjp,
                   _cumprod_jvp, _vmap_scan("cumprod")))
register(Primitive("cummax", REDUCTION, _scan_impl(_cummax), _scan_rule("cummax"), _cumext_vjp("cummax"),
                   _cumext_jvp("cummax"), _vmap_scan("cummax")))
register(Primitive("cummin", REDUCTION, _scan_impl(_cummin), _scan_rule("cummin"), _cumext_vjp("cummin"),
                   _cumext_jvp("cummin"), _vmap_scan("cummin")))


# -- number_of_elements: the element count over some axes, read from the shape at run time -------------
# Shapeless compiled graphs need it: mean/var traced at one shape must divide by the count at every shape.
def _count_impl(x, axes, inverted, dtype):
    n = 1
    for a in axes:
        n *= x.shape[a]
    value = (1.0 / n if n else np.inf) if inverted else n
    return np.array(value, dtype=dtype.np)


def _count_rule(x, axes, inverted, dtype):
    _check_axes("number_of_elements", x, axes)
    return (), dtype


def _count_vmap(inputs, bdims, params):
    from ..array import bind

    x = _ops().moveaxis(inputs[0], bdims[0], 0)
    p = dict(params)
    p["axes"] = tuple(a + 1 for a in params["axes"])
    return bind("number_of_elements", x, **p), None  # the count is the same for every batch member


register(Primitive("number_of_elements", REDUCTION, _count_impl, _count_rule,
                   vjp=lambda ct, out, inputs, params: (None,),
                   jvp=lambda tangents, out, inputs, params: _ops().zeros_like(out),
                   vmap=_count_vmap, differentiable=False))
