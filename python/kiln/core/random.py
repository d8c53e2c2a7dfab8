"""`mx.random`: keys, the global key `state`, and every distribution, composed from `random_bits` and ops.

Keys are uint32 arrays of shape (2,), as in MLX, and each distribution reproduces MLX's arithmetic step by
step (same dtypes, same order of operations), so a key gives MLX's samples. Without `key=`, a draw splits
`state[0]`, stores the first half back in `state[0]` and uses the second, all with ordinary ops, so
`compile(f, inputs=random.state, outputs=random.state)` can capture the global key.
"""

from __future__ import annotations

import math
import operator
import time

import numpy as np

from . import dtypes as dt
from . import ops
from .array import array, bind

__all__ = [
    "bernoulli", "bits", "categorical", "gumbel", "key", "laplace", "multivariate_normal", "normal",
    "permutation", "randint", "seed", "split", "state", "truncated_normal", "uniform",
]

_UINT32_MAX = 4294967295.0
_BELOW_ONE = {  # the largest value below 1.0 in each floating type, so that uniform samples stay below `high`
    dt.float32: float(np.nextafter(np.float32(1), np.float32(0))),
    dt.float16: 1.0 - 2.0 ** -11,
    dt.bfloat16: 1.0 - 2.0 ** -8,
}
_ABOVE_MINUS_ONE = float(np.nextafter(np.float32(-1), np.float32(0)))


# -- keys and the global state ------------------------------------------------------------------
def _seed_value(op: str, s) -> int:
    try:
        value = operator.index(s)
    except TypeError:
        raise TypeError(f"[{op}] seed must be an integer, got {type(s).__name__}.") from None
    if not 0 <= value < 2**64:
        raise TypeError(f"[{op}] seed must be in [0, 2**64), got {value}.")
    return value


def _key_from_int(value: int) -> array:
    words = np.array([value >> 32, value & 0xFFFFFFFF], dtype=np.uint32)
    return array._from_numpy(words, dt.uint32)


def key(seed: int) -> array:
    """Get a PRNG key from a seed.

    Args:
        seed (int): Seed for the PRNG, in ``[0, 2**64)``.

    Returns:
        array: The PRNG key array: uint32, shape ``(2,)`` (the seed's high and low 32 bits).
    """
    return _key_from_int(_seed_value("key", seed))


# The global key, as a list so that `compile` can capture it through `inputs=`/`outputs=`. Like MLX, the
# initial seed is the current time in milliseconds.
state = [_key_from_int(int(time.time() * 1000))]


def seed(seed: int) -> None:
    """Seed the global PRNG.

    Args:
        seed (int): Seed for the global PRNG.
    """
    state[0] = _key_from_int(_seed_value("seed", seed))


def _next_key() -> array:
    """Split the global key: keep the first half in `state[0]`, return the second."""
    keys = split(state[0])
    kept, used = ops.split(keys, 2, axis=0)
    state[0] = ops.reshape(kept, (2,))
    return ops.reshape(used, (2,))


def _resolve_key(k) -> array:
    # As in MLX the global key advances before any argument is checked.
    if k is None:
        return _next_key()
    return ops.to_array(k)


def _shape_arg(op: str, shape) -> tuple:
    if isinstance(shape, (int, np.integer)) or shape is None:
        raise TypeError(f"[{op}] shape must be a sequence of integers.")
    try:
        return tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"[{op}] shape must be a sequence of integers.") from None


def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _f32(value: float) -> array:
    return array._from_numpy(np.array(value, np.float32), dt.float32)


def _constant(value: float, d: dt.Dtype) -> array:
    return array(value, d)


# -- bits and split ------------------------------------------------------------------------------
def _bits_key_check(k: array) -> None:
    if k.dtype != dt.uint32:
        raise ValueError(f"[bits] Expected key type uint32 but received {k.dtype.name}.")
    if k.shape != (2,):
        raise ValueError(f"[bits] Expected key shape (2) but received {_shape_text(k.shape)}.")


def _bits(shape: tuple, width: int, k: array) -> array:
    _bits_key_check(k)
    return bind("random_bits", k, shape=tuple(shape), width=int(width))


