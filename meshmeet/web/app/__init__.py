"""The hall web app: TV (/tv), tablet (/tablet), chair console (/chair), minutes, CA install page.

`make_setup(WebappOptions, WebappShared)` returns the gateway hook the node's WebappService adds
to node.web_setups. This package must never import trio or reach node state except through the
gateway's api_call.
"""

from .routes import WebappOptions, WebappShared, make_setup

__all__ = ["WebappOptions", "WebappShared", "make_setup"]
