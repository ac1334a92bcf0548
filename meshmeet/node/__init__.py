"""The node process: trio drivers around the sans-IO cores, and the composition root.

``node.py`` assembles a node; ``links.py`` (TCP links), ``discovery.py``/``sightings.py`` (mDNS),
``joining.py`` and one ``*_service.py`` per part (tree, sync, media, datagrams, LoRa, web app)
move bytes between sockets, timers and the cores. This package must never parse a wire format
or decide a protocol rule itself (the cores do), and never import aiohttp (the gateway is reached
through ``meshmeet.web.gateway_lifecycle`` and its bridge).
"""
