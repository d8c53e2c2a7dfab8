"""Normalisation layers: LayerNorm, RMSNorm, GroupNorm, BatchNorm, InstanceNorm (features on the last axis)."""

from __future__ import annotations

import kiln.core as mx

from .base import Module


def layer_norm(x, weight, bias, eps: float):
    """Normalise over the last axis (statistics in float32 for half inputs), then scale and shift."""
    xf = x.astype(mx.float32) if x.dtype in (mx.float16, mx.bfloat16) else x
    mean = mx.mean(xf, axis=-1, keepdims=True)
    var = mx.var(xf, axis=-1, keepdims=True)
    y = ((xf - mean) * mx.rsqrt(var + eps)).astype(x.dtype)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm(x, weight, eps: float):
    """Divide by the root mean square over the last axis (accumulated in float32), then scale."""
    xf = x.astype(mx.float32) if x.dtype in (mx.float16, mx.bfloat16) else x
    y = (xf * mx.rsqrt(mx.mean(mx.square(xf), axis=-1, keepdims=True) + eps)).astype(x.dtype)
    return y * weight if weight is not None else y


def _check_eps(layer: str, eps: float) -> None:
    if eps <= 0.0:
        raise ValueError(f"[{layer}] 'eps' must be positive but got {eps}.")


class InstanceNorm(Module):
    r"""Applies instance normalisation: statistics over the spatial axes of each sample and channel.

    Args:
        dims (int): The number of features of the input.
        eps (float): A value added to the denominator for numerical stability. Default: ``1e-5``.
        affine (bool): Default: ``False``.
    """

    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = False):
        super().__init__()
        _check_eps("InstanceNorm", eps)
        if affine:
            self.weight = mx.ones((dims,))
            self.bias = mx.zeros((dims,))
        self.dims = dims
        self.eps = eps

    def _extra_repr(self):
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x):
        if x.ndim < 3:
            raise ValueError(f"InstanceNorm expects inputs with at least 3 dimensions (N, ..., C) but the input "
                             f"has {x.ndim} dimensions.")
        axes = tuple(range(1, x.ndim - 1))
        mean = mx.mean(x, axis=axes, keepdims=True)
        var = mx.var(x, axis=axes, keepdims=True)
        x = (x - mean) * mx.rsqrt(var + self.eps)
        return (self.weight * x + self.bias) if "weight" in self else x


class LayerNorm(Module):
    r"""Applies layer normalisation over the last axis.

    :math:`y = \frac{x - E[x]}{\sqrt{Var[x] + \epsilon}} \gamma + \beta`.

    Args:
        dims (int): The feature dimension of the input to normalize over.
        eps (float): A small additive constant for numerical stability. Default: ``1e-5``.
        affine (bool): If True learn an affine transform to apply after the normalization. Default: ``True``.
        bias (bool): If True include a translation to the affine transformation. Default: ``True``.
    """

    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = True, bias: bool = True):
        super().__init__()
        _check_eps("LayerNorm", eps)
        if affine:
            self.weight = mx.ones((dims,))
            if bias:
                self.bias = mx.zeros((dims,))
        self.eps = eps
        self.dims = dims

    def _extra_repr(self):
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x):
        weight = self.weight if "weight" in self else None
        bias = self.bias if "bias" in self else None
        return layer_norm(x, weight, bias, self.eps)


class RMSNorm(Module):
    r"""Applies Root Mean Square normalisation: :math:`y = \frac{x}{\sqrt{E[x^2] + \epsilon}} \gamma`.

    Args:
        dims (int): The feature dimension of the input to normalize over.
        eps (float): A small additive constant for numerical stability. Default: ``1e-5``.
    """

    def __init__(self, dims: int, eps: float = 1e-5):
        super().__init__()
        _check_eps("RMSNorm", eps)
        self.weight = mx.ones((dims,))
        self.eps = eps

    def _extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"

    def __call__(self, x):
        return rms_norm(x, self["weight"], self.eps)


