"""Activation functions (functions and Module wrappers), compiled with `shapeless=True` as MLX does."""

from __future__ import annotations

import math

import kiln.core as mx

from .base import Module


def _compiled(fn):
    """Compile an elementwise activation once for every shape (MLX does the same); plain if compile is absent."""
    compile_fn = getattr(mx, "compile", None)
    if compile_fn is None:
        return fn
    return compile_fn(fn, shapeless=True)


@_compiled
def sigmoid(x):
    r"""Applies the sigmoid function :math:`\sigma(x) = 1 / (1 + e^{-x})` element-wise."""
    return mx.sigmoid(x)


@_compiled
def relu(x):
    r"""Applies the Rectified Linear Unit :math:`\max(x, 0)`."""
    return mx.maximum(x, 0)


@_compiled
def relu2(x):
    r"""Applies the squared ReLU :math:`\max(x, 0)^2`."""
    return mx.square(mx.maximum(x, 0))


@_compiled
def relu6(x):
    r"""Applies the ReLU6 :math:`\min(\max(x, 0), 6)`."""
    return mx.minimum(mx.maximum(x, 0), 6.0)


@_compiled
def leaky_relu(x, negative_slope=0.01):
    r"""Applies the Leaky ReLU :math:`\max(\text{negative\_slope} \cdot x, x)`."""
    return mx.maximum(negative_slope * x, x)


@_compiled
def log_softmax(x, axis=-1):
    r"""Applies :math:`x - \log \sum_i e^{x_i}` along ``axis``."""
    return x - mx.logsumexp(x, axis=axis, keepdims=True)


@_compiled
def elu(x, alpha=1.0):
    r"""Applies the Exponential Linear Unit: ``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""
    return mx.where(x > 0, x, alpha * (mx.exp(x) - 1))


@_compiled
def softmax(x, axis=-1):
    r"""Applies the softmax :math:`e^{x_i} / \sum_j e^{x_j}` along ``axis``."""
    return mx.softmax(x, axis=axis)


@_compiled
def softplus(x):
    r"""Applies the Softplus :math:`\log(1 + e^x)`."""
    return mx.logaddexp(x, 0)


@_compiled
def softsign(x):
    r"""Applies the Softsign :math:`x / (1 + |x|)`."""
    return mx.divide(x, 1 + mx.abs(x))


@_compiled
def softshrink(x, lambd: float = 0.5):
    r"""Applies the Softshrink: ``x - sign(x) * lambd`` where ``|x| > lambd``, else 0."""
    return mx.where(mx.abs(x) > lambd, x - mx.sign(x) * lambd, 0)


@_compiled
def celu(x, alpha=1.0):
    r"""Applies the CELU :math:`\max(0, x) + \min(0, \alpha (e^{x / \alpha} - 1))`."""
    return mx.maximum(x, 0.0) + alpha * (mx.exp(mx.minimum(x, 0.0) / alpha) - 1)


@_compiled
def silu(x):
    r"""Applies the Sigmoid Linear Unit (swish) :math:`x \sigma(x)`."""
    return x * mx.sigmoid(x)


@_compiled
def log_sigmoid(x):
    r"""Applies the Log Sigmoid :math:`\log(\sigma(x)) = -\log(1 + e^{-x})`."""
    return -softplus(-x)


@_compiled
def gelu(x):
    r"""Applies the Gaussian Error Linear Unit :math:`x \Phi(x)` with :math:`\Phi` the Gaussian CDF."""
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


@_compiled
def gelu_approx(x):
    r"""An approximation of GELU: :math:`0.5 x (1 + \tanh(\sqrt{2/\pi} (x + 0.044715 x^3)))`."""
    return 0.5 * x * (1 + mx.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


@_compiled
def gelu_fast_approx(x):
    r"""A fast approximation of GELU: :math:`x \sigma(1.702 x)`."""
    return x * mx.sigmoid(1.702 * x)


def glu(x, axis: int = -1):
    r"""Applies the gated linear unit: splits ``x`` in halves :math:`a, b` along ``axis``; returns :math:`a \sigma(b)`.
    """
    a, b = mx.split(x, indices_or_sections=2, axis=axis)
    return a * mx.sigmoid(b)


@_compiled
def step(x, threshold: float = 0.0):
    r"""Applies the Step activation: 1 where ``x > threshold``, else 0."""
    return mx.where(x > threshold, 1, 0)


@_compiled
def selu(x):
    r"""Applies the Scaled ELU: :math:`1.0507 \cdot \text{elu}(x, 1.67326)`."""
    return elu(x, 1.67326) * 1.0507


@_compiled
def prelu(x, alpha):
    r"""Applies the parametric ReLU :math:`\max(0, x) + \alpha \min(0, x)`."""
    return mx.maximum(0, x) + alpha * mx.minimum(0, x)


@_compiled
def mish(x):
    r"""Applies Mish :math:`x \tanh(\text{softplus}(x))`."""
    return x * mx.tanh(softplus(x))


@_compiled
def hardswish(x):
    r"""Applies the hardswish :math:`x \min(\max(x + 3, 0), 6) / 6`."""
    max_x_6 = mx.minimum(mx.maximum(x + 3, 0), 6)
    return x * max_x_6 / 6


@_compiled
def hard_tanh(x, min_val=-1.0, max_val=1.0):
    r"""Applies the HardTanh :math:`\min(\max(x, \text{min\_val}), \text{max\_val})`."""
    return mx.minimum(mx.maximum(x, min_val), max_val)


@_compiled
def hard_shrink(x, lambd=0.5):
    r"""Applies the HardShrink: ``x`` where ``|x| > lambd``, else 0."""
    return mx.where(mx.abs(x) > lambd, x, 0)


@_compiled
def softmin(x, axis=-1):
    r"""Applies the softmin :math:`e^{-x_i} / \sum_j e^{-x_j}` along ``axis``."""
    return mx.softmax(-x, axis=axis)


def tanh(x):
    """Applies the hyperbolic tangent."""
    return mx.tanh(x)


soft_shrink = softshrink  # the spelling used in the issue; MLX names it `softshrink`


# -- modules ----------------------------------------------------------------------------------------------
def _module(fn, name, doc=None):
    """A parameterless Module class that applies `fn`."""

    def call(self, x):
        return fn(x)

    cls = type(name, (Module,), {"__call__": call, "__doc__": doc or f"Applies :func:`{fn.__name__}`."})
    return cls


ReLU = _module(relu, "ReLU")
ReLU2 = _module(relu2, "ReLU2")
ReLU6 = _module(relu6, "ReLU6")
Softplus = _module(softplus, "Softplus")
Softsign = _module(softsign, "Softsign")
SiLU = _module(silu, "SiLU")
LogSigmoid = _module(log_sigmoid, "LogSigmoid")
Mish = _module(mish, "Mish")
SELU = _module(selu, "SELU")
Tanh = _module(tanh, "Tanh")
Sigmoid = _module(sigmoid, "Sigmoid")
Hardswish = _module(hardswish, "Hardswish")


class GLU(Module):
    """Applies :func:`glu` along ``axis`` (default ``-1``)."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def __call__(self, x):
        return glu(x=x, axis=self.axis)


