"""`python -m kiln`: a tour of the compile guide, run on kiln, with a speed table.

Each code block of the guide runs with only the import changed; its output is printed under it.
`--quick` uses a smaller gelu shape for the timing table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import sys
import textwrap
import time

BLOCKS = [
    ("Basics of compile", """
def fun(x, y):
    return mx.exp(-x) + y

x = mx.array(1.0)
y = mx.array(2.0)

# Regular call, no compilation
# Prints: array(2.36788, dtype=float32)
print(fun(x, y))

# Compile the function
compiled_fun = mx.compile(fun)

# Prints: array(2.36788, dtype=float32)
print(compiled_fun(x, y))
"""),
    ("Calls hit the cache", """
calls = []
def fun(x, y):
    calls.append(1)
    return mx.exp(-x) + y

compiled_fun = mx.compile(fun)
compiled_fun(x, y)          # Compiled here
compiled_fun(x, y)          # Not compiled again
mx.compile(fun)(x, y)       # Not compiled again
print("Python body ran", len(calls), "time(s)")
"""),
    ("Debugging: evaluating inside a trace is an error", """
@mx.compile
def fun(x):
    z = -x
    print(z)  # Crash
    return mx.exp(z)

try:
    fun(mx.array(5.0))
except Exception as e:
    print(type(e).__name__ + ":", str(e)[:110] + "...")

mx.disable_compile()
fun(mx.array(5.0))  # Okay: prints array(-5, dtype=float32)
mx.enable_compile()
"""),
    ("Pure functions: outputs=", """
from functools import partial

state = []

# Tell compile to capture state as an output
@partial(mx.compile, outputs=state)
def fun(x, y):
    z = x + y
    state.append(z)
    return mx.exp(z)

fun(mx.array(1.0), mx.array(2.0))
# Prints [array(3, dtype=float32)]
print(state)
"""),
    ("Constants are frozen; inputs= reads state on every call", """
state = [mx.array(1.0)]

@mx.compile
def frozen(x):
    return x + state[0]

@partial(mx.compile, inputs=state)
def live(x):
    return x + state[0]

print(frozen(mx.array(1.0)), live(mx.array(1.0)))
state[0] = mx.array(5.0)
# frozen still prints array(2, dtype=float32); live prints array(6, dtype=float32)
print(frozen(mx.array(1.0)), live(mx.array(1.0)))
"""),
    ("Compiling a training graph", """
# 4 examples with 10 features each
x = mx.random.uniform(shape=(4, 10))

# 0, 1 targets
y = mx.array([0, 1, 0, 1])

# Simple linear model
model = nn.Linear(10, 1)

# SGD with momentum
optimizer = optim.SGD(learning_rate=0.1, momentum=0.8)

def loss_fn(model, x, y):
    logits = model(x).squeeze()
    return nn.losses.binary_cross_entropy(logits, y)

# The state that will be captured as input and output
state = [model.state, optimizer.state]

@partial(mx.compile, inputs=state, outputs=state)
def step(x, y):
    loss_and_grad_fn = nn.value_and_grad(model, loss_fn)
    loss, grads = loss_and_grad_fn(model, x, y)
    optimizer.update(model, grads)
    return loss

# Perform 10 steps of gradient descent
for it in range(10):
    loss = step(x, y)
    # Evaluate the model and optimizer state
    mx.eval(state)
    print(loss)
"""),
    ("Transformations with compile", """
grad_fn = mx.grad(mx.exp)

compiled_grad_fn = mx.compile(grad_fn)

# Prints: array(2.71828, dtype=float32)
print(grad_fn(mx.array(1.0)))

# Also prints: array(2.71828, dtype=float32)
print(compiled_grad_fn(mx.array(1.0)))

@mx.compile
def inner(x):
    return mx.exp(-mx.abs(x))

def outer(x):
    return inner(inner(x))

fun = mx.compile(outer)
print(fun(mx.array(1.0)))
"""),
    ("Shapeless compilation", """
def fun(x, y):
    return mx.abs(x + y)

compiled_fun = mx.compile(fun, shapeless=True)

x = mx.array(1.0)
y = mx.array(-2.0)

# First call compiles the function
print(compiled_fun(x, y))

# Second call with different shapes
# does not recompile the function
x = mx.array([1.0, -6.0])
y = mx.array([-2.0, 3.0])
print(compiled_fun(x, y))

def fun(x):
    return x.reshape(x.shape[0] * x.shape[1], -1)

compiled_fun = mx.compile(fun, shapeless=True)
out = compiled_fun(mx.random.uniform(shape=(2, 3, 4)))
try:
    # Error, can't reshape (5, 5, 3) to (6, -1)
    out = compiled_fun(mx.random.uniform(shape=(5, 5, 3)))
