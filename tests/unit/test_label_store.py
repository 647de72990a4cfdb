"""Labels that cannot go astray: key schemes, undo across people, conflicts, label files."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

from ad_core.data import Schema, row_keys
from ad_core.store import (
    _SCHEMA_V1,
    SCHEMA_VERSION,
    KeySchemeChanged,
    LabelConflict,
    LabelImportError,
    Workspace,
    read_label_table,
)
from ad_studio_ui.labels import label_rows

BEATS = [0, 6, 7, 9, 31, 566, 3, 1]  # beat ids; beat 31 is row 4, row 31 does not exist


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"beat_id": BEATS, "x": np.arange(len(BEATS), dtype=float)})


BY_BEAT = {"roles": {"beat_id": "id", "x": "numeric"}}
BY_ROW = {"roles": {"beat_id": "ignore", "x": "numeric"}}


@pytest.fixture
def ws(tmp_path):
    workspace = Workspace(tmp_path / "home")
    yield workspace
    workspace.close()


@pytest.fixture
def ds(ws):
    return ws.add_dataset("beats", _frame(), BY_BEAT)


def _keys(ws, dataset_id) -> np.ndarray:
    record = ws.get_dataset(dataset_id)
    return row_keys(ws.load_dataset_frame(dataset_id), Schema.from_dict(record.schema))


# --- key schemes --------------------------------------------------------------------------


def test_labels_given_under_one_id_never_land_on_rows_of_another(ws, ds):
    assert ws.key_scheme(ds) == "id:beat_id"
    ws.set_labels(ds, ["31", "6"], 1, "alice")
    assert ws.label_array(ds, _keys(ws, ds)).tolist() == [-1, 1, -1, -1, 1, -1, -1, -1]

    ws.update_dataset_schema(ds, BY_ROW)  # rows go by number now: "6" would be row 6
    assert ws.key_scheme(ds) == "row"
    assert ws.labels(ds) == {}
    assert ws.label_array(ds, _keys(ws, ds)).tolist() == [-1] * len(BEATS)
    assert ws.hidden_labels(ds) == {"id:beat_id": 2}
    assert ws.undo_last_label(ds, "alice") is None  # nothing of this scheme to undo

    ws.set_labels(ds, ["6"], 0, "bob")  # row 6 (beat 3), a label of its own scheme
    ws.update_dataset_schema(ds, BY_BEAT)
    assert ws.labels(ds) == {"31": 1, "6": 1}  # beat 6 keeps its label; row 6's is hidden
    assert ws.hidden_labels(ds) == {"row": 1}


def test_an_id_column_that_cannot_identify_rows_means_row_numbers(ws):
    frame = pd.DataFrame({"beat_id": [1, 1, 2], "x": [0.0, 1.0, 2.0]})
    dataset_id = ws.add_dataset("dups", frame, BY_BEAT)
    assert ws.key_scheme(dataset_id) == "row"
    assert ws.get_dataset(dataset_id).key_scheme == "row"


def test_a_label_from_a_page_drawn_before_the_id_changed_is_refused(ws, ds):
    ws.update_dataset_schema(ds, BY_ROW)
    with pytest.raises(KeySchemeChanged, match="Nothing was saved"):
        ws.set_labels(ds, ["7"], 1, "alice", key_scheme="id:beat_id")
    assert ws.label_history(ds, key_scheme="row").empty
    assert ws.label_history(ds, key_scheme="id:beat_id").empty


def _v1_workspace(home, frame: pd.DataFrame, schema: dict) -> str:
    """Write a workspace as ad-studio wrote it before key schemes (schema version 1)."""
    home.mkdir(parents=True)
    (home / "datasets").mkdir()
    frame.to_parquet(home / "datasets" / "d1.parquet")
    conn = sqlite3.connect(home / "workspace.db")
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in _SCHEMA_V1:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO datasets (id, content_hash, name, n_rows, n_cols, schema_json, created) "
        "VALUES ('d1', 'h', 'beats', ?, 2, ?, '2024-01-01T00:00:00+00:00')",
        (len(frame), json.dumps(schema)),
    )
    for batch, (key, label, who) in enumerate([("31", 1, "alice"), ("6", 0, "bob")], start=1):
        conn.execute(
            "INSERT INTO label_batches (id, dataset_id, annotator, kind, created_at) "
            "VALUES (?, 'd1', ?, 'set', '2024-01-01T00:00:00+00:00')",
            (batch, who),
        )
        conn.execute(
            "INSERT INTO labels (dataset_id, row_key, label, annotator, batch_id, created_at) "
            "VALUES ('d1', ?, ?, ?, ?, '2024-01-01T00:00:00+00:00')",
            (key, label, who, batch),
        )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    return "d1"


def test_a_workspace_from_before_key_schemes_keeps_its_labels(tmp_path):
    home = tmp_path / "old"
    dataset_id = _v1_workspace(home, _frame(), BY_BEAT)
    ws = Workspace(home)
    assert ws.schema_version == SCHEMA_VERSION
    assert ws.key_scheme(dataset_id) == "id:beat_id"  # the scheme in force
    assert ws.labels(dataset_id) == {"31": 1, "6": 0}
    assert ws.undo_last_label(dataset_id, "bob").restored == {"6": -1}
    ws.update_dataset_schema(dataset_id, BY_ROW)
    assert ws.labels(dataset_id) == {}  # and from now on they cannot move
    assert ws.hidden_labels(dataset_id) == {"id:beat_id": 1}


def test_an_old_workspace_whose_labels_went_by_row_number_keeps_them_on_those_rows(tmp_path):
    home = tmp_path / "old"
    dataset_id = _v1_workspace(home, _frame(), BY_ROW)
    ws = Workspace(home)
    assert ws.key_scheme(dataset_id) == "row"
    assert ws.labels(dataset_id) == {"31": 1, "6": 0}
    ws.update_dataset_schema(dataset_id, BY_BEAT)
    assert ws.labels(dataset_id) == {}
    assert ws.hidden_labels(dataset_id) == {"row": 2}


# --- undo across annotators ---------------------------------------------------------------


def test_undo_never_brings_back_a_label_its_annotator_withdrew(ws, ds):
    ws.set_labels(ds, ["31"], 1, "alice")
    ws.set_labels(ds, ["31"], 0, "bob")
    assert ws.undo_last_label(ds, "alice").skipped == ("31",)
    assert ws.labels(ds) == {"31": 0}
    undone = ws.undo_last_label(ds, "bob")
    assert undone.restored == {"31": -1}
    assert ws.labels(ds) == {}


def test_a_restored_label_keeps_the_annotator_and_time_it_was_given(ws, ds):
    ws.set_labels(ds, ["31", "6"], 1, "alice")
    given_at = ws.current_labels(ds)["31"].given_at
    ws.set_labels(ds, ["31"], 0, "bob")
    undone = ws.undo_last_label(ds, "bob")
    assert undone.restored == {"31": 1} and undone.restored_annotators == {"31": "alice"}
    now = ws.current_labels(ds)["31"]
    assert (now.label, now.annotator, now.given_at) == (1, "alice", given_at)
    assert (now.changed_by, now.kind) == ("bob", "undo")
    # Rows whose current label each one gave: bob's undo gave row 31 back to alice.
    assert ws.count_labels_given(ds, "bob") == 0
    assert ws.count_labels_given(ds, "alice") == 2
    # Alice's own undo then takes back her whole batch, the restored row included.
    assert ws.undo_last_label(ds, "alice").restored == {"31": -1, "6": -1}
    assert ws.labels(ds) == {}


def test_undo_walks_back_through_ones_own_steps_only(ws, ds):
    ws.set_labels(ds, ["31"], 1, "alice")
    ws.set_labels(ds, ["6"], 1, "bob")
    ws.set_labels(ds, ["31"], 0, "alice")
    assert ws.undo_last_label(ds, "alice").restored == {"31": 1}
    assert ws.undo_last_label(ds, "alice").restored == {"31": -1}
    assert ws.undo_last_label(ds, "alice") is None
    assert ws.labels(ds) == {"6": 1}


# --- conflicts and disagreements ------------------------------------------------------------


def test_a_label_changed_by_someone_else_since_it_was_shown_is_not_overwritten(ws, ds):
    ws.set_labels(ds, ["31"], 1, "alice")
    with pytest.raises(LabelConflict) as raised:
        ws.set_labels(ds, ["31", "6"], 0, "bob", seen={"31": -1, "6": -1})
    (change,) = raised.value.changes
    assert (change.row_key, change.label, change.annotator) == ("31", 1, "alice")
    assert ws.labels(ds) == {"31": 1}  # nothing written, not even row 6
    # Told, Bob confirms: he has now seen Alice's label.
    ws.set_labels(ds, ["31"], 0, "bob", seen={"31": 1})
    assert ws.labels(ds) == {"31": 0}


def test_no_conflict_for_ones_own_change_or_the_same_label(ws, ds):
    ws.set_labels(ds, ["31"], 1, "alice")  # e.g. in her other tab
    ws.set_labels(ds, ["31"], 0, "alice", seen={"31": -1})
    ws.set_labels(ds, ["6"], 1, "bob")
    ws.set_labels(ds, ["6"], 1, "alice", seen={"6": -1})  # she agrees with Bob
    assert ws.labels(ds) == {"31": 0, "6": 1}


def test_disagreements_count_each_annotators_latest_say(ws, ds):
    ws.set_labels(ds, ["31", "6", "7"], 1, "alice")
    ws.set_labels(ds, ["31", "6"], 0, "bob")
    ws.set_labels(ds, ["6"], 0, "alice")  # she changed her mind: they agree on 6
    disputed = ws.label_disagreements(ds)
    assert disputed.to_dict("records") == [
        {"row_key": "31", "label": 0, "anomaly_by": ("alice",), "normal_by": ("bob",)}
    ]
    ws.undo_last_label(ds, "bob")  # withdrawn: no longer a say
    ws.undo_last_label(ds, "alice")
    assert ws.label_disagreements(ds).empty


# --- label files --------------------------------------------------------------------------


def test_a_session_without_a_name_cannot_label(ws, ds):
    with pytest.raises(ValueError, match="Type your name"):
        label_rows(ws, ds, ["31"], 1, "  ")
    assert ws.label_history(ds).empty


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty"),
        (b"\xff\xfe\x00\x01binary", "not UTF-8 text"),
        (b"key,value\n31,1\n", "it has no row_key and no label. Its columns are: key, value"),
        (b"row_key,label\n", "a header but no labels"),
        (b"row_key,label\n31,1\n,0\n", "1 line(s) of the file have no row key (line 3)"),
        (b"row_key,label\n31,yes\n6,2\n", "line 2 ('yes'), line 3 ('2')"),
        (b"row_key,label\n31,1\n6,0\n31,0\n", "Row key 31 is in the file 2 times"),
    ],
)
def test_a_bad_labels_file_gets_one_plain_sentence(data, message):
    with pytest.raises(LabelImportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_label_table(data)


def test_a_labels_file_may_use_words_semicolons_and_a_byte_order_mark():
    table = read_label_table("\ufeffRow_Key;Label\n 31 ;Anomaly\n6;normal\n6;0\n".encode())
    assert table.to_dict("list") == {"row_key": ["31", "6"], "label": [1, 0]}


def test_an_import_with_unknown_keys_writes_nothing_and_names_them(ws, ds):
    ws.set_labels(ds, ["31"], 1, "alice")
    with pytest.raises(LabelImportError) as raised:
        ws.import_labels(ds, b"row_key,label\n6,1\n7,0\n9999,1\n31x,0\n", "carol")
    assert str(raised.value).startswith("2 of the 4 row keys in the file match no row")
    assert "9999, 31x" in str(raised.value)
    assert len(ws.label_history(ds)) == 1 and ws.labels(ds) == {"31": 1}


def test_export_then_import_restores_labels_annotators_and_one_undo_reverts_it(ws, ds, tmp_path):
    ws.set_labels(ds, ["31"], 1, "alice")
    ws.set_labels(ds, ["6"], 0, "bob")
    data = ws.labels_csv(ds)
    other = Workspace(tmp_path / "other")
    copy = other.add_dataset("beats", _frame(), BY_BEAT)
    plan = other.import_labels(copy, data, "carol", dry_run=True)
    assert (plan.n_rows, plan.n_anomaly, plan.n_normal, plan.batch_id) == (2, 1, 1, None)
    assert other.labels(copy) == {}
    done = other.import_labels(copy, data, "carol")
    assert other.labels(copy) == {"31": 1, "6": 0}
    current = other.current_labels(copy)
    assert (current["31"].annotator, current["6"].annotator) == ("alice", "bob")
    assert other.import_labels(copy, data, "carol").n_unchanged == 2  # nothing twice
    assert other.undo_last_label(copy, "carol").batch_id == done.batch_id
    assert other.labels(copy) == {}
