"""kiln.core.fast: MLX's fused layers (rms_norm, layer_norm, rope, attention, cross_entropy) built from kiln ops.

Each is the composition MLX's CPU back end falls back to, so grad, vmap and compile see ordinary graphs and
the compiler is free to fuse them. Statistics and softmax run in float32 whatever the input precision.
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes as dt
from . import ops
from .array import array

__all__ = [
    "cross_entropy",
    "cuda_kernel",
    "layer_norm",
    "metal_kernel",
    "precompiled_cuda_kernel",
    "rms_norm",
    "rope",
    "scaled_dot_product_attention",
]


def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _check_floating(op: str, x: array, what: str = "Input"):
    if not dt.is_floating(x.dtype):
        raise ValueError(f"[{op}] {what} must be a floating type but got {x.dtype.name}.")


def _check_affine(op: str, name: str, p, x: array):
    if p is None:
        return None
    p = ops.to_array(p, op=op)
    if p.ndim != 1:
        raise ValueError(f"[{op}] {name} must have 1 dimension but has {p.ndim} dimensions.")
    if p.shape[0] != x.shape[-1]:
        raise ValueError(f"[{op}] {name} must have the same size as the last dimension of x but has "
                         f"{p.shape[0]} elements.")
    return p


def _norm_setup(op: str, x, params: dict):
    x = ops.to_array(x, op=op)
    if x.ndim == 0:
        raise ValueError(f"[{op}] Input must have at least 1 dimension but got input with 0 dimensions.")
    checked = {name: _check_affine(op, name, p, x) for name, p in params.items()}
    present = [p for p in checked.values() if p is not None]
    out_type = dt.result_type(x, *present)
    if not dt.is_floating(out_type):
        raise ValueError(f"[{op}] Received unsupported type {out_type.name}.")
    return x, checked, out_type


def rms_norm(x, weight, eps: float, *, stream=None) -> array:
    """Root Mean Square normalization (RMS norm) over the last axis.

    Args:
        x (array): Input array.
        weight (array, optional): A one-dimensional scale with the size of the last axis of ``x``;
          ``None`` for no scaling.
        eps (float): A small additive constant for numerical stability.

    Returns:
        array: The output array.
    """
    x, params, out_type = _norm_setup("rms_norm", x, {"weight": weight})
    x32 = ops.astype(x, dt.float32)
    mean_square = ops.mean(ops.square(x32), axis=-1, keepdims=True)
    out = ops.astype(ops.multiply(x32, ops.rsqrt(ops.add(mean_square, float(eps)))), out_type)
    if params["weight"] is not None:
        out = ops.multiply(out, ops.astype(params["weight"], out_type))
    return out


def layer_norm(x, weight, bias, eps: float, *, stream=None) -> array:
    """Layer normalization over the last axis.

    Args:
        x (array): Input array.
        weight (array, optional): A one-dimensional scale with the size of the last axis of ``x``;
          ``None`` for no scaling.
        bias (array, optional): A one-dimensional offset with the size of the last axis of ``x``;
          ``None`` for no offset.
        eps (float): A small additive constant for numerical stability.

    Returns:
        array: The output array.
    """
    x, params, out_type = _norm_setup("layer_norm", x, {"weight": weight, "bias": bias})
    x32 = ops.astype(x, dt.float32)
    centred = ops.subtract(x32, ops.mean(x32, axis=-1, keepdims=True))
    variance = ops.mean(ops.square(centred), axis=-1, keepdims=True)
    out = ops.astype(ops.multiply(centred, ops.rsqrt(ops.add(variance, float(eps)))), out_type)
    if params["weight"] is not None:
        out = ops.multiply(out, ops.astype(params["weight"], out_type))
    if params["bias"] is not None:
        out = ops.add(out, ops.astype(params["bias"], out_type))
    return out


# -- rope ------------------------------------------------------------------------------------------
def _rope_check(a: array, dims: int, base, freqs):
    if a.ndim < 3:
        raise ValueError(f"[rope] Input must have at least 3 dimensions but got input with {a.ndim} dimensions.")
    if dims <= 0:
        raise ValueError(f"[rope] dims must be positive but got {dims}.")
    if dims % 2 != 0:
        raise ValueError(f"[rope] dims must be even but got {dims}.")
    if dims > a.shape[-1]:
        raise ValueError(f"[rope] dims must not exceed the input's last dimension ({a.shape[-1]}) but got {dims}.")
    if base is None and freqs is None:
        raise ValueError("[rope] Neither base nor freqs has a value.")
    if base is not None and freqs is not None:
        raise ValueError("[rope] Only one of base or freqs can have a value.")
    _check_floating("rope", a)


def _rope_inverse_frequencies(dims: int, base, freqs) -> array:
    half = dims // 2
    if freqs is not None:
        freqs = ops.to_array(freqs, op="rope")
        if freqs.ndim != 1 or freqs.shape[0] != half:
            raise ValueError(f"[rope] freqs must be one dimensional with size {half} but got shape "
                             f"{_shape_text(freqs.shape)}.")
        return ops.reciprocal(ops.astype(freqs, dt.float32))
    # base ** (-2i / dims) for i < dims / 2
    exponents = ops.multiply(ops.arange(0, half, dtype=dt.float32), -math.log(base) / half)
    return ops.exp(exponents)


def _rope_positions(a: array, offset, scale: float) -> array:
    """Scaled positions shaped to broadcast against (B, *, T, 1): (T, 1) or (B, 1.., T, 1) for per-batch offsets."""
    steps = ops.arange(0, a.shape[-2], dtype=dt.float32)
    if isinstance(offset, array):
        if not dt.is_integer(offset.dtype):
            raise ValueError(f"[rope] offset must be an integer but got type {offset.dtype.name}.")
        if offset.ndim > 1 or (offset.ndim == 1 and offset.shape[0] not in (1, a.shape[0])):
            raise ValueError(f"[rope] offset must be a scalar or vector with {a.shape[0]} elements but has shape "
                             f"{_shape_text(offset.shape)}.")
        start = ops.astype(offset, dt.float32)
        if offset.ndim == 1:
            start = ops.reshape(start, (offset.shape[0],) + (1,) * (a.ndim - 1))
            steps = ops.expand_dims(steps, -1)
            return ops.multiply(ops.add(start, steps), float(scale))
        return ops.expand_dims(ops.multiply(ops.add(steps, start), float(scale)), -1)
    if isinstance(offset, float) or not isinstance(offset, (int, np.integer)):
        raise ValueError(f"[rope] offset must be an integer but got type {type(offset).__name__}.")  # noqa: TRY004  (MLX raises ValueError)
    return ops.expand_dims(ops.multiply(ops.add(steps, float(offset)), float(scale)), -1)


def rope(a, dims: int, *, traditional: bool, base, scale: float, offset, freqs=None, stream=None) -> array:
    """Apply rotary positional encoding to the input.

    Args:
        a (array): Input of shape ``(B, *, T, D)``.
        dims (int): The feature dimensions to rotate; the rest of the last axis is left unchanged.
        traditional (bool): Rotate consecutive pairs of dimensions instead of the two halves.
        base (float, optional): Base of the angular frequencies. Exactly one of ``base`` and ``freqs`` is ``None``.
        scale (float): Scale applied to the positions.
        offset (int or array): Position of the first step; an array may be a scalar or hold one offset per batch.
        freqs (array, optional): Frequencies to use instead of ``base``'s.

    Returns:
        array: The output array.
    """
    a = ops.to_array(a, op="rope")
    dims = int(dims)
    _rope_check(a, dims, base, freqs)
    theta = ops.multiply(_rope_positions(a, offset, scale), _rope_inverse_frequencies(dims, base, freqs))
    cos = ops.astype(ops.cos(theta), a.dtype)
    sin = ops.astype(ops.sin(theta), a.dtype)
    rotated = a[..., :dims]
    if traditional:
        x1 = rotated[..., 0::2]
        x2 = rotated[..., 1::2]
    else:
        x1 = rotated[..., : dims // 2]
        x2 = rotated[..., dims // 2:]
    y1 = ops.subtract(ops.multiply(x1, cos), ops.multiply(x2, sin))
    y2 = ops.add(ops.multiply(x1, sin), ops.multiply(x2, cos))
    if traditional:
        out = ops.reshape(ops.stack([y1, y2], axis=-1), rotated.shape)
    else:
        out = ops.concatenate([y1, y2], axis=-1)
    if dims < a.shape[-1]:
        out = ops.concatenate([out, a[..., dims:]], axis=-1)
    return out


# -- attention -------------------------------------------------------------------------------------
_SDPA = "scaled_dot_product_attention"
_FLOAT32_LOWEST = float(np.finfo(np.float32).min)  # masked-out scores


def _sdpa_check(q: array, k: array, v: array):
    for t in (q, k, v):
        if t.ndim != 4:
            raise ValueError(f"[{_SDPA}] input with shape {_shape_text(t.shape)} expected to be rank 4")
    n_heads, n_kv = q.shape[1], k.shape[1]
    if n_kv == 0 or n_heads % n_kv != 0:
        raise ValueError(f"[{_SDPA}] n_heads must be a multiple of n_kv_heads, found n_heads {n_heads} for "
                         f"n_kv_heads {n_kv}.")
    if k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ValueError(f"[{_SDPA}] keys with shape {_shape_text(k.shape)} and values with shape "
                         f"{_shape_text(v.shape)} must have the same number of heads and sequence length.")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"[{_SDPA}] query with shape {_shape_text(q.shape)} and keys with shape "
                         f"{_shape_text(k.shape)} must have the same head dimension.")
    for t in (k, v):
        if t.shape[0] != q.shape[0] and 1 not in (t.shape[0], q.shape[0]):
            raise ValueError(f"[{_SDPA}] batch sizes of query {_shape_text(q.shape)} and {_shape_text(t.shape)} "
                             "do not broadcast.")


def _causal_keep(t_q: int, t_kv: int) -> array:
    """Lower-right aligned causal mask: query i sees key j when j <= i + (t_kv - t_q)."""
    rows = ops.expand_dims(ops.arange(0, t_q, dtype=dt.int32), -1)
    cols = ops.arange(0, t_kv, dtype=dt.int32)
    return ops.less_equal(cols, ops.add(rows, t_kv - t_q))


def _grouped_mask(mask: array, n_kv: int, n_rep: int) -> array:
    """Reshape a mask for [B, N_q, T_q, T_kv] to the grouped [B, N_kv, N_rep, T_q, T_kv] layout."""
    if mask.ndim >= 3 and mask.shape[-3] == n_kv * n_rep and n_rep > 1:
        return ops.unflatten(mask, -3, (n_kv, n_rep))
    if mask.ndim >= 3:
        return ops.expand_dims(mask, -3)
    return mask


def _sdpa_mask_check(mask: array, q: array, k: array):
    """The mask must broadcast *to* the scores' shape [B, N_q, T_q, T_kv], not merely against it."""
    batch = q.shape[0] if k.shape[0] == 1 else k.shape[0]
    scores_shape = (batch,) + q.shape[1:3] + (k.shape[2],)
    try:
        fits = ops.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"[{_SDPA}] Cannot broadcast the mask with shape {_shape_text(mask.shape)} into the "
                         f"scores' shape {_shape_text(scores_shape)}.")


