"""nn.value_and_grad: gradients of a loss with respect to a model's trainable parameters."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

import kiln.core as mx

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
