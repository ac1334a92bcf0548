"""The link protocol, sans-IO: handshake, encrypted frames, keepalive/RTT and close.

Import from here: `from meshmeet.wire import LinkConnection, Role, ...`. The byte-exact
specification is docs/protocol/link.md. Nothing in this package may do I/O or read a clock.
"""

from .connection import (
    DEAD_AFTER_KEEPALIVES,
    HANDSHAKE_TIMEOUT_S,
    KEEPALIVE_S,
    LinkConnection,
    LinkStateError,
)
from .events import (
    CloseCode,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    MessageReceived,
    Peer,
    Role,
    RttSample,
    State,
    operator_error,
    reason_of,
)
from .frames import FRAME_OVERHEAD_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES
from .handshake import SETUP_BYTES

__all__ = [
    "DEAD_AFTER_KEEPALIVES",
    "FRAME_OVERHEAD_BYTES",
    "HANDSHAKE_TIMEOUT_S",
    "KEEPALIVE_S",
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_BYTES",
    "SETUP_BYTES",
    "CloseCode",
    "ConnectionClosed",
    "Event",
    "HandshakeComplete",
    "LinkConnection",
    "LinkStateError",
    "MessageReceived",
    "Peer",
    "Role",
    "RttSample",
    "State",
    "operator_error",
    "reason_of",
]
