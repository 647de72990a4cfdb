"""The ``ad-studio`` command line: train, score, runs, export, app, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ad_core import cli
from ad_core.runs import DEFAULT_PREPROCESSING
from ad_core.store import Workspace

REPO = Path(__file__).resolve().parents[2]
CARDIO = REPO / "sample_data" / "cardio.csv"


def _train(capsys, *extra: str) -> int:
    code = cli.main(
        ["train", str(CARDIO), "--detector", "autoencoder", "--set", "epochs=2", "--quiet", *extra]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    first = out.splitlines()[0]
    assert first.startswith("run ")
    return int(first.split()[1].rstrip(":"))


@pytest.fixture
def trained(capsys) -> int:
    return _train(capsys, "--set", "random_state=0", "--set", "hidden_dims=[16,8]")


def test_train_prints_run_auroc_and_folder(capsys):
    code = cli.main(["train", str(CARDIO), "--detector", "isolation_forest", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "AUROC" in out
    run_id = int(out.split()[1].rstrip(":"))
    ws = Workspace()
    run = ws.get_run(run_id)
    assert run.status == "done"
    assert run.preprocessing == DEFAULT_PREPROCESSING  # the app's default, one place
    assert str(ws.run_dir(run_id)) in out


def test_train_then_score_matches_stored_scores(trained, tmp_path, capsys):
    ws = Workspace()
    assert ws.get_run(trained).params == {"epochs": 2, "random_state": 0, "hidden_dims": [16, 8]}
    out = tmp_path / "scores.parquet"
    assert cli.main(["score", str(trained), str(CARDIO), "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    stored = ws.load_scores(trained)
    assert list(got.columns) == ["row_key", "score", "flag"]
    assert got["row_key"].tolist() == stored["row_key"].tolist()
    np.testing.assert_allclose(got["score"], stored["score"], rtol=1e-5)
    threshold = ws.get_run(trained).metrics["threshold"]
    assert (got["flag"] == (got["score"] > threshold)).all()

    csv = tmp_path / "scores.csv"
    assert cli.main(["score", str(trained), str(CARDIO), "--out", str(csv)]) == 0
    assert len(pd.read_csv(csv)) == len(got)


def test_bad_setting_exits_1_with_the_parameter_error(capsys):
    code = cli.main(["train", str(CARDIO), "--detector", "autoencoder", "--set", "epochs=-1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Autoencoder: 'epochs' must be a whole number from 1 to 1000; got -1." in err
    assert "Traceback" not in err
    assert Workspace().list_runs() == []  # nothing recorded for a typo


def test_unknown_detector_and_setting_exit_1(capsys):
    assert cli.main(["train", str(CARDIO), "--detector", "nope"]) == 1
    assert "Unknown detector 'nope'" in capsys.readouterr().err
    assert cli.main(["train", str(CARDIO), "--detector", "knn", "--set", "foo=1"]) == 1
    assert "no setting foo" in capsys.readouterr().err


def test_missing_data_file_exits_1(tmp_path, capsys):
    code = cli.main(["train", str(tmp_path / "none.csv"), "--detector", "knn"])
    err = capsys.readouterr().err
    assert code == 1 and "There is no file" in err and "Traceback" not in err


def test_unknown_run_exits_1(tmp_path, capsys):
    for argv in (
        ["score", "42", str(CARDIO), "--out", str(tmp_path / "s.parquet")],
        ["export", "42", "--out", str(tmp_path / "r.zip")],
    ):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "no run 42" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["train", str(CARDIO)], ["score", "x", "d.csv", "--out", "o.parquet"]],
)
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2


def test_parse_setting_reads_json_else_text():
    assert cli.parse_setting("epochs=3") == ("epochs", 3)
    assert cli.parse_setting("lr=1e-3") == ("lr", 0.001)
    assert cli.parse_setting("hidden_dims=[64,32]") == ("hidden_dims", [64, 32])
    assert cli.parse_setting("method=mean") == ("method", "mean")
    assert cli.parse_setting("device=null") == ("device", None)


def test_labels_file_is_stored_and_checked(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("row_key,label\n0,1\n1,0\n2,0\n")
    code = cli.main(
        ["train", str(CARDIO), "--detector", "isolation_forest", "--labels", str(labels), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    ws = Workspace()
    run = ws.list_runs()[0]
    assert ws.labels(run.dataset_id) == {"0": 1, "1": 0, "2": 0}
    assert run.metrics["n_labels"] == 3

    labels.write_text("row_key,label\n0,2\n")
    assert cli.main(["train", str(CARDIO), "--detector", "knn", "--labels", str(labels)]) == 1
    assert "neither anomaly nor normal" in capsys.readouterr().err

    # All or nothing: one key the data lacks, and not one label of the file is stored.
    labels.write_text("row_key,label\n5,1\n99999,1\n")
    assert cli.main(["train", str(CARDIO), "--detector", "knn", "--labels", str(labels)]) == 1
    err = capsys.readouterr().err
    assert "1 of the 2 row keys in the file match no row" in err and "99999" in err
    assert ws.labels(run.dataset_id) == {"0": 1, "1": 0, "2": 0}


def test_runs_lists_the_run(trained, capsys):
    assert cli.main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.split()[0] == str(trained))
    assert "autoencoder" in row and "done" in row
    dataset = Workspace().get_run(trained).dataset_id
    assert cli.main(["runs", "--dataset", dataset]) == 0
    assert "autoencoder" in capsys.readouterr().out
    assert cli.main(["runs", "--dataset", "nothing"]) == 0
    assert "No runs" in capsys.readouterr().out


def test_export_zip_holds_model_and_record(trained, tmp_path, capsys):
    out = tmp_path / "run.zip"
    assert cli.main(["export", str(trained), "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        record = json.loads(zf.read("run.json"))
    assert "model/config.json" in names and "preprocessor.json" in names
    assert record["id"] == trained and record["detector"] == "autoencoder"


def test_app_command_points_at_app_py():
    command = cli.app_command(8600)
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]) == REPO / "app.py"
    assert command[5:] == ["--server.address", "127.0.0.1", "--server.port", "8600"]


def test_app_without_app_py_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "app_path", lambda: tmp_path / "app.py")
    assert cli.main(["app"]) == 1
    assert "app.py is not at" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    for argv in (["--help"], *([c, "--help"] for c in ("train", "score", "runs", "export", "app"))):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
        assert "example" in capsys.readouterr().out


def test_python_m_ad_core_help():
    done = subprocess.run(
        [sys.executable, "-m", "ad_core", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ad-studio train" in done.stdout


def test_train_series_windows_a_series_and_says_how(capsys):
    series = REPO / "sample_data" / "machine_series.csv"
    code = cli.main(["train", str(series), "--detector", "pca", "--series", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "series: windows of 287 points, a new one every 4" in out.err
    assert "repeat every 287 points" in out.err
    run_id = int(out.out.split()[1].rstrip(":"))
    from ad_core.store import Workspace

    metrics = Workspace().get_run(run_id).metrics
    assert metrics["series"] and metrics["window_length"] == 287 and metrics["n_windows"] > 1000


def test_train_series_with_a_window_of_your_own_and_refusals(tmp_path, capsys):
    series = REPO / "sample_data" / "machine_series.csv"
    args = ["train", str(series), "--detector", "pca", "--quiet", "--window"]
    assert cli.main([*args, "48", "--point-score", "mean"]) == 0
    assert "windows of 48 points, a new one every 1;" in capsys.readouterr().err
    assert cli.main([*args, "100000"]) == 1
    assert "fewer than one window" in capsys.readouterr().err
    assert cli.main(["train", str(series), "--detector", "pca", "--stride", "3"]) == 1
    assert "go with --series or --window" in capsys.readouterr().err
    assert cli.main(["train", str(CARDIO), "--detector", "pca", "--series", "--quiet"]) == 1
    assert "is not a series" in capsys.readouterr().err
    messy = tmp_path / "messy.csv"
    lines = series.read_text().splitlines()
    messy.write_text("\n".join([lines[0], *lines[1:50][::-1], *lines[50:200]]) + "\n")
    assert cli.main(["train", str(messy), "--detector", "pca", "--series", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot be cut into windows" in err and "fix_series" in err
