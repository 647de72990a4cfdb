"""The workspace keeps every label, run and setting across restarts, threads and processes."""

import multiprocessing as mp
import os
import sqlite3
import threading

import numpy as np
import pandas as pd
import pytest

from ad_core.store import SCHEMA_VERSION, Workspace, WorkspaceError


def _frame(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(n)], "x": rng.normal(size=n), "kind": ["a", "b"] * (n // 2)}
    )


@pytest.fixture
def ws(tmp_path):
    workspace = Workspace(tmp_path / "home")
    yield workspace
    workspace.close()


@pytest.fixture
def dataset_id(ws):
    return ws.add_dataset("sample", _frame(), {"roles": {"id": "id", "x": "numeric"}})


# --- workers for the multi-process tests (module level so spawn can import them) ----------


def _label_many(home, dataset_id, worker, n_batches, barrier):
    ws = Workspace(home)
    barrier.wait()
    for i in range(n_batches):
        ws.set_labels(dataset_id, [f"w{worker}-{i}", "shared"], i % 2, annotator=f"w{worker}")
    ws.close()


def _crash_mid_batch(home, dataset_id):
    def keys():
        yield "a"
        yield "b"
        os._exit(3)  # the process dies with the batch half inserted

    Workspace(home).set_labels(dataset_id, keys(), 1, "crasher")


# --- labels -------------------------------------------------------------------------------


def test_labels_survive_workspace_restart(tmp_path):
    home = tmp_path / "home"
    first = Workspace(home)
    ds = first.add_dataset("sample", _frame(), {})
    first.set_labels(ds, ["r1", "r2"], 1, "ann")
    first.set_labels(ds, ["r3"], 0, "ann")
    first.set_setting("last_dataset", ds)
    del first  # no close(): what was given must already be on disk

    again = Workspace(home)
    assert again.labels(ds) == {"r1": 1, "r2": 1, "r3": 0}
    assert again.get_setting("last_dataset") == ds


def test_latest_label_wins_and_cleared_rows_are_omitted(ws, dataset_id):
    ws.set_labels(dataset_id, ["r1", "r2", "r3"], 1, "ann")
    ws.set_labels(dataset_id, ["r2"], 0, "ann")
    ws.set_labels(dataset_id, ["r3"], -1, "ann")
    assert ws.labels(dataset_id) == {"r1": 1, "r2": 0}
    assert ws.label_array(dataset_id, np.array(["r0", "r1", "r2", "r3"])).tolist() == [-1, 1, 0, -1]
    assert len(ws.label_history(dataset_id)) == 5


def test_row_keys_are_stored_as_text(ws, dataset_id):
    ws.set_labels(dataset_id, np.array([7, 8]), 1, "ann")
    assert ws.labels(dataset_id) == {"7": 1, "8": 1}


