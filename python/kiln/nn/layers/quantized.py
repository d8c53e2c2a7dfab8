"""Quantized layers (QuantizedLinear, QuantizedEmbedding) and `nn.quantize`, which swaps a model's leaf
modules for their quantized versions. Weights use kiln.core's affine quantization, bit-identical to MLX's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import kiln.core as mx
from kiln.utils import tree_map_with_path

from .base import Module

# (group_size, bits) when the caller gives None, per quantization mode, as MLX.
_MODE_DEFAULTS = {"affine": (64, 4), "mxfp4": (32, 4), "nvfp4": (16, 4), "mxfp8": (32, 8)}


def _defaults_for_mode(mode: str, group_size, bits) -> tuple:
    if mode not in _MODE_DEFAULTS:
        raise ValueError(f"Invalid quantization mode '{mode}'. Valid modes are: {', '.join(_MODE_DEFAULTS)}.")
    default_group_size, default_bits = _MODE_DEFAULTS[mode]
    return group_size or default_group_size, bits or default_bits


def _quantize_weight(layer: Module, weight) -> None:
    """Store ``weight`` quantized on ``layer`` as ``weight`` (packed), ``scales`` and ``biases``."""
    weight, scales, *biases = mx.quantize(weight, layer.group_size, layer.bits, mode=layer.mode)
    layer.weight = weight
    layer.scales = scales
    # only affine quantization has biases; the other modes encode the offset in the format
    layer.biases = biases[0] if biases else None


def quantize(model: Module, group_size: int | None = None, bits: int | None = None, *, mode: str = "affine",
             quantize_input: bool = False,
             class_predicate: Callable[[str, Module], bool | dict] | None = None) -> None:
    """Quantize the sub-modules of a module according to a predicate (in place).

    By default every leaf module that defines ``to_quantized()`` is quantized (:obj:`Linear` and
    :obj:`Embedding`).

    Args:
        model (Module): The model whose leaf modules may be quantized.
        group_size (int, optional): The quantization group size (see :func:`kiln.core.quantize`).
            Default: ``None`` (the mode's default, 64 for ``"affine"``).
        bits (int, optional): The number of bits per parameter. Default: ``None`` (4 for ``"affine"``).
        mode (str): The quantization method. Default: ``"affine"``.
        quantize_input (bool): Whether to quantize activations too. Default: ``False``.
        class_predicate (Callable, optional): Receives the module's path and the module and returns ``True``
            (or a dict of keyword arguments for ``to_quantized``) to quantize it, ``False`` otherwise.
            Default: ``None`` (all modules with ``to_quantized``).
    """
    if class_predicate is None:
        def class_predicate(_, module):
            return hasattr(module, "to_quantized")

    def maybe_quantize(path, module):
        decision = class_predicate(path, module)
        if not decision:
            return module
        if not hasattr(module, "to_quantized"):
            raise ValueError(f"Unable to quantize model of type {type(module)}")
        if isinstance(decision, bool):
            kwargs = {"group_size": group_size, "bits": bits, "mode": mode}
            if quantize_input:
                kwargs["quantize_input"] = quantize_input
            return module.to_quantized(**kwargs)
        if isinstance(decision, dict):
            # a False quantize_input is dropped so layers without that argument still accept the dict
            if "quantize_input" in decision and not decision["quantize_input"]:
                decision.pop("quantize_input")
            return module.to_quantized(**decision)
        raise ValueError("``class_predicate`` must return a bool or a dict of parameters to pass to "
                         "``to_quantized``")

    leaves = tree_map_with_path(maybe_quantize, model.leaf_modules(), is_leaf=Module.is_module)
    model.update_modules(leaves)


class QuantizedEmbedding(Module):
    """The same as :obj:`Embedding` but with a quantized weight matrix (frozen).

    Args:
        num_embeddings (int): How many possible discrete tokens can we embed (the vocabulary size).
        dims (int): The dimensionality of the embeddings.
        group_size (int, optional): The group size of the quantized weight. Default: ``None`` (64).
        bits (int, optional): The bit width of the quantized weight. Default: ``None`` (4).
        mode (str): The quantization method. Default: ``"affine"``.
    """

    def __init__(self, num_embeddings: int, dims: int, group_size: int | None = None, bits: int | None = None,
                 mode: str = "affine"):
        super().__init__()
        self.group_size, self.bits = _defaults_for_mode(mode, group_size, bits)
        self.mode = mode
        scale = math.sqrt(1 / dims)
        _quantize_weight(self, mx.random.normal(shape=(num_embeddings, dims), scale=scale))
        self.num_embeddings = num_embeddings
        self.dims = dims
        self.freeze()

    def __call__(self, x):
        biases = self.get("biases")
        return mx.dequantize(self["weight"][x], scales=self["scales"][x],
                             biases=biases[x] if biases is not None else None,
                             group_size=self.group_size, bits=self.bits, mode=self.mode)

    def as_linear(self, x):
        """Call the quantized embedding as a quantized linear layer (for tied input/output embeddings)."""
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                   transpose=True, group_size=self.group_size, bits=self.bits, mode=self.mode)

    def _extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.dims}, group_size={self.group_size}, bits={self.bits}, mode={self.mode}"

    @classmethod
    def from_embedding(cls, embedding_layer: Module, group_size: int | None = None, bits: int | None = None,
                       mode: str = "affine") -> QuantizedEmbedding:
        """Create a :obj:`QuantizedEmbedding` layer from an :obj:`Embedding` layer."""
        num_embeddings, dims = embedding_layer.weight.shape
        layer = cls(num_embeddings, dims, group_size, bits, mode=mode)
        _quantize_weight(layer, embedding_layer.weight)
        return layer


class QuantizedLinear(Module):
    """Applies an affine transformation to the input using a quantized weight matrix (frozen).

    The quantized equivalent of :class:`Linear`; :meth:`from_linear` converts a :class:`Linear`.

    Args:
        input_dims (int): The dimensionality of the input features.
        output_dims (int): The dimensionality of the output features.
        bias (bool, optional): If ``False`` the layer has no bias. Default: ``True``.
        group_size (int, optional): The group size of the quantized weight. Default: ``None`` (64).
        bits (int, optional): The bit width of the quantized weight. Default: ``None`` (4).
        mode (str): The quantization method. Default: ``"affine"``.
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group_size: int | None = None,
                 bits: int | None = None, mode: str = "affine"):
        super().__init__()
        self.group_size, self.bits = _defaults_for_mode(mode, group_size, bits)
        self.mode = mode
        scale = math.sqrt(1 / input_dims)
        _quantize_weight(self, mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims)))
        if bias:
            self.bias = mx.zeros((output_dims,))
        self.freeze()

    def _extra_repr(self) -> str:
        out_dims, words = self.weight.shape
        in_dims = words * 32 // self.bits
        return (f"input_dims={in_dims}, output_dims={out_dims}, bias={'bias' in self}, "
                f"group_size={self.group_size}, bits={self.bits}, mode={self.mode}")

    def __call__(self, x):
        y = mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                transpose=True, group_size=self.group_size, bits=self.bits, mode=self.mode)
        if "bias" in self:
            y = y + self["bias"]
        return y

    @classmethod
    def from_linear(cls, linear_layer: Module, group_size: int | None = None, bits: int | None = None,
                    mode: str = "affine") -> QuantizedLinear:
        """Create a :obj:`QuantizedLinear` layer from a :obj:`Linear` layer."""
        output_dims, input_dims = linear_layer.weight.shape
        layer = cls(input_dims, output_dims, False, group_size, bits, mode=mode)
        _quantize_weight(layer, linear_layer.weight)
        # set after the constructor's freeze, so (as in MLX) the copied bias stays trainable
        if "bias" in linear_layer:
            layer.bias = linear_layer.bias
        return layer
