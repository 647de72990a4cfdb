"""What several benchmarks share: running tasks in single-core worker processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def run_tasks(
    tasks: Sequence[Any],
    jobs: int,
    work: Callable[[Any], dict],
    init: Callable[[], Any],
    progress: Callable[[int, int, dict], None],
) -> list[dict]:
    """Return ``work(task)`` of every task, in ``jobs`` worker processes (1: in this one).

    ``init`` limits a process to one core and returns threadpoolctl's limits; in this process
    the limits and torch's thread count are put back afterwards. ``work`` must be picklable
    (a module-level function, or a ``functools.partial`` of one). With workers the results
    come in the order they finish; ``progress(i, n, result)`` is called after each.
    """
    out: list[dict] = []
    if jobs <= 1:
        import torch

        threads = torch.get_num_threads()
        limits = init()
        try:
            for i, task in enumerate(tasks, 1):
                out.append(work(task))
                progress(i, len(tasks), out[-1])
        finally:
            limits.restore_original_limits()
            torch.set_num_threads(threads)
        return out
    with ProcessPoolExecutor(max_workers=jobs, initializer=init) as pool:
        futures = [pool.submit(work, t) for t in tasks]
        for i, fut in enumerate(as_completed(futures), 1):
            out.append(fut.result())
            progress(i, len(tasks), out[-1])
    return out
