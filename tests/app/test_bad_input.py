"""Bad files through the upload widget: a clear message on the page, never an exception."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit import config

from ad_studio_ui.apptest import open_page

_rng = np.random.default_rng(0)


def _rows(header: str, line, n: int = 30) -> bytes:
    return (header + "\n" + "".join(line(i) + "\n" for i in range(n))).encode()


def _wide(n_cols: int = 10_000, n_rows: int = 6) -> bytes:
    header = ",".join(f"c{j}" for j in range(n_cols))
    body = "\n".join(",".join(str((i + j) % 7) for j in range(n_cols)) for i in range(n_rows))
    return (header + "\n" + body + "\n").encode()


# name -> (file name, bytes, words one of the page's messages must contain)
CASES = {
    "empty file": ("empty.csv", b"", "empty"),
    "binary garbage": (
        "garbage.bin",
        _rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "binary",
    ),
    "wrong delimiter": (
        "semicolons.csv",
        _rows("a;b;c", lambda i: f"{i},5;{i + 1},25;{i * 3}"),
        "decimal",
    ),
    "no usable feature": (
        "text_only.csv",
        _rows("name,comment", lambda i: f"n{i},free text number {i}"),
        "feature",
    ),
    "all-missing column": (
        "missing.csv",
        _rows("x,empty,y", lambda i: f"{i * 0.5},,{i % 3}"),
        "missing",
    ),
    "duplicate headers": (
        "dups.csv",
        _rows("a,a,b", lambda i: f"{i},{i + 1},{i % 4}"),
        "more than once",
    ),
    "mixed types": (
        "mixed.csv",
        _rows("a,b", lambda i: f"{i},{'oops' if i == 3 else i * 2}"),
        "numeric except",
    ),
    "single row": ("one_row.csv", b"a,b\n1,2\n", "2 rows"),
    "10k columns": ("wide.csv", _wide(), "10,000 columns"),
    "non-UTF-8 text": (
        "latin1.csv",
        "name,value\ncafé,1\nnaïve,2\nbébé,3\nthé,4\n".encode("latin-1"),
        "UTF-8",
    ),
    "more values than the header": (
        "unnamed_column.csv",
        _rows("a,b,c", lambda i: f"{i},{i * 2},{i % 3},{i * 5}"),
        "more values than the header",
    ),
    "one row longer than the header": (
        "long_row.csv",
        _rows("a,b,c\n1,2,3,99", lambda i: f"{i},{i * 2},{i % 3}"),
        "were left out: line 2",
    ),
    "values near 1e300": (
        "huge.csv",
        _rows("big,x", lambda i: f"{(i + 1) * 1e300:.6g},{i % 7}"),
        "extremely large numbers",
    ),
}


def _messages(at) -> list[str]:
    return [m.value for m in (*at.error, *at.warning, *at.info)]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_upload_shows_a_message_and_the_app_keeps_running(app, case):
    name, data, expected = CASES[case]
    app.file_uploader(key="upload").set_value((name, data, "application/octet-stream")).run()
    assert not app.exception, [e.value for e in app.exception]
    messages = _messages(app)
    assert any(expected.lower() in m.lower() for m in messages), messages
    # The app keeps running: another page still renders.
    other = open_page(app, "runs")
    assert not other.exception, [e.value for e in other.exception]


def test_upload_over_the_limit_is_refused_with_the_limit_named(app):
    limit = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)
    try:
        big = b"a,b\n" + b"1,2\n" * 300_000  # 1.2 MB
        app.file_uploader(key="upload").set_value(("big.csv", big, "text/csv")).run()
    finally:
        config.set_option("server.maxUploadSize", limit)
    assert not app.exception
    assert any("over the upload limit" in e.value for e in app.error), _messages(app)
    assert app.session_state["dataset_id"] is None  # nothing was stored


def test_good_upload_becomes_the_current_dataset(app):
    data = _rows("id,x,y,label", lambda i: f"r{i},{i * 0.1},{(i * 7) % 5},{int(i % 10 == 0)}", n=60)
    app.file_uploader(key="upload").set_value(("good.csv", data, "text/csv")).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert any("Loaded 'good.csv'" in s.value for s in app.success)
    assert any(m.label == "Rows" and m.value == "60" for m in app.metric)
    assert app.sidebar.selectbox[0].value == app.session_state["dataset_id"]


def test_rows_longer_than_the_header_are_refused_with_the_line_and_nothing_stored(app):
    data = _rows("a,b,c", lambda i: f"{i},{i * 2},{i % 3},{i * 5}")
    app.file_uploader(key="upload").set_value(("unnamed_column.csv", data, "text/csv")).run()
    assert not app.exception, [e.value for e in app.exception]
    error = next(e.value for e in app.error)
    assert "30 of 30 rows" in error and "line 2: expected 3, found 4" in error
    assert "add it" in error  # says what to do
    assert app.session_state["dataset_id"] is None


def test_a_row_longer_than_the_header_is_left_out_and_said(app):
    data = _rows("a,b,c\n1,2,3,99", lambda i: f"{i},{i * 2},{i % 3}")
    app.file_uploader(key="upload").set_value(("long_row.csv", data, "text/csv")).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    note = next(w.value for w in app.warning if "left out" in w.value)
    assert "1 of 31 rows" in note and "line 2 of the file" in note and "found 4" in note
    assert any(m.label == "Rows" and m.value == "30" for m in app.metric)


def test_values_near_1e300_load_scaled_with_a_warning_naming_the_column(app):
    data = _rows("big,x", lambda i: f"{(i + 1) * 1e300:.6g},{(i * 7) % 5}")
    app.file_uploader(key="upload").set_value(("huge.csv", data, "text/csv")).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert any("Loaded 'huge.csv'" in s.value for s in app.success)
    warning = next(w.value for w in app.warning if "extremely large" in w.value)
    assert "'big' (up to 3e+301)" in warning and "overflow" in warning
    assert any(m.label == "Features kept" and m.value == "2" for m in app.metric)
    # Without scaling the numbers cannot be used: the page says so, without a traceback.
    dataset_id = app.session_state["dataset_id"]
    app.selectbox(key=f"scaling_{dataset_id}").set_value("none").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("'big'" in e.value and "scaling other than 'none'" in e.value for e in app.error)


def test_the_default_first_run_on_five_rows_says_why_it_cannot_train(app):
    """The Train page proposes the ensemble; on 5 rows its kNN member cannot work: the page
    says so in a sentence, with no exception name or code location."""
    import re

    from ad_studio_ui import training
    from ad_studio_ui.apptest import open_page

    data = _rows("x,y", lambda i: f"{i * 0.5},{(i * 3) % 4}", n=5)
    app.file_uploader(key="upload").set_value(("tiny.csv", data, "text/csv")).run()
    at = open_page(app, "train")
    assert at.selectbox(key="train_detector").value == "ensemble"
    at.get("form_submit_button")[0].click().run()
    job = training.get_job(at.session_state["training_run_id"])
    assert job.wait(timeout=120) and job.status == "failed"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(e.value for e in at.error)
    # 5 rows, some held out for evaluation: fewer still to train on
    assert re.search(r"needs at least 6 training rows; there are [1-5]\.", shown), shown
    assert "Error" not in shown and "(in " not in shown
    # the Runs page keeps the same sentence, in a column of its own
    at = open_page(at, "runs")
    (table,) = [d.value for d in at.dataframe if "run" in d.value.columns]
    why = table.set_index("run").loc[job.run_id, "why it failed"]
    assert why.startswith("The ensemble's nearest-neighbour member") and "Error" not in why


@pytest.mark.parametrize("detector", ["ensemble", "autoencoder"])
def test_only_a_detector_with_a_loss_draws_a_loss_chart(app, detector):
    from ad_studio_ui import training
    from ad_studio_ui.apptest import open_page

    app.button(key="sample_cardio").click().run()
    at = open_page(app, "train")
    at.selectbox(key="train_detector").set_value(detector).run()
    for box in at.number_input:
        if box.key and box.key.endswith("_epochs"):
            box.set_value(3)
    at.get("form_submit_button")[0].click().run()
    run_id = at.session_state["training_run_id"]
    assert training.get_job(run_id).wait(timeout=120)
    at.run()
    charts = [c for c in at.get("plotly_chart") if f"loss_{run_id}" in str(c.proto.id)]
    # the ensemble's kNN, forest and ECOD have no training loss; the autoencoder has one
    assert len(charts) == (detector == "autoencoder")
