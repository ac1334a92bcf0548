"""The Zalo OA webhook route: POST /zalo/webhook, for a node with a public HTTPS address.

Reads at most 64 KiB, hands the exact bytes and the `X-ZEvent-Signature` header to the node
(`zalo_webhook`, local-only for browsers), which checks the signature with the OA secret it alone
holds. This module must never import trio and never read the secret.
"""

from __future__ import annotations

import base64
import json
from typing import Callable

from aiohttp import web

from ..zalo.webhook import HEADER, MAX_BODY_BYTES
from ..api.contract import ApiError
from .gateway import GatewayContext


def make_webhook_setup() -> Callable[[web.Application, GatewayContext], None]:
    def setup(app: web.Application, ctx: GatewayContext) -> None:
        async def webhook(request: web.Request) -> web.Response:
            if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
                return web.json_response({"error": {"code": "too_large"}}, status=413)
            body = await request.content.read(MAX_BODY_BYTES + 1)
            try:
                out = await ctx.api_call("zalo_webhook", {"body_b64": base64.b64encode(body).decode(),
                                                          "signature": request.headers.get(HEADER)})
            except ApiError as e:
                return web.Response(text=json.dumps({"error": {"code": e.code, "vi": e.vi, "en": e.en}},
                                                    ensure_ascii=False), status=e.status, content_type="application/json")
            return web.json_response(out)

        app.router.add_post("/zalo/webhook", webhook)

    return setup
