"""kiln.nn: MLX's model-building layer (`import kiln.nn as nn` runs code written for `mlx.nn`)."""

from . import init, losses  # noqa: F401
from .layers import *
from .layers import Module  # noqa: F401
from .utils import average_gradients, value_and_grad  # noqa: F401
