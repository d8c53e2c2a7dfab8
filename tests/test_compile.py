"""compile(): one test per promise B1-B18 of shared/spec/behaviours.md, and every code block of the compile
guide run with only the import changed, printing what the guide prints.

Oracles: hand-written numpy, the uncompiled function, and real MLX where installed. Trace counters (how
often the Python body runs) check caching: a cache hit runs no user Python.
"""

import contextlib
import gc
import importlib
import io
import math
import re
import textwrap
import warnings
from functools import partial

import kiln.core as mx
import numpy as np
import pytest
from kiln.core.array import PlaceholderError

compile_module = importlib.import_module("kiln.core.compile")

# Many tests compile a fresh closure of the same code; that warning has its own test (B4).
pytestmark = pytest.mark.filterwarnings("ignore:.*new function object:UserWarning")


@pytest.fixture(autouse=True)
def _compile_on(monkeypatch):
    """Every test starts with compile enabled and quiet, whatever an earlier test did."""
    monkeypatch.delenv("MLX_DISABLE_COMPILE", raising=False)
    monkeypatch.delenv("KILN_DEBUG", raising=False)
    mx.enable_compile()
    yield
    mx.enable_compile()


class Counter:
    """Wraps a function and counts how often its Python body runs."""

    def __init__(self, fun):
        self.fun = fun
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fun(*args, **kwargs)


def counted(fun):
    """A plain function (with its own code object per call site) plus a list holding its run count."""
    runs = [0]

    def wrapper(*args, **kwargs):
        runs[0] += 1
        return fun(*args, **kwargs)

    return wrapper, runs


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=rtol, atol=atol)


def same(compiled, eager):
    """Compiled and uncompiled results agree in value, dtype and shape."""
    assert compiled.dtype == eager.dtype
    assert compiled.shape == eager.shape
    close(compiled, eager)


def gelu_np(x):
    erf = np.vectorize(math.erf)
    return x * (1 + erf(x / math.sqrt(2))) / 2


# -- B1: compiled outputs equal the uncompiled ones ---------------------------------------------------
def test_b1_same_result_and_repr():
    def fun(x, y):
        return mx.exp(-x) + y

    x, y = mx.array(1.0), mx.array(2.0)
    out = mx.compile(fun)(x, y)
    assert repr(fun(x, y)) == "array(2.36788, dtype=float32)"
    assert repr(out) == "array(2.36788, dtype=float32)"
    same(out, fun(x, y))
    close(out, np.exp(-1.0) + 2.0)


def test_b1_matches_real_mlx(mlx):
    def fun(m, x, y):
        return m.exp(-x) + y

    ours = mx.compile(partial(fun, mx))(mx.array([1.0, -0.5]), mx.array(2.0))
    theirs = mlx.compile(partial(fun, mlx))(mlx.array([1.0, -0.5]), mlx.array(2.0))
    assert repr(ours) == repr(theirs)


def test_b1_traced_graph_text():
    fun = mx.compile(lambda x, y: mx.exp(-x) + y)
    text = fun.graphs(mx.array(1.0), mx.array(2.0))["traced"]
    assert text == textwrap.dedent("""\
        { lambda ; a:f32[] b:f32[]. let
            c:f32[] = negative a
            d:f32[] = exp c
            e:f32[] = add d b
          in (e,) }""")


# -- B2: traced once, later calls (and re-wrapping) hit the cache --------------------------------------
def test_b2_cache_hit_runs_no_python():
    fun, runs = counted(lambda x, y: mx.exp(-x) + y)
    compiled = mx.compile(fun)
    x, y = mx.array(1.0), mx.array(2.0)
    compiled(x, y)
    assert runs[0] == 1
    out = compiled(mx.array(3.0), mx.array(-1.0))
    assert runs[0] == 1
    close(out, np.exp(-3.0) - 1.0)
    mx.compile(fun)(x, y)  # re-wrapping the same function reuses its cache
    assert runs[0] == 1


def test_b2_traced_exactly_once_with_many_ops():
    fun, runs = counted(lambda x: mx.sum(mx.softmax(x * 2, axis=-1) ** 2))
    compiled = mx.compile(fun)
    x = mx.array(np.arange(6.0).reshape(2, 3))
    out = compiled(x)
    assert runs[0] == 1
    for k in range(5):
        out = compiled(x + k)
    assert runs[0] == 1
    same(out, mx.sum(mx.softmax((x + 4) * 2, axis=-1) ** 2))


# -- B3: shape, ndim, dtype and number of inputs recompile --------------------------------------------
def test_b3_recompiles_on_signature_changes():
    def plain(*xs):
        return sum(x * 2 for x in xs)

    fun, runs = counted(plain)
    compiled = mx.compile(fun)
    cases = [
        (mx.array([1.0, 2.0]),),  # first
        (mx.array([1.0, 2.0, 3.0]),),  # shape
        (mx.array([[1.0, 2.0]]),),  # ndim
        (mx.array([1, 2]),),  # dtype
        (mx.array([1.0, 2.0]), mx.array([3.0, 4.0])),  # number of inputs
    ]
    for i, args in enumerate(cases, start=1):
        out = compiled(*args)
        assert runs[0] == i
        same(out, plain(*args))
    runs[0] = 0
    for args in cases:  # every signature is cached now
        compiled(*args)
    assert runs[0] == 0


