"""nn.value_and_grad, nn.utils.checkpoint, nn.average_gradients and nn.utils.clip_grad_norm_sharded: gradients
with respect to a model's trainable parameters, and their reduction across processes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import wraps
from typing import Any

import kiln.core as mx
from kiln.utils import tree_flatten, tree_map, tree_reduce, tree_unflatten

from .layers.base import Module


def value_and_grad(model: Module, fn: Callable):
    """Transform ``fn`` to return its value and the gradients with respect to ``model.trainable_parameters()``.

    Args:
        model (Module): The model whose trainable parameters are differentiated.
        fn (Callable): The function to differentiate; it reads the parameters through ``model``.

    Returns:
        A callable returning ``(value, gradients)``, the gradients a tree shaped like
        ``model.trainable_parameters()``.
    """

    def inner_fn(params, *args, **kwargs):
        model.update(params)
        return fn(*args, **kwargs)

    value_grad_fn = mx.value_and_grad(inner_fn)

    @wraps(fn)
    def wrapped_value_grad_fn(*args, **kwargs):
        value, grad = value_grad_fn(model.trainable_parameters(), *args, **kwargs)
        return value, grad

    return wrapped_value_grad_fn


def checkpoint(module: Module, fn: Callable | None = None):
    """Transform ``fn`` (default: ``module``) to one that performs gradient checkpointing with respect to
    the module's trainable parameters and the callable's array inputs.

    Args:
        module (Module): The module whose parameters are checkpointed.
        fn (Callable, optional): The function to checkpoint. Default: ``module`` itself.

    Returns:
        A callable that keeps only inputs and outputs in the forward pass and recomputes the intermediate
        values in the backward pass.
    """
    # call the module, not module.__call__, so a later monkey-patched __call__ is honoured
    fn = module if fn is None else fn

    @wraps(fn)
    def wrapped_checkpointed_fn(*args, **kwargs):
        keys, params = _flat_parameters(module)
        array_slots = [i for i, a in enumerate(args) if isinstance(a, mx.array)]
        # mx.checkpoint differentiates positional arrays only: parameters are flattened into the argument
        # list, and non-array arguments (masks given as None or "causal") are closed over
        def inner(*flat):
            full_args = list(args)
            for slot, value in zip(array_slots, flat[len(params):]):
                full_args[slot] = value
            saved = module.trainable_parameters()
            module.update(tree_unflatten(list(zip(keys, flat[:len(params)]))))
            try:
                return fn(*full_args, **kwargs)
            finally:
                # the recomputation hands in copies; the module keeps the parameters it had
                module.update(saved)

        return mx.checkpoint(inner)(*params, *(args[i] for i in array_slots))

    return wrapped_checkpointed_fn


def _flat_parameters(module: Module) -> tuple:
    flat = tree_flatten(module.trainable_parameters())
    return [k for k, _ in flat], [v for _, v in flat]


def average_gradients(gradients: Any, group: Any = None, all_reduce_size: int = 32 * 1024**2,
                      communication_stream: Any = None):
    """Average the gradients across the distributed processes in ``group``.

    Small arrays are concatenated into buckets of about ``all_reduce_size`` bytes (one dtype per bucket), so
    many small gradients cost a few large all-reduces instead of many small ones.

    Args:
        gradients (Any): The Python tree of gradients; the same structure on every process.
        group (Group, optional): The processes to average over. Default: ``None`` (the global group).
        all_reduce_size (int): Group arrays until their size in bytes reaches this number; one all-reduce per
            group. If less than or equal to 0, every array is reduced on its own. Default: ``32 MiB``.
        communication_stream (Stream, optional): Accepted for MLX compatibility; kiln has one CPU stream.

    Returns:
        The tree of averaged gradients.
    """
    group = group or mx.distributed.init()
    size = group.size()
    if size == 1:
        return gradients
    flat = tree_flatten(gradients)
    if not flat:
        return gradients
    averaged = {}
    for bucket in _buckets([g for _, g in flat], all_reduce_size):
        arrays = [flat[i][1] for i in bucket]
        if len(arrays) == 1:
            averaged[bucket[0]] = mx.distributed.all_sum(arrays[0], group=group) / size
            continue
        joined = mx.distributed.all_sum(mx.concatenate([a.reshape(-1) for a in arrays]), group=group) / size
        offsets = list(itertools.accumulate(a.size for a in arrays))[:-1]
        for i, part, a in zip(bucket, mx.split(joined, offsets), arrays):
            averaged[i] = part.reshape(a.shape)
    return tree_unflatten([(key, averaged[i]) for i, (key, _) in enumerate(flat)])


def _buckets(arrays: list, limit: int) -> list:
    """Indices of `arrays` in groups of one dtype whose bytes reach `limit` (the last may be smaller).

    Every process computes the same buckets from the same tree, so their all-reduces pair up.
    """
    if limit <= 0:
        return [[i] for i in range(len(arrays))]
    open_buckets, done = {}, []
    for i, a in enumerate(arrays):
        bucket, nbytes = open_buckets.get(a.dtype, ([], 0))
        bucket.append(i)
        nbytes += a.nbytes
        if nbytes >= limit:
            done.append(bucket)
            open_buckets.pop(a.dtype, None)
        else:
            open_buckets[a.dtype] = (bucket, nbytes)
    return done + [bucket for bucket, _ in open_buckets.values()]


def clip_grad_norm_sharded(gradients: Any, max_norm: float, group: Any = None):
    """Clip the global norm of gradients that are sharded across a group.

    The sharded form of ``optimizers.clip_grad_norm``: each process holds a shard of the gradients, so the
    squared norms are summed over the group before rescaling.

    Args:
        gradients (Any): A tree holding this process's shard of the gradients.
        max_norm (float): The largest allowed global norm.
        group (Group, optional): The group the gradients are sharded across. Default: ``None`` (global).

    Returns:
        (Any, array): The (possibly rescaled) local shard and the global gradient norm.
    """
    local = tree_reduce(lambda total, g: total + g.square().sum(), gradients, 0.0)
    norm = mx.sqrt(mx.distributed.all_sum(local, group=group))
    scale = mx.minimum(max_norm / (norm + 1e-6), 1.0)
    return tree_map(lambda g: g * scale, gradients), norm
