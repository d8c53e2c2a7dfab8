"""Newcomer contracts (issue 13): dtype arguments, placeholder errors, debug output, environment switches,
the engine-load warning, docstrings, the tour, and assert_compiled_matches on random functions."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import kiln.core as mx
from kiln.core import engine, env
from kiln.core.array import PlaceholderError
from kiln.testing import CompiledMismatch, assert_compiled_matches

try:
    import mlx.core as mlx
except ImportError:  # the oracle is optional
    mlx = None


def run_python(code: str, **environ) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (new import, new warnings) with extra environment variables."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    full.update(environ)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


# -- 4: dtype arguments are Dtypes, as in MLX ---------------------------------------------------------------
CREATION = {
    "zeros": lambda m, d: m.zeros((2,), dtype=d),
    "ones": lambda m, d: m.ones((2,), dtype=d),
    "full": lambda m, d: m.full((2,), 1, dtype=d),
    "arange": lambda m, d: m.arange(3, dtype=d),
    "linspace": lambda m, d: m.linspace(0, 1, 3, dtype=d),
    "eye": lambda m, d: m.eye(2, dtype=d),
    "identity": lambda m, d: m.identity(2, dtype=d),
    "tri": lambda m, d: m.tri(2, dtype=d),
    "array": lambda m, d: m.array([1, 2], dtype=d),
    "full_like": lambda m, d: m.full_like(m.ones((2,)), 3, dtype=d),
    "astype": lambda m, d: m.ones((2,)).astype(d),
    "mx.astype": lambda m, d: m.astype(m.ones((2,)), d),
}


@pytest.mark.parametrize("op", CREATION)
@pytest.mark.parametrize("bad", ["float32", float, np.float32], ids=["str", "type", "numpy"])
def test_dtype_given_other_than_a_dtype_is_a_type_error(op, bad):
    with pytest.raises(TypeError, match="dtype"):
        CREATION[op](mx, bad)
    if mlx is not None and hasattr(mlx, op.split(".")[-1]):
        with pytest.raises(TypeError):  # the oracle agrees
            CREATION[op](mlx, bad)


@pytest.mark.parametrize("op", CREATION)
def test_dtype_given_as_a_dtype_still_works(op):
    out = CREATION[op](mx, mx.int32)
    assert out.dtype == mx.int32


# -- 5: placeholder errors are ValueErrors -----------------------------------------------------------------
def test_evaluating_a_traced_value_is_a_value_error_with_the_clear_message():
    with pytest.raises(ValueError, match="compiled function") as info:
        mx.compile(lambda x: x.item())(mx.ones(()))
    assert isinstance(info.value, PlaceholderError)


# -- 8: KILN_DEBUG output goes to stderr, once -------------------------------------------------------------
DEBUG_PROGRAM = """
import kiln.core as mx
print("program output")
mx.compile(lambda x: mx.exp(x) * 2)(mx.ones((3,)))
"""


@pytest.mark.skipif(not engine.available(), reason="the engine logs its optimised graph and kernels")
def test_kiln_debug_writes_stderr_only_and_once():
    done = run_python(DEBUG_PROGRAM, KILN_DEBUG="3")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "program output\n"
    assert done.stderr.count("graph after simplify and fuse") == 1
    assert done.stderr.count("kernel kiln_") == 1
    assert done.stderr.count("traced graph of") == 1


# -- 11: a warning when the engine cannot load ------------------------------------------------------------
BLOCK_ENGINE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "kiln._engine":
            raise ImportError("blocked by the test")
sys.meta_path.insert(0, Block())
import kiln.core as mx
print(mx.compile(lambda x: x + 1)(mx.ones((2,))).tolist())
"""


def test_engine_that_cannot_load_warns_once_on_stderr():
    done = run_python(BLOCK_ENGINE)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[2.0, 2.0]\n"
    assert done.stderr.count("did not load (blocked by the test)") == 1
    assert "KILN_ENGINE=0" in done.stderr


