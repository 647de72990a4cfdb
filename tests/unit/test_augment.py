"""The augmentation registry: each function does what it says, seeded and vectorised (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest

from ad_core import augment
from ad_core.data.errors import DataError

TABLE = [a.name for a in augment.AUGMENTATIONS.values() if a.kind == "table"]
IMAGE = [a.name for a in augment.AUGMENTATIONS.values() if a.kind == "image"]


@pytest.fixture(scope="module")
def correlated():
    """500 rows of 4 features: two strongly correlated pairs."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 500))
    X = np.column_stack([a, a + 0.1 * rng.normal(size=500), b, -b + 0.1 * rng.normal(size=500)])
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def images():
    """40 random 28 x 28 images in [0, 1], one row of 784 pixels each."""
    return np.random.default_rng(1).uniform(size=(40, 784)).astype(np.float32)


def test_registry_has_the_issue_s_augmentations_for_tables_and_images():
    assert {"noise", "mask", "permute", "local_scale", "out_of_range"} <= set(TABLE)
    assert {"rotate", "flip", "cutout", "blur", "pixel_noise"} <= set(IMAGE)
    listed = augment.list_augmentations()
    assert [d["name"] for d in listed] == list(augment.AUGMENTATION_NAMES)
    for entry in listed:
        low, high = entry["strength_range"]
        assert entry["kind"] in {"table", "image"} and entry["title"]
        assert len(entry["description"]) > 60 and "Mimics" in entry["description"]
        assert low <= entry["default_strength"] <= high
    assert {d["name"] for d in augment.list_augmentations("image")} == set(IMAGE)


@pytest.mark.parametrize("name", augment.AUGMENTATION_NAMES)
def test_output_keeps_shape_and_dtype_and_the_input_is_untouched(name, correlated, images):
    X = images if name in IMAGE else correlated
    before = X.copy()
    out = augment.augment(X, name, rng=0)
    assert out.shape == X.shape and out.dtype == X.dtype
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(X, before)
    assert not np.array_equal(out, X)  # the default strength changes something


@pytest.mark.parametrize("name", augment.AUGMENTATION_NAMES)
def test_same_seed_same_rows_and_another_seed_other_rows(name, correlated, images):
    X = images if name in IMAGE else correlated
    a = augment.augment(X, name, rng=np.random.default_rng(3))
    b = augment.augment(X, name, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    if name not in {"rotate", "blur", "local_scale", "flip"}:  # no random draw at the default
        c = augment.augment(X, name, rng=np.random.default_rng(4))
        assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "name", [a.name for a in augment.AUGMENTATIONS.values() if a.identity_at_zero]
)
def test_strength_zero_is_the_identity(name, correlated, images):
    X = images if name in IMAGE else correlated
    np.testing.assert_array_equal(augment.augment(X, name, 0.0, rng=0), X)


def test_permutation_keeps_each_column_s_values_but_breaks_their_correlation(correlated):
    out = augment.augment(correlated, "permute", 1.0, rng=0)
    for j in range(correlated.shape[1]):  # every column is a permutation of itself
        np.testing.assert_array_equal(np.sort(out[:, j]), np.sort(correlated[:, j]))
    before = np.corrcoef(correlated.T)
    after = np.corrcoef(out.T)
    assert abs(before[0, 1]) > 0.99 and abs(before[2, 3]) > 0.99
    assert abs(after[0, 1]) < 0.2 and abs(after[2, 3]) < 0.2


def test_permutation_strength_is_the_share_of_features_shuffled(correlated):
    out = augment.augment(correlated, "permute", 0.5, rng=0)
    changed = [not np.array_equal(out[:, j], correlated[:, j]) for j in range(4)]
    assert sum(changed) == 2


def test_noise_scales_with_each_feature_s_spread():
    X = np.random.default_rng(0).normal(size=(4000, 2)) * np.array([1.0, 100.0])
    diff = augment.augment(X, "noise", 0.5, rng=0) - X
    np.testing.assert_allclose(diff.std(axis=0), [0.5, 50.0], rtol=0.05)


def test_mask_replaces_about_its_share_by_the_feature_mean(correlated):
    out = augment.augment(correlated, "mask", 0.3, rng=0)
    changed = out != correlated
    assert 0.25 < changed.mean() < 0.35
    means = correlated.mean(axis=0)
    rows, cols = np.nonzero(changed)
    np.testing.assert_allclose(out[rows, cols], means[cols], rtol=1e-6)


