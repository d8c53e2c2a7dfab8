"""Automatic checks of every registry record's transform rules, through the public bind path.

For each primitive a sample generator gives valid inputs; then (a) its vjp is checked against central finite
differences in float64, (b) its jvp against its vjp (the transpose identity <J t, c> == <t, J^T c>), and
(c) its vmap rule against a Python loop, with batch axes at several positions and unbatched operands mixed
in. New primitives without a sample generator (or without rules) make these tests fail.
"""

from __future__ import annotations

import importlib
import pkgutil

import kiln.core as mx
import numpy as np
import pytest
from kiln.core import dtypes as dt
from kiln.core import prims as _prims
from kiln.core.array import bind
from kiln.core.primitives import REGISTRY

# Every family module registers its records on import: load them all so none escapes the checks below.
for _module in pkgutil.iter_modules(_prims.__path__):
    importlib.import_module(f"{_prims.__name__}.{_module.name}")

# Primitives without a sample generator, each with the reason it is checked elsewhere.
NO_SAMPLES = {
    "custom": "its params hold the user's Python function; covered by the custom_function tests in test_autodiff.py",
    "send": "point-to-point needs a peer process: tests/test_distributed.py checks it under mpirun",
    "recv": "point-to-point needs a peer process: tests/test_distributed.py checks it under mpirun",
}
# Differentiable primitives whose vjp is intentionally not the derivative of the forward.
FD_EXEMPT = {
    "stop_gradient": "its gradient is defined to be zero although its forward is the identity",
}
# Differentiable primitives allowed to lack a vjp/jvp rule (none today).
NO_AD_RULES: dict[str, str] = {}
# Primitives allowed to lack a vmap rule (none today).
NO_VMAP_RULE: dict[str, str] = {}
# Inputs a primitive's vmap rule refuses to batch (as MLX's does), by position, with the reason.
UNBATCHABLE_INPUTS = {
    "searchsorted": ((0,), "one search per sorted sequence; MLX batches only the values searched for"),
}

BATCH = 3
EPS = 1e-6


class Case:
    """Inputs (numpy) and params for one application; `diff` lists the inputs to differentiate.

    sym: inputs whose perturbations must stay symmetric (the primitive reads one triangle).
    fd: False when this output has no derivative to check (reason in `why`).
    """

    def __init__(self, inputs, diff=None, sym=(), fd=True, **params):
        self.inputs = [np.asarray(x) for x in inputs]
        floats = [i for i, x in enumerate(self.inputs) if x.dtype.kind == "f"]
        self.diff = floats if diff is None else list(diff)
        self.sym = tuple(sym)
        self.fd = fd
        self.params = params


# -- sample generators (rng -> list of cases; shapes and params must not depend on rng) ----------------------
def _u(rng, shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape)


def _away_from_zero(rng, shape, lo=0.5, hi=2.0):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(lo, hi, shape)


def _away_from_integers(rng, shape):
    frac = rng.choice([0.2, 0.7], shape) + rng.uniform(-0.05, 0.05, shape)
    return rng.integers(-3, 3, shape) + frac


def _ints(rng, shape, lo=-20, hi=20, dtype=np.int32):
    return rng.integers(lo, hi, shape).astype(dtype)


def _bools(rng, shape):
    return rng.random(shape) < 0.5


def _spd(rng, n):
    m = rng.standard_normal((n, n))
    return m @ m.T + n * np.eye(n)


def _well_conditioned(rng, n, m=None):
    return rng.uniform(-0.5, 0.5, (n, m or n)) + (3 * np.eye(n, m or n))


UNARY_DOMAINS = {
    "log": (0.5, 2), "log2": (0.5, 2), "log10": (0.5, 2), "sqrt": (0.5, 2), "rsqrt": (0.5, 2),
    "log1p": (-0.5, 2), "arcsin": (-0.9, 0.9), "arccos": (-0.9, 0.9), "arctanh": (-0.9, 0.9),
    "erfinv": (-0.9, 0.9), "arccosh": (1.2, 3), "tan": (-1.2, 1.2),
}


def _unary(name):
    def gen(rng):
        if name in ("reciprocal", "abs", "sign"):
            x = _away_from_zero(rng, (2, 3), 0.2)
        elif name in ("floor", "ceil", "round"):
            x = _away_from_integers(rng, (2, 3))
        else:
            x = _u(rng, (2, 3), *UNARY_DOMAINS.get(name, (-2, 2)))
        return [Case([x]), Case([x[0]])]

    return gen


