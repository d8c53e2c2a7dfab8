"""kiln.nn gaps closed against MLX: quantized layers and nn.quantize, Upsample, ConvTranspose3d,
checkpointed Transformer layers, average_gradients. Oracles: hand-written numpy, and real MLX when installed."""

import kiln.core as mx
import numpy as np
import pytest
from kiln import nn
from kiln.utils import tree_flatten, tree_unflatten

RNG = np.random.default_rng(7)


def _mlx():
    return pytest.importorskip("mlx.core"), pytest.importorskip("mlx.nn")


def _copy_params(src, dst, to_array):
    """Load the parameters of model ``src`` into ``dst`` (MLX <-> kiln) through numpy."""
    from mlx.utils import tree_flatten as mlx_flatten

    flat = mlx_flatten(src.parameters()) if "mlx" in type(src).__module__ else tree_flatten(src.parameters())
    dst.update(tree_unflatten([(name, to_array(np.array(value))) for name, value in flat]))


# -- numpy oracles ----------------------------------------------------------------------------------------
def _np_dequantize(words, scales, biases, group_size, bits):
    """Unpack little-endian bit streams of uint32 words and apply per-group scale and bias."""
    words = np.asarray(words, dtype=np.uint32)
    stream = (words[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    stream = stream.reshape(words.shape[:-1] + (-1, bits))
    codes = (stream * (1 << np.arange(bits, dtype=np.uint32))).sum(-1).astype(np.float32)
    groups = codes.reshape(codes.shape[:-1] + (-1, group_size))
    values = groups * np.asarray(scales)[..., None] + np.asarray(biases)[..., None]
    return values.reshape(codes.shape)


def _np_linear_1d(x, axis, out_size, align_corners):
    """Textbook linear resampling along one axis (half-pixel centres, or corners aligned)."""
    n = x.shape[axis]
    i = np.arange(out_size, dtype=np.float64)
    if align_corners:
        pos = i * (n - 1) / max(out_size - 1, 1)
    else:
        pos = (i + 0.5) * n / out_size - 0.5
    pos = np.clip(pos, 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    t = pos - lo
    shape = [1] * x.ndim
    shape[axis] = -1
    t = t.reshape(shape)
    return np.take(x, lo, axis) * (1 - t) + np.take(x, hi, axis) * t


# -- QuantizedLinear / QuantizedEmbedding / quantize ---------------------------------------------------------
def test_quantized_linear_matches_dequantized_numpy():
    lin = nn.Linear(64, 8)
    qlin = nn.QuantizedLinear.from_linear(lin, group_size=32, bits=4)
    assert qlin.weight.dtype == mx.uint32
    assert qlin.weight.shape == (8, 64 * 4 // 32)
    assert qlin.scales.shape == (8, 2)
    w = _np_dequantize(qlin.weight, qlin.scales, qlin.biases, 32, 4)
    # affine 4-bit codes are within one step of the original weights (half a step, plus the edge anchoring)
    step = np.repeat(np.abs(np.array(qlin.scales)), 32, axis=1)
    assert np.all(np.abs(w - np.array(lin.weight)) <= step + 1e-6)
    x = RNG.standard_normal((3, 5, 64)).astype(np.float32)
    expected = x @ w.T + np.array(lin.bias)
    np.testing.assert_allclose(np.array(qlin(mx.array(x))), expected, rtol=1e-4, atol=1e-4)


def test_quantized_linear_frozen_and_repr():
    qlin = nn.QuantizedLinear(128, 16, bias=True, group_size=64, bits=8)
    assert dict(tree_flatten(qlin.trainable_parameters())) == {}
    assert sorted(k for k, _ in tree_flatten(qlin.parameters())) == ["bias", "biases", "scales", "weight"]
    assert repr(qlin) == "QuantizedLinear(input_dims=128, output_dims=16, bias=True, group_size=64, bits=8, mode=affine)"
    no_bias = nn.QuantizedLinear(64, 4, bias=False)
    assert "bias" not in no_bias
    assert (no_bias.group_size, no_bias.bits) == (64, 4)


def test_quantized_layer_bad_mode_and_bits():
    with pytest.raises(ValueError, match="Invalid quantization mode"):
        nn.QuantizedLinear(64, 4, mode="int4")
    with pytest.raises(ValueError, match=r"^\[quantize\]"):
        nn.QuantizedLinear(64, 4, bits=7)


def test_quantized_embedding_lookup_and_as_linear():
    emb = nn.Embedding(10, 64)
    qemb = nn.QuantizedEmbedding.from_embedding(emb, group_size=32, bits=8)
    table = _np_dequantize(qemb.weight, qemb.scales, qemb.biases, 32, 8)
    np.testing.assert_allclose(table, np.array(emb.weight), atol=float(np.abs(np.array(qemb.scales)).max()))
    idx = np.array([[1, 9, 0], [3, 3, 2]])
    np.testing.assert_allclose(np.array(qemb(mx.array(idx))), table[idx], rtol=1e-6, atol=1e-6)
    x = RNG.standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_allclose(np.array(qemb.as_linear(mx.array(x))), x @ table.T, rtol=1e-4, atol=1e-4)
    assert repr(qemb) == "QuantizedEmbedding(10, 64, group_size=32, bits=8, mode=affine)"
    assert dict(tree_flatten(qemb.trainable_parameters())) == {}


def test_quantize_model_default_and_predicate():
    model = nn.Sequential(nn.Embedding(16, 64), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))
    nn.quantize(model, group_size=32, bits=2)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["QuantizedEmbedding", "QuantizedLinear", "ReLU", "QuantizedLinear"]
    assert all(layer.bits == 2 for layer in model.layers if hasattr(layer, "bits"))

    model = nn.Sequential(nn.Linear(128, 128), nn.Linear(128, 128))
    nn.quantize(model, class_predicate=lambda path, m: path == "layers.1" and {"group_size": 128, "bits": 8})
    assert isinstance(model.layers[0], nn.Linear)
    assert (model.layers[1].group_size, model.layers[1].bits) == (128, 8)
    out = model(mx.ones((2, 128)))
    assert out.shape == (2, 128)


def test_quantize_model_errors():
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(ValueError, match="Unable to quantize"):
        nn.quantize(model, class_predicate=lambda p, m: True)
    model = nn.Sequential(nn.Linear(64, 64))
    with pytest.raises(ValueError, match="class_predicate"):
        nn.quantize(model, class_predicate=lambda p, m: "yes")


def test_quantized_layers_bit_identical_to_mlx():
    mlx_core, mlx_nn = _mlx()
    for group_size, bits in ((32, 3), (64, 4), (128, 8), (64, 6)):
        weight = RNG.standard_normal((16, 128)).astype(np.float32)
        bias = RNG.standard_normal(16).astype(np.float32)
        ref = mlx_nn.Linear(128, 16)
        ref.update({"weight": mlx_core.array(weight), "bias": mlx_core.array(bias)})
        ours = nn.Linear(128, 16)
        ours.update({"weight": mx.array(weight), "bias": mx.array(bias)})
        ref_q = ref.to_quantized(group_size=group_size, bits=bits)
        ours_q = ours.to_quantized(group_size=group_size, bits=bits)
        for name in ("weight", "scales", "biases", "bias"):
            assert np.array_equal(np.array(ref_q[name]), np.array(ours_q[name])), (group_size, bits, name)
        x = RNG.standard_normal((4, 128)).astype(np.float32)
        np.testing.assert_allclose(np.array(ours_q(mx.array(x))), np.array(ref_q(mlx_core.array(x))),
                                   rtol=1e-5, atol=1e-4)
        assert repr(ours_q) == repr(ref_q)
        trainable = sorted(k for k, _ in tree_flatten(ours_q.trainable_parameters()))
        assert trainable == ["bias"]


def test_quantized_embedding_bit_identical_to_mlx():
    mlx_core, mlx_nn = _mlx()
    table = RNG.standard_normal((20, 64)).astype(np.float32)
    ref = mlx_nn.Embedding(20, 64)
    ref.update({"weight": mlx_core.array(table)})
    ours = nn.Embedding(20, 64)
    ours.update({"weight": mx.array(table)})
    ref_q, ours_q = ref.to_quantized(), ours.to_quantized()
    idx = np.array([[0, 19, 5], [5, 5, 1]])
    assert np.array_equal(np.array(ours_q(mx.array(idx))), np.array(ref_q(mlx_core.array(idx))))
    for name in ("weight", "scales", "biases"):
        assert np.array_equal(np.array(ref_q[name]), np.array(ours_q[name]))


def test_quantize_model_matches_mlx():
    mlx_core, mlx_nn = _mlx()
    ref = mlx_nn.Sequential(mlx_nn.Linear(64, 128), mlx_nn.GELU(), mlx_nn.Linear(128, 32))
    ours = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32))
    _copy_params(ref, ours, mx.array)
    mlx_nn.quantize(ref, group_size=32, bits=5)
    nn.quantize(ours, group_size=32, bits=5)
    from mlx.utils import tree_flatten as mlx_flatten

    ref_flat = dict(mlx_flatten(ref.parameters()))
    ours_flat = dict(tree_flatten(ours.parameters()))
    assert sorted(ref_flat) == sorted(ours_flat)
    for name, value in ref_flat.items():
        assert np.array_equal(np.array(value), np.array(ours_flat[name])), name
    x = RNG.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(np.array(ours(mx.array(x))), np.array(ref(mlx_core.array(x))), rtol=1e-4, atol=1e-4)


# -- Upsample -------------------------------------------------------------------------------------------------
def test_upsample_nearest_integer_keeps_dtype():
    x = np.arange(1, 5, dtype=np.int32).reshape(1, 2, 2, 1)
    out = nn.Upsample(scale_factor=2, mode="nearest")(mx.array(x))
    assert out.dtype == mx.int32
    expected = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    np.testing.assert_array_equal(np.array(out)[0, :, :, 0], expected)


def test_upsample_nearest_fractional():
    x = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    # shrinking picks floor(i * N / M); growing rounds cell centres (i + 0.5) * N / M - 0.5, ties to even:
    # centres -0.17, 0.5, 1.17, 1.83, 2.5, 3.17 -> 0, 0, 1, 2, 2, 3
    np.testing.assert_array_equal(np.array(nn.Upsample(0.5)(mx.array(x))).ravel(), [0, 2])
    np.testing.assert_array_equal(np.array(nn.Upsample(1.5)(mx.array(x))).ravel(), [0, 0, 1, 2, 2, 3])


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("scale", [2, (1.5, 3), (0.5, 2)])
def test_upsample_linear_matches_numpy(align_corners, scale):
    x = RNG.standard_normal((2, 4, 6, 3)).astype(np.float32)
    scales = scale if isinstance(scale, tuple) else (scale, scale)
    expected = x.astype(np.float64)
    for axis, s in enumerate(scales, start=1):
        expected = _np_linear_1d(expected, axis, int(s * x.shape[axis]), align_corners)
    out = nn.Upsample(scale, mode="linear", align_corners=align_corners)(mx.array(x))
    np.testing.assert_allclose(np.array(out), expected, rtol=1e-5, atol=1e-5)


def test_upsample_linear_docstring_values():
    x = mx.arange(1, 5).reshape((1, 2, 2, 1))
    out = nn.Upsample(scale_factor=2, mode="linear")(x)
    assert out.dtype == mx.float32
    expected = [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]]
    np.testing.assert_allclose(np.array(out)[0, :, :, 0], expected, rtol=1e-6)
    out = nn.Upsample(scale_factor=2, mode="linear", align_corners=True)(x)
    expected = np.array([[3, 4, 5, 6], [5, 6, 7, 8], [7, 8, 9, 10], [9, 10, 11, 12]]) / 3
    np.testing.assert_allclose(np.array(out)[0, :, :, 0], expected, rtol=1e-5)


