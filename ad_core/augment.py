"""Augmentation functions for the self-supervised detectors: one registry, tables and images.

Self-supervised anomaly detectors turn normal rows into *pseudo-anomalies* with an
augmentation and learn to tell the two apart. Yoo, Zhao & Akoglu ("Data Augmentation is a
Hyperparameter: Cherry-picked Self-Supervision for Unsupervised Anomaly Detection is Creating
the Illusion of Success", TMLR 2023; code jaeminyoo/SSL-AD) show that this works when the
augmentation mimics the mechanism that makes the real anomalies, and can do worse than no
self-supervision when it does not. So the augmentation is a hyperparameter, and every one
here says which kind of anomaly it imitates.

    from ad_core import augment
    ctx = augment.fit_context(X_train)                     # statistics of the normal rows
    X_aug = augment.augment(X_batch, "noise-0.5", rng=np.random.default_rng(0), context=ctx)
    augment.list_augmentations()                           # what the app shows
    augment.parse_augmentation("cutout-0.2")               # ("cutout", 0.2)

Every function takes a batch ``X`` (rows x features), a strength, a numpy ``Generator`` and an
:class:`AugmentContext` (per-feature statistics of the training rows, fitted once), and returns
a new array of the same shape and dtype; all are vectorised over the batch. Image
augmentations read each row as a ``height x width`` image stored row by row (MNIST's 784
pixels are 28 x 28); :func:`resolve_image_shape` refuses rows whose width does not match.

Strengths follow Yoo et al.'s parameterised names (``cutout-<scale>``, ``mask-<p>``):
``name-strength`` is a name with its strength, and :func:`format_augmentation` /
:func:`parse_augmentation` convert both ways without loss.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ad_core.data.errors import DataError

__all__ = [
    "AUGMENTATIONS",
    "AUGMENTATION_NAMES",
    "AugmentContext",
    "Augmentation",
    "augment",
    "check_strength",
    "fit_context",
    "format_augmentation",
    "get_augmentation",
    "list_augmentations",
    "parse_augmentation",
    "resolve_image_shape",
]

KINDS = ("table", "image")
#: k-means centres for ``local_scale``: at most this many, fitted on at most CENTRE_ROWS rows
MAX_CENTRES = 8
CENTRE_ROWS = 5000
#: ``out_of_range`` moves each value with this probability (at least one value per row)
OUT_OF_RANGE_SHARE = 0.25
#: an automatic image shape needs a square of at least this side: tables of 9 or 36 features
#: (ODDS shuttle, satellite) are never taken for 3 x 3 or 6 x 6 images
MIN_AUTO_SIDE = 8


@dataclass(frozen=True)
class AugmentContext:
    """Statistics of the training rows that the augmentations scale themselves by.

    Per feature: ``mean``, ``std`` (1 where a feature is constant, so noise stays finite),
    ``low`` and ``high`` (observed range). ``centres``: k-means centres (``local_scale``), or
    None when not fitted. ``image_shape``: (height, width) for image rows, or None.
    ``pixel_floor`` / ``pixel_std``: the lowest value and the spread over all pixels (image
    augmentations fill and add noise on the image's own scale).
    """

    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    centres: np.ndarray | None
    image_shape: tuple[int, int] | None
    pixel_floor: float
    pixel_std: float

    @property
    def span(self) -> np.ndarray:
        """Return each feature's observed range (1 where the feature is constant)."""
        span = self.high - self.low
        return np.where(span > 0, span, 1.0)


AugmentFn = Callable[[np.ndarray, float, np.random.Generator, AugmentContext], np.ndarray]


@dataclass(frozen=True)
class Augmentation:
    """One registered augmentation: what it does, what it mimics, and its strength."""

    name: str
    kind: str  # "table" | "image"
    title: str
    description: str  # what it does and which anomaly mechanism it imitates
    strength_help: str  # what the strength means, with its unit
    default_strength: float
    strength_range: tuple[float, float]
    fn: AugmentFn
    #: strength 0 leaves every row unchanged
    identity_at_zero: bool = True
    #: needs k-means centres of the training rows in the context
    needs_centres: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as plain JSON-able values (what the app lists)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title,
            "description": self.description,
            "strength_help": self.strength_help,
            "default_strength": self.default_strength,
            "strength_range": list(self.strength_range),
            "example": format_augmentation(self.name, self.default_strength),
        }


