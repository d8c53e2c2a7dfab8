"""Differential testing for users: KILN_VERIFY=1 and kiln.testing.assert_compiled_matches.

Faults are injected two ways: a stand-in engine whose programs run the interpreter but perturb one
primitive's results (works without the C++ engine), and a deliberately broken C++ expression in the
registry (needs the engine). Either way the error must name the equation that computes the wrong value.
"""

import dataclasses
import functools
import re

import numpy as np
import pytest

import kiln.core as mx
from kiln.core import engine, verify
from kiln.core.graph import Graph
from kiln.core.interpret import literal_value, run_eqn
from kiln.core.primitives import REGISTRY
from kiln.testing import CompiledMismatch, assert_compiled_matches

# -- helpers ------------------------------------------------------------------------------------------
class FaultyProgram:
    """Runs a graph like the interpreter, except that every `bad_prim` result is off by `delta`."""

    def __init__(self, graph, bad_prim, delta):
        # A graph object of its own, as the engine's simplified graph is (kiln.testing tells them apart so).
        self.graph = Graph(list(graph.inputs), list(graph.eqns), list(graph.outputs), list(graph.consts),
                           list(graph.const_values))
        self.kernel_sources = {}
        self.bad_prim = bad_prim
        self.delta = delta

    def run(self, inputs):
        env = {id(v): x for v, x in zip(self.graph.consts, self.graph.const_values)}
        env.update((id(v), x) for v, x in zip(self.graph.inputs, inputs))

        def read(v):
            return env[id(v)] if id(v) in env else literal_value(v)

        for eqn in self.graph.eqns:
            out = run_eqn(eqn, [read(v) for v in eqn.inputs])
            if eqn.prim == self.bad_prim:
                out = (out + self.delta).astype(out.dtype)
            env[id(eqn.out)] = out
        return [np.array(read(v)) for v in self.graph.outputs]


@pytest.fixture
def faulty_engine(monkeypatch):
    """Install a stand-in engine whose programs get `prim` wrong by `delta`; returns the installer."""

    def install(prim, delta=1.0):
        monkeypatch.delenv("KILN_ENGINE", raising=False)
        monkeypatch.setattr(engine, "available", lambda: True)
        monkeypatch.setattr(engine, "compile_graph", lambda graph, shapeless=False: FaultyProgram(graph, prim, delta))

    return install


@pytest.fixture
def broken_tanh(monkeypatch, tmp_path):
    """The real engine with a tanh kernel expression that is off by 0.5 (kernels cached under tmp_path)."""
    monkeypatch.delenv("KILN_ENGINE", raising=False)
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    record = REGISTRY["tanh"]
    assert "{0}" in record.c_expr
    monkeypatch.setitem(REGISTRY, "tanh", dataclasses.replace(record, c_expr=f"({record.c_expr} + 0.5f)"))


@pytest.fixture(params=["engine", "interpreter"])
def backend(request, monkeypatch):
    """Run the test once on engine kernels and once with KILN_ENGINE=0."""
    if request.param == "engine":
        if not engine.available():  # also under KILN_ENGINE=0: the interpreter case covers that run
            pytest.skip("C++ engine not available")
    else:
        monkeypatch.setenv("KILN_ENGINE", "0")
    return request.param


def equation_line(traced: str, prim: str, occurrence: int = 0):
    """(1-based position, text) of the `occurrence`-th `prim` equation in a printed traced graph."""
    eqns = [line.strip() for line in traced.splitlines()[1:-1]]
    hits = [i for i, line in enumerate(eqns) if re.search(rf"= {prim}\b", line)]
    i = hits[occurrence]
    return i + 1, len(eqns), eqns[i]


def exp_then_tanh(x, y):
    return mx.exp(x) * 2 + mx.tanh(y)


def masked_tanh(x):
    # The comparison hides tanh's error (nothing exceeds 10); select passes the wrong value through.
    t = mx.tanh(x)
    return mx.where(t > 10, x, t)


X = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
Y = np.array([0.5, -1.0, 3.0], dtype=np.float32)


def fresh(fun):
    """A new function object each time, so no trace is shared with another test (caches are per function)."""
    return functools.partial(fun)


