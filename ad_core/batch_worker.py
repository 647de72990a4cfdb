"""Imported by each Dask worker as it starts (``preload``): torch and the detectors, ready.

Without it a worker pays for importing torch on its first part, one worker after another as
parts arrive; with it the workers import while the client plans the job.
"""

import torch  # noqa: F401

import ad_core.detectors  # noqa: F401
import ad_core.nn  # noqa: F401
