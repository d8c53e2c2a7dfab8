"""The rest of MLX's op surface: array-API aliases, constants, dtype information, complex parts, bit views,
small composites (diff, flip, median, logcumsumexp, searchsorted, unique, hadamard_transform, windows, ...).

Everything is built from kiln ops (or the few primitives in `prims/extra.py`), so grad, vmap and compile
see ordinary graphs. Array methods MLX has and kiln lacked are installed at the bottom.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from . import dtypes as dt
from . import ops
from .array import _foreign_numpy, array, bind, copy_layout, default_dtype
from .memory import buffer_owner
from .prims import extra as _extra_prims  # noqa: F401  (registers real, imag, conjugate, view, as_strided)
from .prims.extra import view_shape as _view_shape

__all__ = [
    "acos", "acosh", "as_strided", "asarray", "asin", "asinh", "atan", "atan2", "atanh", "bartlett",
    "bitwise_left_shift", "bitwise_right_shift", "blackman", "can_cast", "conj", "conjugate", "contiguous",
    "convolve", "count_nonzero", "cumulative_prod", "cumulative_sum", "depends", "diff", "e", "empty", "empty_like",
    "euler_gamma", "finfo", "flip", "from_dlpack", "get_array_buffer_size", "hadamard_transform", "hamming",
    "hanning", "iinfo", "imag", "inf", "isdtype", "logcumsumexp", "logical_xor", "matrix_norm", "matrix_transpose",
    "median", "minmax", "nan", "newaxis", "permute_dims", "pi", "positive", "pow", "real", "result_type",
    "searchsorted", "slice", "slice_update", "trunc", "unique", "unstack", "vecdot", "view",
]

e = math.e
pi = math.pi
inf = math.inf
nan = math.nan
newaxis = None
euler_gamma = 0.5772156649015329


# -- aliases ----------------------------------------------------------------------------------------------
def _alias(fn, name: str):
    def alias(*args, **kwargs):
        return fn(*args, **kwargs)

    alias.__name__ = name
    alias.__qualname__ = name
    alias.__doc__ = f"Alias of :func:`{fn.__name__}`.\n\n{fn.__doc__ or ''}"
    return alias


acos = _alias(ops.arccos, "acos")
acosh = _alias(ops.arccosh, "acosh")
asin = _alias(ops.arcsin, "asin")
asinh = _alias(ops.arcsinh, "asinh")
atan = _alias(ops.arctan, "atan")
atan2 = _alias(ops.arctan2, "atan2")
atanh = _alias(ops.arctanh, "atanh")
pow = _alias(ops.power, "pow")
bitwise_left_shift = _alias(ops.left_shift, "bitwise_left_shift")
bitwise_right_shift = _alias(ops.right_shift, "bitwise_right_shift")


def permute_dims(a, /, axes=None, *, stream=None) -> array:
    """Permute the dimensions of an array (see :func:`transpose`).

    Args:
        a (array): Input array.
        axes (list(int), optional): The new order of the axes; reversed by default.

    Returns:
        array: The transposed array.
    """
    return ops.transpose(a, axes)


def _scan_with_dtype(scan, a, axis, reverse, inclusive, dtype):
    a = ops.to_array(a)
    if dtype is not None:
        a = ops.astype(a, dtype)
    return scan(a, axis, reverse=reverse, inclusive=inclusive)


def cumulative_sum(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True, dtype=None,
                   stream=None) -> array:
    """Cumulative sum along `axis` (the flattened array when None), accumulated in `dtype` if given.

    Args:
        a (array): Input array.
        axis (int, optional): Axis of the scan.
        reverse (bool): Scan from the end.
        inclusive (bool): Include the element at each position.
        dtype (Dtype, optional): The type to cast to before accumulating.

    Returns:
        array: The cumulative sums.
    """
    return _scan_with_dtype(ops.cumsum, a, axis, reverse, inclusive, dtype)


def cumulative_prod(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True, dtype=None,
                    stream=None) -> array:
    """Cumulative product along `axis` (the flattened array when None), accumulated in `dtype` if given.

    Args:
        a (array): Input array.
        axis (int, optional): Axis of the scan.
        reverse (bool): Scan from the end.
        inclusive (bool): Include the element at each position.
        dtype (Dtype, optional): The type to cast to before accumulating.

    Returns:
        array: The cumulative products.
    """
    return _scan_with_dtype(ops.cumprod, a, axis, reverse, inclusive, dtype)


def matrix_norm(a, /, ord=None, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Matrix or vector norm (see :func:`kiln.core.linalg.norm`).

    Args:
        a (array): Input array.
        ord (int, float or str, optional): The norm's order (``'fro'``, ``'nuc'``, ``inf``...).
        axis (int or list(int), optional): Axes holding the vectors or matrices.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.

    Returns:
        array: The norms.
    """
    from . import linalg

    return linalg.norm(a, ord=ord, axis=axis, keepdims=keepdims)


def empty(shape, dtype=dt.float32, *, stream=None) -> array:
    """An array of the given shape; kiln fills it with zeros (MLX's `empty` does too).

    Args:
        shape (int or list(int)): The shape of the output array.
        dtype (Dtype, optional): Data type of the output array. Default: ``float32``.

    Returns:
        array: The array.
    """
    return ops.zeros(shape, dtype if dtype is not None else dt.float32)


