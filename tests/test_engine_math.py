"""The engine's vectorised float32 math against float64 references over dense sweeps (specials included).

The bounds are the ones documented in csrc/kiln_math.h (the float32 math CPU and Metal kernels share).
"""

import numpy as np
import pytest
import scipy.special as sp

import kiln.core as mx
from kiln.core import engine
from kiln.core.primitives import REGISTRY
from kiln.core.tracing import make_graph
from float32_sweeps import sweep, ulp_error  # noqa: E402

pytestmark = pytest.mark.skipif(not engine.available(), reason="C++ engine not available")



CASES = [
    ("exp", mx.exp, np.exp, sweep(104.0), 1),
    ("expm1", mx.expm1, np.expm1, sweep(89.0), 2),
    ("log", mx.log, np.log, sweep(3e38, lo=1e-45), 1),
    ("log1p", mx.log1p, np.log1p, np.concatenate([sweep(3e38), np.linspace(-1, 0, 50_000, dtype=np.float32)]), 3),
    ("erf", mx.erf, sp.erf, sweep(10.0), 3),
    ("erfinv", mx.erfinv, sp.erfinv,
     np.concatenate([sweep(1.0), 1 - np.geomspace(6e-8, 0.5, 50_000), np.array([1.5, -2.0])]).astype(np.float32), 3),
    ("tanh", mx.tanh, np.tanh, sweep(20.0), 3),
    ("sigmoid", mx.sigmoid, sp.expit, sweep(120.0), 3),
    ("sin", mx.sin, np.sin, sweep(3.4e38, lo=1e-45), 1),
    ("cos", mx.cos, np.cos, sweep(3.4e38, lo=1e-45), 1),
]


def every_exponent(samples_per_binade=4096, seed=0):
    """Random floats from every binade of float32 (both signs), the largest finite ones, and the float closest
    to a multiple of pi/2 (16367173 * 2^72: x mod pi/2 cancels about 30 of its bits)."""
    rng = np.random.default_rng(seed)
    exponents = np.repeat(np.arange(0, 255, dtype=np.uint32), samples_per_binade)
    mantissas = rng.integers(0, 1 << 23, exponents.size, dtype=np.uint32)
    x = ((exponents << 23) | mantissas).view(np.float32)
    extra = np.array([3.4028235e38, np.nextafter(np.float32(3.4028235e38), np.float32(0)), 16367173 * 2.0**72,
                      1e30, 2.0**20 + 0.5, 2.0**24, np.pi / 2, 7.0 * np.pi / 4], dtype=np.float32)
    x = np.concatenate([x, extra])
    return np.concatenate([x, -x])


@pytest.mark.parametrize("name,op,ref,x,bound", CASES, ids=[c[0] for c in CASES])
def test_ulp_bound(name, op, ref, x, bound):
    program = engine.compile_graph(make_graph(op, x))
    (got,) = program.run([x])
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
    err = ulp_error(got, want)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, f"{name}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}: {err[worst]:.2f} ULP"


@pytest.mark.parametrize("name,op,ref", [("sin", mx.sin, np.sin), ("cos", mx.cos, np.cos)])
def test_sin_cos_exact_reduction_at_every_magnitude(name, op, ref):
    """Payne-Hanek reduction (kiln_math.h): 1 ULP for every finite float, however large (numpy's float64 sin of
    the float32 input is the reference). benchmarks/math_exhaustive.cpp checks every float."""
    x = every_exponent()
    (got,) = engine.compile_graph(make_graph(op, x)).run([x])
    want = ref(x.astype(np.float64))
    err = ulp_error(got, want)
    worst = int(np.argmax(err))
    assert err[worst] <= 1, f"{name}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}: {err[worst]:.2f} ULP"
    # compile agrees with eager (the interpreter: numpy) where the two once differed (issue 13).
    big = mx.array(np.array([1e30, -1e30, 3.4e38, 16367173 * 2.0**72], np.float32))
    np.testing.assert_allclose(np.array(mx.compile(op)(big)), np.array(op(big)), rtol=2e-7, atol=0)


def test_sigmoid_correctly_rounded_subnormals_eager_and_compiled():
    """The interpreter gives the correctly rounded (subnormal) float32 sigmoid for large negative inputs, and the
    compiled kernel (also what eager evaluation of an array this large runs) agrees within kiln_math.h's 3 ULP
    bound (subnormal spacing) over a dense sweep there."""
    x = np.linspace(-104.0, -80.0, 400_000, dtype=np.float32)
    want = sp.expit(x.astype(np.float64))
    reference = REGISTRY["sigmoid"].impl(x)
    assert np.all(reference == want.astype(np.float32))
    assert reference[np.searchsorted(x, np.float32(-92.4))] > 0
    (got,) = engine.compile_graph(make_graph(mx.sigmoid, x)).run([x])
    for value in (got, np.array(mx.sigmoid(mx.array(x)))):
        err = ulp_error(value, want)
        assert err.max() <= 3, f"{err.max():.2f} ULP at {x[int(np.argmax(err))]!r}"


def test_erf_every_float_near_the_branch_switch():
    """Every float in [0.75, 1.75) (8M values): erf's two branches meet at 1.3 and its worst error is there.

    A check over all non-negative floats (benchmarks/erf_exhaustive.cpp) measured 2.28 ULP at most, at 1.2987.
    """
    bits = np.arange(np.float32(0.75).view(np.uint32), np.float32(1.75).view(np.uint32), dtype=np.uint32)
    x = np.concatenate([bits.view(np.float32), -bits.view(np.float32)])
    (got,) = engine.compile_graph(make_graph(mx.erf, x)).run([x])
    err = ulp_error(got, sp.erf(x.astype(np.float64)))
    worst = int(np.argmax(err))
    assert err[worst] <= 3, f"erf({x[worst]!r}) = {got[worst]!r}: {err[worst]:.2f} ULP"


def test_signed_zero_and_specials():
    x = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    for op in (mx.sin, mx.tanh, mx.erf, mx.expm1, mx.log1p, mx.erfinv):
        (got,) = engine.compile_graph(make_graph(op, x)).run([x])
        assert np.signbit(got[0]) and not np.signbit(got[1]), op.__name__
        assert np.isnan(got[4]), op.__name__


def test_logaddexp_close_to_float64():
    """float32 logaddexp = larger + log1p(exp(-|x - y|)), from kiln_math.h's exp and log1p.

    Near x = -y the result cancels, so the error is measured on the scale of the inputs (3.4 ULP of it).
    """
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200_000) * 30, sweep(1e4, n=20_000),
                        [np.inf, -np.inf, np.inf, np.nan, 0.0, 3e38]]).astype(np.float32)
    y = np.concatenate([rng.standard_normal(200_000) * 30, np.roll(sweep(1e4, n=20_000), 17),
                        [np.inf, -np.inf, -np.inf, 1.0, 0.0, 3e38]]).astype(np.float32)
    (got,) = engine.compile_graph(make_graph(mx.logaddexp, x, y)).run([x, y])
    with np.errstate(all="ignore"):
        want = np.logaddexp(x.astype(np.float64), y.astype(np.float64))
        scale = np.maximum(np.abs(x), np.abs(y)).astype(np.float64) + 1
        close = np.abs(got - want) <= 4e-7 * scale
    ok = close | (got == want) | (np.isnan(got) & np.isnan(want))
    worst = int(np.argmin(ok))
    assert ok.all(), f"logaddexp({x[worst]!r}, {y[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"
