"""Identity, Linear and Bilinear layers (MLX's initialisation: uniform in +-1/sqrt(fan_in))."""

from __future__ import annotations

import math
from typing import Any

import kiln.core as mx

from .base import Module
from .quantized import QuantizedLinear


class Identity(Module):
    """A placeholder identity operator that is argument-insensitive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __call__(self, x):
        return x


class Linear(Module):
    r"""Applies an affine transformation :math:`y = x W^\top + b` to the input.

    Weight and bias are initialised from :math:`\mathcal{U}(-k, k)` with :math:`k = 1/\sqrt{D_i}`.

    Args:
        input_dims (int): The dimensionality of the input features.
        output_dims (int): The dimensionality of the output features.
        bias (bool, optional): If ``False`` the layer has no bias. Default: ``True``.
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True) -> None:
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self) -> str:
        return f"input_dims={self.weight.shape[1]}, output_dims={self.weight.shape[0]}, bias={'bias' in self}"

    def __call__(self, x):
        if "bias" in self:
            return mx.matmul(x, self["weight"].T) + self["bias"]
        return mx.matmul(x, self["weight"].T)

    def to_quantized(self, group_size: int | None = None, bits: int | None = None, mode: str = "affine",
                     quantize_input: bool = False):
        """Return a :obj:`QuantizedLinear` approximating this layer (weights quantized).

        ``quantize_input=True`` (MLX's ``QQLinear``) needs the nvfp4/mxfp8 modes, which kiln lacks.
        """
        if quantize_input:
            raise ValueError("[to_quantized] Quantized input needs the 'nvfp4' or 'mxfp8' modes, which kiln "
                             "does not support.")
        return QuantizedLinear.from_linear(self, group_size, bits, mode)


class Bilinear(Module):
    r"""Applies a bilinear transformation :math:`y_i = x_1^\top W_i x_2 + b_i`.

    Args:
        input1_dims (int): The dimensionality of the first input.
        input2_dims (int): The dimensionality of the second input.
        output_dims (int): The dimensionality of the output features.
        bias (bool, optional): If ``False`` the layer has no bias. Default: ``True``.
    """

    def __init__(self, input1_dims: int, input2_dims: int, output_dims: int, bias: bool = True) -> None:
        super().__init__()
        scale = math.sqrt(1.0 / input1_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input2_dims, input1_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self) -> str:
        out, in2, in1 = self.weight.shape
        return f"input1_dims={in1}, input2_dims={in2}, output_dims={out}, bias={'bias' in self}"

    def __call__(self, x1, x2):
        out, in2, in1 = self.weight.shape
        xshape = x1.shape[:-1]
        x1 = x1.reshape(-1, in1)
        x2 = mx.expand_dims(x2.reshape(-1, 1, in2), 1)  # (B, 1, 1, in2)
        # (B, in1) @ (out * in2, in1)^T -> (B, out, in2), then contract in2 with x2.
        w = self.weight.reshape(out * in2, in1)
        y = mx.matmul(x1, w.T).reshape(-1, out, in2, 1)
        y = mx.matmul(x2, y).reshape(-1, out)
        y = y.reshape(*xshape, out) if xshape else y.reshape(out)
        if "bias" in self:
            y = y + self.bias
        return y