def empty_like(a, /, dtype=None, *, stream=None) -> array:
    """An array like `a` (zero filled), optionally of another dtype.

    Args:
        a (array): The input to take the shape (and default dtype) from.
        dtype (Dtype, optional): Data type of the output.

    Returns:
        array: The array.
    """
    a = ops.to_array(a, op="empty_like")
    return ops.zeros(a.shape, dtype if dtype is not None else a.dtype)


# -- dtype information ----------------------------------------------------------------------------------
def _short_float(x: float) -> str:
    return f"{x:g}"


class finfo:
    """Machine limits of a floating-point dtype (complex64 reports its float32 parts).

    Attributes: ``min``, ``max``, ``eps``, ``smallest_normal``, ``bits``, ``dtype``.
    """

    def __init__(self, dtype):
        d = dt.dtype_arg(dtype, "finfo")
        if not dt.is_floating(d):
            raise ValueError(f"[finfo] dtype {d.name} is not inexact.")
        if d == dt.complex64:
            d = dt.float32
        import ml_dtypes

        info = ml_dtypes.finfo(d.np)
        self.dtype = d
        self.min = float(info.min)
        self.max = float(info.max)
        self.eps = float(info.eps)
        self.smallest_normal = float(info.smallest_normal)
        self.bits = int(info.bits)

    def __repr__(self) -> str:
        return f"finfo(min={_short_float(self.min)}, max={_short_float(self.max)}, dtype={self.dtype.name})"


class iinfo:
    """Machine limits of an integer dtype. Attributes: ``min``, ``max``, ``dtype``."""

    def __init__(self, dtype):
        d = dt.dtype_arg(dtype, "iinfo")
        if not dt.is_integer(d):
            raise ValueError(f"[iinfo] Only integer types supported but {d.name} was provided")
        info = np.iinfo(d.np)
        self.dtype = d
        self.min = int(info.min)
        self.max = int(info.max)

    def __repr__(self) -> str:
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype.name})"


def result_type(*arrays_and_dtypes) -> dt.Dtype:
    """The type that results from promoting the inputs.

    Args:
        *arrays_and_dtypes (array or Dtype): The inputs.

    Returns:
        Dtype: The promoted type.
    """
    if not arrays_and_dtypes or not builtins.all(isinstance(x, (array, dt.Dtype)) for x in arrays_and_dtypes):
        raise ValueError("[result_type] Inputs must be arrays or dtypes.")
    return dt.result_type(*arrays_and_dtypes)


def can_cast(from_, to) -> bool:
    """Whether `from_` can be cast to `to` by type promotion (promoting the two gives `to`).

    Args:
        from_ (array or Dtype): The source.
        to (Dtype): The target type.

    Returns:
        bool: True if the cast is safe.
    """
    target = dt.dtype_arg(to, "can_cast")
    if not isinstance(from_, (array, dt.Dtype)):
        raise ValueError("[can_cast] `from_` must be an array or a dtype.")  # noqa: TRY004 (as MLX)
    source = from_.dtype if isinstance(from_, array) else from_
    return dt.promote_types(source, target) == target


_KINDS = {
    "bool": lambda d: d == dt.bool_,
    "signed integer": lambda d: d.category == dt.signedinteger,
    "unsigned integer": lambda d: d.category == dt.unsignedinteger,
    "integral": dt.is_integer,
    "real floating": lambda d: d.category == dt.floating,
    "complex floating": lambda d: d.category == dt.complexfloating,
    "numeric": lambda d: d != dt.bool_,
}


def _matches_kind(d: dt.Dtype, kind) -> bool:
    if isinstance(kind, str):
        if kind not in _KINDS:
            raise ValueError(f"[isdtype] Unknown data type kind: '{kind}'.")
        return _KINDS[kind](d)
    if isinstance(kind, dt.Dtype):
        return d == kind
    raise ValueError("[isdtype] `kind` must be a dtype, a string, or a tuple of dtypes and strings.")


def isdtype(dtype, kind) -> bool:
    """Test whether a dtype belongs to one or more data type kinds (array API).

    Args:
        dtype (Dtype): The dtype to test.
        kind (Dtype or str or tuple): A dtype, or one of ``"bool"``, ``"signed integer"``,
          ``"unsigned integer"``, ``"integral"``, ``"real floating"``, ``"complex floating"``,
          ``"numeric"``, or a tuple of these.

    Returns:
        bool: True if `dtype` matches any of the kinds.
    """
    d = dt.dtype_arg(dtype, "isdtype")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return builtins.any(_matches_kind(d, k) for k in kinds)


# -- complex parts and bit views --------------------------------------------------------------------
def real(a, /, *, stream=None) -> array:
    """The real part of a complex array (other arrays are returned as they are).

    Args:
        a (array): Input array.

    Returns:
        array: The real part, float32 for complex64 input.
    """
    return bind("real", ops.to_array(a, op="real"))


