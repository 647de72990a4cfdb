"""``python -m ad_core.bench labels``: how labels are stored, and what survives what.

On the ECG5000 sample in a fresh workspace: the time to commit one label; two processes
labelling at once (400 labels each, 200 rows shared); a restart; the id column set to
"ignore" and back; undo across two people; export and import of 1,000 labels, and an import
with one unknown key. Prints one line per figure and writes them to benchmarks/labels.md.
"""

import argparse
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ad_core.data import load_sample, sample_schema
from ad_core.store import Workspace


def writer(home, dataset_id, name, keys, barrier):
    ws = Workspace(home)
    barrier.wait()
    for k in keys:
        ws.set_labels(dataset_id, [k], 1 if name == "alice" else 0, name)
    ws.close()


def measure(say) -> None:
    """Measure every figure; ``say(line)`` receives each one."""
    home = tempfile.mkdtemp()
    ws = Workspace(home)
    frame = load_sample("ecg5000")
    dataset_id = ws.add_dataset("ecg", frame, sample_schema("ecg5000", frame).to_dict())
    keys = frame["beat_id"].astype(str).tolist()

    # 1. one label, committed (synchronous=FULL) before the call returns
    lat = []
    for k in keys[:300]:
        t = time.perf_counter()
        ws.set_labels(dataset_id, [k], 1, "alice")
        lat.append((time.perf_counter() - t) * 1000)
    say(
        f"commit of one label: median {statistics.median(lat):.2f} ms, "
        f"p95 {np.percentile(lat, 95):.2f} ms (n=300)"
    )
    ws.undo_last_label(dataset_id)  # keep the history honest: undo works on a long history
    for _ in range(299):
        ws.undo_last_label(dataset_id)
    assert ws.labels(dataset_id) == {}

    # 2. two people in two processes, 400 labels each, 200 rows shared, at once
    n_before = int((ws.label_history(dataset_id)["kind"] == "set").sum())
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    a, b = keys[:400], keys[200:600]
    procs = [
        ctx.Process(target=writer, args=(home, dataset_id, n, ks, barrier))
        for n, ks in (("alice", a), ("bob", b))
    ]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    secs = time.perf_counter() - t
    history = ws.label_history(dataset_id)
    given = int((history["kind"] == "set").sum()) - n_before
    say(
        f"two writers at once: {given} of 800 labels stored "
        f"({len(ws.labels(dataset_id))} rows labelled, "
        f"{len(ws.label_disagreements(dataset_id))} disagreements listed) in {secs:.1f} s"
    )

    # 3. restart: a new Workspace (another process would do the same) sees every label
    before = ws.labels(dataset_id)
    ws.close()
    ws = Workspace(home)
    say(
        f"after restart: {sum(ws.labels(dataset_id)[k] == v for k, v in before.items())}"
        f" of {len(before)} labels identical"
    )

    # 4. id change: none shown or moved; all back when the id is set back
    schema = ws.get_dataset(dataset_id).schema
    by_row = {**schema, "roles": {**schema["roles"], "beat_id": "ignore"}}
    ws.update_dataset_schema(dataset_id, by_row)
    moved = len(ws.labels(dataset_id))
    hidden = sum(ws.hidden_labels(dataset_id).values())
    ws.update_dataset_schema(dataset_id, schema)
    say(
        f"id column set to ignore: {moved} labels shown on row numbers, {hidden} hidden; "
        f"set back: {sum(ws.labels(dataset_id)[k] == v for k, v in before.items())} "
        f"of {len(before)} back on their rows"
    )

    # 5. undo across people: Alice's undo leaves Bob's 200, Bob's undo brings back none of hers
    ws.undo_last_label(dataset_id, "alice")  # one of her 400 single-label steps
    n_alice = n_bob = 0
    while ws.undo_last_label(dataset_id, "alice"):
        n_alice += 1
    after_alice = ws.labels(dataset_id)
    while ws.undo_last_label(dataset_id, "bob"):
        n_bob += 1
    say(
        f"undo: after all of Alice's undos {len(after_alice)} rows keep Bob's label; "
        f"after all of Bob's, {len(ws.labels(dataset_id))} labels left (0 = none of "
        "Alice's withdrawn labels came back)"
    )

    # 6. export / import of 1,000 labels
    ws.set_labels(dataset_id, keys[:1000], 1, "alice")
    t = time.perf_counter()
    data = ws.labels_csv(dataset_id)
    t_export = time.perf_counter() - t
    other = Workspace(tempfile.mkdtemp())
    copy = other.add_dataset("ecg", frame, sample_schema("ecg5000", frame).to_dict())
    t = time.perf_counter()
    done = other.import_labels(copy, data, "carol")
    t_import = time.perf_counter() - t
    bad = data + b"no-such-beat,1,anomaly,x,now,id:beat_id,\n"
    n_before = len(other.label_history(copy))
    try:
        other.import_labels(copy, bad, "carol")
    except ValueError:
        pass
    say(
        f"export of 1,000 labels {len(data) / 1024:.0f} KiB in {t_export * 1000:.0f} ms; "
        f"import {done.n_rows} in {t_import * 1000:.0f} ms; a file with one unknown key: "
        f"{len(other.label_history(copy)) - n_before} entries written"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ad_core.bench labels",
        description="Label storage: commit time, two writers, restart, id change, undo, "
        "export/import.",
    )
    parser.add_argument("--out", default="benchmarks/labels.md")
    args = parser.parse_args(argv)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line)
        lines.append(line)

    measure(say)
    text = "\n".join(
        [
            "# Labels: storage and what survives what",
            "",
            "Command: `python -m ad_core.bench labels`",
            "",
            f"On the ECG5000 sample (1,000 beats keyed by beat_id) in a fresh workspace on "
            f"{platform.machine()}, Python {platform.python_version()}.",
            "",
            *[f"- {line}" for line in lines],
            "",
        ]
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
