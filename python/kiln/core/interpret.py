"""The reference interpreter: runs a Graph with the registry's numpy implementations. It is the spec.

A `fused` equation (made by the engine's fusion pass) carries its region as a Graph in params["body"]
and runs it here too, so every stage of the engine can be checked against this interpreter.
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, Lit
from .primitives import REGISTRY


def literal_value(lit: Lit) -> np.ndarray:
    return np.array(lit.value, dtype=lit.dtype.np)


def run_eqn(eqn, args: list) -> np.ndarray:
    """Evaluate one equation on numpy inputs, checking the result against its declared type."""
    if eqn.prim == "fused":
        (out,) = interpret(eqn.params["body"], args)
        return out
    with np.errstate(all="ignore"):  # IEEE results (inf, nan), also from the final cast, are the answer
        out = np.asarray(REGISTRY[eqn.prim].impl(*args, **eqn.params))
        if out.dtype != eqn.out.dtype.np:
            out = out.astype(eqn.out.dtype.np)
    return out


def interpret(graph: Graph, inputs: list, trace=None) -> list:
    """Run `graph` on numpy `inputs`; `trace(eqn, value)` (optional) sees every equation's result."""
    env = {}
    for var, value in zip(graph.consts, graph.const_values):
        env[id(var)] = value
    for var, value in zip(graph.inputs, inputs):
        env[id(var)] = value

    def read(v):
        return literal_value(v) if isinstance(v, Lit) else env[id(v)]

    for eqn in graph.eqns:
        value = run_eqn(eqn, [read(v) for v in eqn.inputs])
        env[id(eqn.out)] = value
        if trace is not None:
            trace(eqn, value)
    return [read(v) for v in graph.outputs]
