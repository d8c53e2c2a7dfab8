"""Random primitives: `random_bits`, the only source of randomness; every distribution is built on it.

Bits come from the counter-based Threefry-2x32 hash (Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", 2011) with 20 rounds, and the counters are laid out exactly as MLX lays them out, so the same key
gives MLX's bits byte for byte.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import RANDOM, Primitive, register

_WIDTH_DTYPES = {1: dt.uint8, 2: dt.uint16, 4: dt.uint32}
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)  # Threefish's key-schedule constant


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds: hash counter pairs (x0, x1) under key (k0, k1); uint32 in and out."""
    u32 = np.uint32
    schedule = (k0, k1, k0 ^ k1 ^ _PARITY)
    shape = np.broadcast_shapes(np.shape(k0), np.shape(x0), np.shape(x1))
    with np.errstate(over="ignore"):  # uint32 additions wrap on purpose
        x0 = np.broadcast_to(np.add(x0, k0, dtype=u32), shape).copy()
        x1 = np.broadcast_to(np.add(x1, k1, dtype=u32), shape).copy()
        spare = np.empty_like(x1)
        for block in range(5):
            for r in _ROTATIONS[block % 2]:
                # x0 += x1; x1 = rotl(x1, r) ^ x0, in place: large draws are memory bound
                np.add(x0, x1, out=x0)
                np.right_shift(x1, u32(32 - r), out=spare)
                np.left_shift(x1, u32(r), out=x1)
                np.bitwise_or(x1, spare, out=x1)
                np.bitwise_xor(x1, x0, out=x1)
            # key injection after every 4 rounds
            np.add(x0, schedule[(block + 1) % 3], out=x0, casting="unsafe")
            np.add(x1, schedule[(block + 2) % 3], out=x1, casting="unsafe")
            np.add(x1, u32(block + 1), out=x1)
    return x0, x1


def _words(keys: np.ndarray, n_words: int) -> np.ndarray:
    """(num_keys, n_words) uint32 words per key, in MLX's counter layout.

    Word j and word j + half + odd come from one hash of counter (j, j + half + odd); for an odd count the
    middle word is the first half of the hash of (half, 0).
    """
    half, odd = divmod(n_words, 2)
    k0 = keys[:, :1]
    k1 = keys[:, 1:]
    out = np.empty((keys.shape[0], n_words), np.uint32)
    first = np.arange(half, dtype=np.uint32)[None, :]
    low, high = threefry2x32(k0, k1, first, first + np.uint32(half + odd))
    out[:, :half] = low
    out[:, half + odd:] = high
    if odd:
        middle, _ = threefry2x32(k0, k1, np.full((1, 1), half, np.uint32), np.zeros((1, 1), np.uint32))
        out[:, half:half + 1] = middle
    return out