def bits(shape=(), width: int = 4, key=None, stream=None) -> array:
    """Generate an array of random bits.

    Args:
        shape (list(int), optional): Shape of the output. Default: ``()``.
        width (int, optional): Bytes per element: 1, 2 or 4 (uint8, uint16, uint32). Default: ``4``.
        key (array, optional): A PRNG key. Default: ``None`` (split the global key).

    Returns:
        array: Random unsigned integers of the requested width.
    """
    k = _resolve_key(key)
    return _bits(_shape_arg("bits", shape), width, k)


def split(key, num: int = 2, stream=None) -> array:
    """Split a PRNG key into sub keys.

    Args:
        key (array): Input key to split.
        num (int, optional): Number of sub keys. Default: ``2``.

    Returns:
        array: The array of sub keys with ``num`` as its first dimension.
    """
    return _bits((operator.index(num), 2), 4, ops.to_array(key))


# -- uniform and its relatives -------------------------------------------------------------------
def _check_floating(op: str, d: dt.Dtype, message: str):
    if not dt.issubdtype(d, dt.floating):
        raise ValueError(f"[{op}] {message}")


def _uniform(low: array, high: array, shape: tuple, d: dt.Dtype, k: array) -> array:
    """MLX's uniform on arrays: 32 random bits / UINT32_MAX in float32, kept below 1, then scaled in `d`."""
    _check_floating("uniform", d, "Can only generate uniform numbers with real floating point type.")
    lo = ops.astype(low, d)
    hi = ops.astype(high, d)
    span = ops.subtract(hi, lo)
    out_shape = ops.broadcast_shapes(shape, span.shape)
    if tuple(out_shape) != tuple(shape):
        raise ValueError(f"[uniform] Cannot generate random values of shape {_shape_text(shape)} "
                         f"from broadcasted shape {_shape_text(out_shape)}.")
    if d not in _BELOW_ONE:
        raise RuntimeError("[uniform] Unsupported type.")
    if d == dt.float32:  # one primitive: the engine draws, scales and shifts in one pass
        _bits_key_check(k)
        return bind("random_uniform", k, lo, hi, shape=tuple(shape))
    u = ops.divide(_bits(shape, 4, k), _f32(_UINT32_MAX))
    u = ops.astype(ops.minimum(u, _f32(_BELOW_ONE[d])), d)
    return ops.add(ops.multiply(span, u), lo)


def uniform(low=0, high=1, shape=(), dtype=dt.float32, key=None, stream=None) -> array:
    """Generate uniformly distributed random numbers.

    The values are sampled uniformly in the half-open interval ``[low, high)``. The lower and upper bound
    can be scalars or arrays and must be broadcastable to ``shape``.

    Args:
        low (scalar or array, optional): Lower bound of the distribution. Default: ``0``.
        high (scalar or array, optional): Upper bound of the distribution. Default: ``1``.
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output. Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The output array of random values.
    """
    # Arguments first: a bad one must not advance the global key.
    shape = _shape_arg("uniform", shape)
    d = dt.dtype_arg(dtype, "uniform", dt.float32)
    return _uniform(ops.to_array(low), ops.to_array(high), shape, d, _resolve_key(key))


def _symmetric_uniform(shape: tuple, k: array) -> array:
    """float32 samples in [-1 + eps/2, 1): the input of the inverse-CDF samplers."""
    return _uniform(_f32(_ABOVE_MINUS_ONE), _f32(1.0), shape, dt.float32, k)


def _complex_normal(shape: tuple, loc, scale, k: array) -> array:
    # Real and imaginary parts are the two halves of a trailing axis of 2, each with variance 1/2.
    samples = ops.erfinv(_symmetric_uniform(shape + (2,), k))
    real, imag = (ops.squeeze(part, -1) for part in ops.split(samples, 2, axis=-1))
    out = ops.add(ops.astype(real, dt.complex64), ops.multiply(ops.astype(imag, dt.complex64), array(1j)))
    if scale is not None:
        out = ops.multiply(ops.to_array(scale), out)
    if loc is not None:
        out = ops.add(ops.to_array(loc), out)
    return out


