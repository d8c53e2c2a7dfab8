"""MultiHeadAttention and the Transformer encoder/decoder stacks (MLX's layout and defaults)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import kiln.core as mx

from ..utils import checkpoint
from .activations import relu
from .base import Module
from .dropout import Dropout
from .linear import Linear
from .normalization import LayerNorm


def scaled_dot_product_attention(queries, keys, values, scale: float, mask=None):
    """softmax(scale * Q K^T + mask) V over (B, heads, L, D) arrays; mask is additive, boolean or "causal"."""
    scores = mx.matmul(queries * scale, mx.swapaxes(keys, -1, -2))
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"[scaled_dot_product_attention] Invalid mask type {mask!r}.")
        q_len, k_len = scores.shape[-2], scores.shape[-1]
        rows = mx.expand_dims(mx.arange(k_len - q_len, k_len), 1)
        cols = mx.expand_dims(mx.arange(k_len), 0)
        mask = rows >= cols
    if mask is not None:
        if mask.dtype == mx.bool_:
            scores = mx.where(mask, scores, mx.array(-np.inf, dtype=scores.dtype))
        else:
            scores = scores + mask
    weights = mx.softmax(scores.astype(mx.float32), axis=-1).astype(scores.dtype)
    return mx.matmul(weights, values)


class MultiHeadAttention(Module):
    """Implements the scaled dot product attention with multiple heads.

    Args:
        dims (int): The model dimensions. This is also the default value for the queries, keys, values,
            and the output.
        num_heads (int): The number of attention heads to use.
        query_input_dims (int, optional): The input dimensions of the queries. Default: ``dims``.
        key_input_dims (int, optional): The input dimensions of the keys. Default: ``dims``.
        value_input_dims (int, optional): The input dimensions of the values. Default: ``key_input_dims``.
        value_dims (int, optional): The dimensions of the values after the projection. Default: ``dims``.
        value_output_dims (int, optional): The dimensions the new values will be projected to.
            Default: ``dims``.
        bias (bool, optional): Whether or not to use a bias in the projections. Default: ``False``.
    """

    def __init__(self, dims: int, num_heads: int, query_input_dims: int | None = None,
                 key_input_dims: int | None = None, value_input_dims: int | None = None,
                 value_dims: int | None = None, value_output_dims: int | None = None, bias: bool = False):
        super().__init__()
        if (dims % num_heads) != 0:
            raise ValueError("The input feature dimensions should be divisible by the number of heads "
                             f"({dims} % {num_heads}) != 0")
        query_input_dims = query_input_dims or dims
        key_input_dims = key_input_dims or dims
        value_input_dims = value_input_dims or key_input_dims
        value_dims = value_dims or dims
        value_output_dims = value_output_dims or dims
        self.num_heads = num_heads
        self.query_proj = Linear(query_input_dims, dims, bias=bias)
        self.key_proj = Linear(key_input_dims, dims, bias=bias)
        self.value_proj = Linear(value_input_dims, value_dims, bias=bias)
        self.out_proj = Linear(value_dims, value_output_dims, bias=bias)

    def __call__(self, queries, keys, values, mask=None):
        queries = self.query_proj(queries)
        keys = self.key_proj(keys)
        values = self.value_proj(values)
        heads = self.num_heads
        queries = mx.unflatten(queries, -1, (heads, -1)).transpose(0, 2, 1, 3)
        keys = mx.unflatten(keys, -1, (heads, -1)).transpose(0, 2, 1, 3)
        values = mx.unflatten(values, -1, (heads, -1)).transpose(0, 2, 1, 3)
        scale = math.sqrt(1 / queries.shape[-1])
        output = scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)
        output = output.transpose(0, 2, 1, 3).flatten(-2, -1)
        return self.out_proj(output)

    @staticmethod
    def create_additive_causal_mask(N: int, dtype=mx.float32):
        """An (N, N) mask with the dtype's most negative value above the diagonal and 0 elsewhere."""
        indices = mx.arange(N)
        mask = mx.expand_dims(indices, 1) < mx.expand_dims(indices, 0)
        # The dtype's own lowest finite value: float32's would round to -inf in bfloat16, and 0 * -inf is NaN.
        return mask.astype(dtype) * mx.finfo(dtype).min


