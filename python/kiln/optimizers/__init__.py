"""kiln.optimizers: MLX's optimizers and learning-rate schedules (`import kiln.optimizers as optim`)."""

from .optimizers import (  # noqa: F401
    SGD,
    AdaDelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    MultiOptimizer,
    Muon,
    Optimizer,
    RMSprop,
    clip_grad_norm,
)
from .schedulers import (  # noqa: F401
    cosine_decay,
    exponential_decay,
    join_schedules,
    linear_schedule,
    step_decay,
)
