"""A local stand-in for the Zalo OA API, for the bridge's tests: the subset meshmeet uses
(docs/protocol/zalo.md) with its documented answer and error shapes, run as its own process so a
test can stop it (the internet is cut) and start it again on the same port with the same state.

State lives in a SQLite file: followers, tokens, every message (OA -> user and user -> OA).
Faults are set through POST /_ctl/faults: `fail_5xx` (the next N sends answer 502 with an HTML
page, after the message was taken: a proxy failing on the way back), `drop` (the next N sends are
taken and the connection is cut before any answer), `quota` (the next N sends answer -211 out of
quota), `expire_access` (the current access token becomes invalid: -216), `revoke_refresh` (the
refresh token is refused: -14014), `access_ttl_s`. The only mock in these tests: the Zalo cloud.

    python tests/zalo_oa_emulator.py --port P --state FILE --app-id A --app-secret S --refresh-token R
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import time

from aiohttp import web

WINDOW_S = 7 * 86_400.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--app-id", required=True)
    p.add_argument("--app-secret", required=True)
    p.add_argument("--refresh-token", required=True)
    a = p.parse_args()
    db = sqlite3.connect(a.state, isolation_level=None)
    db.executescript("""
        CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT);
        CREATE TABLE IF NOT EXISTS followers (user_id TEXT PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS messages (message_id TEXT PRIMARY KEY, user_id TEXT, src INTEGER, kind TEXT,
            text TEXT, time_ms INTEGER);
    """)
    db.execute("INSERT OR IGNORE INTO kv VALUES ('refresh', ?)", (a.refresh_token,))
    for k, v in (("access", ""), ("access_until", "0"), ("fail_5xx", "0"), ("drop", "0"), ("quota", "0"),
                 ("revoked", "0"), ("access_ttl_s", "90000"), ("refreshes", "0")):
        db.execute("INSERT OR IGNORE INTO kv VALUES (?, ?)", (k, v))

    def kv(k: str) -> str:
        return db.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()[0]

    def setkv(k: str, v: object) -> None:
        db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, str(v)))

    def take(k: str) -> bool:
        n = int(kv(k))
        if n > 0:
            setkv(k, n - 1)
        return n > 0

    def err(code: int, message: str) -> web.Response:
        return web.json_response({"error": code, "message": message})

    def authed(request: web.Request) -> bool:
        tok = request.headers.get("access_token", "")
        return bool(tok) and tok == kv("access") and float(kv("access_until")) > time.time()

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("secret_key") != a.app_secret or form.get("app_id") != a.app_id:
            return web.json_response({"error": -14004, "error_name": "Invalid app", "error_description": "app id or secret"})
        if form.get("grant_type") != "refresh_token" or kv("revoked") == "1" or form.get("refresh_token") != kv("refresh"):
            return web.json_response({"error": -14014, "error_name": "Invalid refresh token",
                                      "error_description": "Refresh token is invalid or expired"})
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        setkv("access", access); setkv("refresh", refresh)
        setkv("access_until", time.time() + float(kv("access_ttl_s")))
        setkv("refreshes", int(kv("refreshes")) + 1)
        return web.json_response({"access_token": access, "refresh_token": refresh, "expires_in": kv("access_ttl_s")})

    async def send(request: web.Request, kind: str) -> web.StreamResponse:
        if not authed(request):
            return err(-216, "Access token is invalid")
        body = await request.json()
        uid = str(body.get("recipient", {}).get("user_id", ""))
        msg = body.get("message", {})
        if kind == "cs":
            text = msg.get("text")
        else:
            els = msg.get("attachment", {}).get("payload", {}).get("elements", [])
            text = "\n".join(e.get("content", "") for e in els)
        if not uid or not isinstance(text, str) or not text:
            return err(-201, "Parameters are invalid")
        if take("quota"):
            return err(-211, "Out of quota")
        if kind == "cs":
            last = db.execute("SELECT max(time_ms) FROM messages WHERE user_id = ? AND src = 1", (uid,)).fetchone()[0]
            if last is None or time.time() - last / 1000 > WINDOW_S:
                return err(-213, "User has not interacted with the OA in the last 7 days")
        elif db.execute("SELECT 1 FROM followers WHERE user_id = ?", (uid,)).fetchone() is None:
            return err(-213, "User is not a follower of the OA")
        mid = secrets.token_hex(16)
        db.execute("INSERT INTO messages VALUES (?, ?, 0, ?, ?, ?)", (mid, uid, kind, text, int(time.time() * 1000)))
        if take("drop"):
            request.transport.abort()  # taken, and the answer never comes
            return web.Response()
        if take("fail_5xx"):
            return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        return web.json_response({"error": 0, "message": "Success", "data": {"message_id": mid, "user_id": uid}})

    async def cs(request: web.Request) -> web.StreamResponse:
        return await send(request, "cs")

    async def promotion(request: web.Request) -> web.StreamResponse:
        return await send(request, "promotion")

    def data_of(request: web.Request) -> dict:
        return json.loads(request.query.get("data", "{}"))

    def rows_json(rows: list) -> list:
        return [{"src": src, "message_id": mid, "from_id": uid if src == 1 else "oa", "to_id": "oa" if src == 1 else uid,
                 "type": "text", "message": text, "time": t} for mid, uid, src, text, t in rows]

    async def getlist(request: web.Request) -> web.Response:
        if not authed(request):
            return err(-216, "Access token is invalid")
        d = data_of(request)
        users = [r[0] for r in db.execute("SELECT user_id FROM followers ORDER BY user_id")]
        page = users[d.get("offset", 0): d.get("offset", 0) + min(50, d.get("count", 50))]
        return web.json_response({"error": 0, "message": "Success", "data": {
            "total": len(users), "count": len(page), "offset": d.get("offset", 0), "users": [{"user_id": u} for u in page]}})

    async def recent(request: web.Request) -> web.Response:
        if not authed(request):
            return err(-216, "Access token is invalid")
        d = data_of(request)
        rows = db.execute("SELECT message_id, user_id, src, text, time_ms FROM messages m WHERE time_ms = "
                          "(SELECT max(time_ms) FROM messages WHERE user_id = m.user_id) ORDER BY time_ms DESC "
                          "LIMIT ? OFFSET ?", (min(10, d.get("count", 10)), d.get("offset", 0))).fetchall()
        return web.json_response({"error": 0, "message": "Success", "data": rows_json(rows)})

    async def conversation(request: web.Request) -> web.Response:
        if not authed(request):
            return err(-216, "Access token is invalid")
        d = data_of(request)
        rows = db.execute("SELECT message_id, user_id, src, text, time_ms FROM messages WHERE user_id = ? "
                          "ORDER BY time_ms DESC, rowid DESC LIMIT ? OFFSET ?",
                          (str(d.get("user_id")), min(10, d.get("count", 10)), d.get("offset", 0))).fetchall()
        return web.json_response({"error": 0, "message": "Success", "data": rows_json(rows)})

    async def faults(request: web.Request) -> web.Response:
        body = await request.json()
        for k in ("fail_5xx", "drop", "quota", "access_ttl_s"):
            if k in body:
                setkv(k, body[k])
        if body.get("expire_access"):
            setkv("access_until", 0)
        if "revoke_refresh" in body:
            setkv("revoked", int(bool(body["revoke_refresh"])))
        return web.json_response({"ok": True})

    async def followers(request: web.Request) -> web.Response:
        for u in (await request.json())["users"]:
            db.execute("INSERT OR IGNORE INTO followers VALUES (?)", (u,))
        return web.json_response({"ok": True})

    async def user_message(request: web.Request) -> web.Response:
        b = await request.json()
        mid = secrets.token_hex(16)
        t = b.get("time_ms") or int(time.time() * 1000)
        db.execute("INSERT INTO messages VALUES (?, ?, 1, 'text', ?, ?)", (mid, b["user_id"], b["text"], t))
        return web.json_response({"message_id": mid, "time_ms": t})

    async def sent(request: web.Request) -> web.Response:
        rows = db.execute("SELECT message_id, user_id, kind, text FROM messages WHERE src = 0 ORDER BY rowid").fetchall()
        return web.json_response({"sent": [dict(zip(("message_id", "user_id", "kind", "text"), r)) for r in rows],
                                  "refreshes": int(kv("refreshes"))})

    app = web.Application()
    app.router.add_post("/v4/oa/access_token", token)
    app.router.add_post("/v3.0/oa/message/cs", cs)
    app.router.add_post("/v3.0/oa/message/promotion", promotion)
    app.router.add_get("/v3.0/oa/user/getlist", getlist)
    app.router.add_get("/v2.0/oa/listrecentchat", recent)
    app.router.add_get("/v2.0/oa/conversation", conversation)
    app.router.add_post("/_ctl/faults", faults)
    app.router.add_post("/_ctl/followers", followers)
    app.router.add_post("/_ctl/user_message", user_message)
    app.router.add_get("/_ctl/sent", sent)
    web.run_app(app, host="127.0.0.1", port=a.port, print=lambda *_: print("ready", flush=True), access_log=None)


if __name__ == "__main__":
    main()
