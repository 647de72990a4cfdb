"""2-D maps of a run's latent codes (or its preprocessed features), with vacant holes.

PCA is computed at once; UMAP on request. Both are saved in the run folder
(``map_<method>.npy``, with ``map_<method>_rows.npy`` when only a sample of rows is mapped),
so a map is computed once per run, across sessions and server restarts. Holes come from
``ad_core.latent.find_holes`` on the map of the run's training rows (``ROLE_TRAIN`` in
``run_row_roles``); every mapped row, held out or not, is then placed on it
(:func:`run_holes`), and :func:`hole_message` says what landed where.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from ad_core.store import RunRecord, Workspace
from ad_studio_ui.workspace import (
    ROLE_HELDOUT,
    ROLE_TRAIN,
    ROLE_UNUSED,
    _dataset_view,
    _readonly,
    _run_detector,
    _run_features,
    _workspace,
    get_workspace,
    run_row_roles,
)

#: UMAP maps at most this many rows (a seeded sample, see ``_map_rows``)
UMAP_MAX_ROWS = 50_000
#: the least share of a UMAP sample kept for training rows when there are enough of them
UMAP_TRAIN_SHARE = 0.8
METHODS = {"pca": "PCA", "umap": "UMAP"}


@dataclass(frozen=True)
class RunMap:
    """A 2-D map: ``coords[i]`` is the position of dataset row ``rows[i]``."""

    method: str
    coords: np.ndarray
    rows: np.ndarray
    source: str  # "latent codes" or "preprocessed features"


def _has_latent(run: RunRecord) -> bool:
    from ad_core import get_detector_info

    try:
        return bool(get_detector_info(run.detector).has_latent)
    except ValueError:
        return False


@st.cache_resource(show_spinner="Computing the latent codes...", max_entries=2)
def _codes(home: str, run_id: int, dataset_id: str, schema_json: str, latent: bool) -> np.ndarray:
    X = _run_features(home, run_id, dataset_id, schema_json)
    if not latent:
        return X
    det = _run_detector(home, run_id)
    # transform may hand the array to torch, which wants a writable buffer
    return _readonly(np.asarray(det.transform(np.array(X)), dtype=np.float64))


def _project(Z: np.ndarray, method: str) -> np.ndarray:
    """Return the 2-D projection of ``Z`` with ad_core.latent (PCA fallback without it)."""
    if Z.shape[1] == 1:
        return np.column_stack([Z[:, 0], np.zeros(Z.shape[0])])
    try:
        from ad_core.latent import project_2d
    except ModuleNotFoundError:
        if method != "pca":
            raise RuntimeError("UMAP maps need ad_core.latent, which is not installed") from None
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=0).fit_transform(Z)
    return np.asarray(project_2d(Z, method=method, random_state=0), dtype=np.float64)


def _map_rows(n_rows: int, train_rows: np.ndarray, method: str) -> np.ndarray:
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


def _map_files(folder: Path, method: str) -> tuple[Path, Path]:
    return folder / f"map_{method}.npy", folder / f"map_{method}_rows.npy"


def compute_map(ws: Workspace, run_id: int, method: str, Z: np.ndarray | None = None) -> None:
    """Compute a run's 2-D map and save it in the run folder (no Streamlit: runs in threads).

    ``Z``: the codes of every row when the caller has them; otherwise they are computed from
    the saved preprocessor and model.
    """
    from ad_core import load_detector
    from ad_core.data import Preprocessor
    from ad_studio_ui.workspace import MODEL_DIR, PREPROCESSOR_FILE

    run = ws.get_run(run_id)
    folder = ws.run_dir(run_id)
    frame = ws.load_dataset_frame(run.dataset_id)
    n_rows = len(frame)
    train_rows = np.flatnonzero(run_row_roles(run, n_rows, ws=ws) == ROLE_TRAIN)
    rows = _map_rows(n_rows, train_rows, method)
    if Z is None:
        X = Preprocessor.load(folder / PREPROCESSOR_FILE).transform(frame.iloc[rows])
        Z = load_detector(folder / MODEL_DIR).transform(X) if _has_latent(run) else X
    else:
        Z = Z[rows]
    coords = _project(np.asarray(Z, dtype=np.float64), method)
    coords_file, rows_file = _map_files(folder, method)
    if rows.size != n_rows:
        np.save(rows_file, rows, allow_pickle=False)
    else:
        rows_file.unlink(missing_ok=True)
    # Coordinates last: their file marks the map as complete.
    tmp = coords_file.with_name(f".{coords_file.stem}.tmp.npy")
    np.save(tmp, coords, allow_pickle=False)
    tmp.replace(coords_file)


@st.cache_resource(show_spinner=False, max_entries=8)
def _run_map(
    home: str, run_id: int, dataset_id: str, schema_json: str, method: str, latent: bool
) -> RunMap:
    ws = _workspace(home)
    coords_file, rows_file = _map_files(ws.run_dir(run_id), method)
    view = _dataset_view(home, dataset_id, schema_json)
    if not coords_file.exists():
        compute_map(ws, run_id, method, Z=_codes(home, run_id, dataset_id, schema_json, latent))
    coords = np.load(coords_file, allow_pickle=False)
    rows = np.load(rows_file, allow_pickle=False) if rows_file.exists() else np.arange(view.n_rows)
    source = "latent codes" if latent else "preprocessed features"
    return RunMap(method, _readonly(coords), _readonly(rows), source)


# --- maps that take long (UMAP) are computed in a background thread -------------------------


@dataclass
class MapJob:
    """A map being computed in a thread; the page polls it."""

    run_id: int
    method: str
    status: str = "running"  # running | done | failed
    error: str | None = None
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread; return True when it has finished."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.status != "running"


_MAP_JOBS: dict[tuple[str, int, str], MapJob] = {}
_MAP_LOCK = threading.Lock()


def map_job(run: RunRecord, method: str) -> MapJob | None:
    """Return the map job of a run and method started in this server process, if any."""
    with _MAP_LOCK:
        return _MAP_JOBS.get((str(get_workspace().home), int(run.id), method))


def start_map_job(run: RunRecord, method: str) -> MapJob:
    """Compute a run's map in a background thread (one job per run and method at a time)."""
    ws = get_workspace()
    key = (str(ws.home), int(run.id), method)
    with _MAP_LOCK:
        job = _MAP_JOBS.get(key)
        if job is not None and job.status == "running":
            return job
        job = MapJob(run_id=int(run.id), method=method)
        _MAP_JOBS[key] = job

    def work() -> None:
        try:
            compute_map(ws, int(run.id), method)
            job.status = "done"
        except Exception as exc:  # shown on the page
            job.error = f"{type(exc).__name__}: {exc}"
            job.status = "failed"
        finally:
            ws.close()

    job.thread = threading.Thread(target=work, name=f"ad-studio-map-{run.id}-{method}", daemon=True)
    job.thread.start()
    return job