def _special_floats(rng):
    x = _u(rng, (2, 4))
    x[0, :3] = [np.nan, np.inf, -np.inf]
    return [Case([x])]


def _binary(name):
    def gen(rng):
        if name == "divide":
            x, y = _u(rng, (2, 3)), _away_from_zero(rng, (3,))
        elif name == "power":
            x, y = _u(rng, (2, 3), 0.5, 2), _u(rng, (3,))
        elif name in ("remainder", "floor_divide"):
            y = _away_from_zero(rng, (2, 3), 1, 2)
            x = y * _away_from_integers(rng, (2, 3))
        else:
            x, y = _u(rng, (2, 3)), _u(rng, (3,))
        return [Case([x, y]), Case([x[:1], y[None]])]

    return gen


def _compare(rng):
    x, y = rng.integers(-2, 2, (2, 3)).astype(np.float64), rng.integers(-2, 2, (3,)).astype(np.float64)
    return [Case([x, y])]


def _logical(rng):
    return [Case([_bools(rng, (2, 3)), _bools(rng, (3,))])]


def _bitwise(rng):
    return [Case([_ints(rng, (2, 3)), _ints(rng, (3,))]), Case([_ints(rng, (4,), 0, 200, np.uint8)] * 2)]


def _shift(rng):
    return [Case([_ints(rng, (2, 3), -50, 50), _ints(rng, (3,), 0, 40)])]


def _select(rng):
    return [Case([_bools(rng, (2, 3)), _u(rng, (2, 3)), _u(rng, (1, 3))])]


def _reduction(name):
    def gen(rng):
        if name == "prod":
            x = _away_from_zero(rng, (2, 3, 4), 0.5, 1.5)
        elif name in ("all", "any"):
            x = _bools(rng, (2, 3, 4))
        else:
            x = _u(rng, (2, 3, 4))
        if name in ("argmax", "argmin"):
            return [Case([x], axes=(1,), keepdims=False), Case([x], axes=(2,), keepdims=True)]
        return [Case([x], axes=(1,), keepdims=False), Case([x], axes=(0, 2), keepdims=True)]

    return gen


def _scan(name):
    def gen(rng):
        x = _away_from_zero(rng, (3, 4), 0.5, 1.5) if name == "cumprod" else _u(rng, (3, 4))
        return [Case([x], axis=1, reverse=False, inclusive=True), Case([x], axis=0, reverse=True, inclusive=False),
                Case([x], axis=1, reverse=True, inclusive=True), Case([x], axis=0, reverse=False, inclusive=False)]

    return gen


def _astype(rng):
    x = _u(rng, (2, 3))
    return [Case([x], dtype=dt.float64), Case([x], dtype=dt.int32, fd=False)]


def _fill(rng):
    return [Case([_u(rng, (2, 3))], value=2.5, dtype=dt.float64)]


def _index_case(rng, unique):
    """x (4, 5) and an index array (3,) along axis 0: a permutation's prefix if unique, repeats allowed else."""
    x = _u(rng, (4, 5))
    idx = rng.permutation(4)[:3] if unique else rng.integers(-4, 4, (3,))
    return x, idx.astype(np.int32)


def _gather(rng):
    x, idx = _index_case(rng, unique=False)
    rows, cols = rng.integers(0, 4, (2, 3)).astype(np.int32), rng.integers(-5, 5, (2, 3)).astype(np.int32)
    return [Case([x, idx], axes=(0,)), Case([x, rows, cols], axes=(0, 1)), Case([x.T, idx], axes=(1,))]


def _scatter(name):
    unique = name in ("scatter", "scatter_maximum", "scatter_minimum")

    def gen(rng):
        x, idx = _index_case(rng, unique)
        upd = _away_from_zero(rng, (3, 5), 0.5, 1.5) if name == "scatter_multiply" else _u(rng, (3, 5))
        return [Case([x, upd, idx], axes=(0,)), Case([x.T, upd, idx], axes=(1,))]

    return gen


SAMPLES = {}
for _name, _prim in REGISTRY.items():
    if _prim.kind == "unary" and _prim.differentiable:
        SAMPLES[_name] = _unary(_name)
for _name in ("isnan", "isinf", "isfinite"):
    SAMPLES[_name] = _special_floats