@pytest.mark.parametrize("value", ["0", "off", "False", " no "])
def test_engine_turned_off_on_purpose_is_silent(value):
    done = run_python(BLOCK_ENGINE, KILN_ENGINE=value)
    assert done.returncode == 0 and done.stdout == "[2.0, 2.0]\n"
    assert done.stderr == ""


# -- 12: documented spellings of the switches; anything else warns --------------------------------------
@pytest.mark.parametrize("value,enabled", [("0", False), ("off", False), ("OFF", False), ("false", False),
                                           ("no", False), ("1", True), ("on", True), ("True", True),
                                           ("yes", True), ("", True)])
def test_kiln_engine_spellings(monkeypatch, value, enabled):
    monkeypatch.setenv("KILN_ENGINE", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert env.engine_enabled() is enabled
        if not enabled:
            assert not engine.available()
            assert "reference interpreter" in mx.engine_status()


def test_kiln_engine_unknown_value_warns(monkeypatch):
    monkeypatch.setenv("KILN_ENGINE", "maybe-later")
    with pytest.warns(RuntimeWarning, match="KILN_ENGINE='maybe-later' is not understood"):
        assert env.engine_enabled() is True


@pytest.mark.parametrize("value,level", [("0", 0), ("2", 2), ("on", 1), ("off", 0), ("", 0)])
def test_kiln_debug_spellings(monkeypatch, value, level):
    monkeypatch.setenv("KILN_DEBUG", value)
    assert env.debug_level() == level


def test_kiln_debug_unknown_value_warns(monkeypatch):
    monkeypatch.setenv("KILN_DEBUG", "verbose")
    with pytest.warns(RuntimeWarning, match="KILN_DEBUG='verbose'"):
        assert env.debug_level() == 0


@pytest.mark.parametrize("value", ["abc", "0", "-2", "4x", "1.5"])
def test_kiln_num_threads_invalid_warns_at_import(value):
    done = run_python("import kiln.core", KILN_NUM_THREADS=value)
    assert done.returncode == 0
    if engine.available():
        assert f"KILN_NUM_THREADS={value!r} is not a positive integer" in done.stderr


@pytest.mark.parametrize("value", ["1", "2", " 3 "])
def test_kiln_num_threads_valid_is_silent(value):
    done = run_python("import kiln.core", KILN_NUM_THREADS=value)
    assert done.returncode == 0 and done.stderr == ""


def test_kiln_verify_off_spelling_is_off(monkeypatch):
    import importlib

    compile_module = importlib.import_module("kiln.core.compile")  # kiln.core.compile is the function
    monkeypatch.setenv("KILN_VERIFY", "off")
    assert not compile_module._env_flag("KILN_VERIFY", value_matters=True)()
    monkeypatch.setenv("KILN_VERIFY", "1")
    assert compile_module._env_flag("KILN_VERIFY", value_matters=True)()


# -- 14: assert_compiled_matches on a function that draws random numbers ------------------------------------
def test_assert_compiled_matches_names_random_state_and_keys():
    def noisy(x):
        return x + mx.random.uniform(shape=x.shape)

    with pytest.raises(CompiledMismatch) as info:
        assert_compiled_matches(noisy, mx.ones((4,)))
    message = str(info.value)
    assert "consumed random state" in message and "key=" in message
    assert "no single equation" not in message

    def keyed(x, key):
        return x + mx.random.uniform(shape=x.shape, key=key)

    assert_compiled_matches(keyed, mx.ones((4,)), key=mx.random.key(0))  # the advice works
    captured = mx.compile(noisy, inputs=mx.random.state, outputs=mx.random.state)
    assert_compiled_matches(captured, mx.ones((4,)))


def test_assert_compiled_matches_still_reports_real_mismatches():
    frozen = [mx.array(1.0)]
    compiled = mx.compile(lambda x: x + frozen[0])
    compiled(mx.ones((2,)))  # traced now: frozen[0] is a constant of the trace (guide B10)
    frozen[0] = mx.array(5.0)
    with pytest.raises(CompiledMismatch, match="differ") as info:
        assert_compiled_matches(compiled, mx.ones((2,)))
    assert "random" not in str(info.value)


# -- 10: every public callable of kiln.core has an MLX-style docstring --------------------------------------
def _public_callables():
    import inspect

    for name in sorted(dir(mx)):
        obj = getattr(mx, name)
        if name.startswith("_") or inspect.ismodule(obj) or isinstance(obj, mx.Dtype) or not callable(obj):
            continue
        yield name, obj


def _documented_parameters(fn) -> list:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.name not in ("self", "stream")]


