"""The Metal renderer: golden Metal source for a few regions, then the same source compiled as C++ through
metal/metal_shim.h and run on Linux against the interpreter. Real Metal dispatch is the macOS backend's."""

import math
import os
import pathlib
import re
import subprocess

import ml_dtypes
import numpy as np
import pytest
import scipy.special as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln.core as mx
from kiln.core import engine
from kiln.core.interpret import interpret
from kiln.core.tracing import make_graph
from float32_sweeps import SPECIALS, ulp_error  # noqa: E402
from float32_sweeps import sweep as _sweep  # noqa: E402

pytestmark = pytest.mark.skipif(not engine.available(), reason="C++ engine not available")

METAL_DIR = pathlib.Path(__file__).resolve().parents[1] / "metal"


def gelu(x):
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def masked(source: str) -> str:
    return re.sub(r"kiln_metal_[0-9a-f]{24}", "K", source)


def only_kernel(fun, *arrays) -> str:
    sources = engine.render_metal(make_graph(fun, *arrays))
    assert len(sources) == 1
    return masked(next(iter(sources.values())))


def bits_equal(a, b) -> bool:
    """Equal dtype, shape and bits (every NaN counts as equal to every NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or a.dtype == ml_dtypes.bfloat16:
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        nan = np.isnan(fa) & np.isnan(fb)
        same = (fa == fb) & (np.signbit(fa) == np.signbit(fb))
        return bool(np.all(nan | same))
    return bool(np.array_equal(a, b))


def run_shim(fun, *arrays):
    """(Metal kernels run through the shim, the interpreter) on the same inputs, any layout."""
    graph = make_graph(fun, *arrays)
    program = engine.compile_graph_metal_shim(graph)
    got = program.run(list(arrays))
    want = interpret(graph, [np.array(a, order="C") for a in arrays])
    return program, got, want


# -- golden Metal source -----------------------------------------------------------------------------
SIGNATURE_END = """\
    uint3 gid [[thread_position_in_grid]],
    uint3 grid [[threads_per_grid]]) {
  const long i = kiln_index(gid, grid);
  if (i >= A.size) {
    return;
  }
"""


def test_golden_gelu():
    x = np.ones((2, 3), np.float32)
    assert only_kernel(gelu, x) == """\
// fused[divide,erf,add,multiply,divide]
kernel void K(
    device const float* p0 [[buffer(0)]],
    device float* po [[buffer(1)]],
    constant kiln_metal_args& A [[buffer(2)]],
""" + SIGNATURE_END + """\
  const float a0 = kiln_ld_id(p0[kiln_offset(A, 0, i)]);
  const float v0 = (float)((a0 / (1.4142135f)));
  const float v1 = (float)(kiln_erf(v0));
  const float v2 = (float)(((1.0f) + v1));
  const float v3 = (float)((a0 * v2));
  const float v4 = (float)((v3 / (2.0f)));
  po[i] = kiln_st_id(v4);
}
"""


def test_golden_broadcast_binary():
    # Broadcasting is the launch's business (strides of 0): the kernel reads both inputs the same way.
    a, b = np.ones((2, 3), np.float32), np.ones((3,), np.float32)
    assert only_kernel(lambda a, b: a * b + 1, a, b) == """\
// fused[multiply,add]
kernel void K(
    device const float* p0 [[buffer(0)]],
    device const float* p1 [[buffer(1)]],
    device float* po [[buffer(2)]],
    constant kiln_metal_args& A [[buffer(3)]],
""" + SIGNATURE_END + """\
  const float a0 = kiln_ld_id(p0[kiln_offset(A, 0, i)]);
  const float a1 = kiln_ld_id(p1[kiln_offset(A, 1, i)]);
  const float v0 = (float)((a0 * a1));
  const float v1 = (float)((v0 + (1.0f)));
  po[i] = kiln_st_id(v1);
}
"""


def test_golden_where_bool_condition():
    c, x, y = np.ones(3, bool), np.ones(3, np.float32), np.ones(3, np.float32)
    assert only_kernel(lambda c, x, y: mx.where(c, x, y * 0.5), c, x, y) == """\
// fused[multiply,select]
kernel void K(
    device const float* p0 [[buffer(0)]],
    device const uchar* p1 [[buffer(1)]],
    device const float* p2 [[buffer(2)]],
    device float* po [[buffer(3)]],
    constant kiln_metal_args& A [[buffer(4)]],
""" + SIGNATURE_END + """\
  const float a0 = kiln_ld_id(p0[kiln_offset(A, 0, i)]);
  const bool a1 = kiln_ld_bool(p1[kiln_offset(A, 1, i)]);
  const float a2 = kiln_ld_id(p2[kiln_offset(A, 2, i)]);
  const float v0 = (float)((a0 * (0.5f)));
  const float v1 = (float)((a1 ? a2 : v0));
  po[i] = kiln_st_id(v1);
}
"""


def test_golden_integer_ops():
    a, b = np.ones(3, np.int32), np.ones(3, np.int32)
    assert only_kernel(lambda a, b: a // b + (a % b) * -7, a, b) == """\
// fused[remainder,multiply,floor_divide,add]
kernel void K(
    device const int* p0 [[buffer(0)]],
    device const int* p1 [[buffer(1)]],
    device int* po [[buffer(2)]],
    constant kiln_metal_args& A [[buffer(3)]],
""" + SIGNATURE_END + """\
  const int a0 = kiln_ld_id(p0[kiln_offset(A, 0, i)]);
  const int a1 = kiln_ld_id(p1[kiln_offset(A, 1, i)]);
  const int v0 = (int)(kiln_remainder(a0, a1));
  const int v1 = (int)((v0 * ((int)-7)));
  const int v2 = (int)(kiln_floor_divide(a0, a1));
  const int v3 = (int)((v2 + v1));
  po[i] = kiln_st_id(v3);
}
"""


def test_golden_half_input():
    # float16 is stored as half and computed in float, rounded back to half after every op.
    h = np.ones(3, np.float16)
    assert only_kernel(lambda h: mx.exp(h) * 2 + 1, h) == """\
// fused[exp,multiply,add]
kernel void K(
    device const half* p0 [[buffer(0)]],
    device half* po [[buffer(1)]],
    constant kiln_metal_args& A [[buffer(2)]],
""" + SIGNATURE_END + """\
  const float a0 = kiln_ld_f16(p0[kiln_offset(A, 0, i)]);
  const float v0 = kiln_fix_f16(kiln_exp(a0));
  const float v1 = kiln_fix_f16((v0 * (2.0f)));
  const float v2 = kiln_fix_f16((v1 + (1.0f)));
  po[i] = kiln_st_f16(v2);
}
"""


def test_literal_spelling():
    """NaN, Inf, -0.0, 64-bit integers and fill's C++-spelled value come out as Metal literals."""
    x = np.array([1.5, -2.0, 0.0], np.float32)
    i = np.array([3, -1, 2**62], np.int64)
    u = np.array([3, 2**64 - 1, 2**63], np.uint64)

    def literals(x, i, u):
        return (mx.where(x > 0, x, float("nan")) + float("-inf"), i + -(2**40), u * (2**63 + 1),
                mx.full_like(x, -0.0), i * -(2**63))

    graph = make_graph(literals, x, i, u)
    text = "\n".join(engine.render_metal(graph).values())
    for spelled in ("(NAN)", "(-INFINITY)", "((long)-1099511627776l)", "((ulong)9223372036854775809ul)",
                    "(-(0.0f))", "((long)(-9223372036854775807l - 1))", "(0.0f)"):
        assert spelled in text, spelled
    # Nothing C++-only is left: no hex floats, no long long, no compiler builtins.
    assert not re.search(r"0x[0-9a-f.]+p|\dll|__builtin", text)
    _, got, want = run_shim(literals, x, i, u)
    for g, w in zip(got, want):
        assert bits_equal(g, w)


def test_same_kernel_for_every_shape():
    small = engine.render_metal(make_graph(gelu, np.ones((2, 3), np.float32)))
    large = engine.render_metal(make_graph(gelu, np.ones((7, 5, 4), np.float32)))
    assert small == large
    cpu = engine.compile_graph(make_graph(gelu, np.ones((2, 3), np.float32))).kernel_sources
    assert set(cpu).isdisjoint(small)  # the languages never share a kernel name


def test_float64_is_refused():
    x = np.ones(3, np.float32)
    graph = make_graph(lambda x: x.astype(mx.float64) * 2 + 1, x)
    with pytest.raises(ValueError, match=r"^\[metal\] float64 is not supported on the GPU"):
        engine.render_metal(graph)
    assert engine.compile_graph(graph).kernel_sources  # the CPU has it


def test_metal_source_is_cxx14():
    """Metal is C++14-based: the preamble and these kernels must not lean on anything newer."""
    arrays = [np.ones(3, np.float32), np.ones(3, np.int8), np.ones(3, np.float16), np.ones(3, bool),
              np.ones(3, ml_dtypes.bfloat16), np.ones(3, np.uint64)]

    def everything(x, b, h, c, bf, u):
        ints = (b >> 2) + (b << 1) + b ** 3 + abs(b) + mx.sign(b) + mx.maximum(b, -b) + (b // 3) % 5
        floats = mx.expm1(x) + mx.log1p(x) + mx.erfinv(x) + mx.sigmoid(x) + mx.arctan2(x, x) + mx.logaddexp(x, x)
        return (ints.astype(mx.float16) + h, mx.where(c, floats, bf.astype(mx.float32)),
                u // (u + 1) + u ** 2, x.astype(mx.int64) + x.astype(mx.uint8) + x.astype(mx.bool_))

    sources = engine.render_metal(make_graph(everything, *arrays))
    text = engine.metal_full_source("\n".join(sources.values()))
    cmd = [engine._engine.compiler_path(), "-std=c++14", "-pedantic-errors", "-Werror", "-fsyntax-only",
           "-x", "c++", "-include", str(METAL_DIR / "metal_shim.h"), "-"]
    done = subprocess.run(cmd, check=False, input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[:4000]


# -- run through the shim, against the interpreter -----------------------------------------------------
def layouts(shape, dtype, rng, make=None):
    """One array's data in several layouts: contiguous, transposed, reversed, broadcast from a row."""
    make = make or (lambda s: rng.standard_normal(s) * 4)
    base = np.asarray(make(shape)).astype(dtype)
    transposed = np.ascontiguousarray(np.asarray(make(shape[::-1])).astype(dtype)).T
    reversed_ = np.asarray(make(shape)).astype(dtype)[::-1, ::-1]
    row = np.asarray(make(shape[-1:])).astype(dtype)
    return {"contiguous": base, "transposed": transposed, "reversed": reversed_, "row": row}


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "reversed", "row"])
def test_gelu_runs(layout):
    rng = np.random.default_rng(0)
    x = layouts((6, 9), np.float32, rng)[layout]
    _, (got,), (want,) = run_shim(gelu, x)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "reversed", "row"])
