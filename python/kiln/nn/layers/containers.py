"""Sequential: call modules (or callables) in order."""

from __future__ import annotations

from .base import Module


class Sequential(Module):
    """A layer that calls the passed callables in order.

    Args:
        modules (tuple of Callables): The modules to call in order.
    """

    def __init__(self, *modules):
        super().__init__()
        self.layers = list(modules)

    def __call__(self, x):
        for m in self.layers:
            x = m(x)
        return x
