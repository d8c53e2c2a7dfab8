"""Re-evaluate a Graph's shape rules for new input shapes (shapeless replay), so a shape-dependent
equation fails with its own `[op]` error instead of a numpy error deep inside the interpreter."""

from __future__ import annotations

from .graph import Lit
from .primitives import REGISTRY


class _Aval:
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype


def check_graph_shapes(graph, input_shapes) -> list:
    """Output shapes of `graph` for `input_shapes`; raises the failing primitive's ValueError."""
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
            (out,) = check_graph_shapes(eqn.params["body"], [a.shape for a in ins])
            env[id(eqn.out)] = _Aval(out, eqn.out.dtype)
            continue
        prim = REGISTRY[eqn.prim]
        if prim.fixed_at_trace and ins and tuple(ins[0].shape) != tuple(eqn.inputs[0].shape):
            raise ValueError(
                f"[{eqn.prim}] Cannot infer the output shape under shapeless compilation: its bounds were fixed "
                f"when tracing with input shape {tuple(eqn.inputs[0].shape)}, and the input now has shape "
                f"{tuple(ins[0].shape)}. Compile without shapeless=True for this function.")
        shape, dtype = prim.shape_rule(*ins, **eqn.params)
        env[id(eqn.out)] = _Aval(shape, dtype)
    return [read(v).shape for v in graph.outputs]
