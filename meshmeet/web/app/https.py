"""The HTTPS listener on the LAN: a second site, with TLS, on the gateway's own aiohttp runner.

The gateway serves HTTP on localhost (the TV); tablets need a secure context, so the same app is
also served over TLS on the configured LAN address. The certificate is reloaded in place when a
hall receives (or renews) its certificate from HQ, and the commune CRL when a new one arrives
(a client certificate it revokes then fails the handshake). This module must never build routes, and never
touch the CA key: it only reads DIR/tls/node.{key,crt} through meshmeet.web.tls.
"""

from __future__ import annotations

import errno
import logging
import ssl
from pathlib import Path

from aiohttp import web

from .. import tls

log = logging.getLogger(__name__)


class HttpsListener:
    """Serves the gateway's app over TLS on host:port once a node certificate exists.

    A second `web.TCPSite` on the gateway's own `AppRunner` (aiohttp's public API), added when
    the gateway starts serving and stopped with the runner. Runs on the web loop.
    """

    def __init__(self, data_dir: Path, host: str, port: int) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.url: str | None = None
        self.error: str | None = None
        self._runner: web.AppRunner | None = None
        self._ctx: ssl.SSLContext | None = None
        self._site: web.TCPSite | None = None

    async def attach(self, runner: web.AppRunner) -> None:
        """GatewayContext.on_serving hook: listen if we have a certificate (else wait for `reload`)."""
        self._runner = runner
        await self.reload()

    async def reload(self) -> None:
        """Load (or re-load) the certificate; start listening the first time it is available."""
        if self._runner is None:
            return
        if tls.load_node_cert(self.data_dir) is None:
            self.error = "no certificate yet"
            return
        try:
            if self._ctx is None:
                self._ctx = tls.server_context(self.data_dir)
            else:  # new connections use the new certificate and CRL; open ones keep theirs
                tls.refresh_context(self._ctx, self.data_dir)
        except (OSError, ssl.SSLError, tls.TlsError) as e:
            self.error = f"certificate unusable: {e}"
            log.error("HTTPS: %s", self.error)
            return
        if self._site is not None:
            self.error = None
            return
        before = {tuple(a) for a in self._runner.addresses}
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ctx, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            why = "port in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            self.error = f"cannot listen on {self.host}:{self.port}: {why}"
            log.warning("HTTPS: %s (the LAN tablets cannot connect; HTTP on localhost still works)", self.error)
            return
        self._site = site
        bound = next(a for a in self._runner.addresses if tuple(a) not in before)
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.port = bound[1]
        self.url = f"https://{shown}:{bound[1]}"
        self.error = None
        log.info("HTTPS listening on %s", self.url)
