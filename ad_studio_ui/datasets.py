"""Adding datasets to the workspace (samples and uploads) and describing them for the Data page."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ad_core.data import DataError, Preprocessor, Schema
from ad_core.runs import add_file, notes_key
from ad_core.store import Workspace
from ad_studio_ui.workspace import _dataset_view, get_workspace

#: above this many rows the summary fits the preprocessing on a sample (what is dropped and
#: why is then an estimate; training fits on its own rows)
SUMMARY_ROWS = 200_000


def add_sample(ws: Workspace, name: str) -> str:
    """Store a bundled sample set (with its known ground truth) and return the dataset id."""
    from ad_core.data import get_sample_info, load_sample, sample_schema

    info = get_sample_info(name)
    frame = load_sample(name)
    schema = sample_schema(name, frame)
    dataset_id = ws.add_dataset(info.title, frame, schema.to_dict())
    ws.set_setting(notes_key(dataset_id), [])
    return dataset_id


def add_upload(ws: Workspace, name: str, data: bytes) -> tuple[str, list[str]]:
    """Store an uploaded file with inferred column roles; return (id, notes) (DataError if not).

    The library's :func:`ad_core.runs.add_file`, the command line's path too.
    """
    return add_file(ws, name, data)


@dataclass
class DatasetSummary:
    """What the Data page says about a dataset under its roles and preprocessing choices."""

    n_rows: int
    n_columns: int
    features_in: list[str]
    features_out: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    label_column: str | None = None
    anomaly_share: float | None = None
    error: str | None = None
    estimated: bool = False
    #: what the preprocessing did that changes what the detector sees (Preprocessor.notes_)
    prep_notes: list[str] = field(default_factory=list)


# cache_resource, not cache_data: nothing the app caches goes through pickle. The summary is
# never changed by its readers.
@st.cache_resource(show_spinner="Summarising the dataset...", max_entries=16)
def _summary(home: str, dataset_id: str, schema_json: str, prep_json: str) -> DatasetSummary:
    view = _dataset_view(home, dataset_id, schema_json)
    frame, schema = view.frame, view.schema
    prep_params = json.loads(prep_json)
    missing = frame.isna().sum()
    summary = DatasetSummary(
        n_rows=len(frame),
        n_columns=frame.shape[1],
        features_in=schema.feature_columns,
        missing={str(c): int(n) for c, n in missing.items() if n > 0},
        label_column=schema.label_column,
    )
    for column, role in schema.roles.items():
        if role == "ignore":
            summary.dropped[column] = schema.reasons.get(column, "set to ignore")
    if view.truth is not None:
        known = view.truth[view.truth != -1]
        summary.anomaly_share = float(known.mean()) if known.size else None
    fit_frame = frame
    if len(frame) > SUMMARY_ROWS:
        rng = np.random.default_rng(0)
        fit_frame = frame.iloc[np.sort(rng.choice(len(frame), SUMMARY_ROWS, replace=False))]
        summary.estimated = True
    try:
        prep = Preprocessor(**prep_params).fit(fit_frame, schema)
    except DataError as exc:
        summary.error = str(exc)
        return summary
    summary.features_out = list(prep.feature_names_out_)
    summary.dropped.update(prep.dropped_)
    summary.prep_notes = list(prep.notes_)
    return summary


def dataset_summary(dataset_id: str, prep_params: dict[str, Any]) -> DatasetSummary:
    """Return the (cached) summary of a dataset under its current roles and choices."""
    ws = get_workspace()
    record = ws.get_dataset(dataset_id)
    return _summary(
        str(ws.home),
        dataset_id,
        json.dumps(record.schema, sort_keys=True),
        json.dumps(prep_params, sort_keys=True),
    )


def roles_table(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Return one row per column: name, type, missing share, role, why (for the role editor)."""
    n = max(1, len(frame))
    return pd.DataFrame(
        {
            "column": [str(c) for c in schema.columns],
            "type": [str(frame[c].dtype) if c in frame else "?" for c in schema.columns],
            "missing": [
                float(frame[c].isna().sum()) / n if c in frame else 0.0 for c in schema.columns
            ],
            "role": [schema.roles[c] for c in schema.columns],
            "why": [schema.reasons.get(c, "") for c in schema.columns],
        }
    )


def schema_version(schema_dict: dict) -> str:
    """Return a short hash of a schema (used to reset the role editor after a change)."""
    return hashlib.sha256(json.dumps(schema_dict, sort_keys=True).encode()).hexdigest()[:10]
