"""MLX's floating-point quantization modes ("mxfp4", "mxfp8", "nvfp4") and fp8 conversion (to_fp8, from_fp8).

A row is split in groups sharing one 8-bit scale; each element is stored as an FP4 (E2M1) or FP8 (E4M3)
code, packed little-endian into uint32 words (8 or 4 per word, lowest first), so weights quantized by MLX
load and dequantize unchanged. The "mx" modes (OCP microscaling) use an E8M0 power-of-two scale, the
smallest one that keeps the group's largest magnitude representable; "nvfp4" uses an E4M3 scale
``amax / 6``, optionally relative to a float32 ``global_scale``. Codes come from the `float_encode` and
`float_decode` primitives (prims/float_formats.py); the rest composes kiln ops, so it traces and compiles.
"""

from __future__ import annotations

from . import dtypes as dt
from . import ops
from .array import array, bind
from .ops_extra import view
from .prims import float_formats  # noqa: F401  (registers float_encode / float_decode)

__all__ = ["from_fp8", "gather_qqmm", "qqmm", "to_fp8"]

# mode -> (element format, bits, group size, scale format)
MODES = {
    "mxfp4": ("e2m1", 4, 32, "e8m0"),
    "mxfp8": ("e4m3", 8, 32, "e8m0"),
    "nvfp4": ("e2m1", 4, 16, "e4m3"),
}
_LARGEST = {"e2m1": 6.0, "e4m3": 448.0}
# nvfp4's global scale g stands for the tensor-wide decode factor g / (448 * 6), as in MLX.
_NV_GLOBAL = 448.0 * 6.0


def to_fp8(x, *, stream=None) -> array:
    """Convert the array to fp8 (e4m3) from another floating-point type.

    Values round to nearest (ties to even) and saturate at +-448; NaN becomes 448, as in MLX.

    Args:
        x (array): The input array.

    Returns:
        array: The fp8 codes, with type ``uint8``.
    """
    x = ops.to_array(x, op="to_fp8")
    if not dt.is_floating(x.dtype) or x.dtype == dt.complex64:
        raise ValueError(f"[to_fp8] Only real floating types are supported but x.dtype() == {x.dtype.name}.")
    return bind("float_encode", x, format="e4m3")


def from_fp8(x, dtype=dt.bfloat16, *, stream=None) -> array:
    """Convert the array from fp8 (e4m3) to another floating-point type.

    Args:
        x (array): The input fp8 codes, with type ``uint8``.
        dtype (Dtype): The data type to convert to. Default: ``bfloat16``.

    Returns:
        array: The converted array.
    """
    x = ops.to_array(x, op="from_fp8")
    if x.dtype != dt.uint8:
        raise ValueError(f"[from_fp8] Input must have type uint8 but x.dtype() == {x.dtype.name}.")
    return bind("float_decode", x, format="e4m3", dtype=dt.dtype_arg(dtype, "from_fp8"))


def check_mode(op: str, mode: str, group_size, bits) -> tuple:
    """(element format, bits, group size, scale format) of `mode`, checking MLX's fixed sizes."""
    if mode not in MODES:
        raise ValueError(f"[{op}] Invalid quantization mode '{mode}'.")
    element, mode_bits, mode_group, scale = MODES[mode]
    if bits is not None and bits != mode_bits:
        raise ValueError(f"[{op}] {mode} quantization requires bits to be {mode_bits} but got {bits}.")
    if group_size is not None and group_size != mode_group:
        raise ValueError(f"[{op}] {mode} quantization requires group size {mode_group} but got {group_size}.")
    return element, mode_bits, mode_group, scale


def _global_factor(op: str, mode: str, global_scale):
    if global_scale is None:
        return None
    if mode != "nvfp4":
        raise ValueError(f"[{op}] global_scale is only used by 'nvfp4' quantization, not '{mode}'.")
    g = ops.astype(ops.to_array(global_scale, op=op), dt.float32)
    if g.size != 1:
        raise ValueError(f"[{op}] global_scale must hold one value, got shape {tuple(g.shape)}.")
    return ops.reshape(g, ()) / _NV_GLOBAL


def _power_of_two_at_least(r: array) -> array:
    """E8M0 codes of the smallest powers of two >= r (r >= 0, float32), exact: read from r's bits."""
    bits = view(r, dt.uint32)
    exponent = ops.bitwise_and(ops.right_shift(bits, 23), 0xFF)
    inexact = ops.astype(ops.not_equal(ops.bitwise_and(bits, 0x7FFFFF), 0), dt.uint32)
    return ops.astype(ops.minimum(exponent + inexact, 254), dt.uint8)


