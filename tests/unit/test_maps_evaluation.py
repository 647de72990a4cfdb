"""The latent maps and the evaluation of a run, on real runs trained into a workspace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ad_core import evaluation, maps
from ad_core.data import Schema, ground_truth, row_keys
from ad_core.latent import find_holes
from ad_core.runs import (
    DEFAULT_PREPROCESSING,
    ROLE_HELDOUT,
    ROLE_TRAIN,
    ROLE_UNUSED,
    ROW_ROLES_FILE,
    TRAIN_ROWS_FILE,
    TrainingSetup,
    add_file,
    train_run,
)
from ad_core.store import Workspace
from ad_core.thresholds import flag

CARDIO = Path(__file__).resolve().parents[2] / "sample_data" / "cardio.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Return (workspace, autoencoder run id, isolation forest run id, truth, keys) on cardio.

    The autoencoder trains on the rows whose ground truth is normal with 30 % held out, so
    its rows have all three roles: trained on, held out, left out (the anomalies).
    """
    ws = Workspace(tmp_path_factory.mktemp("maps_workspace"))
    dataset_id, _ = add_file(ws, CARDIO.name, CARDIO.read_bytes())
    setup = TrainingSetup("truth_normal", holdout=0.3)
    ae = ws.create_run(
        dataset_id,
        "autoencoder",
        {"epochs": 2, "random_state": 0, "hidden_dims": [16, 8]},
        DEFAULT_PREPROCESSING,
    )
    train_run(ws, ae, setup=setup)
    forest = ws.create_run(dataset_id, "isolation_forest", {"random_state": 0})
    train_run(ws, forest, setup=setup)
    frame = ws.load_dataset_frame(dataset_id)
    schema = Schema.from_dict(ws.get_dataset(dataset_id).schema)
    keys = np.asarray(row_keys(frame, schema)).astype(str)  # as the app and the files key rows
    yield ws, ae, forest, ground_truth(frame, schema), keys
    ws.close()


def roles_of(ws: Workspace, run_id: int) -> np.ndarray:
    return evaluation.saved_row_roles(ws.run_dir(run_id), ws.get_run(run_id).metrics["n_rows"])


def scores_of(ws: Workspace, run_id: int) -> np.ndarray:
    return ws.load_scores(run_id)["score"].to_numpy()


# --- roles ----------------------------------------------------------------------------------


def test_saved_roles_are_the_runs_split(trained):
    ws, ae, _, truth, _ = trained
    metrics = ws.get_run(ae).metrics
    roles = roles_of(ws, ae)
    assert roles.size == truth.size == metrics["n_rows"]
    counts = evaluation.role_counts(roles)
    assert counts[ROLE_TRAIN] == metrics["n_train"] and counts[ROLE_HELDOUT] == metrics["n_heldout"]
    assert counts[ROLE_UNUSED] > 0 and (truth[roles == ROLE_UNUSED] == 1).all()
    assert (truth[roles == ROLE_TRAIN] == 0).all()


def test_a_run_without_a_roles_file_reads_its_training_rows(trained, tmp_path):
    ws, ae, _, _, _ = trained
    n_rows = ws.get_run(ae).metrics["n_rows"]
    assert (evaluation.saved_row_roles(tmp_path, n_rows) == ROLE_TRAIN).all()
    np.save(tmp_path / TRAIN_ROWS_FILE, np.array([0, 5, 7]))
    roles = evaluation.saved_row_roles(tmp_path, n_rows)
    assert np.flatnonzero(roles == ROLE_TRAIN).tolist() == [0, 5, 7]
    assert (np.delete(roles, [0, 5, 7]) == ROLE_UNUSED).all()
    np.save(tmp_path / ROW_ROLES_FILE, np.zeros(3, dtype=np.int8))  # another dataset's size
    assert np.flatnonzero(evaluation.saved_row_roles(tmp_path, n_rows) == ROLE_TRAIN).size == 3


# --- maps -----------------------------------------------------------------------------------


def test_compute_map_saves_the_pca_of_the_codes_and_load_map_reads_it_back(trained):
    ws, ae, _, truth, _ = trained
    for path in maps.map_files(ws.run_dir(ae), "pca"):
        path.unlink(missing_ok=True)
    assert maps.load_map(ws, ae, "pca") is None and not maps.map_available(ws, ae, "pca")
    with pytest.raises(FileNotFoundError, match="no PCA map"):
        maps.run_holes(ws, ae, "pca")
    made = maps.compute_map(ws, ae, "pca")
    assert maps.map_available(ws, ae, "pca")
    assert not maps.map_files(ws.run_dir(ae), "pca")[1].exists()  # every row is mapped
    got = maps.load_map(ws, ae, "pca")
    assert got.source == made.source == "latent codes" and got.method == "pca"
    np.testing.assert_array_equal(got.rows, np.arange(truth.size))
    np.testing.assert_array_equal(got.coords, made.coords)
    assert got.coords.shape == (truth.size, 2)
    Z = maps.run_codes(ws, ae)
    assert Z.shape[0] == truth.size and Z.shape[1] == ws.get_run(ae).params["hidden_dims"][-1]
    np.testing.assert_allclose(got.coords, maps.project(Z, "pca"))
    # Codes the caller already has give the same map.
    again = maps.compute_map(ws, ae, "pca", Z=Z)
    np.testing.assert_allclose(again.coords, got.coords)


