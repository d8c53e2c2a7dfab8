"""Optimizers with MLX's state layout: `state` is a plain dict holding "step", the (possibly scheduled)
hyperparameters and one sub-tree per parameter, created lazily on the first update. The dict object is
mutated in place, never replaced, so `compile(..., inputs=state, outputs=state)` keeps seeing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import kiln.core as mx
from kiln.nn.layers.base import Module
from kiln.utils import tree_flatten, tree_map, tree_reduce, tree_unflatten

LearningRate = Union[float, Callable]


class Optimizer:
    """The base class for all optimizers: a per-parameter rule applied over a parameter tree."""

    def __init__(self, schedulers=None):
        self._initialized = False
        self._state = {"step": mx.array(0, mx.uint64)}
        self._schedulers = {k: v for k, v in (schedulers or {}).items()}

    def update(self, model: Module, gradients: dict):
        """Apply the gradients to the parameters of the model and update the model with the new parameters.

        Args:
            model (Module): The module to update.
            gradients (dict): A tree of gradients, most likely from :func:`kiln.nn.value_and_grad`.
        """
        model.update(self.apply_gradients(gradients, model))

    def init(self, parameters: dict):
        """Create the per-parameter state for every parameter that has none yet (optional; updates do it lazily).

        Args:
            parameters (dict): A tree of parameters.
        """
        _add_missing(parameters, self._state)
        tree_map(lambda p, s: s or self.init_single(p, s), parameters, self._state)
        self._initialized = True

    def init_single(self, parameter, state: dict):
        """Initialise the state of one parameter (overridden by each optimizer)."""
        raise NotImplementedError()

    def apply_gradients(self, gradients: dict, parameters: dict):
        """Apply the gradients to the parameters and return the updated parameters.

        Args:
            gradients (dict): A tree of gradients.
            parameters (dict): A tree of parameters; it may be a superset of the gradients, and the result
                has the structure of the gradients.
        """
        if not self._initialized:
            self.init(gradients)
        for name, scheduler in self._schedulers.items():
            self.state[name] = scheduler(self.step)
        self.state["step"] = self.step + 1
        return tree_map(self.apply_single, gradients, parameters, self.state)

    def apply_single(self, gradient, parameter, state: dict):
        """Return the updated parameter and update ``state`` in place (overridden by each optimizer)."""
        raise NotImplementedError()

    @property
    def state(self) -> dict:
        """The optimizer's state dictionary."""
        return self._state

    @state.setter
    def state(self, state: dict):
        self._initialized = False
        self._state = state

    @property
    def step(self):
        return self.state["step"]

    @property
    def learning_rate(self):
        return self.state["learning_rate"]

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.state["learning_rate"] = mx.array(learning_rate)

    def _maybe_schedule(self, name: str, param: LearningRate):
        """Store a hyperparameter in the state; a callable becomes a schedule evaluated at each step."""
        if callable(param):
            self._schedulers[name] = param
            value = param(self.step)
        else:
            value = mx.array(param)
        self.state[name] = value


def _add_missing(params, state):
    """Give every parameter in `params` an (empty) slot in `state`, keeping existing slots, in place."""
    if isinstance(params, (list, tuple)):
        for i in range(min(len(state), len(params))):
            state[i] = _add_missing(params[i], state[i])
        if len(state) < len(params):
            state.extend(tree_map(lambda _: {}, list(params[len(state):])))
        return state
    if isinstance(params, dict):
        for k, v in params.items():
            if k not in state:
                state[k] = tree_map(lambda _: {}, v)
            else:
                state[k] = _add_missing(v, state[k])
        return state
    return state


