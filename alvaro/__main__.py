"""``python -m alvaro``: the same as the ``alvaro`` command."""

from .cli import main

raise SystemExit(main())