# -- B4: a fresh lambda per iteration recompiles every time; warned once, no leak ----------------------
def test_b4_fresh_lambda_recompiles_and_warns_once():
    a = mx.array(-1.5)
    runs = [0]
    tables_before = len(compile_module._tables)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3 * compile_module._WARN_AFTER):
            out = mx.compile(lambda x: (runs.__setitem__(0, runs[0] + 1), mx.exp(mx.abs(x)))[1])(a)
    assert runs[0] == 3 * compile_module._WARN_AFTER
    assert len([w for w in record if "new function object" in str(w.message)]) == 1
    close(out, np.exp(1.5))
    gc.collect()
    assert len(compile_module._tables) <= tables_before + 1


# -- B5: gelu ---------------------------------------------------------------------------------------
def test_b5_gelu_matches_and_fuses():
    def gelu(x):
        return x * (1 + mx.erf(x / math.sqrt(2))) / 2

    x = mx.random.uniform(shape=(4, 100, 32))
    compiled = mx.compile(gelu)
    same(compiled(x), gelu(x))
    close(compiled(x), gelu_np(np.array(x).astype(np.float64)), rtol=1e-5, atol=1e-6)
    engine = importlib.import_module("kiln.core.engine") if _has_engine() else None
    if engine is None or not engine.available():
        pytest.skip("the C++ engine is not built: fusion is checked once it is")
    optimized = compiled.graphs(x)["optimized"]
    top_level = [line for line in optimized.splitlines() if re.match(r"^    \S+ = ", line)]
    assert len(top_level) == 1 and "fused" in top_level[0], optimized


def _has_engine() -> bool:
    return importlib.util.find_spec("kiln.core.engine") is not None


# -- B6: evaluating a placeholder inside a trace is a clear error --------------------------------------
EVALUATIONS = {
    "print": lambda z: print(z),
    "item": lambda z: z.item(),
    "numpy": lambda z: np.array(z),
    "bool": lambda z: bool(z),
    "if": lambda z: 1 if z > 0 else 0,
    "float": lambda z: float(z),
    "tolist": lambda z: z.tolist(),
    "eval": lambda z: mx.eval(z),
}


@pytest.mark.parametrize("how", sorted(EVALUATIONS))
def test_b6_evaluating_inside_trace_raises(how):
    @mx.compile
    def fun(x):
        z = -x
        EVALUATIONS[how](z)
        return mx.exp(z)

    with pytest.raises(PlaceholderError) as info:
        fun(mx.array(5.0))
    message = str(info.value)
    assert "placeholder" in message
    assert "disable_compile" in message and "MLX_DISABLE_COMPILE" in message
    assert isinstance(info.value, Exception)


# -- B7: disable_compile / enable_compile / MLX_DISABLE_COMPILE ----------------------------------------
def test_b7_disable_affects_functions_compiled_earlier(capsys):
    body, runs = counted(lambda x: (print(-x), mx.exp(-x))[1])
    fun = mx.compile(body)
    mx.disable_compile()
    out = fun(mx.array(5.0))
    assert capsys.readouterr().out == "array(-5, dtype=float32)\n"
    close(out, np.exp(-5.0))
    fun(mx.array(5.0))
    assert runs[0] == 2  # eager: the body runs every call
    mx.enable_compile()
    with pytest.raises(PlaceholderError):
        fun(mx.array(5.0))


def test_b7_enable_restores_caching():
    body, runs = counted(lambda x: x * 3)
    fun = mx.compile(body)
    fun(mx.array(1.0))
    mx.disable_compile()
    fun(mx.array(1.0))
    mx.enable_compile()
    out = fun(mx.array(2.0))
    assert runs[0] == 2  # trace + one eager run; the cached trace serves the third call
    close(out, 6.0)


@pytest.mark.parametrize("value", ["1", "0", ""])
def test_b7_env_var_is_presence_based(monkeypatch, capsys, value):
    fun = mx.compile(lambda x: (print(x), x + 1)[1])
    monkeypatch.setenv("MLX_DISABLE_COMPILE", value)
    close(fun(mx.array(2.0)), 3.0)
    assert capsys.readouterr().out == "array(2, dtype=float32)\n"
    monkeypatch.delenv("MLX_DISABLE_COMPILE")
    with pytest.raises(PlaceholderError):
        fun(mx.array(2.0))


def test_b7_env_var_wins_over_enable(monkeypatch):
    body, runs = counted(lambda x: x + 1)
    fun = mx.compile(body)
    monkeypatch.setenv("MLX_DISABLE_COMPILE", "1")
    mx.enable_compile()
    fun(mx.array(1.0))
    fun(mx.array(1.0))
    assert runs[0] == 2


