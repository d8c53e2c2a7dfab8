"""Shape ops through the public API against numpy (and real MLX where installed for MLX-specific forms)."""

import kiln.core as mx
import numpy as np
import pytest

A = np.arange(24, dtype=np.int32).reshape(2, 3, 4)


def check(out, expected, dtype=None):
    expected = np.asarray(expected)
    assert out.shape == expected.shape
    if dtype is not None:
        assert out.dtype == dtype
    np.testing.assert_array_equal(np.array(out), expected)


@pytest.mark.parametrize("shape", [(24,), (4, -1), (-1, 2, 3), (6, 4), (2, 3, 4), (1, 24, 1), (-1,)])
def test_reshape(shape):
    check(mx.reshape(mx.array(A), shape), A.reshape(shape), mx.int32)
    check(mx.array(A).reshape(*shape), A.reshape(shape))
    check(mx.array(A).reshape(shape), A.reshape(shape))


def test_reshape_of_empty_and_0d():
    assert mx.reshape(mx.zeros((0, 3)), (3, 0)).shape == (3, 0)
    with pytest.raises(ValueError, match=r"^\[reshape\]"):  # -1 is ambiguous next to a 0, as in numpy and MLX
        mx.reshape(mx.zeros((0, 3)), (0, -1))
    assert mx.reshape(mx.array(5), (1, 1)).shape == (1, 1)
    assert mx.reshape(mx.array([5]), ()).shape == ()


@pytest.mark.parametrize("start, end", [(0, -1), (1, -1), (0, 1), (-2, -1), (1, 1), (-3, 2), (0, 5), (-9, 1)])
def test_flatten(start, end):
    s, e = max(start + 3 if start < 0 else start, 0), min(end + 3 if end < 0 else end, 2)
    expected = A.reshape(A.shape[:s] + (-1,) + A.shape[e + 1:])
    check(mx.flatten(mx.array(A), start, end), expected)
    check(mx.array(A).flatten(start, end), expected)


def test_flatten_0d_gives_one_element():
    assert mx.flatten(mx.array(3)).shape == (1,)


@pytest.mark.parametrize("axis, shape", [(0, (1, 2)), (1, (3, 1)), (2, (2, 2)), (-1, (2, -1)), (-1, (4,))])
def test_unflatten(axis, shape):
    full = list(A.shape)
    ax = axis % 3
    resolved = list(shape)
    if -1 in resolved:
        known = int(np.prod([s for s in resolved if s != -1]))
        resolved[resolved.index(-1)] = full[ax] // known
    check(mx.unflatten(mx.array(A), axis, shape), A.reshape(full[:ax] + resolved + full[ax + 1:]))


@pytest.mark.parametrize("axis", [None, 0, 2, (0, 2), -1, (0, -1)])
def test_squeeze(axis):
    x = np.zeros((1, 3, 1), np.float32)
    check(mx.squeeze(mx.array(x), axis), np.squeeze(x, axis))
    check(mx.array(x).squeeze(axis), np.squeeze(x, axis))


@pytest.mark.parametrize("axis", [0, 1, 3, -1, -4, (0, 2), (0, -1), (1, 3, 4)])
def test_expand_dims(axis):
    check(mx.expand_dims(mx.array(A), axis), np.expand_dims(A, axis))


@pytest.mark.parametrize("axes", [None, (0, 1, 2), (1, 0, 2), (2, 0, 1), (-1, 0, 1), (0, -1, -2)])
def test_transpose(axes):
    check(mx.transpose(mx.array(A), axes), np.transpose(A, axes))
    if axes is not None:
        check(mx.array(A).transpose(*axes), np.transpose(A, axes))
        check(mx.array(A).transpose(axes), np.transpose(A, axes))
    check(mx.array(A).T, A.T)


@pytest.mark.parametrize("a1, a2", [(0, 2), (-1, 0), (1, 1), (2, -2)])
def test_swapaxes(a1, a2):
    check(mx.swapaxes(mx.array(A), a1, a2), np.swapaxes(A, a1, a2))
    check(mx.array(A).swapaxes(a1, a2), np.swapaxes(A, a1, a2))


