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

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ad_core.data.errors import DataError

if TYPE_CHECKING:
    from ad_core.store import Workspace

#: a run folder (``Workspace.run_dir(run_id)``), written by :func:`train_run`
MODEL_DIR = "model"  # the detector (det.save: config.json + weights, no pickle)
PREPROCESSOR_FILE = "preprocessor.json"  # the fitted Preprocessor
REFERENCE_FILE = "reference.json"  # mean/std of the training rows (ad_core.explain z-scores)
TRAIN_ROWS_FILE = "train_rows.npy"  # positions of the rows the model was trained on
ROW_ROLES_FILE = "row_roles.npy"  # int8 per dataset row: ROLE_TRAIN, ROLE_HELDOUT, ROLE_UNUSED
EXPLAIN_FILE = "explain_top.json"  # feature contributions of the highest-scoring rows

#: the preprocessing a run gets unless the user changes it (the app and the command line)
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "scaling": "standard",
    "impute": "median",
    "max_categories": 20,
    "missing_indicators": False,
}
#: more training rows than this train on a seeded sample (every row is still scored)
MAX_TRAIN_ROWS = 50_000
SCORE_CHUNK_ROWS = 100_000
EXPLAIN_TOP_ROWS = 500

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
    """Which rows a run trains on and which it holds out (``holdout``: share of rows, 0..0.9).

    ``warm_from``: the run whose fitted Deep SAD network (and preprocessor) this run keeps
    and fine-tunes on its labels (:meth:`ad_core.detectors.deep_sad.DeepSAD.fine_tune`)
    instead of training from scratch; None trains from scratch.
    """

    train_on: str = "all"
    holdout: float = 0.0
    seed: int = 0
    warm_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the set-up as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainingSetup:
        """Return the set-up stored by :meth:`to_dict` (defaults for missing keys)."""
        data = dict(data or {})
        warm = data.get("warm_from")
        return cls(
            train_on=str(data.get("train_on", "all")),
            holdout=float(data.get("holdout", 0.0) or 0.0),
            seed=int(data.get("seed", 0) or 0),
            warm_from=None if warm is None else int(warm),
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
    "training.warm_from": "continued from",
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
    if name == "training.warm_from":
        return "nothing (trained from scratch)" if value is None else f"run #{value} (warm start)"
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


@dataclass
class TrainResult:
    """What ``train_run`` produced."""

    run_id: int
    scores: np.ndarray
    threshold: float
    metrics: dict[str, Any]


def _sample_rows(candidates: np.ndarray, must_include: np.ndarray, seed: int) -> np.ndarray:
    """Return sorted positions: ``candidates``, or a seeded sample of MAX_TRAIN_ROWS of them.

    Rows in ``must_include`` (labelled rows among the candidates) are always kept.
    """
    if candidates.size <= MAX_TRAIN_ROWS:
        return candidates
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, size=MAX_TRAIN_ROWS, replace=False)
    return np.union1d(chosen, np.intersect1d(must_include, candidates)).astype(np.int64)


def _step_flops(n_features: int, params: dict[str, Any]) -> float:
    """Return the rough multiply-adds of one training step of a deep detector's network."""
    from ad_core.nn import widths_for

    hidden, rep = widths_for(max(1, n_features))
    if params.get("hidden_dims"):
        hidden = [int(h) for h in params["hidden_dims"]]
    if params.get("rep_dim"):
        rep = int(params["rep_dim"])
    dims = [n_features, *hidden, rep]
    weights = 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))  # enc + dec
    return 3.0 * weights * float(params.get("batch_size") or 128)  # forward + backward


def _metrics_on(
    truth: np.ndarray | None, scores: np.ndarray, threshold: float, rows: np.ndarray
) -> dict[str, Any] | None:
    """Return AUROC, AUPRC and precision/recall/F1 on ``rows``, or None without both classes."""
    from ad_core.metrics import summary

    if truth is None or rows.size == 0:
        return None
    t = truth[rows]
    if not ((t == 1).any() and (t == 0).any()):
        return None
    full = summary(t, scores[rows], threshold)
    out: dict[str, Any] = {"n_rows": int(rows.size), "n_anomalies": int((t == 1).sum())}
    for name in ("auroc", "auprc", "precision", "recall", "f1", "n_flagged"):
        value = full[name]
        out[name] = None if value != value else value  # NaN -> None for JSON
    return out


@dataclass
class _Fitted:
    """What fitting a run produced, before it is saved: the same for rows and for series."""

    det: Any
    prep: Any
    scores: np.ndarray  # one per dataset row
    roles: np.ndarray  # one per dataset row
    train_rows: np.ndarray  # dataset rows the model trained on (for a series: points covered)
    X_train: np.ndarray  # the detector's training input (rows or windows)
    sampled: bool = False
    #: dataset rows -> the detector's input rows and their feature names (for explanations)
    explain_input: Callable[[np.ndarray], tuple[np.ndarray, list[str]]] | None = None
    extra_metrics: dict[str, Any] | None = None
    save_extra: Callable[[Any], None] | None = None