def test_every_public_callable_has_a_docstring_with_args_and_returns():
    import inspect

    missing = []
    for name, obj in _public_callables():
        doc = inspect.getdoc(obj) or ""
        if inspect.isclass(obj):
            ok = bool(doc.strip()) and doc != inspect.getdoc(type)
        else:
            ok = bool(doc.strip()) and "Returns:" in doc and (not _documented_parameters(obj) or "Args:" in doc)
        if not ok:
            missing.append(name)
    assert not missing, f"public callables without an MLX-style docstring (summary, Args, Returns): {missing}"


def test_help_of_compile_documents_the_decorator_switches_and_an_example():
    import pydoc

    text = pydoc.render_doc(mx.compile, renderer=pydoc.plaintext)
    for needle in ("@mx.compile", "shapeless=True", "MLX_DISABLE_COMPILE", "KILN_ENGINE", "KILN_DEBUG",
                   "inputs=state, outputs=state", "Args:", "Returns:"):
        assert needle in text, needle


# -- 13: the tour says what it measures, takes medians, labels the uncompiled column -----------------------
def test_tour_speed_table_reports_progress_medians_and_labels(capsys, monkeypatch):
    import kiln.__main__ as tour

    monkeypatch.setattr(tour, "_MAX_SAMPLES", 3)
    tour.speed_table(mx, quick=True, shapes=[(8,), (2, 3)])
    captured = capsys.readouterr()
    assert "measuring eager gelu at (8,)" in captured.err and "measuring compiled gelu at (2, 3)" in captured.err
    assert "measuring" not in captured.out  # progress on stderr, the table on stdout
    assert "eager (uncompiled)" in captured.out and "reference" in captured.out and "median" in captured.out
    rows = [line for line in captured.out.splitlines() if line.startswith("| (")]
    assert len(rows) == 2 and all(line.rstrip().endswith("3 / 3 |") for line in rows)


def test_tour_median_of_samples(monkeypatch):
    import kiln.__main__ as tour

    class FakeMx:
        def eval(self, _):
            pass

    now = [0.0]
    costs = iter([0.0, 5.0, 1.0, 9.0, 2.0, 3.0])  # the warm-up call, then one call per sample

    def fun(x):
        now[0] += next(costs)
        return x

    monkeypatch.setattr(tour, "_CALLS_PER_SAMPLE", 1)
    monkeypatch.setattr(tour.time, "perf_counter", lambda: now[0])
    median, n = tour._median_time_per_call(fun, None, FakeMx(), budget_s=100.0, label="test")
    assert (median, n) == (3.0, 5)  # the median, not the mean (4.0)


def test_every_public_class_and_function_of_nn_and_optimizers_has_a_docstring():
    import inspect

    import kiln.nn as nn
    import kiln.optimizers as optim

    missing = []
    for module in (nn, nn.losses, nn.init, optim):
        for name in dir(module):
            obj = getattr(module, name)
            if name.startswith("_") or inspect.ismodule(obj) or not callable(obj):
                continue
            if not getattr(obj, "__module__", "").startswith("kiln"):
                continue  # re-exported helpers from elsewhere (typing, functools)
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{module.__name__}.{name}")
    assert not missing, missing
