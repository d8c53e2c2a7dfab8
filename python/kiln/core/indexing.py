"""NumPy/MLX indexing for kiln arrays: `a[key]`, `a[key] = v`, `a.at[key].add(v)`, take, take_along_axis
and put_along_axis.

Basic keys (ints, slices, None, Ellipsis) become one `slice` plus squeeze/expand_dims; integer-array keys
add a `gather` (reads) or a `scatter` (writes), with numpy's rules for broadcasting the index arrays and
for placing their dimensions. Constant ints are bounds-checked here; index arrays when evaluated.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np

from . import dtypes as dt
from . import ops
from .array import array, bind
from .prims.elementwise import broadcast_shapes
from .prims.index import IndexOutOfRange
from .tracing import note_bound_decision

__all__ = ["put_along_axis", "take", "take_along_axis"]


class IndexingError(IndexError, ValueError):
    """A key that cannot index the array (IndexError as in numpy, ValueError as in MLX)."""


# -- parsing a key ------------------------------------------------------------------------------------
@dataclass
class _Entry:
    kind: str  # "int", "slice", "none" or "array"
    value: object = None  # int, (start, stop, step), None, or an integer array
    axis: int | None = None  # the input axis it consumes (None for a new axis)


def _index_array(k, op: str) -> array:
    """An integer index array from a kiln array, a (nested) list or a numpy array."""
    if isinstance(k, array):
        idx = k
    else:
        try:
            idx = array(k)
        except (ValueError, TypeError) as e:
            raise IndexingError(f"[{op}] Cannot index an array with {type(k).__name__} {k!r}.") from e
        if idx.size == 0 and idx.dtype != dt.bool_:
            idx = ops.astype(idx, dt.int32)  # `[]` selects nothing (numpy), whatever dtype it inferred
    if idx.dtype == dt.bool_:
        raise IndexingError(f"[{op}] Boolean indices are not yet supported.")
    if not dt.is_integer(idx.dtype):
        raise IndexingError(f"[{op}] Indices must be integral, got indices of dtype {idx.dtype}.")
    return idx


def _int32_index(k) -> int:
    # MLX's indices and slice bounds are int32 (its message, which names no op).
    if not -(2**31) <= k < 2**31:
        raise IndexingError("Slice indices must be 32-bit integers.")
    return int(k)


def _classify(k, op: str):
    if k is None:
        return ("none", None)
    if k is Ellipsis:
        return ("ellipsis", None)
    if isinstance(k, (bool, np.bool_)):
        raise IndexingError(f"[{op}] Cannot index an array with a bool; boolean indices are not yet supported.")
    if isinstance(k, (int, np.integer)):
        return ("int", _int32_index(k))
    if isinstance(k, slice):
        return ("slice", k)
    if isinstance(k, (array, list, tuple, np.ndarray)):
        return ("array", _index_array(k, op))
    raise IndexingError(f"[{op}] Cannot index an array with an index of type {type(k).__name__}.")


def _from_end(k: int, n: int) -> int:
    """An index in [-n, n) as a position; a negative one counts from the end, so the bound then depends on
    the size (noted for shapeless replay)."""
    if k < 0:
        note_bound_decision()
        return k + n
    return k


def _slice_bounds(s: slice, n: int, op: str) -> tuple:
    """(start, stop, step) of a slice over n elements, in the `slice` primitive's convention."""
    try:
        parts = [None if p is None else operator.index(p) for p in (s.start, s.stop, s.step)]
    except TypeError:
        raise IndexingError(f"[{op}] Slice indices must be integers or None, got {s!r}.") from None
    for part in parts:
        if part is not None:
            _int32_index(part)
    if parts[2] == 0:
        raise IndexingError(f"[{op}] Slice step cannot be zero.")
    start, stop, step = slice(*parts).indices(n)
    given_start, given_stop = parts[0], parts[1]
    if ((given_start is None and step < 0) or (given_stop is None and step > 0)
            or any(p is not None and not 0 <= p <= n for p in (given_start, given_stop))):
        note_bound_decision()  # the bounds depend on n: valid only at this size under shapeless compile
    if len(range(start, stop, step)) == 0:
        return (0, 0, step)  # a negative start here would mean "from the end" to the primitive
    return (start, stop, step)  # a negative step's stop is at least -1: "before index 0"