def imag(a, /, *, stream=None) -> array:
    """The imaginary part of a complex array (zeros for real arrays).

    Args:
        a (array): Input array.

    Returns:
        array: The imaginary part, float32 for complex64 input.
    """
    return bind("imag", ops.to_array(a, op="imag"))


def conjugate(a, *, stream=None) -> array:
    """The elementwise complex conjugate of the input (alias: :func:`conj`).

    Args:
        a (array): Input array.

    Returns:
        array: The conjugate.
    """
    return bind("conjugate", ops.to_array(a, op="conjugate"))


def conj(a, *, stream=None) -> array:
    """The elementwise complex conjugate of the input (alias: :func:`conjugate`).

    Args:
        a (array): Input array.

    Returns:
        array: The conjugate of ``a``.
    """
    return conjugate(a)


def view(a, dtype, stream=None) -> array:
    """View the bytes of the array as another dtype; the last axis scales by the ratio of the sizes.

    Args:
        a (array or scalar): Input array.
        dtype (Dtype): The dtype to view as.

    Returns:
        array: The array reinterpreted as `dtype`.
    """
    a = ops.to_array(a, op="view")
    d = dt.dtype_arg(dtype, "view")
    if d == a.dtype:
        return a
    _view_shape(tuple(a.shape), a.dtype, d)
    return bind("view", a, dtype=d)


def _row_strides(shape) -> tuple:
    strides = []
    step = 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def as_strided(a, /, shape=None, strides=None, offset: int = 0, *, stream=None) -> array:
    """A view of the row-contiguous buffer of `a` with the given shape, strides (in elements) and offset.

    Windows that read outside the buffer raise (MLX leaves them undefined).

    Args:
        a (array): Input array.
        shape (list(int), optional): Output shape; the input's by default.
        strides (list(int), optional): Strides in elements; row-contiguous for `shape` by default.
        offset (int): Offset of the first element in elements.

    Returns:
        array: The strided view (copied).
    """
    a = ops.to_array(a, op="as_strided")
    shape = tuple(int(s) for s in (a.shape if shape is None else shape))
    strides = _row_strides(shape) if strides is None else tuple(int(s) for s in strides)
    if len(strides) != len(shape):
        raise ValueError("[as_strided] shape and strides must have the same length.")
    if builtins.any(s < 0 for s in shape):
        raise ValueError("[as_strided] Negative dimensions not allowed.")
    return bind("as_strided", a, shape=shape, strides=strides, offset=int(offset))


# -- creation and conversion ----------------------------------------------------------------------------
def asarray(a, dtype=None, *, copy=None) -> array:
    """Convert the input to an array (arrays of the right dtype are returned as they are).

    Args:
        a: Input data.
        dtype (Dtype, optional): The dtype of the result.
        copy (bool, optional): ``False`` is refused, as in MLX: creating an array always copies the data.

    Returns:
        array: The array.
    """
    if copy is False:
        raise ValueError("[asarray] Unable to avoid copy while creating an array as requested.")
    if isinstance(a, array):
        return a if dtype is None else ops.astype(a, dtype)
    return array(a, dtype)


def from_dlpack(x, /, *, copy=None) -> array:
    """Create an array from an object that supports DLPack.

    Args:
        x: An object implementing ``__dlpack__`` and ``__dlpack_device__``.
        copy (bool, optional): ``None`` or ``True`` copy the data (keeping its strides); ``False`` asks to
            share it, which a CPU array cannot (a ValueError, as in MLX's CPU build).

    Returns:
        array: The data as a kiln array: float64 becomes float32 and complex128 complex64, as in MLX.
    """
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"[from_dlpack] Expected an object with __dlpack__, got {type(x).__name__}.")
    if copy is False:
        raise ValueError("[convert] Cannot import a CPU array without a copy.")
    if str(getattr(x, "dtype", "")) == "torch.bfloat16":
        data = _foreign_numpy(x)  # numpy's DLPack import has no bfloat16: read the bits
    else:
        try:
            data = np.from_dlpack(x)
        except (RuntimeError, BufferError) as e:
            raise ValueError(f"[from_dlpack] Cannot convert array to mlx: {e}") from None
    if any(stride < 0 for stride in data.strides):
        raise ValueError("Cannot convert DLPack arrays with negative strides to mlx array.")
    d = default_dtype(data.dtype)
    if data.size == 0:
        return array._from_numpy(np.array(data, d.np), d)
    return array._from_numpy(copy_layout(data, d.np), d)


def contiguous(a, /, allow_col_major: bool = False, *, stream=None) -> array:
    """A row-contiguous array with the contents of `a` (kiln's buffers always are).

    Args:
        a (array): The input.
        allow_col_major (bool): Accepted for compatibility.

    Returns:
        array: The array.
    """
    return ops.copy(ops.to_array(a, op="contiguous"))


def depends(inputs, dependencies):
    """Return `inputs` with a dependency on `dependencies` (kiln evaluates whole graphs, so the inputs
    are returned as they are).

    Args:
        inputs (array or list(array)): The arrays to return.
        dependencies (array or list(array)): The arrays they depend on.

    Returns:
        array or list(array): `inputs`.
    """
    if isinstance(inputs, array):
        return inputs
    return list(inputs)


