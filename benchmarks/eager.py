"""kiln eager mode against real MLX eager.

Part 1, the targets of issue 10 (eager code at compiled speed), each for kiln eager, kiln compiled and MLX
eager: gelu on (32, 1000, 4096) float32; random.uniform of (32, 1000, 4096) beside np.copyto of the same
bytes; the compile guide's training step; a tiny Llama (dim 128, 2 layers, float32) decoding, per token;
200 dependent scalar ops each read with `.item()`. Part 2: the cost of building one op, of building and
evaluating it, eager gelu on (1024,), the training step. Microseconds per call, median of 5 trials, each
trial about --trial seconds of back-to-back calls (large cases: median of --large-reps calls).

    python benchmarks/eager.py [--trial 0.2] [--large-reps 5] [--skip-large] [--json out.json]
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


def guide_step(mx, nn, optim):
    """The compile guide's model and step pieces: Linear(10, 1), SGD with momentum, batch 4."""
    mx.random.seed(0)
    x = mx.random.uniform(shape=(4, 10))
    y = mx.array([0, 1, 0, 1])
    model = nn.Linear(10, 1)
    optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)
    state = [model.state, optimizer.state]

    def loss_fn(model, x, y):
        return nn.losses.binary_cross_entropy(model(x).squeeze(), y)

    loss_and_grad = nn.value_and_grad(model, loss_fn)

    def step(x, y):
        loss, grads = loss_and_grad(model, x, y)
        optimizer.update(model, grads)
        return loss

    return step, state, x, y


def step_case(mx, nn, optim, compiled: bool = False):
    """The guide's training step, uncompiled (or compiled with its state captured: inputs=/outputs=)."""
    import functools

    step, state, x, y = guide_step(mx, nn, optim)
    if compiled:
        step = functools.partial(mx.compile, inputs=state, outputs=state)(step)

    def call():
        loss = step(x, y)
        mx.eval(loss, state)

    for _ in range(20):
        call()
    return call


# -- part 1: the targets ------------------------------------------------------------------------------
LARGE = (32, 1000, 4096)


def time_large_us(fn, reps: int) -> float:
    """Median of `reps` calls after one warm-up call (large cases: a call is tens of milliseconds)."""
    fn()
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def gelu(mx, x):
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def large_gelu_cases(mx) -> tuple:
    x = mx.random.uniform(shape=LARGE)
    mx.eval(x)
    compiled = mx.compile(lambda x: gelu(mx, x))
    out = {}

    def eager_call():
        out["y"] = None  # free the last result first, as a loop reassigning its variable would
        out["y"] = gelu(mx, x)
        mx.eval(out["y"])

    def compiled_call():
        out["y"] = None
        out["y"] = compiled(x)
        mx.eval(out["y"])

    return eager_call, compiled_call


def uniform_case(mx):
    out = {}

    def call():
        out["u"] = None
        out["u"] = mx.random.uniform(shape=LARGE)
        mx.eval(out["u"])

    return call


def copyto_case():
    import numpy as np

    src = np.random.default_rng(0).random(LARGE, dtype=np.float32)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


def tiny_llama(mx, nn, dim=128, layers=2, heads=4, vocab=256, hidden=256):
    """A Llama-shaped decoder (RMSNorm, RoPE attention with a KV cache, SwiGLU MLP), MLX-LM style."""
    head_dim = dim // heads

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.wq = nn.Linear(dim, dim, bias=False)
            self.wk = nn.Linear(dim, dim, bias=False)
            self.wv = nn.Linear(dim, dim, bias=False)
            self.wo = nn.Linear(dim, dim, bias=False)
            self.rope = nn.RoPE(head_dim)

        def __call__(self, x, cache):
            b, n, _ = x.shape
            q, k, v = (f(x).reshape(b, n, heads, head_dim).transpose(0, 2, 1, 3) for f in (self.wq, self.wk, self.wv))
            offset = 0 if cache is None else cache[0].shape[2]
            q, k = self.rope(q, offset=offset), self.rope(k, offset=offset)
            if cache is not None:
                k = mx.concatenate([cache[0], k], axis=2)
                v = mx.concatenate([cache[1], v], axis=2)
            o = mx.fast.scaled_dot_product_attention(q, k, v, scale=head_dim**-0.5)
            return self.wo(o.transpose(0, 2, 1, 3).reshape(b, n, dim)), (k, v)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.norm1 = nn.RMSNorm(dim)
            self.norm2 = nn.RMSNorm(dim)
            self.w1 = nn.Linear(dim, hidden, bias=False)
            self.w2 = nn.Linear(hidden, dim, bias=False)
            self.w3 = nn.Linear(dim, hidden, bias=False)

        def __call__(self, x, cache):
            h, cache = self.attention(self.norm1(x), cache)
            x = x + h
            z = self.norm2(x)
            return x + self.w2(nn.silu(self.w1(z)) * self.w3(z)), cache

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, dim)
            self.blocks = [Block() for _ in range(layers)]
            self.norm = nn.RMSNorm(dim)
            self.head = nn.Linear(dim, vocab, bias=False)

        def __call__(self, tokens, caches):
            x = self.embed(tokens)
            new = []
            for block, cache in zip(self.blocks, caches):
                x, cache = block(x, cache)
                new.append(cache)
            return self.head(self.norm(x)), new

    return Model()


