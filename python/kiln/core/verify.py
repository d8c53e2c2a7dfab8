"""Differential testing of compiled graphs against the reference interpreter (KILN_VERIFY=1 and
kiln.testing). On a mismatch, bisect over prefixes of the equations the output depends on, then follow
the diverging equation's inputs back, to name the equation whose value diverges although its inputs agree."""

from __future__ import annotations

import numpy as np

from .graph import Graph, format_graph
from .interpret import interpret


class CompiledMismatch(AssertionError):
    pass


# Units in the last place of the half types: their products (native kernels, float32 accumulation in another
# order than numpy's) may differ from the interpreter's by a rounding of the result.
_HALF_ULP = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


def _tolerance(expected: np.ndarray, e: np.ndarray, rtol: float, atol: float) -> tuple:
    """(rtol, atol) for comparing values of expected's type: at least two roundings for half types."""
    ulp = _HALF_ULP.get(expected.dtype.name)
    if ulp is None or e.size == 0:
        return rtol, atol
    scale = float(np.nanmax(np.abs(np.where(np.isfinite(e), e, 0))))
    return max(rtol, 2 * ulp), max(atol, 2 * ulp * scale)


def values_match(expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float) -> bool:
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return False
    if expected.dtype.kind in "biu":
        return bool(np.array_equal(expected, actual))
    e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
    a = actual.astype(e.dtype)
    rtol, atol = _tolerance(expected, e, rtol, atol)
    return bool(np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True))


def describe_difference(expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float) -> str:
    """Which elements differ beyond the tolerance, in one line (never the whole arrays)."""
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return (f"expected {expected.dtype}{list(expected.shape)}, "
                f"got {actual.dtype}{list(actual.shape)}")
    if expected.dtype.kind in "biu":
        differs = expected != actual
    else:
        e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
        a = actual.astype(e.dtype)
        rtol, atol = _tolerance(expected, e, rtol, atol)
        differs = ~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    count = int(np.count_nonzero(differs))
    if count == 0:
        return "every element is within the tolerance"
    where = tuple(int(i) for i in np.argwhere(differs)[0])
    return (f"{count} of {expected.size} elements differ; first at index {list(where)}: "
            f"expected {expected[where]!r}, got {actual[where]!r}")


def _sub_graph(graph: Graph, eqns: list) -> Graph:
    """The graph of `eqns` (closed under their inputs, in order), whose output is the last one's result."""
    return Graph(inputs=graph.inputs, eqns=eqns, outputs=[eqns[-1].out], consts=graph.consts,
                 const_values=graph.const_values)


def _ancestors(graph: Graph, output) -> list:
    """1-based positions of the equations `output` depends on, in graph order."""
    producer = {id(eqn.out): i for i, eqn in enumerate(graph.eqns, 1)}
    needed, stack = set(), [output]
    while stack:
        i = producer.get(id(stack.pop()))
        if i is not None and i not in needed:
            needed.add(i)
            stack.extend(graph.eqns[i - 1].inputs)
    return sorted(needed)


def _equation_text(graph: Graph, n: int) -> str:
    """The n-th equation's line as the graph's printer names it (names follow order of appearance)."""
    lines = format_graph(_sub_graph(graph, graph.eqns[:n])).splitlines()
    top = [line for line in lines if line.startswith("    ") and not line.startswith("     ")]
    return top[-1].strip()


def first_divergence(graph: Graph, inputs: list, rtol: float, atol: float, output: int = 0) -> str:
    """Name the first equation behind a mismatched output whose compiled value differs from the
    interpreter's while its inputs agree.

    Args:
        graph (Graph): the traced graph of a compiled call.
        inputs (list): the call's input buffers, in ``graph.inputs`` order.
        rtol (float): relative tolerance of the comparison.
        atol (float): absolute tolerance of the comparison.
        output (int): which of ``graph.outputs`` mismatched. Default: ``0``.

    Returns:
        str: the equation's position, primitive and text, or why no single equation is to blame.
    """
    from . import engine

    if not engine.available():
        return "no equation (the graph ran on the reference interpreter)"
    # Only the equations the output depends on: a prefix of the whole graph may end in another output's work.
    chain = _ancestors(graph, graph.outputs[output])
    if not chain:
        return "no equation (the output is an input or a constant of the graph)"
    expected = {}
    interpret(graph, inputs, trace=lambda eqn, value: expected.__setitem__(id(eqn.out), value))
    checked = {}

    def diverges(n: int) -> bool:
        """Whether equation n (1-based), compiled with everything it depends on, differs."""
        if n not in checked:
            sub = _sub_graph(graph, [graph.eqns[i - 1] for i in _ancestors(graph, graph.eqns[n - 1].out)])
            # shapeless: the inputs may be a shapeless call's, at shapes other than the traced ones.
            (actual,) = engine.compile_graph(sub, shapeless=True).run(inputs)
            checked[n] = not values_match(expected[id(sub.outputs[0])], np.asarray(actual), rtol, atol)
        return checked[n]

    if not diverges(chain[-1]):
        return "no single equation (every value agrees; the mismatch is in how outputs are assembled)"
    lo, hi = 0, len(chain) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if diverges(chain[mid]):
            hi = mid
        else:
            lo = mid + 1
    # Bisection assumes a divergence persists; a later comparison, select or cast can mask it, so the
    # equation found may be fed a diverging value. Follow such inputs back to an equation whose inputs agree.
    position = {id(eqn.out): i for i, eqn in enumerate(graph.eqns, 1)}
    n = chain[lo]
    while True:
        sources = sorted({position[id(v)] for v in graph.eqns[n - 1].inputs if id(v) in position})
        culprit = next((j for j in sources if diverges(j)), None)
        if culprit is None:
            break
        n = culprit
    eqn = graph.eqns[n - 1]
    return f"equation {n} of {len(graph.eqns)} (`{eqn.prim}`): {_equation_text(graph, n)}"


def verify_program(graph: Graph, inputs: list, outputs: list, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Raise CompiledMismatch if `outputs` differ from the interpreter's results for `graph`."""
    expected = interpret(graph, inputs)
    for i, (e, a) in enumerate(zip(expected, outputs)):
        e, a = np.asarray(e), np.asarray(a)
        if not values_match(e, a, rtol, atol):
            where = first_divergence(graph, inputs, rtol, atol, output=i)
            raise CompiledMismatch(f"[compile] Output {i} of the compiled graph differs from the reference "
                                   f"interpreter ({describe_difference(e, a, rtol, atol)}); first divergence at {where}.")
