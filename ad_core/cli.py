"""The ``ad-studio`` command line (also ``python -m ad_core``), on the app's workspace.

    ad-studio train sample_data/cardio.csv --detector autoencoder --set epochs=20
    ad-studio score 3 new_rows.csv --out scores.parquet
    ad-studio runs
    ad-studio export 3 --out run-3.zip
    ad-studio app --port 8501

The workspace is ``$AD_STUDIO_HOME`` (default ``./.ad_studio``), the one the dashboard uses, so
a run trained here appears in the app and the other way round. Exit codes: 0 done, 1 the data,
a setting or a run is wrong (one sentence on stderr, no traceback), 2 the command is mistyped.
Set ``AD_STUDIO_DEBUG=1`` to see the traceback of an error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: who the labels read from ``--labels`` are recorded as given by
LABELS_ANNOTATOR = "ad-studio cli"
DEFAULT_PORT = 8501

EXAMPLES = """\
examples:
  ad-studio train sample_data/cardio.csv --detector autoencoder --set epochs=20
  ad-studio score 1 sample_data/cardio.csv --out scores.parquet
  ad-studio runs
  ad-studio export 1 --out run-1.zip
  ad-studio app --port 8501

The workspace is $AD_STUDIO_HOME (default ./.ad_studio), the one the dashboard uses.
Exit codes: 0 done, 1 the data, a setting or a run is wrong, 2 the command is mistyped.
"""


class CliError(Exception):
    """A problem the user can fix, reported as one sentence with exit code 1."""


# --- helpers ------------------------------------------------------------------------------


def parse_setting(text: str) -> tuple[str, Any]:
    """Return ``(key, value)`` from ``key=value``; the value is JSON where it parses, else text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _workspace():
    from ad_core.store import Workspace

    return Workspace()


def _run_record(ws, run_id: int):
    try:
        return ws.get_run(run_id)
    except KeyError:
        raise CliError(
            f"There is no run {run_id} in the workspace {ws.home}; "
            "'ad-studio runs' lists the runs there."
        ) from None


def _read_table(path: str):
    from ad_core.data import load_table

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"There is no file {path}; check the path.")
    data = source.read_bytes()
    frame = load_table(data, name=source.name)
    return frame, data


