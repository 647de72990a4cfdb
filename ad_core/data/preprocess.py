"""Turning a table into the float matrix detectors take: impute, one-hot, scale; saved as JSON."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ad_core.data.errors import DataError
from ad_core.data.schema import Schema

SCALINGS = ("standard", "minmax", "robust", "standard_minmax", "none", "global")
IMPUTES = ("median", "mean", "zero")
#: what becomes of an empty cell in a categorical column
CATEGORICAL_MISSING = ("own_category", "most_frequent")
FORMAT = "ad_core.data.Preprocessor"
# 2: categorical_missing, category_fills, missing_categories, notes (version 1 files load
# as own_category, which is what version 1 did).
FORMAT_VERSION = 2
OTHER = "(other)"
MISSING = "(missing)"
# Columns whose largest magnitude is beyond these bounds are first divided by a power of two
# near it: squaring such numbers for the variance would overflow to infinity (or underflow
# to zero), which used to scale a column of values near 1e300 to all zeros.
_HUGE = 1e100
_TINY = 1e-100
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Rows transformed at a time: bounds the float64 working memory on million-row tables.
_CHUNK_ROWS = 65_536


class Preprocessor:
    """Learns, from the fit table, how to turn feature columns into a float32 matrix.

    - numeric columns: infinities count as missing; missing values are imputed with the
      column's median (``impute="median"``), mean or zero. With ``missing_indicators=True``
      a 0/1 column "<name> is missing" is added for each numeric column that had missing
      values at fit (one extra column each, no other cost).
    - categorical columns: one-hot over the ``max_categories - 1`` most frequent values;
      every other value, including values first seen at transform, goes to
      "<name>=(other)". Empty cells, with ``categorical_missing``:

      - ``"own_category"`` (the default): a category of their own, the output column
        "<name> is missing" (kept whenever the fit table has empty cells in the column, in
        addition to the ``max_categories - 1`` values). The default because an empty cell
        is a fact about the row, and in anomaly detection a rare empty cell is often
        exactly what deserves a look (a form not filled in, a sensor that did not report);
        filling it in hides that row among the normal ones for good, while the opposite
        mistake is visible: the explanation names "<name> is missing" and ``notes_`` says
        how many cells are empty. It is also what saved preprocessors without the setting
        did, so they load and transform unchanged.
      - ``"most_frequent"``: filled with the column's most frequent category at fit (for
        cells that are empty by accident, when missingness says nothing about the row).
    - constant and all-missing feature columns are dropped; ``dropped_`` says why.
      ``keep_constant=True`` keeps constant numeric columns (an image's border pixels, blank
      in every row: dropping them would break the pixel grid).
    - scaling of every output column: "standard" (zero mean, unit variance), "minmax"
      (to [0, 1] on the fit data), "robust" (median and interquartile range),
      "standard_minmax" (standard, then min-max on the standardised fit data: the Deep SAD
      ODDS protocol), "none", or "global" (one mean and one standard deviation over every
      cell of the fit matrix, the same for all columns: the pixels of an image keep their
      picture, so rotations, flips and cut-outs of it stay images; per-column scaling would
      give each pixel its own scale). A column with no spread is centred, not divided. A column
      of extremely large or small numbers (beyond 1e100 or 1e-100) is first divided by a
      power of two near its largest magnitude, so that the scaling cannot overflow; with
      "none" numbers beyond the float32 range (about 3.4e38) are refused.

    After fit, ``notes_`` lists sentences for the analyst about what was done to the data
    that changes what the detector sees (empty categories, infinities, extreme numbers);
    ``missing_categories_`` maps each kept categorical column with empty cells to their
    number. ``save``/``load`` write and read JSON (no pickle) and reproduce ``transform``
    exactly.
    """

    def __init__(
        self,
        scaling: str = "standard",
        impute: str = "median",
        max_categories: int = 20,
        missing_indicators: bool = False,
        categorical_missing: str = "own_category",
        keep_constant: bool = False,
    ) -> None:
        self.scaling = scaling
        self.impute = impute
        self.max_categories = max_categories
        self.missing_indicators = missing_indicators
        self.categorical_missing = categorical_missing
        self.keep_constant = keep_constant

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {
            "scaling": self.scaling,
            "impute": self.impute,
            "max_categories": self.max_categories,
            "missing_indicators": self.missing_indicators,
            "categorical_missing": self.categorical_missing,
            "keep_constant": self.keep_constant,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"Preprocessor({args})"

    # --- fit -------------------------------------------------------------------------------

    def fit(self, df: pd.DataFrame, schema: Schema) -> Preprocessor:
        """Return self, fitted on the schema's feature columns of the table."""
        self._fit_raw(df, schema)
        return self

    def fit_transform(self, df: pd.DataFrame, schema: Schema) -> np.ndarray:
        """Return the transformed fit table (float32, C-contiguous) after fitting on it."""
        raw = self._fit_raw(df, schema)
        return self._scale(raw)

    def _fit_raw(self, df: pd.DataFrame, schema: Schema) -> np.ndarray:
        """Fit every step and return the fit table's unscaled float64 matrix."""
        self._check_params()
        features = schema.feature_columns
        if not features:
            raise DataError(
                "No column is marked as a feature. Set the role of at least one column to "
                "numeric or categorical."
            )
        _require_columns(df, features, "is marked as a feature")
        if len(df) < 2:
            raise DataError(
                f"At least 2 rows are needed to learn what is normal; the table has {len(df)}. "
                "Load a table with more rows."
            )
        dropped: dict[str, str] = {}
        numeric = [c for c in features if schema.roles[c] == "numeric"]
        categorical = [c for c in features if schema.roles[c] == "categorical"]
        self.notes_: list[str] = []
        self._fit_numeric(df, numeric, dropped)
        self._fit_categorical(df, categorical, dropped)
        self.dropped_ = dropped
        if not self.numeric_columns_ and not self.categories_:
            reasons = "; ".join(f"'{c}': {r}" for c, r in dropped.items())
            raise DataError(
                f"No usable feature: every feature column was dropped ({reasons}). Choose "
                "other feature columns or fix the data."
            )
        self.feature_names_out_ = self._names_out()
        raw = self._raw(df)
        self._check_magnitudes(raw)
        self.scaling_steps_ = _fit_scaling(raw, self.scaling)
        self._note_missing_categories(len(df))
        return raw

    def _check_params(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling={self.scaling!r}; choose from {', '.join(SCALINGS)}")
        if self.impute not in IMPUTES:
            raise ValueError(f"impute={self.impute!r}; choose from {', '.join(IMPUTES)}")
        if not isinstance(self.max_categories, int) or self.max_categories < 2:
            raise ValueError(f"max_categories={self.max_categories!r}; use an integer >= 2")
        if self.categorical_missing not in CATEGORICAL_MISSING:
            raise ValueError(
                f"categorical_missing={self.categorical_missing!r}; choose from "
                f"{', '.join(CATEGORICAL_MISSING)}"
            )

    def _fit_numeric(self, df: pd.DataFrame, columns: list[str], dropped: dict) -> None:
        infinite: list[int] = []
        values = _numeric_block(df, columns, infinite)
        present = ~np.isnan(values)
        counts = present.sum(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns, dropped below
            lows = np.nanmin(values, axis=0) if columns else np.zeros(0)
            highs = np.nanmax(values, axis=0) if columns else np.zeros(0)
        keep = (counts > 0) & ((lows < highs) | bool(self.keep_constant))
        for j in np.flatnonzero(~keep):
            column = columns[j]
            if counts[j] == 0 and df[column].notna().any():
                dropped[column] = "has no numbers (its values are text); make it categorical"
            elif counts[j] == 0:
                dropped[column] = "every value is missing"
            else:
                where = "wherever it is not missing" if counts[j] < len(df) else "in every row"
                dropped[column] = f"has the same value ({lows[j]:g}) {where}"
        kept = values[:, keep]
        if self.impute == "median":
            fill = _by_magnitude(np.nanmedian, kept) if kept.size else np.zeros(kept.shape[1])
        elif self.impute == "mean":
            fill = _by_magnitude(np.nanmean, kept) if kept.size else np.zeros(kept.shape[1])
        else:
            fill = np.zeros(kept.shape[1])
        self.numeric_columns_ = [c for c, k in zip(columns, keep, strict=True) if k]
        self.fill_values_ = np.asarray(fill, dtype=np.float64)
        has_missing = counts[keep] < len(df)
        self.indicator_columns_ = (
            [c for c, m in zip(self.numeric_columns_, has_missing, strict=True) if m]
            if self.missing_indicators
            else []
        )
        kept_infinite = [
            f"'{c}' ({n:,})" for c, n, k in zip(columns, infinite, keep, strict=True) if k and n
        ]
        if kept_infinite:
            fill_text = {"median": "its median", "mean": "its mean", "zero": "0"}[self.impute]
            self.notes_.append(
                f"Infinite values (inf, or numbers too large to store such as 1e309) count as "
                f"missing: {_listed(kept_infinite)}. They are filled like other missing "
                f"numbers, with {fill_text}. Fix them in the file if they stand for real values."
            )

    def _fit_categorical(self, df: pd.DataFrame, columns: list[str], dropped: dict) -> None:
        self.categories_: dict[str, list[str]] = {}
        self.category_fills_: dict[str, str] = {}
        self.missing_categories_: dict[str, int] = {}
        fill_in = self.categorical_missing == "most_frequent"
        for column in columns:
            counts = _category_counts(df[column])
            n_missing = counts.pop(MISSING, 0)
            if not counts:
                dropped[column] = "every value is missing"
                continue
            # Most frequent first; ties in name order so a refit gives the same columns.
            ranked = sorted(counts, key=lambda value: (-counts[value], value))
            if len(counts) == 1 and (fill_in or not n_missing):
                where = "wherever it is not missing" if n_missing else "in every row"
                dropped[column] = f"has the same value ('{ranked[0]}') {where}"
                continue
            categories = ranked[: self.max_categories - 1]
            if fill_in:
                self.category_fills_[column] = ranked[0]
            elif n_missing:
                # Always its own column, so an explanation can say "<name> is missing".
                categories.append(MISSING)
            self.categories_[column] = categories
            if n_missing:
                self.missing_categories_[column] = int(n_missing)

    def _note_missing_categories(self, n_rows: int) -> None:
        """Add a note saying which categorical columns have empty cells and what was done."""
        if not self.missing_categories_:
            return
        parts = []
        for column, n in self.missing_categories_.items():
            part = f"'{column}' ({n:,} of {n_rows:,} cells empty"
            if column in self.category_fills_:
                part += f", filled with '{self.category_fills_[column]}'"
            parts.append(part + ")")
        listed = _listed(parts, limit=10)
        if self.categorical_missing == "most_frequent":
            self.notes_.append(
                f"Empty cells in categorical columns were filled with the column's most "
                f"frequent category: {listed}. Rows with an empty cell therefore look ordinary "
                "in that column. If an empty cell can itself be a sign of a problem, treat "
                "empty cells as a category of their own in the preprocessing settings."
            )
            return
        example = next(iter(self.missing_categories_))
        self.notes_.append(
            f"Empty cells in categorical columns: {listed}. They are treated as a category "
            f"of their own ('{example} is missing' in the explanations), so a row with a "
            "rare empty cell looks unusual and the empty cell can be the main reason it is "
            "flagged. If the cells are empty only by accident, fill them with the column's "
            "most frequent category instead, in the preprocessing settings."
        )

    def _check_magnitudes(self, raw: np.ndarray) -> None:
        """Refuse numbers "none" cannot pass on; note the columns scaled in two steps."""
        if not self.numeric_columns_:
            return
        n = len(self.numeric_columns_)
        magnitude = np.abs(raw[:, :n]).max(axis=0)
        if self.scaling == "none":
            too_big = np.flatnonzero(magnitude > _FLOAT32_MAX)
            if too_big.size:
                listed = _listed(
                    f"'{self.numeric_columns_[j]}' (up to {magnitude[j]:.3g})" for j in too_big
                )
                noun = "Column" if too_big.size == 1 else "Columns"
                verb = "holds" if too_big.size == 1 else "hold"
                raise DataError(
                    f"{noun} {listed} {verb} numbers too large to be used without scaling: "
                    f"the detectors compute with numbers up to about {_FLOAT32_MAX:.1e}. "
                    "Choose a scaling other than 'none' in the preprocessing settings, or "
                    "divide the column by a large constant in the file."
                )
            return
        huge = np.flatnonzero(magnitude > _HUGE)
        tiny = np.flatnonzero((magnitude > 0) & (magnitude < _TINY))
        for indices, size in ((huge, "large"), (tiny, "small")):
            if not indices.size:
                continue
            listed = _listed(
                f"'{self.numeric_columns_[j]}' (up to {magnitude[j]:.3g})" for j in indices
            )
            noun = "Column" if indices.size == 1 else "Columns"
            verb = "holds" if indices.size == 1 else "hold"
            self.notes_.append(
                f"{noun} {listed} {verb} extremely {size} numbers. They were scaled in two "
                "steps so that no value overflows, and the column is used as a feature as "
                "usual. Numbers this far from everyday sizes are often an export error or a "
                "code standing for a missing value; check the column in the file."
            )

    def _names_out(self) -> list[str]:
        names = list(self.numeric_columns_)
        names += [f"{c} is missing" for c in self.indicator_columns_]
        for column, values in self.categories_.items():
            names += [_category_name(column, v) for v in values] + [f"{column}={OTHER}"]
        return names

    # --- transform -------------------------------------------------------------------------

    @property
    def feature_columns_in_(self) -> list[str]:
        """Return the input columns transform needs (the features kept at fit)."""
        self._check_fitted()
        return list(self.numeric_columns_) + list(self.categories_)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Return the table as a float32 C-contiguous matrix with ``feature_names_out_`` columns."""
        self._check_fitted()
        _require_columns(df, self.feature_columns_in_, "was used when this model was trained")
        out = np.empty((len(df), len(self.feature_names_out_)), dtype=np.float32)
        for start in range(0, len(df), _CHUNK_ROWS):
            chunk = df.iloc[start : start + _CHUNK_ROWS]
            out[start : start + len(chunk)] = self._scale(self._raw(chunk))
        return out

    def _raw(self, df: pd.DataFrame) -> np.ndarray:
        """Return the imputed, one-hot encoded float64 matrix before scaling."""
        blocks = []
        values = _numeric_block(df, self.numeric_columns_)
        missing = np.isnan(values)
        if self.indicator_columns_:
            positions = [self.numeric_columns_.index(c) for c in self.indicator_columns_]
            indicators = missing[:, positions].astype(np.float64)
        values = np.where(missing, self.fill_values_, values)
        blocks.append(values)
        if self.indicator_columns_:
            blocks.append(indicators)
        for column, categories in self.categories_.items():
            missing_as = self.category_fills_.get(column, MISSING)
            codes = _category_codes(df[column], categories, missing_as)
            one_hot = np.zeros((len(df), len(categories) + 1), dtype=np.float64)
            one_hot[np.arange(len(df)), codes] = 1.0
            blocks.append(one_hot)
        return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]

    def _scale(self, raw: np.ndarray) -> np.ndarray:
        for center, scale in self.scaling_steps_:
            raw -= center
            raw /= scale
        return np.ascontiguousarray(raw, dtype=np.float32)

    def _check_fitted(self) -> None:
        if not hasattr(self, "scaling_steps_"):
            raise RuntimeError("this Preprocessor is not fitted yet: call fit(df, schema) first")

    # --- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the parameters and everything learnt at fit."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "params": self.get_params(),
            "numeric_columns": list(self.numeric_columns_),
            "fill_values": self.fill_values_.tolist(),
            "indicator_columns": list(self.indicator_columns_),
            # A list of pairs keeps the column order explicit in the file.
            "categories": [[c, list(v)] for c, v in self.categories_.items()],
            "category_fills": dict(self.category_fills_),
            "missing_categories": dict(self.missing_categories_),
            "dropped": dict(self.dropped_),
            "notes": list(self.notes_),
            "feature_names_out": list(self.feature_names_out_),
            "scaling_steps": [
                {"center": center.tolist(), "scale": scale.tolist()}
                for center, scale in self.scaling_steps_
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Return the fitted Preprocessor stored by ``to_dict``."""
        if data.get("format") != FORMAT:
            raise DataError("This file is not a saved preprocessing step of ad_core.")
        if data.get("version", 0) > FORMAT_VERSION:
            raise DataError(
                "This preprocessing file was written by a newer ad_core; update ad_core."
            )
        # Files written before categorical_missing existed treated empty cells as a category.
        params = {"categorical_missing": "own_category", **data["params"]}
        self = cls(**params)
        self.numeric_columns_ = list(data["numeric_columns"])
        self.fill_values_ = np.asarray(data["fill_values"], dtype=np.float64)
        self.indicator_columns_ = list(data["indicator_columns"])
        self.categories_ = {c: list(v) for c, v in data["categories"]}
        self.category_fills_ = dict(data.get("category_fills", {}))
        self.missing_categories_ = {
            str(c): int(n) for c, n in data.get("missing_categories", {}).items()
        }
        self.dropped_ = dict(data["dropped"])
        self.notes_ = list(data.get("notes", []))
        self.feature_names_out_ = list(data["feature_names_out"])
        self.scaling_steps_ = [
            (np.asarray(s["center"], dtype=np.float64), np.asarray(s["scale"], dtype=np.float64))
            for s in data["scaling_steps"]
        ]
        return self

    def save(self, path: str | Path) -> Path:
        """Return the path of the JSON file written with everything needed to transform."""
        path = Path(path)
        # Python writes floats with repr, which reads back to the identical float64.
        path.write_text(json.dumps(self.to_dict(), allow_nan=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        """Return the fitted Preprocessor saved at path."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"The preprocessing file '{path}' could not be read: {exc}") from exc
        return cls.from_dict(data)


# --- helpers -------------------------------------------------------------------------------


def _require_columns(df: pd.DataFrame, columns: list[str], why: str) -> None:
    """Raise a DataError naming the columns the table lacks."""
    missing = [c for c in columns if c not in df.columns]
    if not missing:
        return
    names = ", ".join(f"'{c}'" for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
    noun = "column" if len(missing) == 1 else "columns"
    raise DataError(
        f"The table has no {noun} {names}, which {why}. Load a table with the same columns "
        "(names must match exactly), or change the column roles."
    )


def _numeric_block(
    df: pd.DataFrame, columns: list[str], infinite: list[int] | None = None
) -> np.ndarray:
    """Return the columns as a float64 matrix, with text and infinities as NaN.

    ``infinite``, when given, receives the number of infinities of each column.
    """
    if not columns:
        return np.zeros((len(df), 0), dtype=np.float64)
    frame = df[columns]
    frame.attrs = {}  # pandas deep-copies attrs into every column it hands out
    convert = {
        c: pd.to_numeric(frame[c], errors="coerce")
        for c, dtype in zip(columns, frame.dtypes, strict=True)
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    }
    if convert:
        frame = frame.assign(**convert)
    # copy=True: pandas may hand out a read-only view, and infinities are replaced in place.
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    is_inf = np.isinf(values)
    if infinite is not None:
        infinite.extend(int(n) for n in is_inf.sum(axis=0))
    values[is_inf] = np.nan
    return values


def _category_label(value: Any) -> str:
    """Return the category name of a cell: whole floats written without '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _category_counts(series: pd.Series) -> dict[str, int]:
    """Return how often each category (missing cells as "(missing)") occurs."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    tally = np.bincount(codes + 1, minlength=len(uniques) + 1)
    counts: dict[str, int] = {}
    if tally[0]:
        counts[MISSING] = int(tally[0])
    for value, n in zip(uniques, tally[1:], strict=True):
        label = _category_label(value)
        counts[label] = counts.get(label, 0) + int(n)
    return counts


def _category_name(column: str, value: str) -> str:
    """Return the output column name of one category: "<column> is missing" for empty cells."""
    return f"{column} is missing" if value == MISSING else f"{column}={value}"


def _listed(items: Any, limit: int = 5) -> str:
    """Return the first few items joined by commas, with how many more there are."""
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _category_codes(
    series: pd.Series, categories: list[str], missing_as: str = MISSING
) -> np.ndarray:
    """Return each cell's position in categories, with len(categories) meaning "(other)".

    Empty cells count as the category ``missing_as``: "(missing)", or the fill category.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    position = {value: i for i, value in enumerate(categories)}
    other = len(categories)
    lookup = [position.get(_category_label(u), other) for u in uniques]
    # The missing sentinel -1 indexes the last entry.
    lookup.append(position.get(missing_as, other))
    return np.asarray(lookup, dtype=np.int64)[codes]


def _fit_scaling(raw: np.ndarray, scaling: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return the (center, scale) steps that scale the fit matrix as asked."""
    if scaling == "none":
        return []
    magnitude = _magnitude_divisor(raw)
    first: list[tuple[np.ndarray, np.ndarray]] = []
    if magnitude is not None:
        # Dividing by a power of two is exact, so ordinary columns are not changed at all.
        first = [(np.zeros(raw.shape[1]), magnitude)]
        raw = raw / magnitude
    if scaling in ("standard", "standard_minmax"):
        steps = [_standard(raw)]
        if scaling == "standard_minmax":
            center, scale = steps[0]
            steps.append(_minmax((raw - center) / scale))
        return first + steps
    if scaling == "minmax":
        return first + [_minmax(raw)]
    if scaling == "global":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            center, spread = float(raw.mean()), float(raw.std())
        width = raw.shape[1]
        spread = spread if np.isfinite(spread) and spread > 0 else 1.0
        return first + [(np.full(width, center), np.full(width, spread))]
    center = np.median(raw, axis=0)
    q25, q75 = np.percentile(raw, [25, 75], axis=0)
    spread = q75 - q25
    # A column with half its values equal (a one-hot column) has no IQR; fall back to std.
    spread = np.where(spread > 0, spread, raw.std(axis=0))
    return first + [(center, _safe(spread))]


def _magnitude_divisor(raw: np.ndarray) -> np.ndarray | None:
    """Return per column a power of two near the largest magnitude of extreme columns, else 1.

    None when no column is beyond [_TINY, _HUGE], the usual case (no extra step is saved).
    """
    if raw.size == 0:
        return None
    magnitude = np.abs(raw).max(axis=0)
    extreme = (magnitude > _HUGE) | ((magnitude > 0) & (magnitude < _TINY))
    if not extreme.any():
        return None
    exponent = np.floor(np.log2(np.where(extreme, magnitude, 1.0)))
    return np.where(extreme, np.exp2(exponent), 1.0)


def _by_magnitude(func: Any, values: np.ndarray) -> np.ndarray:
    """Return ``func(values, axis=0)`` computed without overflow on extreme columns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        magnitude = np.nanmax(np.abs(values), axis=0)
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    divisor = _magnitude_divisor(magnitude[np.newaxis, :])
    if divisor is None:
        return func(values, axis=0)
    return func(values / divisor, axis=0) * divisor


def _standard(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return raw.mean(axis=0), _safe(raw.std(axis=0))


def _minmax(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = raw.min(axis=0)
    return low, _safe(raw.max(axis=0) - low)


def _safe(scale: np.ndarray) -> np.ndarray:
    """Return the scale with zeros replaced by 1, so a column with no spread is only centred."""
    return np.where(scale > 0, scale, 1.0)