def test_two_threads_labelling_at_once_lose_nothing(ws, dataset_id):
    n_batches = 25

    def work(worker):
        for i in range(n_batches):
            ws.set_labels(dataset_id, [f"t{worker}-{i}"], 1, annotator=f"t{worker}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = ws.labels(dataset_id)
    assert len(labels) == 4 * n_batches
    assert set(labels) == {f"t{w}-{i}" for w in range(4) for i in range(n_batches)}


def test_two_processes_labelling_at_once_lose_nothing(ws, dataset_id):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    n_batches = 20
    procs = [
        ctx.Process(target=_label_many, args=(ws.home, dataset_id, w, n_batches, barrier))
        for w in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    labels = ws.labels(dataset_id)
    for w in range(2):
        for i in range(n_batches):
            assert labels[f"w{w}-{i}"] == i % 2
    # Both processes also wrote the same row every time: all entries are in the history.
    history = ws.label_history(dataset_id, row_key="shared")
    assert len(history) == 2 * n_batches
    assert history["batch_id"].nunique() == 2 * n_batches


def test_a_failure_mid_batch_leaves_no_partial_labels(ws, dataset_id):
    ws.set_labels(dataset_id, ["r1"], 0, "ann")
    with pytest.raises(ValueError, match="position 2"):
        # The third key is missing: the first two were already inserted when it fails.
        ws.set_labels(dataset_id, ["r5", "r6", None, "r7"], 1, "ann")
    assert ws.labels(dataset_id) == {"r1": 0}
    assert len(ws.label_history(dataset_id)) == 1
    # The failed call left no batch behind for undo to find.
    assert ws.undo_last_label(dataset_id).restored == {"r1": -1}


def test_a_crash_mid_batch_leaves_no_partial_labels(ws, dataset_id):
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_crash_mid_batch, args=(ws.home, dataset_id))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 3
    fresh = Workspace(ws.home)
    assert fresh.labels(dataset_id) == {}
    assert fresh.label_history(dataset_id).empty
    fresh.set_labels(dataset_id, ["r1"], 1, "ann")  # and the database is still writable
    assert fresh.labels(dataset_id) == {"r1": 1}


def test_invalid_label_value_is_rejected_before_writing(ws, dataset_id):
    for bad in (2, "1", True, None):
        with pytest.raises(ValueError, match="label must be"):
            ws.set_labels(dataset_id, ["r1"], bad, "ann")
    assert ws.label_history(dataset_id).empty


def test_labels_for_unknown_dataset_are_refused(ws):
    with pytest.raises(KeyError, match="no dataset"):
        ws.set_labels("nope", ["r1"], 1, "ann")


def test_undo_restores_previous_labels_and_keeps_history(ws, dataset_id):
    ws.set_labels(dataset_id, ["r1", "r2"], 1, "ann")
    ws.set_labels(dataset_id, ["r2", "r3"], 0, "ann")

    undone = ws.undo_last_label(dataset_id)
    assert undone.label == 0 and undone.annotator == "ann"
    assert undone.restored == {"r2": 1, "r3": -1}
    assert ws.labels(dataset_id) == {"r1": 1, "r2": 1}

    # A second undo walks further back, to before the first batch.
    assert ws.undo_last_label(dataset_id).restored == {"r1": -1, "r2": -1}
    assert ws.labels(dataset_id) == {}
    assert ws.undo_last_label(dataset_id) is None

    history = ws.label_history(dataset_id)
    assert len(history) == 8  # 4 given + 4 restoring entries: nothing deleted
    assert history["kind"].tolist() == ["set"] * 4 + ["undo"] * 4
    assert history["undoes"].dropna().tolist() == [2, 2, 1, 1]


def test_undo_by_annotator_reverts_only_their_batch(ws, dataset_id):
    ws.set_labels(dataset_id, ["r1"], 1, "alice")
    ws.set_labels(dataset_id, ["r2"], 1, "bob")
    undone = ws.undo_last_label(dataset_id, annotator="alice")
    assert undone.restored == {"r1": -1}
    assert ws.labels(dataset_id) == {"r2": 1}


def test_undo_leaves_rows_relabelled_since_by_someone_else(ws, dataset_id):
    ws.set_labels(dataset_id, ["r1", "r2"], 1, "alice")
    ws.set_labels(dataset_id, ["r2"], 0, "bob")
    undone = ws.undo_last_label(dataset_id, annotator="alice")
    assert undone.restored == {"r1": -1}
    assert undone.skipped == ("r2",)
    assert ws.labels(dataset_id) == {"r2": 0}


def test_labels_query_reads_only_the_covering_index(ws, dataset_id):
    ws.set_labels(dataset_id, [str(i) for i in range(2000)], 1, "ann")
    conn = sqlite3.connect(ws.db_path)
    plan = " ".join(
        row[-1]
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT MAX(id) FROM labels WHERE dataset_id = ? "
            "AND key_scheme = ? GROUP BY row_key",
            (dataset_id, ws.key_scheme(dataset_id)),
        )
    )
    conn.close()
    assert "COVERING INDEX labels_by_row" in plan
    assert len(ws.labels(dataset_id)) == 2000


# --- datasets -----------------------------------------------------------------------------


def test_same_content_gets_the_same_dataset_id(ws):
    df = _frame()
    first = ws.add_dataset("upload.csv", df, {"roles": {}})
    again = ws.add_dataset("renamed.csv", df.copy(), {"roles": {"x": "ignore"}})
    other = ws.add_dataset("other.csv", _frame(seed=1), {})
    assert first == again != other
    assert [d.id for d in ws.list_datasets()].count(first) == 1
    record = ws.get_dataset(first)
    assert record.name == "upload.csv" and record.schema == {"roles": {}}
    assert (record.n_rows, record.n_cols) == (20, 3)


