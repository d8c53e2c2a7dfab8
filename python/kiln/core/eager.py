"""Eager evaluation through the engine: a pending graph (what `mx.eval` must compute) becomes a Graph, keyed
by its structure and dtypes, compiled once (shapeless) into a Program, and run on its leaves' buffers.

`array.evaluate` asks `run_pending` first; it answers False (and the node-by-node path runs) when the
engine is off, the graph is too small to gain, or something in it has no exact structural key.

Where the engine stops paying is measured, not guessed: a graph with a large node (LARGE_ELEMENTS) always
runs on the engine; a structure of small nodes runs node by node the first two times (timed), compiles the
third time, and its Program is timed on the fourth; if the Program (key included) was slower, that
sequence of primitives stays on the node path for good, and the verdict is found without building a key.
"""

from __future__ import annotations

import os
import sys
from math import prod
from operator import attrgetter
from time import perf_counter

from . import engine
from .dtypes import Dtype as _Dtype
from .graph import Eqn, Graph, Var
from .memory import track as track_buffer
from .primitives import RANDOM, REGISTRY

# Thresholds measured on the project VM (2 cores; table in docs/DESIGN.md, "Eager evaluation"): a node of at
# least LARGE_ELEMENTS sends its graph to the engine at once (threaded, fused kernels: 1.3x to 80x faster there);
# below that the node path often wins (numpy's own SIMD exp/sin beat the kernels' at 64K elements), so
# graphs with MIN_NODES nodes or a node of MEDIUM_ELEMENTS are measured both ways (see the module text)
# and the rest (a few small nodes: the `.item()` loop) never leave the node path.
MIN_NODES = 6
MEDIUM_ELEMENTS = 1 << 12
LARGE_ELEMENTS = 1 << 18
# Measure small graphs before giving them to the engine (tests turn this off to send everything there).
ADAPTIVE = True
_NODE_TRIALS = 2
_MAX_CACHED = 512

_programs: dict = {}  # structural key -> _Entry
_node_times: dict = {}  # structural key -> seconds the node path took at its first sightings
_node_path_prims: set = set()  # sequences of primitives measured faster node by node
stats = {"hits": 0, "compiles": 0, "fallbacks": 0}
_prim_of = attrgetter("_prim")
_shape_of = attrgetter("_shape")


class _Entry:
    __slots__ = ("program", "graph", "outputs", "node_time")

    def __init__(self, program, graph, outputs, node_time=None):
        self.program = program
        self.graph = graph
        self.outputs = outputs  # positions in the pending order, in the Program's output order
        self.node_time = node_time  # the node path's time, until the Program's own time is compared


class _Uncacheable(Exception):
    pass


def _value_sig(v):
    """A hashable, exact spelling of one param value; raises _Uncacheable for anything else."""
    kind = type(v)
    if kind is int or kind is str or kind is bool or v is None:
        return kind, v
    if kind is float:
        if v != v:
            raise _Uncacheable  # NaN payloads are invisible to equality
        return kind, v.hex()  # -0.0 and 0.0 differ
    if kind is tuple or kind is list:
        return kind, tuple(_value_sig(x) for x in v)
    if kind is _Dtype:
        return kind, v.name
    raise _Uncacheable


# Param values whose type and value spell them exactly (hashable, and equal only when they mean the same).
_PLAIN_TYPES = frozenset((int, str, bool, type(None)))
_INT_ONLY = frozenset((int,))


def _params_sig(params: dict) -> tuple:
    """_value_sig of every param, with the usual values (ints, bools, tuples of ints, dtypes) spelled inline:
    this runs once per pending node. Inline entries have three fields and _value_sig's two, so never meet."""
    if not params:
        return ()
    sig = []
    for name, value in params.items():
        kind = type(value)
        if kind in _PLAIN_TYPES or (kind is tuple and {*map(type, value)} <= _INT_ONLY):
            sig.append((name, kind, value))
        elif kind is _Dtype:
            sig.append((name, kind, value.name))
        else:
            sig.append((name, _value_sig(value)))
    return tuple(sig)


def _refcounts(order: list) -> list:
    return [sys.getrefcount(node) for node in order]


def _baseline_refcount() -> int:
    """What _refcounts reports for an object that only the list holds (calibrates _held_outside)."""
    return _refcounts([object()])[0]


