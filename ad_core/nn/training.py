"""The one training loop every deep detector uses, plus seeding and batched inference.

Design choices, each measured or required by the detector contract:

- Mini-batches are drawn by indexing one contiguous tensor with a permutation from a *local*
  ``torch.Generator``; no ``DataLoader``/``TensorDataset``, whose per-sample collation costs
  more than a small MLP's forward and backward pass on the CPU.
- Seeding never touches torch's global RNG: weights are re-initialised from the local
  generator (:func:`init_module`) and every random draw in a detector takes that generator.
- ``MultiStepLR`` is stepped once per epoch *after* the optimiser steps (the order torch
  expects; the Deep SAD reference code steps it first, a torch 1.x idiom).
- A final mini-batch of a single row is merged into the previous one: BatchNorm cannot
  normalise one row in training mode, and dropping it would silently skip data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


class FitCancelled(RuntimeError):
    """Raised by ``fit`` when its progress callback returned ``False``."""


ProgressCallback = Callable[[dict[str, Any]], Any]


@dataclass
class TrainConfig:
    """Optimisation settings of one training stage."""

    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-6
    lr_milestones: Sequence[int] = field(default_factory=tuple)
    device: str = "auto"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to train on: CUDA when present and asked for by ``auto``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"The device must be 'auto', 'cpu' or 'cuda' (or 'cuda:N'), not {device!r}."
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"The device {device!r} was asked for, but this machine has no CUDA GPU; "
            "use 'auto' or 'cpu'."
        )
    return chosen


def make_generator(random_state: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a torch generator seeded from ``random_state`` (fresh entropy when ``None``)."""
    gen = torch.Generator(device=device)
    if random_state is None:
        random_state = int(np.random.SeedSequence().generate_state(1)[0])
    gen.manual_seed(int(random_state))
    return gen


@torch.no_grad()
def init_module(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Return ``module`` with Linear/Conv weights re-drawn from ``generator``.

    Uses the same distributions as torch's defaults (Kaiming-uniform with a=sqrt(5), bias
    uniform in +-1/sqrt(fan_in)) so behaviour matches an ordinarily built network, while the
    global RNG stays untouched.
    """
    for m in module.modules():
        if isinstance(
            m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose1d | nn.ConvTranspose2d
        ):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return module


def _batch_slices(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Return [start, stop) pairs covering n rows; a trailing batch of one row is merged."""
    bounds = list(range(0, n, batch_size)) + [n]
    pairs = list(zip(bounds[:-1], bounds[1:], strict=True))
    if len(pairs) > 1 and pairs[-1][1] - pairs[-1][0] == 1:
        last = pairs.pop()
        pairs[-1] = (pairs[-1][0], last[1])
    return pairs


def fit_module(
    module: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    tensors: Sequence[torch.Tensor],
    cfg: TrainConfig,
    *,
    generator: torch.Generator,
    callback: ProgressCallback | None = None,
    stage: str = "train",
    parameters: Sequence[nn.Parameter] | None = None,
) -> list[float]:
    """Train ``module`` by mini-batch Adam on ``loss_fn``; return the mean loss per epoch.

    ``loss_fn(module, *batch)`` receives the rows of every tensor in ``tensors`` for one
    mini-batch (all tensors share their first dimension and live on the training device).
    ``callback`` gets ``{"stage", "epoch", "n_epochs", "loss"}`` after each epoch; if it returns
    ``False`` the fit stops with :class:`FitCancelled`.
    """
    if cfg.epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {cfg.epochs}")
    n = int(tensors[0].shape[0])
    params = list(parameters) if parameters is not None else list(module.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    milestones = sorted(int(m) for m in cfg.lr_milestones if 0 < int(m) < max(cfg.epochs, 1))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    batch_size = max(1, min(int(cfg.batch_size), n))
    slices = _batch_slices(n, batch_size)
    history: list[float] = []
    module.train()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n, generator=generator).to(tensors[0].device)
        total = torch.zeros((), device=tensors[0].device)
        for start, stop in slices:
            idx = perm[start:stop]
            batch = [t.index_select(0, idx) for t in tensors]
            loss = loss_fn(module, *batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * (stop - start)
        scheduler.step()
        epoch_loss = float(total) / n
        history.append(epoch_loss)
        if callback is not None:
            event = {"stage": stage, "epoch": epoch, "n_epochs": cfg.epochs, "loss": epoch_loss}
            if callback(event) is False:
                module.eval()
                raise FitCancelled(f"Training was cancelled during {stage} epoch {epoch}.")
        if not math.isfinite(epoch_loss):
            module.eval()
            raise FloatingPointError(
                f"The training loss became {epoch_loss} in {stage} epoch {epoch}; "
                "try a smaller learning rate or check the input scaling."
            )
    module.eval()
    return history


def predict_batched(
    fn: Callable[[torch.Tensor], torch.Tensor],
    X: torch.Tensor,
    batch_size: int = 16384,
) -> torch.Tensor:
    """Return ``fn`` applied to ``X`` in row batches, concatenated (no autograd)."""
    outs = []
    with torch.inference_mode():
        for start in range(0, X.shape[0], batch_size):
            outs.append(fn(X[start : start + batch_size]))
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)