def random_bits_impl(keys: np.ndarray, shape: tuple, width: int) -> np.ndarray:
    """Random bits for each key in `keys` (..., 2): shape keys.shape[:-1] + shape, unsigned ints of `width` bytes."""
    out_dtype = _WIDTH_DTYPES[width].np
    batch = keys.shape[:-1]
    flat_keys = np.ascontiguousarray(keys, dtype=np.uint32).reshape(-1, 2)
    per_key = 1
    for s in shape:
        per_key *= s
    n_bytes = per_key * width
    words = _words(flat_keys, (n_bytes + 3) // 4)
    # MLX writes each word's native (little-endian) bytes and truncates the last word.
    raw = words.astype("<u4").view(np.uint8)[:, :n_bytes]
    out = np.ascontiguousarray(raw).view(np.dtype(out_dtype).newbyteorder("<")).astype(out_dtype)
    return out.reshape(tuple(batch) + tuple(shape))


def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _random_bits_rule(keys, shape, width):
    if width not in _WIDTH_DTYPES:
        raise ValueError(f"[bits] Bit width must be in {{1, 2, 4}} but got {width}.")
    if keys.dtype != dt.uint32:
        raise ValueError(f"[bits] Expected key type uint32 but received {keys.dtype.name}.")
    if len(keys.shape) < 1 or keys.shape[-1] != 2:
        raise ValueError(f"[bits] Expected key shape (2) but received {_shape_text(keys.shape)}.")
    if any(s < 0 for s in shape):
        raise ValueError("[bits] Negative dimensions not allowed.")
    return tuple(keys.shape[:-1]) + tuple(shape), _WIDTH_DTYPES[width]


def _random_bits_vmap(inputs, bdims, params):
    # The primitive already takes a batch of keys in its leading axes: move the batch axis to the front.
    from .. import ops
    from ..array import bind

    keys = ops.moveaxis(inputs[0], bdims[0], 0)
    return bind("random_bits", keys, **params), 0


register(Primitive(
    name="random_bits", kind=RANDOM, impl=random_bits_impl, shape_rule=_random_bits_rule,
    vjp=None, jvp=None, vmap=_random_bits_vmap, differentiable=False,
    doc="Threefry-2x32 random bits; input keys (..., 2) uint32, params shape and width (bytes per element).",
))


# -- uniform float32 samples: one primitive, so the engine draws and scales them in one pass ---------------
_TWO_POW_32 = np.float32(4294967296.0)  # float32(UINT32_MAX): the divisor MLX uses, rounded
_BELOW_ONE_F32 = np.nextafter(np.float32(1), np.float32(0))


def random_uniform_impl(keys: np.ndarray, low: np.ndarray, high: np.ndarray, shape: tuple) -> np.ndarray:
    """Samples in [low, high) in the bounds' dtype: MLX's uniform, exactly as its ops compute it (the unit
    sample in float32, then span * u + low in the bounds' dtype, each step rounded)."""
    bits = random_bits_impl(keys, shape, 4)
    u = np.minimum(np.divide(bits.astype(np.float32), _TWO_POW_32), _BELOW_ONE_F32)
    d = np.result_type(low, high)
    span = np.subtract(high, low, dtype=d)
    return np.add(np.multiply(span, u.astype(d), dtype=d), low, dtype=d)


def _random_uniform_rule(keys, low, high, shape):
    out_shape, _ = _random_bits_rule(keys, shape, 4)
    if low.dtype != high.dtype or not dt.is_floating(low.dtype):
        raise ValueError(f"[uniform] internal: bounds of one floating type expected, got {low.dtype.name} "
                         f"and {high.dtype.name}.")
    for bound in (low, high):
        if len(bound.shape) > len(shape) or np.broadcast_shapes(tuple(bound.shape), tuple(shape)) != tuple(shape):
            raise ValueError(f"[uniform] Cannot generate random values of shape {_shape_text(shape)} "
                             f"from bounds of shape {_shape_text(bound.shape)}.")
    return out_shape, low.dtype


def _unit_samples(keys, shape):
    """The [0, 1) samples behind random_uniform(keys, low, high): the same draw with low 0 and high 1."""
    from .. import ops
    from ..array import bind

    zero, one = ops.zeros((), dt.float32), ops.ones((), dt.float32)
    return bind("random_uniform", keys, zero, one, shape=tuple(shape))  # float32, as the impl draws it


def _random_uniform_vjp(ct, out, inputs, params):
    from .. import ops
    from .elementwise import unbroadcast

    keys, low, high = inputs
    u = _unit_samples(keys, params["shape"])
    u = ops.astype(u, low.dtype)
    return (None, unbroadcast(ops.multiply(ct, ops.subtract(1.0, u)), low.shape),
            unbroadcast(ops.multiply(ct, u), high.shape))


def _random_uniform_jvp(tangents, out, inputs, params):
    from .. import ops

    _, t_low, t_high = tangents
    u = ops.astype(_unit_samples(inputs[0], params["shape"]), inputs[1].dtype)
    parts = []
    if t_low is not None:
        parts.append(ops.multiply(t_low, ops.subtract(1.0, u)))
    if t_high is not None:
        parts.append(ops.multiply(t_high, u))
    if not parts:
        return None
    total = parts[0] if len(parts) == 1 else ops.add(parts[0], parts[1])
    return ops.broadcast_to(total, out.shape)


def _random_uniform_vmap(inputs, bdims, params):
    # Batched keys lead the output; batched bounds go to the front and broadcast over the sample shape.
    from .. import ops
    from ..array import bind

    keys, low, high = inputs
    keys_bdim, low_bdim, high_bdim = bdims
    shape = tuple(params["shape"])
    if keys_bdim is None:
        size = next(b.shape[d] for b, d in ((low, low_bdim), (high, high_bdim)) if d is not None)
        keys = ops.broadcast_to(keys, (size,) + tuple(keys.shape))
    else:
        keys = ops.moveaxis(keys, keys_bdim, 0)
    if low_bdim is None and high_bdim is None:
        return bind("random_uniform", keys, low, high, shape=shape), 0
    batch = keys.shape[0]
    sample_ndim = keys.ndim - 2 + len(shape)  # each member's output: its keys' batch, then `shape`

    def lead(bound, bdim):
        if bdim is None:
            return bound
        moved = ops.moveaxis(bound, bdim, 0)
        pad = sample_ndim - (moved.ndim - 1)
        return ops.reshape(moved, (batch,) + (1,) * pad + tuple(moved.shape[1:]))

    u = ops.astype(_unit_samples(keys, shape), low.dtype)
    low, high = lead(low, low_bdim), lead(high, high_bdim)
    return ops.add(ops.multiply(ops.subtract(high, low), u), low), 0


register(Primitive(
    name="random_uniform", kind=RANDOM, impl=random_uniform_impl, shape_rule=_random_uniform_rule,
    vjp=_random_uniform_vjp, jvp=_random_uniform_jvp, vmap=_random_uniform_vmap,
    doc="Uniform samples in [low, high) from Threefry-2x32 bits; inputs keys (..., 2) uint32 and low, high "
        "(one floating type, broadcastable to the param shape); kiln.random uses it for float32.",
))
