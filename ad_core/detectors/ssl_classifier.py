"""Self-supervised classifier: a network trained to tell real rows from augmented rows.

Reference: Yoo, Zhao & Akoglu, "Data Augmentation is a Hyperparameter: Cherry-picked
Self-Supervision for Unsupervised Anomaly Detection is Creating the Illusion of Success",
TMLR 2023 (arXiv 2208.07734; code jaeminyoo/SSL-AD). The set-up they study: augmented copies
of the training rows are *pseudo-anomalies*, a detector learns to separate them from the
real rows, and a test row is anomalous in as much as it looks augmented. Its success depends
on whether the augmentation is aligned with how the true anomalies arise; ``augmentation``
is therefore a hyperparameter here, to be chosen on the expert's labels
(:func:`ad_core.selection.rank_candidates`), with the plain autoencoder beside it as the
no-augmentation baseline.

Method:
1. Fit the augmentation's context on the training rows (per-feature spread and range,
   k-means centres for ``local_scale``, the image shape for image augmentations).
2. Every mini-batch of real rows x is paired with a freshly drawn augmented copy a(x) (a new
   draw each epoch, seeded by ``random_state``); an MLP encoder phi with a linear head g is
   trained by binary cross-entropy to output 0 for x and 1 for a(x):
       L = -1/(2B) * sum_i [ log(1 - sigma(g(phi(x_i)))) + log sigma(g(phi(a(x_i)))) ]
3. The score of a row is the logit g(phi(x)): the log-odds that it is an augmented row
   (monotone in the probability, without its saturation at 1).
``transform`` returns phi(x), the latent code for the map.

Named choices and deviations:
- The paper's three models are image networks (a denoising autoencoder in the released code,
  and classifier-based detectors in the CutPaste family); ours is one MLP classifier over the
  row's features, so the same detector serves tables and image rows. Images are read as
  ``height x width`` pixels stored row by row (``image_shape``; automatic for square images).
- Labels are ignored on purpose: the expert's labels choose the augmentation, and a detector
  that trained on them would be judged on the rows it was told.
- Defaults (50 epochs, batch 128, Adam 1e-3, data-derived widths with BatchNorm as the
  autoencoder's) keep a fit to seconds on the bundled samples; the paper trains far longer
  image networks.

How the default augmentation was chosen: on the ODDS sets kept for choosing defaults
(cardio, satellite, thyroid; arrhythmia, satimage-2 and shuttle were not looked at), with
their real anomalies, the unsup benchmark's 70/30 split (training rows capped at 2000) and
seeds 0 and 1, the mean test AUROC of each table augmentation at its default strength was
noise 0.763, out_of_range 0.688, local_scale 0.682, mask 0.425, permute 0.299 (the plain
autoencoder: 0.770). Gaussian noise is the default; no single augmentation is right for
every data set, which is why the labels should choose (``python -m ad_core.bench augment``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ad_core import augment as aug
from ad_core.data.errors import DataError
from ad_core.detectors.base import DetectorInfo, ParameterError, ParamSpec
from ad_core.detectors.torch_base import COMMON_DEEP_PARAMS, TorchDetector
from ad_core.nn import MLP

#: the augmentations' strengths together span this range; each one's own is checked in fit
_STRENGTH_LOW = min(a.strength_range[0] for a in aug.AUGMENTATIONS.values())
_STRENGTH_HIGH = max(a.strength_range[1] for a in aug.AUGMENTATIONS.values())

AUGMENTATION_PARAMS = (
    ParamSpec(
        "augmentation",
        "choice",
        "How pseudo-anomalies are made from normal rows; choose the one that mimics how your "
        "anomalies arise (rotate, flip, cutout, blur and pixel_noise need image rows).",
        choices=aug.AUGMENTATION_NAMES,
    ),
    ParamSpec(
        "strength",
        "float",
        "Strength of the augmentation (its own unit and range; see the augmentation list). "
        "Empty = the augmentation's default.",
        low=_STRENGTH_LOW,
        high=_STRENGTH_HIGH,
    ),
    ParamSpec(
        "image_shape",
        "int_list",
        "Height, width of image rows, e.g. 28,28 (image augmentations only). Empty = square "
        "images of at least 8 x 8, from the number of features (784 -> 28 x 28).",
    ),
)


def check_augmentation_settings(
    detector, n_features: int
) -> tuple[aug.Augmentation, float, tuple[int, int] | None]:
    """Return (augmentation, strength, image shape) of ``detector``'s settings for the data.

    Raises ParameterError for a strength outside the augmentation's own range and DataError
    when an image augmentation meets rows that are not images of the given shape.
    """
    entry = aug.get_augmentation(detector.augmentation)
    try:
        strength = aug.check_strength(entry.name, detector.strength)
    except ValueError as exc:
        raise ParameterError(f"{detector.info.title}: {exc}") from None
    shape = None
    if entry.kind == "image":
        try:
            shape = aug.resolve_image_shape(detector.image_shape, n_features)
        except DataError as exc:
            raise DataError(f"{entry.title} is an image augmentation. {exc}") from None
    return entry, strength, shape


class SSLClassifierModel(nn.Module):
    """Encoder phi and a linear head; forward returns the logit of "augmented"."""

    def __init__(self, n_features: int, hidden: list[int], rep_dim: int) -> None:
        super().__init__()
        self.encoder = MLP(n_features, hidden, rep_dim, batchnorm=True)
        self.head = nn.Sequential(nn.LeakyReLU(0.01), nn.Linear(rep_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)).squeeze(1)


def _make_loss(make_augmented: Callable[[np.ndarray], np.ndarray]) -> Callable[..., torch.Tensor]:
    """Return the real-vs-augmented cross-entropy over one batch and its fresh augmentation."""

    def loss(model: SSLClassifierModel, x: torch.Tensor) -> torch.Tensor:
        augmented = torch.from_numpy(make_augmented(x.detach().cpu().numpy())).to(x.device)
        logits = model(torch.cat([x, augmented]))
        target = torch.cat([torch.zeros(x.shape[0]), torch.ones(x.shape[0])]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, target)

    return loss


class SSLClassifier(TorchDetector):
    info = DetectorInfo(
        name="ssl_classifier",
        title="Self-supervised classifier",
        family="deep",
        uses_labels="no",
        has_latent=True,
        description=(
            "Makes pseudo-anomalies from the rows with an augmentation (noise, masking, "
            "shuffling features across rows, rotating images, ...) and trains a network to "
            "tell real rows from augmented ones; rows that look augmented score high. Works "
            "when the augmentation mimics how the real anomalies arise, and can do worse "
            "than a plain autoencoder when it does not (Yoo et al. 2023), so try several and "
            "let your labels choose. Ignores labels itself. Cost: about an autoencoder's."
        ),
        reference=(
            "Yoo, Zhao & Akoglu, Data Augmentation is a Hyperparameter: Cherry-picked "
            "Self-Supervision for Unsupervised Anomaly Detection is Creating the Illusion of "
            "Success, TMLR 2023"
        ),
        params=(*AUGMENTATION_PARAMS, *COMMON_DEEP_PARAMS),
    )
    _json_state = (*TorchDetector._json_state, "strength_", "image_shape_")

    def __init__(
        self,
        *,
        augmentation: str = "noise",
        strength: float | None = None,
        image_shape: tuple[int, ...] | None = None,
        epochs: int = 50,
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

    @property
    def augmentation_name_(self) -> str:
        """Return the augmentation with its strength as one string, e.g. ``"noise-0.5"``."""
        self._check_fitted()
        return aug.format_augmentation(self.augmentation, self.strength_)

    def _fit(self, X: np.ndarray, y, callback: Callable | None) -> None:
        entry, strength, shape = check_augmentation_settings(self, X.shape[1])
        self.strength_ = strength
        self.image_shape_ = list(shape) if shape else None
        self.context_ = aug.fit_context(
            X,
            image_shape=shape,
            centres=entry.needs_centres,
            random_state=None if self.random_state is None else int(self.random_state),
        )
        self._rng = self._numpy_rng(7)  # the augmentation draws' own stream of the seed
        super()._fit(X, y, callback)

    def _build(self, n_features: int) -> nn.Module:
        return SSLClassifierModel(n_features, self.hidden_dims_, self.rep_dim_)

    def augmented(self, X: np.ndarray) -> np.ndarray:
        """Return pseudo-anomalies made from the rows ``X`` with the fitted augmentation."""
        return aug.augment(
            X, self.augmentation, self.strength_, rng=self._rng, context=self.context_
        )

    def _train(self, model, X, y, gen, callback: Callable | None) -> None:
        self._train_on(model, _make_loss(self.augmented), X, gen, callback)

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        return self.model_(X)
