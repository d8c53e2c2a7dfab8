"""Shape primitives: reshape, transpose, broadcast_to, expand_dims, squeeze, flatten, slice, concatenate, pad.

Parameters are what the user asked for (a reshape keeps its -1, flatten keeps its axes), and shape rules
resolve them against the input's shape, so shape-independent code (`x.flatten(0, 1)`) replays at any
shape while shape-dependent code fails with a clear `[op]` error.
"""

from __future__ import annotations

import numpy as np

from ..primitives import SHAPE, Primitive, register


def _ops():
    from .. import ops

    return ops


def _bind(name, *xs, **params):
    from ..array import bind

    return bind(name, *xs, **params)


def _moved_front(x, b):
    return _ops().moveaxis(x, b, 0)


# -- reshape -------------------------------------------------------------------------------------
def resolve_reshape(in_shape, shape):
    size = 1
    for s in in_shape:
        size *= s
    unknown = [i for i, s in enumerate(shape) if s == -1]
    if len(unknown) > 1:
        raise ValueError("[reshape] Can only infer one dimension.")
    known = 1
    for s in shape:
        if s != -1:
            if s < 0:
                raise ValueError(f"[reshape] Invalid dimension {s} in shape {tuple(shape)}.")
            known *= s
    if unknown:
        if known == 0 or size % known != 0:
            raise ValueError(f"[reshape] Cannot infer the shape of an array of size {size} into shape "
                             f"{_shape_text(shape)}.")
        out = list(shape)
        out[unknown[0]] = size // known
        return tuple(out)
    if known != size:
        raise ValueError(f"[reshape] Cannot reshape array of size {size} into shape {_shape_text(shape)}.")
    return tuple(shape)


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"  # MLX's spelling: (3) for a 1-d shape


def _reshape_vmap(inputs, bdims, params):
    x = _moved_front(inputs[0], bdims[0])
    return _bind("reshape", x, shape=(x.shape[0],) + tuple(params["shape"])), 0


register(Primitive(
    "reshape", SHAPE, impl=lambda x, shape: np.reshape(x, resolve_reshape(x.shape, shape)),
    shape_rule=lambda x, shape: (resolve_reshape(x.shape, shape), x.dtype),
    vjp=lambda ct, out, inputs, params: (_ops().reshape(ct, inputs[0].shape),),
    jvp=lambda t, out, inputs, params: _bind("reshape", t[0], **params),
    vmap=_reshape_vmap,
))


# -- flatten (shape-independent) ----------------------------------------------------------------------
def _flatten_shape(shape, start_axis, end_axis):
    nd = len(shape)
    if nd == 0:
        return (1,)
    # MLX clamps the axes into range rather than refusing them
    s = max(start_axis + nd if start_axis < 0 else start_axis, 0)
    e = min(end_axis + nd if end_axis < 0 else end_axis, nd - 1)
    if s > e:
        raise ValueError("[flatten] start_axis must be less than or equal to end_axis.")
    n = 1
    for d in shape[s:e + 1]:
        n *= d
    return tuple(shape[:s]) + (n,) + tuple(shape[e + 1:])


def _flatten_vmap(inputs, bdims, params):
    x = _moved_front(inputs[0], bdims[0])
    s, e = params["start_axis"], params["end_axis"]
    nd = x.ndim - 1
    s = max(s + nd if s < 0 else s, 0) + 1
    e = min(e + nd if e < 0 else e, nd - 1) + 1
    return _bind("flatten", x, start_axis=s, end_axis=e), 0


register(Primitive(
    "flatten", SHAPE,
    impl=lambda x, start_axis, end_axis: np.reshape(x, _flatten_shape(x.shape, start_axis, end_axis)),
    shape_rule=lambda x, start_axis, end_axis: (_flatten_shape(x.shape, start_axis, end_axis), x.dtype),
    vjp=lambda ct, out, inputs, params: (_ops().reshape(ct, inputs[0].shape),),
    jvp=lambda t, out, inputs, params: _bind("flatten", t[0], **params),
    vmap=_flatten_vmap,
))


# -- transpose -------------------------------------------------------------------------------------
def _transpose_rule(x, axes):
    shape = x.shape
    if sorted(axes) != list(range(len(shape))):
        raise ValueError(f"[transpose] Invalid permutation {tuple(axes)} for array with {len(shape)} dimensions.")
    return tuple(map(shape.__getitem__, axes)), x.dtype


