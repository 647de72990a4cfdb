"""Detector registry: names map lazily to their modules, so importing stays cheap.

    from ad_core.detectors import make_detector, list_detectors, load_detector
    det = make_detector("deep_sad", random_state=0, epochs=50)

Each detector class carries its :class:`DetectorInfo` (description, label use, latent space,
hyperparameter specs). Parameter defaults are read from the constructor signature, so nothing
about a detector is written twice; ``fit`` checks every setting against these specs
(:func:`validate_params`), so a notebook, the command line and the app get the same message.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from importlib import import_module
from pathlib import Path
from typing import Any

from ad_core.detectors.base import (
    CONTAMINATION_RANGE,
    FORMAT_VERSION,
    BaseDetector,
    DetectorInfo,
    NotFittedError,
    ParameterError,
    ParamSpec,
    param_specs,
    validate_features,
    validate_params,
)
from ad_core.nn.training import FitCancelled

#: name -> "module:Class"; order is the catalogue order in the app
_REGISTRY: dict[str, str] = {
    "ensemble": "ad_core.detectors.ensemble:Ensemble",
    "autoencoder": "ad_core.detectors.autoencoder:AutoEncoder",
    "vae": "ad_core.detectors.vae:VAE",
    "deep_svdd": "ad_core.detectors.deep_sad:DeepSVDD",
    "deep_sad": "ad_core.detectors.deep_sad:DeepSAD",
    "xgbod": "ad_core.detectors.xgbod:XGBOD",
    "compact_vae": "ad_core.detectors.compact_vae:CompactVAE",
    "isolation_forest": "ad_core.detectors.classic:IsolationForest",
    "ocsvm": "ad_core.detectors.classic:OCSVM",
    "knn": "ad_core.detectors.classic:KNN",
    "ecod": "ad_core.detectors.ecod:ECOD",
    "copod": "ad_core.detectors.copod:COPOD",
    "pca": "ad_core.detectors.pca:PCA",
    "seq2seq": "ad_core.detectors.seq2seq:Seq2Seq",
    "bigan": "ad_core.detectors.bigan:BiGAN",
    "ssl_classifier": "ad_core.detectors.ssl_classifier:SSLClassifier",
    "goad": "ad_core.detectors.goad:GOAD",
    "neutral_ad": "ad_core.detectors.neutral_ad:NeuTraLAD",
}


def _available() -> dict[str, str]:
    out = {}
    for name, target in _REGISTRY.items():
        module = target.split(":")[0]
        try:
            import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency, not an unwritten module
                raise
            continue
        out[name] = target
    return out


def get_detector_class(name: str) -> type[BaseDetector]:
    """Return the detector class registered under ``name``."""
    target = _REGISTRY.get(name)
    if target is None:
        known = ", ".join(_REGISTRY)
        raise ValueError(f"Unknown detector {name!r}. Known detectors: {known}.")
    module, cls = target.split(":")
    return getattr(import_module(module), cls)


def get_detector_info(name: str) -> DetectorInfo:
    """Return the registry entry of ``name`` with parameter defaults from its constructor.

    Raises TypeError when the entry describes a setting the constructor does not take.
    """
    cls = get_detector_class(name)
    return dataclasses.replace(cls.info, params=param_specs(cls))


def list_detectors() -> list[DetectorInfo]:
    """Return the registry entries of every available detector, in catalogue order."""
    return [get_detector_info(name) for name in _available()]


def make_detector(name: str, **params: Any) -> BaseDetector:
    """Return an unfitted detector ``name`` built with keyword hyperparameters."""
    cls = get_detector_class(name)
    valid = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"{cls.info.title} has no setting {', '.join(unknown)}; "
            f"its settings are {', '.join(sorted(valid))}."
        )
    return cls(**params)


def load_detector(path: str | Path) -> BaseDetector:
    """Return the fitted detector saved in folder ``path`` (no unpickling).

    Raises ValueError when ``config.json`` is not JSON, is not an ad_core detector's config, or
    was written by a newer ad_core (a ``format_version`` above :data:`FORMAT_VERSION`).
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"No saved detector in {path} (config.json is missing).")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{config_file} is damaged or not a saved model: it is not valid JSON ({exc}). "
            "Save the model again, or pick the folder of a saved model."
        ) from None
    _check_saved_format(config, config_file)
    cls = get_detector_class(config["detector"])
    return cls._from_saved(path, config)


def _check_saved_format(config: Any, config_file: Path) -> None:
    """Raise ValueError unless ``config`` is an ad_core detector config this version reads."""
    if not isinstance(config, dict) or config.get("format") != "ad_core.detector":
        raise ValueError(
            f"{config_file} is not the config of a model saved by ad_core; pick the folder "
            "of a saved model (det.save(path) writes one)."
        )
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            f"{config_file} has no valid format_version (got {version!r}); the file is "
            "damaged. Save the model again."
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"This model was saved by a newer version of ad_core (format {version}; this one "
            f"reads up to {FORMAT_VERSION}). Upgrade ad-studio to load it."
        )
    missing = [key for key in ("detector", "params", "state") if key not in config]
    if missing:
        raise ValueError(
            f"{config_file} lacks {', '.join(missing)}; the file is damaged. Save the model again."
        )


__all__ = [
    "CONTAMINATION_RANGE",
    "FORMAT_VERSION",
    "BaseDetector",
    "DetectorInfo",
    "FitCancelled",
    "NotFittedError",
    "ParameterError",
    "ParamSpec",
    "get_detector_class",
    "get_detector_info",
    "list_detectors",
    "load_detector",
    "make_detector",
    "validate_features",
    "validate_params",
]