def test_broadcast_binary_runs(layout):
    rng = np.random.default_rng(1)
    a = layouts((5, 7), np.float32, rng)["contiguous"]
    b = layouts((5, 7), np.float32, rng)[layout]
    scalar = np.float32(3.5)
    fun = lambda a, b, s: a * b + s
    program, got, want = run_shim(fun, a, b, np.array(scalar))
    assert bits_equal(got[0], want[0])
    # Exact ops give the CPU kernels' bits: same expressions, same rounding.
    cpu = engine.compile_graph(make_graph(fun, a, b, np.array(scalar))).run([a, b, np.array(scalar)])
    assert bits_equal(got[0], cpu[0])
    assert all(name.startswith("kiln_metal_") for name in program.kernel_sources)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "reversed", "row"])
def test_where_bool_condition_runs(layout):
    rng = np.random.default_rng(2)
    c = layouts((4, 6), bool, rng, make=lambda s: rng.random(s) < 0.5)[layout]
    x = layouts((4, 6), np.float32, rng)["transposed"]
    y = layouts((4, 6), np.float32, rng)[layout]
    fun = lambda c, x, y: mx.where(c, x, y * 0.5) + mx.where(x > y, 1.0, float("nan"))
    _, (got,), (want,) = run_shim(fun, c, x, y)
    assert bits_equal(got, want)


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=[np.dtype(d).name for d in INT_DTYPES])
def test_integer_ops_run(dtype):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    edges = np.array([0, 1, 2, 3, info.max, info.min, info.max - 1], dtype=dtype)
    if info.min < 0:
        edges = np.concatenate([edges, np.array([-1, -2, -3, info.min + 1], dtype=dtype)])
    a = np.concatenate([np.repeat(edges, len(edges)), rng.integers(info.min, info.max, 200, dtype=dtype,
                                                                  endpoint=True)])
    b = np.concatenate([np.tile(edges, len(edges)), rng.integers(info.min, info.max, 200, dtype=dtype,
                                                                endpoint=True)])
    small = (b % 70).astype(dtype)  # shift counts inside and past the width

    def ints(a, b, s):
        # Folded with xor into two outputs (one kernel each): any wrong bit in any op still shows.
        arithmetic = (a // b) ^ (a % b) ^ (a ** (s % 9)) ^ (a * b - a + b) ^ abs(a) ^ mx.sign(a)
        bits = (a << s) ^ (a >> s) ^ mx.maximum(a, b) ^ mx.minimum(a, b) ^ (a & b) ^ (a | b)
        compare = (a == b).astype(a.dtype) ^ (a < b).astype(a.dtype)
        return arithmetic, bits ^ compare

    _, got, want = run_shim(ints, a, b, small)
    for k, (g, w) in enumerate(zip(got, want)):
        assert bits_equal(g, w), f"output {k}: {g[g != w][:5]} != {w[g != w][:5]}"


CAST_TARGETS = [mx.bool_, mx.int8, mx.uint8, mx.int16, mx.uint16, mx.int32, mx.uint32, mx.int64, mx.uint64,
                mx.float16, mx.bfloat16, mx.float32]


def test_astype_runs():
    """float -> int truncates and clamps, NaN/Inf give 0, 2^63 wraps: the interpreter's rules, in float."""
    x = np.array([0.0, -0.0, 0.7, -0.7, 1.5, -2.5, 127.9, 128.0, -129.0, 255.5, 256.0, 65535.9, 65536.0, 3e9, -3e9,
                  2.0**31, -(2.0**31), 2.0**32, 2.0**63, -(2.0**63), 2.0**64, 1e30, -1e30, 65504.0, 65520.0,
                  3.4e38, np.inf, -np.inf, np.nan, 1e-40], dtype=np.float32)
    _, got, want = run_shim(lambda x: tuple(x.astype(t) for t in CAST_TARGETS), x)
    for target, g, w in zip(CAST_TARGETS, got, want):
        assert bits_equal(g, w), f"{target}: {g} != {w}"


def test_half_and_bfloat16_run():
    rng = np.random.default_rng(4)
    h = (rng.standard_normal((3, 50)) * 3).astype(np.float16)
    bf = (rng.standard_normal((3, 50)) * 3).astype(ml_dtypes.bfloat16)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 65504, 1e-7], dtype=np.float16)
    h[0, : len(specials)] = specials
    bf[0, : len(specials)] = specials.astype(ml_dtypes.bfloat16)
    fun = lambda h, bf: (h * 2 + 1, bf * bf - 0.1, (h.astype(mx.float32) + bf).astype(mx.bfloat16))
    _, got, want = run_shim(fun, h, bf.T.copy().T)
    for g, w in zip(got, want):
        assert bits_equal(g, w)
    _, (got,), (want,) = run_shim(lambda h: mx.exp(h), h[:, ::-1])
    # float32 exp, rounded once to half: within one half ULP of the interpreter's numpy exp.
    with np.errstate(invalid="ignore"):
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        close = diff <= np.spacing(np.abs(want)).astype(np.float64)
    assert np.all(close | (got == want) | (np.isnan(got) & np.isnan(want)))


