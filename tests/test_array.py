"""The array type: attributes, conversions to Python and numpy, iteration, truth value, hashing, methods,
and laziness (ops record nodes; eval, item, tolist, numpy conversion and printing compute them)."""

import gc
import sys
import warnings
import weakref

import kiln.core as mx
import numpy as np
import pytest
from kiln.core import engine


def test_attributes():
    a = mx.arange(6).reshape(2, 3)
    assert a.shape == (2, 3) and isinstance(a.shape, tuple)
    assert a.dtype == mx.int32 and a.ndim == 2 and a.size == 6
    assert a.itemsize == 4 and a.nbytes == 24
    assert mx.array([1, 2], mx.bfloat16).nbytes == 4
    assert mx.array(1.5, mx.float16).itemsize == 2
    assert mx.array(3).ndim == 0 and mx.array(3).size == 1 and mx.array(3).shape == ()
    np.testing.assert_array_equal(np.array(a.T), np.arange(6).reshape(2, 3).T)


def test_item():
    assert mx.array(3).item() == 3 and type(mx.array(3).item()) is int
    assert mx.array(2.5).item() == 2.5 and type(mx.array(2.5).item()) is float
    assert type(mx.array(2.5, mx.float16).item()) is float
    assert mx.array(2.5, mx.bfloat16).item() == 2.5 and type(mx.array(2.5, mx.bfloat16).item()) is float
    assert mx.array([True]).item() is True
    assert mx.array([[7]]).item() == 7
    with pytest.raises(ValueError):
        mx.array([1, 2]).item()


def test_tolist():
    assert mx.arange(6).reshape(2, 3).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert mx.array([1.5, 2], mx.bfloat16).tolist() == [1.5, 2.0]
    assert mx.array(3.5).tolist() == 3.5
    assert mx.array([True, False]).tolist() == [True, False]
    assert type(mx.array([1.5], mx.float16).tolist()[0]) is float


def test_len_and_iteration():
    a = mx.arange(6).reshape(2, 3)
    assert len(a) == 2
    rows = list(a)
    assert [r.tolist() for r in rows] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(TypeError):
        len(mx.array(1))
    with pytest.raises(TypeError):
        iter(mx.array(1))


def test_truth_value_of_one_element():
    assert bool(mx.array([2])) is True
    assert bool(mx.array(0.0)) is False
    assert bool(mx.array([[True]])) is True
    with pytest.raises(ValueError):
        bool(mx.array([1, 2]))
    with pytest.raises(ValueError):
        bool(mx.array([]))


def test_scalar_conversions():
    assert int(mx.array(2.7)) == 2 and float(mx.array(2)) == 2.0
    assert complex(mx.array(1.5)) == 1.5 + 0j and complex(mx.array(1 - 2j, mx.complex64)) == 1 - 2j
    assert complex(mx.array([[3]], mx.bfloat16)) == 3 + 0j
    assert [0, 1, 2][mx.array(1)] == 1
    with pytest.raises(TypeError):
        [0, 1, 2][mx.array(1.0)]
    for convert in (bool, int, float, complex):
        for a in (mx.zeros((2, 1)), mx.zeros((0,))):
            with pytest.raises(ValueError, match=r"^\[convert\] Only length-1 arrays can be converted"):
                convert(a)


def test_scalar_conversion_errors_match_mlx(mlx):
    for convert in (bool, int, float, complex):
        errors = []
        for lib in (mx, mlx):
            with pytest.raises(Exception) as info:
                convert(lib.zeros((2, 1)))
            errors.append((type(info.value), str(info.value)))
        assert errors[0] == errors[1]


