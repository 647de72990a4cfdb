"""Compact VAE: a VAE whose latent image is compact, scored by its vacant-hole indicator.

Reference: Glazunov & Zarras, "Vacant Holes for Unsupervised Detection of the Outliers in
Compact Latent Representation", UAI 2023 (PMLR v216; arXiv 2306.09646).

The paper's argument: a plain VAE's encoder maps the data into an unbounded latent space, so an
outlier can be sent anywhere, including far away where the decoder is flat and the posterior
collapses, and then it looks perfectly ordinary. Make the image of the encoder compact and the
outliers fall into *vacant holes* between the inlier codes, where the decoder changes quickly.

Compactness, the ``compactness`` setting:

- ``lipschitz`` (default): the encoder has a fixed Lipschitz constant M in the infinity norm.
  At every forward pass each weight row is projected onto the L1 unit ball (Duchi et al.
  2008), which bounds the layer's infinity-operator norm by 1 (that norm is the largest row
  L1 norm); each layer's pre-activation is scaled by M^(1/L) for L layers, and the activation
  is GroupSort with groups of two (MaxMin; Anil, Lucas & Grosse, ICML 2019), itself
  1-Lipschitz. So ||f(a) - f(b)||_inf <= M ||a - b||_inf for the whole encoder output
  (posterior mean and log-variance). Posterior Gaussian, prior N(0, I).
- ``sphere``: Alexandroff's one-point compactification, i.e. a hyperspherical latent space:
  von Mises-Fisher posterior vMF(mu(x), kappa(x)) on S^(d-1) with the uniform prior
  (Davidson et al., UAI 2018). Sampling uses Wood's (1994) rejection algorithm; the KL to the
  uniform prior is computed in closed form with our own log-Bessel function. Practical for low
  latent dimension (at most 64 here).
- ``none``: the plain VAE for comparison. With ``likelihood="unit_gaussian"`` on tables it
  *is* ``ad_core.detectors.vae`` (same network, initialisation, random draws and loss, so the
  same seed trains the same weights).

Scores (``score``), from N = ``n_samples`` draws z_k ~ q(z|x):

- ``hole`` (default), the paper's hole indicator: the sample standard deviation of
  log p(x|z_k) over the N draws. A point in a vacant hole has codes where the decoder changes
  fast, so its reconstruction likelihood varies a lot from draw to draw.
- ``log_likelihood``: minus the importance-sampled log-likelihood,
  -log (1/N) sum_k p(x|z_k) p(z_k) / q(z_k|x) (Burda et al. 2016), a tighter bound than the
  ELBO.

Both come from the same draws; :meth:`CompactVAE.hole_indicator` returns the hole indicator
whatever ``score`` is set (``ad_core.latent.hole_indicator`` calls it for the latent map).

Networks (``network``): an MLP for tables (widths derived from the data as for every deep
detector); for 28x28 images (784 features; ``auto`` picks it) a small conv encoder
(two stride-2 4x4 convolutions with 16 and 32 channels, then a dense layer) and a mirrored
transposed-conv decoder. Decoder (``likelihood``, ``auto`` by the data):

- ``bernoulli`` when every training value lies in [0, 1], as is customary for MNIST. Its
  log-likelihood x*l - softplus(l) (l the logits) is used as written for inputs outside
  [0, 1], e.g. the intensity-scaled outliers of the paper's ablation.
- ``gaussian`` otherwise: a calibrated decoder (Rybkin, Daniilidis & Levine, "Simple and
  Effective VAE Training with Calibrated Decoders", ICML 2021): one noise variance per
  feature, set to its maximum-likelihood value, the mean squared residual (per batch while
  training, over the training set once trained), never below 0.05^2. A hole indicator needs a
  decoder whose likelihood is sharp; a unit-variance decoder on standardised data treats
  almost everything as noise.
- ``unit_gaussian``: unit variance, exactly our plain VAE's decoder.

M defaults to 2: images in [0, 1] differ by at most 1 in the infinity norm, so every code of
every possible image then lies in a cube of side 2 (at most), the scale of the N(0, I) prior;
in our MNIST ablation (``python -m ad_core.bench holes``) M = 4 no longer kept outliers from
the posterior collapse that defeats the plain VAE, while M = 1 and 2 did.

Named deviations, since the paper's code and supplement tables were not at hand:

- Lipschitz weights are initialised with every row scaled to L1 norm 1 (the projection is then
  the identity at the start). Projecting default-initialised rows, whose L1 norms are far
  above 1 on wide inputs, soft-thresholds most entries to zero, and those get no gradient.
- The plain (``none``) conv network uses LeakyReLU, like our other detectors; the Lipschitz one
  GroupSort. The decoder is never constrained.
- The posterior log-variance is clamped to +-30 for float safety only. Our plain ``vae``
  clamps it to +-12; that tighter clamp is itself a bound on the encoder's output and hides
  the collapse of the posterior on extreme inputs that the paper's ablation is about.
- The vMF gradient goes through the accepted proposal only (the reparameterised part of
  rejection sampling, Naesseth et al. 2017); the correction term for the acceptance step is
  left out, as in common hyperspherical-VAE code. kappa = 1 + softplus(raw), capped at 1e4.
- Scoring draws from a generator re-seeded from ``random_state`` on every call, so the same
  fitted model always gives the same scores.
- KL warm-up with the calibrated Gaussian decoder (tables): the weight of the KL term rises
  linearly from 0 to 1 over the first half of the optimiser steps (``KL_WARMUP_SHARE``;
  Bowman et al., CoNLL 2016; Sonderby et al., NeurIPS 2016), after which the loss is exactly
  the paper's negative ELBO. Without it, low-dimensional tables fall into posterior collapse:
  the posterior stays at the prior, the decoder outputs the mean row and calls the whole
  spread noise, the latent image has no holes at all, and the hole indicator then only
  follows the size of the reconstruction error, which is *smallest* in the empty middle of
  the data. Measured on a ring of radius 2 in two features (1 200 training rows, centre
  points against held-out ring points, seeds 0-2): hole-indicator ROC-AUC 0.00-0.03 without
  the warm-up, 1.00 with it (the unit tests check at least 0.9 on this ring); on a sphere
  shell in three features 0.03-0.06 without, 0.93-0.98 with.
  Images with the Bernoulli decoder (the paper's own setting, and Tables 5 and 6 of
  ``python -m ad_core.bench holes``) and the unit-variance decoder (which must train exactly
  like ``vae``) keep the plain ELBO from the first step. It takes a few hundred optimiser
  steps (epochs x rows / batch size) to escape the collapse: far shorter fits stay collapsed.
  The training loss of the warm-up half is the weighted loss, so the loss curve may rise
  while the KL weight grows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ad_core.data import DataError
from ad_core.detectors.base import DetectorInfo, ParamSpec, validate_features
from ad_core.detectors.torch_base import COMMON_DEEP_PARAMS, TorchDetector
from ad_core.detectors.vae import kl_to_standard_normal
from ad_core.nn import MLP

_LOG_2PI = math.log(2.0 * math.pi)
IMAGE_SIDE = 28
CONV_CHANNELS = (16, 32)
MAX_SPHERE_DIM = 64
KAPPA_MAX = 1e4
#: the posterior log-variance is clamped to +-this for float safety only (see deviations)
LOGVAR_LIMIT = 30.0
#: floor of the calibrated decoder variance: a noise std of 0.05 (data are standardised)
MIN_NOISE_VAR = 0.05**2
#: with the calibrated Gaussian decoder, the KL weight rises from 0 to 1 over this share of
#: the training steps (a warm-up against posterior collapse; see the deviations)
KL_WARMUP_SHARE = 0.5


# -- Lipschitz building blocks ------------------------------------------------------------------
def project_rows_l1(w: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """Return ``w`` (2-D) with every row of L1 norm above ``radius`` projected onto the L1 ball.

    Euclidean projection by soft-thresholding (Duchi, Shalev-Shwartz, Singer & Chandra, ICML
    2008): sort |w| decreasingly, find the largest j with u_j > (sum_{i<=j} u_i - r) / j, and
    shrink every |w| by theta = (sum_{i<=rho} u_i - r) / rho. Differentiable almost everywhere.
    """
    a = w.abs()
    u, _ = torch.sort(a, dim=1, descending=True)
    css = torch.cumsum(u, dim=1) - radius
    j = torch.arange(1, w.shape[1] + 1, device=w.device, dtype=w.dtype)
    rho = (u - css / j > 0).sum(dim=1, keepdim=True)  # the condition holds on a prefix
    theta = (css.gather(1, rho - 1) / rho).clamp_min(0.0)
    projected = w.sign() * (a - theta).clamp_min(0.0)
    return torch.where(a.sum(dim=1, keepdim=True) > radius, projected, w)


class GroupSort(nn.Module):
    """GroupSort with groups of two (MaxMin) over dimension 1: 1-Lipschitz in every l_p norm.

    Unit i is paired with unit i + C/2 (any fixed pairing is a GroupSort; this one needs no
    reshuffling and is the fastest on the CPU).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat((torch.maximum(a, b), torch.minimum(a, b)), dim=1)


