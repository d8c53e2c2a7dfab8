"""kiln.nn: the Module tree API, layers against hand-written numpy and real MLX with the same weights,
initialisation against MLX for the same seed, and nn.value_and_grad."""

import kiln.core as mx
import numpy as np
import pytest
from kiln import nn
from kiln.utils import tree_flatten

rng = np.random.default_rng(0)


def _randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _np(a):
    return np.array(a)


# -- Module ----------------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.layers = [nn.Linear(4, 4), nn.ReLU()]
        self.extra = {"scale": mx.ones((4,))}
        self._hidden = mx.zeros((2,))
        self.name = "block"

    def __call__(self, x):
        x = self.linear(x)
        for layer in self.layers:
            x = layer(x)
        return x * self.extra["scale"]


def test_module_is_a_tree_of_its_parameters():
    m = Block()
    flat = dict(tree_flatten(m.parameters()))
    assert sorted(flat) == ["extra.scale", "layers.0.bias", "layers.0.weight", "linear.bias", "linear.weight"]
    assert m.name == "block" and "name" not in m
    assert m.state is m
    assert isinstance(m.children()["linear"], nn.Linear)
    assert [type(x).__name__ for x in m.children()["layers"]] == ["Linear", "ReLU"]
    leaves = tree_flatten(m.leaf_modules(), is_leaf=nn.Module.is_module)
    assert sorted(k for k, _ in leaves) == ["layers.0", "layers.1", "linear"]
    names = [k for k, _ in m.named_modules()]
    assert names[0] == "" and set(names) == {"", "linear", "layers.0", "layers.1"}
    assert len(m.modules()) == 4

    with pytest.raises(AttributeError):
        _ = m.missing


def test_tree_flatten_into_a_dict_or_a_list():
    tree = {"w": [mx.zeros((2,)), {"b": 3}], "s": 1.5}
    flat = tree_flatten(tree, destination={})
    assert list(flat) == ["w.0", "w.1.b", "s"]
    assert flat["w.1.b"] == 3 and flat["s"] == 1.5
    pairs = [("seed", 0)]
    assert tree_flatten(tree, destination=pairs) is pairs
    assert [k for k, _ in pairs] == ["seed", "w.0", "w.1.b", "s"]
    with pytest.raises(ValueError, match="Destination"):
        tree_flatten(tree, destination=(1, 2))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_additive_causal_mask_uses_the_dtypes_lowest_finite(dtype):
    mask = nn.MultiHeadAttention.create_additive_causal_mask(4, getattr(mx, dtype))
    lowest = np.finfo(np.float32 if dtype != "float16" else np.float16).min
    if dtype == "bfloat16":
        lowest = -3.3895313892515355e38  # bfloat16's largest finite magnitude (0x7F7F)
    expected = np.triu(np.full((4, 4), lowest, np.float32), 1)
    np.testing.assert_array_equal(np.array(mask.astype(mx.float32)), expected)


def test_freeze_unfreeze_and_trainable_parameters():
    m = Block()
    m.freeze(keys="bias")
    flat = dict(tree_flatten(m.trainable_parameters()))
    assert "linear.bias" not in flat and "linear.weight" in flat and "layers.0.bias" not in flat
    m.unfreeze()
    assert "linear.bias" in dict(tree_flatten(m.trainable_parameters()))
    m.freeze()
    assert tree_flatten(m.trainable_parameters()) == [] or all(
        not isinstance(v, mx.array) for _, v in tree_flatten(m.trainable_parameters()))
    m.unfreeze(keys=["weight"], recurse=True)
    assert sorted(k for k, v in tree_flatten(m.trainable_parameters()) if isinstance(v, mx.array)) == [
        "layers.0.weight", "linear.weight"]
    with pytest.raises(KeyError):
        m.freeze(keys="nope", strict=True)