@pytest.mark.parametrize("src, dst", [(0, -1), (2, 0), (-1, 1), (1, 1)])
def test_moveaxis(src, dst):
    check(mx.moveaxis(mx.array(A), src, dst), np.moveaxis(A, src, dst))
    check(mx.array(A).moveaxis(src, dst), np.moveaxis(A, src, dst))


@pytest.mark.parametrize("src_shape, shape", [((3,), (2, 3)), ((), (2, 0)), ((2, 1), (3, 2, 4)), ((1,), (1,))])
def test_broadcast_to(src_shape, shape):
    x = np.arange(int(np.prod(src_shape)), dtype=np.float32).reshape(src_shape)
    check(mx.broadcast_to(mx.array(x), shape), np.broadcast_to(x, shape))


def test_broadcast_arrays_and_shapes():
    a, b = mx.broadcast_arrays(mx.array([1, 2]), mx.array([[1.5], [2.5], [3.5]]))
    assert a.shape == b.shape == (3, 2) and a.dtype == mx.int32 and b.dtype == mx.float32
    np.testing.assert_array_equal(np.array(a), [[1, 2]] * 3)
    assert mx.broadcast_shapes((2, 1, 3), (4, 1), ()) == (2, 4, 3)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, None])
def test_concatenate(axis):
    b = A + 100
    check(mx.concatenate([mx.array(A), mx.array(b)], axis=axis), np.concatenate([A, b], axis=axis))
    check(mx.concat([mx.array(A), mx.array(b), mx.array(A)], axis=axis), np.concatenate([A, b, A], axis=axis))


def test_concatenate_promotes_and_accepts_unequal_lengths():
    out = mx.concatenate([mx.ones((2, 3), mx.int32), mx.zeros((1, 3), mx.float16)])
    assert out.dtype == mx.float16 and out.shape == (3, 3)
    assert mx.concatenate([mx.array([1, 2])]).tolist() == [1, 2]


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -4])
def test_stack(axis):
    check(mx.stack([mx.array(A), mx.array(A * 2)], axis=axis), np.stack([A, A * 2], axis=axis))


def test_stack_promotes():
    assert mx.stack([mx.array(1), mx.array(2.5)]).tolist() == [1.0, 2.5]
    assert mx.stack([mx.array([1], mx.uint8), mx.array([2], mx.int8)]).dtype == mx.int16


@pytest.mark.parametrize("sections, axis", [(2, 0), (3, 1), (4, 2), (1, -1), ([1, 3], 2), ([1, 3], -1),
                                            ([3, 1], 2), ([-1], -1), ([10], 2), ([], 2), ([0, 0, 2], 1)])
def test_split(sections, axis):
    parts = mx.split(mx.array(A), sections, axis=axis)
    expected = np.split(A, sections, axis=axis)
    assert len(parts) == len(expected)
    for p, e in zip(parts, expected):
        check(p, e)


@pytest.mark.parametrize("pad_width", [1, (2,), (1, 2), [(0, 1), (1, 0), (2, 2)], ((1, 2),)])
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad(pad_width, mode):
    np_width = pad_width
    if isinstance(pad_width, tuple) and len(pad_width) == 1 and isinstance(pad_width[0], int):
        np_width = pad_width[0]
    check(mx.pad(mx.array(A), pad_width, mode=mode), np.pad(A, np_width, mode=mode))


@pytest.mark.parametrize("width", [1, 3, 7])
@pytest.mark.parametrize("mode", ["reflect", "symmetric", "edge"])
def test_pad_wider_than_the_array_repeats_the_mirror(mode, width):
    x = np.arange(3, dtype=np.float32)
    check(mx.pad(mx.array(x), width, mode=mode), np.pad(x, width, mode=mode))


def test_pad_constant_values():
    check(mx.pad(mx.array(A), 1, constant_values=-5), np.pad(A, 1, constant_values=-5))
    out = mx.pad(mx.array([1.5, 2.0]), (1, 2), constant_values=mx.array(7.0))
    check(out, [7.0, 1.5, 2.0, 7.0, 7.0], mx.float32)
    assert mx.pad(mx.array([1, 2], mx.uint8), 1, constant_values=2.7).tolist() == [2, 1, 2, 2]