class LipschitzLinear(nn.Linear):
    """Linear layer with infinity-operator norm <= 1 (rows on the L1 ball), output times scale."""

    def __init__(self, in_features: int, out_features: int, scale: float) -> None:
        super().__init__(in_features, out_features)
        self.scale = float(scale)

    def effective_weight(self) -> torch.Tensor:
        return project_rows_l1(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(x, self.effective_weight(), self.bias)


class LipschitzConv2d(nn.Conv2d):
    """Conv layer whose kernels per output channel lie on the L1 ball, output times scale.

    Each output value is the dot product of one flattened kernel with an input patch (zero
    padding only removes terms), so the layer's infinity-operator norm is at most 1.
    """

    def __init__(self, c_in: int, c_out: int, scale: float) -> None:
        super().__init__(c_in, c_out, kernel_size=4, stride=2, padding=1)
        self.scale = float(scale)

    def effective_weight(self) -> torch.Tensor:
        return project_rows_l1(self.weight.flatten(1)).view_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self._conv_forward(x, self.effective_weight(), self.bias)


@torch.no_grad()
def normalise_lipschitz_rows_(module: nn.Module) -> None:
    """Scale every Lipschitz layer's weight rows to L1 norm 1 (in place; see the deviations)."""
    for m in module.modules():
        if isinstance(m, LipschitzLinear | LipschitzConv2d):
            flat = m.weight.view(m.weight.shape[0], -1)
            flat.div_(flat.abs().sum(dim=1, keepdim=True).clamp_min(1e-12))


def lipschitz_mlp(in_dim: int, hidden: list[int], out_dim: int, M: float) -> nn.Sequential:
    """Return an MLP with ||f(a) - f(b)||_inf <= M ||a - b||_inf (GroupSort activations)."""
    dims = [in_dim, *hidden, out_dim]
    scale = M ** (1.0 / (len(dims) - 1))
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(LipschitzLinear(d_in, d_out, scale))
        if i < len(dims) - 2:
            layers.append(GroupSort())
    return nn.Sequential(*layers)


def conv_encoder(dense: int, out_dim: int, lipschitz: bool, M: float) -> nn.Sequential:
    """Return the 28x28 image encoder: two 4x4 stride-2 convolutions, a dense layer, a head."""
    c1, c2 = CONV_CHANNELS
    flat = c2 * (IMAGE_SIDE // 4) ** 2
    if lipschitz:
        s = M ** (1.0 / 4.0)
        return nn.Sequential(
            nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)),
            LipschitzConv2d(1, c1, s), GroupSort(),
            LipschitzConv2d(c1, c2, s), GroupSort(),
            nn.Flatten(),
            LipschitzLinear(flat, dense, s), GroupSort(),
            LipschitzLinear(dense, out_dim, s),
        )  # fmt: skip
    return nn.Sequential(
        nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)),
        nn.Conv2d(1, c1, 4, 2, 1), nn.LeakyReLU(0.01),
        nn.Conv2d(c1, c2, 4, 2, 1), nn.LeakyReLU(0.01),
        nn.Flatten(),
        nn.Linear(flat, dense), nn.LeakyReLU(0.01),
        nn.Linear(dense, out_dim),
    )  # fmt: skip


