"""Affine-quantized primitives in MLX's layout: quantize, dequantize, quantized_matmul, gather_qmm.

Element i of a row of packed words occupies bits [i*bits, (i+1)*bits) of the row's little-endian stream of
uint32 words; each group of `group_size` elements shares a scale and a bias (value = scale * code + bias).
The numpy implementations below define the meaning the engine's kernels (csrc/quantized_kernels.h) are
tested against. Products compute in float32 (float64 for float64 operands) and round once, as matmul does.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..primitives import OTHER, Primitive, register
from .elementwise import broadcast_shapes


def _ops():
    from .. import ops

    return ops


def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


# -- the numpy meaning --------------------------------------------------------------------------------------
def unpack_codes(words: np.ndarray, bits: int) -> np.ndarray:
    """uint32 words (..., W) -> uint32 codes (..., W * 32 // bits), lowest bits first."""
    data = np.ascontiguousarray(words).astype("<u4", copy=False).view(np.uint8)
    count = words.shape[-1] * 32 // bits
    start = np.arange(count, dtype=np.int64) * bits
    byte = start // 8
    # A code spans at most two bytes (bits <= 8): read a 16-bit window, shift, mask.
    padded = np.concatenate([data, np.zeros(data.shape[:-1] + (1,), np.uint8)], axis=-1)
    window = padded[..., byte].astype(np.uint32) | (padded[..., byte + 1].astype(np.uint32) << np.uint32(8))
    return (window >> (start % 8).astype(np.uint32)) & np.uint32((1 << bits) - 1)


def dequantize_impl(w, scales, biases, *, group_size: int, bits: int, dtype):
    out = dtype.np
    codes = unpack_codes(w, bits).astype(out)
    groups = codes.reshape(codes.shape[:-1] + (-1, group_size))
    values = groups * scales.astype(out)[..., None] + biases.astype(out)[..., None]
    return values.reshape(codes.shape)


def _affine_params(groups: np.ndarray, bits: int) -> tuple:
    """Per-group scales and biases (keepdims), MLX's rule: with two or more bits the end of larger magnitude
    is represented exactly; one bit maps the two codes to the group's minimum and maximum."""
    t = groups.dtype.type
    high = groups.max(axis=-1, keepdims=True)
    low = groups.min(axis=-1, keepdims=True)
    if bits == 1:
        return np.maximum(high - low, t(1e-7)), low
    low_is_edge = np.abs(low) > np.abs(high)
    scales = np.maximum((high - low) / t((1 << bits) - 1), t(1e-7))
    scales = np.where(low_is_edge, scales, -scales)
    edge = np.where(low_is_edge, low, high)
    edge_code = np.round(edge / scales)
    scales = np.where(edge_code != 0, edge / np.where(edge_code != 0, edge_code, t(1)), scales)
    return scales, np.where(edge_code == 0, t(0), edge)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint32 codes (..., K) -> uint32 words (..., K * bits // 32), lowest bits first (unpack_codes' inverse)."""
    stream = (codes[..., None] >> np.arange(bits, dtype=np.uint32)) & np.uint32(1)
    stream = stream.astype(np.uint8).reshape(codes.shape[:-1] + (codes.shape[-1] * bits,))
    packed = np.packbits(stream, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u4").astype(np.uint32)


def quantize_impl(w, *, group_size: int, bits: int, output: int):
    """Output 0: packed words; 1: scales; 2: biases (both in w's type). Computes in float32 for halves."""
    compute = np.float64 if w.dtype == np.float64 else np.float32
    groups = w.astype(compute).reshape(w.shape[:-1] + (-1, group_size))
    scales, biases = _affine_params(groups, bits)
    if output == 1:
        return scales[..., 0].astype(w.dtype)
    if output == 2:
        return biases[..., 0].astype(w.dtype)
    codes = np.clip(np.round((groups - biases) / scales), 0, (1 << bits) - 1).astype(np.uint32)
    return pack_codes(codes.reshape(w.shape), bits)


def _compute_type(*arrays) -> np.dtype:
    return np.dtype(np.float64) if any(a.dtype == np.float64 for a in arrays) else np.dtype(np.float32)


def quantized_matmul_impl(x, w, scales, biases, *, transpose: bool, group_size: int, bits: int):
    weights = dequantize_impl(w, scales, biases, group_size=group_size, bits=bits, dtype=dt.from_numpy(scales.dtype))
    compute = _compute_type(x, weights)
    if transpose:
        weights = np.swapaxes(weights, -1, -2)
    return np.matmul(x.astype(compute), weights.astype(compute))


def gathered(m: np.ndarray, indices: np.ndarray, tail: int) -> np.ndarray:
    """Matrices of `m` (its batch dims flattened, the last `tail` dims kept) picked by `indices`."""
    flat = m.reshape((-1,) + m.shape[m.ndim - tail:])
    return flat[indices.astype(np.int64)]


def gather_qmm_impl(x, w, scales, biases, lhs, rhs, *, transpose: bool, group_size: int, bits: int):
    lhs, rhs = np.broadcast_arrays(lhs, rhs)
    return quantized_matmul_impl(gathered(x, lhs, 2), gathered(w, rhs, 2), gathered(scales, rhs, 2),
                                 gathered(biases, rhs, 2), transpose=transpose, group_size=group_size, bits=bits)


# -- shape rules ----------------------------------------------------------------------------------------------
def check_packed(op: str, w, scales, biases, group_size: int, bits: int) -> int:
    """Validate packed words against their scales and biases; returns the unpacked row length."""
    if w.dtype != dt.uint32:
        raise ValueError(f"[{op}] The weight matrix should be uint32 but received {w.dtype.name}.")
    if len(w.shape) < 2:
        raise ValueError(f"[{op}] The matrix to be dequantized must have at least 2 dimension but it has only "
                         f"{len(w.shape)}.")
    if tuple(scales.shape) != tuple(biases.shape):
        raise ValueError(f"[{op}] Scales and biases should have the same shape. Received scales with shape "
                         f"{_shape_text(scales.shape)} and biases with {_shape_text(biases.shape)}")
    count = w.shape[-1] * 32 // bits
    if (w.shape[-1] * 32) % bits or count % group_size or \
            tuple(scales.shape) != tuple(w.shape[:-1]) + (count // group_size,):
        raise ValueError(f"[{op}] The shapes of the weight and scales are incompatible based on bits and "
                         f"group_size. w.shape() == {_shape_text(w.shape)} and scales.shape() == "
                         f"{_shape_text(scales.shape)} with group_size={group_size} and bits={bits}")
    if not dt.is_floating(scales.dtype):
        raise ValueError(f"[{op}] Scales and biases must be floating point, got {scales.dtype.name}.")
    return count


def _quantize_rule(w, *, group_size, bits, output):
    if len(w.shape) < 2 or w.shape[-1] % group_size or not dt.is_floating(w.dtype):
        raise ValueError("[quantize] internal: ops checks the matrix before binding")
    if output == 0:
        return tuple(w.shape[:-1]) + (w.shape[-1] * bits // 32,), dt.uint32
    return tuple(w.shape[:-1]) + (w.shape[-1] // group_size,), w.dtype


def _quantize_vmap(inputs, bdims, params):
    from ..array import bind

    (w,), (d,) = inputs, bdims
    return bind("quantize", _ops().moveaxis(w, d, 0), **params), 0


def _dequantize_rule(w, scales, biases, *, group_size, bits, dtype):
    count = check_packed("dequantize", w, scales, biases, group_size, bits)
    return tuple(w.shape[:-1]) + (count,), dtype


def _product_shape(op: str, x, w_shape, count: int, transpose: bool, group_size: int, bits: int, batch_shape):
    # the dequantized matrix is (w_shape[-2], count); x multiplies its transpose or itself
    k, n = (count, w_shape[-2]) if transpose else (w_shape[-2], count)
    if len(x.shape) < 2 or x.shape[-1] != k:
        raise ValueError(
            f"[{op}] Last dimension of first input with shape (..., {x.shape[-1] if x.shape else 0}) does not "
            f"match the expanded quantized matrix ({k}, {n}) computed from shape {_shape_text(w_shape[-2:])} with "
            f"group_size={group_size}, bits={bits} and transpose={'true' if transpose else 'false'}")
    if not dt.is_floating(x.dtype):
        raise ValueError(f"[{op}] Only real floating types are supported but x.dtype() == {x.dtype.name}.")
    return tuple(batch_shape) + (x.shape[-2], n)


def _quantized_matmul_rule(x, w, scales, biases, *, transpose, group_size, bits):
    count = check_packed("quantized_matmul", w, scales, biases, group_size, bits)
    batch = broadcast_shapes(tuple(x.shape[:-2]), tuple(w.shape[:-2]), op="quantized_matmul")
    shape = _product_shape("quantized_matmul", x, w.shape, count, transpose, group_size, bits, batch)
    return shape, dt.promote_types(x.dtype, scales.dtype)


def _gather_qmm_rule(x, w, scales, biases, lhs, rhs, *, transpose, group_size, bits):
    count = check_packed("gather_qmm", w, scales, biases, group_size, bits)
    if not dt.is_integer(lhs.dtype) or not dt.is_integer(rhs.dtype):
        raise ValueError("[gather_qmm] Indices must be integers.")
    batch = broadcast_shapes(tuple(lhs.shape), tuple(rhs.shape), op="gather_qmm")
    shape = _product_shape("gather_qmm", x, w.shape, count, transpose, group_size, bits, batch)
    return shape, dt.promote_types(x.dtype, scales.dtype)


# -- transform rules ------------------------------------------------------------------------------------------
def _weight_cotangent(ct, x, transpose: bool):
    """d loss / d (the dequantized matrix), in the layout of w: (..., N, K) transposed, (..., K, N) not."""
    ops = _ops()
    if transpose:
        return ops.matmul(ops.swapaxes(ct, -1, -2), ops.astype(x, ct.dtype))
    return ops.matmul(ops.swapaxes(ops.astype(x, ct.dtype), -1, -2), ct)


def _scale_bias_cotangents(gw, w, scales, group_size: int, bits: int) -> tuple:
    """Cotangents of scales and biases from the dequantized matrix's: d(s*q + b) = q ds + db per group."""
    from .elementwise import unbroadcast

    ops = _ops()
    codes = dequantize(w, ops.ones_like(scales), ops.zeros_like(scales), group_size, bits, gw.dtype)
    gw = unbroadcast(gw, tuple(w.shape[:-2]) + tuple(gw.shape[-2:]))
    grouped = (tuple(gw.shape[:-1]) + (gw.shape[-1] // group_size, group_size))
    gs = ops.sum(ops.reshape(ops.multiply(gw, codes), grouped), axis=-1)
    gb = ops.sum(ops.reshape(gw, grouped), axis=-1)
    return ops.astype(gs, scales.dtype), ops.astype(gb, scales.dtype)


def _quantized_matmul_vjp(ct, out, inputs, params):
    from .elementwise import unbroadcast

    ops = _ops()
    x, w, scales, biases = inputs
    transpose, group_size, bits = params["transpose"], params["group_size"], params["bits"]
    gx = quantized_matmul(ct, w, scales, biases, not transpose, group_size, bits)
    gx = ops.astype(unbroadcast(gx, tuple(x.shape)), x.dtype)
    gs, gb = _scale_bias_cotangents(_weight_cotangent(ct, x, transpose), w, scales, group_size, bits)
    return gx, None, gs, gb


def _quantized_matmul_jvp(tangents, out, inputs, params):
    ops = _ops()
    x, w, scales, biases = inputs
    tx, _, ts, tb = tangents
    parts = []
    if tx is not None:
        parts.append(bind_qmm(tx, w, scales, biases, params))
    if ts is not None or tb is not None:
        # linear in (scales, biases) together: the product with the tangents in their place
        ts = ops.zeros_like(scales) if ts is None else ts
        tb = ops.zeros_like(biases) if tb is None else tb
        parts.append(bind_qmm(x, w, ts, tb, params))
    total = parts[0] if len(parts) == 1 else ops.add(parts[0], parts[1])
    return ops.astype(total, out.dtype)


def _batched_to_front(inputs, bdims, rank_of) -> list:
    """Move each batch axis to the front; give unbatched inputs a leading axis of 1, and align ranks."""
    ops = _ops()
    moved = []
    for x, d, rank in zip(inputs, bdims, rank_of):
        x = ops.expand_dims(x, 0) if d is None else ops.moveaxis(x, d, 0)
        pad = rank - (x.ndim - 1)
        if pad > 0:
            x = ops.reshape(x, (x.shape[0],) + (1,) * pad + tuple(x.shape[1:]))
        moved.append(x)
    return moved


def _quantized_matmul_vmap(inputs, bdims, params):
    ops = _ops()
    x, w, scales, biases = inputs
    size = next(v.shape[d] for v, d in zip(inputs, bdims) if d is not None)
    rank = max(v.ndim - (d is not None) for v, d in zip((x, w), bdims[:2]))
    xm, wm = _batched_to_front([x, w], bdims[:2], [rank, rank])
    sm, bm = _batched_to_front([scales, biases], bdims[2:], [rank, rank])
    xm = ops.broadcast_to(xm, (size,) + tuple(xm.shape[1:]))
    wm, sm, bm = (ops.broadcast_to(v, (size,) + tuple(v.shape[1:])) for v in (wm, sm, bm))
    return bind_qmm(xm, wm, sm, bm, params), 0


def _gather_qmm_vjp(ct, out, inputs, params):
    ops = _ops()
    x, w, scales, biases, lhs, rhs = inputs
    transpose, group_size, bits = params["transpose"], params["group_size"], params["bits"]
    lhs_b, rhs_b = ops.broadcast_arrays(lhs, rhs)
    flat_x = ops.reshape(x, (-1,) + tuple(x.shape[-2:]))
    flat_w, flat_s, flat_b = (ops.reshape(v, (-1,) + tuple(v.shape[-2:])) for v in (w, scales, biases))
    pick = {"lhs": ops.astype(lhs_b, dt.uint32), "rhs": ops.astype(rhs_b, dt.uint32)}
    w_g, s_g, b_g = (ops.take(v, pick["rhs"], axis=0) for v in (flat_w, flat_s, flat_b))
    gx_each = quantized_matmul(ct, w_g, s_g, b_g, not transpose, group_size, bits)
    gx = ops.zeros(flat_x.shape, gx_each.dtype).at[pick["lhs"]].add(gx_each)
    x_g = ops.take(flat_x, pick["lhs"], axis=0)
    gs_each, gb_each = _scale_bias_cotangents(_weight_cotangent(ct, x_g, transpose), w_g, s_g, group_size, bits)
    gs = ops.zeros(flat_s.shape, gs_each.dtype).at[pick["rhs"]].add(gs_each)
    gb = ops.zeros(flat_b.shape, gb_each.dtype).at[pick["rhs"]].add(gb_each)
    return (ops.astype(ops.reshape(gx, x.shape), x.dtype), None, ops.reshape(gs, scales.shape),
            ops.reshape(gb, biases.shape), None, None)


def _gather_qmm_jvp(tangents, out, inputs, params):
    ops = _ops()
    x, w, scales, biases, lhs, rhs = inputs
    tx, _, ts, tb, _, _ = tangents
    parts = []
    if tx is not None:
        parts.append(_bind_gather(tx, w, scales, biases, lhs, rhs, params))
    if ts is not None or tb is not None:
        ts = ops.zeros_like(scales) if ts is None else ts
        tb = ops.zeros_like(biases) if tb is None else tb
        parts.append(_bind_gather(x, w, ts, tb, lhs, rhs, params))
    total = parts[0] if len(parts) == 1 else ops.add(parts[0], parts[1])
    return ops.astype(total, out.dtype)


def _gather_qmm_vmap(inputs, bdims, params):
    """One gathered product per batch entry: index the flattened (batch x matrices) operands."""
    ops = _ops()
    x, w, scales, biases, lhs, rhs = inputs
    size = next(v.shape[d] for v, d in zip(inputs, bdims) if d is not None)

    def front(v, d):
        return ops.broadcast_to(ops.expand_dims(v, 0), (size,) + tuple(v.shape)) if d is None else ops.moveaxis(v, d, 0)

    x, w, scales, biases, lhs, rhs = (front(v, d) for v, d in zip(inputs, bdims))
    per_x = int(np.prod(x.shape[1:-2], dtype=np.int64))
    per_w = int(np.prod(w.shape[1:-2], dtype=np.int64))
    lhs, rhs = ops.broadcast_arrays(ops.astype(lhs, dt.int64), ops.astype(rhs, dt.int64))
    offsets = ops.arange(size, dtype=dt.int64)
    offsets = ops.reshape(offsets, (size,) + (1,) * (lhs.ndim - 1))
    lhs = ops.add(lhs, ops.multiply(offsets, per_x))
    rhs = ops.add(rhs, ops.multiply(offsets, per_w))
    return _bind_gather(x, w, scales, biases, lhs, rhs, params), 0


# -- binding helpers (the public ops in core/quantized.py validate first) --------------------------------------
def bind_qmm(x, w, scales, biases, params):
    from ..array import bind

    return bind("quantized_matmul", x, w, scales, biases, **params)


def _bind_gather(x, w, scales, biases, lhs, rhs, params):
    from ..array import bind

    return bind("gather_qmm", x, w, scales, biases, lhs, rhs, **params)


def quantized_matmul(x, w, scales, biases, transpose: bool, group_size: int, bits: int):
    return bind_qmm(x, w, scales, biases, {"transpose": bool(transpose), "group_size": group_size, "bits": bits})


def dequantize(w, scales, biases, group_size: int, bits: int, dtype):
    from ..array import bind

    return bind("dequantize", w, scales, biases, group_size=group_size, bits=bits, dtype=dtype)


def _dequantize_vjp(ct, out, inputs, params):
    ops = _ops()
    w, scales, biases = inputs
    grouped = tuple(ct.shape[:-1]) + (ct.shape[-1] // params["group_size"], params["group_size"])
    codes = dequantize(w, ops.ones_like(scales), ops.zeros_like(scales), params["group_size"], params["bits"],
                       ct.dtype)
    gs = ops.sum(ops.reshape(ops.multiply(ct, codes), grouped), axis=-1)
    gb = ops.sum(ops.reshape(ct, grouped), axis=-1)
    return None, ops.astype(gs, scales.dtype), ops.astype(gb, biases.dtype)


def _dequantize_jvp(tangents, out, inputs, params):
    ops = _ops()
    w, scales, biases = inputs
    _, ts, tb = tangents
    ts = ops.zeros_like(scales) if ts is None else ts
    tb = ops.zeros_like(biases) if tb is None else tb
    return dequantize(w, ts, tb, params["group_size"], params["bits"], out.dtype)


def _dequantize_vmap(inputs, bdims, params):
    ops = _ops()
    size = next(v.shape[d] for v, d in zip(inputs, bdims) if d is not None)
    moved = []
    for v, d in zip(inputs, bdims):
        v = ops.expand_dims(v, 0) if d is None else ops.moveaxis(v, d, 0)
        moved.append(ops.broadcast_to(v, (size,) + tuple(v.shape[1:])))
    return dequantize(*moved, params["group_size"], params["bits"], params["dtype"]), 0


register(Primitive("quantize", OTHER, quantize_impl, _quantize_rule, vmap=_quantize_vmap, differentiable=False))
register(Primitive("dequantize", OTHER, dequantize_impl, _dequantize_rule, _dequantize_vjp, _dequantize_jvp,
                   _dequantize_vmap))
register(Primitive("quantized_matmul", OTHER, quantized_matmul_impl, _quantized_matmul_rule, _quantized_matmul_vjp,
                   _quantized_matmul_jvp, _quantized_matmul_vmap))
register(Primitive("gather_qmm", OTHER, gather_qmm_impl, _gather_qmm_rule, _gather_qmm_vjp, _gather_qmm_jvp,
                   _gather_qmm_vmap))
