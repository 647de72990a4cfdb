"""The detector contract: validation, thresholds, save/load, and the torch detector base.

Every detector follows scikit-learn's estimator rules (``__init__`` only stores keyword
arguments; what ``fit`` learns ends in ``_``) and PyOD's scoring conventions
(``decision_function``: higher = more anomalous; ``threshold_`` from ``contamination``;
``predict`` gives 0/1). Saved detectors are a folder with ``config.json`` plus plain tensors
(``weights.pt``, read with ``torch.load(weights_only=True)``) and/or arrays (``arrays.npz``,
read with ``allow_pickle=False``): loading a model never unpickles arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from ad_core.data.errors import DataError
from ad_core.thresholds import CONTAMINATION_RANGE, contamination_threshold

FORMAT_VERSION = 1
#: the kinds of hyperparameter a ParamSpec can describe
PARAM_KINDS = ("int", "float", "choice", "bool", "int_list")


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter as the app shows it; its default is read from ``__init__``."""

    name: str
    kind: str  # "int" | "float" | "choice" | "bool" | "int_list"
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False
    default: Any = None  # filled in by the registry from the constructor signature


@dataclass(frozen=True)
class DetectorInfo:
    """Registry entry of a detector: everything the app needs to describe and configure it."""

    name: str
    title: str
    family: str  # "deep" | "classic"
    uses_labels: str  # "no" | "normal_only" | "both"
    has_latent: bool
    description: str
    reference: str
    params: tuple[ParamSpec, ...] = field(default_factory=tuple)
    #: labels of normal rows alone change nothing: it learns only once an anomaly is labelled
    needs_anomaly_label: bool = False


CONTAMINATION_PARAM = ParamSpec(
    "contamination",
    "float",
    "Expected share of anomalies; sets the default threshold.",
    low=CONTAMINATION_RANGE[0],
    high=CONTAMINATION_RANGE[1],
)
#: numpy and scikit-learn take seeds from 0 to 2**32 - 1
SEED_PARAM = ParamSpec(
    "random_state", "int", "Seed; the same seed gives the same model.", low=0, high=2**32 - 1
)


class ParameterError(ValueError):
    """A detector setting outside what its registry spec allows; the message is for people."""


class NotFittedError(ValueError, AttributeError):
    """Raised when a detector is used before ``fit``."""


# -- hyperparameters: the registry's specs, checked once in fit -------------------------------
def param_specs(cls: type) -> tuple[ParamSpec, ...]:
    """Return ``cls.info.params`` with defaults read from ``cls.__init__``.

    Raises TypeError when a spec is faulty (names no constructor argument, twice the same
    setting, an unknown kind, a choice without choices, a default its own spec refuses): a
    mistake in the detector's code, reported when its registry entry is read.
    """
    signature = inspect.signature(cls.__init__).parameters
    where = f"{cls.__name__}.info.params"
    specs: list[ParamSpec] = []
    for spec in cls.info.params:
        if spec.name == "self" or spec.name not in signature:
            raise TypeError(
                f"{where} describes a setting {spec.name!r}, but {cls.__name__}() takes no "
                f"argument of that name. Rename the ParamSpec or add the argument to __init__."
            )
        if any(s.name == spec.name for s in specs):
            raise TypeError(f"{where} describes the setting {spec.name!r} twice.")
        if spec.kind not in PARAM_KINDS:
            raise TypeError(
                f"{where}: {spec.name!r} has kind {spec.kind!r}; kinds are "
                f"{', '.join(PARAM_KINDS)}."
            )
        if spec.kind == "choice" and not spec.choices:
            raise TypeError(f"{where}: the choice {spec.name!r} lists no choices.")
        default = signature[spec.name].default
        spec = dataclasses.replace(spec, default=default)
        if default is not inspect.Parameter.empty and not _is_allowed(spec, default):
            raise TypeError(
                f"{where}: the default of {spec.name!r} ({default!r}) is not {_allowed(spec)}."
            )
        specs.append(spec)
    return tuple(specs)