def scaled_dot_product_attention(q, k, v, *, scale: float, mask=None, sinks=None, force_fused: bool = False,
                                 stream=None) -> array:
    """Multi-head attention ``softmax(scale * Q @ K.T + mask) @ V`` with grouped-query support.

    Args:
        q (array): Queries with shape ``[B, N_q, T_q, D]``.
        k (array): Keys with shape ``[B, N_kv, T_kv, D]``.
        v (array): Values with shape ``[B, N_kv, T_kv, D_v]``.
        scale (float): Scale for the queries, typically ``1 / sqrt(D)``.
        mask (str or array, optional): ``"causal"`` (lower-right aligned), a boolean mask (``False`` masks out)
          or an additive mask, broadcastable to ``[B, N_q, T_q, T_kv]``.
        sinks (array, optional): One attention-sink logit per query head.
        force_fused (bool, optional): Accepted for compatibility; kiln has one (composed) implementation.

    Returns:
        array: The output array of shape ``[B, N_q, T_q, D_v]``.
    """
    q, k, v = (ops.to_array(t, op=_SDPA) for t in (q, k, v))
    _sdpa_check(q, k, v)
    out_type = dt.result_type(q, k, v)
    if not dt.is_floating(out_type):
        raise ValueError(f"[{_SDPA}] Received unsupported type {out_type.name}.")
    if isinstance(mask, str) and mask != "causal":
        raise ValueError(f"[{_SDPA}] invalid mask option '{mask}'. Must be 'causal', or an array.")
    if mask is not None and not isinstance(mask, str):
        mask = ops.to_array(mask, op=_SDPA)
        if mask.ndim > 4:
            raise ValueError(f"[{_SDPA}] the mask with shape {_shape_text(mask.shape)} expected to have at most "
                             "rank 4.")
        _sdpa_mask_check(mask, q, k)
    n_kv = k.shape[1]
    n_rep = q.shape[1] // n_kv
    t_q, t_kv = q.shape[2], k.shape[2]
    queries = ops.astype(ops.multiply(ops.astype(q, out_type), float(scale)), out_type)
    # grouped layout: [B, N_kv, N_rep, T, D]; keys and values gain a broadcast axis instead of being tiled
    queries = ops.unflatten(queries, 1, (n_kv, n_rep))
    keys = ops.expand_dims(ops.astype(k, out_type), 2)
    values = ops.expand_dims(ops.astype(v, out_type), 2)
    scores = ops.astype(ops.matmul(queries, ops.swapaxes(keys, -1, -2)), dt.float32)
    if isinstance(mask, str):
        scores = ops.where(_causal_keep(t_q, t_kv), scores, _FLOAT32_LOWEST)
    elif mask is not None:
        grouped = _grouped_mask(mask, n_kv, n_rep)
        if grouped.dtype == dt.bool_:
            scores = ops.where(grouped, scores, _FLOAT32_LOWEST)
        else:
            scores = ops.add(scores, ops.astype(grouped, dt.float32))
    if sinks is not None:
        sink = ops.astype(ops.to_array(sinks, op=_SDPA), dt.float32)
        sink = ops.reshape(sink, (n_kv, n_rep, 1, 1))
        sink = ops.broadcast_to(sink, scores.shape[:-1] + (1,))
        weights = ops.softmax(ops.concatenate([sink, scores], axis=-1), axis=-1, precise=True)[..., 1:]
    else:
        weights = ops.softmax(scores, axis=-1, precise=True)
    out = ops.matmul(ops.astype(weights, out_type), values)
    return ops.flatten(out, 1, 2)