def error_message(exc: BaseException, *, located: bool = False) -> str:
    """Return what a failed training says: a message written for people (DataError,
    ParameterError) as it is, any other with its class name (and, ``located``, the function
    it was raised in)."""
    import traceback

    from ad_core.data import DataError
    from ad_core.detectors import ParameterError

    if isinstance(exc, DataError | ParameterError):
        return str(exc)
    where = ""
    if located and exc.__traceback__ is not None:
        where = f" (in {traceback.extract_tb(exc.__traceback__)[-1].name})"
    return f"{type(exc).__name__}: {exc}{where}"


def train_run(
    ws: Workspace,
    run_id: int,
    *,
    labels: np.ndarray | None = None,
    use_labels: bool = True,
    setup: Any = None,
    callback: Callable[[dict], Any] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, score and save the run ``run_id`` recorded by ``ws.create_run``.

    ``labels`` (one per dataset row, -1/0/1) choose rows for the training-set choices that
    name them and, with ``use_labels`` and a detector that learns from labels, are passed to
    it as ``y`` for its training rows. ``setup``: the :class:`ad_core.runs.TrainingSetup` (which rows to train on,
    the held-out share); default: the one recorded with the run, else all rows, none held
    out. With ``setup.warm_from`` the run keeps that run's fitted network and preprocessor
    and fine-tunes it on the labels (a warm start: ``DeepSAD.fine_tune``, ``params["epochs"]``
    epochs) instead of fitting anew; DataError when that run cannot be continued. On any
    error the run is marked failed (cancelled for FitCancelled) and re-raised.

    A dataset with series settings (:mod:`ad_core.series_runs`, chosen on the Data page) is
    trained on windows of its points and scored per point; see :func:`_fit_series`.
    """
    from ad_core import FitCancelled
    from ad_core.data import Schema, ground_truth, row_keys

    stage = on_stage or (lambda s: None)
    start = time.perf_counter()
    run = ws.get_run(run_id)
    try:
        stage("loading the data")
        record = ws.get_dataset(run.dataset_id)
        frame = ws.load_dataset_frame(run.dataset_id)
        schema = Schema.from_dict(record.schema)
        keys = row_keys(frame, schema)
        truth = ground_truth(frame, schema)
        params = dict(run.params or {})
        if setup is None:
            setup = TrainingSetup.from_dict(ws.get_setting(setup_key(run_id)))
        ws.set_setting(setup_key(run_id), setup.to_dict())
        from ad_core import get_detector_info

        learns = (
            use_labels
            and labels is not None
            and get_detector_info(run.detector).uses_labels != "no"
        )
        series = _run_series(ws, run_id, run)
        job = _FitJob(
            ws, run, frame, schema, setup, labels, truth, learns, params, callback, stage, on_notice
        )
        fitted = _fit_rows(job) if series is None else _fit_series(job, series)
        return _save_run(ws, run_id, frame, keys, truth, labels, setup, fitted, start, stage)
    except FitCancelled:
        ws.finish_run(
            run_id,
            {"error": "cancelled by the user"},
            status="cancelled",
            fit_seconds=time.perf_counter() - start,
        )
        raise
    except Exception as exc:
        ws.finish_run(
            run_id,
            {"error": error_message(exc)},
            status="failed",
            fit_seconds=time.perf_counter() - start,
        )
        raise


@dataclass
class _FitJob:
    """What fitting a run needs: its data, set-up, labels, settings and progress hooks."""

    ws: Any
    run: Any
    frame: Any
    schema: Any
    setup: TrainingSetup
    labels: np.ndarray | None
    truth: np.ndarray | None
    learns: bool
    params: dict[str, Any]
    callback: Callable[[dict], Any] | None
    stage: Callable[[str], None]
    on_notice: Callable[[str], None] | None


def _fit_rows(job: _FitJob) -> _Fitted:
    """Fit a run on the dataset's rows (the rows are the detector's input)."""
    from ad_core import make_detector
    from ad_core.data import Preprocessor

    ws, run, frame, schema, setup = job.ws, job.run, job.frame, job.schema, job.setup
    labels, truth, learns, params = job.labels, job.truth, job.learns, job.params
    callback, stage, on_notice = job.callback, job.stage, job.on_notice
    seed = int(params.get("random_state") or 0)
    roles = row_roles(len(frame), setup, labels=labels, truth=truth, learn_labels=learns)
    labelled = np.flatnonzero(labels != -1) if labels is not None else np.zeros(0, dtype=np.int64)
    candidates = np.flatnonzero(roles == ROLE_TRAIN)
    sample = _sample_rows(candidates, labelled, seed)
    sampled = sample.size < candidates.size
    roles[np.setdiff1d(candidates, sample)] = ROLE_UNUSED
    train_frame = frame.iloc[sample]
    if sampled and on_notice is not None:
        on_notice(
            f"{candidates.size:,} rows are chosen for training: the model trains on a "
            f"random sample of {sample.size:,} of them (seed {seed}) and scores all rows."
        )

    stage("preprocessing")
    warm = None if setup.warm_from is None else _warm_base(ws, run, setup.warm_from, params)
    if warm is not None:
        # The network was trained on the base run's features: keep its preprocessor.
        prep = warm.preprocessor
        X_train = prep.transform(train_frame)
    else:
        prep = Preprocessor(**(run.preprocessing or {}))
        X_train = prep.fit_transform(train_frame, schema)
    y_train = labels[sample] if learns else None

    stage("training")
    if warm is not None:
        det = warm.detector
        det.set_params(**params)
        det.fine_tune(X_train, y_train, callback=callback)
    else:
        det = make_detector(run.detector, **params)
        det.fit(X_train, y_train, callback=callback)

    stage("scoring every row")
    scores = score(SavedRun(None, det, prep), frame)
    # Training rows keep the scores the detector gave them in training: for kNN a row is
    # not its own neighbour there, so they compare with the rows it never saw.
    scores[sample] = det.decision_scores_
    return _Fitted(
        det,
        prep,
        scores,
        roles,
        sample,
        X_train,
        sampled=sampled,
        explain_input=lambda rows: (prep.transform(frame.iloc[rows]), prep.feature_names_out_),
        extra_metrics={"warm_from": int(setup.warm_from)} if warm is not None else None,
    )


def _run_series(ws: Workspace, run_id: int, run: Any) -> Any:
    """Return the series settings of a run: those it recorded, else its dataset's (recorded)."""
    from ad_core.series_runs import SeriesSettings, load_settings, run_settings_key

    recorded = ws.get_setting(run_settings_key(run_id))
    if recorded is not None:  # {"rows": true}: the run was trained on rows
        return None if recorded.get("rows") else SeriesSettings.from_dict(recorded)
    settings = load_settings(ws, run.dataset_id)
    ws.set_setting(run_settings_key(run_id), settings.to_dict() if settings else {"rows": True})
    return settings


