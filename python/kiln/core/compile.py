"""compile(): trace a function into a Graph once per input signature, cache it, and run the cached
Program (engine kernels, or the reference interpreter) on later calls without running user Python.

The cache key is injective: every argument leaf carries a type tag (lists, tuples, dicts, True, 1, 1.0,
"1" and None all differ), arrays contribute dtype and shape (ndim only when shapeless), and repeated
array objects are recorded as aliases. `inputs=` containers are read and `outputs=` containers written
back on every call, which is how model and optimizer state, and `mx.random.state`, flow through.
"""

from __future__ import annotations

import collections
import functools
import inspect
import os
import sys
import threading
import warnings
import weakref

import numpy as np

from .array import array, bind, transform_depth, transform_scope
from .graph import Lit
from .trace import graph_from_outputs

__all__ = ["compile", "disable_compile", "enable_compile", "engine_status"]

_CACHE_SIZE = 64  # traces kept per function (LRU)
_WARN_AFTER = 8  # retraces of one function (or code object) before kiln explains why, once
_state = {"enabled": True}


def disable_compile() -> None:
    """Make every compiled function (also ones compiled earlier) run eagerly."""
    _state["enabled"] = False


def enable_compile() -> None:
    """Undo `disable_compile` (the MLX_DISABLE_COMPILE environment variable still wins)."""
    _state["enabled"] = True


def _compile_disabled() -> bool:
    return not _state["enabled"] or "MLX_DISABLE_COMPILE" in os.environ


def _debug_level() -> int:
    try:
        return int(os.environ.get("KILN_DEBUG", "0") or 0)
    except ValueError:
        return 1


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
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return ("np", type(x).__name__, x.item())
    raise _Unsupported(type(x).__name__)


def _tree_key(tree, shapeless, leaves, seen):
    if isinstance(tree, (list, tuple)):
        tag = "l" if type(tree) is list else ("t", type(tree).__qualname__)
        return (tag, tuple(_tree_key(c, shapeless, leaves, seen) for c in tree))
    if isinstance(tree, dict):
        return ("d", type(tree).__qualname__,
                tuple((k, _tree_key(v, shapeless, leaves, seen)) for k, v in tree.items()))
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