def conv_decoder(latent_dim: int, dense: int) -> nn.Sequential:
    """Return the mirrored decoder: dense layers, two 4x4 stride-2 transposed convolutions."""
    c1, c2 = CONV_CHANNELS
    side = IMAGE_SIDE // 4
    return nn.Sequential(
        nn.Linear(latent_dim, dense), nn.LeakyReLU(0.01),
        nn.Linear(dense, c2 * side * side), nn.LeakyReLU(0.01),
        nn.Unflatten(1, (c2, side, side)),
        nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.LeakyReLU(0.01),
        nn.ConvTranspose2d(c1, 1, 4, 2, 1),
        nn.Flatten(),
    )  # fmt: skip


# -- von Mises-Fisher on the sphere --------------------------------------------------------------
def log_bessel_iv(v: float, kappa: torch.Tensor) -> torch.Tensor:
    """Return log I_v(kappa), the modified Bessel function of the first kind (float64).

    Pure torch and differentiable in ``kappa``: the power series
    I_v(k) = sum_j (k/2)^(2j+v) / (j! Gamma(j+v+1)) summed in log space for k <= T, and
    Hankel's large-argument expansion (8 terms) above, with T = max(50, 2 v^2) where both are
    accurate to double precision for the orders a low-dimensional sphere needs.
    """
    k = kappa.to(torch.float64)
    v = float(v)
    switch = max(50.0, 2.0 * v * v)
    small = k <= switch
    # Series (terms decay geometrically beyond j = k, hence switch + 40 terms).
    ks = torch.where(small, k, torch.full_like(k, switch)).unsqueeze(-1)
    j = torch.arange(int(switch) + 40, dtype=torch.float64, device=k.device)
    log_terms = (
        (2.0 * j + v) * torch.log(ks / 2.0) - torch.lgamma(j + 1.0) - torch.lgamma(j + v + 1.0)
    )
    series = torch.logsumexp(log_terms, dim=-1)
    # Hankel: I_v(k) ~ e^k / sqrt(2 pi k) * sum_i (-1)^i a_i / k^i,
    # a_i = prod_{l<=i} (4v^2 - (2l-1)^2) / (i! 8^i).
    kl = torch.where(small, torch.full_like(k, switch + 1.0), k)
    mu4 = 4.0 * v * v
    total = torch.ones_like(kl)
    term = torch.ones_like(kl)
    for i in range(1, 9):
        term = -term * (mu4 - (2 * i - 1) ** 2) / (i * 8.0 * kl)
        total = total + term
    hankel = kl - 0.5 * torch.log(2.0 * math.pi * kl) + torch.log(total)
    return torch.where(small, series, hankel)