SAMPLES["logical_not"] = lambda rng: [Case([_bools(rng, (2, 3))])]
SAMPLES["bitwise_invert"] = lambda rng: [Case([_ints(rng, (2, 3))])]
SAMPLES["astype"] = _astype
SAMPLES["fill"] = _fill
for _name in ("add", "subtract", "multiply", "divide", "floor_divide", "remainder", "power", "maximum", "minimum",
              "arctan2", "logaddexp"):
    SAMPLES[_name] = _binary(_name)
for _name in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"):
    SAMPLES[_name] = _compare
for _name in ("logical_and", "logical_or"):
    SAMPLES[_name] = _logical
for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    SAMPLES[_name] = _bitwise
for _name in ("left_shift", "right_shift"):
    SAMPLES[_name] = _shift
SAMPLES["select"] = _select
for _name in ("sum", "prod", "max", "min", "all", "any", "argmax", "argmin"):
    SAMPLES[_name] = _reduction(_name)
SAMPLES["number_of_elements"] = lambda rng: [Case([_u(rng, (2, 3, 4))], axes=(0, 2), inverted=False,
                                                   dtype=mx.float32, fd=False),
                                              Case([_u(rng, (2, 3, 4))], axes=(1,), inverted=True,
                                                   dtype=mx.float32, fd=False)]
for _name in ("cumsum", "cumprod", "cummax", "cummin"):
    SAMPLES[_name] = _scan(_name)