def validate_params(detector: BaseDetector) -> None:
    """Check every setting of ``detector`` against its registry spec; ParameterError if bad.

    The message names the detector, the setting, what is allowed and the value given, e.g.
    "k nearest neighbours: 'method' must be one of largest, mean; got 'median'."
    """
    specs = param_specs(type(detector))
    if not any(spec.name == "contamination" for spec in specs):
        specs = (*specs, CONTAMINATION_PARAM)  # fit always uses it for threshold_
    for spec in specs:
        value = getattr(detector, spec.name)
        if not _is_allowed(spec, value):
            shown = value.item() if isinstance(value, np.generic) else value
            raise ParameterError(
                f"{detector.info.title}: {spec.name!r} must be {_allowed(spec)}; got {shown!r}."
            )


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _in_range(spec: ParamSpec, value: float) -> bool:
    low_ok = spec.low is None or value >= spec.low
    return low_ok and (spec.high is None or value <= spec.high)


def _is_allowed(spec: ParamSpec, value: Any) -> bool:
    """Return whether ``value`` is one ``spec`` allows (None only where the default is None)."""
    if value is None:
        return spec.default is None
    if spec.kind == "bool":
        return isinstance(value, bool | np.bool_)
    if spec.kind == "choice":
        return isinstance(value, str | numbers.Number) and value in spec.choices
    if spec.kind == "int_list":
        # A list or tuple (JSON gives lists, the constructors' defaults are tuples).
        return isinstance(value, list | tuple) and all(_is_whole(v) and v >= 1 for v in value)
    if spec.kind == "int":
        return _is_whole(value) and _in_range(spec, value)
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    return is_number and math.isfinite(value) and _in_range(spec, value)


def _plain(x: float) -> str:
    """Return ``x`` written without exponent: 0.00001, 1000, 0.49."""
    return np.format_float_positional(float(x), trim="-")


def _allowed(spec: ParamSpec) -> str:
    """Return what ``spec`` allows, in words: "a whole number from 1 to 1000"."""
    if spec.kind == "bool":
        text = "True or False"
    elif spec.kind == "choice":
        text = "one of " + ", ".join(str(c) for c in spec.choices)
    elif spec.kind == "int_list":
        text = "a list of whole numbers, each at least 1"
    else:
        text = "a whole number" if spec.kind == "int" else "a number"
        if spec.low is not None and spec.high is not None:
            text += f" from {_plain(spec.low)} to {_plain(spec.high)}"
        elif spec.low is not None:
            text += f" of at least {_plain(spec.low)}"
        elif spec.high is not None:
            text += f" of at most {_plain(spec.high)}"
    if spec.default is None:
        text += ", or None (automatic)"
    return text