def get_array_buffer_size(*args) -> int:
    """The number of bytes of the buffers behind the given (evaluated) arrays, each buffer counted once.

    Args:
        *args (arrays or trees of arrays): Each argument is an array or a tree (lists, tuples, dicts) of
            arrays; leaves that are not arrays are ignored.

    Returns:
        int: The size in bytes.
    """
    leaves = []
    ops._array_leaves(args, leaves)
    seen = {}
    for a in leaves:
        if a._data is None:
            raise ValueError("[get_array_buffer_size] Arrays must be evaluated before querying buffer size.")
        owner = buffer_owner(a._data)
        seen[id(owner)] = owner.nbytes
    return int(builtins.sum(seen.values()))


# -- elementwise --------------------------------------------------------------------------------------
def trunc(a, /, *, stream=None) -> array:
    """Element-wise truncation towards zero.

    Args:
        a (array): Input array.

    Returns:
        array: The truncated values (integers are returned unchanged).
    """
    a = ops.to_array(a, op="trunc")
    if not dt.is_floating(a.dtype):
        return a
    return ops.where(ops.less(a, 0), ops.ceil(a), ops.floor(a))


def positive(a, /, *, stream=None) -> array:
    """Element-wise unary plus: a copy of the input.

    Args:
        a (array): Input array.

    Returns:
        array: ``+a``.
    """
    return ops.copy(ops.to_array(a, op="positive"))


def logical_xor(a, b, /, *, stream=None) -> array:
    """Element-wise logical exclusive or.

    Args:
        a (array): First input array or scalar.
        b (array): Second input array or scalar.

    Returns:
        array: The boolean result.
    """
    x, y = ops._promote("logical_xor", a, b)
    return ops.not_equal(ops.astype(x, dt.bool_), ops.astype(y, dt.bool_))


# -- reductions, scans, shape -----------------------------------------------------------------------
def count_nonzero(a, /, *, axis=None, keepdims: bool = False, stream=None) -> array:
    """Count the non-zero elements along the given axes.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axes to count over; all by default.
        keepdims (bool): Keep reduced axes as singleton dimensions.

    Returns:
        array: The int32 counts.
    """
    a = ops.to_array(a, op="count_nonzero")
    nonzero = ops.astype(ops.not_equal(a, ops.zeros((), a.dtype)), dt.int32)
    return ops.sum(nonzero, axis=axis, keepdims=keepdims)


def minmax(a, /, axis=None, keepdims: bool = False, *, stream=None) -> tuple:
    """The minimum and the maximum over the given axes.

    Returns:
        tuple(array, array): ``(min(a), max(a))``.

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axis or axes to reduce over; all axes by default.
        keepdims (bool, optional): Keep reduced axes as size-1 dimensions. Default: ``False``.
    """
    return ops.min(a, axis=axis, keepdims=keepdims), ops.max(a, axis=axis, keepdims=keepdims)