SAMPLES.update({
    "reshape": lambda rng: [Case([_u(rng, (2, 3, 4))], shape=(4, -1))],
    "flatten": lambda rng: [Case([_u(rng, (2, 3, 4))], start_axis=1, end_axis=2),
                            Case([_u(rng, (2, 3, 4))], start_axis=-3, end_axis=-2)],
    "transpose": lambda rng: [Case([_u(rng, (2, 3, 4))], axes=(2, 0, 1))],
    "broadcast_to": lambda rng: [Case([_u(rng, (3, 1))], shape=(2, 3, 4)), Case([_u(rng, ())], shape=(2,))],
    "expand_dims": lambda rng: [Case([_u(rng, (2, 3))], axes=(0, 2))],
    "squeeze": lambda rng: [Case([_u(rng, (2, 1, 3, 1))], axes=(1, 3))],
    "slice": lambda rng: [Case([_u(rng, (4, 5))], start=(1, 0), stop=(3, 5), strides=(1, 2)),
                          Case([_u(rng, (4, 5))], start=(3, 4), stop=(-1, -1), strides=(-1, -2))],
    "slice_update": lambda rng: [
        Case([_u(rng, (4, 5)), _u(rng, (2, 3))], start=(1, 0), stop=(3, 5), strides=(1, 2)),
        Case([_u(rng, (4, 5)), _u(rng, (3,))], start=(0, 1), stop=(4, 4), strides=(2, 1))],
    "concatenate": lambda rng: [Case([_u(rng, (2, 3)), _u(rng, (2, 1)), _u(rng, (2, 2))], axis=1)],
    "pad": lambda rng: [Case([_u(rng, (2, 3)), _u(rng, ())], widths=((1, 0), (2, 1)))],
    "gather": _gather,
    "matmul": lambda rng: [Case([_u(rng, (2, 3)), _u(rng, (3, 4))]), Case([_u(rng, (2, 2, 3)), _u(rng, (1, 3, 4))])],
    "conv_general": lambda rng: [
        Case([_u(rng, (2, 6, 3)), _u(rng, (4, 3, 3))], strides=(1,), padding=((1, 1),), kernel_dilation=(1,),
             input_dilation=(1,), groups=1, flip=False),
        Case([_u(rng, (1, 5, 5, 2)), _u(rng, (2, 2, 2, 1))], strides=(2, 1), padding=((0, 1), (1, 0)),
             kernel_dilation=(1, 2), input_dilation=(1, 1), groups=2, flip=True),
        Case([_u(rng, (1, 4, 2)), _u(rng, (2, 3, 2))], strides=(1,), padding=((2, 1),), kernel_dilation=(1,),
             input_dilation=(2,), groups=1, flip=False)],
    "sliding_windows": lambda rng: [Case([_u(rng, (1, 5, 2))], kernel=(2,), strides=(2,), kernel_dilation=(1,),
                                         padding=((1, 0),), input_dilation=(1,))],
    "sliding_windows_transpose": lambda rng: [
        Case([_u(rng, (1, 3, 2, 2))], spatial=(5,), kernel=(2,), strides=(2,), kernel_dilation=(1,),
             padding=((1, 0),), input_dilation=(1,))],
    "sort": lambda rng: [Case([_u(rng, (3, 4))], axis=1), Case([_u(rng, (3, 4))], axis=0)],
    "argsort": lambda rng: [Case([_u(rng, (3, 4))], axis=1)],
    "partition": lambda rng: [Case([_u(rng, (3, 5))], axis=1, kth=2)],
    "argpartition": lambda rng: [Case([_u(rng, (3, 5))], axis=1, kth=-2)],
    "searchsorted": lambda rng: [Case([np.sort(_u(rng, (5,))), _u(rng, (2, 3))], right=False),
                                 Case([np.sort(np.round(_u(rng, (6,)))), np.round(_u(rng, (4,)))], right=True)],
    "random_bits": lambda rng: [Case([_ints(rng, (2,), 0, 2**31, np.uint32)], shape=(3,), width=4),
                                Case([_ints(rng, (2, 2), 0, 2**31, np.uint32)], shape=(5,), width=1)],
    "random_uniform": lambda rng: [
        Case([_ints(rng, (2,), 0, 2**31, np.uint32), _u(rng, ()) - 3,
              _u(rng, ()) + 3], shape=(4,)),
        Case([_ints(rng, (2, 2), 0, 2**31, np.uint32), _u(rng, (3, 1)) - 3,
              _u(rng, (3,)) + 3], shape=(3, 3))],
    # dense linear algebra (prims/lapack.py)
    "inv": lambda rng: [Case([_well_conditioned(rng, 3)])],
    "solve": lambda rng: [Case([_well_conditioned(rng, 3), _u(rng, (3, 2))])],
    "cholesky": lambda rng: [Case([_spd(rng, 3)], sym=(0,), upper=False), Case([_spd(rng, 3)], sym=(0,), upper=True)],
    # qr, eig and lu_factor have no derivative rules in MLX either (their rules raise): fd=False.
    "qr": lambda rng: [Case([_u(rng, (3, 2))], output=0, fd=False), Case([_u(rng, (3, 2))], output=1, fd=False)],
    "svd": lambda rng: [Case([_u(rng, (3, 2))], output=1), Case([_u(rng, (2, 3))], output=1),
                        Case([_u(rng, (3, 2))], output=0, fd=False), Case([_u(rng, (3, 2))], output=2, fd=False)],
    "eigh": lambda rng: [Case([_spd(rng, 3)], sym=(0,), output=0, uplo="L"),
                         Case([_spd(rng, 3)], output=1, uplo="U", fd=False)],
    "eig": lambda rng: [Case([_well_conditioned(rng, 3)], output=0, fd=False),
                        Case([_well_conditioned(rng, 3)], output=1, fd=False)],
    "lu_factor": lambda rng: [Case([_well_conditioned(rng, 3)], output=k, fd=False) for k in (0, 1, 2)],
    "det": lambda rng: [Case([_well_conditioned(rng, 3)])],
    "slogdet": lambda rng: [Case([_well_conditioned(rng, 3)], output=0), Case([_well_conditioned(rng, 3)], output=1)],
})
# affine-quantized products (prims/quantized.py): packed words are integers; scales and biases differentiate
def _words(rng, shape):
    return rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)