def test_update_apply_and_update_modules():
    m = Block()
    new_w = mx.zeros((4, 3))
    m.update({"linear": {"weight": new_w}})
    assert m.linear.weight is new_w
    with pytest.raises(ValueError, match="does not have parameter"):
        m.update({"nope": mx.zeros((1,))})
    with pytest.raises(ValueError, match="Received invalid type"):
        m.update({"linear": {"weight": 3}})
    m.update({"nope": mx.zeros((1,))}, strict=False)
    m.apply(lambda x: x.astype(mx.float16))
    assert m.linear.weight.dtype == mx.float16 and m._hidden.dtype == mx.float32
    m.update_modules({"layers": [nn.Identity(), {}]})
    assert isinstance(m.layers[0], nn.Identity) and isinstance(m.layers[1], nn.ReLU)


def test_train_eval_and_repr():
    m = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    assert m.training and m.layers[1].training
    m.eval()
    assert not m.training and not m.layers[1].training
    x = mx.ones((4, 3))
    assert _np(m.layers[1](x)).tolist() == _np(x).tolist()
    m.train()
    assert m.layers[1].training
    text = repr(m)
    assert text.startswith("Sequential(\n  (layers.0): Linear(input_dims=2, output_dims=3, bias=True)")
    assert "(layers.1): Dropout(p=0.5)" in text


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_and_load_weights(tmp_path, suffix):
    a = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    b = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    path = str(tmp_path / f"w{suffix}")
    a.save_weights(path)
    b.load_weights(path)
    for (ka, va), (kb, vb) in zip(tree_flatten(a.parameters()), tree_flatten(b.parameters())):
        assert ka == kb
        np.testing.assert_array_equal(_np(va), _np(vb))


def test_load_weights_strict_checks():
    m = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="Missing 1 parameters"):
        m.load_weights([("weight", mx.zeros((2, 3)))])
    with pytest.raises(ValueError, match="not in model"):
        m.load_weights([("weight", mx.zeros((2, 3))), ("bias", mx.zeros((2,))), ("x", mx.zeros((1,)))])
    with pytest.raises(ValueError, match="Expected shape"):
        m.load_weights([("weight", mx.zeros((3, 3))), ("bias", mx.zeros((2,)))])
    m.load_weights([("weight", mx.zeros((2, 3)))], strict=False)
    assert _np(m.weight).sum() == 0


# -- layers against numpy ------------------------------------------------------------------------------------
def test_linear_bilinear_embedding():
    lin = nn.Linear(3, 2)
    x = _randn(5, 3)
    np.testing.assert_allclose(_np(lin(mx.array(x))), x @ _np(lin.weight).T + _np(lin.bias), rtol=1e-5, atol=1e-6)
    assert "bias" not in nn.Linear(3, 2, bias=False)
    bil = nn.Bilinear(3, 4, 2)
    x1, x2 = _randn(5, 3), _randn(5, 4)
    expected = np.einsum("bi,oji,bj->bo", x1, _np(bil.weight), x2) + _np(bil.bias)
    np.testing.assert_allclose(_np(bil(mx.array(x1), mx.array(x2))), expected, rtol=1e-4, atol=1e-5)
    emb = nn.Embedding(10, 4)
    idx = np.array([[1, 9], [0, 3]])
    out = emb(mx.array(idx))
    np.testing.assert_array_equal(_np(out), _np(emb.weight)[idx])
    np.testing.assert_allclose(_np(emb.as_linear(mx.array(x[:, :1].repeat(4, 1)))),
                               x[:, :1].repeat(4, 1) @ _np(emb.weight).T, rtol=1e-5)


