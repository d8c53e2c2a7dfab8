"""kiln benchmarks beyond gelu: the compile guide's training step, and the first call of a compiled gelu
in a fresh process (empty kernel cache, then warm disk cache), each against real MLX when installed.

    python benchmarks/step_and_startup.py [--steps 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

STEP = textwrap.dedent("""
    import json, sys, time
    from functools import partial
    LIB = sys.argv[1]
    if LIB == "kiln":
        import kiln.core as mx, kiln.nn as nn, kiln.optimizers as optim
    else:
        import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
    mx.random.seed(0)
    x = mx.random.uniform(shape=(4, 10))
    y = mx.array([0, 1, 0, 1])
    model = nn.Linear(10, 1)
    optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)

    def loss_fn(model, x, y):
        return nn.losses.binary_cross_entropy(model(x).squeeze(), y)

    state = [model.state, optimizer.state]

    def eager_step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss

    step = partial(mx.compile, inputs=state, outputs=state)(eager_step)
    results = {}
    for name, fn in (("compiled", step), ("eager", eager_step)):
        for _ in range(20):
            mx.eval(fn(x, y), state)
        trials = []
        for _ in range(3):
            n = int(sys.argv[2])
            t = time.perf_counter()
            for _ in range(n):
                mx.eval(fn(x, y), state)
            trials.append((time.perf_counter() - t) / n)
        results[name] = sorted(trials)[1]
    print(json.dumps(results))
""")

FIRST_CALL = textwrap.dedent("""
    import json, math, sys, time
    LIB = sys.argv[1]
    t0 = time.perf_counter()
    if LIB == "kiln":
        import kiln.core as mx
    else:
        import mlx.core as mx
    t1 = time.perf_counter()
    x = mx.random.uniform(shape=(1024,))
    mx.eval(x)
    def gelu(x):
        return x * (1 + mx.erf(x / math.sqrt(2))) / 2
    f = mx.compile(gelu)
    t2 = time.perf_counter()
    mx.eval(f(x))
    t3 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "first_call": t3 - t2}))
""")


def run_child(code: str, args: list, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def have_mlx() -> bool:
    try:
        import mlx.core  # noqa: F401
    except ImportError:
        return False
    return True


def first_calls(lib: str) -> dict:
    """Median of 3 fresh processes with an empty cache, then 3 reusing the cache the first filled."""
    with tempfile.TemporaryDirectory() as tmp:
        cold, warm = [], []
        for i in range(3):
            env = dict(os.environ, KILN_CACHE_DIR=os.path.join(tmp, f"k{i}"), TMPDIR=os.path.join(tmp, f"t{i}"))
            os.makedirs(env["TMPDIR"])
            cold.append(run_child(FIRST_CALL, [lib], env)["first_call"])
            warm.append(run_child(FIRST_CALL, [lib], env)["first_call"])
    return {"cold": statistics.median(cold), "warm": statistics.median(warm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="steps per timing trial")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    libs = ["kiln"] + (["mlx"] if have_mlx() else [])
    results = {}
    for lib in libs:
        results[lib] = {"step": run_child(STEP, [lib, str(args.steps)], dict(os.environ)),
                        "first_call": first_calls(lib)}
    print("## The guide's training step (Linear(10, 1), SGD momentum 0.8, batch 4), us per step\n")
    print("| library | compiled | eager |")
    print("|---|---|---|")
    for lib in libs:
        s = results[lib]["step"]
        print(f"| {lib} | {s['compiled'] * 1e6:.1f} | {s['eager'] * 1e6:.1f} |")
    print("\n## First call of a compiled gelu on (1024,) in a fresh process, ms\n")
    print("| library | empty kernel cache | warm disk cache |")
    print("|---|---|---|")
    for lib in libs:
        f = results[lib]["first_call"]
        print(f"| {lib} | {f['cold'] * 1e3:.1f} | {f['warm'] * 1e3:.2f} |")
    if "mlx" in results:
        k, m = results["kiln"], results["mlx"]
        print(f"\nkiln compiled step is {m['step']['compiled'] / k['step']['compiled']:.2f}x MLX compiled's speed; "
              f"cold first call {m['first_call']['cold'] / k['first_call']['cold']:.2f}x, "
              f"warm {m['first_call']['warm'] / k['first_call']['warm']:.2f}x.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
