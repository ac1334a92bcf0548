"""Open a node's replicated store under the meeting's rules: the one place the two are joined.

The store (meshmeet.store) merges changes and never imports this domain; it is given the rules
(meeting/rules.py) here. This module must never hold state or open anything but the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..membership.identity import KeyPair
from ..store.db import Authority, Store
from .rules import Rules


def open_store(path: str | Path, key: KeyPair, authority: Authority, **options: Any) -> Store:
    """A Store at `path` whose every change, local or received, passes the meeting's rules.
    `options`: Store's keywords (clock, schema_version, exclusive)."""
    return Store(path, key, authority, rules=Rules, **options)
