"""vmap: trace the function once on unbatched placeholders, then replay the recorded nodes with each
primitive's batching rule (registry `vmap`), carrying one batch dimension per value.
"""

from __future__ import annotations

import functools

from .array import array, bind, postorder, transform_scope
from .tracing import replace_arrays
from .primitives import REGISTRY

__all__ = ["vmap"]


def _flatten_with_axes(tree, axes, output: bool = False):
    """Leaves of `tree` paired with their batch axis. `axes` is a prefix tree of `tree` (MLX's rule): a
    container must match the type (list and tuple differ), length and keys of the one it stands for, and an
    int or None applies to every leaf below it. A one-element tuple also works for a lone array."""
    leaves, flat_axes = [], []
    saw_tuple = False
    mismatch = (f"[vmap] {'out_axes' if output else 'in_axes'} is not a valid prefix of the "
                f"{'outputs' if output else 'arguments'}: its lists, tuples and dicts must match theirs in type, "
                "length and keys.")

    def leaf_axis(ax):
        nonlocal saw_tuple
        if isinstance(ax, tuple):
            saw_tuple = True
            ax = ax[0] if len(ax) == 1 else "invalid"
        if ax is not None and not isinstance(ax, int):
            raise ValueError("[vmap] axis must be int or None.")
        return ax

    def walk(node, ax):
        if isinstance(node, array):
            leaves.append(node)
            flat_axes.append(leaf_axis(ax))
        elif isinstance(node, (list, tuple, dict)):
            container = isinstance(ax, (list, tuple, dict))
            if container and (_kind(ax) != _kind(node) or len(ax) != len(node)
                              or (isinstance(node, dict) and set(ax) != set(node))):
                raise ValueError(mismatch)
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for k, child in children:
                walk(child, ax[k] if container else ax)
        else:
            what = "function must return" if output else "arguments should contain"
            raise ValueError(f"[vmap] The {what} only arrays or trees of arrays, got {type(node).__name__}.")

    walk(tree, axes)
    if saw_tuple and not isinstance(tree, array):
        raise ValueError("[vmap] axis must be int or None.")
    return leaves, flat_axes


def _kind(container) -> type:
    """list, tuple or dict: the container kinds an axes tree must match (subclasses count as their base)."""
    return next(k for k in (list, tuple, dict) if isinstance(container, k))


def batch_replay(outputs, placeholders, values, bdims):
    """Recompute `outputs` with each placeholder replaced by a batched value; returns [(value, bdim)]."""
    env = {id(p): (v, b) for p, v, b in zip(placeholders, values, bdims)}
    stop = set(env)
    for node in postorder(outputs, expand=lambda node: id(node) not in stop):
        if id(node) in env:
            continue
        if not any(id(x) in env for x in node._inputs):
            continue  # does not depend on a batched input: keep the node itself
        vals = [env[id(x)][0] if id(x) in env else x for x in node._inputs]
        dims = [env[id(x)][1] if id(x) in env else None for x in node._inputs]
        if all(d is None for d in dims):
            env[id(node)] = (bind(node._prim, *vals, **node._params), None)
            continue
        prim = REGISTRY[node._prim]
        if prim.vmap is None:
            raise ValueError(f"[vmap] Primitive {node._prim} has no batching rule.")
        env[id(node)] = prim.vmap(vals, dims, node._params)
    return [env.get(id(o), (o, None)) for o in outputs]


def _move_out(value, bdim, out_axis, size):
    from . import ops

    if out_axis is None:
        if bdim is not None:
            raise ValueError("[vmap] An output with out_axes=None must not be batched.")
        return value
    if bdim is None:
        value = ops.broadcast_to(ops.expand_dims(value, 0), (size,) + tuple(value.shape))
        bdim = 0
    nd = value.ndim
    ax = out_axis + nd if out_axis < 0 else out_axis
    if not 0 <= ax < nd:
        raise ValueError(f"[vmap] out_axes {out_axis} is invalid for output with {nd - 1} dimensions.")
    return ops.moveaxis(value, bdim, ax) if bdim != ax else value


def vmap(fun, in_axes=0, out_axes=0):
    """Vectorise `fun` over a batch axis of its inputs (MLX's `mx.vmap`).

    Args:
        fun: a function of arrays (or trees of arrays).
        in_axes: batch axis per input (int, None, or a tree matching the arguments).
        out_axes: batch axis of each output (int, None, or a tree matching the outputs).

    Returns:
        Callable: The vectorised function.
    """

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        if kwargs:
            raise TypeError("[vmap] Keyword arguments are not supported.")
        # As MLX: the axes describe the lone argument itself, or the tuple of several.
        leaves, axes = _flatten_with_axes(args[0] if len(args) == 1 else tuple(args), in_axes)
        size = None
        examples, norm_axes = [], []
        for x, ax in zip(leaves, axes):
            if ax is None:
                examples.append(x)
                norm_axes.append(None)
                continue
            if not isinstance(ax, int) or not -x.ndim <= ax < x.ndim:
                raise ValueError(f"[vmap] Invalid in_axes {ax!r} for input with {x.ndim} dimensions.")
            ax = ax + x.ndim if ax < 0 else ax
            if size is None:
                size = x.shape[ax]
            elif x.shape[ax] != size:
                raise ValueError(f"[vmap] Inconsistent sizes along the mapped axes: {size} and {x.shape[ax]}.")
            shape = tuple(s for i, s in enumerate(x.shape) if i != ax)
            examples.append(array._make_placeholder(shape, x.dtype, "vmap"))
            norm_axes.append(ax)
        if size is None:
            raise ValueError("[vmap] At least one input must be mapped (in_axes all None).")
        with transform_scope():
            # The function gets copies: an in-place update (x[0] = 1) must not rebind a placeholder.
            views = iter([bind("copy", e) if ax is not None else e for e, ax in zip(examples, norm_axes)])
            out = fun(*replace_arrays(list(args), lambda _: next(views)))
            out_leaves, flat_oa = _flatten_with_axes(out, out_axes, output=True)
            batched = [(x, ax) for x, ax, e in zip(leaves, norm_axes, examples) if ax is not None]
            phs = [e for e, ax in zip(examples, norm_axes) if ax is not None]
            results = batch_replay(out_leaves, phs, [b[0] for b in batched], [b[1] for b in batched])
        moved = [_move_out(v, b, a, size) for (v, b), a in zip(results, flat_oa)]
        moved_leaves = iter(moved)
        return replace_arrays(out, lambda _: next(moved_leaves))

    return wrapped