# -- B8: a placeholder leaked by a side effect is an error when used, never a crash ---------------------
USES = {
    "print": lambda leaked: print(leaked),
    "repr": lambda leaked: repr(leaked),
    "eval": lambda leaked: mx.eval(leaked),
    "arith_then_item": lambda leaked: (leaked + 1).item(),
    "numpy": lambda leaked: np.array(leaked),
    "eager_op_eval": lambda leaked: mx.eval(mx.exp(leaked)),
    "list_print": lambda leaked: print([leaked]),
}


@pytest.mark.parametrize("use", sorted(USES))
def test_b8_leaked_placeholder_raises(use):
    state = []

    @mx.compile
    def fun(x, y):
        z = x + y
        state.append(z)
        return mx.exp(z)

    out = fun(mx.array(1.0), mx.array(2.0))
    close(out, np.exp(3.0))
    with pytest.raises(PlaceholderError, match="MLX_DISABLE_COMPILE"):
        USES[use](state[0])
    close(fun(mx.array(0.0), mx.array(1.0)), np.exp(1.0))  # the function itself keeps working


def test_b8_leaked_placeholder_read_by_another_compiled_function():
    state = []

    @mx.compile
    def leak(x):
        state.append(x * 2)
        return x

    leak(mx.array(1.0))
    reader = mx.compile(lambda x: x + state[0])
    with pytest.raises(PlaceholderError, match="disable_compile"):
        reader(mx.array(1.0))


# -- B9: return the state, or capture it with outputs= ------------------------------------------------
def test_b9_return_state_as_output(capsys):
    state = []

    @mx.compile
    def fun(x, y):
        z = x + y
        state.append(z)
        return mx.exp(z), state

    _, state = fun(mx.array(1.0), mx.array(2.0))
    print(state)
    assert capsys.readouterr().out == "[array(3, dtype=float32)]\n"


def test_b9_outputs_written_back_in_place_with_real_arrays():
    state = []
    body, runs = counted(lambda x, y: (state.append(x + y), mx.exp(x + y))[1])
    fun = mx.compile(body, outputs=state)
    container = state
    out = fun(mx.array(1.0), mx.array(2.0))
    assert state is container and len(state) == 1
    assert state[0]._placeholder is None
    assert repr(state) == "[array(3, dtype=float32)]"
    close(out, np.exp(3.0))
    fun(mx.array(4.0), mx.array(2.0))
    assert runs[0] == 1 and len(state) == 1
    close(state[0], 6.0)


def test_b9_outputs_dict_and_nested():
    state = {"count": mx.array(0), "hist": [mx.array(0.0), {"last": mx.array(0.0)}]}

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x):
        state["count"] = state["count"] + 1
        state["hist"][0] = state["hist"][0] + x
        state["hist"][1]["last"] = x * 1
        return x * 2

    for k in range(1, 4):
        close(step(mx.array(float(k))), 2.0 * k)
    assert state["count"].item() == 3
    close(state["hist"][0], 6.0)
    close(state["hist"][1]["last"], 3.0)


# -- B10 / B11: non-argument arrays are frozen constants; inputs= or arguments see updates --------------
def test_b10_non_arguments_are_frozen_constants():
    state = [mx.array(1.0)]
    fun = mx.compile(lambda x: x + state[0])
    assert repr(fun(mx.array(1.0))) == "array(2, dtype=float32)"
    state[0] = mx.array(5.0)
    assert repr(fun(mx.array(1.0))) == "array(2, dtype=float32)"
    assert repr(mx.compile(lambda x: x + state[0])(mx.array(1.0))) == "array(6, dtype=float32)"


def test_b11_state_as_argument():
    body, runs = counted(lambda x, state: x + state[0])
    fun = mx.compile(body)
    state = [mx.array(1.0)]
    close(fun(mx.array(1.0), state), 2.0)
    state[0] = mx.array(5.0)
    close(fun(mx.array(1.0), state), 6.0)
    assert runs[0] == 1


def test_b11_inputs_read_every_call():
    state = [mx.array(1.0)]
    body, runs = counted(lambda x: x + state[0])
    fun = mx.compile(body, inputs=state)
    close(fun(mx.array(1.0)), 2.0)
    assert state[0]._placeholder is None  # the container holds the real array again after tracing
    state[0] = mx.array(5.0)
    close(fun(mx.array(1.0)), 6.0)
    assert runs[0] == 1
    state[0] = mx.array([1.0, 2.0])  # a captured shape change recompiles
    close(fun(mx.array(1.0)), [2.0, 3.0])
    assert runs[0] == 2


def test_b10_an_argument_read_from_a_closure_is_refused_as_in_mlx():
    x = mx.array([1, 2, 3]) + 2
    with pytest.raises(ValueError, match=r"^\[compile\] Attempting to compile a function with uncaptured inputs"):
        mx.compile(lambda a: a + (x + 1))(x)
    state = [mx.array([1.0, 2.0])]
    y = mx.array([1.0, 2.0]) * 2
    state[0] = state[0] + y  # lazy, and reads the array later passed as the argument
    with pytest.raises(ValueError, match="uncaptured inputs"):
        mx.compile(lambda a: state[0] + a)(y)
    mx.eval(state[0])  # evaluated, it no longer reads y: a frozen constant as usual
    close(mx.compile(lambda a: state[0] + a)(y), [5.0, 10.0])