@pytest.mark.parametrize("repeats, axis", [(2, None), (2, 0), (3, -1), (0, 1), (1, 2)])
def test_repeat(repeats, axis):
    check(mx.repeat(mx.array(A), repeats, axis=axis), np.repeat(A, repeats, axis=axis))


@pytest.mark.parametrize("reps", [2, (2, 2), (1, 2, 3), (2, 1, 1, 2), 0, (1,)])
def test_tile(reps):
    check(mx.tile(mx.array(A[0]), reps), np.tile(A[0], reps))
    check(mx.tile(mx.array(5), reps), np.tile(np.int32(5), reps))


@pytest.mark.parametrize("shift, axis", [(1, None), (-5, None), (1, 1), ((1, 2), (0, 2)), (7, -1), (2, (0, 1)),
                                         ((1, 2), 0), (25, None)])
def test_roll(shift, axis):
    check(mx.roll(mx.array(A), shift, axis=axis), np.roll(A, shift, axis=axis))


def test_roll_of_empty_and_0d():
    assert mx.roll(mx.zeros((0, 2)), 1, axis=0).shape == (0, 2)
    assert mx.roll(mx.array(3), 1).item() == 3


@pytest.mark.parametrize("indexing", ["xy", "ij"])
@pytest.mark.parametrize("sparse", [False, True])
def test_meshgrid(indexing, sparse):
    xs = [np.array([1, 2, 3]), np.array([4.5, 5.5]), np.array([7, 8, 9, 10])]
    for n in (1, 2, 3):
        outs = mx.meshgrid(*[mx.array(x) for x in xs[:n]], sparse=sparse, indexing=indexing)
        expected = np.meshgrid(*xs[:n], sparse=sparse, indexing=indexing)
        assert isinstance(outs, tuple) and len(outs) == len(expected)  # a tuple, as MLX (and numpy >= 2)
        for o, e in zip(outs, expected):
            np.testing.assert_array_equal(np.array(o), e)
            assert o.shape == e.shape


def test_meshgrid_flattens_higher_rank_inputs():
    a, b = mx.meshgrid(mx.zeros((2, 2)), mx.zeros((3,)))
    assert a.shape == b.shape == (3, 4)


@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
@pytest.mark.parametrize("op", ["tril", "triu"])
def test_tril_triu(op, k):
    x = np.arange(1, 25, dtype=np.float32).reshape(2, 3, 4)
    check(getattr(mx, op)(mx.array(x), k), getattr(np, op)(x, k), mx.float32)
    b = np.ones((3, 3), bool)
    check(getattr(mx, op)(mx.array(b), k), getattr(np, op)(b, k), mx.bool_)


def test_atleast_nd():
    assert mx.atleast_1d(mx.array(1)).shape == (1,)
    assert mx.atleast_2d(mx.array([1, 2])).shape == (1, 2)
    assert mx.atleast_3d(mx.array([1, 2])).shape == (1, 2, 1)
    assert mx.atleast_3d(mx.zeros((2, 3))).shape == (2, 3, 1)
    assert mx.atleast_3d(mx.array(1)).shape == (1, 1, 1)
    a, b = mx.atleast_2d(mx.array(1), mx.zeros((2, 3)))
    assert a.shape == (1, 1) and b.shape == (2, 3)


def test_shape_ops_agree_with_mlx(mlx):
    x = np.arange(24).reshape(2, 3, 4).astype(np.int32)
    cases = [
        lambda m, a: m.flatten(a, -5, 1),
        lambda m, a: m.roll(a, (1, 2), axis=(0,)),
        lambda m, a: m.split(a, [-1], axis=-1)[0],
        lambda m, a: m.pad(a, 1, mode="symmetric"),
        lambda m, a: m.repeat(a, 2, axis=-1),
        lambda m, a: m.unflatten(a, -1, (2, -1)),
        lambda m, a: m.meshgrid(a[0], a[1, 0])[0],
    ]
    for case in cases:
        np.testing.assert_array_equal(np.array(case(mx, mx.array(x))), np.array(case(mlx, mlx.array(x))))


