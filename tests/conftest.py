"""Shared fixtures: real MLX as an oracle (skipped where it is not installed)."""

import numpy as np
import pytest


@pytest.fixture
def mlx():
    """The real `mlx.core` module; tests that take it skip where MLX is not installed."""
    return pytest.importorskip("mlx.core")


@pytest.fixture
def mlx_numpy(mlx):
    """Convert an MLX array to numpy (bfloat16 through float32, which numpy's buffer protocol lacks)."""

    def convert(a):
        if a.dtype == mlx.bfloat16:
            a = a.astype(mlx.float32)
        return np.array(a)

    return convert
