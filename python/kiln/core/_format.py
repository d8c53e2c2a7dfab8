"""MLX's repr/str format for arrays (temporary simple version)."""

import numpy as np


def format_array(data: np.ndarray, dtype) -> str:
    return f"array({data.tolist()}, dtype={dtype.name})"
