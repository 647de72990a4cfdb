"""Hyperparameters are checked once, in fit, from the registry's specs (issue 9).

Every setting of every detector gets one bad value of each kind that applies (below its
range, above it, the wrong type, an unknown choice, None where None means nothing); each must
be refused before any training with a message that names the detector, the setting, what is
allowed and the value. Defaults, both ends of each range and None where the default is None
pass. The registry refuses a spec that names no constructor argument, contamination has one
range, and load_detector refuses configs it cannot read.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import ad_core.detectors as registry
from ad_core import list_detectors, load_detector, make_detector
from ad_core.detectors import (
    CONTAMINATION_RANGE,
    FORMAT_VERSION,
    BaseDetector,
    DetectorInfo,
    ParamSpec,
    get_detector_info,
    validate_params,
)
from ad_core.detectors.base import CONTAMINATION_PARAM
from ad_core.thresholds import RULES

INFOS = list_detectors()
SPECS = [(info.name, spec) for info in INFOS for spec in info.params]


def _spec_id(case) -> str:
    return f"{case[0]}-{case[1].name}"


def bad_values(spec: ParamSpec) -> list[tuple[str, object]]:
    """Return (what is wrong, value) pairs: one bad value of each kind that fits ``spec``."""
    out: list[tuple[str, object]] = []
    if spec.kind in ("int", "float"):
        if spec.low is not None:
            if spec.kind == "int":
                below = int(spec.low) - 1
            else:
                below = spec.low / 2 if spec.low > 0 else spec.low - 0.5
            out.append(("below_range", below))
        if spec.high is not None:
            above = int(spec.high) + 1 if spec.kind == "int" else spec.high * 2 + 1
            out.append(("above_range", above))
        out.append(("text", "3"))
        out.append(("bool", True))
    if spec.kind == "int":
        out.append(("fraction", 2.5))
    if spec.kind == "float":
        out.append(("nan", float("nan")))
    if spec.kind == "choice":
        out.append(("unknown_choice", "no_such_choice"))
        out.append(("number", 1))
    if spec.kind == "bool":
        out.append(("text", "yes"))
    if spec.kind == "int_list":
        out.append(("text", "64,32"))
        out.append(("zero_width", (64, 0)))
        out.append(("fraction", (64, 2.5)))
        out.append(("bare_number", 7))
    if spec.default is not None:
        out.append(("none", None))
    return out


BAD_CASES = [
    pytest.param(name, spec, value, id=f"{name}-{spec.name}-{what}")
    for name, spec in SPECS
    for what, value in bad_values(spec)
]


@pytest.fixture(scope="module")
def small_table():
    return np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)


def test_every_detector_has_specs_to_check():
    assert len(INFOS) >= 8
    for info in INFOS:
        assert any(spec.name == "contamination" for spec in info.params), info.name


@pytest.mark.parametrize(("name", "spec", "bad"), BAD_CASES)
def test_a_bad_setting_is_refused_in_fit_before_training_with_a_readable_message(
    name, spec, bad, small_table
):
    info = get_detector_info(name)
    events: list[dict] = []
    det = make_detector(name, **{spec.name: bad})  # __init__ only stores
    assert getattr(det, spec.name) is bad
    with pytest.raises(ValueError) as caught:
        det.fit(small_table, callback=events.append)
    message = str(caught.value)
    assert message.startswith(f"{info.title}: '{spec.name}' must be "), message
    assert message.endswith(f"; got {bad!r}."), message
    assert events == []  # refused before any training step
    assert not hasattr(det, "threshold_")


@pytest.mark.parametrize(("name", "spec"), SPECS, ids=[_spec_id(c) for c in SPECS])
def test_default_range_ends_and_automatic_pass(name, spec):
    validate_params(make_detector(name))  # every default
    good: list[object] = []
    if spec.kind == "int":
        good += [int(v) for v in (spec.low, spec.high) if v is not None]
        good.append(np.int64(spec.low if spec.low is not None else 1))
    if spec.kind == "float":
        good += [float(v) for v in (spec.low, spec.high) if v is not None]
        if spec.low is not None and float(spec.low).is_integer():
            good.append(int(spec.low))  # a whole number is a number
    if spec.kind == "choice":
        good += list(spec.choices)
    if spec.kind == "int_list":
        good += [(), [16, 8], (np.int64(4),)]  # JSON gives lists
    if spec.default is None:
        good.append(None)
    for value in good:
        validate_params(make_detector(name, **{spec.name: value}))


def test_messages_read_as_the_issue_asks(small_table):
    with pytest.raises(ValueError) as caught:
        make_detector("knn", method="median").fit(small_table)
    assert str(caught.value) == (
        "k nearest neighbours: 'method' must be one of largest, mean; got 'median'."
    )
    with pytest.raises(ValueError) as caught:
        make_detector("deep_sad", epochs=-3).fit(small_table)
    assert str(caught.value) == "Deep SAD: 'epochs' must be a whole number from 1 to 1000; got -3."
    with pytest.raises(ValueError) as caught:
        make_detector("ocsvm", gamma=0.0).fit(small_table)
    assert str(caught.value) == (
        "One-class SVM: 'gamma' must be a number from 0.000001 to 1000, or None (automatic); "
        "got 0.0."
    )


def test_a_setting_changed_by_set_params_is_checked_too(small_table):
    det = make_detector("knn").fit(small_table)
    det.set_params(n_neighbors=0)
    with pytest.raises(ValueError, match="'n_neighbors' must be a whole number from 1 to 200"):
        det.fit(small_table)


def test_checks_that_depend_on_the_data_stay(small_table):
    with pytest.raises(ValueError, match=r"needs more than 20 of them; there are 12\."):
        make_detector("knn", n_neighbors=20).fit(small_table)
    with pytest.raises(ValueError, match="dimension between 2 and"):
        make_detector("compact_vae", compactness="sphere", rep_dim=1, epochs=1).fit(small_table)


# -- the registry refuses faulty specs ------------------------------------------------------
def _detector_class(params: tuple[ParamSpec, ...], n_trees_default=10) -> type[BaseDetector]:
    class FaultyDetector(BaseDetector):
        info = DetectorInfo(
            name="faulty",
            title="Faulty",
            family="classic",
            uses_labels="no",
            has_latent=False,
            description="A detector whose registry entry is wrong.",
            reference="none",
            params=params,
        )

        def __init__(self, *, n_trees: int = n_trees_default, contamination: float = 0.1):
            self.n_trees = n_trees
            self.contamination = contamination

    return FaultyDetector


FAULTY = {
    "names_no_argument": (
        _detector_class((ParamSpec("n_estimators", "int", "Trees.", low=1), CONTAMINATION_PARAM)),
        r"'n_estimators'.*no argument of that name",
    ),
    "unknown_kind": (
        _detector_class((ParamSpec("n_trees", "integer", "Trees."),)),
        "kind 'integer'",
    ),
    "choice_without_choices": (
        _detector_class((ParamSpec("n_trees", "choice", "Trees."),)),
        "lists no choices",
    ),
    "default_outside_its_range": (
        _detector_class((ParamSpec("n_trees", "int", "Trees.", low=20, high=50),)),
        r"default of 'n_trees' \(10\)",
    ),
    "same_setting_twice": (
        _detector_class((CONTAMINATION_PARAM, CONTAMINATION_PARAM)),
        "twice",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTY))
def test_registry_refuses_a_faulty_spec_when_the_info_is_read(fault, monkeypatch, small_table):
    cls, message = FAULTY[fault]
    globals()["FaultyDetector"] = cls
    monkeypatch.setitem(registry._REGISTRY, "faulty", f"{__name__}:FaultyDetector")
    with pytest.raises(TypeError, match=message):
        get_detector_info("faulty")
    with pytest.raises(TypeError, match=message):
        list_detectors()
    with pytest.raises(TypeError, match=message):
        make_detector("faulty").fit(small_table)


def test_a_correct_spec_in_the_registry_works(monkeypatch, small_table):
    cls = _detector_class((ParamSpec("n_trees", "int", "Trees.", low=1), CONTAMINATION_PARAM))
    globals()["FaultyDetector"] = cls
    monkeypatch.setitem(registry._REGISTRY, "faulty", f"{__name__}:FaultyDetector")
    assert [p.default for p in get_detector_info("faulty").params] == [10, 0.1]
    with pytest.raises(ValueError, match="Faulty: 'n_trees' must be a whole number of at least 1"):
        make_detector("faulty", n_trees=0).fit(small_table)


# -- contamination: one range -------------------------------------------------------------------
def test_contamination_has_one_range_everywhere():
    low, high = CONTAMINATION_RANGE
    assert 0 < low < high <= 0.5
    assert (CONTAMINATION_PARAM.low, CONTAMINATION_PARAM.high) == CONTAMINATION_RANGE
    for info in INFOS:
        spec = next(p for p in info.params if p.name == "contamination")
        assert (spec.low, spec.high) == CONTAMINATION_RANGE, info.name
    rule_param = next(p for p in RULES["contamination"].params if p.name == "contamination")
    assert (rule_param.low, rule_param.high) == CONTAMINATION_RANGE


@pytest.mark.parametrize("contamination", CONTAMINATION_RANGE)
def test_both_ends_of_the_contamination_range_train(contamination):
    X = np.random.default_rng(1).normal(size=(400, 3))
    det = make_detector("knn", contamination=contamination).fit(X)
    share = (det.decision_scores_ > det.threshold_).mean()  # the training rows' own scores
    assert abs(share - contamination) <= 2 / len(X)


# -- load_detector checks the saved format -----------------------------------------------------
@pytest.fixture
def saved_knn(tmp_path, small_table):
    folder = tmp_path / "model"
    make_detector("knn", n_neighbors=3).fit(small_table).save(folder)
    return folder


def _rewrite(folder, change) -> None:
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(change(config)))


def test_a_model_from_a_newer_ad_core_is_refused_with_an_upgrade_hint(saved_knn):
    newer = FORMAT_VERSION + 2
    _rewrite(saved_knn, lambda c: {**c, "format_version": newer})
    with pytest.raises(ValueError) as caught:
        load_detector(saved_knn)
    assert str(caught.value) == (
        f"This model was saved by a newer version of ad_core (format {newer}; this one reads "
        f"up to {FORMAT_VERSION}). Upgrade ad-studio to load it."
    )


def test_the_current_format_still_loads(saved_knn, small_table):
    _rewrite(saved_knn, lambda c: c)
    loaded = load_detector(saved_knn)
    assert loaded.decision_function(small_table).shape == (len(small_table),)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: {**c, "format": "keras.model"},
        lambda c: {k: v for k, v in c.items() if k != "format"},
        lambda c: [c],
    ],
    ids=["other_format", "no_format", "not_an_object"],
)
def test_a_foreign_config_is_refused(saved_knn, change):
    _rewrite(saved_knn, change)
    with pytest.raises(ValueError, match="not the config of a model saved by ad_core"):
        load_detector(saved_knn)


@pytest.mark.parametrize("version", [None, "1", 0, 1.5, True])
def test_a_config_without_a_valid_format_version_is_refused(saved_knn, version):
    def change(config):
        config = {**config, "format_version": version}
        if version is None:
            del config["format_version"]
        return config

    _rewrite(saved_knn, change)
    with pytest.raises(ValueError, match="no valid format_version"):
        load_detector(saved_knn)


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage"])
def test_a_config_that_is_not_json_is_refused(saved_knn, content):
    (saved_knn / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_detector(saved_knn)
