"""Zalo OA webhook events: the signature check and the events the bridge takes in.

Zalo signs each event: header `X-ZEvent-Signature: mac=<hex>` with
mac = SHA-256(app_id + raw body + timestamp + OA secret key), `timestamp` being the event's own
(milliseconds, in the JSON body). We compare in constant time, refuse events older than
MAX_AGE_S (a replayed capture) and take `user_send_text` only. Pure: this module must never log
the secret or a user id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

MAX_BODY_BYTES = 64 * 1024
MAX_AGE_S = 24 * 3600.0
HEADER = "X-ZEvent-Signature"


@dataclass(frozen=True)
class UserText:
    message_id: str
    user_id: str
    text: str
    time_ms: int


class WebhookError(Exception):
    def __init__(self, status: int, vi: str, en: str) -> None:
        super().__init__(en)
        self.status, self.vi, self.en = status, vi, en


def mac_of(app_id: str, body: bytes, timestamp: str, oa_secret: str) -> str:
    return hashlib.sha256(app_id.encode() + body + timestamp.encode() + oa_secret.encode()).hexdigest()


def verify(app_id: str, oa_secret: str, body: bytes, header: str | None, now: float) -> UserText | None:
    """The event when signed by the OA and fresh; None for a well-signed event we do not take in;
    WebhookError (401 / 400) otherwise."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookError(413, "Sự kiện quá lớn", "event too large")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError(400, "Sự kiện không đọc được", "unreadable event") from None
    ts = doc.get("timestamp") if isinstance(doc, dict) else None
    if not isinstance(ts, (str, int)) or not str(ts).isdigit():
        raise WebhookError(400, "Sự kiện thiếu thời điểm", "event without a timestamp")
    given = (header or "").strip()
    given = given[4:] if given.startswith("mac=") else given
    if not hmac.compare_digest(given.lower(), mac_of(app_id, body, str(ts), oa_secret)):
        raise WebhookError(401, "Chữ ký sự kiện Zalo không đúng", "wrong Zalo event signature")
    if abs(now - int(ts) / 1000.0) > MAX_AGE_S:
        raise WebhookError(400, "Sự kiện Zalo quá cũ", "stale Zalo event")
    if doc.get("event_name") != "user_send_text" or doc.get("app_id") not in (app_id, None):
        return None
    sender, message = doc.get("sender") or {}, doc.get("message") or {}
    uid, mid, text = sender.get("id"), message.get("msg_id"), message.get("text")
    if not (isinstance(uid, str) and isinstance(mid, str) and isinstance(text, str) and 0 < len(mid) <= 128
            and 0 < len(uid) <= 64):
        raise WebhookError(400, "Sự kiện tin nhắn thiếu trường", "message event with missing fields")
    return UserText(mid, uid, text, int(ts))
