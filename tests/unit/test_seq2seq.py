"""The sequence-to-sequence LSTM detector: sequences in, reconstruction error out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ad_core import load_detector, make_detector
from ad_core.data import DataError, load_sample
from ad_core.detectors import seq2seq as s2s
from ad_core.series import WindowSpec, make_windows


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register seq2seq for these tests (the shared registry lists it once the lead adds it)."""
    from ad_core import detectors

    monkeypatch.setitem(detectors._REGISTRY, "seq2seq", "ad_core.detectors.seq2seq:Seq2Seq")


def _waves(n: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    return (np.sin(2 * np.pi * t / 16 + phase) + 0.05 * rng.normal(size=(n, length))).astype(
        np.float32
    )


def test_the_code_is_derived_from_the_row_and_compresses():
    assert s2s.derived_code_size(140) == 64  # an ECG5000 beat
    assert s2s.derived_code_size(21) == 8
    assert s2s.derived_code_size(6) == 2
    assert s2s.derived_code_size(1) == 1
    det = make_detector("seq2seq", epochs=1, random_state=0)
    assert det.fit(_waves(40, 24, 0)) is det
    assert det.hidden_dims_ == [4] and det.rep_dim_ == 8  # 2 directions x 4 units
    scores = det.decision_function(_waves(5, 24, 2))
    assert scores.shape == (5,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    assert det.transform(_waves(3, 24, 1)).shape == (3, 8)


def test_rows_are_read_as_sequences_in_their_order():
    """A row and the same numbers shuffled in time are different sequences to the model."""
    X = _waves(300, 32, 0)
    det = make_detector("seq2seq", epochs=15, random_state=0).fit(X)
    test = _waves(50, 32, 1)
    shuffled = test[:, np.random.default_rng(2).permutation(32)]
    normal, odd = det.decision_function(test), det.decision_function(shuffled)
    # Same values, same mean and spread per row: only the order in time differs.
    assert roc_auc_score(np.r_[np.zeros(50), np.ones(50)], np.r_[normal, odd]) > 0.95


def test_multichannel_windows_are_time_major_and_must_divide_evenly():
    t = np.arange(600)
    values = np.c_[np.sin(t / 5.0), np.cos(t / 5.0)]
    X = make_windows(values, WindowSpec(20, 5))
    det = make_detector("seq2seq", n_channels=2, epochs=2, random_state=0).fit(X)
    model = det.model_
    # The row's first two numbers are time step 1 (both channels).
    seq = model.sequences(torch.from_numpy(X[:1]))
    assert seq.shape == (1, 20, 2)
    np.testing.assert_allclose(seq[0, 1].numpy(), values[1], rtol=1e-6)
    with pytest.raises(DataError, match="not a multiple of 3"):
        make_detector("seq2seq", n_channels=3, epochs=1).fit(X)


@pytest.mark.parametrize(
    "params",
    [{}, {"score": "gaussian"}, {"decoder": "conditional"}, {"bidirectional": False}],
    ids=["default", "gaussian", "conditional", "unidirectional"],
)
def test_every_setting_saves_and_loads_to_identical_scores(params, tmp_path):
    X = _waves(60, 12, 0)
    det = make_detector("seq2seq", epochs=2, random_state=3, **params).fit(X)
    det.save(tmp_path / "m")
    loaded = load_detector(tmp_path / "m")
    np.testing.assert_array_equal(det.decision_function(X), loaded.decision_function(X))
    np.testing.assert_array_equal(det.transform(X), loaded.transform(X))
    if params.get("score") == "gaussian":
        np.testing.assert_array_equal(det.error_precision_, loaded.error_precision_)


def test_the_gaussian_score_is_the_mean_mahalanobis_distance_of_the_errors():
    X = _waves(80, 10, 0)
    det = make_detector("seq2seq", epochs=2, random_state=0, score="gaussian").fit(X)
    with torch.no_grad():
        rebuilt = det.model_(torch.from_numpy(X)).numpy().astype(np.float64)
    errors = np.abs(rebuilt - X)  # one channel: T errors per row
    mean, var = errors.mean(), errors.var(ddof=1)
    expected = ((errors - mean) ** 2 / var).mean(axis=1)
    np.testing.assert_allclose(det.decision_scores_, expected, rtol=1e-3)


def test_seeding_leaves_the_global_generator_alone_and_fixes_the_lstm_weights():
    X = _waves(40, 10, 0)
    before = torch.get_rng_state()
    a = make_detector("seq2seq", epochs=1, random_state=11).fit(X)
    assert torch.equal(before, torch.get_rng_state())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)  # another global state must not change the model
        b = make_detector("seq2seq", epochs=1, random_state=11).fit(X)
    theirs = b.model_.state_dict()
    for name, mine in a.model_.state_dict().items():
        assert torch.equal(mine, theirs[name]), name


@pytest.mark.slow
def test_ecg5000_abnormal_beats_score_higher_than_normal_ones():
    """Quality on real beats: the bundled 1,000-beat ECG5000 sample, trained on normal beats."""
    frame = load_sample("ecg5000")
    X = frame[[c for c in frame.columns if c.startswith("t")]].to_numpy(np.float32)
    abnormal = (frame["label"].to_numpy() != 1).astype(int)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:500], order[500:]
    normal = train[abnormal[train] == 0]
    det = make_detector("seq2seq", random_state=0).fit(X[normal])  # defaults: 40 epochs
    assert roc_auc_score(abnormal[test], det.decision_function(X[test])) > 0.9