def test_format_spec_applies_to_0d_arrays():
    assert f"{mx.arange(3)[0]:.2f}" == "0.00" and f"{mx.array(0.35487):.1f}" == "0.4"
    assert f"{mx.array(1 + 2j, mx.complex64):.1f}" == "1.0+2.0j" and f"{mx.array(7):>4}" == "   7"
    assert f"{mx.array([1, 2, 3])}" == "array([1, 2, 3], dtype=int32)" == format(mx.array([1, 2, 3]), "")
    with pytest.raises(TypeError, match="unsupported format string passed to mx.array.__format__"):
        f"{mx.arange(3):.2f}"
    with pytest.raises(TypeError):
        f"{mx.array([2.5]):.1f}"  # size 1 is not enough, as in MLX: the array must be 0-d


def test_array_namespace_info():
    info = mx.__array_namespace_info__()
    assert info.default_device() == mx.default_device()
    assert info.default_dtypes() == {"real floating": mx.float32, "complex floating": mx.complex64,
                                     "integral": mx.int32, "indexing": mx.int32}
    assert info.dtypes(device=mx.Device(mx.cpu), kind="real floating") == {"float32": mx.float32,
                                                                            "float64": mx.float64}
    assert info.dtypes(device=mx.Device(mx.gpu), kind="real floating") == {"float32": mx.float32}
    assert info.dtypes(kind=("bool", "complex floating")) == {"bool": mx.bool_, "complex64": mx.complex64}
    assert list(info.dtypes(kind="integral")) == ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                                  "uint64"]
    with pytest.raises(ValueError):
        info.dtypes(kind="invalid")
    with pytest.raises(TypeError):
        info.default_dtypes(device="cpu")


def test_array_namespace_info_matches_mlx(mlx):
    ours, theirs = mx.__array_namespace_info__(), mlx.__array_namespace_info__()

    def names(table):
        return {k: str(v).split(".")[-1] for k, v in table.items()}

    assert ours.capabilities() == theirs.capabilities()
    assert names(ours.dtypes()) == names(theirs.dtypes()) and list(ours.dtypes()) == list(theirs.dtypes())
    for kind in ("bool", "signed integer", "unsigned integer", "integral", "real floating", "complex floating",
                 "numeric"):
        assert names(ours.dtypes(kind=kind)) == names(theirs.dtypes(kind=kind))
    assert [repr(d) for d in ours.devices()] == [repr(d) for d in theirs.devices()]


def test_hash_is_by_identity():
    a, b = mx.array([1, 2]), mx.array([1, 2])
    assert hash(a) == hash(a) and hash(a) != hash(b)
    table = {a: "a", b: "b"}
    assert table[a] == "a" and table[b] == "b"


def test_numpy_conversion():
    a = mx.arange(6).reshape(2, 3)
    n = np.array(a)
    assert n.dtype == np.int32 and n.shape == (2, 3)
    np.testing.assert_array_equal(n, np.arange(6).reshape(2, 3))
    assert np.array(a, dtype=np.float64).dtype == np.float64
    assert np.asarray(mx.array([1, 2], mx.uint64)).dtype == np.uint64


needs_buffer = pytest.mark.skipif(
    engine.ArrayBuffer is object and sys.version_info < (3, 12),
    reason="the buffer protocol needs the engine's ArrayBuffer base (or Python 3.12)")


@needs_buffer
@pytest.mark.parametrize("np_dtype", [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16,
                                      np.int32, np.int64, np.float16, np.float32, np.complex64])
def test_buffer_protocol_matches_numpy(np_dtype):
    # memoryview(a) reports numpy's shape, strides and format (64-bit integers as "q"/"Q", as MLX does), is
    # writable, and reads back the same values, for the array and for its transpose (a strided view).
    want = (np.arange(12).reshape(3, 4) * 7 % 5).astype(np_dtype)
    a = mx.array(want)
    for kiln_view, numpy_view in ((a, want), (a.T, want.T)):
        got, expected = memoryview(kiln_view), memoryview(numpy_view)
        assert (got.shape, got.strides, got.readonly) == (expected.shape, expected.strides, False)
        assert got.format == {np.int64: "q", np.uint64: "Q"}.get(np_dtype, expected.format)
        np.testing.assert_array_equal(np.array(got, copy=False), numpy_view)


