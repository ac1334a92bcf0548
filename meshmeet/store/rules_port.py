"""What the store needs of the rules it applies to every change: an interface, nothing more.

The store checks each change, local or received, before it merges it, with rules it is given
when opened (`Store(..., rules=...)`): meshmeet.meeting.rules.Rules is the one implementation,
compiled from the tables' specs of the store's schema version. This module must never decide a
rule itself, and the store package must never import the meeting domain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import Rejection
from .schema import TableSpec


class ChangeRules(Protocol):
    """Who may write what, and which changes are well formed (meshmeet.meeting.rules)."""

    by_tid: dict[int, TableSpec]

    def check(self, role: str | None, origin: str, tid: int, op: int, key: tuple, values: dict) -> Rejection | None: ...

    def run_passes(self, role: str | None, origin: str, tid: int, op: int, key_columns: tuple,
                   columns: dict) -> bool: ...


RulesFor = Callable[[dict[str, TableSpec]], ChangeRules]  # the rules for these tables' specs
