"""kiln.optimizers: one step of each optimizer against a hand-written numpy update, MLX's state layout,
schedules, clip_grad_norm, and compiled training steps (the compile guide's example, Dropout with the
captured random state, optimizer state created inside the first compiled call)."""

from functools import partial

import kiln.core as mx
import kiln.optimizers as optim
import numpy as np
import pytest
from kiln import nn
from kiln.utils import tree_flatten

rng = np.random.default_rng(0)
P0 = rng.standard_normal((3, 4)).astype(np.float32)
G0 = rng.standard_normal((3, 4)).astype(np.float32)
B0 = rng.standard_normal((4,)).astype(np.float32)
GB = rng.standard_normal((4,)).astype(np.float32)


def _step(opt, steps=2):
    """Apply the same gradients `steps` times; returns the parameters after each step."""
    params = {"w": mx.array(P0), "b": mx.array(B0)}
    grads = {"w": mx.array(G0), "b": mx.array(GB)}
    history = []
    for _ in range(steps):
        params = opt.apply_gradients(grads, params)
        mx.eval(params, opt.state)
        history.append({k: np.array(v) for k, v in params.items()})
    return history


def _numpy_run(update, steps=2):
    """update(p, g, state, t) -> p with state a dict; t counts from 1."""
    out = []
    params = {"w": P0.astype(np.float64), "b": B0.astype(np.float64)}
    grads = {"w": G0.astype(np.float64), "b": GB.astype(np.float64)}
    states = {"w": {}, "b": {}}
    for t in range(1, steps + 1):
        params = {k: update(params[k], grads[k], states[k], t) for k in params}
        out.append(dict(params))
    return out


def _check(opt, update, steps=2, rtol=1e-5):
    for got, want in zip(_step(opt, steps), _numpy_run(update, steps)):
        for k in got:
            np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=1e-6)