SAMPLES.update({
    "quantize": lambda rng: [Case([_u(rng, (2, 3, 64))], group_size=32, bits=4, output=k) for k in range(3)],
    "dequantize": lambda rng: [Case([_words(rng, (3, 8)), _u(rng, (3, 2)), _u(rng, (3, 2))], group_size=32, bits=4,
                                    dtype=mx.float64)],
    "quantized_matmul": lambda rng: [
        Case([_u(rng, (2, 64)), _words(rng, (3, 8)), _u(rng, (3, 2)), _u(rng, (3, 2))], transpose=True,
             group_size=32, bits=4),
        Case([_u(rng, (2, 2, 3)), _words(rng, (2, 3, 2)), _u(rng, (2, 3, 1)), _u(rng, (2, 3, 1))], transpose=False,
             group_size=32, bits=2)],
    "gather_qmm": lambda rng: [
        Case([_u(rng, (2, 1, 64)), _words(rng, (3, 3, 8)), _u(rng, (3, 3, 2)), _u(rng, (3, 3, 2)),
              np.array([0, 1, 1], np.int32), np.array([2, 0, 2], np.int32)], transpose=True, group_size=32, bits=4)],
})
# Fourier transforms (prims/fft.py). Complex inputs are not finite-differenced, and a real-to-complex output is
# not either (its vjp, the adjoint under MLX's convention, is checked against real MLX in test_fft.py): diff=[].
SAMPLES["fft"] = lambda rng: [
    Case([(_u(rng, (3, 4)) + 1j * _u(rng, (3, 4))).astype(np.complex64)], axes=(1,), inverse=False, real=False, last=0),
    Case([(_u(rng, (2, 3, 4)) + 1j * _u(rng, (2, 3, 4))).astype(np.complex64)], axes=(2, 0), inverse=True,
         real=False, last=0),
    Case([_u(rng, (3, 5))], diff=[], axes=(1,), inverse=False, real=True, last=0),
    Case([(_u(rng, (2, 3)) + 1j * _u(rng, (2, 3))).astype(np.complex64)], axes=(0, 1), inverse=True, real=True,
         last=5),
]
# small float formats (prims/float_formats.py): codes are integers, so only vmap is checked
SAMPLES["float_encode"] = lambda rng: [Case([_u(rng, (2, 3), -500, 500)], format="e4m3"),
                                       Case([_u(rng, (3,), -8, 8)], format="e2m1")]
SAMPLES["float_decode"] = lambda rng: [Case([_ints(rng, (2, 3), 0, 256, np.uint8)], format="e4m3", dtype=mx.float32),
                                       Case([_ints(rng, (4,), 0, 256, np.uint8)], format="e8m0", dtype=mx.float32),
                                       Case([_ints(rng, (4,), 0, 16, np.uint8)], format="e2m1", dtype=mx.float16)]
for _name in ("scatter", "scatter_add", "scatter_multiply", "scatter_maximum", "scatter_minimum"):
    SAMPLES[_name] = _scatter(_name)
# complex parts and bit views (prims/extra.py); complex inputs are not finite-differenced
SAMPLES.update({
    "real": lambda rng: [Case([_u(rng, (2, 3)) + 1j * _u(rng, (2, 3))]), Case([_u(rng, (2, 3))])],
    "imag": lambda rng: [Case([_u(rng, (2, 3)) + 1j * _u(rng, (2, 3))]), Case([_u(rng, (2, 3))])],
    "conjugate": lambda rng: [Case([_u(rng, (2, 3)) + 1j * _u(rng, (2, 3))]), Case([_u(rng, (2, 3))])],
    "view": lambda rng: [Case([_u(rng, (2, 4)).astype(np.float32)], dtype=mx.int16),
                         Case([_u(rng, (2, 4)).astype(np.float32)], dtype=mx.uint32)],
    "as_strided": lambda rng: [Case([_u(rng, (3, 4))], shape=(2, 3), strides=(2, 1), offset=1)],
})

# communication (prims/distributed.py) in this process's group of one, where each is the identity (all_gather
# stacks a scalar); tests/test_distributed.py checks them across processes. all_max, all_min and sum_scatter
# have no derivative rules, as in MLX: fd=False checks that they say so.
_ONE = mx.distributed.init()
SAMPLES.update({
    "all_sum": lambda rng: [Case([_u(rng, (2, 3))], group=_ONE), Case([_u(rng, ())], group=_ONE)],
    "all_max": lambda rng: [Case([_u(rng, (2, 3))], group=_ONE, fd=False)],
    "all_min": lambda rng: [Case([_u(rng, (2, 3))], group=_ONE, fd=False)],
    "all_gather": lambda rng: [Case([_u(rng, (2, 3))], group=_ONE), Case([_u(rng, ())], group=_ONE)],
    "sum_scatter": lambda rng: [Case([_u(rng, (2, 3))], group=_ONE, fd=False)],
})


# -- helpers --------------------------------------------------------------------------------------------------
def _arr(x):
    x = np.asarray(x)
    return mx.array(x, dtype=dt.from_numpy(x.dtype))


def _np(a):
    return np.array(a)


def _cases(name, seed=0):
    return SAMPLES[name](np.random.default_rng(seed))


