"""The C++ engine: simplify and fuse (golden text), kernels against the interpreter, the disk cache."""

import math
import os
import re
import stat

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln.core as mx
from kiln.core import engine
from kiln.core.interpret import interpret
from kiln.core.tracing import make_graph

needs_engine = pytest.mark.skipif(not engine.available(), reason="C++ engine not available")


def gelu(x):
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def masked(graph) -> str:
    return re.sub(r"kiln_[0-9a-f]{24}", "K", str(graph))


def bits_equal(a, b) -> bool:
    """Equal dtype, shape and bits (every NaN counts as equal to every NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        nan = np.isnan(fa) & np.isnan(fb)
        same = (fa == fb) & (np.signbit(fa) == np.signbit(fb))
        return bool(np.all(nan | same))
    return bool(np.array_equal(a, b))


def run_both(fun, *arrays, layouts=None):
    graph = make_graph(fun, *arrays)
    program = engine.compile_graph(graph)
    inputs = list(layouts) if layouts is not None else list(arrays)
    got = program.run(inputs)
    want = interpret(graph, [np.ascontiguousarray(a) for a in inputs])
    return program, got, want


# -- the package without the engine ----------------------------------------------------------------
def test_engine_switch(monkeypatch):
    monkeypatch.setenv("KILN_ENGINE", "0")
    assert engine.available() is False


def test_no_compiler_warns_once(monkeypatch):
    if engine._engine is None:
        pytest.skip("extension not built")
    monkeypatch.delenv("KILN_ENGINE", raising=False)
    monkeypatch.setenv("CXX", "/nonexistent/kiln-test-cxx")
    monkeypatch.setattr(engine, "_warned", set())
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert engine.available() is False
    assert engine.available() is False
    assert len(engine._warned) == 1  # warned once, however often it is asked


@needs_engine
def test_build_info():
    info = engine.build_info()
    assert info["version"] == "0.1.0"
    assert "-march=native" in info["kernel_flags"] or "-mcpu=native" in info["kernel_flags"]
    assert info["num_threads"] >= 1


# -- simplify (golden text) ------------------------------------------------------------------------
@needs_engine
def test_simplify_cse_literals_noops_dce():
    def f(x):
        a = mx.exp(x) + 1.0
        b = mx.exp(x) + 1.0          # same prim, params and inputs: merged; the 1.0 literals are one value
        c = mx.astype(a, mx.float32)  # astype to the same dtype: dropped
        unused = mx.sin(x)           # dead: removed
        del unused
        return mx.stop_gradient(c) * b
    graph = make_graph(f, np.zeros((2, 3), np.float32))
    assert str(engine.simplify_graph(graph)) == (
        "{ lambda ; a:f32[2,3]. let\n"
        "    b:f32[2,3] = exp a\n"
        "    c:f32[2,3] = add b 1.0:f32[]\n"
        "    d:f32[2,3] = multiply c c\n"
        "  in (d,) }"
    )


@needs_engine
def test_simplify_keeps_outputs_distinct():
    graph = make_graph(lambda x: (mx.exp(x), mx.exp(x), mx.copy(x)), np.zeros(3, np.float32))
    text = str(engine.simplify_graph(graph))
    assert text.count("exp") == 2
    x = np.arange(3, dtype=np.float32)
    outs = engine.compile_graph(graph).run([x])
    assert not np.shares_memory(outs[0], outs[1]) and not np.shares_memory(outs[2], x)


@needs_engine
def test_simplify_shapeless_keeps_broadcast():
    from kiln.core.array import bind

    graph = make_graph(lambda x: bind("broadcast_to", x, shape=(3,)) + 1, np.zeros(3, np.float32))
    assert "broadcast_to" in str(graph)
    assert "broadcast_to" not in str(engine.simplify_graph(graph))
    assert "broadcast_to" in str(engine.simplify_graph(graph, shapeless=True))


@needs_engine
def test_simplify_drops_shape_chains_that_undo_themselves():
    def f(x):
        back = mx.transpose(mx.transpose(x))                         # undone: x
        turned = mx.transpose(mx.transpose(x, (1, 2, 0)), (1, 2, 0))  # not undone: kept
        same = mx.reshape(mx.flatten(mx.expand_dims(x, 0)), (2, 3, 4))  # back to x's shape: x
        return back * 2, turned + 1, same - 1

    graph = make_graph(f, np.zeros((2, 3, 4), np.float32))
    assert masked(engine.simplify_graph(graph)) == (
        "{ lambda ; a:f32[2,3,4]. let\n"
        "    b:f32[2,3,4] = subtract a 1.0:f32[]\n"
        "    c:f32[3,4,2] = transpose[axes=(1, 2, 0)] a\n"
        "    d:f32[4,2,3] = transpose[axes=(1, 2, 0)] c\n"
        "    e:f32[4,2,3] = add d 1.0:f32[]\n"
        "    f:f32[2,3,4] = multiply a 2.0:f32[]\n"
        "  in (f, e, b) }"
    )
    x = np.random.default_rng(8).standard_normal((2, 3, 4)).astype(np.float32)
    program = engine.compile_graph(graph)
    for got, want in zip(program.run([x]), interpret(graph, [x])):
        assert bits_equal(got, want)
    # a reshape chain is only undone at the traced shapes: a shapeless graph keeps it
    assert "reshape" in str(engine.simplify_graph(graph, shapeless=True))
    assert "reshape" not in str(engine.simplify_graph(graph))
    # a graph output is never replaced by another value
    kept = make_graph(lambda x: mx.transpose(mx.transpose(x)), np.zeros((2, 3), np.float32))
    assert str(engine.simplify_graph(kept)).count("transpose") == 2


# -- fuse (golden text) ----------------------------------------------------------------------------
@needs_engine
def test_gelu_is_one_kernel():
    program = engine.compile_graph(make_graph(gelu, np.zeros(8, np.float32)))
    assert masked(program.graph) == (
        "{ lambda ; a:f32[8]. let\n"
        "    b:f32[8] = fused[kernel=K] a\n"
        "      { lambda ; a:f32[8]. let\n"
        "          b:f32[8] = divide a 1.4142135381698608:f32[]\n"
        "          c:f32[8] = erf b\n"
        "          d:f32[8] = add 1.0:f32[] c\n"
        "          e:f32[8] = multiply a d\n"
        "          f:f32[8] = divide e 2.0:f32[]\n"
        "        in (f,) }\n"
        "  in (b,) }"
    )
    assert len(program.kernel_sources) == 1


@needs_engine
def test_fuse_splits_at_outside_consumers():
    def f(x, y):
        e = mx.exp(x * y)
        s = mx.sum(e, axis=1, keepdims=True)  # a reduction reads e: e ends its region
        return e / s + 1
    program = engine.compile_graph(make_graph(f, np.zeros((2, 3), np.float32), np.zeros((3,), np.float32)))
    assert masked(program.graph) == (
        "{ lambda ; a:f32[2,3] b:f32[3]. let\n"
        "    c:f32[2,3] = fused[kernel=K] a b\n"
        "      { lambda ; a:f32[2,3] b:f32[3]. let\n"
        "          c:f32[2,3] = multiply a b\n"
        "          d:f32[2,3] = exp c\n"
        "        in (d,) }\n"
        "    d:f32[2,1] = sum[axes=(1,) keepdims=True] c\n"
        "    e:f32[2,3] = fused[kernel=K] c d\n"
        "      { lambda ; a:f32[2,3] b:f32[2,1]. let\n"
        "          c:f32[2,3] = divide a b\n"
        "          d:f32[2,3] = add c 1.0:f32[]\n"
        "        in (d,) }\n"
        "  in (e,) }"
    )


@needs_engine
def test_kernel_source_is_shape_independent():
    a = engine.compile_graph(make_graph(gelu, np.zeros(8, np.float32)))
    b = engine.compile_graph(make_graph(gelu, np.zeros((5, 7), np.float32)))
    assert a.kernel_sources == b.kernel_sources


# -- kernels against the interpreter ----------------------------------------------------------------
@needs_engine
@pytest.mark.parametrize("shape", [(), (0,), (1024,), (3, 0, 2), (1 << 16,), (33, 129)])
def test_gelu_matches(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 3
    program, (got,), (want,) = run_both(gelu, x)
    ref = x * (1 + sp.erf(x.astype(np.float64) / math.sqrt(2))) / 2
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=4e-7, atol=2e-7)
    np.testing.assert_allclose(got, want, rtol=4e-7, atol=2e-7)


@needs_engine
def test_layouts_transposed_sliced_negative_broadcast():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    row = rng.standard_normal((8,)).astype(np.float32)
    scalar = np.array(2.5, np.float32)

    def f(a, b, c):
        return (a * b - c) / (b + 3.0)

    variants = [
        base,
        np.ascontiguousarray(base.T).T,  # Fortran order
        base[::-1, ::2].copy()[:, ::-1],  # negative strides
        base[:, :4][::2],  # sliced
    ]
    for a in variants:
        examples = (np.zeros(a.shape, np.float32), np.zeros(row[: a.shape[1]].shape, np.float32), scalar)
        graph = make_graph(f, *examples)
        program = engine.compile_graph(graph)
        b = row[: a.shape[1]]
        for args in ((a, b, scalar), (a, np.broadcast_to(b[:1], b.shape), scalar)):
            (got,) = program.run(list(args))
            (want,) = interpret(graph, [np.ascontiguousarray(v) for v in args])
            assert bits_equal(got, want)


@needs_engine
def test_large_parallel_strided_matches():
    x = np.random.default_rng(2).standard_normal((300, 700)).astype(np.float32)
    program, (got,), (want,) = run_both(lambda a: mx.maximum(a * 2 - 1, 0.0), x.T.copy(), layouts=[x.T])
    assert bits_equal(got, want)


@needs_engine
def test_negative_zero_literal():
    x = np.array([1.0, -2.0, 0.0], np.float32)
    _, (got,), (want,) = run_both(lambda a: a / -0.0, x)
    assert bits_equal(got, want)
    assert np.isneginf(got[0]) and np.isposinf(got[1])


@needs_engine
def test_nan_inf_literals():
    x = np.array([1.0, -2.0, np.nan], np.float32)
    _, (got,), (want,) = run_both(lambda a: mx.minimum(a, math.inf) + mx.maximum(a, -math.inf) * math.nan, x)
    assert bits_equal(got, want)


@needs_engine
def test_int32_square_overflow_wraps_like_numpy():
    x = np.array([-46341, 46341, 3, 0], np.int32)
    _, (got,), (want,) = run_both(lambda a: mx.square(a) >= 1, x)
    assert np.array_equal(got, np.square(x) >= 1)
    assert bits_equal(got, want)


@needs_engine
def test_integer_division_edges():
    imin = np.iinfo(np.int32).min
    x = np.array([7, -7, 7, -7, imin, imin, 5, 0], np.int32)
    y = np.array([2, 2, -2, -2, -1, 0, 0, 0], np.int32)
    _, got, want = run_both(lambda a, b: (a // b, a % b, a * b + 1, a ** mx.minimum(b, 3)), x, y)
    for g, w in zip(got, want):
        assert bits_equal(g, w)


@needs_engine
@pytest.mark.parametrize("alias,canonical", [(np.ulonglong, np.uint64), (np.longlong, np.int64)])
def test_kernels_take_either_numpy_spelling_of_a_64_bit_integer(alias, canonical):
    # numpy has two type numbers for one 64-bit C type where long is 64 bits: np.array([2**63]) is 'Q',
    # np.uint64 is 'L'. A kernel built for one used to refuse the other ("kernel input 0 has dtype uint64").
    if np.dtype(alias).num == np.dtype(canonical).num:
        pytest.skip("numpy has one spelling of this type on this platform")
    x = np.array([2**62 + 3, 7, 0, 2**40 + 1], alias)
    y = np.array([5, 2**33, 9, 1], alias)

    def fun(a, b):
        return (a + b) * 3 - a // 2

    want = (x.astype(canonical) + y) * 3 - x // 2
    program = engine.compile_graph(make_graph(fun, x.astype(canonical), y.astype(canonical)))
    (got,) = program.run([x, y])
    assert got.dtype == canonical and np.array_equal(got, want)
    assert np.array_equal(np.array(mx.compile(fun)(mx.array(x), mx.array(y))), want)


@needs_engine
def test_half_precision_rounds_each_op():
    x = np.linspace(-4, 4, 1001).astype(np.float16)
    _, (got,), (want,) = run_both(lambda a: (a * a + 1.0) / 3.0 - a, x)
    assert bits_equal(got, want)
    import ml_dtypes
    xb = np.linspace(-4, 4, 1001).astype(ml_dtypes.bfloat16)
    _, (got,), (want,) = run_both(lambda a: (a * a + 1.0) / 3.0 - a, xb)
    assert bits_equal(got, want)


@needs_engine
def test_identity_and_literal_outputs_are_fresh():
    x = np.arange(4, dtype=np.float32)
    program = engine.compile_graph(make_graph(lambda a: (a, a), x))
    out = program.run([x])
    assert all(np.array_equal(o, x) for o in out)
    assert not np.shares_memory(out[0], x) and not np.shares_memory(out[0], out[1])


@needs_engine
def test_shapeless_kernel_runs_at_new_shape():
    graph = make_graph(lambda a, b: a * b + 1.0, np.zeros((2, 3), np.float32), np.zeros((3,), np.float32))
    program = engine.compile_graph(graph, shapeless=True)
    a = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    b = np.random.default_rng(4).standard_normal((4,)).astype(np.float32)
    (got,) = program.run([a, b])
    assert bits_equal(got, a * b + np.float32(1))


# -- random elementwise graphs (exact ops: bit for bit) ---------------------------------------------
FLOAT_OPS = [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b,
    lambda a, b: mx.maximum(a, b), lambda a, b: mx.minimum(a, b), lambda a, b: mx.where(a > b, a, b * 2),
    lambda a, b: -a + mx.abs(b), lambda a, b: mx.square(a) - mx.floor(b), lambda a, b: mx.sqrt(mx.abs(a)) + b,
]
INT_OPS = [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: mx.maximum(a, b),
    lambda a, b: mx.where(a < b, a, b), lambda a, b: a // b, lambda a, b: a % b, lambda a, b: (a & b) ^ (a | 3),
    lambda a, b: mx.square(a) - mx.abs(b),
]
DTYPES = [np.float32, np.float16, np.float64, np.int32, np.int8, np.uint8, np.int64]
SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 0), (1, 0)), ((5,), ())]


@needs_engine
@settings(max_examples=int(os.environ.get("KILN_TEST_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(DTYPES),
    shapes=st.sampled_from(SHAPES),
    program=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    specials=st.booleans(),
    transpose=st.booleans(),
)
def test_random_elementwise_graphs(dtype, shapes, program, seed, specials, transpose):
    rng = np.random.default_rng(seed)
    is_float = np.issubdtype(dtype, np.floating)
    ops = FLOAT_OPS if is_float else INT_OPS

    def make(shape):
        if is_float:
            v = (rng.standard_normal(shape) * 4).astype(dtype)
            if specials and v.size:
                flat = v.reshape(-1)
                flat[rng.integers(0, flat.size, 2)] = rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0], dtype))
            return v
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)

    def fun(a, b):
        values = [a, b]
        for op_index, i, j in program:
            values.append(ops[op_index % len(ops)](values[i % len(values)], values[j % len(values)]))
        return values[-1]

    a, b = make(shapes[0]), make(shapes[1])
    graph = make_graph(fun, a, b)
    a, b = (v.astype(var.dtype.np) for v, var in zip((a, b), graph.inputs))
    layout_a = a
    if transpose and a.ndim == 2:
        layout_a = np.ascontiguousarray(a.T).T
    compiled = engine.compile_graph(graph)
    (got,) = compiled.run([layout_a, b])
    (want,) = interpret(graph, [a, b])
    (fused_want,) = interpret(compiled.graph, [a, b])
    assert bits_equal(got, want), (str(compiled.graph), got, want)
    assert bits_equal(fused_want, want)


# -- JIT and the disk cache -------------------------------------------------------------------------
SIMPLE = "extern \"C\" void %s(const kiln_launch* L, int64_t b, int64_t e) { (void)L; (void)b; (void)e; }\n"


@needs_engine
def test_compiler_error_carries_output(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="failed to compile") as info:
        engine._engine.load_kernel("kiln_broken", "this is not C++;")
    assert "error" in str(info.value)


@needs_engine
def test_disk_cache_dir_is_private_and_entries_verified(tmp_path, monkeypatch):
    cache = tmp_path / "kc"
    monkeypatch.setenv("KILN_CACHE_DIR", str(cache))
    name = "kiln_cachetest_%d" % os.getpid()
    src = SIMPLE % name
    addr, from_disk, compiled, warning = engine._engine.load_kernel(name, src)
    assert addr and compiled and not from_disk and warning == ""
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    libs = list(cache.glob("*.so"))
    assert len(libs) == 1 and len(list(cache.glob("*.ok"))) == 1
    assert not list(cache.glob("tmp-*"))

    engine._engine.clear_memory_cache()
    _, from_disk, compiled, _ = engine._engine.load_kernel(name, src)
    assert from_disk and not compiled

    for damage in ("truncate", "garbage", "flip"):
        lib = next(cache.glob("*.so"))
        data = bytearray(lib.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "garbage":
            data = bytearray(b"\x7fELF garbage" * 10)
        else:
            data[len(data) // 2] ^= 0x40
        # Damage a copy and rename it over the entry: rewriting the file in place would also change
        # the pages this process still has mapped from its earlier dlopen (SIGBUS at exit).
        damaged = lib.with_suffix(".damaged")
        damaged.write_bytes(bytes(data))
        os.replace(damaged, lib)
        engine._engine.clear_memory_cache()
        addr, from_disk, compiled, _ = engine._engine.load_kernel(name, src)
        assert addr and compiled and not from_disk, damage
    (cache / next(cache.glob("*.ok")).name).write_text("not a hash")
    engine._engine.clear_memory_cache()
    addr, from_disk, compiled, _ = engine._engine.load_kernel(name, src)
    assert addr and compiled


@needs_engine
def test_unsafe_cache_dir_is_not_trusted(tmp_path, monkeypatch):
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    monkeypatch.setenv("KILN_CACHE_DIR", str(cache))
    name = "kiln_unsafe_%d" % os.getpid()
    addr, from_disk, compiled, warning = engine._engine.load_kernel(name, SIMPLE % name)
    assert addr and compiled and "other users can write" in warning
    assert not list(cache.iterdir())  # nothing was written into the shared directory
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "file"))
    engine._engine.clear_memory_cache()
    addr, _, compiled, warning = engine._engine.load_kernel(name, SIMPLE % name)
    assert addr and compiled and warning


@needs_engine
def test_cache_entries_are_private_under_umask_000(tmp_path, monkeypatch):
    """Under umask 000 the linker makes the library 0777: kiln sets 0600 (files) and 0700 (directories)."""
    cache = tmp_path / "a" / "b"
    monkeypatch.setenv("KILN_CACHE_DIR", str(cache))
    name = "kiln_umask_%d" % os.getpid()
    old = os.umask(0)
    try:
        addr, from_disk, compiled, warning = engine._engine.load_kernel(name, SIMPLE % name)
    finally:
        os.umask(old)
    assert addr and compiled and warning == ""
    for d in (tmp_path / "a", cache):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    files = list(cache.iterdir())
    assert {f.suffix for f in files} == {".so", ".ok"}
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


@needs_engine
@pytest.mark.parametrize("loosen", ["group-writable library", "world-readable marker", "foreign owner"])
def test_cache_entry_open_to_others_is_not_loaded(tmp_path, monkeypatch, loosen):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    name = "kiln_loose_%d_%s" % (os.getpid(), loosen.split()[1].replace("-", "_"))
    engine._engine.load_kernel(name, SIMPLE % name)
    lib, marker = next(tmp_path.glob("*.so")), next(tmp_path.glob("*.ok"))
    if loosen == "group-writable library":
        lib.chmod(0o620)
    elif loosen == "world-readable marker":
        marker.chmod(0o604)
    else:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another user")
        os.chown(lib, os.geteuid() + 4242, -1)
    engine._engine.clear_memory_cache()
    addr, from_disk, compiled, _ = engine._engine.load_kernel(name, SIMPLE % name)
    assert addr and compiled and not from_disk  # rebuilt, not loaded
    for f in tmp_path.iterdir():
        st = f.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid(), f


# -- native steps: shape views, reductions and matmul without a Python callback ---------------------
def _no_python_calls(monkeypatch):
    """Make every step's Python fallback record its calls; returns the list it appends to."""
    calls = []
    make = engine._python_step

    def recording(eqn):
        call = make(eqn)

        def wrapped(*args):
            calls.append(eqn.prim)
            return call(*args)

        return wrapped

    monkeypatch.setattr(engine, "_python_step", recording)
    return calls