def _merge(a, b):
    """Merge two trees with disjoint leaves (MultiOptimizer's partial results)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return [_merge(x, y) for x, y in zip(a, b)] + (a[len(b):] if len(a) > len(b) else b[len(a):])
    if a is None or (isinstance(a, dict) and not a):
        return b
    return a if (b is None or (isinstance(b, dict) and not b)) else b


class MultiOptimizer(Optimizer):
    """Use different optimizers for different parameters, chosen by predicates of ``(path, array)``.

    Args:
        optimizers (list[Optimizer]): The optimizers; the last one takes every parameter no filter claimed.
        filters (list[Callable[[str, array], bool]]): One predicate per optimizer but the last.
    """

    def __init__(self, optimizers, filters: list = []):  # noqa: B006  (MLX's signature)
        super().__init__()
        self._state = {}
        if len(filters) != len(optimizers) - 1:
            raise ValueError(f"Given {len(filters)} filters but {len(optimizers) - 1} needed.")
        self.optimizers = optimizers
        self.filters = list(filters) + [lambda *args, **kwargs: True]

    def _split_dictionary(self, gradients: dict):
        if len(self.optimizers) == 1:
            return [gradients]
        parts = [[] for _ in self.optimizers]
        for path, g in tree_flatten(gradients):
            for i, fn in enumerate(self.filters):
                if fn(path, g):
                    parts[i].append((path, g))
                    break
        return [tree_unflatten(p) if p else {} for p in parts]

    def init(self, parameters: dict):
        for opt, part in zip(self.optimizers, self._split_dictionary(parameters)):
            opt.init(part)

    def apply_gradients(self, gradients: dict, parameters: dict):
        tree = {}
        for opt, part in zip(self.optimizers, self._split_dictionary(gradients)):
            tree = _merge(tree, opt.apply_gradients(part, parameters))
        return tree

    @property
    def state(self):
        return {"states": [o.state for o in self.optimizers]}

    @state.setter
    def state(self, state: dict):
        if "states" not in state or len(state["states"]) != len(self.optimizers):
            raise ValueError("Invalid state provided")
        for o, s in zip(self.optimizers, state["states"]):
            o.state = s

    @property
    def learning_rate(self):
        return self.optimizers[0].learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        for o in self.optimizers:
            o.learning_rate = learning_rate


class SGD(Optimizer):
    r"""The stochastic gradient descent optimizer, with optional momentum, weight decay, dampening and Nesterov.

    .. math::
        v_{t+1} = \mu v_t + (1 - \tau) g_t, \qquad w_{t+1} = w_t - \lambda v_{t+1}

    Args:
        learning_rate (float or callable): The learning rate :math:`\lambda`.
        momentum (float, optional): The momentum strength :math:`\mu`. Default: ``0``.
        weight_decay (float, optional): The weight decay (L2 penalty). Default: ``0``.
        dampening (float, optional): Dampening for momentum :math:`\tau`. Default: ``0``.
        nesterov (bool, optional): Enables Nesterov momentum. Default: ``False``.
    """

    def __init__(self, learning_rate: LearningRate, momentum: float = 0.0, weight_decay: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening.")
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dampening = dampening
        self.nesterov = nesterov

    def init_single(self, parameter, state: dict):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state: dict):
        if self.weight_decay != 0:
            gradient = gradient + self.weight_decay * parameter
        lr = self.learning_rate.astype(gradient.dtype)
        if self.momentum <= 0:
            return parameter - lr * gradient
        v = self.momentum * state.get("v")
        v = v + (1 - self.dampening) * gradient if self.dampening > 0 else v + gradient
        update = gradient + self.momentum * v if self.nesterov else v
        state["v"] = v
        return parameter - lr * update


class RMSprop(Optimizer):
    r"""The RMSprop optimizer.

    :math:`v \leftarrow \alpha v + (1-\alpha) g^2`, :math:`w \leftarrow w - \lambda g / (\sqrt{v} + \epsilon)`.

    Args:
        learning_rate (float or callable): The learning rate :math:`\lambda`.
        alpha (float, optional): The smoothing constant :math:`\alpha`. Default: ``0.99``.
        eps (float, optional): Added to the denominator for numerical stability. Default: ``1e-8``.
    """

    def __init__(self, learning_rate: LearningRate, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.alpha = alpha
        self.eps = eps
        if self.alpha < 0.0:
            raise ValueError(f"RMSprop alpha should be >=0, {self.alpha} was provided instead")
        if self.eps < 0.0:
            raise ValueError(f"RMSprop epsilon should be >0, {self.eps} was provided instead")

    def init_single(self, parameter, state: dict):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state: dict):
        lr = self.learning_rate.astype(gradient.dtype)
        v = self.alpha * state["v"] + (1 - self.alpha) * mx.square(gradient)
        state["v"] = v
        return parameter - lr * gradient / (mx.sqrt(v) + self.eps)


class Adagrad(Optimizer):
    r"""The Adagrad optimizer: :math:`v \leftarrow v + g^2`, :math:`w \leftarrow w - \lambda g / (\sqrt{v} + \epsilon)`.

    Args:
        learning_rate (float or callable): The learning rate :math:`\lambda`.
        eps (float, optional): Added to the denominator for numerical stability. Default: ``1e-8``.
    """

    def __init__(self, learning_rate: LearningRate, eps: float = 1e-8):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.eps = eps
        if self.eps < 0.0:
            raise ValueError(f"Adagrad epsilon should be >0, {self.eps} was provided instead")

    def init_single(self, parameter, state: dict):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state: dict):
        lr = self.learning_rate.astype(gradient.dtype)
        v = state["v"] + mx.square(gradient)
        state["v"] = v
        return parameter - lr * gradient / (mx.sqrt(v) + self.eps)


class AdaDelta(Optimizer):
    r"""The AdaDelta optimizer with a learning rate (Zeiler, 2012).

    Args:
        learning_rate (float or callable): The learning rate :math:`\lambda`.
        rho (float, optional): The coefficient of the running averages. Default: ``0.9``.
        eps (float, optional): Added for numerical stability. Default: ``1e-6``.
    """

    def __init__(self, learning_rate: LearningRate, rho: float = 0.9, eps: float = 1e-6):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.rho = rho
        self.eps = eps
        if self.rho < 0.0:
            raise ValueError(f"AdaDelta rho should be >=0, {self.rho} was provided instead")
        if self.eps < 0.0:
            raise ValueError(f"AdaDelta epsilon should be >0, {self.eps} was provided instead")

    def init_single(self, parameter, state: dict):
        state["v"] = mx.zeros_like(parameter)
        state["u"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state: dict):
        lr = self.learning_rate.astype(gradient.dtype)
        rho, eps = self.rho, self.eps
        v = rho * state["v"] + (1 - rho) * mx.square(gradient)
        d = mx.sqrt(state["u"] + eps) / mx.sqrt(v + eps) * gradient
        u = rho * state["u"] + (1 - rho) * mx.square(d)
        state["v"] = v
        state["u"] = u
        return parameter - lr * d


class Adam(Optimizer):
    r"""The Adam optimizer (without bias correction unless ``bias_correction``, as in MLX).

    .. math::
        m \leftarrow \beta_1 m + (1 - \beta_1) g, \quad v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
        w \leftarrow w - \lambda \frac{m}{\sqrt{v} + \epsilon}

    Args:
        learning_rate (float or callable): The learning rate :math:`\lambda`.
        betas (Tuple[float, float], optional): :math:`(\beta_1, \beta_2)`. Default: ``(0.9, 0.999)``.
        eps (float, optional): Added to the denominator for numerical stability. Default: ``1e-8``.
        bias_correction (bool, optional): Apply bias correction to the moments. Default: ``False``.
    """

    def __init__(self, learning_rate: LearningRate, betas: list[float] = [0.9, 0.999], eps: float = 1e-8,  # noqa: B006
                 bias_correction: bool = False):
        super().__init__()
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Adam beta{i + 1} should be in [0, 1), {beta} was provided instead")
        if not 0.0 <= eps:
            raise ValueError(f"Adam epsilon should be >=0, {eps} was provided instead")
        self._maybe_schedule("learning_rate", learning_rate)
        self.betas = betas
        self.eps = eps
        self.bias_correction = bias_correction

    def init_single(self, parameter, state: dict):
        state["m"] = mx.zeros_like(parameter)
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state: dict):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = b1 * state["m"] + (1 - b1) * gradient
        v = b2 * state["v"] + (1 - b2) * mx.square(gradient)
        state["m"] = m
        state["v"] = v
        if self.bias_correction:
            step = self.step
            c1 = (lr / (1 - b1**step)).astype(gradient.dtype)
            c2 = mx.rsqrt(1 - b2**step).astype(gradient.dtype)
            return parameter - c1 * m / (mx.sqrt(v) * c2 + self.eps)
        return parameter - lr * m / (mx.sqrt(v) + self.eps)


class AdamW(Adam):
    r"""The AdamW optimizer: Adam with decoupled weight decay, :math:`w \leftarrow w(1 - \lambda \cdot wd)` first.

    Args:
        learning_rate (float or callable): The learning rate.
        betas (Tuple[float, float], optional): Default: ``(0.9, 0.999)``.
        eps (float, optional): Default: ``1e-8``.
        weight_decay (float, optional): The weight decay. Default: ``0.01``.
        bias_correction (bool, optional): Default: ``False``.
    """

    def __init__(self, learning_rate: LearningRate, betas: list[float] = [0.9, 0.999], eps: float = 1e-8,  # noqa: B006
                 weight_decay: float = 0.01, bias_correction: bool = False):
        super().__init__(learning_rate=learning_rate, betas=betas, eps=eps, bias_correction=bias_correction)
        self.weight_decay = weight_decay

    def apply_single(self, gradient, parameter, state: dict):
        lr = self.learning_rate.astype(gradient.dtype)
        return super().apply_single(gradient, parameter * (1 - lr * self.weight_decay), state)


class Adamax(Adam):
    r"""The Adamax optimizer.

    :math:`v \leftarrow \max(\beta_2 v, |g|)`, :math:`w \leftarrow w - \lambda m / (v + \epsilon)`.

    Args:
        learning_rate (float or callable): The learning rate.
        betas (Tuple[float, float], optional): Default: ``(0.9, 0.999)``.
        eps (float, optional): Default: ``1e-8``.
    """

    def __init__(self, learning_rate: LearningRate, betas: list[float] = [0.9, 0.999], eps: float = 1e-8):  # noqa: B006
        super().__init__(learning_rate, betas, eps)
        if not 0.0 <= eps:
            raise ValueError(f"Epsilon value should be >=0, {self.eps} was provided instead")

    def apply_single(self, gradient, parameter, state: dict):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = b1 * state["m"] + (1 - b1) * gradient
        v = mx.maximum(b2 * state["v"], mx.abs(gradient))
        state["m"] = m
        state["v"] = v
        return parameter - lr * m / (v + self.eps)


class Lion(Optimizer):
    r"""The Lion optimizer: signed updates of an interpolated momentum, optional decoupled weight decay.

    Args:
        learning_rate (float or callable): The learning rate.
        betas (Tuple[float, float], optional): Default: ``(0.9, 0.99)``.
        weight_decay (float, optional): Default: ``0.0``.
    """

    def __init__(self, learning_rate: LearningRate, betas: list[float] = [0.9, 0.99],  # noqa: B006
                 weight_decay: float = 0.0):
        super().__init__()
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Lion beta{i + 1} should be in [0, 1), {beta} was provided instead")
        self._maybe_schedule("learning_rate", learning_rate)
        self.betas = betas
        self.weight_decay = weight_decay

    def init_single(self, parameter, state: dict):
        state["m"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state: dict):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = state["m"]
        c = b1 * m + (1 - b1) * gradient
        state["m"] = b2 * m + (1 - b2) * gradient
        if self.weight_decay > 0:
            parameter = (1 - lr * self.weight_decay) * parameter
        return parameter - lr * mx.sign(c)


class Adafactor(Optimizer):
    r"""The Adafactor optimizer (factored second moments for arrays with 2 or more dimensions).

    Args:
        learning_rate (float or callable, optional): The learning rate. Default: ``None``.
        eps (tuple(float, float), optional): Added to the squared gradients, and the floor of the parameter
            scale. Default: ``(1e-30, 1e-3)``.
        clip_threshold (float, optional): Clips the unscaled update at ``clip_threshold``. Default: ``1.0``.
        decay_rate (float, optional): Coefficient for the running average of the squared gradient.
            Default: ``-0.8``.
        beta_1 (float, optional): If set, the first moment is used. Default: ``None``.
        weight_decay (float, optional): The weight decay. Default: ``0.0``.
        scale_parameter (bool, optional): Scale the learning rate by the parameter RMS. Default: ``True``.
        relative_step (bool, optional): Ignore ``learning_rate`` and use a relative step size.
            Default: ``True``.
        warmup_init (bool, optional): Warm the relative step size up with the step. Default: ``False``.
    """

    def __init__(self, learning_rate: LearningRate | None = None, eps: tuple[float, float] = (1e-30, 1e-3),
                 clip_threshold: float = 1.0, decay_rate: float = -0.8, beta_1: float | None = None,
                 weight_decay: float = 0.0, scale_parameter: bool = True, relative_step: bool = True,
                 warmup_init: bool = False):
        super().__init__()
        if learning_rate is not None:
            self._maybe_schedule("learning_rate", learning_rate)
        self.eps = eps
        self.clip_threshold = clip_threshold
        self.decay_rate = decay_rate
        self.beta_1 = beta_1
        self.weight_decay = weight_decay
        self.scale_parameter = scale_parameter
        self.relative_step = relative_step
        self.warmup_init = warmup_init

    def init_single(self, parameter, state: dict):
        if parameter.ndim >= 2:
            shape = parameter.shape
            state["exp_avg_sq_row"] = mx.zeros(shape[:-1], dtype=parameter.dtype)
            state["exp_avg_sq_col"] = mx.zeros(shape[:-2] + shape[-1:], dtype=parameter.dtype)
        else:
            state["exp_avg_sq"] = mx.zeros_like(parameter)
        if self.beta_1 is not None:
            state["exp_avg"] = mx.zeros_like(parameter)

    @staticmethod
    def _rms(x):
        return mx.sqrt(mx.mean(mx.square(x)))

    def _learning_rate(self, step, parameter_rms):
        if self.relative_step:
            min_step = 1e-6 * step if self.warmup_init else 1e-2
            size = mx.minimum(min_step, mx.rsqrt(step))
        else:
            size = self.learning_rate
        size = size.astype(parameter_rms.dtype)
        scale = mx.maximum(self.eps[1], parameter_rms) if self.scale_parameter else 1.0
        return scale * size

    def apply_single(self, gradient, parameter, state: dict):
        step = self.step
        parameter_rms = self._rms(parameter)
        lr = self._learning_rate(step, parameter_rms)
        beta_2 = 1.0 - (step**self.decay_rate).astype(parameter_rms.dtype)
        update = mx.square(gradient) + self.eps[0]
        if gradient.ndim >= 2:
            row = beta_2 * state["exp_avg_sq_row"] + (1 - beta_2) * mx.mean(update, axis=-1)
            col = beta_2 * state["exp_avg_sq_col"] + (1 - beta_2) * mx.mean(update, axis=-2)
            state["exp_avg_sq_row"] = row
            state["exp_avg_sq_col"] = col
            r_factor = mx.rsqrt(row / mx.mean(row, axis=-1, keepdims=True))
            c_factor = mx.rsqrt(col)
            update = mx.expand_dims(r_factor, -1) * mx.expand_dims(c_factor, -2) * gradient
        else:
            avg = beta_2 * state["exp_avg_sq"] + (1 - beta_2) * update
            state["exp_avg_sq"] = avg
            update = mx.rsqrt(avg) * gradient
        update = update / mx.maximum(1.0, self._rms(update) / self.clip_threshold)
        update = lr * update
        if self.beta_1 is not None:
            avg = self.beta_1 * state["exp_avg"] + (1 - self.beta_1) * update
            state["exp_avg"] = avg
            update = avg
        if self.weight_decay != 0:
            parameter = parameter + parameter * (-self.weight_decay * lr)
        return parameter - update


class Muon(Optimizer):
    r"""Muon (MomentUm Orthogonalized by Newton-Schulz): SGD momentum whose update, for parameters of two or
    more dimensions, is replaced by an approximately orthogonal matrix of the same shape.

    Parameters of more than two dimensions are flattened to ``(shape[0], -1)`` first. 0-D and 1-D parameters
    get the plain momentum update (optimise those, embeddings and output layers with e.g. :class:`AdamW`).

    Args:
        learning_rate (float or callable): The learning rate.
        momentum (float, optional): The momentum strength. Default: ``0.95``.
        weight_decay (float, optional): The weight decay (L2 penalty). Default: ``0.01``.
        nesterov (bool, optional): Enables Nesterov momentum. Default: ``True``.
        ns_steps (int, optional): Number of Newton-Schulz iteration steps. Default: ``5``.
    """

    # The quintic Newton-Schulz coefficients of the original Muon, chosen for a steep slope at zero.
    _NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

    def __init__(self, learning_rate: LearningRate, momentum: float = 0.95, weight_decay: float = 0.01,
                 nesterov: bool = True, ns_steps: int = 5):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.ns_steps = ns_steps

    def init_single(self, parameter, state: dict):
        state["v"] = mx.zeros_like(parameter)

    def _orthogonalize(self, x):
        """Newton-Schulz iterations towards the orthogonal polar factor of a 2-D matrix."""
        a, b, c = self._NS_COEFFICIENTS
        wide = x.shape[-2] > x.shape[-1]
        if wide:
            x = x.T
        x = x / (mx.linalg.norm(x, keepdims=True) + 1e-7)
        for _ in range(self.ns_steps):
            gram = x @ x.T
            poly = mx.addmm(b * gram, gram, gram, beta=1.0, alpha=c)
            x = mx.addmm(a * x, poly, x, beta=1.0, alpha=1.0)
        return x.T if wide else x

    def apply_single(self, gradient, parameter, state: dict):
        if self.weight_decay != 0:
            gradient = gradient + self.weight_decay * parameter
        v = self.momentum * state["v"] + (1 - self.momentum) * gradient
        state["v"] = v
        update = gradient * (1 - self.momentum) + v * self.momentum if self.nesterov else v
        lr = self.learning_rate.astype(gradient.dtype)
        if update.ndim >= 2:
            shape = update.shape
            update = mx.reshape(self._orthogonalize(mx.reshape(update, (shape[0], -1))), shape)
            lr = lr * max(1, update.shape[-2] / update.shape[-1]) ** 0.5
        return parameter - lr * update


def clip_grad_norm(grads, max_norm):
    """Clip the global norm of the gradients to ``max_norm``.

    Args:
        grads (dict): A tree of gradient arrays.
        max_norm (float): The maximum allowed global norm of the gradients.

    Returns:
        (dict, array): The possibly rescaled gradients and the original gradient norm.
    """
    if max_norm < 0:
        raise ValueError(f"max_norm should be >=0, {max_norm} was provided instead")

    def squared_norm(g):
        # float16 squares are summed in float32 so they do not overflow.
        if g.dtype == mx.float16:
            g = g.astype(mx.float32)
        return mx.sum(mx.square(g))

    norm_squared = tree_reduce(lambda acc, g: acc + squared_norm(g), grads, 0.0)
    total_norm = mx.sqrt(norm_squared)
    normalizer = mx.minimum(max_norm / (total_norm + 1e-6), 1.0)

    def scale(g):
        # Cast after scaling so small normalizers do not underflow in float16.
        if mx.issubdtype(g.dtype, mx.floating):
            return (g * normalizer).astype(g.dtype)
        return g * normalizer

    return tree_map(scale, grads), total_norm
