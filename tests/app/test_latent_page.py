"""The Latent space page: what the holes are, who lands in them, and the queue they feed."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from ad_core import maps as core_maps
from ad_core.latent import find_holes
from ad_core.store import Workspace
from ad_studio_ui.apptest import app_test, navigation_mode, open_page, problems
from ad_studio_ui.workspace import ROLE_HELDOUT, ROLE_TRAIN, ROLE_UNUSED, ROW_ROLES_FILE


def assert_clean(at) -> None:
    assert not problems(at), problems(at)


def holes_text(at) -> str:
    texts = [m.value for m in at.markdown if m.value.startswith("**Holes**")]
    assert len(texts) == 1, [m.value for m in at.markdown]
    return texts[0]


def in_holes(text: str, what: str) -> tuple[int, int]:
    """Return (in holes, mapped) from '12 of the 300 held-out rows' in the page's text."""
    m = re.search(rf"([\d,]+) of the ([\d,]+) {what}", text)
    assert m, (what, text)
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def figure(at) -> dict:
    charts = [c for c in at.get("plotly_chart") if "latent_map" in (c.proto.id or "")]
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def values(v) -> np.ndarray:
    """Return a figure array as numpy: Plotly's JSON writes numeric arrays as typed base64."""
    if isinstance(v, dict) and "bdata" in v:
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            out = out.reshape([int(d) for d in str(v["shape"]).split(",")])
        return out

    def plain(e):
        return [plain(i) for i in e] if isinstance(e, list) else (np.nan if e is None else e)

    return np.asarray(plain(list(v)))


def trace(fig: dict, name: str) -> dict:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, [t.get("name") for t in fig["data"]]
    return found[0]


