"""``python -m histoprog``: the command-line interface."""

from histoprog.cli import main

raise SystemExit(main())