@needs_buffer
def test_buffer_protocol_bfloat16_and_bytes():
    # bfloat16 has no PEP 3118 character: MLX 0.32 reports the format "bfloat16", which numpy refuses.
    view = memoryview(mx.ones((3, 4), mx.bfloat16))
    assert (view.format, view.itemsize, view.strides) == ("bfloat16", 2, (8, 2))
    with pytest.raises(ValueError, match="'bfloat16' is not a valid PEP 3118 buffer format string"):
        np.array(mx.array([1.5], mx.bfloat16))
    assert bytes(mx.array([1, 258], mx.int16)) == np.array([1, 258], np.int16).tobytes()
    assert bytes(mx.array([1.0, -2.0], mx.bfloat16)) == b"\x80?\x00\xc0"  # the float32 bits' high halves


@needs_buffer
def test_buffer_protocol_bfloat16_as_mlx(mlx):
    ours, theirs = memoryview(mx.ones((2, 3), mx.bfloat16)), memoryview(mlx.ones((2, 3), mlx.bfloat16))
    assert (ours.format, ours.itemsize, ours.shape, ours.strides) == (
        theirs.format, theirs.itemsize, theirs.shape, theirs.strides)
    assert bytes(mx.array([0.5, 3.0], mx.bfloat16)) == bytes(mlx.array([0.5, 3.0], mlx.bfloat16))


@needs_buffer
def test_buffer_views_keep_the_array_alive():
    for make_view in (memoryview, lambda a: np.array(a, copy=False)):
        a = mx.arange(3)
        ref = weakref.ref(a)
        view = make_view(a)
        del a
        gc.collect()
        assert ref() is not None
        del view
        gc.collect()
        assert ref() is None


def test_numpy_view_keeps_the_layout_and_does_not_own_its_data():
    # As in MLX: a broadcast array gives a view with stride 0 on the broadcast axis, writable, owning nothing.
    a = mx.ones((2, 2))
    view = np.array(mx.broadcast_to(a, (5, 2, 2)), copy=False)
    assert view.strides == (0, 8, 4) and view.flags.writeable and not view.flags.owndata
    np.testing.assert_array_equal(view, np.ones((5, 2, 2), np.float32))
    view = np.array(a, copy=False)
    assert view.flags.writeable and not view.flags.owndata
    view[0, 0] = 3.0
    assert a.tolist() == [[3.0, 1.0], [1.0, 1.0]]
    assert mx.ones((2, 2)).tolist() == [[1.0, 1.0], [1.0, 1.0]]  # the shared constant did not change


def test_numpy_conversion_does_not_expose_a_writable_shared_buffer():
    a = mx.array([1.0, 2.0])
    n = np.array(a)
    n[0] = 5.0
    assert a.tolist() == [1.0, 2.0]


def test_astype():
    a = mx.array([1.7, -1.7, 0.0])
    assert a.astype(mx.int32).tolist() == [1, -1, 0]
    assert a.astype(mx.bool_).tolist() == [True, True, False]
    assert mx.array([300]).astype(mx.uint8).item() == 44
    assert a.astype(mx.float16).dtype == mx.float16
    assert mx.astype(a, mx.float32) is a


@pytest.mark.parametrize("method, args", [
    ("sum", ()), ("sum", (0,)), ("prod", ()), ("max", (1,)), ("min", ()), ("mean", ()), ("var", ()), ("std", (1,)),
    ("all", ()), ("any", (1,)), ("argmax", (1,)), ("argmin", ()), ("logsumexp", ()), ("cumsum", (1,)),
    ("cumprod", ()), ("cummax", (0,)), ("cummin", ()), ("exp", ()), ("log1p", ()), ("sqrt", ()), ("rsqrt", ()),
    ("square", ()), ("reciprocal", ()), ("sin", ()), ("cos", ()), ("round", ()), ("abs", ()), ("log", ()),
    ("log2", ()), ("log10", ()), ("flatten", ()), ("squeeze", ()), ("swapaxes", (0, 1)), ("moveaxis", (0, 1)),
])
def test_methods_forward_to_the_ops(method, args):
    x = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    a = mx.array(x)
    ours = getattr(a, method)(*args)
    theirs = getattr(mx, method)(a, *args)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(np.array(ours), np.array(theirs))


