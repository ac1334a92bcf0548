"""The web side of the slide show: GET /app/slides/{doc_id}/{page}.png for the hall TV.

The node renders the page from its own copy of the document (service.py `slide_page`, through the
gateway's api_call) and names the cached PNG file; this route serves that file with its SHA-256
in `X-Slide-Sha256` (the TV shows it as the image's identity). While the copy is incomplete the
answer is 409 with "Đang tải tài liệu N %". This module must never import trio, read the store,
or serve a file the node did not name.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from ..api.contract import ApiError

DOC_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PAGE_RE = re.compile(r"^[1-9][0-9]{0,4}$")


def _sha256(path: str) -> tuple[bytes, str]:
    data = Path(path).read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def slides_web_setup() -> Callable[[web.Application, Any], None]:
    """A node.web_setups hook mounting the route on the gateway app."""

    def setup(app: web.Application, ctx: Any) -> None:
        async def page(request: web.Request) -> web.Response:
            doc_id, number = request.match_info["doc"], request.match_info["page"]
            if not DOC_RE.match(doc_id) or not PAGE_RE.match(number):
                raise ApiError(400, "bad_request", "Sai mã tài liệu hoặc số trang", "invalid document id or page")
            got = await ctx.api_call("slide_page", {"doc_id": doc_id, "page": int(number)})
            data, digest = await asyncio.get_running_loop().run_in_executor(None, _sha256, got["path"])
            return web.Response(body=data, content_type="image/png",
                                headers={"Cache-Control": "private, max-age=3600", "X-Slide-Sha256": digest,
                                         "X-Slide-Pages": str(got["pages"]), "X-Content-Type-Options": "nosniff"})

        app.router.add_get("/app/slides/{doc}/{page}.png", page)

    return setup
