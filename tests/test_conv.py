"""Convolution and window primitives: forward against hand-written numpy loops and real MLX, gradients
against MLX's vjp and finite differences, and MLX's error behaviour."""

import kiln.core as mx
import numpy as np
import pytest
from kiln.core.primitives import REGISTRY

rng = np.random.default_rng(0)


def _randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _naive_conv1d(x, w, stride=1, padding=0, dilation=1, groups=1):
    """A direct loop over every output element: the definition of MLX's conv1d."""
    n = x.shape[0]
    c_out, k, c_group = w.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
    span = (k - 1) * dilation + 1
    out_len = (xp.shape[1] - span) // stride + 1
    o_group = c_out // groups
    out = np.zeros((n, out_len, c_out), np.float64)
    for b in range(n):
        for t in range(out_len):
            for o in range(c_out):
                g = o // o_group
                acc = 0.0
                for j in range(k):
                    for c in range(c_group):
                        acc += xp[b, t * stride + j * dilation, g * c_group + c] * w[o, j, c]
                out[b, t, o] = acc
    return out


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (2, 1, 2, 2)])
def test_conv1d_matches_naive_loop(stride, padding, dilation, groups):
    x = _randn(2, 9, 4)
    w = _randn(6, 3, 4 // groups)
    out = mx.conv1d(mx.array(x), mx.array(w), stride=stride, padding=padding, dilation=dilation, groups=groups)
    np.testing.assert_allclose(np.array(out), _naive_conv1d(x, w, stride, padding, dilation, groups), atol=1e-5)


def test_conv2d_matches_naive_loop():
    x = _randn(1, 5, 6, 2)
    w = _randn(3, 2, 3, 2)
    out = np.array(mx.conv2d(mx.array(x), mx.array(w), stride=(1, 2), padding=(1, 0)))
    xp = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
    expected = np.zeros((1, 6, 2, 3))
    for i in range(6):
        for j in range(2):
            patch = xp[0, i:i + 2, 2 * j:2 * j + 3, :]
            expected[0, i, j] = np.einsum("hwc,ohwc->o", patch, w)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_conv_transpose1d_is_the_adjoint_of_conv1d():
    # <conv(x, w), y> == <x, conv_transpose(y, w^T)> for stride 2 with no leftover positions.
    x = _randn(1, 9, 3)
    w = _randn(4, 3, 3)
    y = _randn(1, 4, 4)
    lhs = np.sum(np.array(mx.conv1d(mx.array(x), mx.array(w), stride=2)) * y)
    wt = np.transpose(w, (2, 1, 0))  # (C_in, K, C_out): conv_transpose maps C_out back to C_in
    back = np.array(mx.conv_transpose1d(mx.array(y), mx.array(wt), stride=2))
    assert back.shape == (1, 9, 3)
    np.testing.assert_allclose(lhs, np.sum(x * back), rtol=1e-4)


def test_conv_errors_follow_mlx():
    x = mx.ones((1, 5, 3))
    with pytest.raises(ValueError, match=r"^\[conv\] Invalid input array with type int32"):
        mx.conv1d(mx.ones((1, 5, 3), mx.int32), mx.ones((2, 3, 3), mx.int32))
    with pytest.raises(ValueError, match=r"^\[conv\] Expect the input channels"):
        mx.conv1d(x, mx.ones((2, 3, 2)))
    with pytest.raises(ValueError, match=r"^\[conv\] Spatial dimensions of input after padding"):
        mx.conv1d(mx.ones((1, 2, 3)), mx.ones((2, 3, 3)))
    with pytest.raises(ValueError, match=r"^\[conv\] If groups > 1"):
        mx.conv1d(mx.ones((1, 5, 4)), mx.ones((3, 3, 2)), groups=2)
    with pytest.raises(ValueError, match=r"^\[conv\] Stride sizes must be positive"):
        mx.conv1d(x, mx.ones((2, 3, 3)), stride=0)
    with pytest.raises(ValueError, match=r"^\[conv\]"):
        mx.conv1d(mx.ones((5, 3)), mx.ones((2, 3, 3)))


def test_conv_dtypes():
    x = mx.ones((1, 5, 3), mx.float16)
    assert mx.conv1d(x, mx.ones((2, 3, 3))).dtype == mx.float32
    assert mx.conv1d(x, mx.ones((2, 3, 3), mx.float16)).dtype == mx.float16
    assert mx.conv1d(mx.ones((1, 5, 3)), mx.ones((2, 3, 3), mx.int32)).dtype == mx.float32


CASES = [
    ("conv1d", dict(stride=2, padding=1, dilation=2, groups=2), (2, 9, 4), (6, 3, 2)),
    ("conv2d", dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (2, 7, 8, 4), (6, 3, 2, 4)),
    ("conv_general", dict(stride=(1, 2), padding=([1, 0], [2, 3]), kernel_dilation=(2, 1), input_dilation=(2, 1),
                          flip=True), (2, 7, 8, 4), (6, 3, 2, 4)),
    ("conv_general", dict(stride=(3, 2), padding=([3, 0], [0, 3])), (1, 7, 8, 2), (3, 3, 2, 2)),
    ("conv_transpose1d", dict(stride=2, padding=1, output_padding=1, dilation=2), (2, 9, 4), (5, 3, 4)),
    ("conv_transpose2d", dict(stride=(2, 3), padding=(1, 0)), (1, 4, 5, 3), (2, 3, 2, 3)),
    # MLX's test_torch_conv_3D_grad settings (stride 2, padding 1, dilation (3, 2, 2)) at a smaller size
    ("conv_transpose3d", dict(stride=2, padding=1, dilation=(3, 2, 2)), (2, 5, 4, 4, 3), (4, 3, 3, 3, 3)),
]


@pytest.mark.parametrize("name,kwargs,xs,ws", CASES)
def test_conv_forward_and_vjp_match_mlx(name, kwargs, xs, ws):
    mlx = pytest.importorskip("mlx.core")
    x, w = _randn(*xs), _randn(*ws)
    out = getattr(mx, name)(mx.array(x), mx.array(w), **kwargs)
    node = out  # the conv node, found before evaluation detaches the graph
    while node._prim != "conv_general":
        node = node._inputs[0]
    inputs, params = node._inputs, node._params
    ref = getattr(mlx, name)(mlx.array(x), mlx.array(w), **kwargs)
    np.testing.assert_allclose(np.array(out), np.array(ref), atol=1e-4)
    # The registry's vjp rule against MLX's vjp for the same cotangent.
    ct = _randn(*out.shape)
    dx, dw = REGISTRY["conv_general"].vjp(mx.array(ct), node, inputs, params)
    _, (rdx, rdw) = mlx.vjp(lambda a, b: getattr(mlx, name)(a, b, **kwargs), [mlx.array(x), mlx.array(w)],
                            [mlx.array(ct)])
    np.testing.assert_allclose(np.array(dx), np.array(rdx), atol=1e-4)
    np.testing.assert_allclose(np.array(dw), np.array(rdw), atol=1e-4)


def _finite_difference(f, x, eps=1e-3):
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f(x)
        flat[i] = old - eps
        lo = f(x)
        flat[i] = old
        g.reshape(-1)[i] = (hi - lo) / (2 * eps)
    return g


def test_conv_grad_matches_finite_differences():
    if not hasattr(mx, "grad"):
        pytest.skip("mx.grad not available yet")
    x = rng.standard_normal((1, 6, 2))
    w = rng.standard_normal((3, 3, 2))
    y = rng.standard_normal((1, 3, 3))

    def loss_np(xv, wv):
        return float(np.sum(_naive_conv1d(xv, wv, stride=2, padding=1) * y))

    def loss(xa, wa):
        return mx.sum(mx.conv1d(xa, wa, stride=2, padding=1) * mx.array(y.astype(np.float32)))

    gx, gw = mx.grad(loss, argnums=(0, 1))(mx.array(x.astype(np.float32)), mx.array(w.astype(np.float32)))
    np.testing.assert_allclose(np.array(gx), _finite_difference(lambda v: loss_np(v, w), x.copy()), atol=1e-3)
    np.testing.assert_allclose(np.array(gw), _finite_difference(lambda v: loss_np(x, v), w.copy()), atol=1e-3)


def test_sliding_windows_and_transpose_are_adjoint():
    from kiln.core.ops_conv import sliding_windows

    x = _randn(2, 7, 3)
    cols = sliding_windows(mx.array(x), kernel=(3,), strides=(2,))
    inputs, params = cols._inputs, cols._params
    assert cols.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(np.array(cols)[1, 2, :, 0], x[1, 4:7, 0])
    y = _randn(*cols.shape)
    (back,) = REGISTRY["sliding_windows"].vjp(mx.array(y), cols, inputs, params)
    np.testing.assert_allclose(np.sum(np.array(cols) * y), np.sum(x * np.array(back)), rtol=1e-5)


def test_conv_vmap_rule_folds_the_batch():
    x = _randn(3, 2, 6, 2)  # vmapped axis 0 over (N=2, L=6, C=2) inputs
    w = _randn(4, 3, 2)
    out, bdim = REGISTRY["conv_general"].vmap(
        (mx.array(x), mx.array(w)), (0, None),
        dict(strides=(1,), padding=((0, 0),), kernel_dilation=(1,), input_dilation=(1,), groups=1, flip=False))
    assert bdim == 0
    expected = np.stack([_naive_conv1d(x[i], w) for i in range(3)])
    np.testing.assert_allclose(np.array(out), expected, atol=1e-5)