def _parse(shape: tuple, key, op: str):
    """Entries (Ellipsis expanded, missing trailing axes filled), and whether the advanced ones touch."""
    items = list(key) if isinstance(key, tuple) else [key]
    parsed = [_classify(k, op) for k in items]
    ndim = len(shape)
    if sum(kind == "ellipsis" for kind, _ in parsed) > 1:
        raise IndexingError(f"[{op}] An index can only have a single ellipsis (...).")
    consumed = sum(kind in ("int", "slice", "array") for kind, _ in parsed)
    if consumed > ndim:
        raise IndexingError(f"[{op}] Too many indices for array with {ndim} dimensions.")
    has_array = any(kind == "array" for kind, _ in parsed)
    # With an index array present, ints are advanced indices too. Adjacency is judged on the key as
    # written, so an Ellipsis separates advanced indices even when it stands for no axis (numpy's rule).
    advanced = [i for i, (kind, _) in enumerate(parsed) if kind == "array" or (kind == "int" and has_array)]
    adjacent = not advanced or advanced == list(range(advanced[0], advanced[-1] + 1))
    full = ("slice", slice(None))
    expanded = []
    for kind, value in parsed:
        expanded.extend([full] * (ndim - consumed) if kind == "ellipsis" else [(kind, value)])
    if not any(kind == "ellipsis" for kind, _ in parsed):
        expanded.extend([full] * (ndim - consumed))
    entries, axis = [], 0
    for kind, value in expanded:
        if kind == "none":
            entries.append(_Entry("none"))
            continue
        n = shape[axis]
        if kind == "int":
            if not -n <= value < n:
                raise IndexOutOfRange(f"[{op}] Index {value} is out of bounds for axis {axis} with size {n}.")
            value = _from_end(value, n)
        elif kind == "slice":
            value = _slice_bounds(value, n, op)
        entries.append(_Entry(kind, value, axis))
        axis += 1
    return entries, adjacent, has_array


# -- the plan: where a key reads from and how its result is laid out ------------------------------------
@dataclass
class _Plan:
    shape: tuple
    entries: list
    adjacent: bool
    advanced: bool
    start: list = field(default_factory=list)
    stop: list = field(default_factory=list)
    strides: list = field(default_factory=list)
    out_shape: tuple = ()
    axes: tuple = ()  # advanced: the indexed input axes
    indices: list = field(default_factory=list)  # advanced: index arrays broadcast to one shape
    order: list = field(default_factory=list)  # advanced: gather dims (B + sliced) -> output order
    none_pos: list = field(default_factory=list)  # output positions of new axes

    @property
    def trivial(self) -> bool:
        return all(a == 0 and b == n and s == 1
                   for a, b, s, n in zip(self.start, self.stop, self.strides, self.shape))

    @property
    def int_axes(self) -> tuple:
        return tuple(e.axis for e in self.entries if e.kind == "int")

    def region(self, a: array) -> array:
        if self.trivial:
            return a
        return bind("slice", a, start=tuple(self.start), stop=tuple(self.stop), strides=tuple(self.strides))

    def write_region(self, a: array, region: array) -> array:
        if self.trivial:
            return ops.broadcast_to(region, a.shape)
        return ops.slice_update(a, region, self.start, self.stop, self.strides)


def _plan(shape: tuple, key, op: str) -> _Plan:
    entries, adjacent, has_array = _parse(tuple(shape), key, op)
    plan = _Plan(tuple(shape), entries, adjacent, has_array)
    for e in entries:
        if e.kind == "slice":
            bounds = e.value
        elif e.kind == "int" and not has_array:
            bounds = (e.value, e.value + 1, 1)
        elif e.kind == "none":
            continue
        else:
            bounds = (0, shape[e.axis], 1)  # advanced axes are read whole, then gathered
            note_bound_decision()
        plan.start.append(bounds[0])
        plan.stop.append(bounds[1])
        plan.strides.append(bounds[2])
    if has_array:
        _plan_advanced(plan, op)
    else:
        _plan_basic(plan)
    return plan


def _plan_basic(plan: _Plan):
    out = []
    for e in plan.entries:
        if e.kind == "slice":
            out.append(len(range(*e.value)))
        elif e.kind == "none":
            plan.none_pos.append(len(out))
            out.append(1)
    plan.out_shape = tuple(out)


