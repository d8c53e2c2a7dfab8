"""compile(): trace a function into a Graph once per input signature, cache it, and run the cached
Program (engine kernels, or the reference interpreter) on later calls without running user Python.

The cache key is injective: every argument leaf carries a type tag (lists, tuples, dicts, True, 1, 1.0,
"1" and None all differ), arrays contribute dtype and shape (ndim only when shapeless), and repeated
array objects are recorded as aliases. `inputs=` containers are read and `outputs=` containers written
back on every call, which is how model and optimizer state, and `mx.random.state`, flow through.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import os
import sys
import threading
import time
import warnings
import weakref

import numpy as np

from . import engine, env  # loaded with kiln.core, not inside the first compiled call (it dlopens the extension)
from .array import PlaceholderError, array, bind, transform_depth, transform_scope
from .graph import Lit
from .shape_check import graph_at_shapes, is_rank_agnostic
from .tracing import (UncapturedInputError, graph_from_outputs, note_bound_decision, note_rank_decision, replace_arrays,
                      shapeless_scope, watch_shape_decisions)

__all__ = ["compile", "disable_compile", "enable_compile", "engine_status"]

_CACHE_SIZE = 64  # traces kept per function (LRU)
_WARN_AFTER = 8  # retraces of one function (or code object) before kiln explains why, once
_state = {"enabled": True}


def disable_compile() -> None:
    """Make every compiled function (also ones compiled earlier) run eagerly.

    Returns:
        None
    """
    _state["enabled"] = False


def enable_compile() -> None:
    """Undo `disable_compile` (the MLX_DISABLE_COMPILE environment variable still wins).

    Returns:
        None
    """
    _state["enabled"] = True


def _env_flag(name: str, value_matters: bool = False):
    """A cheap check of an environment variable for the per-call hot path (os.environ encodes the key
    on every lookup). Presence alone counts (MLX's rule), or, with value_matters, a value other than
    empty or an off spelling (env.OFF: 0, off, false, no)."""
    data = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    spellings = ("",) + tuple(w for s in env.OFF for w in (s, s.upper(), s.capitalize()))
    if not (isinstance(data, dict) and encode is not None):
        if value_matters:
            return lambda: os.environ.get(name, "0") not in spellings
        return lambda: name in os.environ
    key = encode(name)
    if value_matters:
        off = (None,) + tuple(encode(w) for w in spellings)
        return lambda: data.get(key) not in off
    return lambda: key in data


_disable_env_set = _env_flag("MLX_DISABLE_COMPILE")
_debug_env_set = _env_flag("KILN_DEBUG", value_matters=True)


def _debug_level_4() -> bool:
    """KILN_DEBUG >= 4 (run timings), checked cheaply on the hot path."""
    return _debug_env_set() and _debug_level() >= 4
_verify_env_set = _env_flag("KILN_VERIFY", value_matters=True)


def _compile_disabled() -> bool:
    return not _state["enabled"] or _disable_env_set()


def _debug_level() -> int:
    return env.debug_level()


# -- keys ---------------------------------------------------------------------------------------------
class _Unsupported(Exception):
    pass


def _leaf_key(x, shapeless: bool, leaves: list, seen: dict):
    """Type-tagged key of one leaf; arrays are appended to `leaves` (once per object)."""
    if isinstance(x, array):
        k = seen.get(id(x))
        if k is not None:
            return ("alias", k)
        seen[id(x)] = len(leaves)
        leaves.append(x)
        return ("a", x._dtype.name, len(x._shape) if shapeless else x._shape)
    t = type(x)
    if t is bool:
        return ("b", x)
    if t is int:
        return ("i", x)
    if t is float:
        return ("f", x.hex())  # hex: -0.0 differs from 0.0, NaN is comparable
    if t is str:
        return ("s", x)
    if x is None:
        return ("n",)
    if t is complex:
        return ("c", x.real.hex(), x.imag.hex())
    if isinstance(x, np.floating):
        return ("np", type(x), float(x).hex())  # exact for every numpy float width; keeps -0.0 and NaN
    if isinstance(x, (np.integer, np.bool_)):
        return ("np", type(x), x.item())
    raise _Unsupported(type(x).__name__)


def _dict_key_tag(k):
    """Dict keys compare by type and value: {1: x}, {True: x} and {1.0: x} are different trees."""
    try:
        return _leaf_key(k, False, [], {})
    except _Unsupported:
        return ("k", type(k), k)


def _tree_key(tree, shapeless, leaves, seen):
    if isinstance(tree, (list, tuple)):
        tag = "l" if type(tree) is list else "t"
        return (tag, type(tree), tuple(_tree_key(c, shapeless, leaves, seen) for c in tree))
    if isinstance(tree, dict):
        return ("d", type(tree),
                tuple((_dict_key_tag(k), _tree_key(v, shapeless, leaves, seen)) for k, v in tree.items()))
    return _leaf_key(tree, shapeless, leaves, seen)


def _captured_leaves(tree, path=()):
    """(path, array) pairs of the arrays inside an inputs= container, in order."""
    out = []
    if isinstance(tree, array):
        out.append((path, tree))
    elif isinstance(tree, (list, tuple)):
        for i, c in enumerate(tree):
            out.extend(_captured_leaves(c, path + (i,)))
    elif isinstance(tree, dict):
        for k, c in tree.items():
            out.extend(_captured_leaves(c, path + (k,)))
    return out


def _set_path(root, path, value):
    node = root
    for p in path[:-1]:
        node = node[p]
    if isinstance(node, tuple):
        raise ValueError("[compile] Captured state must be held in lists or dicts, not tuples.")
    node[path[-1]] = value


class _TreeDef:
    """The structure of a function's return value: rebuilds it from a list of arrays."""

    def __init__(self, tree, leaves: list):
        self.spec = self._spec(tree, leaves)

    def _spec(self, tree, leaves):
        if isinstance(tree, array):
            leaves.append(tree)
            return ("A",)
        if isinstance(tree, tuple):
            return ("T", type(tree), [self._spec(c, leaves) for c in tree])
        if isinstance(tree, list):
            return ("L", None, [self._spec(c, leaves) for c in tree])
        if isinstance(tree, dict):
            return ("D", list(tree.keys()), [self._spec(v, leaves) for v in tree.values()])
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return ("C", tree)
        raise ValueError(f"[compile] Compiled functions must return arrays or trees of arrays (and constants); "
                         f"got {type(tree).__name__}.")

    def build(self, values: list):
        if self.spec[0] == "A":  # a single array, the common case
            return values[0]
        return self._build(self.spec, iter(values))

    def _build(self, spec, it):
        tag = spec[0]
        if tag == "A":
            return next(it)
        if tag == "C":
            return spec[1]
        if tag == "T":
            items = [self._build(s, it) for s in spec[2]]
            return spec[1](*items) if hasattr(spec[1], "_fields") else spec[1](items)
        if tag == "L":
            return [self._build(s, it) for s in spec[2]]
        return {k: self._build(s, it) for k, s in zip(spec[1], spec[2])}


# -- cache entries -----------------------------------------------------------------------------------
class _Entry:
    __slots__ = ("graph", "program", "treedef", "n_out", "state_paths", "checked_shapes", "key", "inputs", "outputs",
                 "rank_agnostic", "bounds_fixed")

    def __init__(self, graph, program, treedef, n_out, state_paths, key):
        self.graph = graph
        self.program = program
        self.treedef = treedef
        self.n_out = n_out
        self.state_paths = state_paths  # where each captured output goes in the outputs= container
        self.checked_shapes = None
        self.key = key
        # A shapeless trace valid at every input rank (rank-agnostic equations, no rank decisions in ops).
        self.rank_agnostic = False
        # Some slice bounds were resolved against the traced sizes (tracing.note_bound_decision).
        self.bounds_fixed = True

    def at_shapes(self, key, leaves) -> "_Entry":
        """This rank-agnostic trace re-typed for `leaves` of other ranks: a new Program, no retrace."""
        graph = graph_at_shapes(self.graph, [x.shape for x in leaves])
        entry = _Entry(graph, _make_program(graph, True), self.treedef, self.n_out, self.state_paths, key)
        entry.rank_agnostic = True
        entry.bounds_fixed = self.bounds_fixed
        entry.inputs = self.inputs
        entry.outputs = self.outputs
        return entry


class _Interpreted:
    """A Program that runs the traced graph on the reference interpreter."""

    def __init__(self, graph):
        self.graph = graph
        self.kernel_sources = {}

    def run(self, inputs):
        from .interpret import interpret

        return interpret(self.graph, inputs)


def _make_program(graph, shapeless: bool):
    if engine.available():
        # shapeless: the engine keeps reshapes and broadcasts that are no-ops only at the traced shape
        return engine.compile_graph(graph, shapeless=shapeless)
    return _Interpreted(graph)


class _FunctionCache(collections.OrderedDict):
    """One function's traces, least recently used first; `warned` once it has been explained."""

    warned = False


# Traces per code object, to explain recompiling fresh lambdas (guide: "don't do this"). Weak, so code
# made by exec/eval in a loop does not pile up.
_code_traces = weakref.WeakKeyDictionary()
_warned_codes = weakref.WeakSet()
# id(owner) -> (weak or strong reference to owner, {tag: _FunctionCache}). Keyed by identity, not
# equality: two callables that compare equal (or are unhashable, like an nn.Module) never share traces.
_tables = {}
_cache_lock = threading.RLock()


def _owner_and_tag(fun):
    if inspect.ismethod(fun):
        return fun.__self__, fun.__func__
    return fun, None


def _forget(owner_id, ref):
    entry = _tables.get(owner_id)
    if entry is not None and entry[0] is ref:
        del _tables[owner_id]


def _cache_for(fun) -> _FunctionCache:
    """The trace cache shared by every `compile` of `fun` (its own, unshared one if `fun` has no weakref)."""
    owner, tag = _owner_and_tag(fun)
    with _cache_lock:
        entry = _tables.get(id(owner))
        if entry is None or entry[0]() is not owner:
            try:
                ref = weakref.ref(owner, functools.partial(_forget, id(owner)))
            except TypeError:
                # Without a weakref we could neither free the table with its owner nor trust its id later.
                return _FunctionCache()
            entry = (ref, {})
            _tables[id(owner)] = entry
        return entry[1].setdefault(tag, _FunctionCache())


def _count_trace(code) -> int:
    if code is None:
        return 0
    try:
        n = _code_traces.get(code, 0) + 1
        _code_traces[code] = n
    except TypeError:
        return 0
    return n


# -- explaining recompilations -------------------------------------------------------------------------
def _render(k) -> str:
    """A key (or part of one) as the Python-like text a person would write: f32[3], 0.5, [1], (1,)."""
    tag = k[0]
    if tag == "a":
        from .dtypes import from_name

        dims = ",".join(str(s) for s in k[2]) if isinstance(k[2], tuple) else ",".join("?" * k[2])
        return f"{from_name(k[1]).short}[{dims}]"
    if tag == "alias":
        return f"the same array as input #{k[1]}"
    if tag in ("b", "i", "s", "k"):
        return repr(k[-1])
    if tag == "f":
        return repr(float.fromhex(k[1]))
    if tag == "n":
        return "None"
    if tag == "c":
        return repr(complex(float.fromhex(k[1]), float.fromhex(k[2])))
    if tag == "np":
        value = float.fromhex(k[2]) if isinstance(k[2], str) else k[2]
        return f"{k[1].__name__}({value!r})"
    if tag == "d":
        return "{" + ", ".join(f"{_render(kk)}: {_render(v)}" for kk, v in k[2]) + "}"
    items = [_render(c) for c in k[2]]
    if tag == "l":
        return "[" + ", ".join(items) + "]"
    if hasattr(k[1], "_fields"):
        return f"{k[1].__name__}({', '.join(items)})"
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _labelled(k, label, out: dict):
    """Flatten a key into {label: (comparable summary, subtree)}: containers summarise their structure."""
    tag = k[0]
    if tag in ("l", "t"):
        out[label] = (("struct", tag, k[1], len(k[2])), k)
        for i, c in enumerate(k[2]):
            _labelled(c, f"{label}[{i}]", out)
    elif tag == "d":
        out[label] = (("struct", tag, k[1], tuple(kk for kk, _ in k[2])), k)
        for kk, c in k[2]:
            _labelled(c, f"{label}[{_render(kk)}]", out)
    else:
        out[label] = (k, k)


def _labelled_key(key, names) -> dict:
    args, kwargs = key[3]
    out = {"arguments": (("n", len(args), tuple(n for n, _ in kwargs)), None)}
    for i, k in enumerate(args):
        _labelled(k, f"argument {names[i] if i < len(names) else f'#{i}'}", out)
    for name, k in kwargs:
        _labelled(k, f"argument {name}", out)
    for path, k in key[4]:
        _labelled(k, "captured input " + "".join(f"[{p!r}]" for p in path), out)
    return out


def _rankless(k):
    """A key (or part of one) with the ranks of its arrays left out: shapeless keys that differ only there."""
    tag = k[0]
    if tag == "a":
        return ("a", k[1])
    if tag in ("l", "t"):
        return (tag, k[1], tuple(_rankless(c) for c in k[2]))
    if tag == "d":
        return (tag, k[1], tuple((kk, _rankless(c)) for kk, c in k[2]))
    return k


def _rankless_key(key):
    args, kwargs = key[3]
    return key[:3] + ((tuple(_rankless(a) for a in args), tuple((n, _rankless(v)) for n, v in kwargs)),
                      tuple((path, _rankless(v)) for path, v in key[4]))


def _describe_change(label, old, new) -> str:
    if label == "arguments":
        if old[0][1] != new[0][1]:
            return f"number of positional arguments: {old[0][1]} -> {new[0][1]}"
        return f"keyword arguments: {list(old[0][2])} -> {list(new[0][2])}"
    if old is None:
        return f"{label}: new, {_render(new[1])}"
    before, after = old[1], new[1]
    constants = before[0] not in ("a", "alias", "l", "t", "d") and after[0] not in ("a", "alias", "l", "t", "d")
    prefix = "constant " if constants else ""
    return f"{prefix}{label}: {_render(before)} -> {_render(after)}"


def _describe_key_diff(new, old, names) -> str:
    """First difference between two keys, phrased for a person."""
    new_l, old_l = _labelled_key(new, names), _labelled_key(old, names)
    for label, value in new_l.items():
        before = old_l.get(label)
        if before is None or before[0] != value[0]:
            return _describe_change(label, before, value)
    for label in old_l:
        if label not in new_l:
            return f"{label}: removed"
    if new[:3] != old[:3]:
        return "different inputs=/outputs= containers or shapeless setting"
    return "a different configuration"


def _similarity(a, b, names) -> int:
    la, lb = _labelled_key(a, names), _labelled_key(b, names)
    return sum(1 for label, v in la.items() if label in lb and lb[label][0] == v[0])


def _most_changing(keys, names) -> tuple:
    """The labelled leaf with the most distinct values over `keys` (what keeps forcing recompiles)."""
    seen = collections.defaultdict(set)
    for k in keys:
        for label, (summary, _) in _labelled_key(k, names).items():
            try:
                seen[label].add(summary)
            except TypeError:
                pass
    label = max(seen, key=lambda name: len(seen[name]))
    return label, len(seen[label])


_NONE_ID = id(None)


def _distinct_arrays(args) -> bool:
    """All positional arguments are arrays, no object twice (so no aliasing to record in the key)."""
    for a in args:
        if type(a) is not array:
            return False
    n = len(args)
    return n < 2 or (n == 2 and args[0] is not args[1]) or len({id(a) for a in args}) == n


class CompiledFunction:
    """The callable returned by `compile`."""

    def __init__(self, fun, inputs=None, outputs=None, shapeless=False):
        self.fun = fun
        self.inputs = inputs
        self.outputs = outputs
        self.shapeless = bool(shapeless)
        self._cache = _cache_for(fun)
        functools.update_wrapper(self, fun)
        try:
            self.__signature__ = inspect.signature(fun)
        except (TypeError, ValueError):
            pass

    def __get__(self, obj, objtype=None):
        # As a method decorator: bind like a function would; traces are cached per instance.
        getter = getattr(type(self.fun), "__get__", None)
        if obj is None or getter is None:
            return self  # like any callable that is not a descriptor
        # One bound CompiledFunction per instance, made on first access (building one costs ~30 us).
        bound = self.__dict__.setdefault("_bound", {})
        held = bound.get(id(obj))
        if held is not None and held[0]() is obj:
            return held[1]
        method = CompiledFunction(getter(self.fun, obj, objtype), self.inputs, self.outputs, self.shapeless)
        try:
            ref = weakref.ref(obj, lambda _, key=id(obj): bound.pop(key, None))
        except TypeError:
            return method  # no weakref: we could not tell a later object with the same id apart
        bound[id(obj)] = (ref, method)
        return method

    @property
    def _arg_names(self) -> list:
        """Labels of positional arguments (for recompile explanations): x, y, then args[0]... for *args."""
        signature = getattr(self, "__signature__", None)
        names = []
        if signature is None:
            return names
        for param in signature.parameters.values():
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                names.append(param.name)
            elif param.kind == param.VAR_POSITIONAL:
                names.extend(f"{param.name}[{i}]" for i in range(64))
                break
        return names

    def _key(self, args, kwargs):
        if not kwargs and self.inputs is None and _distinct_arrays(args):
            # The common call, f(x, y) with arrays: the same key as the general path below, built directly.
            sl = self.shapeless
            arg_key = (tuple(("a", a._dtype.name, len(a._shape) if sl else a._shape) for a in args), ())
            return (_NONE_ID, id(self.outputs), sl, arg_key, ()), list(args), len(args), []
        leaves, seen = [], {}
        try:
            arg_key = (tuple(_tree_key(a, self.shapeless, leaves, seen) for a in args),
                       tuple((k, _tree_key(v, self.shapeless, leaves, seen)) for k, v in kwargs.items()))
        except _Unsupported as e:
            raise ValueError(f"[compile] Function arguments must be trees (lists, tuples, dicts) of arrays or "
                             f"constants (bool, int, float, str, None); got an argument of type {e}.") from None
        n_args = len(leaves)
        state_leaves = _captured_leaves(self.inputs) if self.inputs is not None else []
        state_key = tuple((path, _leaf_key(a, self.shapeless, leaves, seen)) for path, a in state_leaves)
        key = (id(self.inputs), id(self.outputs), self.shapeless, arg_key, state_key)
        return key, leaves, n_args, state_leaves

    def _lookup(self, key):
        entry = self._cache.get(key)
        # The key holds the containers' ids; a container that died may have left its id to a new one.
        if entry is None or entry.inputs is not self.inputs or entry.outputs is not self.outputs:
            return None
        try:
            self._cache.move_to_end(key)  # least recently used goes first
        except KeyError:
            pass  # evicted meanwhile by another thread: the entry is still valid for this call
        return entry

    def __call__(self, *args, **kwargs):
        if _compile_disabled():
            return self.fun(*args, **kwargs)
        key, leaves, n_args, state_leaves = self._key(args, kwargs)
        entry = self._lookup(key)
        fresh = entry is None
        if fresh:
            try:
                entry, snapshot = self._trace(key, args, kwargs, leaves, n_args, state_leaves)
            except (UncapturedInputError, PlaceholderError):
                if transform_depth() == 0:
                    raise
                # Inside another transform the function read a value that transform traces (a closure over
                # its argument, or over a vmapped value): MLX runs such a function itself, uncompiled.
                return self.fun(*args, **kwargs)
        try:
            if transform_depth() > 0:
                if self.shapeless:
                    self._check_shapes(entry, leaves)
                if not entry.rank_agnostic:
                    note_rank_decision()  # an enclosing shapeless trace now holds equations fixed at this rank
                if entry.bounds_fixed:
                    note_bound_decision()  # ... and slice bounds fixed at these sizes
                values = replay_graph(entry.graph, leaves)
            else:
                values = self._run(entry, leaves)
        except BaseException:
            if fresh and snapshot is not None:
                _restore(snapshot)  # never leave placeholders in the user's containers
            raise
        self._write_back(entry, values[entry.n_out:])
        return entry.treedef.build(values[: entry.n_out])

    # -- the hot path ---------------------------------------------------------------------------------
    def _run(self, entry, leaves):
        buffers = [x._data if x._data is not None else x._numpy() for x in leaves]
        if self.shapeless:
            self._check_shapes(entry, leaves)
        if _debug_level_4():
            started = time.perf_counter()
            outs = entry.program.run(buffers)
            print(f"[kiln] ran '{getattr(self.fun, '__name__', 'function')}' in "
                  f"{1e6 * (time.perf_counter() - started):.1f} us", file=sys.stderr)
        else:
            outs = entry.program.run(buffers)
        graph_outs = entry.graph.outputs
        result = [array._from_numpy(o, v.dtype) for o, v in zip(outs, graph_outs)]
        if _verify_env_set():
            from .verify import verify_program

            verify_program(entry.graph, buffers, outs)
        return result

    def _check_shapes(self, entry, leaves):
        """Shapeless replay: re-run every shape rule for new input shapes, so errors name the operation."""
        shapes = tuple(x.shape for x in leaves)
        if entry.checked_shapes == shapes:
            return
        from .shape_check import check_graph_shapes

        check_graph_shapes(entry.graph, shapes, entry.bounds_fixed)
        entry.checked_shapes = shapes

    def _write_back(self, entry, values):
        for path, value in zip(entry.state_paths, values):
            _set_path(self.outputs, path, value)

    # -- the miss path -------------------------------------------------------------------------------
    def _trace(self, key, args, kwargs, leaves, n_args, state_leaves):
        """(entry, snapshot of the captured containers or None when another thread traced it first)."""
        with _cache_lock:
            entry = self._lookup(key)
            if entry is not None:
                return entry, None
            entry = self._at_new_ranks(key, leaves)
            if entry is not None:
                self._cache[key] = entry
                return entry, None
            self._explain(key)
            snapshot = _snapshot([self.inputs, self.outputs])
            entry = self._trace_locked(key, args, kwargs, leaves, n_args, state_leaves, snapshot)
            self._cache[key] = entry
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return entry, snapshot

    def _at_new_ranks(self, key, leaves):
        """A rank-agnostic shapeless trace that differs from `key` only in input ranks, re-typed; or None."""
        if not self.shapeless:
            return None
        rankless = _rankless_key(key)
        for other in reversed(list(self._cache.values())):
            if other.rank_agnostic and other.inputs is self.inputs and other.outputs is self.outputs \
                    and _rankless_key(other.key) == rankless:
                if _debug_level() >= 1:
                    name = getattr(self.fun, "__name__", "function")
                    print(f"[kiln] '{name}': the shapeless trace serves new input ranks "
                          f"({_describe_key_diff(key, other.key, self._arg_names)}); no retrace", file=sys.stderr)
                return other.at_shapes(key, leaves)
        return None

    def _trace_locked(self, key, args, kwargs, leaves, n_args, state_leaves, snapshot):
        started = time.perf_counter()
        name = getattr(self.fun, "__name__", "function")
        origin = f"the compiled function '{name}'"
        placeholders = [array._make_placeholder(x.shape, x.dtype, origin) for x in leaves]
        # The function sees copies of the placeholders, so an in-place update of an argument
        # (x[0] = 1) rebinds the copy and leaves the graph's inputs intact. The tracer elides copies.
        by_id = {id(x): bind("copy", p) for x, p in zip(leaves, placeholders)}
        traced_args = replace_arrays(list(args), lambda x: by_id[id(x)])
        traced_kwargs = replace_arrays(dict(kwargs), lambda x: by_id[id(x)])
        try:
            for path, x in state_leaves:
                _set_path(self.inputs, path, by_id[id(x)])
            with transform_scope(), (shapeless_scope() if self.shapeless else contextlib.nullcontext()), \
                    watch_shape_decisions() as decisions:
                result = self.fun(*traced_args, **traced_kwargs)
            out_leaves = []
            treedef = _TreeDef(result, out_leaves)
            state_paths, state_values = [], []
            if self.outputs is not None:
                for path, value in _captured_leaves(self.outputs):
                    state_paths.append(path)
                    state_values.append(value)
            graph = graph_from_outputs(out_leaves + state_values, placeholders, leaves)
        except BaseException:
            _restore(snapshot)
            raise
        # Containers only read (inputs=, not outputs=) go back as they were: a side effect on them would
        # not repeat on cached calls, and a placeholder left there would break the next use.
        written = {id(c) for c, _ in _snapshot([self.outputs])}
        _restore([(c, contents) for c, contents in snapshot if id(c) not in written])
        # Read-and-written slots go back to their real arrays; outputs= slots are written after the run.
        for path, x in state_leaves:
            try:
                node = self.inputs
                for p in path[:-1]:
                    node = node[p]
                if node[path[-1]] is by_id[id(x)]:
                    node[path[-1]] = x
            except (KeyError, IndexError, TypeError):
                pass
        if _debug_level() >= 2:
            print(f"[kiln] traced graph of '{name}':\n{graph}", file=sys.stderr)
        traced = time.perf_counter()
        program = _make_program(graph, self.shapeless)
        if _debug_level() >= 4:
            print(f"[kiln] '{name}': traced in {1e3 * (traced - started):.2f} ms ({len(graph.eqns)} equations), "
                  f"compiled in {1e3 * (time.perf_counter() - traced):.2f} ms "
                  f"({len(program.kernel_sources)} kernels)", file=sys.stderr)
        # The optimised graph and kernel sources are logged by the engine, once, as it builds them.
        entry = _Entry(graph, program, treedef, len(out_leaves), state_paths, key)
        entry.rank_agnostic = self.shapeless and decisions[0] == 0 and is_rank_agnostic(graph)
        entry.bounds_fixed = not self.shapeless or decisions[1] > 0
        entry.inputs = self.inputs
        entry.outputs = self.outputs
        return entry

    def _explain(self, key):
        """Log why we (re)compile (KILN_DEBUG) and warn once about functions that keep recompiling."""
        name = getattr(self.fun, "__name__", "function")
        code = getattr(self.fun, "__code__", None)
        where = f"{code.co_filename}:{code.co_firstlineno}" if code else "?"
        n_code = _count_trace(code)
        names = self._arg_names
        earlier = [e.key for e in list(self._cache.values())]
        if earlier:
            # Ties go to the most recently used trace.
            closest = max(reversed(earlier), key=lambda k: _similarity(k, key, names))
            reason = _describe_key_diff(key, closest, names)
        elif n_code > 1:
            reason = f"new function object defined at {where}"
        else:
            reason = "first call"
        if _debug_level() >= 1:
            print(f"[kiln] compiling '{name}' ({where}): {reason}", file=sys.stderr)
        if not earlier and n_code >= _WARN_AFTER and code not in _warned_codes:
            _warned_codes.add(code)
            warnings.warn(f"[compile] '{name}' defined at {where} has been compiled {n_code} times as a new "
                          "function object each time (e.g. a lambda compiled inside a loop). Compile it once "
                          "and reuse the compiled function.", stacklevel=4)
        elif len(earlier) + 1 >= _WARN_AFTER and not self._cache.warned:
            self._cache.warned = True
            label, count = _most_changing(earlier + [key], names)
            warnings.warn(f"[compile] '{name}' ({where}) has been compiled {len(earlier) + 1} times: {label} keeps "
                          f"changing ({count} different shapes, dtypes or values; latest: {reason}). Pass values "
                          "that change as arrays, or use shapeless=True for changing shapes.", stacklevel=4)

    # -- introspection -------------------------------------------------------------------------------
    def graphs(self, *args, **kwargs) -> dict:
        """The traced graph, the optimised graph and kernel sources for these arguments (as text)."""
        key, leaves, n_args, state_leaves = self._key(args, kwargs)
        entry = self._lookup(key)
        if entry is None:
            entry, _ = self._trace(key, args, kwargs, leaves, n_args, state_leaves)
        return {"traced": str(entry.graph), "optimized": str(entry.program.graph),
                "kernels": dict(entry.program.kernel_sources)}


def _snapshot(containers):
    """Contents of every list/dict reachable from containers, to restore them if a trace fails."""
    saved, stack, seen = [], [c for c in containers if c is not None], set()
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        if isinstance(c, list):
            saved.append((c, list(c)))
            stack.extend(c)
        elif isinstance(c, dict):
            saved.append((c, dict(c)))
            stack.extend(c.values())
        elif isinstance(c, tuple):
            stack.extend(c)
    return saved


def _restore(saved):
    for c, contents in saved:
        if isinstance(c, list):
            c[:] = contents
        else:
            dict.clear(c)
            for k, v in contents.items():
                dict.__setitem__(c, k, v)


def replay_graph(graph, inputs: list) -> list:
    """Re-record a Graph's equations as lazy nodes on `inputs` (inlining into an outer trace/transform)."""
    env = {}
    for var, value in zip(graph.consts, graph.const_values):
        env[id(var)] = array._from_numpy(value, var.dtype)
    for var, value in zip(graph.inputs, inputs):
        env[id(var)] = value

    def read(v):
        if isinstance(v, Lit):
            return array._from_numpy(np.array(v.value, dtype=v.dtype.np), v.dtype)
        return env[id(v)]

    for eqn in graph.eqns:
        env[id(eqn.out)] = bind(eqn.prim, *(read(v) for v in eqn.inputs), **eqn.params)
    return [read(v) for v in graph.outputs]


def compile(fun=None, inputs=None, outputs=None, shapeless: bool = False):  # noqa: A001
    """Compile `fun`: trace it once per input signature, then run the optimised graph (MLX's ``mx.compile``).

    The first call with new input shapes, dtypes or constants traces ``fun`` on placeholder arrays, simplifies
    and fuses the graph and JIT-compiles its kernels; later calls with the same signature run the cached
    program without running ``fun``'s Python. ``fun`` must be pure: arrays it reads that are not arguments
    are frozen at the first trace (capture them with ``inputs=``), and arrays it stores elsewhere must be
    returned or captured with ``outputs=``. Evaluating a traced array inside ``fun`` (``print``, ``.item()``)
    raises a ``ValueError``.

    Use it as a function or as a decorator, with or without arguments::

        import kiln.core as mx

        @mx.compile
        def gelu(x):
            return x * (1 + mx.erf(x / 2 ** 0.5)) / 2

        @mx.compile(shapeless=True)            # or partial(mx.compile, shapeless=True)
        def scale(x, y):
            return mx.abs(x + y)

        state = [mx.random.state]              # random layers: let the key advance between calls
        step = mx.compile(train_step, inputs=state, outputs=state)

    Environment switches: ``MLX_DISABLE_COMPILE`` (set to anything: run every compiled function eagerly,
    as ``disable_compile()`` does); ``KILN_ENGINE=0`` (run compiled graphs on the numpy reference interpreter
    instead of C++ kernels; ``off``/``false``/``no`` also work); ``KILN_DEBUG=1..4`` (on stderr: why each
    (re)compilation happened; the graphs before and after simplification and fusion; kernel source;
    timings); ``KILN_VERIFY=1`` (check every compiled call against the interpreter); ``KILN_CACHE_DIR``
    (where compiled kernels are kept, a private directory); ``KILN_NUM_THREADS`` (threads per kernel).

    Args:
        fun (Callable, optional): The function to compile. Omitted: returns a decorator with these settings.
        inputs (list or dict, optional): A tree (list, dict, module state...) of arrays read as implicit
          inputs on every call.
        outputs (list or dict, optional): A tree of arrays written back as implicit outputs after every call.
        shapeless (bool, optional): Compile once for inputs of any shape. A dtype change recompiles; a rank
          change recompiles only when the traced graph depends on the rank (reductions, transposes,
          reshapes). Default: ``False``.

    Returns:
        Callable: The compiled function (``.graphs(*args)`` shows its traced and optimised graphs and kernels).
    """
    if fun is None:
        return functools.partial(compile, inputs=inputs, outputs=outputs, shapeless=shapeless)
    if not callable(fun):
        raise ValueError(f"[compile] Expected a callable, got {type(fun).__name__}.")
    _check_capture(inputs, "inputs")
    _check_capture(outputs, "outputs")
    return CompiledFunction(fun, inputs, outputs, shapeless)


def _check_capture(tree, what: str):
    """inputs=/outputs= must let compile swap arrays in place: lists and dicts, not bare arrays or tuples."""
    if isinstance(tree, array):
        raise ValueError(f"[compile] {what}= must be a container (list or dict, possibly nested) of arrays, "
                         f"not an array: pass {what}=[a] and read a[0].")
    for path, _ in _captured_leaves(tree):
        node = tree
        for p in path[:-1]:
            node = node[p]
        if isinstance(node, tuple):
            raise ValueError(f"[compile] Captured state must be held in lists or dicts, not tuples "
                             f"({what}= holds a tuple at {''.join(f'[{p!r}]' for p in path[:-1]) or 'the top'}).")


def engine_status() -> str:
    """Which backend runs compiled graphs, in words (for the tour and benchmarks).

    Returns:
        str: e.g. ``"C++ engine"`` or why the reference interpreter runs instead.
    """
    if not env.engine_enabled():
        return f"KILN_ENGINE={os.environ.get('KILN_ENGINE')}: reference interpreter"
    return "C++ engine" if engine.available() else "C++ engine unavailable: reference interpreter"