def _fit_series(job: _FitJob, series: Any) -> _Fitted:
    """Fit a run on windows of a series' points; score every point.

    Each point (dataset row) is preprocessed as a row would be (the preprocessor is fitted
    on the training points), then windows of ``series.window`` become the detector's rows
    (:func:`ad_core.series.make_windows`, time-major). A detector reading sequences
    (seq2seq's ``n_channels``) is told how many numbers each point has. Labels per point
    become labels per window (:func:`ad_core.series.window_labels`); window scores become
    point scores by ``series.how`` (:func:`ad_core.series.point_scores`).
    """
    import inspect

    from ad_core import make_detector
    from ad_core.data import Preprocessor
    from ad_core.detectors import get_detector_class
    from ad_core.series import make_windows, point_scores, window_labels
    from ad_core.series_runs import (
        WINDOW_ROLES_FILE,
        WINDOW_SCORES_FILE,
        best_window,
        over_windows,
        read_run_settings,
        series_points,
        series_roles,
        share_threshold,
        window_feature_names,
        window_point_range,
        window_roles,
        write_run_settings,
    )

    ws, run, frame, schema, setup = job.ws, job.run, job.frame, job.schema, job.setup
    labels, truth, learns, params = job.labels, job.truth, job.learns, job.params
    callback, stage, on_notice = job.callback, job.stage, job.on_notice
    points = series_points(frame, series)
    n = len(points)
    window = series.window
    roles, train_windows = series_roles(
        n,
        window,
        train_on=setup.train_on,
        holdout=setup.holdout,
        labels=labels,
        truth=truth,
        learn_labels=learns,
    )
    seed = int(params.get("random_state") or 0)
    starts, _ = window_point_range(n, window)
    labelled_windows = (
        np.flatnonzero(window_labels(labels, window) != -1)
        if labels is not None
        else np.zeros(0, dtype=np.int64)
    )
    chosen = _sample_rows(train_windows, labelled_windows, seed)
    sampled = chosen.size < train_windows.size
    if sampled and on_notice is not None:
        on_notice(
            f"{train_windows.size:,} windows are chosen for training: the model trains on a "
            f"random sample of {chosen.size:,} of them (seed {seed}) and scores every point."
        )
    train_points = np.flatnonzero(roles == ROLE_TRAIN)

    stage("preprocessing")
    warm = None if setup.warm_from is None else _warm_base(ws, run, setup.warm_from, params)
    if warm is not None:
        base = read_run_settings(warm.folder)
        if base is None or base.to_dict() != series.to_dict():
            raise DataError(
                f"Run #{setup.warm_from} was trained on other windows than this series now "
                "has, so its network cannot be continued. Start over (train from scratch)."
            )
        prep = warm.preprocessor
    else:
        prep = Preprocessor(**(run.preprocessing or {}))
        prep.fit(frame.iloc[train_points], schema)
    X_points = prep.transform(frame)
    X_train = make_windows(X_points, window, rows=chosen)
    y_train = window_labels(labels, window)[chosen] if learns else None
    n_channels = int(X_points.shape[1])
    cls = get_detector_class(run.detector)
    if "n_channels" in inspect.signature(cls.__init__).parameters:
        params["n_channels"] = n_channels

    stage("training")
    if warm is not None:
        det = warm.detector
        det.set_params(**params)
        det.fine_tune(X_train, y_train, callback=callback)
    else:
        det = make_detector(run.detector, **params)
        det.fit(X_train, y_train, callback=callback)

    stage("scoring every point")
    window_scores = over_windows(det.decision_function, X_points, window).astype(np.float64)
    window_scores[chosen] = det.decision_scores_
    scores = point_scores(window_scores, n, window, how=series.how)
    # The expected share of anomalies is a share of points: a window's threshold would flag
    # more points than that (each flagged window flags all its points), so the run's
    # threshold is the same quantile of its training points' scores.
    det.threshold_ = share_threshold(scores[train_points], det.contamination)
    names = window_feature_names(list(prep.feature_names_out_), window.length)

    def explain_input(rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        best = [best_window(int(p), window_scores, starts, window.length) for p in rows]
        return make_windows(X_points, window, rows=np.asarray(best, dtype=np.int64)), names

    def save_extra(folder: Any) -> None:
        write_run_settings(folder, series, n_channels)
        np.save(folder / WINDOW_SCORES_FILE, window_scores, allow_pickle=False)
        np.save(
            folder / WINDOW_ROLES_FILE,
            window_roles(n, window, roles, chosen),
            allow_pickle=False,
        )

    extra = {
        "series": True,
        "window_length": window.length,
        "window_stride": window.stride,
        "n_windows": int(starts.size),
        "n_train_windows": int(chosen.size),
        "n_channels": n_channels,
    }
    if warm is not None:
        extra["warm_from"] = int(setup.warm_from)
    return _Fitted(
        det,
        prep,
        scores,
        roles,
        train_points,
        X_train,
        sampled=sampled,
        explain_input=explain_input,
        extra_metrics=extra,
        save_extra=save_extra,
    )


def _save_run(ws, run_id, frame, keys, truth, labels, setup, fitted, start, stage) -> TrainResult:
    """Save a fitted run's files, measure it and mark it done."""
    from ad_core.explain import feature_contributions, reference_stats, top_features

    det, scores, roles, sample = fitted.det, fitted.scores, fitted.roles, fitted.train_rows
    threshold = float(det.threshold_)
    stage("saving")
    folder = ws.run_dir(run_id)
    det.save(folder / MODEL_DIR)
    fitted.prep.save(folder / PREPROCESSOR_FILE)
    reference = reference_stats(fitted.X_train)
    (folder / REFERENCE_FILE).write_text(json.dumps(reference.to_dict()))
    np.save(folder / TRAIN_ROWS_FILE, sample, allow_pickle=False)
    np.save(folder / ROW_ROLES_FILE, roles, allow_pickle=False)
    if fitted.save_extra is not None:
        fitted.save_extra(folder)
    ws.save_scores(run_id, keys, scores)

    top = np.argsort(-scores, kind="stable")[:EXPLAIN_TOP_ROWS]
    X_top, names = fitted.explain_input(top)
    contrib = feature_contributions(det, X_top, reference=reference)
    explained = {
        "method": contrib.method,
        "rows": {
            str(keys[i]): feats
            for i, feats in zip(top, top_features(contrib, names, k=3), strict=True)
        },
    }
    (folder / EXPLAIN_FILE).write_text(json.dumps(explained))

    labelled = np.flatnonzero(labels != -1) if labels is not None else np.zeros(0, np.int64)
    held = np.flatnonzero(roles == ROLE_HELDOUT)
    metrics: dict[str, Any] = {
        "threshold": threshold,
        "n_rows": int(len(frame)),
        "n_train": int(sample.size),
        "n_heldout": int(held.size),
        "train_on": setup.train_on,
        "holdout": setup.holdout,
        "n_features": int(fitted.X_train.shape[1]),
        "sampled": bool(fitted.sampled),
    }
    if labels is not None:
        metrics["n_labels"] = int(labelled.size)
        metrics["n_labelled_anomalies"] = int((labels == 1).sum())
    parent = ws.get_setting(f"run_parent.{run_id}")
    if parent is not None:
        metrics["parent_run"] = parent
    metrics.update(fitted.extra_metrics or {})
    # The headline figures are on the held-out rows when there are some (the rows the
    # model never saw), else on every row; "evaluated_on" says which.
    unlabelled = np.ones(len(frame), dtype=bool) if labels is None else labels == -1
    eval_rows = held[unlabelled[held]] if held.size else np.flatnonzero(unlabelled)
    headline = _metrics_on(truth, scores, threshold, eval_rows)
    if headline is not None:
        metrics.update({k: v for k, v in headline.items() if k not in ("n_rows",)})
        metrics["evaluated_on"] = (
            "unlabelled held-out rows" if held.size else "unlabelled rows (trained on)"
        )
        metrics["n_evaluated"] = int(eval_rows.size)
    on_train = _metrics_on(truth, scores, threshold, sample)
    if on_train is not None and held.size:
        metrics["train_auroc"] = on_train["auroc"]
    ws.finish_run(
        run_id,
        metrics,
        status="done",
        fit_seconds=time.perf_counter() - start,
        model_path=folder / MODEL_DIR,
    )
    return TrainResult(run_id, scores, threshold, metrics)


#: settings a warm start cannot change: they shape the network it keeps
ARCHITECTURE_PARAMS = ("hidden_dims", "rep_dim")


def _warm_base(ws: Workspace, run: Any, base_id: int, params: dict[str, Any]) -> SavedRun:
    """Return the saved run ``base_id`` that ``run`` continues from (a warm start).

    Raises DataError, in words for the user, when that run cannot be continued: it is gone,
    is another detector, cannot fine-tune, or ``params`` change the network's shape.
    """
    try:
        base = ws.get_run(int(base_id))
        saved = load_run(ws.run_dir(base.id))
    except (KeyError, FileNotFoundError):
        raise DataError(
            f"Run #{base_id}, which this retrain was to continue from, no longer has a "
            "trained model. Start over (train from scratch) instead."
        ) from None
    if base.detector != run.detector or not hasattr(saved.detector, "fine_tune"):
        raise DataError(
            f"Run #{base_id} is a {base.detector} run: only a {run.detector} run can be "
            "continued with new labels (a warm start). Start over (train from scratch) instead."
        )
    kept = saved.detector.get_params()
    for name in ARCHITECTURE_PARAMS:
        if name in params and not _same(params[name], kept.get(name)):
            raise DataError(
                f"A warm start keeps run #{base_id}'s network, so its {name.replace('_', ' ')} "
                f"({kept.get(name)}) cannot change to {params[name]}. Keep it, or start over."
            )
    return saved


def _same(a: Any, b: Any) -> bool:
    """Return whether two settings are equal (lists and tuples alike)."""
    return (tuple(a) if isinstance(a, list | tuple) else a) == (
        tuple(b) if isinstance(b, list | tuple) else b
    )


def setup_key(run_id: int) -> str:
    """Return the settings key of a run's training set-up (``TrainingSetup.to_dict``)."""
    return f"run_setup.{int(run_id)}"


def run_setup(ws: Workspace, run_id: int) -> Any:
    """Return the :class:`ad_core.runs.TrainingSetup` a run was trained with."""
    return TrainingSetup.from_dict(ws.get_setting(setup_key(run_id)))


@dataclass(frozen=True)
class SavedRun:
    """A trained run read back from its folder: what scoring new data needs."""

    folder: Any
    detector: Any
    preprocessor: Any
    #: the series settings of a run trained on windows (ad_core.series_runs), else None
    series: Any = None

    @property
    def threshold(self) -> float:
        """Return the run's threshold (the detector's ``threshold_``)."""
        return float(self.detector.threshold_)


def load_run(folder: Any) -> SavedRun:
    """Return the run saved in ``folder`` (a ``Workspace.run_dir``) by :func:`train_run`."""
    from ad_core.data import Preprocessor
    from ad_core.detectors import load_detector
    from ad_core.series_runs import read_run_settings

    folder = check_run_folder(folder)
    return SavedRun(
        folder,
        load_detector(folder / MODEL_DIR),
        Preprocessor.load(folder / PREPROCESSOR_FILE),
        read_run_settings(folder),
    )


def check_run_folder(folder: Any) -> Any:
    """Return ``folder`` as a Path, or raise FileNotFoundError when it holds no trained run."""
    from pathlib import Path

    folder = Path(folder)
    if not (folder / MODEL_DIR).is_dir() or not (folder / PREPROCESSOR_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} holds no trained run (its model or preprocessor is missing); "
            "train the run again or pick another."
        )
    return folder