def _np_cubic_1d(x, out_size, align_corners):
    """Textbook 1-D bicubic (Keys kernel, a = -0.75), border samples repeated."""
    n = x.shape[1]
    i = np.arange(out_size, dtype=np.float64)
    pos = i * (n - 1) / max(out_size - 1, 1) if align_corners else (i + 0.5) * n / out_size - 0.5

    def keys(d):
        a = -0.75
        d = np.abs(d)
        near = (a + 2) * d**3 - (a + 3) * d**2 + 1
        far = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
        return np.where(d <= 1, near, np.where(d < 2, far, 0.0))

    base = np.floor(pos).astype(int)
    out = np.zeros((x.shape[0], out_size, x.shape[2]))
    for k in (-1, 0, 1, 2):
        tap = base + k
        out += np.take(x, np.clip(tap, 0, n - 1), axis=1) * keys(pos - tap)[None, :, None]
    return out


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("scale", [2, 2.5, 0.5])
def test_upsample_cubic_matches_numpy(align_corners, scale):
    x = RNG.standard_normal((2, 6, 3)).astype(np.float32)
    out = nn.Upsample(scale, mode="cubic", align_corners=align_corners)(mx.array(x))
    expected = _np_cubic_1d(x.astype(np.float64), int(scale * 6), align_corners)
    np.testing.assert_allclose(np.array(out), expected, rtol=1e-5, atol=1e-5)
    # the kernel's weights sum to one, so constant signals are reproduced
    flat = nn.Upsample(scale, mode="cubic", align_corners=align_corners)(mx.full((1, 6, 1), 2.5))
    np.testing.assert_allclose(np.array(flat), 2.5, rtol=1e-6)


