"""Row regions: last-axis reductions fused with their producers and consumers (softmax in one kernel).

The interpreter (numpy) is the oracle. max and min are exact, so regions whose other nodes are exact
(add, subtract, multiply, divide, maximum...) must match it bit for bit. A fused float32 sum accumulates in
float64 and rounds once; numpy's float32 sum is pairwise (runs of up to 16 sequential adds per lane block,
then a binary tree), so numpy's own error is at most about (16 + log2 N) float32 roundings. The stated bound
for a fused sum against numpy is therefore

    |fused - numpy| <= (log2(N) + 17) * 2**-24 * sum(|x|)   per row.

Regions with exp also carry the kernel's exp error (kiln_math: under 1 ulp, tested in test_engine_math).
"""

import math
import re

import numpy as np
import pytest

import kiln.core as mx
from kiln.core import engine
from kiln.core.interpret import interpret
from kiln.core.tracing import make_graph

pytestmark = pytest.mark.skipif(not engine.available(), reason="C++ engine not available")

EPS32 = 2.0**-24


def masked(graph) -> str:
    return re.sub(r"kiln_[0-9a-f]{24}", "K", str(graph))


def softmax(x):
    e = mx.exp(x - mx.max(x, -1, keepdims=True))
    return e / mx.sum(e, -1, keepdims=True)


def run_both(fun, *arrays, layouts=None):
    graph = make_graph(fun, *arrays)
    program = engine.compile_graph(graph)
    inputs = list(layouts) if layouts is not None else list(arrays)
    got = program.run(inputs)
    want = interpret(graph, [np.ascontiguousarray(a) for a in inputs])
    return program, got, want


def bits_equal(a, b) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    fa, fb = a.astype(np.float64), b.astype(np.float64)
    nan = np.isnan(fa) & np.isnan(fb)
    same = (fa == fb) & (np.signbit(fa) == np.signbit(fb))
    return bool(np.all(nan | same))


def sum_bound(terms: np.ndarray) -> np.ndarray:
    """The stated bound on |fused sum - numpy sum| per row, for the row's terms (last axis)."""
    n = max(terms.shape[-1], 1)
    return (math.log2(n) + 17) * EPS32 * np.sum(np.abs(terms.astype(np.float64)), axis=-1, keepdims=True)


def row_kernels(program) -> int:
    return sum("fused rows[" in s for s in program.kernel_sources.values())


def random_rows(rng, shape, special=False):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    if special and x.size and x.shape[-1] > 1:
        flat = x.reshape(-1, x.shape[-1])
        flat[0, 1] = np.nan
        flat[-1, 0] = np.inf
        if flat.shape[0] > 2:
            flat[1, :] = -np.inf
            flat[2, 0] = -np.inf
    return x


# -- golden text --------------------------------------------------------------------------------------
def test_softmax_is_one_row_kernel():
    program = engine.compile_graph(make_graph(softmax, np.zeros((4, 8), np.float32)))
    assert masked(program.graph) == (
        "{ lambda ; a:f32[4,8]. let\n"
        "    b:f32[4,8] = fused[kernel=K] a\n"
        "      { lambda ; a:f32[4,8]. let\n"
        "          b:f32[4,1] = max[axes=(1,) keepdims=True] a\n"
        "          c:f32[4,8] = subtract a b\n"
        "          d:f32[4,8] = exp c\n"
        "          e:f32[4,1] = sum[axes=(1,) keepdims=True] d\n"
        "          f:f32[4,8] = divide d e\n"
        "        in (f,) }\n"
        "  in (b,) }"
    )
    (source,) = program.kernel_sources.values()
    assert source.startswith("// fused rows[max,subtract,exp,sum,divide]\n")
    assert "double r3[KILN_LANES];" in source  # the sum accumulates in float64
    assert "wk = kiln_ld_id(po[i * N + c])" in source  # exp is stored once, not computed twice


def test_mx_softmax_is_one_row_kernel():
    program = engine.compile_graph(make_graph(lambda x: mx.softmax(x, axis=-1), np.zeros((3, 5), np.float32)))
    assert [e.prim for e in program.graph.eqns] == ["fused"]
    assert row_kernels(program) == 1


def test_lone_reduction_stays_numpy():
    program = engine.compile_graph(make_graph(lambda x: mx.max(x, -1, keepdims=True), np.zeros((3, 5), np.float32)))
    assert [e.prim for e in program.graph.eqns] == ["max"]


def test_not_last_axis_or_no_keepdims_not_fused():
    for fun in (lambda x: x - mx.max(x, 0, keepdims=True), lambda x: mx.exp(mx.max(x * 2, -1))):
        program = engine.compile_graph(make_graph(fun, np.zeros((3, 5), np.float32)))
        assert row_kernels(program) == 0


