"""Initializers (MLX's `mlx.nn.init`): each returns a function that maps an array to a new, initialised one."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import kiln.core as mx


def constant(value: float, dtype=mx.float32) -> Callable:
    """An initializer that returns an array filled with ``value``.

    Args:
        value (float): The value to fill the array with.
        dtype (Dtype, optional): The data type of the array. Default: ``float32``.

    Returns:
        Callable[[array], array]: An initializer that returns an array with the same shape as the input.
    """

    def initializer(a):
        return mx.full(a.shape, value, dtype=dtype)

    return initializer


def normal(mean: float = 0.0, std: float = 1.0, dtype=mx.float32) -> Callable:
    """An initializer that samples from a normal distribution with ``mean`` and ``std``."""

    def initializer(a):
        return mx.random.normal(shape=a.shape, scale=std, loc=mean, dtype=dtype)

    return initializer


def uniform(low: float = 0.0, high: float = 1.0, dtype=mx.float32) -> Callable:
    """An initializer that samples from a uniform distribution on ``[low, high)``."""

    def initializer(a):
        return mx.random.uniform(low, high, a.shape, dtype=dtype)

    return initializer


def identity(dtype=mx.float32) -> Callable:
    """An initializer that returns an identity matrix (the input must be square)."""

    def initializer(arr):
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise ValueError(f"The input array must be a square matrix but got shape {arr.shape}.")
        return mx.eye(n=arr.shape[0], dtype=dtype)

    return initializer


def _calculate_fan_in_fan_out(x):
    if x.ndim < 2:
        raise ValueError("Glorot / He initialization requires at least 2 dimensional input but input with "
                         f"{x.ndim} dimensions.")
    receptive_field = math.prod(x.shape[1:-1]) if x.ndim > 2 else 1
    return x.shape[-1] * receptive_field, x.shape[0] * receptive_field


def glorot_normal(dtype=mx.float32) -> Callable:
    r"""A Glorot normal initializer: :math:`\sigma = \gamma \sqrt{2 / (\text{fan\_in} + \text{fan\_out})}`."""

    def initializer(a, gain: float = 1.0):
        fan_in, fan_out = _calculate_fan_in_fan_out(a)
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        return mx.random.normal(shape=a.shape, scale=std, dtype=dtype)

    return initializer


def glorot_uniform(dtype=mx.float32) -> Callable:
    r"""A Glorot uniform initializer: limit :math:`\gamma \sqrt{6 / (\text{fan\_in} + \text{fan\_out})}`."""

    def initializer(a, gain: float = 1.0):
        fan_in, fan_out = _calculate_fan_in_fan_out(a)
        limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return mx.random.uniform(-limit, limit, a.shape, dtype=dtype)

    return initializer


def _fan(a, mode):
    fan_in, fan_out = _calculate_fan_in_fan_out(a)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"Invalid mode: {mode}. Valid modes are: fan_in, fan_out")


def he_normal(dtype=mx.float32) -> Callable:
    r"""A He normal initializer: :math:`\sigma = \gamma / \sqrt{\text{fan}}`."""

    def initializer(a, mode: Literal["fan_in", "fan_out"] = "fan_in", gain: float = 1.0):
        std = gain / math.sqrt(_fan(a, mode))
        return mx.random.normal(shape=a.shape, scale=std, dtype=dtype)

    return initializer


def he_uniform(dtype=mx.float32) -> Callable:
    r"""A He uniform initializer: limit :math:`\gamma \sqrt{3 / \text{fan}}`."""

    def initializer(a, mode: Literal["fan_in", "fan_out"] = "fan_in", gain: float = 1.0):
        limit = gain * math.sqrt(3.0 / _fan(a, mode))
        return mx.random.uniform(-limit, limit, a.shape, dtype=dtype)

    return initializer


def sparse(sparsity: float, mean: float = 0.0, std: float = 1.0, dtype=mx.float32) -> Callable:
    """An initializer for 2-D arrays: normal samples with ``ceil(sparsity * cols)`` zeros in every row."""

    def initializer(a):
        if a.ndim != 2:
            raise ValueError("Only tensors with 2 dimensions are supported")
        cols = a.shape[1]
        num_zeros = int(math.ceil(sparsity * cols))
        order = mx.argsort(mx.random.uniform(shape=a.shape), axis=1)
        values = mx.random.normal(shape=a.shape, scale=std, loc=mean, dtype=dtype)
        # Column j of a row is zeroed when its rank in that row's random order is below num_zeros.
        ranks = mx.argsort(order, axis=1)
        return mx.where(ranks < num_zeros, mx.zeros_like(values), values)

    return initializer


def orthogonal(gain: float = 1.0, dtype=mx.float32) -> Callable:
    """An initializer that returns a (semi-)orthogonal 2-D matrix scaled by ``gain``."""

    def initializer(a):
        if a.ndim != 2:
            raise ValueError(f"Orthogonal initialization requires a 2D array but got a {a.ndim}D array.")
        rows, cols = a.shape
        n = max(rows, cols)
        rmat = mx.random.normal(shape=(n, n))
        q, r = mx.linalg.qr(rmat)
        # Fix the signs so the result does not depend on the QR routine's convention.
        q = q * mx.sign(mx.diagonal(r))
        q = mx.split(mx.split(q, [rows], axis=0)[0], [cols], axis=1)[0]
        return (q * gain).astype(dtype)

    return initializer
