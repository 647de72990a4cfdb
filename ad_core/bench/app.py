"""``python -m ad_core.bench app``: server times of the dashboard, and of trainings it runs.

Three parts (``--only PART``, repeatable, runs some of them; default all):

- ``dashboard``: with 100k rows, the rerun after a threshold change (<= 150 ms), opening the
  Scores page of a trained run (<= 1 s), and UMAP of 50k latent codes (<= 30 s, then read
  from the run folder).
- ``training``: two Deep SAD trainings (default settings, 4,800 x 5 tables) started together
  through the app's ``start_training``, against each alone (goal: each at most 2.5x its
  time alone); with the torch threads sized per job (now) and at the process default
  (before), and, for comparison, in threads of one process (the path before a process per
  job).
- ``retrain``: the Deep SAD retrain with 10 labels on the ECG5000 sample.

Writes benchmarks/app.md: one section per part; a run replaces the sections it measured and
keeps the others. The measuring itself lives with the app (``ad_studio_ui.bench``), imported
only when this runs: ad_core never imports Streamlit.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from importlib import import_module
from pathlib import Path

PARTS = ("dashboard", "training", "retrain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ad_core.bench app",
        description="Time the dashboard's threshold rerun, Scores page and UMAP map, two "
        "trainings at once, and the Deep SAD retrain.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="measure only this part (repeat for several; default: all)",
    )
    parser.add_argument("--rows", type=int, default=100_000, help="dashboard: table rows")
    parser.add_argument("--features", type=int, default=32, help="dashboard: table features")
    parser.add_argument("--umap-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=10, help="threshold changes to time")
    parser.add_argument("--no-umap", action="store_true", help="skip the UMAP measurements")
    parser.add_argument("--train-rows", type=int, default=4_800, help="training: table rows")
    parser.add_argument("--train-features", type=int, default=5, help="training: features")
    parser.add_argument(
        "--train-repeats", type=int, default=3, help="training: measurements of each way"
    )
    parser.add_argument(
        "--no-threads",
        action="store_true",
        help="training: skip the comparison with a thread per job (the path before processes)",
    )
    parser.add_argument(
        "--no-prefilled",
        action="store_true",
        help="retrain: skip the retrain with the Label page form's starting settings",
    )
    parser.add_argument(
        "--retrain-repeats", type=int, default=3, help="retrain: runs of each retrain (median)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training and retrain: every epoch count (quick checks; default: the app's "
        "default settings, which are what the report is about)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/app.md"))
    args = parser.parse_args(argv)
    parts = [p for p in PARTS if p in (args.only or PARTS)]

    bench = import_module("ad_studio_ui.bench")
    command = ("python -m ad_core.bench app " + shlex.join(argv or [])).strip()
    sections: dict[str, str] = {}
    for part in parts:
        with tempfile.TemporaryDirectory(prefix=f"ad_studio_bench_{part}_") as home:
            if part == "dashboard":
                timings = bench.run(
                    Path(home),
                    rows=args.rows,
                    features=args.features,
                    umap_rows=args.umap_rows,
                    repeats=args.repeats,
                    with_umap=not args.no_umap,
                )
                sections[part] = bench.dashboard_section(timings, command)
            elif part == "training":
                timings = bench.run_training(
                    Path(home),
                    rows=args.train_rows,
                    features=args.train_features,
                    epochs=args.epochs,
                    modes=tuple(
                        m for m in bench.MODES if not (args.no_threads and m.startswith("threads"))
                    ),
                    repeats=args.train_repeats,
                )
                sections[part] = bench.training_section(timings, command)
            else:
                timings = bench.run_retrain(
                    Path(home),
                    epochs=args.epochs,
                    with_prefilled=not args.no_prefilled,
                    repeats=args.retrain_repeats,
                )
                sections[part] = bench.retrain_section(timings, command)
        print(sections[part], flush=True)
    existing = args.out.read_text() if args.out.exists() else None
    text = bench.merge_report(existing, sections)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