def test_a_detector_without_latent_space_maps_its_preprocessed_features(trained):
    ws, _, forest, truth, _ = trained
    assert not maps.has_latent("isolation_forest") and maps.has_latent("autoencoder")
    rmap = maps.compute_map(ws, forest, "pca")
    assert rmap.source == "preprocessed features"
    X = maps.run_codes(ws, forest)
    assert X.shape == (truth.size, ws.get_run(forest).metrics["n_features"])
    np.testing.assert_allclose(rmap.coords, maps.project(X, "pca"))


def test_a_sampled_map_saves_its_rows_and_keeps_the_training_share(trained, monkeypatch):
    ws, ae, _, _, _ = trained
    # A small UMAP cap, and PCA standing in for UMAP (whose first call compiles for a minute):
    # what is tested is which rows a sampled map holds and that they come back with it.
    monkeypatch.setattr(maps, "UMAP_MAX_ROWS", 500)
    monkeypatch.setattr(maps, "project", lambda Z, method: maps.project_2d(Z, method="pca"))
    roles = roles_of(ws, ae)
    made = maps.compute_map(ws, ae, "umap")
    assert maps.map_files(ws.run_dir(ae), "umap")[1].exists()
    got = maps.load_map(ws, ae, "umap")
    np.testing.assert_array_equal(got.rows, made.rows)
    assert got.rows.size == got.coords.shape[0] == 500 and np.unique(got.rows).size == 500
    assert int((roles[got.rows] == ROLE_TRAIN).sum()) == int(maps.UMAP_TRAIN_SHARE * 500)
    # The sample's codes are the codes of those rows.
    np.testing.assert_allclose(got.coords, maps.project_2d(maps.run_codes(ws, ae)[got.rows]))


# --- holes ----------------------------------------------------------------------------------


def test_holes_are_found_on_the_training_rows_and_counted_per_role(trained):
    ws, ae, _, _, _ = trained
    rmap = maps.load_map(ws, ae, "pca") or maps.compute_map(ws, ae, "pca")
    roles = roles_of(ws, ae)
    found = maps.run_holes(ws, ae, "pca")
    expected = find_holes(rmap.coords[roles == ROLE_TRAIN], rmap.coords)
    np.testing.assert_array_equal(found.in_hole, expected.in_hole)
    np.testing.assert_array_equal(found.roles, roles)
    counts = found.counts()
    for role in (ROLE_TRAIN, ROLE_HELDOUT, ROLE_UNUSED):
        mine = roles == role
        assert counts[role] == (int((expected.in_hole & mine).sum()), int(mine.sum()))
    assert found.n_vacant_cells == int(expected.vacant.sum())
    text = maps.hole_message(found)
    n_held_in, n_held = counts[ROLE_HELDOUT]
    assert found.n_vacant_cells > 0 and text.startswith("**Holes** (shaded)")
    assert f"{n_held_in:,} of the {n_held:,} held-out rows" in text
    assert "held none out" not in text


def test_a_map_with_few_training_rows_has_no_holes_to_find(trained):
    ws, ae, _, _, _ = trained
    rmap = maps.load_map(ws, ae, "pca") or maps.compute_map(ws, ae, "pca")
    roles = np.full(rmap.rows.size, ROLE_HELDOUT, dtype=np.int8)
    roles[: maps.MIN_TRAIN_ROWS_FOR_HOLES - 1] = ROLE_TRAIN
    assert maps.map_holes(rmap, roles) is None
    roles[: maps.MIN_TRAIN_ROWS_FOR_HOLES] = ROLE_TRAIN
    assert maps.map_holes(rmap, roles) is not None
    every = maps.map_holes(rmap, np.full(rmap.rows.size, ROLE_TRAIN, dtype=np.int8))
    assert list(every.counts()) == [ROLE_TRAIN]
    assert maps.hole_message(every).endswith(
        "This run trained on every mapped row and held none out."
    )


