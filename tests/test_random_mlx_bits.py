"""mx.random.normal and mx.erfinv bit for bit: against real MLX, and the engine against the interpreter.

float32 erfinv is MLX's CPU algorithm step by step (kiln/core/prims/float32_math.py, csrc/kiln_math.h): a
polynomial in log(1 - x^2) evaluated with fused multiply-adds, its log the C library's logf. Without MLX the
same code is checked against scipy's float64 erfinv (the 3 ULP bound csrc/kiln_math.h states) and its
one-rounding fma against the C library's fmaf.
"""

import ctypes
import ctypes.util

import kiln.core as mx
import ml_dtypes
import numpy as np
import pytest
import scipy.special as sp
from float32_sweeps import sweep, ulp_error
from kiln import nn
from kiln.core import engine
from kiln.core.prims.float32_math import erfinv32, fma32
from kiln.core.tracing import make_graph

# Keys spread over the seed range (both words of the key vary), shapes from a scalar to 20 000 samples.
SEEDS = (0, 1, 2, 3, 5, 8, 13, 99, 1000, 65_537, 123_456_789, 2**32 - 1, 2**32, 2**40 + 7, 2**63 + 11, 2**64 - 1)
SHAPES = ((), (1,), (3,), (33, 7), (2, 3, 5), (20_000,))
FLOATS = ("float32", "float16", "bfloat16")
ERFINV_BOUND = 3  # ULP against the float64 erfinv of the float32 input (csrc/kiln_math.h)


def _bits(a, mlx=None):
    """The raw bits of a kiln or mlx array (bfloat16 read through float32, which is exact)."""
    if mlx is not None and a.dtype == mlx.bfloat16:
        a = a.astype(mlx.float32)
    elif isinstance(a, mx.array) and a.dtype == mx.bfloat16:
        a = a.astype(mx.float32)
    return np.array(a)


