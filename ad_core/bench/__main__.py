"""Dispatch ``python -m ad_core.bench NAME ...`` to ``ad_core.bench.NAME.main``."""

from __future__ import annotations

import sys
from importlib import import_module

BENCHMARKS = {
    "odds": "Deep SAD's Table 3 protocol on the six ODDS sets",
    "speed": "fit/score throughput against PyOD on a 100k x 32 table",
    "app": "dashboard server times, two trainings at once, the Deep SAD retrain",
    "holes": "compact VAE and vacant holes on MNIST / Fashion-MNIST",
    "labels": "label storage: commit time, two writers, restart, id change, undo, import",
    "scale": "scoring 1M rows (CSV, Parquet) locally and on Dask; the app with 1M rows",
    "loop": "the label loop with a simulated expert: queue strategies, warm retrain, peers",
    "series": "NAB windows and ECG5000 beats: seq2seq, BiGAN, PCA and the rest",
    "unsup": "unsupervised detectors and the ensemble on ODDS, ECG5000, KDD, MNIST",
    "semi": "10 % of the anomalies labelled: XGBOD, Deep SAD, boosting, Isolation Forest",
    "augment": "self-supervision: each augmentation on anomalies of known kind; labels choose",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in BENCHMARKS:
        print("usage: python -m ad_core.bench NAME [options]\n\nbenchmarks:")
        for name, what in BENCHMARKS.items():
            print(f"  {name:6s} {what}")
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    module = import_module(f"ad_core.bench.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