def _plan_advanced(plan: _Plan, op: str):
    adv = [e for e in plan.entries if e.kind in ("int", "array")]
    idx = [e.value if e.kind == "array" else array(e.value, dt.int32) for e in adv]
    try:
        batch = broadcast_shapes(*(i.shape for i in idx), op=op)
    except ValueError:
        shapes = " ".join(str(tuple(i.shape)) for i in idx)
        raise IndexingError(f"[{op}] Shape mismatch: indexing arrays could not be broadcast together with "
                            f"shapes {shapes}.") from None
    plan.axes = tuple(e.axis for e in adv)
    plan.indices = [ops.broadcast_to(i, batch) for i in idx]
    nb = len(batch)
    sliced = [len(range(*e.value)) for e in plan.entries if e.kind == "slice"]
    order, out, placed, j = [], [], False, 0
    if not plan.adjacent:
        order.extend(range(nb))
        out.extend(batch)
        placed = True
    for e in plan.entries:
        if e.kind == "slice":
            order.append(nb + j)
            out.append(sliced[j])
            j += 1
        elif e.kind == "none":
            plan.none_pos.append(len(out))
            out.append(1)
        elif not placed:
            order.extend(range(nb))
            out.extend(batch)
            placed = True
    plan.order = order
    plan.out_shape = tuple(out)


# -- getitem ----------------------------------------------------------------------------------------
def _read(a: array, plan: _Plan) -> array:
    x = plan.region(a)
    if not plan.advanced:
        if plan.int_axes:
            x = bind("squeeze", x, axes=plan.int_axes)
    else:
        x = bind("gather", x, *plan.indices, axes=plan.axes)
        x = ops.transpose(x, plan.order)
    if plan.none_pos:
        x = bind("expand_dims", x, axes=tuple(plan.none_pos))
    return x


def getitem(a: array, key) -> array:
    """`a[key]` with numpy's (and MLX's) semantics for ints, slices, None, Ellipsis and integer arrays."""
    out = _basic_read(a, key)
    return out if out is not None else _read(a, _plan(a.shape, key, "getitem"))


def _basic_read(a: array, key):
    """`a[key]` for the usual key of Python ints, slices and at most one Ellipsis, built without a _Plan (the
    same nodes: one `slice` unless it reads everything, then a `squeeze` of the int axes); None for any other
    key and for a key that is an error, which the general path reports."""
    items = key if type(key) is tuple else (key,)
    ellipsis = None
    for i, k in enumerate(items):
        kind = type(k)
        if kind is not int and kind is not slice:
            if k is not Ellipsis or ellipsis is not None:
                return None
            ellipsis = i
    shape = a._shape
    fill = len(shape) - len(items) + (ellipsis is not None)
    if fill < 0:
        return None
    if ellipsis is None:
        ellipsis = len(items)
    items = items[:ellipsis] + (slice(None),) * fill + items[ellipsis + 1:]
    start, stop, strides, int_axes = [], [], [], []
    whole = True
    for axis, (k, n) in enumerate(zip(items, shape)):
        if type(k) is int:
            if not -n <= k < n:
                return None
            k = _from_end(k, n)
            bounds = (k, k + 1, 1)
            int_axes.append(axis)
        else:
            try:
                bounds = _slice_bounds(k, n, "getitem")
            except IndexingError:
                return None
        start.append(bounds[0])
        stop.append(bounds[1])
        strides.append(bounds[2])
        whole = whole and bounds == (0, n, 1)
    x = a if whole else bind("slice", a, start=tuple(start), stop=tuple(stop), strides=tuple(strides))
    return bind("squeeze", x, axes=tuple(int_axes)) if int_axes else x


# -- updates: setitem and .at[] ------------------------------------------------------------------------
def _value(value, dtype: dt.Dtype, shape: tuple, op: str) -> array:
    """`value` cast to the array's dtype and broadcast to the indexed shape (extra leading 1s dropped)."""
    v = value if isinstance(value, array) else array(value)
    v = ops.astype(v, dtype)
    extra = v.ndim - len(shape)
    if extra > 0 and all(s == 1 for s in v.shape[:extra]):
        v = ops.reshape(v, v.shape[extra:])
    try:
        fits = v.ndim <= len(shape) and broadcast_shapes(v.shape, shape, op=op) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"[{op}] Cannot broadcast a value of shape {tuple(v.shape)} to the indexed shape "
                         f"{tuple(shape)}.")
    return ops.broadcast_to(v, shape)