def test_dataset_frame_round_trips_and_leaves_no_temp_files(ws, dataset_id):
    pd.testing.assert_frame_equal(ws.load_dataset_frame(dataset_id), _frame(), check_dtype=False)
    assert [p.name for p in ws.datasets_dir.iterdir()] == [f"{dataset_id}.parquet"]


def test_dataset_schema_can_be_updated(ws, dataset_id):
    ws.update_dataset_schema(dataset_id, {"roles": {"x": "ignore"}})
    assert Workspace(ws.home).get_dataset(dataset_id).schema == {"roles": {"x": "ignore"}}
    with pytest.raises(KeyError):
        ws.update_dataset_schema("nope", {})


# --- runs ---------------------------------------------------------------------------------


def test_run_lifecycle_and_scores_round_trip(ws, dataset_id):
    run_id = ws.create_run(dataset_id, "knn", {"n_neighbors": np.int64(5)}, {"scaling": "standard"})
    assert ws.get_run(run_id).status == "running"
    model_dir = ws.run_dir(run_id) / "model"
    model_dir.mkdir()
    ws.save_scores(run_id, [f"r{i}" for i in range(3)], np.array([0.1, 0.5, 0.2], np.float32))
    ws.finish_run(run_id, {"auroc": 0.9}, status="done", fit_seconds=1.25, model_path=model_dir)

    run = Workspace(ws.home).get_run(run_id)
    assert (run.detector, run.params, run.preprocessing) == (
        "knn",
        {"n_neighbors": 5},
        {"scaling": "standard"},
    )
    assert (run.metrics, run.status, run.fit_seconds) == ({"auroc": 0.9}, "done", 1.25)
    assert run.model_path == model_dir
    scores = ws.load_scores(run_id)
    assert scores["row_key"].tolist() == ["r0", "r1", "r2"]
    assert scores["score"].to_numpy() == pytest.approx([0.1, 0.5, 0.2])
    assert [r.id for r in ws.list_runs(dataset_id)] == [run_id]


def test_finish_run_rejects_unknown_status(ws, dataset_id):
    run_id = ws.create_run(dataset_id, "knn", {})
    with pytest.raises(ValueError, match="status"):
        ws.finish_run(run_id, {}, status="ok")


def test_delete_run_removes_record_and_files(ws, dataset_id):
    keep = ws.create_run(dataset_id, "knn", {})
    run_id = ws.create_run(dataset_id, "vae", {})
    ws.save_scores(run_id, ["r0"], [1.0])
    (ws.run_dir(run_id) / "model").mkdir()
    folder = ws.run_dir(run_id)
    assert ws.delete_run(run_id) is True
    assert not folder.exists()
    with pytest.raises(KeyError):
        ws.get_run(run_id)
    assert [r.id for r in ws.list_runs()] == [keep]
    assert ws.delete_run(run_id) is False
    # Ids are never reused, so a stale "last run" setting cannot point at another run.
    assert ws.create_run(dataset_id, "knn", {}) > run_id


# --- settings and the file itself ---------------------------------------------------------


def test_settings_round_trip_json_values(ws):
    assert ws.get_setting("threshold", default=0.5) == 0.5
    ws.set_setting("threshold", 1.75)
    ws.set_setting("last", {"dataset": "abc", "run": 3, "rule": ["top_k", 10]})
    ws.set_setting("threshold", 2.0)
    again = Workspace(ws.home)
    assert again.get_setting("threshold") == 2.0
    assert again.get_setting("last") == {"dataset": "abc", "run": 3, "rule": ["top_k", 10]}


