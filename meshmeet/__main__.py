"""`python -m meshmeet` is the same as the `meshmeet` command."""

from .cli import main

raise SystemExit(main())
