"""The bundled sample sets: they load on their own, with the right ground truth."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ad_core.data import (
    DataError,
    Preprocessor,
    ground_truth,
    infer_schema,
    list_samples,
    load_sample,
    row_keys,
    sample_schema,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DIR = REPO / "sample_data"

EXPECTED = {
    # name: (rows, label, normal values, anomaly share, is_sequence)
    "ecg5000": (1000, "label", [1], 0.416, True),
    "cardio": (1831, "label", [0], 0.0961, False),
    "kddcup99": (8000, "label", ["normal."], 0.025, False),
    "machine_series": (8064, "anomaly", [0], 0.0141, False),
}
#: the fewest features each sample preprocesses to (the series has two sensors)
MIN_FEATURES = {"ecg5000": 140, "cardio": 21, "kddcup99": 20, "machine_series": 2}


def test_the_sample_sets_are_listed_with_descriptions():
    infos = {info.name: info for info in list_samples()}
    assert set(infos) == set(EXPECTED)
    for name, info in infos.items():
        assert info.is_sequence is EXPECTED[name][4]
        assert info.title and len(info.description) > 40
        assert info.path.is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_loads_with_the_expected_ground_truth_share(name):
    rows, label, normal, share, _ = EXPECTED[name]
    df = load_sample(name)
    schema = sample_schema(name, df)
    assert len(df) == rows
    assert schema.label_column == label and schema.normal_values == normal
    y = ground_truth(df, schema)
    assert set(y.tolist()) == {0, 1}
    assert y.mean() == pytest.approx(share, abs=0.002)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plain_inference_already_finds_the_label_and_normal_values(name):
    _, label, normal, _, _ = EXPECTED[name]
    schema = infer_schema(load_sample(name))
    assert schema.label_column == label and schema.normal_values == normal


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_preprocesses_to_finite_features(name):
    df = load_sample(name)
    schema = sample_schema(name, df)
    X = Preprocessor().fit_transform(df, schema)
    assert X.shape[0] == len(df) and X.shape[1] >= MIN_FEATURES[name]
    assert np.isfinite(X).all()
    assert len(set(row_keys(df, schema))) == len(df)


def test_the_machine_series_is_recognised_as_a_series_with_a_daily_window():
    from ad_core.series_runs import propose

    df = load_sample("machine_series")
    found = propose(df, sample_schema("machine_series", df))
    assert found.spec.time_column == "timestamp"
    assert found.spec.value_columns == ("temperature", "fan_speed")
    assert found.problems.ok  # regular 5-minute steps, sorted, nothing missing
    assert abs(found.settings.window.length - 288) <= 3  # one day of 5-minute points


def test_ecg5000_rows_are_140_step_heartbeats_keyed_by_beat_id():
    df = load_sample("ecg5000")
    schema = sample_schema("ecg5000", df)
    assert schema.numeric_columns == [f"t{i:03d}" for i in range(140)]
    assert schema.id_column == "beat_id"
    assert set(df["label"]) == {1, 2, 3, 4, 5}


def test_kddcup99_has_the_41_standard_features_and_categories():
    df = load_sample("kddcup99")
    assert list(df.columns[:5]) == ["duration", "protocol_type", "service", "flag", "src_bytes"]
    assert df.shape[1] == 42 and df.columns[-1] == "label"
    schema = sample_schema("kddcup99", df)
    assert schema.categorical_columns == ["protocol_type", "service", "flag"]


def test_unknown_sample_names_the_choices():
    with pytest.raises(DataError, match="cardio"):
        load_sample("iris")


def test_sample_data_stays_small_and_keeps_its_attribution():
    total = sum(p.stat().st_size for p in SAMPLE_DIR.iterdir() if p.is_file())
    assert total < 3 * 1024 * 1024
    readme = (SAMPLE_DIR / "README.md").read_text()
    for source in ("UCR", "PhysioNet", "ODDS", "BSD", "KDD Cup 1999"):
        assert source in readme


def test_importing_ad_core_data_pulls_in_neither_streamlit_nor_torch():
    code = "import sys, ad_core.data; print('streamlit' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="reference data ../shared/data is absent")
def test_make_sample_data_reproduces_the_bundled_files(tmp_path):
    script = REPO / "scripts" / "make_sample_data.py"
    subprocess.run(
        [sys.executable, str(script), "--shared-data", str(SHARED_DATA), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("ecg5000.csv", "cardio.csv", "kddcup99.csv"):
        assert filecmp.cmp(tmp_path / name, SAMPLE_DIR / name, shallow=False), name
