"""MLX's affine quantization (quantize, dequantize, quantized_matmul) and gathered/segmented matmuls.

Quantized words are bit streams: element i of a row occupies bits [i*bits, (i+1)*bits) of the row's
little-endian stream of uint32 words, so files and weights quantized by MLX load and dequantize unchanged.
quantize, dequantize, quantized_matmul and gather_qmm are primitives (core/prims/quantized.py: their numpy
meaning) with native kernels in the engine (csrc/quantized_kernels.h).
"""

from __future__ import annotations

from . import dtypes as dt
from . import ops, quant_modes
from .array import array, bind
from .prims import quantized as qprims

__all__ = ["block_masked_mm", "dequantize", "gather_mm", "gather_qmm", "quantize", "quantized_matmul", "segmented_mm"]

_BITS = (1, 2, 3, 4, 5, 6, 8)
_GROUP_SIZES = (32, 64, 128)


def _shape_text(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _check_params(op: str, group_size, bits) -> tuple:
    group_size = 64 if group_size is None else int(group_size)
    bits = 4 if bits is None else int(bits)
    if bits not in _BITS:
        raise ValueError(f"[{op}] The requested number of bits {bits} is not supported. The supported bits are "
                         "1, 2, 3, 4, 5, 6 and 8.")
    if group_size not in _GROUP_SIZES:
        raise ValueError(f"[{op}] The requested group size {group_size} is not supported. The supported group "
                         "sizes are 32, 64 and 128.")
    return group_size, bits


# -- quantize / dequantize ------------------------------------------------------------------------------
def quantize(w, /, group_size: int | None = None, bits: int | None = None, mode: str = "affine", *,
             global_scale=None, stream=None) -> tuple:
    """Quantize the array ``w`` with one scale and bias per ``group_size`` consecutive elements of a row.

    Each group maps ``[min, max]`` onto ``0 .. 2**bits - 1``; with two or more bits the end with the larger
    magnitude is represented exactly. Codes are packed into uint32 words from the lowest bits up.

    Args:
        w (array): Array to quantize, at least 2-D, the last dimension divisible by ``group_size``.
        group_size (int, optional): Elements sharing a scale and bias: 32, 64 (default) or 128.
        bits (int, optional): Bits per element: 1, 2, 3, 4 (default), 5, 6 or 8.
        mode (str): ``"affine"`` (default), or ``"mxfp4"``, ``"mxfp8"``, ``"nvfp4"`` (quant_modes.py).
        global_scale (array, optional): nvfp4's float32 tensor-wide scale.

    Returns:
        tuple: ``(w_q, scales, biases)``, or ``(w_q, scales)`` for the floating-point modes.
    """
    if mode != "affine":  # the floating-point modes live in quant_modes.py
        return quant_modes.quantize_mode(w, group_size, bits, mode, global_scale)
    group_size, bits = _check_params("quantize", group_size, bits)
    w = ops.to_array(w, op="quantize")
    if w.ndim < 2:
        raise ValueError(f"[quantize] The matrix to be quantized must have at least 2 dimension but it has only "
                         f"{w.ndim}.")
    if w.shape[-1] % group_size != 0:
        raise ValueError(f"[quantize] The last dimension of the matrix needs to be divisible by the quantization "
                         f"group size {group_size}. However the provided  matrix has shape {_shape_text(w.shape)}")
    if not dt.is_floating(w.dtype):
        raise ValueError(f"[quantize] Only floating point types can be quantized, got {w.dtype.name}.")
    return tuple(bind("quantize", w, group_size=group_size, bits=bits, output=k) for k in range(3))


def dequantize(w, /, scales, biases=None, group_size: int | None = None, bits: int | None = None,
               mode: str = "affine", global_scale=None, dtype=None, *, stream=None) -> array:
    """Dequantize ``w`` (packed uint32 words) with per-group ``scales`` and ``biases``.

    Args:
        w (array): Packed codes.
        scales (array): One scale per group.
        biases (array): One bias per group.
        group_size (int, optional): The group size used to quantize (default 64).
        bits (int, optional): Bits per element used to quantize (default 4).
        mode (str): ``"affine"`` (default), or ``"mxfp4"``, ``"mxfp8"``, ``"nvfp4"`` (then no biases).
        dtype (Dtype, optional): Output type; the type of ``scales`` by default.

    Returns:
        array: The dequantized array.
    """
    if mode != "affine":
        if biases is not None:
            raise ValueError(f"[dequantize] Biases must be null for quantization mode '{mode}'.")
        return quant_modes.dequantize_mode(w, scales, group_size, bits, mode, global_scale, dtype)
    group_size, bits = _check_params("dequantize", group_size, bits)
    w, scales, biases = _packed_operands("dequantize", w, scales, biases)
    out_type = dt.dtype_arg(dtype, "dequantize", scales.dtype)
    if not dt.is_floating(out_type):
        raise ValueError(f"[dequantize] The output type must be floating point, got {out_type.name}.")
    return qprims.dequantize(w, scales, biases, group_size, bits, out_type)


def _packed_operands(op: str, w, scales, biases) -> tuple:
    w = ops.to_array(w, op=op)
    scales = ops.to_array(scales, op=op)
    if biases is None:
        raise ValueError(f"[{op}] Biases must be provided for affine quantization.")
    return w, scales, ops.to_array(biases, op=op)


def quantized_matmul(x, w, /, scales, biases=None, transpose: bool = True, group_size: int | None = None,
                     bits: int | None = None, mode: str = "affine", *, stream=None) -> array:
    """Matrix product of ``x`` with the quantized matrix ``w``: ``x @ dequantize(w).T`` (or without the
    transpose when ``transpose=False``).

    Runs on native kernels that decode the packed words in registers (float32 accumulation) when the engine
    is available; the reference meaning is dequantize-then-matmul.

    Args:
        x (array): Input array ``(..., M, K)``.
        w (array): Packed quantized matrix.
        scales (array): Per-group scales.
        biases (array): Per-group biases.
        transpose (bool): Multiply by the transpose of ``w`` (default ``True``).
        group_size (int, optional): The group size used to quantize (default 64).
        bits (int, optional): Bits per element used to quantize (default 4).

    Returns:
        array: The product, of type ``result_type(x, scales)``.
    """
    if mode != "affine":
        if biases is not None:
            raise ValueError(f"[quantized_matmul] Biases must be null for quantization mode '{mode}'.")
        return quant_modes.quantized_matmul_mode(x, w, scales, transpose, group_size, bits, mode)
    group_size, bits = _check_params("quantized_matmul", group_size, bits)
    x = ops.to_array(x, op="quantized_matmul")
    w, scales, biases = _packed_operands("quantized_matmul", w, scales, biases)
    vector = x.ndim == 1
    if vector:
        x = ops.expand_dims(x, 0)
    out = qprims.quantized_matmul(x, w, scales, biases, transpose, group_size, bits)
    return ops.squeeze(out, -2) if vector else out


def gather_qmm(x, w, /, scales, biases=None, lhs_indices=None, rhs_indices=None, transpose: bool = True,
               group_size: int | None = None, bits: int | None = None, mode: str = "affine", global_scale=None,
               *, sorted_indices: bool = False, stream=None) -> array:
    """Quantized matrix products with matrices gathered from the batches of ``x`` and ``w``.

    The quantized form of :func:`gather_mm`, as mixture-of-experts layers use it: the product of
    ``x[lhs_indices]`` with the quantized matrices ``w[rhs_indices]`` (batch dimensions flattened).

    Args:
        x (array): Inputs ``(..., M, K)``.
        w (array): Packed quantized matrices ``(..., N, K * bits / 32)`` (transposed layout).
        scales (array): Per-group scales.
        biases (array): Per-group biases.
        lhs_indices (array, optional): Which matrices of ``x`` to use.
        rhs_indices (array, optional): Which matrices of ``w`` to use.
        transpose (bool): Multiply by the transpose of each matrix (default ``True``).
        group_size (int, optional): The group size used to quantize (default 64).
        bits (int, optional): Bits per element used to quantize (default 4).
        mode (str): ``"affine"`` (default), or ``"mxfp4"``, ``"mxfp8"``, ``"nvfp4"`` (then no biases).
        global_scale (array, optional): nvfp4's float32 tensor-wide scale used when quantizing.
        sorted_indices (bool): A performance hint; ignored.

    Returns:
        array: The products, of shape ``broadcast(lhs_indices, rhs_indices).shape + (M, N)``.
    """
    if mode != "affine":
        if biases is not None:
            raise ValueError(f"[gather_qmm] Biases must be null for quantization mode '{mode}'.")
        return quant_modes.gather_qmm_mode(x, w, scales, lhs_indices, rhs_indices, transpose, group_size, bits,
                                           mode, global_scale)
    group_size, bits = _check_params("gather_qmm", group_size, bits)
    x = ops.to_array(x, op="gather_qmm")
    w, scales, biases = _packed_operands("gather_qmm", w, scales, biases)
    if x.ndim < 2:
        raise ValueError("[gather_qmm] The input must have at least 2 dimensions.")
    if lhs_indices is None and rhs_indices is None:
        return qprims.quantized_matmul(x, w, scales, biases, transpose, group_size, bits)
    lhs = _batch_indices("gather_qmm", lhs_indices, x, rhs_indices)
    rhs = _batch_indices("gather_qmm", rhs_indices, w, lhs_indices)
    return bind("gather_qmm", x, w, scales, biases, lhs, rhs, transpose=bool(transpose), group_size=group_size,
                bits=bits)


def _batch_indices(op: str, indices, m: array, other) -> array:
    """The given indices, or (when None) every matrix of `m`'s batch in order, shaped like its batch."""
    if indices is not None:
        return ops.to_array(indices, op=op)
    batch = tuple(m.shape[:-2])
    count = 1
    for s in batch:
        count *= s
    return ops.reshape(ops.arange(0, count, dtype=dt.uint32), batch)


# -- gathered and masked products ------------------------------------------------------------------------
def _gather_batch(m: array, indices) -> array:
    """Pick matrices of `m` (batch dims flattened) by `indices`; None keeps the batch as it is."""
    if indices is None:
        return m
    flat = ops.reshape(m, (-1,) + tuple(m.shape[-2:]))
    return ops.take(flat, ops.astype(ops.to_array(indices), dt.uint32), axis=0)


def gather_mm(a, b, /, lhs_indices=None, rhs_indices=None, *, sorted_indices: bool = False, stream=None) -> array:
    """Matrix products of matrices gathered from the (flattened) batches of ``a`` and ``b``.

    Args:
        a (array): Left operands ``(..., M, K)``.
        b (array): Right operands ``(..., K, N)``.
        lhs_indices (array, optional): Which matrices of ``a`` to use.
        rhs_indices (array, optional): Which matrices of ``b`` to use.
        sorted_indices (bool): A performance hint; ignored.

    Returns:
        array: ``a[lhs_indices] @ b[rhs_indices]``.
    """
    a = ops.to_array(a, op="gather_mm")
    b = ops.to_array(b, op="gather_mm")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("[gather_mm] Inputs must have at least 2 dimensions.")
    return ops.matmul(_gather_batch(a, lhs_indices), _gather_batch(b, rhs_indices))


def segmented_mm(a, b, /, segments, *, stream=None) -> array:
    """Products over segments of the inner dimension: ``out[..., s, :, :] = a[:, i:j] @ b[i:j, :]`` for
    ``segments[..., s] = (i, j)``.

    Args:
        a (array): Left operand ``(M, K)``.
        b (array): Right operand ``(K, N)``.
        segments (array): Integer pairs ``(..., 2)`` of inner-dimension bounds.

    Returns:
        array: The products, of shape ``segments.shape[:-1] + (M, N)``.
    """
    a = ops.to_array(a, op="segmented_mm")
    b = ops.to_array(b, op="segmented_mm")
    segments = ops.to_array(segments, op="segmented_mm")
    if segments.ndim < 1 or segments.shape[-1] != 2:
        raise ValueError("[segmented_mm] segments must have shape (..., 2).")
    k = ops.arange(0, a.shape[-1], dtype=dt.int32)
    lo = ops.expand_dims(ops.astype(segments[..., 0], dt.int32), -1)
    hi = ops.expand_dims(ops.astype(segments[..., 1], dt.int32), -1)
    inside = ops.logical_and(ops.greater_equal(k, lo), ops.less(k, hi))
    masked = ops.multiply(a, ops.expand_dims(ops.astype(inside, a.dtype), -2))
    return ops.matmul(masked, b)


def _expand_block_mask(mask, rows: int, cols: int, block: int, dtype) -> array:
    """A (..., ceil(rows/block), ceil(cols/block)) block mask spread to (..., rows, cols)."""
    mask = ops.to_array(mask)
    full = ops.repeat(ops.repeat(mask, block, axis=-2), block, axis=-1)
    full = full[..., :rows, :cols]
    return ops.astype(full, dtype)


def block_masked_mm(a, b, /, block_size: int = 64, mask_out=None, mask_lhs=None, mask_rhs=None, *,
                    stream=None) -> array:
    """Matrix product with ``block_size x block_size`` blocks of the operands and the output masked.

    Boolean masks drop blocks; floating masks scale them.

    Args:
        a (array): Left operand ``(..., M, K)``.
        b (array): Right operand ``(..., K, N)``.
        block_size (int): Block size (MLX supports 32 and 64).
        mask_out (array, optional): ``(..., ceil(M/bs), ceil(N/bs))`` mask of output blocks.
        mask_lhs (array, optional): ``(..., ceil(M/bs), ceil(K/bs))`` mask of ``a``'s blocks.
        mask_rhs (array, optional): ``(..., ceil(K/bs), ceil(N/bs))`` mask of ``b``'s blocks.

    Returns:
        array: The masked product.
    """
    x, y = ops._promote("block_masked_mm", a, b)
    if block_size not in (32, 64):
        raise ValueError(f"[block_masked_mm] Only block_sizes 32, 64 are supported. Got block size {block_size}.")
    m, k = x.shape[-2:]
    n = y.shape[-1]
    if mask_lhs is not None:
        x = ops.multiply(x, _expand_block_mask(mask_lhs, m, k, block_size, x.dtype))
    if mask_rhs is not None:
        y = ops.multiply(y, _expand_block_mask(mask_rhs, k, n, block_size, y.dtype))
    out = ops.matmul(x, y)
    if mask_out is not None:
        out = ops.multiply(out, _expand_block_mask(mask_out, m, n, block_size, out.dtype))
    return out