def shaded(fig: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return per point whether the figure's hole layer shades the cell it is drawn in."""
    layer = trace(fig, "vacant region")
    cx, cy = values(layer["x"]).astype(float), values(layer["y"]).astype(float)
    z = ~np.isnan(values(layer["z"]).astype(float))
    assert z.shape == (cy.size, cx.size)
    # A heatmap's cell j spans half-way to the neighbouring centres (uniform grid here).
    ix = np.clip(np.rint((x - cx[0]) / (cx[1] - cx[0])).astype(int), 0, cx.size - 1)
    iy = np.clip(np.rint((y - cy[0]) / (cy[1] - cy[0])).astype(int), 0, cy.size - 1)
    return z[iy, ix]


def drawn_points(fig: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return x, y and row key of every drawn row (all traces but the ring and the layer)."""
    xs, ys, keys = [], [], []
    for t in fig["data"]:
        if t["type"] == "scattergl" and t.get("name") != "in a hole":
            xs += list(values(t["x"]))
            ys += list(values(t["y"]))
            keys += list(values(t["customdata"]))
    return np.asarray(xs, float), np.asarray(ys, float), np.asarray(keys).astype(str)


def run_folder(home, at):
    return Workspace(home).run_dir(at.session_state["run_id"])


@pytest.fixture(scope="module")
def split_home(tmp_path_factory):
    """Return a workspace with the ECG sample and an autoencoder run whose held-out rows are
    carved out of the middle of its PCA map, so some of them surely land in a hole.

    The run trains on every row; its roles file is then rewritten (the page reads only that):
    the rows within 12 % of the map's width of its median point are held out, 50 random
    others are left out, the rest are training rows.
    """
    from ad_core.maps import compute_map
    from ad_studio_ui.datasets import add_sample
    from ad_studio_ui.training import train_run

    home = tmp_path_factory.mktemp("split_workspace")
    ws = Workspace(home)
    dataset_id = add_sample(ws, "ecg5000")
    run_id = ws.create_run(
        dataset_id,
        "autoencoder",
        {"epochs": 3, "random_state": 0},
        {"scaling": "standard", "impute": "median", "max_categories": 20},
    )
    train_run(ws, run_id)
    compute_map(ws, run_id, "pca")
    coords = np.load(ws.run_dir(run_id) / "map_pca.npy")
    middle = np.median(coords, axis=0)
    radius = 0.12 * float(np.ptp(coords, axis=0).max())
    roles = np.full(coords.shape[0], ROLE_TRAIN, dtype=np.int8)
    roles[np.linalg.norm(coords - middle, axis=1) < radius] = ROLE_HELDOUT
    rest = np.flatnonzero(roles == ROLE_TRAIN)
    roles[np.random.default_rng(0).choice(rest, 50, replace=False)] = ROLE_UNUSED
    np.save(ws.run_dir(run_id) / ROW_ROLES_FILE, roles)
    ws.set_setting("last_dataset_id", dataset_id)
    ws.close()
    return home


@pytest.fixture
def split_app(split_home, monkeypatch):
    """Return an AppTest on ``split_home``; the review queue it may send is cleared after."""
    monkeypatch.setenv("AD_STUDIO_HOME", str(split_home))
    with navigation_mode():
        at = app_test(timeout=60).run()
        yield at
    ws = Workspace(split_home)
    ws.set_setting(f"review_queue.{at.session_state['dataset_id']}", [])
    ws.close()


def split_roles(home, at) -> np.ndarray:
    roles = np.load(run_folder(home, at) / ROW_ROLES_FILE)
    assert {ROLE_TRAIN, ROLE_HELDOUT, ROLE_UNUSED} <= set(np.unique(roles).tolist())
    return roles


def expected_holes(home, at, roles: np.ndarray):
    coords = np.load(run_folder(home, at) / "map_pca.npy")
    return find_holes(coords[roles == ROLE_TRAIN], coords)


def test_hole_counts_are_split_by_what_the_rows_were_to_the_run(split_app, split_home):
    at = open_page(split_app, "latent")
    assert_clean(at)
    roles = split_roles(split_home, at)
    text = holes_text(at)
    assert "where no training row lands" not in text  # the old, untrue wording
    hm = expected_holes(split_home, at, roles)
    for role, words in (
        (ROLE_TRAIN, "training rows"),
        (ROLE_HELDOUT, "held-out rows"),
        (ROLE_UNUSED, "left-out rows"),
    ):
        mine = roles == role
        assert in_holes(text, words) == (int((hm.in_hole & mine).sum()), int(mine.sum()))
    # The page says what the library finds on the run's saved map, in the library's words.
    ws = Workspace(split_home)
    found = core_maps.run_holes(ws, at.session_state["run_id"], "pca")
    assert text == core_maps.hole_message(found)
    assert found.counts()[ROLE_HELDOUT] == in_holes(text, "held-out rows")
    beyond = text.split("Beyond the region the training rows cover")
    for role, words in ((ROLE_HELDOUT, "held-out rows"), (ROLE_UNUSED, "left-out rows")):
        n_out = int((hm.outside_support & (roles == role)).sum())
        if n_out:
            assert in_holes(beyond[1], words) == (n_out, int((roles == role).sum()))
        else:
            assert len(beyond) == 1 or words not in beyond[1]
    # Holes are found on the training rows only: few of those sit alone in one, while the
    # held-out rows carved out of the map's middle, which the density never saw, land there.
    n_train_in, n_train = in_holes(text, "training rows")
    assert n_train_in <= 0.02 * n_train
    n_held_in, _ = in_holes(text, "held-out rows")
    assert n_held_in > 0

    # The ringed rows are the rows counted, and the send button sends exactly those.
    fig = figure(at)
    ring = trace(fig, "in a hole")
    assert values(ring["x"]).size == int(hm.in_hole.sum())
    at.button(key="send_holes").click().run()
    assert_clean(at)
    sent = Workspace(split_home).get_setting(f"review_queue.{at.session_state['dataset_id']}")
    assert sorted(sent) == sorted(values(ring["customdata"]).astype(str))


def test_ringed_points_lie_in_the_shaded_cells_and_only_they_do(split_app):
    at = open_page(split_app, "latent")
    assert_clean(at)
    fig = figure(at)
    ring = trace(fig, "in a hole")
    rx, ry = values(ring["x"]).astype(float), values(ring["y"]).astype(float)
    assert rx.size > 0
    assert shaded(fig, rx, ry).all()
    # Every other drawn row outside the shading: the ring marks exactly the shaded rows.
    x, y, keys = drawn_points(fig)
    assert keys.size == 1000
    ringed = np.isin(keys, values(ring["customdata"]).astype(str))
    np.testing.assert_array_equal(shaded(fig, x, y), ringed)


@pytest.fixture
def run_without_roles(trained_app, trained_home):
    """Take the trained run's roles file away, as for a run saved before the split existed."""
    path = run_folder(trained_home, trained_app) / ROW_ROLES_FILE
    saved = path.read_bytes() if path.exists() else None
    path.unlink(missing_ok=True)
    yield
    if saved is not None:
        path.write_bytes(saved)


def test_a_run_without_roles_says_every_mapped_row_was_a_training_row(
    trained_app, run_without_roles
):
    at = open_page(trained_app, "latent")
    assert_clean(at)
    text = holes_text(at)
    n_in, n = in_holes(text, "training rows")
    assert n == 1000 and n_in <= 20
    assert "held-out" not in text and "held none out" in text


def browser_shows(radio) -> str:
    """Return the option a radio shows in the browser, not the value the script reads.

    AppTest's ``value`` is the script's; the browser shows the value the page sends it
    (``set_value``), else the default option. They differ when a page sets a widget's key
    while the widget is not drawn: the script then works on one queue while the radio shows
    another.
    """
    proto = radio.proto
    return proto.raw_value if proto.set_value else proto.options[proto.default]


def queue_head(at) -> str:
    heads = [m.value for m in at.markdown if m.value.startswith("**Row ")]
    assert len(heads) == 1, [s.value for s in at.success]
    return heads[0]


def assert_on_the_sent_queue(at, sent: list[str]) -> None:
    """The Label page shows the rows sent from the map, and its radio says so, in the browser too."""
    from ad_core.runs import QUEUE_MODES

    assert_clean(at)
    radio = at.radio(key="queue_mode")
    assert radio.value == "map"
    assert browser_shows(radio) == QUEUE_MODES["map"]
    head = queue_head(at)
    assert re.match(r"\*\*Row (.+?)\*\*", head).group(1) == sent[0]
    assert "sent from the map" in head
    assert f"{len(sent):,} left in this queue" in head


def test_sent_holes_open_as_the_label_queue(split_app, split_home):
    # The user looked at the Label page before and picked a queue there.
    at = open_page(split_app, "label")
    assert_clean(at)
    from ad_core.runs import DEFAULT_QUEUE_MODE

    assert at.radio(key="queue_mode").value == DEFAULT_QUEUE_MODE
    at.radio(key="queue_mode").set_value("random").run()
    at = open_page(at, "latent")
    at.button(key="send_holes").click().run()
    assert_clean(at)
    assert any("Sent" in s.value and "row(s) in holes" in s.value for s in at.success)
    dataset_id = at.session_state["dataset_id"]
    sent = Workspace(split_home).get_setting(f"review_queue.{dataset_id}")
    assert sent

    at = open_page(at, "label")  # as from the sidebar
    assert_on_the_sent_queue(at, sent)
    # Any other queue still shows its rows.
    at.radio(key="queue_mode").set_value("random").run()
    assert "random sample" in queue_head(at)


def test_holes_send_only_rows_still_to_label(split_app, split_home):
    ws = Workspace(split_home)
    at = open_page(split_app, "latent")
    dataset_id = at.session_state["dataset_id"]
    at.button(key="send_holes").click().run()
    sent = ws.get_setting(f"review_queue.{dataset_id}")
    assert len(sent) >= 2
    try:
        ws.set_labels(dataset_id, sent[:1], 0, "ana")  # e.g. labelled on the map meanwhile
        at = open_page(at, "latent")
        at.button(key="send_holes").click().run()
        assert_clean(at)
        assert any("1 row(s) in holes are labelled already" in s.value for s in at.success)
        again = ws.get_setting(f"review_queue.{dataset_id}")
        assert again == sent[1:]
        assert_on_the_sent_queue(open_page(at, "label"), again)

        ws.set_labels(dataset_id, sent, 0, "ana")  # every row in a hole labelled
        at = open_page(at, "latent")
        assert at.button(key="send_holes").disabled
        assert any("Every row in a hole is labelled already" in c.value for c in at.caption)
    finally:
        ws.set_labels(dataset_id, sent, -1, "ana")


def test_review_button_reopens_the_sent_queue_after_another_was_picked(split_app, split_home):
    at = open_page(split_app, "latent")
    at.button(key="send_holes").click().run()
    at = open_page(at, "label")
    at.radio(key="queue_mode").set_value("highest").run()
    assert_clean(at)
    at = open_page(at, "latent")
    button = at.button(key="review_sent")
    sent = Workspace(split_home).get_setting(f"review_queue.{at.session_state['dataset_id']}")
    assert f"Review the {len(sent):,} row(s) sent from the map" in button.label
    button.click().run()
    assert_on_the_sent_queue(at, sent)


def test_a_series_sends_the_points_still_to_label_and_the_label_page_opens_on_them(app):
    """The series walkthrough: windows in holes sent to the queue after an event was labelled."""
    from ad_core.data.samples import SAMPLE_DIR
    from ad_core.maps import queue_key
    from ad_studio_ui import training

    csv = (SAMPLE_DIR / "machine_series.csv").read_bytes()
    at = app.file_uploader(key="upload").set_value(("machine.csv", csv, "text/csv")).run()
    assert_clean(at)
    dataset_id = at.session_state["dataset_id"]
    at = open_page(at, "train")
    at.selectbox(key="train_detector").set_value("autoencoder").run()
    at.get("form_submit_button")[0].click().run()
    assert_clean(at)
    job = training.get_job(at.session_state["training_run_id"])
    assert job.wait(timeout=240) and job.status == "done", job.error
    at.sidebar.text_input(key="annotator").input("walker").run()
    ws = Workspace()
    at = open_page(at, "label")
    at.radio(key="queue_mode").set_value("random").run()  # the queue picked before
    at = open_page(at, "latent")
    at.button(key="send_holes").click().run()
    assert_clean(at)
    sent = ws.get_setting(queue_key(dataset_id))
    assert sent
    said = " ".join(s.value for s in at.success)
    assert f"Sent {len(sent):,} row(s) in holes" in said
    # overlapping windows peak at the same points: the count is explained
    assert f"share {len(sent):,} highest-scoring points" in said, said
    assert_on_the_sent_queue(open_page(at, "label"), sent)

    # The points sent get labelled (say on the Scores page); the holes are sent again.
    ws.set_labels(dataset_id, sent, 1, "walker")
    at = open_page(at, "latent")
    at.button(key="send_holes").click().run()
    assert_clean(at)
    again = ws.get_setting(queue_key(dataset_id))
    labels = ws.labels(dataset_id)
    assert again and not any(k in labels for k in again)  # each window's point still to label
    at = open_page(at, "label")
    assert_on_the_sent_queue(at, again)
    at.radio(key="queue_mode").set_value("random").run()  # any other queue keeps its rows
    assert f"{8064 - len(labels):,} left in this queue" in queue_head(at)

    # Every point labelled: nothing is left to send, and the page says so.
    every_key = ws.load_scores(at.session_state["run_id"])["row_key"].astype(str).tolist()
    ws.set_labels(dataset_id, every_key, 0, "walker")
    at = open_page(at, "latent")
    assert_clean(at)
    assert at.button(key="send_holes").disabled
    assert any("Every window in a hole is labelled already" in c.value for c in at.caption)


@pytest.mark.slow  # the first UMAP in a process compiles umap-learn's kernels (up to a minute)
def test_pca_and_umap_maps_of_one_run_agree_on_what_a_hole_is(trained_app, trained_home):
    from ad_studio_ui import maps

    at = open_page(trained_app, "latent")
    run = Workspace(trained_home).get_run(at.session_state["run_id"])
    found = {}
    for method in ("pca", "umap"):
        if method == "umap":
            at.radio(key="latent_method").set_value("umap").run()
            if not maps.map_available(run, "umap"):
                at.button(key="compute_umap").click().run()  # a background job
                job = maps.map_job(run, "umap")
                assert job.wait(timeout=300) and job.status == "done", job.error
                at.run()
        assert_clean(at)
        text = holes_text(at)
        found[method] = in_holes(text, "training rows")
        # Both maps find the gap between the beat groups as a hole...
        assert text.startswith("**Holes** (shaded)"), (method, text)
        fig = figure(at)
        x, y, keys = drawn_points(fig)
        ringed = np.zeros(keys.size, dtype=bool)
        if found[method][0]:
            ringed = np.isin(keys, values(trace(fig, "in a hole")["customdata"]).astype(str))
        np.testing.assert_array_equal(shaded(fig, x, y), ringed)
    # ...and puts only a few lone training rows in it. (The old rule shaded 6 % of the PCA
    # map's support against 44 % of the UMAP map's, and ringed a tight group of 13 training
    # rows at the edge of a UMAP cluster.)
    for method, (n_in, n) in found.items():
        assert n == 1000 and n_in <= 15, (method, n_in)


def test_a_large_umap_sample_keeps_rows_beside_the_training_rows():
    from ad_core import maps

    n_rows, train = 120_000, np.arange(100_000)  # 20 000 held out or left out
    rows = maps.map_rows(n_rows, train, "umap")
    assert rows.size == maps.UMAP_MAX_ROWS and np.unique(rows).size == rows.size
    assert np.isin(rows, train).sum() == int(maps.UMAP_TRAIN_SHARE * maps.UMAP_MAX_ROWS)
    few_others = maps.map_rows(103_000, train, "umap")  # all 3 000 others, then training rows
    assert (~np.isin(few_others, train)).sum() == 3_000 and few_others.size == maps.UMAP_MAX_ROWS
    np.testing.assert_array_equal(maps.map_rows(n_rows, train, "pca"), np.arange(n_rows))
