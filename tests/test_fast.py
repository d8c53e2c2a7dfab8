"""kiln.core.fast: numerics against hand-written numpy and real MLX, gradients, vmap and compile."""

import kiln.core as mx
import numpy as np
import pytest

RNG = np.random.default_rng(7)


def _np(a):
    return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)


def _randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# -- numpy oracles ----------------------------------------------------------------------------------
def rms_norm_ref(x, w, eps):
    out = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + eps)
    return out * w if w is not None else out


def layer_norm_ref(x, w, b, eps):
    x = x.astype(np.float64)
    out = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    if w is not None:
        out = out * w
    if b is not None:
        out = out + b
    return out


def rope_ref(x, dims, traditional, base, scale, offset):
    t = x.shape[-2]
    inv = base ** (-np.arange(0, dims, 2, dtype=np.float64) / dims)
    theta = ((np.arange(t) + offset) * scale)[:, None] * inv[None, :]
    cos, sin = np.cos(theta), np.sin(theta)
    out = x.astype(np.float64).copy()
    if traditional:
        x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
        out[..., 0:dims:2] = x1 * cos - x2 * sin
        out[..., 1:dims:2] = x1 * sin + x2 * cos
    else:
        h = dims // 2
        x1, x2 = x[..., :h], x[..., h:dims]
        out[..., :h] = x1 * cos - x2 * sin
        out[..., h:dims] = x1 * sin + x2 * cos
    return out


def sdpa_ref(q, k, v, scale, mask=None):
    rep = q.shape[1] // k.shape[1]
    k = np.repeat(k, rep, axis=1).astype(np.float64)
    v = np.repeat(v, rep, axis=1).astype(np.float64)
    s = scale * q.astype(np.float64) @ np.swapaxes(k, -1, -2)
    if isinstance(mask, str):
        tq, tk = s.shape[-2:]
        keep = np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq)
        s = np.where(keep, s, -np.inf)
    elif mask is not None and mask.dtype == bool:
        s = np.where(mask, s, -np.inf)
    elif mask is not None:
        s = s + mask
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    return (p / p.sum(-1, keepdims=True)) @ v


