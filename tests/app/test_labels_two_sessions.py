"""Two people labelling one workspace at once, each in a browser session of their own.

Each test drives two AppTest sessions (two browsers) on one workspace ($AD_STUDIO_HOME):
names belong to sessions, a change of the id column never moves a label onto another row,
undo restores exactly what was there before one's own action, and a label someone gave since
the page showed the row is never overwritten without a word.
"""

from __future__ import annotations

import json
import re

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState

from ad_core.runs import TRAIN_ON
from ad_core.store import Workspace
from ad_studio_ui.apptest import app_test, navigation_mode, open_page, problems
from ad_studio_ui.datasets import add_sample
from ad_studio_ui.labels import label_rows
from ad_studio_ui.training import train_run


def ecg_workspace(path) -> Workspace:
    """Return a new workspace at ``path`` with the ECG sample and one scored run (current)."""
    ws = Workspace(path)
    dataset_id = add_sample(ws, "ecg5000")
    run_id = ws.create_run(
        dataset_id,
        "isolation_forest",
        {"random_state": 0},
        {"scaling": "standard", "impute": "median", "max_categories": 20},
    )
    train_run(ws, run_id)
    ws.set_setting("last_dataset_id", dataset_id)
    return ws


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Return a fresh ECG workspace, the one the app uses."""
    ws = ecg_workspace(tmp_path / "home")
    monkeypatch.setenv("AD_STUDIO_HOME", str(ws.home))
    with navigation_mode():
        yield ws


def browser(page: str = "label", name: str | None = None, query: dict | None = None):
    """Return a new browser session on ``page``; ``name`` is typed into the sidebar."""
    at = app_test(timeout=60)
    at.query_params = dict(query or {})
    at.run()
    at = open_page(at, page)
    if name is not None:
        at.sidebar.text_input(key="annotator").input(name).run()
    assert not problems(at), problems(at)
    return at


def review_key(at) -> str:
    """Return the key of the row the review queue shows."""
    text = next(m.value for m in at.markdown if m.value.startswith("**Row "))
    return re.match(r"\*\*Row (\S+)\*\*", text).group(1)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def labels_shown(at) -> dict[str, tuple[str, str]]:
    """Return {row: (label, annotator)} from the Label page's table of all labels."""
    table = next(d.value for d in at.dataframe if "last change by" in d.value.columns)
    return {
        str(r): (lab, who)
        for r, lab, who in zip(table["row"], table["label"], table["annotator"], strict=True)
    }


def confirm_if_asked(at) -> None:
    """Press "save mine anyway" when the page asks (the page of a fixed app asks)."""
    if any(b.key == "conflict_confirm" for b in at.button):
        at.button(key="conflict_confirm").click().run()


def alice_then_bob(home, *, confirm: bool):
    """Alice and Bob see the same row; Alice labels it anomaly, then Bob presses Normal.

    Return (workspace, dataset id, Alice's session, Bob's session, the row's key).
    """
    alice = browser("label", name="alice")
    bob = browser("label", name="bob")
    key = review_key(alice)
    assert review_key(bob) == key
    alice.button(key="review_anomaly").click().run()
    bob.button(key="review_normal").click().run()  # his page still shows the row unlabelled
    if confirm:
        confirm_if_asked(bob)
    return Workspace(home.home), home.get_setting("last_dataset_id"), alice, bob, key


def set_role(at, column: str, role: str):
    """Give ``column`` the role ``role`` in the Data page's role editor, as a browser does.

    AppTest cannot edit a data editor's cells, so this sends the edit the browser sends
    (the editor's JSON edit state) with the next run; the page's on_change does the rest.
    """
    editor = next(e for e in at.data_editor if (e.key or "").startswith("roles_"))
    row = editor.value["column"].tolist().index(column)
    edit = {"edited_rows": {str(row): {"role": role}}, "added_rows": [], "deleted_rows": []}
    tree = at._tree
    states = tree.get_widget_states

    def with_edit():
        out = states()
        out.widgets.append(WidgetState(id=editor.proto.id, string_value=json.dumps(edit)))
        return out

    tree.get_widget_states = with_edit
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# --- 1. the annotator belongs to the browser session ----------------------------------------


