"""Differential testing of compiled graphs against the reference interpreter (KILN_VERIFY=1 and
kiln.testing). On a mismatch, bisect over prefixes of the traced graph to name the first equation
whose compiled value diverges from the interpreter's."""

from __future__ import annotations

import numpy as np

from .graph import Graph
from .interpret import interpret


class CompiledMismatch(AssertionError):
    pass


def values_match(expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float) -> bool:
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return False
    if expected.dtype.kind in "biu":
        return bool(np.array_equal(expected, actual))
    e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
    a = actual.astype(e.dtype)
    return bool(np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True))


def _prefix(graph: Graph, n: int) -> Graph:
    """The graph of the first n equations, whose output is the n-th equation's result."""
    eqns = graph.eqns[:n]
    return Graph(inputs=graph.inputs, eqns=eqns, outputs=[eqns[-1].out], consts=graph.consts,
                 const_values=graph.const_values)


def first_divergence(graph: Graph, inputs: list, rtol: float, atol: float) -> str:
    """Name the first equation whose compiled value differs from the interpreter's."""
    from . import engine

    expected_all = {}
    interpret(graph, inputs, trace=lambda eqn, value: expected_all.__setitem__(id(eqn.out), value))

    def diverges(n: int) -> bool:
        sub = _prefix(graph, n)
        (actual,) = engine.compile_graph(sub).run(inputs)
        return not values_match(expected_all[id(sub.outputs[0])], actual, rtol, atol)

    lo, hi = 1, len(graph.eqns)
    if hi == 0 or not diverges(hi):
        return "no single equation diverges (the mismatch is in how outputs are assembled)"
    while lo < hi:
        mid = (lo + hi) // 2
        if diverges(mid):
            hi = mid
        else:
            lo = mid + 1
    eqn = graph.eqns[lo - 1]
    return f"equation {lo} of {len(graph.eqns)}: `{eqn.prim}` producing {eqn.out}"


def verify_program(graph: Graph, inputs: list, outputs: list, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Raise CompiledMismatch if `outputs` differ from the interpreter's results for `graph`."""
    expected = interpret(graph, inputs)
    for i, (e, a) in enumerate(zip(expected, outputs)):
        if not values_match(np.asarray(e), np.asarray(a), rtol, atol):
            where = first_divergence(graph, inputs, rtol, atol)
            raise CompiledMismatch(f"[compile] Output {i} of the compiled graph differs from the reference "
                                   f"interpreter; first divergence at {where}.")