# -- forward ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_weight", [True, False])
def test_rms_norm_matches_numpy(with_weight):
    x, w = _randn(2, 3, 16), _randn(16)
    out = mx.fast.rms_norm(mx.array(x), mx.array(w) if with_weight else None, 1e-5)
    assert out.shape == (2, 3, 16) and out.dtype == mx.float32
    np.testing.assert_allclose(_np(out), rms_norm_ref(x, w if with_weight else None, 1e-5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weight,bias", [(True, True), (True, False), (False, True), (False, False)])
def test_layer_norm_matches_numpy(weight, bias):
    x, w, b = _randn(4, 8), _randn(8), _randn(8)
    out = mx.fast.layer_norm(mx.array(x), mx.array(w) if weight else None, mx.array(b) if bias else None, 1e-5)
    ref = layer_norm_ref(x, w if weight else None, b if bias else None, 1e-5)
    np.testing.assert_allclose(_np(out), ref, rtol=1e-5, atol=1e-5)


def test_norms_keep_half_precision():
    x = mx.array(_randn(2, 8)).astype(mx.float16)
    assert mx.fast.rms_norm(x, None, 1e-5).dtype == mx.float16
    assert mx.fast.layer_norm(x, mx.ones((8,), mx.float32), None, 1e-5).dtype == mx.float32
    out = mx.fast.rms_norm(x.astype(mx.bfloat16), None, 1e-5)
    assert out.dtype == mx.bfloat16
    np.testing.assert_allclose(_np(out), rms_norm_ref(_np(x), None, 1e-5), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("dims", [16, 8])
def test_rope_matches_numpy(traditional, dims):
    x = _randn(2, 3, 5, 16)
    out = mx.fast.rope(mx.array(x), dims, traditional=traditional, base=10000.0, scale=0.5, offset=3)
    np.testing.assert_allclose(_np(out), rope_ref(x, dims, traditional, 10000.0, 0.5, 3), rtol=1e-5, atol=1e-5)


def test_rope_per_batch_offsets_and_freqs():
    x = _randn(2, 4, 8)
    out = mx.fast.rope(mx.array(x), 8, traditional=False, base=100.0, scale=1.0, offset=mx.array([1, 6]))
    for i, off in enumerate((1, 6)):
        np.testing.assert_allclose(_np(out[i]), rope_ref(x[i], 8, False, 100.0, 1.0, off), rtol=1e-5, atol=1e-5)
    freqs = 100.0 ** (np.arange(0, 8, 2) / 8)
    via_freqs = mx.fast.rope(mx.array(x), 8, traditional=False, base=None, scale=1.0, offset=2,
                             freqs=mx.array(freqs.astype(np.float32)))
    np.testing.assert_allclose(_np(via_freqs), rope_ref(x, 8, False, 100.0, 1.0, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask_kind", [None, "causal", "bool", "additive", "bool_heads"])
def test_sdpa_matches_numpy_with_gqa(mask_kind):
    q, k, v = _randn(2, 4, 5, 8), _randn(2, 2, 7, 8), _randn(2, 2, 7, 6)
    mask = {"causal": "causal", "bool": RNG.random((5, 7)) > 0.3, "additive": _randn(2, 1, 5, 7),
            "bool_heads": RNG.random((4, 5, 7)) > 0.3, None: None}[mask_kind]
    if isinstance(mask, np.ndarray) and mask.dtype == bool:
        mask[..., 0] = True  # every query sees at least one key
    kiln_mask = mask if mask is None or isinstance(mask, str) else mx.array(mask)
    out = mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=0.35, mask=kiln_mask)
    assert out.shape == (2, 4, 5, 6)
    np.testing.assert_allclose(_np(out), sdpa_ref(q, k, v, 0.35, mask), rtol=1e-5, atol=1e-5)


def test_sdpa_sinks_act_as_extra_logit():
    q, k, v = _randn(1, 2, 3, 4), _randn(1, 2, 5, 4), _randn(1, 2, 5, 4)
    sinks = _randn(2)
    out = mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=0.5,
                                               sinks=mx.array(sinks))
    s = 0.5 * q.astype(np.float64) @ np.swapaxes(k, -1, -2)
    s = np.concatenate([np.broadcast_to(sinks[None, :, None, None], s.shape[:-1] + (1,)), s], -1)
    p = np.exp(s - s.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    np.testing.assert_allclose(_np(out), p[..., 1:] @ v, rtol=1e-5, atol=1e-5)


def test_cross_entropy_matches_numpy():
    logits, targets = _randn(3, 10), np.array([1, 9, 0], np.int32)
    out = mx.fast.cross_entropy(mx.array(logits), mx.array(targets))
    ref = np.log(np.exp(logits.astype(np.float64)).sum(-1)) - logits[np.arange(3), targets]
    assert out.dtype == mx.float32
    np.testing.assert_allclose(_np(out), ref, rtol=1e-5, atol=1e-5)


# -- transforms -------------------------------------------------------------------------------------
def _finite_difference(f, x, eps=1e-3):
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[i] += eps
        lo[i] -= eps
        grad[i] = (f(hi) - f(lo)) / (2 * eps)
    return grad


def test_grads_match_finite_differences():
    x, w = _randn(2, 6), _randn(6)
    loss = lambda a: mx.sum(mx.fast.rms_norm(a, mx.array(w), 1e-5) ** 2)
    g = mx.grad(loss)(mx.array(x))
    fd = _finite_difference(lambda a: float(loss(mx.array(a.astype(np.float32))).item()), x.astype(np.float64))
    np.testing.assert_allclose(_np(g), fd, rtol=2e-2, atol=2e-2)

    q, k, v = _randn(1, 2, 3, 4), _randn(1, 1, 4, 4), _randn(1, 1, 4, 4)

    def attn(qq):
        out = mx.fast.scaled_dot_product_attention(qq, mx.array(k), mx.array(v), scale=0.5, mask="causal")
        return mx.sum(out * out)

    g = mx.grad(attn)(mx.array(q))
    fd = _finite_difference(lambda a: float(attn(mx.array(a.astype(np.float32))).item()), q.astype(np.float64))
    np.testing.assert_allclose(_np(g), fd, rtol=2e-2, atol=2e-2)


def test_vmap_and_compile_agree_with_eager():
    x = mx.array(_randn(3, 2, 4, 8))

    def f(a):
        return mx.fast.rope(mx.fast.rms_norm(a, None, 1e-6), 8, traditional=True, base=10000.0, scale=1.0, offset=1)

    eager = f(x)
    np.testing.assert_allclose(_np(mx.compile(f)(x)), _np(eager), rtol=1e-5, atol=1e-6)
    batched = mx.vmap(lambda a: mx.fast.layer_norm(a, None, None, 1e-5))(x)
    np.testing.assert_allclose(_np(batched), _np(mx.fast.layer_norm(x, None, None, 1e-5)), rtol=1e-5, atol=1e-6)


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,message", [
    (lambda: mx.fast.rms_norm(mx.ones((2, 4)), mx.ones((3,)), 1e-5), "[rms_norm]"),
    (lambda: mx.fast.rms_norm(mx.ones((2, 4), mx.int32), None, 1e-5), "[rms_norm]"),
    (lambda: mx.fast.layer_norm(mx.ones((2, 4)), None, mx.ones((3,)), 1e-5), "[layer_norm]"),
    (lambda: mx.fast.rope(mx.ones((3, 8)), 8, traditional=False, base=1.0, scale=1.0, offset=0), "[rope]"),
    (lambda: mx.fast.rope(mx.ones((1, 3, 8)), 7, traditional=False, base=1.0, scale=1.0, offset=0), "[rope]"),
    (lambda: mx.fast.rope(mx.ones((1, 3, 8)), 0, traditional=False, base=1.0, scale=1.0, offset=0), "[rope]"),
    (lambda: mx.fast.rope(mx.ones((1, 3, 8)), -2, traditional=False, base=1.0, scale=1.0, offset=0), "[rope]"),
    (lambda: mx.fast.rope(mx.ones((1, 3, 8)), 8, traditional=False, base=None, scale=1.0, offset=0), "[rope]"),
    (lambda: mx.fast.rope(mx.ones((1, 3, 8)), 8, traditional=False, base=1.0, scale=1.0, offset=1.5), "[rope]"),
    (lambda: mx.fast.scaled_dot_product_attention(mx.ones((1, 3, 2, 4)), mx.ones((1, 2, 2, 4)),
                                                   mx.ones((1, 2, 2, 4)), scale=1.0), "[scaled_dot_product_attention]"),
    (lambda: mx.fast.scaled_dot_product_attention(mx.ones((1, 2, 2, 4)), mx.ones((1, 2, 2, 4)),
                                                   mx.ones((1, 2, 2, 4)), scale=1.0, mask="foo"),
     "[scaled_dot_product_attention]"),
    # a mask that broadcasts against the scores (1, 4, 1, 6) but would grow them to (1, 4, 2, 6)
    (lambda: mx.fast.scaled_dot_product_attention(mx.ones((1, 4, 1, 8)), mx.ones((1, 1, 6, 8)),
                                                   mx.ones((1, 1, 6, 8)), scale=1.0, mask=mx.ones((4, 2, 6), mx.bool_)),
     "[scaled_dot_product_attention]"),
    (lambda: mx.fast.cross_entropy(mx.ones((2, 5)), mx.array([1.0, 2.0])), "[cross_entropy]"),
])
def test_bad_input_raises_with_op_name(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)


def _assert_same_outcome_as_mlx(mlx, run, atol):
    """`run(m)` on kiln and on real MLX: both raise ValueError, or both give the same numbers."""
    def outcome(m):
        try:
            return np.array(run(m))
        except ValueError:
            return ValueError

    ours, theirs = outcome(mx), outcome(mlx)
    if theirs is ValueError:
        assert ours is ValueError
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("dims", [0, -2, 7, 10, 8, 4])
def test_rope_dims_are_validated_like_mlx(dims):
    mlx = pytest.importorskip("mlx.core")
    x = _randn(1, 3, 8)
    _assert_same_outcome_as_mlx(
        mlx, lambda m: m.fast.rope(m.array(x), dims, traditional=False, base=10000.0, scale=1.0, offset=0), 1e-6)


@pytest.mark.parametrize("mask_shape", [(4, 2, 6), (3, 6), (2, 4, 1, 6), (4, 1, 6), (6,), (1, 4, 1, 1), ()])
def test_sdpa_masks_must_broadcast_to_the_scores_like_mlx(mask_shape):
    mlx = pytest.importorskip("mlx.core")
    q, k, v = _randn(1, 4, 1, 8), _randn(1, 1, 6, 8), _randn(1, 1, 6, 8)
    mask = RNG.random(mask_shape) > 0.3 if mask_shape else np.array(True)
    _assert_same_outcome_as_mlx(
        mlx, lambda m: m.fast.scaled_dot_product_attention(m.array(q), m.array(k), m.array(v), scale=0.5,
                                                           mask=m.array(mask)), 1e-5)


def test_metal_kernel_is_created_but_cannot_run():
    kernel = mx.fast.metal_kernel(name="k", input_names=["a"], output_names=["o"], source="")
    with pytest.raises(RuntimeError, match=r"\[metal_kernel\] No Metal back-end"):
        kernel(inputs=[mx.ones((1,))], output_shapes=[(1,)], output_dtypes=[mx.float32], grid=(1, 1, 1),
               threadgroup=(1, 1, 1))


# -- against real MLX -------------------------------------------------------------------------------
def _both(fn, *arrays):
    mlx = pytest.importorskip("mlx.core")
    ours = fn(mx, *[mx.array(a) for a in arrays])
    theirs = fn(mlx, *[mlx.array(a) for a in arrays])
    assert ours.shape == tuple(theirs.shape)
    assert ours.dtype.name == str(theirs.dtype).split(".")[-1]
    return _np(ours), np.array(theirs.astype(mlx.float32))


@pytest.mark.parametrize("case", ["rms", "ln", "rope", "rope_trad_offsets", "rope_f16", "sdpa_causal_long_q",
                                  "sdpa_all_masked", "sdpa_f16", "sdpa_sinks", "ce"])
def test_matches_mlx(case):
    x, w = _randn(2, 3, 16), _randn(16)
    q, k, v = _randn(2, 4, 9, 8), _randn(2, 2, 7, 8), _randn(2, 2, 7, 6)
    sd = "scaled_dot_product_attention"
    cases = {
        "rms": (lambda m, x, w: m.fast.rms_norm(x, w, 1e-5), x, w),
        "ln": (lambda m, x, w: m.fast.layer_norm(x, w, w, 1e-5), x, w),
        "rope": (lambda m, x: m.fast.rope(x, 8, traditional=False, base=10000.0, scale=0.5, offset=3), x),
        "rope_trad_offsets": (lambda m, x: m.fast.rope(x, 16, traditional=True, base=500.0, scale=1.0,
                                                       offset=m.array([2, 5])), x),
        "rope_f16": (lambda m, x: m.fast.rope(x.astype(m.float16), 16, traditional=False, base=10.0, scale=1.0,
                                              offset=1), x),
        "sdpa_causal_long_q": (lambda m, q, k, v: getattr(m.fast, sd)(q, k, v, scale=0.3, mask="causal"), q, k, v),
        "sdpa_all_masked": (lambda m, q, k, v: getattr(m.fast, sd)(q, k, v, scale=0.3,
                                                                   mask=m.zeros((9, 7), m.bool_)), q, k, v),
        "sdpa_f16": (lambda m, q, k, v: getattr(m.fast, sd)(q.astype(m.float16), k.astype(m.float16),
                                                            v.astype(m.float16), scale=0.3), q, k, v),
        "sdpa_sinks": (lambda m, q, k, v, s: getattr(m.fast, sd)(q, k, v, scale=0.3, sinks=s, mask="causal"),
                       q, k, v, _randn(4)),
        "ce": (lambda m, l, t: m.fast.cross_entropy(l, t), _randn(3, 4, 10),
               RNG.integers(0, 10, (3, 4)).astype(np.int32)),
    }
    ours, theirs = _both(*cases[case])
    tol = 2e-3 if "f16" in case else 1e-5
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
