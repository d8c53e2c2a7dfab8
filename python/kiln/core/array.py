"""The `array` type: a lazy graph node (primitive, inputs, params, shape, dtype) or a materialised buffer.

Every op records a node; nothing computes until `eval` (or `.item()`, `np.array(a)`, printing, `bool()`).
Evaluation hands large enough pending graphs to the engine (`core/eager.py`: fused, cached Programs) and
runs the rest node by node on the registry's numpy implementations (or a native kernel where the engine has
one), then detaches them, as MLX does, unless a transform (grad, jvp, ...) is active, which needs the graph.
"""

from __future__ import annotations

import sys
import threading
import typing
import weakref
from operator import attrgetter
from time import perf_counter

import numpy as np

from . import dtypes as dt
from .engine import ArrayBuffer
from .memory import track as _track_buffer
from .primitives import REGISTRY


class _ThreadState(threading.local):
    # Class-level defaults: each thread reads 0 until it sets its own (getattr with a default on a
    # missing thread-local attribute is slow, and evaluate asks on every call).
    transform_depth = 0
    kept = None


_local = _ThreadState()


def transform_depth() -> int:
    return _local.transform_depth


class transform_scope:
    """While inside, evaluated nodes keep their graph edges (transforms walk them afterwards).

    When the outermost scope closes, those nodes are detached, as eval outside a transform would have
    done, so a value evaluated inside a loss (a logged metric) does not keep a forward pass alive.
    """

    def __enter__(self):
        if transform_depth() == 0:
            _local.kept = []
        _local.transform_depth = transform_depth() + 1

    def __exit__(self, *exc):
        _local.transform_depth = transform_depth() - 1
        if _local.transform_depth == 0:
            kept, _local.kept = _local.kept, []
            for ref in kept:
                node = ref()
                if node is not None and node._data is not None:
                    _detach(node)


def _detach(node) -> None:
    node._prim = None
    node._inputs = ()
    node._params = None


class PlaceholderError(ValueError):
    """Raised when a traced value (a placeholder without data) is evaluated; a ValueError, as in MLX."""


def placeholder_message(origin: str) -> str:
    if origin == "vmap":
        return ("[vmap] Attempted to evaluate an array inside a vmapped function: vmap traces the function "
                "once on placeholders without data, so arrays cannot be printed, converted (.item(), "
                "np.array, bool) or evaluated inside it. Compute such values outside the vmapped function.")
    return (
        f"[compile] Attempted to evaluate an array that depends on a placeholder of {origin}. "
        "Inside a compiled function inputs are placeholders without data, so arrays cannot be printed, "
        "converted (.item(), np.array, bool) or evaluated while tracing; a placeholder stored by a side "
        "effect (e.g. appended to a list) cannot be used after the call either. Return such values as "
        "outputs or capture them with compile(..., outputs=...). To debug with real values, call "
        "mx.disable_compile() or set the environment variable MLX_DISABLE_COMPILE=1."
    )


# The PEP 3118 format each dtype's buffer reports: MLX's ("q"/"Q" for 64-bit integers where numpy says "l"/"L";
# bfloat16, which has no format character, as the string "bfloat16", which numpy refuses as it does MLX's).
_BUFFER_FORMAT = {
    dt.bool_: "?", dt.uint8: "B", dt.uint16: "H", dt.uint32: "I", dt.uint64: "Q", dt.int8: "b", dt.int16: "h",
    dt.int32: "i", dt.int64: "q", dt.float16: "e", dt.bfloat16: "bfloat16", dt.float32: "f", dt.float64: "d",
    dt.complex64: "Zf",
}


def _private_copy(data: np.ndarray) -> np.ndarray:
    """A writable copy of `data` in the same layout: broadcast axes keep stride 0, a permuted or stepped
    order keeps its strides, as the views MLX hands out report them (negative strides become positive)."""
    if data.size and all(stride >= 0 and stride % data.itemsize == 0 for stride in data.strides):
        return copy_layout(data)
    broadcast = tuple(stride == 0 and n > 1 for n, stride in zip(data.shape, data.strides))
    copy = np.array(data[tuple(slice(0, 1) if b else slice(None) for b in broadcast)], order="K")
    if not any(broadcast):
        return copy
    strides = tuple(0 if b else stride for b, stride in zip(broadcast, copy.strides))
    return np.lib.stride_tricks.as_strided(copy, data.shape, strides)


