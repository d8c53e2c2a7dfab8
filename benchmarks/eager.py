"""kiln eager mode against real MLX eager: the cost of building one op, of building and evaluating it, eager
gelu on (1024,), and the compile guide's training step run uncompiled. Microseconds per call, median of 5
trials, each trial about --trial seconds of back-to-back calls.

    python benchmarks/eager.py [--trial 0.2] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import time


def _calls_per_trial(fn, trial: float) -> int:
    """Enough calls to fill about `trial` seconds (at least 10)."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt > trial / 4 or n >= 1 << 22:
            return max(10, int(n * trial / max(dt, 1e-9)))
        n *= 4


def time_us(fn, trial: float) -> float:
    fn()
    n = _calls_per_trial(fn, trial)
    trials = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        trials.append((time.perf_counter() - t) / n)
    return statistics.median(trials) * 1e6


def op_cases(mx) -> dict:
    """name -> (build-only call, build+eval call) on float32 (1024,) inputs."""
    x = mx.random.uniform(shape=(1024,))
    w = mx.random.uniform(shape=(1024,))
    mx.eval(x, w)
    builders = {
        "x + 1.0": lambda: x + 1.0,
        "x + x": lambda: x + w,
        "2 * x": lambda: 2 * x,
        "x / 3": lambda: x / 3,
        "exp(x)": lambda: mx.exp(x),
        "maximum(x, 0)": lambda: mx.maximum(x, 0),
        "sum(x)": lambda: mx.sum(x),
        "x.reshape(32, 32)": lambda: x.reshape(32, 32),
        "x > 0.5": lambda: x > 0.5,
    }
    cases = {}
    for name, build in builders.items():
        def build_eval(build=build):
            mx.eval(build())

        cases[name] = (build, build_eval)
    return cases


def gelu_case(mx):
    x = mx.random.uniform(shape=(1024,))
    mx.eval(x)

    def call():
        mx.eval(x * (1 + mx.erf(x / math.sqrt(2))) / 2)

    return call


def step_case(mx, nn, optim):
    """The compile guide's step (Linear(10, 1), SGD with momentum, batch 4), uncompiled."""
    mx.random.seed(0)
    x = mx.random.uniform(shape=(4, 10))
    y = mx.array([0, 1, 0, 1])
    model = nn.Linear(10, 1)
    optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)
    state = [model.state, optimizer.state]

    def loss_fn(model, x, y):
        return nn.losses.binary_cross_entropy(model(x).squeeze(), y)

    loss_and_grad = nn.value_and_grad(model, loss_fn)

    def call():
        loss, grads = loss_and_grad(model, x, y)
        optimizer.update(model, grads)
        mx.eval(loss, state)

    for _ in range(20):
        call()
    return call


def measure(prefix: str, trial: float) -> dict:
    mx = importlib.import_module(f"{prefix}.core")
    nn = importlib.import_module(f"{prefix}.nn")
    optim = importlib.import_module(f"{prefix}.optimizers")
    rows = {}
    for name, (build, build_eval) in op_cases(mx).items():
        rows[f"build {name}"] = time_us(build, trial)
        rows[f"build+eval {name}"] = time_us(build_eval, trial)
    rows["eager gelu (1024,)"] = time_us(gelu_case(mx), trial)
    rows["eager training step"] = time_us(step_case(mx, nn, optim), trial)
    return rows


def have_mlx() -> bool:
    try:
        importlib.import_module("mlx.core")
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trial", type=float, default=0.2, help="seconds per timing trial")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    results = {"kiln": measure("kiln", args.trial)}
    if have_mlx():
        results["mlx"] = measure("mlx", args.trial)
    print("## kiln eager vs MLX eager, us per call (lower is better)\n")
    header = "| case | kiln |" + (" MLX | kiln / MLX |" if "mlx" in results else "")
    print(header)
    print("|---|---|" + ("---|---|" if "mlx" in results else ""))
    for case, k in results["kiln"].items():
        line = f"| {case} | {k:.2f} |"
        if "mlx" in results:
            m = results["mlx"][case]
            line += f" {m:.2f} | {k / m:.2f}x |"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
