"""The Label page's review queue as the user sees it: which row, why, and what comes next."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ad_core.maps import run_codes
from ad_core.runs import DEFAULT_QUEUE_MODE, QUEUE_MODES, review_queue
from ad_core.store import Workspace
from ad_studio_ui.apptest import open_page, problems


def _shown(at) -> tuple[str, str]:
    """Return (row key, reason) of the row under review, read from its header line."""
    head = next(m.value for m in at.markdown if m.value.startswith("**Row "))
    found = re.match(r"\*\*Row (.+?)\*\* · :blue-badge\[(.+?)\]", head)
    assert found, head
    return found.group(1), found.group(2)


def _next_table(at):
    return next(d.value for d in at.dataframe if "shown because" in d.value.columns)


def _expected(ws: Workspace, run_id: int, mode: str, n: int = 6, skipped: tuple = ()):
    """Return (keys, reasons) of the next ``n`` rows ``ad_core.runs.review_queue`` gives."""
    saved = ws.load_scores(run_id)
    keys, scores = saved["row_key"].astype(str).to_numpy(), saved["score"].to_numpy()
    run = ws.get_run(run_id)
    given = ws.labels(run.dataset_id)
    labels = np.array([given.get(k, -1) for k in keys])
    queue = review_queue(
        mode,
        scores,
        labels,
        threshold=float(run.metrics["threshold"]),
        codes=lambda rows: run_codes(ws, run_id, rows),
        skipped={int(np.flatnonzero(keys == k)[0]) for k in skipped},
        n=n,
    )
    return keys[queue.positions].tolist(), list(queue.reasons)


def test_the_queue_starts_with_the_benchmarks_best_strategy_and_says_so(trained_app):
    at = open_page(trained_app, "label")
    assert not problems(at), problems(at)
    radio = at.radio(key="queue_mode")
    assert radio.value == DEFAULT_QUEUE_MODE
    assert radio.options[0] == QUEUE_MODES[DEFAULT_QUEUE_MODE]
    why = next(c.value for c in at.caption if "is the default" in c.value)
    assert f"**{QUEUE_MODES[DEFAULT_QUEUE_MODE]}** is the default" in why
    assert "benchmarks/loop.md" in why
    for title in ("Highest scores", "Nearest the threshold", "Diverse among the top"):
        assert title in radio.help


@pytest.mark.parametrize(
    ("mode", "first_reason", "later_reason"),
    [
        ("highest", "top score", "top score"),
        ("threshold", "near the threshold", "near the threshold"),
        ("diverse", "top score", "unlike the rows labelled so far"),
        ("random", "random sample", "random sample"),
    ],
)
def test_each_queue_shows_its_rows_in_order_with_the_reason(
    trained_app, trained_home, mode, first_reason, later_reason
):
    ws = Workspace(trained_home)
    run_id = trained_app.session_state["run_id"]
    dataset_id = trained_app.session_state["dataset_id"]
    assert ws.labels(dataset_id) == {}  # each test leaves the workspace as it found it
    at = open_page(trained_app, "label")
    at.sidebar.text_input(key="annotator").input("tester").run()
    at.radio(key="queue_mode").set_value(mode).run()
    assert not problems(at), problems(at)

    keys, reasons = _expected(ws, run_id, mode)
    assert reasons[0] == first_reason
    assert _shown(at) == (keys[0], first_reason)
    table = _next_table(at)
    assert table["row"].tolist() == keys[1:]  # the order the queue will show them in
    assert table["shown because"].tolist() == reasons[1:]
    if mode == "highest":
        scores = table["score"].to_numpy()
        assert (np.diff(scores) <= 0).all()

    at.button(key="review_anomaly").click().run()
    assert ws.labels(dataset_id) == {keys[0]: 1}
    after, after_reasons = _expected(ws, run_id, mode)
    assert _shown(at) == (after[0], later_reason)
    assert after_reasons[0] == later_reason
    if mode != "diverse":  # labelling the shown row moves the rest up by one
        assert after[0] == keys[1]
    at.button(key="review_skip").click().run()  # skipping passes over the row, not labels it
    assert ws.labels(dataset_id) == {keys[0]: 1}
    assert _shown(at)[0] == _expected(ws, run_id, mode, skipped=(after[0],))[0][0]
    at.button(key="review_undo").click().run()
    assert ws.labels(dataset_id) == {}
    at.session_state[f"_skipped_{dataset_id}"].clear()


def _metric(at, label: str) -> int:
    return int(next(m.value for m in at.metric if m.label == label).replace(",", ""))


def test_labels_by_the_annotator_count_their_current_labels_so_an_undo_takes_one_off(
    trained_app, trained_home
):
    """N, A, S (skip), N, then U: two rows are labelled, and both figures say so."""
    ws = Workspace(trained_home)
    dataset_id = trained_app.session_state["dataset_id"]
    assert ws.labels(dataset_id) == {}
    at = open_page(trained_app, "label")
    at.sidebar.text_input(key="annotator").input("walker").run()
    for key in ("review_normal", "review_anomaly", "review_skip", "review_normal"):
        at.button(key=key).click().run()
        assert not problems(at), problems(at)
    assert _metric(at, "Labelled rows") == _metric(at, "Labels by walker") == 3
    at.button(key="review_undo").click().run()
    assert not problems(at), problems(at)
    assert len(ws.labels(dataset_id)) == 2
    assert _metric(at, "Labelled rows") == 2
    assert _metric(at, "Labels by walker") == 2  # the undone label is not walker's any more
    at = open_page(at, "scores")
    at = open_page(at, "label")  # drawn afresh from the workspace: the same figures
    assert _metric(at, "Labelled rows") == _metric(at, "Labels by walker") == 2

    while ws.undo_last_label(dataset_id, "walker") is not None:  # leave no labels behind
        pass
    at.run()
    assert _metric(at, "Labelled rows") == _metric(at, "Labels by walker") == 0
    at.session_state[f"_skipped_{dataset_id}"].clear()