# -- KILN_VERIFY=1 ------------------------------------------------------------------------------------
def test_verify_passes_correct_functions(monkeypatch, backend):
    calls = []
    real = verify.verify_program
    monkeypatch.setattr(verify, "verify_program", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setenv("KILN_VERIFY", "1")

    def step(x, y, scale=1.0):
        z = mx.sigmoid(x) * y + scale
        return {"z": z, "parts": [mx.sum(z, axis=0), (x > 0).astype(mx.int32) * 3]}

    compiled = mx.compile(step)
    for _ in range(2):  # the tracing call and a cache hit are both verified
        out = compiled(mx.array(X), mx.array(Y), scale=2.0)
        z = 1 / (1 + np.exp(-X.astype(np.float64))) * Y + 2.0
        np.testing.assert_allclose(np.array(out["z"]), z, rtol=1e-5)
        np.testing.assert_allclose(np.array(out["parts"][0]), z.sum(axis=0), rtol=1e-5)
        np.testing.assert_array_equal(np.array(out["parts"][1]), (X > 0).astype(np.int32) * 3)
    assert len(calls) == 2


def test_verify_checks_shapeless_replays(monkeypatch, backend):
    monkeypatch.setenv("KILN_VERIFY", "1")
    compiled = mx.compile(fresh(lambda a, b: mx.maximum(a * b, 0.0) - mx.abs(b)), shapeless=True)
    compiled(mx.array(X), mx.array(Y))
    a = np.arange(20, dtype=np.float32).reshape(4, 5) - 7
    b = np.array([[2.0], [-1.0], [0.5], [3.0]], dtype=np.float32)
    out = compiled(mx.array(a), mx.array(b))
    np.testing.assert_array_equal(np.array(out), np.maximum(a * b, 0) - np.abs(b))


def test_a_fault_goes_unnoticed_without_verify(monkeypatch, faulty_engine):
    monkeypatch.delenv("KILN_VERIFY", raising=False)
    faulty_engine("exp")
    out = mx.compile(fresh(exp_then_tanh))(mx.array(X), mx.array(Y))
    np.testing.assert_allclose(np.array(out), (np.exp(X) + 1) * 2 + np.tanh(Y), rtol=1e-5)


def test_verify_names_the_faulty_equation(monkeypatch, faulty_engine):
    monkeypatch.setenv("KILN_VERIFY", "1")
    faulty_engine("exp")
    compiled = mx.compile(fresh(exp_then_tanh))
    position, total, line = equation_line(compiled.graphs(mx.array(X), mx.array(Y))["traced"], "exp")
    with pytest.raises(CompiledMismatch) as info:
        compiled(mx.array(X), mx.array(Y))
    message = str(info.value)
    assert message.startswith("[compile] Output 0")
    assert f"equation {position} of {total} (`exp`): {line}" in message
    assert "6 of 6 elements differ" in message


def test_verify_follows_a_masked_divergence_back(monkeypatch, faulty_engine):
    # Bisection alone lands on `select` (the comparison between them agrees); select is right given its inputs.
    monkeypatch.setenv("KILN_VERIFY", "1")
    faulty_engine("tanh", delta=0.25)
    compiled = mx.compile(fresh(masked_tanh))
    position, total, line = equation_line(compiled.graphs(mx.array(X))["traced"], "tanh")
    with pytest.raises(CompiledMismatch, match=re.escape(f"equation {position} of {total} (`tanh`): {line}")):
        compiled(mx.array(X))


def test_verify_reports_an_output_assembly_fault(monkeypatch, faulty_engine):
    # Every equation is right, but the program swaps its two outputs.
    monkeypatch.setenv("KILN_VERIFY", "1")
    faulty_engine("none")

    class Swapped(FaultyProgram):
        def run(self, inputs):
            return super().run(inputs)[::-1]

    monkeypatch.setattr(engine, "compile_graph", lambda graph, shapeless=False: Swapped(graph, "none", 0))
    compiled = mx.compile(fresh(lambda x: (x + 1, x - 1)))
    with pytest.raises(CompiledMismatch, match="no single equation"):
        compiled(mx.array(X))


def test_verify_catches_a_broken_kernel(monkeypatch, broken_tanh):
    if not engine.available():
        pytest.skip("C++ engine not available")
    monkeypatch.setenv("KILN_VERIFY", "1")
    compiled = mx.compile(fresh(exp_then_tanh))
    position, total, line = equation_line(compiled.graphs(mx.array(X), mx.array(Y))["traced"], "tanh")
    with pytest.raises(CompiledMismatch) as info:
        compiled(mx.array(X), mx.array(Y))
    assert f"equation {position} of {total} (`tanh`): {line}" in str(info.value)
    compiled = mx.compile(fresh(masked_tanh))
    position, total, line = equation_line(compiled.graphs(mx.array(X))["traced"], "tanh")
    with pytest.raises(CompiledMismatch, match=re.escape(f"equation {position} of {total} (`tanh`)")):
        compiled(mx.array(X))


def test_verify_bisects_at_a_shapeless_replay_shape(monkeypatch, broken_tanh):
    if not engine.available():
        pytest.skip("C++ engine not available")
    monkeypatch.delenv("KILN_VERIFY", raising=False)
    compiled = mx.compile(fresh(masked_tanh), shapeless=True)
    compiled(mx.array(X))
    monkeypatch.setenv("KILN_VERIFY", "1")
    with pytest.raises(CompiledMismatch, match=r"\(`tanh`\): b:f32\[2,3\] = tanh a"):
        compiled(mx.ones((7, 5)))  # same ndim: a replay of the (2, 3) trace


def test_verify_names_the_mismatched_state_output(monkeypatch, faulty_engine):
    monkeypatch.setenv("KILN_VERIFY", "1")
    faulty_engine("subtract", delta=0.5)
    state = [mx.array(Y)]

    @functools.partial(mx.compile, inputs=state, outputs=state)
    def step(x):
        state[0] = state[0] - 0.1 * mx.sum(x, axis=0)
        return x * 2

    with pytest.raises(CompiledMismatch, match=r"Output 1 .*\(`subtract`\)"):
        step(mx.array(X))


def test_broken_kernel_is_silent_without_verify(monkeypatch, broken_tanh):
    # Proves the fixture really breaks the kernel, so the test above cannot pass by accident.
    if not engine.available():
        pytest.skip("C++ engine not available")
    monkeypatch.delenv("KILN_VERIFY", raising=False)
    out = mx.compile(fresh(lambda y: mx.tanh(y)))(mx.array(Y))
    np.testing.assert_allclose(np.array(out), np.tanh(Y) + 0.5, rtol=1e-5)


def test_verify_zero_means_off(monkeypatch, faulty_engine):
    monkeypatch.setenv("KILN_VERIFY", "0")
    faulty_engine("exp")
    mx.compile(fresh(exp_then_tanh))(mx.array(X), mx.array(Y))


# -- kiln.testing.assert_compiled_matches ----------------------------------------------------------------
def _tree_fn(x, y, *, power=2):
    s = mx.sum(x ** power, axis=1, keepdims=True)
    return {"scaled": x / (s + 1), "pair": (mx.argmax(x, axis=1), [y * 2, y > 0]), "tag": "ok", "n": 3}


@pytest.mark.parametrize("fun,args,kwargs", [
    (lambda x: mx.exp(x) * mx.cos(x) - 1, (X,), {}),
    (lambda x, y: (x @ mx.transpose(x), mx.softmax(y, axis=-1)), (X, Y), {}),
    (_tree_fn, (X, Y), {"power": 3}),
    (lambda a, b: (a // b, a % b, a & b), (np.arange(-6, 6, dtype=np.int32), np.int32(5)), {}),
    (lambda x: mx.where(mx.isnan(x), 0.0, x), (np.array([np.nan, np.inf, -1.0], np.float32),), {}),
    (lambda x: x.astype(mx.float16) * 3 + 1, (X,), {}),
], ids=["chain", "two_outputs", "tree_kwargs", "integers", "nan_inf", "float16"])
def test_assert_compiled_matches_passes(backend, fun, args, kwargs):
    arrays = [mx.array(a) for a in args]
    assert_compiled_matches(fresh(fun), *arrays, **kwargs)


def test_assert_compiled_matches_accepts_compiled_functions(backend):
    compiled = mx.compile(fresh(lambda a, b: mx.tanh(a) + b), shapeless=True)
    assert_compiled_matches(compiled, mx.array(X), mx.array(Y))
    assert_compiled_matches(compiled, mx.ones((4, 1, 5)), mx.zeros((5,)))


def test_assert_compiled_matches_reports_the_output_and_equation(faulty_engine):
    faulty_engine("tanh", delta=1e-3)
    fun = fresh(lambda x, y: (mx.exp(x), {"t": mx.tanh(y) * 2}))
    with pytest.raises(CompiledMismatch) as info:
        assert_compiled_matches(fun, mx.array(X), mx.array(Y))
    message = str(info.value)
    position, total, line = equation_line(mx.compile(fun).graphs(mx.array(X), mx.array(Y))["traced"], "tanh")
    assert message.startswith("output '1.t': compiled and eager results differ (3 of 3 elements differ; first at "
                              "index [0]")
    assert f"first divergence at equation {position} of {total} (`tanh`): {line}" in message
    assert_compiled_matches(fresh(fun), mx.array(X), mx.array(Y), atol=1e-2)  # the tolerance is honoured


def test_assert_compiled_matches_catches_a_broken_kernel(broken_tanh):
    if not engine.available():
        pytest.skip("C++ engine not available")
    with pytest.raises(CompiledMismatch, match=r"^output: .*first divergence at equation \d+ of \d+ \(`tanh`\)"):
        assert_compiled_matches(fresh(masked_tanh), mx.array(X))


def test_assert_compiled_matches_integer_results_are_exact(faulty_engine):
    faulty_engine("multiply", delta=1)
    with pytest.raises(CompiledMismatch, match="first divergence at equation 1 of 2 \\(`multiply`\\)"):
        assert_compiled_matches(fresh(lambda a: a * 3 + 1), mx.arange(5), rtol=1.0, atol=1e9)


def test_assert_compiled_matches_checks_the_tree_and_constants():
    calls = []

    def fun(x):
        calls.append(1)
        return (x, 1.0) if len(calls) == 1 else (x, 2.0)  # eager and traced calls disagree on the constant

    with pytest.raises(CompiledMismatch, match="output '1': compiled 2.0 != eager 1.0"):
        assert_compiled_matches(fun, mx.array(X))

    def shape_changes(x):
        calls.append(1)
        return [x] if len(calls) % 2 else {"x": x}

    with pytest.raises(CompiledMismatch, match="tree with leaves"):
        assert_compiled_matches(shape_changes, mx.array(X))


def test_assert_compiled_matches_with_captured_state_leaves_it_alone():
    from functools import partial

    state = [mx.array(1.0)]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x):
        state[0] = state[0] + x
        return state[0] * 2

    assert_compiled_matches(step, mx.array(1.0))  # eager and compiled both start from state 1.0
    assert state[0].item() == 1.0  # and the check does not advance the state
