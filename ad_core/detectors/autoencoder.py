"""Autoencoder anomaly detector: the reconstruction error of an MLP autoencoder.

References: Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with Neural
Networks", Science 2006; Sakurada & Yairi, "Anomaly Detection Using Autoencoders with
Nonlinear Dimensionality Reduction", MLSDA 2014 (reconstruction error as the anomaly score).

The network is a symmetric MLP (hidden widths and code size derived from the data unless set),
BatchNorm + LeakyReLU between layers, trained on the mean squared reconstruction error. The
score of a row is its squared reconstruction error summed over features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ad_core.detectors.base import DetectorInfo
from ad_core.detectors.torch_base import COMMON_DEEP_PARAMS, TorchDetector
from ad_core.nn import MLP


class AutoEncoderModel(nn.Module):
    """Encoder/decoder pair; forward returns the reconstruction."""

    def __init__(
        self,
        n_features: int,
        hidden: list[int],
        rep_dim: int,
        *,
        bias: bool = True,
        batchnorm: bool = True,
        bn_affine: bool = True,
    ) -> None:
        super().__init__()
        kw = dict(bias=bias, batchnorm=batchnorm, bn_affine=bn_affine)
        self.encoder = MLP(n_features, hidden, rep_dim, **kw)
        self.decoder = MLP(rep_dim, list(reversed(hidden)), n_features, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def reconstruction_error(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Return the per-row squared reconstruction error summed over features."""
    return torch.sum((model(x) - x) ** 2, dim=1)


def _ae_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return reconstruction_error(model, x).mean()


class AutoEncoder(TorchDetector):
    info = DetectorInfo(
        name="autoencoder",
        title="Autoencoder",
        family="deep",
        uses_labels="no",
        has_latent=True,
        description=(
            "Learns to compress each row into a small code and rebuild it; rows it rebuilds "
            "badly are anomalous. Assumes normal rows share structure that anomalies lack. "
            "Works well on many correlated numeric features (sensor readings, heartbeats). "
            "Fails when anomalies are simple enough to be rebuilt too, or when the training "
            "data is dominated by anomalies. Cost: seconds to minutes, linear in rows."
        ),
        reference="Sakurada & Yairi, MLSDA 2014; Hinton & Salakhutdinov, Science 2006",
        params=COMMON_DEEP_PARAMS,
    )

    def __init__(
        self,
        *,
        epochs: int = 100,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        hidden_dims: tuple[int, ...] | None = None,
        rep_dim: int | None = None,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
    ) -> None:
        self._store_params(locals())

    def _build(self, n_features: int) -> nn.Module:
        return AutoEncoderModel(n_features, self.hidden_dims_, self.rep_dim_)

    def _train(self, model, X, y, gen, callback: Callable | None) -> None:
        self._train_on(model, _ae_loss, X, gen, callback)

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        return reconstruction_error(self.model_, X)
