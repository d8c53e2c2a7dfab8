"""Loss functions (MLX's `mlx.nn.losses`), each with ``reduction`` in ``'none' | 'mean' | 'sum'``."""

from __future__ import annotations

import math
from typing import Literal, get_args

import kiln.core as mx

Reduction = Literal["none", "mean", "sum"]


def _reduce(loss, reduction: Reduction = "none"):
    if reduction not in get_args(Reduction):
        raise ValueError(f"Invalid reduction. Must be one of {get_args(Reduction)}.")
    if reduction == "mean":
        return mx.mean(loss)
    if reduction == "sum":
        return mx.sum(loss)
    return loss


def _apply_weights(loss, weights):
    if weights is None:
        return loss
    if tuple(weights.shape) != tuple(loss.shape):
        raise ValueError(f"Weights with shape {weights.shape} is not the same as output loss with shape "
                         f"{loss.shape}.")
    return loss * weights


def _pick(values, indices, axis: int):
    """values[..., indices, ...] along axis (indices has values' shape without axis), via a one-hot mask."""
    axis = axis % values.ndim
    classes = mx.arange(values.shape[axis])
    classes = classes.reshape([-1 if i == axis else 1 for i in range(values.ndim)])
    hot = mx.expand_dims(indices, axis) == classes
    return mx.sum(mx.where(hot, values, mx.zeros_like(values)), axis=axis)


def cross_entropy(logits, targets, weights: mx.array | None = None, axis: int = -1,
                  label_smoothing: float = 0.0, reduction: Reduction = "none"):
    """Computes the cross entropy loss.

    Args:
        logits (array): The unnormalized logits.
        targets (array): The ground truth values: class indices (one dimension fewer than ``logits``) or
            probabilities (the shape of ``logits``).
        weights (array, optional): Optional weights for each target. Default: ``None``.
        axis (int, optional): The axis over which to compute softmax. Default: ``-1``.
        label_smoothing (float, optional): Label smoothing factor, in ``[0, 1)``. Default: ``0``.
        reduction (str, optional): Specifies the reduction to apply to the output:
            ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The computed cross entropy loss.
    """
    if label_smoothing < 0 or label_smoothing >= 1:
        raise ValueError(f"Label smoothing must be in [0, 1), got {label_smoothing}.")
    as_probs = targets.ndim == logits.ndim
    dropped = list(logits.shape)
    if not as_probs:
        dropped.pop(axis)
    if (as_probs and targets.shape != logits.shape) or (not as_probs and tuple(targets.shape) != tuple(dropped)):
        raise ValueError(f"Targets shape {targets.shape} does not match logits shape {logits.shape}.")
    logits = logits - mx.stop_gradient(mx.max(logits, axis=axis, keepdims=True))
    score = mx.sum(logits * targets, axis=axis) if as_probs else _pick(logits, targets, axis)
    lse = mx.logsumexp(logits, axis=axis)
    if label_smoothing > 0:
        smoothed = -mx.mean(logits, axis=axis) * label_smoothing
        loss = lse - (1 - label_smoothing) * score + smoothed
    else:
        loss = lse - score
    return _reduce(_apply_weights(loss, weights), reduction)


def binary_cross_entropy(inputs, targets, weights: mx.array | None = None, with_logits: bool = True,
                         reduction: Reduction = "mean"):
    """Computes the binary cross entropy loss.

    Args:
        inputs (array): The predicted values: logits if ``with_logits`` else probabilities.
        targets (array): The binary target values in {0, 1}.
        weights (array, optional): Optional weights for each target. Default: ``None``.
        with_logits (bool, optional): Whether ``inputs`` are logits. Default: ``True``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        array: The computed binary cross entropy loss.
    """
    if tuple(inputs.shape) != tuple(targets.shape):
        raise ValueError(f"Inputs shape {inputs.shape} does not match targets shape {targets.shape}.")
    if with_logits:
        loss = mx.logaddexp(0.0, inputs) - inputs * targets
    else:
        # log is clipped at -100 so that a probability of exactly 0 or 1 gives a finite loss.
        log_p = mx.clip(mx.log(inputs), a_min=-100, a_max=None)
        log_not_p = mx.clip(mx.log(1 - inputs), a_min=-100, a_max=None)
        loss = -(targets * log_p + (1 - targets) * log_not_p)
    return _reduce(_apply_weights(loss, weights), reduction)