def normal(shape=(), dtype=dt.float32, loc=None, scale=None, key=None, stream=None) -> array:
    """Generate normally distributed random numbers.

    Args:
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output: a floating type or ``complex64``. Default: ``float32``.
        loc (scalar or array, optional): Mean of the distribution. Default: ``None`` (0).
        scale (scalar or array, optional): Standard deviation of the distribution. Default: ``None`` (1).
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The output array of random values.
    """
    shape = _shape_arg("normal", shape)
    d = dt.dtype_arg(dtype, "normal", dt.float32)
    k = _resolve_key(key)
    if d == dt.complex64:
        return _complex_normal(shape, loc, scale, k)
    _check_floating("normal", d, "Only floating point and complex64 types are supported.")
    # Inverse CDF: sqrt(2) * erfinv(u) for u uniform on (-1, 1).
    samples = _symmetric_uniform(shape, k)
    applied_scale = _constant(math.sqrt(2.0), d)
    if scale is not None:
        applied_scale = ops.multiply(applied_scale, ops.astype(ops.to_array(scale), d))
    samples = ops.multiply(applied_scale, ops.astype(ops.erfinv(samples), d))
    if loc is not None:
        samples = ops.add(ops.astype(ops.to_array(loc), d), samples)
    return samples


def randint(low, high, shape=(), dtype=dt.int32, key=None, stream=None) -> array:
    """Generate random integers from the given interval.

    The values are sampled with equal probability from the integers in the half-open interval
    ``[low, high)``. The bounds can be scalars or arrays and must be broadcastable to ``shape``.

    Args:
        low (scalar or array): Lower bound of the interval.
        high (scalar or array): Upper bound of the interval.
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output. Default: ``int32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The array of random integers.
    """
    shape = _shape_arg("randint", shape)
    d = dt.dtype_arg(dtype, "randint", dt.int32)
    k = _resolve_key(key)
    if dt.issubdtype(d, dt.inexact):
        raise ValueError("[randint] randint only accepts integer dtypes and bool.")
    lo = ops.to_array(low)
    hi = ops.to_array(high)
    # A float32 uniform, floored; then clamped into [low, high - 1] in the output type, since float32
    # rounding can land on `high` (an empty interval collapses to `low`).
    out = ops.astype(ops.floor(_uniform(lo, hi, shape, dt.float32, k)), d)
    last = ops.astype(ops.subtract(hi, _constant(1, _arith_dtype(hi.dtype))), d)
    return ops.maximum(ops.minimum(out, last), ops.astype(lo, d))


def _arith_dtype(d: dt.Dtype) -> dt.Dtype:
    return dt.int32 if d == dt.bool_ else d


def bernoulli(p=0.5, shape=None, key=None, stream=None) -> array:
    """Generate Bernoulli random values.

    The values are sampled from the bernoulli distribution with parameter ``p``. The parameter ``p`` can
    be a :obj:`float` or :obj:`array` and must be broadcastable to ``shape``.

    Args:
        p (float or array, optional): Parameter of the Bernoulli distribution. Default: ``0.5``.
        shape (list(int), optional): Shape of the output. Default: ``p.shape``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The array of random booleans.
    """
    k = _resolve_key(key)
    p = ops.to_array(p)
    if not dt.issubdtype(p.dtype, dt.floating):
        raise ValueError("[bernoulli] bernoulli probability `p` must be a float type.")
    shape = p.shape if shape is None else _shape_arg("bernoulli", shape)
    # Compare the raw bits with p scaled to just above UINT32_MAX: p >= 1 is always true, p <= 0 never.
    upper = float(np.nextafter(np.float32(_UINT32_MAX), np.float32(np.inf)))
    scaled = ops.multiply(p, _f32(upper))
    raw = _bits(shape, 4, k)
    ops.broadcast_shapes(raw.shape, scaled.shape)
    out = ops.less(raw, scaled)
    if tuple(out.shape) != tuple(shape):
        raise ValueError("[bernoulli] shape of `p` is incompatible with argument `shape`.")
    return out


def truncated_normal(lower, upper, shape=None, dtype=dt.float32, key=None, stream=None) -> array:
    """Generate values from a truncated normal distribution.

    The values are sampled from the truncated normal distribution on the domain ``(lower, upper)``. The
    bounds ``lower`` and ``upper`` can be scalars or arrays and must be broadcastable to ``shape``.

    Args:
        lower (scalar or array): Lower bound of the domain.
        upper (scalar or array): Upper bound of the domain.
        shape (list(int), optional): The shape of the output. Default: the bounds' broadcast shape.
        dtype (Dtype, optional): The data type of the output. Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The output array of random values.
    """
    lower = ops.to_array(lower)
    upper = ops.to_array(upper)
    if shape is None:
        shape = ops.broadcast_shapes(lower.shape, upper.shape)
    shape = _shape_arg("truncated_normal", shape)
    d = dt.dtype_arg(dtype, "truncated_normal", dt.float32)
    k = _resolve_key(key)
    _check_floating("trunc_normal", d, "trunc_normal only accepts floating point dtypes.")
    # Map the bounds through the normal CDF, sample uniformly between them, map back, clip.
    sqrt2 = _constant(math.sqrt(2.0), d)
    lower_t = ops.astype(lower, d)
    upper_t = ops.astype(upper, d)
    a = ops.erf(ops.divide(lower_t, sqrt2))
    b = ops.erf(ops.divide(upper_t, sqrt2))
    out = ops.multiply(sqrt2, ops.erfinv(_uniform(a, b, shape, d, k)))
    return ops.maximum(ops.minimum(upper_t, out), lower_t)


