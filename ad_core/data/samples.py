"""The small data sets bundled in sample_data/, for demos and first steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ad_core.data.errors import DataError
from ad_core.data.loaders import load_table
from ad_core.data.schema import Schema, infer_schema

# The repository's sample_data/ folder (written by scripts/make_sample_data.py).
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"


@dataclass(frozen=True)
class SampleInfo:
    """What a bundled sample set is, where it lives and how its ground truth reads."""

    name: str
    title: str
    description: str
    path: Path
    n_rows: int
    is_sequence: bool
    label_column: str = "label"
    normal_values: tuple[Any, ...] = field(default_factory=tuple)
    anomaly_share: float = 0.0
    source: str = ""


_SAMPLES = (
    SampleInfo(
        name="ecg5000",
        title="ECG5000 heartbeats",
        description=(
            "1000 heartbeats of one patient with congestive heart failure, each a row of 140 "
            "time steps (t000..t139). label 1 is a normal beat; 2-5 are four kinds of "
            "abnormal beat (about 42 % of rows). Rows are sequences: good for autoencoders "
            "and for looking at the shape of a flagged beat."
        ),
        path=SAMPLE_DIR / "ecg5000.csv",
        n_rows=1000,
        is_sequence=True,
        normal_values=(1,),
        anomaly_share=0.416,
        source="UCR time-series archive (Dau et al. 2018), PhysioNet BIDMC CHF record chf07",
    ),
    SampleInfo(
        name="cardio",
        title="Cardiotocography (ODDS Cardio)",
        description=(
            "1831 fetal heart-rate recordings summarised by 21 standardised measurements "
            "(baseline rate, accelerations, variability, histogram shape). label 1 marks the "
            "176 pathological recordings (9.6 %); 0 is normal. A classic tabular benchmark "
            "of the Deep SAD paper."
        ),
        path=SAMPLE_DIR / "cardio.csv",
        n_rows=1831,
        is_sequence=False,
        normal_values=(0,),
        anomaly_share=0.0961,
        source="ODDS library (Rayana 2016), as vendored by pyod (BSD-2)",
    ),
    SampleInfo(
        name="kddcup99",
        title="KDD Cup 1999 network connections",
        description=(
            "8000 network connections with the 41 standard KDD features (numeric counts and "
            "rates plus protocol, service and flag as categories). label 'normal.' is normal "
            "traffic; the 2.5 % of attacks (smurf., neptune., ...) are the anomalies."
        ),
        path=SAMPLE_DIR / "kddcup99.csv",
        n_rows=8000,
        is_sequence=False,
        normal_values=("normal.",),
        anomaly_share=0.025,
        source="UCI KDD Cup 1999, 10 % set",
    ),
    SampleInfo(
        name="machine_series",
        title="Machine sensor series",
        description=(
            "Four weeks of 5-minute readings of a machine's temperature and fan speed "
            "(8064 points), with a daily cycle. anomaly 1 marks five faults: a spike, a "
            "night stuck at the day's high, a burst of noise, a dip, and the fan stopping "
            "while the temperature looks normal (1.4 % of points). A time series: analysed "
            "in windows, scored per point, flagged stretches shown as events."
        ),
        path=SAMPLE_DIR / "machine_series.csv",
        n_rows=8064,
        is_sequence=False,
        label_column="anomaly",
        normal_values=(0,),
        anomaly_share=0.0141,
        source="synthetic, written by scripts/make_sample_data.py (seeded)",
    ),
)


def list_samples() -> list[SampleInfo]:
    """Return the bundled sample sets."""
    return list(_SAMPLES)


def get_sample_info(name: str) -> SampleInfo:
    """Return the description of one sample set, or raise a DataError naming the choices."""
    for info in _SAMPLES:
        if info.name == name:
            return info
    choices = ", ".join(info.name for info in _SAMPLES)
    raise DataError(f"There is no sample set '{name}'. Choose one of: {choices}.")


def load_sample(name: str) -> pd.DataFrame:
    """Return the table of a bundled sample set (``df.attrs["sample"]`` holds its name)."""
    info = get_sample_info(name)
    if not info.path.is_file():
        raise DataError(
            f"The sample file {info.path} is missing. Recreate it with "
            "`python scripts/make_sample_data.py`, or reinstall ad-studio."
        )
    frame = load_table(info.path)
    frame.attrs["sample"] = info.name
    return frame


def sample_schema(name: str, df: pd.DataFrame | None = None) -> Schema:
    """Return the proposed schema of a sample set, with its known label and normal values."""
    info = get_sample_info(name)
    frame = load_sample(name) if df is None else df
    schema = infer_schema(frame)
    if schema.label_column != info.label_column:
        schema = schema.with_role(info.label_column, "label")
    schema = schema.with_normal_values(list(info.normal_values))
    schema.reasons[info.label_column] = (
        f"the ground truth of this sample set; {_values_text(info.normal_values)} means normal"
    )
    return schema


def _values_text(values: tuple[Any, ...]) -> str:
    return " or ".join(repr(v) if isinstance(v, str) else str(v) for v in values)
