"""The local web gateway for the hall TV, tablets and presenter (aiohttp on its own thread).

Modules: ``api`` (the node-API contract and error shape, pure), ``gateway`` (the aiohttp app
and topic fan-out hub; asyncio only), ``serving`` (the gateway's loop thread and listening
socket; asyncio only), ``bridge`` (the only module importing both trio and asyncio:
``open_web_gateway``). This package must never import anything on import: importing
``meshmeet.web.gateway`` must not pull in trio, so nothing is re-exported here.
"""
