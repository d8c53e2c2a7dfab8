"""Tracing: run a function on placeholder arrays and turn the recorded nodes into a Graph.

Placeholders are arrays without data; evaluating anything that depends on one raises a PlaceholderError
that explains how to debug. Arrays the function reads that do not depend on a placeholder become
constants of the Graph (evaluated once, at trace time): MLX's "frozen constants".
"""

from __future__ import annotations

import contextlib
import copy
import threading

from .array import array, evaluate, postorder, transform_scope
from .graph import Eqn, Graph, Lit, Var
from .primitives import REGISTRY

# Constants with at most this many dimensions are written inline as literals (0: scalars only).
_LITERAL_MAX_NDIM = 0


class _TraceState(threading.local):
    shapeless = 0  # depth of shapeless traces on this thread (a class default: reading it is cheap)
    rank_decisions = 0  # choices made from an input's rank during the current shapeless trace
    bound_decisions = 0  # index or slice bounds resolved against an input's size during it


_local = _TraceState()


@contextlib.contextmanager
def shapeless_scope():
    """While inside, ops record shape-dependent values (element counts) as nodes, not constants."""
    _local.shapeless += 1
    try:
        yield
    finally:
        _local.shapeless -= 1


def tracing_shapeless() -> bool:
    return _local.shapeless > 0


def note_rank_decision() -> None:
    """An op chose what to record from an array's rank (normalised axes, skipped a no-op transpose...).

    A shapeless trace with such a choice is valid only at the rank it was traced at, even when every
    equation it recorded is rank-agnostic (`sum` over the no axes of a 0-d input records nothing).
    """
    if _local.shapeless:
        _local.rank_decisions += 1


def note_bound_decision() -> None:
    """An op resolved an index or slice bound against an array's size (a negative index, an omitted or
    clamped bound, a whole axis).

    Its `slice`/`slice_update` bounds then hold only at the traced size: a shapeless trace without such a
    decision replays at other sizes (x[2] = v), one with it refuses them with a clear error (x[-1] = v).
    """
    if _local.shapeless:
        _local.bound_decisions += 1


@contextlib.contextmanager
def watch_shape_decisions():
    """Count the rank and bound decisions made inside; yields a list that holds [rank, bound] on exit."""
    saved = (_local.rank_decisions, _local.bound_decisions)
    _local.rank_decisions = _local.bound_decisions = 0
    count = []
    try:
        yield count
    finally:
        count.extend((_local.rank_decisions, _local.bound_decisions))
        _local.rank_decisions += saved[0]  # an enclosing trace saw them too
        _local.bound_decisions += saved[1]


class UncapturedInputError(ValueError):
    """A traced function read one of its own arguments directly (a closure) instead of through its parameter."""


def placeholders_like(values, origin: str) -> list:
    """One placeholder per input array, with its shape and dtype."""
    return [array._make_placeholder(v.shape, v.dtype, origin) for v in values]


def graph_from_outputs(outputs: list, inputs: list, arguments: list = ()) -> Graph:
    """Build the Graph computing `outputs` from the placeholder arrays `inputs`.

    Nodes that do not depend on an input are evaluated now and become constants. `arguments` are the real
    arrays the placeholders stand for: reaching one means the function read an argument without going
    through its parameter (a closure), which MLX refuses rather than freezing it.
    """
    input_ids = {id(p): i for i, p in enumerate(inputs)}
    depends = _depends_on_inputs(outputs, input_ids, {id(a) for a in arguments})
    constants = [n for n in _reachable(outputs, depends) if n._data is None and id(n) not in depends]
    if constants:
        evaluate(constants)

    in_vars = [Var(p.shape, p.dtype) for p in inputs]
    env = {id(p): v for p, v in zip(inputs, in_vars)}
    graph = Graph(inputs=in_vars, eqns=[], outputs=[])

    def var_of(node):
        key = id(node)
        if key in env:
            return env[key]
        if key not in depends:
            env[key] = _constant(graph, node)
            return env[key]
        raise AssertionError("topological order violated")

    for node in _topo_order(outputs, depends):
        if id(node) in input_ids:
            continue
        if node._prim == "copy":  # arrays are immutable: a copy is its input (transforms add them)
            env[id(node)] = var_of(node._inputs[0])
            continue
        ins = tuple(var_of(x) for x in node._inputs)
        out = Var(node.shape, node.dtype)
        graph.eqns.append(Eqn(node._prim, ins, dict(node._params), out))
        env[id(node)] = out
    graph.outputs = [var_of(o) for o in outputs]
    return graph


def _constant(graph: Graph, node):
    data = node._data
    if data.ndim <= _LITERAL_MAX_NDIM:
        value = data.item()
        if node.dtype.name == "bfloat16":
            value = float(value)
        return Lit(value, node.dtype)
    v = Var(node.shape, node.dtype)
    graph.consts.append(v)
    graph.const_values.append(data)
    return v


def _depends_on_inputs(outputs, input_ids, argument_ids=frozenset()) -> set:
    """ids of nodes that (transitively) read an input placeholder or communicate."""
    depends = set()
    for node in postorder(outputs):
        if id(node) in argument_ids:
            raise UncapturedInputError(
                "[compile] Attempting to compile a function with uncaptured inputs is not allowed: it reads an "
                "array it is also given as an argument (e.g. from a closure). Use the argument inside the "
                "function instead.")
        if id(node) in input_ids or any(id(x) in depends for x in node._inputs) or _has_effects(node):
            depends.add(id(node))
    return depends


def _has_effects(node) -> bool:
    """A pending communication (mx.distributed) is a step of the graph, never a trace-time constant."""
    return node._data is None and node._prim is not None and REGISTRY[node._prim].effects


def _reachable(outputs, depends) -> list:
    """Nodes reachable from outputs, stopping below nodes that do not depend on inputs."""
    return postorder(outputs, expand=lambda node: id(node) in depends)


def _topo_order(outputs, depends) -> list:
    """The nodes that depend on inputs, each after its inputs."""
    return [n for n in postorder(outputs, expand=lambda node: id(node) in depends) if id(n) in depends]


def replace_arrays(tree, replace):
    """A copy of a tree (lists, tuples, NamedTuples, dicts, dict subclasses such as nn.Module) with each
    array mapped through `replace`, in order; container types are kept."""
    if isinstance(tree, array):
        return replace(tree)
    if isinstance(tree, tuple):
        items = [replace_arrays(c, replace) for c in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    if isinstance(tree, list):
        return [replace_arrays(c, replace) for c in tree]
    if isinstance(tree, dict):
        if type(tree) is dict:
            return {k: replace_arrays(v, replace) for k, v in tree.items()}
        new = copy.copy(tree)  # a Module keeps its class and attributes
        for k, v in tree.items():
            dict.__setitem__(new, k, replace_arrays(v, replace))
        return new
    return tree


def make_graph(fun, *args, origin: str = "make_graph") -> Graph:
    """Trace `fun` on placeholders shaped like the array arguments and return its Graph (for inspection)."""
    from .ops import to_array

    examples = [to_array(a) for a in args]
    phs = placeholders_like(examples, origin)
    with transform_scope():
        outs = fun(*phs)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    return graph_from_outputs(outs, phs)
