"""compile()'s rules beyond the guide: injective cache keys, argument types, inputs=/outputs= containers,
failed traces, function metadata, trees, threads, memory, recompile warnings, KILN_DEBUG explanations and
shapeless replay's shape checks. Every compiled result is compared with the uncompiled function or numpy.

These rules live in compile.py whatever runs the traced graph, so most tests run compiled graphs on the
reference interpreter (KILN_ENGINE=0: dozens of constant-specialised kernels would each need a JIT build);
the thread tests, and test_compile.py, use the engine when it is built.
"""

import re
import collections
import gc
import importlib
import inspect
import subprocess
import sys
import threading
import warnings
import weakref
import zlib
from functools import partial
from typing import NamedTuple

import kiln.core as mx
import numpy as np
import pytest
from kiln.core.array import PlaceholderError

compile_module = importlib.import_module("kiln.core.compile")

pytestmark = pytest.mark.filterwarnings("ignore:.*new function object:UserWarning")


@pytest.fixture(autouse=True)
def _compile_on(monkeypatch):
    monkeypatch.delenv("MLX_DISABLE_COMPILE", raising=False)
    monkeypatch.delenv("KILN_DEBUG", raising=False)
    monkeypatch.setenv("KILN_ENGINE", "0")
    mx.enable_compile()
    yield
    mx.enable_compile()


@pytest.fixture
def with_engine(monkeypatch):
    """Run compiled graphs on the C++ engine where it is built (the users' default)."""
    monkeypatch.delenv("KILN_ENGINE")


def counted(fun):
    runs = [0]

    def wrapper(*args, **kwargs):
        runs[0] += 1
        return fun(*args, **kwargs)

    return wrapper, runs


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=rtol, atol=atol)


def fingerprint(c) -> float:
    """A number that differs for every constant in the key table (type and value both show in repr)."""
    return float(zlib.crc32(repr(c).encode()) % 9973)


# -- injective keys -----------------------------------------------------------------------------------
KEY_PAIRS = [
    ([1], (1,)),
    (True, 1),
    (1, 1.0),
    (True, 1.0),
    (False, 0),
    ("abc", hash("abc")),
    ("1", 1),
    ([[1], 2], [[1, 2]]),
    ([1, [2]], [[1], 2]),
    (None, 0),
    (None, "None"),
    (None, []),
    (-0.0, 0.0),
    (2**64, 2**64 + 1),
    (2**70, -(2**70)),
    (2**100, float(2**100)),
    ({"a": 1}, {"b": 1}),
    ({1: 0}, {True: 0}),
    ({1: 0}, {1.0: 0}),
    ({"a": 1, "b": 2}, [1, 2]),
    ((), []),
    ({}, []),
    (np.float32(-0.0), np.float32(0.0)),
    (np.float32(1.0), np.float64(1.0)),
    (np.int32(1), 1),
    (1e-300, 0.0),
    ([1.0, 2.0], [1.0, 2]),
]


@pytest.mark.parametrize("a, b", KEY_PAIRS, ids=[f"{a!r}-vs-{b!r}" for a, b in KEY_PAIRS])
def test_key_is_injective(a, b):
    body, runs = counted(lambda x, c: x + fingerprint(c))
    compiled = mx.compile(body)
    x = mx.array(1.0)
    for constant in (a, b, a, b):
        close(compiled(x, constant), 1.0 + fingerprint(constant))
    assert runs[0] == 2


def test_equal_constants_share_a_trace():
    body, runs = counted(lambda x, c: x + fingerprint(c))
    compiled = mx.compile(body)
    x = mx.array(1.0)
    for constant in ([1, (2, "s")], [1, (2, "s")], float("nan"), float("nan"), 2**80, 2**80, "ab", "a" + "b"):
        close(compiled(x, constant), 1.0 + fingerprint(constant))
    assert runs[0] == 4


