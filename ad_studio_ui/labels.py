"""The one place the app writes labels: map selections, the review queue and imports call it.

Labels attach to row keys (``ad_core.data.row_keys``), carried in Plotly ``customdata``;
point indices are never used, because they differ between traces of one chart. A key means a
row only under the key scheme it was read under (``Workspace.key_scheme``): pages pass the
scheme their keys came from, so a label given on a page drawn before someone changed the id
column is refused instead of landing on another row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ad_core.store import (
    LABEL_NAMES,
    CurrentLabel,
    Workspace,
    describe_key_scheme,
    frame_key_scheme,
)
from ad_studio_ui.workspace import DatasetView

__all__ = [
    "LABEL_NAMES",
    "NO_NAME",
    "age",
    "describe_change",
    "hidden_labels_note",
    "label_rows",
    "labels_table",
    "selected_row_keys",
    "undo_last",
    "view_key_scheme",
]

NO_NAME = (
    "Type your name in the sidebar's Annotator box first: every label records who gave it. "
    "Nothing was labelled."
)


def selected_row_keys(selection: Mapping[str, Any] | None) -> list[str]:
    """Return the distinct row keys of a Plotly selection (box, lasso or click), in order.

    ``selection`` is the ``selection`` part of ``st.plotly_chart(..., on_select="rerun")``'s
    return value; each point carries its row key as ``customdata`` (a scalar, or a list
    whose first item is the key).
    """
    if not selection:
        return []
    keys: dict[str, None] = {}
    for point in selection.get("points", []) or []:
        custom = point.get("customdata")
        if isinstance(custom, list | tuple):
            custom = custom[0] if custom else None
        if custom is None:
            continue  # a point of a trace without row keys (e.g. the hole shading)
        keys[str(custom)] = None
    return list(keys)


def view_key_scheme(ws: Workspace, view: DatasetView) -> str:
    """Return the key scheme of the keys a dataset view holds ("id:<column>" or "row")."""
    record = ws.get_dataset(view.dataset_id)
    schema_json = json.dumps(record.schema, sort_keys=True)
    if hashlib.sha1(schema_json.encode()).hexdigest()[:16] == view.schema_key:
        return record.key_scheme
    # The roles changed since the view was built, moments ago: derive the view's own scheme.
    return frame_key_scheme(view.frame, view.schema.to_dict())


def label_rows(
    ws: Workspace,
    dataset_id: str,
    row_keys: Iterable[Any],
    label: int,
    annotator: str,
    *,
    key_scheme: str | None = None,
    seen: Mapping[str, int] | None = None,
) -> int:
    """Commit one label for the given rows at once (undoable as one step); return the count.

    ``label``: 1 anomaly, 0 normal, -1 clear. The workspace commits before this returns, so
    a reload or a crash right after keeps the labels. No name, no label: a ValueError says
    so. ``key_scheme`` and ``seen`` (what the page showed) are checked by
    ``Workspace.set_labels``, which raises ``KeySchemeChanged`` or ``LabelConflict``.
    """
    name = str(annotator or "").strip()
    if not name:
        raise ValueError(NO_NAME)
    keys = [str(k) for k in dict.fromkeys(str(k) for k in row_keys)]
    if not keys:
        return 0
    ws.set_labels(dataset_id, keys, int(label), name, key_scheme=key_scheme, seen=seen)
    return len(keys)


def undo_last(ws: Workspace, dataset_id: str, annotator: str) -> str:
    """Undo this annotator's latest labelling step; return a sentence saying what happened."""
    name = str(annotator or "").strip()
    if not name:
        return "Type your name in the sidebar first: undo takes back your own labels."
    undone = ws.undo_last_label(dataset_id, name)
    if undone is None:
        return "Nothing to undo: you have not labelled rows of this dataset."
    n = len(undone.restored)
    if len(set(undone.given.values())) > 1:
        text = f"Undid the import of {len(undone.given)} label(s)."
    else:
        text = f"Undid labelling {n} row(s) as {LABEL_NAMES.get(undone.label, undone.label)}."
    others = {key: who for key, who in undone.restored_annotators.items() if who and who != name}
    if others:
        key, who = next(iter(others.items()))
        more = f" (and {len(others) - 1} more rows)" if len(others) > 1 else ""
        text += f" Row {key}{more} has {who}'s label ({LABEL_NAMES[undone.restored[key]]}) again."
    if undone.skipped:
        text += f" {len(undone.skipped)} row(s) were relabelled since and were left as they are."
    return text


def age(iso: str, now: datetime | None = None) -> str:
    """Return how long ago an ISO time stamp was: '5 s ago', '3 min ago', '2 h ago'."""
    seconds = max(0.0, ((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds())
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def describe_change(change: CurrentLabel, now: datetime | None = None) -> str:
    """Return what someone did to a row: 'alice labelled this anomaly 5 s ago'."""
    when = age(change.changed_at, now)
    if change.kind == "undo":
        if change.label == -1:
            return f"{change.changed_by}'s undo left this row unlabelled {when}"
        return (
            f"{change.changed_by}'s undo gave this row {change.annotator}'s label "
            f"{LABEL_NAMES[change.label]} again {when}"
        )
    if change.label == -1:
        return f"{change.annotator} cleared this row's label {when}"
    return f"{change.annotator} labelled this {LABEL_NAMES[change.label]} {when}"


def hidden_labels_note(ws: Workspace, dataset_id: str) -> str | None:
    """Return a sentence about labels hidden by a change of the id column, or None."""
    hidden = ws.hidden_labels(dataset_id)
    if not hidden:
        return None
    now = describe_key_scheme(ws.key_scheme(dataset_id))
    parts = [
        f"{n:,} given while rows were identified by {describe_key_scheme(s)}"
        for s, n in hidden.items()
    ]
    back = [
        f"give '{s[3:]}' the role 'id'" if s.startswith("id:") else "set the id column to 'ignore'"
        for s in hidden
    ]
    total = sum(hidden.values())
    return (
        f"{total:,} label(s) are hidden: {'; '.join(parts)}, and rows are now identified by "
        f"{now}. Their row keys would point at other rows, so they are neither shown nor used "
        f"for training. To see and use them again, {' or '.join(back)} on the Data page; "
        "nothing was deleted."
    )


def labels_table(ws: Workspace, dataset_id: str, limit: int = 500) -> pd.DataFrame:
    """Return the latest ``limit`` labels: row, label, whose, when, last changed by."""
    current = [c for c in ws.current_labels(dataset_id).values() if c.label != -1]
    current.sort(key=lambda c: c.entry_id, reverse=True)
    return pd.DataFrame(
        {
            "row": [c.row_key for c in current[:limit]],
            "label": [LABEL_NAMES[c.label] for c in current[:limit]],
            "annotator": [c.annotator for c in current[:limit]],
            "given": [c.given_at[:19].replace("T", " ") + " UTC" for c in current[:limit]],
            "last change by": [c.changed_by for c in current[:limit]],
        }
    )
