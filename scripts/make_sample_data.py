"""Write the bundled sample sets in sample_data/ from the reference data in ../shared/data.

Usage: python scripts/make_sample_data.py [--shared-data PATH] [--out PATH]

Reproducible: every random choice comes from one seeded generator, so running it again
writes byte-identical files. See sample_data/README.md for sources and licences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import loadmat

REPO = Path(__file__).resolve().parents[1]
SEED = 20240601
ECG_BEATS = 1000
KDD_NORMAL = 7800
KDD_ATTACKS = 200  # 2.5 % of the sample, the usual anomaly-detection set-up

# UCI Cardiotocography features in the order ODDS stores them (values are standardised).
CARDIO_COLUMNS = [
    "baseline_fhr",  # LB: baseline fetal heart rate
    "accelerations",  # AC
    "fetal_movements",  # FM
    "uterine_contractions",  # UC
    "light_decelerations",  # DL
    "severe_decelerations",  # DS
    "prolonged_decelerations",  # DP
    "abnormal_stv_pct",  # ASTV: % time with abnormal short-term variability
    "mean_stv",  # MSTV
    "abnormal_ltv_pct",  # ALTV: % time with abnormal long-term variability
    "mean_ltv",  # MLTV
    "hist_width",  # histogram of the FHR: width, min, max, peaks, zeros, mode, ...
    "hist_min",
    "hist_max",
    "hist_peaks",
    "hist_zeros",
    "hist_mode",
    "hist_mean",
    "hist_median",
    "hist_variance",
    "hist_tendency",
]

KDD_COLUMNS = [
    "duration",
    "protocol_type",
    "service",
    "flag",
    "src_bytes",
    "dst_bytes",
    "land",
    "wrong_fragment",
    "urgent",
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
    "count",
    "srv_count",
    "serror_rate",
    "srv_serror_rate",
    "rerror_rate",
    "srv_rerror_rate",
    "same_srv_rate",
    "diff_srv_rate",
    "srv_diff_host_rate",
    "dst_host_count",
    "dst_host_srv_count",
    "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate",
    "dst_host_srv_serror_rate",
    "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate",
]


def make_ecg5000(shared: Path, rng: np.random.Generator) -> pd.DataFrame:
    """Return ECG_BEATS heartbeats drawn per class in the original class proportions."""
    full = pd.read_csv(shared / "ecg5000" / "ecg5000.csv")
    chosen = []
    for _, group in full.groupby("label", sort=True):
        n = max(1, round(ECG_BEATS * len(group) / len(full)))
        chosen.append(rng.choice(group.index.to_numpy(), size=n, replace=False))
    rows = np.sort(np.concatenate(chosen))
    steps = [c for c in full.columns if c.startswith("t")]
    beats = full.loc[rows, steps]
    beats.columns = [f"t{int(c[1:]):03d}" for c in steps]
    # beat_id is the row in the full ecg5000.csv, so a beat can be traced back.
    out = pd.concat([pd.Series(rows, name="beat_id"), beats.reset_index(drop=True)], axis=1)
    out["label"] = full.loc[rows, "label"].to_numpy()
    return out


def make_cardio(shared: Path) -> pd.DataFrame:
    """Return the full ODDS Cardio set with named columns and label 1 = anomaly."""
    mat = loadmat(shared / "odds" / "cardio.mat")
    out = pd.DataFrame(mat["X"], columns=CARDIO_COLUMNS)
    out["label"] = mat["y"].ravel().astype(int)
    return out


def make_kddcup99(shared: Path, rng: np.random.Generator) -> pd.DataFrame:
    """Return a sample of normal connections plus a small random share of attacks."""
    full = pd.read_csv(
        shared / "kddcup99" / "kddcup.data_10_percent.gz",
        header=None,
        names=[*KDD_COLUMNS, "label"],
    )
    normal = np.flatnonzero(full["label"].to_numpy() == "normal.")
    attacks = np.flatnonzero(full["label"].to_numpy() != "normal.")
    rows = np.sort(
        np.concatenate(
            [
                rng.choice(normal, size=KDD_NORMAL, replace=False),
                rng.choice(attacks, size=KDD_ATTACKS, replace=False),
            ]
        )
    )
    return full.iloc[rows].reset_index(drop=True)


SERIES_SEED = 20261201
SERIES_DAYS = 28
SERIES_STEP_MINUTES = 5


def make_machine_series() -> pd.DataFrame:
    """Return a synthetic sensor series: 4 weeks of 5-minute readings with 5 labelled faults.

    Written here (seeded) rather than copied from NAB, whose licence keeps it out of
    sample_data/. A machine's temperature follows a daily cycle (warm by day, cool by night)
    with slow drift and sensor noise; its fan speed follows the temperature. The faults
    (``anomaly`` = 1) are of the kinds analysts meet: a spike, a stretch stuck at the day's
    high during the night (in range, out of context), a burst of noise, a dip, and the fan
    stopping while the temperature looks normal (a broken dependency between the columns).
    """
    rng = np.random.default_rng(SERIES_SEED)
    per_day = 24 * 60 // SERIES_STEP_MINUTES
    n = SERIES_DAYS * per_day
    t = np.arange(n)
    hour = (t % per_day) * SERIES_STEP_MINUTES / 60.0
    daily = np.sin(2 * np.pi * (hour - 9.0) / 24.0)
    drift = np.cumsum(rng.normal(0.0, 0.02, n))
    temperature = 60.0 + 8.0 * daily + drift + rng.normal(0.0, 0.5, n)
    fan = 1200.0 + 40.0 * (temperature - 60.0) + rng.normal(0.0, 15.0, n)
    anomaly = np.zeros(n, dtype=np.int64)

    def at(day: float, hours: float) -> int:
        return int(round((day * 24 + hours) * 60 / SERIES_STEP_MINUTES))

    spike = slice(at(5, 14), at(5, 14) + 6)
    temperature[spike] += 14.0
    stuck = slice(at(11, 2), at(11, 5))  # 3 h at 2-5 am stuck at the day's high
    temperature[stuck] = 67.5 + rng.normal(0.0, 0.1, stuck.stop - stuck.start)
    burst = slice(at(16, 10), at(16, 13))
    temperature[burst] += rng.normal(0.0, 4.0, burst.stop - burst.start)
    dip = slice(at(21, 18), at(21, 19))
    temperature[dip] -= 11.0
    fan_stop = slice(at(25, 12), at(25, 14))
    fan[fan_stop] = rng.normal(0.0, 5.0, fan_stop.stop - fan_stop.start)
    for stretch in (spike, stuck, burst, dip, fan_stop):
        anomaly[stretch] = 1
    fan[spike] += 40.0 * 14.0  # the fan follows the temperature's spike
    times = pd.date_range("2026-03-02 00:00", periods=n, freq=f"{SERIES_STEP_MINUTES}min")
    return pd.DataFrame(
        {
            "timestamp": times.strftime("%Y-%m-%d %H:%M"),
            "temperature": np.round(temperature, 2),
            "fan_speed": np.round(fan, 0),
            "anomaly": anomaly,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "sample_data")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "ecg5000.csv": (make_ecg5000(args.shared_data, rng), "%.5g"),
        "cardio.csv": (make_cardio(args.shared_data), "%.6g"),
        "kddcup99.csv": (make_kddcup99(args.shared_data, rng), "%g"),
        "machine_series.csv": (make_machine_series(), "%.6g"),
    }
    for filename, (frame, float_format) in outputs.items():
        path = args.out / filename
        frame.to_csv(path, index=False, float_format=float_format, lineterminator="\n")
        print(
            f"{path}: {frame.shape[0]} rows x {frame.shape[1]} columns, {path.stat().st_size:,} bytes"
        )


if __name__ == "__main__":
    main()