def test_b10_closure_refusal_agrees_with_mlx():
    real = pytest.importorskip("mlx.core")
    for lib in (mx, real):
        x = lib.array([1.0, 2.0]) + 1
        with pytest.raises(ValueError):
            lib.compile(lambda a, x=x: a + x)(x)


# -- B12: a whole training step (needs kiln.nn and kiln.optimizers) -----------------------------------
def test_b12_training_step_losses_equal_uncompiled():
    nn = pytest.importorskip("kiln.nn")
    optim = pytest.importorskip("kiln.optimizers")
    mx.random.seed(3)
    x = mx.random.uniform(shape=(4, 10))
    y = mx.array([0, 1, 0, 1])

    def loss_fn(model, x, y):
        return nn.losses.binary_cross_entropy(model(x).squeeze(), y)

    def run(compiled: bool) -> list:
        mx.random.seed(11)
        model = nn.Linear(10, 1)
        optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)
        state = [model.state, optimizer.state]

        def step(x, y):
            loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
            optimizer.update(model, grads)
            return loss

        if compiled:
            step = partial(mx.compile, inputs=state, outputs=state)(step)
        losses = []
        for _ in range(10):
            loss = step(x, y)
            mx.eval(state)
            losses.append(loss.item())
        return losses

    eager, compiled = run(False), run(True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)
    assert eager[-1] < eager[0]


# -- B13: capturing mx.random.state makes the key advance between calls --------------------------------
def test_b13_random_state_captured():
    def noisy(x):
        return x + mx.random.uniform(shape=x.shape)

    x = mx.zeros((3,))
    mx.random.seed(42)
    eager = [np.array(noisy(x)) for _ in range(3)]
    state = [mx.random.state]
    fun = mx.compile(noisy, inputs=state, outputs=state)
    mx.random.seed(42)
    compiled = [np.array(fun(x)) for _ in range(3)]
    for a, b in zip(compiled, eager):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(compiled[0], compiled[1])
    assert mx.random.state[0]._placeholder is None
    mx.eval(mx.random.uniform(shape=(2,)))  # the global key still works eagerly


def test_b13_random_without_capture_is_frozen():
    fun = mx.compile(lambda x: x + mx.random.uniform(shape=x.shape))
    x = mx.zeros((3,))
    first, second = np.array(fun(x)), np.array(fun(x))
    np.testing.assert_array_equal(first, second)
    assert mx.random.state[0]._placeholder is None
    mx.eval(mx.random.uniform(shape=(2,)))


# -- B14: transforms compose with compile -------------------------------------------------------------
def test_b14_compile_of_grad(capsys):
    grad_fn = mx.grad(mx.exp)
    compiled_grad_fn = mx.compile(grad_fn)
    print(grad_fn(mx.array(1.0)))
    print(compiled_grad_fn(mx.array(1.0)))
    assert capsys.readouterr().out == "array(2.71828, dtype=float32)\n" * 2


def f_sin(x):
    return mx.sum(mx.sin(x) * x)


def df_sin(x):
    return np.cos(x) * x + np.sin(x)


def test_b14_grad_of_compiled():
    body, runs = counted(f_sin)
    compiled = mx.compile(body)
    x = mx.array([0.3, -1.2, 2.0])
    g = mx.grad(compiled)(x)
    close(g, df_sin(np.array(x)))
    same(g, mx.grad(f_sin)(x))
    mx.grad(compiled)(x + 1)
    assert runs[0] == 1  # the transform replays the cached trace
    value, grad = mx.value_and_grad(compiled)(x)
    close(value, np.sum(np.sin(np.array(x)) * np.array(x)))
    close(grad, df_sin(np.array(x)))


def test_b14_compile_of_grad_traced_once():
    body, runs = counted(f_sin)
    compiled = mx.compile(mx.grad(body))
    x = mx.array([0.3, -1.2, 2.0])
    close(compiled(x), df_sin(np.array(x)))
    close(compiled(x * 2), df_sin(np.array(x) * 2))
    assert runs[0] == 1


def test_b14_vmap_of_compiled():
    compiled = mx.compile(lambda v: mx.sum(v * v) + v[0])
    rows = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    out = mx.vmap(compiled)(mx.array(rows))
    close(out, (rows * rows).sum(axis=1) + rows[:, 0])


def test_b14_compiled_function_closing_over_a_traced_value_runs_inline():
    # Inside vmap or grad, a compiled function that reads the transform's own values from a closure cannot
    # freeze them as constants: as MLX, it runs uncompiled, inside the transform.
    rows = np.array([[1.0, -2.0], [0.5, 3.0]], dtype=np.float32)

    def outer(v):
        v = mx.abs(v)
        inner = mx.compile(lambda z: -mx.exp(v) + z)  # reads v, not its argument
        return inner(v)

    close(mx.vmap(outer)(mx.array(rows)), -np.exp(np.abs(rows)) + np.abs(rows))
    # d/dx of x * x where the compiled function takes x both as argument and from its closure
    close(mx.grad(lambda x: mx.compile(lambda z: z * x)(x))(mx.array(3.0)), 6.0)
    with pytest.raises(ValueError, match="uncaptured inputs"):  # at top level it stays an error
        x = mx.array(3.0)
        mx.compile(lambda z: z * x)(x)