def gumbel(shape=(), dtype=dt.float32, key=None, stream=None) -> array:
    """Sample from the standard Gumbel distribution.

    The values are sampled from a standard Gumbel distribution which CDF ``exp(-exp(-x))``.

    Args:
        shape (list(int)): The shape of the output.
        dtype (Dtype, optional): The data type of the output. Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The :class:`array` with shape ``shape`` and distributed according to the Gumbel
        distribution.
    """
    shape = _shape_arg("gumbel", shape)
    return _gumbel(shape, dt.dtype_arg(dtype, "gumbel", dt.float32), _resolve_key(key))


def _gumbel(shape: tuple, d: dt.Dtype, k: array) -> array:
    _check_floating("uniform", d, "Can only generate uniform numbers with real floating point type.")
    u = _uniform(_constant(0.0, d), _constant(1.0, d), shape, d, k)
    return ops.negative(ops.log(ops.negative(ops.log(u))))


def _categorical_axis(axis, ndim: int) -> int:
    ax = operator.index(axis)
    ax = ax + ndim if ax < 0 else ax
    if not 0 <= ax < ndim:
        raise IndexError(f"[categorical] Invalid axis {axis} for logits with {ndim} dimensions.")
    return ax


def categorical(logits, axis: int = -1, shape=None, num_samples=None, key=None, stream=None) -> array:
    """Sample from a categorical distribution.

    The values are sampled from the categorical distribution specified by the unnormalized values in
    ``logits``. At most one of ``shape`` or ``num_samples`` can be specified. If both are ``None``, the
    output has the same shape as ``logits`` with the ``axis`` dimension removed.

    Args:
        logits (array): The *unnormalized* categorical distribution(s).
        axis (int, optional): The axis which specifies the distribution. Default: ``-1``.
        shape (list(int), optional): The shape of the output. This must be broadcast compatible with
            ``logits.shape`` with the ``axis`` dimension removed. Default: ``None``.
        num_samples (int, optional): The number of samples to draw from each of the categorical
            distributions in ``logits``. The output will have ``num_samples`` in the last dimension.
            Default: ``None``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The ``shape``-sized output array with type ``uint32``.
    """
    k = _resolve_key(key)
    if shape is not None and num_samples is not None:
        raise ValueError("[categorical] At most one of shape or num_samples can be specified.")
    logits = ops.to_array(logits)
    ax = _categorical_axis(axis, logits.ndim)
    if shape is not None:
        shape = _shape_arg("categorical", shape)
        reduced = logits.shape[:ax] + logits.shape[ax + 1:]
        if tuple(ops.broadcast_shapes(shape, reduced)) != shape:
            raise ValueError(f"[categorical] Requested shape {_shape_text(shape)} is not broadcast compatible "
                             f"with reduced logits shape {_shape_text(reduced)}.")
    elif num_samples is not None:
        logits = ops.expand_dims(logits, -1)
        shape = logits.shape[:ax] + logits.shape[ax + 1:-1] + (operator.index(num_samples),)
    else:
        shape = logits.shape[:ax] + logits.shape[ax + 1:]
    # Gumbel-max: argmax over the category axis of logits plus Gumbel noise.
    offset = ax + len(shape) - logits.ndim + 1
    noise_shape = shape[:offset] + (logits.shape[ax],) + shape[offset:]
    noise = _gumbel(noise_shape, dt.float32, k)
    return ops.argmax(ops.add(noise, logits), offset)


