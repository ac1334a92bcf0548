"""Service bytes: the first byte of every application message on a link.

After the handshake each application payload is `service byte + body`, and the node
dispatches on that byte. This module only names the values; it must never parse bodies
or hold state.
"""

from __future__ import annotations

ROSTER = 0x10
SYNC = 0x20
TREE = 0x30
MEDIA = 0x40
LORA = 0x50
JOIN = 0x60  # reserved: the join exchange, in case it ever runs inside a link
CERT = 0x70  # HTTPS certificate requests to HQ and issued certificates (meshmeet/node/webapp_service.py)
DATAGRAM = 0x80  # media datagram offers: channel id, UDP port, send key (meshmeet/node/datagram_service.py)
RECOVERY = 0x90  # HQ recovery shares sealed to their holder, and holders' acks (meshmeet/node/recovery_service.py)
CAPABILITIES = 0xA0  # what formats the sender accepts, once per link (meshmeet/wire/capabilities.py)
CLOCK = 0xB0  # wall-clock probes for `meshmeet doctor` (meshmeet/wire/clock.py, meshmeet/node/clock_service.py)
ALL_SERVICES: frozenset[int] = frozenset({ROSTER, SYNC, TREE, MEDIA, LORA, JOIN, CERT, DATAGRAM, RECOVERY, CAPABILITIES, CLOCK})
