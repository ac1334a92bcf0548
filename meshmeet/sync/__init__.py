"""Replicated meeting state: the SQLite store, its change log and merge rules, and the
sans-IO sync protocol. See docs/state.md (merge rules) and docs/protocol/sync.md (wire).
This package must never open sockets; drivers in meshmeet/node feed SyncSession.
"""

from .errors import AuthorityError, ProtocolError, SyncError
from .session import SyncSession
from .store import Store

__all__ = ["AuthorityError", "ProtocolError", "Store", "SyncError", "SyncSession"]