def cross_entropy(logits, targets, *, stream=None) -> array:
    """Cross entropy with class indices as targets: ``logsumexp(logits, -1) - logits[..., targets]``.

    Args:
        logits (array): Unnormalized logits; the loss is computed over the last axis.
        targets (array): Integer class indices with the shape of ``logits`` without its last axis.

    Returns:
        array: The per-element loss in float32, with the shape of ``targets``.
    """
    logits = ops.to_array(logits, op="cross_entropy")
    targets = ops.to_array(targets, op="cross_entropy")
    if not dt.is_integer(targets.dtype):
        raise ValueError(f"[cross_entropy] targets must be integer class indices but got {targets.dtype.name}.")
    if logits.ndim == 0 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"[cross_entropy] targets shape {_shape_text(targets.shape)} does not match logits shape "
                         f"{_shape_text(logits.shape)} with the last axis removed.")
    picked = ops.take_along_axis(logits, ops.expand_dims(targets, -1), axis=-1)
    loss = ops.subtract(ops.logsumexp(logits, axis=-1), ops.squeeze(picked, -1))
    return ops.astype(loss, dt.float32)


# -- custom kernels ---------------------------------------------------------------------------------
class _NoBackendKernel:
    """A custom-kernel handle for a back end kiln lacks; creating it works (as in MLX's CPU build), calling
    it raises."""

    def __init__(self, op: str, backend: str, name: str):
        self._op = op
        self._backend = backend
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"[{self._op}] No {self._backend} back-end.")


