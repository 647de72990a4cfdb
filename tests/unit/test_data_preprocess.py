"""Preprocessor: impute, one-hot, scale, drop useless columns, and JSON save/load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ad_core.data import SCALINGS, DataError, Preprocessor, Schema, infer_schema


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    amount = rng.normal(10, 3, n)
    amount[::9] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "visits": rng.integers(0, 20, n),
            "city": rng.choice(["Berlin", "Paris", "Rome", "Oslo"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "constant": 3.0,
            "empty": np.full(n, np.nan),
            "label": (np.arange(n) % 20 == 0).astype(int),
        }
    )


def feature_schema(df: pd.DataFrame) -> Schema:
    """Return a schema that uses every non-label column as a feature, useless ones included."""
    schema = infer_schema(df)
    for column in df.columns:
        if column != "label":
            role = "numeric" if pd.api.types.is_numeric_dtype(df[column]) else "categorical"
            schema = schema.with_role(column, role)
    return schema


def test_output_is_float32_c_contiguous_with_named_columns(table):
    prep = Preprocessor()
    X = prep.fit_transform(table, feature_schema(table))
    assert X.dtype == np.float32 and X.flags.c_contiguous
    assert prep.feature_names_out_ == [
        "amount",
        "visits",
        "city=Berlin",
        "city=Paris",
        "city=Rome",
        "city=Oslo",
        "city=(other)",
    ]
    assert X.shape == (len(table), 7)
    assert np.isfinite(X).all()


def test_constant_and_all_missing_columns_are_dropped_with_the_reason(table):
    prep = Preprocessor().fit(table, feature_schema(table))
    assert set(prep.dropped_) == {"constant", "empty"}
    assert "same value (3)" in prep.dropped_["constant"]
    assert "missing" in prep.dropped_["empty"]


def test_missing_numbers_are_imputed_with_the_median(table):
    prep = Preprocessor(scaling="none").fit(table, feature_schema(table))
    X = prep.transform(table)
    missing = table["amount"].isna().to_numpy()
    median = np.nanmedian(table["amount"])
    np.testing.assert_allclose(X[missing, 0], median, rtol=1e-6)


@pytest.mark.parametrize("impute, expected", [("mean", np.nanmean), ("zero", lambda v: 0.0)])
def test_other_imputations_fill_as_named(table, impute, expected):
    prep = Preprocessor(scaling="none", impute=impute).fit(table, feature_schema(table))
    X = prep.transform(table)
    missing = table["amount"].isna().to_numpy()
    np.testing.assert_allclose(X[missing, 0], expected(table["amount"]), rtol=1e-6)


def test_infinity_counts_as_missing(table):
    table.loc[3, "amount"] = np.inf
    prep = Preprocessor(scaling="none").fit(table, feature_schema(table))
    X = prep.transform(table)
    assert X[3, 0] == pytest.approx(prep.fill_values_[0])


def test_infinities_are_said_in_a_note_naming_the_column(table):
    table.loc[[3, 4], "amount"] = [np.inf, -np.inf]
    prep = Preprocessor(impute="mean").fit(table, feature_schema(table))
    note = next(n for n in prep.notes_ if "Infinite" in n)
    assert "'amount' (2)" in note and "'visits'" not in note and "its mean" in note
    assert not any(
        "Infinite" in n for n in Preprocessor().fit(table.head(3), feature_schema(table)).notes_
    )


def test_missing_indicators_add_a_column_per_numeric_column_with_gaps(table):
    prep = Preprocessor(missing_indicators=True, scaling="none")
    X = prep.fit_transform(table, feature_schema(table))
    column = prep.feature_names_out_.index("amount is missing")
    assert X[:, column].tolist() == table["amount"].isna().astype(float).tolist()
    assert "visits is missing" not in prep.feature_names_out_


def test_unseen_and_missing_categories_go_to_other(table):
    prep = Preprocessor(scaling="none").fit(table, feature_schema(table))
    new = table.head(3).copy()
    new["city"] = ["Tokyo", None, "Paris"]
    X = prep.transform(new)
    names = prep.feature_names_out_
    other, paris = names.index("city=(other)"), names.index("city=Paris")
    assert X[:, other].tolist() == [1.0, 1.0, 0.0]
    assert X[2, paris] == 1.0
    one_hot = [i for i, n in enumerate(names) if n.startswith("city=")]
    assert X[:, one_hot].sum(axis=1).tolist() == [1.0, 1.0, 1.0]


def test_categories_are_capped_at_max_categories(table):
    prep = Preprocessor(max_categories=3, scaling="none").fit(table, feature_schema(table))
    assert prep.categories_["city"] == ["Berlin", "Paris"]
    X = prep.transform(table)
    rare = table["city"].isin(["Rome", "Oslo"]).to_numpy()
    assert (X[rare, prep.feature_names_out_.index("city=(other)")] == 1).all()


def test_numeric_codes_as_categories_match_across_int_and_float():
    fit = pd.DataFrame({"code": [1, 2, 1, 3, 2, 1], "v": [0.0, 1, 2, 3, 4, 5]})
    schema = infer_schema(fit).with_role("code", "categorical")
    prep = Preprocessor(scaling="none").fit(fit, schema)
    later = pd.DataFrame({"code": [2.0, np.nan], "v": [1.0, 2.0]})
    X = prep.transform(later)
    assert X[0, prep.feature_names_out_.index("code=2")] == 1.0
    assert X[1, prep.feature_names_out_.index("code=(other)")] == 1.0


def split_unused_other(prep: Preprocessor, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (the columns with spread, the "(other)" column that no fit row uses)."""
    other = prep.feature_names_out_.index("city=(other)")
    return np.delete(X, other, axis=1), X[:, other]


