"""Base class of the deep detectors: device handling, seeding, batched scoring, weights I/O.

A deep detector owns data handling and training; its ``nn.Module`` (``model_``) owns only the
forward pass (PyOD's split). Subclasses implement ``_build``, ``_train`` and ``_score_tensor``;
the helpers below hold what they would otherwise each repeat: storing the constructor's
settings, the one training call, batched prediction and the seeded generators of scoring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ad_core.detectors.base import CONTAMINATION_PARAM, SEED_PARAM, BaseDetector, ParamSpec
from ad_core.nn import (
    TrainConfig,
    fit_module,
    init_module,
    make_generator,
    predict_batched,
    resolve_device,
    widths_for,
)

_BUILD_LOCK = threading.Lock()

#: Parameters every deep detector shares; each detector lists them in its registry entry.
COMMON_DEEP_PARAMS = (
    ParamSpec("epochs", "int", "Passes over the training data.", low=1, high=1000),
    ParamSpec("batch_size", "int", "Rows per optimisation step.", low=8, high=8192, log=True),
    ParamSpec("lr", "float", "Adam learning rate.", low=1e-5, high=1e-1, log=True),
    ParamSpec("weight_decay", "float", "L2 penalty on the weights (Adam).", low=0.0, high=1e-1),
    ParamSpec(
        "hidden_dims",
        "int_list",
        "Widths of the hidden layers, e.g. 64,32. Empty = derived from the number of features.",
    ),
    ParamSpec(
        "rep_dim",
        "int",
        "Size of the latent representation. Empty = derived from the number of features.",
        low=1,
        high=512,
    ),
    CONTAMINATION_PARAM,
    SEED_PARAM,
)


def deep_params(**changes: dict[str, Any]) -> tuple[ParamSpec, ...]:
    """Return ``COMMON_DEEP_PARAMS`` with fields of the named specs changed.

    E.g. ``deep_params(rep_dim={"help": "Size of the embedding.", "high": 1024})``.
    """
    unknown = set(changes) - {spec.name for spec in COMMON_DEEP_PARAMS}
    if unknown:
        raise TypeError(f"deep_params: no common deep parameter named {sorted(unknown)}")
    return tuple(
        replace(spec, **changes[spec.name]) if spec.name in changes else spec
        for spec in COMMON_DEEP_PARAMS
    )


class TorchDetector(BaseDetector):
    """Deep detector skeleton; ``model_`` is the fitted ``nn.Module``."""

    _json_state: ClassVar[tuple[str, ...]] = (
        *BaseDetector._json_state,
        "history_",
        "hidden_dims_",
        "rep_dim_",
    )
    score_batch_size: ClassVar[int] = 32768
    #: False: ``hidden_dims`` and ``rep_dim`` are used as given (their defaults are set, so
    #: nothing is derived from the number of features)
    derived_widths: ClassVar[bool] = True

    # -- hooks ------------------------------------------------------------------------------
    def _build(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def _train(
        self,
        model: nn.Module,
        X: torch.Tensor,
        y: np.ndarray | None,
        gen: torch.Generator,
        callback: Callable | None,
    ) -> None:
        raise NotImplementedError

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _transform_tensor(self, X: torch.Tensor) -> torch.Tensor:
        return self.model_.encoder(X)

    # -- shared machinery -----------------------------------------------------------------
    def _store_params(self, params: dict[str, Any]) -> None:
        """Store the constructor's arguments, its ``locals()``, as attributes of the same names.

        scikit-learn's rule: ``__init__`` only stores its keyword arguments. Each detector
        still writes out its signature, from which ``get_params`` and the registry read them.
        """
        for name, value in params.items():
            if name != "self" and not name.startswith("__"):  # not super()'s __class__ cell
                setattr(self, name, value)

    def _input_dtype(self):
        return np.float32

    def _architecture(self, n_features: int) -> tuple[list[int], int]:
        """Return (hidden widths, representation size): explicit settings or data-derived."""
        if not self.derived_widths:
            return [int(h) for h in self.hidden_dims], int(self.rep_dim)
        hidden, rep = widths_for(n_features)
        if self.hidden_dims:
            hidden = [int(h) for h in self.hidden_dims]
        if self.rep_dim:
            rep = int(self.rep_dim)
        return hidden, rep

    def _config(self, **overrides) -> TrainConfig:
        base = dict(
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            lr_milestones=tuple(getattr(self, "lr_milestones", ()) or ()),
        )
        base.update(overrides)
        return TrainConfig(**base)

    def _train_on(
        self,
        model: nn.Module,
        loss: Callable[..., torch.Tensor],
        X: torch.Tensor,
        gen: torch.Generator,
        callback: Callable | None,
    ) -> list[float]:
        """Train ``model`` on ``loss`` over the rows ``X`` (stage "train"); record the losses."""
        losses = fit_module(
            model, loss, (X,), self._config(), generator=gen, callback=callback, stage="train"
        )
        self._record("train", losses)
        return losses

    def _fit(self, X: np.ndarray, y: np.ndarray | None, callback: Callable | None) -> None:
        self.device_ = resolve_device(getattr(self, "device", "auto"))
        gen = make_generator(self.random_state)
        self.hidden_dims_, self.rep_dim_ = self._architecture(X.shape[1])
        model = init_module(self._build_isolated(X.shape[1]), gen).to(self.device_)
        self.history_ = []
        Xt = torch.from_numpy(X).to(self.device_)
        self.model_ = model
        self._train(model, Xt, y, gen, callback)
        model.eval()

    def _build_isolated(self, n_features: int) -> nn.Module:
        """Return ``_build(n_features)`` without consuming torch's global RNG.

        torch layers draw their default initialisation from the global generator as they are
        constructed; forking it keeps a user's own seeded stream untouched (weights are then
        re-drawn from the detector's local generator).
        """
        # The lock keeps two detectors built at once in this process (training threads) from
        # restoring each other's RNG state; code outside ad_core drawing at that very instant
        # can still see its draw undone.
        with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
            return self._build(n_features)

    def _to_tensor(self, X: np.ndarray) -> torch.Tensor:
        device = getattr(self, "device_", torch.device("cpu"))
        return torch.from_numpy(X).to(device)

    def _predict(self, fn: Callable[[torch.Tensor], torch.Tensor], X: np.ndarray) -> np.ndarray:
        """Return ``fn`` of the rows of ``X``, in eval mode and batches, as float64 numpy."""
        self.model_.eval()
        out = predict_batched(fn, self._to_tensor(X), self.score_batch_size)
        return out.detach().cpu().numpy().astype(np.float64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._predict(self._score_tensor, X)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self._predict(self._transform_tensor, X)

    def _scoring_generator(self) -> torch.Generator:
        """Return a torch generator seeded afresh from ``random_state`` (0 when unset).

        Scoring draws from a new one on every call, so a fitted model always gives the same
        scores.
        """
        return make_generator(self.random_state if self.random_state is not None else 0)

    def _numpy_rng(self, stream: int) -> np.random.Generator:
        """Return the numpy generator of the seed's own stream ``stream`` (unseeded without)."""
        seed = None if self.random_state is None else [int(self.random_state), stream]
        return np.random.default_rng(seed)

    def _save_weights(self, path: Path) -> None:
        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        torch.save(state, path / "weights.pt")

    def _restore(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        self.device_ = resolve_device(getattr(self, "device", "auto"))
        model = self._build_isolated(int(self.n_features_in_))
        state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.model_ = model.to(self.device_).eval()

    def _record(self, stage: str, losses: list[float]) -> None:
        self.history_.extend(
            {"stage": stage, "epoch": i + 1, "loss": float(v)} for i, v in enumerate(losses)
        )