def _layouts(a):
    """The same values as C-order, Fortran-order, negative-stride and sliced-from-larger arrays."""
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    return [a, np.asfortranarray(a), np.flip(np.flip(a).copy()), big[tuple(slice(None, None, 2) for _ in a.shape)]]


@needs_engine
def test_shape_steps_are_native_views_that_match(monkeypatch):
    calls = _no_python_calls(monkeypatch)

    def f(a, b):
        t = mx.transpose(a, (2, 0, 1))                      # (4, 2, 3)
        r = mx.reshape(t, (-1, 3))                          # (8, 3)
        e = mx.expand_dims(r, (-1, 0))                      # (1, 8, 3, 1)
        s = mx.squeeze(e, (0, 3))                           # (8, 3)
        fl = mx.flatten(s)                                  # (24,)
        bb = mx.broadcast_to(b, (2, 3, 4))
        return t, r, s, fl, bb, mx.sum(bb * 2, axis=(0, 2))

    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5.5
    b = np.array([1.5, -0.0, np.nan, np.inf], np.float32)
    graph = make_graph(f, a, b)
    program = engine.compile_graph(graph)
    for layout in _layouts(a):
        got = program.run([layout, b])
        want = interpret(graph, [a, b])
        assert all(bits_equal(g, w) for g, w in zip(got, want))
        # outputs are the caller's own arrays, never views of the inputs
        assert not any(np.shares_memory(g, layout) or np.shares_memory(g, b) for g in got)
    assert calls == []


