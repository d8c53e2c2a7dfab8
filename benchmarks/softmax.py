"""Softmax over the last axis, (4096, 4096) float32 by default (perf-anchors section 7): kiln compiled
(one row kernel: max, exp, sum and divide fused), kiln compiled with row fusion off (the previous program:
numpy max, fused subtract/exp, numpy sum, fused divide), numpy, MLX mx.compile, torch.compile and jax.jit.
Milliseconds per call (median of 5 trials), effective GB/s at 8 bytes per element (one read, one write),
max abs error against a float64 numpy softmax. Libraries that are not installed are skipped.

    python benchmarks/softmax.py [--rows 4096] [--cols 4096] [--trials 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def time_ms(fn, trials: int) -> tuple[float, float]:
    """(first call seconds (tracing and compiling included), median ms per call over `trials` trials)."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    runs = []
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(3):
            fn()
        runs.append((time.perf_counter() - t) / 3 * 1e3)
    return first, statistics.median(runs)


def anchor(ns, x):
    e = ns.exp(x - ns.max(x, -1, keepdims=True))
    return e / ns.sum(e, -1, keepdims=True)


def kiln_cases(x):
    import kiln.core as mx
    from kiln.core import engine

    xa = mx.array(x)
    mx.eval(xa)
    fused = mx.compile(lambda a: anchor(mx, a))
    cases = {"kiln mx.compile (row kernel)": lambda: np.array(fused(xa), copy=False)}
    if engine.available():
        # The program before row fusion: reductions never join a region.
        def unfused_program():
            original = engine._row_reduction
            engine._row_reduction = lambda eqn: False
            try:
                f = mx.compile(lambda a: anchor(mx, a))
                f(xa)
            finally:
                engine._row_reduction = original
            return f

        before = unfused_program()
        cases["kiln mx.compile (reductions unfused)"] = lambda: np.array(before(xa), copy=False)
    return cases


def other_cases(x):
    cases = {"numpy": lambda: anchor(np, x)}
    try:
        import mlx.core as mlx

        xm = mlx.array(x)
        f = mlx.compile(lambda a: anchor(mlx, a))
        cases["mlx mx.compile"] = lambda: np.array(f(xm), copy=False)
    except ImportError:
        pass
    try:
        import torch

        xt = torch.from_numpy(x)
        ft = torch.compile(lambda a: _torch_softmax(torch, a))
        cases["torch.compile"] = lambda: ft(xt).numpy()
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(x)
        fj = jax.jit(lambda a: anchor(jnp, a))
        cases["jax.jit"] = lambda: np.asarray(fj(xj).block_until_ready())
    except ImportError:
        pass
    return cases


def _torch_softmax(torch, a):
    e = torch.exp(a - torch.amax(a, -1, keepdim=True))
    return e / torch.sum(e, -1, keepdim=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    x = np.random.default_rng(0).standard_normal((args.rows, args.cols)).astype(np.float32)
    ref = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    cases = {**kiln_cases(x), **other_cases(x)}
    rows = []
    print(f"softmax ({args.rows}, {args.cols}) float32")
    print(f"{'impl':40s} {'ms/call':>9s} {'eff GB/s':>9s} {'first s':>8s} {'max abs err':>12s}")
    for name, fn in cases.items():
        first, ms = time_ms(fn, args.trials)
        err = float(np.max(np.abs(np.asarray(fn(), dtype=np.float64) - ref)))
        gbs = x.size * 8 / (ms * 1e-3) / 1e9
        rows.append({"impl": name, "ms": ms, "gbs": gbs, "first_s": first, "max_abs_err": err})
        print(f"{name:40s} {ms:9.2f} {gbs:9.2f} {first:8.2f} {err:12.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
