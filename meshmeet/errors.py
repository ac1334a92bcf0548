"""Errors an operator can read: one line, Vietnamese first, English second.

Every error that reaches the command line is a MeshmeetError. This module must never
format tracebacks or log; the CLI prints `str(error)` and exits with `error.exit_code`.
"""

from __future__ import annotations


class MeshmeetError(Exception):
    """An error with a message in Vietnamese and English."""

    exit_code: int = 1

    def __init__(self, vi: str, en: str, *, exit_code: int | None = None) -> None:
        super().__init__(f"{vi} / {en}")
        self.vi = vi
        self.en = en
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(MeshmeetError):
    """The data directory or its config file is missing, corrupt or unsafe."""

    exit_code = 2


class NotRunningError(MeshmeetError):
    """A command needed the running node and found none."""

    exit_code = 3


def leaf_errors(group: BaseExceptionGroup) -> list:
    """The plain exceptions inside a (nested) exception group, in order (a node's task failed
    inside trio's nursery: the CLI shows these, not a traceback)."""
    out: list = []
    for e in group.exceptions:
        out.extend(leaf_errors(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