def decode_case(mx, nn, tokens: int = 64):
    """Per-token time of greedy decoding with a KV cache (one token in, argmax out, evaluated each step)."""
    mx.random.seed(0)
    model = tiny_llama(mx, nn)
    mx.eval(model.parameters())

    def call():
        token = mx.array([[1]])
        caches = [None, None]
        for _ in range(tokens):
            logits, caches = model(token, caches)
            token = mx.argmax(logits[:, -1, :], axis=-1, keepdims=True)
            mx.eval(token)

    return call, tokens


def scalar_item_case(mx, n: int = 200):
    def call():
        x = mx.array(1.0)
        for _ in range(n):
            x = x * 1.0001
            x.item()

    return call


def measure_targets(prefix: str, trial: float, reps: int, skip_large: bool) -> dict:
    mx = importlib.import_module(f"{prefix}.core")
    nn = importlib.import_module(f"{prefix}.nn")
    optim = importlib.import_module(f"{prefix}.optimizers")
    rows = {}
    if not skip_large:
        eager_gelu, compiled_gelu = large_gelu_cases(mx)
        rows["gelu (32,1000,4096)"] = (time_large_us(eager_gelu, reps), time_large_us(compiled_gelu, reps))
        del eager_gelu, compiled_gelu  # free gelu's 512 MB arrays before the next large case
        rows["random.uniform (32,1000,4096)"] = (time_large_us(uniform_case(mx), reps), None)
    rows["training step"] = (time_us(step_case(mx, nn, optim), trial),
                             time_us(step_case(mx, nn, optim, compiled=True), trial))
    call, tokens = decode_case(mx, nn)
    rows["tiny Llama decode, per token"] = (time_us(call, trial) / tokens, None)
    rows["200 scalar ops with .item()"] = (time_us(scalar_item_case(mx), trial), None)
    return rows


def print_targets(results: dict, copyto_us) -> None:
    print("## eager targets (issue 10), us (lower is better)\n")
    has_mlx = "mlx" in results
    print("| case | kiln eager | kiln compiled | MLX eager | kiln eager / compiled | kiln eager / MLX |")
    print("|---|---|---|---|---|---|")
    for case, (eager_us, compiled_us) in results["kiln"].items():
        mlx_us = results["mlx"][case][0] if has_mlx else None
        cells = [f"{eager_us:.1f}", "-" if compiled_us is None else f"{compiled_us:.1f}",
                 "-" if mlx_us is None else f"{mlx_us:.1f}",
                 "-" if compiled_us is None else f"{eager_us / compiled_us:.2f}x",
                 "-" if mlx_us is None else f"{eager_us / mlx_us:.2f}x"]
        print(f"| {case} | " + " | ".join(cells) + " |")
    if copyto_us is not None:
        uniform = results["kiln"]["random.uniform (32,1000,4096)"][0]
        print(f"\nnp.copyto of the same bytes: {copyto_us:.1f} us; kiln uniform / copyto = {uniform / copyto_us:.2f}x")
    print()


# -- part 2: per-op costs ----------------------------------------------------------------------------
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
    parser.add_argument("--large-reps", type=int, default=5, help="timed calls per (32,1000,4096) case")
    parser.add_argument("--skip-large", action="store_true", help="leave out the (32,1000,4096) cases")
    args = parser.parse_args()
    targets = {"kiln": measure_targets("kiln", args.trial, args.large_reps, args.skip_large)}
    # the baseline right after kiln's rows, before MLX fills memory with its own arrays
    copyto_us = None if args.skip_large else time_large_us(copyto_case(), args.large_reps)
    if have_mlx():
        targets["mlx"] = measure_targets("mlx", args.trial, args.large_reps, args.skip_large)
    print_targets(targets, copyto_us)
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
            json.dump({"targets": targets, "copyto_us": copyto_us, "ops": results}, f, indent=2)


if __name__ == "__main__":
    main()