@needs_engine
def test_shapeless_native_reshape_resolves_at_run_time():
    graph = make_graph(lambda x: mx.reshape(x, (-1, 2)) * 2, np.zeros((4, 3), np.float32))
    program = engine.compile_graph(graph, shapeless=True)
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    (got,) = program.run([x])
    assert got.shape == (5, 2) and np.array_equal(got, x * 2)
    with pytest.raises(ValueError, match=r"\[reshape\]"):  # the fallback's error names the operation
        program.run([np.zeros((3, 3), np.float32)])


@needs_engine
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.int16, np.int32, np.uint8, np.int64, np.bool_])
def test_native_reductions_match_numpy(dtype, monkeypatch):
    calls = _no_python_calls(monkeypatch)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 4, 5)) * 10).astype(dtype)

    def f(a):
        return (mx.sum(a), mx.sum(a, axis=(0, 2), keepdims=True), mx.max(a, axis=1), mx.min(a, axis=(0, 1)),
                mx.prod(a[:2, :2, :2], axis=-1))

    graph = make_graph(f, x)
    program = engine.compile_graph(graph)
    # independent expectations: numpy's reductions with MLX's accumulation types
    acc = {np.int8: np.int32, np.int16: np.int32, np.uint8: np.uint32, np.bool_: np.int32}.get(dtype, dtype)
    half = x.astype(np.float32) if dtype == np.float16 else x
    want = [half.sum().astype(acc), half.sum(axis=(0, 2), keepdims=True).astype(acc), x.max(axis=1),
            x.min(axis=(0, 1)), half[:2, :2, :2].prod(axis=-1).astype(acc)]
    for i, layout in enumerate(_layouts(x)):
        got = program.run([layout])
        if i == 0 or np.dtype(dtype).kind != "f":
            assert all(bits_equal(g, w) for g, w in zip(got, want)), dtype
        else:  # a float sum's rounding follows the order numpy walks the layout in
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=2e-3 if dtype == np.float16 else 1e-5)
    # halves accumulate in float32 through the Python implementation; everything else is native
    assert sorted(calls) == (["prod"] * 4 + ["sum"] * 8 if dtype == np.float16 else [])