def test_float16_sum_not_fused_but_max_is():
    program = engine.compile_graph(make_graph(softmax, np.zeros((3, 5), np.float16)))
    assert [e.prim for e in program.graph.eqns] == ["fused", "sum", "fused"]
    assert masked(program.graph).count("max[") == 1


def test_metal_does_not_fuse_reductions():
    graph = make_graph(softmax, np.zeros((4, 8), np.float32))
    sources = engine.render_metal(graph)
    assert len(sources) == 2  # subtract,exp and divide: the reductions stay outside
    assert not any("rows[" in s for s in sources.values())


def test_mismatched_broadcast_input_falls_back():
    def f(x, y):
        return mx.exp(x * y) / mx.sum(mx.exp(x * y), 1, keepdims=True)

    program = engine.compile_graph(make_graph(f, np.zeros((2, 3), np.float32), np.zeros((3,), np.float32)))
    assert row_kernels(program) == 0


# -- differential: exact (max / min) ------------------------------------------------------------------
SHAPES = [(1, 1), (1, 7), (5, 1), (3, 17), (0, 4), (2, 3, 9), (4, 33), (7, 300)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("special", [False, True])
def test_max_min_regions_bit_exact(shape, special):
    rng = np.random.default_rng(hash((shape, special)) % 2**32)
    x = random_rows(rng, shape, special)
    cell = rng.standard_normal(shape[:-1] + (1,)).astype(np.float32)

    def f(x, c):
        m = mx.max(x * 2, -1, keepdims=True)
        n = mx.min(x - m, -1, keepdims=True)
        return (x - m) / (n - 1.5) + c * m + 3

    program, got, want = run_both(f, x, cell)
    assert bits_equal(got[0], want[0])
    if x.size:
        assert row_kernels(program) == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_reduction_output_bit_exact(shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    x = random_rows(rng, shape, special=True)
    program, got, want = run_both(lambda x: mx.max(mx.abs(x) - 1, -1, keepdims=True) * 2, x)
    assert bits_equal(got[0], want[0])


def test_max_float16():
    x = np.random.default_rng(3).standard_normal((6, 40)).astype(np.float16)
    x[2, 5] = np.nan
    program, got, want = run_both(lambda x: x - mx.max(x, -1, keepdims=True), x)
    assert bits_equal(got[0], want[0])
    assert row_kernels(program) == 1


def test_non_contiguous_input():
    x = np.random.default_rng(4).standard_normal((20, 12)).astype(np.float32)
    layout = np.asfortranarray(x)
    program, got, want = run_both(lambda x: x / mx.max(x, -1, keepdims=True), x, layouts=[layout])
    assert bits_equal(got[0], want[0])


def test_empty_row_behaves_like_interpreter():
    x = np.zeros((3, 0), np.float32)
    graph = make_graph(lambda x: x - mx.sum(x, -1, keepdims=True), x)
    program = engine.compile_graph(graph)
    assert bits_equal(program.run([x])[0], interpret(graph, [x])[0])


# -- differential: sums within the stated bound ------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES + [(3, 4096)])
def test_sum_region_within_bound(shape):
    rng = np.random.default_rng(shape[-1])
    x = random_rows(rng, shape)
    program, got, want = run_both(lambda x: mx.sum(x * 3, -1, keepdims=True) + 1, x)
    terms = x.astype(np.float64) * 3
    assert got[0].shape == want[0].shape
    assert np.all(np.abs(got[0].astype(np.float64) - want[0]) <= sum_bound(terms) + 2 * EPS32 * np.abs(want[0]))


@pytest.mark.parametrize("shape", SHAPES + [(2, 4096)])
@pytest.mark.parametrize("special", [False, True])
def test_softmax_within_bound(shape, special):
    rng = np.random.default_rng(shape[-1] + 7)
    x = random_rows(rng, shape, special)
    c = rng.standard_normal(shape[:-1] + (1,)).astype(np.float32)
    program, got, want = run_both(lambda x, c: softmax(x) * c + 1, x, c)
    g, w = got[0].astype(np.float64), want[0].astype(np.float64)
    assert np.array_equal(np.isnan(g), np.isnan(w))
    ok = ~np.isnan(w)
    # exp: < 1 ulp each term; the sum: the stated bound (terms are <= 1, so sum|e| = sum e); the divide,
    # multiply and add: one rounding each.
    n = max(shape[-1], 1)
    rel = (math.log2(n) + 17) * EPS32 + 6 * EPS32
    scale = np.broadcast_to(np.abs(c.astype(np.float64)), w.shape)
    bound = rel * 2 * scale + 4 * EPS32 * np.abs(w)
    assert np.all(np.abs(g - w)[ok] <= bound[ok])
    if x.size:
        assert row_kernels(program) == 1


def test_compiled_softmax_matches_mlx_style_call():
    x = np.random.default_rng(9).standard_normal((16, 64)).astype(np.float32)
    got = np.array(mx.compile(lambda x: mx.softmax(x, axis=-1))(mx.array(x)))
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    want = e / e.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)