class _Progress:
    """Turn training events into tqdm bars: one bar per stage (pretraining, training)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar = None
        self.stage = None

    def __call__(self, event: dict) -> bool:
        if not self.enabled:
            return True
        from tqdm import tqdm

        stage = event.get("stage", "training")
        if self.bar is None or stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=event.get("n_epochs"), desc=str(stage), unit="epoch")
        loss = event.get("loss")
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}")
        self.bar.update(1)
        return True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --- commands -----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from ad_core.data import Schema, ground_truth, row_keys
    from ad_core.detectors import make_detector, validate_params
    from ad_core.runs import (
        DEFAULT_HOLDOUT,
        DEFAULT_PREPROCESSING,
        TrainingSetup,
        add_file,
        train_run,
    )

    params = dict(args.settings or [])
    # Check the detector and its settings before anything is stored: a typo leaves no run.
    validate_params(make_detector(args.detector, **params))

    source = Path(args.data)
    if not source.is_file():
        raise FileNotFoundError(f"There is no file {args.data}; check the path.")
    ws = _workspace()
    dataset_id, notes = add_file(ws, source.name, source.read_bytes())
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    # The stored schema wins: the same content added before keeps the roles the user set.
    record = ws.get_dataset(dataset_id)
    schema = Schema.from_dict(record.schema)
    frame = ws.load_dataset_frame(dataset_id)
    keys = row_keys(frame, schema)
    truth = ground_truth(frame, schema)

    if args.labels:
        if not Path(args.labels).is_file():
            raise FileNotFoundError(f"There is no labels file {args.labels}; check the path.")
        # The Label page's import: all or nothing, keys checked against the rows, the
        # annotators the file names kept (an export from the app reads back as it is).
        try:
            ws.import_labels(
                dataset_id, Path(args.labels).read_bytes(), LABELS_ANNOTATOR, row_keys=keys
            )
        except ValueError as exc:
            raise CliError(f"The labels file {args.labels}: {exc}") from None
    if args.series or args.window is not None:
        _choose_series(ws, dataset_id, frame, schema, args)
    elif args.stride is not None or args.normalise != "none" or args.point_score != "max":
        raise CliError("--stride, --normalise and --point-score go with --series or --window.")
    labels = ws.label_array(dataset_id, keys)
    n_labels = int((labels != -1).sum())
    if n_labels:
        print(f"Training with the {n_labels:,} labels the dataset has.", file=sys.stderr)
    else:
        labels = None

    has_truth = truth is not None and bool(((truth == 0) | (truth == 1)).any())
    holdout = args.holdout
    if holdout is None:
        holdout = DEFAULT_HOLDOUT if has_truth else 0.0
    if not 0.0 <= holdout < 1.0:
        raise CliError(f"--holdout must be a share from 0 to below 1; got {holdout}.")
    setup = TrainingSetup(train_on=args.train_on, holdout=float(holdout))

    run_id = ws.create_run(dataset_id, args.detector, params, dict(DEFAULT_PREPROCESSING))
    progress = _Progress(enabled=not args.quiet)
    try:
        result = train_run(
            ws,
            run_id,
            labels=labels,
            setup=setup,
            callback=progress,
            on_notice=lambda text: print(f"note: {text}", file=sys.stderr),
        )
    finally:
        progress.close()
    print(f"run {run_id}: {args.detector} on {record.name} ({len(frame):,} rows)")
    auroc = result.metrics.get("auroc")
    if auroc is not None:
        print(f"AUROC {auroc:.4f} on {result.metrics.get('evaluated_on', 'all rows')}")
    print(f"threshold {result.threshold:.6g}")
    print(f"folder {ws.run_dir(run_id)}")
    return 0


def _choose_series(ws: Any, dataset_id: str, frame: Any, schema: Any, args: Any) -> None:
    """Store the series settings ``--series`` / ``--window`` / ``--stride`` ask for."""
    from ad_core.series import WindowSpec, window_starts
    from ad_core.series_runs import SeriesSettings, propose, save_settings

    found = propose(frame, schema, accept=tuple(args.accept or ()))
    if found.spec is None:
        raise CliError(
            f"{args.data} is not a series: it needs a timestamp column and a numeric column "
            "(give a column the role 'timestamp' in the app's Data page)."
        )
    if found.blocking:
        raise CliError(
            "The series cannot be cut into windows as it is: "
            + " ".join(found.problems.messages(found.blocking))
            + " Fix it on the app's Data page, or with ad_core.series.fix_series (gaps and "
            "irregular steps can be accepted with --accept gaps / --accept irregular)."
        )
    proposed = found.settings
    if proposed is None and args.window is None:
        raise CliError(f"{found.error} Give the window length with --window.")
    if args.window is None and args.stride is None and args.normalise == "none":
        window = proposed.window
        print(f"note: {window.reason}", file=sys.stderr)
    else:
        # A length of your own starts a window at every point unless --stride says otherwise.
        length = proposed.window.length if args.window is None else args.window
        stride = args.stride or (proposed.window.stride if args.window is None else 1)
        try:
            window = WindowSpec(length, stride, args.normalise, "chosen on the command line")
            window_starts(len(frame), window)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    settings = SeriesSettings(
        found.spec.time_column,
        found.spec.value_columns,
        window,
        args.point_score,
        tuple(args.accept or ()),
    )
    save_settings(ws, dataset_id, settings)
    print(f"series: {settings.describe()}", file=sys.stderr)


def cmd_score(args: argparse.Namespace) -> int:
    from ad_core import batch
    from ad_core.data import Schema

    ws = _workspace()
    run = _run_record(ws, args.run)  # an unknown run fails before the data is read
    id_column = Schema.from_dict(ws.get_dataset(run.dataset_id).schema).id_column
    options = {"id_column": id_column, "key": args.key}
    if args.block_mb is not None:
        options["block_bytes"] = int(args.block_mb * (1 << 20))
    bar = _ByteProgress(enabled=not args.quiet, dask=args.engine == "dask")
    try:
        if args.engine == "dask":
            summary = batch.score_dask(
                ws.run_dir(args.run),
                args.data,
                args.out,
                scheduler=args.scheduler,
                n_workers=args.workers,
                progress=bar,
                **options,
            )
        else:
            if args.scheduler:
                raise CliError("--scheduler needs --engine dask.")
            summary = batch.score_file(
                ws.run_dir(args.run), args.data, args.out, progress=bar, **options
            )
    finally:
        bar.close()
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"{summary.rows:,} rows scored, {summary.flagged:,} flagged "
        f"({summary.rows_per_second:,.0f} rows/s, {summary.engine} engine); wrote {summary.out}"
    )
    return 0


class _ByteProgress:
    """A tqdm bar for scoring: bytes read (local engine) or parts done (Dask)."""

    def __init__(self, enabled: bool = True, dask: bool = False) -> None:
        self.enabled, self.dask, self.bar = enabled, dask, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            if self.dask:
                self.bar = tqdm(total=total, desc="scoring", unit="part")
            else:
                self.bar = tqdm(
                    total=total, desc="scoring", unit="B", unit_scale=True, unit_divisor=1024
                )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_runs(args: argparse.Namespace) -> int:
    ws = _workspace()
    runs = ws.list_runs(args.dataset)
    if not runs:
        print("No runs in the workspace yet." if args.dataset is None else "No runs.")
        return 0
    print(f"{'id':>5}  {'detector':<18} {'status':<10} {'created (UTC)':<19}  auroc")
    for run in runs:
        auroc = (run.metrics or {}).get("auroc")
        shown = "-" if auroc is None else f"{auroc:.4f}"
        created = str(run.created or "")[:19].replace("T", " ")
        print(f"{run.id:>5}  {run.detector:<18} {run.status:<10} {created:<19}  {shown}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ad_core.runs import run_zip

    ws = _workspace()
    run = _run_record(ws, args.run)
    folder = ws.run_dir(args.run)
    out = Path(args.out or f"run-{args.run}.zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(run_zip(run, folder))
    print(f"wrote {out}")
    return 0


def app_path() -> Path:
    """Return the dashboard's ``app.py``: beside the folder that holds the ad_core package."""
    import ad_core

    return Path(ad_core.__file__).resolve().parent.parent / "app.py"