def _combine(mode: str, old: array, new: array) -> array:
    """old combined with new elementwise (both of the array's dtype), for keys without repeats."""
    if mode == "set":
        return new
    if mode in ("maximum", "minimum") and old.ndim:
        # MLX lowers every at[].maximum/minimum to its scatter, whose gradient reaches both the array and
        # the update where they tie; the elementwise op would pick one. Row i of the region is row i.
        rows = ops.arange(old.shape[0], dtype=dt.int32)
        return bind(f"scatter_{mode}", old, ops.broadcast_to(ops.astype(new, old.dtype), old.shape), rows, axes=(0,))
    if mode == "divide" and not dt.is_floating(old.dtype):
        out = ops.floor_divide(old, new)
    else:
        out = getattr(ops, mode)(old, new)
    return ops.astype(out, old.dtype)


def _scatter(mode: str, x: array, upd: array, indices: list, axes: tuple) -> array:
    """x with upd combined in at indices; repeated indices accumulate."""
    if mode == "subtract":
        return bind("scatter_add", x, ops.negative(upd), *indices, axes=axes)
    if mode == "divide":
        if dt.is_floating(x.dtype) or dt.issubdtype(x.dtype, dt.complexfloating):
            return bind("scatter_multiply", x, ops.reciprocal(upd), *indices, axes=axes)
        divisor = bind("scatter_multiply", ops.ones_like(x), upd, *indices, axes=axes)
        return ops.astype(ops.floor_divide(x, divisor), x.dtype)
    name = "scatter" if mode == "set" else f"scatter_{mode}"
    return bind(name, x, upd, *indices, axes=axes)


def _updated(a: array, key, value, mode: str, op: str) -> array:
    """A new array: a with a[key] set to (or combined with) value."""
    plan = _plan(a.shape, key, op)
    v = _value(value, a.dtype, plan.out_shape, op)
    if plan.none_pos:
        v = bind("squeeze", v, axes=tuple(plan.none_pos))
    if not plan.advanced:
        if plan.int_axes:
            v = bind("expand_dims", v, axes=plan.int_axes)
        return plan.write_region(a, _combine(mode, plan.region(a), v))
    # Back from the output layout to the gather layout (index dims B, then the sliced dims).
    upd = ops.transpose(v, np.argsort(plan.order).tolist())
    return plan.write_region(a, _scatter(mode, plan.region(a), upd, plan.indices, plan.axes))


def _bool_mask(key):
    """The key as a boolean mask array, or None when it is not one."""
    k = key[0] if isinstance(key, tuple) and len(key) == 1 else key
    if isinstance(k, (bool, np.bool_)):
        return array(k)  # a 0-d mask: True sets every element, False none (as MLX's a[True] = v)
    if isinstance(k, array):
        return k if k.dtype == dt.bool_ else None
    if isinstance(k, np.ndarray) and k.dtype == np.bool_:
        return array(k)
    if isinstance(k, list) and k:
        flat = np.asarray(k, dtype=object).ravel()
        if all(isinstance(v, (bool, np.bool_)) for v in flat):
            return array(k)
    return None


def _masked_set(a: array, mask: array, value, op: str) -> array:
    """a[mask] = value for a boolean mask over a's leading axes.

    A value that broadcasts over one masked slot fills every masked slot; otherwise its first axis is
    consumed in order, one entry per masked slot (MLX's masked scatter; extra entries are ignored).
    """
    if tuple(mask.shape) != tuple(a.shape[:mask.ndim]):
        raise ValueError(f"[{op}] The boolean mask should have the same shape as the beginning of the indexed "
                         f"array but the mask has shape {tuple(mask.shape)} and the array has shape "
                         f"{tuple(a.shape)}.")
    rest = tuple(a.shape[mask.ndim:])
    m = ops.reshape(mask, tuple(mask.shape) + (1,) * len(rest))
    v = ops.astype(value if isinstance(value, array) else array(value), a.dtype)
    if not _fits(v.shape, rest) and v.ndim == len(rest) + 1 and _fits(v.shape[1:], rest):
        # The k-th masked slot (in row-major order) takes entry k: its rank is a running count of the mask.
        v = ops.broadcast_to(v, (v.shape[0],) + rest)
        count = ops.cumsum(ops.reshape(ops.astype(mask, dt.int32), (-1,)))
        ranks = ops.maximum(ops.reshape(count, mask.shape) - 1, 0)
        return ops.where(m, bind("gather", v, ranks, axes=(0,)), a)
    return ops.where(m, _value(v, a.dtype, rest, op), a)


