"""Values the link protocol hands to its driver: roles, states, close codes and events.

Everything here is an immutable value (frozen dataclasses, enums). This module must never
hold connection state or touch bytes on the wire; the codes' numbers are part of the
protocol (docs/protocol/link.md) and must never be renumbered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from ..errors import MeshmeetError


class Role(enum.Enum):
    """Which end dialed: the initiator sends msg1 and is the crypto_kx client."""

    INITIATOR = "initiator"
    RESPONDER = "responder"


class State(enum.Enum):
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"


class CloseCode(enum.IntEnum):
    """Why a link ended. Sent as one byte in a close frame; also reported locally."""

    NORMAL = 0
    GOING_AWAY = 1
    PROTOCOL_ERROR = 2
    DECRYPT_FAILED = 3
    FRAME_TOO_LARGE = 4
    TIMEOUT = 5
    CONNECTION_LOST = 6
    UNSUPPORTED_VERSION = 16
    DIFFERENT_COMMUNE = 17
    NOT_ON_ROSTER = 18
    BAD_SIGNATURE = 19
    BAD_KEY = 20
    UNEXPECTED_PEER = 21
    HANDSHAKE_TIMEOUT = 22


CLEAN_CODES: frozenset[int] = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY})

# code -> (Vietnamese, English) for operators; ConnectionClosed.reason carries the English.
REASONS: dict[int, tuple[str, str]] = {
    CloseCode.NORMAL: ("đã đóng", "closed"),
    CloseCode.GOING_AWAY: ("nút đang tắt", "going away"),
    CloseCode.PROTOCOL_ERROR: ("lỗi giao thức", "protocol error"),
    CloseCode.DECRYPT_FAILED: ("giải mã thất bại: dữ liệu bị sửa, lặp lại hoặc mất", "decryption failed"),
    CloseCode.FRAME_TOO_LARGE: ("khung dữ liệu quá lớn", "frame too large"),
    CloseCode.TIMEOUT: ("nút bên kia không phản hồi", "peer not responding"),
    CloseCode.CONNECTION_LOST: ("mất kết nối", "connection lost"),
    CloseCode.UNSUPPORTED_VERSION: ("phiên bản giao thức không được hỗ trợ", "unsupported version"),
    CloseCode.DIFFERENT_COMMUNE: ("nút thuộc xã khác", "different commune"),
    CloseCode.NOT_ON_ROSTER: ("nút không có trong danh sách thành viên", "not on roster"),
    CloseCode.BAD_SIGNATURE: ("chữ ký không hợp lệ", "bad signature"),
    CloseCode.BAD_KEY: ("khóa tạm không hợp lệ", "bad ephemeral key"),
    CloseCode.UNEXPECTED_PEER: ("không phải nút cần kết nối", "unexpected peer"),
    CloseCode.HANDSHAKE_TIMEOUT: ("hết thời gian bắt tay", "handshake timeout"),
}


def reason_of(code: int) -> str:
    """The English reason for a close code (for logs and ConnectionClosed.reason)."""
    return REASONS.get(code, ("", f"closed with code {code}"))[1]


@dataclass(frozen=True)
class Peer:
    """The authenticated other end of a link."""

    short_id: int
    public_key: bytes
    node_id: str


@dataclass(frozen=True)
class HandshakeComplete:
    peer_short_id: int
    peer_public_key: bytes
    peer_node_id: str


@dataclass(frozen=True)
class MessageReceived:
    payload: bytes


@dataclass(frozen=True)
class RttSample:
    rtt_s: float
    smoothed_rtt_s: float


@dataclass(frozen=True)
class ConnectionClosed:
    """The link is over. `error` is False only for a deliberate NORMAL/GOING_AWAY close."""

    reason: str
    code: int
    by_peer: bool
    error: bool


Event = Union[HandshakeComplete, MessageReceived, RttSample, ConnectionClosed]


def operator_error(event: ConnectionClosed) -> MeshmeetError:
    """The bilingual one-line error an operator sees for a closed link."""
    vi, en = REASONS.get(event.code, (f"liên kết bị đóng (mã {event.code})", event.reason))
    side_vi, side_en = ("do nút bên kia", "by peer") if event.by_peer else ("tại nút này", "locally")
    return MeshmeetError(f"Liên kết bị đóng {side_vi}: {vi}", f"link closed {side_en}: {en}")