def score(run: SavedRun, frame: Any, chunk_rows: int = SCORE_CHUNK_ROWS) -> np.ndarray:
    """Return the anomaly score of every row of ``frame`` under a saved run, in row chunks.

    The run's saved preprocessor turns each chunk into features, so memory stays bounded by
    the chunk. Rows the run trained on score as new rows here (for kNN a row then counts
    itself as a neighbour: the run's stored training scores do not).

    A run trained on a series scores ``frame`` as one series (its rows the points in time
    order, clean: :func:`ad_core.series_runs.series_points`): every window of it, then a
    score per point by the run's rule. A DataError says why a frame cannot be one.
    """
    if run.series is not None:
        return _score_series(run, frame)  # windows are built in bounded chunks there
    out = np.empty(len(frame), dtype=np.float64)
    for lo in range(0, len(frame), int(chunk_rows)):
        chunk = frame.iloc[lo : lo + int(chunk_rows)]
        out[lo : lo + len(chunk)] = run.detector.decision_function(
            run.preprocessor.transform(chunk)
        )
    return out


def _score_series(run: SavedRun, frame: Any) -> np.ndarray:
    from ad_core.series import point_scores
    from ad_core.series_runs import over_windows, series_points

    points = series_points(frame, run.series)
    X_points = run.preprocessor.transform(frame)
    scores = over_windows(run.detector.decision_function, X_points, run.series.window)
    return point_scores(scores, len(points), run.series.window, how=run.series.how)