def test_the_annotator_belongs_to_the_browser_session_not_the_workspace(home):
    dataset_id = home.get_setting("last_dataset_id")
    bob = browser("label", name="bob")

    # Alice opens the Label page in another browser after Bob typed his name.
    alice = browser("label")
    assert alice.sidebar.text_input(key="annotator").value == ""
    assert bob.query_params.get("annotator") == "bob"  # kept in his tab's URL
    assert any("Type your name before your first label" in w.value for w in alice.warning)
    assert alice.button(key="review_anomaly").disabled  # no label without a name
    assert alice.button(key="review_normal").disabled
    assert Workspace(home.home).labels(dataset_id) == {}

    alice.text_input(key="annotator_prompt").input("alice").run()
    assert alice.query_params.get("annotator") == "alice"
    key = review_key(alice)
    alice.button(key="review_anomaly").click().run()
    assert not problems(alice), problems(alice)
    assert labels_shown(alice)[key] == ("anomaly", "alice")
    assert metric(alice, "Labels by alice") == "1"

    # Bob reloads his tab: the name in his URL brings him back as bob, not as alice.
    again = browser("label", query=bob.query_params)
    assert again.sidebar.text_input(key="annotator").value == "bob"
    other = review_key(again)
    again.button(key="review_normal").click().run()
    assert labels_shown(again)[other] == ("normal", "bob")
    # A third browser still starts without a name.
    assert browser("label").sidebar.text_input(key="annotator").value == ""


# --- 2. changing the id column never moves labels --------------------------------------------


def test_changing_the_id_column_hides_labels_and_setting_it_back_shows_them(home):
    ws = Workspace(home.home)
    dataset_id = home.get_setting("last_dataset_id")
    beats = ws.load_dataset_frame(dataset_id)["beat_id"].astype(str).tolist()
    # Beats 31 and 566 were sent from the map to the review queue (the example).
    given = ["31", "566"]
    ws.set_setting(f"review_queue.{dataset_id}", [*given, "7"])
    alice = browser("label", name="alice")
    alice.radio(key="queue_mode").set_value("map").run()
    for key in given:
        assert review_key(alice) == key
        alice.button(key="review_anomaly").click().run()
    assert ws.labels(dataset_id) == {"31": 1, "566": 1}  # keyed by beat id
    # Rows 31 and 566 are other beats: the labels must never land on them.
    assert beats[31] != "31" and beats[566] != "566"

    bob = browser("data", name="bob")
    set_role(bob, "beat_id", "ignore")  # rows are now identified by their row number

    # Alice presses Anomaly on the row her page still shows (a beat id): refused, not moved.
    stale = review_key(alice)
    assert stale == "7" and beats[7] != "7"
    alice.button(key="review_anomaly").click().run()
    assert ws.labels(dataset_id) == {}  # no label sits on rows 7, 31 or 566
    assert any("Nothing was saved" in e.value for e in alice.error), problems(alice)
    assert ws.hidden_labels(dataset_id) == {"id:beat_id": 2}
    assert stale not in ws.labels(dataset_id, key_scheme="id:beat_id")
    bob.run()
    hidden = next(w.value for w in bob.warning if "hidden" in w.value)
    assert "2 label(s) are hidden" in hidden and "'beat_id'" in hidden

    # Her pages now show no labels and offer none for training, and say why.
    alice.run()
    assert metric(alice, "Labelled rows") == "0"
    assert any("2 label(s) are hidden" in w.value for w in alice.warning)
    train = open_page(alice, "train")
    train.selectbox(key="train_detector").set_value("deep_sad").run()
    assert "(0 labelled rows)" in train.checkbox(key="train_use_labels_deep_sad").label
    assert TRAIN_ON["not_anomalous"] not in train.radio(key=f"train_on.{dataset_id}").options
    assert any("2 label(s) are hidden" in w.value for w in train.warning)

    # Bob sets the id back: the warning goes, the labels are on the same beats again.
    set_role(bob, "beat_id", "id")
    assert not any("hidden" in w.value for w in bob.warning)
    assert any("2 label(s) given under it are shown again" in i.value for i in bob.info)
    alice = open_page(train, "label")
    assert not any("hidden" in w.value for w in alice.warning)
    assert metric(alice, "Labelled rows") == "2"
    assert set(labels_shown(alice)) == set(given)
    train = open_page(alice, "train")
    train.selectbox(key="train_detector").set_value("deep_sad").run()
    assert "(2 labelled rows)" in train.checkbox(key="train_use_labels_deep_sad").label