def validate_features(X: Any, *, n_features: int | None = None, dtype=np.float64) -> np.ndarray:
    """Return ``X`` as a finite 2-D C-contiguous array, or raise a DataError saying what is wrong."""
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    try:
        arr = np.asarray(X, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(
            "The input contains values that are not numbers. Preprocess the data first "
            "(ad_core.data.Preprocessor turns categories into numbers)."
        ) from exc
    if arr.ndim == 1:
        raise DataError(
            "Expected a table (rows x features) but got a single row or column of numbers. "
            "Reshape it to 2-D: one row per sample."
        )
    if arr.ndim != 2:
        raise DataError(f"Expected a 2-D table of rows x features, got {arr.ndim} dimensions.")
    if arr.shape[0] == 0:
        raise DataError("The input has no rows.")
    if arr.shape[1] == 0:
        raise DataError("The input has no feature columns.")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(
            f"The detector was trained on {n_features} features but this input has "
            f"{arr.shape[1]}. Use the same preprocessing as for training."
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad_cols = np.flatnonzero(~finite.all(axis=0))
        n_nan = int(np.isnan(arr).sum())
        n_inf = int((~finite).sum()) - n_nan
        what = " and ".join(
            part
            for part in (
                f"{n_nan} missing value(s) (NaN)" if n_nan else "",
                f"{n_inf} infinite value(s)" if n_inf else "",
            )
            if part
        )
        cols = ", ".join(str(c) for c in bad_cols[:10]) + (" ..." if bad_cols.size > 10 else "")
        raise DataError(
            f"The input contains {what} in feature column(s) {cols}. Impute or drop them "
            "first (ad_core.data.Preprocessor imputes missing values)."
        )
    return np.ascontiguousarray(arr)


def validate_labels(y: Any, n_rows: int) -> np.ndarray | None:
    """Return ``y`` as int64 with values in {-1, 0, 1}, or None; raise DataError otherwise."""
    if y is None:
        return None
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise DataError(f"Labels must be one value per row ({n_rows}), got shape {arr.shape}.")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DataError("Labels contain missing values; use -1 for unlabelled rows.")
    arr = arr.astype(np.int64)
    bad = ~np.isin(arr, (-1, 0, 1))
    if bad.any():
        raise DataError(
            "Labels must be -1 (unlabelled), 0 (normal) or 1 (anomaly); found "
            f"{sorted(set(arr[bad].tolist()))[:5]}."
        )
    return arr


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a detector config")


class BaseDetector(BaseEstimator):
    """Common behaviour of every detector; subclasses implement ``_fit`` and ``_score``."""

    info: ClassVar[DetectorInfo]
    #: fitted attributes that are JSON scalars/lists, saved in config.json
    _json_state: ClassVar[tuple[str, ...]] = ("n_features_in_", "threshold_", "fit_seconds_")
    #: fitted numpy arrays, saved in arrays.npz
    _array_state: ClassVar[tuple[str, ...]] = ("decision_scores_",)
    #: minimum number of rows ``fit`` accepts
    _min_rows: ClassVar[int] = 2

    # -- the contract -------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, callback: Callable | None = None) -> BaseDetector:
        """Fit on ``X`` (and labels ``y`` where the detector uses them); return ``self``."""
        validate_params(self)
        X = validate_features(X, dtype=self._input_dtype())
        if X.shape[0] < self._min_rows:
            raise DataError(
                f"{self.info.title} needs at least {self._min_rows} rows to train; got "
                f"{X.shape[0]}."
            )
        y = validate_labels(y, X.shape[0])
        start = time.perf_counter()
        self._fit(X, y, callback)
        self.n_features_in_ = X.shape[1]
        self.decision_scores_ = np.asarray(self._training_scores(X), dtype=np.float64)
        self.fit_seconds_ = time.perf_counter() - start
        self.threshold_ = float(contamination_threshold(self.decision_scores_, self.contamination))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Return anomaly scores (float64, higher = more anomalous) for the rows of ``X``."""
        self._check_fitted()
        X = validate_features(X, n_features=self.n_features_in_, dtype=self._input_dtype())
        return np.asarray(self._score(X), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """Return 1 for rows whose score is above ``threshold_``, else 0."""
        from ad_core.thresholds import flag

        return flag(self.decision_function(X), self.threshold_).astype(np.int64)

    def transform(self, X: Any) -> np.ndarray:
        """Return latent codes of ``X`` (detectors with a latent space only)."""
        if not self.info.has_latent:
            raise NotImplementedError(
                f"{self.info.title} has no latent space; map the preprocessed features instead."
            )
        self._check_fitted()
        X = validate_features(X, n_features=self.n_features_in_, dtype=self._input_dtype())
        return self._transform(X)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to folder ``path`` (config.json + tensors/arrays)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {name: getattr(self, name) for name in self._json_state if hasattr(self, name)}
        config = {
            "format": "ad_core.detector",
            "format_version": FORMAT_VERSION,
            "detector": self.info.name,
            "params": self.get_params(deep=False),
            "state": state,
        }
        arrays = {name: getattr(self, name) for name in self._array_state if hasattr(self, name)}
        arrays.update(self._extra_arrays())
        np.savez(path / "arrays.npz", **arrays)
        self._save_weights(path)
        tmp = path / "config.json.tmp"
        tmp.write_text(json.dumps(config, indent=2, default=_json_default))
        tmp.replace(path / "config.json")  # config last: a folder with config.json is complete
        return path

    @classmethod
    def _from_saved(cls, path: Path, config: dict) -> BaseDetector:
        # JSON has no tuples; sequence settings (hidden_dims, lr_milestones) are tuples.
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()}
        det = cls(**params)
        for name, value in config["state"].items():
            setattr(det, name, value)
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        for name in cls._array_state:
            if name in arrays:
                setattr(det, name, arrays.pop(name))
        det._restore(path, arrays)
        return det

    # -- hooks for subclasses ---------------------------------------------------------------
    def _fit(self, X: np.ndarray, y: np.ndarray | None, callback: Callable | None) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _transform(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        """Return the scores of the training rows (``decision_scores_``)."""
        return self._score(X)

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _save_weights(self, path: Path) -> None:
        pass

    def _restore(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        pass

    def _input_dtype(self):
        return np.float64

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(
                f"This {self.info.title} is not trained yet; call fit(X) before scoring."
            )


def emit(callback: Callable | None, event: dict) -> None:
    """Send one progress event; raise FitCancelled if the callback returns False."""
    from ad_core.nn.training import FitCancelled

    if callback is not None and callback(event) is False:
        raise FitCancelled(f"Training was cancelled during {event.get('stage', 'fit')}.")