def test_empty_and_zero_d_run():
    for x in (np.zeros((0, 4), np.float32), np.array(2.5, np.float32)):
        _, (got,), (want,) = run_shim(lambda x: x * 3 - 1, x)
        assert bits_equal(got, want)


# -- random elementwise graphs, exact ops: the shim's Metal kernels equal the interpreter bit for bit ------
FLOAT_OPS = [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b,
    lambda a, b: mx.maximum(a, b), lambda a, b: mx.minimum(a, b), lambda a, b: mx.where(a > b, a, b * 2),
    lambda a, b: -a + mx.abs(b), lambda a, b: mx.square(a) - mx.floor(b), lambda a, b: mx.sqrt(mx.abs(a)) + b,
    lambda a, b: a % b, lambda a, b: a // b,
]
INT_OPS = [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: mx.maximum(a, b),
    lambda a, b: mx.where(a < b, a, b), lambda a, b: a // b, lambda a, b: a % b, lambda a, b: (a & b) ^ (a | 3),
    lambda a, b: mx.square(a) - mx.abs(b), lambda a, b: a.astype(mx.float16).astype(b.dtype) + b,
]
RANDOM_DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16, np.int32, np.int8, np.uint8, np.int64]
RANDOM_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 0), (1, 0)), ((5,), ())]