except ValueError as e:
    print("ValueError:", e)

def fun(x):
    return x.flatten(0, 1)

compiled_fun = mx.compile(fun, shapeless=True)
print(compiled_fun(mx.random.uniform(shape=(2, 3, 4))).shape)
# Ok
print(compiled_fun(mx.random.uniform(shape=(5, 5, 3))).shape)
"""),
]


def run_blocks(namespace: dict) -> None:
    for title, code in BLOCKS:
        print(f"\n## {title}\n")
        print(textwrap.indent(code.strip("\n"), "    "))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, f"<tour: {title}>", "exec"), namespace)
            except Exception as e:  # a tour keeps going; the error is shown
                print(f"FAILED: {type(e).__name__}: {e}")
        print("  output:")
        print(textwrap.indent(out.getvalue().rstrip("\n") or "(none)", "    | "))


# A cell's samples: each times repeated calls for a slice of the budget; the cell shows their median.
_MAX_SAMPLES = 5
_CALLS_PER_SAMPLE = 200


def _progress(text: str) -> None:
    """What is being measured now, on stderr (the table itself goes to stdout)."""
    print(f"  measuring {text} ...", file=sys.stderr, flush=True)


def _median_time_per_call(fun, x, mx, budget_s: float, label: str) -> tuple:
    """(median seconds per call, number of samples): as many samples as fit in the budget, at least one."""
    _progress(f"{label} (up to {_MAX_SAMPLES} samples in about {budget_s:g} s)")
    start = time.perf_counter()
    mx.eval(fun(x))  # warm-up (a compiled function traces and compiles here)
    first = time.perf_counter() - start
    samples = []
    spent = 0.0
    while len(samples) < _MAX_SAMPLES and (not samples or spent + first < budget_s):
        if first > 1.0:  # slow calls: say what is happening between the lines of the table
            _progress(f"{label}: sample {len(samples) + 1}, about {first:.0f} s")
        n, start = 0, time.perf_counter()
        while True:
            mx.eval(fun(x))
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed > budget_s / _MAX_SAMPLES or n >= _CALLS_PER_SAMPLE:
                break
        samples.append(elapsed / n)
        spent += elapsed
    return statistics.median(samples), len(samples)


def speed_table(mx, quick: bool, shapes=None) -> None:
    """Time the guide's gelu, uncompiled and compiled, at each shape (the guide's shapes by default)."""

    def gelu(x):
        return x * (1 + mx.erf(x / math.sqrt(2))) / 2

    if shapes is None:
        shapes = [(1024,), (1 << 20,)] if quick else [(1024,), (1 << 20,), (32, 1000, 4096)]
    from kiln.core import engine_status

    print(f"\n## Speed: the guide's gelu, uncompiled vs mx.compile ({engine_status()})\n")
    print("eager = gelu called without mx.compile: kiln evaluates its lazy graph when the result is needed, large")
    print("graphs through the engine (fused, cached by structure), small ones op by op on the numpy reference")
    print("interpreter. compiled = mx.compile(gelu): one fused kernel. Each cell is the median time per call over")
    print("several samples (the count is shown; the largest shape's eager cell may have only one).\n")
    print(f"| {'shape':<16} | {'eager (uncompiled)':>18} | {'compiled':>12} | {'speed-up':>8} | {'samples':>7} |")
    print(f"|{'-' * 18}|{'-' * 20}|{'-' * 14}|{'-' * 10}|{'-' * 9}|")
    compiled = mx.compile(gelu)
    for shape in shapes:
        x = mx.random.uniform(shape=shape)
        mx.eval(x)
        budget = 2.0 if math.prod(shape) < 1e8 else 12.0
        eager, n_eager = _median_time_per_call(gelu, x, mx, budget, f"eager gelu at {shape}")
        comp, n_comp = _median_time_per_call(compiled, x, mx, budget, f"compiled gelu at {shape}")
        print(f"| {str(shape):<16} | {_fmt(eager):>18} | {_fmt(comp):>12} | {eager / comp:>7.1f}x | "
              f"{f'{n_eager} / {n_comp}':>7} |", flush=True)


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kiln", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the largest gelu shape")
    args = parser.parse_args()

    import kiln.core as mx
    import kiln.nn as nn
    import kiln.optimizers as optim

    print("# kiln: a tour of the compile guide (import kiln.core as mx)")
    mx.random.seed(0)
    run_blocks({"mx": mx, "nn": nn, "optim": optim, "math": math, "os": os})
    speed_table(mx, args.quick)


if __name__ == "__main__":
    main()