# --- which rows to show the expert next, and how far two runs agree --------------------

#: the review queue's strategies (the Label page offers DEFAULT_QUEUE_MODE first)
QUEUE_MODES = {
    "highest": "Highest scores",
    "threshold": "Nearest the threshold",
    "diverse": "Diverse among the top",
    "random": "A random sample",
    "map": "Sent from the map",
}
#: why a strategy shows a row, as the Label page says it beside the row
QUEUE_REASONS = {
    "top": "top score",
    "threshold": "near the threshold",
    "unlike": "unlike the rows labelled so far",
    "random": "random sample",
    "map": "sent from the map",
}
#: the strategy the Label page starts with: the best of the four in the loop benchmark
#: (``python -m ad_core.bench loop``, benchmarks/loop.md): warm Deep SAD's mean AUROC on the
#: rows not labelled yet, over eight sets and 10 to 100 labels, was 0.848 with random
#: rows, 0.825 nearest the threshold, 0.787 diverse among the top, 0.776 highest scores.
#: Highest scores finds four times the anomalies (59 % of its labels against 14 %) but
#: teaches the model less about the rest, as Trittenbach et al. warn (RESEARCH.md).
DEFAULT_QUEUE_MODE = "random"
#: how many of the top-ranked unlabelled rows the diverse queue picks from (five batches of
#: ten, the loop benchmark's batch)
DIVERSE_POOL = 50