def test_reshape_and_transpose_methods_take_varargs_or_a_tuple():
    a = mx.arange(6)
    assert a.reshape(2, 3).shape == (2, 3) and a.reshape((3, 2)).shape == (3, 2) and a.reshape(-1).shape == (6,)
    b = mx.zeros((2, 3, 4))
    assert b.transpose(2, 0, 1).shape == (4, 2, 3) and b.transpose((1, 0, 2)).shape == (3, 2, 4)
    assert b.transpose().shape == (4, 3, 2)
    assert a.split(3)[1].tolist() == [2, 3]


def test_laziness():
    x = mx.array([1.0, 2.0, 3.0])
    assert x._data is not None  # built from data
    y = mx.exp(x) * 2 + mx.sum(x)
    assert y._data is None and y.shape == (3,) and y.dtype == mx.float32
    mx.eval(y)
    assert y._data is not None
    for force in (lambda a: a.item(), lambda a: a.tolist(), np.array, repr, str, bool, float):
        z = mx.max(x)
        assert z._data is None
        force(z)
        assert z._data is not None


def test_eval_accepts_trees():
    a, b, c = mx.exp(mx.array(1.0)), mx.exp(mx.array(2.0)), mx.exp(mx.array(3.0))
    mx.eval([a, (b,)], {"c": c})
    assert all(v._data is not None for v in (a, b, c))


def test_array_agrees_with_mlx_on_conversions(mlx):
    for value in ([1, 2], [[1.5, 2.0]], 3, True, [True, 2], np.array([1, 2], np.int16), np.float64(2.5)):
        ours, theirs = mx.array(value), mlx.array(value)
        assert ours.dtype.name == str(theirs.dtype).split(".")[-1]
        assert ours.tolist() == theirs.tolist()
        assert ours.shape == theirs.shape and ours.nbytes == theirs.nbytes


def test_equality_with_other_objects_is_false_as_in_mlx():
    a = mx.array([1, 3])
    assert (a == "x") is False and (a != "x") is True
    assert (a == [1, 3]) is False  # a list is not an array here (MLX's rule), unlike numpy
    assert (a == None) is False  # noqa: E711
    assert (a == 1).tolist() == [True, False]


def test_array_from_numpy_rejects_dimensions_beyond_int32():
    # MLX 0.32's shapes are int32: a longer numpy axis is an OverflowError (np.empty touches no memory)
    with pytest.raises(OverflowError, match=r"^Shape dimension 2147483648 is outside the supported range"):
        mx.array(np.empty(2**31, dtype=np.bool_))


def test_array_dimension_error_matches_mlx(mlx):
    errors = []
    for lib in (mlx, mx):
        with pytest.raises(Exception) as info:
            lib.array(np.empty(2**31, dtype=np.bool_))
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


def test_array_from_torch_bfloat16():
    torch = pytest.importorskip("torch")
    values = [1.0, -2.5, 3.140625]
    a = mx.array(torch.tensor(values, dtype=torch.bfloat16))
    assert a.dtype == mx.bfloat16 and a.tolist() == values
    assert mx.array(torch.tensor(values, dtype=torch.bfloat16), mx.float32).dtype == mx.float32


def test_get_array_buffer_size_counts_each_buffer_once_over_trees():
    a = mx.array([1.0, 2.0, 3.0, 4.0])
    view, lazy = a[:1], a + 1
    with pytest.raises(ValueError, match=r"^\[get_array_buffer_size\] Arrays must be evaluated"):
        mx.get_array_buffer_size({"lazy": lazy})
    mx.eval(view)
    size = mx.get_array_buffer_size(a)
    assert size == 16 and mx.get_array_buffer_size(view) == size  # a view shares its array's buffer
    assert mx.get_array_buffer_size({"a": a, "nested": (a, None, 3)}) == size
    assert mx.get_array_buffer_size() == 0 and mx.get_array_buffer_size(mx.array([])) == 0
    b = mx.array([5.0, 6.0])
    assert mx.get_array_buffer_size(a, [b]) == size + 8