def metal_kernel(name: str, input_names, output_names, source: str, header: str = "",
                 ensure_row_contiguous: bool = True, atomic_outputs: bool = False, compile_options=None):
    """A custom Metal kernel. kiln cannot run hand-written Metal source: as in MLX's CPU build, the returned
    callable raises ``RuntimeError("[metal_kernel] No Metal back-end.")``.

    Returns:
        Callable: the kernel handle.
    """
    return _NoBackendKernel("metal_kernel", "Metal", name)


def cuda_kernel(name: str, input_names, output_names, source: str, header: str = "",
                ensure_row_contiguous: bool = True, shared_memory: int = 0):
    """A custom CUDA kernel. kiln has no CUDA back end: the returned callable raises ``RuntimeError``.

    Returns:
        Callable: the kernel handle.
    """
    return _NoBackendKernel("cuda_kernel", "CUDA", name)


def precompiled_cuda_kernel(*, name: str, compiled_source: bytes, inputs, output_shapes, output_dtypes, scalars,
                            grid, threadgroup, shared_memory: int = 0, init_value=None,
                            ensure_row_contiguous: bool = False, stream=None):
    """Run a precompiled CUDA kernel: kiln has no CUDA back end, so this raises ``RuntimeError``."""
    raise RuntimeError("[precompiled_cuda_kernel] No CUDA back-end.")
