"""Deep SAD and Deep SVDD: one hypersphere in a learned feature space.

References:
- Ruff, Vandermeulen, Görnitz, Deecke, Siddiqui, Binder, Müller, Kloft, "Deep One-Class
  Classification", ICML 2018 (Deep SVDD, one-class objective).
- Ruff, Vandermeulen, Görnitz, Binder, Müller, Müller, Kloft, "Deep Semi-Supervised Anomaly
  Detection", ICLR 2020 (Deep SAD), and its reference code (lukasruff/Deep-SAD-PyTorch).

Method, as in the papers:
1. A *bias-free* network phi (no bias terms, BatchNorm without affine parameters) so the
   hypersphere cannot collapse to a constant map (Ruff et al. 2018, Prop. 2 and 3).
2. Pretrain phi as the encoder of an autoencoder on *all* training rows, labelled or not.
3. Fix the centre c to the mean of phi(x) over a forward pass of the training rows; any
   coordinate with |c_j| < eps_c is pushed to +-eps_c (eps_c = 0.1 in the reference code), so
   that no unit can trivially match c with zero weights.
4. Train phi on
       L = 1/(n+m) * [ sum_i ||phi(x_i) - c||^2                          (unlabelled)
                     + eta * sum_j (||phi(x~_j) - c||^2 + eps) ** y~_j ]  (labelled)
   with y~ = +1 for labelled normals and y~ = -1 for labelled anomalies (eps = 1e-6), plus
   weight decay through Adam. The score is ||phi(x) - c||^2.
Deep SVDD (one-class) is the same procedure with every row unlabelled (no eta term).

Named deviations from the reference code:
- The decoder used for pretraining ends in a linear layer instead of a sigmoid: the
  reference feeds min-max scaled data in [0, 1]; ours must also work on standardised data.
- The app's labels (-1 unlabelled, 0 normal, 1 anomaly) are mapped to the paper's targets
  (0, +1, -1) in one place, :func:`semi_targets`.
- No learning-rate milestone by default (``lr_milestones=()``; settable): on cardio,
  satellite and satimage-2 the x0.1 drop at epoch 50 of the MNIST command lowered AUROC, and
  the reference code's own default has none. Pretraining runs at a constant rate.
- The soft-boundary Deep SVDD variant is not implemented; only the one-class objective.
- Warm retraining (:meth:`DeepSAD.fine_tune`, the app's retrain after new labels) is ours,
  not the paper's: the paper trains every model from scratch (pretraining, a new centre c,
  then the objective above). ``fine_tune`` keeps the fitted phi *and* its centre c and runs
  the objective's stage again for a few epochs (a fresh Adam, the same eta and eps) on the
  rows with their new labels; no autoencoder pretraining, c is not recomputed. The centre
  stays the one phi was trained towards, so the scores before and after stay comparable.
  ``python -m ad_core.bench loop`` measures it against a full retrain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ad_core.detectors.base import (
    DetectorInfo,
    ParamSpec,
    validate_features,
    validate_labels,
    validate_params,
)
from ad_core.detectors.torch_base import COMMON_DEEP_PARAMS, TorchDetector
from ad_core.nn import MLP, fit_module, make_generator, predict_batched
from ad_core.thresholds import contamination_threshold

#: the warm retrain's epochs unless set (:meth:`DeepSAD.fine_tune` from the Label page):
#: on the ECG5000, cardio and KDD Cup samples 30 fine-tune epochs after 10 and 50 labels
#: matched or beat a full retrain's AUROC; ``python -m ad_core.bench loop`` measures it
FINE_TUNE_EPOCHS = 30
LOSS_EPS = 1e-6  # eps in (dist + eps) ** y~, avoids division by zero for labelled anomalies


def semi_targets(y: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Return Deep SAD targets: +1 labelled normal, -1 labelled anomaly, 0 unlabelled."""
    targets = np.zeros(n_rows, dtype=np.float32)
    if y is not None:
        targets[y == 0] = 1.0
        targets[y == 1] = -1.0
    return targets


