"""Half-precision and quantized inference at the memory-bandwidth limit: one run, every row against numpy's
float32 matrix-vector product (the bandwidth reference) or numpy's float32 GEMM (the compute reference) of the
same shape, measured in the same process. Eager kiln (a plain decode loop, no `mx.compile`) throughout.

    python benchmarks/lowp.py [--peers] [--layers 6] [--tokens 8] [--trials 3]

--peers adds real MLX (and torch for the matrix-vector rows) where installed. Times are the median of
`--trials` trials; each trial is the mean over enough calls to last about 0.3 s.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, trials: int, budget: float = 0.3) -> float:
    """Seconds per call: median over `trials` of the mean over n calls (n fills about `budget` seconds)."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    n = max(1, int(budget / once))
    results = []
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        results.append((time.perf_counter() - start) / n)
    return statistics.median(results)


def load_llama(core_module: str, nn_module: str):
    """examples/llama.py with its two import lines pointed at another MLX-compatible library."""
    text = (ROOT / "examples" / "llama.py").read_text()
    text = text.replace("import kiln.core as mx", f"import {core_module} as mx")
    text = text.replace("import kiln.nn as nn", f"import {nn_module} as nn")
    name = f"llama_{core_module.replace('.', '_')}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(text, str(ROOT / "examples" / "llama.py"), "exec"), module.__dict__)
    return module


class Table:
    def __init__(self, title: str, reference: str, ref_seconds: float):
        self.title, self.reference, self.ref = title, reference, ref_seconds
        self.rows = []

    def add(self, name: str, seconds: float, target: float | None = None, nbytes: int | None = None,
            ref: float | None = None):
        ratio = seconds / (ref or self.ref)
        verdict = "" if target is None else ("met" if ratio <= target else "MISSED")
        gbs = f"{nbytes / seconds / 1e9:.1f}" if nbytes else ""
        self.rows.append((name, f"{seconds * 1e3:.2f}", f"{ratio:.2f}", f"<= {target}" if target else "", verdict, gbs))
        print(f"  {name}: {seconds * 1e3:.2f} ms ({ratio:.2f}x {self.reference})", flush=True)

    def markdown(self) -> str:
        head = f"| {self.title} | ms | x {self.reference} | target | | GB/s |\n|---|---|---|---|---|---|\n"
        return head + "\n".join("| " + " | ".join(r) + " |" for r in self.rows)


# -- matrix-vector: x (1, K) @ W.T, W (N, K) ------------------------------------------------------------------
def matvec(opts, peers: dict) -> Table:
    import kiln.core as mx

    n = k = opts.size
    rng = np.random.default_rng(0)
    w32 = rng.standard_normal((n, k), dtype=np.float32)
    x32 = rng.standard_normal((1, k), dtype=np.float32)
    print(f"matrix-vector x (1, {k}) @ W.T, W ({n}, {k}):", flush=True)
    table = Table(f"x (1,{k}) @ W.T, W ({n},{k})", "numpy f32 GEMV", timed(lambda: x32 @ w32.T, opts.trials))
    table.add("numpy float32 GEMV", table.ref, nbytes=w32.nbytes)
    targets = {"float32": 1.15, "float16": 0.6, "bfloat16": 0.6}
    for name, target in targets.items():
        dtype = getattr(mx, name)
        w, x = mx.array(w32).astype(dtype), mx.array(x32).astype(dtype)
        mx.eval(w, x)
        table.add(f"kiln {name}", timed(lambda: mx.eval(x @ w.T), opts.trials), target, w.nbytes)
        del w
    for bits, target in ((8, 0.4), (4, 0.25)):
        wq, s, b = mx.quantize(mx.array(w32).astype(mx.float16), group_size=64, bits=bits)
        x = mx.array(x32).astype(mx.float16)
        mx.eval(wq, s, b, x)
        nbytes = wq.nbytes + s.nbytes + b.nbytes
        table.add(f"kiln {bits}-bit (group 64, float16 scales)",
                  timed(lambda: mx.eval(mx.quantized_matmul(x, wq, s, b, group_size=64, bits=bits)), opts.trials),
                  target, nbytes)
        del wq
    mlx = peers.get("mlx")
    if mlx is not None:
        for name in ("float32", "float16", "bfloat16"):
            dtype = getattr(mlx, name)
            w, x = mlx.array(w32).astype(dtype), mlx.array(x32).astype(dtype)
            mlx.eval(w, x)
            table.add(f"MLX {name}", timed(lambda: mlx.eval(x @ w.T), opts.trials), nbytes=w.nbytes)
        for bits in (8, 4):
            wq, s, b = mlx.quantize(mlx.array(w32).astype(mlx.float16), group_size=64, bits=bits)
            x = mlx.array(x32).astype(mlx.float16)
            mlx.eval(wq, s, b, x)
            table.add(f"MLX {bits}-bit", timed(lambda: mlx.eval(mlx.quantized_matmul(x, wq, s, b, group_size=64,
                                                                                     bits=bits)), opts.trials))
    torch = peers.get("torch")
    if torch is not None:
        for name in ("float32", "float16", "bfloat16"):
            w = torch.from_numpy(w32).to(getattr(torch, name))
            x = torch.from_numpy(x32).to(getattr(torch, name))
            table.add(f"torch {name}", timed(lambda: x @ w.T, opts.trials), nbytes=w.numel() * w.element_size())
    return table