def app_command(port: int = DEFAULT_PORT) -> list[str]:
    """Return the command that starts the dashboard on 127.0.0.1:``port``."""
    path = app_path()
    if not path.is_file():
        raise CliError(
            f"The dashboard's app.py is not at {path}: 'ad-studio app' needs a checkout of "
            "ad-studio (pip install -e .), not only the ad_core library."
        )
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(path),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(int(port)),
    ]


def cmd_app(args: argparse.Namespace) -> int:
    command = app_command(args.port)
    print(f"Starting the dashboard on http://127.0.0.1:{args.port} (Ctrl+C stops it)")
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


# --- parser -------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a whole number; got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535; got {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    from ad_core.runs import TRAIN_ON

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="ad-studio",
        description="Train, score and export anomaly-detection runs in the ad-studio workspace.",
        epilog=EXAMPLES,
        formatter_class=formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train a detector on a data file",
        description="Add a data file to the workspace, train a run on it and save the run.",
        epilog=(
            "example:\n"
            "  ad-studio train sample_data/cardio.csv --detector autoencoder \\\n"
            "      --set epochs=20 --set hidden_dims=[64,32] --holdout 0.3\n"
            "  ad-studio train sample_data/machine_series.csv --detector pca --series\n\n"
            "--labels FILE is a CSV with columns row_key,label (0 normal, 1 anomaly); the\n"
            "labels are stored with the dataset, as if given in the app, and the run trains\n"
            "with all the dataset's labels."
        ),
        formatter_class=formatter,
    )
    train.add_argument("data", metavar="DATA", help="CSV, TSV, Parquet, Excel, .npz or .mat file")
    train.add_argument("--detector", required=True, help="detector name, e.g. autoencoder")
    train.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=parse_setting,
        metavar="KEY=VALUE",
        help="a detector setting; the value is read as JSON where it can be (repeatable)",
    )
    train.add_argument("--labels", metavar="FILE", help="CSV with columns row_key,label")
    train.add_argument(
        "--train-on",
        choices=list(TRAIN_ON),
        default="all",
        help="which rows to train on (default: all)",
    )
    train.add_argument(
        "--holdout",
        type=float,
        metavar="SHARE",
        help="share of rows held out for evaluation (default 0.3 with ground truth, else 0)",
    )
    series = train.add_argument_group(
        "series", "analyse a table with a timestamp column as a series, in sliding windows"
    )
    series.add_argument(
        "--series",
        action="store_true",
        help="windows of consecutive points (length proposed from the data's period)",
    )
    series.add_argument("--window", type=int, metavar="N", help="window length in points")
    series.add_argument("--stride", type=int, metavar="N", help="a new window every N points")
    series.add_argument(
        "--normalise",
        choices=("none", "demean", "zscore"),
        default="none",
        help="per-window normalisation (default none)",
    )
    series.add_argument(
        "--point-score",
        choices=("max", "mean"),
        default="max",
        help="a point's score: the max (default) or mean over the windows covering it",
    )
    series.add_argument(
        "--accept",
        action="append",
        choices=("gaps", "irregular"),
        help="accept gaps or irregular steps as they are (windows join the points on either "
        "side); repeatable",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    score = sub.add_parser(
        "score",
        help="score a data file (or a folder of parts) with a trained run",
        description="Score every row of DATA with a saved run and write row_key, score, flag. "
        "The file is read in parts, so it may be larger than memory. With --engine dask the "
        "parts are scored on a Dask cluster (a local one unless --scheduler is given) and "
        "written as a folder of Parquet parts.",
        epilog="examples:\n  ad-studio score 3 new_rows.csv --out scores.parquet\n"
        "  ad-studio score 3 'parts/*.csv' --out scores/ --engine dask\n"
        "  ad-studio score 3 parts/ --out scores/ --engine dask --scheduler tcp://10.0.0.5:8786",
        formatter_class=formatter,
    )
    score.add_argument("run", metavar="RUN", type=int, help="run id (see 'ad-studio runs')")
    score.add_argument(
        "data",
        metavar="DATA",
        help="CSV/TSV or Parquet file, a glob such as 'parts/*.parquet', or a folder of parts",
    )
    score.add_argument(
        "--out",
        required=True,
        help="output: a Parquet file (or CSV when it ends in .csv); with --engine dask a folder",
    )
    score.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="local: stream the parts on this machine (default); dask: score on a cluster",
    )
    score.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786"
    )
    score.add_argument(
        "--workers", type=int, default=2, help="worker processes of the local Dask cluster"
    )
    score.add_argument(
        "--key",
        choices=("auto", "id", "row"),
        default="auto",
        help="row key: the dataset's id column when the data has it (auto), or the row number",
    )
    score.add_argument(
        "--block-mb", type=float, default=None, help="MiB of CSV text per part (default 16)"
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(func=cmd_score)

    runs = sub.add_parser(
        "runs",
        help="list the runs in the workspace",
        description="List the runs in the workspace, newest first.",
        epilog="example:\n  ad-studio runs --dataset 3f2a9c0d1e2b4a5c",
        formatter_class=formatter,
    )
    runs.add_argument("--dataset", metavar="ID", help="only the runs of this dataset")
    runs.set_defaults(func=cmd_runs)

    export = sub.add_parser(
        "export",
        help="zip a run's folder",
        description="Write a zip of a run's folder (model, preprocessor, scores) plus run.json.",
        epilog="example:\n  ad-studio export 3 --out run-3.zip",
        formatter_class=formatter,
    )
    export.add_argument("run", metavar="RUN", type=int, help="run id")
    export.add_argument("--out", metavar="FILE.zip", help="zip file (default run-RUN.zip)")
    export.set_defaults(func=cmd_export)

    app = sub.add_parser(
        "app",
        help="start the dashboard on 127.0.0.1",
        description="Start the ad-studio dashboard (Streamlit) on this machine only.",
        epilog="example:\n  ad-studio app --port 8502",
        formatter_class=formatter,
    )
    app.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (default 8501)")
    app.set_defaults(func=cmd_app)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from ad_core.data import DataError
    from ad_core.detectors import ParameterError
    from ad_core.nn.training import FitCancelled
    from ad_core.store import WorkspaceError

    # ValueError covers the library's other messages for people (unknown detector or setting,
    # a foreign saved model); KeyError an id the workspace does not have.
    return (
        CliError,
        DataError,
        ParameterError,
        FileNotFoundError,
        FitCancelled,
        WorkspaceError,
        KeyError,
        ValueError,
    )


def _sentence(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(str(text).split()) or type(exc).__name__
    return text[0].upper() + text[1:]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 done, 1 user error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except _user_errors() as exc:
        if os.environ.get("AD_STUDIO_DEBUG"):
            raise
        print(f"ad-studio {args.command}: {_sentence(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ad-studio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
