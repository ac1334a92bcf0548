"""Tree control messages and their bytes: Update (a route advertisement) and Request (ask for a seqno).

Bodies are msgpack arrays with a leading kind number (the link adds the tree service byte 0x30).
Decoding is strict: exact types and lengths, bounded integers, no trailing bytes. Hostile input
raises TreeMessageError and nothing else. This module must never hold state or read clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from ..errors import MeshmeetError

KIND_UPDATE = 1
KIND_REQUEST = 2
MAX_MESSAGE_BYTES = 128
MAX_NODE_ID_CHARS = 64
MAX_SEQNO = (1 << 63) - 1
MAX_METRIC = (1 << 32) - 1
MAX_EPOCH = (1 << 32) - 1
MAX_PRIORITY = (1 << 32) - 1
FLAG_PARENT = 0x01          # the sender has chosen the receiver as its parent
KNOWN_FLAGS = FLAG_PARENT


class TreeMessageError(MeshmeetError):
    """A tree message that is not well formed."""

    def __init__(self, en: str) -> None:
        super().__init__(f"Bản tin cây chuyển tiếp không hợp lệ: {en}", f"Invalid relay-tree message: {en}")


@dataclass(frozen=True)
class Update:
    """The sender's current route: its root (with the root's rank), the root's seqno and the metric."""

    root: str
    epoch: int          # the root's briefing epoch (0 = no briefing)
    priority: int       # the root's priority
    seqno: int          # root-issued sequence number the route was learnt with
    metric: int         # sum of link costs from the sender to the root (0 at the root)
    flags: int = 0      # FLAG_PARENT: the receiver is the sender's parent

    @property
    def is_parent_flag(self) -> bool:
        return bool(self.flags & FLAG_PARENT)


@dataclass(frozen=True)
class Request:
    """Ask the root `root` (forwarded hop by hop up the tree) to issue a seqno of at least `seqno`."""

    root: str
    seqno: int


TreeMessage = Update | Request


def encode(message: TreeMessage) -> bytes:
    """The bytes of one tree message; fields out of range raise TreeMessageError (never sent)."""
    if isinstance(message, Update):
        _node_id(message.root)
        _uint(message.epoch, MAX_EPOCH, "epoch")
        _uint(message.priority, MAX_PRIORITY, "priority")
        _uint(message.seqno, MAX_SEQNO, "seqno")
        _uint(message.metric, MAX_METRIC, "metric")
        if _uint(message.flags, 0xFF, "flags") & ~KNOWN_FLAGS:
            raise TreeMessageError("unknown flags")
        body = [KIND_UPDATE, message.root, message.epoch, message.priority, message.seqno, message.metric, message.flags]
    elif isinstance(message, Request):
        _node_id(message.root)
        _uint(message.seqno, MAX_SEQNO, "seqno")
        body = [KIND_REQUEST, message.root, message.seqno]
    else:
        raise TypeError(f"not a tree message: {message!r}")
    data: bytes = msgpack.packb(body, use_bin_type=True)
    if len(data) > MAX_MESSAGE_BYTES:
        raise TreeMessageError("too long")
    return data


def _uint(value: object, limit: int, what: str) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise TreeMessageError(f"bad {what}")
    return value


def _node_id(value: object) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_NODE_ID_CHARS or not value.isprintable():
        raise TreeMessageError("bad node id")
    return value


def decode(data: bytes) -> TreeMessage:
    """Parse one tree message; raise TreeMessageError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TreeMessageError("not bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise TreeMessageError("too long")
    try:
        body = msgpack.unpackb(
            bytes(data), raw=False, use_list=True, strict_map_key=True,
            max_str_len=MAX_NODE_ID_CHARS * 4, max_bin_len=0, max_array_len=8, max_map_len=0, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types on hostile input
        raise TreeMessageError("not msgpack") from exc
    if type(body) is not list or not body:
        raise TreeMessageError("not an array")
    kind = body[0]
    if type(kind) is not int:
        raise TreeMessageError("bad kind")
    if kind == KIND_UPDATE:
        if len(body) != 7:
            raise TreeMessageError("bad update length")
        flags = _uint(body[6], 0xFF, "flags")
        if flags & ~KNOWN_FLAGS:
            raise TreeMessageError("unknown flags")
        return Update(
            root=_node_id(body[1]),
            epoch=_uint(body[2], MAX_EPOCH, "epoch"),
            priority=_uint(body[3], MAX_PRIORITY, "priority"),
            seqno=_uint(body[4], MAX_SEQNO, "seqno"),
            metric=_uint(body[5], MAX_METRIC, "metric"),
            flags=flags,
        )
    if kind == KIND_REQUEST:
        if len(body) != 3:
            raise TreeMessageError("bad request length")
        return Request(root=_node_id(body[1]), seqno=_uint(body[2], MAX_SEQNO, "seqno"))
    raise TreeMessageError("unknown kind")