def test_out_of_range_values_leave_the_training_range_by_at_most_the_strength(correlated):
    ctx = augment.fit_context(correlated, centres=False)
    out = augment.augment(correlated, "out_of_range", 0.5, rng=0, context=ctx)
    moved = out != correlated
    assert moved.any(axis=1).all()  # at least one value per row
    span = ctx.high - ctx.low
    vals, cols = out[moved], np.nonzero(moved)[1]
    outside = (vals >= ctx.high[cols] - 1e-6) | (vals <= ctx.low[cols] + 1e-6)
    assert outside.all()
    assert (vals <= ctx.high[cols] + 0.5 * span[cols] + 1e-5).all()
    assert (vals >= ctx.low[cols] - 0.5 * span[cols] - 1e-5).all()


def test_local_scaling_pushes_rows_away_from_their_cluster_centre():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(300, 2)) * 0.3 + c for c in ([0, 0], [10, 10])])
    ctx = augment.fit_context(X, random_state=0)
    out = augment.augment(X, "local_scale", 1.0, rng=0, context=ctx)
    near = augment._nearest_centre(X, ctx.centres)
    ratio = np.linalg.norm(out - near, axis=1) / np.linalg.norm(X - near, axis=1)
    np.testing.assert_allclose(ratio, 2.0, rtol=1e-6)  # strength 1 doubles the offset
    assert np.abs(out - X).max() < 5.0  # each row moves within its own cluster's scale


def test_four_quarter_turns_return_the_image_and_one_turn_moves_a_corner(images):
    out = images
    for _ in range(4):
        out = augment.augment(out, "rotate", 90, rng=0)
    np.testing.assert_array_equal(out, images)
    img = np.zeros((1, 16))
    img[0, 3] = 1.0  # top-right pixel of a 4 x 4 image
    turned = augment.augment(img, "rotate", 90, rng=0, image_shape="4x4").reshape(4, 4)
    assert turned[0, 0] == 1.0 and turned.sum() == 1.0  # counter-clockwise: to the top-left


def test_half_turn_equals_two_quarter_turns_and_other_angles_interpolate(images):
    half = augment.augment(images, "rotate", 180, rng=0)
    two = augment.augment(augment.augment(images, "rotate", 90, rng=0), "rotate", 90, rng=0)
    np.testing.assert_array_equal(half, two)
    tilted = augment.augment(images, "rotate", 30, rng=0)
    assert tilted.shape == images.shape and not np.array_equal(tilted, images)


def test_flip_mirrors_left_to_right_and_twice_is_the_identity(images):
    flipped = augment.augment(images, "flip", 1.0, rng=0)
    np.testing.assert_array_equal(
        flipped.reshape(-1, 28, 28), images.reshape(-1, 28, 28)[:, :, ::-1]
    )
    np.testing.assert_array_equal(augment.augment(flipped, "flip", 1.0, rng=0), images)


def test_cutout_blanks_one_patch_of_the_asked_area_per_image(images):
    out = augment.augment(images, "cutout", 0.25, rng=0).reshape(-1, 28, 28)
    floor = images.min()
    blanked = (out == floor) & (images.reshape(-1, 28, 28) != floor)
    per_image = blanked.reshape(len(images), -1).sum(axis=1)
    assert (per_image > 0.9 * 14 * 14).all() and (per_image <= 14 * 14).all()  # 14 x 14 patch
    for img in blanked:  # the blanked pixels form one rectangle
        rows, cols = np.nonzero(img)
        assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) <= 14 * 14


def test_blur_lowers_the_pixel_to_pixel_variation(images):
    out = augment.augment(images, "blur", 1.5, rng=0).reshape(-1, 28, 28)
    rough = np.abs(np.diff(images.reshape(-1, 28, 28), axis=2)).mean()
    assert np.abs(np.diff(out, axis=2)).mean() < 0.5 * rough


