"""The Scores page: a histogram that shows the bulk, an exact readout, honest quality figures.

Driven through the real widgets with AppTest. The draggable chart is a custom component whose
JavaScript never runs here: a test "releases the line" by sending the trigger value the
component sends, at a score computed by the component's own JavaScript (run with Node when it
is installed) for a pixel on the chart, and reads the readout the same way.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from ad_core.metrics import auroc, confusion_at, prf_at
from ad_core.store import Workspace
from ad_core.thresholds import best_f1_threshold, flag
from ad_studio_ui.apptest import open_page, problems
from ad_studio_ui.threshold_component import _JS
from ad_studio_ui.workspace import ROLE_HELDOUT, ROLE_TRAIN, ROLE_UNUSED, ROW_ROLES_FILE

COMPONENT = "ad_studio.threshold_histogram"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js runs the component's JavaScript")

# Runs the component module's named exports on {data, calls} read from stdin; "render" draws
# the chart into a minimal stand-in for the DOM and returns what carries a data-testid.
_DRIVER = """
import * as c from "./component.mjs";
import { readFileSync } from "node:fs";
const { data, calls } = JSON.parse(readFileSync(0, "utf8"));

class Node {
  constructor(tag) { this.tag = tag; this.attrs = {}; this.children = []; this.textContent = ""; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  appendChild(child) { this.children.push(child); return child; }
  addEventListener() {}
  getBoundingClientRect() { return { left: 0, top: 0 }; }
  set innerHTML(_) { this.children = []; }
  *walk() { yield this; for (const ch of this.children) yield* ch.walk(); }
}
globalThis.document = { createElementNS: (_, tag) => new Node(tag) };
function render() {
  const root = new Node("div");
  root.clientWidth = 700;
  const parentElement = { querySelector: () => root };
  const sent = [];
  c.default({ data, parentElement, setTriggerValue: (k, v) => sent.push([k, v]) });
  const out = {};
  for (const n of root.walk()) {
    const id = n.attrs["data-testid"];
    if (id) (out[id] = out[id] || []).push({ text: n.textContent, attrs: n.attrs });
  }
  return out;
}
const lay = c.chartLayout(data, 700, data.height || 260);
const s = c.xScale(data, lay.m.l, lay.pw, lay.slotX, lay.slotW);
const out = calls.map((call) => {
  if (call.fn === "render") return render();
  if (call.fn === "readout") return c.readoutText(data, call.t);
  if (call.fn === "slot_value") return s.valueAt(lay.slotX + call.frac * lay.slotW);
  if (call.fn === "bins_value") return s.valueAt(lay.m.l + call.frac * lay.pw);
  if (call.fn === "x") return { x: s.sx(call.t), binsRight: lay.m.l + lay.pw, slotX: lay.slotX };
  throw new Error(call.fn);
});
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def component_js(tmp_path_factory):
    """Return a function that runs calls against the component's JavaScript with Node."""
    folder = tmp_path_factory.mktemp("component_js")
    (folder / "component.mjs").write_text(_JS)
    (folder / "driver.mjs").write_text(_DRIVER)

    def call(data: dict, calls: list[dict]) -> list:
        done = subprocess.run(
            [NODE, "driver.mjs"],
            input=json.dumps({"data": data, "calls": calls}),
            capture_output=True,
            text=True,
            cwd=folder,
            timeout=30,
            check=True,
        )
        return json.loads(done.stdout)

    return call


# --- helpers ------------------------------------------------------------------------------


def assert_clean(at) -> None:
    assert not problems(at), problems(at)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def flagged_metric(at) -> int:
    return int(metric(at, "Flagged rows").replace(",", ""))


def chart(at):
    return next(e for e in at.get("bidi_component") if e.proto.component_name == COMPONENT)


def chart_data(at) -> dict:
    """Return the data the page sent to the threshold chart."""
    proto = chart(at).proto
    payload = proto.json if proto.WhichOneof("data") == "json" else proto.mixed.json
    return json.loads(payload)


def release_line_at(at, value: float):
    """Send what the chart sends when the user lets go of the line at ``value``; rerun."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    states = at._tree.get_widget_states()
    trigger = WidgetState(id=_make_trigger_id(chart(at).proto.id, "events"))
    trigger.json_trigger_value = json.dumps([{"event": "threshold", "value": float(value)}])
    states.widgets.append(trigger)
    return at._run(states)


def set_threshold(at, value: float):
    return at.number_input(key="threshold_number").set_value(float(value)).run()


def table_count(data: dict, t: float) -> int:
    """Return the flagged count the chart's table gives at t (its documented lookup)."""
    values, above = np.asarray(data["counts"]["values"]), data["counts"]["above"]
    i = int(np.searchsorted(values, t, side="right")) - 1
    return data["n_rows"] if i < 0 else above[i]


def readout_count(text: str) -> int:
    match = re.search(r"· (≈?)([\d,]+) flagged", text)
    assert match and match.group(1) == "", text  # exact, no "≈"
    return int(match.group(2).replace(",", ""))


def run_scores(trained_home, at) -> np.ndarray:
    return Workspace(trained_home).load_scores(at.session_state["run_id"])["score"].to_numpy()


def ground_truth_of(trained_home, at) -> np.ndarray:
    from ad_core.data import Schema, ground_truth