@settings(max_examples=int(os.environ.get("KILN_TEST_EXAMPLES", "60")) // 3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(RANDOM_DTYPES),
    shapes=st.sampled_from(RANDOM_SHAPES),
    program=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    flip=st.booleans(),
)
def test_random_elementwise_graphs(dtype, shapes, program, seed, flip):
    rng = np.random.default_rng(seed)
    is_float = not np.issubdtype(dtype, np.integer)
    ops = FLOAT_OPS if is_float else INT_OPS

    def make(shape):
        if is_float:
            v = (rng.standard_normal(shape) * 4).astype(dtype)
            if v.size:
                v.reshape(-1)[rng.integers(0, v.size, 2)] = np.array([np.nan, -0.0]).astype(dtype)
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
    layout_a = a[::-1].copy()[::-1] if flip and a.ndim else a  # negative strides
    (got,) = engine.compile_graph_metal_shim(graph).run([layout_a, b])
    (want,) = interpret(graph, [a, b])
    assert bits_equal(got, want), (str(graph), got, want)


# -- accuracy through the shim (bounds documented in csrc/kiln_math.h) -------------------------------------
def sweep(hi, n=200_000, lo=1e-30):  # lighter than the CPU tests: every sweep compiles through the shim
    return _sweep(hi, n, lo)


