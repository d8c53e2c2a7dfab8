"""Data-parallel training of the README's MLP (examples/train_mlp.py) on N processes.

Run: python -m kiln.launch -n 4 examples/data_parallel.py    (or: mpirun -np 4 python examples/data_parallel.py)
Each process trains on 1/N of the global batch and `nn.average_gradients` averages the gradients (one
all-reduce per step, inside the compiled step), so every process applies the update one process would apply
to the whole batch: the printed losses equal those of `python examples/data_parallel.py` on one process.
"""

import argparse
import os
import sys
from functools import partial

import kiln.core as mx
import kiln.optimizers as optim
from kiln import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_mlp import MLP, spirals  # noqa: E402


def main(steps: int = 100):
    group = mx.distributed.init()
    rank, size = group.rank(), group.size()
    mx.random.seed(0)  # the same initial weights on every process
    x, y = spirals()
    if x.shape[0] % size:
        raise SystemExit(f"the global batch of {x.shape[0]} does not split evenly over {size} processes")
    shard = x.shape[0] // size
    x, y = x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]

    model = MLP(2, 64, 3)
    # No dropout: each process would draw its own mask, unlike one process drawing one for the whole batch.
    model.dropout = nn.Identity()
    optimizer = optim.AdamW(learning_rate=optim.cosine_decay(3e-2, steps, 1e-3), weight_decay=1e-4)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        grads = nn.average_gradients(grads)  # the mean of equal shards' mean gradients: the global one
        grads, _ = optim.clip_grad_norm(grads, max_norm=1.0)
        optimizer.update(model, grads)
        return mx.distributed.all_sum(loss) / size  # the loss on the global batch

    losses = []
    for it in range(steps):
        loss = step(x, y)
        mx.eval(state)
        losses.append(loss.item())
        if rank == 0 and (it % 10 == 0 or it == steps - 1):
            print(f"step {it:4d}  loss {losses[-1]:.6f}", flush=True)
    if rank == 0:
        print(f"{size} process(es), final loss {losses[-1]:.6f} (from {losses[0]:.6f})")
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    main(parser.parse_args().steps)
