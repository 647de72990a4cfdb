"""2-D maps of a run's latent codes (or its preprocessed features), with vacant holes.

A map is saved in the run folder (``map_<method>.npy``, with ``map_<method>_rows.npy`` when
only a sample of rows is mapped), so it is computed once per run. Holes come from
:func:`ad_core.latent.find_holes` on the map of the run's training rows (``ROLE_TRAIN`` in the
run's ``row_roles.npy``); every mapped row, held out or not, is then placed on it
(:func:`map_holes`), and :func:`hole_message` says what landed where::

    from ad_core import maps
    maps.compute_map(ws, run_id, "pca")        # written into ws.run_dir(run_id)
    rmap = maps.load_map(ws, run_id, "pca")    # rmap.coords[i] is dataset row rmap.rows[i]
    found = maps.run_holes(ws, run_id, "pca")  # None with too few training rows on the map
    print(maps.hole_message(found))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ad_core.evaluation import saved_row_roles
from ad_core.latent import find_holes, project_2d
from ad_core.runs import MODEL_DIR, PREPROCESSOR_FILE, ROLE_HELDOUT, ROLE_TRAIN, ROLE_UNUSED

if TYPE_CHECKING:
    from ad_core.store import Workspace

#: UMAP maps at most this many rows (a seeded sample, see :func:`map_rows`)
UMAP_MAX_ROWS = 50_000
#: the least share of a UMAP sample kept for training rows when there are enough of them
UMAP_TRAIN_SHARE = 0.8
METHODS = {"pca": "PCA", "umap": "UMAP"}
#: fewer training rows than this on a map give no area to find holes in
MIN_TRAIN_ROWS_FOR_HOLES = 10
#: how :func:`hole_message` names each role, singular and plural
ROLE_WORDS = {
    ROLE_TRAIN: ("training row", "training rows"),
    ROLE_HELDOUT: ("held-out row", "held-out rows"),
    ROLE_UNUSED: ("left-out row", "left-out rows"),
}


@dataclass(frozen=True)
class RunMap:
    """A 2-D map: ``coords[i]`` is the position of map unit ``rows[i]`` (a dataset row, or a
    window of a series run: :func:`map_units`)."""

    method: str
    coords: np.ndarray
    rows: np.ndarray
    source: str  # "latent codes" or "preprocessed features"


def has_latent(detector: str) -> bool:
    """Return True when the detector named ``detector`` has a latent space to map."""
    from ad_core import get_detector_info

    try:
        return bool(get_detector_info(detector).has_latent)
    except ValueError:  # a detector this version no longer has
        return False


def _source(latent: bool) -> str:
    return "latent codes" if latent else "preprocessed features"


def codes(detector: Any, X: Any) -> np.ndarray:
    """Return the latent codes (float64) of the preprocessed rows ``X`` under ``detector``."""
    X = np.asarray(X)
    # transform may hand the array to torch, which wants a writable buffer
    return np.asarray(detector.transform(X if X.flags.writeable else np.array(X)), np.float64)


def run_codes(ws: Workspace, run_id: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Return what a map of the run shows of each dataset row (or of each of ``rows``).

    The latent codes for a detector with a latent space, else the rows preprocessed as the
    run was (float32): both from the preprocessor and model saved in the run folder. For a
    run on a series a point has no code of its own: it gets the code of the highest-scoring
    window covering it (what the review queue's diversity compares).
    """
    units = map_units(ws, run_id)
    if units.kind == "windows":
        from ad_core.series_runs import best_window

        points = np.arange(units.n_points) if rows is None else np.asarray(rows, dtype=np.int64)
        best = np.array(
            [best_window(int(p), units.scores, units.starts, units.length) for p in points],
            dtype=np.int64,
        )
        unique, inverse = np.unique(best, return_inverse=True)
        return unit_codes(ws, run_id, unique)[inverse]
    return unit_codes(ws, run_id, rows)


