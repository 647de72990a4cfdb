"""The Runs page: settings compared in words, never 'null'; figures that agree with Scores."""

from __future__ import annotations

import numpy as np
import pytest

from ad_core import get_detector_info
from ad_core.data import Schema, ground_truth
from ad_core.metrics import auroc, prf_at
from ad_core.runs import ROLE_HELDOUT, ROW_ROLES_FILE, TrainingSetup
from ad_core.store import Workspace
from ad_core.thresholds import flag
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.datasets import add_sample
from ad_studio_ui.training import train_run

PREP = {"scaling": "standard", "impute": "median", "max_categories": 20}


def test_settings_of_two_detectors_compare_without_nulls(app):
    ws = Workspace()
    dataset_id = add_sample(ws, "cardio")
    ws.set_setting("last_dataset_id", dataset_id)
    first = ws.create_run(dataset_id, "autoencoder", {"epochs": 2, "random_state": 0}, PREP)
    train_run(ws, first)
    # a retrain as the Label page records it: only some settings given
    second = ws.create_run(dataset_id, "deep_sad", {"epochs": 2, "pretrain_epochs": 1}, PREP)
    train_run(ws, second)

    at = open_page(app, "runs")
    assert not problems(at), problems(at)
    (table,) = [d.value for d in at.dataframe if "setting" in d.value.columns]
    by_name = {row["setting"]: row for _, row in table.iterrows()}
    cells = table.drop(columns=["setting", "differs"]).to_numpy().ravel().tolist()
    assert not any(c in ("null", "None", None) for c in cells), cells
    assert by_name["detector"][f"#{first}"] == "Autoencoder"
    assert by_name["detector"][f"#{second}"] == "Deep SAD"
    assert by_name["rep dim"][f"#{first}"] == "automatic"  # left to the detector
    assert by_name["eta"][f"#{first}"] == "(not a setting of Autoencoder)"
    assert by_name["eta"][f"#{second}"] == "1.0"  # Deep SAD's default, filled in
    assert bool(by_name["epochs"]["differs"]) is False


# --- the figures agree with the Scores page --------------------------------------------------


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _compare_tables(at) -> list[dict[str, str]]:
    """Return the two runs' figure tables of "Compare two runs" (run A's first) as dicts."""
    tables = [d.value for d in at.dataframe if list(d.value.columns) == ["metric", "value"]]
    return [dict(zip(t["metric"], t["value"], strict=True)) for t in tables]


@pytest.fixture
def labelled_after_training():
    """Two runs with 300 held-out rows of the ECG sample, then 38 labels (13 held-out rows).

    The runs stored their figures on the 300 held-out rows, unlabelled at training; the
    Scores page now measures on the 287 held-out rows still without a label.
    """
    ws = Workspace()
    dataset_id = add_sample(ws, "ecg5000")
    ws.set_setting("last_dataset_id", dataset_id)
    first = ws.create_run(dataset_id, "pca", {}, PREP)
    train_run(ws, first, setup=TrainingSetup(holdout=0.3))
    second = ws.create_run(dataset_id, "ecod", {}, PREP)
    train_run(ws, second, setup=TrainingSetup(holdout=0.3))
    keys = ws.load_scores(second)["row_key"].to_numpy()
    roles = np.load(ws.run_dir(second) / ROW_ROLES_FILE)
    held, rest = np.flatnonzero(roles == ROLE_HELDOUT), np.flatnonzero(roles != ROLE_HELDOUT)
    ws.set_labels(dataset_id, keys[held[:13]], 1, "tester")
    ws.set_labels(dataset_id, keys[rest[:25]], 0, "tester")
    frame = ws.load_dataset_frame(dataset_id)
    truth = ground_truth(frame, Schema.from_dict(ws.get_dataset(dataset_id).schema))
    labels = ws.label_array(dataset_id, keys)
    return ws, dataset_id, first, second, truth, labels


def _expected(ws, run_id, truth, labels, threshold):
    """The run's figures computed from its saved files with the library, as Scores has them."""
    scores = ws.load_scores(run_id)["score"].to_numpy()
    roles = np.load(ws.run_dir(run_id) / ROW_ROLES_FILE)
    rows = np.flatnonzero((roles == ROLE_HELDOUT) & (truth != -1) & (labels == -1))
    return {
        "rows": rows,
        "auroc": f"{auroc(truth[rows], scores[rows]):.3f}",
        "f1": f"{prf_at(truth[rows], scores[rows], threshold)['f1']:.3f}",
        "flagged": flag(scores, threshold),
        "scores": scores,
    }