class LeakyReLU(Module):
    """Applies :func:`leaky_relu` with ``negative_slope`` (default ``0.01``)."""

    def __init__(self, negative_slope=1e-2):
        super().__init__()
        self._negative_slope = negative_slope

    def __call__(self, x):
        return leaky_relu(x, self._negative_slope)


class ELU(Module):
    """Applies :func:`elu` with ``alpha`` (default ``1.0``)."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self._alpha = alpha

    def __call__(self, x):
        return elu(x, self._alpha)


class CELU(Module):
    """Applies :func:`celu` with ``alpha`` (default ``1.0``)."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self._alpha = alpha

    def __call__(self, x):
        return celu(x, self._alpha)


class Softmax(Module):
    """Applies :func:`softmax` over the last axis."""

    def __call__(self, x):
        return softmax(x)


class LogSoftmax(Module):
    """Applies :func:`log_softmax` over the last axis."""

    def __call__(self, x):
        return log_softmax(x)


class Softmin(Module):
    """Applies :func:`softmin` over the last axis."""

    def __call__(self, x):
        return softmin(x)


class PReLU(Module):
    """Applies :func:`prelu` with a learnable slope of ``num_parameters`` entries initialised to ``init``."""

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.weight = mx.full([num_parameters], init)

    def __call__(self, x):
        return prelu(x, self.weight)


class GELU(Module):
    """Applies :func:`gelu`, or an approximation: ``approx`` is ``'none'``, ``'precise'``/``'tanh'`` or ``'fast'``."""

    def __init__(self, approx="none"):
        super().__init__()
        self._approx = approx
        choices = ["none", "precise", "tanh", "fast"]
        if approx not in choices:
            raise ValueError(f"The approximation should be in {choices} but '{approx}' was given")
        self._act = {"none": gelu, "precise": gelu_approx, "tanh": gelu_approx, "fast": gelu_fast_approx}[approx]

    def __call__(self, x):
        return self._act(x)


class Step(Module):
    """Applies :func:`step` with ``threshold`` (default ``0.0``)."""

    def __init__(self, threshold: float = 0.0):
        super().__init__()
        self.threshold = threshold

    def __call__(self, x):
        return step(x, self.threshold)


class HardTanh(Module):
    """Applies :func:`hard_tanh`."""

    def __call__(self, x):
        return hard_tanh(x)


class HardShrink(Module):
    """Applies :func:`hard_shrink` with ``lambd`` (default ``0.5``)."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def __call__(self, x):
        return hard_shrink(x, self.lambd)


class Softshrink(Module):
    """Applies :func:`softshrink` with ``lambd`` (default ``0.5``)."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def __call__(self, x):
        return softshrink(x, self.lambd)


SoftShrink = Softshrink
