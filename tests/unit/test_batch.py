"""Scoring files in parts (ad_core.batch): the local streaming engine and Dask.

Every test scores through the same entry points the command line uses, on the sample data cut
into parts, and compares with the in-memory path (``ad_core.runs.score`` on the whole frame).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ad_core import batch, cli
from ad_core.data import DataError, Schema, load_table, row_keys
from ad_core.runs import DEFAULT_PREPROCESSING, add_file, load_run, score, train_run
from ad_core.store import Workspace

REPO = Path(__file__).resolve().parents[2]
CARDIO = REPO / "sample_data" / "cardio.csv"
ECG = REPO / "sample_data" / "ecg5000.csv"


def _trained(home: Path, data: Path, detector: str, params: dict) -> tuple[Workspace, int]:
    ws = Workspace(home)
    dataset_id, _ = add_file(ws, data.name, data.read_bytes())
    run_id = ws.create_run(dataset_id, detector, params, dict(DEFAULT_PREPROCESSING))
    train_run(ws, run_id)
    return ws, run_id


@pytest.fixture(scope="module")
def cardio_run(tmp_path_factory) -> Path:
    ws, run_id = _trained(
        tmp_path_factory.mktemp("ws"),
        CARDIO,
        "autoencoder",
        {"epochs": 2, "random_state": 0, "hidden_dims": [16, 8]},
    )
    return ws.run_dir(run_id)


@pytest.fixture(scope="module")
def cardio_frame() -> pd.DataFrame:
    frame = load_table(CARDIO)
    frame.attrs = {}
    return frame


@pytest.fixture(scope="module")
def expected(cardio_run, cardio_frame) -> np.ndarray:
    return score(load_run(cardio_run), cardio_frame)


def _parts(frame: pd.DataFrame, folder: Path, n: int, fmt: str = "csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), n)):
        part = frame.iloc[rows]
        if fmt == "csv":
            part.to_csv(folder / f"part-{i:02d}.csv", index=False)
        else:
            part.to_parquet(folder / f"part-{i:02d}.parquet", index=False, row_group_size=200)
    return folder


def _all_rows() -> list[str]:
    return [str(i) for i in range(len(load_table(CARDIO)))]


# --- the local engine -------------------------------------------------------------------


@pytest.mark.parametrize("out_name", ["scores.parquet", "scores.csv"])
def test_local_engine_streams_a_csv_in_parts_and_equals_the_whole_frame(
    cardio_run, expected, tmp_path, out_name
):
    out = tmp_path / out_name
    summary = batch.score_file(cardio_run, CARDIO, out, block_bytes=16_384)
    assert summary.parts > 10  # the file really was cut up
    got = batch.read_scores(out)
    assert list(got.columns) == ["row_key", "score", "flag"]
    assert got["row_key"].tolist() == _all_rows()
    np.testing.assert_allclose(got["score"], expected, rtol=1e-6, atol=1e-6)
    threshold = load_run(cardio_run).threshold
    assert (got["flag"] == (got["score"] > threshold)).all()
    assert summary.rows == len(expected) and summary.flagged == int(got["flag"].sum())


def test_local_engine_never_holds_more_than_a_part(cardio_run, tmp_path, monkeypatch):
    seen: list[int] = []
    real = batch.read_part

    def spy(source, part, *args, **kwargs):
        for frame in real(source, part, *args, **kwargs):
            seen.append(len(frame))
            yield frame

    monkeypatch.setattr(batch, "read_part", spy)
    batch.score_file(cardio_run, CARDIO, tmp_path / "s.parquet", block_bytes=16_384)
    n_rows = len(load_table(CARDIO))
    assert sum(seen) == n_rows
    # 16 KiB of cardio's text is about 80 rows: no part comes near the whole table.
    assert max(seen) < n_rows / 10


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_folder_or_glob_of_parts_scores_as_if_concatenated(
    cardio_run, cardio_frame, expected, tmp_path, fmt
):
    folder = _parts(cardio_frame, tmp_path / "parts", 4, fmt)
    for data in (folder, str(folder / f"*.{fmt}")):
        out = tmp_path / "s.parquet"
        summary = batch.score_file(cardio_run, data, out, block_bytes=16_384)
        assert summary.files == 4
        got = batch.read_scores(out)
        assert got["row_key"].tolist() == _all_rows()
        np.testing.assert_allclose(got["score"], expected, rtol=1e-6, atol=1e-6)


def test_rows_are_keyed_by_the_datasets_id_column(tmp_path):
    ws, run_id = _trained(tmp_path / "ws", ECG, "isolation_forest", {"random_state": 0})
    record = ws.get_dataset(ws.get_run(run_id).dataset_id)
    schema = Schema.from_dict(record.schema)
    assert schema.id_column == "beat_id"
    frame = ws.load_dataset_frame(record.id)
    shuffled = frame.sample(frac=1.0, random_state=1)
    shuffled.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "s.parquet"
    batch.score_file(ws.run_dir(run_id), tmp_path / "new.csv", out, id_column="beat_id")
    got = batch.read_scores(out)
    assert got["row_key"].tolist() == row_keys(shuffled.reset_index(drop=True), schema).tolist()
    stored = ws.load_scores(run_id).set_index("row_key")["score"]
    np.testing.assert_allclose(got["score"], stored.loc[got["row_key"]].to_numpy(), rtol=1e-6)
    batch.score_file(ws.run_dir(run_id), tmp_path / "new.csv", out, id_column="beat_id", key="row")
    assert batch.read_scores(out)["row_key"].tolist()[:3] == ["0", "1", "2"]


# --- what goes wrong ----------------------------------------------------------------------


def _broken_parts(frame: pd.DataFrame, folder: Path) -> int:
    """Write two parts; the second has a row with two extra values. Return its line number."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.iloc[:900].to_csv(folder / "part-0.csv", index=False)
    lines = frame.iloc[900:].to_csv(index=False).splitlines()
    lines[700] += ",7,7"  # lines[0] is the header, so this is line 701 of the file
    (folder / "part-1.csv").write_text("\n".join(lines) + "\n")
    return 701