# -- rebuilding argument trees with placeholders ------------------------------------------------------
def _rebuild(tree, replace):
    """A copy of the tree structure with arrays mapped through `replace` (types are preserved)."""
    if isinstance(tree, array):
        return replace(tree)
    if isinstance(tree, tuple):
        items = [_rebuild(c, replace) for c in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    if isinstance(tree, list):
        return [_rebuild(c, replace) for c in tree]
    if isinstance(tree, dict):
        if type(tree) is dict:
            return {k: _rebuild(v, replace) for k, v in tree.items()}
        new = _shallow_copy(tree)
        for k, v in tree.items():
            dict.__setitem__(new, k, _rebuild(v, replace))
        return new
    return tree


def _shallow_copy(obj):
    import copy

    return copy.copy(obj)


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
        it = iter(values)
        return self._build(self.spec, it)

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
    __slots__ = ("graph", "program", "treedef", "n_out", "state_paths", "checked_shapes", "key")

    def __init__(self, graph, program, treedef, n_out, state_paths, key):
        self.graph = graph
        self.program = program
        self.treedef = treedef
        self.n_out = n_out
        self.state_paths = state_paths  # where each captured output goes in the outputs= container
        self.checked_shapes = None
        self.key = key


class _Interpreted:
    """A Program that runs the traced graph on the reference interpreter."""

    def __init__(self, graph):
        self.graph = graph
        self.kernel_sources = {}

    def run(self, inputs):
        from .interpret import interpret

        return interpret(self.graph, inputs)


def _make_program(graph):
    if os.environ.get("KILN_ENGINE", "1") != "0":
        try:
            from . import engine
        except ImportError:
            engine = None
        if engine is not None and engine.available():
            return engine.compile_graph(graph)
    return _Interpreted(graph)


# Traces per code object, to explain recompiling fresh lambdas (guide: "don't do this").
_code_traces = collections.Counter()
_warned_codes = set()
_caches = weakref.WeakKeyDictionary()
_strong_caches = {}
_cache_lock = threading.RLock()


def _owner_and_tag(fun):
    if inspect.ismethod(fun):
        return fun.__self__, fun.__func__
    return fun, None


def _cache_for(fun):
    owner, tag = _owner_and_tag(fun)
    try:
        table = _caches.get(owner)
        if table is None:
            table = _caches.setdefault(owner, {})
    except TypeError:
        table = _strong_caches.setdefault(id(owner), {})
    per = table.get(tag)
    if per is None:
        per = table.setdefault(tag, collections.OrderedDict())
    return per


def _describe_key_diff(new, old, names) -> str:
    """First difference between two keys, phrased for a person."""
    (new_args, new_state), (old_args, old_state) = new[3:5], old[3:5]
    for label, a, b in (("argument", new_args, old_args), ("captured input", new_state, old_state)):
        if a != b:
            return f"{label} {_first_diff(a, b, names)}"
    return "a different configuration"


def _first_diff(a, b, names, path="") -> str:
    if isinstance(a, tuple) and isinstance(b, tuple) and a and b and a[0] == b[0] and a[0] in ("l", "d") or (
            isinstance(a, tuple) and isinstance(b, tuple) and a and b and isinstance(a[0], tuple) and a[0] == b[0]):
        kids_a, kids_b = a[-1], b[-1]
        if len(kids_a) == len(kids_b):
            for i, (x, y) in enumerate(zip(kids_a, kids_b)):
                if x != y:
                    if a[0] == "d":
                        return _first_diff(x[1], y[1], names, f"{path}[{x[0]!r}]")
                    label = names[i] if not path and i < len(names) else f"{path}[{i}]"
                    return _first_diff(x, y, names, label)
    return f"{path or 'structure'}: {_fmt(b)} -> {_fmt(a)}"


def _fmt(k) -> str:
    if isinstance(k, tuple) and k and k[0] == "a":
        shape = k[2]
        dims = ",".join(str(s) for s in shape) if isinstance(shape, tuple) else f"ndim={shape}"
        from .dtypes import from_name

        return f"{from_name(k[1]).short}[{dims}]"
    if isinstance(k, tuple) and k and k[0] == "f":
        return repr(float.fromhex(k[1]))
    if isinstance(k, tuple) and len(k) == 2 and k[0] in ("i", "b", "s"):
        return repr(k[1])
    return repr(k)


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
            self._arg_names = list(self.__signature__.parameters)
        except (TypeError, ValueError):
            self._arg_names = []

    def __get__(self, obj, objtype=None):
        # As a method decorator: bind like a function would.
        if obj is None:
            return self
        return functools.partial(self, obj)

    def _key(self, args, kwargs):
        leaves, seen = [], {}
        try:
            arg_key = _tree_key((list(args), kwargs), self.shapeless, leaves, seen)
        except _Unsupported as e:
            raise ValueError(f"[compile] Function arguments must be trees (lists, tuples, dicts) of arrays or "
                             f"constants (bool, int, float, str, None); got an argument of type {e}.") from None
        n_args = len(leaves)
        state_leaves = _captured_leaves(self.inputs) if self.inputs is not None else []
        state_key = tuple((path, _leaf_key(a, self.shapeless, leaves, seen)) for path, a in state_leaves)
        key = (id(self.inputs), id(self.outputs), self.shapeless, arg_key, state_key)
        return key, leaves, n_args, state_leaves

    def __call__(self, *args, **kwargs):
        if _compile_disabled():
            return self.fun(*args, **kwargs)
        key, leaves, n_args, state_leaves = self._key(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._trace(key, args, kwargs, leaves, n_args, state_leaves)
        if transform_depth() > 0:
            values = replay_graph(entry.graph, leaves)
        else:
            values = self._run(entry, leaves)
        self._write_back(entry, values[entry.n_out:])
        return entry.treedef.build(values[: entry.n_out])

    # -- the hot path ---------------------------------------------------------------------------------
    def _run(self, entry, leaves):
        buffers = [x._numpy() for x in leaves]
        if self.shapeless:
            self._check_shapes(entry, buffers)
        outs = entry.program.run(buffers)
        graph_outs = entry.graph.outputs
        result = [array._from_numpy(o, v.dtype) for o, v in zip(outs, graph_outs)]
        if os.environ.get("KILN_VERIFY"):
            from .verify import verify_program

            verify_program(entry.graph, buffers, outs)
        return result

    def _check_shapes(self, entry, buffers):
        """Shapeless replay: re-run every shape rule for new input shapes, so errors name the operation."""
        shapes = tuple(b.shape for b in buffers)
        if entry.checked_shapes == shapes:
            return
        from .shape_check import check_graph_shapes

        check_graph_shapes(entry.graph, shapes)
        entry.checked_shapes = shapes

    def _write_back(self, entry, values):
        for path, value in zip(entry.state_paths, values):
            _set_path(self.outputs, path, value)

    # -- the miss path -------------------------------------------------------------------------------
    def _trace(self, key, args, kwargs, leaves, n_args, state_leaves):
        with _cache_lock:
            entry = self._cache.get(key)
            if entry is not None:
                return entry
            self._explain(key)
            entry = self._trace_locked(key, args, kwargs, leaves, n_args, state_leaves)
            self._cache[key] = entry
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return entry

    def _trace_locked(self, key, args, kwargs, leaves, n_args, state_leaves):
        name = getattr(self.fun, "__name__", "function")
        origin = f"the compiled function '{name}'"
        placeholders = [array._make_placeholder(x.shape, x.dtype, origin) for x in leaves]
        by_id = {id(x): p for x, p in zip(leaves, placeholders)}
        traced_args = _rebuild(list(args), lambda x: by_id[id(x)])
        traced_kwargs = _rebuild(dict(kwargs), lambda x: by_id[id(x)])
        snapshot = _snapshot([self.inputs, self.outputs])
        try:
            for path, x in state_leaves:
                _set_path(self.inputs, path, by_id[id(x)])
            with transform_scope():
                result = self.fun(*traced_args, **traced_kwargs)
            out_leaves = []
            treedef = _TreeDef(result, out_leaves)
            state_paths, state_values = [], []
            if self.outputs is not None:
                for path, value in _captured_leaves(self.outputs):
                    state_paths.append(path)
                    state_values.append(value)
            graph = graph_from_outputs(out_leaves + state_values, placeholders)
        except BaseException:
            _restore(snapshot)
            raise
        # Inputs-only slots go back to their real arrays; outputs= slots are written after the run.
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
        program = _make_program(graph)
        if _debug_level() >= 2 and program.graph is not graph:
            print(f"[kiln] optimized graph of '{name}':\n{program.graph}", file=sys.stderr)
        if _debug_level() >= 3:
            for kname, src in program.kernel_sources.items():
                print(f"[kiln] kernel {kname}:\n{src}", file=sys.stderr)
        return _Entry(graph, program, treedef, len(out_leaves), state_paths, key)

    def _explain(self, key):
        """Log why we (re)compile (KILN_DEBUG) and warn once about functions that keep recompiling."""
        name = getattr(self.fun, "__name__", "function")
        code = getattr(self.fun, "__code__", None)
        where = f"{code.co_filename}:{code.co_firstlineno}" if code else "?"
        if code is not None:
            _code_traces[code] += 1
        if self._cache:
            closest = max(self._cache.values(), key=lambda e: _similarity(e.key, key))
            reason = _describe_key_diff(key, closest.key, self._arg_names)
        elif code is not None and _code_traces[code] > 1:
            reason = f"new function object defined at {where}"
        else:
            reason = "first call"
        if _debug_level() >= 1:
            print(f"[kiln] compiling '{name}' ({where}): {reason}", file=sys.stderr)
        too_many_objects = code is not None and _code_traces[code] == _WARN_AFTER and code not in _warned_codes
        if too_many_objects and not self._cache:
            _warned_codes.add(code)
            warnings.warn(f"[compile] '{name}' defined at {where} has been compiled {_WARN_AFTER} times as a new "
                          "function object each time (e.g. a lambda compiled inside a loop). Compile it once "
                          "and reuse the compiled function.", stacklevel=4)
        elif len(self._cache) + 1 == _WARN_AFTER and code not in _warned_codes:
            if code is not None:
                _warned_codes.add(code)
            warnings.warn(f"[compile] '{name}' has been recompiled {_WARN_AFTER} times; the latest because "
                          f"{reason}. Pass values that change as arrays, or use shapeless=True for changing "
                          "shapes.", stacklevel=4)

    # -- introspection -------------------------------------------------------------------------------
    def graphs(self, *args, **kwargs) -> dict:
        """The traced graph, the optimised graph and kernel sources for these arguments (as text)."""
        key, leaves, n_args, state_leaves = self._key(args, kwargs)
        entry = self._cache.get(key) or self._trace(key, args, kwargs, leaves, n_args, state_leaves)
        return {"traced": str(entry.graph), "optimized": str(entry.program.graph),
                "kernels": dict(entry.program.kernel_sources)}


def _similarity(a, b) -> int:
    return sum(1 for x, y in zip(a[3:], b[3:]) if x == y)


def _snapshot(containers):
    """Contents of every list/dict reachable from containers, to restore them if a trace fails."""
    saved, stack, seen = [], list(c for c in containers if c is not None), set()
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
    """Compile `fun`: trace once per input signature, then run the optimised graph (MLX's `mx.compile`).

    Args:
        fun: the function to compile.
        inputs: a tree (list, dict, module state...) of arrays read as implicit inputs on every call.
        outputs: a tree of arrays written back as implicit outputs after every call.
        shapeless: compile once for inputs of any shape (dtype or ndim changes still recompile).
    """
    if fun is None:
        return functools.partial(compile, inputs=inputs, outputs=outputs, shapeless=shapeless)
    if not callable(fun):
        raise ValueError(f"[compile] Expected a callable, got {type(fun).__name__}.")
    return CompiledFunction(fun, inputs, outputs, shapeless)


def engine_status() -> str:
    """Which backend runs compiled graphs, in words (for the tour and benchmarks)."""
    if os.environ.get("KILN_ENGINE", "1") == "0":
        return "KILN_ENGINE=0: reference interpreter"
    try:
        from . import engine
    except ImportError:
        return "no C++ engine: reference interpreter"
    return "C++ engine" if engine.available() else "C++ engine unavailable: reference interpreter"