@dataclass(frozen=True)
class MapUnits:
    """What the points of a run's map are: dataset rows, or the windows of a series run.

    ``roles[u]`` is the role of unit ``u`` in the run (a window is a training window, one
    reaching into the held-out stretch, or neither). For windows, ``starts`` and ``length``
    give each window's points and ``scores`` its score.
    """

    kind: str  # "rows" or "windows"
    roles: np.ndarray
    n_points: int
    starts: np.ndarray | None = None
    length: int = 1
    scores: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.roles.size)


def map_units(ws: Workspace, run_id: int) -> MapUnits:
    """Return the units a map of the run shows (see :class:`MapUnits`)."""
    from ad_core.series import window_starts
    from ad_core.series_runs import WINDOW_ROLES_FILE, WINDOW_SCORES_FILE, read_run_settings

    run = ws.get_run(run_id)
    folder = ws.run_dir(run_id)
    n_rows = ws.get_dataset(run.dataset_id).n_rows
    series = read_run_settings(folder)
    if series is None:
        return MapUnits("rows", saved_row_roles(folder, n_rows), n_rows)
    starts = window_starts(n_rows, series.window)
    roles = np.load(folder / WINDOW_ROLES_FILE, allow_pickle=False).astype(np.int8)
    scores = np.load(folder / WINDOW_SCORES_FILE, allow_pickle=False)
    return MapUnits("windows", roles, n_rows, starts, series.window.length, scores)


def unit_codes(ws: Workspace, run_id: int, units: np.ndarray | None = None) -> np.ndarray:
    """Return what the map shows of each map unit (or of each of ``units``): see run_codes."""
    from ad_core.data import Preprocessor
    from ad_core.series_runs import read_run_settings

    run = ws.get_run(run_id)
    folder = ws.run_dir(run_id)
    frame = ws.load_dataset_frame(run.dataset_id)
    from ad_core import load_detector

    prep = Preprocessor.load(folder / PREPROCESSOR_FILE)
    detector = load_detector(folder / MODEL_DIR) if has_latent(run.detector) else None
    series = read_run_settings(folder)
    if series is None:
        X = prep.transform(frame if units is None else frame.iloc[units])
        return X if detector is None else codes(detector, X)
    from ad_core.series_runs import over_windows

    def of(windows: np.ndarray) -> np.ndarray:
        return windows if detector is None else codes(detector, windows)

    return over_windows(of, prep.transform(frame), series.window, rows=units)


def project(Z: np.ndarray, method: str) -> np.ndarray:
    """Return the seeded 2-D projection (float64) of the codes ``Z`` a map shows."""
    return np.asarray(project_2d(Z, method=method, random_state=0), dtype=np.float64)


def map_rows(n_rows: int, train_rows: np.ndarray, method: str) -> np.ndarray:
    """Return the dataset rows a map holds: all for PCA; for UMAP at most ``UMAP_MAX_ROWS``.

    A UMAP sample keeps at least ``UMAP_TRAIN_SHARE`` of its rows for training rows (holes are
    found among them) and gives the rest to the other rows (held out, left out), so that they
    can be seen landing in the holes; a side with fewer rows leaves its room to the other.
    """
    if method == "pca" or n_rows <= UMAP_MAX_ROWS:
        return np.arange(n_rows)
    rng = np.random.default_rng(0)
    train_rows = np.asarray(train_rows, dtype=np.int64)
    rest = np.setdiff1d(np.arange(n_rows), train_rows)
    n_train = min(
        train_rows.size, max(int(UMAP_TRAIN_SHARE * UMAP_MAX_ROWS), UMAP_MAX_ROWS - rest.size)
    )
    n_rest = min(rest.size, UMAP_MAX_ROWS - n_train)
    picked = [
        rng.choice(train_rows, n_train, replace=False),
        rng.choice(rest, n_rest, replace=False),
    ]
    return np.sort(np.concatenate(picked))


def map_files(folder: Path, method: str) -> tuple[Path, Path]:
    """Return the files of a run's map in its folder: (coordinates, mapped rows)."""
    folder = Path(folder)
    return folder / f"map_{method}.npy", folder / f"map_{method}_rows.npy"