def test_b14_vjp_and_jvp_of_compiled():
    compiled = mx.compile(f_sin)
    x = mx.array([0.5, 1.5])
    outs, vjps = mx.vjp(compiled, [x], [mx.array(2.0)])
    close(outs[0], np.sum(np.sin([0.5, 1.5]) * [0.5, 1.5]))
    close(vjps[0], 2 * df_sin(np.array([0.5, 1.5])))
    outs, jvps = mx.jvp(compiled, [x], [mx.array([1.0, -1.0])])
    close(jvps[0], np.dot(df_sin(np.array([0.5, 1.5])), [1.0, -1.0]))


def test_b14_grad_of_compiled_with_outputs_capture():
    compiled = mx.compile(lambda x, y: x * y)
    g = mx.grad(compiled, argnums=(0, 1))(mx.array(3.0), mx.array(4.0))
    close(g[0], 4.0)
    close(g[1], 3.0)


# -- B15: compiled functions calling compiled functions ----------------------------------------------
def test_b15_nested_compiled_functions_inline():
    inner_body, inner_runs = counted(lambda x: mx.exp(-mx.abs(x)))
    inner = mx.compile(inner_body)

    def outer(x):
        return inner(inner(x))

    outer_body, outer_runs = counted(outer)
    compiled = mx.compile(outer_body)
    x = mx.array([-1.0, 0.5])
    expected = np.exp(-np.abs(np.exp(-np.abs(np.array(x)))))
    close(compiled(x), expected)
    close(compiled(x * 3), np.exp(-np.abs(np.exp(-np.abs(np.array(x) * 3)))))
    assert outer_runs[0] == 1 and inner_runs[0] == 1
    text = compiled.graphs(x)["traced"]
    assert text.count(" exp ") == 2 and text.count(" abs ") == 2  # inlined, not called
    close(inner(x), np.exp(-np.abs(np.array(x))))
    assert inner_runs[0] == 1  # the inner trace is reused at top level too


def test_b15_guide_outer_returns_none():
    @mx.compile
    def inner(x):
        return mx.exp(-mx.abs(x))

    def outer(x):
        inner(inner(x))

    assert mx.compile(outer)(mx.array(1.0)) is None


# -- B16: shapeless ----------------------------------------------------------------------------------
def test_b16_shapeless_one_trace_for_many_shapes():
    def plain(x, y):
        return mx.abs(x + y)

    body, runs = counted(plain)
    compiled = mx.compile(body, shapeless=True)
    for shape in [(), (2,), (5,), (0,), (7,), (2, 3), (1, 0, 2)]:
        x = mx.array(np.linspace(-3, 3, int(np.prod(shape))).reshape(shape).astype(np.float32))
        y = mx.full(shape, -0.5)
        out = compiled(x, y)
        same(out, plain(x, y))
        close(out, np.abs(np.array(x) - 0.5))
    assert runs[0] == 1  # every equation is rank-agnostic: one trace serves every rank (spec B16)


def test_b16_guide_example_traces_once():
    body, runs = counted(lambda x, y: mx.abs(x + y))
    compiled_fun = mx.compile(body, shapeless=True)
    same(compiled_fun(mx.array(1.0), mx.array(-2.0)), mx.array(1.0))
    same(compiled_fun(mx.array([1.0, -6.0]), mx.array([-2.0, 3.0])), mx.array([1.0, 3.0]))
    assert runs[0] == 1
    # Inputs of different ranks broadcast at the new ranks as the eager ops do.
    x, y = mx.array([[1.0], [-6.0]]), mx.array([-2.0, 3.0, 0.5])
    same(compiled_fun(x, y), mx.abs(x + y))
    assert runs[0] == 1


def test_b16_dtype_and_ndim_changes_retrace():
    body, runs = counted(lambda x: x * 2)
    compiled = mx.compile(body, shapeless=True)
    compiled(mx.ones((2,)))
    compiled(mx.ones((3,)))
    assert runs[0] == 1
    compiled(mx.ones((3,), dtype=mx.int32))
    assert runs[0] == 2  # a dtype change always retraces
    out = compiled(mx.ones((3, 4)))
    assert runs[0] == 2  # a rank change does not, for a rank-agnostic trace
    same(out, mx.ones((3, 4)) * 2)


RANK_DEPENDENT = {
    "sum over all axes": lambda x: mx.sum(x) * 2,
    "mean over all axes": lambda x: mx.mean(x) + 1,
    "transpose": lambda x: mx.transpose(x) + 1,
    ".T": lambda x: x.T * 3,
    "reshape": lambda x: x.reshape(-1) - 1,
    "squeeze": lambda x: mx.squeeze(x) * 2,
    "softmax": lambda x: mx.softmax(x, axis=-1),
    "max keepdims": lambda x: x - mx.max(x, keepdims=True),
}