def _pack(codes: array, bits: int) -> array:
    """uint8 codes (..., K) -> uint32 words (..., K * bits / 32), the first code in the lowest bits."""
    if bits == 4:
        pairs = ops.unflatten(codes, -1, (codes.shape[-1] // 2, 2))
        low, high = pairs[..., 0], pairs[..., 1]
        codes = ops.bitwise_or(ops.bitwise_and(low, 0x0F), ops.left_shift(ops.bitwise_and(high, 0x0F), 4))
    return view(codes, dt.uint32)


def _unpack(words: array, bits: int) -> array:
    """uint32 words (..., W) -> uint8 codes (..., W * 32 / bits)."""
    data = view(words, dt.uint8)
    if bits == 8:
        return data
    nibbles = ops.stack([ops.bitwise_and(data, 0x0F), ops.right_shift(data, 4)], axis=-1)
    return ops.flatten(nibbles, -2, -1)


def quantize_mode(w, group_size, bits, mode: str, global_scale=None) -> tuple:
    """Quantize ``w`` in a floating-point mode; returns ``(w_q, scales)`` (these modes have no biases).

    Args:
        w (array): At least 2-D, real floating, the last dimension divisible by the group size.
        group_size (int or None): Must be the mode's (32 for the "mx" modes, 16 for "nvfp4").
        bits (int or None): Must be the mode's (4, or 8 for "mxfp8").
        mode (str): ``"mxfp4"``, ``"mxfp8"`` or ``"nvfp4"``.
        global_scale (array, optional): nvfp4's float32 tensor-wide scale.

    Returns:
        tuple: ``(w_q, scales)``: uint32 packed codes and uint8 scale codes, one per group.
    """
    element, bits, group_size, scale_format = check_mode("quantize", mode, group_size, bits)
    w = ops.to_array(w, op="quantize")
    if w.ndim < 2:
        raise ValueError(f"[quantize] The matrix to be quantized must have at least 2 dimension but it has only "
                         f"{w.ndim}.")
    if w.shape[-1] % group_size != 0:
        shape = "(" + ",".join(str(s) for s in w.shape) + ")"
        raise ValueError(f"[quantize] The last dimension of the matrix needs to be divisible by the quantization "
                         f"group size {group_size}. However the provided  matrix has shape {shape}")
    if not dt.is_floating(w.dtype) or w.dtype == dt.complex64:
        raise ValueError(f"[quantize] Only real floating point types can be quantized, got {w.dtype.name}.")
    factor = _global_factor("quantize", mode, global_scale)
    groups = ops.unflatten(ops.astype(w, dt.float32), -1, (w.shape[-1] // group_size, group_size))
    needed = ops.max(ops.abs(groups), axis=-1, keepdims=True) / _LARGEST[element]
    if scale_format == "e8m0":
        # an all-zero group gets the scale 1 (code 127), as MLX writes it
        scale_codes = ops.where(needed > 0, _power_of_two_at_least(needed), 127).astype(dt.uint8)
    else:
        scale_codes = bind("float_encode", needed if factor is None else needed / factor, format="e4m3")
    step = bind("float_decode", scale_codes, format=scale_format, dtype=dt.float32)
    if factor is not None:
        step = step * factor
    # an all-zero group has a zero nvfp4 scale: its elements are zero, not 0/0
    scaled = ops.where(step > 0, groups / ops.where(step > 0, step, 1.0), 0.0)
    codes = bind("float_encode", scaled, format=element)
    if element == "e2m1":
        codes = ops.where(codes == 0x8, 0, codes).astype(dt.uint8)  # MLX stores an FP4 zero unsigned
    codes = ops.reshape(codes, w.shape)
    return _pack(codes, bits), ops.squeeze(scale_codes, -1)


def dequantize_mode(w, scales, group_size, bits, mode: str, global_scale=None, dtype=None, *,
                    scales_grad_error: str | None = None) -> array:
    """Dequantize ``w`` quantized in a floating-point mode.

    Args:
        w (array): uint32 packed codes.
        scales (array): uint8 scale codes, one per group.
        group_size (int or None): Must be the mode's.
        bits (int or None): Must be the mode's.
        mode (str): ``"mxfp4"``, ``"mxfp8"`` or ``"nvfp4"``.
        global_scale (array, optional): nvfp4's float32 tensor-wide scale used when quantizing.
        dtype (Dtype, optional): Output type. Default: ``bfloat16``, as MLX.
        scales_grad_error (str, optional): Refuse a derivative with respect to ``scales`` with this message
          (products refuse it, as MLX; ``dequantize`` itself gives a zero one).

    Returns:
        array: The dequantized array.
    """
    element, bits, group_size, scale_format = check_mode("dequantize", mode, group_size, bits)
    w = ops.to_array(w, op="dequantize")
    scales = ops.to_array(scales, op="dequantize")
    if w.dtype != dt.uint32:
        raise ValueError(f"[dequantize] The matrix should be given as a uint32 but got {w.dtype.name}.")
    if scales.dtype != dt.uint8:
        raise ValueError(f"[dequantize] Scales must have type uint8 for mode '{mode}', got {scales.dtype.name}.")
    if w.ndim < 2:
        raise ValueError(f"[dequantize] The matrix to be dequantized must have at least 2 dimension but it has "
                         f"only {w.ndim}.")
    count = w.shape[-1] * 32 // bits
    if tuple(scales.shape) != tuple(w.shape[:-1]) + (count // group_size,):
        raise ValueError(f"[dequantize] Shape of scales {tuple(scales.shape)} does not match the matrix "
                         f"{tuple(w.shape)} for mode '{mode}'.")
    out_type = dt.dtype_arg(dtype, "dequantize", dt.bfloat16)
    if not dt.is_floating(out_type) or out_type == dt.complex64:
        raise ValueError(f"[dequantize] Only real floating types are supported but output dtype == {out_type.name}.")
    factor = _global_factor("dequantize", mode, global_scale)
    values = bind("float_decode", _unpack(w, bits), format=element, dtype=dt.float32)
    refuse = {"grad_error": scales_grad_error} if scales_grad_error else {}
    step = bind("float_decode", scales, format=scale_format, dtype=dt.float32, **refuse)
    if factor is not None:
        step = step * factor
    groups = ops.unflatten(values, -1, (count // group_size, group_size)) * ops.expand_dims(step, -1)
    return ops.astype(ops.reshape(groups, values.shape), out_type)


def quantized_matmul_mode(x, w, scales, transpose: bool, group_size, bits, mode: str) -> array:
    """``x @ dequantize(w).T`` (or without the transpose) for a floating-point mode; the result has x's type.

    Args:
        x (array): Input array (real floating).
        w (array): uint32 packed codes.
        scales (array): uint8 scale codes.
        transpose (bool): Multiply by the transpose of the dequantized ``w``.
        group_size (int or None): Must be the mode's.
        bits (int or None): Must be the mode's.
        mode (str): ``"mxfp4"``, ``"mxfp8"`` or ``"nvfp4"``.

    Returns:
        array: The product.
    """
    x = ops.to_array(x, op="quantized_matmul")
    weights = dequantize_mode(w, scales, group_size, bits, mode, dtype=x.dtype,
                              scales_grad_error=_no_scales_gradient("quantized_matmul", mode))
    return ops.matmul(x, ops.swapaxes(weights, -1, -2) if transpose else weights)


def _no_scales_gradient(op: str, mode: str) -> str:
    return f"[{op}] There is no gradient with respect to the scales in {mode} quantization."


def gather_qmm_mode(x, w, scales, lhs_indices, rhs_indices, transpose: bool, group_size, bits, mode: str,
                    global_scale=None) -> array:
    """:func:`gather_qmm` in a floating-point mode: :func:`gather_mm` of ``x`` with the dequantized matrices
    (the result has x's type)."""
    from .quantized import gather_mm

    x = ops.to_array(x, op="gather_qmm")
    weights = dequantize_mode(w, scales, group_size, bits, mode, global_scale, dtype=x.dtype,
                              scales_grad_error=_no_scales_gradient("gather_qmm", mode))
    return gather_mm(x, ops.swapaxes(weights, -1, -2) if transpose else weights, lhs_indices, rhs_indices)


# -- qqmm: both operands quantized --------------------------------------------------------------------------
def _through_quantization(v: array, mode: str, global_scale) -> array:
    """``v`` quantized and dequantized (float32) in `mode`, with the straight-through derivative (one):
    the rounded value plus ``v - v`` under stop_gradient, which adds an exact zero."""
    rounded = dequantize_mode(*quantize_mode(v, None, None, mode, global_scale), None, None, mode, global_scale,
                              dtype=dt.float32)
    return ops.stop_gradient(rounded) + (ops.astype(v, dt.float32) - ops.stop_gradient(ops.astype(v, dt.float32)))


def _qq_operands(op: str, x, w, scales, group_size, bits, mode: str, global_scale_x, global_scale_w) -> tuple:
    """x and w as float32 values on `mode`'s grid: x is quantized here; w too unless it comes packed."""
    if mode not in MODES:
        raise ValueError(f"[{op}] Invalid quantization mode '{mode}': {op} supports " +
                         ", ".join(f"'{m}'" for m in MODES) + ".")
    check_mode(op, mode, group_size, bits)
    if mode == "nvfp4" and (global_scale_x is None) != (global_scale_w is None):
        raise ValueError(f"[{op}] For nvfp4 mode, either both global_scale_x and global_scale_w must be "
                         "provided, or neither.")
    x, w = ops.to_array(x, op=op), ops.to_array(w, op=op)
    for which, v in (("first", x), ("second", w)):
        if which == "second" and v.dtype == dt.uint32:
            continue
        if not dt.is_floating(v.dtype) or v.dtype in (dt.float64, dt.complex64):
            raise ValueError(f"[{op}] Only real floating types except float64 are supported but {which} "
                             f"argument dtype == {v.dtype.name}.")
    if x.ndim < 2 and op == "gather_qqmm":
        raise ValueError(f"[{op}] The input must have at least 2 dimensions.")
    if w.dtype == dt.uint32:
        if scales is None:
            raise ValueError(f"[{op}] Scales must be provided if second argument is quantized.")
        w_values = dequantize_mode(w, scales, group_size, bits, mode, global_scale_w, dtype=dt.float32,
                                   scales_grad_error=_no_scales_gradient(op, mode))
    else:
        if scales is not None:
            raise ValueError(f"[{op}] Scales are given only with a quantized second argument.")
        w_values = _through_quantization(w, mode, global_scale_w)
    if x.shape[-1] != w_values.shape[-1]:
        raise ValueError(f"[{op}] Last dimension of first input with shape (..., {x.shape[-1]}) does not match "
                         f"the second input's last dimension {w_values.shape[-1]} (after dequantization).")
    return x, _through_quantization(x, mode, global_scale_x), w_values


def qqmm(x, w, scales=None, group_size: int | None = None, bits: int | None = None, mode: str = "nvfp4",
         global_scale_x=None, global_scale_w=None, *, stream=None) -> array:
    """Matrix product with both operands quantized: ``x`` is quantized on the fly, ``w`` too unless it is
    given packed (with its ``scales``); the result is ``dequantize(x_q) @ dequantize(w_q).T``.

    kiln computes it for every shape (MLX's CPU build only for a single row with a packed ``w``); gradients
    pass straight through the quantization of ``x`` and of an unpacked ``w``.

    Args:
        x (array): Input ``(..., M, K)``, float32, float16 or bfloat16.
        w (array): Weights ``(N, K)``, or packed uint32 codes from :func:`quantize` in ``mode``.
        scales (array, optional): The scales of a packed ``w``. Default: ``None``.
        group_size (int, optional): Must be the mode's group size. Default: ``None``.
        bits (int, optional): Must be the mode's bits. Default: ``None``.
        mode (str): ``"nvfp4"`` (default), ``"mxfp8"`` or ``"mxfp4"``.
        global_scale_x (array, optional): nvfp4's float32 global scale for ``x``. Default: ``None``.
        global_scale_w (array, optional): nvfp4's float32 global scale for ``w``. Default: ``None``.

    Returns:
        array: The product, of x's type.
    """
    x, x_values, w_values = _qq_operands("qqmm", x, w, scales, group_size, bits, mode, global_scale_x,
                                         global_scale_w)
    return ops.astype(ops.matmul(x_values, ops.swapaxes(w_values, -1, -2)), x.dtype)


def gather_qqmm(x, w, /, scales=None, lhs_indices=None, rhs_indices=None, group_size: int | None = None,
                bits: int | None = None, mode: str = "nvfp4", global_scale_x=None, global_scale_w=None, *,
                sorted_indices: bool = False, stream=None) -> array:
    """:func:`qqmm` with matrices gathered from the batches of ``x`` and ``w``, as :func:`gather_mm` does.

    Args:
        x (array): Inputs ``(..., M, K)``.
        w (array): Weights ``(..., N, K)``, or their packed codes in ``mode``.
        scales (array, optional): The scales of a packed ``w``. Default: ``None``.
        lhs_indices (array, optional): Which matrices of ``x`` to use. Default: ``None``.
        rhs_indices (array, optional): Which matrices of ``w`` to use. Default: ``None``.
        group_size (int, optional): Must be the mode's group size. Default: ``None``.
        bits (int, optional): Must be the mode's bits. Default: ``None``.
        mode (str): ``"nvfp4"`` (default), ``"mxfp8"`` or ``"mxfp4"``.
        global_scale_x (array, optional): nvfp4's float32 global scale for ``x``. Default: ``None``.
        global_scale_w (array, optional): nvfp4's float32 global scale for ``w``. Default: ``None``.
        sorted_indices (bool): A performance hint; ignored.

    Returns:
        array: The products, of shape ``broadcast(lhs_indices, rhs_indices).shape + (M, N)``, of x's type.
    """
    from .quantized import gather_mm

    x, x_values, w_values = _qq_operands("gather_qqmm", x, w, scales, group_size, bits, mode, global_scale_x,
                                         global_scale_w)
    out = gather_mm(x_values, ops.swapaxes(w_values, -1, -2), lhs_indices, rhs_indices)
    return ops.astype(out, x.dtype)