def test_big_int_argument_is_a_value():
    compiled = mx.compile(lambda x, n: x + (n % 7))
    close(compiled(mx.array(1.0), 2**70), 1.0 + (2**70) % 7)
    close(compiled(mx.array(1.0), 2**70 + 1), 1.0 + (2**70 + 1) % 7)


def test_same_array_twice_is_not_confused_with_two_arrays():
    body, runs = counted(lambda a, b: a - b)
    compiled = mx.compile(body)
    x, y = mx.array([1.0, 2.0]), mx.array([5.0, 7.0])
    close(compiled(x, x), [0.0, 0.0])
    close(compiled(x, y), [-4.0, -5.0])
    close(compiled(y, y), [0.0, 0.0])
    assert runs[0] == 2


@pytest.mark.parametrize("bad", [object(), {1, 2}, mx.float32, np.zeros(3), b"bytes", len, range(3)],
                         ids=["object", "set", "dtype", "ndarray", "bytes", "builtin", "range"])
def test_unsupported_argument_types_raise_value_error(bad):
    body, runs = counted(lambda x, c: x)
    compiled = mx.compile(body)
    with pytest.raises(ValueError, match=r"^\[compile\] Function arguments must be trees") as info:
        compiled(mx.array(1.0), [1, {"k": bad}])
    assert type(bad).__name__ in str(info.value)
    assert runs[0] == 0


def test_compile_rejects_non_callables():
    with pytest.raises(ValueError, match=r"^\[compile\]"):
        mx.compile(3)


# -- capture containers -------------------------------------------------------------------------------
def test_inputs_of_every_container_kind():
    state = {"w": mx.array([1.0, 2.0]), "layers": [mx.array(10.0), {"b": mx.array(100.0)}]}
    body, runs = counted(lambda x: x * state["w"] + state["layers"][0] + state["layers"][1]["b"])
    compiled = mx.compile(body, inputs=state)
    close(compiled(mx.array(1.0)), [111.0, 112.0])
    state["w"] = mx.array([3.0, 4.0])
    state["layers"][0] = mx.array(20.0)
    state["layers"][1]["b"] = mx.array(200.0)
    close(compiled(mx.array(2.0)), [226.0, 228.0])
    assert runs[0] == 1


def test_inputs_list_of_arrays():
    state = [mx.array(1.0), mx.array(2.0)]
    compiled = mx.compile(lambda x: x + state[0] * state[1], inputs=state)
    close(compiled(mx.array(0.0)), 2.0)
    state[1] = mx.array(7.0)
    close(compiled(mx.array(0.0)), 7.0)


def test_tuples_in_captured_state_are_refused_clearly():
    with pytest.raises(ValueError, match=r"^\[compile\].*lists or dicts"):
        mx.compile(lambda x: x, inputs=(mx.array(1.0),))
    with pytest.raises(ValueError, match=r"^\[compile\].*lists or dicts"):
        mx.compile(lambda x: x, outputs=[(mx.array(1.0),)])


def test_bare_array_as_capture_is_refused_clearly():
    a = mx.array(1.0)
    with pytest.raises(ValueError, match=r"^\[compile\] inputs= must be a container"):
        mx.compile(lambda x: x + a, inputs=a)
    with pytest.raises(ValueError, match=r"^\[compile\] outputs= must be a container"):
        mx.compile(lambda x: x + a, outputs=a)


def test_inputs_shared_with_arguments():
    state = [mx.array(2.0)]
    compiled = mx.compile(lambda x: x * state[0], inputs=state)
    close(compiled(state[0]), 4.0)  # the same array as argument and captured input
    close(compiled(mx.array(3.0)), 6.0)


def test_random_state_capture_with_module_state():
    nn = pytest.importorskip("kiln.nn")
    mx.random.seed(5)
    model = nn.Dropout(0.5)
    model.train()
    state = [model.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x):
        return model(x)

    x = mx.ones((64,))
    first, second = np.array(step(x)), np.array(step(x))
    assert not np.array_equal(first, second)
    assert set(np.unique(first)) <= {0.0, 2.0}
    mx.random.seed(5)
    eager_first = np.array(model(x))
    np.testing.assert_array_equal(first, eager_first)


