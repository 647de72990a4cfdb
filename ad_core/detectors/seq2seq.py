"""Sequence-to-sequence LSTM detector: how badly an LSTM encoder-decoder rebuilds a sequence.

Reference: Malhotra, Ramakrishnan, Anand, Vig, Agarwal & Shroff, "LSTM-based Encoder-Decoder
for Multi-sensor Anomaly Detection", ICML 2016 Anomaly Detection Workshop (arXiv:1607.00148),
EncDec-AD; the Cloudera Fast Forward prototype (fastforwardlabs/deepad, ``models/seq2seq``)
uses the same model with a bidirectional encoder.

Input layout: a row of T x C numbers is a sequence of T time steps of C channels
(``n_channels``), time-major: x(1)_1 .. x(1)_C, x(2)_1 .. x(2)_C, ...; the layout
:func:`ad_core.series.make_windows` writes. With ``n_channels=1`` (the default) a row of T
numbers is a sequence of length T: an ECG5000 beat of 140 steps, or any table row with each
feature as one time step (as the Cloudera prototype feeds KDD rows).

Method, as in the paper:
- an LSTM encoder reads x(1) .. x(T); its final state (h_E(T), c_E(T)) is the code, and the
  decoder starts from it: h_D(T) = h_E(T);
- the decoder rebuilds the sequence in reverse order, x'(T) = W h_D(T) + b, then
  h_D(i) = LSTM(input(i), h_D(i+1)) and x'(i) = W h_D(i) + b for i = T-1 .. 1;
- training minimises the squared reconstruction error, summed over the steps and channels;
- ``score="gaussian"`` is the paper's score: the error vectors e(i) = |x(i) - x'(i)| of the
  training rows give a mean mu and covariance Sigma, and a(i) = (e(i) - mu)^T Sigma^-1
  (e(i) - mu); ``score="mse"`` (default) is the squared reconstruction error summed over the
  steps and channels, the Cloudera prototype's score (and our autoencoder's).
Named differences:
- the decoder's input. In the paper, input(i) is the previous value x(i+1): the true one in
  training (teacher forcing), the decoder's own x'(i+1) when scoring (``decoder=
  "conditional"``). Trained so, the decoder can lean on the previous value instead of the
  code, and when scoring it is fed its own, drifting outputs: in early trials (20 epochs at
  lr 0.001, batches of 64) its free-running scores on ECG5000's validation beats were 0.15
  (code 64) and 0.68 (code 32) AUROC. The
  default (``"unconditioned"``) feeds zeros, so the decoder must rebuild the window from the
  code alone, the same in training and scoring: the unconditioned decoder of Srivastava,
  Mansimov & Salakhutdinov ("Unsupervised Learning of Video Representations using LSTMs",
  ICML 2015). On the validation split inside ECG5000's training half (1,002 normal beats to
  train on, 750 beats to score) with the default training, it scored 0.969 against the
  conditional decoder's 0.952 (benchmarks/series.md, the choices);
- the encoder is bidirectional by default, as in the Cloudera prototype (encoder 10 units per
  direction, decoder 20): the code is both directions' final states side by side, so the
  decoder is twice the encoder's width. ``bidirectional=False`` is the paper's encoder;
- the paper fits mu and Sigma on held-out normal sequences; here they come from the training
  rows (the app has no separate normal set), with a small ridge on Sigma;
- the paper flags single points with a(i) > tau; a row scores the mean of a(i) over its steps,
  so it is ranked and thresholded like any other detector's score;
- no dropout (the prototype uses 0.2): torch's dropout draws from the global generator, which
  the detector contract rules out, and the paper names none;
- Adam at 0.01, tenfold lower for the last quarter of the epochs, batches of at most 32 rows
  and at least 32 steps an epoch (``automatic_batch_size``): chosen on the validation split
  above (at lr 0.001: 0.934 against 0.969). The model kept is that of the epoch with the
  lowest training loss: the project's one training loop clips no gradients, and an LSTM's
  loss can jump late in training (in a trial on NAB's art_daily_jumpsdown with batches of 32
  it climbed from 60 back to 130 at epoch 27 of 40 and stayed there).
The latent code shown on maps is the encoder's final hidden state (both directions).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ad_core.data.errors import DataError
from ad_core.detectors.base import CONTAMINATION_PARAM, SEED_PARAM, DetectorInfo, ParamSpec
from ad_core.detectors.torch_base import COMMON_DEEP_PARAMS, TorchDetector
from ad_core.nn import TrainConfig, fit_module
from ad_core.nn.networks import init_recurrent

#: the largest code :func:`derived_code_size` gives
MAX_CODE = 64
#: ridge added to the error covariance (relative to its mean variance), so Sigma is invertible
_RIDGE = 1e-6
#: an automatic batch is at most this many rows, and small enough for this many steps an epoch
MAX_BATCH = 32
MIN_STEPS_PER_EPOCH = 32
#: and never fewer rows than this
MIN_BATCH = 8
_TRAINING_PARAMS = tuple(
    spec for spec in COMMON_DEEP_PARAMS if spec.name in ("epochs", "lr", "weight_decay")
)
_BATCH_PARAM = ParamSpec(
    "batch_size",
    "int",
    "Rows per optimisation step. Empty = automatic: 32, or fewer (down to 8) so that an epoch "
    "has at least 32 steps.",
    low=8,
    high=8192,
    log=True,
)


def automatic_batch_size(n_rows: int, batch_size: int | None = None) -> int:
    """Return ``batch_size``, or when None the automatic one for ``n_rows`` training rows.

    An LSTM encoder-decoder needs many optimisation steps to leave the plateau where it
    rebuilds every sequence as the mean. On 290 normal beats of the validation split, batches
    of 32 (9 steps an epoch) gave AUROC 0.97, 0.96 and 0.87 for three seeds; the automatic 9
    (32 steps) gave 0.94, 0.98 and 0.96 (benchmarks/series.md, the choices).
    """
    if batch_size is not None:
        return int(batch_size)
    return int(min(MAX_BATCH, max(MIN_BATCH, n_rows // MIN_STEPS_PER_EPOCH)))


def derived_code_size(n_features: int) -> int:
    """Return the code size for rows of ``n_features`` numbers when none is set.

    A code must compress: the largest power of two at most half the row, capped at
    :data:`MAX_CODE` (64: codes of 16, 32 and 64 scored 0.71, 0.96 and 0.97 AUROC on
    ECG5000's validation split; benchmarks/series.md).
    """
    half = max(n_features // 2, 1)
    return int(min(MAX_CODE, 2 ** int(math.floor(math.log2(half)))))


class Seq2SeqModel(nn.Module):
    """LSTM encoder and decoder; ``forward`` returns the reconstruction of flat rows."""

    def __init__(self, n_channels: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.n_channels = int(n_channels)
        self.bidirectional = bool(bidirectional)
        self.encoder_lstm = nn.LSTM(
            self.n_channels, int(hidden_size), batch_first=True, bidirectional=self.bidirectional
        )
        code = int(hidden_size) * (2 if self.bidirectional else 1)
        self.decoder_lstm = nn.LSTM(self.n_channels, code, batch_first=True)
        self.output = nn.Linear(code, self.n_channels)

    def sequences(self, x: torch.Tensor) -> torch.Tensor:
        """Return flat rows (batch, T * C) as sequences (batch, T, C)."""
        return x.reshape(x.shape[0], -1, self.n_channels)

    def encode(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the encoder's final (h, c), both directions side by side: (1, batch, code)."""
        _, (h, c) = self.encoder_lstm(seq)
        if self.bidirectional:  # h[0]: forward pass after x(T); h[1]: backward pass after x(1)
            h = torch.cat([h[0], h[1]], dim=-1)[None]
            c = torch.cat([c[0], c[1]], dim=-1)[None]
        return h, c

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        """Return the latent code of flat rows: the encoder's final hidden state."""
        return self.encode(self.sequences(x))[0][0]

    def forward(self, x: torch.Tensor, conditional: bool = False, teacher_forcing: bool = False):
        """Return the reconstruction of flat rows, in their own order.

        Unconditioned (default): the decoder runs from the code alone, its input zero at every
        step. Conditional (the paper's): its input is the previous value, the true one with
        ``teacher_forcing`` (training) and its own prediction otherwise (scoring).
        """
        seq = self.sequences(x)
        state = self.encode(seq)
        first = self.output(state[0][0])  # x'(T) from h_D(T) = h_E(T)
        if seq.shape[1] == 1:
            rebuilt = first[:, None]
        elif not conditional:
            hidden, _ = self.decoder_lstm(torch.zeros_like(seq[:, :-1]), state)
            rebuilt = torch.cat([first[:, None], self.output(hidden)], dim=1)
        elif teacher_forcing:
            # Inputs x(T) .. x(2) give h_D(T-1) .. h_D(1), hence x'(T-1) .. x'(1).
            hidden, _ = self.decoder_lstm(torch.flip(seq, dims=[1])[:, :-1], state)
            rebuilt = torch.cat([first[:, None], self.output(hidden)], dim=1)
        else:
            steps, previous = [first], first
            for _ in range(seq.shape[1] - 1):
                hidden, state = self.decoder_lstm(previous[:, None], state)
                previous = self.output(hidden[:, 0])
                steps.append(previous)
            rebuilt = torch.stack(steps, dim=1)
        return torch.flip(rebuilt, dims=[1]).reshape(x.shape)


class Seq2Seq(TorchDetector):
    info = DetectorInfo(
        name="seq2seq",
        title="Sequence-to-sequence LSTM",
        family="deep",
        uses_labels="no",
        has_latent=True,
        description=(
            "Reads each row as a sequence (a window of a series, or a row that is already a "
            "sequence such as a heartbeat) with an LSTM, squeezes it into one state and "
            "rebuilds it backwards; sequences it rebuilds badly are anomalous. Assumes normal "
            "sequences share a shape that order matters to. Works on windows of sensor series "
            "and on beats, where the shape over time is what is unusual. Fails on plain "
            "tables whose columns have no order, on very long windows (hundreds of steps are "
            "hard to rebuild from one state), and when anomalies are simple shapes it "
            "rebuilds too (flat stretches). Cost: the slowest detector here; time grows with "
            "rows x sequence length, and the steps run one after another."
        ),
        reference="Malhotra et al., LSTM-based Encoder-Decoder for Multi-sensor Anomaly "
        "Detection, ICML 2016 AD workshop; Cloudera Fast Forward deepad",
        params=(
            ParamSpec(
                "n_channels",
                "int",
                "Values per time step: a row of T x C numbers is T steps of C channels, "
                "time-major (the layout of series windows). 1 = each number is one step.",
                low=1,
                high=1024,
            ),
            ParamSpec(
                "hidden_size",
                "int",
                "LSTM units of the encoder per direction. Empty = derived: the code (both "
                "directions) at most half a row's numbers and at most 64.",
                low=1,
                high=512,
            ),
            ParamSpec(
                "bidirectional",
                "bool",
                "Read the sequence both ways (Cloudera prototype); off = the paper's encoder.",
            ),
            ParamSpec(
                "decoder",
                "choice",
                "unconditioned: the decoder rebuilds from the code alone; conditional: it is "
                "fed the previous value (the paper's; learns to copy it, see the docs).",
                choices=("unconditioned", "conditional"),
            ),
            ParamSpec(
                "score",
                "choice",
                "mse: squared reconstruction error; gaussian: the paper's Mahalanobis "
                "distance of the errors from those of the training rows.",
                choices=("mse", "gaussian"),
            ),
            *_TRAINING_PARAMS,
            _BATCH_PARAM,
            CONTAMINATION_PARAM,
            SEED_PARAM,
        ),
    )
    _array_state = (*TorchDetector._array_state, "error_mean_", "error_precision_")
    _json_state = (*TorchDetector._json_state, "best_epoch_", "batch_size_")

    def __init__(
        self,
        *,
        n_channels: int = 1,
        hidden_size: int | None = None,
        bidirectional: bool = True,
        decoder: str = "unconditioned",
        score: str = "mse",
        epochs: int = 40,
        batch_size: int | None = None,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        contamination: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
    ) -> None:
        self.n_channels = n_channels
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.decoder = decoder
        self.score = score
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.contamination = contamination
        self.random_state = random_state
        self.device = device

    def _fit(self, X: np.ndarray, y, callback: Callable | None) -> None:
        channels = int(self.n_channels)
        if X.shape[1] % channels:
            raise DataError(
                f"{self.info.title}: rows of {X.shape[1]} numbers cannot be sequences of "
                f"{channels} channels ({X.shape[1]} is not a multiple of {channels}). Set "
                "n_channels to the number of value columns of the windows."
            )
        for name in ("error_mean_", "error_precision_"):  # a refit forgets the old errors
            self.__dict__.pop(name, None)
        super()._fit(X, y, callback)
        if self.score == "gaussian":
            self._fit_error_gaussian(X)

    def _architecture(self, n_features: int) -> tuple[list[int], int]:
        """Return ([encoder units per direction], code size)."""
        directions = 2 if self.bidirectional else 1
        if self.hidden_size:
            hidden = int(self.hidden_size)
        else:
            hidden = max(derived_code_size(n_features) // directions, 1)
        return [hidden], hidden * directions

    def _build(self, n_features: int) -> nn.Module:
        return Seq2SeqModel(
            int(self.n_channels), int(self.hidden_dims_[0]), bool(self.bidirectional)
        )

    def _train(self, model, X, y, gen, callback: Callable | None) -> None:
        init_recurrent(model, gen)  # init_module re-draws Linear layers only
        conditional = self.decoder == "conditional"

        def loss(m: Seq2SeqModel, x: torch.Tensor) -> torch.Tensor:
            rebuilt = m(x, conditional=conditional, teacher_forcing=True)
            return torch.sum((rebuilt - x) ** 2, dim=1).mean()

        # The learning rate drops tenfold for the last quarter of the epochs: at 0.01 the
        # LSTMs leave the "predict the mean" plateau quickly, and 0.001 then settles them.
        epochs = int(self.epochs)
        milestones = (epochs - epochs // 4,) if epochs >= 4 else ()
        self.batch_size_ = automatic_batch_size(X.shape[0], self.batch_size)
        best: dict = {"loss": math.inf, "epoch": 0, "state": None}

        def keep_best(event: dict):
            # LSTMs trained without gradient clipping (the one loop has none) can jump out of
            # a good solution late in training; the model kept is that of the best epoch.
            if event["loss"] < best["loss"]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best.update(loss=event["loss"], epoch=event["epoch"], state=state)
            return callback(event) if callback is not None else None

        losses = fit_module(
            model,
            loss,
            (X,),
            TrainConfig(
                epochs=epochs,
                batch_size=self.batch_size_,
                lr=float(self.lr),
                weight_decay=float(self.weight_decay),
                lr_milestones=milestones,
            ),
            generator=gen,
            callback=keep_best,
            stage="train",
        )
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        self.best_epoch_ = int(best["epoch"])
        self._record("train", losses)

    def _errors(self, X: torch.Tensor) -> torch.Tensor:
        """Return |x(i) - x'(i)| per step and channel: (batch, T, C), decoder free-running."""
        return (self._rebuild(X) - X).abs().reshape(X.shape[0], -1, int(self.n_channels))

    def _rebuild(self, X: torch.Tensor) -> torch.Tensor:
        return self.model_(X, conditional=self.decoder == "conditional")

    def _fit_error_gaussian(self, X: np.ndarray) -> None:
        from ad_core.nn import predict_batched

        self.model_.eval()
        errors = predict_batched(self._errors, self._to_tensor(X), self.score_batch_size)
        e = errors.reshape(-1, int(self.n_channels)).detach().cpu().numpy().astype(np.float64)
        mean = e.mean(axis=0)
        cov = np.atleast_2d(np.cov(e, rowvar=False))
        ridge = _RIDGE * max(float(np.trace(cov)) / cov.shape[0], 1e-12)
        self.error_mean_ = mean
        self.error_precision_ = np.linalg.inv(cov + ridge * np.eye(cov.shape[0]))

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        if self.score == "mse":
            return torch.sum((self._rebuild(X) - X) ** 2, dim=1)
        mean = torch.as_tensor(self.error_mean_, dtype=X.dtype, device=X.device)
        precision = torch.as_tensor(self.error_precision_, dtype=X.dtype, device=X.device)
        centred = self._errors(X) - mean
        a = torch.einsum("btc,cd,btd->bt", centred, precision, centred)
        return a.mean(dim=1)