def test_compared_figures_are_the_scores_pages_on_the_labels_now(app, labelled_after_training):
    ws, _, first, second, truth, labels = labelled_after_training
    at = open_page(app, "runs")
    assert not problems(at), problems(at)
    assert at.selectbox(key="cmp_a").value == first and at.selectbox(key="cmp_b").value == second
    tables = _compare_tables(at)
    for table, run_id in zip(tables, (first, second), strict=True):
        run = ws.get_run(run_id)
        want = _expected(ws, run_id, truth, labels, run.metrics["threshold"])
        assert want["rows"].size == 287
        assert table["AUROC"] == want["auroc"]
        assert table["F1"] == want["f1"]
        assert table["figures on"] == (
            "287 held-out rows the model never saw (13 labelled rows left out)"
        )
        # the figure stored at training (300 rows, no labels then) is not passed off as now
        assert run.metrics["n_evaluated"] == 300
    # the Scores page, on the run it shows (the newest), says the same
    scores_page = open_page(at, "scores")
    assert not problems(scores_page), problems(scores_page)
    assert _metric(scores_page, "AUROC") == tables[1]["AUROC"]
    assert _metric(scores_page, "F1") == tables[1]["F1"]
    assert any("on 287 held-out rows the model never saw" in m.value for m in scores_page.markdown)


def test_runs_table_says_its_figures_are_from_training(app, labelled_after_training):
    ws, _, first, second, _, _ = labelled_after_training
    at = open_page(app, "runs")
    (table,) = [d.value for d in at.dataframe if "run" in d.value.columns]
    assert any("as measured when each run finished training" in c.value for c in at.caption)
    row = table.set_index("run").loc[second]
    stored = ws.get_run(second).metrics
    assert row["AUROC at training"] == pytest.approx(stored["auroc"], abs=1e-4)
    assert row["flagged at training"] == f"{stored['n_flagged']:,} of 300 unlabelled held-out rows"


def test_compare_counts_flagged_rows_as_the_scores_page(app, labelled_after_training):
    ws, _, first, second, truth, labels = labelled_after_training
    # a threshold the user set on the Scores page, not the one the run was trained with
    scores_b = ws.load_scores(second)["score"].to_numpy()
    t_b = float(np.quantile(scores_b, 0.8))
    ws.set_setting(f"threshold.{second}", t_b)
    t_a = ws.get_run(first).metrics["threshold"]
    fa = _expected(ws, first, truth, labels, t_a)["flagged"]
    fb = _expected(ws, second, truth, labels, t_b)["flagged"]

    at = open_page(app, "runs")
    assert not problems(at), problems(at)
    table_a, table_b = _compare_tables(at)
    assert table_a["flagged (all rows)"] == f"{int(fa.sum()):,} of {fa.size:,}"
    assert table_b["flagged (all rows)"] == f"{int(fb.sum()):,} of {fb.size:,}"
    both = int(_metric(at, "Flagged by both (all rows)").replace(",", ""))
    only_a = int(_metric(at, f"Only #{first} (all rows)").replace(",", ""))
    only_b = int(_metric(at, f"Only #{second} (all rows)").replace(",", ""))
    assert both == int((fa & fb).sum())
    assert both + only_a == int(fa.sum()) and both + only_b == int(fb.sum())
    # the flagged count is not the held-out count stored at training
    assert int(fb.sum()) != ws.get_run(second).metrics["n_flagged"]

    scores_page = open_page(at, "scores")
    assert not problems(scores_page), problems(scores_page)
    assert _metric(scores_page, "Flagged rows") == f"{int(fb.sum()):,}"
    assert scores_page.session_state["threshold"] == pytest.approx(t_b)


def test_runs_table_has_words_for_columns_and_no_none_cells(app, labelled_after_training):
    ws, _, first, second, truth, _ = labelled_after_training
    at = open_page(app, "runs")
    (table,) = [d.value for d in at.dataframe if "run" in d.value.columns]
    raw = {"auroc", "auprc", "f1", "n_flagged", "n_train", "n_labels"}
    assert not raw & set(table.columns), table.columns
    assert {"flagged at training", "training rows", "labels trained with"} <= set(table.columns)
    cells = table.to_numpy().ravel().tolist()
    assert not any(c is None or c in ("None", "nan", "null") for c in cells), cells
    assert not table.isna().to_numpy().any()
    by_run = table.set_index("run")
    assert by_run.loc[first, "detector"] == get_detector_info("pca").title  # a title, no code
    assert "{" not in by_run.loc[first, "settings"] and "null" not in by_run.loc[first, "settings"]
    assert "why it failed" not in table.columns  # no run failed
    assert by_run.loc[first, "retrained from"] == "–"  # trained from scratch
    assert by_run.loc[first, "labels trained with"] == "–"  # trained without labels
    assert by_run.loc[first, "training rows"] == 700
    # "flagged at training" is the held-out count, and says so: from the saved scores
    for run_id in (first, second):
        metrics = ws.get_run(run_id).metrics
        scores = ws.load_scores(run_id)["score"].to_numpy()
        held = np.load(ws.run_dir(run_id) / ROW_ROLES_FILE) == ROLE_HELDOUT
        n_held = int(flag(scores[held], metrics["threshold"]).sum())
        assert n_held != int(flag(scores, metrics["threshold"]).sum())
        assert by_run.loc[run_id, "flagged at training"] == (
            f"{n_held:,} of 300 unlabelled held-out rows"
        )
