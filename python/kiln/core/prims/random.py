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