@pytest.mark.parametrize("name", RANK_DEPENDENT)
@pytest.mark.parametrize("ranks", [(0, 1), (1, 0), (1, 2), (2, 1), (3, 2)])
def test_b16_rank_dependent_traces_retrace_at_a_new_rank(name, ranks):
    if name == "softmax" and 0 in ranks:
        return  # softmax needs an axis
    body, runs = counted(RANK_DEPENDENT[name])
    compiled = mx.compile(body, shapeless=True)
    rng = np.random.default_rng(1)
    for rank in ranks:
        shape = (1, 3, 2)[:rank] if name == "squeeze" else (4, 3, 2)[:rank]
        x = mx.array(rng.standard_normal(shape).astype(np.float32))
        same(compiled(x), RANK_DEPENDENT[name](x))
    assert runs[0] == 2


def test_b16_rank_agnostic_inner_function_is_reused_in_a_shapeless_outer_trace():
    inner_body, inner_runs = counted(lambda x: mx.exp(-x))
    inner = mx.compile(inner_body, shapeless=True)
    outer_body, outer_runs = counted(lambda x: inner(x) + x)
    outer = mx.compile(outer_body, shapeless=True)
    for x in (mx.array(0.5), mx.array([0.5, -1.0]), mx.ones((2, 2))):
        same(outer(x), mx.exp(-x) + x)
    assert outer_runs[0] == 1 and inner_runs[0] == 1


def test_b16_an_inner_trace_fixed_at_its_rank_makes_the_outer_one_retrace():
    inner = mx.compile(lambda x: mx.sum(x), shapeless=True)
    inner(mx.array(1.0))  # traced at rank 0: sum over no axes records nothing
    outer_body, outer_runs = counted(lambda x: inner(x) * 2)
    outer = mx.compile(outer_body, shapeless=True)
    same(outer(mx.array(3.0)), mx.array(6.0))
    same(outer(mx.array([1.0, 2.0])), mx.array(6.0))
    assert outer_runs[0] == 2


def test_b16_guide_prints(capsys):
    compiled_fun = mx.compile(lambda x, y: mx.abs(x + y), shapeless=True)
    print(compiled_fun(mx.array(1.0), mx.array(-2.0)))
    print(compiled_fun(mx.array([1.0, -6.0]), mx.array([-2.0, 3.0])))
    assert capsys.readouterr().out == "array(1, dtype=float32)\narray([1, 3], dtype=float32)\n"


# -- B17 / B18: shape-dependent code under shapeless ---------------------------------------------------
def test_b17_static_reshape_fails_naming_the_operation():
    compiled = mx.compile(lambda x: x.reshape(x.shape[0] * x.shape[1], -1), shapeless=True)
    first = mx.random.uniform(shape=(2, 3, 4))
    same(compiled(first), first.reshape(6, 4))
    with pytest.raises(ValueError, match=r"^\[reshape\]"):
        compiled(mx.random.uniform(shape=(5, 5, 3)))
    same(compiled(first), first.reshape(6, 4))  # the failure poisoned nothing


def _np_unbroadcast(g, shape):
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    return g.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


@pytest.mark.parametrize("shapes", [
    [((2, 1, 4, 2), (3, 2, 5)), ((3, 1, 4, 2), (2, 2, 5)), ((1, 1, 3, 2), (4, 2, 1))],
    [((), (2, 2)), ((), (3, 1))],
])
def test_b16_shapeless_grad_rederives_broadcast_shapes(shapes):
    # A shapeless trace of grad must not keep the traced sizes of its broadcasts (the cotangent of sum, the
    # batch axes of matmul, the operands of add): one trace serves every size with the same ranks.
    def loss(args):
        a, b = args
        return mx.sum(a @ b) if a.ndim else mx.sum(a + b)

    body, runs = counted(mx.grad(loss))
    compiled = mx.compile(body, shapeless=True)
    rng = np.random.default_rng(0)
    for sa, sb in shapes:
        a, b = rng.uniform(-1, 1, sa).astype(np.float32), rng.uniform(-1, 1, sb).astype(np.float32)
        ga, gb = compiled((mx.array(a), mx.array(b)))
        if a.ndim:
            ones = np.ones(np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1]), np.float32)
            expected = (_np_unbroadcast(ones @ np.swapaxes(b, -1, -2), sa),
                        _np_unbroadcast(np.swapaxes(a, -1, -2) @ ones, sb))
        else:
            expected = (np.array(np.prod(sb), np.float32), np.ones(sb, np.float32))
        assert ga.shape == sa and gb.shape == sb
        close(ga, expected[0], rtol=1e-5, atol=1e-5)
        close(gb, expected[1], rtol=1e-5, atol=1e-5)
    assert runs[0] == 1


def _set_third(x):
    x[2] = mx.array([3.0])
    return x


def _set_last(x):
    x[-1] = 9.0
    return x