ACCURACY = [
    ("expm1", mx.expm1, np.expm1, sweep(89.0), 2),
    ("log1p", mx.log1p, np.log1p, np.concatenate([sweep(3e38), np.linspace(-1, 0, 20_000, dtype=np.float32)]), 3),
    ("erf", mx.erf, sp.erf, sweep(10.0), 3),
    ("erfinv", mx.erfinv, sp.erfinv,
     np.concatenate([sweep(1.0), 1 - np.geomspace(6e-8, 0.5, 20_000), np.array([1.5, -2.0])]).astype(np.float32), 3),
    ("sigmoid", mx.sigmoid, sp.expit, sweep(120.0), 3),
    ("sin", mx.sin, np.sin, sweep(3.4e38, lo=1e-45), 1),  # exact reduction for every finite float
    ("cos", mx.cos, np.cos, sweep(3.4e38, lo=1e-45), 1),
]


@pytest.mark.parametrize("name,op,ref,x,bound", ACCURACY, ids=[c[0] for c in ACCURACY])
def test_ulp_bound(name, op, ref, x, bound):
    (got,) = engine.compile_graph_metal_shim(make_graph(op, x)).run([x])
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
    err = ulp_error(got, want)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, f"{name}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}: {err[worst]:.2f} ULP"


def test_logaddexp_runs():
    # Built from exp and log1p; near x = -y the result cancels, so compare on the scale of the inputs.
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(5000) * 30, [np.inf, -np.inf, np.inf, np.nan, 0.0]]).astype(np.float32)
    y = np.concatenate([rng.standard_normal(5000) * 30, [np.inf, -np.inf, -np.inf, 1.0, 0.0]]).astype(np.float32)
    _, (got,), _ = run_shim(mx.logaddexp, x, y)
    scale = np.maximum(np.abs(x), np.abs(y)).astype(np.float64) + 1
    with np.errstate(invalid="ignore"):
        want = np.logaddexp(x.astype(np.float64), y.astype(np.float64))
        close = np.abs(got - want) <= 4e-7 * scale
    assert np.all(close | (got == want) | (np.isnan(got) & np.isnan(want)))