def _held_outside(order: list, uses: list) -> list:
    """Positions of nodes something outside the pending graph refers to (a user variable, another lazy array).

    A reference count above the graph's own references (the order list and the consumers' input tuples)
    means someone else holds the node, so its value must be materialised. Missing one is harmless: a node
    that is not materialised keeps its lazy graph and would be computed again on demand.
    """
    counts = _refcounts(order)
    return [i for i, (count, used) in enumerate(zip(counts, uses)) if count - _BASELINE - used > 0]


def _structure(order: list):
    """(key parts, leaves, uses, where): each node as (prim, params, input wiring, dtype); leaves are the
    evaluated arrays the graph reads (in first-use order); uses[i] counts the graph's references to order[i];
    where maps id(order[i]) to i and id(leaves[j]) to -1 - j (the wiring's spelling of both)."""
    where = {id(node): i for i, node in enumerate(order)}
    leaves, parts, uses = [], [], [0] * len(order)
    for node in order:
        if node._placeholder is not None:
            raise _Uncacheable  # the node path raises the placeholder's own error
        wiring = []
        for x in node._inputs:
            i = where.get(id(x))
            if i is None:
                i = where[id(x)] = -1 - len(leaves)
                leaves.append(x)
            elif i >= 0:
                uses[i] += 1
            wiring.append(i)
        parts.append((node._prim, _params_sig(node._params), tuple(wiring), node._dtype.name))
    return parts, leaves, uses, where


def worthwhile(order: list) -> bool:
    """Whether this pending graph should be offered to the engine at all (cheap: no key is built)."""
    return len(order) >= MIN_NODES or _largest(order) >= MEDIUM_ELEMENTS


def _largest(order: list) -> int:
    """The element count of the largest node."""
    return max(map(prod, map(_shape_of, order)), default=0)


def _approximate_prims() -> frozenset:
    """Elementwise primitives whose kernels are polynomial approximations (kiln_math.h: a few ULP), not the
    correctly rounded results numpy gives: graphs that draw random numbers leave them unfused, so samples
    stay bit-identical to the interpreter's. erfinv fuses: its float32 kernel is the interpreter's own
    arithmetic (MLX's algorithm with the C library's logf, where the CPU has FMA), and the interpreter's
    version is slow (a logf call per element), which `normal` would pay on every large draw."""
    exact_calls = ("kiln_cast", "kiln_minimum", "kiln_maximum", "kiln_abs", "kiln_floor", "kiln_ceil",
                   "kiln_sqrt", "kiln_shl", "kiln_shr", "kiln_sign", "kiln_isnan", "kiln_isinf", "kiln_isfinite",
                   "kiln_erfinv")
    out = set()
    for name, prim in REGISTRY.items():
        expr = prim.c_expr or ""
        if "kiln_" in expr and not expr.startswith(exact_calls):
            out.add(name)
    return frozenset(out)


def _build_graph(order: list, leaves: list, outputs: list) -> Graph:
    """The Graph of the pending nodes: leaves are its inputs (scalars too: values never enter a kernel)."""
    env = {}
    inputs = []
    for leaf in leaves:
        var = Var(leaf._shape, leaf._dtype)
        env[id(leaf)] = var
        inputs.append(var)
    eqns = []
    for node in order:
        out = Var(node._shape, node._dtype)
        eqns.append(Eqn(node._prim, tuple(env[id(x)] for x in node._inputs), dict(node._params), out))
        env[id(node)] = out
    return Graph(inputs=inputs, eqns=eqns, outputs=[eqns[i].out for i in outputs])


def _debug_level() -> int:
    try:
        return int(os.environ.get("KILN_DEBUG", "0") or 0)
    except ValueError:
        return 0


def _compile(order: list, leaves: list, outputs: list, key_parts) -> _Entry:
    graph = _build_graph(order, leaves, outputs)
    draws_random = any(REGISTRY[p[0]].kind == RANDOM for p in key_parts)
    options = {"unfused": _APPROXIMATE} if draws_random else {}
    program = engine.compile_graph(graph, shapeless=True, **options)
    if _debug_level() >= 1:
        kernels = sum(1 for e in program.graph.eqns if e.prim == "fused")
        fused = sum(len(e.params["body"].eqns) for e in program.graph.eqns if e.prim == "fused")
        print(f"kiln: eager: compiled {len(order)} pending nodes ({len(leaves)} leaves, {len(outputs)} outputs): "
              f"{fused} fused into {kernels} kernels, {len(program.graph.eqns) - kernels} other steps",
              file=sys.stderr)
    return _Entry(program, graph, outputs)