def test_as_strided_negative_strides():
    x = np.arange(32, dtype=np.float32)
    check(mx.as_strided(mx.array(x), (32,), (-1,), 31), x[::-1])
    # a window that walks back from its offset: numpy's as_strided from the same first element
    want = np.lib.stride_tricks.as_strided(x[9:], (3, 2), (-16, 4))
    check(mx.as_strided(mx.array(x), (3, 2), (-4, 1), 9), want)
    with pytest.raises(ValueError, match=r"\[as_strided\].*reads outside"):
        mx.as_strided(mx.array(x), (3,), (-1,), 1)


def test_view_of_a_scalar():
    out = mx.array(-1, mx.int8).view(mx.uint8)
    assert out.shape == () and out.item() == 255
    assert mx.array(1.0).view(mx.int32).item() == np.array(1.0, np.float32).view(np.int32).item()


TOO_BIG = 2**31


@pytest.mark.parametrize("make", [
    lambda: mx.zeros(TOO_BIG),
    lambda: mx.ones([TOO_BIG]),
    lambda: mx.full(TOO_BIG, 0.0),
    lambda: mx.zeros([-TOO_BIG - 1]),
    lambda: mx.reshape(mx.zeros(4), [TOO_BIG]),
    lambda: mx.broadcast_to(mx.zeros(4), [TOO_BIG, 1]),
])
def test_given_dimension_beyond_int32_is_an_overflow_error(make):
    # MLX's shapes are int32: a wider dimension is refused by name before anything is allocated.
    with pytest.raises(OverflowError, match=r"^\[\w+\] Shape dimension -?(2147483648|2147483649) is outside"):
        make()


def test_computed_dimension_beyond_int32_is_an_overflow_error():
    big = mx.zeros(2**30)  # stays lazy in the ops below: the check runs before any kernel
    with pytest.raises(OverflowError, match=r"^\[concatenate\] Shape dimension 3221225472 "):
        mx.concatenate([big] * 3)
    with pytest.raises(OverflowError, match=r"^\[repeat\] Shape dimension 4294967296 "):
        mx.repeat(big, 4)
    with pytest.raises(OverflowError, match=r"^\[kron\] Shape dimension 4294967296 "):
        mx.kron(mx.zeros(2**16), mx.zeros(2**16))
    assert mx.concatenate([mx.zeros(2**30), mx.zeros(2**30 - 1)]).shape == (2**31 - 1,)


def test_shape_dimensions_take_only_index_integers():
    a = mx.arange(4)
    assert mx.reshape(a, [np.int32(2), 2]).shape == (2, 2)
    assert mx.zeros((np.uint8(2), True)).shape == (2, 1)
    for bad in (np.float32(2), "2", 2.0):
        with pytest.raises(TypeError, match=r"^\[reshape\] Shape dimensions must be integers"):
            mx.reshape(a, [bad, 2])
        with pytest.raises(TypeError, match=r"^\[topk\] k must be an int"):
            mx.topk(a, bad)
    with pytest.raises(TypeError, match=r"^\[zeros\]"):
        mx.zeros(2.0)


def test_broadcast_shapes_needs_a_shape():
    assert mx.broadcast_shapes((2, 1), (3,)) == (2, 3)
    with pytest.raises(ValueError, match=r"^\[broadcast_shapes\] Must provide at least one shape"):
        mx.broadcast_shapes()


def test_shape_errors_agree_with_mlx(mlx):
    a, big = np.arange(4, dtype=np.int32), 2**30
    cases = [
        lambda m: m.broadcast_shapes(),
        lambda m: m.zeros([TOO_BIG]),
        lambda m: m.reshape(m.array(a), [TOO_BIG]),
        lambda m: m.reshape(m.array(a), [np.float32(2), 2]),
        lambda m: m.reshape(m.array(a), ["2", 2]),
        lambda m: m.topk(m.array(a), np.float32(2)),
        lambda m: m.concatenate([m.zeros(big)] * 2),
        lambda m: m.repeat(m.zeros(big), 2),
    ]
    for case in cases:
        with pytest.raises(Exception) as theirs:
            case(mlx)
        with pytest.raises(type(theirs.value)):
            case(mx)