def median(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """The median over the given axes (the mean of the two middle values for an even count).

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axes to reduce; all by default.
        keepdims (bool): Keep reduced axes as singleton dimensions.

    Returns:
        array: The medians (float32 for integer input).
    """
    from .ops_sort import sort

    a = ops.to_array(a, op="median")
    if not dt.is_floating(a.dtype):
        a = ops.astype(a, dt.float32)
    axes = ops._axes("median", a.ndim, axis)
    kept = tuple(i for i in range(a.ndim) if i not in axes)
    moved = ops.transpose(a, kept + axes)
    count = int(np.prod([a.shape[i] for i in axes], dtype=np.int64))
    if count == 0:
        raise ValueError("[median] Received empty array.")
    rows = sort(ops.reshape(moved, tuple(a.shape[i] for i in kept) + (count,)), axis=-1)
    upper = rows[..., count // 2]
    out = upper if count % 2 else ops.multiply(ops.add(rows[..., count // 2 - 1], upper), 0.5)
    out = ops.astype(out, a.dtype)
    # A NaN anywhere makes the median NaN (as in numpy and MLX), wherever the sort put it.
    out = ops.where(ops.any(ops.isnan(rows), axis=-1), math.nan, out)
    if keepdims:
        out = ops.reshape(out, tuple(1 if i in axes else n for i, n in enumerate(a.shape)))
    return out


def _shift_along(x: array, axis: int, shift: int, fill: float) -> array:
    """x moved `shift` places towards higher indices along `axis`, the vacated places holding `fill`."""
    n = x.shape[axis]
    shift = builtins.min(shift, n)
    pad_shape = x.shape[:axis] + (shift,) + x.shape[axis + 1:]
    kept = ops._axis_slice(x, axis, 0, n - shift)
    return ops.concatenate([ops.full(pad_shape, fill, x.dtype), kept], axis=axis)


def logcumsumexp(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True, stream=None) -> array:
    """The cumulative logsumexp along `axis` (the flattened array when None).

    Computed as a log-depth scan of `logaddexp`, so no element underflows however far it lies below the
    maximum.

    Args:
        a (array): Input array.
        axis (int, optional): Axis of the scan.
        reverse (bool): Scan from the end.
        inclusive (bool): Include the element at each position.

    Returns:
        array: The cumulative logsumexp.
    """
    a = ops._float_input("logcumsumexp", a)
    if axis is None:
        a = ops.reshape(a, (-1,))
        axis = 0
    axis = ops._axis("logcumsumexp", a.ndim, axis)
    if reverse:
        a = flip(a, axis)
    n = a.shape[axis]
    out = a
    step = 1
    while step < n:
        out = ops.logaddexp(out, _shift_along(out, axis, step, -math.inf))
        step *= 2
    if not inclusive and n > 0:
        out = _shift_along(out, axis, 1, -math.inf)
    return flip(out, axis) if reverse else out


def diff(a, /, n: int = 1, axis: int = -1, *, stream=None) -> array:
    """The n-th discrete difference along the given axis.

    Args:
        a (array): Input array.
        n (int): The number of times values are differenced.
        axis (int): The axis along which to difference.

    Returns:
        array: The differences (for bool input: whether neighbours differ).
    """
    a = ops.to_array(a, op="diff")
    if n < 0:
        raise ValueError("[diff] Order `n` must be non-negative.")
    if not -a.ndim <= axis < a.ndim:
        raise IndexError("[diff] Axis is out of bounds for the array.")
    axis = axis % a.ndim
    step = ops.not_equal if a.dtype == dt.bool_ else ops.subtract
    for _ in range(int(n)):
        length = a.shape[axis]
        if length == 0:
            break
        a = step(ops._axis_slice(a, axis, 1, length), ops._axis_slice(a, axis, 0, length - 1))
    return a


def flip(a, /, axis=None, *, stream=None) -> array:
    """Reverse the order of elements along the given axes (all by default).

    Args:
        a (array): Input array.
        axis (int or list(int), optional): Axes to reverse.

    Returns:
        array: The flipped array.
    """
    a = ops.to_array(a, op="flip")
    axes = ops._axes("flip", a.ndim, axis)
    key = tuple(builtins.slice(None, None, -1) if i in axes else builtins.slice(None) for i in range(a.ndim))
    return a[key] if axes else a


def matrix_transpose(a, /, *, stream=None) -> array:
    """Transpose the last two dimensions of the array.

    Args:
        a (array): Input array.

    Returns:
        array: ``a`` with its last two axes swapped.
    """
    a = ops.to_array(a, op="matrix_transpose")
    if a.ndim < 2:
        raise ValueError("[matrix_transpose] Input array must have at least 2 dimensions.")
    return ops.swapaxes(a, -1, -2)


def unstack(x, /, *, axis: int = 0, stream=None) -> tuple:
    """Split an array into a tuple of arrays along `axis`, which each result loses (inverse of stack).

    Returns:
        tuple(array): The slices.

    Args:
        x (array): Input array.
        axis (int, optional): The axis. Default: ``0``.
    """
    x = ops.to_array(x, op="unstack")
    axis = ops._axis("unstack", x.ndim, axis)
    return tuple(ops.squeeze(ops._axis_slice(x, axis, i, i + 1), axis) for i in range(x.shape[axis]))


def vecdot(a, b, /, *, axis: int = -1, stream=None) -> array:
    """The vector dot product ``sum(conj(a) * b, axis)`` after broadcasting.

    Args:
        a (array): First input.
        b (array): Second input.
        axis (int): The axis of the product.

    Returns:
        array: The dot products.
    """
    x, y = ops._promote("vecdot", a, b)
    shape = ops.broadcast_shapes(x.shape, y.shape)
    if not -len(shape) <= axis < len(shape):
        raise ValueError("[vecdot] axis is out of bounds.")
    if x.dtype == dt.complex64:
        x = conjugate(x)
    return ops.sum(ops.multiply(x, y), axis=axis)


def slice(a, start_indices, axes, slice_size, *, stream=None) -> array:
    """Extract a sub-array whose start along each of `axes` is given by an array (known only at run time).

    Starts are clamped so the slice stays inside the array.

    Args:
        a (array): Input array.
        start_indices (array): One start per axis in `axes`.
        axes (list(int)): The axes to slice.
        slice_size (list(int)): The size of the slice along every axis of `a`.

    Returns:
        array: The slice, of shape `slice_size`.
    """
    a = ops.to_array(a, op="slice")
    starts = ops.astype(ops.to_array(start_indices, op="slice"), dt.int32)
    axes = [ops._axis("slice", a.ndim, ax) for ax in axes]
    sizes = tuple(int(s) for s in slice_size)
    if len(sizes) != a.ndim:
        raise ValueError(f"[slice] slice_size must have one entry per dimension ({a.ndim}), got {len(sizes)}.")
    if starts.size != len(axes):
        raise ValueError(f"[slice] Expected {len(axes)} start indices, got {starts.size}.")
    starts = ops.reshape(starts, (-1,))
    out = a
    for i, ax in enumerate(axes):
        if not 0 <= sizes[ax] <= a.shape[ax]:
            raise ValueError(f"[slice] Slice size {sizes[ax]} is invalid for axis {ax} of size {a.shape[ax]}.")
        start = ops.clip(starts[i], 0, a.shape[ax] - sizes[ax])
        out = ops.take(out, ops.add(ops.arange(0, sizes[ax], dtype=dt.int32), start), axis=ax)
    for ax in range(a.ndim):
        if ax not in axes and sizes[ax] != a.shape[ax]:
            out = ops._axis_slice(out, ax, 0, sizes[ax])
    return out


def slice_update(a, update, start_indices, axes, *, stream=None) -> array:
    """Update a sub-array whose start along each of `axes` is given by an array (known only at run time).

    Starts are clamped so the update stays inside the array, as in :func:`slice`; along the other axes the
    update starts at 0.

    Args:
        a (array): Input array.
        update (array): The new values, with as many dimensions as `a`.
        start_indices (array): One start per axis in `axes`.
        axes (list(int)): The axes the starts refer to.

    Returns:
        array: `a` with the region replaced by `update`.
    """
    a = ops.to_array(a, op="slice_update")
    update = ops.astype(ops.to_array(update, op="slice_update"), a.dtype)
    starts = ops.reshape(ops.astype(ops.to_array(start_indices, op="slice_update"), dt.int32), (-1,))
    axes = [ops._axis("slice_update", a.ndim, ax) for ax in axes]
    if update.ndim != a.ndim:
        raise ValueError(f"[slice_update] The update must have {a.ndim} dimensions, got {update.ndim}.")
    if starts.size != len(axes):
        raise ValueError(f"[slice_update] Expected {len(axes)} start indices, got {starts.size}.")
    index = []
    for ax in range(a.ndim):
        size = update.shape[ax]
        if size > a.shape[ax]:
            raise ValueError(f"[slice_update] The update's size {size} exceeds axis {ax} of size {a.shape[ax]}.")
        positions = ops.arange(0, size, dtype=dt.int32)
        if ax in axes:
            positions = positions + ops.clip(starts[axes.index(ax)], 0, a.shape[ax] - size)
        index.append(ops.reshape(positions, [size if d == ax else 1 for d in range(a.ndim)]))
    out = array(a)  # a new array object: the in-place update below must not rebind the caller's `a`
    out[tuple(index)] = update
    return out


# -- search ---------------------------------------------------------------------------------------------
def searchsorted(sorted_sequence, values, /, side: str = "left", *, stream=None) -> array:
    """The indices that keep `sorted_sequence` sorted when `values` are inserted before them.

    The order is sort's: NaN follows every number.

    Args:
        sorted_sequence (array): A 1-D array sorted in ascending order.
        values (array): The values to insert.
        side (str): ``"left"``: the first suitable index; ``"right"``: the last.

    Returns:
        array: uint32 indices with the shape of `values`.
    """
    if side not in ("left", "right"):
        raise ValueError(f"[searchsorted] Invalid side '{side}'. Expected 'left' or 'right'.")
    seq, vals = ops._promote("searchsorted", sorted_sequence, values)
    return bind("searchsorted", seq, vals, right=side == "right")


def _scatter_sum(size: int, index: array, values: array) -> array:
    """out[index[i]] += values[i] into `size` zero slots."""
    return ops.zeros((size,), values.dtype).at[index].add(values)


def unique(a, /, size: int, return_index: bool = False, return_inverse: bool = False, return_counts: bool = False,
           fill_value=None, *, stream=None):
    """The sorted unique elements of the flattened array, in an output of static `size`.

    Entries past the last unique element hold `fill_value` (the smallest element by default) and count 0;
    a `size` below the number of unique elements keeps the smallest ones.

    Args:
        a (array): Input array.
        size (int): The size of the output.
        return_index (bool): Also return the index of each unique element's first occurrence.
        return_inverse (bool): Also return the indices of the unique array that rebuild ``a``.
        return_counts (bool): Also return how often each unique element occurs.
        fill_value (scalar or array, optional): The value of the padding entries.

    Returns:
        array or tuple(array, ...): values, then index, inverse, counts as requested.
    """
    from .ops_sort import argsort

    a = ops.to_array(a, op="unique")
    size = int(size)
    if size < 0:
        raise ValueError(f"[unique] size must be non-negative, got {size}.")
    flat = ops.reshape(a, (-1,))
    n = flat.shape[0]
    order = ops.astype(argsort(flat, axis=0), dt.int32)
    ordered = ops.take(flat, order, axis=0)
    is_new = ops.concatenate([ops.ones((builtins.min(n, 1),), dt.bool_),
                              ops.not_equal(ordered[1:], ordered[:-1])], axis=0)
    group = ops.subtract(ops.cumsum(ops.astype(is_new, dt.int32), axis=0), 1)
    positions = ops.arange(0, n, dtype=dt.int32)
    # slot `size` collects what does not fit (repeats and truncated groups) and is dropped afterwards
    start_slot = ops.where(ops.logical_and(is_new, ops.less(group, size)), group, size)
    starts = _scatter_sum(size + 1, start_slot, positions)[:size]
    counts = _scatter_sum(size + 1, ops.minimum(group, size), ops.ones((n,), dt.int32))[:size]
    valid = ops.greater(counts, 0)
    if n == 0:
        values = ops.full((size,), 0 if fill_value is None else fill_value, a.dtype)
        index = ops.zeros((size,), dt.uint32)
    else:
        fill = ordered[0] if fill_value is None else ops.astype(ops.to_array(fill_value), a.dtype)
        values = ops.where(valid, ops.take(ordered, starts, axis=0), fill)
        index = ops.astype(ops.take(order, starts, axis=0), dt.uint32)
    outputs = [values]
    if return_index:
        outputs.append(index)
    if return_inverse:
        clamped = ops.minimum(group, builtins.max(size - 1, 0))
        inverse = _scatter_sum(n, order, clamped) if n else ops.zeros((0,), dt.int32)
        outputs.append(ops.reshape(ops.astype(inverse, dt.uint32), a.shape))
    if return_counts:
        outputs.append(counts)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


# -- signal ---------------------------------------------------------------------------------------------
# The Hadamard matrices of orders 12, 20 and 28 MLX's transform uses (rows as signs), read off MLX's results:
# another matrix of the same order would give another, equally valid, transform.
_HADAMARD_SIGNS = {
    12: ("+-++++++++++", "--+-+-+-+-+-", "+++-++----++", "+---+--+-++-", "+++++-++----", "+-+---+--+-+",
         "++--+++-++--", "+--++---+--+", "++----+++-++", "+--+-++---+-", "++++----+++-", "+-+--+-++---"),
    20: ("+----+----++--++-++-", "-+----+---+++---+-++", "--+----+---+++-+-+-+", "---+----+---+++++-+-",
         "----+----++--++-++-+", "-+++++-----+--+++--+", "+-+++-+---+-+--+++--", "++-++--+---+-+--+++-",
         "+++-+---+---+-+--+++", "++++-----++--+-+--++", "--++-+-++-+-----++++", "---++-+-++-+---+-+++",
         "+---++-+-+--+--++-++", "++---++-+----+-+++-+", "-++---++-+----+++++-", "-+--+--++-+----+----",
         "+-+-----++-+----+---", "-+-+-+---+--+----+--", "--+-+++------+----+-", "+--+--++------+----+"),
    28: ("+------++----++-+--+-+--++--", "-+-----+++-----+-+--+-+--++-", "--+-----+++---+-+-+----+--++",
         "---+-----+++---+-+-+-+--+--+", "----+-----+++---+-+-+++--+--", "-----+-----++++--+-+--++--+-",
         "------++----++-+--+-+--++--+", "--++++-+-------++--+++-+--+-", "---++++-+-----+-++--+-+-+--+",
         "+---+++--+----++-++--+-+-+--", "++---++---+----++-++--+-+-+-", "+++---+----+----++-++--+-+-+",
         "++++--------+-+--++-++--+-+-", "-++++--------+++--++--+--+-+", "-+-++-++--++--+--------++++-",
         "+-+-++--+--++--+--------++++", "-+-+-++--+--++--+----+---+++", "+-+-+-++--+--+---+---++---++",
         "++-+-+-++--+------+--+++---+", "-++-+-+-++--+------+-++++---", "+-++-+---++--+------+-++++--",
         "-++--++-+-++-+++----++------", "+-++--++-+-++-+++-----+-----", "++-++---+-+-++-+++-----+----",
         "-++-++-+-+-+-+--+++-----+---", "--++-++++-+-+----+++-----+--", "+--++-+-++-+-+----+++-----+-",
         "++--++-+-++-+-+----++------+"),
}


def _hadamard_factor(n: int) -> int:
    """The m of n = m * 2**k with m in (1, 12, 20, 28), or 0 when there is none."""
    for m in (1, 12, 20, 28):
        if n % m == 0 and n // m > 0 and (n // m) & (n // m - 1) == 0:
            return m
    return 0


def hadamard_transform(a, scale=None, stream=None) -> array:
    """The Walsh-Hadamard transform along the last axis, ``scale * (a @ H.T)``.

    As in MLX, the length n is m * 2**k with m in (1, 12, 20, 28); H is ``kron(H_m, H_{2**k})`` with
    MLX's matrices of orders 12, 20 and 28 and Sylvester's of order 2**k.

    Args:
        a (array): Input array.
        scale (float, optional): Scale of the output; ``1/sqrt(n)`` by default.

    Returns:
        array: The transformed array.
    """
    a = ops.to_array(a, op="hadamard_transform")
    if not dt.is_floating(a.dtype):
        a = ops.astype(a, dt.float32)
    n = a.shape[-1] if a.ndim else 1
    m = _hadamard_factor(n)
    if m == 0:
        raise ValueError(f"[hadamard_transform] The size {n} must be m * 2**k with m in (1, 12, 20, 28).")
    lead = a.shape[:-1]
    p = n // m
    # half-precision inputs are transformed in float32 and rounded once (MLX's stages round in between, so its
    # half-precision results differ in the last bits and drift further from the exact transform)
    out = ops.astype(a, dt.float32) if a.dtype in (dt.float16, dt.bfloat16) else a
    half = 1
    # butterflies over the power-of-two factor: pair element i with i + half inside each block of 2 * half
    while half < p:
        blocks = ops.reshape(out, lead + (n // (2 * half), 2, half))
        first = blocks[..., 0, :]
        second = blocks[..., 1, :]
        out = ops.reshape(ops.stack([ops.add(first, second), ops.subtract(first, second)], axis=-2), lead + (n,))
        half *= 2
    if m > 1:  # then H_m mixes the m blocks of length p (the outer factor of the Kronecker product)
        signs = np.array([[1.0 if c == "+" else -1.0 for c in row] for row in _HADAMARD_SIGNS[m]])
        out = ops.reshape(ops.matmul(array._from_numpy(signs.astype(out.dtype.np), out.dtype),
                                     ops.reshape(out, lead + (m, p))), lead + (n,))
    factor = 1.0 / math.sqrt(n) if scale is None else float(scale)
    return ops.astype(ops.multiply(out, factor), a.dtype)


def _window(name: str, fn, m):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise TypeError(f"[{name}] M must be an int, got {type(m).__name__}.")
    return array(fn(int(m)).astype(np.float32))


def bartlett(M: int, *, stream=None) -> array:
    """The Bartlett (triangular) window of `M` points (float32).

    Args:
        M (int): Number of points.

    Returns:
        array: The window, shape ``(M,)``.
    """
    return _window("bartlett", np.bartlett, M)


def blackman(M: int, *, stream=None) -> array:
    """The Blackman window of `M` points (float32).

    Args:
        M (int): Number of points.

    Returns:
        array: The window, shape ``(M,)``.
    """
    return _window("blackman", np.blackman, M)


def hamming(M: int, *, stream=None) -> array:
    """The Hamming window of `M` points (float32).

    Args:
        M (int): Number of points.

    Returns:
        array: The window, shape ``(M,)``.
    """
    return _window("hamming", np.hamming, M)


def hanning(M: int, *, stream=None) -> array:
    """The Hann window of `M` points (float32).

    Args:
        M (int): Number of points.

    Returns:
        array: The window, shape ``(M,)``.
    """
    return _window("hanning", np.hanning, M)


def convolve(a, v, /, mode: str = "full", *, stream=None) -> array:
    """The discrete, linear convolution of two 1-D arrays (the longer is the signal).

    Args:
        a (array): First 1-D input.
        v (array): Second 1-D input.
        mode (str): ``"full"``, ``"same"`` (the length of the longer input, centred) or ``"valid"``.

    Returns:
        array: The convolution.
    """
    from .ops_conv import conv1d

    if mode not in ("full", "same", "valid"):
        raise ValueError(f"[convolve] Invalid mode '{mode}'; must be 'full', 'same' or 'valid'.")
    x, w = ops._promote("convolve", a, v)
    if x.ndim != 1 or w.ndim != 1:
        raise ValueError("[convolve] Inputs must be 1D.")
    if not dt.is_floating(x.dtype):
        raise ValueError(f"[convolve] Invalid input array with type {x.dtype.name}. Convolution currently only "
                         "supports floating point types")
    if w.shape[0] > x.shape[0]:
        x, w = w, x
    n, k = x.shape[0], w.shape[0]
    if k == 0:
        raise ValueError("[convolve] Inputs must not be empty.")
    kernel = ops.reshape(flip(w), (1, k, 1))
    full = ops.reshape(conv1d(ops.reshape(x, (1, n, 1)), kernel, padding=k - 1), (n + k - 1,))
    if mode == "full":
        return full
    if mode == "same":
        start = (k - 1) // 2
        return full[start:start + n]
    return full[k - 1:n]


# -- array methods MLX has ----------------------------------------------------------------------------
def _install_array_methods():
    """Methods and properties of `mlx.core.array` that the array body does not define."""
    array.real = property(lambda self: real(self), doc="The real part of a complex array.")
    array.imag = property(lambda self: imag(self), doc="The imaginary part of a complex array.")
    array.mT = property(lambda self: matrix_transpose(self), doc="The last two axes swapped.")

    def view_method(self, dtype, *, stream=None):
        return view(self, dtype)

    def dlpack_method(self, *args, **kwargs):
        return np.asarray(self).__dlpack__(*args, **kwargs)

    def dlpack_device(self):
        return np.asarray(self).__dlpack_device__()

    def bytes_method(self):
        return np.ascontiguousarray(self._numpy()).tobytes()  # not np.asarray: numpy refuses bfloat16 buffers

    methods = {
        "view": view_method, "conj": conj, "conjugate": conjugate, "logcumsumexp": logcumsumexp,
        "__dlpack__": dlpack_method, "__dlpack_device__": dlpack_device,
        "__bytes__": bytes_method,
        "__div__": lambda self, other: ops.divide(self, other),
        "__rdiv__": lambda self, other: ops.divide(other, self),
    }
    for name, fn in methods.items():
        if getattr(fn, "__name__", "") == "<lambda>" or not fn.__name__.startswith(name):
            fn = _renamed(fn, name)
        setattr(array, name, fn)


def _renamed(fn, name):
    def method(*args, **kwargs):
        return fn(*args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"array.{name}"
    method.__doc__ = fn.__doc__
    return method


_install_array_methods()