# -- DLPack import -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("np_dtype, dtype", [
    (np.bool_, "bool_"), (np.uint8, "uint8"), (np.uint64, "uint64"), (np.int16, "int16"), (np.int64, "int64"),
    (np.float16, "float16"), (np.float32, "float32"), (np.float64, "float32"), (np.complex64, "complex64"),
    (np.complex128, "complex64")])
def test_from_dlpack_dtypes_as_mlx(np_dtype, dtype):
    # float64 and complex128 narrow to MLX's default float and complex dtypes, as mx.array(numpy) does.
    x = (np.arange(6) % 3).astype(np_dtype)
    got = mx.from_dlpack(x)
    assert got.dtype == getattr(mx, dtype)
    np.testing.assert_array_equal(np.array(got), x.astype(got.dtype.np))


@needs_buffer
@pytest.mark.parametrize("make", [
    lambda: np.arange(12, dtype=np.float32).reshape(3, 4).T,
    lambda: np.arange(20, dtype=np.int32)[2:10:2],
    lambda: np.broadcast_to(np.array([7], dtype=np.int32), (3,)),
    lambda: np.arange(60, dtype=np.int16).reshape(3, 4, 5)[:, ::2, 1::3].transpose(2, 0, 1)])
def test_from_dlpack_copies_and_keeps_the_layout(make):
    source = make()
    got = mx.from_dlpack(source)
    view = memoryview(got)
    assert view.strides == source.strides and view.c_contiguous == source.flags.c_contiguous
    np.testing.assert_array_equal(np.array(got), source)
    np.testing.assert_array_equal(np.array(got + 1), source + 1)
    expected = source.copy()
    if source.flags.writeable:
        source[...] = 0  # a copy: later writes to the source are not seen
    np.testing.assert_array_equal(np.array(got), expected)


def test_from_dlpack_float64_keeps_its_layout_in_float32():
    source = np.arange(12.0).reshape(3, 4).T
    got = mx.from_dlpack(source)
    assert got.dtype == mx.float32 and got._numpy().strides == (4, 16)  # the float64 strides, scaled
    np.testing.assert_array_equal(np.array(got), source.astype(np.float32))


def test_from_dlpack_errors():
    with pytest.raises(ValueError, match=r"^Cannot convert DLPack arrays with negative strides"):
        mx.from_dlpack(np.arange(5, dtype=np.float32)[::-1])
    with pytest.raises(ValueError, match=r"^\[convert\] Cannot import a CPU array without a copy\."):
        mx.from_dlpack(np.arange(3, dtype=np.float32), copy=False)
    with pytest.raises(TypeError):
        mx.from_dlpack([1, 2])
    assert mx.from_dlpack(np.zeros((0, 3))).shape == (0, 3)


def test_from_dlpack_errors_match_mlx(mlx):
    for source, copy in ((np.arange(5, dtype=np.float32)[::-1], None), (np.arange(3, dtype=np.float32), False)):
        errors = []
        for lib in (mx, mlx):
            with pytest.raises(ValueError) as info:
                lib.from_dlpack(source, copy=copy)
            errors.append(str(info.value))
        assert errors[0] == errors[1]


def test_from_dlpack_torch():
    torch = pytest.importorskip("torch")
    got = mx.from_dlpack(torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16))
    assert got.dtype == mx.bfloat16 and got.tolist() == [1.5, -2.0, 3.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch calls complex32 experimental
        complex32 = torch.ones(3, dtype=torch.complex32)
    with pytest.raises(ValueError, match="Cannot convert array to mlx"):  # a dtype MLX has not
        mx.from_dlpack(complex32)