def test_signed_zero_and_specials():
    x = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    for op in (mx.erf, mx.expm1, mx.log1p, mx.erfinv, mx.sin, mx.tanh):
        (got,) = engine.compile_graph_metal_shim(make_graph(op, x)).run([x])
        assert np.signbit(got[0]) and not np.signbit(got[1]), op.__name__
        assert np.isnan(got[4]), op.__name__


# -- one source of truth: csrc/kiln_math.h gives CPU and Metal kernels the same bits ---------------------------
REPO = METAL_DIR.parent
SHARED_FUNCTIONS = ("kiln_expm1", "kiln_log1p", "kiln_erf", "kiln_erfinv_from_log", "kiln_sigmoid", "kiln_logaddexp",
                    "kiln_sin_any", "kiln_cos_any")


def test_one_copy_of_the_shared_math():
    """kiln_math.h is pasted whole into both embedded headers, and neither header defines its functions again."""
    text = (REPO / "csrc" / "kiln_math.h").read_text()
    assert text in engine._engine.full_source("")
    assert text in engine.metal_full_source("")
    shared = set(re.findall(r"^KILN_MATH float (kiln_\w+)\(", text, re.MULTILINE))
    assert set(SHARED_FUNCTIONS) <= shared
    for path in (REPO / "csrc" / "kernel_prelude.h", METAL_DIR / "kiln_metal.h"):
        own = set(re.findall(r"\bfloat (kiln_\w+)\(float", path.read_text()))
        assert not own & shared, f"{path.name} redefines {sorted(own & shared)}"


def host_has_fma() -> bool:
    """Whether kernels compiled with the JIT's flags have FMA (without it the CPU rounds a*b+c twice)."""
    cmd = [engine._engine.compiler_path(), *engine._engine.compile_flags().split(), "-dM", "-E", "-x", "c++",
           os.devnull]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    return "__FMA__" in done.stdout or "__aarch64__" in done.stdout


