"""Export and import of labels through the Label page's download button and upload box."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import test_labels_two_sessions
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import app_test as app_test_module
from test_labels_two_sessions import (
    alice_then_bob,
    browser,
    ecg_workspace,
    labels_shown,
    metric,
    review_key,
    set_role,
)

from ad_studio_ui.apptest import open_page, problems

home = test_labels_two_sessions.home  # the fixture: a fresh ECG workspace the app uses


@pytest.fixture
def downloads(monkeypatch):
    """Return fetch(at, key): the bytes a browser gets when it presses that download button.

    The Label page makes its export when the button is pressed (a deferred download); the
    browser then asks the media manager to run it, which is what fetch does.
    """
    managers: list[MediaFileManager] = []

    class Kept(MediaFileManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            managers.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", Kept)

    def fetch(at, key: str) -> bytes:
        proto = at.download_button(key=key).proto
        url = managers[-1].execute_deferred(proto.deferred_file_id)
        return managers[-1].read_file(url.rsplit("/", 1)[-1]).content

    return fetch


def upload(at, name: str, data: bytes):
    at.file_uploader(key="labels_import_file").set_value((name, data, "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_export_has_each_label_with_its_annotator_time_and_history(home, downloads):
    _, _, alice, bob, first = alice_then_bob(home, confirm=True)  # Bob relabels Alice's row
    second = review_key(bob)
    bob.button(key="review_normal").click().run()

    table = pd.read_csv(io.BytesIO(downloads(bob, "labels_export")), dtype=str)
    assert list(table.columns) == [
        "row_key",
        "label",
        "label_name",
        "annotator",
        "time",
        "key_scheme",
        "history",
    ]
    rows = table.set_index("row_key")
    assert set(rows.index) == {first, second}
    assert rows.loc[first, ["label", "label_name", "annotator"]].tolist() == ["0", "normal", "bob"]
    assert rows.loc[first, "time"].endswith(" UTC")
    history = rows.loc[first, "history"]
    assert "alice: anomaly" in history and "bob: normal" in history
    assert history.index("alice: anomaly") < history.index("bob: normal")
    assert (table["key_scheme"] == "id:beat_id").all()


def test_an_exported_file_imports_into_another_workspace_with_its_annotators(
    home, downloads, tmp_path, monkeypatch
):
    alice = browser("label", name="alice")
    keys = []
    for value in ("review_anomaly", "review_normal"):
        keys.append(review_key(alice))
        alice.button(key=value).click().run()
    exported = downloads(alice, "labels_export")

    other = ecg_workspace(tmp_path / "other")  # a colleague's workspace, the same data
    monkeypatch.setenv("AD_STUDIO_HOME", str(other.home))
    carol = browser("label", name="carol")
    upload(carol, "labels.csv", exported)
    assert not problems(carol), problems(carol)
    assert any("has 2 label(s): 1 anomalies and 1 normal, by alice" in i.value for i in carol.info)
    carol.button(key="labels_import").click().run()
    assert not problems(carol), problems(carol)
    dataset_id = other.get_setting("last_dataset_id")
    assert other.labels(dataset_id) == {keys[0]: 1, keys[1]: 0}
    assert labels_shown(carol) == {keys[0]: ("anomaly", "alice"), keys[1]: ("normal", "alice")}
    assert any("Imported 2 label(s) in one step" in s.value for s in carol.success)
    # Importing the same file again changes nothing; one undo takes the import back.
    assert any("2 are here already" in i.value for i in carol.info)
    assert carol.button(key="labels_import").disabled
    carol.button(key="review_undo").click().run()
    assert other.labels(dataset_id) == {}
    assert any("Undid the import of 2 label(s)" in i.value for i in carol.info)


def test_import_refuses_keys_that_match_no_row_and_writes_nothing(home):
    dataset_id = home.get_setting("last_dataset_id")
    alice = browser("label", name="alice")
    kept = review_key(alice)
    alice.button(key="review_anomaly").click().run()
    beats = home.load_dataset_frame(dataset_id)["beat_id"].astype(str).tolist()
    data = (
        "row_key,label\n"
        f"{beats[0]},normal\n{beats[1]},anomaly\n{kept},normal\n"
        "99991,anomaly\n99992,normal\nbeat-x,normal\n"
    ).encode()
    upload(alice, "mine.csv", data)
    error = next(e.value for e in alice.error)
    assert error.startswith("3 of the 6 row keys in the file match no row of this dataset: ")
    assert "99991, 99992, beat-x" in error and "Nothing was imported" in error
    assert not any(b.key == "labels_import" for b in alice.button)
    assert home.labels(dataset_id) == {kept: 1}  # all or nothing: the good lines wrote nothing


def test_import_with_a_bad_label_names_the_line_and_writes_nothing(home):
    dataset_id = home.get_setting("last_dataset_id")
    alice = browser("label", name="alice")
    beats = home.load_dataset_frame(dataset_id)["beat_id"].astype(str).tolist()
    data = f"row_key;label\n{beats[0]};normal\n{beats[1]};perhaps\n".encode()
    upload(alice, "semicolons.csv", data)
    error = next(e.value for e in alice.error)
    assert "line 3 ('perhaps')" in error and "neither anomaly nor normal" in error
    assert home.labels(dataset_id) == {}


def test_a_file_exported_under_another_id_column_is_refused(home, downloads):
    dataset_id = home.get_setting("last_dataset_id")
    alice = browser("label", name="alice")
    alice.button(key="review_anomaly").click().run()
    exported = downloads(alice, "labels_export")
    data = browser("data", name="alice")
    set_role(data, "beat_id", "ignore")
    alice = open_page(data, "label")
    assert metric(alice, "Labelled rows") == "0"
    upload(alice, "labels.csv", exported)
    error = next(e.value for e in alice.error)
    assert "identified by the id column 'beat_id'" in error and "Nothing was imported" in error
    assert home.labels(dataset_id) == {}


def test_a_session_without_a_name_cannot_import(home):
    dataset_id = home.get_setting("last_dataset_id")
    nameless = browser("label")
    beats = home.load_dataset_frame(dataset_id)["beat_id"].astype(str).tolist()
    upload(nameless, "labels.csv", f"row_key,label\n{beats[0]},anomaly\n".encode())
    assert any("Give your name first" in e.value for e in nameless.error)
    assert home.labels(dataset_id) == {}
