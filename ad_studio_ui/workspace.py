"""The workspace and cached, read-only views of its datasets and runs.

``st.session_state`` holds ids only; the frames, scores, models and maps behind those ids
are loaded here once and shared through ``st.cache_resource`` (arrays are marked read-only,
so a page cannot change them for another). Every cache key starts with the workspace home,
so two workspaces in one process (tests) never share an entry.

Run folder layout (``ws.run_dir(run_id)``), written by ``ad_studio_ui.training``::

    model/              the detector (det.save: config.json + weights, no pickle)
    preprocessor.json   the fitted Preprocessor
    scores.parquet      one score per row key (ws.save_scores)
    reference.json      mean/std of the training rows (for ad_core.explain's z-scores)
    train_rows.npy      positions of the rows the model was trained on
    row_roles.npy       int8 per dataset row: ROLE_TRAIN, ROLE_HELDOUT or ROLE_UNUSED
    explain_top.json    feature contributions of the highest-scoring rows
    map_<method>.npy    2-D maps of the latent codes (PCA, UMAP), computed on request
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ad_core.data import Schema, ground_truth, row_keys
from ad_core.runs import (  # noqa: F401  (the run folder's layout and row roles)
    EXPLAIN_FILE,
    MODEL_DIR,
    PREPROCESSOR_FILE,
    REFERENCE_FILE,
    ROLE_HELDOUT,
    ROLE_NAMES,
    ROLE_TRAIN,
    ROLE_UNUSED,
    ROW_ROLES_FILE,
    TRAIN_ROWS_FILE,
)
from ad_core.store import RunRecord, Workspace

_SEQUENCE_NAME = re.compile(r"^(.*?)(\d+)$")


def workspace_home() -> str:
    """Return the workspace directory this process uses (``AD_STUDIO_HOME`` or ./.ad_studio)."""
    return os.environ.get("AD_STUDIO_HOME") or ".ad_studio"


_WORKSPACES: dict[str, Workspace] = {}
_WORKSPACES_LOCK = threading.Lock()


def _workspace(home: str) -> Workspace:
    # A plain dict, not st.cache_resource: this runs a dozen times per rerun, and a lookup
    # here costs nothing. One Workspace per directory, shared by every session and thread.
    ws = _WORKSPACES.get(home)
    if ws is None:
        with _WORKSPACES_LOCK:
            ws = _WORKSPACES.setdefault(home, Workspace(home))
    return ws


def get_workspace() -> Workspace:
    """Return the shared Workspace of this server (one per workspace directory)."""
    return _workspace(workspace_home())


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def looks_like_sequence(columns: list[str]) -> bool:
    """Return True when the features are one series: 16+ columns named prefix + number."""
    if len(columns) < 16:
        return False
    prefixes = set()
    for c in columns:
        m = _SEQUENCE_NAME.match(str(c))
        if m is None:
            return False
        prefixes.add(m.group(1))
    return len(prefixes) == 1


@dataclass(frozen=True)
class DatasetView:
    """A stored dataset with what every page needs: keys, ground truth, key positions."""

    dataset_id: str
    name: str
    frame: pd.DataFrame
    schema: Schema
    keys: np.ndarray
    truth: np.ndarray | None
    key_index: dict[str, int]
    is_sequence: bool
    key_notes: tuple[str, ...]
    #: fingerprint of the column roles: cache key of everything derived from keys or truth
    schema_key: str

    @property
    def n_rows(self) -> int:
        """Return the number of rows."""
        return len(self.frame)


@st.cache_resource(show_spinner="Loading the dataset...", max_entries=6)
def _dataset_view(home: str, dataset_id: str, schema_json: str) -> DatasetView:
    ws = _workspace(home)
    record = ws.get_dataset(dataset_id)
    frame = ws.load_dataset_frame(dataset_id)
    schema = Schema.from_dict(json.loads(schema_json))
    notes: list[str] = []
    keys = _readonly(np.asarray(row_keys(frame, schema, notes=notes)).astype(str).astype(object))
    truth = ground_truth(frame, schema)
    if truth is not None:
        truth = _readonly(truth)
    return DatasetView(
        dataset_id=dataset_id,
        name=record.name,
        frame=frame,
        schema=schema,
        keys=keys,
        truth=truth,
        key_index={k: i for i, k in enumerate(keys)},
        is_sequence=looks_like_sequence(schema.numeric_columns)
        and len(schema.feature_columns) == len(schema.numeric_columns),
        key_notes=tuple(notes),
        schema_key=hashlib.sha1(schema_json.encode()).hexdigest()[:16],
    )


def dataset_view(dataset_id: str) -> DatasetView:
    """Return the cached view of a dataset under its current column roles."""
    ws = get_workspace()
    record = ws.get_dataset(dataset_id)
    return _dataset_view(str(ws.home), dataset_id, json.dumps(record.schema, sort_keys=True))


def label_array(view: DatasetView, labels: dict[str, int] | None = None) -> np.ndarray:
    """Return the expert label of every row (-1 unlabelled, 0 normal, 1 anomaly)."""
    if labels is None:
        labels = get_workspace().labels(view.dataset_id)
    out = np.full(view.n_rows, -1, dtype=np.int64)
    for key, value in labels.items():
        pos = view.key_index.get(key)
        if pos is not None:
            out[pos] = value
    return out


# --- runs ---------------------------------------------------------------------------------


def run_path(run_id: int) -> Path:
    """Return the folder of a run's files."""
    return get_workspace().run_dir(run_id)


