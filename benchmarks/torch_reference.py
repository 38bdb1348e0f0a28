"""The zoo's benchmark networks written in plain PyTorch (nn.Module, autograd, torch.optim), the
baseline every convscope timing is compared with. Same layers, sizes and losses as
:mod:`convscope.zoo`; PyTorch's own NCHW layout (channels_last memory format on a GPU)."""

from __future__ import annotations

import torch
from torch import nn


def lenet5() -> nn.Module:
    """conv 5×5×6 (pad 2) → pool 2 → conv 5×5×16 → pool 2 → fc 120 → fc 84 → fc 10, ReLU between."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def keypoints_net2() -> nn.Module:
    """conv 3×3×32 → pool 2 → conv 2×2×64 → pool 2 → conv 2×2×128 → pool 2 → fc 500 → fc 500 → fc 30."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(128 * 11 * 11, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 30),
    )


def cifar10_quick() -> nn.Module:
    """conv 5×5×32 → max pool 3/2 → ReLU → conv 5×5×32 → ReLU → avg pool 3/2 → conv 5×5×64 → ReLU →
    avg pool 3/2 → fc 64 → fc 10. convscope's pools are padded by one cell after (0, 1, 0, 1), which
    gives the windows of PyTorch's ceil_mode (as Caffe's pooling): the pools take ceil_mode instead
    of a padded copy, and average pooling then also leaves the missing cells out of the count."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Flatten(),
        nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


MODELS = {"lenet5": lenet5, "keypoints_net2": keypoints_net2, "cifar10_quick": cifar10_quick}


def loss_of(name: str):
    """The zoo model's objective: cross-entropy for the classifiers, mean squared error for keypoints."""
    if name == "keypoints_net2":
        return lambda scores, target: nn.functional.mse_loss(scores, target.reshape(len(target), -1))
    return nn.functional.cross_entropy


def training_step(model: nn.Module, loss, optimizer):
    """forward, loss, autograd backward, torch.optim step: one PyTorch training step."""
    def step(x, y):
        optimizer.zero_grad(set_to_none=True)  # no zeroing and adding: convscope sets new grads
        loss(model(x), y).backward()
        optimizer.step()

    return step


def make(name: str, device: str, lr: float = 1e-3):
    """(model, step function) for the zoo model `name` with SGD + Nesterov momentum 0.9."""
    model = MODELS[name]().to(device)
    if device != "cpu":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    return model, training_step(model, loss_of(name), optimizer)
