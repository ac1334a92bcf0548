"""The node's HTTP JSON API handlers (``/api/NAME``), called by the web gateway through the bridge.

Modules: ``contract`` (the API's call signature, ``ApiError`` and its bilingual error shape;
pure, also imported by the asyncio side), ``state_args`` (argument checking), ``state_api`` and
``state_documents`` (meeting state and documents: read through the store, write through
``meshmeet.meeting``), ``doc_source`` (opening a file the operator hands to ``doc_add``). Handlers
run on the trio side. This package must never import aiohttp or asyncio, never decide a domain
rule itself (it maps ``meshmeet.meeting`` errors to HTTP codes), and imports nothing on import.
"""