def _check_same(name_a, a, name_b, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{name_a} shape {a.shape} does not match {name_b.lower()} shape {b.shape}.")


def l1_loss(predictions, targets, reduction: Reduction = "mean"):
    """Computes the L1 loss ``|predictions - targets|``. Default reduction: ``'mean'``."""
    _check_same("Predictions", predictions, "targets", targets)
    return _reduce(mx.abs(predictions - targets), reduction)


def mse_loss(predictions, targets, reduction: Reduction = "mean"):
    """Computes the mean squared error loss ``(predictions - targets)^2``. Default reduction: ``'mean'``."""
    _check_same("Predictions", predictions, "targets", targets)
    return _reduce(mx.square(predictions - targets), reduction)


def nll_loss(inputs, targets, axis: int = -1, reduction: Reduction = "none"):
    """Computes the negative log likelihood loss: ``-inputs[target]`` along ``axis`` (inputs are log-probabilities)."""
    return _reduce(-_pick(inputs, targets, axis), reduction)


def gaussian_nll_loss(inputs, targets, vars, full: bool = False, eps: float = 1e-6,
                      reduction: Reduction = "mean"):
    r"""Computes the negative log likelihood of targets under a Gaussian with mean ``inputs`` and variance ``vars``.

    With :math:`v = \max(\text{vars}, \epsilon)`:
    :math:`\frac{1}{2}(\log v + (\text{targets} - \text{inputs})^2 / v)`,
    plus :math:`\frac{1}{2}\log(2\pi)` when ``full``. Default reduction: ``'mean'``.
    """
    _check_same("Inputs", inputs, "targets", targets)
    _check_same("Inputs", inputs, "vars", vars)
    vars = mx.maximum(vars, eps)
    loss = 0.5 * (mx.log(vars) + mx.square(targets - inputs) / vars)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def kl_div_loss(inputs, targets, axis: int = -1, reduction: Reduction = "none"):
    """Computes the Kullback-Leibler divergence ``sum(exp(targets) * (targets - inputs))`` (log-space inputs)."""
    return _reduce(mx.sum(mx.exp(targets) * (targets - inputs), axis), reduction)


def smooth_l1_loss(predictions, targets, beta: float = 1.0, reduction: Reduction = "mean"):
    """Computes the smooth L1 loss: ``0.5 d^2 / beta`` where ``d < beta``, else ``d - 0.5 beta``."""
    _check_same("Predictions", predictions, "targets", targets)
    diff = mx.abs(predictions - targets)
    loss = mx.where(diff < beta, 0.5 * mx.square(diff) / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


def triplet_loss(anchors, positives, negatives, axis: int = -1, p: int = 2, margin: float = 1.0,
                 eps: float = 1e-6, reduction: Reduction = "none"):
    r"""Computes the triplet loss :math:`\max(\|a - p\|_p - \|a - n\|_p + \text{margin}, 0)`."""
    pos = mx.power(mx.sum(mx.power(mx.abs(anchors - positives), p), axis) + eps, 1.0 / p)
    neg = mx.power(mx.sum(mx.power(mx.abs(anchors - negatives), p), axis) + eps, 1.0 / p)
    return _reduce(mx.maximum(pos - neg + margin, 0), reduction)


def hinge_loss(inputs, targets, reduction: Reduction = "none"):
    """Computes the hinge loss ``max(1 - inputs * targets, 0)``."""
    return _reduce(mx.maximum(1 - inputs * targets, 0), reduction)


def huber_loss(inputs, targets, delta: float = 1.0, reduction: Reduction = "none"):
    """Computes the Huber loss: quadratic for errors up to ``delta``, linear beyond."""
    abs_errors = mx.abs(inputs - targets)
    quadratic = mx.minimum(abs_errors, delta)
    linear = abs_errors - quadratic
    return _reduce(0.5 * quadratic**2 + delta * linear, reduction)


def log_cosh_loss(inputs, targets, reduction: Reduction = "none"):
    """Computes the log cosh loss ``log(cosh(inputs - targets))`` (computed stably)."""
    errors = inputs - targets
    return _reduce(mx.logaddexp(errors, -errors) - math.log(2), reduction)


def cosine_similarity_loss(x1, x2, axis: int = 1, eps: float = 1e-8, reduction: Reduction = "none"):
    """Computes the cosine similarity ``x1 . x2 / max(|x1| |x2|, eps)`` along ``axis``."""
    x1_norm = mx.sqrt(mx.sum(mx.square(x1), axis=axis))
    x2_norm = mx.sqrt(mx.sum(mx.square(x2), axis=axis))
    loss = mx.sum(x1 * x2, axis=axis) / mx.maximum(x1_norm * x2_norm, eps)
    return _reduce(loss, reduction)


def margin_ranking_loss(inputs1, inputs2, targets, margin: float = 0.0, reduction: Reduction = "none"):
    """Computes the margin ranking loss ``max(0, -targets * (inputs1 - inputs2) + margin)``."""
    if not (tuple(inputs1.shape) == tuple(inputs2.shape) == tuple(targets.shape)):
        raise ValueError(f"The shapes of the arguments do not match. The provided shapes are "
                         f"inputs1.shape={inputs1.shape}, inputs2.shape={inputs2.shape}, and "
                         f"targets.shape={targets.shape}.")
    return _reduce(mx.maximum(0, -targets * (inputs1 - inputs2) + margin), reduction)