# -- context -----------------------------------------------------------------------------------
def fit_context(
    X: Any,
    *,
    image_shape: Any = None,
    centres: bool = True,
    random_state: int | None = 0,
) -> AugmentContext:
    """Return the :class:`AugmentContext` of the training rows ``X``.

    ``image_shape``: as :func:`resolve_image_shape` takes it; None (or empty) leaves the rows
    without an image shape unless their width is a perfect square. ``centres``: fit the
    k-means centres ``local_scale`` needs (on at most CENTRE_ROWS rows, seeded).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError("Augmentations need a table of rows x features with at least one row.")
    std = X.std(axis=0)
    shape = None
    try:
        shape = resolve_image_shape(image_shape, X.shape[1])
    except DataError:
        if image_shape not in (None, "", (), []):
            raise  # an explicit shape that does not fit is an error; an automatic one is not
    return AugmentContext(
        mean=X.mean(axis=0),
        std=np.where(std > 0, std, 1.0),
        low=X.min(axis=0),
        high=X.max(axis=0),
        centres=_kmeans_centres(X, random_state) if centres else None,
        image_shape=shape,
        pixel_floor=float(X.min()),
        pixel_std=float(X.std()) or 1.0,
    )


def _kmeans_centres(X: np.ndarray, random_state: int | None) -> np.ndarray:
    """Return k-means centres of (a seeded sample of) ``X``; k grows with the rows, up to 8."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(random_state)
    rows = X if X.shape[0] <= CENTRE_ROWS else X[rng.choice(X.shape[0], CENTRE_ROWS, False)]
    k = int(min(MAX_CENTRES, max(1, rows.shape[0] // 50), np.unique(rows, axis=0).shape[0]))
    if k == 1:
        return rows.mean(axis=0, keepdims=True)
    seed = int(rng.integers(2**31 - 1))
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(rows)
    return np.asarray(km.cluster_centers_, dtype=np.float64)


def resolve_image_shape(image_shape: Any, n_features: int) -> tuple[int, int]:
    """Return (height, width) of image rows with ``n_features`` pixels, or raise DataError.

    ``image_shape``: ``"28x28"`` (or ``"28,28"``), ``(28, 28)`` or ``[28, 28]`` (height,
    width); None, ``""``
    or ``()`` means automatic: square images, when ``n_features`` is a perfect square of
    at least 8 x 8 (784 -> 28 x 28; 36 features stay a table). The message says what to do
    when the rows are not such images.
    """
    if image_shape is None or (isinstance(image_shape, str | tuple | list) and not image_shape):
        side = math.isqrt(int(n_features))
        if side * side != n_features or side < MIN_AUTO_SIDE:
            what = (
                "which is not a square number of pixels"
                if side * side != n_features
                else f"too few to be taken for an image without being told ({side} x {side})"
            )
            raise DataError(
                f"Image augmentations read each row as a square image, but the rows have "
                f"{n_features} features, {what}; 784 would be 28 x 28. Set the image shape "
                "(height, width) if the rows are images, or pick a table augmentation."
            )
        return side, side
    shape = _parse_shape(image_shape)
    height, width = shape
    if height * width != n_features:
        raise DataError(
            f"The image shape {height} x {width} has {height * width} pixels, but the rows "
            f"have {n_features} features. Set the image shape to the rows' height and width "
            "(e.g. 28 x 28 for 784 pixels), or pick a table augmentation."
        )
    return shape


def _parse_shape(value: Any) -> tuple[int, int]:
    """Return (height, width) from "28x28" or a pair of whole numbers; DataError otherwise."""
    parts: Sequence[Any]
    if isinstance(value, str):  # "28x28", "28 x 28", "28×28", "28,28", "28 28"
        parts = [p for p in re.split(r"[x×,;\s]+", value.strip().lower()) if p]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = []
    try:
        numbers = [int(p) for p in parts]
        whole = all(float(p) == int(p) for p in parts)
    except (TypeError, ValueError):
        numbers, whole = [], False
    if len(numbers) != 2 or not whole or min(numbers) < 1:
        raise DataError(
            f"The image shape must be two whole numbers, height and width (e.g. 28x28); got "
            f"{value!r}."
        )
    return numbers[0], numbers[1]


# -- table augmentations -------------------------------------------------------------------
def _noise(X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext) -> np.ndarray:
    eps = rng.standard_normal(X.shape, dtype=X.dtype)
    return X + (s * ctx.std).astype(X.dtype) * eps


def _mask(X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext) -> np.ndarray:
    hit = rng.random(X.shape) < s
    return np.where(hit, ctx.mean.astype(X.dtype), X)


def _permute(X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext) -> np.ndarray:
    n, d = X.shape
    k = 0 if s <= 0 else max(1, int(round(s * d)))
    out = X.copy()
    if k == 0 or n < 2:
        return out
    cols = rng.choice(d, size=k, replace=False)
    # One independent permutation of the rows per chosen column (argsort of uniform keys).
    order = np.argsort(rng.random((n, k)), axis=0)
    out[:, cols] = np.take_along_axis(X[:, cols], order, axis=0)
    return out


def _nearest_centre(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Return the centre nearest to each row (squared distances by the expansion)."""
    d2 = (
        np.sum(X.astype(np.float64) ** 2, axis=1, keepdims=True)
        - 2.0 * X.astype(np.float64) @ centres.T
        + np.sum(centres**2, axis=1)
    )
    return centres[np.argmin(d2, axis=1)]


def _local_scale(
    X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext
) -> np.ndarray:
    if ctx.centres is None:
        raise ValueError("local_scale needs the context's centres: fit_context(X, centres=True)")
    c = _nearest_centre(X, ctx.centres).astype(X.dtype)
    return X + X.dtype.type(s) * (X - c)  # = c + (1 + s)(x - c), exact at s = 0


def _out_of_range(
    X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext
) -> np.ndarray:
    n, d = X.shape
    hit = rng.random((n, d)) < OUT_OF_RANGE_SHARE
    none = ~hit.any(axis=1)
    hit[np.flatnonzero(none), rng.integers(0, d, size=int(none.sum()))] = True
    beyond = s * ctx.span * rng.random((n, d))
    above = rng.random((n, d)) < 0.5
    value = np.where(above, ctx.high + beyond, ctx.low - beyond)
    return np.where(hit, value, X).astype(X.dtype, copy=False)


# -- image augmentations -------------------------------------------------------------------
def _images(X: np.ndarray, ctx: AugmentContext) -> np.ndarray:
    if ctx.image_shape is None:
        raise DataError(
            "This augmentation treats rows as images, but no image shape is known for them; "
            "set the image shape (height, width) or pick a table augmentation."
        )
    return X.reshape(X.shape[0], *ctx.image_shape)


def _rotate(X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext) -> np.ndarray:
    imgs = _images(X, ctx)
    angle = float(s) % 360.0
    height, width = ctx.image_shape
    if angle == 0.0:
        return X.copy()
    if angle % 90.0 == 0.0 and (height == width or angle == 180.0):
        # Exact for quarter turns: pixels move, none is interpolated.
        out = np.rot90(imgs, k=int(angle // 90), axes=(1, 2))
    else:
        from scipy import ndimage

        out = ndimage.rotate(
            imgs, angle, axes=(1, 2), reshape=False, order=1, mode="constant",
            cval=ctx.pixel_floor,
        )  # fmt: skip
    return np.ascontiguousarray(out).reshape(X.shape).astype(X.dtype, copy=False)


def _flip(X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext) -> np.ndarray:
    imgs = _images(X, ctx)
    chosen = rng.random(X.shape[0]) < s
    out = imgs.copy()
    out[chosen] = imgs[chosen, :, ::-1]
    return out.reshape(X.shape)


def _cutout(X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext) -> np.ndarray:
    imgs = _images(X, ctx)
    n = X.shape[0]
    height, width = ctx.image_shape
    # A patch of the image's aspect ratio covering a share s of its area.
    ph, pw = int(round(math.sqrt(s) * height)), int(round(math.sqrt(s) * width))
    out = imgs.copy()
    if ph == 0 or pw == 0:
        return out.reshape(X.shape)
    top = rng.integers(0, height - ph + 1, size=n)[:, None, None]
    left = rng.integers(0, width - pw + 1, size=n)[:, None, None]
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    patch = (rows >= top) & (rows < top + ph) & (cols >= left) & (cols < left + pw)
    out[patch] = ctx.pixel_floor
    return out.reshape(X.shape)


def _blur(X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext) -> np.ndarray:
    imgs = _images(X, ctx)
    if s <= 0:
        return X.copy()
    from scipy import ndimage

    out = ndimage.gaussian_filter(imgs, sigma=(0.0, s, s), mode="nearest")
    return out.reshape(X.shape).astype(X.dtype, copy=False)


def _pixel_noise(
    X: np.ndarray, s: float, rng: np.random.Generator, ctx: AugmentContext
) -> np.ndarray:
    _images(X, ctx)  # refuses rows without an image shape
    eps = rng.standard_normal(X.shape, dtype=X.dtype)
    return X + X.dtype.type(s * ctx.pixel_std) * eps


# -- the registry ------------------------------------------------------------------------------
_ENTRIES = (
    Augmentation(
        name="noise",
        kind="table",
        title="Gaussian noise",
        description=(
            "Adds Gaussian noise to every feature, scaled to each feature's spread. Mimics rows "
            "close to normal ones but off their pattern: measurement noise, a drifting sensor, "
            "ADBench's 'local' anomalies."
        ),
        strength_help="Noise standard deviation, in units of each feature's standard deviation.",
        default_strength=0.5,
        strength_range=(0.0, 5.0),
        fn=_noise,
    ),
    Augmentation(
        name="mask",
        kind="table",
        title="Feature masking",
        description=(
            "Replaces values at random by the feature's average. Mimics readings that are "
            "missing, stuck or filled in with a default value."
        ),
        strength_help="Probability that each value is masked (0 to 1).",
        default_strength=0.2,
        strength_range=(0.0, 1.0),
        fn=_mask,
    ),
    Augmentation(
        name="permute",
        kind="table",
        title="Feature permutation across rows",
        description=(
            "Shuffles chosen features independently across the rows of a batch: each value "
            "is one that occurs, but the combination is random, so the dependencies between "
            "features break. Mimics 'dependency' anomalies: every reading plausible on its "
            "own, their combination not (ADBench's dependency type)."
        ),
        strength_help="Share of the features shuffled (0 to 1; at least one when above 0).",
        default_strength=1.0,
        strength_range=(0.0, 1.0),
        fn=_permute,
    ),
    Augmentation(
        name="local_scale",
        kind="table",
        title="Local scaling",
        description=(
            "Pushes each row away from the centre of its own cluster of normal rows (k-means "
            "on the training rows). Mimics 'local' anomalies: rows near a normal group but "
            "further out than its members (ADBench's local type widens the clusters' spread)."
        ),
        strength_help="Extra distance from the cluster centre: 1 doubles the row's offset.",
        default_strength=1.0,
        strength_range=(0.0, 10.0),
        fn=_local_scale,
        needs_centres=True,
    ),
    Augmentation(
        name="out_of_range",
        kind="table",
        title="Out-of-range values",
        description=(
            "Moves about a quarter of each row's values (at least one) beyond the range seen "
            "in training, above or below. Mimics impossible or extreme readings and 'global' "
            "anomalies that leave the normal range."
        ),
        strength_help="How far beyond the observed range at most, as a share of that range.",
        default_strength=0.25,
        strength_range=(0.0, 5.0),
        fn=_out_of_range,
        identity_at_zero=False,  # strength 0 still sets values to the edge of the range
    ),
    Augmentation(
        name="rotate",
        kind="image",
        title="Rotation",
        description=(
            "Rotates each image counter-clockwise by a fixed angle (quarter turns are exact). "
            "Mimics objects seen at an unusual orientation: an upside-down digit, a part "
            "mounted turned."
        ),
        strength_help="Angle in degrees (counter-clockwise).",
        default_strength=90.0,
        strength_range=(0.0, 360.0),
        fn=_rotate,
    ),
    Augmentation(
        name="flip",
        kind="image",
        title="Mirror flip",
        description=(
            "Mirrors images left to right. Mimics mirror-image anomalies: a reversed digit or "
            "label, a part mounted the wrong way round."
        ),
        strength_help="Probability that each image is mirrored (0 to 1).",
        default_strength=1.0,
        strength_range=(0.0, 1.0),
        fn=_flip,
    ),
    Augmentation(
        name="cutout",
        kind="image",
        title="Cutout",
        description=(
            "Blanks a rectangle at a random place in each image (filled with the darkest "
            "pixel value). Mimics missing parts, occlusions and local defects."
        ),
        strength_help="Share of the image area blanked (0 to 1).",
        default_strength=0.1,
        strength_range=(0.0, 1.0),
        fn=_cutout,
    ),
    Augmentation(
        name="blur",
        kind="image",
        title="Blur",
        description=(
            "Blurs each image with a Gaussian filter. Mimics out-of-focus or smeared images, "
            "and anomalies that lack the fine detail of normal ones."
        ),
        strength_help="Standard deviation of the blur, in pixels.",
        default_strength=1.0,
        strength_range=(0.0, 10.0),
        fn=_blur,
    ),
    Augmentation(
        name="pixel_noise",
        kind="image",
        title="Pixel noise",
        description=(
            "Adds Gaussian noise to every pixel. Mimics sensor noise and grainy or corrupted "
            "images."
        ),
        strength_help="Noise standard deviation, in units of the pixels' overall spread.",
        default_strength=0.5,
        strength_range=(0.0, 5.0),
        fn=_pixel_noise,
    ),
)

#: name -> augmentation, tables first; the order is the one the app lists
AUGMENTATIONS: dict[str, Augmentation] = {a.name: a for a in _ENTRIES}
AUGMENTATION_NAMES: tuple[str, ...] = tuple(AUGMENTATIONS)


def get_augmentation(name: str) -> Augmentation:
    """Return the registered augmentation ``name``, or raise ValueError naming the known ones."""
    try:
        return AUGMENTATIONS[name]
    except (KeyError, TypeError):
        known = ", ".join(AUGMENTATION_NAMES)
        raise ValueError(f"Unknown augmentation {name!r}. Known augmentations: {known}.") from None


def list_augmentations(kind: str | None = None) -> list[dict[str, Any]]:
    """Return every augmentation (of ``kind`` "table" or "image" if given) as a plain dict.

    Keys: name, kind, title, description, strength_help, default_strength, strength_range
    ([low, high]) and example (the ``name-strength`` form at the default strength).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    return [a.to_dict() for a in _ENTRIES if kind is None or a.kind == kind]


def _plain(x: float) -> str:
    """Return ``x`` in its shortest exact decimal form without exponent: 0.5, 90, 0.125."""
    return np.format_float_positional(float(x), trim="-")


def check_strength(name: str, strength: Any) -> float:
    """Return ``strength`` (None = the default) as a float; ValueError unless in range."""
    aug = get_augmentation(name)
    if strength is None:
        return float(aug.default_strength)
    low, high = aug.strength_range
    ok = isinstance(strength, int | float | np.integer | np.floating) and not isinstance(
        strength, bool | np.bool_
    )
    if not ok or not math.isfinite(float(strength)) or not low <= float(strength) <= high:
        raise ValueError(
            f"{aug.title}: the strength must be a number from {_plain(low)} to {_plain(high)}; "
            f"got {strength!r}. Its strength is: {aug.strength_help[0].lower()}"
            f"{aug.strength_help[1:]}"
        )
    return float(strength)


def format_augmentation(name: str, strength: float | None = None) -> str:
    """Return ``"name-strength"`` (e.g. ``"noise-0.5"``); None means the default strength."""
    return f"{name}-{_plain(check_strength(name, strength))}"


def parse_augmentation(text: str) -> tuple[str, float]:
    """Return (name, strength) of ``"name-strength"`` or a bare name (its default strength).

    The inverse of :func:`format_augmentation`: ``parse_augmentation(format_augmentation(n,
    s)) == (n, s)``. Raises ValueError for an unknown name or a strength out of its range.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"An augmentation is a name such as 'noise' or 'noise-0.5'; got {text!r}.")
    text = text.strip()
    if text in AUGMENTATIONS:
        return text, float(AUGMENTATIONS[text].default_strength)
    name, _, value = text.rpartition("-")
    get_augmentation(name if name else text)
    try:
        strength = float(value)
    except ValueError:
        raise ValueError(
            f"{text!r}: the part after the last '-' must be the strength, a number "
            f"(e.g. {format_augmentation(name)!r})."
        ) from None
    return name, check_strength(name, strength)


def _as_generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def augment(
    X: Any,
    augmentation: str,
    strength: float | None = None,
    *,
    rng: Any = None,
    context: AugmentContext | None = None,
    image_shape: Any = None,
) -> np.ndarray:
    """Return an augmented copy of the rows ``X`` (same shape and float dtype).

    ``augmentation``: a registered name, or ``"name-strength"`` (then ``strength`` must be
    None). ``rng``: a numpy Generator or a seed (None = fresh entropy). ``context``: the
    statistics of the training rows (:func:`fit_context`); fitted on ``X`` itself when None.
    ``image_shape`` (only when ``context`` is None): see :func:`resolve_image_shape`.
    """
    name, parsed = parse_augmentation(augmentation)
    if strength is not None and "-" in augmentation.strip():
        raise ValueError(
            f"{augmentation!r} already names its strength; pass strength=None or a bare name."
        )
    value = check_strength(name, strength) if strength is not None else parsed
    aug = AUGMENTATIONS[name]
    arr = np.asarray(X)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise DataError(f"Augmentations take a table of rows x features, got shape {arr.shape}.")
    if context is None:
        context = fit_context(arr, image_shape=image_shape, centres=aug.needs_centres)
    if aug.kind == "image":
        if context.image_shape is None:
            resolve_image_shape(None, arr.shape[1])  # raises the plain message
        height, width = context.image_shape
        if height * width != arr.shape[1]:
            resolve_image_shape(context.image_shape, arr.shape[1])  # raises
    elif arr.shape[1] != context.mean.shape[0]:
        raise DataError(
            f"The augmentation was fitted on {context.mean.shape[0]} features but these rows "
            f"have {arr.shape[1]}."
        )
    return aug.fn(np.ascontiguousarray(arr), value, _as_generator(rng), context)


# -- rows that are images ------------------------------------------------------------------
#: the preprocessing of rows read as images: every pixel kept, one scale for all of them
IMAGE_PREPROCESSING = {"scaling": "global", "keep_constant": True, "missing_indicators": False}


@dataclass(frozen=True)
class ImageLayout:
    """How a table's rows read as square images: the pixel columns, in table order."""

    shape: tuple[int, int]
    #: numeric columns set aside because they hold one value in every row (blank pixels)
    blank: tuple[str, ...]
    pixels: tuple[str, ...]

    def describe(self) -> str:
        """Return the layout in words, for the Data page."""
        h, w = self.shape
        blank = f", {len(self.blank):,} of them the same in every row" if self.blank else ""
        return f"{h} x {w} images ({len(self.pixels):,} numeric columns{blank})"


def image_layout(frame: Any, schema: Any) -> ImageLayout | None:
    """Return how the rows read as square images, or None when they do not.

    The pixels are the numeric feature columns plus the numeric columns the schema set aside
    as constant (a blank border); together, and with no categorical feature, they must be a
    square number of at least ``MIN_AUTO_SIDE`` x ``MIN_AUTO_SIDE``, and share one value range
    (half the non-blank columns span at least a quarter of the table's whole range: pixels do,
    sensors on their own scales do not). Columns keep the table's order, which is the pixels'
    order.
    """
    import pandas as pd

    if schema.categorical_columns:
        return None
    numeric = set(schema.numeric_columns)
    maybe_blank = [
        c for c in schema.columns_with_role("ignore") if pd.api.types.is_numeric_dtype(frame[c])
    ]
    # Whether any count of pixels could be a square, before a column's values are read.
    counts = range(len(numeric), len(numeric) + len(maybe_blank) + 1)
    if not any(k >= MIN_AUTO_SIDE**2 and math.isqrt(k) ** 2 == k for k in counts):
        return None
    blank = [
        c for c in maybe_blank if frame[c].notna().any() and frame[c].nunique(dropna=True) <= 1
    ]
    pixels = [c for c in schema.columns if c in numeric or c in blank]
    side = math.isqrt(len(pixels))
    if side < MIN_AUTO_SIDE or side * side != len(pixels):
        return None
    # Pixels share one value range (0-255, 0-1); 64 or 100 sensors on their own scales do not:
    # half the columns must span a quarter of the whole table's range. (Per-column minima and
    # maxima, missing values skipped, without a copy of the table.)
    shown = frame[[c for c in pixels if c not in blank]]
    lows, highs = shown.min(), shown.max()
    whole = float(highs.max() - lows.min())
    if not whole > 0 or float((highs - lows).median()) < 0.25 * whole:
        return None
    return ImageLayout((side, side), tuple(c for c in pixels if c in blank), tuple(pixels))


def schema_as_images(schema: Any, layout: ImageLayout) -> Any:
    """Return the schema with the layout's blank pixel columns made numeric features."""
    for column in layout.blank:
        schema = schema.with_role(column, "numeric")
    return schema