def _fits(shape: tuple, target: tuple) -> bool:
    try:
        return len(shape) <= len(target) and broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False


def setitem(a: array, key, value) -> None:
    """`a[key] = value`: a now stands for a new array (arrays are immutable; MLX updates the same way)."""
    mask = _bool_mask(key)
    old = a._snapshot()
    if mask is not None:
        new = _masked_set(old, mask, value, "setitem")
    else:
        new = _updated(old, key, value, "set", "setitem")
    if new is a:
        return
    a._rebind(new, old)


class _AtUpdate:
    """`a.at[key]`: functional updates that accumulate over repeated indices (as `np.add.at`)."""

    def __init__(self, a: array, key):
        if _bool_mask(key) is not None:
            raise IndexingError("[at] Boolean masks are not supported by array.at; use mx.where.")
        self._a = a
        self._key = key

    def _apply(self, mode, value):
        return _updated(self._a, self._key, value, mode, "at")

    def set(self, value) -> array:
        """a with a[key] = value (the last of repeated indices wins)."""
        return self._apply("set", value)

    def add(self, value) -> array:
        """a with value added at key; repeated indices add up."""
        return self._apply("add", value)

    def subtract(self, value) -> array:
        """a with value subtracted at key; repeated indices subtract repeatedly."""
        return self._apply("subtract", value)

    def multiply(self, value) -> array:
        """a multiplied by value at key; repeated indices multiply repeatedly."""
        return self._apply("multiply", value)

    def divide(self, value) -> array:
        """a divided by value at key; repeated indices divide repeatedly (floor division for integers)."""
        return self._apply("divide", value)

    def maximum(self, value) -> array:
        """a with the maximum of itself and value at key."""
        return self._apply("maximum", value)

    def minimum(self, value) -> array:
        """a with the minimum of itself and value at key."""
        return self._apply("minimum", value)


class AtIndexer:
    """`a.at`: index it (`a.at[key]`) for MLX's functional scatter updates."""

    def __init__(self, a: array):
        self._a = a

    def __getitem__(self, key) -> _AtUpdate:
        return _AtUpdate(self._a, key)

    def __getattr__(self, name):
        if not name.startswith("_") and hasattr(_AtUpdate, name):  # a.at.add(...): the key is missing
            raise ValueError("Must give indices to array.at (e.g. `x.at[0].add(4)`).")
        raise AttributeError(f"'AtIndexer' object has no attribute '{name}'")


# -- take, take_along_axis, put_along_axis --------------------------------------------------------------
def _check_axis(op: str, ndim: int, axis) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"[{op}] axis must be an int or None, got {type(axis).__name__}.")
    if not -ndim <= axis < ndim:
        raise IndexingError(f"[{op}] Received invalid axis {int(axis)} for array with {ndim} dimensions.")
    return int(axis) + ndim if axis < 0 else int(axis)


def take(a, indices, axis: int | None = None, stream=None) -> array:
    """Take elements along an axis.

    Args:
        a (array): Input array.
        indices (int or array): Integer index or integer index array.
        axis (int, optional): Axis to take along. If unspecified the array is treated as flattened 1-D.

    Returns:
        array: ``a[:, ..., indices, ...]`` with ``indices`` at ``axis``: its shape is
        ``a.shape[:axis] + indices.shape + a.shape[axis + 1:]``.
    """
    a = ops.to_array(a)
    if axis is None:
        a = ops.reshape(a, (-1,))
        axis = 0
    ax = _check_axis("take", a.ndim, axis)
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, (bool, np.bool_)):
        if a.size == 0:
            raise ValueError("[take] Cannot do a non-empty take from an array with zero elements.")
        return _read(a, _plan(a.shape, (slice(None),) * ax + (int(indices),), "take"))
    idx = _index_array(indices, "take")
    # No index is valid on an empty axis (a gather would read outside the input).
    if a.shape[ax] == 0 and idx.size > 0:
        raise ValueError("[take] Cannot do a non-empty take from an empty axis.")
    out = bind("gather", a, idx, axes=(ax,))
    nb = idx.ndim
    order = list(range(nb, nb + ax)) + list(range(nb)) + list(range(nb + ax, out.ndim))
    return ops.transpose(out, order)