def test_upsample_errors():
    with pytest.raises(ValueError, match=r"^\[Upsample\]"):
        nn.Upsample(2, mode="area")
    with pytest.raises(ValueError, match=r"^\[Upsample\]"):
        nn.Upsample(2, mode="nearest", antialias=True)
    with pytest.raises(ValueError, match=r"^\[Upsample\]"):
        nn.Upsample(2, mode="linear", align_corners=True, antialias=True)
    with pytest.raises(ValueError, match=r"^\[Upsample\]"):
        nn.Upsample(2)(mx.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^\[Upsample\]"):
        nn.Upsample((2, 2, 2))(mx.ones((1, 3, 3, 1)))


def test_upsample_matches_mlx():
    mlx_core, mlx_nn = _mlx()
    cases = [("nearest", False, False), ("linear", False, False), ("linear", True, False),
             ("linear", False, True), ("cubic", False, False), ("cubic", True, False), ("cubic", False, True)]
    for mode, align_corners, antialias in cases:
        for scale in (2, 0.5, (1.5, 3), (0.7, 1.3)):
            x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
            ref = mlx_nn.Upsample(scale, mode, align_corners, antialias)(mlx_core.array(x))
            out = nn.Upsample(scale, mode, align_corners, antialias)(mx.array(x))
            assert out.shape == tuple(ref.shape)
            np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-5, atol=1e-5,
                                       err_msg=f"{mode} {align_corners} {antialias} {scale}")
    assert repr(nn.Upsample((2, 3), "cubic", antialias=True)) == repr(mlx_nn.Upsample((2, 3), "cubic", antialias=True))