def test_workspace_uses_wal_and_records_its_schema_version(ws):
    conn = sqlite3.connect(ws.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert ws.schema_version == SCHEMA_VERSION


def test_workspace_from_a_newer_version_is_refused(ws):
    conn = sqlite3.connect(ws.db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(WorkspaceError, match="newer"):
        Workspace(ws.home)


def test_home_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("AD_STUDIO_HOME", str(tmp_path / "from_env"))
    ws = Workspace()
    assert ws.db_path == tmp_path / "from_env" / "workspace.db"
    assert ws.db_path.exists()


def test_undo_leaves_a_later_identical_label_by_someone_else_alone(tmp_path):
    from ad_core.store import Workspace

    ws = Workspace(tmp_path / "ws")
    import pandas as pd

    ds = ws.add_dataset("d", pd.DataFrame({"a": [1.0, 2.0, 3.0]}), {"roles": {"a": "numeric"}})
    ws.set_labels(ds, ["0", "1"], 1, "alice")
    ws.set_labels(ds, ["0"], 1, "bob")  # same value, later, by another annotator
    undone = ws.undo_last_label(ds, "alice")
    assert undone.skipped == ("0",)
    assert ws.labels(ds) == {"0": 1}  # bob's label stays; alice's row "1" is cleared


def test_a_failed_commit_does_not_leave_the_connection_in_a_transaction(tmp_path, monkeypatch):
    import sqlite3

    import pandas as pd
    import pytest

    from ad_core.store import Workspace

    ws = Workspace(tmp_path / "ws")
    ds = ws.add_dataset("d", pd.DataFrame({"a": [1.0, 2.0]}), {"roles": {"a": "numeric"}})
    conn = ws._conn()

    class FailingCommit:
        def __init__(self, inner):
            self.inner = inner

        def execute(self, sql, *args):
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return self.inner.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(ws, "_conn", lambda: FailingCommit(conn))
    with pytest.raises(sqlite3.OperationalError):
        ws.set_labels(ds, ["0"], 1, "alice")
    monkeypatch.undo()
    assert not conn.in_transaction
    ws.set_labels(ds, ["1"], 0, "alice")  # the thread's connection still works
    assert ws.labels(ds) == {"1": 0}


def test_count_labels_given_counts_the_rows_whose_current_label_is_the_annotators(ws, dataset_id):
    ws.set_labels(dataset_id, ["r1", "r2"], 1, "alice")
    ws.set_labels(dataset_id, ["r1", "r2"], 1, "alice")  # the same rows again: still two
    assert ws.count_labels_given(dataset_id, "alice") == 2
    ws.set_labels(dataset_id, ["r3"], 0, "bob")
    ws.set_labels(dataset_id, ["r4"], 1, "alice")
    ws.undo_last_label(dataset_id, "alice")  # r4's label is taken back: not alice's any more
    assert ws.count_labels_given(dataset_id, "alice") == 2
    assert ws.count_labels_given(dataset_id, "bob") == 1
    assert ws.count_labels_given(dataset_id, "carol") == 0
    ws.set_labels(dataset_id, ["r1"], -1, "alice")  # a cleared row is nobody's label
    ws.set_labels(dataset_id, ["r2"], 0, "bob")  # bob's label replaces alice's
    assert ws.count_labels_given(dataset_id, "alice") == 0
    assert ws.count_labels_given(dataset_id, "bob") == 2
    # Each figure adds up to the labelled rows, as the Label page shows them side by side.
    assert len(ws.labels(dataset_id)) == 2


def test_a_large_dataset_is_stored_in_slices_and_reads_back_identical(tmp_path, monkeypatch):
    """Frames are written a slice of rows at a time (one Arrow copy of a slice, not the table)."""
    import ad_core.store as store

    monkeypatch.setattr(store, "_WRITE_SLICE_ROWS", 1_000)
    rng = np.random.default_rng(0)
    n = 4_321
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 9, n),
            "flag": rng.random(n) > 0.5,
            # empty in the first slice, text after it: the file's type must still be text
            "note": pd.Series([None] * 1_500 + ["late"] * (n - 1_500), dtype=object),
            "colour": pd.Categorical(rng.choice(["red", "blue"], n)),
        }
    )
    ws = Workspace(tmp_path / "ws")
    dataset_id = ws.add_dataset("big.csv", frame, {})
    back = ws.load_dataset_frame(dataset_id)
    reference = tmp_path / "whole.parquet"
    frame.to_parquet(reference)
    pd.testing.assert_frame_equal(back, pd.read_parquet(reference))
    import pyarrow.parquet as pq

    assert pq.ParquetFile(ws.dataset_path(dataset_id)).metadata.num_row_groups == 5