def copy_layout(data: np.ndarray, np_dtype=None) -> np.ndarray:
    """A copy of the memory that `data` (non-empty, strides >= 0, in whole elements) spans, viewed with its
    shape and strides, so gaps, stride-0 axes and a permuted order survive (MLX keeps an imported layout).

    Args:
        data (np.ndarray): The source.
        np_dtype (optional): Convert to this numpy dtype; the strides scale with the item size.

    Returns:
        np.ndarray: The copy.
    """
    itemsize = data.itemsize
    count = 1 + sum((n - 1) * stride for n, stride in zip(data.shape, data.strides)) // itemsize
    spanned = np.lib.stride_tricks.as_strided(data, (count,), (itemsize,))  # every element in the span, in order
    with np.errstate(all="ignore"):  # the gaps between elements may hold any bits
        copy = spanned.astype(np_dtype or data.dtype)
    strides = tuple(stride // itemsize * copy.itemsize for stride in data.strides)
    return np.lib.stride_tricks.as_strided(copy, data.shape, strides)


def default_dtype(np_dtype) -> dt.Dtype:
    """The dtype MLX gives a numpy (or DLPack) array: its own, except float64 -> float32, complex128 ->
    complex64."""
    if np_dtype == np.float64:
        return dt.float32
    if np_dtype == np.complex128:
        return dt.complex64
    return dt.from_numpy(np_dtype)


class array(ArrayBuffer):
    """An N-dimensional array (MLX's `mlx.core.array`)."""

    __slots__ = ("_data", "_prim", "_inputs", "_params", "_shape", "_dtype", "_placeholder", "_consumers",
                 "__weakref__")

    def __init__(self, val, dtype=None):
        self._consumers = None
        source = _lazy_source(val, dtype)
        if source is None:
            data, d = _to_numpy(val, dt.dtype_arg(dtype, "array") if dtype is not None else None)
            if not isinstance(data, array):
                self._set_data(data, d)
                self._prim = None
                self._inputs = ()
                self._params = None
                self._placeholder = None
                return
            source = data  # a list holding arrays: their stack
        # array(x) of arrays stays in the graph, so grad, vmap and compile see through it (as MLX).
        node = bind("copy", source)
        self._replace_with(node)
        for x in self._inputs:
            _register_consumer(x, self)

    # -- construction helpers used by the library --------------------------------------------
    @classmethod
    def _lazy(cls, prim: str, inputs: tuple, params: dict, shape: tuple, dtype: dt.Dtype) -> "array":
        a = object.__new__(cls)
        a._data = None
        a._prim = prim
        a._inputs = inputs
        a._params = params
        a._shape = shape
        a._dtype = dtype
        a._placeholder = None
        a._consumers = None
        return a

    @classmethod
    def _from_numpy(cls, data: np.ndarray, dtype: dt.Dtype | None = None) -> "array":
        a = object.__new__(cls)
        d = dtype if dtype is not None else dt.from_numpy(data.dtype)
        if data.dtype != d.np:
            data = data.astype(d.np)
        a._set_data(data, d)
        a._prim = None
        a._inputs = ()
        a._params = None
        a._placeholder = None
        a._consumers = None
        return a

    @classmethod
    def _constant(cls, data: np.ndarray, dtype: dt.Dtype) -> "array":
        """A fresh array object over `data`, a read-only buffer already of `dtype` (cached scalar constants)."""
        a = object.__new__(cls)
        a._data = data
        a._shape = data.shape
        a._dtype = dtype
        a._prim = None
        a._inputs = ()
        a._params = None
        a._placeholder = None
        a._consumers = None
        return a

    @classmethod
    def _make_placeholder(cls, shape: tuple, dtype: dt.Dtype, origin: str) -> "array":
        a = cls._lazy(None, (), None, tuple(shape), dtype)
        a._placeholder = origin
        return a

    def _set_data(self, data: np.ndarray, d: dt.Dtype):
        if data.flags.writeable:
            data.flags.writeable = False  # buffers are shared between arrays: never mutate them
        _track_buffer(data)
        self._data = data
        self._shape = tuple(data.shape)
        self._dtype = d

    # -- properties --------------------------------------------------------------------------
    # Read by every shape rule: a property over a C getter costs no Python frame.
    shape = property(attrgetter("_shape"), doc="The array's shape, a tuple of ints.")
    dtype = property(attrgetter("_dtype"), doc="The array's Dtype.")

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        n = 1
        for s in self._shape:
            n *= s
        return n

    @property
    def itemsize(self) -> int:
        return self._dtype.size

    @property
    def nbytes(self) -> int:
        return self.size * self._dtype.size

    @property
    def T(self) -> "array":
        return ops.transpose(self)

    @property
    def at(self):
        from .indexing import AtIndexer

        return AtIndexer(self)

    # -- evaluation ----------------------------------------------------------------------------
    def _numpy(self) -> np.ndarray:
        if self._data is None:
            evaluate([self])
        return self._data

    def item(self):
        if self.size != 1:
            raise ValueError("[item] item can only be called on arrays of size 1.")
        v = self._numpy().reshape(()).item()
        if self._dtype in (dt.bfloat16,):
            v = float(v)
        return v

    def tolist(self):
        data = self._numpy()
        if self._dtype == dt.bfloat16:
            data = data.astype(np.float32)
        return data.tolist()

    def _writable_data(self) -> np.ndarray:
        """The array's buffer, writable: MLX's views (``np.array(a, copy=False)``, ``memoryview(a)``) write
        through to the array. The array takes a private copy first, so arrays that shared its old buffer
        keep their values."""
        data = self._numpy()
        if not data.flags.writeable:
            if data.base is None and sys.getrefcount(data) <= 3:
                data.flags.writeable = True  # held by this array alone (and the two references here): no copy
            else:
                data = _private_copy(data)
                _track_buffer(data)
                self._data = data
        return data

    def _buffer_export(self) -> tuple:
        """(numpy array, PEP 3118 format) for the buffer protocol of the C base class (`engine.ArrayBuffer`)."""
        data = self._writable_data()
        if self._dtype == dt.bfloat16:
            data = data.view(np.uint16)
        return data, _BUFFER_FORMAT[self._dtype]

    def __array__(self, dtype=None, copy=None):
        # numpy asks the buffer protocol first where the engine provides it; this serves without the engine.
        if dtype is not None:
            return self._numpy().astype(dtype)
        if copy is False:
            return self._writable_data()
        data = self._numpy()
        return data.copy() if copy else data

    if ArrayBuffer is object:

        def __buffer__(self, flags: int) -> memoryview:
            """The buffer protocol without the engine: a Python class can provide it from Python 3.12 on
            (PEP 688), with numpy's formats; older Pythons reach the data through ``np.array(a)``."""
            return memoryview(self._buffer_export()[0])

    def __array_namespace__(self, api_version=None):
        """The array-API namespace of kiln arrays: ``kiln.core`` (as MLX answers ``mlx.core``)."""
        import kiln.core

        return kiln.core

    def _scalar(self):
        """The single element as a Python scalar, for bool(), int(), float() and complex()."""
        if self.size != 1:
            raise ValueError("[convert] Only length-1 arrays can be converted to Python scalars.")
        return self.item()

    def __bool__(self) -> bool:
        return bool(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __float__(self) -> float:
        return float(self._scalar())

    def __complex__(self) -> complex:
        return complex(self._scalar())

    def __format__(self, spec: str) -> str:
        # As MLX: a format spec applies to 0-d arrays only (formatting their Python scalar); larger arrays
        # take the empty spec alone, which prints them.
        if not spec:
            return str(self)
        if self.ndim != 0:
            raise TypeError("unsupported format string passed to mx.array.__format__")
        return format(self.item(), spec)

    def __index__(self) -> int:
        if not dt.is_integer(self._dtype):
            raise TypeError("[array] Only integer arrays can be used as an index.")
        return int(self.item())

    def __repr__(self) -> str:
        from ._format import format_array

        return format_array(self._numpy(), self._dtype)

    __str__ = __repr__

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() 0-dimensional array.")
        return self._shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")  # raised by iter() itself, as MLX does
        return ArrayIterator(self)

    __hash__ = object.__hash__  # MLX hashes arrays by identity

    def __copy__(self):
        return self._snapshot()  # a second object: a later in-place update of self leaves it alone

    def __deepcopy__(self, memo):
        return array._from_numpy(self._numpy().copy(), self._dtype)

    def __getstate__(self):
        return {"data": np.array(self._numpy()), "dtype": self._dtype.name}

    def __setstate__(self, state):
        self._set_data(np.array(state["data"]), dt.from_name(state["dtype"]))
        self._prim = None
        self._inputs = ()
        self._params = None
        self._placeholder = None

    def astype(self, dtype, stream=None) -> "array":
        return ops.astype(self, dtype)

    def __getitem__(self, key):
        from .indexing import getitem

        return getitem(self, key)

    def __setitem__(self, key, value):
        from .indexing import setitem

        setitem(self, key, value)

    def _snapshot(self) -> "array":
        """A second array object holding this object's current value (before an in-place update)."""
        s = object.__new__(array)
        for name in ("_data", "_prim", "_inputs", "_params", "_shape", "_dtype", "_placeholder"):
            setattr(s, name, getattr(self, name))
        s._consumers = None
        for x in s._inputs:
            _register_consumer(x, s)
        return s

    def _rebind(self, new: "array", old: "array"):
        """Make this object stand for `new` (MLX's in-place update `a[i] = v`).

        Nodes already built from this object's previous value are pointed at `old` (an object holding
        that value), so they keep computing what they computed before the update, as in MLX.
        """
        for ref in getattr(self, "_consumers", None) or ():
            node = ref()
            if node is not None:
                node._inputs = tuple(old if x is self else x for x in node._inputs)
                _register_consumer(old, node)
        self._consumers = None
        self._replace_with(new)
        for x in self._inputs:
            _register_consumer(x, self)

    def _replace_with(self, other: "array"):
        """Make this array object stand for `other` (MLX's functional in-place update)."""
        self._data = other._data
        self._prim = other._prim
        self._inputs = other._inputs
        self._params = other._params
        self._shape = other._shape
        self._dtype = other._dtype
        self._placeholder = other._placeholder


def bind(name: str, *inputs: array, **params) -> array:
    """Record one primitive application as a lazy node (shape and dtype from the registry's rule)."""
    shape, dtype = REGISTRY[name].shape_rule(*inputs, **params)
    # array._lazy, inlined: bind runs once per op, and every attribute store here is a slot store.
    node = object.__new__(array)
    node._data = None
    node._prim = name
    node._inputs = inputs
    node._params = params
    node._shape = shape if type(shape) is tuple else tuple(shape)
    node._dtype = dtype
    node._placeholder = None
    node._consumers = None
    if inputs:
        ref = weakref.ref(node)
        for x in inputs:
            _add_consumer_ref(x, ref)
    return node


def _register_consumer(x: array, node: array) -> None:
    """Remember (weakly) that `node` reads `x`, so an in-place update of x can leave node's input alone."""
    _add_consumer_ref(x, weakref.ref(node))


def _add_consumer_ref(x: array, ref) -> None:
    try:
        refs = x._consumers
    except AttributeError:  # an array object built without the slot set
        refs = None
    if refs is None:
        x._consumers = [ref]
        return
    refs.append(ref)
    n = len(refs)
    if n >= 64 and n & (n - 1) == 0:  # prune dead references now and then
        refs[:] = [r for r in refs if r() is not None]


def evaluate(outputs) -> None:
    """Compute every pending node that `outputs` depend on, inputs first."""
    order = pending_nodes(outputs)
    if not order:
        return
    keep_graph = _local.transform_depth > 0
    # One evaluation at a time: another thread may be computing (and detaching) the same nodes.
    with _eval_lock, _ignore_fp_errors():  # IEEE results (inf, nan) are the answer, not a warning
        if _eager is None:
            _load_engine_hooks()
        if _eager and not keep_graph and (len(order) > 1 or order[0]._shape) and _eager.worthwhile(order):
            verdict = _eager.run_pending(order, outputs if isinstance(outputs, list) else list(outputs))
            if verdict is True:
                return
            if verdict is not False:  # the engine measures the node path for this structure
                started = perf_counter()
                _evaluate_nodes(order, keep_graph)
                _eager.record_node_time(verdict, perf_counter() - started)
                return
        _evaluate_nodes(order, keep_graph)


def _evaluate_nodes(order: list, keep_graph: bool) -> None:
    for node in order:
        if node._data is None:
            _evaluate_node(node, keep_graph)


_eval_lock = threading.RLock()
# Imported at the first evaluation (engine imports modules that import this one).
_eager = None  # core/eager.py; False without the engine extension
_native_table: dict = {}  # engine._NATIVE_FAMILIES: primitives that may have a native kernel
_native_impl = None


def _load_engine_hooks() -> None:
    global _eager, _native_table, _native_impl
    from . import engine

    if engine._engine is None:
        _eager = False
        return
    from . import eager

    _eager = eager
    _native_table = engine._NATIVE_FAMILIES
    _native_impl = engine.native_impl


def _errstate_factory():
    """A context manager equal to np.errstate(all="ignore"), built cheaply.

    np.errstate costs about 2 us to enter and leave, more than evaluating a small node. numpy 2 keeps the
    floating-point error state in a context variable; setting it to a cached "ignore everything" state
    (rebuilt whenever the surrounding state differs, so buffer size and callbacks carry over) does the
    same thing for a tenth of that. Any other numpy falls back to np.errstate.
    """
    try:
        from numpy._core._ufunc_config import _make_extobj
        from numpy._core.umath import _extobj_contextvar

        _extobj_contextvar.get()
        probe = _extobj_contextvar.set(_make_extobj(all="ignore"))
        _extobj_contextvar.reset(probe)
    except (ImportError, AttributeError, TypeError, ValueError, LookupError):
        return lambda: np.errstate(all="ignore")

    cache = [None, None]  # [surrounding state, its "ignore" version]

    class _Ignore:
        __slots__ = ("token",)

        def __enter__(self):
            outer = _extobj_contextvar.get()
            if cache[0] is not outer:
                with np.errstate(all="ignore"):
                    quiet = _extobj_contextvar.get()
                cache[0], cache[1] = outer, quiet
            self.token = _extobj_contextvar.set(cache[1])

        def __exit__(self, *exc):
            _extobj_contextvar.reset(self.token)

    return _Ignore


_ignore_fp_errors = _errstate_factory()


_data_of = attrgetter("_data")  # C-level, where a list comprehension is a Python frame per node


# (prim, params, input dtypes, output dtype) -> what eager evaluation runs for a primitive with kernel families.
_native_choices: dict = {}


def _native_or_reference(node: "array"):
    """The engine's native kernel for this application (through the Bridge) where one fits, else the registry's
    numpy implementation; the choice is cached per primitive, params and dtypes."""
    prim = node._prim
    in_dtypes = tuple(x._dtype for x in node._inputs)
    try:
        key = (prim, tuple(sorted(node._params.items())), in_dtypes, node._dtype)
        impl = _native_choices.get(key)
    except TypeError:  # unhashable params: choose every time
        key, impl = None, None
    if impl is None:
        native = _native_impl(prim, node._params, in_dtypes, node._dtype)
        impl = REGISTRY[prim].impl if native is None else (lambda *args, **params: native(*args))
        if key is not None:
            _native_choices[key] = impl
    return impl


def _evaluate_node(node: "array", keep_graph: bool) -> None:
    if node._placeholder is not None:
        raise PlaceholderError(placeholder_message(node._placeholder))
    prim = node._prim
    impl = _native_or_reference(node) if prim in _native_table else REGISTRY[prim].impl
    out = impl(*map(_data_of, node._inputs), **node._params)
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    want = node._dtype.np
    if out.dtype is not want and out.dtype != want:
        out = out.astype(want)
    if out.shape != node._shape:
        raise RuntimeError(f"[{node._prim}] internal error: produced shape {out.shape}, expected {node._shape}")
    out.setflags(write=False)  # buffers are shared between arrays: never mutate them
    _track_buffer(out)
    node._data = out
    node._shape = out.shape  # equal, but plain ints even where a rule computed numpy integers
    if keep_graph:
        _local.kept.append(weakref.ref(node))
    else:
        node._prim = None
        node._inputs = ()
        node._params = None


def pending_nodes(outputs) -> list:
    """Unevaluated nodes reachable from `outputs`, in an order where inputs come first."""
    pending = [a for a in outputs if a._data is None]
    if not pending:
        return []
    if len(pending) == 1:
        node = pending[0]
        for x in node._inputs:
            if x._data is None:
                break
        else:
            return pending  # one node over evaluated inputs: the usual eager case
    # postorder(pending, expand=pending), except that evaluated nodes are never stacked: the same order.
    order, seen = [], set()
    stack = [(node, False) for node in pending]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        key = id(node)
        if key in seen:
            continue
        seen.add(key)
        stack.append((node, True))
        for x in node._inputs:
            if x._data is None and id(x) not in seen:
                stack.append((x, False))
    return order


def postorder(roots, expand=None) -> list:
    """Every node reachable from `roots` once, each after its inputs.

    With `expand`, a node for which expand(node) is false is listed but its inputs are not visited.
    """
    order, seen = [], set()
    stack = [(node, False) for node in roots]
    push, pop, mark = stack.append, stack.pop, seen.add
    while stack:
        node, expanded = pop()
        if expanded:
            order.append(node)
            continue
        key = id(node)
        if key in seen:
            continue
        mark(key)
        push((node, True))
        if expand is None or expand(node):
            for x in node._inputs:
                if id(x) not in seen:
                    push((x, False))
    return order


_LIST_ELEMENT_TYPES = (bool, int, float, complex, np.number, np.bool_)


def _infer_list_dtype(flat) -> dt.Dtype:
    """MLX's dtype for a nested list: complex64, float32, bool, or int32 (int64 when a value needs it)."""
    for v in flat:
        if not isinstance(v, _LIST_ELEMENT_TYPES):
            raise ValueError(f"[array] Invalid type {type(v).__name__} received in array initialization.")
    kinds = {type(v) for v in flat}
    if any(issubclass(k, (complex, np.complexfloating)) for k in kinds):
        return dt.complex64
    if any(issubclass(k, (float, np.floating)) for k in kinds):
        return dt.float32
    if all(issubclass(k, (bool, np.bool_)) for k in kinds) and kinds:
        return dt.bool_
    ints = [int(v) for v in flat]
    if all(-(2**31) <= v < 2**31 for v in ints):
        return dt.int32
    if all(-(2**63) <= v < 2**63 for v in ints):
        return dt.int64
    raise ValueError("[array] Integer values do not fit in int64.")


def _flatten_list(val, out) -> bool:
    """Append the scalars of a nested list to `out`; stop and answer True at an array (the list stacks)."""
    for v in val:
        if isinstance(v, (list, tuple)):
            if _flatten_list(v, out):
                return True
        elif isinstance(v, array):
            return True
        else:
            out.append(v)
    return False


@typing.runtime_checkable
class ArrayLike(typing.Protocol):
    """Any Python object which has an ``__mlx_array__`` method that returns an :obj:`array`; ``array(obj)``
    converts it."""

    def __mlx_array__(self) -> array: ...


class ArrayIterator:
    """A helper object to iterate over the 1st dimension of an array."""

    def __init__(self, a: array):
        self._array, self._next = a, 0

    def __iter__(self):
        return self

    def __next__(self) -> array:
        if self._next >= self._array.shape[0]:
            raise StopIteration
        self._next += 1
        return self._array[self._next - 1]


def _lazy_source(val, dtype):
    """For array(x) where x is an array (or converts itself to one): the lazy array to copy, else None."""
    if not isinstance(val, array) and hasattr(type(val), "__mlx_array__"):
        val = val.__mlx_array__()  # MLX's ArrayLike protocol: the object converts itself
    if isinstance(val, array):
        return val if dtype is None else ops.astype(val, dtype)
    return None


def _stack_list(val, dtype) -> array:
    """array(val) for a list holding arrays, built as MLX builds it: each element becomes an array on its own
    (with `dtype` when given), and these stack, so the dtype promotes the elements' dtypes (a float16 array
    beside Python ints stays float16) and the arrays stay in the graph."""
    parts = [v if isinstance(v, array) else array(v, dtype) for v in val]
    if len({p.shape for p in parts}) > 1:
        raise ValueError(_NON_UNIFORM)
    d = dtype or dt.result_type(*parts)
    return ops.stack([ops.astype(p, d) for p in parts])


_NON_UNIFORM = "Initialization encountered non-uniform length."  # MLX's message, which names no op


def _to_numpy(val, dtype):
    """Convert a Python/numpy value to (numpy buffer, kiln dtype) with MLX's default dtypes; a list holding
    arrays gives (their lazy stack, its dtype) instead."""
    if isinstance(val, array):
        data = val._numpy()
        d = dtype or val.dtype
        return (data if d == val.dtype else data.astype(d.np)), d
    if isinstance(val, (bool, int, float, complex)) and not isinstance(val, np.generic):
        d = dtype or dt.scalar_dtype(val)
        if isinstance(val, int) and not isinstance(val, bool) and dtype is None and not -(2**31) <= val < 2**31:
            d = dt.int64
            if not -(2**63) <= val < 2**63:
                raise ValueError(f"[array] Integer {val} does not fit in int64.")
        return _cast(np.array(val), d), d
    if isinstance(val, (list, tuple)):
        flat = []
        if _flatten_list(val, flat):
            stacked = _stack_list(val, dtype)
            return stacked, stacked.dtype
        d = dtype or _infer_list_dtype(flat)
        try:
            data = np.array(val, dtype=object if d == dt.bfloat16 else None)
        except ValueError:
            raise ValueError(_NON_UNIFORM) from None
        if data.dtype == object and d != dt.bfloat16:
            raise ValueError(_NON_UNIFORM)
        if not flat and data.size == 0:
            d = dtype or dt.float32
        return _cast(data, d), d
    if isinstance(val, (np.ndarray, np.generic)):
        data = np.asarray(val)
        for n in data.shape:
            dt.check_dim(n)  # MLX's error names no op here
        if dtype is None:
            dtype = default_dtype(data.dtype)
        return _cast(data, dtype), dtype
    if hasattr(val, "__array__"):
        return _to_numpy(_foreign_numpy(val), dtype)
    if _exports_buffer(val):
        # The buffer protocol, as MLX reads it: bytes are uint8, array.array('f') float32, and so on.
        return _to_numpy(np.asarray(memoryview(val)), dtype)
    if val is None:
        raise TypeError("[array] Cannot convert None to an array.")
    raise ValueError(f"[array] Invalid type {type(val).__name__} received in array initialization.")


def _exports_buffer(val) -> bool:
    try:
        memoryview(val).release()
    except TypeError:
        return False
    return True


def _foreign_numpy(val) -> np.ndarray:
    """numpy's view of an object that converts itself (``__array__``). A torch bfloat16 tensor, which numpy
    cannot convert, is read through its bits (MLX reads it through DLPack)."""
    if str(getattr(val, "dtype", "")) == "torch.bfloat16":
        torch = sys.modules["torch"]
        return val.detach().cpu().view(torch.int16).numpy().view(dt.bfloat16.np)
    return np.asarray(val)


def _cast(data: np.ndarray, d: dt.Dtype) -> np.ndarray:
    if data.dtype == d.np:
        return np.array(data)  # own a copy: the caller may mutate theirs
    with np.errstate(all="ignore"):
        return data.astype(d.np)


from . import ops  # noqa: E402  (ops needs `array`; array's methods need ops)


def _method(name: str, fn):
    """Install fn as array.<name>, named so that tracebacks and help() read `array.__add__`."""
    fn.__name__ = name
    fn.__qualname__ = f"array.{name}"
    setattr(array, name, fn)


def _refuse_sequence(name: str, other):
    # MLX's operators take arrays and scalars only: `a + [1, 2]` is an error there, not an implicit array.
    if isinstance(other, (list, tuple)):
        raise ValueError(f"Cannot perform {name.strip('_')} on an array and {type(other).__name__}.")


def _forward(fn, reflected=False):
    def method(self, other):
        _refuse_sequence(method.__name__, other)
        return fn(other, self) if reflected else fn(self, other)

    return method


def _true_divide_in_place(self, other):
    # MLX refuses `/=` on integer arrays (the quotient would need a float array in place of an int one)
    if not dt.is_floating(self.dtype):
        raise ValueError("[divide] In place division cannot cast to non-floating point type.")
    return ops.divide(self, other)


def _equality(fn):
    """`==` / `!=` compare elementwise with arrays, scalars and numpy values; any other object (a string, a
    list, None) is simply not equal, as in MLX (Python then falls back to identity)."""

    def method(self, other):
        if isinstance(other, (array, bool, int, float, complex, np.ndarray, np.generic)):
            return fn(self, other)
        return NotImplemented

    return method


def _in_place(fn):
    """`a += b` as MLX does it: the array object itself (shared by every reference) takes the new value,
    while arrays computed from it earlier keep what they computed."""

    def method(self, other):
        _refuse_sequence(method.__name__, other)
        new = fn(self, other)
        self._rebind(new, self._snapshot())
        return self

    return method


def _install_operators():
    """Python operators and MLX's method forms, all forwarding to ops."""
    table = {
        "add": ops.add, "sub": ops.subtract, "mul": ops.multiply, "truediv": ops.divide,
        "floordiv": ops.floor_divide, "mod": ops.remainder, "pow": ops.power, "matmul": lambda a, b: ops.matmul(a, b),
        "and": lambda a, b: _bitwise_or_logical(ops.bitwise_and, ops.logical_and, a, b),
        "or": lambda a, b: _bitwise_or_logical(ops.bitwise_or, ops.logical_or, a, b),
        "xor": ops.bitwise_xor_any, "lshift": ops.left_shift, "rshift": ops.right_shift,
    }
    for name, fn in table.items():
        _method(f"__{name}__", _forward(fn))
        _method(f"__r{name}__", _forward(fn, reflected=True))
        _method(f"__i{name}__", _in_place(fn))
    _method("__itruediv__", _in_place(_true_divide_in_place))
    for name, fn in {"lt": ops.less, "le": ops.less_equal, "gt": ops.greater, "ge": ops.greater_equal}.items():
        _method(f"__{name}__", _forward(fn))
    _method("__eq__", _equality(ops.equal))
    _method("__ne__", _equality(ops.not_equal))
    _method("__neg__", lambda self: ops.negative(self))
    _method("__pos__", lambda self: self)
    _method("__abs__", lambda self: ops.abs(self))
    _method("__invert__", lambda self: ops.bitwise_invert(self))
    _method("__divmod__", lambda self, other: ops.divmod(self, other))
    _method("__rdivmod__", lambda self, other: ops.divmod(other, self))
    array.__hash__ = object.__hash__

    for name in ("abs", "exp", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "square", "reciprocal", "sin",
                 "cos", "sum", "prod", "max", "min", "mean", "var", "std", "all", "any", "argmax", "argmin",
                 "logsumexp", "cumsum", "cumprod", "cummax", "cummin", "swapaxes", "moveaxis",
                 "squeeze", "flatten", "unflatten", "round", "split", "maximum", "minimum"):
        fn = getattr(ops, name, None)
        if fn is not None and not hasattr(array, name):
            setattr(array, name, fn)
    # Methods whose ops live in modules owned elsewhere (linalg, complex): looked up when called.
    for name in ("diag", "diagonal", "conj", "conjugate", "logcumsumexp"):
        if not hasattr(array, name):
            _method(name, _late_bound(name))

    def reshape(self, *shape, stream=None):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        return ops.reshape(self, shape)

    def transpose(self, *axes, stream=None):
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return ops.transpose(self, axes or None)

    _method("reshape", reshape)
    _method("transpose", transpose)
    _method("view", lambda self, dtype, stream=None: ops.view(self, dtype))


def _late_bound(name: str):
    def method(self, *args, **kwargs):
        from importlib import import_module

        core = import_module(__package__)
        if not hasattr(core, name):
            raise AttributeError(f"[{name}] kiln.core has no {name} yet.")
        return getattr(core, name)(self, *args, **kwargs)

    return method


def _bitwise_or_logical(bitwise, logical, a, b):
    a_bool = (isinstance(a, array) and a.dtype == dt.bool_) or isinstance(a, bool)
    b_bool = (isinstance(b, array) and b.dtype == dt.bool_) or isinstance(b, bool)
    return logical(a, b) if a_bool and b_bool else bitwise(a, b)


_install_operators()
