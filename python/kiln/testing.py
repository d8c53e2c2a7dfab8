"""Testing helpers for people who compile their own code with kiln."""

from __future__ import annotations

import numpy as np

from .core.array import array
from .core.compile import CompiledFunction, compile as _compile
from .core.verify import CompiledMismatch, first_divergence, values_match
from .utils import tree_flatten

__all__ = ["assert_compiled_matches", "CompiledMismatch"]


def assert_compiled_matches(fn, *args, rtol: float = 1e-5, atol: float = 1e-6, **kwargs) -> None:
    """Assert that `mx.compile(fn)` gives the same results as running `fn` eagerly on the interpreter.

    On a mismatch the error names the first equation of the traced graph whose compiled value diverges.
    """
    plain = fn.fun if isinstance(fn, CompiledFunction) else fn
    compiled = fn if isinstance(fn, CompiledFunction) else _compile(fn)
    expected = [leaf for _, leaf in tree_flatten(plain(*args, **kwargs)) if isinstance(leaf, array)]
    actual = [leaf for _, leaf in tree_flatten(compiled(*args, **kwargs)) if isinstance(leaf, array)]
    if len(expected) != len(actual):
        raise CompiledMismatch(f"compiled function returned {len(actual)} arrays, eager {len(expected)}")
    for i, (e, a) in enumerate(zip(expected, actual)):
        if not values_match(np.asarray(e), np.asarray(a), rtol, atol):
            detail = ""
            entry = _entry_for(compiled, args, kwargs)
            if entry is not None and hasattr(entry.program, "graph") and entry.program.graph is not entry.graph:
                leaves = compiled._key(args, kwargs)[1]
                detail = "; first divergence at " + first_divergence(
                    entry.graph, [x._numpy() for x in leaves], rtol, atol)
            raise CompiledMismatch(f"output {i}: compiled {np.asarray(a)!r} != eager {np.asarray(e)!r}{detail}")


def _entry_for(compiled: CompiledFunction, args, kwargs):
    key = compiled._key(args, kwargs)[0]
    return compiled._cache.get(key)
