"""Variational autoencoder anomaly detector.

References: Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (the model and the
reparameterised ELBO); An & Cho, "Variational Autoencoder based Anomaly Detection using
Reconstruction Probability", SNU Data Mining Center TR 2015 (scoring by a Monte-Carlo
estimate over L posterior samples).

Model: Gaussian encoder q(z|x) = N(mu(x), diag sigma^2(x)), standard normal prior, Gaussian
decoder p(x|z) = N(f(z), I) (unit variance, so -log p(x|z) is half the squared error plus a
constant). Training maximises the ELBO with a ``beta`` weight on the KL term (beta = 1 is the
plain VAE). Scores, averaged over ``n_samples`` draws z ~ q(z|x):
- ``elbo`` (default): the negative ELBO, an upper bound on -log p(x);
- ``reconstruction``: E_q[-log p(x|z)], An & Cho's reconstruction probability with the
  decoder variance fixed to 1 (they learn it), i.e. a mean squared error over posterior draws.
With ``beta != 1`` the ``elbo`` score is the beta-weighted objective, no longer a bound on
-log p(x). Scoring uses ``n_samples`` noise vectors drawn from a generator seeded from
``random_state`` on every call and shared by all rows, so a row's score is the same whatever
it is scored with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ad_core.detectors.base import DetectorInfo, ParamSpec
from ad_core.detectors.torch_base import COMMON_DEEP_PARAMS, TorchDetector
from ad_core.nn import MLP

_LOG_2PI = math.log(2.0 * math.pi)


class VAEModel(nn.Module):
    """Gaussian VAE: encoder gives (mu, log sigma^2), decoder gives the mean of p(x|z)."""

    def __init__(self, n_features: int, hidden: list[int], latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder_net = MLP(n_features, hidden, 2 * latent_dim)
        self.decoder = MLP(latent_dim, list(reversed(hidden)), n_features)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder_net(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 12.0)

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        """Return the posterior mean, the latent code shown on maps."""
        return self.encode(x)[0]

    def neg_log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Return -log p(x|z) per row under the unit-variance Gaussian decoder."""
        rec = self.decoder(z)
        return 0.5 * torch.sum((x - rec) ** 2 + _LOG_2PI, dim=1)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Return KL(N(mu, sigma^2) || N(0, I)) per row."""
    return 0.5 * torch.sum(mu**2 + logvar.exp() - 1.0 - logvar, dim=1)


class VAE(TorchDetector):
    info = DetectorInfo(
        name="vae",
        title="Variational autoencoder",
        family="deep",
        uses_labels="no",
        has_latent=True,
        description=(
            "A probabilistic autoencoder: learns a smooth map of normal data and how likely "
            "each row is under it; unlikely rows are anomalous. Assumes normal rows follow a "
            "learnable distribution. Works on continuous, correlated features; gives a "
            "calibrated-looking score. Fails like the autoencoder when anomalies are easy to "
            "generate, and its latent space is unbounded, so outliers can land anywhere on "
            "the map (the compact VAE addresses this). Cost: like the autoencoder, plus "
            "sampling when scoring."
        ),
        reference="Kingma & Welling, ICLR 2014; An & Cho, SNU TR 2015",
        params=(
            ParamSpec(
                "beta",
                "float",
                "Weight of the KL term (1 = plain VAE).",
                low=0.01,
                high=10.0,
                log=True,
            ),
            ParamSpec(
                "n_samples", "int", "Posterior samples per row when scoring.", low=1, high=100
            ),
            ParamSpec(
                "score",
                "choice",
                "elbo: negative ELBO; reconstruction: An & Cho's "
                "negative reconstruction log-probability.",
                choices=("elbo", "reconstruction"),
            ),
            *COMMON_DEEP_PARAMS,
        ),
    )

    def __init__(
        self,
        *,
        beta: float = 1.0,
        n_samples: int = 10,
        score: str = "elbo",
        epochs: int = 100,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        hidden_dims: tuple[int, ...] | None = None,
        rep_dim: int | None = None,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
    ) -> None:
        self._store_params(locals())

    def _build(self, n_features: int) -> nn.Module:
        return VAEModel(n_features, self.hidden_dims_, self.rep_dim_)

    def _train(self, model: VAEModel, X, y, gen, callback: Callable | None) -> None:
        beta = float(self.beta)

        def loss(m: VAEModel, x: torch.Tensor) -> torch.Tensor:
            mu, logvar = m.encode(x)
            eps = torch.randn(mu.shape, generator=gen).to(mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
            return (m.neg_log_lik(x, z) + beta * kl_to_standard_normal(mu, logvar)).mean()

        self._train_on(model, loss, X, gen, callback)

    def _score(self, X):
        # The same n_samples noise vectors serve every row, drawn from a generator seeded
        # afresh on each call: a row's score does not depend on which other rows are scored
        # with it, nor on the batch size, and no state is kept on the (shared) detector.
        gen = self._scoring_generator()
        eps = torch.randn(int(self.n_samples), int(self.rep_dim_), generator=gen)
        return self._predict(lambda x: self._score_with_noise(x, eps.to(x.device)), X)

    def _score_with_noise(self, X: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        m: VAEModel = self.model_
        mu, logvar = m.encode(X)
        std = torch.exp(0.5 * logvar)
        total = torch.zeros(X.shape[0], device=X.device)
        for draw in eps:
            total += m.neg_log_lik(X, mu + draw * std)
        score = total / eps.shape[0]
        if self.score == "elbo":
            score = score + float(self.beta) * kl_to_standard_normal(mu, logvar)
        return score