class TransformerEncoderLayer(Module):
    """One encoder block: self-attention and an MLP, each with a residual connection and LayerNorm."""

    def __init__(self, dims: int, num_heads: int, mlp_dims: int | None = None, dropout: float = 0.0,
                 activation: Callable[[Any], Any] = relu, norm_first: bool = True):
        super().__init__()
        mlp_dims = mlp_dims or dims * 4
        self.attention = MultiHeadAttention(dims, num_heads)
        self.ln1 = LayerNorm(dims)
        self.ln2 = LayerNorm(dims)
        self.linear1 = Linear(dims, mlp_dims)
        self.linear2 = Linear(mlp_dims, dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation
        self.norm_first = norm_first

    def _mlp(self, y):
        return self.linear2(self.dropout2(self.activation(self.linear1(y))))

    def __call__(self, x, mask):
        if self.norm_first:
            y = self.ln1(x)
            x = x + self.dropout1(self.attention(y, y, y, mask))
            return x + self._mlp(self.ln2(x))
        x = self.ln1(x + self.dropout1(self.attention(x, x, x, mask)))
        return self.ln2(x + self._mlp(x))


class TransformerEncoder(Module):
    """A stack of ``num_layers`` encoder blocks followed by a LayerNorm."""

    def __init__(self, num_layers: int, dims: int, num_heads: int, mlp_dims: int | None = None,
                 dropout: float = 0.0, activation=relu, norm_first: bool = True, checkpoint: bool = False):
        super().__init__()
        self.layers = [TransformerEncoderLayer(dims, num_heads, mlp_dims, dropout, activation, norm_first)
                       for _ in range(num_layers)]
        self.ln = LayerNorm(dims)
        self.checkpoint = checkpoint

    def __call__(self, x, mask):
        for layer in self.layers:
            layer = checkpoint(layer) if self.checkpoint else layer
            x = layer(x, mask)
        return self.ln(x)


class TransformerDecoderLayer(Module):
    """One decoder block: self-attention, cross-attention over ``memory`` and an MLP."""

    def __init__(self, dims: int, num_heads: int, mlp_dims: int | None = None, dropout: float = 0.0,
                 activation: Callable[[Any], Any] = relu, norm_first: bool = True):
        super().__init__()
        mlp_dims = mlp_dims or dims * 4
        self.self_attention = MultiHeadAttention(dims, num_heads)
        self.cross_attention = MultiHeadAttention(dims, num_heads)
        self.ln1 = LayerNorm(dims)
        self.ln2 = LayerNorm(dims)
        self.ln3 = LayerNorm(dims)
        self.linear1 = Linear(dims, mlp_dims)
        self.linear2 = Linear(mlp_dims, dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = activation
        self.norm_first = norm_first

    def _mlp(self, y):
        return self.linear2(self.dropout3(self.activation(self.linear1(y))))

    def __call__(self, x, memory, x_mask, memory_mask):
        if self.norm_first:
            y = self.ln1(x)
            x = x + self.dropout1(self.self_attention(y, y, y, x_mask))
            y = self.ln2(x)
            x = x + self.dropout2(self.cross_attention(y, memory, memory, memory_mask))
            return x + self._mlp(self.ln3(x))
        x = self.ln1(x + self.dropout1(self.self_attention(x, x, x, x_mask)))
        x = self.ln2(x + self.dropout2(self.cross_attention(x, memory, memory, memory_mask)))
        return self.ln3(x + self._mlp(x))


class TransformerDecoder(Module):
    """A stack of ``num_layers`` decoder blocks followed by a LayerNorm."""

    def __init__(self, num_layers: int, dims: int, num_heads: int, mlp_dims: int | None = None,
                 dropout: float = 0.0, activation=relu, norm_first: bool = True, checkpoint: bool = False):
        super().__init__()
        self.layers = [TransformerDecoderLayer(dims, num_heads, mlp_dims, dropout, activation, norm_first)
                       for _ in range(num_layers)]
        self.ln = LayerNorm(dims)
        self.checkpoint = checkpoint

    def __call__(self, x, memory, x_mask, memory_mask):
        for layer in self.layers:
            layer = checkpoint(layer) if self.checkpoint else layer
            x = layer(x, memory, x_mask, memory_mask)
        return self.ln(x)


class Transformer(Module):
    """Implements a standard Transformer model (encoder and decoder).

    Args:
        dims (int, optional): The number of expected features in the encoder/decoder inputs. Default: ``512``.
        num_heads (int, optional): The number of attention heads. Default: ``8``.
        num_encoder_layers (int, optional): The number of encoder layers. Default: ``6``.
        num_decoder_layers (int, optional): The number of decoder layers. Default: ``6``.
        mlp_dims (int, optional): The hidden dimension of the MLP blocks. Default: ``4 * dims``.
        dropout (float, optional): The dropout value for the blocks. Default: ``0.0``.
        activation (function, optional): The activation of the MLP hidden layer. Default: :func:`relu`.
        custom_encoder (Module, optional): A custom encoder to replace the standard one.
        custom_decoder (Module, optional): A custom decoder to replace the standard one.
        norm_first (bool, optional): LayerNorm before (``True``) or after attention and MLP. Default: ``True``.
        checkpoint (bool, optional): Recompute each layer's activations in the backward pass instead of
            keeping them (less memory, more compute). Default: ``False``.
    """

    def __init__(self, dims: int = 512, num_heads: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, mlp_dims: int | None = None, dropout: float = 0.0,
                 activation: Callable[[Any], Any] = relu, custom_encoder: Any | None = None,
                 custom_decoder: Any | None = None, norm_first: bool = True, checkpoint: bool = False):
        super().__init__()
        # `is None`, not truthiness: a Module is a dict, and an empty one is falsy.
        if custom_encoder is None:
            custom_encoder = TransformerEncoder(num_encoder_layers, dims, num_heads, mlp_dims, dropout, activation,
                                                norm_first, checkpoint)
        if custom_decoder is None:
            custom_decoder = TransformerDecoder(num_decoder_layers, dims, num_heads, mlp_dims, dropout, activation,
                                                norm_first, checkpoint)
        self.encoder = custom_encoder
        self.decoder = custom_decoder

    def __call__(self, src, tgt, src_mask, tgt_mask, memory_mask):
        memory = self.encoder(src, src_mask)
        return self.decoder(tgt, memory, tgt_mask, memory_mask)