def _differentiated(name, case):
    """The primitive as a function of the differentiated inputs only (the others are constants)."""

    def f(*values):
        full = [_arr(x) for x in case.inputs]
        for i, v in zip(case.diff, values):
            full[i] = v
        return bind(name, *full, **case.params)

    return f


def _direction(rng, case, i):
    t = rng.standard_normal(case.inputs[i].shape)
    return (t + np.swapaxes(t, -1, -2)) / 2 if i in case.sym else t


def _has_derivative(name, case):
    prim = REGISTRY[name]
    if not prim.differentiable or not case.fd or not case.diff:
        return False
    out = bind(name, *[_arr(x) for x in case.inputs], **case.params)
    return dt.is_floating(out.dtype)


def _param_cases(check):
    return [pytest.param(name, i, id=f"{name}-{i}") for name in sorted(SAMPLES) if name in REGISTRY
            for i in range(len(_cases(name))) if check(name, _cases(name)[i])]


# -- completeness -------------------------------------------------------------------------------------------
def test_every_primitive_has_a_sample_generator():
    missing = sorted(n for n in REGISTRY if n not in SAMPLES and n not in NO_SAMPLES)
    assert not missing, f"primitives without a sample generator in tests/test_transform_rules.py: {missing}"


def test_every_differentiable_primitive_has_vjp_and_jvp_rules():
    missing = sorted(n for n, p in REGISTRY.items()
                     if p.differentiable and (p.vjp is None or p.jvp is None) and n not in NO_AD_RULES)
    assert not missing, f"differentiable primitives without vjp/jvp rules: {missing}"


def test_every_primitive_has_a_vmap_rule():
    missing = sorted(n for n, p in REGISTRY.items() if p.vmap is None and n not in NO_VMAP_RULE)
    assert not missing, f"primitives without a vmap rule: {missing}"


def test_exception_lists_name_registered_primitives():
    # A stale exception would silently exempt a future primitive of that name.
    for table in (NO_SAMPLES, FD_EXEMPT, NO_AD_RULES, NO_VMAP_RULE, UNBATCHABLE_INPUTS):
        assert set(table) <= set(REGISTRY), set(table) - set(REGISTRY)


# -- (a) vjp against central finite differences (float64) -------------------------------------------------------
@pytest.mark.parametrize("name,index", _param_cases(lambda n, c: _has_derivative(n, c) and n not in FD_EXEMPT))
def test_vjp_matches_finite_differences(name, index):
    case = _cases(name)[index]
    rng = np.random.default_rng(1)
    f = _differentiated(name, case)
    primals = [case.inputs[i] for i in case.diff]
    out = _np(f(*[_arr(p) for p in primals]))
    # Infinite outputs (an exclusive cummax starts at -inf) have no finite differences: give them no weight.
    ct = np.where(np.isfinite(out), rng.standard_normal(out.shape), 0.0)
    _, grads = mx.vjp(f, [_arr(p) for p in primals], [_arr(ct)])
    for _ in range(2):
        dirs = [_direction(rng, case, i) for i in case.diff]
        plus = _np(f(*[_arr(p + EPS * d) for p, d in zip(primals, dirs)]))
        minus = _np(f(*[_arr(p - EPS * d) for p, d in zip(primals, dirs)]))
        with np.errstate(invalid="ignore"):
            change = np.where(ct != 0, plus - minus, 0.0)
        numeric = np.sum(ct * change) / (2 * EPS)
        analytic = sum(np.sum(_np(g) * d) for g, d in zip(grads, dirs))
        scale = 1 + np.sum(np.abs(ct * change)) / (2 * EPS)
        assert abs(numeric - analytic) <= 1e-6 * scale, (name, case.params, numeric, analytic)


# -- (b) jvp against vjp: <jvp(t), c> == <t, vjp(c)> -------------------------------------------------------------
@pytest.mark.parametrize("name,index", _param_cases(_has_derivative))
def test_jvp_is_the_transpose_of_vjp(name, index):
    case = _cases(name)[index]
    rng = np.random.default_rng(2)
    f = _differentiated(name, case)
    primals = [_arr(case.inputs[i]) for i in case.diff]
    tangents = [_direction(rng, case, i) for i in case.diff]
    (out,), (jt,) = mx.jvp(f, primals, [_arr(t) for t in tangents])
    ct = rng.standard_normal(out.shape)
    _, grads = mx.vjp(f, primals, [_arr(ct)])
    assert tuple(jt.shape) == tuple(out.shape) and jt.dtype == out.dtype
    lhs = np.sum(_np(jt) * ct)
    rhs = sum(np.sum(_np(g) * t) for g, t in zip(grads, tangents))
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9), (name, case.params)