@needs_engine
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_native_matmul_matches_numpy(dtype):
    rng = np.random.default_rng(6)
    a = (rng.standard_normal((2, 3, 4)) * 4).astype(dtype)
    b = (rng.standard_normal((4, 5)) * 4).astype(dtype)
    graph = make_graph(lambda p, q: mx.matmul(p, q) + 1, a, b)
    program = engine.compile_graph(graph)
    for pa, pb in zip(_layouts(a), _layouts(b)):
        (got,) = program.run([pa, pb])
        (want,) = interpret(graph, [a, b])
        if dtype == np.float16:  # the half-precision kernel sums in another order: within two roundings
            np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2 ** -10, atol=2 ** -9)
        else:
            assert bits_equal(got, want)


@needs_engine
def test_training_step_runs_without_python_callbacks(monkeypatch):
    from kiln import nn
    from kiln import optimizers as optim

    calls = _no_python_calls(monkeypatch)
    mx.random.seed(0)
    model = nn.Linear(10, 1)
    optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)
    x = mx.random.uniform(shape=(4, 10))
    y = mx.array([0, 1, 0, 1])

    def loss_fn(model, x, y):
        return nn.losses.binary_cross_entropy(model(x).squeeze(), y)

    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss

    state = [model.state, optimizer.state]
    compiled = mx.compile(step, inputs=state, outputs=state)
    losses = []
    for _ in range(3):
        losses.append(compiled(x, y).item())
        mx.eval(state)
    assert losses[2] < losses[1] < losses[0]
    assert calls == []


