"""What a run trains on and what it is judged on: the training-set choice and the held-out split.

A run sees three kinds of rows, recorded per row as its *role*:

- ``ROLE_TRAIN``: the detector was fitted on it;
- ``ROLE_HELDOUT``: held out for evaluation; the detector never saw it;
- ``ROLE_UNUSED``: neither: left out by the training-set choice (e.g. rows labelled anomalous
  when training on "all rows except those labelled anomalous") or by sampling a large table.

Every row is scored either way; the roles say which figures are honest. An autoencoder
trained on a table where 40 % of the rows are anomalies learns the anomalies too (the ECG5000
sample: AUROC below chance), while the same network trained on normal rows only ranks almost
perfectly: :data:`TRAIN_ON` lets a user choose the set-up that matches what they know.

    roles = row_roles(len(frame), TrainingSetup("truth_normal", holdout=0.3), truth=truth)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ad_core.data.errors import DataError

ROLE_TRAIN = 0
ROLE_HELDOUT = 1
ROLE_UNUSED = 2
ROLE_NAMES = {ROLE_TRAIN: "training", ROLE_HELDOUT: "held-out", ROLE_UNUSED: "left out"}

#: the training-set choices, in the order the Train page offers them
TRAIN_ON = {
    "all": "All rows",
    "not_anomalous": "All rows except those labelled anomalous",
    "labelled_normal": "Only rows labelled normal",
    "truth_normal": "Rows whose ground truth is normal (novelty set-up)",
}
#: the held-out share the app proposes when ground truth exists
DEFAULT_HOLDOUT = 0.3
MIN_TRAIN_ROWS = 2


@dataclass(frozen=True)
class TrainingSetup:
    """Which rows a run trains on and which it holds out (``holdout``: share of rows, 0..0.9)."""

    train_on: str = "all"
    holdout: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the set-up as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainingSetup:
        """Return the set-up stored by :meth:`to_dict` (defaults for missing keys)."""
        data = dict(data or {})
        return cls(
            train_on=str(data.get("train_on", "all")),
            holdout=float(data.get("holdout", 0.0) or 0.0),
            seed=int(data.get("seed", 0) or 0),
        )

    def differences(self, other: TrainingSetup) -> dict[str, tuple[Any, Any]]:
        """Return ``{field: (self's value, other's value)}`` for the fields that differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def holdout_rows(
    n_rows: int, fraction: float, seed: int = 0, truth: np.ndarray | None = None
) -> np.ndarray:
    """Return the sorted positions of a seeded held-out share of ``n_rows`` rows.

    With ``truth`` (0 normal, 1 anomaly, -1 unknown) the split is stratified: each class gives
    the same share, so the held-out rows have the data's anomaly rate. The split depends only
    on the row count, the ground truth, the share and the seed, never on the labels an expert
    gives, so runs trained before and after labelling are judged on the same rows.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"The held-out share must be between 0 and 1; got {fraction}.")
    if fraction == 0.0 or n_rows < 2:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    strata = np.zeros(n_rows, dtype=np.int64) if truth is None else np.asarray(truth)
    chosen = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        k = int(round(fraction * members.size))
        if k:
            chosen.append(rng.choice(members, size=k, replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def row_roles(
    n_rows: int,
    setup: TrainingSetup,
    *,
    labels: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    learn_labels: bool = False,
) -> np.ndarray:
    """Return the role of every row (int8: ROLE_TRAIN, ROLE_HELDOUT, ROLE_UNUSED) for ``setup``.

    ``labels``: the expert's labels (-1 / 0 / 1) the run trains with, or None. Labelled rows
    are never held out: a label is given to be learnt from. ``learn_labels``: the detector
    learns from labels (Deep SAD), so every labelled row is a training row whatever the
    choice; the choice then picks among the unlabelled rows. ``truth``: the ground truth
    (0 / 1 / -1 unknown), or None. Raises DataError, in words for the user, when the choice
    leaves fewer than two rows to train on or needs what the data does not have.
    """
    if setup.train_on not in TRAIN_ON:
        raise ValueError(
            f"Unknown training set {setup.train_on!r}; choose one of {', '.join(TRAIN_ON)}."
        )
    labels = None if labels is None else np.asarray(labels)
    has_truth = truth is not None and ((truth == 0).any() or (truth == 1).any())
    if setup.train_on == "truth_normal" and not has_truth:
        raise DataError(
            "Training on the rows whose ground truth is normal needs a ground-truth column. "
            "Set a column's role to 'ground-truth label' on the Data page, or train on all rows."
        )
    if setup.train_on == "labelled_normal" and (labels is None or not (labels == 0).any()):
        raise DataError(
            "Training on the rows labelled normal needs some: label rows as normal on the "
            "Label or Latent space page first, or train on all rows."
        )
    roles = np.full(n_rows, ROLE_TRAIN, dtype=np.int8)
    held = holdout_rows(n_rows, setup.holdout, setup.seed, truth if has_truth else None)
    if labels is not None and held.size:
        held = held[labels[held] == -1]
    roles[held] = ROLE_HELDOUT
    candidate = roles == ROLE_TRAIN
    if setup.train_on == "not_anomalous" and labels is not None:
        keep = labels != 1
    elif setup.train_on == "labelled_normal":
        keep = labels == 0
    elif setup.train_on == "truth_normal":
        keep = np.asarray(truth) == 0
    else:
        keep = np.ones(n_rows, dtype=bool)
    if learn_labels and labels is not None:
        keep = keep | (labels != -1)
    roles[candidate & ~keep] = ROLE_UNUSED
    n_train = int((roles == ROLE_TRAIN).sum())
    if n_train < MIN_TRAIN_ROWS:
        raise DataError(
            f"'{TRAIN_ON[setup.train_on]}' leaves {n_train} row(s) to train on"
            + (f" after holding out {held.size:,} for evaluation" if held.size else "")
            + ". Choose a larger training set or a smaller held-out share."
        )
    return roles


def run_settings(
    detector: str,
    params: dict[str, Any] | None,
    preprocessing: dict[str, Any] | None = None,
    setup: TrainingSetup | None = None,
) -> dict[str, Any]:
    """Return every setting of a run with the defaults filled in, as ``{name: value}``.

    Names: ``detector``, the detector's parameters (its constructor defaults where the run
    did not set them), ``training.<field>`` and ``preprocessing.<name>``. Two runs of
    different detectors compare on the same names; a setting one detector lacks is absent.
    """
    from ad_core.detectors import get_detector_class

    out: dict[str, Any] = {"detector": detector}
    try:
        defaults = get_detector_class(detector)().get_params(deep=False)
    except ValueError:  # a detector this version no longer has
        defaults = {}
    merged = {**defaults, **(params or {})}
    for name, value in merged.items():
        out[name] = list(value) if isinstance(value, tuple) else value
    for name, value in (setup or TrainingSetup()).to_dict().items():
        out[f"training.{name}"] = value
    for name, value in {**_preprocessing_defaults(), **(preprocessing or {})}.items():
        out[f"preprocessing.{name}"] = value
    return out


def _preprocessing_defaults() -> dict[str, Any]:
    """Return the Preprocessor's constructor defaults (runs saved before a setting existed)."""
    import inspect

    from ad_core.data import Preprocessor

    return {
        name: p.default
        for name, p in inspect.signature(Preprocessor.__init__).parameters.items()
        if name != "self" and p.default is not inspect.Parameter.empty
    }


