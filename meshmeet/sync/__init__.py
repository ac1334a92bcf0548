"""The sync protocol, sans-IO: how two stores exchange what the other lacks over one link.

Modules: ``session`` (``SyncSession``: version vectors on connect, then batches and document
chunks), ``messages`` (the wire codec, docs/protocol/sync.md), ``swarm`` (who around holds
which chunk, whom to ask: feature swarm/1), ``sim`` (an in-memory network of
sessions for tests and the benchmark). The store it reads and writes is ``meshmeet.store``; the
rules a change must pass are ``meshmeet.meeting``. This package must never open sockets or
import trio: the driver ``meshmeet.node.sync_service`` feeds ``SyncSession``.
"""

from .session import SyncSession

__all__ = ["SyncSession"]