def test_standard_scaling_gives_zero_mean_unit_variance(table):
    prep = Preprocessor(scaling="standard")
    X, other = split_unused_other(prep, prep.fit_transform(table, feature_schema(table)))
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=0), 1, atol=1e-4)
    assert (other == 0).all()  # no spread: centred, not divided


@pytest.mark.parametrize("scaling", ["minmax", "standard_minmax"])
def test_minmax_scalings_map_the_fit_data_to_unit_range(table, scaling):
    prep = Preprocessor(scaling=scaling)
    X, other = split_unused_other(prep, prep.fit_transform(table, feature_schema(table)))
    np.testing.assert_allclose(X.min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(X.max(axis=0), 1, atol=1e-6)
    assert (other == 0).all()


@pytest.mark.parametrize("scaling", SCALINGS)
def test_an_unseen_category_stands_out_after_scaling(table, scaling):
    prep = Preprocessor(scaling=scaling).fit(table, feature_schema(table))
    new = table.head(1).assign(city="Tokyo")
    column = prep.feature_names_out_.index("city=(other)")
    if scaling == "global":  # one scale for every column: 1 is moved and stretched as all are
        fit_value = prep.transform(table.head(1))[0, column]
        assert prep.transform(new)[0, column] > fit_value + 0.1
    else:
        assert prep.transform(new)[0, column] == 1.0


def test_standard_minmax_is_two_fitted_steps(table):
    prep = Preprocessor(scaling="standard_minmax").fit(table, feature_schema(table))
    assert len(prep.scaling_steps_) == 2
    raw = Preprocessor(scaling="none").fit(table, feature_schema(table)).transform(table)
    np.testing.assert_allclose(prep.scaling_steps_[0][0], raw.mean(axis=0), rtol=1e-5)


def test_robust_scaling_centres_on_the_median(table):
    prep = Preprocessor(scaling="robust")
    X = prep.fit_transform(table, feature_schema(table))
    assert np.median(X[:, prep.feature_names_out_.index("visits")]) == pytest.approx(0)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_saved_preprocessor_reproduces_transform_bit_for_bit(table, tmp_path, scaling):
    prep = Preprocessor(scaling=scaling, missing_indicators=True)
    X = prep.fit_transform(table, feature_schema(table))
    path = prep.save(tmp_path / "preprocessor.json")
    json.loads(path.read_text())  # plain JSON, no pickle
    loaded = Preprocessor.load(path)
    np.testing.assert_array_equal(loaded.transform(table), X)
    assert loaded.transform(table).tobytes() == X.tobytes()
    assert loaded.feature_names_out_ == prep.feature_names_out_
    assert loaded.dropped_ == prep.dropped_


def test_transform_without_a_fitted_column_names_it(table):
    prep = Preprocessor().fit(table, feature_schema(table))
    with pytest.raises(DataError, match="'visits'"):
        prep.transform(table.drop(columns="visits"))


def test_dropped_columns_are_not_needed_at_transform(table):
    prep = Preprocessor().fit(table, feature_schema(table))
    assert prep.transform(table.drop(columns=["constant", "empty"])).shape[0] == len(table)


def test_single_row_asks_for_at_least_two_rows(table):
    with pytest.raises(DataError, match="At least 2 rows"):
        Preprocessor().fit(table.head(1), feature_schema(table))


def test_no_usable_feature_explains_what_was_dropped(table):
    schema = infer_schema(table)
    for column in table.columns:
        schema = schema.with_role(column, "ignore")
    schema = schema.with_role("constant", "numeric").with_role("empty", "numeric")
    with pytest.raises(DataError, match="No usable feature") as info:
        Preprocessor().fit(table, schema)
    assert "'constant'" in str(info.value) and "'empty'" in str(info.value)


def test_no_feature_role_at_all_is_a_clear_error(table):
    schema = Schema(roles={c: "ignore" for c in table.columns})
    with pytest.raises(DataError, match="No column is marked as a feature"):
        Preprocessor().fit(table, schema)


def test_text_in_a_column_set_to_numeric_becomes_missing(table):
    table["city_code"] = table["city"].map({"Berlin": "1", "Paris": "2", "Rome": "x"})
    schema = feature_schema(table).with_role("city_code", "numeric")
    prep = Preprocessor(scaling="none").fit(table, schema)
    X = prep.transform(table)
    column = prep.feature_names_out_.index("city_code")
    assert set(np.unique(X[:, column])) <= {1.0, 1.5, 2.0}  # "x" and NaN -> median


def test_text_only_column_set_to_numeric_is_dropped_with_advice(table):
    schema = feature_schema(table).with_role("city", "numeric")
    prep = Preprocessor().fit(table, schema)
    assert "make it categorical" in prep.dropped_["city"]


def test_invalid_scaling_is_refused_at_fit(table):
    prep = Preprocessor(scaling="zscore")  # the constructor only stores, like sklearn
    with pytest.raises(ValueError, match="standard_minmax"):
        prep.fit(table, feature_schema(table))


def test_transform_before_fit_says_to_fit_first(table):
    with pytest.raises(RuntimeError, match="not fitted"):
        Preprocessor().transform(table)


def test_a_million_rows_transform_in_chunks_consistently():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(150_000, 3)), columns=["a", "b", "c"])
    df["k"] = rng.choice(["x", "y", "z"], len(df))
    prep = Preprocessor()
    X = prep.fit_transform(df, infer_schema(df))
    np.testing.assert_array_equal(prep.transform(df), X)


