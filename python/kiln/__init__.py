"""kiln: an MLX-compatible array library whose centre is a graph compiler.

Use it as MLX: `import kiln.core as mx`, `import kiln.nn as nn`, `import kiln.optimizers as optim`.
"""

__version__ = "0.1.0"
