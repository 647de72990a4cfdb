"""``python -m ad_core``: the ``ad-studio`` command line (see :mod:`ad_core.cli`)."""

import sys

from ad_core.cli import main

sys.exit(main())
