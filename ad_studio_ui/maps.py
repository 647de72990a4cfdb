"""The Latent space page's maps: cached in the server, long ones computed in a thread.

What a map is and how it is computed, saved and read back, and its holes, are
:mod:`ad_core.maps`; this module keeps them in ``st.cache_resource`` (arrays read-only, shared
by every session) and runs maps that take long (UMAP) in a background thread the page polls.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from ad_core import maps

# display_rows and queue_key: pages/label.py and tests/app/test_pages.py import them from here
from ad_core.maps import RunHoles, RunMap, display_rows, queue_key  # noqa: F401
from ad_core.series_runs import over_windows, read_run_settings
from ad_core.store import RunRecord
from ad_studio_ui.workspace import (
    _readonly,
    _run_detector,
    _run_features,
    _workspace,
    get_workspace,
)


@st.cache_resource(show_spinner="Computing the latent codes...", max_entries=2)
def _codes(home: str, run_id: int, dataset_id: str, schema_json: str, latent: bool) -> np.ndarray:
    X = _run_features(home, run_id, dataset_id, schema_json)
    series = read_run_settings(_workspace(home).run_dir(run_id))
    if series is not None:  # a series run's map shows its windows, a chunk at a time
        detector = _run_detector(home, run_id) if latent else None
        return _readonly(
            over_windows(
                lambda W: W if detector is None else maps.codes(detector, W), X, series.window
            )
        )
    if not latent:
        return X
    return _readonly(maps.codes(_run_detector(home, run_id), X))


@st.cache_resource(show_spinner=False, max_entries=8)
def _run_map(
    home: str, run_id: int, dataset_id: str, schema_json: str, method: str, latent: bool
) -> RunMap:
    ws = _workspace(home)
    rmap = maps.load_map(ws, run_id, method)
    if rmap is None:
        Z = _codes(home, run_id, dataset_id, schema_json, latent)
        rmap = maps.compute_map(ws, run_id, method, Z=Z)
    _readonly(rmap.coords)
    _readonly(rmap.rows)
    return rmap


def run_map(run: RunRecord, method: str) -> RunMap:
    """Return (computing once, then from the run folder) the run's 2-D map."""
    ws = get_workspace()
    record = ws.get_dataset(run.dataset_id)
    return _run_map(
        str(ws.home),
        int(run.id),
        run.dataset_id,
        json.dumps(record.schema, sort_keys=True),
        method,
        maps.has_latent(run.detector),
    )


def map_available(run: RunRecord, method: str) -> bool:
    """Return True when the run's map for ``method`` is computed and saved."""
    return maps.map_available(get_workspace(), int(run.id), method)


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
            maps.compute_map(ws, int(run.id), method)
            job.status = "done"
        except Exception as exc:  # shown on the page
            job.error = f"{type(exc).__name__}: {exc}"
            job.status = "failed"
        finally:
            ws.close()

    job.thread = threading.Thread(target=work, name=f"ad-studio-map-{run.id}-{method}", daemon=True)
    job.thread.start()
    return job


# --- holes ----------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Looking for holes in the map...", max_entries=8)
def _holes(home: str, run_id: int, method: str, _map: RunMap, roles: np.ndarray) -> RunHoles | None:
    # The roles are part of the key (hashing them costs a millisecond per million rows): a
    # roles file that appears or changes must not meet holes found on other training rows.
    found = maps.map_holes(_map, roles)
    if found is not None:
        _readonly(found.roles)
    return found


def run_holes(run: RunRecord, rmap: RunMap, n_rows: int) -> RunHoles | None:
    """Return the holes of a map and the role of each mapped row, or None without enough
    training rows on the map to find holes among (:func:`ad_core.maps.map_holes`)."""
    ws = get_workspace()
    roles = maps.map_units(ws, int(run.id)).roles
    return _holes(str(ws.home), int(run.id), rmap.method, rmap, roles)
