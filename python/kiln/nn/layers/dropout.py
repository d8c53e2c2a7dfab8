"""Dropout layers: random masks (from `mx.random.bernoulli`) in training mode, identity in eval mode."""

from __future__ import annotations

import kiln.core as mx

from .base import Module


def _check_p(p: float):
    if p < 0 or p >= 1:
        raise ValueError(f"The dropout probability {p} is not in [0, 1)")


class Dropout(Module):
    r"""Randomly zero a portion of the elements during training, scaling the rest by :math:`1/(1-p)`.

    Args:
        p (float): The probability to zero an element. Default: ``0.5``.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        _check_p(p)
        self._p_1 = 1 - p

    def _extra_repr(self) -> str:
        return f"p={1 - self._p_1}"

    def __call__(self, x):
        if self._p_1 == 1 or not self.training:
            return x
        mask = mx.random.bernoulli(self._p_1, x.shape)
        return (mask * x) * (1 / self._p_1)


class _ChannelDropout(Module):
    """Zero entire channels: one mask value per (batch, channel), shared over the spatial axes."""

    _spatial = 0
    _name = ""

    def __init__(self, p: float = 0.5):
        super().__init__()
        _check_p(p)
        self._p_1 = 1 - p

    def _extra_repr(self) -> str:
        return f"p={1 - self._p_1}"

    def __call__(self, x):
        if x.ndim not in (self._spatial + 1, self._spatial + 2):
            raise ValueError(f"Received input with {x.ndim} dimensions. Expected {self._spatial + 1} or "
                             f"{self._spatial + 2} dimensions.")
        if self._p_1 == 1 or not self.training:
            return x
        mask_shape = list(x.shape)
        for i in range(-1 - self._spatial, -1):
            mask_shape[i] = 1
        mask = mx.random.bernoulli(p=self._p_1, shape=mask_shape)
        return (mask * x) * (1 / self._p_1)  # this order keeps x's dtype (a bfloat16 input stays bfloat16)


class Dropout2d(_ChannelDropout):
    """Apply 2D channel-wise dropout during training to inputs of shape ``(N, H, W, C)`` or ``(H, W, C)``.

    Args:
        p (float): Probability of zeroing a channel during training. Default: ``0.5``.
    """

    _spatial = 2


class Dropout3d(_ChannelDropout):
    """Apply 3D channel-wise dropout during training to inputs of shape ``(N, D, H, W, C)`` or ``(D, H, W, C)``.

    Args:
        p (float): Probability of zeroing a channel during training. Default: ``0.5``.
    """

    _spatial = 3
