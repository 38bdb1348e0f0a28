"""Training: optimisers, schedules, metrics, checkpoints, the :class:`Trainer`, and YAML runs."""

from convscope.train.optim import (
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    RMSProp,
    make_optimizer,
)
from convscope.train.schedules import make_schedule
from convscope.train.trainer import Trainer

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "Optimizer", "RMSProp", "Trainer",
           "make_optimizer", "make_schedule"]