#: plain names of the settings that are not a detector's own parameters
SETTING_TITLES = {
    "detector": "detector",
    "training.train_on": "trained on",
    "training.holdout": "held-out share",
    "training.seed": "held-out split seed",
}
#: what :func:`setting_differences` gives for a setting the run's detector does not have
NOT_A_SETTING = "(not a setting)"


def setting_title(name: str) -> str:
    """Return a setting's name as a person reads it ("held-out share", "batch size")."""
    if name in SETTING_TITLES:
        return SETTING_TITLES[name]
    if name.startswith("preprocessing."):
        return "preprocessing: " + name.split(".", 1)[1].replace("_", " ")
    return name.replace("_", " ")


def setting_text(name: str, value: Any) -> str:
    """Return a setting's value as a person reads it (titles, "automatic", "not a setting")."""
    if value is NOT_A_SETTING:
        return "(not a setting of this detector)"
    if name == "detector":
        from ad_core.detectors import get_detector_info

        try:
            return get_detector_info(str(value)).title
        except ValueError:
            return str(value)
    if name == "training.train_on":
        return TRAIN_ON.get(str(value), str(value)).lower()
    if name == "training.holdout":
        return f"{float(value):.0%}" if value else "none"
    if value is None:
        return "automatic"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)


def setting_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Return ``{name: (a's value, b's value)}`` for settings that differ or only one run has.

    The compute device is not a difference in what was trained.
    """
    skip = {"device"}
    names = [n for n in dict.fromkeys([*a, *b]) if n not in skip]
    missing = NOT_A_SETTING
    return {
        n: (a.get(n, missing), b.get(n, missing))
        for n in names
        if a.get(n, missing) != b.get(n, missing)
    }


def comparison_rows(roles: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, str]:
    """Return the rows on which a before/after comparison of two runs is fair, and their name.

    The unlabelled held-out rows of the new run when it has some (neither run trained on
    them), else every unlabelled row. Labelled rows never count: the retrain was told their
    answer, so including them would credit the labels with what they were given.
    """
    unlabelled = np.asarray(labels) == -1
    held = np.flatnonzero((np.asarray(roles) == ROLE_HELDOUT) & unlabelled)
    if held.size:
        return held, "unlabelled held-out rows (neither run trained on them)"
    return np.flatnonzero(unlabelled), "unlabelled rows"