def every_kth_float(k=4099):
    """Every k-th float32 bit pattern (about 2000 per binade, both signs, subnormals, infinities, NaNs), then a
    fine grid over [-6, 6], where the branches and clamps of the polynomials sit."""
    bits = np.arange(0, 2**32, k, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([bits.view(np.float32), np.linspace(-6, 6, 600_001, dtype=np.float32), SPECIALS])


def every_16_bit(dtype):
    return np.arange(2**16, dtype=np.uint16).view(dtype)


def cpu_and_shim(fun, *arrays):
    graph = make_graph(fun, *arrays)
    cpu = engine.compile_graph(graph).run(list(arrays))
    shim = engine.compile_graph_metal_shim(graph).run(list(arrays))
    return cpu, shim


def assert_same_bits(cpu, shim, x):
    """Bit for bit, NaN payloads aside: the compiler may swap the operands of a commutative op, and x86 keeps
    the first operand's NaN."""
    width = {2: np.uint16, 4: np.uint32}[cpu.dtype.itemsize]
    with np.errstate(invalid="ignore"):
        both_nan = np.isnan(cpu.astype(np.float32)) & np.isnan(shim.astype(np.float32))
    differ = np.flatnonzero((cpu.view(width) != shim.view(width)) & ~both_nan)
    shown = [(x[i], cpu[i], shim[i]) for i in differ[:5]]
    assert differ.size == 0, f"{differ.size} differ (x, cpu, metal): {shown}"


SHARED_GRAPHS = [
    ("expm1", mx.expm1), ("log1p", mx.log1p), ("erf", mx.erf), ("sigmoid", mx.sigmoid),
    ("gelu", gelu),
    ("mixed", lambda x: mx.erf(mx.log1p(mx.abs(x))) * mx.sigmoid(x) - mx.expm1(-mx.abs(x))),
]
needs_fma = pytest.mark.skipif(engine.available() and not host_has_fma(),
                               reason="no FMA: the CPU kernels round a*b+c twice (csrc/kiln_math.h)")


@needs_fma
@pytest.mark.parametrize("name,fun", SHARED_GRAPHS, ids=[g[0] for g in SHARED_GRAPHS])
def test_shared_math_same_bits_on_cpu_and_metal(name, fun):
    x = every_kth_float()
    (cpu,), (shim,) = cpu_and_shim(fun, x)
    assert_same_bits(cpu, shim, x)


@needs_fma
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_shared_math_same_bits_every_16_bit_value(dtype):
    x = every_16_bit(dtype)
    for _, fun in SHARED_GRAPHS:
        (cpu,), (shim,) = cpu_and_shim(fun, x)
        assert_same_bits(cpu, shim, x)


@needs_fma
def test_logaddexp_same_bits_on_cpu_and_metal():
    x = every_kth_float()
    rng = np.random.default_rng(6)
    with np.errstate(over="ignore", invalid="ignore"):
        near = x * (1 + rng.standard_normal(x.size).astype(np.float32) * 1e-3)  # close pairs: tail near log 2
    for y in (np.roll(x, 7919), near, x):
        (cpu,), (shim,) = cpu_and_shim(mx.logaddexp, x, y)
        assert_same_bits(cpu, shim, x)


# Functions whose results legitimately differ between the two backends: the CPU kernels use kiln_math.h's
# polynomials (exp, log, tanh), Metal kernels call metal::precise, whose bounds are the Metal Shading Language
# specification's (fast math off). Through the shim metal::precise is the host's libm (glibc measured: exp 0.50,
# log 0.64, tanh 2.03 ULP). sin and cos: the CPU reduces |x| < 2^20 in double, Metal (having no double) uses
# kiln_math.h's exact Payne-Hanek reduction everywhere, as the CPU does from 2^20 up. erfinv: the CPU kernels
# take its log from the C library's logf (MLX's bits), Metal kernels from kiln_poly_log. log2, log10, tan, the
# inverse and hyperbolic functions, sqrt, pow and atan2 are libm on the CPU and metal::precise on Metal: equal
# through the shim, within the specification's bounds on a GPU.
# (name, op, float64 reference, inputs, CPU bound, shim bound), in ULP.
DIFFERENT = [
    ("exp", mx.exp, np.exp, sweep(104.0), 1, 1),
    ("log", mx.log, np.log, sweep(3e38, lo=1e-45), 1, 1),
    ("tanh", mx.tanh, np.tanh, sweep(20.0), 3, 3),
    ("sin", mx.sin, np.sin, sweep(3.4e38, lo=1e-45), 1, 1),
    ("cos", mx.cos, np.cos, sweep(3.4e38, lo=1e-45), 1, 1),
    ("erfinv", mx.erfinv, sp.erfinv, np.concatenate([sweep(1.0), 1 - np.geomspace(6e-8, 0.5, 20_000)]).astype(np.float32),
     3, 3),
]


@pytest.mark.parametrize("name,op,ref,x,cpu_bound,shim_bound", DIFFERENT, ids=[c[0] for c in DIFFERENT])
def test_backend_specific_functions_within_their_bounds(name, op, ref, x, cpu_bound, shim_bound):
    (cpu,), (shim,) = cpu_and_shim(op, x)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
    for backend, got, bound in (("cpu", cpu, cpu_bound), ("metal shim", shim, shim_bound)):
        err = ulp_error(got, want)
        worst = int(np.argmax(err))
        assert err[worst] <= bound, f"{backend} {name}({x[worst]!r}) = {got[worst]!r}: {err[worst]:.2f} ULP"