def test_module_state_capture():
    nn = pytest.importorskip("kiln.nn")
    model = nn.Linear(3, 2)
    state = [model.state]
    compiled = mx.compile(lambda x: model(x), inputs=state)
    x = mx.array([[1.0, 2.0, 3.0]])
    close(compiled(x), model(x))
    model.update({"weight": mx.zeros((2, 3)), "bias": mx.ones((2,))})
    close(compiled(x), [[1.0, 1.0]])


def test_module_as_argument_with_value_and_grad():
    nn = pytest.importorskip("kiln.nn")
    mx.random.seed(0)
    model = nn.Linear(3, 1)
    x = mx.random.uniform(shape=(4, 3))
    y = mx.array([0.0, 1.0, 0.0, 1.0])

    def loss_fn(model, x, y):
        return mx.mean((model(x).squeeze() - y) ** 2)

    compiled = mx.compile(loss_fn)
    w, b = np.array(model.weight), np.array(model.bias)
    residual = np.array(x) @ w.T[:, 0] + b[0] - np.array(y)
    close(compiled(model, x, y), np.mean(residual**2))
    loss, grads = nn.value_and_grad(model, compiled)(model, x, y)
    close(loss, np.mean(residual**2))
    close(grads["weight"], (2 * residual @ np.array(x) / 4)[None, :], rtol=1e-4)
    close(grads["bias"], [2 * residual.mean()], rtol=1e-4)


def test_inputs_only_container_is_restored_after_trace():
    state = [mx.array(1.0)]
    original = state[0]

    def body(x):
        state[0] = state[0] + x  # a side effect on a container only read: not repeated on cached calls
        return state[0] * 2

    compiled = mx.compile(body, inputs=state)
    close(compiled(mx.array(1.0)), 4.0)
    assert state[0] is original and state[0]._placeholder is None
    mx.eval(state[0] + 1)


# -- a failing first trace leaves nothing behind ---------------------------------------------------------
def test_failed_trace_is_not_cached_and_containers_are_restored():
    state = {"a": mx.array(1.0), "b": [mx.array(2.0)]}
    snapshot = (state["a"], list(state["b"]))
    fail = [True]

    def body(x):
        state["a"] = state["a"] + x
        state["b"].append(x * 3)
        if fail[0]:
            raise RuntimeError("boom")
        return x

    wrapped, runs = counted(body)
    compiled = mx.compile(wrapped, inputs=state, outputs=state)
    with pytest.raises(RuntimeError, match="boom"):
        compiled(mx.array(1.0))
    assert state["a"] is snapshot[0] and state["b"] == snapshot[1]
    assert state["b"][0] is snapshot[1][0]
    fail[0] = False
    close(compiled(mx.array(1.0)), 1.0)
    assert runs[0] == 2
    close(state["a"], 2.0)
    assert len(state["b"]) == 2 and state["b"][1]._placeholder is None
    close(state["b"][1], 3.0)


def test_failed_trace_inside_function_body_then_success():
    calls = [0]

    def body(x):
        calls[0] += 1
        if calls[0] == 1:
            return x.item()  # evaluates a placeholder: raises
        return x + 1

    compiled = mx.compile(body)
    with pytest.raises(PlaceholderError):
        compiled(mx.array(1.0))
    close(compiled(mx.array(1.0)), 2.0)
    close(compiled(mx.array(5.0)), 6.0)
    assert calls[0] == 2


def test_failed_first_run_restores_captured_containers(monkeypatch):
    class Broken:
        def __init__(self, graph, shapeless=False):
            self.graph = graph
            self.kernel_sources = {}

        def run(self, inputs):
            raise RuntimeError("kernel failed")

    monkeypatch.setattr(compile_module, "_make_program", Broken)
    state = [mx.array(1.0)]
    original = state[0]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x):
        state[0] = state[0] + x
        state.append(x * 2)
        return x

    with pytest.raises(RuntimeError, match="kernel failed"):
        step(mx.array(1.0))
    assert state == [original] and state[0] is original