@needs_engine
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("size", [1 << 15, (1 << 15) + 1, 100_003, 1 << 20])
def test_pool_pieces_cover_every_element(threads, size):
    from kiln import _engine

    x = np.random.default_rng(size).standard_normal(size).astype(np.float32)
    graph = make_graph(lambda a: a * 3 - 1, x)
    program = engine.compile_graph(graph)
    before = _engine.num_threads()
    try:
        _engine.set_num_threads(threads)
        for _ in range(3):
            (got,) = program.run([x])
            assert bits_equal(got, x * np.float32(3) - np.float32(1))
    finally:
        _engine.set_num_threads(before)
    assert isinstance(_engine.pool_solo(), bool)


@needs_engine
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 1 << 15), (37, 4096), (2048, 33), (100_003, 3)])
def test_pool_row_pieces_cover_every_row(threads, shape):
    """Row kernels (a softmax) split by whole rows: every row computed once, whatever the thread count."""
    from kiln import _engine

    x = np.random.default_rng(shape[0]).standard_normal(shape).astype(np.float32)
    graph = make_graph(lambda a: mx.softmax(a, axis=-1), x)
    program = engine.compile_graph(graph)
    want = interpret(graph, [x])[0]
    before = _engine.num_threads()
    try:
        _engine.set_num_threads(threads)
        for _ in range(3):
            (got,) = program.run([x])
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)
    finally:
        _engine.set_num_threads(before)


@needs_engine
def test_numpy_steps_do_not_warn_like_the_interpreter():
    import warnings

    x = np.array([np.inf, -np.inf, 1.0], np.float32)
    graph = make_graph(lambda a: (mx.sum(a), mx.matmul(mx.reshape(a, (1, 3)), mx.reshape(a, (3, 1)))), x)
    program = engine.compile_graph(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = program.run([x])
        want = interpret(graph, [x])
    assert all(bits_equal(g, w) for g, w in zip(got, want))
    assert np.isnan(got[0])
    with pytest.warns(RuntimeWarning):  # the caller's own numpy error state is left as it was
        np.add.reduce(x)
