"""``python -m gridbot``: the same as the ``gridbot`` console script."""

from gridbot.cli import main

raise SystemExit(main())
