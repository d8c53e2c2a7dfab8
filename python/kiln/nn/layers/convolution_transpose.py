"""Transposed convolution layers: ConvTranspose1d/2d/3d (weights (C_out, *kernel, C_in), as MLX)."""

from __future__ import annotations

from .convolution import _ConvNd


class ConvTranspose1d(_ConvNd):
    """Applies a 1-dimensional transposed convolution over the multi-channel input sequence (``NLC``)."""

    _nd = 1
    _transpose = True
    _grouped = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, output_padding: int = 0, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias, output_padding)


class ConvTranspose2d(_ConvNd):
    """Applies a 2-dimensional transposed convolution over the multi-channel input image (``NHWC``)."""

    _nd = 2
    _transpose = True
    _grouped = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple,
                 stride: int | tuple = 1, padding: int | tuple = 0, dilation: int | tuple = 1,
                 output_padding: int | tuple = 0, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias, output_padding)


class ConvTranspose3d(_ConvNd):
    """Applies a 3-dimensional transposed convolution over the multi-channel input (``NDHWC``).

    Args:
        in_channels (int): The number of input channels.
        out_channels (int): The number of output channels.
        kernel_size (int or tuple): The size of the convolution filters.
        stride (int or tuple, optional): The stride when applying the filter. Default: ``1``.
        padding (int or tuple, optional): How many positions to 0-pad the input with. Default: ``0``.
        dilation (int or tuple, optional): The dilation of the convolution. Default: ``1``.
        output_padding (int or tuple, optional): Extra size added to one side of the output. Default: ``0``.
        bias (bool, optional): If ``True`` add a learnable bias to the output. Default: ``True``.
    """

    _nd = 3
    _transpose = True
    _grouped = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple,
                 stride: int | tuple = 1, padding: int | tuple = 0, dilation: int | tuple = 1,
                 output_padding: int | tuple = 0, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias, output_padding)
