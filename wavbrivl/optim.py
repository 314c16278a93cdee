"""The optimisation step every trainer here takes, in one place."""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch


def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: Any = None,
         clip: tuple[Iterable[torch.nn.Parameter], float] | None = None) -> float:
    """Back-propagate, clip (``(parameters, max_norm)``), step optimiser and schedule, clear the gradients;
    returns the loss value. A non-finite loss stops the run: a diverged model is not worth saving."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"training diverged (loss {value})")
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip[0], clip[1])
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return value
