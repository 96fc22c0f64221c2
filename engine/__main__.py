"""``python -m framering``: the same as the ``framering`` command."""

from framering.cli import main

raise SystemExit(main())