@dataclass(frozen=True)
class ReviewQueue:
    """The next rows a queue shows the expert, why each, and how many rows it has left."""

    positions: np.ndarray  #: row positions, in the order they are shown
    reasons: tuple[str, ...]  #: one of QUEUE_REASONS' texts per row
    remaining: int  #: rows still to review in this queue (labelled and skipped rows excluded)


def review_queue(
    mode: str,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float | None = None,
    order: np.ndarray | None = None,
    skipped: Any = (),
    codes: Any = None,
    map_positions: np.ndarray | None = None,
    n: int = 1,
    seed: int = 0,
) -> ReviewQueue:
    """Return the next ``n`` rows of the review queue ``mode`` (a key of QUEUE_MODES).

    Labelled rows (``labels`` != -1) and ``skipped`` positions are passed over.

    - ``highest``: the highest scores first (``order``: the positions by descending score,
      computed when not given); reason "top score".
    - ``threshold``: the scores nearest ``threshold`` first; "near the threshold".
    - ``diverse``: k-centre greedy among the DIVERSE_POOL top-ranked unlabelled rows, as in
      the diversity batches of Das et al.'s active anomaly discovery (Das, Islam, Jayakodi,
      Doppa, "Active Anomaly Detection via Ensembles", arXiv:1901.08930, 2019; their code
      shubhomoydas/ad_examples, ``QueryTopDiverseByEuclideanDistance``: a batch of top-ranked
      instances far apart in Euclidean distance). Ours also counts the rows labelled so far
      as centres, so one row at a time gives the same order as a batch. Each next row is
      the one of the pool farthest from every row labelled so far and from the rows chosen
      before it, in ``codes``: the latent codes (or preprocessed features
      for a detector without a latent space), an array with a row per dataset row or a
      function of positions returning theirs. With nothing labelled the first is the top
      score. Reasons "top score" (that first row), then "unlike the rows labelled so far".
    - ``random``: a seeded permutation of the rows; "random sample".
    - ``map``: ``map_positions`` in their order (rows sent from the Latent space page);
      "sent from the map".
    """
    if mode not in QUEUE_MODES:
        raise ValueError(f"Unknown review queue {mode!r}; choose one of {', '.join(QUEUE_MODES)}.")
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if mode in ("highest", "diverse"):
        candidates = np.argsort(-scores, kind="stable") if order is None else np.asarray(order)
        reason = QUEUE_REASONS["top"]
    elif mode == "threshold":
        if threshold is None:
            raise ValueError("The queue nearest the threshold needs a threshold.")
        candidates = np.argsort(np.abs(scores - float(threshold)), kind="stable")
        reason = QUEUE_REASONS["threshold"]
    elif mode == "random":
        candidates = np.random.default_rng(seed).permutation(scores.size)
        reason = QUEUE_REASONS["random"]
    else:
        candidates = np.asarray(map_positions if map_positions is not None else [], np.int64)
        reason = QUEUE_REASONS["map"]
    candidates = candidates.astype(np.int64, copy=False)
    open_ = labels[candidates] == -1
    skipped = np.fromiter(skipped, dtype=np.int64) if len(skipped) else None
    if skipped is not None:
        open_ &= ~np.isin(candidates, skipped)
    remaining = candidates[open_]
    n = max(0, int(n))
    if mode == "diverse" and remaining.size:
        pool = remaining[: max(DIVERSE_POOL, n)]
        picked, reasons = _k_centre(pool, np.flatnonzero(labels != -1), codes, n)
        return ReviewQueue(picked, reasons, int(remaining.size))
    shown = remaining[:n]
    return ReviewQueue(shown, (reason,) * int(shown.size), int(remaining.size))


