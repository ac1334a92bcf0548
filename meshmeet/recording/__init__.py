"""Recording I/O: the live recorder's append-only files and the recordings directory.

Modules: ``recorder`` (appends the media messages a node relayed to DIR/NAME.mmrec, fsynced,
holes on a full disk), ``live`` (which file the hub records into, started decodable) and ``recstore`` (lists, reads and verifies recordings for recording sync).
What to fetch and serve between nodes is decided by the sans-IO ``meshmeet.media.recsync``. This
package must never rewrite what was recorded, nor import trio or aiohttp.
"""