# --- 3. undo across annotators ----------------------------------------------------------------


def test_undo_after_someone_relabelled_leaves_the_row_as_it_was_before_ones_own_label(home):
    ws, dataset_id, alice, bob, key = alice_then_bob(home, confirm=True)
    assert ws.labels(dataset_id)[key] == 0

    alice.button(key="review_undo").click().run()  # Bob relabelled it: her undo leaves it
    assert any("relabelled since and were left as they are" in i.value for i in alice.info)
    assert ws.labels(dataset_id)[key] == 0

    bob.button(key="review_undo").click().run()
    # Before Bob's label the row had only Alice's label, which she has taken back.
    assert key not in ws.labels(dataset_id)
    bob.run()
    assert metric(bob, "Labelled rows") == "0"
    assert key not in labels_shown(bob)


def test_undo_gives_back_the_label_before_with_the_annotator_who_gave_it(home):
    ws, dataset_id, alice, bob, key = alice_then_bob(home, confirm=True)

    bob.button(key="review_undo").click().run()
    assert ws.labels(dataset_id)[key] == 1
    latest = ws.label_history(dataset_id, row_key=key).iloc[-1]
    assert latest["annotator"] == "alice"  # her label, not one recorded as Bob's
    assert any(f"Row {key} has alice's label (anomaly) again" in i.value for i in bob.info)
    assert labels_shown(bob)[key] == ("anomaly", "alice")
    # the row's label is Alice's again: none of the labels standing is Bob's
    assert metric(bob, "Labels by bob") == "0"
    assert metric(bob, "Labelled rows") == "1"


# --- 4. conflicts are said ------------------------------------------------------------------


def test_a_label_given_since_the_page_showed_the_row_is_not_overwritten_silently(home):
    ws, dataset_id, alice, bob, key = alice_then_bob(home, confirm=False)
    assert ws.labels(dataset_id)[key] == 1  # Alice's label stands
    warning = next(w.value for w in bob.warning if "labelled this" in w.value)
    assert re.search(rf"Row {key}: alice labelled this anomaly \d+ s ago", warning), warning
    assert "Your label (normal) was not saved" in warning

    bob.button(key="conflict_skip").click().run()
    assert not any("labelled this" in w.value for w in bob.warning)
    assert ws.labels(dataset_id)[key] == 1
    assert metric(bob, "Disagreements") == "0"


def test_confirming_a_conflict_saves_the_label_and_the_page_lists_the_disagreement(home):
    ws, dataset_id, alice, bob, key = alice_then_bob(home, confirm=False)
    bob.button(key="conflict_confirm").click().run()
    assert not problems(bob), problems(bob)
    assert ws.labels(dataset_id)[key] == 0
    assert labels_shown(bob)[key] == ("normal", "bob")

    alice.run()  # both see the disagreement: its count and the row in the list
    for at in (alice, bob):
        assert metric(at, "Disagreements") == "1"
        table = next(d.value for d in at.dataframe if "anomaly by" in d.value.columns)
        assert table.to_dict("records") == [
            {"row": key, "label now": "normal", "anomaly by": "alice", "normal by": "bob"}
        ]
    # Alice agrees after all (on the map, say): the disagreement is gone.
    label_rows(ws, dataset_id, [key], 0, "alice")
    alice.run()
    assert metric(alice, "Disagreements") == "0"
