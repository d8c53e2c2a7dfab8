"""Train a small MLP on synthetic data with a compiled training step (no downloads).

Run it with kiln installed (the install builds the C++ engine that runs the compiled step):

    python3 -m pip install .            # from the repository root; or `pip install -e .` while developing
    python3 examples/train_mlp.py

Pointing PYTHONPATH at the source tree imports kiln without its built engine: everything still runs, on the
reference interpreter, much more slowly, and kiln warns once on stderr that the engine did not load.
The task: classify points in the plane by which of three interleaved spiral arms they lie on.
"""

import math
import time
from functools import partial

import kiln.core as mx
import kiln.optimizers as optim
from kiln import nn


def spirals(points_per_class: int = 100, classes: int = 3, seed: int = 0):
    """Points on `classes` noisy spiral arms, with their arm index as the label."""
    key = mx.random.key(seed)
    radius = mx.linspace(0.05, 1.0, points_per_class)
    xs, ys = [], []
    for c in range(classes):
        key, sub = mx.random.split(key)
        angle = radius * 4.0 + c * 2 * math.pi / classes + 0.2 * mx.random.normal((points_per_class,), key=sub)
        xs.append(mx.stack([radius * mx.cos(angle), radius * mx.sin(angle)], axis=1))
        ys.append(mx.full((points_per_class,), c, dtype=mx.int32))
    return mx.concatenate(xs, axis=0), mx.concatenate(ys, axis=0)


class MLP(nn.Module):
    def __init__(self, in_dims: int, hidden: int, out_dims: int, depth: int = 2):
        super().__init__()
        sizes = [in_dims] + [hidden] * depth
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.head = nn.Linear(hidden, out_dims)
        self.dropout = nn.Dropout(0.1)

    def __call__(self, x):
        for layer in self.layers:
            x = self.dropout(nn.gelu(layer(x)))
        return self.head(x)


def main(steps: int = 300):
    mx.random.seed(0)
    x, y = spirals()
    model = MLP(2, 64, 3)
    optimizer = optim.AdamW(learning_rate=optim.cosine_decay(3e-2, steps, 1e-3), weight_decay=1e-4)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    # Model parameters, optimizer state (created lazily on the first update) and the random state
    # (Dropout) are captured as implicit inputs and outputs of the compiled step.
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        grads, _ = optim.clip_grad_norm(grads, max_norm=1.0)
        optimizer.update(model, grads)
        return loss

    tic = time.perf_counter()
    losses = []
    for it in range(steps):
        loss = step(x, y)
        mx.eval(state)
        losses.append(loss.item())
        if it % 50 == 0 or it == steps - 1:
            print(f"step {it:4d}  loss {losses[-1]:.4f}")
    model.eval()
    accuracy = mx.mean(mx.argmax(model(x), axis=1) == y).item()
    print(f"final loss {losses[-1]:.4f} (from {losses[0]:.4f}), train accuracy {accuracy:.3f}, "
          f"{time.perf_counter() - tic:.1f}s ({mx.engine_status()})")
    return losses, accuracy


if __name__ == "__main__":
    losses, _ = main()
    assert losses[-1] < 0.5 * losses[0], "the loss should fall"