def test_image_augmentations_refuse_rows_that_are_not_the_image_shape(correlated, images):
    with pytest.raises(DataError, match=r"21 features, which is not a square number"):
        augment.augment(np.zeros((3, 21)), "rotate", rng=0)
    with pytest.raises(DataError, match=r"10 x 10 has 100 pixels, but the rows have 784"):
        augment.augment(images, "cutout", rng=0, image_shape="10x10")
    # a declared non-square shape works: 7 x 112 = 784
    out = augment.augment(images, "flip", rng=0, image_shape="7x112")
    np.testing.assert_array_equal(out.reshape(-1, 7, 112), images.reshape(-1, 7, 112)[:, :, ::-1])
    assert augment.resolve_image_shape((28, 28), 784) == (28, 28)
    assert augment.resolve_image_shape("28, 28", 784) == augment.resolve_image_shape("28×28", 784)
    assert augment.resolve_image_shape("", 64) == (8, 8)
    with pytest.raises(DataError, match="two whole numbers"):
        augment.resolve_image_shape("28 by 28", 784)


def test_names_with_strength_round_trip():
    for entry in augment.AUGMENTATIONS.values():
        low, high = entry.strength_range
        for strength in (low, entry.default_strength, (low + high) / 3, high):
            text = augment.format_augmentation(entry.name, strength)
            assert augment.parse_augmentation(text) == (entry.name, strength)
            assert augment.format_augmentation(*augment.parse_augmentation(text)) == text
    assert augment.parse_augmentation("noise") == ("noise", 0.5)
    assert augment.format_augmentation("cutout", 0.25) == "cutout-0.25"
    assert augment.parse_augmentation("local_scale-2") == ("local_scale", 2.0)


def test_unknown_names_and_strengths_out_of_range_are_explained():
    with pytest.raises(ValueError, match="Known augmentations: noise"):
        augment.parse_augmentation("jitter-0.1")
    with pytest.raises(
        ValueError, match=r"Feature masking: the strength must be a number from 0 to 1"
    ):
        augment.parse_augmentation("mask-3")
    with pytest.raises(ValueError, match="must be the strength"):
        augment.parse_augmentation("noise-abc")
    with pytest.raises(ValueError, match="already names its strength"):
        augment.augment(np.zeros((3, 2)), "noise-0.5", 0.2)


def test_rows_with_blank_pixels_read_as_images_and_keep_their_picture():
    import pandas as pd

    from ad_core.augment import IMAGE_PREPROCESSING, image_layout, schema_as_images
    from ad_core.data import Preprocessor, infer_schema

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(50, 8, 8))
    images[:, 0, :] = 0.0  # a blank top row in every image
    frame = pd.DataFrame(images.reshape(50, 64), columns=[f"p{i}" for i in range(64)])
    schema = infer_schema(frame)
    assert len(schema.feature_columns) == 56  # the blank pixels are set aside
    layout = image_layout(frame, schema)
    assert layout.shape == (8, 8) and layout.blank == tuple(f"p{i}" for i in range(8))
    assert list(layout.pixels) == list(frame.columns)
    as_images = schema_as_images(schema, layout)
    X = Preprocessor(**IMAGE_PREPROCESSING).fit_transform(frame, as_images)
    assert X.shape == (50, 64)
    # one scale for every pixel: rotating then scaling is scaling then rotating
    flat = images.reshape(50, 64)
    expected = (flat - flat.mean()) / flat.std()
    assert np.allclose(X, expected, atol=1e-5)
    # a table whose columns are no square is no image; nor one with a categorical column
    assert image_layout(frame.iloc[:, :60], infer_schema(frame.iloc[:, :60])) is None
    # nor 64 sensors, each on its own scale
    sensors = pd.DataFrame(rng.normal(size=(50, 64)) * np.logspace(0, 4, 64))
    sensors.columns = [f"s{i}" for i in range(64)]
    assert image_layout(sensors, infer_schema(sensors)) is None
    mixed = frame.assign(kind=["a", "b"] * 25)
    assert image_layout(mixed, infer_schema(mixed).with_role("kind", "categorical")) is None


def test_old_saved_preprocessors_drop_constant_columns_as_before():
    import pandas as pd

    from ad_core.data import Preprocessor, infer_schema

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]})
    schema = infer_schema(frame).with_role("b", "numeric")
    fitted = Preprocessor().fit(frame, schema)
    assert "b" in fitted.dropped_
    data = fitted.to_dict()
    data["params"].pop("keep_constant")  # as written before the setting existed
    again = Preprocessor.from_dict(data)
    assert again.keep_constant is False
    assert np.array_equal(again.transform(frame), fitted.transform(frame))
    kept = Preprocessor(keep_constant=True).fit(frame, schema)
    assert kept.feature_names_out_ == ["a", "b"]
