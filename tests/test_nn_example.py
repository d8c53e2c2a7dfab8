"""The end-to-end example: an MLP trained with a compiled step on synthetic data; its loss falls."""

import importlib.util
import pathlib

import kiln.core as mx
import pytest


@pytest.mark.skipif(not hasattr(mx, "compile"), reason="compile not available")
def test_train_mlp_example_loss_falls():
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_mlp.py"
    spec = importlib.util.spec_from_file_location("train_mlp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    losses, accuracy = module.main(steps=60)
    assert losses[-1] < 0.5 * losses[0]
    assert accuracy > 0.8