def test_normalization_layers():
    x = _randn(2, 3, 4, 6)
    ln = nn.LayerNorm(6)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(_np(ln(mx.array(x))), (x - mu) / np.sqrt(var + 1e-5), atol=1e-5)
    rms = nn.RMSNorm(6)
    np.testing.assert_allclose(_np(rms(mx.array(x))), x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5), atol=1e-5)
    inst = nn.InstanceNorm(6)
    m, v = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(_np(inst(mx.array(x))), (x - m) / np.sqrt(v + 1e-5), atol=1e-5)
    # GroupNorm (MLX's default grouping: channel c in group c % groups; PyTorch's: contiguous blocks).
    gn = nn.GroupNorm(2, 6)
    g = x.reshape(2, -1, 2)
    expect = ((g - g.mean(1, keepdims=True)) / np.sqrt(g.var(1, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(_np(gn(mx.array(x))), expect, atol=1e-5)
    gp = nn.GroupNorm(2, 6, pytorch_compatible=True)
    blocks = x.reshape(2, 12, 2, 3).transpose(0, 2, 1, 3).reshape(2, 2, -1)
    nb = (blocks - blocks.mean(-1, keepdims=True)) / np.sqrt(blocks.var(-1, keepdims=True) + 1e-5)
    expect = nb.reshape(2, 2, 12, 3).transpose(0, 2, 1, 3).reshape(x.shape)
    np.testing.assert_allclose(_np(gp(mx.array(x))), expect, atol=1e-5)


def test_batchnorm_training_running_stats_and_eval():
    bn = nn.BatchNorm(3, momentum=0.1)
    assert "running_mean" not in dict(tree_flatten(bn.trainable_parameters()))
    bn.unfreeze()
    assert "running_mean" not in dict(tree_flatten(bn.trainable_parameters()))
    x = _randn(8, 3)
    out = bn(mx.array(x))
    np.testing.assert_allclose(_np(out), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), atol=1e-5)
    np.testing.assert_allclose(_np(bn.running_mean), 0.1 * x.mean(0), atol=1e-6)
    np.testing.assert_allclose(_np(bn.running_var), 0.9 + 0.1 * x.var(0, ddof=1), atol=1e-6)
    bn.eval()
    rm, rv = _np(bn.running_mean), _np(bn.running_var)
    np.testing.assert_allclose(_np(bn(mx.array(x))), (x - rm) / np.sqrt(rv + 1e-5), atol=1e-5)
    with pytest.raises(ValueError, match="2, 3 or 4 dimensions"):
        bn(mx.ones((3,)))


def test_conv_and_pool_layers():
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
    assert conv.weight.shape == (6, 3, 2)
    x = _randn(2, 9, 4)
    y = conv(mx.array(x))
    assert y.shape == (2, 5, 6)
    conv2 = nn.Conv2d(2, 3, (2, 3), padding=1)
    assert conv2(mx.ones((1, 5, 5, 2))).shape == (1, 6, 5, 3)
    x2 = _randn(1, 4, 6, 2)
    mp = nn.MaxPool2d(2)
    np.testing.assert_array_equal(_np(mp(mx.array(x2))), x2.reshape(1, 2, 2, 3, 2, 2).max((2, 4)))
    ap = nn.AvgPool2d((2, 3), stride=(2, 3))
    np.testing.assert_allclose(_np(ap(mx.array(x2))), x2.reshape(1, 2, 2, 2, 3, 2).mean((2, 4)), atol=1e-6)
    x1 = _randn(1, 5, 2)
    padded = np.pad(x1, ((0, 0), (1, 1), (0, 0)), constant_values=-np.inf)
    expected = np.stack([padded[:, i:i + 3].max(1) for i in range(0, 5, 2)], 1)
    np.testing.assert_array_equal(_np(nn.MaxPool1d(3, stride=2, padding=1)(mx.array(x1))), expected)
    with pytest.raises(ValueError, match="must be positive"):
        nn.MaxPool1d(0)


def test_pooling_gradients():
    x = np.array([[[1.0], [3.0], [2.0], [5.0]]], np.float32)
    g = mx.grad(lambda a: mx.sum(nn.MaxPool1d(2)(a)))(mx.array(x))
    np.testing.assert_array_equal(_np(g).ravel(), [0, 1, 0, 1])
    g = mx.grad(lambda a: mx.sum(nn.AvgPool1d(2, stride=1)(a)))(mx.array(x))
    np.testing.assert_allclose(_np(g).ravel(), [0.5, 1, 1, 0.5])


def test_dropout_masks_and_scales():
    mx.random.seed(0)
    x = mx.ones((1000,))
    out = _np(nn.Dropout(0.25)(x))
    kept = out[out != 0]
    np.testing.assert_allclose(kept, np.full_like(kept, 1 / 0.75), rtol=1e-6)
    assert 0.15 < (out == 0).mean() < 0.35
    d2 = nn.Dropout2d(0.5)(mx.ones((2, 4, 4, 8)))
    per_channel = _np(d2).reshape(2, 16, 8)
    assert np.all(per_channel.min(1) == per_channel.max(1))  # whole channels are kept or dropped
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_recurrent_layers_against_numpy():
    x = _randn(2, 4, 3)
    rnn = nn.RNN(3, 5)
    h = np.zeros((2, 5))
    hs = []
    for t in range(4):
        h = np.tanh(x[:, t] @ _np(rnn.Wxh).T + _np(rnn.bias) + h @ _np(rnn.Whh).T)
        hs.append(h)
    np.testing.assert_allclose(_np(rnn(mx.array(x))), np.stack(hs, 1), atol=1e-5)

    lstm = nn.LSTM(3, 5)
    h = c = np.zeros((2, 5))
    hs, cs = [], []
    for t in range(4):
        gates = x[:, t] @ _np(lstm.Wx).T + _np(lstm.bias) + h @ _np(lstm.Wh).T
        i, f, gg, o = np.split(gates, 4, -1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(gg)
        h = _sigmoid(o) * np.tanh(c)
        hs.append(h)
        cs.append(c)
    out_h, out_c = lstm(mx.array(x))
    np.testing.assert_allclose(_np(out_h), np.stack(hs, 1), atol=1e-5)
    np.testing.assert_allclose(_np(out_c), np.stack(cs, 1), atol=1e-5)

    gru = nn.GRU(3, 5)
    h = None
    hs = []
    wx, wh, b, bhn = _np(gru.Wx), _np(gru.Wh), _np(gru.b), _np(gru.bhn)
    for t in range(4):
        xt = x[:, t] @ wx.T + b
        x_rz, x_n = xt[:, :10], xt[:, 10:]
        if h is None:
            r, z = np.split(_sigmoid(x_rz), 2, -1)
            h = (1 - z) * np.tanh(x_n + r * bhn)
        else:
            hp = h @ wh.T
            r, z = np.split(_sigmoid(x_rz + hp[:, :10]), 2, -1)
            n = np.tanh(x_n + r * (hp[:, 10:] + bhn))
            h = (1 - z) * n + z * h
        hs.append(h)
    np.testing.assert_allclose(_np(gru(mx.array(x))), np.stack(hs, 1), atol=1e-5)


def _rope_numpy(x, dims, base, scale, offset):
    half = dims // 2
    pos = (np.arange(x.shape[-2]) + offset)[:, None] * scale * (base ** (-np.arange(half) / half))[None]
    x1, x2 = x[..., :half], x[..., half:dims]
    rotated = [x1 * np.cos(pos) - x2 * np.sin(pos), x1 * np.sin(pos) + x2 * np.cos(pos)]
    return np.concatenate([*rotated, x[..., dims:]], -1)


def test_rope_tables_shared_between_calls_belong_to_their_arguments():
    # Eager RoPE reuses the last cos/sin table when the next call asks for the same one (a decode step's queries
    # and keys); each call must still rotate by its own positions, frequencies and scale.
    calls = [(4, 10000.0, 1.0, 3), (4, 10000.0, 1.0, 3), (4, 10000.0, 1.0, 4), (4, 500.0, 1.0, 4), (4, 500.0, 0.5, 4),
             (6, 500.0, 0.5, 4), (4, 10000.0, 1.0, 3), (4, 10000, 1, 3), (4, 10000.0, 0.0, 2), (4, 10000.0, -0.0, 2)]
    for length in (1, 3):
        for dims, base, scale, offset in calls:
            x = _randn(1, 2, length, 6)
            out = _np(nn.RoPE(dims, base=base, scale=scale)(mx.array(x), offset=offset))
            np.testing.assert_allclose(out, _rope_numpy(x, dims, base, scale, offset), atol=1e-5)
    x = _randn(1, 2, 2, 6)  # the last call's arguments at another length
    np.testing.assert_allclose(_np(nn.RoPE(4, base=10000.0, scale=-0.0)(mx.array(x), offset=2)),
                               _rope_numpy(x, 4, 10000.0, 0.0, 2),
                               atol=1e-5)


def test_attention_rope_alibi_against_numpy():
    mha = nn.MultiHeadAttention(8, 2)
    q, k = _randn(2, 3, 8), _randn(2, 5, 8)
    mask = _randn(3, 5)
    out = mha(mx.array(q), mx.array(k), mx.array(k), mask=mx.array(mask))

    def proj(a, lin):
        return (a @ _np(lin.weight).T).reshape(a.shape[0], a.shape[1], 2, 4).transpose(0, 2, 1, 3)

    qh, kh, vh = proj(q, mha.query_proj), proj(k, mha.key_proj), proj(k, mha.value_proj)
    scores = qh @ kh.transpose(0, 1, 3, 2) / 2.0 + mask
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = (w @ vh).transpose(0, 2, 1, 3).reshape(2, 3, 8) @ _np(mha.out_proj.weight).T
    np.testing.assert_allclose(_np(out), o, atol=1e-5)
    causal = _np(nn.MultiHeadAttention.create_additive_causal_mask(3))
    assert causal[0, 1] < -1e30 and causal[1, 0] == 0 and causal[1, 1] == 0

    x = _randn(1, 2, 4, 6)
    out = _np(nn.RoPE(4)(mx.array(x), offset=1))
    pos = np.arange(1, 5)[:, None] * (10000.0 ** (-np.arange(2) / 2))[None]
    x1, x2 = x[..., :2], x[..., 2:4]
    rotated = [x1 * np.cos(pos) - x2 * np.sin(pos), x1 * np.sin(pos) + x2 * np.cos(pos)]
    expected = np.concatenate([*rotated, x[..., 4:]], -1)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    out = _np(nn.RoPE(4, traditional=True)(mx.array(x)))
    pos = np.arange(4)[:, None] * (10000.0 ** (-np.arange(2) / 2))[None]
    a, b = x[..., 0:4:2], x[..., 1:4:2]
    rot = np.stack([a * np.cos(pos) - b * np.sin(pos), a * np.sin(pos) + b * np.cos(pos)], -1).reshape(1, 2, 4, 4)
    np.testing.assert_allclose(out, np.concatenate([rot, x[..., 4:]], -1), atol=1e-5)

    scores = mx.zeros((1, 4, 3, 3))
    biased = _np(nn.ALiBi()(scores))
    slopes = np.array([2 ** (-2.0), 2 ** (-4.0), 2 ** (-6.0), 2 ** (-8.0)])
    dist = -np.abs(np.arange(3)[:, None] - np.arange(3)[None])
    np.testing.assert_allclose(biased[0], slopes[:, None, None] * dist, atol=1e-6)


def test_transformer_shapes_and_modes():
    model = nn.Transformer(dims=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, mlp_dims=16)
    src, tgt = mx.array(_randn(2, 5, 8)), mx.array(_randn(2, 3, 8))
    mask = nn.MultiHeadAttention.create_additive_causal_mask(3)
    assert model(src, tgt, None, mask, None).shape == (2, 3, 8)
    enc = nn.TransformerEncoder(2, 8, 2, norm_first=False)
    assert enc(src, None).shape == (2, 5, 8)


# -- activations ---------------------------------------------------------------------------------------------
ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(np.exp(x) - 1, 0),
    "selu": lambda x: 1.0507 * np.where(x > 0, x, 1.67326 * (np.exp(x) - 1)),
    "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: x * 0.5 * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2))),
    "gelu_approx": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "gelu_fast_approx": lambda x: x * _sigmoid(1.702 * x),
    "sigmoid": _sigmoid,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "log_sigmoid": lambda x: np.log(_sigmoid(x)),
    "tanh": np.tanh,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "hardswish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "step": lambda x: (x > 0).astype(np.float32),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "soft_shrink": lambda x: np.where(np.abs(x) > 0.5, x - np.sign(x) * 0.5, 0),
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    "softmin": lambda x: np.exp(-x) / np.exp(-x).sum(-1, keepdims=True),
    "log_softmax": lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_functions(name):
    x = _randn(3, 7) * 3
    np.testing.assert_allclose(_np(getattr(nn, name)(mx.array(x))), ACTIVATIONS[name](x), rtol=1e-4, atol=1e-5)


def test_activation_modules_and_parametrised_ones():
    x = _randn(4, 6)
    np.testing.assert_allclose(_np(nn.GELU(approx="tanh")(mx.array(x))), ACTIVATIONS["gelu_approx"](x), atol=1e-5)
    np.testing.assert_allclose(_np(nn.LeakyReLU(0.2)(mx.array(x))), np.where(x > 0, x, 0.2 * x), atol=1e-6)
    np.testing.assert_allclose(_np(nn.PReLU()(mx.array(x))), np.where(x > 0, x, 0.25 * x), atol=1e-6)
    np.testing.assert_allclose(_np(nn.glu(mx.array(x))), x[:, :3] * _sigmoid(x[:, 3:]), atol=1e-6)
    np.testing.assert_allclose(_np(nn.Softshrink(0.3)(mx.array(x))), np.where(np.abs(x) > 0.3, x - np.sign(x) * 0.3, 0),
                               atol=1e-6)
    for cls in (nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Mish, nn.Hardswish, nn.Softplus, nn.LogSigmoid):
        assert cls()(mx.array(x)).shape == x.shape
    with pytest.raises(ValueError):
        nn.GELU(approx="bad")


# -- against real MLX, same weights ----------------------------------------------------------------------------
def _mlx_copy(kiln_module, mlx_module):
    mlx = pytest.importorskip("mlx.core")
    weights = [(k, mlx.array(_np(v))) for k, v in tree_flatten(kiln_module.parameters())]
    mlx_module.load_weights(weights)
    return mlx


@pytest.mark.parametrize("build", [
    lambda n: n.Sequential(n.Linear(6, 8), n.GELU(), n.LayerNorm(8), n.Linear(8, 6)),
    lambda n: n.TransformerEncoder(1, 6, 2, mlp_dims=12),
    lambda n: n.GroupNorm(3, 6),
    lambda n: n.RMSNorm(6),
    lambda n: n.RoPE(4),
    lambda n: n.GRU(6, 4),
])
def test_layers_match_mlx(build):
    mlx_nn = pytest.importorskip("mlx.nn")
    mine, theirs = build(nn), build(mlx_nn)
    mlx = _mlx_copy(mine, theirs)
    x = _randn(2, 5, 6)
    args = (None,) if isinstance(mine, nn.TransformerEncoder) else ()
    out = mine(mx.array(x), *args)
    ref = theirs(mlx.array(x), *args)
    np.testing.assert_allclose(_np(out), np.array(ref), rtol=1e-4, atol=1e-5)


def test_conv_layers_match_mlx():
    mlx_nn = pytest.importorskip("mlx.nn")
    for mine, theirs, shape in [
        (nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2), mlx_nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2),
         (2, 9, 4)),
        (nn.Conv2d(3, 4, (3, 2), dilation=(1, 2)), mlx_nn.Conv2d(3, 4, (3, 2), dilation=(1, 2)), (1, 7, 7, 3)),
        (nn.ConvTranspose1d(3, 5, 3, stride=2), mlx_nn.ConvTranspose1d(3, 5, 3, stride=2), (2, 6, 3)),
    ]:
        mlx = _mlx_copy(mine, theirs)
        x = _randn(*shape)
        np.testing.assert_allclose(_np(mine(mx.array(x))), np.array(theirs(mlx.array(x))), rtol=1e-4, atol=1e-5)


def test_same_seed_gives_mlx_weights():
    mlx = pytest.importorskip("mlx.core")
    mlx_nn = pytest.importorskip("mlx.nn")
    for build in (lambda n: n.Linear(5, 3), lambda n: n.Embedding(7, 4), lambda n: n.Conv2d(2, 3, 3),
                  lambda n: n.LSTM(3, 4), lambda n: n.MultiHeadAttention(8, 2, bias=True)):
        mx.random.seed(11)
        mlx.random.seed(11)
        mine = dict(tree_flatten(build(nn).parameters()))
        theirs = dict(tree_flatten(build(mlx_nn).parameters()))
        assert mine.keys() == theirs.keys()
        for k in mine:
            np.testing.assert_allclose(_np(mine[k]), np.array(theirs[k]), rtol=1e-5, atol=1e-6)


def test_initializers():
    a = mx.zeros((6, 4))
    assert _np(nn.init.constant(0.5)(a)).tolist() == np.full((6, 4), 0.5).tolist()
    np.testing.assert_array_equal(_np(nn.init.identity()(mx.zeros((3, 3)))), np.eye(3))
    with pytest.raises(ValueError):
        nn.init.identity()(a)
    u = _np(nn.init.glorot_uniform()(mx.zeros((300, 200))))
    limit = np.sqrt(6 / 500)
    assert u.min() >= -limit and u.max() <= limit and u.std() > 0.5 * limit / np.sqrt(3)
    h = _np(nn.init.he_normal()(mx.zeros((400, 300)), mode="fan_out"))
    assert abs(h.std() - 1 / np.sqrt(400)) < 0.01
    s = _np(nn.init.sparse(0.5)(mx.zeros((5, 8))))
    assert np.all((s == 0).sum(1) == 4)
    mlx = pytest.importorskip("mlx.core")
    mlx_init = pytest.importorskip("mlx.nn").init
    for name, args in [("normal", (0.5, 2.0)), ("uniform", (-1.0, 3.0)), ("glorot_normal", ()), ("he_uniform", ())]:
        mx.random.seed(5)
        mlx.random.seed(5)
        mine = getattr(nn.init, name)(*args)(mx.zeros((4, 3)))
        theirs = getattr(mlx_init, name)(*args)(mlx.zeros((4, 3)))
        np.testing.assert_allclose(_np(mine), np.array(theirs), rtol=1e-5, atol=1e-6)


# -- losses --------------------------------------------------------------------------------------------------
def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_cross_entropy_variants():
    logits = _randn(4, 5)
    labels = np.array([0, 3, 4, 1])
    ls = _log_softmax(logits)
    expected = -ls[np.arange(4), labels]
    L = nn.losses
    np.testing.assert_allclose(_np(L.cross_entropy(mx.array(logits), mx.array(labels))), expected, rtol=1e-5)
    probs = np.eye(5, dtype=np.float32)[labels]
    np.testing.assert_allclose(_np(L.cross_entropy(mx.array(logits), mx.array(probs), reduction="mean")),
                               expected.mean(), rtol=1e-5)
    smoothed = (1 - 0.1) * expected - 0.1 * ls.mean(-1)
    np.testing.assert_allclose(_np(L.cross_entropy(mx.array(logits), mx.array(labels), label_smoothing=0.1)),
                               smoothed, rtol=1e-5)
    w = np.array([1.0, 0.0, 2.0, 1.0], np.float32)
    np.testing.assert_allclose(_np(L.cross_entropy(mx.array(logits), mx.array(labels), weights=mx.array(w),
                                                   reduction="sum")), (expected * w).sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="Targets shape"):
        L.cross_entropy(mx.array(logits), mx.array(labels[:3]))
    with pytest.raises(ValueError, match="Invalid reduction"):
        L.cross_entropy(mx.array(logits), mx.array(labels), reduction="avg")
    with pytest.raises(ValueError, match="Label smoothing"):
        L.cross_entropy(mx.array(logits), mx.array(labels), label_smoothing=1.0)


def test_other_losses():
    L = nn.losses
    p, t = _randn(6), _randn(6)
    P, T = mx.array(p), mx.array(t)
    np.testing.assert_allclose(_np(L.mse_loss(P, T)), ((p - t) ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(_np(L.l1_loss(P, T, reduction="sum")), np.abs(p - t).sum(), rtol=1e-5)
    y = (t > 0).astype(np.float32)
    bce = np.log1p(np.exp(p)) - p * y
    np.testing.assert_allclose(_np(L.binary_cross_entropy(P, mx.array(y))), bce.mean(), rtol=1e-5)
    q = _sigmoid(p)
    np.testing.assert_allclose(_np(L.binary_cross_entropy(mx.array(q), mx.array(y), with_logits=False,
                                                          reduction="none")),
                               -(y * np.log(q) + (1 - y) * np.log(1 - q)), rtol=1e-4)
    d = np.abs(p - t)
    np.testing.assert_allclose(_np(L.smooth_l1_loss(P, T, beta=0.5, reduction="none")),
                               np.where(d < 0.5, 0.5 * d**2 / 0.5, d - 0.25), rtol=1e-5)
    np.testing.assert_allclose(_np(L.huber_loss(P, T, delta=0.7)), np.where(d <= 0.7, 0.5 * d**2, 0.7 * (d - 0.35)),
                               rtol=1e-5)
    np.testing.assert_allclose(_np(L.log_cosh_loss(P, T)), np.log(np.cosh(p - t)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_np(L.hinge_loss(P, T)), np.maximum(1 - p * t, 0), rtol=1e-5)
    sign = np.sign(t)
    np.testing.assert_allclose(_np(L.margin_ranking_loss(P, T, mx.array(sign), margin=0.1)),
                               np.maximum(0, -sign * (p - t) + 0.1), rtol=1e-5)
    var = np.abs(t) + 0.1
    np.testing.assert_allclose(_np(L.gaussian_nll_loss(P, T, mx.array(var), full=True)),
                               (0.5 * (np.log(var) + (t - p) ** 2 / var) + 0.5 * np.log(2 * np.pi)).mean(), rtol=1e-5)
    logp, logq = _log_softmax(_randn(3, 4)), _log_softmax(_randn(3, 4))
    np.testing.assert_allclose(_np(L.kl_div_loss(mx.array(logp), mx.array(logq))),
                               (np.exp(logq) * (logq - logp)).sum(-1), rtol=1e-5)
    labels = np.array([1, 0, 3])
    np.testing.assert_allclose(_np(L.nll_loss(mx.array(logp), mx.array(labels), reduction="mean")),
                               -logp[np.arange(3), labels].mean(), rtol=1e-5)
    a, b, c = _randn(3, 4), _randn(3, 4), _randn(3, 4)
    dp = np.sqrt(((a - b) ** 2).sum(-1) + 1e-6)
    dn = np.sqrt(((a - c) ** 2).sum(-1) + 1e-6)
    np.testing.assert_allclose(_np(L.triplet_loss(mx.array(a), mx.array(b), mx.array(c))),
                               np.maximum(dp - dn + 1, 0), rtol=1e-4)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(_np(L.cosine_similarity_loss(mx.array(a), mx.array(b))), cos, rtol=1e-5)
    with pytest.raises(ValueError):
        L.mse_loss(P, mx.array(t[:3]))


# -- value_and_grad ------------------------------------------------------------------------------------------
def test_value_and_grad_of_an_mlp_matches_numpy():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    model.layers[2].freeze(keys="bias")
    x, y = _randn(5, 3), _randn(5, 1)

    def loss_fn(m, a, b):
        return nn.losses.mse_loss(m(a), b)

    loss, grads = nn.value_and_grad(model, loss_fn)(model, mx.array(x), mx.array(y))
    w1, b1 = _np(model.layers[0].weight), _np(model.layers[0].bias)
    w2, b2 = _np(model.layers[2].weight), _np(model.layers[2].bias)
    pre = x @ w1.T + b1
    hidden = np.maximum(pre, 0)
    out = hidden @ w2.T + b2
    np.testing.assert_allclose(_np(loss), ((out - y) ** 2).mean(), rtol=1e-5)
    d_out = 2 * (out - y) / out.size
    d_pre = (d_out @ w2) * (pre > 0)
    np.testing.assert_allclose(_np(grads["layers"][2]["weight"]), d_out.T @ hidden, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_np(grads["layers"][0]["weight"]), d_pre.T @ x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_np(grads["layers"][0]["bias"]), d_pre.sum(0), rtol=1e-4, atol=1e-6)
    assert "bias" not in grads["layers"][2]
