"""Embedding: a lookup table of vectors (initialised from N(0, 1/dims) as MLX does)."""

from __future__ import annotations

import math

import kiln.core as mx

from .base import Module
from .quantized import QuantizedEmbedding


class Embedding(Module):
    """Implements a simple lookup table that maps each input integer to a high-dimensional vector.

    Args:
        num_embeddings (int): How many possible discrete tokens can we embed (the vocabulary size).
        dims (int): The dimensionality of the embeddings.
    """

    def __init__(self, num_embeddings: int, dims: int):
        super().__init__()
        scale = math.sqrt(1 / dims)
        self.weight = mx.random.normal(shape=(num_embeddings, dims), scale=scale)

    def _extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"

    def __call__(self, x):
        return mx.take(self.weight, x, axis=0)

    def as_linear(self, x):
        """Call the embedding layer as a linear layer (for weight tying): ``x @ weight.T``."""
        return mx.matmul(x, self.weight.T)

    def to_quantized(self, group_size: int | None = None, bits: int | None = None, mode: str = "affine",
                     quantize_input: bool = False):
        """Return a :obj:`QuantizedEmbedding` layer that approximates this embedding layer."""
        if quantize_input:
            raise ValueError("Quantized input is not supported.")
        return QuantizedEmbedding.from_embedding(self, group_size, bits, mode)