def test_display_rows_keep_every_priority_row_when_they_fit():
    priority = np.zeros(5000, dtype=bool)
    priority[[3, 4000]] = True
    shown = maps.display_rows(priority.size, priority, max_points=100)
    assert shown.size == 100 and {3, 4000} <= set(shown.tolist())
    np.testing.assert_array_equal(
        maps.display_rows(50, priority[:50], max_points=100), np.arange(50)
    )


# --- evaluation -----------------------------------------------------------------------------


def test_evaluation_rows_set_labelled_rows_apart_and_match_the_runs_headline(trained):
    ws, ae, _, truth, _ = trained
    roles = roles_of(ws, ae)
    scores = scores_of(ws, ae)
    metrics = ws.get_run(ae).metrics
    labels = np.full(truth.size, -1)
    ev = evaluation.evaluation_rows(roles, truth, labels, ROLE_HELDOUT)
    assert ev.rows.size == metrics["n_heldout"] == metrics["n_evaluated"] and ev.labelled.size == 0
    cv = evaluation.curves(truth, scores, ev.rows)
    assert cv["auroc"] == pytest.approx(metrics["auroc"]) and cv["auroc"] > 0.5
    assert cv["n_rows"] == ev.rows.size and cv["n_anomalies"] == int(truth[ev.rows].sum())
    assert cv["roc"].fpr.size <= evaluation.CURVE_POINTS

    # The expert labels five held-out rows after training: they leave the figures.
    held = np.flatnonzero(roles == ROLE_HELDOUT)
    labels[held[:5]] = truth[held[:5]]
    later = evaluation.evaluation_rows(roles, truth, labels, ROLE_HELDOUT)
    assert later.labelled.tolist() == held[:5].tolist()
    assert later.rows.tolist() == held[5:].tolist() and later.key != ev.key
    assert np.intersect1d(later.rows, later.labelled).size == 0
    every = evaluation.evaluation_rows(roles, truth, labels, None)
    assert every.rows.size + every.labelled.size == truth.size and every.key.startswith("all|")
    assert evaluation.role_counts(roles, truth)[ROLE_HELDOUT] == held.size
    assert evaluation.labels_digest(labels) != evaluation.labels_digest(np.full(truth.size, -1))
    assert evaluation.labels_digest(labels) == evaluation.labels_digest(labels.copy())


def test_rule_warning_speaks_only_when_most_rows_are_flagged(trained):
    ws, ae, _, truth, _ = trained
    scores = scores_of(ws, ae)
    assert evaluation.rule_warning("Top 1 %", scores, float(np.quantile(scores, 0.99))) is None
    low = float(scores.min()) - 1.0
    text = evaluation.rule_warning("Robust z", scores, low)
    assert f"flags 100.0% of the rows ({truth.size:,} of {truth.size:,})" in text
    assert "Check the rule's setting" in text
    rate = float(truth.mean())
    with_truth = evaluation.rule_warning("Best F1", scores, low, truth, "the rows (by truth)")
    assert f"{rate:.0%} of the rows (by truth) are anomalies" in with_truth
    assert f"F1 {2 * rate / (1 + rate):.2f}" in with_truth


def test_tables_of_scores_follow_the_scores_and_the_threshold(trained):
    ws, ae, _, truth, keys = trained
    scores = scores_of(ws, ae)
    run = ws.get_run(ae)
    frame = ws.load_dataset_frame(run.dataset_id)
    schema = Schema.from_dict(ws.get_dataset(run.dataset_id).schema)
    labels = np.full(truth.size, -1)
    order = np.argsort(-scores, kind="stable")
    labels[order[0]] = 1
    threshold = float(np.quantile(scores, 0.9))

    out = evaluation.scores_table(keys, scores, threshold, labels, truth)
    assert list(out.columns) == ["row_key", "score", "flagged", "label", "ground_truth"]
    assert out["flagged"].sum() == int(flag(scores, threshold).sum()) and len(out) == truth.size
    assert "ground_truth" not in evaluation.scores_table(keys, scores, threshold, labels).columns

    contributions = evaluation.saved_contributions(ws.run_dir(ae))
    assert contributions["method"] == "reconstruction" and contributions["rows"]
    top = evaluation.top_rows_table(
        frame,
        schema.feature_columns,
        keys,
        scores,
        order,
        labels,
        truth,
        contributions,
        max_rows=20,
        max_value_columns=3,
    )
    assert len(top) == 20 and top["rank"].tolist() == list(range(1, 21))
    assert top["score"].is_monotonic_decreasing
    assert top["your label"].tolist() == ["anomaly"] + [""] * 19
    assert set(top["ground truth"]) <= {"normal", "anomaly"}
    assert list(top.columns[-3:]) == schema.feature_columns[:3]
    assert (top["top features"] != "").all()  # the highest rows carry their contributions
    assert evaluation.saved_contributions(ws.run_dir(ae) / "absent") == {"method": None, "rows": {}}
