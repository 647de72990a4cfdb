"""Empty categorical cells in explanations: said as "<column> is missing", never "=(missing)"."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ad_core.data import Preprocessor, infer_schema
from ad_core.explain import describe_top, feature_contributions, reference_stats, top_features


def test_a_rare_empty_cell_is_explained_as_missing_in_plain_words():
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "blue"], 100).astype(object)
    colour[17] = None
    df = pd.DataFrame({"x": rng.normal(size=100), "colour": colour})
    schema = infer_schema(df).with_role("x", "numeric").with_role("colour", "categorical")
    prep = Preprocessor()
    X = prep.fit_transform(df, schema)
    contrib = feature_contributions(None, X, reference=reference_stats(X))
    top = top_features(contrib, prep.feature_names_out_, k=2)
    text = describe_top(top[17])
    assert text.startswith("colour is missing (")
    assert "(missing)" not in text and "missing high" not in text
    assert "is missing" not in describe_top(top[0])


def test_describe_top_says_missing_and_not_missing_instead_of_high_and_low():
    features = [("amount is missing", 0.5, 2.0), ("colour is missing", 0.3, -1.0), ("t1", 0.2, 1)]
    assert describe_top(features) == (
        "amount is missing (50%), colour is not missing (30%), t1 high (20%)"
    )


def test_runs_saved_with_the_old_name_are_described_the_same_way():
    assert describe_top([("colour=(missing)", 0.4, 3.0)]) == "colour is missing (40%)"
    assert describe_top([("colour=red", 0.4, 3.0)]) == "colour=red high (40%)"