@pytest.mark.parametrize("fun,replays", [
    (_set_third, True),  # bounds written as plain indices hold at any size that contains them (as MLX)
    (lambda x: x[1:3] * 2, True),
    (_set_last, False),  # a negative index, an omitted stop: the bounds came from the traced size
    (lambda x: x[1:] * 2, False),
    (lambda x: x[2] * 2, True),  # reads by plain and negative index (the basic-key fast path of getitem)
    (lambda x: x[-1] * 2, False),
    (lambda x: x[..., -2] * 2, False),
])
def test_b17_shapeless_slices_replay_when_their_bounds_do_not_depend_on_the_size(fun, replays):
    body, runs = counted(fun)
    compiled = mx.compile(body, shapeless=True)
    for n in (4, 5, 3):
        x = np.arange(n, dtype=np.float32)
        if n != 4 and not replays:
            with pytest.raises(ValueError, match=r"^\[slice(_update)?\] Cannot infer the output shape"):
                compiled(mx.array(x))
            continue
        np.testing.assert_array_equal(np.array(compiled(mx.array(x))), np.array(fun(mx.array(x))))
    assert runs[0] == 1
    if replays:
        with pytest.raises(ValueError, match=r"^\[slice(_update)?\] The bounds \d:3:1 of axis 0 do not fit"):
            compiled(mx.arange(2.0))


@pytest.mark.parametrize("shape", [(2, 3, 4), (5, 5, 3), (1, 1, 1), (0, 4, 2), (3, 0, 2), (7, 1, 0)])
def test_b18_flatten_works_at_every_shape(shape):
    body, runs = counted(lambda x: x.flatten(0, 1))
    compiled = mx.compile(body, shapeless=True)
    compiled(mx.random.uniform(shape=(2, 3, 4)))
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    out = compiled(mx.array(x))
    np.testing.assert_array_equal(np.array(out), x.reshape(shape[0] * shape[1], shape[2]))
    assert runs[0] == 1


# -- the guide, block by block (import line changed only) ---------------------------------------------
GUIDE_BLOCKS = {
    "basics": ("""
def fun(x, y):
    return mx.exp(-x) + y

x = mx.array(1.0)
y = mx.array(2.0)

# Regular call, no compilation
# Prints: array(2.36788, dtype=float32)
print(fun(x, y))

# Compile the function
compiled_fun = mx.compile(fun)

# Prints: array(2.36788, dtype=float32)
print(compiled_fun(x, y))
""", "array(2.36788, dtype=float32)\narray(2.36788, dtype=float32)\n"),
    "cache": ("""
def fun(x, y):
    return mx.exp(-x) + y

x = mx.array(1.0)
y = mx.array(2.0)

compiled_fun = mx.compile(fun)

# Compiled here
compiled_fun(x, y)

# Not compiled again
compiled_fun(x, y)

# Not compiled again
mx.compile(fun)(x, y)
""", ""),
    "lambda_loop": ("""
a = mx.array(1.0)
# Don't do this, compiles lambda at each iteration
for _ in range(5):
    mx.compile(lambda x: mx.exp(mx.abs(x)))(a)
""", ""),
    "disable": ("""
@mx.compile
def fun(x):
    z = -x
    print(z) # Okay
    return mx.exp(z)

mx.disable_compile()
fun(mx.array(5.0))
""", "array(-5, dtype=float32)\n"),
    "return_state": ("""
state = []

@mx.compile
def fun(x, y):
   z = x + y
   state.append(z)
   return mx.exp(z), state

_, state = fun(mx.array(1.0), mx.array(2.0))
# Prints [array(3, dtype=float32)]
print(state)
""", "[array(3, dtype=float32)]\n"),
    "outputs": ("""
from functools import partial

state = []

# Tell compile to capture state as an output
@partial(mx.compile, outputs=state)
def fun(x, y):
    z = x + y
    state.append(z)
    return mx.exp(z)

fun(mx.array(1.0), mx.array(2.0))
# Prints [array(3, dtype=float32)]
print(state)
""", "[array(3, dtype=float32)]\n"),
    "constants": ("""
state = [mx.array(1.0)]

@mx.compile
def fun(x):
    return x + state[0]

# Prints array(2, dtype=float32)
print(fun(mx.array(1.0)))

# Update state
state[0] = mx.array(5.0)

# Still prints array(2, dtype=float32)
print(fun(mx.array(1.0)))
""", "array(2, dtype=float32)\narray(2, dtype=float32)\n"),
    "state_argument": ("""
state = [mx.array(1.0)]

@mx.compile
def fun(x, state):
    return x + state[0]

# Prints array(2, dtype=float32)
print(fun(mx.array(1.0), state))

# Update state
state[0] = mx.array(5.0)

# Prints array(6, dtype=float32)
print(fun(mx.array(1.0), state))
""", "array(2, dtype=float32)\narray(6, dtype=float32)\n"),
    "inputs": ("""
from functools import partial
state = [mx.array(1.0)]

# Tell compile to capture state as an input
@partial(mx.compile, inputs=state)
def fun(x):
    return x + state[0]

# Prints array(2, dtype=float32)
print(fun(mx.array(1.0)))

# Update state
state[0] = mx.array(5.0)

# Prints array(6, dtype=float32)
print(fun(mx.array(1.0)))
""", "array(2, dtype=float32)\narray(6, dtype=float32)\n"),
    "transforms": ("""
grad_fn = mx.grad(mx.exp)

compiled_grad_fn = mx.compile(grad_fn)

# Prints: array(2.71828, dtype=float32)
print(grad_fn(mx.array(1.0)))

# Also prints: array(2.71828, dtype=float32)
print(compiled_grad_fn(mx.array(1.0)))
""", "array(2.71828, dtype=float32)\narray(2.71828, dtype=float32)\n"),
    "nested": ("""
@mx.compile
def inner(x):
    return mx.exp(-mx.abs(x))

def outer(x):
    inner(inner(x))

# Compiling the outer function is good to do as it will likely
# be faster even though the inner functions are compiled
fun = mx.compile(outer)
""", ""),
    "shapeless": ("""
def fun(x, y):
    return mx.abs(x + y)

compiled_fun = mx.compile(fun, shapeless=True)

x = mx.array(1.0)
y = mx.array(-2.0)

# Firt call compiles the function
print(compiled_fun(x, y))

# Second call with different shapes
# does not recompile the function
x = mx.array([1.0, -6.0])
y = mx.array([-2.0, 3.0])
print(compiled_fun(x, y))
""", "array(1, dtype=float32)\narray([1, 3], dtype=float32)\n"),
    "flatten": ("""
def fun(x):
    return x.flatten(0, 1)

compiled_fun = mx.compile(fun, shapeless=True)

x = mx.random.uniform(shape=(2, 3, 4))

out = compiled_fun(x)

x = mx.random.uniform(shape=(5, 5, 3))

# Ok
out = compiled_fun(x)
""", ""),
}

