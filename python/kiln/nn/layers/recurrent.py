"""Recurrent layers: RNN, GRU and LSTM over (N, L, D) or (L, D) inputs (MLX's weight layout and init)."""

from __future__ import annotations

import math
from collections.abc import Callable

import kiln.core as mx

from .activations import tanh
from .base import Module


def _uniform(scale, shape):
    return mx.random.uniform(low=-scale, high=scale, shape=shape)


def _steps(x):
    """The time steps of x (..., L, D) as a list of (..., D) arrays."""
    length = x.shape[-2]
    return [mx.squeeze(s, -2) for s in mx.split(x, length, axis=-2)] if length > 0 else []


def _project(x, weight, bias):
    y = mx.matmul(x, weight.T)
    return y + bias if bias is not None else y


class RNN(Module):
    r"""An Elman recurrent layer: :math:`h_{t+1} = \sigma(W_{xh} x_t + W_{hh} h_t + b)`.

    Args:
        input_size (int): Dimension of the input, ``D``.
        hidden_size (int): Dimension of the hidden state, ``H``.
        bias (bool, optional): Whether to use a bias. Default: ``True``.
        nonlinearity (callable, optional): Non-linearity to use. If ``None``, then tanh is used.
            Default: ``None``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: Callable | None = None):
        super().__init__()
        self.nonlinearity = nonlinearity or tanh
        if not callable(self.nonlinearity):
            raise ValueError(f"Nonlinearity must be callable. Current value: {nonlinearity}.")
        scale = 1.0 / math.sqrt(hidden_size)
        self.hidden_size = hidden_size
        self.Wxh = _uniform(scale, (hidden_size, input_size))
        self.Whh = _uniform(scale, (hidden_size, hidden_size))
        self.bias = _uniform(scale, (hidden_size,)) if bias else None

    def _extra_repr(self):
        return (f"input_dims={self.Wxh.shape[1]}, hidden_size={self.hidden_size}, "
                f"nonlinearity={self.nonlinearity}, bias={self.bias is not None}")

    def __call__(self, x, hidden=None):
        x = _project(x, self.Wxh, self.bias)
        outputs = []
        for xt in _steps(x):
            hidden = xt + mx.matmul(hidden, self.Whh.T) if hidden is not None else xt
            hidden = self.nonlinearity(hidden)
            outputs.append(hidden)
        return mx.stack(outputs, axis=-2)


class GRU(Module):
    r"""A gated recurrent unit layer (reset, update and new gates as in MLX/PyTorch).

    Args:
        input_size (int): Dimension of the input, ``D``.
        hidden_size (int): Dimension of the hidden state, ``H``.
        bias (bool, optional): Whether to use biases. Default: ``True``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (3 * hidden_size, input_size))
        self.Wh = _uniform(scale, (3 * hidden_size, hidden_size))
        self.b = _uniform(scale, (3 * hidden_size,)) if bias else None
        self.bhn = _uniform(scale, (hidden_size,)) if bias else None

    def _extra_repr(self):
        return f"input_dims={self.Wx.shape[1]}, hidden_size={self.hidden_size}, bias={self.b is not None}"

    def __call__(self, x, hidden=None):
        size = self.hidden_size
        x = _project(x, self.Wx, self.b)
        outputs = []
        for xt in _steps(x):
            x_rz, x_n = mx.split(xt, [2 * size], axis=-1)
            if hidden is not None:
                h_proj = mx.matmul(hidden, self.Wh.T)
                h_rz, h_n = mx.split(h_proj, [2 * size], axis=-1)
                if self.bhn is not None:
                    h_n = h_n + self.bhn
                x_rz = x_rz + h_rz
            r, z = mx.split(mx.sigmoid(x_rz), 2, axis=-1)
            if hidden is not None:
                n = x_n + r * h_n
            else:
                # A missing hidden state is a zero one: only the hidden bias reaches the new gate.
                n = x_n + r * self.bhn if self.bhn is not None else x_n
            n = mx.tanh(n)
            hidden = (1 - z) * n + z * hidden if hidden is not None else (1 - z) * n
            outputs.append(hidden)
        return mx.stack(outputs, axis=-2)


class LSTM(Module):
    r"""A long short-term memory layer; returns the hidden and cell states of every step.

    Args:
        input_size (int): Dimension of the input, ``D``.
        hidden_size (int): Dimension of the hidden state, ``H``.
        bias (bool, optional): Whether to use biases. Default: ``True``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (4 * hidden_size, input_size))
        self.Wh = _uniform(scale, (4 * hidden_size, hidden_size))
        self.bias = _uniform(scale, (4 * hidden_size,)) if bias else None

    def _extra_repr(self):
        return f"input_dims={self.Wx.shape[1]}, hidden_size={self.hidden_size}, bias={self.bias is not None}"

    def __call__(self, x, hidden=None, cell=None):
        x = _project(x, self.Wx, self.bias)
        all_hidden, all_cell = [], []
        for xt in _steps(x):
            gates = xt + mx.matmul(hidden, self.Wh.T) if hidden is not None else xt
            i, f, g, o = mx.split(gates, 4, axis=-1)
            i = mx.sigmoid(i)
            f = mx.sigmoid(f)
            g = mx.tanh(g)
            o = mx.sigmoid(o)
            cell = f * cell + i * g if cell is not None else i * g
            hidden = o * mx.tanh(cell)
            all_cell.append(cell)
            all_hidden.append(hidden)
        return mx.stack(all_hidden, axis=-2), mx.stack(all_cell, axis=-2)