def test_a_malformed_row_names_its_file_and_line(cardio_run, cardio_frame, tmp_path):
    line = _broken_parts(cardio_frame, tmp_path / "parts")
    out = tmp_path / "s.parquet"
    with pytest.raises(DataError) as caught:
        batch.score_file(cardio_run, tmp_path / "parts", out, block_bytes=16_384)
    message = str(caught.value)
    assert "part-1.csv" in message and f"line {line}" in message
    assert "24 values where the header has 22" in message
    assert not out.exists() and not list(tmp_path.glob(".*partial"))  # nothing half-written


def test_a_part_without_the_runs_columns_is_refused_before_scoring(
    cardio_run, cardio_frame, tmp_path
):
    folder = _parts(cardio_frame, tmp_path / "parts", 3)
    cardio_frame.drop(columns=["mean_stv"]).to_csv(folder / "part-02.csv", index=False)
    with pytest.raises(DataError, match=r"part-02\.csv has no column 'mean_stv'"):
        batch.score_file(cardio_run, folder, tmp_path / "s.parquet")


def test_values_that_are_not_numbers_are_counted_not_hidden(cardio_run, cardio_frame, tmp_path):
    frame = cardio_frame.astype({"mean_stv": object})
    frame.loc[[5, 900], "mean_stv"] = "n/a?"
    frame.to_csv(tmp_path / "odd.csv", index=False)
    summary = batch.score_file(cardio_run, tmp_path / "odd.csv", tmp_path / "s.parquet")
    assert summary.rows == len(frame)
    assert any("'mean_stv' had 2 value(s) that are not numbers" in n for n in summary.notes)


@pytest.mark.parametrize(
    "data, message",
    [
        ("missing.csv", "There is no file or folder"),
        ("*.nothing", "No file matches"),
        ("empty_dir", "holds no CSV or Parquet files"),
    ],
)
def test_inputs_that_name_nothing_get_a_sentence(cardio_run, tmp_path, data, message):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=message):
        batch.score_file(cardio_run, str(tmp_path / data), tmp_path / "s.parquet")


