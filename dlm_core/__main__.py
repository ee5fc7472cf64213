"""``python -m dlm_core``: the command line (see ``dlm_core.cli``)."""

from .cli import main

raise SystemExit(main())