def test_failed_shapeless_replay_leaves_outputs_untouched():
    state = [mx.array(0.0)]

    @partial(mx.compile, outputs=state, shapeless=True)
    def fun(x):
        state[0] = mx.sum(x)
        return x.reshape(x.shape[0] * x.shape[1], -1)

    fun(mx.ones((2, 3, 4)))
    close(state[0], 24.0)
    with pytest.raises(ValueError, match=r"^\[reshape\]"):
        fun(mx.ones((5, 5, 3)))
    close(state[0], 24.0)


# -- metadata, trees, kwargs, partial, decorators ------------------------------------------------------
def test_metadata_is_kept():
    def fun(x, y=2.0, *rest, scale: float = 1.0, **extra):
        """Docstring."""
        return x

    compiled = mx.compile(fun)
    assert compiled.__name__ == "fun"
    assert compiled.__doc__ == "Docstring."
    assert compiled.__wrapped__ is fun
    assert inspect.signature(compiled) == inspect.signature(fun)
    assert compiled.__qualname__ == fun.__qualname__
    assert compiled.__module__ == fun.__module__


class Pair(NamedTuple):
    a: object
    b: object


class OtherPair(NamedTuple):
    a: object
    b: object


def test_namedtuple_inputs_and_outputs_keep_their_types():
    body, runs = counted(lambda p: Pair(p.a + p.b, p.a * p.b))
    compiled = mx.compile(body)
    out = compiled(Pair(mx.array(2.0), mx.array(3.0)))
    assert type(out) is Pair
    close(out.a, 5.0)
    close(out.b, 6.0)
    out = compiled(OtherPair(mx.array(2.0), mx.array(3.0)))
    assert runs[0] == 2  # a different tuple type is a different tree
    assert type(out) is Pair


def test_output_trees_and_constants():
    compiled = mx.compile(lambda x: {"sum": x + 1, "parts": [x, (x * 2, None)], "n": 3, "s": "ok"})
    out = compiled(mx.array(1.0))
    assert set(out) == {"sum", "parts", "n", "s"}
    close(out["sum"], 2.0)
    assert isinstance(out["parts"], list) and isinstance(out["parts"][1], tuple)
    close(out["parts"][1][0], 2.0)
    assert out["parts"][1][1] is None and out["n"] == 3 and out["s"] == "ok"


def test_input_returned_unchanged():
    compiled = mx.compile(lambda x, y: (x, y + 1))
    x = mx.array([1.0, 2.0])
    a, b = compiled(x, mx.array(0.0))
    close(a, [1.0, 2.0])
    close(b, 1.0)


def test_kwargs():
    def fun(x, y=None, *, scale=1.0):
        out = x * scale
        return out if y is None else out + y

    body, runs = counted(fun)
    compiled = mx.compile(body)
    x, y = mx.array([1.0, 2.0]), mx.array([10.0, 20.0])
    close(compiled(x), fun(x))
    close(compiled(x, y=y), fun(x, y=y))
    close(compiled(x, y=y, scale=3.0), fun(x, y=y, scale=3.0))
    close(compiled(x, scale=3.0, y=y * 2), fun(x, y=y * 2, scale=3.0))
    close(compiled(x, y), fun(x, y))  # positional y: a different tree from keyword y
    before = runs[0]
    close(compiled(x + 1, y=y, scale=3.0), fun(x + 1, y=y, scale=3.0))
    assert runs[0] == before


def test_functools_partial_and_decorator_forms():
    def fun(x, scale):
        return x * scale

    compiled = mx.compile(partial(fun, scale=3.0))
    close(compiled(mx.array(2.0)), 6.0)

    @partial(mx.compile, shapeless=True)
    def double(x):
        return x * 2

    close(double(mx.ones((2,))), [2.0, 2.0])
    close(double(mx.ones((3,))), [2.0, 2.0, 2.0])

    @mx.compile
    def plain(x):
        return x - 1

    close(plain(mx.array(1.0)), 0.0)