# --- extremely large and small numbers ------------------------------------------------------


@pytest.fixture
def huge() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    base = rng.normal(5, 2, 100)
    return pd.DataFrame({"big": base * 1e300, "tiny": base * 1e-300, "base": base})


def numeric_schema(df: pd.DataFrame) -> Schema:
    schema = infer_schema(df)
    for column in df.columns:
        schema = schema.with_role(column, "numeric")
    return schema


def test_global_scaling_of_numbers_near_1e300_stays_finite(huge):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        X = Preprocessor(scaling="global").fit_transform(huge, numeric_schema(huge))
    assert np.isfinite(X).all()


# Per-column scalings: "global" gives every column one scale, so columns do not match there.
@pytest.mark.parametrize("scaling", [s for s in SCALINGS if s not in ("none", "global")])
def test_numbers_near_1e300_scale_like_ordinary_numbers_without_overflow(huge, scaling):
    import warnings

    prep = Preprocessor(scaling=scaling)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        X = prep.fit_transform(huge, numeric_schema(huge))
    base = X[:, prep.feature_names_out_.index("base")]
    assert np.unique(base).size > 50  # the ordinary column is scaled, not collapsed
    for column in ("big", "tiny"):  # used to come out as all zeros
        np.testing.assert_allclose(X[:, prep.feature_names_out_.index(column)], base, atol=1e-5)


