"""Positional encodings: RoPE, SinusoidalPositionalEncoding and ALiBi."""

from __future__ import annotations

import math
import threading

import kiln.core as mx
from kiln.core.array import transform_depth

from .base import Module


def _cos_sin(seq_len: int, half: int, base: float, scale: float, offset):
    """cos and sin of the rotation angles, (L, dims/2) float32 (they depend on positions, not on x)."""
    positions = (mx.arange(seq_len, dtype=mx.float32) + offset) * scale
    inv_freq = mx.exp(mx.arange(half, dtype=mx.float32) * (-math.log(base) / half))
    angles = mx.expand_dims(positions, 1) * mx.expand_dims(inv_freq, 0)  # (L, dims/2)
    return mx.cos(angles), mx.sin(angles)


class _LastTable(threading.local):
    """Per thread, the last (key, cos, sin) built outside transforms. A decode step asks for the same table for
    the queries and keys of every layer; sharing its nodes (the same operations on the same scalars, so the
    same values) saves building and evaluating them again. Inside grad, vmap or compile tables are built afresh."""

    entry = (None, None, None)


_last_table = _LastTable()


def _shared_cos_sin(seq_len: int, half: int, base: float, scale: float, offset):
    if type(offset) is not int or transform_depth() > 0:
        return _cos_sin(seq_len, half, base, scale, offset)
    key = (seq_len, half, offset, repr(base), repr(scale))  # repr: -0.0 and 0.0 differ, 1 and 1.0 too
    last_key, cos, sin = _last_table.entry
    if last_key != key:
        cos, sin = _cos_sin(seq_len, half, base, scale, offset)
        _last_table.entry = (key, cos, sin)
    return cos, sin


def rope(x, dims: int, traditional: bool, base: float, scale: float, offset=0):
    """Rotate the first ``dims`` features of x (positions along axis -2) by position-dependent angles."""
    half = dims // 2
    cos, sin = _shared_cos_sin(x.shape[-2], half, base, scale, offset)
    rotated, rest = (x, None) if dims == x.shape[-1] else mx.split(x, [dims], axis=-1)
    if traditional:
        pairs = rotated.reshape(*rotated.shape[:-1], half, 2)
        x1, x2 = mx.split(pairs, 2, axis=-1)
        x1 = mx.squeeze(x1, -1)
        x2 = mx.squeeze(x2, -1)
        out = mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(rotated.shape)
    else:
        x1, x2 = mx.split(rotated, 2, axis=-1)
        out = mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    out = out.astype(x.dtype)
    return out if rest is None else mx.concatenate([out, rest], axis=-1)


class RoPE(Module):
    """Implements the rotary positional encoding.

    Args:
        dims (int): The feature dimensions to be rotated. If the input feature is larger than dims then
            the rest is left unchanged.
        traditional (bool, optional): If set to ``True`` choose the traditional implementation which
            rotates consecutive dimensions. Default: ``False``.
        base (float, optional): The base used to compute angular frequency for each dimension.
            Default: ``10000``.
        scale (float, optional): The scale used to scale the positions. Default: ``1.0``.
    """

    def __init__(self, dims: int, traditional: bool = False, base: float = 10000, scale: float = 1.0):
        super().__init__()
        self.dims = dims
        self.traditional = traditional
        self.base = base
        self.scale = scale

    def _extra_repr(self):
        return f"{self.dims}, traditional={self.traditional}"

    def __call__(self, x, offset: int = 0):
        return rope(x, self.dims, self.traditional, self.base, self.scale, offset)


class SinusoidalPositionalEncoding(Module):
    r"""Implements sinusoidal positional encoding.

    Args:
        dims (int): The dimensionality of the resulting positional embeddings.
        min_freq (float, optional): The minimum frequency expected. Default: ``0.0001``.
        max_freq (float, optional): The maximum frequency expected. Default: ``1``.
        scale (float, optional): A multiplicative scale for the embeddings. Default: ``sqrt(2/dims)``.
        cos_first (bool, optional): If ``True`` embed using ``[cos(x); sin(x)]`` instead of the reverse.
            Default: ``False``.
        full_turns (bool, optional): If ``True`` multiply the frequencies with :math:`2\pi`. Default: ``False``.
    """

    def __init__(self, dims: int, min_freq: float = 0.0001, max_freq: float = 1, scale: float | None = None,
                 cos_first: bool = False, full_turns: bool = False):
        super().__init__()
        one_zero = 1 - mx.arange(0, dims // 2) / (dims // 2 - 1) if dims // 2 > 1 else mx.array([1.0])
        min_freq = math.log(min_freq)
        max_freq = math.log(max_freq)
        self._sigmas = mx.exp(one_zero * (max_freq - min_freq) + min_freq)
        if full_turns:
            self._sigmas = self._sigmas * (2 * math.pi)
        self.scale = scale if scale is not None else (2 / dims) ** 0.5
        self.cos_first = cos_first

    def __call__(self, x):
        y = mx.expand_dims(x, -1) * self._sigmas
        cosy = mx.cos(y)
        siny = mx.sin(y)
        y = mx.concatenate([cosy, siny] if self.cos_first else [siny, cosy], axis=-1)
        if self.scale != 1:
            y = y * self.scale
        return y


class ALiBi(Module):
    """Attention with Linear Biases: adds a per-head linear distance penalty to attention scores."""

    @staticmethod
    def create_alibi_matrix(q_sequence_length: int, k_sequence_length: int, num_heads: int, offset: int = 0,
                            dtype=mx.float32):
        """The (1, num_heads, q - offset, k) ALiBi bias matrix."""
        x1 = mx.arange(offset, q_sequence_length)
        x2 = mx.arange(0, k_sequence_length)
        distance = -mx.abs(mx.expand_dims(x1, 1) - mx.expand_dims(x2, 0))
        distance = mx.expand_dims(distance, (0, 1))
        slope = ALiBi.create_alibi_slope(num_heads=num_heads, dtype=dtype)
        return (distance * slope).astype(dtype)

    @staticmethod
    def create_alibi_slope(num_heads: int, dtype=mx.float32):
        """The per-head slopes, shaped (num_heads, 1, 1)."""

        def slopes(n: int) -> list:
            if math.log2(n).is_integer():
                start = 2 ** (-(2 ** -(math.log2(n) - 3)))
                return [start * start**i for i in range(n)]
            closest = 2 ** math.floor(math.log2(n))
            return slopes(closest) + slopes(2 * closest)[0::2][: n - closest]

        return mx.expand_dims(mx.array(slopes(num_heads), dtype=dtype), (-1, -2))

    def __call__(self, attention_scores, offset: int = 0, mask=None):
        alibi = ALiBi.create_alibi_matrix(q_sequence_length=attention_scores.shape[-2] + offset,
                                          k_sequence_length=attention_scores.shape[-1],
                                          num_heads=attention_scores.shape[1], offset=offset,
                                          dtype=attention_scores.dtype)
        if mask is not None:
            alibi = alibi + mask
        return attention_scores + alibi