def log_sphere_area(m: int) -> float:
    """Return log of the surface area of the unit sphere S^(m-1) in R^m."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def vmf_log_normaliser(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """Return log C_m(kappa), the vMF density being C_m(kappa) exp(kappa mu.z) on S^(m-1)."""
    v = 0.5 * m - 1.0
    k = kappa.to(torch.float64)
    return v * torch.log(k) - 0.5 * m * _LOG_2PI - log_bessel_iv(v, k)


def kl_vmf_to_uniform(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """Return KL(vMF(mu, kappa) || uniform on S^(m-1)) per row (float64, mu-free).

    KL = kappa A_m(kappa) + log C_m(kappa) + log |S^(m-1)| with the mean resultant length
    A_m = I_{m/2}(kappa) / I_{m/2-1}(kappa) (Davidson et al. 2018, appendix).
    """
    v = 0.5 * m - 1.0
    k = kappa.to(torch.float64)
    ratio = torch.exp(log_bessel_iv(v + 1.0, k) - log_bessel_iv(v, k))
    return k * ratio + vmf_log_normaliser(k, m) + log_sphere_area(m)


def _beta_symmetric(shape: tuple[int, ...], dof: int, gen: torch.Generator) -> torch.Tensor:
    """Return Beta(dof/2, dof/2) draws as chi2_dof / (chi2_dof + chi2_dof) from ``gen``."""
    a = torch.randn((*shape, dof), generator=gen, dtype=torch.float64).pow(2).sum(-1)
    b = torch.randn((*shape, dof), generator=gen, dtype=torch.float64).pow(2).sum(-1)
    return a / (a + b)


def sample_vmf(
    mu: torch.Tensor, kappa: torch.Tensor, gen: torch.Generator, max_rounds: int = 100
) -> torch.Tensor:
    """Return one draw per row from vMF(mu, kappa) on S^(m-1) (Wood 1994); ``mu`` unit rows.

    Rejection step for w = mu.z: b = (m-1) / (2 kappa + sqrt(4 kappa^2 + (m-1)^2)),
    x0 = (1-b)/(1+b), c = kappa x0 + (m-1) log(1 - x0^2); propose e ~ Beta((m-1)/2, (m-1)/2),
    w = (1 - (1+b) e) / (1 - (1-b) e), accept if kappa w + (m-1) log(1 - x0 w) - c >= log u.
    Then z = (w, sqrt(1-w^2) v) with v uniform on S^(m-2), reflected so that e1 maps to mu.
    Random draws come from ``gen`` (CPU) only; rows still rejected after ``max_rounds`` rounds
    (acceptance is above 1/2 per round) keep their last proposal.
    """
    n, m = mu.shape
    dof = m - 1
    k = kappa.reshape(-1).to(torch.float64).cpu()
    b = dof / (2.0 * k + torch.sqrt(4.0 * k * k + dof * dof))
    x0 = (1.0 - b) / (1.0 + b)
    log_1mx0sq = torch.log(4.0 * b) - 2.0 * torch.log1p(b)  # log(1 - x0^2), stable
    c = k * x0 + dof * log_1mx0sq
    with torch.no_grad():
        bd, x0d, cd, kd = b.detach(), x0.detach(), c.detach(), k.detach()
        accepted = torch.zeros(n, dtype=torch.float64)
        done = torch.zeros(n, dtype=torch.bool)
        for _ in range(max_rounds):
            e = _beta_symmetric((n,), dof, gen)
            u = torch.rand(n, generator=gen, dtype=torch.float64)
            w = (1.0 - (1.0 + bd) * e) / (1.0 - (1.0 - bd) * e)
            ok = kd * w + dof * torch.log1p(-x0d * w) - cd >= torch.log(u)
            accepted = torch.where(done, accepted, e)
            done = done | ok
            if bool(done.all()):
                break
    w = (1.0 - (1.0 + b) * accepted) / (1.0 - (1.0 - b) * accepted)  # gradient through b(kappa)
    v = torch.randn((n, dof), generator=gen, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    radial = torch.sqrt((1.0 - w * w).clamp_min(1e-12)).unsqueeze(1)
    z = torch.cat((w.unsqueeze(1), radial * v), dim=1).to(mu.device, mu.dtype)
    # Householder reflection taking e1 to mu.
    e1 = torch.zeros_like(mu)
    e1[:, 0] = 1.0
    h = e1 - mu
    h = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return z - 2.0 * (z * h).sum(dim=1, keepdim=True) * h


# -- the model -------------------------------------------------------------------------------
class CompactVAEModel(nn.Module):
    """Encoder (plain, Lipschitz or vMF head) and decoder; the detector owns the training."""

    def __init__(
        self,
        n_features: int,
        hidden: list[int],
        latent_dim: int,
        *,
        compactness: str,
        network: str,
        likelihood: str,
        lipschitz_constant: float,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.compactness = compactness
        self.likelihood = likelihood
        head = latent_dim + 1 if compactness == "sphere" else 2 * latent_dim
        lipschitz = compactness == "lipschitz"
        M = float(lipschitz_constant)
        if likelihood == "gaussian":
            # Calibrated decoder noise, one variance per feature (set by the detector's fit).
            self.register_buffer("log_noise_var", torch.zeros(n_features))
        if network == "conv":
            self.encoder_net = conv_encoder(hidden[0], head, lipschitz, M)
            self.decoder = conv_decoder(latent_dim, hidden[0])
        else:
            if lipschitz:
                self.encoder_net = lipschitz_mlp(n_features, hidden, head, M)
            else:
                self.encoder_net = MLP(n_features, hidden, head)
            self.decoder = MLP(latent_dim, list(reversed(hidden)), n_features)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, logvar) for a Gaussian posterior, (unit mu, kappa) for the sphere."""
        out = self.encoder_net(x)
        if self.compactness == "sphere":
            mu = out[:, :-1]
            mu = mu / mu.norm(dim=1, keepdim=True).clamp_min(1e-12)
            kappa = (1.0 + F.softplus(out[:, -1])).clamp_max(KAPPA_MAX)
            return mu, kappa
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """Return the posterior mean direction/mean: the latent code shown on maps."""
        return self.posterior(x)[0]

    def log_lik(self, x: torch.Tensor, z: torch.Tensor, calibrate: bool = False) -> torch.Tensor:
        """Return log p(x|z) per row under the decoder.

        ``calibrate`` (training, Gaussian decoder): use the batch's mean squared residual per
        feature as the noise variance, the maximum-likelihood value (Rybkin et al. 2021).
        """
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return torch.sum(x * out - F.softplus(out), dim=1)
        sq = (x - out) ** 2
        if self.likelihood == "gaussian":
            if calibrate:
                log_var = sq.detach().mean(dim=0).clamp_min(MIN_NOISE_VAR).log()
            else:
                log_var = self.log_noise_var
            return -0.5 * torch.sum(sq / log_var.exp() + log_var + _LOG_2PI, dim=1)
        return -0.5 * torch.sum(sq + _LOG_2PI, dim=1)

    @torch.no_grad()
    def calibrate_noise_(self, X: torch.Tensor, gen: torch.Generator) -> None:
        """Set the Gaussian decoder's noise variance to E_q ||x - f(z)||^2 per feature."""
        if self.likelihood != "gaussian":
            return
        self.eval()
        total = torch.zeros_like(self.log_noise_var)
        for start in range(0, X.shape[0], 4096):
            x = X[start : start + 4096]
            z, _ = self.sample(self.posterior(x), gen)
            total += ((x - self.decoder(z)) ** 2).sum(dim=0)
        self.log_noise_var.copy_((total / X.shape[0]).clamp_min(MIN_NOISE_VAR).log())

    def sample(
        self, post: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (z, log q(z|x) - log p(z)) for one reparameterised draw per row."""
        mu, second = post
        if self.compactness == "sphere":
            z = sample_vmf(mu, second, gen)
            m = mu.shape[1]
            log_ratio = second.double() * (mu * z).sum(1).double() + vmf_log_normaliser(second, m)
            return z, (log_ratio + log_sphere_area(m)).to(z.dtype)
        eps = torch.randn(mu.shape, generator=gen).to(mu.device)
        z = mu + eps * torch.exp(0.5 * second)
        log_q = -0.5 * torch.sum(eps**2 + second + _LOG_2PI, dim=1)
        log_p = -0.5 * torch.sum(z**2 + _LOG_2PI, dim=1)
        return z, log_q - log_p

    def kl(self, post: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Return KL(q(z|x) || p(z)) per row."""
        mu, second = post
        if self.compactness == "sphere":
            return kl_vmf_to_uniform(second, mu.shape[1]).to(mu.dtype)
        return kl_to_standard_normal(mu, second)


# -- the detector ----------------------------------------------------------------------------
_CHOICES = {
    "compactness": ("lipschitz", "sphere", "none"),
    "score": ("hole", "log_likelihood"),
    "network": ("auto", "mlp", "conv"),
    "likelihood": ("auto", "gaussian", "unit_gaussian", "bernoulli"),
}


class CompactVAE(TorchDetector):
    info = DetectorInfo(
        name="compact_vae",
        title="Compact VAE (vacant holes)",
        family="deep",
        uses_labels="no",
        has_latent=True,
        description=(
            "A variational autoencoder whose map of the data is kept bounded (a Lipschitz "
            "encoder, or codes on a sphere), so unusual rows cannot escape to empty far-away "
            "places; they land in vacant holes between the normal codes. The score, the hole "
            "indicator, measures how unstable a row's reconstruction is across nearby codes. "
            "Assumes normal rows fill a few regions of the map. Works well on images and on "
            "rows very unlike the training data, including extreme values that fool a plain "
            "VAE. Fails when anomalies look like normal rows, and the hole indicator is noisy "
            "with few samples per row; on small tables it needs a few hundred training steps "
            "(epochs x rows / batch size), or its map stays empty of structure. Cost: like the "
            "VAE, times the number of samples when scoring; the sphere option is for small "
            "latent sizes."
        ),
        reference=(
            "Glazunov & Zarras, Vacant Holes for Unsupervised Detection of the Outliers in "
            "Compact Latent Representation, UAI 2023"
        ),
        params=(
            ParamSpec(
                "compactness",
                "choice",
                "lipschitz: encoder with Lipschitz constant M; "
                "sphere: codes on a hypersphere (vMF); none: plain VAE.",
                choices=_CHOICES["compactness"],
            ),
            ParamSpec(
                "lipschitz_constant",
                "float",
                "Lipschitz constant M of the encoder (infinity norm), for compactness=lipschitz.",
                low=0.1,
                high=1000.0,
                log=True,
            ),
            ParamSpec(
                "n_samples",
                "int",
                "Latent draws per row when scoring (N; at least 2, the hole indicator is a "
                "spread).",
                low=2,
                high=512,
                log=True,
            ),
            ParamSpec(
                "score",
                "choice",
                "hole: hole indicator (spread of the reconstruction "
                "log-likelihood); log_likelihood: importance-sampled -log p(x).",
                choices=_CHOICES["score"],
            ),
            ParamSpec(
                "network",
                "choice",
                "auto: conv for 28x28 images (784 features), else MLP.",
                choices=_CHOICES["network"],
            ),
            ParamSpec(
                "likelihood",
                "choice",
                "Decoder distribution. auto: Bernoulli when all training values are in "
                "[0, 1], else Gaussian with calibrated noise; unit_gaussian: unit noise, as in "
                "the plain VAE.",
                choices=_CHOICES["likelihood"],
            ),
            *COMMON_DEEP_PARAMS,
        ),
    )
    _json_state: ClassVar[tuple[str, ...]] = (
        *TorchDetector._json_state,
        "network_",
        "likelihood_",
    )
    score_batch_size: ClassVar[int] = 4096

    def __init__(
        self,
        *,
        compactness: str = "lipschitz",
        lipschitz_constant: float = 2.0,
        n_samples: int = 16,
        score: str = "hole",
        network: str = "auto",
        likelihood: str = "auto",
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

    # -- fitting ------------------------------------------------------------------------------
    def _check_settings(self, X: np.ndarray) -> None:
        """Check the settings that depend on the data (fit has checked each one's spec)."""
        if self.network == "conv" and X.shape[1] != IMAGE_SIDE**2:
            raise DataError(
                f"The conv network reads 28x28 images (784 features); this data has "
                f"{X.shape[1]}. Use network='mlp' for tables."
            )
        if self.likelihood == "bernoulli" and (X.min() < 0.0 or X.max() > 1.0):
            raise DataError(
                "The Bernoulli decoder needs training values in [0, 1]; scale the data with "
                "min-max scaling or use likelihood='gaussian'."
            )

    def _fit(self, X: np.ndarray, y, callback: Callable | None) -> None:
        self._check_settings(X)
        if self.network == "auto":
            self.network_ = "conv" if X.shape[1] == IMAGE_SIDE**2 else "mlp"
        else:
            self.network_ = self.network
        if self.likelihood == "auto":
            inside = X.min() >= 0.0 and X.max() <= 1.0
            self.likelihood_ = "bernoulli" if inside else "gaussian"
        else:
            self.likelihood_ = self.likelihood
        super()._fit(X, y, callback)

    def _architecture(self, n_features: int) -> tuple[list[int], int]:
        hidden, rep = super()._architecture(n_features)
        if self.compactness == "lipschitz" and any(h % 2 for h in hidden):
            raise ValueError(
                f"The Lipschitz encoder pairs units for GroupSort: hidden widths must be even, "
                f"got {hidden}."
            )
        if self.compactness == "sphere" and not 2 <= rep <= MAX_SPHERE_DIM:
            raise ValueError(
                f"The sphere latent space needs a dimension between 2 and {MAX_SPHERE_DIM}; "
                f"got {rep}. Set rep_dim."
            )
        return hidden, rep

    def _build(self, n_features: int) -> nn.Module:
        return CompactVAEModel(
            n_features,
            self.hidden_dims_,
            self.rep_dim_,
            compactness=self.compactness,
            network=self.network_,
            likelihood=self.likelihood_,
            lipschitz_constant=self.lipschitz_constant,
        )

    def _warmup_steps(self, n_rows: int) -> int:
        """Return the optimiser steps over which the KL weight rises to 1 (see the deviations)."""
        if self.likelihood_ != "gaussian":
            return 0
        batch = max(1, min(int(self.batch_size), n_rows))
        return int(round(KL_WARMUP_SHARE * int(self.epochs) * math.ceil(n_rows / batch)))

    def _train(self, model: CompactVAEModel, X, y, gen, callback: Callable | None) -> None:
        normalise_lipschitz_rows_(model)
        warmup = self._warmup_steps(int(X.shape[0]))
        step = 0

        # Negative ELBO: -E_q log p(x|z) + KL(q(z|x) || p(z)), one draw per row; the KL term
        # weighted by step / warmup over the first ``warmup`` steps, then exactly the ELBO.
        def loss(m: CompactVAEModel, x: torch.Tensor) -> torch.Tensor:
            nonlocal step
            post = m.posterior(x)
            z, _ = m.sample(post, gen)
            kl = m.kl(post)
            if step < warmup:
                kl = kl * (step / warmup)
            step += 1
            return (-m.log_lik(x, z, calibrate=True) + kl).mean()

        self._train_on(model, loss, X, gen, callback)
        model.calibrate_noise_(X, gen)

    # -- scoring ------------------------------------------------------------------------------
    def _monte_carlo_tensor(self, X: torch.Tensor) -> torch.Tensor:
        """Return per row (hole indicator, -importance-sampled log p(x)) as an (n, 2) tensor."""
        m: CompactVAEModel = self.model_
        post = m.posterior(X)
        log_lik, log_w = [], []
        for _ in range(int(self.n_samples)):
            z, log_q_over_p = m.sample(post, self._score_gen)
            ll = m.log_lik(X, z)
            log_lik.append(ll)
            log_w.append(ll - log_q_over_p)
        ll = torch.stack(log_lik)
        hole = ll.std(dim=0, unbiased=True)
        log_px = torch.logsumexp(torch.stack(log_w), dim=0) - math.log(len(log_w))
        return torch.stack((hole, -log_px), dim=1)

    def _monte_carlo(self, X: np.ndarray) -> np.ndarray:
        # One generator per call keeps repeated calls identical.
        self._score_gen = self._scoring_generator()
        return self._predict(self._monte_carlo_tensor, X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        column = 0 if self.score == "hole" else 1
        return self._monte_carlo(X)[:, column]

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        return self._monte_carlo_tensor(X)[:, 0 if self.score == "hole" else 1]

    def _transform_tensor(self, X: torch.Tensor) -> torch.Tensor:
        return self.model_.code(X)

    def _checked(self, X: Any) -> np.ndarray:
        self._check_fitted()
        return validate_features(X, n_features=self.n_features_in_, dtype=self._input_dtype())

    def monte_carlo_scores(self, X: Any) -> dict[str, np.ndarray]:
        """Return ``{"hole", "log_likelihood"}`` per row from one set of N draws."""
        both = self._monte_carlo(self._checked(X))
        return {"hole": both[:, 0], "log_likelihood": -both[:, 1]}

    def hole_indicator(self, X: Any) -> np.ndarray:
        """Return the hole indicator per row (std of log p(x|z) over N draws), any ``score``."""
        return self._monte_carlo(self._checked(X))[:, 0]

    def log_likelihood(self, X: Any) -> np.ndarray:
        """Return the importance-sampled log p(x) per row (higher = more typical)."""
        return -self._monte_carlo(self._checked(X))[:, 1]