def test_extreme_columns_are_named_in_a_note_and_ordinary_ones_get_no_extra_step(huge):
    prep = Preprocessor().fit(huge, numeric_schema(huge))
    large = next(n for n in prep.notes_ if "extremely large" in n)
    small = next(n for n in prep.notes_ if "extremely small" in n)
    assert "'big'" in large and "'tiny'" not in large and "e+30" in large
    assert "'tiny'" in small and "overflow" in small
    ordinary = Preprocessor().fit(huge[["base"]], numeric_schema(huge[["base"]]))
    assert len(ordinary.scaling_steps_) == 1 and ordinary.notes_ == []


def test_mean_imputation_of_huge_numbers_is_finite(huge):
    huge.loc[::10, "big"] = np.nan
    huge["big"] *= 100  # near the float64 limit: a plain sum overflows
    prep = Preprocessor(impute="mean").fit(huge, numeric_schema(huge))
    fill = prep.fill_values_[prep.numeric_columns_.index("big")]
    assert np.isfinite(fill) and fill == pytest.approx(np.nanmean(huge["big"] / 1e300) * 1e300)
    assert np.isfinite(prep.transform(huge)).all()


def test_huge_numbers_without_scaling_are_refused_naming_the_column(huge):
    with pytest.raises(DataError, match="'big'") as info:
        Preprocessor(scaling="none").fit(huge, numeric_schema(huge))
    assert "scaling other than 'none'" in str(info.value)
    assert "'tiny'" not in str(info.value) and "'base'" not in str(info.value)


def test_saved_preprocessor_with_huge_numbers_reproduces_transform(huge, tmp_path):
    prep = Preprocessor()
    X = prep.fit_transform(huge, numeric_schema(huge))
    loaded = Preprocessor.load(prep.save(tmp_path / "preprocessor.json"))
    assert loaded.transform(huge).tobytes() == X.tobytes()
    assert loaded.notes_ == prep.notes_


# --- empty cells in categorical columns ----------------------------------------------------


@pytest.fixture
def colours() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    colour = rng.choice(["red", "blue", "green"], 200, p=[0.5, 0.3, 0.2]).astype(object)
    colour[[5, 50, 150]] = None
    return pd.DataFrame({"x": rng.normal(size=200), "colour": colour})


def colour_schema(df: pd.DataFrame) -> Schema:
    return infer_schema(df).with_role("x", "numeric").with_role("colour", "categorical")


def test_empty_categories_are_by_default_a_column_named_in_plain_words(colours):
    prep = Preprocessor(scaling="none")
    X = prep.fit_transform(colours, colour_schema(colours))
    assert prep.categorical_missing == "own_category"
    assert "colour is missing" in prep.feature_names_out_
    assert not any("(missing)" in name for name in prep.feature_names_out_)
    column = X[:, prep.feature_names_out_.index("colour is missing")]
    assert np.flatnonzero(column).tolist() == [5, 50, 150]
    assert prep.missing_categories_ == {"colour": 3}
    note = next(n for n in prep.notes_ if "Empty cells" in n)
    assert "'colour' (3 of 200 cells empty)" in note and "most frequent" in note


