"""Network building blocks: MLP encoders/decoders whose widths come from the data."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS = {
    # LeakyReLU(0.01) as in the Deep SAD reference networks.
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


def widths_for(n_features: int) -> tuple[list[int], int]:
    """Return (hidden widths, representation size) derived from the number of features.

    The rule reproduces the Deep SAD reference networks without naming data sets: the first
    layer is the power of two nearest to half the input width, clipped to [32, 128]; the next
    halves; the representation is a quarter of the first layer but never wider than the
    largest power of two not above the input width (a code must compress). Arrhythmia (274
    features) gets 128-64 -> 32, cardio/satellite/satimage-2/shuttle (9 to 36) 32-16 -> 8,
    thyroid (6) 32-16 -> 4: exactly the reference's ``*_mlp`` networks.
    """
    if n_features < 1:
        raise ValueError("need at least one feature")
    half = max(n_features / 2.0, 1.0)
    first = int(min(max(2 ** round(math.log2(half)), 32), 128))
    rep = min(first // 4, 2 ** int(math.floor(math.log2(n_features))))
    return [first, first // 2], max(rep, 1)


class MLP(nn.Sequential):
    """Fully connected stack: [Linear -> (BatchNorm) -> activation] per hidden layer, then Linear.

    ``bias=False`` with ``bn_affine=False`` gives the bias-free network that Deep SVDD / Deep
    SAD need to rule out the trivial constant solution (Ruff et al. 2018, Prop. 2).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        bias: bool = True,
        batchnorm: bool = False,
        bn_affine: bool = True,
        activation: str = "leaky_relu",
        final_activation: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        dims = [int(in_dim), *[int(h) for h in hidden]]
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            layers.append(nn.Linear(d_in, d_out, bias=bias))
            if batchnorm:
                # eps=1e-4 as in the reference implementation.
                layers.append(nn.BatchNorm1d(d_out, eps=1e-4, affine=bn_affine))
            layers.append(_ACTIVATIONS[activation]())
        layers.append(nn.Linear(dims[-1], int(out_dim), bias=bias))
        if final_activation:
            layers.append(_ACTIVATIONS[activation]())
        super().__init__(*layers)


@torch.no_grad()
def init_recurrent(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Return ``module`` with every LSTM/GRU/RNN weight and bias re-drawn from ``generator``.

    ``init_module`` re-draws only Linear and Conv layers; recurrent layers would otherwise keep
    the draw from torch's global generator. This uses torch's own default for them, uniform in
    +-1/sqrt(hidden_size), drawn on the CPU (the generator's device) and copied to wherever the
    layer lives.
    """
    for m in module.modules():
        if isinstance(m, nn.RNNBase):
            bound = 1.0 / math.sqrt(m.hidden_size) if m.hidden_size > 0 else 0.0
            for param in m.parameters():
                fresh = torch.empty(param.shape).uniform_(-bound, bound, generator=generator)
                param.copy_(fresh.to(param.device))
    return module
