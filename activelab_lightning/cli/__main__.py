"""``python -m activelab_lightning.cli``: the same as the ``activelab`` console script."""

from __future__ import annotations

import sys

from activelab_lightning.cli import main

sys.exit(main())