def test_rare_empty_categories_keep_their_own_column_beyond_max_categories(colours):
    prep = Preprocessor(max_categories=2).fit(colours, colour_schema(colours))
    assert prep.categories_["colour"] == ["red", "(missing)"]
    assert prep.feature_names_out_[1:] == ["colour=red", "colour is missing", "colour=(other)"]


def test_most_frequent_fills_empty_categories_at_fit_and_transform(colours):
    prep = Preprocessor(scaling="none", categorical_missing="most_frequent")
    X = prep.fit_transform(colours, colour_schema(colours))
    names = prep.feature_names_out_
    assert "colour is missing" not in names and prep.category_fills_ == {"colour": "red"}
    assert X[[5, 50, 150], names.index("colour=red")].tolist() == [1.0, 1.0, 1.0]
    later = prep.transform(colours.head(2).assign(colour=[None, "blue"]))
    assert later[0, names.index("colour=red")] == 1.0
    assert later[1, names.index("colour=blue")] == 1.0
    note = next(n for n in prep.notes_ if "Empty cells" in n)
    assert "filled with 'red'" in note and "3 of 200" in note


def test_most_frequent_drops_a_column_that_is_constant_apart_from_empty_cells(colours):
    colours["colour"] = colours["colour"].where(colours["colour"].isna(), "red")
    own = Preprocessor().fit(colours, colour_schema(colours))
    filled = Preprocessor(categorical_missing="most_frequent").fit(colours, colour_schema(colours))
    assert "colour is missing" in own.feature_names_out_
    assert "wherever it is not missing" in filled.dropped_["colour"]


def test_categorical_missing_survives_the_json_round_trip(colours, tmp_path):
    prep = Preprocessor(categorical_missing="most_frequent")
    X = prep.fit_transform(colours, colour_schema(colours))
    data = json.loads(prep.save(tmp_path / "preprocessor.json").read_text())
    assert data["params"]["categorical_missing"] == "most_frequent"
    loaded = Preprocessor.load(tmp_path / "preprocessor.json")
    assert loaded.get_params() == prep.get_params()
    assert loaded.category_fills_ == {"colour": "red"}
    new = colours.head(3).assign(colour=[None, None, "green"])
    assert loaded.transform(new).tobytes() == prep.transform(new).tobytes()
    assert loaded.transform(colours).tobytes() == X.tobytes()


def test_a_preprocessor_saved_before_the_setting_existed_loads_and_transforms_as_before(
    colours, tmp_path
):
    prep = Preprocessor(scaling="none")
    prep.fit(colours, colour_schema(colours))
    old = prep.to_dict()
    # What version 1 wrote: no categorical_missing, fills, counts or notes; "(missing)" names.
    old["version"] = 1
    del old["params"]["categorical_missing"]
    for key in ("category_fills", "missing_categories", "notes"):
        del old[key]
    old["categories"] = [["colour", ["red", "(missing)", "blue", "green"]]]
    old["feature_names_out"] = [
        "x",
        "colour=red",
        "colour=(missing)",
        "colour=blue",
        "colour=green",
        "colour=(other)",
    ]
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = Preprocessor.load(tmp_path / "old.json")
    assert loaded.categorical_missing == "own_category"
    X = loaded.transform(colours)
    assert X[[5, 50, 150], 2].tolist() == [1.0, 1.0, 1.0]
    assert X[:, 1:].sum(axis=1).tolist() == [1.0] * len(colours)
    assert loaded.feature_names_out_ == old["feature_names_out"]


def test_an_unknown_categorical_missing_is_refused_at_fit(colours):
    with pytest.raises(ValueError, match="own_category, most_frequent"):
        Preprocessor(categorical_missing="drop").fit(colours, colour_schema(colours))