GUIDE_FAILING_BLOCKS = {
    "print_crash": ("""
@mx.compile
def fun(x):
    z = -x
    print(z)  # Crash
    return mx.exp(z)

fun(mx.array(5.0))
""", PlaceholderError),
    "impure": ("""
state = []

@mx.compile
def fun(x, y):
    z = x + y
    state.append(z)
    return mx.exp(z)

fun(mx.array(1.0), mx.array(2.0))
# Crash!
print(state)
""", PlaceholderError),
    "reshape": ("""
def fun(x):
    return x.reshape(x.shape[0] * x.shape[1], -1)

compiled_fun = mx.compile(fun, shapeless=True)

x = mx.random.uniform(shape=(2, 3, 4))

out = compiled_fun(x)

x = mx.random.uniform(shape=(5, 5, 3))

# Error, can't reshape (5, 5, 3) to (6, -1)
out = compiled_fun(x)
""", ValueError),
}


def run_block(source: str) -> str:
    namespace = {"mx": mx, "__name__": "guide_block"}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(source, "<guide>", "exec"), namespace)  # noqa: S102
    return stdout.getvalue()


@pytest.mark.parametrize("name", sorted(GUIDE_BLOCKS))
def test_guide_block(name):
    source, expected = GUIDE_BLOCKS[name]
    assert run_block(source) == expected


@pytest.mark.parametrize("name", sorted(GUIDE_FAILING_BLOCKS))
def test_guide_block_that_fails(name):
    source, error = GUIDE_FAILING_BLOCKS[name]
    with pytest.raises(error) as info:
        run_block(source)
    if name == "reshape":
        assert str(info.value).startswith("[reshape]")
    else:
        assert "MLX_DISABLE_COMPILE" in str(info.value)


def test_guide_gelu_timing_block():
    source = """
import math
import time

def gelu(x):
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2

def timeit(fun, x):
    # warm up
    for _ in range(10):
        mx.eval(fun(x))

    tic = time.perf_counter()
    for _ in range(100):
        mx.eval(fun(x))
    toc = time.perf_counter()
    tpi = 1e3 * (toc - tic) / 100
    print(f"Time per iteration {tpi:.3f} (ms)")

x = mx.random.uniform(shape=(32, 10, 4))
timeit(gelu, x)
timeit(mx.compile(gelu), x)
"""
    printed = run_block(source).splitlines()
    assert len(printed) == 2
    for line in printed:
        assert re.fullmatch(r"Time per iteration \d+\.\d{3} \(ms\)", line)


def test_guide_training_blocks():
    nn = pytest.importorskip("kiln.nn")
    optim = pytest.importorskip("kiln.optimizers")
    source = """
x = mx.random.uniform(shape=(4, 10))
y = mx.array([0, 1, 0, 1])
model = nn.Linear(10, 1)
optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)

def loss_fn(model, x, y):
    logits = model(x).squeeze()
    return nn.losses.binary_cross_entropy(logits, y)

state = [model.state, optimizer.state]

@partial(mx.compile, inputs=state, outputs=state)
def step(x, y):
    loss_and_grad_fn = nn.value_and_grad(model, loss_fn)
    loss, grads = loss_and_grad_fn(model, x, y)
    optimizer.update(model, grads)
    return loss

for it in range(10):
    loss = step(x, y)
    mx.eval(state)
    print(loss)
"""
    namespace = {"mx": mx, "nn": nn, "optim": optim, "partial": partial}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(source, "<guide>", "exec"), namespace)  # noqa: S102
    lines = stdout.getvalue().splitlines()
    assert len(lines) == 10
    assert all(re.fullmatch(r"array\(-?\d+(\.\d+)?(e[-+]\d+)?, dtype=float32\)", s) for s in lines), lines
