"""nn.value_and_grad, nn.utils.checkpoint and nn.average_gradients: gradients with respect to a model's
trainable parameters."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import kiln.core as mx
from kiln.utils import tree_flatten, tree_unflatten

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

    kiln runs in a single process, so the average over the (one-member) group is the gradients themselves.

    Args:
        gradients (Any): The Python tree of gradients.
        group (optional): The process group; ``None`` (the global group) or a group of size 1.
        all_reduce_size (int): Bytes per communication step in MLX; unused in a single process.
        communication_stream (optional): Unused in a single process.

    Returns:
        The averaged gradients (``gradients`` unchanged).
    """
    size = 1 if group is None else group.size()
    if size != 1:
        raise ValueError(f"[average_gradients] kiln runs in a single process but the group has {size} members.")
    return gradients