def _k_centre(
    pool: np.ndarray, labelled: np.ndarray, codes: Any, n: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Return up to ``n`` rows of ``pool`` picked by k-centre greedy, and why each.

    The centres start as the ``labelled`` rows; each pick is the pool row farthest (Euclidean,
    in ``codes``) from its nearest centre, and becomes a centre. Ties go to the higher score
    (``pool`` is ordered by score).
    """
    if codes is None:
        raise ValueError("The diverse queue needs the rows' latent codes or features (codes=).")

    def codes_of(rows: np.ndarray) -> np.ndarray:
        out = codes[rows] if isinstance(codes, np.ndarray) else codes(rows)
        return np.asarray(out, dtype=np.float64).reshape(len(rows), -1)

    Z = codes_of(pool)
    nearest = np.full(pool.size, np.inf)
    for lo in range(0, labelled.size, 4096):  # bounded memory for many labels
        C = codes_of(labelled[lo : lo + 4096])
        nearest = np.minimum(nearest, _sq_distances(Z, C).min(axis=1))
    picked: list[int] = []
    reasons: list[str] = []
    taken = np.zeros(pool.size, dtype=bool)
    for _ in range(min(n, pool.size)):
        gap = np.where(taken, -np.inf, nearest)
        if np.isinf(gap[~taken]).all():  # nothing labelled or picked yet: the top score
            i = int(np.flatnonzero(~taken)[0])
            reasons.append(QUEUE_REASONS["top"])
        else:
            i = int(np.argmax(gap))
            reasons.append(QUEUE_REASONS["unlike"])
        picked.append(int(pool[i]))
        taken[i] = True
        nearest = np.minimum(nearest, _sq_distances(Z, Z[i : i + 1])[:, 0])
    return np.asarray(picked, dtype=np.int64), tuple(reasons)


def _sq_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Return the squared Euclidean distances between the rows of ``A`` and of ``B``."""
    d = (A * A).sum(1)[:, None] - 2.0 * A @ B.T + (B * B).sum(1)[None, :]
    return np.maximum(d, 0.0)


def retrain_chain(ws: Workspace, run_id: int) -> list[int]:
    """Return the runs ``run_id`` was retrained from, oldest first, ending with ``run_id``.

    Follows the ``run_parent.<id>`` settings the Label page's retrains record; stops at a run
    with no parent, a parent that no longer exists, or a loop.
    """
    chain = [int(run_id)]
    while True:
        parent = ws.get_setting(f"run_parent.{chain[-1]}")
        if parent is None or int(parent) in chain:
            break
        try:
            ws.get_run(int(parent))
        except KeyError:
            break
        chain.append(int(parent))
    return chain[::-1]


def learning_curve(
    ws: Workspace,
    run_id: int,
    truth: np.ndarray,
    labels: np.ndarray,
    *,
    scores_of: Callable[[int], np.ndarray] | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Return the label loop's learning curve up to ``run_id``, and the rows it is on.

    One point per run of :func:`retrain_chain` that finished: ``run``, ``detector``,
    ``n_labels`` (the labels it trained with), ``warm`` (fine-tuned from its parent),
    ``auroc`` and ``auprc`` on the ground truth ``truth`` (0 / 1 / -1 unknown). Every run is
    judged on the same rows: the last run's unlabelled held-out rows under the current
    ``labels`` (else every unlabelled row, :func:`comparison_rows`), so no run is credited
    with an answer it was told and the points compare. ``scores_of(run id)``: a run's score
    per dataset row (default: read from the workspace).
    """
    from ad_core.evaluation import saved_row_roles
    from ad_core.metrics import auprc, auroc

    truth = np.asarray(truth)
    read = scores_of or (lambda rid: ws.load_scores(rid)["score"].to_numpy())
    chain = [ws.get_run(rid) for rid in retrain_chain(ws, run_id)]
    done = [r for r in chain if r.status == "done"]
    if not done:
        return [], "no finished run"
    roles = saved_row_roles(ws.run_dir(done[-1].id), truth.size)
    rows, where = comparison_rows(roles, labels)
    rows = rows[truth[rows] != -1]
    points = []
    for run in done:
        try:
            scores = np.asarray(read(run.id), dtype=np.float64)
        except (FileNotFoundError, KeyError):
            continue
        metrics = run.metrics or {}
        points.append(
            {
                "run": int(run.id),
                "detector": run.detector,
                "n_labels": int(metrics.get("n_labels") or 0),
                "warm": metrics.get("warm_from") is not None,
                "auroc": float(auroc(truth[rows], scores[rows])),
                "auprc": float(auprc(truth[rows], scores[rows])),
            }
        )
    return points, f"{rows.size:,} {where}"


def percentiles(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Return the score percentile (0..100, 100 = highest) of the rows at ``positions``."""
    ranked = np.sort(scores)
    return 100.0 * np.searchsorted(ranked, scores[positions], side="right") / scores.size


def agreement(
    scores_a: np.ndarray, scores_b: np.ndarray, t_a: float, t_b: float
) -> dict[str, float]:
    """Return how much two runs agree: rank correlation and overlap of their flagged rows."""
    from scipy.stats import spearmanr

    from ad_core.thresholds import flag

    fa, fb = flag(scores_a, t_a), flag(scores_b, t_b)
    union = int(np.count_nonzero(fa | fb))
    rho = spearmanr(scores_a, scores_b).statistic
    return {
        "spearman": float(rho),
        "flagged_both": int(np.count_nonzero(fa & fb)),
        "flagged_a_only": int(np.count_nonzero(fa & ~fb)),
        "flagged_b_only": int(np.count_nonzero(~fa & fb)),
        "jaccard": float(np.count_nonzero(fa & fb) / union) if union else float("nan"),
    }


# --- datasets from files, and runs as files ------------------------------------------------


def notes_key(dataset_id: str) -> str:
    """Return the settings key of the notes made while reading a dataset's file."""
    return f"dataset_notes.{dataset_id}"


def add_file(ws: Workspace, name: str, data: bytes) -> tuple[str, list[str]]:
    """Read a file's bytes, store it with inferred column roles; return (dataset id, notes).

    The same content added before keeps its id and the roles stored for it. Raises
    DataError with a message for the person who gave the file when it cannot be used.
    """
    import hashlib

    from ad_core.data import infer_schema, load_table

    frame = load_table(data, name=name)
    notes = list(frame.attrs.get("load_notes", []))
    frame.attrs = {}
    digest = hashlib.sha256(data).hexdigest()
    dataset_id = ws.add_dataset(
        name, frame, infer_schema(frame).to_dict(), source_bytes_hash=digest
    )
    ws.set_setting(notes_key(dataset_id), notes)
    return dataset_id, notes


def run_zip(run: Any, folder: Any, *, prefix: str = "") -> bytes:
    """Return a zip of a run's folder (model, preprocessor, scores) plus ``run.json``.

    ``prefix``: a folder inside the zip for every entry (e.g. ``"run3/"``). The 2-D maps are
    left out: they are caches, computed again from the model on request.
    """
    import io
    import zipfile
    from pathlib import Path

    folder = Path(folder)
    record = {
        "id": run.id,
        "dataset_id": run.dataset_id,
        "detector": run.detector,
        "params": run.params,
        "preprocessing": run.preprocessing,
        "metrics": run.metrics,
        "created": run.created,
        "fit_seconds": run.fit_seconds,
        "how_to_load": "ad_core.runs.load_run(folder), or ad_core.load_detector('model') and "
        "ad_core.data.Preprocessor.load('preprocessor.json')",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("map_"):
                zf.write(path, f"{prefix}{path.relative_to(folder).as_posix()}")
        zf.writestr(f"{prefix}run.json", json.dumps(record, indent=2, default=str))
    return buf.getvalue()