def numpy_gemv_gbs(opts) -> float:
    """The bandwidth numpy's float32 matrix-vector product reaches (GB/s), when the matvec rows are skipped."""
    rng = np.random.default_rng(0)
    w32 = rng.standard_normal((opts.size, opts.size), dtype=np.float32)
    x32 = rng.standard_normal((1, opts.size), dtype=np.float32)
    return w32.nbytes / timed(lambda: x32 @ w32.T, opts.trials) / 1e9


# -- matrix-matrix: (M, K) @ (K, N) ---------------------------------------------------------------------------
def matmat(opts) -> Table:
    import kiln.core as mx

    m, k, n = opts.gemm
    rng = np.random.default_rng(1)
    a32 = rng.standard_normal((m, k), dtype=np.float32)
    w32 = rng.standard_normal((n, k), dtype=np.float32)
    print(f"matrix-matrix ({m}, {k}) @ W.T, W ({n}, {k}):", flush=True)
    table = Table(f"({m},{k}) @ W.T, W ({n},{k})", "numpy f32 GEMM", timed(lambda: a32 @ w32.T, opts.trials))
    table.add("numpy float32 GEMM", table.ref)
    for name in ("float16", "bfloat16"):
        dtype = getattr(mx, name)
        a, w = mx.array(a32).astype(dtype), mx.array(w32).astype(dtype)
        mx.eval(a, w)
        table.add(f"kiln {name}", timed(lambda: mx.eval(a @ w.T), opts.trials), 1.6)
    wq, s, b = mx.quantize(mx.array(w32).astype(mx.float16), group_size=64, bits=4)
    a = mx.array(a32).astype(mx.float16)
    mx.eval(wq, s, b, a)
    table.add("kiln 4-bit", timed(lambda: mx.eval(mx.quantized_matmul(a, wq, s, b, group_size=64, bits=4)),
                                  opts.trials), 1.8)
    return table


# -- Llama decode -------------------------------------------------------------------------------------------------
def weight_bytes(model, tree_flatten) -> int:
    """Bytes of weights one decoded token reads: every parameter but the embedding table (one row of it)."""
    total = 0
    for name, value in tree_flatten(model.parameters()):
        if name.startswith("tok_embeddings"):
            continue
        total += value.nbytes
    return total


def decode_ms(llama, mx_module, model, tokens: int, trials: int) -> float:
    """Milliseconds per generated token of the uncompiled greedy loop (the prompt pass excluded)."""
    llama.generate(model, [1, 2, 3, 4], 2)
    results = []
    for _ in range(trials):
        start = time.perf_counter()
        llama.generate(model, [1, 2, 3, 4], 0)
        prompt = time.perf_counter() - start
        start = time.perf_counter()
        llama.generate(model, [1, 2, 3, 4], tokens)
        results.append((time.perf_counter() - start - prompt) / tokens)
    return statistics.median(results) * 1e3


