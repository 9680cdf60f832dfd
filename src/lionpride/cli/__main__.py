"""``python -m lionpride.cli``: the same as the ``lionpride`` command."""

from __future__ import annotations

from lionpride.cli import main

raise SystemExit(main())
