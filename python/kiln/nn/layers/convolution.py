"""Convolution layers: Conv1d/2d/3d (weights (C_out, *kernel, C_in/groups)); the transposed ones, which share
`_ConvNd`, live in convolution_transpose.py."""

from __future__ import annotations

import math

import kiln.core as mx

from .base import Module


def _ntuple(value, n: int) -> tuple:
    return (value,) * n if isinstance(value, int) else tuple(value)


class _ConvNd(Module):
    """Shared construction: uniform(+-1/sqrt(fan_in)) weights as MLX, zero bias."""

    _nd = 1
    _transpose = False
    _grouped = True  # whether the layer takes (and shows) a groups argument

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, output_padding=0):
        super().__init__()
        if in_channels % groups != 0:
            raise ValueError(f"The number of input channels ({in_channels}) must be divisible by the number of "
                             f"groups ({groups})")
        kernel = _ntuple(kernel_size, self._nd)
        scale = math.sqrt(1 / (in_channels // groups * math.prod(kernel)))
        shape = (out_channels,) + kernel + (in_channels // groups,)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=shape)
        if bias:
            self.bias = mx.zeros((out_channels,))
        if self._nd > 1:
            # MLX stores per-axis tuples for stride and padding (not dilation) in 2-D and 3-D layers
            stride = _ntuple(stride, self._nd)
            padding = _ntuple(padding, self._nd)
            output_padding = _ntuple(output_padding, self._nd)
        self.padding = padding
        self.dilation = dilation
        self.stride = stride
        self.groups = groups
        if self._transpose:
            self.output_padding = output_padding

    def _extra_repr(self):
        kernel = self.weight.shape[1:-1]
        kernel = kernel[0] if self._nd == 1 else tuple(kernel)
        text = (f"{self.weight.shape[-1] * self.groups}, {self.weight.shape[0]}, kernel_size={kernel}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, ")
        if self._transpose:
            text += f"output_padding={self.output_padding}, "
        if self._grouped:
            text += f"groups={self.groups}, "
        return text + f"bias={'bias' in self}"

    def __call__(self, x):
        nd = self._nd
        if self._transpose:
            fn = (mx.conv_transpose1d, mx.conv_transpose2d, mx.conv_transpose3d)[nd - 1]
            y = fn(x, self.weight, self.stride, self.padding, self.dilation, self.output_padding)
        else:
            fn = (mx.conv1d, mx.conv2d, mx.conv3d)[nd - 1]
            y = fn(x, self.weight, self.stride, self.padding, self.dilation, self.groups)
        if "bias" in self:
            y = y + self.bias
        return y


class Conv1d(_ConvNd):
    """Applies a 1-dimensional convolution over the multi-channel input sequence (``NLC``).

    Args:
        in_channels (int): The number of input channels.
        out_channels (int): The number of output channels.
        kernel_size (int): The size of the convolution filters.
        stride (int, optional): The stride when applying the filter. Default: ``1``.
        padding (int, optional): How many positions to 0-pad the input with. Default: ``0``.
        dilation (int, optional): The dilation of the convolution. Default: ``1``.
        groups (int, optional): The number of groups for the convolution. Default: ``1``.
        bias (bool, optional): If ``True`` add a learnable bias to the output. Default: ``True``.
    """

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


class Conv2d(_ConvNd):
    """Applies a 2-dimensional convolution over the multi-channel input image (``NHWC``).

    Args: as :class:`Conv1d`, with ``kernel_size``, ``stride``, ``padding`` and ``dilation`` an int or a pair.
    """

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple,
                 stride: int | tuple = 1, padding: int | tuple = 0, dilation: int | tuple = 1,
                 groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


class Conv3d(_ConvNd):
    """Applies a 3-dimensional convolution over the multi-channel input (``NDHWC``).

    Args: as :class:`Conv2d` without ``groups`` (MLX's Conv3d has none, so ``bias`` is the 7th argument).
    """

    _nd = 3
    _grouped = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple,
                 stride: int | tuple = 1, padding: int | tuple = 0, dilation: int | tuple = 1,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias)