# --- Dask -------------------------------------------------------------------------------

# In CI the dask extra is installed (make test), so these run there; elsewhere they say why not.
needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="the dask extra is not installed: pip install -e '.[dask]'",
)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes on 127.0.0.1, stopped after the module."""
    import distributed

    cluster = batch.local_cluster(2)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@needs_dask
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_dask_on_two_worker_processes_equals_the_local_engine(
    client, cardio_run, cardio_frame, tmp_path, fmt
):
    folder = _parts(cardio_frame, tmp_path / "parts", 4, fmt)
    local = tmp_path / "local.parquet"
    batch.score_file(cardio_run, folder, local, block_bytes=16_384)
    summary = batch.score_dask(
        cardio_run, folder, tmp_path / "dask", client=client, block_bytes=16_384
    )
    assert len(client.scheduler_info()["workers"]) == 2
    parts = sorted((tmp_path / "dask").glob("*.parquet"))
    assert len(parts) == summary.parts > 4  # partitioned output, one file per part
    got, want = batch.read_scores(tmp_path / "dask"), batch.read_scores(local)
    assert got["row_key"].tolist() == want["row_key"].tolist() == _all_rows()
    np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=1e-6)
    assert (got["flag"] == want["flag"]).all()
    assert summary.rows == len(want) and summary.flagged == int(want["flag"].sum())
    # The run is loaded once per worker process, however many parts it scores.
    loads = client.run(lambda: dict(batch.WORKER_LOADS))
    assert all(v.get(str(Path(cardio_run).resolve()), 0) <= 1 for v in loads.values())
    assert sum(v.get(str(Path(cardio_run).resolve()), 0) for v in loads.values()) >= 1


@needs_dask
def test_dask_names_the_file_and_line_of_a_malformed_partition(
    client, cardio_run, cardio_frame, tmp_path
):
    line = _broken_parts(cardio_frame, tmp_path / "parts")
    with pytest.raises(DataError) as caught:
        batch.score_dask(
            cardio_run, tmp_path / "parts", tmp_path / "dask", client=client, block_bytes=16_384
        )
    assert "part-1.csv" in str(caught.value) and f"line {line}" in str(caught.value)


@needs_dask
def test_dask_refuses_to_write_into_a_folder_of_other_files(client, cardio_run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.docx").write_text("precious")
    with pytest.raises(DataError, match="already holds other files"):
        batch.score_dask(cardio_run, CARDIO, tmp_path / "out", client=client)
    assert (tmp_path / "out" / "thesis.docx").read_text() == "precious"


@needs_dask
def test_cli_scores_with_dask_on_its_own_local_cluster(tmp_path, capsys, cardio_frame):
    code = cli.main(["train", str(CARDIO), "--detector", "isolation_forest", "--quiet"])
    assert code == 0
    run_id = int(capsys.readouterr().out.split()[1].rstrip(":"))
    folder = _parts(cardio_frame, tmp_path / "parts", 3)
    out = tmp_path / "scores"
    code = cli.main(
        ["score", str(run_id), str(folder), "--out", str(out), "--engine", "dask", "--quiet"]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"{len(cardio_frame):,} rows scored" in printed.out and "dask engine" in printed.out
    local = tmp_path / "local.parquet"
    assert cli.main(["score", str(run_id), str(folder), "--out", str(local), "--quiet"]) == 0
    np.testing.assert_allclose(
        batch.read_scores(out)["score"], batch.read_scores(local)["score"], atol=1e-6
    )
    _broken_parts(cardio_frame, tmp_path / "bad")
    code = cli.main(
        [
            "score",
            str(run_id),
            str(tmp_path / "bad"),
            "--out",
            str(tmp_path / "bad_out"),
            "--engine",
            "dask",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "part-1.csv, line 701" in err and "Traceback" not in err
    assert os.environ["AD_STUDIO_HOME"] in str(Workspace().home)
