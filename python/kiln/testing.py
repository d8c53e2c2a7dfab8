"""Testing helpers for people who compile their own code with kiln."""

from __future__ import annotations

import math

import numpy as np

from .core import random as _random
from .core.array import array
from .core.compile import CompiledFunction, _restore, _snapshot, compile as _compile
from .core.verify import CompiledMismatch, describe_difference, first_divergence, values_match
from .utils import tree_flatten

__all__ = ["CompiledMismatch", "assert_compiled_matches"]


def assert_compiled_matches(fn, *args, rtol: float = 1e-5, atol: float = 1e-6, **kwargs) -> None:
    """Assert that `mx.compile(fn)` gives the same results as running `fn` eagerly on the interpreter.

    Integer and boolean results must be equal; floating-point ones close (``numpy.allclose`` with
    ``equal_nan=True``). On a mismatch the error names the output and the first equation of the traced
    graph whose compiled value diverges.

    Args:
        fn (Callable): the function, or a function already returned by ``compile`` (its settings are kept).
        *args: positional arguments for ``fn``.
        rtol (float): relative tolerance. Default: ``1e-5``.
        atol (float): absolute tolerance. Default: ``1e-6``.
        **kwargs: keyword arguments for ``fn``.

    Raises:
        CompiledMismatch: the results differ (an ``AssertionError``).
    """
    plain = fn.fun if isinstance(fn, CompiledFunction) else fn
    compiled = fn if isinstance(fn, CompiledFunction) else _compile(fn)
    # Both runs start from the same captured state (inputs=/outputs=), and the check leaves it as it was.
    saved = _snapshot([compiled.inputs, compiled.outputs])
    key_before = _random.state[0]
    try:
        expected = tree_flatten(plain(*args, **kwargs))
        drew_random = _random.state[0] is not key_before
        _restore(saved)
        actual = tree_flatten(compiled(*args, **kwargs))
    finally:
        _restore(saved)
    expected_paths = [path for path, _ in expected]
    actual_paths = [path for path, _ in actual]
    if expected_paths != actual_paths:
        raise CompiledMismatch(f"compiled function returned a tree with leaves {actual_paths}, "
                               f"eager {expected_paths}")
    index = 0  # position among the array leaves, which is the traced graph's output order
    for path, e, a in zip(expected_paths, (leaf for _, leaf in expected), (leaf for _, leaf in actual)):
        name = f"output {path!r}" if path else "output"
        if not isinstance(e, array) or not isinstance(a, array):
            if isinstance(e, array) or isinstance(a, array) or not _same_constant(e, a):
                raise CompiledMismatch(f"{name}: compiled {a!r} != eager {e!r}")
            continue
        e, a = np.asarray(e), np.asarray(a)
        if not values_match(e, a, rtol, atol):
            if drew_random:
                raise CompiledMismatch(f"{name}: compiled and eager results differ because the function consumed "
                                       f"random state (mx.random.state advanced while it ran), so the two calls "
                                       f"drew different random numbers. {_PASS_A_KEY}")
            detail = _divergence(compiled, args, kwargs, rtol, atol, index)
            raise CompiledMismatch(f"{name}: compiled and eager results differ "
                                   f"({describe_difference(e, a, rtol, atol)}){detail}")
        index += 1


_PASS_A_KEY = ("Pass a key instead: give the function a `key` argument, draw with "
               "`mx.random.uniform(..., key=key)` (split it with `mx.random.split` for several draws) and call "
               "`assert_compiled_matches(fn, x, key=mx.random.key(0))`; or compile it with "
               "`mx.compile(fn, inputs=mx.random.state, outputs=mx.random.state)` and pass that, so both runs "
               "start from the same state.")


def _same_constant(e, a) -> bool:
    both_nan = isinstance(e, float) and isinstance(a, float) and math.isnan(e) and math.isnan(a)
    return type(e) is type(a) and (e == a or both_nan)


def _divergence(compiled: CompiledFunction, args, kwargs, rtol, atol, output: int) -> str:
    """'; first divergence at ...' when the call ran engine kernels, else ''."""
    key, leaves = compiled._key(args, kwargs)[:2]
    entry = compiled._cache.get(key)
    # Only an engine Program has a graph of its own (simplified and fused); the interpreter runs the traced one.
    if entry is None or getattr(entry.program, "graph", entry.graph) is entry.graph:
        return ""
    buffers = [x._numpy() for x in leaves]
    return "; first divergence at " + first_divergence(entry.graph, buffers, rtol, atol, output)