def map_available(ws: Workspace, run_id: int, method: str) -> bool:
    """Return True when the run's map for ``method`` is computed and saved."""
    return map_files(ws.run_dir(run_id), method)[0].exists()


def compute_map(ws: Workspace, run_id: int, method: str, Z: np.ndarray | None = None) -> RunMap:
    """Compute a run's 2-D map, save it in the run folder and return it.

    ``Z``: what the map shows of every map unit (:func:`unit_codes`: dataset rows, or the
    windows of a series run) when the caller has it;
    otherwise it is computed from the saved preprocessor and model, for the mapped rows only.
    """
    run = ws.get_run(run_id)
    folder = ws.run_dir(run_id)
    units = map_units(ws, run_id)
    n_rows = units.n
    train_rows = np.flatnonzero(units.roles == ROLE_TRAIN)
    rows = map_rows(n_rows, train_rows, method)
    Z = unit_codes(ws, run_id, rows) if Z is None else Z[rows]
    coords = project(np.asarray(Z, dtype=np.float64), method)
    coords_file, rows_file = map_files(folder, method)
    if rows.size != n_rows:
        np.save(rows_file, rows, allow_pickle=False)
    else:
        rows_file.unlink(missing_ok=True)
    # Coordinates last: their file marks the map as complete.
    tmp = coords_file.with_name(f".{coords_file.stem}.tmp.npy")
    np.save(tmp, coords, allow_pickle=False)
    tmp.replace(coords_file)
    return RunMap(method, coords, rows, _source(has_latent(run.detector)))


def load_map(ws: Workspace, run_id: int, method: str) -> RunMap | None:
    """Return the run's map saved by :func:`compute_map`, or None when it is not computed."""
    coords_file, rows_file = map_files(ws.run_dir(run_id), method)
    if not coords_file.exists():
        return None
    coords = np.load(coords_file, allow_pickle=False)
    rows = (
        np.load(rows_file, allow_pickle=False)
        if rows_file.exists()
        else np.arange(coords.shape[0])  # no rows file: the map holds every row
    )
    return RunMap(method, coords, rows, _source(has_latent(ws.get_run(run_id).detector)))


# --- vacant holes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunHoles:
    """The vacant holes of a run's map, and what each mapped row was to the run.

    ``holes`` is the :class:`ad_core.latent.HoleMap` of the map's training rows with every
    mapped row placed on it (its per-point arrays follow ``RunMap.rows``); ``roles[i]`` is the
    role (``ROLE_TRAIN``, ``ROLE_HELDOUT``, ``ROLE_UNUSED``) of map row ``i``.
    """

    holes: Any
    roles: np.ndarray

    @property
    def in_hole(self) -> np.ndarray:
        return np.asarray(self.holes.in_hole, dtype=bool)

    @property
    def n_vacant_cells(self) -> int:
        return int(np.asarray(self.holes.vacant, dtype=bool).sum())

    def counts(self, where: str = "in_hole") -> dict[int, tuple[int, int]]:
        """Return ``{role: (rows there, rows mapped)}`` for the roles the map holds.

        ``where``: ``"in_hole"`` or ``"outside_support"`` (beyond the region the training
        rows cover, or off the grid).
        """
        there = np.asarray(getattr(self.holes, where), dtype=bool)
        out = {}
        for role in (ROLE_TRAIN, ROLE_HELDOUT, ROLE_UNUSED):
            mine = self.roles == role
            if mine.any():
                out[role] = (int((mine & there).sum()), int(mine.sum()))
        return out