def assert_same_bits(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    width = {2: np.uint16, 4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
    with np.errstate(invalid="ignore"):
        both_nan = np.isnan(got.astype(np.float32)) & np.isnan(want.astype(np.float32))
    differ = np.flatnonzero((got.view(width) != want.view(width)) & ~both_nan.ravel().reshape(got.shape))
    shown = [(got.ravel()[i], want.ravel()[i]) for i in differ[:5]]
    assert differ.size == 0, f"{what}: {differ.size} of {got.size} differ (kiln, want): {shown}"


def erfinv_inputs():
    """A dense sweep of [-1, 1] (every scale down to 1e-30), the tails near +-1 down to the last float below
    1, the branch switch at |x| = 0.9978 (|log(1 - x^2)| = 6.125), and special values."""
    below_one = np.float32(1) - np.geomspace(6e-8, 0.5, 40_000).astype(np.float32)
    switch = np.linspace(0.997, 0.9985, 20_001, dtype=np.float32)
    specials = np.array([0.0, -0.0, 1.0, -1.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45], np.float32)
    x = np.concatenate([sweep(1.0, n=100_000), below_one, switch, specials]).astype(np.float32)
    return np.concatenate([x, -x])


# -- without MLX: the arithmetic the emulation is made of, and erfinv's accuracy ------------------------------
def _c_fmaf():
    try:
        function = ctypes.CDLL(ctypes.util.find_library("m") or None).fmaf
    except (OSError, AttributeError):
        pytest.skip("no C math library to compare with")
    function.restype = ctypes.c_float
    function.argtypes = (ctypes.c_float,) * 3
    return function


def test_fma32_rounds_once_like_fmaf():
    fmaf = _c_fmaf()
    rng = np.random.default_rng(0)
    a = rng.standard_normal(20_000).astype(np.float32)
    b = (rng.standard_normal(20_000) * 10.0 ** rng.integers(-20, 20, 20_000)).astype(np.float32)
    c = np.where(rng.random(20_000) < 0.5, -(a.astype(np.float64) * b).astype(np.float32),
                 rng.standard_normal(20_000).astype(np.float32))
    # Products exactly halfway between two float32 values, pushed off the midpoint by an addend far below
    # float64's precision: rounding the float64 sum again goes the wrong way, one rounding does not.
    near_one = np.float32(1 + 2**-12)
    tie = np.array([near_one, near_one, -near_one, near_one, near_one], np.float32)
    tiny = np.array([2.0**-80, -(2.0**-80), 2.0**-80, 0.0, 1e-45], np.float32)
    a, b, c = np.concatenate([a, tie]), np.concatenate([b, np.abs(tie)]), np.concatenate([c, tiny])
    want = np.array([fmaf(*v) for v in zip(a.tolist(), b.tolist(), c.tolist())], np.float32)
    assert_same_bits(fma32(a, b, c), want, "fma32")
    double_rounded = (a.astype(np.float64) * b + c).astype(np.float32)
    assert (double_rounded != want).sum() >= 2  # the cases above do tell the two apart


def test_erfinv32_within_its_bound_of_scipy():
    x = erfinv_inputs()
    got = erfinv32(x)
    with np.errstate(all="ignore"):
        want = sp.erfinv(x.astype(np.float64))
    err = ulp_error(got, want)
    worst = int(np.argmax(err))
    assert err[worst] <= ERFINV_BOUND, f"erfinv({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"
    np.testing.assert_array_equal(erfinv32(np.array([1, -1, 0, -0.0], np.float32)), [np.inf, -np.inf, 0, -0.0])
    assert np.signbit(erfinv32(np.float32(-0.0)))
    assert np.isnan(erfinv32(np.array([1.5, -1.0000001, np.nan, np.inf], np.float32))).all()


def test_public_erfinv_is_the_emulation_in_every_float_type():
    x = erfinv_inputs()[::7]
    assert_same_bits(np.array(mx.erfinv(mx.array(x))), erfinv32(x), "float32")
    for name, dtype in (("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16)):
        every = np.arange(2**16, dtype=np.uint16).view(dtype)  # every 16-bit value: one rounding of float32's
        got = np.array(mx.erfinv(mx.array(every)).astype(mx.float32))
        want = erfinv32(every.astype(np.float32)).astype(dtype).astype(np.float32)
        assert_same_bits(got, want, name)


needs_engine = pytest.mark.skipif(not engine.available(), reason="C++ engine not available")


@needs_engine
def test_erfinv_kernel_equals_the_interpreter():
    x = erfinv_inputs()
    (got,) = engine.compile_graph(make_graph(mx.erfinv, x)).run([x])
    assert_same_bits(got, erfinv32(x), "compiled erfinv")
    # A value the C++ compiler can see (the select of two equal literals folds) must not make it fold the
    # log at compile time: it would round correctly there, and glibc's logf does not always (at these inputs
    # erfinv's last bit depends on it).
    values = [-0.9798099994659424, -0.9776549935340881, -0.9708899855613708, -0.9531850218772888, 0.3]
    ones = np.ones(3, np.float32)
    for v in values:
        graph = make_graph(lambda a, v=v: mx.erfinv(mx.where(a > 2, mx.array(v), mx.array(v))), ones)
        (got,) = engine.compile_graph(graph).run([ones])
        assert_same_bits(got, np.full(3, erfinv32(np.float32(v))), f"erfinv({v}) of a constant, compiled")


def on_interpreter(monkeypatch, fun):
    monkeypatch.setenv("KILN_ENGINE", "0")
    try:
        out = fun()
        mx.eval(out)
        return np.array(out if out.dtype != mx.bfloat16 else out.astype(mx.float32))
    finally:
        monkeypatch.delenv("KILN_ENGINE")


@needs_engine
@pytest.mark.parametrize("dtype", FLOATS)
def test_normal_compiled_and_eager_equal_the_interpreter(monkeypatch, dtype):
    from kiln.core import eager

    def draw(key):
        return mx.random.normal((300, 70), getattr(mx, dtype), 0.5, 3.0, key=key)

    for seed in SEEDS[:4]:
        key = mx.random.key(seed)
        want = on_interpreter(monkeypatch, lambda key=key: draw(key))
        compiled = mx.compile(draw)(key)
        monkeypatch.setattr(eager, "MIN_NODES", 1)
        monkeypatch.setattr(eager, "ADAPTIVE", False)
        eager.clear_cache()
        eagerly = draw(key)
        mx.eval(eagerly)
        eager.clear_cache()
        for name, got in (("compiled", compiled), ("eager", eagerly)):
            got = got.astype(mx.float32) if got.dtype == mx.bfloat16 else got
            assert_same_bits(np.array(got), want, f"{name} normal {dtype} seed {seed}")


# -- against real MLX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_erfinv_matches_mlx(mlx, dtype):
    x = erfinv_inputs()
    ours = mx.erfinv(mx.array(x).astype(getattr(mx, dtype)))
    theirs = mlx.erfinv(mlx.array(x).astype(getattr(mlx, dtype)))
    assert_same_bits(_bits(ours), _bits(theirs, mlx), f"erfinv {dtype}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_normal_matches_mlx_for_every_key(mlx, dtype, shape):
    for seed in SEEDS:
        ours = mx.random.normal(shape, getattr(mx, dtype), key=mx.random.key(seed))
        theirs = mlx.random.normal(shape, getattr(mlx, dtype), key=mlx.random.key(seed))
        assert_same_bits(_bits(ours), _bits(theirs, mlx), f"normal {dtype} {shape} seed {seed}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_normal_loc_and_scale_match_mlx(mlx, dtype):
    loc = np.array([[-1.0], [0.0], [2.5]], np.float32)
    scale = np.array([0.5, 1.0, 3.0, 1e-3], np.float32)
    cases = [(0.0, 1.0), (1.5, 2.5), (-3.0, None), (None, 0.25), ("array", "array")]
    for seed in SEEDS[::3]:
        for lo, sc in cases:
            ours_args = (mx.array(loc), mx.array(scale)) if lo == "array" else (lo, sc)
            theirs_args = (mlx.array(loc), mlx.array(scale)) if lo == "array" else (lo, sc)
            ours = mx.random.normal((3, 4), getattr(mx, dtype), *ours_args, key=mx.random.key(seed))
            theirs = mlx.random.normal((3, 4), getattr(mlx, dtype), *theirs_args, key=mlx.random.key(seed))
            assert_same_bits(_bits(ours), _bits(theirs, mlx), f"normal {dtype} loc={lo} scale={sc} seed {seed}")


def test_complex_normal_matches_mlx(mlx):
    for seed in SEEDS[::2]:
        for args in ((), (1.0, 2.0)):
            ours = mx.random.normal((5, 3), mx.complex64, *args, key=mx.random.key(seed))
            theirs = mlx.random.normal((5, 3), mlx.complex64, *args, key=mlx.random.key(seed))
            assert_same_bits(np.array(ours).view(np.float32), np.array(theirs).view(np.float32), "complex normal")


def test_normal_from_the_global_key_matches_mlx(mlx):
    mx.random.seed(42)
    mlx.random.seed(42)
    for _ in range(3):
        assert_same_bits(np.array(mx.random.normal((64,))), np.array(mlx.random.normal((64,))), "global key")


@pytest.mark.parametrize("init", ["normal", "glorot_normal", "he_normal"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_normal_initialisers_match_mlx(mlx, init, dtype):
    mlx_nn = pytest.importorskip("mlx.nn")
    for seed in SEEDS[:6]:
        mx.random.seed(seed)
        mlx.random.seed(seed)
        ours = getattr(nn.init, init)(dtype=getattr(mx, dtype))(mx.zeros((31, 17)))
        theirs = getattr(mlx_nn.init, init)(dtype=getattr(mlx, dtype))(mlx.zeros((31, 17)))
        assert_same_bits(_bits(ours), _bits(theirs, mlx), f"nn.init.{init} {dtype} seed {seed}")
