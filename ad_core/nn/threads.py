"""How many torch threads one training job gets, so that concurrent jobs do not oversubscribe.

Small networks (the tabular MLPs here) gain nothing from a second intra-op thread: Deep SAD on
a 4,800 x 5 table fits in the same time with 1 or 2 threads on 2 cores. But OpenMP threads
spin while they wait, so two jobs of 2 threads each on 2 cores, or one job beside another
process, slow each other down by far more than 2x (an issue report: 8 s alone, 310 s beside
another training). So a job gets the cores divided by the jobs running at once, and one
thread when its network is small enough that more would only spin.

The app trains each job in a process of its own (threads of one process take turns on the
interpreter lock), and that process applies the count with ``torch.set_num_threads`` and
threadpoolctl. Within one process the count is not a clean per-thread setting: a thread's
first torch call starts from the count last set by any thread.
"""

from __future__ import annotations

import os

#: below this many multiply-adds per training step (batch x weights), one thread is as fast
SMALL_STEP_FLOPS = 64 * 2**20


def usable_cores() -> int:
    """Return the CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def job_threads(n_jobs: int, *, step_flops: float | None = None, cores: int | None = None) -> int:
    """Return the intra-op thread count for one of ``n_jobs`` concurrent training jobs.

    ``step_flops``: multiply-adds of one optimisation step (batch size x network weights),
    when known; small steps get one thread.
    """
    cores = usable_cores() if cores is None else max(1, int(cores))
    share = max(1, cores // max(1, int(n_jobs)))
    if step_flops is not None and step_flops < SMALL_STEP_FLOPS:
        return 1
    return share