def _inverse_permutation(axes) -> tuple:
    """The axes that undo transpose(axes) (numpy's argsort of a permutation, without a numpy call)."""
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return tuple(inverse)


def _transpose_vmap(inputs, bdims, params):
    x = _moved_front(inputs[0], bdims[0])
    return _bind("transpose", x, axes=(0,) + tuple(a + 1 for a in params["axes"])), 0


register(Primitive(
    "transpose", SHAPE, impl=lambda x, axes: np.transpose(x, axes), shape_rule=_transpose_rule,
    vjp=lambda ct, out, inputs, params: (_bind("transpose", ct, axes=_inverse_permutation(params["axes"])),),
    jvp=lambda t, out, inputs, params: _bind("transpose", t[0], **params),
    vmap=_transpose_vmap,
))


# -- broadcast_to ------------------------------------------------------------------------------------
def _broadcast_rule(x, shape):
    from .elementwise import broadcast_shapes

    shape = tuple(shape)
    if len(x.shape) > len(shape) or broadcast_shapes(x.shape, shape, op="broadcast_to") != shape:
        raise ValueError(f"[broadcast_to] Cannot broadcast array of shape {tuple(x.shape)} to shape {shape}.")
    return shape, x.dtype


def _broadcast_vjp(ct, out, inputs, params):
    from .elementwise import unbroadcast

    return (unbroadcast(ct, inputs[0].shape),)


def _broadcast_vmap(inputs, bdims, params):
    x = _moved_front(inputs[0], bdims[0])
    shape = tuple(params["shape"])
    missing = len(shape) - (x.ndim - 1)
    if missing:
        x = _ops().reshape(x, (x.shape[0],) + (1,) * missing + tuple(x.shape[1:]))
    return _bind("broadcast_to", x, shape=(x.shape[0],) + shape), 0


register(Primitive(
    "broadcast_to", SHAPE, impl=lambda x, shape: np.broadcast_to(x, shape), shape_rule=_broadcast_rule,
    vjp=_broadcast_vjp, jvp=lambda t, out, inputs, params: _bind("broadcast_to", t[0], **params),
    vmap=_broadcast_vmap, c_expr="{0}",
))


# -- expand_dims / squeeze ------------------------------------------------------------------------------
def _expand_rule(x, axes):
    nd = len(x.shape) + len(axes)
    out = list(x.shape)
    for a in sorted(axes):
        if not 0 <= a < nd:
            raise ValueError(f"[expand_dims] Invalid axis {a} for output with {nd} dimensions.")
        out.insert(a, 1)
    return tuple(out), x.dtype


def _squeeze_rule(x, axes):
    for a in axes:
        if not 0 <= a < len(x.shape):
            raise ValueError(f"[squeeze] Invalid axis {a} for array with {len(x.shape)} dimensions.")
        if x.shape[a] != 1:
            raise ValueError(f"[squeeze] Cannot squeeze axis {a} with size {x.shape[a]} which is not equal to 1.")
    return tuple(s for i, s in enumerate(x.shape) if i not in axes), x.dtype


def _expand_vmap(inputs, bdims, params):
    x = _moved_front(inputs[0], bdims[0])
    return _bind("expand_dims", x, axes=tuple(a + 1 for a in params["axes"])), 0


def _squeeze_vmap(inputs, bdims, params):
    x = _moved_front(inputs[0], bdims[0])
    return _bind("squeeze", x, axes=tuple(a + 1 for a in params["axes"])), 0


register(Primitive(
    "expand_dims", SHAPE, impl=lambda x, axes: np.expand_dims(x, tuple(axes)), shape_rule=_expand_rule,
    vjp=lambda ct, out, inputs, params: (_bind("squeeze", ct, **params),),
    jvp=lambda t, out, inputs, params: _bind("expand_dims", t[0], **params), vmap=_expand_vmap,
))
register(Primitive(
    "squeeze", SHAPE, impl=lambda x, axes: np.squeeze(x, tuple(axes)), shape_rule=_squeeze_rule,
    vjp=lambda ct, out, inputs, params: (_bind("expand_dims", ct, **params),),
    jvp=lambda t, out, inputs, params: _bind("squeeze", t[0], **params), vmap=_squeeze_vmap,
))