class GroupNorm(Module):
    r"""Applies group normalisation: layer norm over the spatial axes and each group of features.

    Args:
        num_groups (int): Number of groups to separate the features into.
        dims (int): The feature dimensions of the input to normalize over.
        eps (float): A small additive constant for numerical stability. Default: ``1e-5``.
        affine (bool): If True learn an affine transform to apply after the normalization. Default: ``True``.
        pytorch_compatible (bool): If True perform the group normalization in the same order/grouping as
            PyTorch. Default: ``False``.
    """

    def __init__(self, num_groups: int, dims: int, eps: float = 1e-5, affine: bool = True,
                 pytorch_compatible: bool = False):
        super().__init__()
        _check_eps("GroupNorm", eps)
        if num_groups <= 0:
            raise ValueError(f"The number of groups ({num_groups}) must be a positive integer.")
        if dims <= 0:
            raise ValueError(f"The number of features ({dims}) must be a positive integer.")
        if dims % num_groups != 0:
            raise ValueError(f"The number of features ({dims}) must be evenly divisible by the number of groups "
                             f"({num_groups}).")
        if affine:
            self.bias = mx.zeros((dims,))
            self.weight = mx.ones((dims,))
        self.num_groups = num_groups
        self.dims = dims
        self.eps = eps
        self.pytorch_compatible = pytorch_compatible

    def _extra_repr(self):
        return (f"{self.num_groups}, {self.dims}, eps={self.eps}, affine={'weight' in self}, "
                f"pytorch_compatible={self.pytorch_compatible}")

    def _pytorch_compatible_group_norm(self, x):
        # Groups are contiguous blocks of channels.
        batch, *rest, dims = x.shape
        group_size = dims // self.num_groups
        x = x.reshape(batch, -1, self.num_groups, group_size)
        x = x.transpose(0, 2, 1, 3).reshape(batch, self.num_groups, -1)
        x = layer_norm(x, None, None, self.eps)
        x = x.reshape(batch, self.num_groups, -1, group_size)
        return x.transpose(0, 2, 1, 3).reshape(batch, *rest, dims)

    def _group_norm(self, x):
        # MLX's default grouping: channel c belongs to group c % num_groups.
        batch, *rest, dims = x.shape
        x = x.reshape(batch, -1, self.num_groups)
        mean = mx.mean(x, axis=1, keepdims=True)
        var = mx.var(x, axis=1, keepdims=True)
        x = (x - mean) * mx.rsqrt(var + self.eps)
        return x.reshape(batch, *rest, dims)

    def __call__(self, x):
        norm = self._pytorch_compatible_group_norm if self.pytorch_compatible else self._group_norm
        x = norm(x)
        return (self.weight * x + self.bias) if "weight" in self else x


class BatchNorm(Module):
    r"""Applies batch normalisation over the batch and spatial axes (``NC``, ``NLC`` or ``NHWC`` inputs).

    Args:
        num_features (int): The feature dimension to normalize over.
        eps (float, optional): A small additive constant for numerical stability. Default: ``1e-5``.
        momentum (float, optional): The momentum for updating the running mean and variance. Default: ``0.1``.
        affine (bool, optional): If ``True``, apply a learned affine transformation. Default: ``True``.
        track_running_stats (bool, optional): If ``True``, track the running mean and variance.
            Default: ``True``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        _check_eps("BatchNorm", eps)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = mx.ones((num_features,))
            self.bias = mx.zeros((num_features,))
        if self.track_running_stats:
            self.running_mean = mx.zeros((num_features,))
            self.running_var = mx.ones((num_features,))
            self.freeze(keys=["running_mean", "running_var"], recurse=False)

    def unfreeze(self, *args, **kwargs):
        """Unfreeze as :meth:`Module.unfreeze`; the running statistics stay frozen."""
        super().unfreeze(*args, **kwargs)
        self.freeze(keys=["running_mean", "running_var"], recurse=False)
        return self

    def _extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={'weight' in self}, "
                f"track_running_stats={self.track_running_stats}")

    def _calc_stats(self, x, ddof: int = 0) -> tuple:
        axes = tuple(range(x.ndim - 1))
        return mx.mean(x, axis=axes), mx.var(x, axis=axes, ddof=ddof)

    def __call__(self, x):
        if x.ndim < 2 or x.ndim > 4:
            raise ValueError(f"Expected input tensor to have 2, 3 or 4 dimensions, but got {x.ndim}")
        if self.training:
            stats_size = 1
            for size in x.shape[:-1]:
                stats_size *= size
            if stats_size == 1:
                raise ValueError("BatchNorm training requires more than one value per channel.")
        mean, var = self._calc_stats(x)
        if self.training and self.track_running_stats:
            mu = self.momentum
            _, unbiased_var = self._calc_stats(x, ddof=1)
            self.running_mean = (1 - mu) * self.running_mean + mu * mean
            self.running_var = (1 - mu) * self.running_var + mu * unbiased_var
        elif self.track_running_stats:
            mean = self.running_mean
            var = self.running_var
        x = (x - mean) * mx.rsqrt(var + self.eps)
        return (self.weight * x + self.bias) if "weight" in self else x
