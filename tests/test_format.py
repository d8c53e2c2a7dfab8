"""repr/str of arrays: hand-written expectations, then a table compared against real MLX's text."""

import math

import numpy as np
import pytest

import kiln.core as kx
from kiln.core import _format

NAN = math.nan
INF = math.inf


# ---- hand-written expectations (run without MLX) ----

@pytest.mark.parametrize("value, dtype, expected", [
    (2.36788, kx.float32, "array(2.36788, dtype=float32)"),
    (math.e, kx.float32, "array(2.71828, dtype=float32)"),
    ([[1.5, 3, 4.5], [6, 7.5, 9]], kx.float32, "array([[1.5, 3, 4.5],\n       [6, 7.5, 9]], dtype=float32)"),
    ([1, 3], kx.float32, "array([1, 3], dtype=float32)"),
    ([True, False], kx.bool_, "array([True, False], dtype=bool)"),
    ([NAN, -NAN, INF, -INF, -0.0], kx.float32, "array([nan, -nan, inf, -inf, -0], dtype=float32)"),
    ([1e10, 123456789.0, 1e-8], kx.float32, "array([1e+10, 1.23457e+08, 1e-08], dtype=float32)"),
    ([1 + 2j, 3 - 4.5j, complex(1, -0.0)], kx.complex64, "array([1+2j, 3-4.5j, 1+-0j], dtype=complex64)"),
    (list(range(7)), kx.int32, "array([0, 1, 2, ..., 4, 5, 6], dtype=int32)"),
    (np.zeros((0, 3)), kx.float32, "array([], dtype=float32)"),
    (np.zeros((3, 0)), kx.float32, "array([[],\n       [],\n       []], dtype=float32)"),
    ([np.iinfo(np.uint64).max], kx.uint64, "array([18446744073709551615], dtype=uint64)"),
])
def test_hand_written(value, dtype, expected):
    x = kx.array(value, dtype=dtype)
    assert repr(x) == expected
    assert str(x) == expected


def test_three_d_layout_and_list_repr():
    x = kx.array(np.arange(8, dtype=np.int32).reshape(2, 2, 2))
    assert repr(x) == ("array([[[0, 1],\n        [2, 3]],\n       [[4, 5],\n        [6, 7]]], dtype=int32)")
    assert repr([kx.array(3.0)]) == "[array(3, dtype=float32)]"
    assert str([kx.array(3.0), kx.array(True)]) == "[array(3, dtype=float32), array(True, dtype=bool)]"


def test_summarised_rows_keep_their_indent():
    x = kx.array(np.arange(16, dtype=np.int32).reshape(8, 2))
    lines = repr(x).split("\n")
    assert lines[0] == "array([[0, 1],"
    assert lines[3] == "       ...,"
    assert lines[-1] == "       [14, 15]], dtype=int32)"
    assert len(lines) == 7


def test_precision_option_uses_fixed_notation():
    x = kx.array([1 / 3, 2.5, NAN])
    with _format.printoptions(precision=2):
        assert repr(x) == "array([0.33, 2.50, nan], dtype=float32)"
        assert repr(kx.array([1, 2])) == "array([1, 2], dtype=int32)"
        assert _format.get_printoptions().precision == 2
    assert _format.get_printoptions().precision == -1
    assert repr(x) == "array([0.333333, 2.5, nan], dtype=float32)"
    with pytest.raises(TypeError):
        _format.set_printoptions(precision=2.5)


# ---- the table against real MLX ----

def _specials():
    return [0.0, -0.0, NAN, -NAN, INF, -INF, 1.0, -1.0, 0.5, 1 / 3, 2 / 3, 100.0, 123456.0, 1234567.0,
            1e10, 1e16, 1e-4, 1e-5, 1e-8, 1e-30, 3.14159265, -2.71828, 65504.0, 6e-8, 0.1, 99999.95, 999999.5]


def _random_floats(seed, n):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) * 10.0 ** rng.integers(-12, 12, n)


_FLOATS = ("float16", "bfloat16", "float32", "float64")
_INT_EXTREMES = {
    "int8": [-128, 127, 0], "int16": [-32768, 32767, -1], "int32": [-(2**31), 2**31 - 1, 7],
    "int64": [-(2**63), 2**63 - 1, 42], "uint8": [0, 255], "uint16": [0, 65535],
    "uint32": [0, 2**32 - 1], "uint64": [0, 2**64 - 1, 2**63],
}
_SHAPES = [(), (1,), (5,), (6,), (7,), (1000,), (1, 1), (2, 3), (6, 6), (7, 7), (7, 2), (2, 9), (2, 3, 4),
           (8, 8, 2), (2, 2, 2, 2), (7, 1, 7, 1), (0,), (0, 3), (3, 0), (2, 0, 3), (1, 0, 0), (2, 3, 0), (0, 0)]


def _cases():
    cases = []
    for dtype in _FLOATS:
        cases.append((f"{dtype}-specials", np.array(_specials()), dtype))
        cases.append((f"{dtype}-random", _random_floats(len(cases), 40).reshape(5, 8), dtype))
    for dtype, values in _INT_EXTREMES.items():
        cases.append((f"{dtype}-extremes", np.array(values, dtype=np.dtype(dtype)), dtype))
    complexes = [1 + 2j, 3 - 4.5j, -1j, complex(1, -0.0), complex(1, NAN), complex(INF, -INF),
                 complex(-NAN, -NAN), complex(1e10, 1e-10), complex(1 / 3, -2 / 3)]
    cases.append(("complex-specials", np.array(complexes), "complex64"))
    cases.append(("complex-grid", np.arange(12).reshape(3, 4) + 1j, "complex64"))
    cases.append(("bool-grid", np.arange(12).reshape(3, 4) % 3 == 0, "bool_"))
    cases.append(("transposed", np.arange(12).reshape(3, 4).T, "int32"))
    for shape in _SHAPES:
        values = np.arange(math.prod(shape)).reshape(shape)
        cases.append((f"int-{shape}", values, "int32"))
        cases.append((f"float-{shape}", values * 0.75 - 3, "float32"))
    return cases


_CASES = _cases()


@pytest.mark.parametrize("values, dtype", [c[1:] for c in _CASES], ids=[c[0] for c in _CASES])
def test_matches_mlx(values, dtype):
    mlx = pytest.importorskip("mlx.core")
    expected = repr(mlx.array(values, dtype=getattr(mlx, dtype)))
    assert repr(kx.array(values, dtype=getattr(kx, dtype))) == expected


@pytest.mark.parametrize("precision", [-1, 0, 1, 3, 8, -5])
@pytest.mark.parametrize("dtype", ["float32", "float16", "complex64"])
def test_precision_matches_mlx(precision, dtype):
    mlx = pytest.importorskip("mlx.core")
    values = np.concatenate([_specials(), _random_floats(7, 20)])[:36].reshape(6, 6)
    if dtype == "complex64":
        values = values * (1 + 0.5j)
    with mlx.printoptions(precision=precision), _format.printoptions(precision=precision):
        expected = repr(mlx.array(values, dtype=getattr(mlx, dtype)))
        got = repr(kx.array(values, dtype=getattr(kx, dtype)))
    assert got == expected