@pytest.mark.parametrize("name,index", _param_cases(
    lambda n, c: not REGISTRY[n].differentiable and any(x.dtype.kind == "f" for x in c.inputs)))
def test_non_differentiable_primitives_give_zero_gradients(name, index):
    case = _cases(name)[index]
    floats = [i for i, x in enumerate(case.inputs) if x.dtype.kind == "f"]
    case.diff = floats
    f = _differentiated(name, case)
    primals = [_arr(case.inputs[i]) for i in floats]
    out = f(*primals)
    _, grads = mx.vjp(f, primals, [mx.ones_like(out)])
    for g, p in zip(grads, primals):
        assert tuple(g.shape) == tuple(p.shape)
        assert not np.any(_np(g))
    _, (jt,) = mx.jvp(f, primals, [mx.ones_like(p) for p in primals])
    assert not np.any(_np(jt))


@pytest.mark.parametrize("name,index", _param_cases(
    lambda n, c: REGISTRY[n].differentiable and not c.fd and dt.is_floating(
        bind(n, *[_arr(x) for x in c.inputs], **c.params).dtype)))
def test_unsupported_derivatives_raise_clear_errors(name, index):
    # A derivative that is not implemented must say so ("[op] ..."), never return a wrong answer.
    case = _cases(name)[index]
    f = _differentiated(name, case)
    primals = [_arr(case.inputs[i]) for i in case.diff]
    out = f(*primals)
    for transform, vectors in ((mx.vjp, [mx.ones_like(out)]), (mx.jvp, [mx.ones_like(p) for p in primals])):
        try:
            results = transform(f, primals, vectors)[1]
        except ValueError as e:
            assert str(e).startswith("["), str(e)
            continue
        pytest.fail(f"{name} {case.params}: expected an error, got {results}")


# -- (c) vmap against a Python loop -------------------------------------------------------------------------------
def _batch_layouts(ndims):
    """Batch axis per input: all at the front, all at the back, then each input alone (middle position)."""
    layouts = [tuple(0 for _ in ndims), tuple(n for n in ndims)]
    if len(ndims) > 1:
        for i, n in enumerate(ndims):
            layouts.append(tuple((n + 1) // 2 if j == i else None for j in range(len(ndims))))
    return list(dict.fromkeys(layouts))


def _assert_same(got, want, what):
    assert got.shape == want.shape, what
    if got.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=str(what))
    else:
        np.testing.assert_array_equal(got, want, err_msg=str(what))


@pytest.mark.parametrize("name,index", _param_cases(lambda n, c: True))
def test_vmap_matches_a_loop(name, index):
    members = [_cases(name, seed)[index] for seed in range(BATCH)]
    params = members[0].params
    ndims = [x.ndim for x in members[0].inputs]
    fixed = UNBATCHABLE_INPUTS.get(name, ((),))[0]
    for axes in _batch_layouts(ndims):
        args = []
        for i, ax in enumerate(axes):
            if ax is None:
                args.append(_arr(members[0].inputs[i]))
            else:
                args.append(_arr(np.stack([m.inputs[i] for m in members], axis=ax)))
        if any(axes[i] is not None for i in fixed):
            with pytest.raises(ValueError, match=rf"^\[{name}\] Cannot vmap"):
                mx.vmap(lambda *xs: bind(name, *xs, **params), in_axes=axes)(*args)
            continue
        expected = []
        for m in members:
            inputs = [m.inputs[i] if ax is not None else members[0].inputs[i] for i, ax in enumerate(axes)]
            expected.append(_np(bind(name, *[_arr(x) for x in inputs], **params)))
        got = mx.vmap(lambda *xs: bind(name, *xs, **params), in_axes=axes)(*args)
        _assert_same(_np(got), np.stack(expected), (name, params, axes))


def test_vmap_output_axis_and_unbatched_output():
    x = np.random.default_rng(0).standard_normal((3, 4))
    got = mx.vmap(lambda a: bind("exp", a), in_axes=1, out_axes=1)(_arr(x))
    np.testing.assert_allclose(_np(got), np.exp(x))