def run_pending(order: list, requested: list):
    """Compute the pending nodes `order` (inputs first) with an engine Program, or leave them to the caller.

    Args:
        order (list): unevaluated arrays, each after its inputs (`array.pending_nodes`).
        requested (list): the arrays `mx.eval` was asked for (materialised, as are arrays held elsewhere).

    Returns:
        True when every requested array (and every pending array held outside the graph) has its data;
        False when the caller should run the node path; or a token: run the node path, time it, and hand
        the seconds to `record_node_time(token, seconds)`.
    """
    if not _engine_on():
        return False
    started = perf_counter()
    measured = ADAPTIVE and _largest(order) < LARGE_ELEMENTS
    if measured:
        prims = tuple(map(_prim_of, order))
        if prims in _node_path_prims:
            return False
    try:
        parts, leaves, uses, where = _structure(order)
    except _Uncacheable:
        return False
    wanted = set(_held_outside(order, uses))
    wanted.update(i for i in map(where.get, map(id, requested)) if i is not None and i >= 0)
    outputs = sorted(wanted)
    key = (tuple(parts), tuple((x._dtype.name, len(x._shape)) for x in leaves), tuple(outputs))
    entry = _programs.get(key)
    compiled_now = entry is None
    if compiled_now:
        node_time = None
        if measured:
            times = _node_times.get(key, ())
            if len(times) < _NODE_TRIALS:
                return key  # the caller times the node path (twice: a first run pays for cold caches)
            node_time = min(_node_times.pop(key))
        entry = _compile(order, leaves, outputs, parts)
        entry.node_time = node_time
        if len(_programs) >= _MAX_CACHED:
            _programs.clear()
        _programs[key] = entry
        stats["compiles"] += 1
    else:
        stats["hits"] += 1
        if _debug_level() >= 1:
            print(f"kiln: eager: cache hit ({len(order)} pending nodes, {len(outputs)} outputs)", file=sys.stderr)
    buffers = [x._data for x in leaves]
    results = entry.program.run(buffers)
    nodes = [order[i] for i in outputs]
    for node, value in zip(nodes, results):
        if value.shape != node._shape or value.dtype != node._dtype.np:
            # A Program replayed at shapes it cannot serve: forget it; the node path computes the answer.
            _programs.pop(key, None)
            stats["fallbacks"] += 1
            return False
    if _verify_enabled():
        from .verify import verify_program

        verify_program(entry.graph, buffers, results, what="eager evaluation")
    for node, value in zip(nodes, results):
        value.setflags(write=False)  # buffers are shared between arrays: never mutate them
        track_buffer(value)
        node._data = value
        node._prim = None
        node._inputs = ()
        node._params = None
    # Only a measured run is judged: a Program compiled for small arrays may serve large ones (the key is
    # shapeless), and those runs neither time what the node path was timed on nor build `prims`.
    if measured and entry.node_time is not None and not compiled_now:
        _judge(entry, key, prims, perf_counter() - started)
    return True


def _judge(entry: _Entry, key, prims: tuple, seconds: float) -> None:
    """Keep the Program if it beat the node path; otherwise send this sequence of primitives back there."""
    if seconds > entry.node_time:
        _node_path_prims.add(prims)
        _programs.pop(key, None)
        if _debug_level() >= 1:
            print(f"kiln: eager: {len(prims)} small nodes run faster node by node "
                  f"({1e6 * entry.node_time:.0f} us vs {1e6 * seconds:.0f} us on the engine)", file=sys.stderr)
    entry.node_time = None


def record_node_time(token, seconds: float) -> None:
    """The node path's time for the structure `token` (from run_pending) names."""
    if len(_node_times) >= _MAX_CACHED:
        _node_times.clear()
    _node_times[token] = _node_times.get(token, ()) + (seconds,)


def _engine_on() -> bool:
    """engine.available(), with its compiler search (a PATH walk: ~100 us) done once per process."""
    global _compiler_found
    if os.environ.get("KILN_ENGINE") == "0":
        return False
    if _compiler_found is None:
        _compiler_found = engine.available()
    return _compiler_found


_compiler_found = None


def _verify_enabled() -> bool:
    return os.environ.get("KILN_VERIFY", "0") not in ("", "0")


def clear_cache() -> None:
    """Forget every eager Program (tests; the kernels stay in the JIT's caches)."""
    _programs.clear()
    _node_times.clear()
    _node_path_prims.clear()


_BASELINE = _baseline_refcount()
_APPROXIMATE = _approximate_prims()