def test_compiled_method_caches_per_instance():
    class Scaler:
        def __init__(self, k):
            self.k = k
            self.runs = 0

        @mx.compile
        def apply(self, x):
            self.runs += 1
            return x * self.k

    a, b = Scaler(2.0), Scaler(5.0)
    close(a.apply(mx.array(1.0)), 2.0)
    close(b.apply(mx.array(1.0)), 5.0)
    close(a.apply(mx.array(3.0)), 6.0)
    assert a.runs == 1 and b.runs == 1


def test_compile_of_compiled_function():
    body, runs = counted(lambda x: x * x)
    twice = mx.compile(mx.compile(body))
    close(twice(mx.array(3.0)), 9.0)
    close(twice(mx.array(4.0)), 16.0)
    assert runs[0] == 1


def test_callable_object():
    class Affine:
        def __init__(self):
            self.runs = 0

        def __call__(self, x):
            self.runs += 1
            return 2 * x + 1

    obj = Affine()
    compiled = mx.compile(obj)
    close(compiled(mx.array(1.0)), 3.0)
    close(mx.compile(obj)(mx.array(2.0)), 5.0)
    assert obj.runs == 1


# -- threads ------------------------------------------------------------------------------------------
@pytest.fixture
def fast_switching():
    """Switch threads as often as possible, to interleave first calls."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_concurrent_first_calls_trace_once(fast_switching, with_engine):
    body, runs = counted(lambda x: mx.exp(-x) * 3 + x)
    compiled = mx.compile(body)
    n = 8
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def worker(i):
        try:
            barrier.wait()
            for k in range(5):
                out = compiled(mx.array([float(i), float(k)]))
                results[i] = (np.array(out), (i, k))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert runs[0] == 1
    for out, (i, k) in results:
        v = np.array([i, k], dtype=np.float32)
        close(out, np.exp(-v) * 3 + v)


def test_concurrent_calls_with_different_shapes(fast_switching, with_engine):
    body, runs = counted(lambda x: mx.sum(x * x))
    compiled = mx.compile(body)
    n = 6
    barrier = threading.Barrier(n)
    results, errors = {}, []

    def worker(i):
        try:
            barrier.wait()
            x = np.arange(i + 1, dtype=np.float32)
            for _ in range(3):
                results[i] = (compiled(mx.array(x)).item(), float((x * x).sum()))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert runs[0] == n
    for got, want in results.values():
        assert got == pytest.approx(want)


def test_traced_on_one_thread_released_on_another(with_engine):
    box = {}

    def make():
        def fun(x):
            return x + 1

        compiled = mx.compile(fun)
        box["out"] = np.array(compiled(mx.array(1.0)))
        box["ref"] = weakref.ref(fun)
        box["compiled"] = compiled

    t = threading.Thread(target=make)
    t.start()
    t.join()
    close(box["out"], 2.0)
    compiled = box.pop("compiled")
    close(compiled(mx.array(2.0)), 3.0)  # used on another thread than the one that traced it
    del compiled
    gc.collect()
    assert box["ref"]() is None


def test_released_inside_a_worker_thread(with_engine):
    def fun(x):
        return x * 2

    compiled = mx.compile(fun)
    compiled(mx.array(1.0))
    ref = weakref.ref(fun)
    holder = [compiled, fun]
    del compiled, fun

    def release():
        holder.clear()
        gc.collect()

    t = threading.Thread(target=release)
    t.start()
    t.join()
    gc.collect()
    assert ref() is None


THREADED_EXIT = """
import threading
import kiln.core as mx
fns = [mx.compile(lambda x, k=k: x * k) for k in range(4)]
def work(i):
    for _ in range(20):
        fns[i % 4](mx.ones((i + 1,)))
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
"""


def test_threaded_program_exits_cleanly(with_engine):
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", THREADED_EXIT], capture_output=True, text=True, env=env,
                              check=False, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "ok\n"


# -- memory -------------------------------------------------------------------------------------------
def test_fresh_lambdas_do_not_grow_cache_tables():
    gc.collect()
    before = len(compile_module._tables)
    refs = []
    x = mx.array(1.0)
    for k in range(50):
        fun = lambda v: v * 2 + 1
        refs.append(weakref.ref(fun))
        close(mx.compile(fun)(x), 3.0)
    del fun
    gc.collect()
    assert all(r() is None for r in refs)
    assert len(compile_module._tables) <= before


def test_cache_is_released_with_its_function():
    def fun(x):
        return x + 1

    compiled = mx.compile(fun)
    for n in range(1, 5):
        compiled(mx.ones((n,)))
    table = compiled._cache
    assert len(table) == 4
    ref = weakref.ref(fun)
    table_ref = weakref.ref(table)
    del fun, compiled, table
    gc.collect()
    assert ref() is None and table_ref() is None


def test_unweakrefable_callables_are_kept_apart():
    class Slotted:
        __slots__ = ("k",)

        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return x * self.k

    x = mx.array(1.0)
    gc.collect()
    before = len(compile_module._tables)
    for k in range(20):
        close(mx.compile(Slotted(float(k)))(x), float(k))
    assert len(compile_module._tables) == before  # neither shared by id nor kept alive


def test_lru_bound_per_function(monkeypatch):
    monkeypatch.setattr(compile_module, "_CACHE_SIZE", 3)
    body, runs = counted(lambda x: x + 1)
    compiled = mx.compile(body)

    def call(n):
        close(compiled(mx.ones((n,))), np.full(n, 2.0))

    for n in (1, 2, 3):
        call(n)
    assert runs[0] == 3
    call(1)  # a hit makes 1 the most recently used
    call(4)  # evicts 2, the least recently used
    assert runs[0] == 4 and len(compiled._cache) == 3
    call(1)
    call(3)
    assert runs[0] == 4
    call(2)
    assert runs[0] == 5


# -- recompile warnings and KILN_DEBUG -----------------------------------------------------------------
def test_warns_once_naming_the_changing_shape():
    compiled = mx.compile(lambda x, bias: x + bias)
    bias = mx.array(1.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for n in range(1, 3 * compile_module._WARN_AFTER):
            close(compiled(mx.ones((n,)), bias), np.full(n, 2.0))
    messages = [str(w.message) for w in record if "keeps changing" in str(w.message)]
    assert len(messages) == 1
    assert "argument x keeps changing" in messages[0]
    assert "shapeless=True" in messages[0]


def test_warns_once_naming_the_changing_constant():
    def scaled(x, scale):
        return x * scale

    compiled = mx.compile(scaled)
    x = mx.array(2.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for k in range(2 * compile_module._WARN_AFTER):
            close(compiled(x, 0.5 * (k + 1)), (k + 1) * 1.0)
    messages = [str(w.message) for w in record if "keeps changing" in str(w.message)]
    assert len(messages) == 1
    assert "argument scale keeps changing" in messages[0]
    assert "as arrays" in messages[0]


def debug_lines(capsys) -> list:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("[kiln] compiling")]


def test_kiln_debug_explains_each_compilation(monkeypatch, capsys):
    monkeypatch.setenv("KILN_DEBUG", "1")

    def fun(x, scale):
        return x * mx.array(scale)  # MLX's operators refuse a list operand: the last call passes one

    compiled = mx.compile(fun)
    compiled(mx.ones((3,)), 0.5)
    compiled(mx.ones((3,)), 0.5)  # a hit logs nothing
    compiled(mx.ones((4,)), 0.5)
    compiled(mx.ones((4,)), 0.25)
    compiled(mx.ones((4,), dtype=mx.int32), 0.25)
    compiled(mx.ones((4,)), [0.25])
    lines = debug_lines(capsys)
    assert len(lines) == 5
    assert lines[0].endswith("first call")
    assert "'fun'" in lines[0] and "test_compile_rules.py:" in lines[0]
    assert lines[1].endswith("argument x: f32[3] -> f32[4]")
    assert lines[2].endswith("constant argument scale: 0.5 -> 0.25")
    assert lines[3].endswith("argument x: f32[4] -> i32[4]")
    assert lines[4].endswith("argument scale: 0.25 -> [0.25]")


def test_kiln_debug_new_function_object(monkeypatch, capsys):
    monkeypatch.setenv("KILN_DEBUG", "1")
    x = mx.array(1.0)
    for _ in range(2):
        mx.compile(lambda v: v + 2)(x)
    lines = debug_lines(capsys)
    assert len(lines) == 2
    assert "new function object defined at" in lines[1] and "test_compile_rules.py:" in lines[1]


def test_kiln_debug_number_of_arguments_and_captured_inputs(monkeypatch, capsys):
    monkeypatch.setenv("KILN_DEBUG", "1")
    compiled = mx.compile(lambda *xs: xs[0])
    compiled(mx.array(1.0))
    compiled(mx.array(1.0), mx.array(2.0))
    state = [mx.array(1.0)]
    captured = mx.compile(lambda x: x + state[0], inputs=state)
    captured(mx.array(1.0))
    state[0] = mx.ones((2,))
    captured(mx.array(1.0))
    lines = debug_lines(capsys)
    assert lines[1].endswith("number of positional arguments: 1 -> 2")
    assert lines[3].endswith("captured input [0]: f32[] -> f32[2]")


def test_kiln_debug_level_two_prints_the_graph(monkeypatch, capsys):
    monkeypatch.setenv("KILN_DEBUG", "2")
    mx.compile(lambda x: mx.exp(x))(mx.array(1.0))
    err = capsys.readouterr().err
    assert "[kiln] traced graph of '<lambda>'" in err and "= exp a" in err


# -- shapeless replay ---------------------------------------------------------------------------------
def shapeless_pair(fun, first, second):
    """Trace at `first`, replay at `second`; return (compiled, eager) results at `second`."""
    body, runs = counted(fun)
    compiled = mx.compile(body, shapeless=True)
    compiled(*first)
    out = compiled(*second)
    assert runs[0] == 1
    return out, fun(*second)


def test_shapeless_broadcast_one_against_zero():
    out, eager = shapeless_pair(lambda x, y: x + y, (mx.zeros((1,)), mx.zeros((3,))), (mx.ones((1,)), mx.ones((0,))))
    assert out.shape == (0,) == eager.shape
    out, eager = shapeless_pair(lambda x, y: x * y, (mx.zeros((3, 1)), mx.zeros((1, 4))),
                                (mx.ones((0, 1)), mx.ones((1, 5))))
    assert out.shape == (0, 5) == eager.shape


def test_shapeless_broadcasts_at_new_sizes():
    x, y = np.arange(6.0, dtype=np.float32).reshape(2, 3, 1), np.arange(4.0, dtype=np.float32).reshape(1, 4)
    first = (mx.zeros((3, 1, 1)), mx.zeros((1, 2)))
    out, eager = shapeless_pair(lambda a, b: a * b + 1, first, (mx.array(x), mx.array(y)))
    close(out, x * y + 1)
    close(out, eager)


@pytest.mark.parametrize("reduce", ["sum", "max", "min", "prod", "argmax", "all"])
def test_shapeless_reductions_over_size_one_axes(reduce):
    op = getattr(mx, reduce)
    x = np.array([[1.5], [-2.0], [3.0]], dtype=np.float32)
    out, eager = shapeless_pair(lambda a: op(a, axis=1), (mx.zeros((2, 5)),), (mx.array(x),))
    assert out.shape == eager.shape == (3,)
    close(out, eager)
    out, eager = shapeless_pair(lambda a: op(a), (mx.zeros((2, 5)),), (mx.array(x[:1]),))
    close(out, eager)


def test_shapeless_max_over_empty_axis_raises_like_eager():
    compiled = mx.compile(lambda a: mx.max(a, axis=0), shapeless=True)
    compiled(mx.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^\[max\]"):
        mx.max(mx.ones((0, 3)), axis=0)
    with pytest.raises(ValueError, match=r"^\[max\]"):
        compiled(mx.ones((0, 3)))


def test_shapeless_static_slice_raises_instead_of_a_wrong_shape():
    compiled = mx.compile(lambda a: a[1:] * 2, shapeless=True)
    close(compiled(mx.arange(4.0)), [2.0, 4.0, 6.0])
    with pytest.raises(ValueError, match=r"^\[slice\]"):
        compiled(mx.arange(6.0))


@pytest.mark.parametrize("fun", [
    lambda a: mx.softmax(a, axis=-1),
    lambda a: mx.transpose(a) @ a,
    lambda a: mx.expand_dims(a, 0) + mx.zeros_like(a),
    lambda a: mx.where(a > 3, a, -a).astype(mx.int32),
    lambda a: mx.squeeze(mx.sum(a, axis=1, keepdims=True), 1),
    lambda a: mx.concatenate([a, a * 2], axis=0),
    lambda a: a.reshape(-1),
], ids=["softmax", "matmul", "expand_dims", "where_astype", "squeeze", "concatenate", "reshape_minus_one"])
def test_shapeless_shape_independent_ops(fun):
    x = np.arange(20.0, dtype=np.float32).reshape(4, 5) / 7
    out, eager = shapeless_pair(fun, (mx.ones((2, 3)),), (mx.array(x),))
    assert out.shape == eager.shape
    close(out, eager)


@pytest.mark.parametrize("op", ["mean", "var"])
def test_shapeless_mean_and_var_follow_the_shape(op):
    x = np.arange(35.0, dtype=np.float32).reshape(5, 7)
    out, _ = shapeless_pair(lambda a: getattr(mx, op)(a, axis=0), (mx.ones((2, 3)),), (mx.array(x),))
    close(out, getattr(np, op)(x, axis=0))


def test_shapeless_under_a_transform_checks_shapes():
    compiled = mx.compile(lambda a: mx.sum(a[1:] ** 2), shapeless=True)
    compiled(mx.arange(4.0))
    with pytest.raises(ValueError, match=r"^\[slice\]"):
        mx.grad(compiled)(mx.arange(6.0))
    shapeless_sum = mx.compile(lambda a: mx.sum(a ** 2), shapeless=True)
    shapeless_sum(mx.ones((3,)))
    close(mx.grad(shapeless_sum)(mx.arange(5.0)), 2 * np.arange(5.0))


# -- introspection ------------------------------------------------------------------------------------
def test_graphs_text_is_available_without_running_python_again():
    body, runs = counted(lambda x: x * 2)
    compiled = mx.compile(body)
    compiled(mx.ones((2,)))
    views = compiled.graphs(mx.ones((2,)))
    assert runs[0] == 1
    assert set(views) >= {"traced", "optimized", "kernels"}
    assert "multiply" in views["traced"]


def test_ordered_dict_arguments():
    compiled = mx.compile(lambda d: d["a"] - d["b"])
    od = collections.OrderedDict(a=mx.array(5.0), b=mx.array(2.0))
    close(compiled(od), 3.0)
    close(compiled({"a": mx.array(5.0), "b": mx.array(2.0)}), 3.0)


def test_kiln_debug_4_reports_trace_compile_and_run_times(monkeypatch, capsys):
    monkeypatch.setenv("KILN_DEBUG", "4")

    def timed(x):
        return mx.exp(x) * 2

    f = mx.compile(timed)
    f(mx.ones((4,)))
    f(mx.ones((4,)))
    err = capsys.readouterr().err
    assert re.search(r"\[kiln\] 'timed': traced in [0-9.]+ ms \(\d+ equations\), compiled in [0-9.]+ ms", err)
    assert len(re.findall(r"\[kiln\] ran 'timed' in [0-9.]+ us", err)) == 2