# -- slice (static start/stop/strides, already normalised by ops) -------------------------------------
def _slice_rule(x, start, stop, strides, op="slice"):
    if len(start) != len(x.shape):
        raise ValueError(f"[{op}] Expected {len(x.shape)} start indices, got {len(start)}.")
    out = []
    for axis, (d, a, b, s) in enumerate(zip(x.shape, start, stop, strides)):
        # start/stop were normalised against the traced shape by ops; a shapeless replay at another size
        # must still find them inside the axis
        n = len(range(a, b, s))
        if n and not (0 <= a < d and -1 <= a + (n - 1) * s < d):
            raise ValueError(f"[{op}] The bounds {a}:{b}:{s} of axis {axis} do not fit an axis of size {d}.")
        out.append(n)
    return tuple(out), x.dtype


def _slice_impl(x, start, stop, strides):
    idx = tuple(slice(a, (b if b >= 0 else None), s) for a, b, s in zip(start, stop, strides))
    return x[idx]


def _slice_vjp(ct, out, inputs, params):
    ops = _ops()
    x = inputs[0]
    return (ops.slice_update(ops.zeros_like(x), ct, params["start"], params["stop"], params["strides"]),)


def _slice_vmap(inputs, bdims, params):
    x = _moved_front(inputs[0], bdims[0])
    return _bind("slice", x, start=(0,) + tuple(params["start"]), stop=(x.shape[0],) + tuple(params["stop"]),
                 strides=(1,) + tuple(params["strides"])), 0


register(Primitive(
    "slice", SHAPE, impl=_slice_impl, shape_rule=_slice_rule, vjp=_slice_vjp,
    jvp=lambda t, out, inputs, params: _bind("slice", t[0], **params), vmap=_slice_vmap,
    fixed_at_trace=True,
))


# slice_update(x, update): x with x[start:stop:strides] replaced by update (functional).
def _slice_update_impl(x, upd, start, stop, strides):
    out = np.array(x)
    out[tuple(slice(a, (b if b >= 0 else None), s) for a, b, s in zip(start, stop, strides))] = upd
    return out


def _slice_update_rule(x, upd, start, stop, strides):
    region, _ = _slice_rule(x, start, stop, strides, "slice_update")
    from .elementwise import broadcast_shapes

    if broadcast_shapes(upd.shape, region, op="slice_update") != tuple(region):
        raise ValueError(f"[slice_update] Cannot broadcast update of shape {tuple(upd.shape)} to {tuple(region)}.")
    return tuple(x.shape), x.dtype


def _slice_update_vjp(ct, out, inputs, params):
    from .elementwise import unbroadcast

    ops = _ops()
    x, upd = inputs
    region = _bind("slice", ct, **params)
    ct_x = ops.slice_update(ct, ops.zeros_like(region), params["start"], params["stop"], params["strides"])
    return (ct_x, unbroadcast(region, upd.shape))


def _slice_update_jvp(t, out, inputs, params):
    ops = _ops()
    x, upd = inputs
    tx = t[0] if t[0] is not None else ops.zeros_like(x)
    tu = t[1] if t[1] is not None else ops.zeros_like(upd)
    return _bind("slice_update", tx, tu, **params)


def _slice_update_vmap(inputs, bdims, params):
    ops = _ops()
    x, upd = inputs
    bx, bu = bdims
    size = x.shape[bx] if bx is not None else upd.shape[bu]
    x = _moved_front(x, bx) if bx is not None else ops.broadcast_to(ops.expand_dims(x, (0,)), (size,) + x.shape)
    if bu is not None:
        upd = _moved_front(upd, bu)
        region = _slice_rule(x, (0,) + tuple(params["start"]), (size,) + tuple(params["stop"]),
                             (1,) + tuple(params["strides"]))[0]
        missing = len(region) - upd.ndim
        if missing:
            upd = ops.reshape(upd, (size,) + (1,) * missing + tuple(upd.shape[1:]))
    return _bind("slice_update", x, upd, start=(0,) + tuple(params["start"]), stop=(size,) + tuple(params["stop"]),
                 strides=(1,) + tuple(params["strides"])), 0


register(Primitive(
    "slice_update", SHAPE, impl=_slice_update_impl, shape_rule=_slice_update_rule, vjp=_slice_update_vjp,
    jvp=_slice_update_jvp, vmap=_slice_update_vmap,
    fixed_at_trace=True,
))