class DeepSADModel(nn.Module):
    """Bias-free encoder phi, its pretraining decoder, and the fixed centre ``c``."""

    def __init__(self, n_features: int, hidden: list[int], rep_dim: int) -> None:
        super().__init__()
        kw = dict(bias=False, batchnorm=True, bn_affine=False)
        self.encoder = MLP(n_features, hidden, rep_dim, **kw)
        self.decoder = MLP(rep_dim, list(reversed(hidden)), n_features, **kw)
        self.register_buffer("c", torch.zeros(rep_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Return ||phi(x) - c||^2 per row."""
        return torch.sum((self.encoder(x) - self.c) ** 2, dim=1)


def _pretrain_loss(model: DeepSADModel, x: torch.Tensor) -> torch.Tensor:
    rec = model.decoder(model.encoder(x))
    return torch.sum((rec - x) ** 2, dim=1).mean()


def _make_sad_loss(eta: float) -> Callable[..., torch.Tensor]:
    def loss(model: DeepSADModel, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dist = model.distance(x)
        # target 0 -> dist; target +1 -> eta * (dist + eps); target -1 -> eta / (dist + eps)
        labelled = eta * (dist + LOSS_EPS) ** target
        return torch.where(target == 0, dist, labelled).mean()

    return loss


def _one_class_loss(model: DeepSADModel, x: torch.Tensor) -> torch.Tensor:
    return model.distance(x).mean()


def _init_center(model: DeepSADModel, X: torch.Tensor, eps: float) -> torch.Tensor:
    """Return the mean code of a forward pass, near-zero coordinates pushed to +-eps."""
    model.eval()
    c = predict_batched(model.encoder, X).mean(dim=0)
    c[(c.abs() < eps) & (c < 0)] = -eps
    c[(c.abs() < eps) & (c >= 0)] = eps
    return c


_SAD_PARAMS = (
    ParamSpec(
        "eta",
        "float",
        "Weight of labelled rows against unlabelled ones (paper: 1).",
        low=0.01,
        high=100.0,
        log=True,
    ),
    ParamSpec(
        "pretrain_epochs",
        "int",
        "Autoencoder pretraining epochs (0 = no pretraining).",
        low=0,
        high=1000,
    ),
    ParamSpec(
        "pretrain_lr", "float", "Learning rate of the pretraining.", low=1e-5, high=1e-1, log=True
    ),
    ParamSpec(
        "pretrain_weight_decay", "float", "Weight decay of the pretraining.", low=0.0, high=1e-1
    ),
    ParamSpec("lr_milestones", "int_list", "Epochs after which the learning rate drops x10."),
)


class DeepSAD(TorchDetector):
    info = DetectorInfo(
        name="deep_sad",
        title="Deep SAD",
        family="deep",
        uses_labels="both",
        has_latent=True,
        description=(
            "Maps rows into a space where normal data gathers tightly around a centre; the "
            "score is the distance to it. Labelled normals are pulled in and labelled "
            "anomalies pushed out, so a few expert labels sharpen it a lot. Assumes most "
            "unlabelled rows are normal. Works with any number of labels, including none, and "
            "is the detector to retrain after labelling. Fails when anomalies look just like "
            "normal rows in every feature. Cost: two training stages (pretraining and "
            "hypersphere), about twice an autoencoder."
        ),
        reference="Ruff et al., Deep Semi-Supervised Anomaly Detection, ICLR 2020",
        params=(*_SAD_PARAMS, *COMMON_DEEP_PARAMS),
    )
    #: width of the band around zero that the centre's coordinates are pushed out of
    center_eps = 0.1

    def __init__(
        self,
        *,
        eta: float = 1.0,
        epochs: int = 150,
        pretrain_epochs: int = 150,
        batch_size: int = 128,
        lr: float = 1e-4,
        pretrain_lr: float = 1e-4,
        weight_decay: float = 0.5e-6,
        pretrain_weight_decay: float = 0.5e-3,
        lr_milestones: tuple[int, ...] = (),
        hidden_dims: tuple[int, ...] | None = None,
        rep_dim: int | None = None,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
    ) -> None:
        self.eta = eta
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.pretrain_lr = pretrain_lr
        self.weight_decay = weight_decay
        self.pretrain_weight_decay = pretrain_weight_decay
        self.lr_milestones = lr_milestones
        self.hidden_dims = hidden_dims
        self.rep_dim = rep_dim
        self.contamination = contamination
        self.random_state = random_state
        self.device = device

    def _build(self, n_features: int) -> nn.Module:
        return DeepSADModel(n_features, self.hidden_dims_, self.rep_dim_)

    def _targets(self, y: np.ndarray | None, n_rows: int) -> np.ndarray:
        return semi_targets(y, n_rows)

    def _train(self, model: DeepSADModel, X, y, gen, callback) -> None:
        if self.pretrain_epochs > 0:
            cfg = self._config(
                epochs=int(self.pretrain_epochs),
                lr=float(self.pretrain_lr),
                weight_decay=float(self.pretrain_weight_decay),
            )
            losses = fit_module(
                model, _pretrain_loss, (X,), cfg, generator=gen, callback=callback, stage="pretrain"
            )
            self._record("pretrain", losses)
        model.c.copy_(_init_center(model, X, self.center_eps))
        self._train_objective(model, X, y, gen, callback, epochs=int(self.epochs), stage="train")

    def _train_objective(self, model, X, y, gen, callback, *, epochs: int, stage: str) -> None:
        """Train phi on the Deep SAD objective around the fixed centre ``model.c``."""
        targets = self._targets(y, X.shape[0])
        if targets.any():
            loss_fn, tensors = _make_sad_loss(float(self.eta)), (X, torch.from_numpy(targets))
        else:
            # No labelled row: the objective is the one-class term alone (same value and
            # gradient as the general loss with every target 0, without its extra work).
            loss_fn, tensors = _one_class_loss, (X,)
        # Only phi is trained in this stage; the decoder served the pretraining alone.
        losses = fit_module(
            model,
            loss_fn,
            tuple(t.to(X.device) for t in tensors),
            self._config(epochs=epochs),
            generator=gen,
            callback=callback,
            stage=stage,
            parameters=list(model.encoder.parameters()),
        )
        self._record(stage, losses)

    def fine_tune(
        self,
        X,
        y=None,
        *,
        epochs: int | None = None,
        callback: Callable | None = None,
    ) -> DeepSAD:
        """Return ``self``, its fitted network trained further on ``X`` with labels ``y``.

        The warm retrain after new labels: phi and the centre c are kept from the fit (or the
        saved model) and only the objective's stage runs again, for ``epochs`` epochs
        (default: the ``epochs`` setting), with ``y`` as in :meth:`fit` (-1 unlabelled,
        0 normal, 1 anomaly). ``decision_scores_`` and ``threshold_`` are those of ``X``
        afterwards; ``history_`` gains the epochs as stage ``"fine_tune"``. Not in the
        paper, which always trains from scratch: see the module's named deviations.
        """
        self._check_fitted()
        validate_params(self)
        X = validate_features(X, n_features=int(self.n_features_in_), dtype=self._input_dtype())
        y = validate_labels(y, X.shape[0])
        n_epochs = int(self.epochs if epochs is None else epochs)
        if n_epochs < 0:
            raise ValueError(f"epochs must be at least 0, got {n_epochs}.")
        start = time.perf_counter()
        gen = make_generator(self.random_state)
        Xt = self._to_tensor(X)
        self.history_ = list(getattr(self, "history_", []) or [])
        self._train_objective(self.model_, Xt, y, gen, callback, epochs=n_epochs, stage="fine_tune")
        self.model_.eval()
        self.decision_scores_ = np.asarray(self._training_scores(X), dtype=np.float64)
        self.fit_seconds_ = time.perf_counter() - start
        self.threshold_ = float(contamination_threshold(self.decision_scores_, self.contamination))
        return self

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        return self.model_.distance(X)


class DeepSVDD(DeepSAD):
    info = DetectorInfo(
        name="deep_svdd",
        title="Deep SVDD (one-class)",
        family="deep",
        uses_labels="no",
        has_latent=True,
        description=(
            "Learns a mapping that gathers all training rows around one centre; rows far from "
            "it are anomalous. Fully unsupervised: assumes the training data is (almost) all "
            "normal. Works on numeric data with one coherent normal mode. Fails when normal "
            "data has several very different modes or is heavily polluted by anomalies. "
            "Labels are ignored: use Deep SAD to use them. Cost: like Deep SAD."
        ),
        reference="Ruff et al., Deep One-Class Classification, ICML 2018",
        params=tuple(p for p in DeepSAD.info.params if p.name != "eta"),
    )

    def __init__(
        self,
        *,
        epochs: int = 150,
        pretrain_epochs: int = 150,
        batch_size: int = 128,
        lr: float = 1e-4,
        pretrain_lr: float = 1e-4,
        weight_decay: float = 0.5e-6,
        pretrain_weight_decay: float = 0.5e-3,
        lr_milestones: tuple[int, ...] = (),
        hidden_dims: tuple[int, ...] | None = None,
        rep_dim: int | None = None,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
    ) -> None:
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.pretrain_lr = pretrain_lr
        self.weight_decay = weight_decay
        self.pretrain_weight_decay = pretrain_weight_decay
        self.lr_milestones = lr_milestones
        self.hidden_dims = hidden_dims
        self.rep_dim = rep_dim
        self.contamination = contamination
        self.random_state = random_state
        self.device = device

    #: the labelled term never applies (every target is 0), so eta is fixed, not a parameter
    eta = 1.0

    def _targets(self, y: np.ndarray | None, n_rows: int) -> np.ndarray:
        return semi_targets(None, n_rows)  # one-class: labels are ignored