    ws = Workspace(trained_home)
    dataset_id = at.session_state["dataset_id"]
    schema = Schema.from_dict(ws.get_dataset(dataset_id).schema)
    return ground_truth(ws.load_dataset_frame(dataset_id), schema)


# --- Task A: a range that shows the bulk, an exact readout, a warning ---------------------


def test_default_range_shows_the_bulk_and_counts_the_tail_in_one_overflow_bar(
    trained_app, trained_home, request
):
    at = open_page(trained_app, "scores")
    assert_clean(at)
    scores = run_scores(trained_home, at)
    data = chart_data(at)
    lo, cut = data["edges"][0], data["edges"][-1]
    assert data["x_range"] == "bulk" and data["overflow_from"] == cut < scores.max()
    # the overflow bar holds exactly the rows above the last edge, at most 5 % of them
    n_over = int((scores > cut).sum())
    assert sum(s["overflow"] for s in data["series"]) == data["overflow_rows"] == n_over
    assert 0 < n_over <= 0.05 * scores.size
    assert sum(sum(s["counts"]) for s in data["series"]) + n_over == scores.size
    # the bulk is spread out: less than half the rows in the first tenth of the width
    n_bins = len(data["edges"]) - 1
    first_tenth = sum(sum(s["counts"][: n_bins // 10]) for s in data["series"])
    assert first_tenth < 0.5 * scores.size
    assert any(f"'> {cut:.4g}'" in c.value for c in at.caption)

    # "All scores": the ECG scores' long tail squeezes almost every row into a tenth
    at.radio(key="scores_x_range").set_value("full").run()
    assert_clean(at)
    full = chart_data(at)
    assert full["overflow_from"] is None and full["edges"][-1] == pytest.approx(scores.max())
    first_tenth = sum(sum(s["counts"][: n_bins // 10]) for s in full["series"])
    assert first_tenth > 0.8 * scores.size
    assert not any("share the last bar" in c.value for c in at.caption)

    # "Log scale": bins of equal width in log score over every score
    at.radio(key="scores_x_range").set_value("log").run()
    assert_clean(at)
    log = chart_data(at)
    ratios = np.diff(np.log(log["edges"]))
    assert log["x_scale"] == "log" and np.allclose(ratios, ratios[0])
    assert log["edges"][0] == lo and log["edges"][-1] == pytest.approx(scores.max())
    assert log["ticks"] and all(lo <= t <= scores.max() for t in log["ticks"])

    if NODE:  # each range draws: bars, and the overflow bar only where there is one
        js = request.getfixturevalue("component_js")
        for variant, has_bar in ((data, True), (full, False), (log, False)):
            (drawn,) = js(variant, [{"fn": "render"}])
            assert drawn["threshold-line"] and drawn["threshold-readout"][0]["text"]
            assert ("threshold-overflow-label" in drawn) == has_bar


def test_readout_count_equals_flagged_rows_on_bin_edges_and_in_the_overflow_bar(
    trained_app, trained_home, request
):
    at = open_page(trained_app, "scores")
    scores = run_scores(trained_home, at)
    edges = chart_data(at)["edges"]
    cut = edges[-1]
    tail = np.sort(scores[scores > cut])
    tied = float(np.sort(scores)[500])  # a score itself: rows equal to it are not flagged
    thresholds = [edges[0], edges[1], edges[40], cut, tied, float(tail[len(tail) // 2])]
    thresholds += [float(scores.max()), float(scores.min()) - 1.0]
    js = request.getfixturevalue("component_js") if NODE else None
    for t in thresholds:
        set_threshold(at, t)
        assert_clean(at)
        expected = int(flag(scores, t).sum())
        data = chart_data(at)
        assert flagged_metric(at) == expected, t
        assert data["n_flagged"] == expected and data["threshold"] == t
        assert table_count(data, t) == expected  # what the chart counts while dragging
        if js:
            (text,) = js(data, [{"fn": "readout", "t": t}])
            assert readout_count(text) == expected, (t, text)
    # While the line moves (the page has not rerun yet), the chart counts from its table:
    # exact for this data, at every score, every bin edge and between them.
    data = chart_data(at)
    assert data["counts"]["exact"]
    moving = sorted(set(edges) | set(scores[::7].tolist()) | set((scores[::13] + 1e-9).tolist()))
    expected = [int((scores > t).sum()) for t in moving]
    assert [table_count(data, t) for t in moving] == expected
    if js:
        texts = js(data, [{"fn": "readout", "t": t} for t in moving])
        assert [readout_count(x) for x in texts] == expected


@needs_node
def test_dragging_into_the_overflow_bar_sets_a_threshold_beyond_the_shown_range(
    trained_app, trained_home, component_js
):
    at = open_page(trained_app, "scores")
    scores = run_scores(trained_home, at)
    data = chart_data(at)
    cut = data["overflow_from"]
    # let go of the line in the middle of the overflow bar
    (value,) = component_js(data, [{"fn": "slot_value", "frac": 0.5}])
    assert cut < value < scores.max()
    release_line_at(at, value)
    assert_clean(at)
    expected = int((scores > value).sum())
    assert flagged_metric(at) == expected and 0 < expected < data["overflow_rows"]
    assert at.number_input(key="threshold_number").value == pytest.approx(value)
    slider = at.slider(key="threshold_slider")
    assert slider.value == pytest.approx(value) and slider.max >= scores.max()
    # the line is drawn in the overflow bar and both the readout and the page say so
    data = chart_data(at)
    (place, text) = component_js(data, [{"fn": "x", "t": value}, {"fn": "readout", "t": value}])
    assert place["x"] > place["binsRight"]
    assert "beyond the chart" in text and readout_count(text) == expected
    (drawn,) = component_js(data, [{"fn": "render"}])
    assert drawn["threshold-readout"][0]["text"] == text
    assert float(drawn["threshold-line"][0]["attrs"]["x1"]) == pytest.approx(place["x"])
    assert drawn["threshold-overflow-label"][0]["text"] == f"> {data['overflow_from']:.4g}"
    assert len(drawn["threshold-overflow-bar"]) == len(data["series"])
    assert any("beyond the chart's range" in c.value for c in at.caption)

    # the slider reaches the tail too; a threshold above every score is shown as such
    at.slider(key="threshold_slider").set_value(slider.max).run()
    assert_clean(at)
    assert flagged_metric(at) == 0
    assert any("above every score" in c.value for c in at.caption)
    # and dragging back into the bins works
    (value,) = component_js(chart_data(at), [{"fn": "bins_value", "frac": 0.25}])
    release_line_at(at, value)
    assert_clean(at)
    assert flagged_metric(at) == int((scores > value).sum())
    assert not any("beyond the chart's range" in c.value for c in at.caption)


def test_best_f1_that_flags_most_rows_warns_why(trained_app, trained_home):
    at = open_page(trained_app, "scores")
    scores = run_scores(trained_home, at)
    truth = ground_truth_of(trained_home, at)
    best = best_f1_threshold(scores, truth)
    share = float((scores > best).mean())
    assert share > 0.5  # the 3-epoch autoencoder on ECG: anomalies are 42 % of the beats

    next(b for b in at.button if b.label == "Best F1 on ground truth").click().run()
    assert_clean(at)
    assert flagged_metric(at) == int((scores > best).sum())
    warning = " ".join(w.value for w in at.warning)
    assert "'Best F1 on ground truth' flags" in warning and f"{share:.1%}" in warning
    assert "degenerates" in warning and "barely separate" in warning
    rate = float(truth[truth != -1].mean())
    assert f"F1 {2 * rate / (1 + rate):.2f}" in warning  # what flagging every row scores
    assert any("picked on the ground truth" in c.value for c in at.caption)

    # a rule that flags few rows says nothing; nor does a threshold the user moves
    next(b for b in at.button if b.label == "Top 1 %").click().run()
    assert not any("flags" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Best F1 on ground truth").click().run()
    assert any("degenerates" in w.value for w in at.warning)
    set_threshold(at, float(np.quantile(scores, 0.3)))
    assert_clean(at)
    assert not any("degenerates" in w.value for w in at.warning)


# --- Task B: figures on the held-out rows, the training rows, labelled rows apart ----------


@contextlib.contextmanager
def roles_file(home, run_id: int, roles: np.ndarray | None):
    """Within the block the run has these row roles (None: no roles file, as old runs)."""
    path = Workspace(home).run_dir(run_id) / ROW_ROLES_FILE
    before = path.read_bytes() if path.exists() else None
    if roles is None:
        path.unlink(missing_ok=True)
    else:
        np.save(path, roles.astype(np.int8))
    try:
        yield roles
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)


def test_a_run_without_held_out_rows_says_its_figures_are_on_training_rows(
    trained_app, trained_home
):
    with roles_file(trained_home, trained_app.session_state["run_id"], None):
        at = open_page(trained_app, "scores")
        assert_clean(at)
        scores = run_scores(trained_home, at)
        truth = ground_truth_of(trained_home, at)
        assert all(not str(r.key).startswith("scores_eval_rows") for r in at.radio)
        text = " ".join(w.value for w in at.warning)
        assert "no held-out rows" in text and "optimistic" in text
        assert (
            f"all {scores.size:,} rows" in text
            and f"{scores.size:,} of which the model was trained on" in text
        )
        assert metric(at, "AUROC") == f"{auroc(truth, scores):.3f}"


@pytest.fixture
def held_out_run(trained_app, trained_home):
    """Give the trained run 300 held-out rows and 100 left-out anomalies, the rest training."""
    truth = ground_truth_of(trained_home, trained_app)
    rng = np.random.default_rng(7)
    roles = np.full(truth.size, ROLE_TRAIN, dtype=np.int8)
    order = rng.permutation(truth.size)
    roles[order[:300]] = ROLE_HELDOUT
    anomalies_left = [i for i in order[300:] if truth[i] == 1][:100]
    roles[anomalies_left] = ROLE_UNUSED
    with roles_file(trained_home, trained_app.session_state["run_id"], roles):
        yield roles


def test_ground_truth_figures_are_on_the_held_out_rows_by_default(
    trained_app, trained_home, held_out_run
):
    roles = held_out_run
    at = open_page(trained_app, "scores")
    assert_clean(at)
    scores = run_scores(trained_home, at)
    truth = ground_truth_of(trained_home, at)
    held = roles == ROLE_HELDOUT
    train = roles == ROLE_TRAIN
    # the subsets differ enough for the figure to tell them apart
    assert f"{auroc(truth[held], scores[held]):.3f}" != f"{auroc(truth, scores):.3f}"

    run_id = at.session_state["run_id"]
    choice = at.radio(key=f"scores_eval_rows.{run_id}")
    assert choice.value == ROLE_HELDOUT
    assert metric(at, "AUROC") == f"{auroc(truth[held], scores[held]):.3f}"
    t = float(metric(at, "Threshold"))
    threshold = at.session_state["threshold"]
    assert t == pytest.approx(threshold, rel=1e-4)
    assert metric(at, "F1") == f"{prf_at(truth[held], scores[held], threshold)['f1']:.3f}"
    n_anom = int(truth[held].sum())
    assert any(
        f"on 300 held-out rows the model never saw** ({n_anom:,} anomalies" in m.value
        for m in at.markdown
    )
    assert any("100 rows were neither trained on nor held out" in c.value for c in at.caption)
    confusion = at.get("plotly_chart")
    counts = confusion_at(truth[held], scores[held], threshold)
    heat = next(c for c in confusion if c.proto.id and "confusion" in c.proto.id)
    assert f"TP {counts['tp']:,}" in heat.proto.spec

    choice.set_value(ROLE_TRAIN).run()
    assert_clean(at)
    assert metric(at, "AUROC") == f"{auroc(truth[train], scores[train]):.3f}"
    assert any(
        f"on {int(train.sum()):,} rows the model was trained on" in m.value
        and "optimistic" in m.value
        for m in at.markdown
    )


def test_rows_with_an_expert_label_are_reported_apart(trained_app, trained_home, held_out_run):
    roles = held_out_run
    ws = Workspace(trained_home)
    at = open_page(trained_app, "scores")
    dataset_id = at.session_state["dataset_id"]
    scores = run_scores(trained_home, at)
    truth = ground_truth_of(trained_home, at)
    keys = ws.load_scores(at.session_state["run_id"])["row_key"].to_numpy()
    held = np.flatnonzero(roles == ROLE_HELDOUT)
    labelled = held[np.argsort(-scores[held])[:4]]  # the expert looked at the top rows
    ws.set_labels(dataset_id, keys[labelled], 1, "tester")
    try:
        at.run()
        assert_clean(at)
        rest = np.setdiff1d(held, labelled)
        assert (
            f"{auroc(truth[rest], scores[rest]):.3f}" != f"{auroc(truth[held], scores[held]):.3f}"
        )
        assert metric(at, "AUROC") == f"{auroc(truth[rest], scores[rest]):.3f}"
        assert any(f"on {rest.size:,} held-out rows" in m.value for m in at.markdown)
        note = next(c.value for c in at.caption if "carry your label" in c.value)
        assert note.startswith("4 of these rows carry your label") and "leak" in note

        # every held-out row labelled: nothing left to measure on, said in words
        ws.set_labels(dataset_id, keys[held], 0, "tester")
        at.run()
        assert_clean(at)
        assert any("nothing to measure the run on" in i.value for i in at.info)
        assert not any(m.label == "AUROC" for m in at.metric)
    finally:
        ws.set_labels(dataset_id, keys[held], -1, "tester")