def map_available(run: RunRecord, method: str) -> bool:
    """Return True when the run's map for ``method`` is computed and saved."""
    return _map_files(get_workspace().run_dir(run.id), method)[0].exists()


def run_map(run: RunRecord, method: str) -> RunMap:
    """Return (computing once, then from the run folder) the run's 2-D map."""
    import json

    ws = get_workspace()
    record = ws.get_dataset(run.dataset_id)
    return _run_map(
        str(ws.home),
        int(run.id),
        run.dataset_id,
        json.dumps(record.schema, sort_keys=True),
        method,
        _has_latent(run),
    )


#: fewer training rows than this on a map give no area to find holes in
MIN_TRAIN_ROWS_FOR_HOLES = 10
#: how the page names each role, singular and plural
ROLE_WORDS = {
    ROLE_TRAIN: ("training row", "training rows"),
    ROLE_HELDOUT: ("held-out row", "held-out rows"),
    ROLE_UNUSED: ("left-out row", "left-out rows"),
}


@dataclass(frozen=True)
class RunHoles:
    """The vacant holes of a run's map, and what each mapped row was to the run.

    ``holes`` is the ``ad_core.latent.HoleMap`` of the map's training rows with every mapped
    row placed on it (its per-point arrays follow ``RunMap.rows``); ``roles[i]`` is the role
    (``ROLE_TRAIN``, ``ROLE_HELDOUT``, ``ROLE_UNUSED``) of map row ``i``.
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


@st.cache_resource(show_spinner="Looking for holes in the map...", max_entries=8)
def _holes(home: str, run_id: int, method: str, _map: RunMap, train_mask: np.ndarray) -> Any:
    # The mask is part of the key (hashing it costs a millisecond per million rows): a roles
    # file that appears or changes must not meet holes found on other training rows.
    from ad_core.latent import find_holes

    return find_holes(_map.coords[train_mask], _map.coords)


def run_holes(run: RunRecord, rmap: RunMap, n_rows: int) -> RunHoles | None:
    """Return the holes of a map and the role of each mapped row, or None without enough
    training rows on the map to find holes among.

    Holes are found on the map of the training rows only (``ROLE_TRAIN``): a hole is a place
    where (almost) none of the rows the model learnt from lies. Held-out and left-out rows
    are then placed on that map.
    """
    roles = run_row_roles(run, n_rows)[rmap.rows]
    train = roles == ROLE_TRAIN
    if int(train.sum()) < MIN_TRAIN_ROWS_FOR_HOLES:
        return None
    holes = _holes(str(get_workspace().home), int(run.id), rmap.method, rmap, train)
    return RunHoles(holes=holes, roles=_readonly(roles))


def _rows_phrase(role: int, n: int) -> str:
    one, many = ROLE_WORDS[role]
    return f"{n:,} {one if n == 1 else many}"


def hole_message(run_holes: RunHoles) -> str:
    """Return what the page says about the holes: what they are, and who landed in them."""
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
    """Return the settings key of the review queue sent from the map."""
    return f"review_queue.{dataset_id}"