def laplace(shape=(), dtype=dt.float32, loc: float = 0.0, scale: float = 1.0, key=None, stream=None) -> array:
    """Sample numbers from a Laplace distribution.

    Args:
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output. Default: ``float32``.
        loc (float, optional): Mean of the distribution. Default: ``0.0``.
        scale (float, optional): The scale "b" of the Laplace distribution. Default: ``1.0``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The output array of random values.
    """
    shape = _shape_arg("laplace", shape)
    d = dt.dtype_arg(dtype, "laplace", dt.float32)
    k = _resolve_key(key)
    _check_floating("laplace", d, "Only real floating point types are supported.")
    # Inverse CDF on u uniform in (-1, 1): sign(u) * log(1 - |u|).
    u = _symmetric_uniform(shape, k)
    samples = ops.multiply(ops.sign(u), ops.log1p(ops.multiply(_constant(-1.0, d), ops.abs(u))))
    samples = ops.astype(samples, d)
    # MLX takes loc and scale as C floats: round them to float32 before the output type.
    scale = float(np.float32(scale))
    loc = float(np.float32(loc))
    if scale != 1.0:
        samples = ops.multiply(_constant(scale, d), samples)
    if loc != 0.0:
        samples = ops.add(_constant(loc, d), samples)
    return samples


def permutation(x, axis: int = 0, key=None, stream=None) -> array:
    """Generate a random permutation or permute the entries of an array.

    Args:
        x (int or array): If an integer, a permutation of ``arange(x)``; if an array, it is permuted along
            ``axis``.
        axis (int, optional): The axis to permute along. Default: ``0``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The generated random permutation or randomly permuted input array.
    """
    from .ops_sort import argsort

    k = _resolve_key(key)
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return argsort(_bits((int(x),), 4, k))
    x = ops.to_array(x)
    ndim = x.ndim
    ax = operator.index(axis)
    if not -ndim <= ax < ndim:
        raise IndexError(f"[permutation] Invalid axis {axis} for array with {ndim} dimensions.")
    order = argsort(_bits((x.shape[ax],), 4, k))
    return ops.take(x, order, axis=ax)


def multivariate_normal(mean, cov, shape=(), dtype=dt.float32, key=None, stream=None) -> array:
    """Generate jointly-normal random samples given a mean and covariance.

    The matrix ``cov`` must be positive semi-definite. The behavior is undefined if it is not. The only
    supported ``dtype`` is ``float32``.

    Args:
        mean (array): array of shape ``(..., n)``, the mean of the distribution.
        cov (array): array of shape ``(..., n, n)``, the covariance matrix of the distribution. The batch
            shape ``...`` must be broadcast-compatible with that of ``mean``.
        shape (list(int), optional): The output shape must be broadcast-compatible with
            ``mean.shape[:-1]`` and ``cov.shape[:-2]``. If empty, the result shape is determined by
            broadcasting the batch shapes of ``mean`` and ``cov``. Default: ``[]``.
        dtype (Dtype, optional): The output type. Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The output array of random values.
    """
    shape = _shape_arg("multivariate_normal", shape)
    d = dt.dtype_arg(dtype, "multivariate_normal", dt.float32)
    k = _resolve_key(key)
    mean = ops.to_array(mean)
    cov = ops.to_array(cov)
    if d != dt.float32:
        raise ValueError("[multivariate_normal] dtype must be float32.")
    if mean.ndim < 1:
        raise ValueError("[multivariate_normal] mean must have at least one dimension.")
    if cov.ndim < 2:
        raise ValueError("[multivariate_normal] cov must have at least two dimensions.")
    n = mean.shape[-1]
    if cov.shape[-1] != cov.shape[-2]:
        raise ValueError("[multivariate_normal] last two dimensions of cov must be equal.")
    if n != cov.shape[-1]:
        raise ValueError("[multivariate_normal] mean and cov must have compatible shapes.")
    batch = ops.broadcast_shapes(cov.shape[:-2], mean.shape[:-1])
    out_shape = tuple(ops.broadcast_shapes(batch, shape)) + (n,)
    # x = mean + z @ sqrt(cov), with sqrt(cov) = U diag(sqrt(S)) Vt from the SVD.
    from . import linalg

    u, s, vt = linalg.svd(ops.astype(cov, dt.float32), compute_uv=True)
    root = ops.matmul(ops.multiply(u, ops.expand_dims(ops.sqrt(s), -2)), vt)
    z = normal(out_shape, d, key=k)
    scaled = ops.squeeze(ops.matmul(ops.expand_dims(z, -2), root), -2)
    return ops.add(mean, scaled)