def decode(opts, peers: dict, gemv_gbs: float) -> Table:
    import kiln.core as mx
    from kiln.utils import tree_flatten

    llama = load_llama("kiln.core", "kiln.nn")
    args = llama.ModelArgs(dim=2048, n_layers=opts.layers, n_heads=32, n_kv_heads=8, hidden_dim=5632,
                           vocab_size=32000)
    print(f"Llama decode (dim 2048, {opts.layers} layers, GQA 32/8, ffn 5632, vocab 32000), ms/token:", flush=True)
    table = Table(f"Llama decode, {opts.layers} layers, per token", "bound", 1.0)
    bounds = {}
    rows = [("float32", None, 1.5), ("float16", None, 1.5), ("bfloat16", None, 1.5), ("float16", 8, 1.6),
            ("float16", 4, 1.6)]
    for dtype_name, bits, target in rows:
        model = llama.build(args, getattr(mx, dtype_name), bits)
        nbytes = weight_bytes(model, tree_flatten)
        bound_ms = nbytes / gemv_gbs / 1e6
        ms = decode_ms(llama, mx, model, opts.tokens, opts.trials)
        label = f"kiln {dtype_name}" + (f" {bits}-bit" if bits else "")
        bounds[(dtype_name, bits)] = bound_ms / 1e3
        table.add(f"{label} (bound {bound_ms:.1f} ms)", ms / 1e3, target, nbytes, ref=bound_ms / 1e3)
        del model
        gc.collect()
    mlx = peers.get("mlx")
    if mlx is not None:
        mlx_llama = load_llama("mlx.core", "mlx.nn")
        for dtype_name, bits, _ in rows:
            model = mlx_llama.build(args, getattr(mlx, dtype_name), bits)
            # MLX's CPU quantized decode takes seconds per token: one token, one trial
            tokens, trials = (1, 1) if bits else (opts.tokens, opts.trials)
            ms = decode_ms(mlx_llama, mlx, model, tokens, trials)
            label = f"MLX {dtype_name}" + (f" {bits}-bit" if bits else "") + (" (1 token)" if bits else "")
            table.add(label, ms / 1e3, ref=bounds[(dtype_name, bits)])
            del model
            gc.collect()
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", action="store_true", help="add real MLX and torch rows where installed")
    parser.add_argument("--size", type=int, default=8192, help="N = K of the matrix-vector rows")
    parser.add_argument("--gemm", type=int, nargs=3, default=(512, 4096, 4096), metavar=("M", "K", "N"))
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=(), choices=("matvec", "matmat", "decode"))
    opts = parser.parse_args()
    import kiln.core as mx
    from kiln.core import engine

    peers = {}
    if opts.peers:
        for name, module in (("mlx", "mlx.core"), ("torch", "torch")):
            try:
                peers[name] = importlib.import_module(module)
            except ImportError:
                print(f"({name} not installed: no {name} rows)")
        if "mlx" in peers:
            importlib.import_module("mlx.nn")
    print(f"kiln engine: {engine.available()}, threads {engine.build_info().get('num_threads')}", flush=True)
    tables = []
    gemv = None
    if "matvec" not in opts.skip:
        gemv = matvec(opts, peers)
        tables.append(gemv)
    if "matmat" not in opts.skip:
        tables.append(matmat(opts))
    if "decode" not in opts.skip:
        gbs = numpy_gemv_gbs(opts) if gemv is None else opts.size ** 2 * 4 / gemv.ref / 1e9
        print(f"(bound = weight bytes a token reads / {gbs:.1f} GB/s, numpy's float32 GEMV in this run)")
        tables.append(decode(opts, peers, gbs))
    del mx
    print()
    for table in tables:
        print(table.markdown())
        print()


if __name__ == "__main__":
    main()
