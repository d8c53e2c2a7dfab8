"""Re-evaluate a Graph's shape rules for new input shapes (shapeless replay), so a shape-dependent
equation fails with its own `[op]` error instead of a numpy error deep inside the interpreter; and
re-type a rank-agnostic Graph for inputs of another rank (a shapeless trace reused without retracing)."""

from __future__ import annotations

from .graph import Eqn, Graph, Lit, Var
from .primitives import REGISTRY


class _Aval:
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype


def _infer(graph, input_shapes, bounds_fixed=True) -> dict:
    """id(var) -> _Aval for every value of `graph` at `input_shapes`; raises the failing rule's ValueError.

    bounds_fixed: the trace resolved some slice bounds against the traced sizes (tracing.note_bound_decision),
    so its slices refuse other input shapes; otherwise their bounds are checked against the new sizes.
    """
    env = {}
    for v in graph.consts:
        env[id(v)] = _Aval(v.shape, v.dtype)
    for v, shape in zip(graph.inputs, input_shapes):
        env[id(v)] = _Aval(shape, v.dtype)

    def read(v):
        return _Aval((), v.dtype) if isinstance(v, Lit) else env[id(v)]

    for eqn in graph.eqns:
        ins = [read(v) for v in eqn.inputs]
        if eqn.prim == "fused":
            (out,) = check_graph_shapes(eqn.params["body"], [a.shape for a in ins], bounds_fixed)
            env[id(eqn.out)] = _Aval(out, eqn.out.dtype)
            continue
        prim = REGISTRY[eqn.prim]
        if bounds_fixed and prim.fixed_at_trace and ins and tuple(ins[0].shape) != tuple(eqn.inputs[0].shape):
            raise ValueError(
                f"[{eqn.prim}] Cannot infer the output shape under shapeless compilation: its bounds were fixed "
                f"when tracing with input shape {tuple(eqn.inputs[0].shape)}, and the input now has shape "
                f"{tuple(ins[0].shape)}. Compile without shapeless=True for this function.")
        shape, dtype = prim.shape_rule(*ins, **eqn.params)
        env[id(eqn.out)] = _Aval(shape, dtype)
    return env


def check_graph_shapes(graph, input_shapes, bounds_fixed=True) -> list:
    """Output shapes of `graph` for `input_shapes`; raises the failing primitive's ValueError."""
    env = _infer(graph, input_shapes, bounds_fixed)
    return [() if isinstance(v, Lit) else env[id(v)].shape for v in graph.outputs]


def is_rank_agnostic(graph) -> bool:
    """Every equation is valid at any input rank (the registry's `rank_agnostic`)."""
    return all(eqn.prim != "fused" and REGISTRY[eqn.prim].rank_agnostic for eqn in graph.eqns)


def graph_at_shapes(graph, input_shapes) -> Graph:
    """A copy of a rank-agnostic `graph` whose values are typed for `input_shapes` (any rank).

    The equations, params, literals and constants are the traced ones; only the Vars' shapes change.
    """
    env = _infer(graph, input_shapes)
    new = {id(v): v for v in graph.consts}

    def var(v):
        if isinstance(v, Lit) or id(v) in new:
            return new.get(id(v), v)
        new[id(v)] = Var(env[id(v)].shape, v.dtype)
        return new[id(v)]

    inputs = [var(v) for v in graph.inputs]
    eqns = [Eqn(e.prim, tuple(var(v) for v in e.inputs), e.params, var(e.out)) for e in graph.eqns]
    return Graph(inputs=inputs, eqns=eqns, outputs=[var(v) for v in graph.outputs],
                 consts=list(graph.consts), const_values=list(graph.const_values))