def map_holes(rmap: RunMap, roles: np.ndarray) -> RunHoles | None:
    """Return the holes of a map and the role of each mapped row, or None without enough
    training rows on the map to find holes among.

    ``roles``: the role of every dataset row (:func:`ad_core.evaluation.saved_row_roles`).
    Holes are found on the map of the training rows only (``ROLE_TRAIN``): a hole is a place
    where (almost) none of the rows the model learnt from lies. Held-out and left-out rows
    are then placed on that map.
    """
    mapped = np.asarray(roles)[rmap.rows]
    train = mapped == ROLE_TRAIN
    if int(train.sum()) < MIN_TRAIN_ROWS_FOR_HOLES:
        return None
    return RunHoles(holes=find_holes(rmap.coords[train], rmap.coords), roles=mapped)


def run_holes(ws: Workspace, run_id: int, method: str) -> RunHoles | None:
    """Return the holes of the run's saved map (see :func:`map_holes`).

    Raises FileNotFoundError when the map is not computed yet (:func:`compute_map`).
    """
    rmap = load_map(ws, run_id, method)
    if rmap is None:
        raise FileNotFoundError(
            f"Run {run_id} has no {METHODS.get(method, method)} map yet: compute it first."
        )
    return map_holes(rmap, map_units(ws, run_id).roles)


def _rows_phrase(role: int, n: int) -> str:
    one, many = ROLE_WORDS[role]
    return f"{n:,} {one if n == 1 else many}"


def hole_message(run_holes: RunHoles) -> str:
    """Return what the holes are, and who landed in them, in words (Markdown)."""
    counts = run_holes.counts()
    others = ROLE_HELDOUT in counts or ROLE_UNUSED in counts
    if run_holes.n_vacant_cells == 0:
        text = (
            "**Holes**: none on this map. Inside the region the training rows cover, no place "
            "is (nearly) empty of them."
        )
    else:
        parts = [
            f"{counts[role][0]:,} of the {_rows_phrase(role, counts[role][1])}"
            for role in (ROLE_HELDOUT, ROLE_UNUSED, ROLE_TRAIN)
            if role in counts
        ]
        text = (
            "**Holes** (shaded): places inside the region covered by the training rows where "
            "almost no training row lands. In them: " + ", ".join(parts) + "."
        )
        n_train_in = counts.get(ROLE_TRAIN, (0, 0))[0]
        if n_train_in == 1:
            text += (
                " The training row there lies alone, away from the other training rows: the "
                "model saw few rows like it."
            )
        elif n_train_in:
            text += (
                f" The {n_train_in:,} training rows there each lie alone, away from the other "
                "training rows: the model saw few rows like them."
            )
        if others:
            text += (
                " Rows in a hole are unlike what the model was trained on, even when their "
                "score is low."
            )
    if not others:
        return text + " This run trained on every mapped row and held none out."
    beyond = [
        f"{n:,} of the {_rows_phrase(role, mapped)}"
        for role, (n, mapped) in run_holes.counts("outside_support").items()
        if role != ROLE_TRAIN and n
    ]
    if beyond:
        text += " Beyond the region the training rows cover (not a hole): " + ", ".join(beyond)
        text += "."
    return text


def display_rows(
    n_map_rows: int,
    priority: np.ndarray,
    *,
    max_points: int,
    seed: int = 0,
) -> np.ndarray:
    """Return indices into the map of the points to draw: priority points first, then random.

    ``priority`` is a boolean mask over the map's rows (flagged, labelled, in a hole). They
    take at most half of ``max_points`` (a random sample of them when there are more), so the
    map always shows the normal rows they stand out from; the rest is a random sample of the
    other rows.
    """
    if n_map_rows <= max_points:
        return np.arange(n_map_rows)
    rng = np.random.default_rng(seed)
    wanted = np.flatnonzero(priority)
    others = np.flatnonzero(~np.asarray(priority, dtype=bool))
    n_first = min(wanted.size, max(max_points // 2, max_points - others.size))
    first = rng.choice(wanted, n_first, replace=False) if n_first < wanted.size else wanted
    fill = rng.choice(others, min(others.size, max_points - first.size), replace=False)
    return np.sort(np.concatenate([first, fill]))


def queue_key(dataset_id: str) -> str:
    """Return the workspace settings key of the review queue sent from a map (row keys)."""
    return f"review_queue.{dataset_id}"