# -- ConvTranspose3d ----------------------------------------------------------------------------------------
def test_conv_transpose3d_scatter_numpy():
    layer = nn.ConvTranspose3d(2, 3, kernel_size=2, stride=2)
    x = RNG.standard_normal((1, 2, 3, 2, 2)).astype(np.float32)
    w = np.array(layer.weight)  # (C_out, kd, kh, kw, C_in)
    assert w.shape == (3, 2, 2, 2, 2)
    # stride == kernel: every input voxel writes its own non-overlapping 2x2x2 block
    expected = np.einsum("ndhwi,okabi->ndkhawbo", x, w).reshape(1, 4, 6, 4, 3) + np.array(layer.bias)
    np.testing.assert_allclose(np.array(layer(mx.array(x))), expected, rtol=1e-5, atol=1e-5)
    assert repr(layer) == ("ConvTranspose3d(2, 3, kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 0, 0), "
                           "dilation=1, output_padding=(0, 0, 0), bias=True)")


def test_conv_transpose3d_matches_mlx():
    mlx_core, mlx_nn = _mlx()
    args = {"stride": (2, 1, 2), "padding": 1, "output_padding": (1, 0, 1)}
    ref = mlx_nn.ConvTranspose3d(4, 6, (2, 3, 2), **args)
    ours = nn.ConvTranspose3d(4, 6, (2, 3, 2), **args)
    _copy_params(ref, ours, mx.array)
    x = RNG.standard_normal((2, 3, 4, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(np.array(ours(mx.array(x))), np.array(ref(mlx_core.array(x))), rtol=1e-5, atol=1e-5)
    assert repr(ours) == repr(ref)


# -- checkpointed Transformer -----------------------------------------------------------------------------
def _count_layer_calls(stack):
    calls = []
    for layer in stack.layers:
        original = type(layer).__call__

        def counting(self, *args, _original=original, **kwargs):
            calls.append(1)
            return _original(self, *args, **kwargs)

        layer.__class__ = type("Counting" + type(layer).__name__, (type(layer),), {"__call__": counting})
    return calls


def _transformer_grads(checkpoint: bool, weights=None):
    mx.random.seed(3)
    model = nn.Transformer(dims=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=1, mlp_dims=32,
                           checkpoint=checkpoint)
    if weights is not None:
        model.update(weights)
    src = mx.array(np.linspace(-1, 1, 2 * 5 * 16, dtype=np.float32).reshape(2, 5, 16))
    tgt = mx.array(np.linspace(1, -1, 2 * 4 * 16, dtype=np.float32).reshape(2, 4, 16))
    mask = nn.MultiHeadAttention.create_additive_causal_mask(4)

    def loss():
        return (model(src, tgt, None, mask, None) ** 2).sum()

    enc_calls = _count_layer_calls(model.encoder)
    value, grads = nn.value_and_grad(model, loss)()
    mx.eval(value, grads)
    return model, value, grads, len(enc_calls)


def test_transformer_checkpoint_same_gradients_and_recomputes():
    plain, value, grads, plain_calls = _transformer_grads(False)
    _, value_ck, grads_ck, ck_calls = _transformer_grads(True, plain.parameters())
    np.testing.assert_allclose(float(value_ck), float(value), rtol=1e-6)
    flat, flat_ck = dict(tree_flatten(grads)), dict(tree_flatten(grads_ck))
    assert sorted(flat) == sorted(flat_ck)
    for name, value in flat.items():
        np.testing.assert_allclose(np.array(flat_ck[name]), np.array(value), rtol=1e-4, atol=1e-5)
    # two encoder layers: run once each without checkpointing, and again in the backward pass with it
    assert plain_calls == 2
    assert ck_calls == 4


def test_checkpoint_keeps_module_parameters():
    layer = nn.Linear(4, 3)
    before = {k: v for k, v in tree_flatten(layer.parameters())}
    fn = nn.utils.checkpoint(layer)

    def loss(params, x):
        layer.update(params)
        return fn(x).sum()

    x = mx.array(np.ones((2, 4), np.float32))
    grads = mx.grad(loss)(layer.trainable_parameters(), x)
    np.testing.assert_allclose(np.array(grads["weight"]), np.full((3, 4), 2.0), rtol=1e-6)
    np.testing.assert_allclose(np.array(grads["bias"]), np.full((3,), 2.0), rtol=1e-6)
    after = dict(tree_flatten(layer.parameters()))
    for name, value in before.items():
        np.testing.assert_array_equal(np.array(after[name]), np.array(value))


def test_transformer_checkpoint_matches_mlx():
    mlx_core, mlx_nn = _mlx()
    from mlx.utils import tree_flatten as mlx_flatten

    ref = mlx_nn.Transformer(16, 2, 1, 1, 32, checkpoint=True)
    ours = nn.Transformer(16, 2, 1, 1, 32, checkpoint=True)
    _copy_params(ref, ours, mx.array)
    src = RNG.standard_normal((2, 5, 16)).astype(np.float32)
    tgt = RNG.standard_normal((2, 3, 16)).astype(np.float32)
    _, ref_grads = mlx_nn.value_and_grad(ref, lambda: ref(mlx_core.array(src), mlx_core.array(tgt),
                                                           None, None, None).sum())()
    _, our_grads = nn.value_and_grad(ours, lambda: ours(mx.array(src), mx.array(tgt), None, None, None).sum())()
    ref_flat, our_flat = dict(mlx_flatten(ref_grads)), dict(tree_flatten(our_grads))
    assert sorted(ref_flat) == sorted(our_flat)
    for name, value in ref_flat.items():
        np.testing.assert_allclose(np.array(our_flat[name]), np.array(value), rtol=1e-3, atol=1e-4, err_msg=name)


# -- average_gradients --------------------------------------------------------------------------------------
def test_average_gradients_single_process():
    grads = {"w": mx.array([1.0, 2.0]), "layers": [{"b": mx.array(3.0)}]}
    assert nn.average_gradients(grads) is grads  # across processes: tests/test_distributed.py
