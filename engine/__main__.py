"""``python -m engine``: the same as the ``framering`` command."""

from engine.cli import main

raise SystemExit(main())
