"""The subset of the Zalo OA API the bridge uses, sans-IO: requests as values, responses judged.

Endpoints (docs/protocol/zalo.md, with the error shapes and the codes we act on):
- token refresh: POST {oauth}/v4/oa/access_token, header `secret_key: <app secret>`, form
  `app_id`, `grant_type=refresh_token`, `refresh_token` -> `{"access_token", "refresh_token",
  "expires_in"}` (a refresh token is single use: the new one replaces it) or `{"error": <negative>,
  "error_name", "error_description"}`.
- send a customer-service message: POST {api}/v3.0/oa/message/cs, header `access_token`, JSON
  `{"recipient": {"user_id"}, "message": {"text"}}`; a promotion to a follower:
  POST {api}/v3.0/oa/message/promotion with a template of header + text elements. Answer:
  `{"error": 0, "message": "Success", "data": {"message_id", "user_id"}}` or `{"error": <code>, "message"}`.
- followers: GET {api}/v3.0/oa/user/getlist?data={"offset","count","is_follower":true}.
- recent conversations: GET {api}/v2.0/oa/listrecentchat?data={"offset","count"}; one user's
  conversation: GET {api}/v2.0/oa/conversation?data={"user_id","offset","count"}; messages are
  `{"src": 0 OA | 1 user, "message_id", "from_id", "to_id", "type", "message", "time" (ms)}`.
Pure: this module must never open a socket or read a clock.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field

API_BASE = "https://openapi.zalo.me"
OAUTH_BASE = "https://oauth.zaloapp.com"
PAGE_COUNT = 50          # followers per page (the API's maximum)
CHAT_COUNT = 10          # messages per conversation page (the API's maximum)
MAX_TEXT_CHARS = 2000    # a CS message's text
MAX_RESPONSE_BYTES = 1024 * 1024

# Error codes we act on (others fail the item with the OA's message shown to the chair).
TOKEN_ERRORS = frozenset({-216, -124})        # access token invalid / expired: refresh, then again
RATE_ERRORS = frozenset({-32})                # too many requests a minute: wait a minute
QUOTA_ERRORS = frozenset({-211})              # out of the OA's message quota: wait (an hour)
RATE_WAIT_S = 60.0
QUOTA_WAIT_S = 3600.0


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class Ok:
    data: dict | list


@dataclass(frozen=True)
class Retry:
    """Try again later (network, 5xx, rate or quota); `after_s` at least."""

    reason: str
    after_s: float
    code: int | None = None


@dataclass(frozen=True)
class TokenInvalid:
    reason: str


@dataclass(frozen=True)
class Failed:
    """The OA refused the request for good: its code and message."""

    code: int
    message: str


Outcome = Ok | Retry | TokenInvalid | Failed


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float


@dataclass(frozen=True)
class RefreshRejected:
    """The refresh token is no longer accepted: only a new `meshmeet zalo setup` helps."""

    code: int
    message: str


def _q(data: dict) -> str:
    return urllib.parse.quote(json.dumps(data, separators=(",", ":")))


def refresh_request(oauth_base: str, app_id: str, app_secret: str, refresh_token: str) -> Request:
    body = urllib.parse.urlencode({"app_id": app_id, "grant_type": "refresh_token",
                                   "refresh_token": refresh_token}).encode()
    return Request("POST", f"{oauth_base}/v4/oa/access_token",
                   {"secret_key": app_secret, "Content-Type": "application/x-www-form-urlencoded"}, body)


def cs_request(api_base: str, token: str, user_id: str, text: str) -> Request:
    body = {"recipient": {"user_id": user_id}, "message": {"text": text[:MAX_TEXT_CHARS]}}
    return Request("POST", f"{api_base}/v3.0/oa/message/cs", {"access_token": token, "Content-Type": "application/json"},
                   json.dumps(body, ensure_ascii=False).encode())


def promotion_request(api_base: str, token: str, user_id: str, title: str, text: str) -> Request:
    elements = [{"type": "header", "content": title[:100]}, {"type": "text", "align": "left", "content": text[:MAX_TEXT_CHARS]}]
    body = {"recipient": {"user_id": user_id},
            "message": {"attachment": {"type": "template", "payload": {"template_type": "promotion", "elements": elements}}}}
    return Request("POST", f"{api_base}/v3.0/oa/message/promotion",
                   {"access_token": token, "Content-Type": "application/json"}, json.dumps(body, ensure_ascii=False).encode())


def followers_request(api_base: str, token: str, offset: int) -> Request:
    return Request("GET", f"{api_base}/v3.0/oa/user/getlist?data=" + _q({"offset": offset, "count": PAGE_COUNT,
                                                                         "is_follower": True}),
                   {"access_token": token})


def recent_chats_request(api_base: str, token: str, offset: int = 0) -> Request:
    return Request("GET", f"{api_base}/v2.0/oa/listrecentchat?data=" + _q({"offset": offset, "count": CHAT_COUNT}),
                   {"access_token": token})


def conversation_request(api_base: str, token: str, user_id: str, offset: int = 0) -> Request:
    return Request("GET", f"{api_base}/v2.0/oa/conversation?data=" + _q({"user_id": user_id, "offset": offset,
                                                                         "count": CHAT_COUNT}),
                   {"access_token": token})


def _json(body: bytes) -> dict | None:
    if len(body) > MAX_RESPONSE_BYTES:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def judge(status: int | None, body: bytes) -> Outcome:
    """One API answer (status None: no answer at all) -> what to do."""
    if status is None:
        return Retry("no answer (network)", 0.0)
    if status >= 500 or status == 429:
        return Retry(f"HTTP {status}", 0.0)
    doc = _json(body)
    if doc is None or not isinstance(doc.get("error", 0), int):
        return Retry(f"HTTP {status}: not a JSON answer", 0.0)
    code = doc.get("error", 0)
    message = str(doc.get("message") or doc.get("error_description") or "")[:300]
    if code == 0 and status < 400:
        data = doc.get("data")
        return Ok(data if isinstance(data, (dict, list)) else {})
    if code in TOKEN_ERRORS:
        return TokenInvalid(f"{code}: {message}")
    if code in RATE_ERRORS:
        return Retry(f"{code}: {message}", RATE_WAIT_S, code)
    if code in QUOTA_ERRORS:
        return Retry(f"{code}: {message}", QUOTA_WAIT_S, code)
    return Failed(code if code else -status, message or f"HTTP {status}")


def judge_refresh(status: int | None, body: bytes, now: float) -> Tokens | RefreshRejected | Retry:
    if status is None or status >= 500 or status == 429:
        return Retry("token refresh: " + ("no answer" if status is None else f"HTTP {status}"), 0.0)
    doc = _json(body)
    if doc is None:
        return Retry(f"token refresh: HTTP {status}: not a JSON answer", 0.0)
    access, refresh = doc.get("access_token"), doc.get("refresh_token")
    if isinstance(access, str) and access and isinstance(refresh, str) and refresh:
        try:
            expires = float(doc.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires = 3600.0
        return Tokens(access, refresh, now + max(60.0, expires))
    code = doc.get("error")
    return RefreshRejected(code if isinstance(code, int) else -status,
                           str(doc.get("error_description") or doc.get("error_name") or doc.get("message") or "")[:300])


def message_id_of(data: dict | list) -> str | None:
    mid = data.get("message_id") if isinstance(data, dict) else None
    return mid if isinstance(mid, str) and 0 < len(mid) <= 128 else None


@dataclass(frozen=True)
class ChatMessage:
    message_id: str
    from_user: bool
    user_id: str
    text: str
    time_ms: int


def chat_messages(data: dict | list) -> list[ChatMessage]:
    """The well-formed text messages of a listrecentchat/conversation answer (others skipped)."""
    out = []
    for m in data if isinstance(data, list) else []:
        if not isinstance(m, dict):
            continue
        mid, src, text, t = m.get("message_id"), m.get("src"), m.get("message"), m.get("time")
        user = m.get("from_id") if src == 1 else m.get("to_id")
        if (isinstance(mid, str) and 0 < len(mid) <= 128 and src in (0, 1) and isinstance(text, str)
                and isinstance(user, (str, int)) and isinstance(t, int)):
            out.append(ChatMessage(mid, src == 1, str(user), text, t))
    return out


def follower_ids(data: dict | list) -> tuple[list[str], int]:
    """(user ids, total) of a getlist answer."""
    if not isinstance(data, dict):
        return [], 0
    users = data.get("users") if isinstance(data.get("users"), list) else []
    total = data.get("total") if isinstance(data.get("total"), int) else 0
    return [str(u["user_id"]) for u in users if isinstance(u, dict) and isinstance(u.get("user_id"), (str, int))], total