def _along_axis(op: str, a: array, indices, axis):
    """(a, index arrays for every axis of a, broadcast to the result's shape)."""
    if isinstance(indices, array) and indices.size == 0 and indices.dtype != dt.bool_:
        # MLX checks the indices' dtype of the along-axis ops only when it runs them, which an empty
        # index array never does: `put_along_axis(e, e, e)` on an empty float `e` is accepted.
        indices = ops.astype(indices, dt.int32)
    idx = _index_array(indices, op)
    if axis is None:
        a = ops.reshape(a, (-1,))
        axis = 0
    if not isinstance(axis, (int, np.integer)) or not -a.ndim <= axis < a.ndim:
        raise IndexingError(f"[{op}] Axis {axis} is out of bounds for array with {a.ndim} dimensions.")
    ax = int(axis) + a.ndim if axis < 0 else int(axis)
    if idx.ndim != a.ndim:
        raise ValueError(f"[{op}] Indices of dimension {idx.ndim} does not match array of dimension {a.ndim}.")
    return a, idx, ax


def _coordinates(idx: array, ax: int) -> list:
    """Index arrays for every axis: idx at ax, and each position's own coordinate elsewhere."""
    coords = []
    for d, n in enumerate(idx.shape):
        if d == ax:
            coords.append(idx)
            continue
        shape = [1] * idx.ndim
        shape[d] = n
        iota = ops.reshape(ops.arange(n, dtype=dt.int32), shape)
        coords.append(ops.broadcast_to(iota, idx.shape))
    return coords


def take_along_axis(a, indices, axis: int | None = -1, stream=None) -> array:
    """Take values along an axis at the specified indices.

    Args:
        a (array): Input array.
        indices (array): Integer indices, broadcastable with ``a`` except along ``axis``.
        axis (int or None): Axis to take from. If ``None`` the array is flattened first. Default: ``-1``.

    Returns:
        array: The values; shaped like the broadcast ``indices``.
    """
    a, idx, ax = _along_axis("take_along_axis", ops.to_array(a), indices, axis)
    a_shape, i_shape = list(a.shape), list(idx.shape)
    a_shape[ax] = i_shape[ax] = 1
    common = list(broadcast_shapes(tuple(a_shape), tuple(i_shape), op="take_along_axis"))
    a_full, i_full = list(common), list(common)
    a_full[ax], i_full[ax] = a.shape[ax], idx.shape[ax]
    a = ops.broadcast_to(a, a_full)
    idx = ops.broadcast_to(idx, i_full)
    return bind("gather", a, *_coordinates(idx, ax), axes=tuple(range(a.ndim)))


def put_along_axis(a, indices, values, axis: int | None = None, stream=None) -> array:
    """Put values along an axis at the specified indices.

    Args:
        a (array): Destination array.
        indices (array): Integer indices, broadcastable with ``a`` except along ``axis``.
        values (array): Values, broadcastable with the indices.
        axis (int or None): Axis to put along. If ``None`` the destination is flattened first.

    Returns:
        array: ``a`` (of its shape and dtype) with the values written at the indices.
    """
    a = ops.to_array(a)
    flat, idx, ax = _along_axis("put_along_axis", a, indices, axis)
    target = list(flat.shape)
    target[ax] = idx.shape[ax]
    try:
        idx = ops.broadcast_to(idx, target)
    except ValueError:
        raise ValueError(f"[put_along_axis] Indices of shape {tuple(idx.shape)} cannot be broadcast to "
                         f"{tuple(target)}.") from None
    v = _value(values, a.dtype, tuple(target), "put_along_axis")
    out = bind("scatter", flat, v, *_coordinates(idx, ax), axes=tuple(range(flat.ndim)))
    return ops.reshape(out, a.shape)