def test_sgd_variants():
    _check(optim.SGD(0.1), lambda p, g, s, t: p - 0.1 * g)

    def momentum(p, g, s, t, mu=0.9, wd=0.01, damp=0.1, nesterov=False):
        g = g + wd * p
        v = mu * s.get("v", 0) + (1 - damp) * g
        s["v"] = v
        return p - 0.1 * (g + mu * v if nesterov else v)

    _check(optim.SGD(0.1, momentum=0.9, weight_decay=0.01, dampening=0.1), momentum)
    _check(optim.SGD(0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
           partial(momentum, damp=0.0, nesterov=True))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(0.1, nesterov=True)


def test_adam_family():
    def adam(p, g, s, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-8, bias=False, wd=0.0):
        p = p * (1 - lr * wd)
        m = b1 * s.get("m", 0) + (1 - b1) * g
        v = b2 * s.get("v", 0) + (1 - b2) * g * g
        s["m"], s["v"] = m, v
        if bias:
            return p - (lr / (1 - b1**t)) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
        return p - lr * m / (np.sqrt(v) + eps)

    _check(optim.Adam(0.01), adam)
    _check(optim.Adam(0.01, betas=[0.8, 0.99], bias_correction=True), partial(adam, b1=0.8, b2=0.99, bias=True))
    _check(optim.AdamW(0.01, weight_decay=0.1), partial(adam, wd=0.1))

    def adamax(p, g, s, t):
        m = 0.9 * s.get("m", 0) + 0.1 * g
        v = np.maximum(0.999 * s.get("v", 0), np.abs(g))
        s["m"], s["v"] = m, v
        return p - 0.01 * m / (v + 1e-8)

    _check(optim.Adamax(0.01), adamax)


def test_rmsprop_adagrad_adadelta_lion():
    def rmsprop(p, g, s, t):
        s["v"] = 0.99 * s.get("v", 0) + 0.01 * g * g
        return p - 0.01 * g / (np.sqrt(s["v"]) + 1e-8)

    _check(optim.RMSprop(0.01), rmsprop)

    def adagrad(p, g, s, t):
        s["v"] = s.get("v", 0) + g * g
        return p - 0.1 * g / (np.sqrt(s["v"]) + 1e-8)

    _check(optim.Adagrad(0.1), adagrad)

    def adadelta(p, g, s, t, rho=0.9, eps=1e-6):
        v = rho * s.get("v", 0) + (1 - rho) * g * g
        d = np.sqrt(s.get("u", 0) + eps) / np.sqrt(v + eps) * g
        s["u"] = rho * s.get("u", 0) + (1 - rho) * d * d
        s["v"] = v
        return p - 1.0 * d

    _check(optim.AdaDelta(1.0), adadelta)

    def lion(p, g, s, t, wd=0.1):
        m = s.get("m", 0)
        c = 0.9 * m + 0.1 * g
        s["m"] = 0.99 * m + 0.01 * g
        return (1 - 0.01 * wd) * p - 0.01 * np.sign(c)

    _check(optim.Lion(0.01, weight_decay=0.1), lion)


def test_adafactor():
    def rms(x):
        return np.sqrt(np.mean(x * x))

    def adafactor(p, g, s, t, eps=(1e-30, 1e-3)):
        lr = max(eps[1], rms(p)) * min(1e-2, 1 / np.sqrt(t))
        beta2 = 1 - t ** -0.8
        u = g * g + eps[0]
        if g.ndim >= 2:
            s["r"] = beta2 * s.get("r", 0) + (1 - beta2) * u.mean(-1)
            s["c"] = beta2 * s.get("c", 0) + (1 - beta2) * u.mean(-2)
            r_factor = 1 / np.sqrt(s["r"] / s["r"].mean(-1, keepdims=True))
            update = r_factor[:, None] * (1 / np.sqrt(s["c"]))[None, :] * g
        else:
            s["v"] = beta2 * s.get("v", 0) + (1 - beta2) * u
            update = g / np.sqrt(s["v"])
        update = update / max(1.0, rms(update) / 1.0)
        return p - lr * update

    _check(optim.Adafactor(), adafactor, rtol=1e-4)
    state = optim.Adafactor()
    state.init({"w": mx.zeros((3, 4)), "b": mx.zeros((4,))})
    assert state.state["w"]["exp_avg_sq_row"].shape == (3,) and state.state["w"]["exp_avg_sq_col"].shape == (4,)


def test_state_layout_and_lazy_init():
    opt = optim.Adam(learning_rate=0.1)
    assert sorted(opt.state.keys()) == ["learning_rate", "step"]
    assert opt.state["step"].dtype == mx.uint64
    state_dict = opt.state
    model = nn.Linear(2, 2)
    grads = {"weight": mx.ones((2, 2)), "bias": mx.ones((2,))}
    opt.update(model, grads)
    assert opt.state is state_dict  # mutated in place, so a compiled step keeps seeing it
    assert sorted(opt.state.keys()) == ["bias", "learning_rate", "step", "weight"]
    assert sorted(opt.state["weight"].keys()) == ["m", "v"]
    assert opt.step.item() == 1
    opt.learning_rate = 0.5
    assert opt.learning_rate.item() == 0.5
    explicit = optim.SGD(0.1, momentum=0.9)
    explicit.init(nn.Sequential(nn.Linear(2, 2)).trainable_parameters())
    assert list(explicit.state["layers"][0].keys()) == ["weight", "bias"]


def test_schedules():
    for sched, expected in [
        (optim.step_decay(0.1, 0.9, 10), lambda s: 0.1 * 0.9 ** (s // 10)),
        (optim.exponential_decay(0.1, 0.9), lambda s: 0.1 * 0.9**s),
        (optim.cosine_decay(0.1, 100, 0.01), lambda s: 0.01 + 0.5 * (1 + np.cos(np.pi * min(s, 100) / 100)) * 0.09),
        (optim.linear_schedule(0.0, 1.0, 10), lambda s: min(s, 10) / 10),
    ]:
        for s in (0, 5, 15, 150):
            np.testing.assert_allclose(np.array(sched(mx.array(s, mx.uint64))), expected(s), rtol=1e-5, atol=1e-8)
    joined = optim.join_schedules([optim.linear_schedule(0.0, 0.1, 10), optim.cosine_decay(0.1, 20)], [10])
    np.testing.assert_allclose([np.array(joined(mx.array(s))).item() for s in (5, 15, 40)],
                               [0.05, 0.05 * (1 + np.cos(np.pi * 5 / 20)), 0.0], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError):
        optim.linear_schedule(0, 1, 0)
    opt = optim.SGD(learning_rate=optim.exponential_decay(1.0, 0.5))
    _step(opt, steps=3)
    np.testing.assert_allclose(opt.learning_rate.item(), 0.25)  # scheduled from the step before each update


def test_clip_grad_norm():
    grads = {"a": mx.array([3.0, 0.0]), "b": [mx.array([4.0])]}
    clipped, norm = optim.clip_grad_norm(grads, max_norm=1.0)
    assert abs(norm.item() - 5.0) < 1e-6
    np.testing.assert_allclose(np.array(clipped["a"]), [0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(np.array(clipped["b"][0]), [0.8], rtol=1e-5)
    same, _ = optim.clip_grad_norm(grads, max_norm=10.0)
    np.testing.assert_allclose(np.array(same["a"]), [3.0, 0.0], rtol=1e-5)


def test_multi_optimizer():
    opt = optim.MultiOptimizer([optim.SGD(1.0), optim.SGD(0.1)], [lambda path, g: path.endswith("bias")])
    params = {"weight": mx.ones((2,)), "bias": mx.ones((2,))}
    grads = {"weight": mx.ones((2,)), "bias": mx.ones((2,))}
    new = opt.apply_gradients(grads, params)
    np.testing.assert_allclose(np.array(new["bias"]), [0.0, 0.0])
    np.testing.assert_allclose(np.array(new["weight"]), [0.9, 0.9])
    assert len(opt.state["states"]) == 2
    with pytest.raises(ValueError):
        optim.MultiOptimizer([optim.SGD(1.0)], [lambda p, g: True])


def test_optimizers_match_mlx_over_steps():
    mlx = pytest.importorskip("mlx.core")
    mlx_optim = pytest.importorskip("mlx.optimizers")
    for name, kwargs in [("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
                         ("AdamW", dict(learning_rate=0.01, bias_correction=True)),
                         ("Lion", dict(learning_rate=0.01)), ("Adafactor", dict())]:
        mine = getattr(optim, name)(**kwargs)
        theirs = getattr(mlx_optim, name)(**kwargs)
        p_k, p_m = {"w": mx.array(P0)}, {"w": mlx.array(P0)}
        for i in range(3):
            g = (G0 * (i + 1)).astype(np.float32)
            p_k = mine.apply_gradients({"w": mx.array(g)}, p_k)
            p_m = theirs.apply_gradients({"w": mlx.array(g)}, p_m)
        np.testing.assert_allclose(np.array(p_k["w"]), np.array(p_m["w"]), rtol=1e-5, atol=1e-6)


# -- compiled training steps ----------------------------------------------------------------------------------
needs_compile = pytest.mark.skipif(not hasattr(mx, "compile") or not hasattr(mx, "value_and_grad"),
                                   reason="compile / value_and_grad not available")


def _guide_losses(compiled: bool, steps=5):
    mx.random.seed(0)
    x = mx.random.uniform(shape=(4, 10))
    y = mx.array([0, 1, 0, 1])
    model = nn.Linear(10, 1)
    optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)

    def loss_fn(model, x, y):
        logits = model(x).squeeze()
        return nn.losses.binary_cross_entropy(logits, y)

    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss

    state = [model.state, optimizer.state]
    if compiled:
        step = partial(mx.compile, inputs=state, outputs=state)(step)
    losses = []
    for _ in range(steps):
        loss = step(x, y)
        mx.eval(state)
        losses.append(loss.item())
    return losses


@needs_compile
def test_compile_guide_example_compiled_matches_eager():
    eager = _guide_losses(False)
    compiled = _guide_losses(True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)
    assert eager[-1] < eager[0]


@needs_compile
def test_compiled_dropout_varies_with_captured_random_state():
    mx.random.seed(1)
    model = nn.Dropout(0.5)
    state = [model.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def apply(x):
        return model(x)

    x = mx.ones((64,))
    first = np.array(apply(x))
    second = np.array(apply(x))
    assert set(np.unique(first)) <= {0.0, 2.0}
    assert not np.array_equal(first, second)


@needs_compile
def test_optimizer_state_created_inside_the_first_compiled_call():
    mx.random.seed(2)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = optim.Adam(learning_rate=0.05)
    assert "layers" not in optimizer.state
    x = mx.random.normal((16, 3))
    y = mx.sum(x, axis=1, keepdims=True)
    state = [model.state, optimizer.state]

    def loss_fn(m, a, b):
        return nn.losses.mse_loss(m(a), b)

    @partial(mx.compile, inputs=state, outputs=state)
    def step(a, b):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, a, b)
        optimizer.update(model, grads)
        return loss

    losses = [step(x, y).item() for _ in range(20)]
    assert "layers" in optimizer.state and optimizer.step.item() == 20
    assert all(isinstance(v, mx.array) for _, v in tree_flatten(optimizer.state))
    assert losses[-1] < 0.5 * losses[0]