@st.cache_resource(show_spinner=False, max_entries=8)
def _run_scores(home: str, run_id: int, dataset_id: str, schema_json: str) -> np.ndarray:
    ws = _workspace(home)
    view = _dataset_view(home, dataset_id, schema_json)
    stored = ws.load_scores(run_id)
    keys = stored["row_key"].to_numpy().astype(str)
    scores = stored["score"].to_numpy(dtype=np.float64)
    if keys.size == view.n_rows and np.array_equal(keys, view.keys.astype(str)):
        return _readonly(scores.copy())
    # The keys changed (e.g. the id column was changed after training): align by key.
    aligned = pd.Series(scores, index=keys).reindex(view.keys.astype(str)).to_numpy()
    if np.isnan(aligned).any():
        raise ValueError(
            f"Run {run_id} was scored with other row keys than the dataset now has (was the "
            "id column changed?). Set the id column back or train a new run."
        )
    return _readonly(aligned)


def run_scores(run: RunRecord) -> np.ndarray:
    """Return a run's scores, one per dataset row, in the dataset's row order."""
    ws = get_workspace()
    record = ws.get_dataset(run.dataset_id)
    try:
        return _run_scores(
            str(ws.home), int(run.id), run.dataset_id, json.dumps(record.schema, sort_keys=True)
        )
    except ValueError as exc:  # the row keys changed since training: say so, stop the page
        st.error(str(exc))
        st.stop()


@st.cache_resource(show_spinner=False, max_entries=8)
def _run_order(home: str, run_id: int, dataset_id: str, schema_json: str) -> np.ndarray:
    scores = _run_scores(home, run_id, dataset_id, schema_json)
    return _readonly(np.argsort(-scores, kind="stable"))


def run_order(run: RunRecord) -> np.ndarray:
    """Return row positions sorted by descending score (most anomalous first)."""
    ws = get_workspace()
    record = ws.get_dataset(run.dataset_id)
    return _run_order(
        str(ws.home), int(run.id), run.dataset_id, json.dumps(record.schema, sort_keys=True)
    )


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _run_detector(home: str, run_id: int) -> Any:
    from ad_core import load_detector

    return load_detector(_workspace(home).run_dir(run_id) / MODEL_DIR)


def run_detector(run_id: int) -> Any:
    """Return a run's fitted detector (shared: never refit or change it)."""
    return _run_detector(str(get_workspace().home), int(run_id))


@st.cache_resource(show_spinner=False, max_entries=8)
def _run_preprocessor(home: str, run_id: int) -> Any:
    from ad_core.data import Preprocessor

    return Preprocessor.load(_workspace(home).run_dir(run_id) / PREPROCESSOR_FILE)


def run_preprocessor(run_id: int) -> Any:
    """Return a run's fitted Preprocessor."""
    return _run_preprocessor(str(get_workspace().home), int(run_id))


@st.cache_resource(show_spinner="Preprocessing the rows...", max_entries=2)
def _run_features(home: str, run_id: int, dataset_id: str, schema_json: str) -> np.ndarray:
    view = _dataset_view(home, dataset_id, schema_json)
    return _readonly(_run_preprocessor(home, run_id).transform(view.frame))


def run_features(run: RunRecord) -> np.ndarray:
    """Return every row of the run's dataset preprocessed as the run was (float32)."""
    ws = get_workspace()
    record = ws.get_dataset(run.dataset_id)
    return _run_features(
        str(ws.home), int(run.id), run.dataset_id, json.dumps(record.schema, sort_keys=True)
    )


def run_row_roles(run: RunRecord, n_rows: int, *, ws: Workspace | None = None) -> np.ndarray:
    """Return per dataset row what it was to the run: ROLE_TRAIN, ROLE_HELDOUT or ROLE_UNUSED."""
    from ad_core.evaluation import saved_row_roles

    return saved_row_roles((ws or get_workspace()).run_dir(run.id), n_rows)


def run_title(run: RunRecord) -> str:
    """Return a short name for a run: '#3 Autoencoder, 12 Mar 14:05'."""
    from ad_core import get_detector_info

    try:
        title = get_detector_info(run.detector).title
    except ValueError:
        title = run.detector
    when = run.created[:16].replace("T", " ")
    parent = (run.metrics or {}).get("parent_run")
    extra = f", from #{parent} + labels" if parent else ""
    return f"#{run.id} {title}{extra} ({when} UTC)"