# -- concatenate ------------------------------------------------------------------------------------
def _concat_rule(*xs, axis):
    first = xs[0]
    nd = len(first.shape)
    if not 0 <= axis < nd:
        raise ValueError(f"[concatenate] Invalid axis {axis} for arrays with {nd} dimensions.")
    total = 0
    for x in xs:
        if len(x.shape) != nd or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != axis):
            raise ValueError("[concatenate] All the input array dimensions must match exactly except for the "
                             f"concatenation axis. However, the provided shapes are {', '.join(str(tuple(y.shape)) for y in xs)}.")
        if x.dtype != first.dtype:
            raise ValueError("[concatenate] internal: operands must share a dtype")
        total += x.shape[axis]
    out = list(first.shape)
    out[axis] = total
    return tuple(out), first.dtype


def _concat_vjp(ct, out, inputs, params):
    ops = _ops()
    axis = params["axis"]
    cts, offset = [], 0
    for x in inputs:
        n = x.shape[axis]
        start = [0] * ct.ndim
        stop = list(ct.shape)
        start[axis], stop[axis] = offset, offset + n
        cts.append(_bind("slice", ct, start=tuple(start), stop=tuple(stop), strides=(1,) * ct.ndim))
        offset += n
    del ops
    return tuple(cts)


def _concat_jvp(t, out, inputs, params):
    ops = _ops()
    ts = [ti if ti is not None else ops.zeros_like(x) for ti, x in zip(t, inputs)]
    return _bind("concatenate", *ts, **params)


def _concat_vmap(inputs, bdims, params):
    ops = _ops()
    size = next(x.shape[b] for x, b in zip(inputs, bdims) if b is not None)
    xs = [_moved_front(x, b) if b is not None else ops.broadcast_to(ops.expand_dims(x, (0,)), (size,) + x.shape)
          for x, b in zip(inputs, bdims)]
    return _bind("concatenate", *xs, axis=params["axis"] + 1), 0


register(Primitive(
    "concatenate", SHAPE, impl=lambda *xs, axis: np.concatenate(xs, axis=axis), shape_rule=_concat_rule,
    vjp=_concat_vjp, jvp=_concat_jvp, vmap=_concat_vmap,
))


# -- pad (constant value, a 0-d input of the same dtype) -----------------------------------------------
def _pad_rule(x, value, widths):
    if len(widths) != len(x.shape):
        raise ValueError(f"[pad] Expected {len(x.shape)} (low, high) pairs, got {len(widths)}.")
    for lo, hi in widths:
        if lo < 0 or hi < 0:
            raise ValueError("[pad] Invalid negative padding.")
    return tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, widths)), x.dtype


def _pad_vjp(ct, out, inputs, params):
    x = inputs[0]
    start = tuple(lo for lo, _ in params["widths"])
    stop = tuple(lo + s for (lo, _), s in zip(params["widths"], x.shape))
    ct_x = _bind("slice", ct, start=start, stop=stop, strides=(1,) * ct.ndim)
    ct_v = _ops().sum(ct) - _ops().sum(ct_x)
    return (ct_x, ct_v)


def _pad_vmap(inputs, bdims, params):
    ops = _ops()
    x, v = inputs
    bx, bv = bdims
    widths = ((0, 0),) + tuple(params["widths"])
    if bv is None:
        return _bind("pad", _moved_front(x, bx), v, widths=widths), 0
    from ..dtypes import bool_

    # A batched value: pad with zeros, then select each member's value where the padding lies.
    size = v.shape[bv]
    x = _moved_front(x, bx) if bx is not None else ops.broadcast_to(ops.expand_dims(x, 0), (size,) + tuple(x.shape))
    padded = _bind("pad", x, ops.zeros((), x.dtype), widths=widths)
    inside = _bind("pad", ops.ones(x.shape[1:], bool_), ops.zeros((), bool_), widths=tuple(params["widths"]))
    values = ops.reshape(v, (size,) + (1,) * (x.ndim - 1))
    return ops.where(inside, padded, values), 0


register(Primitive(
    "pad", SHAPE, impl=lambda x, value, widths: np.pad(x, widths, constant_values=value),
    shape_rule=_pad_rule, vjp=_pad_vjp,
    jvp=lambda t, out, inputs, params: _bind(
        "pad", t[0] if t[0] is not None else _ops().zeros_like(inputs[0]),
        t[1] if t[1] is not None else _ops().zeros_like(inputs[1]), **params),
    vmap=_pad_vmap,
))
