"""Convolution and sliding-window primitives: conv_general, sliding_windows and its transpose.

Layouts follow MLX: inputs are (N, *spatial, C), weights (C_out, *kernel, C_in / groups). The window
primitives turn an (N, *spatial, C) array into (N, *out, *kernel, C) windows (im2col) and back
(overlap-add); they are each other's transposes, which gives conv's weight gradient and pooling's
gradients without Python loops over elements.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..primitives import OTHER, Primitive, register
from .elementwise import _HALF


def _ops():
    from .. import ops

    return ops


def _bind(name, *xs, **params):
    from ..array import bind

    return bind(name, *xs, **params)


# -- geometry ------------------------------------------------------------------------------------------
def dilated_size(n: int, dilation: int) -> int:
    return 0 if n == 0 else (n - 1) * dilation + 1


def prepared_sizes(spatial, padding, input_dilation) -> tuple:
    """Spatial sizes after input dilation and (possibly negative) low/high padding."""
    return tuple(dilated_size(n, d) + lo + hi for n, (lo, hi), d in zip(spatial, padding, input_dilation))


def window_out_sizes(prepared, kernel, strides, kernel_dilation) -> tuple:
    return tuple((p - dilated_size(k, rd)) // s + 1 for p, k, s, rd in zip(prepared, kernel, strides, kernel_dilation))


# -- numpy helpers shared by the implementations --------------------------------------------------------
def _prepare(x: np.ndarray, padding, input_dilation) -> np.ndarray:
    """Dilate the spatial axes of x (N, *S, C) with zeros, then pad (negative padding crops)."""
    if any(d > 1 for d in input_dilation):
        spatial = tuple(dilated_size(n, d) for n, d in zip(x.shape[1:-1], input_dilation))
        shape = (x.shape[0],) + spatial + (x.shape[-1],)
        out = np.zeros(shape, x.dtype)
        out[(slice(None),) + tuple(slice(None, None, d) for d in input_dilation) + (slice(None),)] = x
        x = out
    widths = [(0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in padding] + [(0, 0)]
    x = np.pad(x, widths)
    crop = tuple(slice(max(-lo, 0), x.shape[i + 1] - max(-hi, 0)) for i, (lo, hi) in enumerate(padding))
    return x[(slice(None),) + crop + (slice(None),)]


def _unprepare(x: np.ndarray, spatial, padding, input_dilation) -> np.ndarray:
    """The transpose of `_prepare`: undo the padding (crop, or zero-fill what was cropped), then undilate."""
    widths = [(0, 0)] + [(max(-lo, 0), max(-hi, 0)) for lo, hi in padding] + [(0, 0)]
    x = np.pad(x, widths)
    crop = tuple(slice(max(lo, 0), x.shape[i + 1] - max(hi, 0)) for i, (lo, hi) in enumerate(padding))
    x = x[(slice(None),) + crop + (slice(None),)]
    x = x[(slice(None),) + tuple(slice(None, None, d) for d in input_dilation) + (slice(None),)]
    return x


def _windows(xp: np.ndarray, kernel, strides, kernel_dilation) -> np.ndarray:
    """(N, *P, C) -> (N, *out, *kernel, C) strided view of every window."""
    nd = len(kernel)
    eff = tuple(dilated_size(k, rd) for k, rd in zip(kernel, kernel_dilation))
    view = np.lib.stride_tricks.sliding_window_view(xp, eff, axis=tuple(range(1, nd + 1)))
    sub = (slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),)
    sub = sub + tuple(slice(None, None, rd) for rd in kernel_dilation)
    view = view[sub]
    order = (0,) + tuple(range(1, nd + 1)) + tuple(range(nd + 2, 2 * nd + 2)) + (nd + 1,)
    return view.transpose(order)


# -- conv_general ------------------------------------------------------------------------------------------
def _conv_rule(x, w, strides, padding, kernel_dilation, input_dilation, groups, flip):
    nd = len(x.shape) - 2
    if len(w.shape) != len(x.shape):
        raise ValueError(
            f"[conv] Invalid weight array with {len(w.shape)} dimensions for input with {len(x.shape)} dimensions.")
    if x.dtype != w.dtype:
        raise ValueError("[conv] internal: input and weight must share a dtype")
    c_in = x.shape[-1]
    if c_in != w.shape[-1] * groups:
        raise ValueError(
            "[conv] Expect the input channels in the input and weight array to match but got shapes - "
            f"input: {tuple(x.shape)} and weight: {tuple(w.shape)}")
    if w.shape[0] % groups != 0:
        raise ValueError(
            "[conv] If groups > 1, the output channels must be divisible by the number of groups. "
            f"Got {w.shape[0]} output channels and {groups} groups.")
    prepared = prepared_sizes(x.shape[1:-1], padding, input_dilation)
    kernel = tuple(w.shape[1:-1])
    for i in range(nd):
        if prepared[i] < dilated_size(kernel[i], kernel_dilation[i]):
            raise ValueError(
                "[conv] Spatial dimensions of input after padding cannot be smaller than weight spatial "
                f"dimensions. Got error at axis {i + 1} for input with shape {tuple(x.shape)}, padding low "
                f"{tuple(p[0] for p in padding)}, padding high {tuple(p[1] for p in padding)}, and weight of "
                f"shape {tuple(w.shape)}.")
    out = window_out_sizes(prepared, kernel, strides, kernel_dilation)
    return (x.shape[0],) + out + (w.shape[0],), x.dtype


def _conv_impl(x, w, strides, padding, kernel_dilation, input_dilation, groups, flip):
    out_dtype = x.dtype
    if x.dtype in _HALF:
        x = x.astype(np.float32)
        w = w.astype(np.float32)
    nd = x.ndim - 2
    if flip:
        w = np.flip(w, axis=tuple(range(1, nd + 1)))
    kernel = w.shape[1:-1]
    cols = _windows(_prepare(x, padding, input_dilation), kernel, strides, kernel_dilation)
    out_spatial = cols.shape[1:nd + 1]
    ksize = int(np.prod(kernel, dtype=np.int64))
    c_group = w.shape[-1]
    o_group = w.shape[0] // groups
    cols = cols.reshape(-1, ksize, groups, c_group)
    wg = w.reshape(groups, o_group, ksize, c_group)
    if groups == 1:
        out = np.tensordot(cols[:, :, 0, :], wg[0], axes=([1, 2], [1, 2]))
    else:
        out = np.einsum("mkgc,gokc->mgo", cols, wg, optimize=True)
    return out.reshape((x.shape[0],) + tuple(out_spatial) + (w.shape[0],)).astype(out_dtype)


def _flip_spatial(a, nd):
    """Reverse axes 1..nd (a strided slice; MLX has no public flip)."""
    start = [0] * a.ndim
    stop = list(a.shape)
    strides = [1] * a.ndim
    for ax in range(1, nd + 1):
        start[ax], stop[ax], strides[ax] = a.shape[ax] - 1, -1, -1
    return _bind("slice", a, start=tuple(start), stop=tuple(stop), strides=tuple(strides))


def _conv_input_grad(ct, x, w, params):
    """d input: a convolution of the cotangent with the flipped, channel-transposed weight."""
    ops = _ops()
    strides, padding = params["strides"], params["padding"]
    kd, ld, groups = params["kernel_dilation"], params["input_dilation"], params["groups"]
    nd = x.ndim - 2
    kernel = tuple(w.shape[1:-1])
    o_group = w.shape[0] // groups
    c_group = w.shape[-1]
    # (G*Og, *k, Cg) -> (G*Cg, *k, Og): each group's input channels become the output channels.
    wt = ops.reshape(w, (groups, o_group) + kernel + (c_group,))
    wt = ops.moveaxis(wt, -1, 1)
    wt = ops.moveaxis(wt, 2, -1)
    wt = ops.reshape(wt, (groups * c_group,) + kernel + (o_group,))
    new_padding = []
    for i in range(nd):
        eff = dilated_size(kernel[i], kd[i])
        lhs = dilated_size(x.shape[i + 1], ld[i])
        out_dilated = dilated_size(ct.shape[i + 1], strides[i])
        before = eff - 1 - padding[i][0]
        after = lhs + eff - 1 - out_dilated - before
        new_padding.append((before, after))
    return _bind("conv_general", ct, wt, strides=tuple(ld), padding=tuple(new_padding), kernel_dilation=tuple(kd),
                 input_dilation=tuple(strides), groups=groups, flip=not params["flip"])


def _conv_weight_grad(ct, x, w, params):
    """d weight: windows of the input contracted with the cotangent, one matmul per group."""
    ops = _ops()
    groups = params["groups"]
    nd = x.ndim - 2
    kernel = tuple(w.shape[1:-1])
    ksize = int(np.prod(kernel, dtype=np.int64))
    c_group = w.shape[-1]
    o_group = w.shape[0] // groups
    cols = _bind("sliding_windows", x, kernel=kernel, strides=params["strides"],
                 kernel_dilation=params["kernel_dilation"],
                 padding=params["padding"], input_dilation=params["input_dilation"])
    cols = ops.reshape(cols, (-1, ksize, groups, c_group))
    cols = ops.transpose(cols, (2, 0, 1, 3))
    cols = ops.reshape(cols, (groups, -1, ksize * c_group))
    ctg = ops.reshape(ct, (-1, groups, o_group))
    ctg = ops.transpose(ctg, (1, 2, 0))
    dw = ops.matmul(ctg, cols)
    dw = ops.reshape(dw, (w.shape[0],) + kernel + (c_group,))
    return _flip_spatial(dw, nd) if params["flip"] else dw


def _conv_vjp(ct, out, inputs, params):
    x, w = inputs
    return _conv_input_grad(ct, x, w, params), _conv_weight_grad(ct, x, w, params)


def _conv_jvp(tangents, out, inputs, params):
    x, w = inputs
    tx, tw = tangents
    parts = []
    if tx is not None:
        parts.append(_bind("conv_general", tx, w, **params))
    if tw is not None:
        parts.append(_bind("conv_general", x, tw, **params))
    if not parts:
        return _ops().zeros_like(out)
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def _merge_batch(x, b):
    """Move the vmapped axis to the front and fold it into N."""
    ops = _ops()
    x = ops.moveaxis(x, b, 0)
    return ops.reshape(x, (x.shape[0] * x.shape[1],) + tuple(x.shape[2:])), x.shape[0]


def _member(a, i):
    """a[i] along the leading axis, as a static slice."""
    start = (i,) + (0,) * (a.ndim - 1)
    stop = (i + 1,) + tuple(a.shape[1:])
    part = _bind("slice", a, start=start, stop=stop, strides=(1,) * a.ndim)
    return _ops().squeeze(part, 0)


def _conv_vmap(inputs, bdims, params):
    ops = _ops()
    x, w = inputs
    bx, bw = bdims
    if bw is None:
        merged, size = _merge_batch(x, bx)
        out = _bind("conv_general", merged, w, **params)
        return ops.reshape(out, (size, -1) + tuple(out.shape[1:])), 0
    # A batched weight is unrolled over the (static) batch size: one convolution per member.
    w = ops.moveaxis(w, bw, 0)
    x = ops.moveaxis(x, bx, 0) if bx is not None else None
    outs = []
    for i in range(w.shape[0]):
        xi = _member(x, i) if x is not None else inputs[0]
        outs.append(_bind("conv_general", xi, _member(w, i), **params))
    return ops.stack(outs, 0), 0


register(Primitive(
    name="conv_general", kind=OTHER, impl=_conv_impl, shape_rule=_conv_rule,
    vjp=_conv_vjp, jvp=_conv_jvp, vmap=_conv_vmap,
    doc="N-d convolution (cross-correlation unless flip) with strides, padding and dilations, MLX layouts.",
))


# -- sliding_windows (im2col) and its transpose (overlap-add) ---------------------------------------------
def _windows_rule(x, kernel, strides, kernel_dilation, padding, input_dilation):
    nd = len(kernel)
    if len(x.shape) != nd + 2:
        raise ValueError(f"[sliding_windows] Expected an input with {nd + 2} dimensions, got {len(x.shape)}.")
    prepared = prepared_sizes(x.shape[1:-1], padding, input_dilation)
    for i in range(nd):
        if prepared[i] < dilated_size(kernel[i], kernel_dilation[i]):
            raise ValueError(f"[sliding_windows] Window of size {kernel[i]} does not fit in axis {i + 1} of "
                             f"size {prepared[i]}.")
    out = window_out_sizes(prepared, kernel, strides, kernel_dilation)
    return (x.shape[0],) + out + tuple(kernel) + (x.shape[-1],), x.dtype


def _windows_impl(x, kernel, strides, kernel_dilation, padding, input_dilation):
    cols = _windows(_prepare(x, padding, input_dilation), kernel, strides, kernel_dilation)
    return np.ascontiguousarray(cols)


def _windows_t_rule(ct, spatial, kernel, strides, kernel_dilation, padding, input_dilation):
    if len(ct.shape) != 2 * len(kernel) + 2:
        raise ValueError("[sliding_windows_transpose] internal: windows must be (N, *out, *kernel, C)")
    return (ct.shape[0],) + tuple(spatial) + (ct.shape[-1],), ct.dtype


def _windows_t_impl(ct, spatial, kernel, strides, kernel_dilation, padding, input_dilation):
    nd = len(kernel)
    acc_dtype = np.float32 if ct.dtype in _HALF else ct.dtype
    prepared = prepared_sizes(spatial, padding, input_dilation)
    out = np.zeros((ct.shape[0],) + prepared + (ct.shape[-1],), acc_dtype)
    out_sizes = ct.shape[1:nd + 1]
    # One strided add per kernel position: the loop runs prod(kernel) times, not once per element.
    for pos in itertools.product(*(range(k) for k in kernel)):
        region = tuple(slice(p * rd, p * rd + (o - 1) * s + 1, s)
                       for p, rd, o, s in zip(pos, kernel_dilation, out_sizes, strides))
        out[(slice(None),) + region + (slice(None),)] += ct[(slice(None),) * (nd + 1) + pos + (slice(None),)]
    return _unprepare(out, spatial, padding, input_dilation).astype(ct.dtype)


def _window_params(params):
    return {k: params[k] for k in ("kernel", "strides", "kernel_dilation", "padding", "input_dilation")}


def _windows_vjp(ct, out, inputs, params):
    x = inputs[0]
    return (_bind("sliding_windows_transpose", ct, spatial=tuple(x.shape[1:-1]), **params),)


def _windows_t_vjp(ct, out, inputs, params):
    return (_bind("sliding_windows", ct, **_window_params(params)),)


def _batched_vmap(name):
    def rule(inputs, bdims, params):
        ops = _ops()
        merged, size = _merge_batch(inputs[0], bdims[0])
        out = _bind(name, merged, **params)
        return ops.reshape(out, (size, -1) + tuple(out.shape[1:])), 0

    return rule


register(Primitive(
    name="sliding_windows", kind=OTHER, impl=_windows_impl, shape_rule=_windows_rule,
    vjp=_windows_vjp, jvp=lambda t, out, inputs, params: _bind("sliding_windows", t[0], **params),
    vmap=_batched_vmap("sliding_windows"),
    doc="(N, *S, C) -> (N, *out, *kernel, C): every (strided, dilated) window of the prepared input.",
))
register(Primitive(
    name="sliding_windows_transpose", kind=OTHER, impl=_windows_t_impl, shape_rule=_windows_t_rule,
    vjp=_windows_t_vjp, jvp=lambda t, out, inputs, params: _bind("sliding_windows_transpose", t[0], **params),
    vmap=_batched_vmap("sliding_windows_transpose"),
    doc="Overlap-add of windows back to (N, *S, C): the transpose of sliding_windows.",
))
